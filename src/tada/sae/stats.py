"""Per-feature statistics of a TopK SAE over an activation store, streamed one unit (one generation) at a time,
so memory does not grow with the number of generations.

For latent j over all N rows of the store (f_j(h) of eq. 4):

    density_j  = #{rows with f_j > 0} / N             (firing rate)
    mean_j     = sum_rows f_j / #{rows with f_j > 0}  (mean activation when firing)
    unit_j(u)  = max over unit u's rows of f_j        (how strongly generation u fires it)
    top_j      = the `top_k` units of largest unit_j(u), largest first (units with unit_j(u) = 0 never count)

plus a histogram of the non-zero activations over log-spaced bins, and the Pearson correlation of each latent's
per-unit mean activation with any per-unit signals (e.g. a scorer's similarity to text queries), accumulated as
sums (sum x, sum x^2, sum y, sum y^2, sum xy) so it needs no per-unit table either.
A latent that never fires is *dead*; one that fires on more than `dense` of all rows is *high-frequency*.
"""

from __future__ import annotations

import torch

from tada.errors import TadaError

HIST_EDGES = torch.logspace(-3, 3, 25)  # 1e-3 .. 1e3, 24 bins; smaller values count in the first, larger in the last


@torch.no_grad()
def dense_activations(sae, rows: torch.Tensor) -> torch.Tensor:
    """(rows, num_latents) f(h) of eq. 4, zeros outside each row's top k."""
    out = sae.encode(rows)
    return torch.zeros(rows.shape[0], sae.cfg.num_latents).scatter_(1, out.indices, out.latents)


class FeatureStats:
    """Accumulate the statistics above; `add(unit, acts, signals)` per unit, then read the attributes."""

    def __init__(self, num_latents: int, top_k: int = 8, n_signals: int = 0, dense: float = 0.5):
        if top_k < 1:
            raise TadaError(f"top_k must be >= 1; got {top_k}")
        self.top_k, self.dense = top_k, dense
        self.rows = 0
        self.fired = torch.zeros(num_latents, dtype=torch.float64)
        self.total = torch.zeros(num_latents, dtype=torch.float64)
        self.hist = torch.zeros(num_latents, len(HIST_EDGES) - 1, dtype=torch.float64)
        self.top_values = torch.zeros(num_latents, 0)
        self.top_units = torch.zeros(num_latents, 0, dtype=torch.long)
        self.units = 0
        self.sx = torch.zeros(num_latents, dtype=torch.float64)
        self.sxx = torch.zeros(num_latents, dtype=torch.float64)
        self.sy = torch.zeros(n_signals, dtype=torch.float64)
        self.syy = torch.zeros(n_signals, dtype=torch.float64)
        self.sxy = torch.zeros(num_latents, n_signals, dtype=torch.float64)

    @torch.no_grad()
    def add(self, unit: int, acts: torch.Tensor, signals: torch.Tensor | None = None) -> None:
        """acts: (rows, num_latents) activations of one unit; signals: (n_signals,) values of that unit."""
        self.rows += acts.shape[0]
        on = acts > 0
        self.fired += on.sum(0).double()
        self.total += acts.sum(0).double()
        bins = torch.bucketize(acts.clamp_min(HIST_EDGES[0]), HIST_EDGES[1:-1])
        latent = torch.arange(acts.shape[1]).expand_as(acts)
        self.hist.index_put_((latent[on], bins[on]), torch.ones(int(on.sum()), dtype=torch.float64), accumulate=True)
        peak = acts.max(0).values
        values = torch.cat([self.top_values, peak[:, None]], 1)
        units = torch.cat([self.top_units, torch.full((acts.shape[1], 1), unit)], 1)
        keep = values.topk(min(self.top_k, values.shape[1]), dim=1, sorted=True).indices
        self.top_values, self.top_units = values.gather(1, keep), units.gather(1, keep)
        self.units += 1
        x = acts.double().mean(0)
        self.sx += x
        self.sxx += x * x
        if signals is not None:
            y = signals.double()
            self.sy += y
            self.syy += y * y
            self.sxy += x[:, None] * y[None, :]

    @property
    def density(self) -> torch.Tensor:
        return self.fired / max(self.rows, 1)

    @property
    def mean_active(self) -> torch.Tensor:
        return torch.where(self.fired > 0, self.total / self.fired.clamp_min(1), torch.zeros_like(self.total))

    @property
    def dead(self) -> torch.Tensor:
        return self.fired == 0

    @property
    def high_frequency(self) -> torch.Tensor:
        return self.density > self.dense

    def top(self, latent: int) -> list[tuple[int, float]]:
        """(unit, peak activation) of the latent's top units that fire it, largest first."""
        return [(int(u), float(v)) for u, v in zip(self.top_units[latent], self.top_values[latent]) if v > 0]

    def correlations(self) -> torch.Tensor:
        """(num_latents, n_signals) Pearson r of per-unit mean activation with each signal; NaN where either is
        constant over the units."""
        n = self.units
        cov = self.sxy - self.sx[:, None] * self.sy[None, :] / n
        vx = self.sxx - self.sx**2 / n
        vy = self.syy - self.sy**2 / n
        flat = (vx <= 1e-9 * self.sxx.clamp_min(1e-30))[:, None] | (vy <= 1e-9 * self.syy.clamp_min(1e-30))[None, :]
        r = cov / (vx[:, None] * vy[None, :]).clamp_min(1e-300).sqrt()
        return torch.where(flat, torch.full_like(r, float("nan")), r)

"""Impact of a layer on a concept (eq. 9), its bootstrap interval, and the LayerImpact table."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tada.errors import TadaError

SOURCE, TARGET = -2, -1  # `layer` column values of the unpatched rows: all sites get P_c~ / all get P_c


def impact(sim_patched: np.ndarray, sim_source: np.ndarray, sim_target: np.ndarray,
           min_denominator: float = 1e-6) -> np.ndarray:
    """Eq. 9 as a ratio of means over (pair, seed) units:

        Impact(l, c) = (mean sim(l<-c, l'<-c~) - mean sim(all<-c~)) / (mean sim(all<-c) - mean sim(all<-c~))

    sim_patched: (U, L) similarities of the patched rows; sim_source, sim_target: (U,).
    Means are taken *before* the ratio: a single unit whose target and source sound alike has a
    denominator near zero, and a mean of per-unit ratios would be dominated by it. When the mean
    denominator is below `min_denominator` in absolute value the concept did not change the audio at all
    (prompting alone fails), Impact is undefined and NaN is returned for every layer.
    """
    sim_patched, sim_source, sim_target = map(np.asarray, (sim_patched, sim_source, sim_target))
    if sim_patched.ndim != 2 or sim_source.shape != (sim_patched.shape[0],) or sim_target.shape != sim_source.shape:
        raise TadaError(
            f"expected patched (U, L), source (U,), target (U,); got {sim_patched.shape}, {sim_source.shape}, "
            f"{sim_target.shape}"
        )
    if sim_patched.shape[0] == 0:
        raise TadaError("Impact needs at least one (pair, seed) unit")
    den = sim_target.mean() - sim_source.mean()
    if abs(den) < min_denominator:
        return np.full(sim_patched.shape[1], np.nan)
    return (sim_patched.mean(axis=0) - sim_source.mean()) / den


def bootstrap_impact(sim_patched, sim_source, sim_target, n_boot: int = 1000, level: float = 0.95,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of :func:`impact`, resampling (pair, seed) units with replacement."""
    sim_patched, sim_source, sim_target = map(np.asarray, (sim_patched, sim_source, sim_target))
    rng = np.random.default_rng(seed)
    u = sim_patched.shape[0]
    draws = np.empty((n_boot, sim_patched.shape[1]))
    for b in range(n_boot):
        idx = rng.integers(0, u, u)
        draws[b] = impact(sim_patched[idx], sim_source[idx], sim_target[idx])
    lo, hi = np.nanquantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0) if u > 1 else (draws[0], draws[0])
    return lo, hi


@dataclass
class LayerImpact:
    """Impact (eq. 9) per concept and site, with bootstrap intervals.

    table columns: concept, layer, impact, ci_low, ci_high, units, flags (see :func:`impact_flags`).
    """

    table: pd.DataFrame
    adaptive: pd.DataFrame | None = None  # why an adaptive sweep stopped, per concept (tada.localization.sweep)

    def matrix(self) -> pd.DataFrame:
        """concept x layer Impact."""
        return self.table.pivot(index="concept", columns="layer", values="impact")

    def top(self, k: int = 2, concept: str | None = None) -> list[int]:
        """The `k` layers of highest Impact for `concept` (or averaged over all concepts)."""
        if k < 1:
            raise TadaError(f"k must be >= 1; got {k}")
        t = self.table
        if concept is not None:
            if concept not in set(t.concept):
                raise TadaError(f"no concept {concept!r} in this table; it has {sorted(set(t.concept))}")
            t = t[t.concept == concept]
        mean = t.groupby("layer").impact.mean().dropna().sort_values(ascending=False, kind="stable")
        return [int(x) for x in mean.index[:k]]

    def to_csv(self, path: str | Path) -> None:
        self.table.to_csv(path, index=False)

    @classmethod
    def read_csv(cls, path: str | Path) -> "LayerImpact":
        return cls(pd.read_csv(path))

    def heatmap(self, path: str | Path, title: str | None = None) -> Path:
        """A concept x layer heatmap like the paper's fig. 3."""
        from tada.report.plots import impact_heatmap

        flagged = None
        if "flags" in self.table:
            flagged = self.table.assign(flag=self.table["flags"].fillna("").astype(str) != "").pivot(
                index="concept", columns="layer", values="flag")
        return impact_heatmap(self.matrix(), path, title=title, flagged=flagged)


def impact_flags(patched: np.ndarray, source: np.ndarray, target: np.ndarray, imp: np.ndarray, lo: np.ndarray,
                 hi: np.ndarray, min_denominator: float = 1e-6) -> list[str]:
    """Per layer, why its Impact means little ("" when nothing is wrong), joined by ";":

    constant: every generation scored the same (silent or constant audio: nothing to measure);
    no_effect: the mean denominator of eq. 9 is below `min_denominator` (prompting alone does not change
        the audio, Impact is undefined);
    weak_concept: the denominator is within two standard errors of zero over the units, so Impact is a
        ratio of noise (an Impact of 31 can come from it);
    wide_ci: the bootstrap interval is wider than the range of Impact over the layers, or misses the estimate.
    """
    every = np.concatenate([patched.ravel(), source, target])
    diff = target - source
    den = diff.mean()
    base = []
    if np.ptp(every) == 0:
        base.append("constant")
    elif abs(den) < min_denominator:
        base.append("no_effect")
    elif len(diff) > 1 and abs(den) < 2 * diff.std(ddof=1) / np.sqrt(len(diff)):
        base.append("weak_concept")
    spread = np.nanmax(imp) - np.nanmin(imp) if np.isfinite(imp).any() else 0.0
    flags = []
    for j in range(len(imp)):
        f = list(base)
        if np.isfinite(imp[j]) and ((hi[j] - lo[j]) > max(spread, 1e-12) or not lo[j] <= imp[j] <= hi[j]):
            f.append("wide_ci")
        flags.append(";".join(f))
    return flags


def impact_table(scores: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> LayerImpact:
    """LayerImpact from a scores table (columns concept, pair, seed, layer, sim)."""
    out = []
    for concept, df in scores.groupby("concept", sort=False):
        wide = df.pivot_table(index=["pair", "seed"], columns="layer", values="sim", aggfunc="first")
        layers = [c for c in wide.columns if c >= 0]
        patched, src, tgt = wide[layers].to_numpy(), wide[SOURCE].to_numpy(), wide[TARGET].to_numpy()
        imp = impact(patched, src, tgt)
        lo, hi = bootstrap_impact(patched, src, tgt, n_boot=n_boot, seed=seed)
        flags = impact_flags(patched, src, tgt, imp, lo, hi)
        # A layer an adaptive sweep stopped patching has fewer units: its values come from the units it has.
        units = (~np.isnan(patched)).sum(0)
        for j in np.flatnonzero(units < len(wide)):
            have = ~np.isnan(patched[:, j])
            col, s_, t_ = patched[have, j:j + 1], src[have], tgt[have]
            imp[j] = impact(col, s_, t_)[0]
            (lo[j],), (hi[j],) = bootstrap_impact(col, s_, t_, n_boot=n_boot, seed=seed)
            flags[j] = impact_flags(col, s_, t_, imp[j:j + 1], lo[j:j + 1], hi[j:j + 1])[0]
        for j, layer in enumerate(layers):
            out.append({"concept": concept, "layer": int(layer), "impact": imp[j], "ci_low": lo[j],
                        "ci_high": hi[j], "units": int(units[j]), "flags": flags[j]})
        concept_flags = sorted({f for fl in flags for f in fl.split(";") if f})
        if concept_flags:
            warnings.warn(f"Impact of {concept!r}: {', '.join(concept_flags)} (see the flags column of the table "
                          "and tada.localization.impact.impact_flags)", stacklevel=2)
    return LayerImpact(pd.DataFrame(out))

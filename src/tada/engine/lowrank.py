"""Low-rank adapters on the projections of sites, and recording/replaying denoiser calls (Concept Sliders).

:class:`LowRankDelta` turns a projection ``y = W x`` of a site into ``y = W x + alpha * scale * B A x`` (a
LoRA of rank r, ``A`` (r, in), ``B`` (out, r)) on the rows of the chosen samples, with one alpha per sample,
so one batch can hold a whole alpha sweep and ``alpha = 0`` installs nothing. The weights stay the model's;
nothing is replaced inside the denoiser. With ``A``/``B`` requiring grad it is what training differentiates.

:class:`RecordCalls` keeps the arguments of each denoiser call of a generation (the noisy inputs x_t, the
timesteps and the contexts, as the pipeline made them) and :func:`replay` runs one of them again under other
interventions, so a training loop can evaluate the denoiser on real trajectory states.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tada.engine.hooks import Generation, Intervention, _check_finite, intervene
from tada.engine.passes import _prediction
from tada.engine.sites import Copy, check_copy, resolve_site
from tada.errors import TadaError


def projection(site_module: torch.nn.Module, name: str) -> torch.nn.Linear:
    """The linear projection `name` (e.g. ``to_q``, ``to_out.0``) of a site module."""
    try:
        mod = site_module.get_submodule(name)
    except AttributeError as err:
        raise TadaError(f"the site has no projection {name!r}") from err
    if not isinstance(mod, torch.nn.Linear):
        raise TadaError(f"{name!r} of the site is a {type(mod).__name__}, not a linear projection")
    return mod


class LowRankDelta(Intervention):
    """Add ``alpha * scale * B (A x)`` to chosen site projections.

    adapters: ``{(site, projection name): (A (r, in), B (out, r))}``.
    alpha: one float or one per sample. scale: the LoRA scale (lora_alpha / r).
    copy: the guidance copies adapted, "all" by default (an adapted model adapts every pass).
    """

    def __init__(self, adapters: dict, alpha: float | Sequence[float] = 1.0, scale: float = 1.0, copy: Copy = "all"):
        if not adapters:
            raise TadaError("LowRankDelta needs at least one adapter")
        if isinstance(alpha, torch.Tensor) and alpha.requires_grad:
            raise TadaError("alpha must be a number or a list of numbers")
        alphas = torch.as_tensor(alpha, dtype=torch.float64)
        if alphas.ndim > 1:
            raise TadaError(f"alpha must be a number or one number per sample; got shape {tuple(alphas.shape)}")
        _check_finite("alpha", alphas)
        self.adapters, self.alphas, self.scale, self.copy = adapters, alphas, float(scale), check_copy(copy)

    def install(self, gen: Generation):
        model, batch = gen.model, gen.batch
        if self.alphas.ndim == 1 and len(self.alphas) != batch:
            raise TadaError(f"got {len(self.alphas)} alphas for a batch of {batch} prompts")
        alphas = self.alphas.expand(batch) if self.alphas.ndim == 0 else self.alphas
        samples = [s for s in range(batch) if alphas[s] != 0]
        if not samples:
            return []
        handles = []
        for (idx, name), (A, B) in self.adapters.items():
            site = model.sites[resolve_site(model.sites, idx, model.name)]
            lin = projection(site.module, name)
            if A.shape[1] != lin.in_features or B.shape[0] != lin.out_features or A.shape[0] != B.shape[1]:
                raise TadaError(f"adapter for site {site.index} {name} has A {tuple(A.shape)}, B {tuple(B.shape)}; "
                                f"the projection maps {lin.in_features} -> {lin.out_features}")
            handles.append(lin.register_forward_hook(self._make_hook(gen, A, B, alphas, samples)))
        return handles

    def _make_hook(self, gen: Generation, A, B, alphas, samples):
        plans: dict[tuple, tuple] = {}

        def hook(module, args, output):
            x = args[0]
            key = (x.shape[0], x.dtype, x.device)
            if key not in plans:
                rows = gen.rows(x.shape[0], self.copy, samples)
                a = alphas[[r % gen.batch for r in rows]] * self.scale
                plans[key] = (torch.tensor(rows, device=x.device), a.to(x.device, x.dtype).view(-1, *([1] * (x.ndim - 1))))
            rows, a = plans[key]
            delta = (x[rows] @ A.to(x.device, x.dtype).T) @ B.to(x.device, x.dtype).T * a
            if torch.is_grad_enabled():
                return output.index_add(0, rows, delta)
            output.index_add_(0, rows, delta)
            return output

        return hook


class RecordCalls(Intervention):
    """Keep the arguments of every denoiser call (detached copies) in ``calls``: a list of (args, kwargs)."""

    def __init__(self):
        self.calls: list[tuple[tuple, dict]] = []

    def install(self, gen: Generation):
        def keep(v):
            if isinstance(v, torch.Tensor):
                return v.detach().clone()
            if isinstance(v, (tuple, list)):
                return type(v)(keep(x) for x in v)
            return v

        def pre(module, args, kwargs):
            self.calls.append((keep(args), {k: keep(v) for k, v in kwargs.items()}))

        return [gen.model.denoiser.register_forward_pre_hook(pre, with_kwargs=True)]


def replay(model, call: tuple[tuple, dict], batch: int, interventions: Sequence[Intervention] = (),
           copy: Copy = "cond") -> torch.Tensor:
    """Run a recorded denoiser call again under `interventions` and return the prediction rows of `copy`
    (in sample order). Gradients flow when the caller enables them."""
    args, kwargs = call
    with intervene(model, batch, interventions):
        out = _prediction(model.denoiser(*args, **kwargs))
    rows = model.guidance_layout.rows(out.shape[0], batch, copy)
    return out[rows]

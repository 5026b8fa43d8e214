"""Multiplicative steering of chosen output features: ``h'_j = h_j * (1 + alpha * s_j)``.

Used by AUSteer's multiplicative mode (:mod:`tada.methods.austeer`): ``s`` holds the sign of the chosen
dimensions and zeros elsewhere, so every other dimension is multiplied by exactly 1 and left as it was.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tada.engine.hooks import Generation, Intervention, _contiguous, sample_strengths, steered_samples
from tada.engine.sites import Copy, Site, check_copy, resolve_site
from tada.errors import TadaError


class ScaleFeatures(Intervention):
    """Scale site outputs feature-wise: ``h' = h * (1 + alpha * s)`` at the family's frame positions.

    scales: ``{site (index or name): tensor (dim,)}``, the per-feature factors ``s``.
    alpha: one float or one per sample of the batch; copy, samples as in :class:`~tada.engine.AddVector`.
    ``alpha == 0`` installs nothing (bit-identical to a plain run).
    """

    def __init__(self, scales: dict, alpha: float | Sequence[float] = 1.0, copy: Copy = "cond",
                 samples: Sequence[int] | None = None):
        if not scales:
            raise TadaError("ScaleFeatures needs at least one {site: scale}")
        alphas = sample_strengths(alpha, scales, "feature scale")
        self.scales, self.alphas, self.copy, self.samples = scales, alphas, check_copy(copy), samples

    def install(self, gen: Generation):
        model = gen.model
        alphas, samples = steered_samples(gen, self.alphas, self.samples)
        handles = []
        for idx, scale in self.scales.items():
            site = model.sites[resolve_site(model.sites, idx, model.name)]
            scale = torch.as_tensor(scale)
            if scale.shape != (site.dim,):
                raise TadaError(f"feature scale for site {site.index} ({site.name}) has shape {tuple(scale.shape)}; "
                                f"expected ({site.dim},)")
            if samples:
                handles.append(site.module.register_forward_hook(self._make_hook(gen, site, scale, alphas, samples)))
        return handles

    def _make_hook(self, gen: Generation, site: Site, scale: torch.Tensor, alphas: torch.Tensor, samples: list[int]):
        frames = gen.frames(site)
        plans: dict[tuple, tuple] = {}

        def plan(h: torch.Tensor):
            key = (h.shape[0], h.dtype, h.device)
            if key not in plans:
                rows = gen.rows(h.shape[0], self.copy, samples)
                a = alphas[[r % gen.batch for r in rows]].view(-1, 1, 1)
                # the factor is built in float64 and rounded once, so a dimension with s = 0 gets exactly 1
                factor = (1 + a * scale.double().view(1, 1, -1)).to(h.device, h.dtype)
                plans[key] = (_contiguous(rows), factor)
            return plans[key]

        def hook(module, args, output):
            is_tuple = isinstance(output, tuple)
            h = output[0] if is_tuple else output
            rows, factor = plan(h)
            out = h.clone() if torch.is_grad_enabled() else h
            out[rows, frames] = out[rows, frames] * factor
            return (out, *output[1:]) if is_tuple else out

        return hook

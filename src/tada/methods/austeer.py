"""AUSteer: CAA restricted to its largest activation units.

Source: Feng et al., "Fine-Grained Activation Steering: Steering Less, Achieving More" (AUSteer, ICLR 2026,
arXiv 2602.04428): steer only the few most discriminative activation units of a block. Here the units are
the dimensions of a cross-attention output and "most discriminative" is the magnitude of the CAA mean
difference (the paper's activation-momentum ranking and per-input adaptive strengths are not reproduced).

Maths. With the CAA mean difference of eq. 2 before normalisation, ``v = mean_i (h_pos_i - h_neg_i)`` per
site, keep its ``k`` entries of largest ``|v_j|`` (default k = 256, capped at the site width) and zero the
rest: ``v_k``. Two ways to apply it at strength alpha:

* additive: ``h' = h + alpha * v_k / ||v_k||_2`` (no ReNorm), so only those k dimensions move;
* multiplicative: ``h'_j = h_j * (1 + alpha * sign(v_j))`` for the k chosen j, ``h'_j = h_j`` elsewhere.

Cost: as plain generation (no extra denoiser rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tada.engine import AddVector, ScaleFeatures
from tada.errors import TadaError
from tada.methods.base import Steering, check_alpha_list, choose_sites, concept_prompts, register, site_info

MODES = ("add", "scale")


def top_k_units(v: torch.Tensor, k: int) -> torch.Tensor:
    """`v` (..., dim) with all but its `k` largest-magnitude entries (along the last axis) set to zero."""
    k = min(int(k), v.shape[-1])
    if k < 1:
        raise TadaError(f"k must be >= 1; got {k}")
    keep = v.abs().topk(k, dim=-1).indices
    out = torch.zeros_like(v)
    return out.scatter(-1, keep, v.gather(-1, keep))


@register("austeer", "AUSteer: the CAA mean difference kept at its k largest-magnitude units (default 256), added "
          "(h + alpha v_k) or multiplying those units by 1 + alpha sign(v)", cost="as plain: no extra denoiser rows",
          units="norm")
class AUSteer(Steering):
    """tensors: ``site.{i}`` = the sparse direction ``v_k`` (unit norm), one per site."""

    @classmethod
    def fit(cls, model, concept, sites=None, k: int = 256, mode: str = "add", seeds: int | Sequence[int] = 1,
            steps: int | None = None, n_pairs: int | None = None, batch_size: int = 8, catalogue=None,
            top_k: int = 2) -> "AUSteer":
        from tada.methods.caa import fit as caa_fit

        if mode not in MODES:
            raise TadaError(f"AUSteer mode must be one of {', '.join(MODES)}; got {mode!r}")
        cp = concept_prompts(concept, n_pairs, catalogue)
        chosen = choose_sites(model, sites, top_k, cp.name)
        if not chosen:
            raise TadaError("choose at least one site")
        # the unit CAA direction is v / ||v||: its k largest entries are those of v, and so are their signs
        caa = caa_fit(model, list(cp.pairs), chosen, seeds=seeds, steps=steps, batch_size=batch_size)
        tensors = {}
        for s in chosen:
            vk = top_k_units(caa.vectors[s], k)
            tensors[f"site.{s}"] = vk / vk.norm()
        settings = {"k": int(k), "mode": mode, "seeds": caa.meta["seeds"], "steps": caa.meta["steps"]}
        return cls(tensors, site_info(model, chosen), settings, cp, model.name,
                   meta={"frame_norm": caa.meta["frame_norm"]})

    def direction(self, site: int) -> torch.Tensor:
        return self.tensors[f"site.{site}"]

    def interventions(self, model, alpha, prompts, steps, duration=None, copy="cond"):
        alphas = check_alpha_list(alpha, len(prompts))
        if not any(alphas):
            return []
        if self.settings.get("mode", "add") == "add":
            return [AddVector({s: self.direction(s) for s in self.sites}, alphas, renorm=False, copy=copy)]
        return [ScaleFeatures({s: torch.sign(self.direction(s)) for s in self.sites}, alphas, copy=copy)]

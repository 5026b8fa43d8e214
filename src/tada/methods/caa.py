"""Contrastive Activation Addition: steering vectors from contrastive prompt pairs (eq. 2), applied
with ReNorm (eq. 3, see :func:`tada.engine.hooks.renorm`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tada.engine import Capture, resolve_sites
from tada.errors import TadaError
from tada.methods.vector import SteeringVector, frame_norm
from tada.models.base import AudioModel, seed_list
from tada.progress import progress_bar
from tada.runs.distributed import gather, my_share


def caa_direction(h_pos: torch.Tensor, h_neg: torch.Tensor) -> torch.Tensor:
    """Eq. 2: ``v = mean_i (h_pos_i - h_neg_i)``, returned as ``v / ||v||_2`` (over the last axis).

    h_pos, h_neg: (N, ..., dim) frame-averaged site outputs of the N pairs.
    """
    if h_pos.shape != h_neg.shape:
        raise TadaError(f"positive and negative activations differ in shape: {tuple(h_pos.shape)} vs {tuple(h_neg.shape)}")
    if h_pos.shape[0] == 0:
        raise TadaError("eq. 2 needs at least one pair")
    v = (h_pos.double() - h_neg.double()).mean(dim=0)
    norm = v.norm(dim=-1, keepdim=True)
    if (norm == 0).any():
        raise TadaError("the mean activation difference is zero: the pairs do not differ at these sites")
    return (v / norm).float()


def resolve_pairs(concept_or_pairs, n_pairs: int | None = None, catalogue=None
                  ) -> tuple[str | None, list[tuple[str, str]]]:
    """Contrastive (pos, neg) prompts over the shipped base styles of a concept (a name in `catalogue`, the
    shipped one by default, or a :class:`~tada.concepts.Concept`), or explicit (pos, neg) pairs."""
    from tada.concepts import Concept, load_catalogue

    if isinstance(concept_or_pairs, str):
        concept_or_pairs = (catalogue or load_catalogue())[concept_or_pairs]
    if isinstance(concept_or_pairs, Concept):
        return concept_or_pairs.name, concept_or_pairs.contrastive_prompts(n=n_pairs)
    pairs = [tuple(p) for p in concept_or_pairs]
    for p in pairs:
        if len(p) != 2 or not all(isinstance(x, str) and x.strip() for x in p):
            raise TadaError(f"each pair must be two non-empty prompts (positive, negative); got {p!r}")
    if not pairs:
        raise TadaError("the list of contrastive pairs is empty")
    return None, pairs[:n_pairs] if n_pairs else pairs


def capture_means(model: AudioModel, prompts: list[str], seeds: list[int], sites: list[int], steps: int | None,
                  per_step: bool, batch_size: int, desc: str = "capturing") -> dict[int, torch.Tensor]:
    """Frame-averaged conditional-row outputs per prompt: ``{site: (P, dim)}``, or ``(P, steps, dim)``
    with `per_step`; averaged over denoising steps otherwise. Under torchrun or accelerate the batches are
    split over the processes and their results gathered, so every process gets the one-process tensors."""
    chunks = [slice(start, start + batch_size) for start in range(0, len(prompts), batch_size)]
    mine = my_share(chunks)
    done = []
    with progress_bar(desc, total=sum(len(prompts[c]) for _, c in mine)) as bar:
        for position, chunk in mine:
            cap = Capture(sites, copy="cond", reduce="frames", per_step=per_step)
            model.generate(prompts[chunk], seeds[chunk], steps=steps, interventions=[cap])
            done.append((position, {s: (torch.stack(cap.result[s], dim=1) if per_step else cap.result[s]).cpu()
                                    for s in sites}))
            bar.advance(len(prompts[chunk]))
    blocks = gather(done)
    return {s: torch.cat([b[s] for b in blocks]) for s in sites}


def fit(model: AudioModel, concept_or_pairs, sites: Sequence[int] | int, seeds: int | Sequence[int] = 1,
        steps: int | None = None, per_step: bool = False, n_pairs: int | None = None,
        batch_size: int = 8, catalogue=None) -> SteeringVector:
    """Fit a CAA steering vector (eq. 2) at `sites`.

    concept_or_pairs: a concept (a name in `catalogue`, the shipped one by default, or a Concept), or a list of
        (positive, negative) prompts.
    seeds: how many seeds per pair (an int), or the seeds themselves; each pair's two prompts share a seed,
        so their difference holds the concept and not the noise.
    per_step: keep one direction per denoising step (each unit-norm) instead of one averaged over steps.
    """
    sites = resolve_sites(model.sites, sites, model.name)
    if not sites:
        raise TadaError("choose at least one site to fit a steering vector at")
    concept, pairs = resolve_pairs(concept_or_pairs, n_pairs, catalogue)
    seeds = seed_list(seeds)
    pos = [p for p, _ in pairs for _ in seeds]
    neg = [n for _, n in pairs for _ in seeds]
    prompt_seeds = seeds * len(pairs)
    # pos and neg of one unit go in one batch, side by side, so both see the same batch composition
    prompts, seeds_all = [], []
    half = max(1, batch_size // 2)
    for start in range(0, len(pos), half):
        prompts += pos[start:start + half] + neg[start:start + half]
        seeds_all += prompt_seeds[start:start + half] * 2
    acts = capture_means(model, prompts, seeds_all, sites, steps, per_step, 2 * half, desc=f"CAA {concept or 'pairs'}")
    vectors = {}
    for s in sites:
        h_pos, h_neg = [], []
        for start in range(0, len(pos), half):
            k = len(pos[start:start + half])
            block = acts[s][2 * start:2 * start + 2 * k]
            h_pos.append(block[:k])
            h_neg.append(block[k:])
        vectors[s] = caa_direction(torch.cat(h_pos), torch.cat(h_neg))
    meta = {"model": model.name, "method": "caa", "concept": concept, "pairs": [list(p) for p in pairs],
            "seeds": seeds, "steps": steps or model.default_steps, "per_step": per_step}
    meta["frame_norm"] = frame_norm(model, sites, pos[:1], steps)
    return SteeringVector(vectors, {s: model.sites[s].name for s in sites}, renorm=True, meta=meta)


from tada.methods.base import choose_sites, concept_prompts, register  # noqa: E402


@register("caa", "Contrastive Activation Addition: unit mean difference of frame-averaged site outputs over "
          "contrastive pairs (eq. 2), added with ReNorm (eq. 3); optionally one vector per step",
          cost="as plain: no extra denoiser rows", units="norm")
class CAA:
    """CAA behind the common interface; the artifact is a :class:`~tada.methods.vector.SteeringVector`."""

    @classmethod
    def fit(cls, model: AudioModel, concept, sites=None, seeds: int | Sequence[int] = 1, steps: int | None = None,
            per_step: bool = False, n_pairs: int | None = None, batch_size: int = 8, catalogue=None,
            top_k: int = 2) -> SteeringVector:
        cp = concept_prompts(concept, n_pairs, catalogue)
        sites = choose_sites(model, sites, top_k, cp.name)
        vec = fit(model, list(cp.pairs), sites, seeds=seeds, steps=steps, per_step=per_step, batch_size=batch_size)
        vec.meta["concept"] = cp.name
        return vec

"""Interventions on the context a site attends to: recording it (how a model encodes prompts) and patching
it with another prompt's (activation patching, sec. 3, fig. 2)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tada.engine.hooks import Generation, Intervention, StopGeneration
from tada.engine.sites import Copy, Site, check_copy
from tada.errors import TadaError


@dataclass
class Conditioning:
    """The context every site attends to, for a batch of prompts, as the pipeline builds it.

    contexts[(site_index, kind)] = (context (B, S, D), mask (B, S) or None), kind in {"cond", "uncond"};
    rows are in prompt order. Made by :class:`Record` (``model.encode``), consumed by :class:`PatchContext`.
    """

    prompts: list[str]
    contexts: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor | None]]

    def __len__(self) -> int:
        return len(self.prompts)

    def context(self, site: int, kind: str, samples: Sequence[int]):
        """Context and mask of `kind` at `site` for the given samples (a 1-row conditioning broadcasts)."""
        entry = self.contexts.get((site, kind))
        if entry is None:
            return None, None
        ctx, mask = entry
        idx = [0] * len(samples) if len(self) == 1 else list(samples)
        return ctx[idx], None if mask is None else mask[idx]

    def select(self, rows: Sequence[int]) -> "Conditioning":
        rows = list(rows)
        return Conditioning(
            [self.prompts[r] for r in rows],
            {k: (c[rows], None if m is None else m[rows]) for k, (c, m) in self.contexts.items()},
        )


class Record(Intervention):
    """Record the keyword ``encoder_hidden_states`` (and mask) that every site receives at its first call, per
    guidance copy, into ``contexts`` (the input of :class:`Conditioning`).

    stop: end the generation once every site has been seen (no denoising step finishes, nothing is decoded).
    """

    def __init__(self, stop: bool = True):
        self.stop = stop
        self.contexts: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor | None]] = {}

    def install(self, gen: Generation):
        last = gen.model.sites[-1].index
        mask_key = gen.model.mask_kwarg

        def make(site: Site):
            def pre(module, args, kwargs):
                ctx = kwargs.get("encoder_hidden_states")
                if ctx is None:
                    raise RuntimeError(f"site {site.name} was called without encoder_hidden_states as a keyword")
                mask = kwargs.get(mask_key) if mask_key else None
                for kind in ("cond", "uncond"):
                    rows = gen.rows(ctx.shape[0], kind)
                    if rows and (site.index, kind) not in self.contexts:
                        self.contexts[(site.index, kind)] = (
                            ctx[rows].detach().clone(), None if mask is None else mask[rows].detach().clone())
                if self.stop and site.index == last:
                    raise StopGeneration

            return pre

        return [s.module.register_forward_pre_hook(make(s), with_kwargs=True) for s in gen.model.sites]


class PatchContext(Intervention):
    """Give chosen sites another prompt's context: activation patching of keys/values (sec. 3, fig. 2).

    source: a :class:`Conditioning` from ``model.encode(prompts)`` with one row per sample of the
        generation batch (or one row, broadcast to every sample).
    sites: the patched sites (indices or names, or "all"), either one collection for every sample, or a
        list with one collection per sample (so one batch can patch a different layer in every row).
    copy: the guidance copy patched, "cond" (default), "uncond" or "all". The unconditional copy is
        patched with the source's unconditional context.
    start: the first denoising step (0-based denoiser call) at which the patch applies, one for every
        sample or one per sample; before it the sites keep their own context (a prompt switch mid-way).
    """

    def __init__(self, source: Conditioning, sites, copy: Copy = "cond", start: int | Sequence[int] = 0):
        self.source = source
        self.sites = sites
        self.copy = check_copy(copy)
        self.start = start

    def _per_sample_sites(self, gen: Generation) -> list[list[int]]:
        sites = self.sites
        if isinstance(sites, (int, str)) or all(isinstance(s, (int, str)) for s in sites):
            return [gen.sites(sites)] * gen.batch
        sites = list(sites)
        if len(sites) != gen.batch:
            raise TadaError(f"got {len(sites)} per-row site sets for a batch of {gen.batch} prompts")
        return [gen.sites(list(s)) for s in sites]

    def install(self, gen: Generation):
        model, batch = gen.model, gen.batch
        per_sample = self._per_sample_sites(gen)
        src = self.source
        if len(src) not in (1, batch):
            raise TadaError(f"the source conditioning has {len(src)} rows; expected 1 or {batch}")
        starts = [self.start] * batch if isinstance(self.start, int) else list(self.start)
        if len(starts) != batch or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in starts):
            raise TadaError(f"start must be a step >= 0, or one per sample of the batch of {batch}; got {self.start!r}")
        handles = []
        for site in model.sites:
            samples = [b for b in range(batch) if site.index in per_sample[b]]
            if not samples:
                continue
            hook = self._make_hook(gen, site, samples, starts)
            handles.append(site.module.register_forward_pre_hook(hook, with_kwargs=True))
        return handles

    def _make_hook(self, gen: Generation, site: Site, all_samples: list[int], starts: list[int]):
        src = self.source
        mask_key = gen.model.mask_kwarg
        plans: dict[tuple, list] = {}  # per (samples, rows, tokens, mask convention): what to write, built once

        def plan(n: int, length: int, mask):
            samples = [b for b in all_samples if gen.step >= starts[b]]
            key = (tuple(samples), n, length, None if mask is None else (mask.dtype, tuple(mask.shape[1:])))
            if not samples:
                plans[key] = []
            if key not in plans:
                steps = []
                for kind in ("cond", "uncond"):
                    if self.copy not in ("all", kind):
                        continue
                    rows = gen.rows(n, kind, samples)
                    s_ctx, s_mask = src.context(site.index, kind, [r % gen.batch for r in rows]) if rows else (None, None)
                    if s_ctx is None:
                        continue
                    s_ctx, s_mask = _fit_source(site, s_ctx, s_mask, mask, length)
                    steps.append((torch.tensor(rows), s_ctx, s_mask))
                plans[key] = steps
            return plans[key]

        def hook(module, args, kwargs):
            ctx = kwargs.get("encoder_hidden_states")
            if ctx is None:
                raise RuntimeError(f"site {site.name} was called without encoder_hidden_states as a keyword")
            mask = kwargs.get(mask_key) if mask_key else None
            steps = plan(ctx.shape[0], ctx.shape[1], mask)
            if not steps:
                return None
            return args, with_contexts(kwargs, ctx, mask, mask_key, steps)

        return hook


def with_contexts(kwargs: dict, ctx: torch.Tensor, mask: torch.Tensor | None, mask_key: str | None,
                  writes: list) -> dict:
    """A site's keyword arguments with `writes` (rows, context, mask) written into copies of its context and
    mask (the originals are left as the pipeline made them)."""
    new_ctx, new_mask = ctx.clone(), None if mask is None else mask.clone()
    for rows, s_ctx, s_mask in writes:
        rows = rows.to(ctx.device) if isinstance(rows, torch.Tensor) else rows
        new_ctx[rows] = s_ctx.to(ctx.device, ctx.dtype)
        if new_mask is not None:
            new_mask[rows] = s_mask.to(new_mask.device, new_mask.dtype)
    kwargs = dict(kwargs)
    kwargs["encoder_hidden_states"] = new_ctx
    if new_mask is not None:
        kwargs[mask_key] = new_mask
    return kwargs


def _keep_mask(mask: torch.Tensor | None, ctx: torch.Tensor) -> torch.Tensor:
    """A (rows, tokens) boolean keep-mask from a bool/int keep-mask or an additive bias (0 = keep)."""
    if mask is None:
        return torch.ones(ctx.shape[:2], dtype=torch.bool, device=ctx.device)
    if mask.is_floating_point():
        return mask.reshape(mask.shape[0], -1) > -1.0
    return mask.reshape(mask.shape[0], -1).bool()


def _mask_as(keep: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A keep-mask in the convention of `like` (bool, int, or an additive bias shaped like it)."""
    if like.is_floating_point():
        bias = torch.where(keep, 0.0, -10000.0).to(like.dtype)
        return bias.reshape(keep.shape[0], *like.shape[1:-1], keep.shape[1])
    return keep.to(like.dtype).reshape(keep.shape[0], *like.shape[1:-1], keep.shape[1])


def _fit_source(site: Site, ctx: torch.Tensor, mask: torch.Tensor | None, target_mask: torch.Tensor | None,
                length: int):
    """The source context (and mask, in the target's convention) at the target's token length.

    Equal lengths pass through untouched. A shorter source is padded with masked zeros and a longer one
    may drop trailing masked tokens; a site that receives no mask cannot be padded exactly, so a
    length mismatch there is refused.
    """
    s = ctx.shape[1]
    if s == length:
        if target_mask is None or (mask is not None and mask.dtype == target_mask.dtype):
            return ctx, mask
        return ctx, _mask_as(_keep_mask(mask, ctx), target_mask)
    if target_mask is None:
        raise TadaError(
            f"site {site.name}: the source context has {s} tokens but the generation's has {length}, and this "
            "family passes no attention mask to cross-attention, so padding would change the result; encode the "
            "source prompts so that they have the same token length as the generation's"
        )
    keep = _keep_mask(mask, ctx)
    if s > length:
        if keep[:, length:].any():
            raise TadaError(
                f"site {site.name}: the source context has {s - int((~keep).sum(1).min())} unmasked tokens, more "
                f"than the {length} the generation attends to"
            )
        ctx, keep = ctx[:, :length], keep[:, :length]
    else:
        pad = length - s
        ctx = torch.cat([ctx, ctx.new_zeros(ctx.shape[0], pad, ctx.shape[2])], 1)
        keep = torch.cat([keep, keep.new_zeros(keep.shape[0], pad)], 1)
    return ctx, _mask_as(keep, target_mask)

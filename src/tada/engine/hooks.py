"""The intervention engine: plain torch module hooks on cross-attention sites, in one context manager.

A *site* is one cross-attention module of the denoiser. Its output is exactly what is added to the
residual stream (paper, eq. 1), so every intervention here acts on that output or on the context the
module attends to:

* :class:`PatchContext` rewrites rows of the site's ``encoder_hidden_states`` (and its mask) in a
  forward pre-hook. Keys and values are ``c W_K`` and ``c W_V`` (eq. 1): they depend on the text only,
  so giving layer ``l`` another prompt's context is exactly the activation patching of sec. 3.
* :class:`Capture` records site outputs in a forward hook (full, or averaged over frames; per
  denoising step or pooled over steps), optionally streamed to a callback, memory O(batch).
* :class:`AddVector` returns ``h + alpha * v`` from a forward hook, optionally re-normalised per frame
  (eq. 3): CAA steering (eq. 2-3) and SAE steering (eq. 8) are both this.

Rows. A pipeline runs the denoiser on a batch of ``copies x batch`` rows (classifier-free guidance
stacks an unconditional and a conditional copy). Every intervention names the guidance copy it acts
on, ``"cond"``, ``"uncond"`` or ``"all"``, and optionally which samples of the user's batch. The row
indices are resolved at each call from the batch size the denoiser actually receives and the model's
:class:`GuidanceLayout`, so a pipeline whose batch size changes across steps (ACE-Step 1.5's cfg
interval) is handled.

Timestep windows read the timestep from the denoiser's own call (a forward pre-hook on the denoiser),
never from counting calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from tada.models.base import AudioModel

ROW_KINDS = ("cond", "uncond", "all")


@dataclass(frozen=True)
class Site:
    """One cross-attention module.

    index: position in execution order (0 = first site the denoiser calls).
    name: the module's qualified name inside the denoiser.
    module: the module itself.
    dim: width of the site's output (what AddVector adds to and Capture records).
    context_dim: width of the context it attends to (what PatchContext replaces).
    """

    index: int
    name: str
    module: nn.Module = field(repr=False, compare=False)
    dim: int
    context_dim: int


@dataclass(frozen=True)
class GuidanceLayout:
    """How a family stacks guidance copies in the denoiser batch.

    order: kinds of the stacked copies, e.g. ``("uncond", "cond")`` for Stable Audio and AudioLDM2,
    ``("cond", "uncond")`` for ACE-Step 1.5. A batch of exactly ``batch`` rows is one conditional copy.
    """

    order: tuple[str, ...] = ("uncond", "cond")

    def rows(self, n_rows: int, batch: int, which: str, samples: Sequence[int] | None = None) -> list[int]:
        """Row indices of guidance copy ``which`` for the chosen samples (all samples by default)."""
        if which not in ROW_KINDS:
            raise ValueError(f"rows must be one of {ROW_KINDS}; got {which!r}")
        if batch <= 0 or n_rows % batch:
            raise RuntimeError(
                f"the denoiser received {n_rows} rows, which is not a multiple of the batch of {batch} prompts: "
                "this pipeline's guidance layout is not the one declared by its adapter"
            )
        copies = n_rows // batch
        if copies == 1:
            kinds = ("cond",)
        elif copies == len(self.order):
            kinds = self.order
        else:
            raise RuntimeError(
                f"the denoiser received {copies} copies of the batch; the layout declares {self.order}"
            )
        samples = range(batch) if samples is None else samples
        return [c * batch + s for c, kind in enumerate(kinds) if which in ("all", kind) for s in samples]


def renorm(new: torch.Tensor, old: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Eq. 3: ``ReNorm(h', h) = h' / ||h'||_2 * ||h||_2``, the L2 norm taken per frame over the feature axis."""
    return new * (old.norm(dim=-1, keepdim=True) / new.norm(dim=-1, keepdim=True).clamp_min(eps))


def _as_site_list(model: "AudioModel", sites: Sequence[int] | int | None) -> list[int]:
    if sites is None:
        return list(range(len(model.sites)))
    if isinstance(sites, int):
        sites = [sites]
    out = []
    for s in sites:
        if isinstance(s, bool) or not isinstance(s, int):
            raise TypeError(f"site indices must be integers; got {s!r}")
        if not 0 <= s < len(model.sites):
            raise IndexError(
                f"site index {s} is out of range: {model.name} has {len(model.sites)} cross-attention sites, "
                f"indices 0..{len(model.sites) - 1}"
            )
        out.append(s)
    return sorted(set(out))


def _check_finite(name: str, value: torch.Tensor | float) -> None:
    t = torch.as_tensor(value)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite; got a value with NaN or inf")


class Engine:
    """Shared state of one intervention context: the batch, the current timestep and step."""

    def __init__(self, model: "AudioModel", batch: int):
        self.model = model
        self.batch = batch
        self.timestep: float | None = None
        self.step = -1

    def rows(self, n_rows: int, which: str, samples: Sequence[int] | None = None) -> list[int]:
        return self.model.guidance_layout.rows(n_rows, self.batch, which, samples)

    def _on_denoiser(self, module, args, kwargs):
        self.timestep = self.model.timestep_of(args, kwargs)
        self.step += 1


class Intervention:
    """Base class: `install` registers hooks on site modules and returns their handles."""

    def install(self, engine: Engine) -> list[torch.utils.hooks.RemovableHandle]:
        raise NotImplementedError


def _in_window(engine: Engine, window: tuple[float, float] | None) -> bool:
    if window is None:
        return True
    if engine.timestep is None:
        raise RuntimeError("a timestep window needs the denoiser's timestep, which was not seen")
    lo, hi = window
    return lo <= engine.timestep <= hi


class PatchContext(Intervention):
    """Give chosen sites another prompt's context: activation patching of keys/values (sec. 3, fig. 2).

    source: a :class:`~tada.models.base.Conditioning` from ``model.encode(prompts)`` with one row per
        sample of the generation batch (or one row, broadcast to every sample).
    sites: the patched site indices, either one collection for every sample, or a list with one
        collection per sample (so one batch can patch a different layer in every row).
    rows: the guidance copy patched, "cond" (default), "uncond" or "all". The unconditional copy is
        patched with the source's unconditional context.
    """

    def __init__(self, source, sites, rows: str = "cond"):
        if rows not in ROW_KINDS:
            raise ValueError(f"rows must be one of {ROW_KINDS}; got {rows!r}")
        self.source = source
        self.sites = sites
        self.which = rows

    def _per_sample_sites(self, model, batch: int) -> list[list[int]]:
        sites = self.sites
        if isinstance(sites, int) or (
            isinstance(sites, (list, tuple, set, frozenset, range)) and all(isinstance(s, int) for s in sites)
        ):
            chosen = _as_site_list(model, sites if isinstance(sites, int) else list(sites))
            return [chosen] * batch
        sites = list(sites)
        if len(sites) != batch:
            raise ValueError(f"got {len(sites)} per-row site sets for a batch of {batch} prompts")
        return [_as_site_list(model, list(s)) for s in sites]

    def install(self, engine: Engine):
        model, batch = engine.model, engine.batch
        per_sample = self._per_sample_sites(model, batch)
        src = self.source
        if len(src) not in (1, batch):
            raise ValueError(f"the source conditioning has {len(src)} rows; expected 1 or {batch}")
        handles = []
        for site in model.sites:
            samples = [b for b in range(batch) if site.index in per_sample[b]]
            if not samples:
                continue
            hook = self._make_hook(engine, site, samples)
            handles.append(site.module.register_forward_pre_hook(hook, with_kwargs=True))
        return handles

    def _make_hook(self, engine: Engine, site: Site, samples: list[int]):
        src = self.source
        mask_key = engine.model.mask_kwarg
        plans: dict[tuple, list] = {}  # per (rows, tokens, mask convention): what to write, built once

        def plan(n: int, length: int, mask):
            key = (n, length, None if mask is None else (mask.dtype, tuple(mask.shape[1:])))
            if key not in plans:
                steps = []
                for kind in ("cond", "uncond"):
                    if self.which not in ("all", kind):
                        continue
                    rows = engine.rows(n, kind, samples)
                    s_ctx, s_mask = src.context(site.index, kind, [r % engine.batch for r in rows]) if rows else (None, None)
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
            new_ctx, new_mask = ctx.clone(), None if mask is None else mask.clone()
            for rows, s_ctx, s_mask in steps:
                new_ctx[rows.to(ctx.device)] = s_ctx.to(ctx.device, ctx.dtype)
                if new_mask is not None:
                    new_mask[rows.to(ctx.device)] = s_mask.to(new_mask.device, new_mask.dtype)
            kwargs = dict(kwargs)
            kwargs["encoder_hidden_states"] = new_ctx
            if new_mask is not None:
                kwargs[mask_key] = new_mask
            return args, kwargs

        return hook


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
        raise ValueError(
            f"site {site.name}: the source context has {s} tokens but the generation's has {length}, and this "
            "family passes no attention mask to cross-attention, so padding would change the result; encode the "
            "source prompts so that they have the same token length as the generation's"
        )
    keep = _keep_mask(mask, ctx)
    if s > length:
        if keep[:, length:].any():
            raise ValueError(
                f"site {site.name}: the source context has {s - int((~keep).sum(1).min())} unmasked tokens, more "
                f"than the {length} the generation attends to"
            )
        ctx, keep = ctx[:, :length], keep[:, :length]
    else:
        pad = length - s
        ctx = torch.cat([ctx, ctx.new_zeros(ctx.shape[0], pad, ctx.shape[2])], 1)
        keep = torch.cat([keep, keep.new_zeros(keep.shape[0], pad)], 1)
    return ctx, _mask_as(keep, target_mask)


class Capture(Intervention):
    """Record site outputs (for CAA, eq. 2, and the SAE activation store).

    sites: site indices (all by default).
    rows: guidance copy recorded, "cond" by default.
    reduce: "frames" averages over the family's frame positions -> (batch, dim) per call;
        None keeps the full output (batch, tokens, dim).
    per_step: keep one record per denoiser call (a list) instead of the mean over calls.
    sink: optional callable ``sink(site_index, step, timestep, tensor)`` that receives each record
        instead of keeping it, for streaming to disk.

    After the context exits, ``result[site_index]`` holds a tensor (pooled) or a list of tensors (per
    step), on the CPU in float32, rows in sample order.
    """

    def __init__(self, sites=None, rows: str = "cond", reduce: str | None = "frames", per_step: bool = False,
                 sink: Callable[[int, int, float | None, torch.Tensor], None] | None = None):
        if rows not in ROW_KINDS:
            raise ValueError(f"rows must be one of {ROW_KINDS}; got {rows!r}")
        if reduce not in ("frames", None):
            raise ValueError(f"reduce must be 'frames' or None; got {reduce!r}")
        self.sites, self.which, self.reduce, self.per_step, self.sink = sites, rows, reduce, per_step, sink
        self.result: dict[int, Any] = {}
        self._count: dict[int, int] = {}
        self.timesteps: list[float | None] = []

    def install(self, engine: Engine):
        handles, chosen = [], _as_site_list(engine.model, self.sites)
        self._first_site = chosen[0]
        for idx in chosen:
            site = engine.model.sites[idx]
            handles.append(site.module.register_forward_hook(self._make_hook(engine, site)))
        return handles

    def _make_hook(self, engine: Engine, site: Site):
        frames = engine.model.frame_slice(site)

        def hook(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            rows = engine.rows(out.shape[0], self.which)
            rec = out[rows].detach()
            if self.reduce == "frames":
                rec = rec[:, frames].float().mean(dim=1)
            rec = rec.float().cpu()
            if site.index == self._first_site:
                self.timesteps.append(engine.timestep)
            if self.sink is not None:
                self.sink(site.index, engine.step, engine.timestep, rec)
            elif self.per_step:
                self.result.setdefault(site.index, []).append(rec)
            else:
                n = self._count.get(site.index, 0)
                prev = self.result.get(site.index)
                self.result[site.index] = rec if prev is None else prev + (rec - prev) / (n + 1)
                self._count[site.index] = n + 1
            return None

        return hook


class AddVector(Intervention):
    """Add a vector to site outputs: ``h' = h + alpha * v`` (eq. 8), optionally ``ReNorm`` (eq. 3).

    vectors: ``{site_index: tensor (dim,)}``, or ``(steps, dim)`` for one direction per denoising step
        (row ``i`` is used at the ``i``-th denoiser call of the generation).
    alpha: steering strength, one float or one per sample of the batch.
    renorm: restore each frame's L2 norm over the feature axis after adding (eq. 3).
    rows: guidance copy steered, "cond" by default: steering only the conditional prediction moves the
        guided output along ``guidance * alpha * v``, as CFG amplifies the conditional branch; "all" also
        shifts the unconditional branch, so the guidance difference no longer carries the vector.
    samples: which samples of the batch are steered (all by default).
    window: optional inclusive ``(t_min, t_max)`` in the denoiser's timestep units; outside, no change.

    Only the family's frame positions are changed (Stable Audio's prepended global token is left as is).
    ``alpha == 0`` is the identity and installs nothing, so it is bit-identical to a plain run.
    """

    def __init__(self, vectors: dict[int, torch.Tensor], alpha: float | Sequence[float] = 1.0, renorm: bool = False,
                 rows: str = "cond", samples: Sequence[int] | None = None,
                 window: tuple[float, float] | None = None):
        if rows not in ROW_KINDS:
            raise ValueError(f"rows must be one of {ROW_KINDS}; got {rows!r}")
        if not vectors:
            raise ValueError("AddVector needs at least one {site_index: vector}")
        alphas = torch.as_tensor(alpha, dtype=torch.float64)
        if alphas.ndim > 1:
            raise ValueError(f"alpha must be a number or one number per sample; got shape {tuple(alphas.shape)}")
        _check_finite("alpha", alphas)
        for idx, v in vectors.items():
            _check_finite(f"steering vector for site {idx}", v)
        if window is not None:
            lo, hi = window
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
                raise ValueError(f"window must be finite (t_min, t_max) with t_min <= t_max; got {window!r}")
        self.vectors, self.alphas, self.renorm = vectors, alphas, renorm
        self.which, self.samples, self.window = rows, samples, window

    def install(self, engine: Engine):
        model, batch = engine.model, engine.batch
        if self.alphas.ndim == 1 and len(self.alphas) != batch:
            raise ValueError(f"got {len(self.alphas)} alphas for a batch of {batch} prompts")
        alphas = self.alphas.expand(batch) if self.alphas.ndim == 0 else self.alphas
        samples = list(range(batch)) if self.samples is None else list(self.samples)
        for s in samples:
            if not 0 <= s < batch:
                raise IndexError(f"sample {s} is out of range for a batch of {batch}")
        samples = [s for s in samples if alphas[s] != 0]
        handles = []
        for idx, vec in self.vectors.items():
            (idx,) = _as_site_list(model, [idx])
            site = model.sites[idx]
            vec = torch.as_tensor(vec)
            if vec.ndim not in (1, 2) or vec.shape[-1] != site.dim:
                raise ValueError(
                    f"steering vector for site {idx} ({site.name}) has shape {tuple(vec.shape)}; "
                    f"the site's output width is {site.dim}, so expected ({site.dim},) or (steps, {site.dim})"
                )
            if samples:
                handles.append(site.module.register_forward_hook(self._make_hook(engine, site, vec, alphas, samples)))
        return handles

    def _make_hook(self, engine: Engine, site: Site, vec: torch.Tensor, alphas: torch.Tensor, samples: list[int]):
        frames = engine.model.frame_slice(site)
        plans: dict[tuple, tuple] = {}  # per (rows, dtype, device): row index and per-row alphas, built once

        def plan(h: torch.Tensor):
            key = (h.shape[0], h.dtype, h.device)
            if key not in plans:
                rows = engine.rows(h.shape[0], self.which, samples)
                a = alphas[[r % engine.batch for r in rows]].to(h.device, h.dtype).view(-1, 1, 1)
                plans[key] = (_contiguous(rows), a)
            return plans[key]

        def hook(module, args, output):
            if not _in_window(engine, self.window):
                return None
            is_tuple = isinstance(output, tuple)
            h = output[0] if is_tuple else output
            v = vec
            if vec.ndim == 2:
                if engine.step >= len(vec):
                    raise ValueError(
                        f"the steering vector for site {site.index} holds {len(vec)} per-step directions; "
                        f"this generation reached step {engine.step + 1}: generate with {len(vec)} steps"
                    )
                v = vec[engine.step]
            rows, a = plan(h)
            # the site's output is a fresh tensor: edit it in place unless autograd may need it
            out = h.clone() if torch.is_grad_enabled() else h
            old = out[rows, frames]
            new = old + a * v.to(h.device, h.dtype)
            if self.renorm:
                new = renorm(new, old)
            out[rows, frames] = new
            return (out, *output[1:]) if is_tuple else out

        return hook


def _contiguous(rows: list[int]) -> slice | list[int]:
    """A slice for a run of consecutive rows (indexing then gives views, not copies), else the list."""
    if rows and rows == list(range(rows[0], rows[-1] + 1)):
        return slice(rows[0], rows[-1] + 1)
    return rows


def check_hookable(model: "AudioModel") -> None:
    """Refuse a compiled denoiser: hooks registered after ``torch.compile`` are silently ignored."""
    den = model.denoiser
    compiled = isinstance(den, torch._dynamo.eval_frame.OptimizedModule) or getattr(den, "_compiled_call_impl", None)
    if not compiled:
        compiled = any(getattr(s.module, "_compiled_call_impl", None) for s in model.sites)
    if compiled:
        raise RuntimeError(
            f"the denoiser of {model.name} is compiled with torch.compile; hooks added after compiling are silently "
            "ignored, so tada refuses it. Wrap the uncompiled pipeline with tada.wrap(pipe) (compile after your "
            "interventions are in place, if at all)."
        )


@contextmanager
def intervene(model: "AudioModel", batch: int, interventions: Sequence[Intervention] = ()) -> Iterator[Engine]:
    """Install interventions for one generation of ``batch`` prompts; every hook is removed on exit,
    also when the body raises."""
    check_hookable(model)
    engine = Engine(model, batch)
    handles = [model.denoiser.register_forward_pre_hook(engine._on_denoiser, with_kwargs=True)]
    try:
        for iv in interventions:
            if not isinstance(iv, Intervention):
                raise TypeError(f"interventions must be PatchContext, Capture or AddVector; got {type(iv).__name__}")
            handles += iv.install(engine)
        yield engine
    finally:
        for h in handles:
            h.remove()

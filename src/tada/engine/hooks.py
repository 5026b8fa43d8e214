"""The intervention engine: plain torch module hooks on cross-attention sites, in one context manager.

This folder is the only place in tada that registers torch hooks. A *site* is one cross-attention module
of the denoiser (:mod:`tada.engine.sites`). Its output is exactly what is added to the residual stream
(paper, eq. 1), so every intervention acts on that output or on the context the module attends to:

* :class:`~tada.engine.patch.PatchContext` rewrites rows of a site's ``encoder_hidden_states`` (and mask):
  keys and values are ``c W_K`` and ``c W_V`` (eq. 1), so this is the activation patching of sec. 3;
  :class:`~tada.engine.patch.Record` records those contexts and can stop the generation once every site
  has been seen (how a model encodes prompts);
* :class:`Capture` records site outputs (full, or averaged over frames; per step or pooled; streamed);
* :class:`AddVector` returns ``h + alpha * v``, optionally re-normalised per frame (eq. 3): CAA steering
  (eq. 2-3) and SAE steering (eq. 8) are both this.

Each generation carries its own state (:class:`Generation`): the batch, the duration (on which a site's
frame positions depend), the current timestep and step. Rows are resolved at each call from the batch size
the denoiser actually receives and the model's guidance layout, so a pipeline whose batch size changes
across steps (ACE-Step 1.5's cfg interval) is handled. Timestep windows read the timestep from the
denoiser's own call, never from counting calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from tada.engine.protocol import HookableModel
from tada.engine.sites import Copy, Site, check_copy, resolve_site, resolve_sites
from tada.errors import TadaError


def renorm(new: torch.Tensor, old: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Eq. 3: ``ReNorm(h', h) = h' / ||h'||_2 * ||h||_2``, the L2 norm taken per frame over the feature axis."""
    return new * (old.norm(dim=-1, keepdim=True) / new.norm(dim=-1, keepdim=True).clamp_min(eps))


def _check_finite(name: str, value: torch.Tensor | float) -> None:
    t = torch.as_tensor(value)
    if not torch.isfinite(t).all():
        raise TadaError(f"{name} must be finite; got a value with NaN or inf")


def sample_strengths(alpha, per_site: dict, what: str) -> torch.Tensor:
    """`alpha` (one number or one per sample) as a float64 tensor, after checking it and the per-site tensors
    of an intervention (`what` names them in messages) are finite."""
    alphas = torch.as_tensor(alpha, dtype=torch.float64)
    if alphas.ndim > 1:
        raise TadaError(f"alpha must be a number or one number per sample; got shape {tuple(alphas.shape)}")
    _check_finite("alpha", alphas)
    for idx, t in per_site.items():
        _check_finite(f"{what} for site {idx}", t)
    return alphas


def steered_samples(gen: "Generation", alphas: torch.Tensor, samples: Sequence[int] | None
                    ) -> tuple[torch.Tensor, list[int]]:
    """One strength per sample of the generation, and the chosen samples (all by default) whose strength is not
    0 (a sample at 0 is left untouched, bit for bit)."""
    batch = gen.batch
    if alphas.ndim == 1 and len(alphas) != batch:
        raise TadaError(f"got {len(alphas)} alphas for a batch of {batch} prompts")
    alphas = alphas.expand(batch) if alphas.ndim == 0 else alphas
    samples = list(range(batch)) if samples is None else list(samples)
    for s in samples:
        if not 0 <= s < batch:
            raise TadaError(f"sample {s} is out of range for a batch of {batch}")
    return alphas, [s for s in samples if alphas[s] != 0]


class Generation:
    """The state of one generation under interventions: model, batch, duration, current timestep and step."""

    def __init__(self, model: HookableModel, batch: int, duration: float | None = None):
        self.model = model
        self.batch = batch
        self.duration = duration
        self.timestep: float | None = None
        self.step = -1
        #: conditional copies of the batch appended to the current denoiser call by
        #: :class:`~tada.engine.passes.ExtraPasses` (0 outside such a call)
        self.extra_copies = 0

    def rows(self, n_rows: int, copy: Copy, samples: Sequence[int] | None = None) -> list[int]:
        """Denoiser rows of guidance copy `copy` for the chosen samples. Extra conditional copies appended
        to this call (:attr:`extra_copies`) follow the pipeline's own rows and count as "cond"."""
        if not self.extra_copies:
            return self.model.guidance_layout.rows(n_rows, self.batch, copy, samples)
        base = n_rows - self.extra_copies * self.batch
        rows = self.model.guidance_layout.rows(base, self.batch, copy, samples)
        if copy in ("cond", "all"):
            chosen = range(self.batch) if samples is None else samples
            rows += [base + j * self.batch + s for j in range(self.extra_copies) for s in chosen]
        return rows

    def frames(self, site: Site) -> slice:
        """The positions of `site`'s output that are audio frames in this generation."""
        return self.model.frame_slice(site, self.duration)

    def sites(self, spec) -> list[int]:
        return resolve_sites(self.model.sites, spec, self.model.name)

    def _on_denoiser(self, module, args, kwargs):
        self.timestep = self.model.timestep_of(args, kwargs)
        self.step += 1


class Intervention:
    """Base class: `install` registers hooks on site modules and returns their handles."""

    def install(self, gen: Generation) -> list[torch.utils.hooks.RemovableHandle]:
        raise NotImplementedError


class StopGeneration(Exception):
    """Raised by an intervention that has all it needs; :func:`intervene` ends the generation quietly."""


def _in_window(gen: Generation, window: tuple[float, float] | None) -> bool:
    if window is None:
        return True
    if gen.timestep is None:
        raise RuntimeError("a timestep window needs the denoiser's timestep, which was not seen")
    lo, hi = window
    return lo <= gen.timestep <= hi


class Capture(Intervention):
    """Record site outputs (for CAA, eq. 2, and the SAE activation store).

    sites: site indices or names (all by default).
    copy: guidance copy recorded, "cond" by default.
    reduce: "frames" averages over the family's frame positions -> (batch, dim) per call;
        None keeps the full output (batch, tokens, dim).
    per_step: keep one record per denoiser call (a list) instead of the mean over calls.
    sink: optional callable ``sink(site_index, step, timestep, tensor)`` that receives each record
        instead of keeping it, for streaming to disk.

    After the context exits, ``result[site_index]`` holds a tensor (pooled) or a list of tensors (per
    step), on the CPU in float32, rows in sample order; ``frames[site_index]`` is the slice of a full
    record's positions that are audio frames in that generation.
    """

    def __init__(self, sites=None, copy: Copy = "cond", reduce: str | None = "frames", per_step: bool = False,
                 sink: Callable[[int, int, float | None, torch.Tensor], None] | None = None):
        if reduce not in ("frames", None):
            raise TadaError(f"reduce must be 'frames' or None; got {reduce!r}")
        self.sites, self.copy, self.reduce, self.per_step, self.sink = sites, check_copy(copy), reduce, per_step, sink
        self.result: dict[int, Any] = {}
        self.frames: dict[int, slice] = {}
        self._count: dict[int, int] = {}
        self.timesteps: list[float | None] = []

    def install(self, gen: Generation):
        handles, chosen = [], gen.sites(self.sites)
        self._first_site = chosen[0]
        for idx in chosen:
            site = gen.model.sites[idx]
            self.frames[idx] = gen.frames(site)
            handles.append(site.module.register_forward_hook(self._make_hook(gen, site)))
        return handles

    def _make_hook(self, gen: Generation, site: Site):
        frames = self.frames[site.index]

        def hook(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            # the pipeline's own rows only: extra passes appended to the call (ExtraPasses) are not recorded
            rows = gen.model.guidance_layout.rows(out.shape[0] - gen.extra_copies * gen.batch, gen.batch, self.copy)
            rec = out[rows].detach()
            if self.reduce == "frames":
                rec = rec[:, frames].float().mean(dim=1)
            rec = rec.float().cpu()
            if site.index == self._first_site:
                self.timesteps.append(gen.timestep)
            if self.sink is not None:
                self.sink(site.index, gen.step, gen.timestep, rec)
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

    vectors: ``{site (index or name): tensor (dim,)}``, or ``(steps, dim)`` for one direction per denoising step
        (row ``i`` is used at the ``i``-th denoiser call of the generation).
    alpha: steering strength, one float or one per sample of the batch.
    renorm: restore each frame's L2 norm over the feature axis after adding (eq. 3).
    copy: guidance copy steered, "cond" by default: steering only the conditional prediction moves the
        guided output along ``guidance * alpha * v``, as CFG amplifies the conditional branch; "all" also
        shifts the unconditional branch, so the guidance difference no longer carries the vector.
    samples: which samples of the batch are steered (all by default).
    window: optional inclusive ``(t_min, t_max)`` in the denoiser's timestep units; outside, no change.

    Only the family's frame positions are changed (Stable Audio's prepended global token is left as is).
    ``alpha == 0`` is the identity and installs nothing, so it is bit-identical to a plain run.
    """

    def __init__(self, vectors: dict[int, torch.Tensor], alpha: float | Sequence[float] = 1.0, renorm: bool = False,
                 copy: Copy = "cond", samples: Sequence[int] | None = None,
                 window: tuple[float, float] | None = None):
        if not vectors:
            raise TadaError("AddVector needs at least one {site: vector}")
        alphas = sample_strengths(alpha, vectors, "steering vector")
        if window is not None:
            lo, hi = window
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
                raise TadaError(f"window must be finite (t_min, t_max) with t_min <= t_max; got {window!r}")
        self.vectors, self.alphas, self.renorm = vectors, alphas, renorm
        self.copy, self.samples, self.window = check_copy(copy), samples, window

    def install(self, gen: Generation):
        model = gen.model
        alphas, samples = steered_samples(gen, self.alphas, self.samples)
        handles = []
        for idx, vec in self.vectors.items():
            site = model.sites[resolve_site(model.sites, idx, model.name)]
            vec = torch.as_tensor(vec)
            if vec.ndim not in (1, 2) or vec.shape[-1] != site.dim:
                raise TadaError(
                    f"steering vector for site {site.index} ({site.name}) has shape {tuple(vec.shape)}; "
                    f"the site's output width is {site.dim}, so expected ({site.dim},) or (steps, {site.dim})"
                )
            if samples:
                handles.append(site.module.register_forward_hook(self._make_hook(gen, site, vec, alphas, samples)))
        return handles

    def _make_hook(self, gen: Generation, site: Site, vec: torch.Tensor, alphas: torch.Tensor, samples: list[int]):
        frames = gen.frames(site)
        plans: dict[tuple, tuple] = {}  # per (rows, dtype, device): row index and per-row alphas, built once

        def plan(h: torch.Tensor):
            key = (h.shape[0], h.dtype, h.device)
            if key not in plans:
                rows = gen.rows(h.shape[0], self.copy, samples)
                a = alphas[[r % gen.batch for r in rows]].to(h.device, h.dtype).view(-1, 1, 1)
                plans[key] = (_contiguous(rows), a)
            return plans[key]

        def hook(module, args, output):
            if not _in_window(gen, self.window):
                return None
            is_tuple = isinstance(output, tuple)
            h = output[0] if is_tuple else output
            v = vec
            if vec.ndim == 2:
                if gen.step >= len(vec):
                    raise TadaError(
                        f"the steering vector for site {site.index} holds {len(vec)} per-step directions; "
                        f"this generation reached step {gen.step + 1}: generate with {len(vec)} steps"
                    )
                v = vec[gen.step]
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


class FirstNonFinite(Intervention):
    """Find where a generation first goes non-finite: ``found`` becomes ``(step, site_index, rows)`` at the
    first site output holding NaN or inf (a diagnostic run: it synchronises at every site call)."""

    def __init__(self):
        self.found: tuple[int, int, list[int]] | None = None

    def install(self, gen: Generation):
        def make(site: Site):
            def hook(module, args, output):
                out = output[0] if isinstance(output, tuple) else output
                if self.found is None:
                    bad = ~torch.isfinite(out.reshape(out.shape[0], -1)).all(dim=1)
                    if bad.any():
                        self.found = (gen.step, site.index, bad.nonzero().flatten().tolist())
            return hook

        return [s.module.register_forward_hook(make(s)) for s in gen.model.sites]


def _contiguous(rows: list[int]) -> slice | list[int]:
    """A slice for a run of consecutive rows (indexing then gives views, not copies), else the list."""
    if rows and rows == list(range(rows[0], rows[-1] + 1)):
        return slice(rows[0], rows[-1] + 1)
    return rows


def check_hookable(model: HookableModel) -> None:
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
def intervene(model: HookableModel, batch: int, interventions: Sequence[Intervention] = (),
              duration: float | None = None) -> Iterator[Generation]:
    """Install interventions for one generation of ``batch`` prompts of ``duration`` seconds; every hook is
    removed on exit, also when the body raises. A :class:`StopGeneration` raised inside ends the body
    quietly (an intervention that has all it needs stops the pipeline)."""
    check_hookable(model)
    gen = Generation(model, batch, duration)
    handles = [model.denoiser.register_forward_pre_hook(gen._on_denoiser, with_kwargs=True)]
    try:
        for iv in interventions:
            if not isinstance(iv, Intervention):
                raise TadaError(f"interventions must be tada.engine interventions; got {type(iv).__name__}")
            handles += iv.install(gen)
        yield gen
    except StopGeneration:
        pass
    finally:
        for h in handles:
            h.remove()


def probe_context_modules(denoiser: nn.Module, run: Callable[[], Any]) -> list[str]:
    """Names of the attention modules of `denoiser` (those with a ``to_k``/``k_proj`` projection) that receive
    ``encoder_hidden_states=`` during its first call, in call order. `run` starts a generation; it is
    stopped at the end of that first denoiser call, so the probe costs one partial denoising step."""
    called: list[str] = []

    def make(name):
        def pre(module, args, kwargs):
            if kwargs.get("encoder_hidden_states") is not None and name not in called:
                called.append(name)
        return pre

    def stop(module, args, output):
        raise StopGeneration

    handles = [m.register_forward_pre_hook(make(n), with_kwargs=True) for n, m in denoiser.named_modules()
               if n and any(isinstance(getattr(m, p, None), nn.Linear) for p in ("to_k", "k_proj"))]
    handles.append(denoiser.register_forward_hook(stop))
    try:
        with torch.no_grad():
            run()
    except StopGeneration:
        pass
    finally:
        for h in handles:
            h.remove()
    return called

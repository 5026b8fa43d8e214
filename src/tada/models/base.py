"""The AudioModel contract: one adapter per family over a real diffusers-style pipeline.

An adapter tells the hook engine five things about its pipeline, and nothing else is family-specific:

* ``denoiser``: the module called once per denoising step (``pipe.transformer`` or ``pipe.unet``);
* ``sites``: its cross-attention modules in *execution* order (:class:`tada.engine.hooks.Site`);
* ``guidance_layout``: how guidance copies are stacked in the denoiser batch;
* ``frame_slice(site, duration)``: which positions of a site's output sequence are audio frames;
* ``_pipeline_call(prompts, generators, steps, duration, guidance)``: run the pipeline, return (B, C, N).

A new family (see :func:`tada.wrap`) provides these; the rest (encoding, patching, capture, steering,
generation) is shared.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn

from tada.audio import Audio
from tada.engine import (
    Conditioning,
    FirstNonFinite,
    GuidanceLayout,
    Intervention,
    Record,
    Site,
    intervene,
)
from tada.errors import NonFiniteAudioError, TadaError


def check_prompts(prompts: str | Sequence[str]) -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise TadaError("the prompt list is empty; pass at least one prompt")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TadaError(f"prompts must be strings; got {type(p).__name__}: {p!r}")
        if not p.strip():
            raise TadaError(f"prompt {i} is empty; every prompt needs some text")
    return prompts


def check_seeds(seeds: int | Sequence[int], n: int) -> list[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return [seeds] * n
    seeds = list(seeds)
    if len(seeds) != n:
        raise TadaError(f"got {len(seeds)} seeds for {n} prompts; pass one seed per prompt (or one int for all)")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int):
            raise TadaError(f"seeds must be integers; got {s!r}")
    return seeds


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """``seeds`` given as a count (``3`` -> ``[0, 1, 2]``) or as the seeds themselves."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise TadaError(f"a seed count must be >= 1; got {seeds}")
        return list(range(seeds))
    out = list(seeds)
    if not out:
        raise TadaError("the seed list is empty")
    return check_seeds(out, len(out))


class AudioModel:
    """A text-to-music diffusion pipeline seen through its cross-attention sites.

    Subclasses set ``name``, ``pipe``, ``denoiser``, ``sites``, ``guidance_layout``, ``mask_kwarg``,
    ``sample_rate``, ``default_steps``, ``default_guidance``, and implement ``_pipeline_call``.
    """

    name: str = "model"
    guidance_layout: GuidanceLayout = GuidanceLayout(("uncond", "cond"))
    mask_kwarg: str | None = "attention_mask"
    default_steps: int = 50
    default_guidance: float = 7.0
    default_duration: float | None = None

    def __init__(self, pipe, denoiser: nn.Module, sites: list[Site], sample_rate: int):
        self.pipe = pipe
        self.denoiser = denoiser
        self.sites = sites
        self.sample_rate = int(sample_rate)
        if not sites:
            raise TadaError(f"{self.name}: found no cross-attention sites in {type(denoiser).__name__}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, sites={len(self.sites)}, sample_rate={self.sample_rate})"

    # --- family hooks -------------------------------------------------------------------------
    def frame_slice(self, site: Site, duration: float | None) -> slice:
        """Positions of a site's output sequence that are audio frames in a generation of `duration` seconds
        (None: the model's default); all positions unless overridden."""
        return slice(None)

    def frame_seconds(self, site: Site, n_frames: int, duration: float | None = None) -> torch.Tensor:
        """(n_frames,) start time in seconds of each audio position of a site's output (those of
        :meth:`frame_slice`) in a generation of `duration` seconds: evenly over the clip unless the family
        knows its hop."""
        duration = self.default_duration if duration is None else float(duration)
        if duration is None:
            raise TadaError(f"{self.name} has no default duration; give one")
        return torch.arange(n_frames, dtype=torch.float64) * (duration / n_frames)

    def timestep_of(self, args: tuple, kwargs: dict) -> float | None:
        """The denoiser call's timestep as a float (first row), read from its arguments."""
        t = kwargs.get("timestep")
        if t is None and len(args) > 1:
            t = args[1]
        if t is None:
            return None
        t = torch.as_tensor(t)
        return float(t.reshape(-1)[0]) if t.numel() else None

    def _pipeline_call(self, prompts: list[str], generators: list[torch.Generator], steps: int,
                       duration: float | None, guidance: float) -> torch.Tensor:
        raise NotImplementedError

    def common_text_length(self, prompts: Sequence[str], duration: float | None = None):
        """A context in which every prompt batch is encoded at the token length of the longest of `prompts`,
        as if they all shared one pipeline batch. Families whose cross-attention sees padding (no mask)
        override it, so that the two prompts of a counterfactual pair give contexts of one length and can be
        patched into each other; where a mask hides padding it does nothing."""
        return contextlib.nullcontext()

    # --- shared behaviour ---------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    def _generators(self, seeds: list[int]) -> list[torch.Generator]:
        return [torch.Generator("cpu").manual_seed(s) for s in seeds]

    def _settings(self, steps, duration, guidance):
        steps = self.default_steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise TadaError(f"steps must be a positive integer; got {steps!r}")
        guidance = self.default_guidance if guidance is None else float(guidance)
        if not torch.isfinite(torch.tensor(guidance)) or guidance < 0:
            raise TadaError(f"guidance must be a finite number >= 0; got {guidance!r}")
        duration = self.default_duration if duration is None else float(duration)
        if duration is not None and not duration > 0:
            raise TadaError(f"duration must be a positive number of seconds; got {duration!r}")
        return steps, duration, guidance

    def encode(self, prompts: str | Sequence[str], guidance: float | None = None,
               duration: float | None = None) -> Conditioning:
        """Each site's context for `prompts`, exactly as the pipeline builds it (eq. 1's ``c``).

        Runs the pipeline until every site has been called once, recording the keyword
        ``encoder_hidden_states`` (and mask) each site receives, then stops: no denoising step finishes
        and nothing is decoded.
        """
        prompts = check_prompts(prompts)
        steps, duration, guidance = self._settings(None, duration, guidance)
        record = Record(stop=True)
        with torch.no_grad(), intervene(self, len(prompts), [record], duration=duration):
            self._pipeline_call(prompts, self._generators([0] * len(prompts)), steps, duration, guidance)
        if not record.contexts:
            raise RuntimeError(f"{self.name}: the pipeline finished without calling any cross-attention site")
        return Conditioning(prompts, record.contexts)

    def generate(self, prompts: str | Sequence[str], seeds: int | Sequence[int] = 0, steps: int | None = None,
                 duration: float | None = None, guidance: float | None = None,
                 interventions: Sequence[Intervention] = (), steer: Sequence = ()) -> Audio:
        """Generate one waveform per prompt, row ``b`` from ``torch.Generator().manual_seed(seeds[b])``.

        interventions: :mod:`tada.engine.hooks` objects (PatchContext, Capture, AddVector).
        steer: steering artifacts at a strength, ``[artifact.at(alpha), ...]``, of any method (see
            :mod:`tada.methods.base`): objects with ``interventions(model, prompts, steps, duration)``; several
            compose (their interventions act one after the other at each site).
        """
        prompts = check_prompts(prompts)
        seeds = check_seeds(seeds, len(prompts))
        steps, duration, guidance = self._settings(steps, duration, guidance)
        if not isinstance(steer, (list, tuple)):
            steer = [steer]
        # prompt-level steers patch in other prompts' contexts: where the family pads text to its batch, the
        # generation is encoded at the length of all of them (as one pipeline batch of them would be)
        others = [p for s in steer for p in (s.text_prompts(prompts) if hasattr(s, "text_prompts") else [])]
        length = self.common_text_length(prompts + others, duration) if others else contextlib.nullcontext()
        with length:
            ivs = list(interventions) + [iv for s in steer
                                         for iv in s.interventions(self, prompts, steps, duration)]
            with torch.no_grad(), intervene(self, len(prompts), ivs, duration=duration):
                wav = self._pipeline_call(prompts, self._generators(seeds), steps, duration, guidance)
        if not torch.isfinite(wav).all():
            raise self._non_finite(prompts, seeds, steps, duration, guidance, ivs, steer)
        return Audio(wav.detach().float().cpu(), self.sample_rate)

    def _non_finite(self, prompts, seeds, steps, duration, guidance, ivs, steer) -> NonFiniteAudioError:
        """The error for a generation that went non-finite, located by a second, watched run."""
        watch = FirstNonFinite()
        with torch.no_grad(), intervene(self, len(prompts), [*ivs, watch], duration=duration):
            self._pipeline_call(prompts, self._generators(seeds), steps, duration, guidance)
        strengths = ", ".join(f"alpha {s.alpha}" for s in steer if hasattr(s, "alpha")) or "no steering"
        if watch.found is None:
            where = "every site output stayed finite, so the decoder made it non-finite"
        else:
            step, site, rows = watch.found
            where = (f"activations first went non-finite at site {site} ({self.sites[site].name}), denoising "
                     f"step {step + 1} of {steps}, denoiser rows {rows}")
        return NonFiniteAudioError(f"{self.name} generated non-finite audio ({strengths}): {where}; lower the "
                                   "strength or steer fewer sites")


def linear_width(module: nn.Module, names: Sequence[str], attr: str) -> int:
    """`attr` (in_features/out_features) of the first linear submodule found under one of `names`."""
    for n in names:
        sub = module
        for part in n.split("."):
            sub = getattr(sub, part, None) if not part.isdigit() else (sub[int(part)] if sub is not None else None)
            if sub is None:
                break
        if isinstance(sub, nn.Linear):
            return getattr(sub, attr)
    raise TadaError(f"cannot find any of {list(names)} in {type(module).__name__}")


def make_sites(denoiser: nn.Module, names: Sequence[str]) -> list[Site]:
    """Sites for module names given in execution order; widths read from their projections."""
    modules = dict(denoiser.named_modules())
    sites = []
    for i, n in enumerate(names):
        if n not in modules:
            raise TadaError(f"no module named {n!r} in {type(denoiser).__name__}")
        m = modules[n]
        dim = linear_width(m, ("to_out.0", "o_proj", "out_proj"), "out_features")
        ctx = linear_width(m, ("to_k", "k_proj"), "in_features")
        sites.append(Site(i, n, m, dim, ctx))
    return sites

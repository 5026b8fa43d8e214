"""Any diffusers-style audio pipeline whose cross-attention modules can be found by a probe.

The rule: the denoiser is ``pipe.transformer`` or ``pipe.unet``; its sites are the attention modules
(those with a ``to_k``/``k_proj`` projection) that receive ``encoder_hidden_states=`` as a keyword
during the first denoiser call of a one-prompt probe generation, in the order they are called. The
probe stops there, so it costs one partial denoising step.

What the family must provide besides: a ``__call__(prompt=, generator=, num_inference_steps=,
guidance_scale=)`` returning an object with ``.audios`` (B, C, N) or (B, N); its guidance layout
(``guidance_order``, diffusers' usual ``("uncond", "cond")`` by default); which output positions are
frames (all by default); and the keyword that sets the duration, if any. Families with a dedicated
adapter (Stable Audio, AudioLDM2, ACE-Step, the toy) know more, e.g. Stable Audio's global token.
"""

from __future__ import annotations

import torch

from tada.engine import GuidanceLayout, Site, probe_context_modules
from tada.errors import TadaError
from tada.models.base import AudioModel, make_sites


def _sample_rate(pipe) -> int:
    for owner, attr in (("vae", "sampling_rate"), ("vocoder", "sampling_rate")):
        module = getattr(pipe, owner, None)
        value = getattr(module, attr, None) or getattr(getattr(module, "config", None), attr, None)
        if value:
            return int(value)
    if getattr(pipe, "sample_rate", None):
        return int(pipe.sample_rate)
    raise TadaError(f"cannot tell the sample rate of a {type(pipe).__name__}; pass sample_rate=")


class GenericModel(AudioModel):
    name = "generic"

    def __init__(self, pipe, name: str | None = None, guidance_order: tuple[str, ...] = ("uncond", "cond"),
                 frames: slice = slice(None), duration_kwarg: str | None = None, sample_rate: int | None = None,
                 default_steps: int = 50, default_guidance: float = 3.5, default_duration: float | None = None):
        den = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
        if den is None:
            raise TadaError(f"a {type(pipe).__name__} has neither .transformer nor .unet: no denoiser to hook")
        self.pipe, self.denoiser = pipe, den
        self.guidance_layout = GuidanceLayout(tuple(guidance_order))
        self._frames, self._duration_kwarg = frames, duration_kwarg
        self.default_steps, self.default_guidance = default_steps, default_guidance
        self.default_duration = default_duration
        if name:
            self.name = name
        super().__init__(pipe, den, make_sites(den, self._probe_sites()), sample_rate or _sample_rate(pipe))

    def _probe_sites(self) -> list[str]:
        """Attention modules given a context during the first denoiser call, in call order."""
        called = probe_context_modules(self.denoiser, lambda: self._pipeline_call(
            ["a song"], [torch.Generator().manual_seed(0)], 2, self.default_duration, self.default_guidance))
        if not called:
            raise TadaError(f"no attention module of {type(self.denoiser).__name__} received encoder_hidden_states= "
                            "during a probe generation: tada cannot find its cross-attention")
        return called

    def frame_slice(self, site: Site, duration: float | None) -> slice:
        return self._frames

    def _pipeline_call(self, prompts, generators, steps, duration, guidance) -> torch.Tensor:
        extra = {self._duration_kwarg: duration} if self._duration_kwarg and duration is not None else {}
        out = self.pipe(prompt=prompts, generator=generators, num_inference_steps=steps, guidance_scale=guidance,
                        **extra)
        audio = torch.as_tensor(out.audios)
        return audio.unsqueeze(1) if audio.ndim == 2 else audio

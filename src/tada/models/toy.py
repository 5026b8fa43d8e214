"""The embedded default model: `tada.toy.model.ToyPipeline` (a small `StableAudioDiTModel` over log-mel).

Sites: ``transformer_blocks.{i}.attn2`` (site index = block index). Context: MiniLM token states padded
to a fixed length, with a boolean keep-mask passed to cross-attention as ``attention_mask``, so a
prompt's context never depends on its batch. Guidance: ``[uncond, cond]``. Frames: positions 1..T
(the DiT prepends one global token). Timestep: the flow time t in [0, 1], passed as ``timestep``.
"""

from __future__ import annotations

import torch

from tada.engine import GuidanceLayout, Site
from tada.errors import TadaError
from tada.models.base import AudioModel, make_sites


class ToyModel(AudioModel):
    name = "toy"
    guidance_layout = GuidanceLayout(("uncond", "cond"))
    mask_kwarg = "attention_mask"

    def __init__(self, pipe, name: str | None = None):
        den = pipe.transformer
        names = [f"transformer_blocks.{i}.attn2" for i in range(len(den.transformer_blocks))]
        super().__init__(pipe, den, make_sites(den, names), pipe.sample_rate)
        self.default_steps = getattr(pipe, "default_steps", 20)
        self.default_guidance = getattr(pipe, "default_guidance", 3.0)
        if name:
            self.name = name

    def frame_slice(self, site: Site, duration: float | None) -> slice:
        return slice(1, None)

    def frame_seconds(self, site, n_frames, duration=None):
        """Frame i of the DiT is mel frame i: i hops of the toy's STFT."""
        return torch.arange(n_frames, dtype=torch.float64) * (self.pipe.mel.hop / self.pipe.mel.sample_rate)

    def _pipeline_call(self, prompts, generators, steps, duration, guidance) -> torch.Tensor:
        clip = self.pipe.mel.num_samples / self.pipe.mel.sample_rate
        if duration is not None and abs(duration - clip) > 1e-6:
            raise TadaError(f"the toy model generates {clip:g} s clips only; got duration={duration}")
        return self.pipe(prompt=prompts, generator=generators, num_inference_steps=steps, guidance_scale=guidance)

"""Stable Audio Open 1.0 (`diffusers.StableAudioPipeline`, denoiser `StableAudioDiTModel`).

Sites: ``transformer_blocks.{i}.attn2``, i = 0..23 on the real checkpoint, site index = block index.
Context: T5 token states (padded to the tokenizer's max length, padding zeroed) and the two seconds
tokens, projected by ``cross_attention_proj``; the pipeline passes no cross-attention mask.
Guidance: the denoiser batch is ``[uncond, cond]``; the unconditional context is zeros.
Frames: the DiT prepends one global token (timestep + seconds) to the frames, so a site's output is
(B, 1 + T, D), and the DiT always runs its whole window (T = 1024 latent frames, 47.55 s) whatever
duration is asked for; frame averages and steering use the frames of the requested duration only,
positions 1..ceil(duration * sample_rate / hop_length).
Timestep: passed positionally as the denoiser's second argument.
"""

from __future__ import annotations

import math

import torch

from tada.engine import GuidanceLayout, Site
from tada.models.base import AudioModel, make_sites


class StableAudioModel(AudioModel):
    name = "stable-audio-open"
    guidance_layout = GuidanceLayout(("uncond", "cond"))
    mask_kwarg = "attention_mask"
    default_steps = 100
    default_guidance = 7.0

    def __init__(self, pipe, name: str | None = None):
        den = pipe.transformer
        names = [f"transformer_blocks.{i}.attn2" for i in range(len(den.transformer_blocks))]
        super().__init__(pipe, den, make_sites(den, names), pipe.vae.sampling_rate)
        if name:
            self.name = name
        # the paper's 10 s clips, or the longest the checkpoint can make if that is shorter
        longest = den.config.sample_size * pipe.vae.hop_length / pipe.vae.sampling_rate
        self.default_duration = min(10.0, longest)

    def frame_slice(self, site: Site, duration: float | None) -> slice:
        duration = duration or self.default_duration
        return slice(1, 1 + math.ceil(duration * self.sample_rate / self.pipe.vae.hop_length))

    def frame_seconds(self, site, n_frames, duration=None):
        """Frame i is latent frame i of the autoencoder: i hops of its downsampling."""
        return torch.arange(n_frames, dtype=torch.float64) * (self.pipe.vae.hop_length / self.sample_rate)

    def _pipeline_call(self, prompts, generators, steps, duration, guidance) -> torch.Tensor:
        out = self.pipe(
            prompt=prompts,
            num_inference_steps=steps,
            guidance_scale=guidance,
            audio_end_in_s=duration,
            generator=generators,
            output_type="pt",
        )
        return out.audios

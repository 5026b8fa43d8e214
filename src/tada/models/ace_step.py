"""ACE-Step 1.5 (`diffusers.AceStepPipeline`, denoiser `AceStepTransformer1DModel`).

Sites: ``layers.{i}.cross_attn`` (24 on the released checkpoints), site index = layer index.
Context: the condition encoder's packed lyrics + timbre + Qwen3 text states; no padding mask reaches
cross-attention, and the text is padded to the longest prompt of the batch, so a prompt's context
depends on its batch. A patch source of another token length is therefore refused (padding would
change the result); encode sources in a batch of the same token length.
Guidance (base and sft): the batch is ``[cond, null]`` and only inside ``cfg_interval``, so the
batch size changes across steps; turbo checkpoints never run guidance. Frames: every position (each
token is a patch of 2 latent frames). Timestep: the ``timestep`` keyword, flow time in [0, 1].
Lyrics: the pipeline does not broadcast a string to the batch, so one empty lyric per prompt is
passed (instrumental).
"""

from __future__ import annotations

import torch

from tada.hooks import GuidanceLayout
from tada.models.base import AudioModel, make_sites


class AceStepModel(AudioModel):
    name = "ace-step-1.5"
    guidance_layout = GuidanceLayout(("cond", "uncond"))
    mask_kwarg = "attention_mask"
    default_steps = 8
    default_guidance = 7.0
    default_duration = 30.0

    def __init__(self, pipe, name: str | None = None):
        den = pipe.transformer
        names = [f"layers.{i}.cross_attn" for i in range(len(den.layers))]
        super().__init__(pipe, den, make_sites(den, names), pipe.sample_rate)
        if getattr(pipe, "is_turbo", False):
            self.default_guidance = 1.0
        if name:
            self.name = name

    def _pipeline_call(self, prompts, generators, steps, duration, guidance) -> torch.Tensor:
        out = self.pipe(prompt=prompts, lyrics=[""] * len(prompts), audio_duration=duration,
                        num_inference_steps=steps, guidance_scale=guidance, generator=generators,
                        output_type="pt")
        return out.audios

"""AudioLDM2 (`diffusers.AudioLDM2Pipeline`, denoiser `AudioLDM2UNet2DConditionModel`).

Each attention level of the UNet holds three ``Transformer2DModel``s per layer: the first one's
``attn2`` is self-attention (called with no context), the second attends to the 8 vectors GPT-2
generates (no mask), the third to the Flan-T5 token states (mask passed as an additive bias
``(rows, 1, tokens)``, 0 = keep, -10000 = masked). Sites are the modules called with a context, in
execution order: down blocks, the mid block, then up blocks (``named_modules`` lists the mid block
last), i.e. ``{down,mid,up}_block(s).*.attentions.{3i+1, 3i+2}.transformer_blocks.0.attn2``; the
music checkpoint has 32 of them (the paper counts 64 cross-attention layers by a rule it does not
state; our index counts modules that attend to text, see docs/families.md for the mapping).
Guidance: ``[uncond, cond]``, the unconditional rows encode the empty prompt. Frames: every
position (latent cells, time-major). Timestep: positional, the DDIM step (0..999).
Batch dependence: T5 states are padded to the longest prompt of the batch (masked), and GPT-2 reads
that padding, so its 8 generated vectors, and thus the audio, change with the batch (about 6% relative
for a short prompt next to a long one). Compare rows generated in the same batch layout.
"""

from __future__ import annotations

import torch

from tada.engine import GuidanceLayout
from tada.models.base import AudioModel, make_sites

_BLOCK_ORDER = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}


def _execution_key(name: str) -> tuple:
    parts = name.split(".")
    block = _BLOCK_ORDER[parts[0]]
    nums = [int(p) for p in parts[1:] if p.isdigit()]
    return (block, *nums)


class AudioLDM2Model(AudioModel):
    name = "audioldm2-music"
    guidance_layout = GuidanceLayout(("uncond", "cond"))
    mask_kwarg = "attention_mask"
    default_steps = 200
    default_guidance = 3.5
    default_duration = 10.0

    def __init__(self, pipe, name: str | None = None):
        den = pipe.unet
        names = [
            n for n, m in den.named_modules()
            if n.endswith("transformer_blocks.0.attn2") and n.split(".")[0] in _BLOCK_ORDER
            and int(n.split("attentions.")[1].split(".")[0]) % 3 != 0
        ]
        super().__init__(pipe, den, make_sites(den, sorted(names, key=_execution_key)),
                         pipe.vocoder.config.sampling_rate)
        if name:
            self.name = name

    def frame_seconds(self, site, n_frames, duration=None):
        """The UNet's tokens are its (time, frequency) latent grid flattened row by row: token i lies in time row
        i // W, W being the frequency width at the site's resolution (the mel bins over the VAE's factor,
        halved at each UNet level below the first)."""
        duration = self.default_duration if duration is None else float(duration)
        block, index = site.name.split(".")[0], site.name.split(".")[1]
        levels = len(self.denoiser.down_blocks)
        level = {"down_blocks": lambda: int(index), "mid_block": lambda: levels - 1,
                 "up_blocks": lambda: levels - 1 - int(index)}[block]()
        width = max(self.pipe.vocoder.config.model_in_dim // self.pipe.vae_scale_factor >> level, 1)
        rows = -(-n_frames // width)
        return torch.div(torch.arange(n_frames), width, rounding_mode="floor").double() * (duration / rows)

    def _pipeline_call(self, prompts, generators, steps, duration, guidance) -> torch.Tensor:
        out = self.pipe(prompt=prompts, num_inference_steps=steps, guidance_scale=guidance,
                        audio_length_in_s=duration, generator=generators, output_type="pt")
        audio = torch.as_tensor(out.audios)
        return audio.unsqueeze(1) if audio.ndim == 2 else audio

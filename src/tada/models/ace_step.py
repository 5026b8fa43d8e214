"""ACE-Step 1.5 (`diffusers.AceStepPipeline`, denoiser `AceStepTransformer1DModel`).

Sites: ``layers.{i}.cross_attn`` (24 on the released checkpoints), site index = layer index.
Context: the condition encoder's packed lyrics + timbre + Qwen3 text states; no padding mask reaches
cross-attention (in the original ACE-Step code too), and the text is padded to the longest prompt of
the batch, so a prompt's context depends on its batch. A patch source of another token length is
therefore refused (padding would change the result); `common_text_length(prompts)` encodes every
batch at the length of the longest of `prompts`, exactly as one pipeline batch of them would, which
the localization sweep uses so that a pair's two prompts always fit.
Guidance (base and sft): the batch is ``[cond, null]`` and only inside ``cfg_interval``, so the
batch size changes across steps; turbo checkpoints never run guidance. Frames: every position (each
token is a patch of 2 latent frames). Timestep: the ``timestep`` keyword, flow time in [0, 1].
Lyrics: the pipeline does not broadcast a string to the batch, so one empty lyric per prompt is
passed (instrumental).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from tada.engine import GuidanceLayout
from tada.models.base import AudioModel, check_prompts, make_sites


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

    @contextlib.contextmanager
    def common_text_length(self, prompts: Sequence[str], duration: float | None = None):
        """Pad every text batch to the token length the pipeline gives `prompts` in one batch: the token ids
        before the text encoder (pad token, on the tokenizer's padding side) and the text mask before the
        condition encoder, which is what the pipeline's own padding to a longer batch-mate produces."""
        prompts = check_prompts(prompts)
        duration = self._settings(None, duration, None)[1]
        with torch.no_grad():
            _, mask, _, _ = self.pipe.encode_prompt(prompt=prompts, lyrics=[""] * len(prompts), device=self.device,
                                                    audio_duration=duration)
        length, tokenizer = mask.shape[1], self.pipe.tokenizer

        def pad(t: torch.Tensor, value) -> torch.Tensor:
            if t.shape[1] >= length:
                return t
            fill = torch.full((t.shape[0], length - t.shape[1]), value, dtype=t.dtype, device=t.device)
            return torch.cat([fill, t] if tokenizer.padding_side == "left" else [t, fill], dim=1)

        def ids(module, args, kwargs):
            return args, {**kwargs, "input_ids": pad(kwargs["input_ids"], tokenizer.pad_token_id)}

        def text_mask(module, args, kwargs):
            return args, {**kwargs, "text_attention_mask": pad(kwargs["text_attention_mask"], False)}

        handles = [self.pipe.text_encoder.register_forward_pre_hook(ids, with_kwargs=True),
                   self.pipe.condition_encoder.register_forward_pre_hook(text_mask, with_kwargs=True)]
        try:
            yield length
        finally:
            for handle in handles:
                handle.remove()

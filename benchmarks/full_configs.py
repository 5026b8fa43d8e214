"""Full-size denoisers with random weights, and one valid call each, for timing hooks at real shapes.

The default configs of diffusers' ``StableAudioDiTModel`` (24 blocks, 1057M parameters) and
``AceStepTransformer1DModel`` (24 layers, 1575M parameters) are those of the released Stable Audio
Open 1.0 and ACE-Step 1.5 checkpoints. The weights here are random (seeded), so these models are
good for speed and memory measurements only.

The call mirrors what each pipeline passes to its denoiser (see docs/families.md): Stable Audio
takes the latents and timestep positionally and always runs its whole 1024-frame window (47.55 s),
whatever duration is asked for; ACE-Step takes everything by keyword and runs 25 latent frames per
second of audio. Guidance doubles the rows, as the pipelines do.

    import torch
    from benchmarks.full_configs import full_size_denoiser, denoiser_call

    model = full_size_denoiser("ace-step", dtype=torch.bfloat16, device="cuda")
    args, kwargs = denoiser_call("ace-step", model, batch=2, seconds=10.0)
    with torch.no_grad():
        velocity = model(*args, **kwargs)[0]

``device="meta"`` builds the model without memory or time, for checking shapes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

FAMILIES = ("stable-audio", "ace-step")


def _check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    return family


def full_size_denoiser(
    family: str, seed: int = 0, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu"
) -> nn.Module:
    """The full-size denoiser of ``family`` ("stable-audio" or "ace-step"), random weights, in eval mode.

    Parameters are created directly in ``dtype`` on ``device`` (bfloat16 by default: 2.1 GB for Stable
    Audio, 3.2 GB for ACE-Step). The same seed gives the same weights on the same device.
    """
    from diffusers import StableAudioDiTModel
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel

    _check_family(family)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    device = torch.device(device)
    cls = StableAudioDiTModel if family == "stable-audio" else AceStepTransformer1DModel
    rng_devices = [device] if device.type == "cuda" else []
    previous = torch.get_default_dtype()
    with torch.random.fork_rng(devices=rng_devices), device:
        torch.manual_seed(seed)
        torch.set_default_dtype(dtype)
        try:
            model = cls()
        finally:
            torch.set_default_dtype(previous)
    return model.eval()


def denoiser_call(
    family: str, model: nn.Module, batch: int = 2, seconds: float = 10.0, guidance: bool = True,
    context_tokens: int = 128, seed: int = 0,
) -> tuple[tuple, dict]:
    """``(args, kwargs)`` for one denoiser forward of ``batch`` prompts of ``seconds`` of audio.

    Rows are ``2 * batch`` with ``guidance`` (Stable Audio ``[uncond, cond]`` with a zero
    unconditional context; ACE-Step ``[cond, null]``), else ``batch``. ``context_tokens`` is the
    text length: Stable Audio's T5 is always padded to 128 tokens (plus 2 seconds tokens), so there
    it must be 128; for ACE-Step it is the packed lyrics + timbre + text length. Tensors are random
    (seeded) in the model's dtype and on its device.
    """
    _check_family(family)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    if isinstance(context_tokens, bool) or not isinstance(context_tokens, int) or context_tokens < 1:
        raise ValueError(f"context_tokens must be a positive int, got {context_tokens!r}")
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    param = next(model.parameters())
    dtype, device = param.dtype, param.device
    rows = 2 * batch if guidance else batch
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    cfg = model.config
    if family == "stable-audio":
        from diffusers.models.embeddings import get_1d_rotary_pos_embed

        window = cfg.sample_size * 2048 / 44100  # Oobleck hop 2048 at 44.1 kHz
        if seconds > window:
            raise ValueError(f"seconds must be at most the model's window of {window:.2f} s, got {seconds}")
        if context_tokens != 128:
            raise ValueError(f"Stable Audio's T5 context is always 128 tokens, got context_tokens={context_tokens}")
        context = randn(rows, context_tokens + 2, cfg.cross_attention_input_dim)
        if guidance:
            context[:batch] = 0
        cos, sin = get_1d_rotary_pos_embed(
            cfg.attention_head_dim // 2, cfg.sample_size + 1, use_real=True, repeat_interleave_real=False
        )
        args = (randn(rows, cfg.in_channels, cfg.sample_size), torch.tensor([0.5], device=device))
        kwargs = dict(
            encoder_hidden_states=context,
            global_hidden_states=randn(rows, 1, cfg.global_states_input_dim),
            rotary_embedding=(cos.to(device), sin.to(device)),
            return_dict=False,
        )
        return args, kwargs

    frames = math.ceil(seconds * 25)  # 48 kHz / hop 1920
    t = torch.full((rows,), 0.5, device=device, dtype=dtype)
    width = cfg.encoder_hidden_size or cfg.hidden_size
    context = randn(rows, context_tokens, width)
    if guidance:  # the null condition is one learned vector repeated over the context
        context[batch:] = randn(1, 1, width)
    kwargs = dict(
        hidden_states=randn(rows, frames, cfg.audio_acoustic_hidden_dim),
        timestep=t,
        timestep_r=t.clone(),
        encoder_hidden_states=context,
        context_latents=randn(rows, frames, cfg.in_channels - cfg.audio_acoustic_hidden_dim),
        return_dict=False,
    )
    return (), kwargs

"""Tiny, offline, deterministic builds of the three real diffusers pipeline families.

Each builder returns the genuine diffusers pipeline class (``StableAudioPipeline``,
``AudioLDM2Pipeline``, ``AceStepPipeline``) wired to randomly initialised components (40 thousand to
1.6 million parameters per pipeline), with tokenizers built in code from a small music vocabulary.
Nothing is read from disk or a hub, so these builds run anywhere and let every part of tada
that touches a real pipeline (hook sites, call signatures, guidance layout, timesteps) be
tested on the same code paths as the full-size checkpoints.

Guarantees:
  * the same ``seed`` gives bit-identical weights, and (with per-row generators) bit-identical
    audio; the caller's global torch RNG state is left untouched;
  * every module is in ``.eval()`` mode (modules built from a config start in training mode,
    with dropout active);
  * each word of :data:`MUSIC_WORDS` is one token of every tokenizer, so prompts that differ in
    a musical word give different contexts.

The structure of each tiny build mirrors the full-size model where the hook engine cares
(block layout, which context feeds which site, Stable Audio's global token, ACE-Step's
patches of 2 frames, guidance rows); widths, depths and sample rates are shrunk. The facts measured on these builds are written up in
``docs/families.md``.

Stable Audio Open (``build_tiny_stable_audio``): 4 DiT blocks; sites ``transformer_blocks.{i}.attn2``;
site outputs are (rows, 1 + frames, width) with the global token first.

AudioLDM2 (``build_tiny_audioldm2``): a UNet with one plain and two cross-attention levels,
two layers per down block and three per up block like the full model; each attention layer
holds three ``Transformer2DModel``s whose ``attn2`` is self-attention (1st), cross-attention to
the GPT-2 context (2nd) and cross-attention to the T5 context (3rd).

ACE-Step 1.5 (``build_tiny_ace_step``): 4 DiT layers; sites ``layers.{i}.cross_attn``; base
(guidance through the learned null condition) or turbo (``turbo=True``, no guidance).
"""

from __future__ import annotations

import torch
from tokenizers.pre_tokenizers import ByteLevel

from tada.errors import TadaError

#: Words every tiny tokenizer holds as single tokens (besides the characters that spell any text).
MUSIC_WORDS: tuple[str, ...] = (
    # function words that music captions are made of
    "a", "an", "the", "and", "with", "of", "in", "on", "by", "for", "to", "is", "this", "that",
    "song", "music", "track", "piece", "tune", "beat", "melody", "rhythm", "tempo", "mood",
    # tempo and mood
    "fast", "slow", "upbeat", "calm", "energetic", "relaxing", "happy", "sad", "dark", "bright",
    "loud", "soft", "quiet", "aggressive", "gentle", "groovy", "melancholic", "cheerful",
    # voice
    "female", "male", "vocal", "vocals", "voice", "singer", "singing", "choir", "instrumental",
    # instruments
    "piano", "drums", "guitar", "bass", "violin", "cello", "flute", "trumpet", "saxophone",
    "maracas", "synth", "organ", "strings", "percussion", "acoustic", "electric",
    # genres
    "jazz", "techno", "reggae", "rock", "pop", "classical", "electronic", "hip", "hop",
    "ambient", "folk", "blues", "metal", "funk", "house", "orchestral", "cinematic", "lofi",
    # words of the ACE-Step prompt template
    "Instruction", "Caption", "Metas", "Fill", "audio", "semantic", "mask", "based", "given",
    "conditions", "bpm", "timesignature", "keyscale", "duration", "seconds", "Languages",
    "Lyric", "en", "verse", "chorus",
)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TadaError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise TadaError(f"seed must be a non-negative int, got {seed}")
    return seed


def _unigram_vocab(words: tuple[str, ...], specials: list[str]) -> list[tuple[str, float]]:
    """SentencePiece-style vocabulary: specials, one piece per word, then single characters."""
    letters = sorted({ch for w in words for ch in w} | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    vocab = [(s, 0.0) for s in specials]
    vocab += [("\u2581" + w, -1.0) for w in words]
    vocab += [("\u2581", -5.0)] + [(ch, -10.0) for ch in letters]
    vocab += [(ch, -12.0) for ch in sorted(set(".,:;!?'-#[]()/\n"))]
    return vocab


def _byte_level_bpe(words: tuple[str, ...], specials: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE vocabulary and merges that spell each word as one token.

    Every merge grows a word prefix by one character. All merges of space-led words
    (``Ġword``) rank before those of bare words, so inside a space-led word only its own
    prefix chain can fire and the word always ends as a single token.
    """
    vocab = {s: i for i, s in enumerate(specials)}
    for ch in sorted(ByteLevel.alphabet()):
        vocab.setdefault(ch, len(vocab))
    merges: list[tuple[str, str]] = []
    for lead in ("\u0120", ""):
        for word in words:
            form = lead + word
            piece = form[0]
            for ch in form[1:]:
                if piece + ch not in vocab:
                    merges.append((piece, ch))
                    vocab[piece + ch] = len(vocab)
                piece += ch
    return vocab, merges


def _t5_tokenizer(model_max_length: int):
    from transformers import T5Tokenizer

    tokenizer = T5Tokenizer(vocab=_unigram_vocab(MUSIC_WORDS, ["<pad>", "</s>", "<unk>"]), extra_ids=0)
    tokenizer.model_max_length = model_max_length
    return tokenizer


def _eval(pipe):
    """Put every torch module of ``pipe`` in inference mode and silence its progress bar."""
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_stable_audio(seed: int = 0):
    """A ``StableAudioPipeline`` with tiny random weights, built offline.

    Mirrors Stable Audio Open 1.0: T5 text encoder (here 16 wide, 32 tokens, padded to
    ``max_length``), seconds-start/end conditioning, a DiT with a prepended global token, an
    Oobleck VAE and the SDE ``CosineDPMSolverMultistepScheduler``. Audio: stereo, 64 Hz,
    at most 2 s (32 latent frames of 4 samples).
    """
    from diffusers import (
        AutoencoderOobleck,
        CosineDPMSolverMultistepScheduler,
        StableAudioDiTModel,
        StableAudioPipeline,
        StableAudioProjectionModel,
    )
    from transformers import T5Config, T5EncoderModel

    seed = _check_seed(seed)
    tokenizer = _t5_tokenizer(model_max_length=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = T5EncoderModel(
            T5Config(vocab_size=len(tokenizer), d_model=16, d_ff=32, d_kv=8, num_heads=2, num_layers=2)
        )
        projection_model = StableAudioProjectionModel(
            text_encoder_dim=16, conditioning_dim=16, min_value=0, max_value=512
        )
        transformer = StableAudioDiTModel(
            sample_size=32,
            in_channels=4,
            num_layers=4,
            attention_head_dim=8,
            num_attention_heads=2,
            num_key_value_attention_heads=1,
            out_channels=4,
            cross_attention_dim=16,
            time_proj_dim=8,
            global_states_input_dim=32,
            cross_attention_input_dim=16,
        )
        vae = AutoencoderOobleck(
            encoder_hidden_size=4,
            downsampling_ratios=[2, 2],
            decoder_channels=4,
            decoder_input_channels=4,
            audio_channels=2,
            channel_multiples=[1, 2],
            sampling_rate=64,
        )
    scheduler = CosineDPMSolverMultistepScheduler(
        sigma_min=0.3, sigma_max=500.0, solver_order=2, prediction_type="v_prediction", sigma_data=1.0
    )
    return _eval(
        StableAudioPipeline(
            vae=vae,
            text_encoder=text_encoder,
            projection_model=projection_model,
            tokenizer=tokenizer,
            transformer=transformer,
            scheduler=scheduler,
        )
    )


def build_tiny_audioldm2(seed: int = 0):
    """An ``AudioLDM2Pipeline`` with tiny random weights, built offline.

    Mirrors AudioLDM2-music: CLAP text branch + Flan-T5 feed a projection model and a GPT-2
    that generates 8 context vectors; the UNet's attention layers each hold three
    ``Transformer2DModel``s (self-attention, GPT-2 cross-attention, T5 cross-attention);
    a mel VAE and a HiFi-GAN vocoder. Audio: mono, 400 Hz, 100 mel frames per second,
    lengths in multiples of 0.02 s.
    """
    from diffusers import (
        AudioLDM2Pipeline,
        AudioLDM2ProjectionModel,
        AudioLDM2UNet2DConditionModel,
        AutoencoderKL,
        DDIMScheduler,
    )
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapTextConfig,
        GPT2Config,
        GPT2LMHeadModel,
        RobertaTokenizer,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
        T5Config,
        T5EncoderModel,
    )

    seed = _check_seed(seed)
    vocab, merges = _byte_level_bpe(MUSIC_WORDS, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges)
    tokenizer.model_max_length = 16
    tokenizer_2 = _t5_tokenizer(model_max_length=32)
    gpt2_width, t5_width = 16, 32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = AudioLDM2UNet2DConditionModel(
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(8, 16, 16),
            layers_per_block=2,
            norm_num_groups=4,
            attention_head_dim=2,
            cross_attention_dim=([None, gpt2_width, t5_width],) * 3,
        )
        vae = AutoencoderKL(
            in_channels=1,
            out_channels=1,
            down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
            up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
            block_out_channels=[8, 16],
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=4,
        )
        text_encoder = ClapModel(
            ClapConfig(
                text_config=ClapTextConfig(
                    vocab_size=len(tokenizer),
                    hidden_size=16,
                    intermediate_size=32,
                    num_attention_heads=2,
                    num_hidden_layers=2,
                    projection_dim=16,
                    bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id,
                ).to_dict(),
                audio_config=ClapAudioConfig(
                    spec_size=64,
                    window_size=4,
                    num_mel_bins=64,
                    intermediate_size=32,
                    depths=[2, 2],
                    num_attention_heads=[2, 2],
                    num_hidden_layers=2,
                    hidden_size=32,
                    projection_dim=16,
                    patch_size=2,
                    patch_stride=2,
                    patch_embed_input_channels=4,
                ).to_dict(),
                projection_dim=16,
            )
        )
        text_encoder_2 = T5EncoderModel(
            T5Config(vocab_size=len(tokenizer_2), d_model=t5_width, d_ff=32, d_kv=8, num_heads=2, num_layers=2)
        )
        # GPT2LMHeadModel, not GPT2Model: the pipeline's generation loop calls
        # `_update_model_kwargs_for_generation`, which transformers 5 keeps on generation heads only.
        language_model = GPT2LMHeadModel(
            GPT2Config(
                n_embd=gpt2_width, n_head=2, n_layer=2, vocab_size=8, n_positions=64, bos_token_id=0, eos_token_id=0
            )
        )
        language_model.config.max_new_tokens = 8
        projection_model = AudioLDM2ProjectionModel(
            text_encoder_dim=16, text_encoder_1_dim=t5_width, langauge_model_dim=gpt2_width
        )
        vocoder = SpeechT5HifiGan(
            SpeechT5HifiGanConfig(
                model_in_dim=16,
                sampling_rate=400,
                upsample_initial_channel=8,
                upsample_rates=[2, 2],
                upsample_kernel_sizes=[4, 4],
                resblock_kernel_sizes=[3],
                resblock_dilation_sizes=[[1, 3]],
                normalize_before=False,
            )
        )
    scheduler = DDIMScheduler(
        beta_start=0.0015,
        beta_end=0.0195,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
    )
    return _eval(
        AudioLDM2Pipeline(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            projection_model=projection_model,
            language_model=language_model,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            feature_extractor=ClapFeatureExtractor(),
            unet=unet,
            scheduler=scheduler,
            vocoder=vocoder,
        )
    )


def build_tiny_ace_step(seed: int = 0, turbo: bool = False):
    """An ``AceStepPipeline`` (ACE-Step 1.5) with tiny random weights, built offline.

    Mirrors ACE-Step 1.5: a Qwen3 text encoder over the SFT prompt template, a condition
    encoder packing lyrics + timbre + text into one cross-attention context (no padding mask
    reaches the DiT), a 4-layer DiT patching 2 latent frames per token, an Oobleck VAE at 25
    latent frames per second. ``turbo=False`` builds a base model (guidance with the learned
    null condition, batch ``[cond, null]``); ``turbo=True`` builds a guidance-distilled one
    that never runs guidance. Audio: stereo, 100 Hz.
    """
    from diffusers import (
        AceStepPipeline,
        AutoencoderOobleck,
        FlowMatchEulerDiscreteScheduler,
    )
    from diffusers.models.transformers.ace_step_transformer import (
        AceStepTransformer1DModel,
    )
    from diffusers.pipelines.ace_step import AceStepConditionEncoder
    from transformers import Qwen2Tokenizer, Qwen3Config, Qwen3Model

    seed = _check_seed(seed)
    if not isinstance(turbo, bool):
        raise TadaError(f"turbo must be a bool, got {type(turbo).__name__} {turbo!r}")
    vocab, merges = _byte_level_bpe(MUSIC_WORDS, ["<|endoftext|>"])
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges)
    acoustic = 8
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = Qwen3Model(
            Qwen3Config(
                vocab_size=len(tokenizer),
                hidden_size=16,
                intermediate_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=1,
                head_dim=8,
                max_position_embeddings=512,
            )
        )
        condition_encoder = AceStepConditionEncoder(
            hidden_size=32,
            intermediate_size=64,
            text_hidden_dim=16,
            timbre_hidden_dim=acoustic,
            num_lyric_encoder_hidden_layers=2,
            num_timbre_encoder_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            rope_theta=10000.0,
            sliding_window=16,
        )
        transformer = AceStepTransformer1DModel(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            in_channels=3 * acoustic,
            audio_acoustic_hidden_dim=acoustic,
            patch_size=2,
            rope_theta=10000.0,
            sliding_window=16,
            is_turbo=turbo,
            model_version="turbo" if turbo else "base",
        )
        vae = AutoencoderOobleck(
            encoder_hidden_size=4,
            downsampling_ratios=[2, 2],
            decoder_channels=4,
            decoder_input_channels=acoustic,
            audio_channels=2,
            channel_multiples=[1, 2],
            sampling_rate=100,
        )
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0)
    return _eval(
        AceStepPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            transformer=transformer,
            condition_encoder=condition_encoder,
            scheduler=scheduler,
        )
    )

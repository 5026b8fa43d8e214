"""ToyPipeline: the contract adapters rely on, the sampler's equations, the mel analysis/synthesis."""

import json

import numpy as np
import pytest
import torch
from diffusers.models.embeddings import get_1d_rotary_pos_embed

from tada.audio import htk_mel_filterbank
from tada.errors import TadaError
from tada.errors import MissingFileError
from tada.toy.model import (
    DEFAULT_TRANSFORMER,
    TEXT_DIM,
    WEIGHTS_DIR,
    LinearLatent,
    MelSpec,
    ToyPipeline,
    preconditioning,
    shift_time,
)
from tada.toy.synth import NUM_SAMPLES, SAMPLE_RATE, make_example


@pytest.fixture(scope="module")
def pipe():
    return ToyPipeline.random(seed=0, num_layers=2)


def gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


class CallRecorder:
    """Records every transformer call's keyword arguments (cloned)."""

    def __init__(self, module):
        self.calls = []
        self.handle = module.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        assert not args, "the transformer must be called with keyword arguments only"
        self.calls.append({k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_output_shape_dtype_range_and_determinism(pipe):
    a = pipe(["a fast piano", "sad jazz"], gens(0, 1), num_inference_steps=2)
    b = pipe(["a fast piano", "sad jazz"], gens(0, 1), num_inference_steps=2)
    assert a.shape == (2, 1, NUM_SAMPLES) and a.dtype == torch.float32
    assert a.abs().max() <= 1.0
    assert torch.equal(a, b)
    assert pipe.sample_rate == SAMPLE_RATE
    c = pipe(["a fast piano", "sad jazz"], gens(2, 1), num_inference_steps=2)
    assert not torch.allclose(a[0], c[0]) and torch.allclose(a[1], c[1], atol=1e-5)


def test_rows_do_not_depend_on_each_other(pipe):
    alone = pipe.sample_frames(["a fast piano"], gens(3), num_inference_steps=2)
    batched = pipe.sample_frames(["a fast piano", "a slow sad violin ballad with a male vocal"], gens(3, 4),
                                 num_inference_steps=2)
    torch.testing.assert_close(batched[0], alone[0], atol=1e-5, rtol=1e-5)


def test_encode_prompt_fixed_length_padding_zeroed(pipe):
    states, mask = pipe.encode_prompt(["piano", "a fast upbeat techno track with drums and maracas"])
    assert states.shape == (2, pipe.max_tokens, 384) and states.dtype == torch.float32
    assert mask.dtype == torch.bool and mask.shape == (2, pipe.max_tokens)
    assert mask[0].sum() == 3  # [CLS] piano [SEP]
    assert torch.all(states[~mask] == 0)
    alone, _ = pipe.encode_prompt(["piano"])
    torch.testing.assert_close(alone[0], states[0], atol=1e-5, rtol=1e-5)
    assert len(pipe.tokenizer) > 1000


@pytest.mark.parametrize("guidance, rows", [(3.0, 4), (1.0, 2)])
def test_transformer_called_once_per_step_with_contract_kwargs(pipe, guidance, rows):
    prompts = ["fast techno", "slow reggae with a female vocal"]
    with CallRecorder(pipe.transformer) as rec:
        pipe.sample_frames(prompts, gens(0, 1), num_inference_steps=3, guidance_scale=guidance)
    assert len(rec.calls) == 3
    expected = {"hidden_states", "timestep", "encoder_hidden_states", "encoder_attention_mask",
                "global_hidden_states", "rotary_embedding"}
    cond_states, cond_mask = pipe.encode_prompt(prompts)
    for i, call in enumerate(rec.calls):
        assert set(call) == expected
        t = call["timestep"]
        assert t.shape == (rows,) and t.dtype == torch.float32
        assert torch.allclose(t, torch.full((rows,), 1.0 - i / 3))
        assert call["hidden_states"].shape == (rows, 64, 100)
        assert torch.all(call["global_hidden_states"] == 0)
        ctx, mask = call["encoder_hidden_states"], call["encoder_attention_mask"]
        assert ctx.shape == (rows, pipe.max_tokens, 384) and mask.dtype == torch.bool
        torch.testing.assert_close(ctx[-2:], cond_states)
        assert torch.equal(mask[-2:], cond_mask)
        if rows == 4:  # [uncond, cond]: unconditional rows are zeros with only the first token unmasked
            assert torch.all(ctx[:2] == 0)
            assert mask[:2, 0].all() and not mask[:2, 1:].any()
            assert torch.equal(call["hidden_states"][:2], call["hidden_states"][2:])


def test_euler_steps_and_guidance_follow_the_equations(pipe):
    """x_{t-dt} = x_t - dt * (v_u + g (v_c - v_u)), from t = 1 in equal steps."""
    x1 = torch.randn(1, 64, 100, generator=torch.Generator().manual_seed(9))
    cond = pipe.encode_prompt(["a happy flute"])
    uncond = pipe.unconditional_context(1)
    g = 2.5
    with torch.no_grad():
        v_u = pipe.velocity(x1, torch.ones(1), *uncond)
        v_c = pipe.velocity(x1, torch.ones(1), *cond)
        x_half = x1 - 0.5 * (v_u + g * (v_c - v_u))
        v_u2 = pipe.velocity(x_half, torch.full((1,), 0.5), *uncond)
        v_c2 = pipe.velocity(x_half, torch.full((1,), 0.5), *cond)
        x0 = x_half - 0.5 * (v_u2 + g * (v_c2 - v_u2))
    got = pipe.sample_frames(["a happy flute"], gens(0), num_inference_steps=2, guidance_scale=g, latents=x1)
    torch.testing.assert_close(got, x0, atol=1e-5, rtol=1e-4)
    # without guidance only the conditional velocity is used
    with torch.no_grad():
        one = x1 - pipe.velocity(x1, torch.ones(1), *cond)
    torch.testing.assert_close(pipe.sample_frames(["a happy flute"], gens(0), 1, 1.0, latents=x1), one,
                               atol=1e-5, rtol=1e-4)


def test_initial_noise_comes_from_each_rows_generator(pipe):
    with CallRecorder(pipe.transformer) as rec:
        pipe.sample_frames(["a", "b"], gens(5, 6), num_inference_steps=1, guidance_scale=1.0)
    first = rec.calls[0]["hidden_states"]
    torch.testing.assert_close(first[0], torch.randn(64, 100, generator=torch.Generator().manual_seed(5)))
    torch.testing.assert_close(first[1], torch.randn(64, 100, generator=torch.Generator().manual_seed(6)))


def test_mel_filterbank_triangles():
    fb = htk_mel_filterbank(n_mels=8, n_fft=256, sample_rate=16000, f_min=50.0, f_max=8000.0)
    assert fb.shape == (8, 129)
    assert fb.min() >= 0 and fb.max() <= 1.0 + 1e-9
    peaks = fb.argmax(1)
    assert np.all(np.diff(peaks) > 0)  # centers rise with the filter index
    # HTK mel m(f) = 2595 log10(1 + f/700): m(50) = 77.75, m(8000) = 2840.1, so the first filter
    # spans mel 77.75 / 384.7 / 691.6 = 50.0 / 284.7 / 593.1 Hz. Bins are 62.5 Hz apart: bin 4
    # (250 Hz) gets 200/234.7 = 0.852 on the rising edge, bin 5 (312.5 Hz) 280.6/308.4 = 0.910.
    assert peaks[0] == 5
    assert fb[0, 4] == pytest.approx(0.852, abs=2e-3) and fb[0, 5] == pytest.approx(0.910, abs=2e-3)


def test_mel_spec_griffin_lim_round_trip():
    mel = MelSpec()
    wave = torch.from_numpy(make_example(1)[2])[None]
    log_mel = mel.log_mel(wave)
    assert log_mel.shape == (1, 64, 100) and mel.frames == 100
    rebuilt = mel.griffin_lim(log_mel)
    assert rebuilt.shape == (1, NUM_SAMPLES)
    # the rebuilt audio's mel magnitudes are within 10% (relative L2) of the target's
    target, got = log_mel.exp(), mel.log_mel(rebuilt).exp()
    assert ((got - target).norm() / target.norm()) < 0.1
    # and Griffin-Lim did work: the zero-phase start alone is far off
    zero_phase = mel.griffin_lim(log_mel, n_iter=0)
    assert ((mel.log_mel(zero_phase).exp() - target).norm() / target.norm()) > 0.2
    torch.testing.assert_close(mel.denormalize(mel.normalize(log_mel)), log_mel)


def test_the_nnls_inverse_fits_noisy_frames_where_the_pseudo_inverse_blows_up():
    """A 256-bin filterbank at n_fft 1024 is singular (its low bins are narrower than the FFT bins): F^+ turns
    N(0, 0.05) log noise into a magnitude thousands of times too large; the non-negative fit stays near the truth."""
    kw = dict(n_mels=256, mean=[0.0] * 256, std=[1.0] * 256, f_min=30.0, f_max=8000.0)
    pinv, nnls = MelSpec(**kw), MelSpec(**kw, inverse="nnls")
    wave = torch.from_numpy(make_example(1)[2])[None]
    truth = pinv._stft(wave).abs()
    noisy = pinv.log_mel(wave) + 0.05 * torch.randn((1, 256, 100), generator=torch.Generator().manual_seed(0))
    target = (noisy.exp() - pinv.floor).clamp_min(0.0)

    def errors(spec):
        s = spec.linear_magnitude(noisy)
        assert s.shape == truth.shape and s.min() >= 0
        residual = torch.einsum("mf,bft->bmt", spec._fb, s) - target
        return (residual.norm() / target.norm()).item(), ((s - truth).norm() / truth.norm()).item()

    residual, error = errors(nnls)
    assert residual < 0.1 and error < 0.4
    residual, error = errors(pinv)
    assert residual > 10 and error > 10
    with pytest.raises(ValueError, match=r"unknown mel inverse 'lsq'; accepted: \['pinv', 'nnls'\]"):
        MelSpec(inverse="lsq")


def test_a_linear_latent_keeps_the_leading_principal_components_at_unit_variance():
    """Frames with independent coordinates of std 3, 2, 1, 0.1 along an orthonormal Q: 2 components span
    Q's first two columns with scales 3 and 2, and decode(encode(x)) is x projected onto them."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    coords = torch.randn(64, 4, 200, generator=g, dtype=torch.float64) * torch.tensor([3.0, 2.0, 1.0, 0.1])[:, None]
    frames = torch.einsum("mk,bkt->bmt", q, coords).float()
    latent = LinearLatent.fit(frames, 2)
    assert latent.channels == 2
    torch.testing.assert_close(latent.scale, torch.tensor([3.0, 2.0]), atol=0.05, rtol=0)
    overlap = (latent.basis.double().T @ q[:, :2]).abs()
    torch.testing.assert_close(overlap, torch.eye(2, dtype=torch.float64), atol=2e-2, rtol=0)
    z = latent.encode(frames)
    assert z.shape == (64, 2, 200)
    torch.testing.assert_close(z.std((0, 2)), torch.ones(2), atol=0.02, rtol=0)
    projector = latent.basis @ latent.basis.T
    torch.testing.assert_close(latent.decode(z), torch.einsum("mn,bnt->bmt", projector, frames), atol=1e-5, rtol=1e-5)
    full = LinearLatent.fit(frames, 4)
    torch.testing.assert_close(full.decode(full.encode(frames)), frames, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="latent of 5 components over 4 bins; accepted: 1 to 4"):
        LinearLatent.fit(frames, 5)


def test_a_pipeline_over_a_latent_samples_its_coordinates_decodes_and_saves_them(tmp_path):
    latent = LinearLatent.fit(torch.randn(8, 64, 100, generator=torch.Generator().manual_seed(1)), 32)
    pipe = ToyPipeline.random(0, latent=latent, num_layers=1)
    assert pipe.transformer.config.in_channels == 32 == pipe.channels
    z = pipe.sample_frames(["jazz"], gens(0), num_inference_steps=2)
    assert z.shape == (1, 32, 100)
    wave = pipe.mel.griffin_lim(pipe.mel.denormalize(latent.decode(z)))
    torch.testing.assert_close(pipe.frames_to_audio(z)[:, 0], 0.9 * wave / wave.abs().amax(-1, keepdim=True))
    pipe.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "pipeline_config.json").read_text())["latent"] is True
    loaded = ToyPipeline.from_pretrained(tmp_path)
    assert torch.equal(loaded.latent.basis, latent.basis) and torch.equal(loaded.latent.scale, latent.scale)
    assert torch.equal(loaded.sample_frames(["jazz"], gens(0), num_inference_steps=2), z)
    (tmp_path / LinearLatent.FILE).unlink()
    with pytest.raises(MissingFileError, match="latent.safetensors not found"):
        ToyPipeline.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="takes 32 channels, not the latent's 16 components"):
        ToyPipeline(pipe.transformer, pipe.mel, pipe.tokenizer, pipe.text_encoder,
                    latent=LinearLatent(latent.basis[:, :16], latent.scale[:16]))


def test_save_and_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "pipeline_config.json").read_text())
    assert config["transformer"]["num_layers"] == 2
    assert config["sampling"]["time_shift"] == 1.0 and config["sampling"]["preconditioned"] is False
    loaded = ToyPipeline.from_pretrained(tmp_path)
    a = pipe.sample_frames(["jazz"], gens(0), 2)
    b = loaded.sample_frames(["jazz"], gens(0), 2)
    assert torch.equal(a, b)


def test_default_config_has_at_least_eight_layers():
    assert DEFAULT_TRANSFORMER["num_layers"] >= 8


def test_shipped_weights_load_and_generate():
    shipped = ToyPipeline.from_pretrained()
    assert shipped.transformer.config.num_layers >= 8
    wave = shipped(["a fast happy techno track with drums"], gens(0), num_inference_steps=4)
    assert wave.shape == (1, 1, NUM_SAMPLES) and torch.isfinite(wave).all()
    assert WEIGHTS_DIR.is_dir()


def test_bad_inputs_raise_clear_errors(pipe, tmp_path):
    with pytest.raises(FileNotFoundError, match="pipeline_config.json"):
        ToyPipeline.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown transformer config keys"):
        ToyPipeline.random(0, num_layerz=3)
    with pytest.raises(ValueError, match="one torch.Generator per prompt"):
        pipe(["a", "b"], gens(0), num_inference_steps=1)
    with pytest.raises(TadaError, match="list of strings"):
        pipe("a", gens(0), num_inference_steps=1)
    with pytest.raises(ValueError, match="latents must have shape"):
        pipe(["a"], gens(0), num_inference_steps=1, latents=torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe(["a"], gens(0), num_inference_steps=0)
    with pytest.raises(TadaError, match="list of strings"):
        pipe.encode_prompt("a")
    with pytest.raises(ValueError, match="takes 64 channels, not the 32 mel bins"):
        ToyPipeline(pipe.transformer, MelSpec(n_mels=32, mean=[0.0] * 32, std=[1.0] * 32), pipe.tokenizer, pipe.text_encoder)
    with pytest.raises(ValueError, match="mean/std need 64"):
        MelSpec(mean=[0.0])
    with pytest.raises(ValueError, match="f_min"):
        htk_mel_filterbank(8, 256, 16000, 100.0, 9000.0)


def test_shift_time_follows_its_equation_and_is_the_identity_at_one():
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    # s = 3: 3 t / (1 + 2 t) = 0, 0.75/1.5 = 0.5, 1.5/2 = 0.75, 3/3 = 1
    torch.testing.assert_close(shift_time(t, 3.0), torch.tensor([0.0, 0.5, 0.75, 1.0]))
    assert shift_time(t, 1.0) is t


def test_a_shifted_pipeline_samples_at_the_shifted_times(pipe):
    shifted = ToyPipeline(pipe.transformer, pipe.mel, pipe.tokenizer, pipe.text_encoder, time_shift=3.0)
    with CallRecorder(pipe.transformer) as rec:
        shifted.sample_frames(["jazz"], gens(0), num_inference_steps=2, guidance_scale=1.0)
    assert [float(c["timestep"][0]) for c in rec.calls] == pytest.approx([1.0, 0.75])


def test_preconditioning_follows_its_equations():
    t = torch.tensor([0.0, 0.5, 0.75, 1.0])
    c_in, c_skip, c_out = preconditioning(t)
    # s^2 = (1 - t)^2 + t^2 = 1, 0.5, 0.625, 1; c_skip = (2t - 1) / s^2 = -1, 0, 0.8, 1; c_in = c_out = 1 / s
    torch.testing.assert_close(c_skip, torch.tensor([-1.0, 0.0, 0.8, 1.0]))
    torch.testing.assert_close(c_out, torch.tensor([1.0, 2 ** 0.5, 0.625 ** -0.5, 1.0]))
    assert torch.equal(c_in, c_out)
    # c_skip x_t is the best linear guess of v = eps - x_0, its error is c_out^2 per channel (unit-variance x_0)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(200_000, generator=g), torch.randn(200_000, generator=g)
    xt, v = 0.25 * x0 + 0.75 * eps, eps - x0
    assert float(((v - c_skip[2] * xt) ** 2).mean()) == pytest.approx(float(c_out[2] ** 2), rel=0.02)
    assert float(((v - c_skip[2] * xt) / c_out[2]).var()) == pytest.approx(1.0, rel=0.02)


def test_a_preconditioned_pipeline_wraps_the_dit_output_and_the_plain_one_returns_it(pipe):
    states, mask = pipe.encode_prompt(["jazz"])
    x = torch.randn(1, pipe.channels, pipe.mel.frames, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.75])
    plain = pipe.velocity(x, t, states, mask)
    wrapped = ToyPipeline(pipe.transformer, pipe.mel, pipe.tokenizer, pipe.text_encoder, preconditioned=True)
    c_in, c_skip, c_out = preconditioning(t)
    with torch.no_grad():
        expected = c_skip * x + c_out * pipe.velocity(c_in * x, t, states, mask)
        torch.testing.assert_close(wrapped.velocity(x, t, states, mask), expected)
        assert not torch.allclose(wrapped.velocity(x, t, states, mask), plain)
    assert pipe.preconditioned is False


def test_a_time_shift_that_is_not_positive_is_refused():
    with pytest.raises(ValueError, match="time_shift must be > 0; got 0"):
        ToyPipeline.random(0, time_shift=0.0, num_layers=1)


def test_a_dit_narrower_than_its_tokens_is_refused():
    """diffusers' StableAudioDiTModel maps tokens to heads x head dim and back with linear maps only, so a DiT
    narrower than its channels outputs vectors of one fixed subspace: the reason for the check."""
    from diffusers import StableAudioDiTModel

    narrow = StableAudioDiTModel(**{**DEFAULT_TRANSFORMER, "in_channels": 96, "out_channels": 96, "num_layers": 1,
                                    "num_attention_heads": 2})  # 64 wide
    pipe = ToyPipeline.random(0, num_layers=1)
    x = torch.randn(2, 96, 100)
    glob = torch.zeros(2, 1, DEFAULT_TRANSFORMER["global_states_input_dim"])
    with torch.no_grad():
        out = narrow(hidden_states=x, timestep=torch.full((2,), 0.5), encoder_hidden_states=torch.randn(2, 4, TEXT_DIM),
                     global_hidden_states=glob, rotary_embedding=get_1d_rotary_pos_embed(16, 101, use_real=True,
                                                                                         repeat_interleave_real=False)).sample
    singular = torch.linalg.svdvals(out.permute(0, 2, 1).reshape(-1, 96))
    assert singular[63] > 1e3 * singular[64]  # rank 64 of 96
    mel = MelSpec(n_mels=96, mean=[0.0] * 96, std=[1.0] * 96)
    with pytest.raises(ValueError, match="the DiT is 64 wide .* 96 channels"):
        ToyPipeline(narrow, mel, pipe.tokenizer, pipe.text_encoder)

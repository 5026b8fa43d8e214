import math

import numpy as np
import pytest
import torch
from transformers.audio_utils import mel_filter_bank

from tada.audio import Audio
from tada.evaluation.lpaps import (
    CHANNELS,
    LPAPS,
    log_mel_spectrogram,
    mel_filterbank,
    perceptual_distance,
    scale_log_mel,
)


@pytest.fixture(scope="module")
def model():
    return LPAPS.random(seed=0)


def _noise(batch, seconds=0.5, sr=22050, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return Audio(0.3 * torch.randn(batch, 1, int(seconds * sr), generator=gen), sr)


def test_mel_filterbank_matches_an_independent_implementation():
    ours = mel_filterbank()
    theirs = mel_filter_bank(
        num_frequency_bins=513,
        num_mel_filters=80,
        min_frequency=125.0,
        max_frequency=7600.0,
        sampling_rate=22050,
        norm="slaney",
        mel_scale="slaney",
    ).T
    assert ours.shape == (80, 513) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-5, atol=1e-9)


def test_mel_filterbank_rejects_bad_range():
    with pytest.raises(ValueError, match="f_max"):
        mel_filterbank(f_min=125.0, f_max=12000.0)


def test_scale_log_mel_hand_values():
    # 1 -> 20*0 - 20 = -20 dB -> 0.8 -> 0.6;  10 -> 0 dB -> 1.0 -> 1;  1e-7 -> floor 1e-5 -> -120 dB -> 0 -> -1
    # 1e-3 -> -80 dB -> 0.2 -> -0.6
    out = scale_log_mel(torch.tensor([1.0, 10.0, 1e-7, 1e-3]))
    torch.testing.assert_close(out, torch.tensor([0.6, 1.0, -1.0, -0.6]))


def test_log_mel_shape_silence_and_tone_position():
    sr, n = 22050, 22050
    silent = log_mel_spectrogram(torch.zeros(2, n))
    assert silent.shape == (2, 1, 80, n // 256 + 1)
    assert torch.all(silent == -1.0)
    # A tone at FFT bin 93 (about 2003 Hz): its Hann-window magnitude is amplitude * 1024 / 4 = 64 at amplitude
    # 0.25, so the loudest mel band is the filter with the largest weight at bin 93.
    t = torch.arange(n, dtype=torch.float64) / sr
    tone = (0.25 * torch.sin(2 * math.pi * (93 * sr / 1024) * t)).float()[None]
    spec = torch.stft(tone, 1024, 256, window=torch.hann_window(1024), return_complex=True).abs()
    assert spec[0, 93, 40].item() == pytest.approx(64.0, rel=1e-3)
    mel = log_mel_spectrogram(tone)
    assert int(mel[0, 0, :, 40].argmax()) == int(mel_filterbank()[:, 93].argmax())


def test_log_mel_rejects_bad_shape():
    with pytest.raises(ValueError, match="batch, samples"):
        log_mel_spectrogram(torch.zeros(1, 1, 4000))
    with pytest.raises(ValueError, match="more than 512"):
        log_mel_spectrogram(torch.zeros(1, 300))


def test_perceptual_distance_hand_computed():
    # layer 1, channels x positions: a = (3,4) and (0,1) -> unit (0.6,0.8), (0,1); b = (4,3), (0,2) -> (0.8,0.6), (0,1)
    # squared differences (0.04, 0.04) and (0, 0); weights (1, 2) -> 0.12 and 0 -> mean 0.06
    a1 = torch.tensor([[3.0, 0.0], [4.0, 1.0]]).reshape(1, 2, 1, 2)
    b1 = torch.tensor([[4.0, 0.0], [3.0, 2.0]]).reshape(1, 2, 1, 2)
    # layer 2, one channel: unit values 1 and -1 -> (2)^2 * 0.5 = 2
    a2, b2 = torch.full((1, 1, 1, 1), 2.0), torch.full((1, 1, 1, 1), -1.0)
    out = perceptual_distance([a1, a2], [b1, b2], [torch.tensor([1.0, 2.0]), torch.tensor([0.5])])
    torch.testing.assert_close(out, torch.tensor([2.06]))


def test_identity_symmetry_shape_and_batch_independence(model):
    x, y = _noise(3, seed=1), _noise(3, seed=2)
    d_xy = model.distance(x, y)
    assert d_xy.shape == (3,) and d_xy.dtype == torch.float32
    assert torch.all(d_xy > 0)
    torch.testing.assert_close(model.distance(x, x), torch.zeros(3))
    torch.testing.assert_close(model.distance(y, x), d_xy)
    for i in range(3):
        torch.testing.assert_close(model.distance(x[i], y[i]), d_xy[i : i + 1], rtol=1e-4, atol=1e-6)


def test_distance_resamples_and_mixes_to_mono(model):
    x = _noise(2, seed=3)
    stereo = Audio(x.waveform.repeat(1, 2, 1), x.sample_rate)
    torch.testing.assert_close(model.distance(stereo, x), torch.zeros(2))
    direct = model(log_mel_spectrogram(x.mono()), log_mel_spectrogram(_noise(2, seed=4).mono()))
    torch.testing.assert_close(model.distance(x, _noise(2, seed=4)), direct)
    up = Audio(torch.from_numpy(np.repeat(x.waveform.numpy(), 2, axis=-1)), 44100)
    assert model.distance(up, x).shape == (2,)  # resampled to 22.05 kHz, same length


def test_forward_and_distance_bad_input(model):
    with pytest.raises(ValueError, match="frames >= 16"):
        model(torch.zeros(1, 1, 80, 8), torch.zeros(1, 1, 80, 8))
    with pytest.raises(ValueError, match="differ in shape"):
        model(torch.zeros(1, 1, 80, 16), torch.zeros(1, 1, 80, 32))
    with pytest.raises(ValueError, match="2 and 3 rows"):
        model.distance(_noise(2), _noise(3))


def _original_layout(model: LPAPS, with_net: bool = True) -> dict:
    """Write our weights under SpecVQGAN's LPAPS key names (module docstring of tada.evaluation.lpaps)."""
    state = {"scaling_layer.shift": model.band_mean.clone(), "scaling_layer.scale": model.band_std.clone()}
    slice_of = {}
    for s, (start, end) in enumerate(zip((0, 4, 9, 16, 23), (4, 9, 16, 23, 30)), start=1):
        slice_of.update({i: s for i in range(start, end)})
    if with_net:
        for key, value in model.features.state_dict().items():
            idx, name = key.split(".")
            state[f"net.slice{slice_of[int(idx)]}.{idx}.{name}"] = value.clone()
    for k, lin in enumerate(model.layer_weights):
        state[f"lin{k}.model.1.weight"] = lin.weight.clone()
    return state


def test_from_pretrained_reads_the_original_layout(tmp_path, model):
    source = LPAPS.random(seed=5)
    source.band_mean.fill_(-0.3)
    source.band_std.fill_(0.7)
    torch.save(_original_layout(source), tmp_path / "lpaps.pth")
    loaded = LPAPS.from_pretrained(tmp_path)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    assert [lin.weight.shape[1] for lin in loaded.layer_weights] == list(CHANNELS)


def test_from_pretrained_takes_network_from_vggishish_checkpoint(tmp_path):
    source = LPAPS.random(seed=6)
    torch.save(_original_layout(source, with_net=False), tmp_path / "lpaps.pth")
    net = {f"features.{k}": v for k, v in source.features.state_dict().items()}
    net["classifier.0.weight"] = torch.zeros(3, 3)
    torch.save({"model": net}, tmp_path / "vggishish16.pt")
    loaded = LPAPS.from_pretrained(tmp_path / "lpaps.pth")
    torch.testing.assert_close(loaded.features[0].weight, source.features[0].weight, rtol=0, atol=0)


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="lpaps.pth"):
        LPAPS.from_pretrained(tmp_path)
    torch.save(_original_layout(LPAPS.random(seed=7), with_net=False), tmp_path / "lpaps.pth")
    with pytest.raises(FileNotFoundError, match="vggishish"):
        LPAPS.from_pretrained(tmp_path)
    torch.save({"model": {}}, tmp_path / "vggishish16.pt")
    with pytest.raises(ValueError, match="unset"):
        LPAPS.from_pretrained(tmp_path)
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        LPAPS.from_pretrained(tmp_path / "junk.pth")

import numpy as np
import pytest
import torch

from tada.audio import Audio
from tada.errors import TadaError
from tada.evaluation.metrics import fad, preservation
from tada.evaluation.registry import load_embedder
from tada.evaluation.vggish import (
    MIN_SAMPLES,
    WEIGHTS_URL,
    VGGish,
    log_mel,
    vggish_mel_matrix,
)


@pytest.fixture(scope="module")
def vggish():
    return VGGish.random(seed=0)


def _reference_mel_matrix():
    """The AudioSet reference's construction, band by band (triangles linear in mel, DC bin zeroed)."""
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)  # noqa: E731
    bins = mel(np.linspace(0.0, 8000.0, 257))
    edges = np.linspace(mel(125.0), mel(7500.0), 66)
    out = np.empty((257, 64))
    for i in range(64):
        lo, c, hi = edges[i:i + 3]
        out[:, i] = np.maximum(0.0, np.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c)))
    out[0] = 0.0
    return out


def test_mel_matrix_matches_the_reference_construction():
    ours = vggish_mel_matrix()
    assert ours.shape == (257, 64) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), _reference_mel_matrix(), atol=1e-6)
    assert ours[0].abs().sum() == 0 and float(ours.max()) <= 1.0


def test_log_mel_matches_numpy_framing_and_rfft():
    gen = np.random.default_rng(0)
    wave = gen.standard_normal(16000).astype(np.float32) * 0.1
    frames = np.lib.stride_tricks.sliding_window_view(wave, 400)[::160]  # 1 + (16000 - 400) // 160 = 98
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)  # periodic Hann
    expected = np.log(np.abs(np.fft.rfft(frames * window, 512)) @ _reference_mel_matrix() + 0.01)
    ours = log_mel(torch.from_numpy(wave)[None])[0]
    assert ours.shape == (98, 64)
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-4, rtol=1e-5)
    silence = log_mel(torch.zeros(1, 1000))
    torch.testing.assert_close(silence, torch.full_like(silence, float(np.log(0.01))))


def test_examples_count_and_minimum_length(vggish):
    assert MIN_SAMPLES == 15600  # 96 frames of 400 samples every 160
    assert vggish.examples(Audio(torch.zeros(1, 1, 15600), 16000)).shape == (1, 1, 96, 64)
    assert vggish.examples(Audio(torch.zeros(3, 1, 32000), 16000)).shape == (6, 1, 96, 64)  # 198 frames -> 2 a row
    with pytest.raises(ValueError, match="at least 0.975 s"):
        vggish.examples(Audio(torch.zeros(1, 1, 15599), 16000))
    with pytest.raises(TadaError, match="Audio"):
        vggish.examples(torch.zeros(1, 16000))


def test_flatten_is_channel_last_like_the_tensorflow_port(vggish):
    x = torch.randn(2, 512, 6, 4)
    reference = torch.transpose(torch.transpose(x, 1, 3), 1, 2).contiguous().view(2, -1)
    torch.testing.assert_close(x.permute(0, 2, 3, 1).flatten(1), reference)
    examples = torch.randn(2, 1, 96, 64)
    features = vggish.features(examples)
    assert features.shape == (2, 512, 6, 4)
    torch.testing.assert_close(vggish(examples), vggish.embeddings(torch.transpose(torch.transpose(
        features, 1, 3), 1, 2).reshape(2, -1)))


def test_embeddings_shapes_rows_and_no_final_relu(vggish):
    gen = torch.Generator().manual_seed(1)
    audio = Audio(0.1 * torch.randn(2, 2, 44100 * 2, generator=gen), 44100)  # stereo, 44.1 kHz, 2 s
    frames = vggish.embed_frames(audio)
    assert frames.shape == (4, 128) and frames.dtype == torch.float32
    assert (frames < 0).any()  # the embedding is taken before any ReLU
    torch.testing.assert_close(vggish.embed_frames(audio[1]), frames[2:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vggish.embed_audio(audio), frames.view(2, 2, 128).mean(1))


def _save(model, path, extra=None):
    torch.save({**model.state_dict(), **(extra or {})}, path)


def test_from_pretrained_reads_torchvggish_files(vggish, tmp_path):
    path = tmp_path / "vggish-10086976.pth"
    _save(vggish, path, {"pproc.pca_matrix": torch.eye(128)})  # torchvggish's whole-model files carry PCA too
    loaded = VGGish.from_pretrained(path)
    examples = torch.randn(1, 1, 96, 64)
    torch.testing.assert_close(loaded(examples), vggish(examples))
    state = vggish.state_dict()
    del state["embeddings.4.bias"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="missing \\['embeddings.4.bias'\\]"):
        VGGish.from_pretrained(tmp_path / "partial.pth")
    (tmp_path / "corrupt.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        VGGish.from_pretrained(tmp_path / "corrupt.pth")
    with pytest.raises(FileNotFoundError, match="vggish-10086976.pth"):
        VGGish.from_pretrained(tmp_path / "absent.pth")


def test_download_failure_names_the_url(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(FileNotFoundError, match="vggish-10086976.pth"):
        VGGish.from_pretrained()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_URL.split("/")[2]):
        load_embedder("vggish")


def test_vggish_fad_in_preservation(vggish):
    gen = torch.Generator().manual_seed(2)
    reference = Audio(0.1 * torch.randn(2, 1, 32000, generator=gen), 16000)
    steered = {5.0: Audio(reference.waveform * 0.5, 16000)}
    result = preservation(steered, reference, embed=vggish.embed_frames, progress=False)
    expected = fad(vggish.embed_frames(reference), vggish.embed_frames(steered[5.0]))
    assert result.fad == pytest.approx(expected) and result.fad > 0
    assert preservation({5.0: reference}, reference, embed=vggish.embed_frames, progress=False).fad == pytest.approx(
        0.0, abs=1e-6)


def test_unknown_embedding_name_lists_the_known():
    with pytest.raises(ValueError, match="vggish, clap, clap-tiny, muq, toy"):
        load_embedder("openl3")

import subprocess
import sys
import types

import numpy as np
import pytest
import soxr
import torch
from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, RobertaTokenizer

from tada.audio import Audio
from tada.errors import TadaError
from tada.evaluation.registry import SCORERS, load_scorer, paper_scorer_names
from tada.evaluation.scorers import Scorer
from tada.evaluation.scorers.aesthetics import (
    AXES,
    AudioboxAesthetics,
    inference_windows,
)
from tada.evaluation.scorers.clap import (
    CHECK_PROMPTS,
    ClapScorer,
    _tiny_tokenizer,
    window_starts,
)

SR = 48000


@pytest.fixture(scope="module")
def clap():
    return ClapScorer.random(seed=0)


def _noise(batch, seconds, sr=SR, seed=0, channels=1):
    gen = torch.Generator().manual_seed(seed)
    return Audio(0.1 * torch.randn(batch, channels, int(seconds * sr), generator=gen), sr)


# ---------------------------------------------------------------- CLAP windows


@pytest.mark.parametrize(
    "n, window, expected",
    [(5, 10, [0]), (10, 10, [0]), (20, 10, [0, 10]), (25, 10, [0, 10, 15]), (11, 10, [0, 1])],
)
def test_window_starts(n, window, expected):
    assert window_starts(n, window) == expected


def test_window_starts_rejects_empty():
    with pytest.raises(ValueError, match="positive"):
        window_starts(0, 10)


# ---------------------------------------------------------------- CLAP tiny


def test_clap_shapes_norms_and_protocol(clap):
    assert isinstance(clap, Scorer)
    audio = _noise(2, 1.5, sr=44100, channels=2)
    a = clap.embed_audio(audio)
    t = clap.embed_text(["a jazz piece", "fast rock", "sad piano"])
    assert a.shape == (2, 16) and t.shape == (3, 16)
    assert a.dtype == torch.float32 and t.dtype == torch.float32
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(clap.similarity(audio, ["a jazz piece", "fast rock", "sad piano"]), a @ t.T)


def test_clap_truncates_prompts_longer_than_the_text_tower(clap):
    assert clap.embed_text(["jazz " * 400]).shape == (1, 16)


def test_clap_random_is_deterministic_per_seed(clap):
    again = ClapScorer.random(seed=0)
    other = ClapScorer.random(seed=1)
    texts = ["slow jazz", "fast metal"]
    torch.testing.assert_close(again.embed_text(texts), clap.embed_text(texts), rtol=0, atol=0)
    assert not torch.allclose(other.embed_text(texts), clap.embed_text(texts), atol=1e-3)


def test_clap_long_audio_is_the_mean_of_fixed_windows(clap):
    audio = _noise(1, 25.0, seed=1)  # windows start at 0 s, 10 s and 15 s
    first = clap.embed_audio(audio)
    torch.testing.assert_close(clap.embed_audio(audio), first, rtol=0, atol=0)
    w = audio.waveform
    parts = [Audio(w[..., s * SR : (s + 10) * SR], SR) for s in (0, 10, 15)]
    expected = torch.nn.functional.normalize(sum(clap.embed_audio(p) for p in parts), dim=-1)
    torch.testing.assert_close(first, expected, rtol=1e-5, atol=1e-6)


def test_clap_mono_mix_and_resampling(clap):
    audio = _noise(2, 1.0, sr=24000, seed=2)
    stereo = Audio(audio.waveform.repeat(1, 2, 1), 24000)
    torch.testing.assert_close(clap.embed_audio(stereo), clap.embed_audio(audio))
    at_48k = soxr.resample(audio.waveform[:, 0].double().numpy().T, 24000, SR, quality="HQ").T
    resampled = Audio(torch.from_numpy(np.ascontiguousarray(at_48k)).float()[:, None], SR)
    torch.testing.assert_close(clap.embed_audio(audio), clap.embed_audio(resampled), rtol=1e-4, atol=1e-5)


def _tiny_fused_model(tokenizer) -> ClapModel:
    config = ClapConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=130, pad_token_id=tokenizer.pad_token_id,
        ),
        audio_config=dict(
            depths=[1, 1], num_attention_heads=[2, 2], patch_embeds_hidden_size=16, hidden_size=32,
            window_size=8, enable_fusion=True, fusion_type="aff_2d",
        ),
        projection_dim=16,
    )  # fmt: skip
    model = ClapModel(config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) / p[0].numel() ** 0.5)
    return model


def test_clap_fused_model_has_no_random_row_choice():
    # The feature extractor marks one random row "longer" in fusion mode; our override must make every row's
    # embedding independent of the batch it is in.
    tokenizer = _tiny_tokenizer()
    scorer = ClapScorer(_tiny_fused_model(tokenizer), ClapFeatureExtractor(), tokenizer)
    assert scorer.fused
    audio = _noise(3, 1.0, seed=3)
    batch = scorer.embed_audio(audio)
    for i in range(3):
        torch.testing.assert_close(scorer.embed_audio(audio[i]), batch[i : i + 1], rtol=1e-5, atol=1e-6)


def test_clap_rejects_stub_vocabulary():
    model = ClapScorer.random(seed=0).model
    stub = RobertaTokenizer(vocab={"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}, merges=[])
    with pytest.raises(ValueError, match="real vocabulary"):
        ClapScorer(model, ClapFeatureExtractor(), stub)


def test_clap_rejects_collapsed_text_embeddings():
    scorer = ClapScorer.random(seed=0)
    with torch.no_grad():
        scorer.model.text_projection.linear2.weight.zero_()
        scorer.model.text_projection.linear2.bias.copy_(torch.linspace(-1, 1, 16))
    with pytest.raises(ValueError, match="collapsed"):
        ClapScorer(scorer.model, scorer.feature_extractor, scorer.tokenizer)
    with torch.no_grad():
        scorer.model.text_projection.linear2.bias.zero_()
    with pytest.raises(ValueError, match="unit vectors"):
        ClapScorer(scorer.model, scorer.feature_extractor, scorer.tokenizer)
    unchecked = ClapScorer(scorer.model, scorer.feature_extractor, scorer.tokenizer, check=False)
    assert unchecked.embed_text(list(CHECK_PROMPTS)).shape == (4, 16)


def test_clap_save_and_load_local_folder(tmp_path, clap):
    clap.save_pretrained(tmp_path / "clap")
    loaded = ClapScorer.from_pretrained(tmp_path / "clap")
    torch.testing.assert_close(loaded.embed_text(["slow jazz"]), clap.embed_text(["slow jazz"]))
    assert loaded.checkpoint == str(tmp_path / "clap")


def test_clap_bad_input(tmp_path, clap):
    with pytest.raises(FileNotFoundError, match="cannot load CLAP checkpoint"):
        ClapScorer.from_pretrained(tmp_path / "missing")
    with pytest.raises(TadaError, match="list of strings"):
        clap.embed_text("a jazz piece")
    with pytest.raises(TadaError, match="Audio"):
        clap.embed_audio(torch.zeros(1, 1, 100))
    with pytest.raises(TadaError, match="ClapModel"):
        ClapScorer(torch.nn.Linear(2, 2), clap.feature_extractor, clap.tokenizer)
    with pytest.raises(ValueError, match="batch_size"):
        ClapScorer(clap.model, clap.feature_extractor, clap.tokenizer, batch_size=0)


# ---------------------------------------------------------------- registry


def test_load_scorer_by_name():
    scorer = load_scorer("clap-tiny", seed=2)
    assert isinstance(scorer, ClapScorer) and scorer.checkpoint == "random-seed2"
    assert set(SCORERS) == {"clap", "clap-tiny", "muq", "toy"}


def test_paper_scorers_are_clap_and_muq_for_real_models():
    def named(name):
        return types.SimpleNamespace(name=name)

    assert paper_scorer_names(named("stable-audio-open")) == ["clap", "muq"]
    assert paper_scorer_names(named("toy")) == ["toy"]
    assert paper_scorer_names(named("tiny-ace-step")) == ["clap-tiny"]
    assert set(paper_scorer_names(named("audioldm2"))) <= set(SCORERS)


def test_load_scorer_unknown_name_lists_known():
    with pytest.raises(ValueError, match="clap, clap-tiny, muq, toy"):
        load_scorer("vggish")
    with pytest.raises(TadaError, match="str"):
        load_scorer(3)


def test_scoring_import_is_lazy():
    code = (
        "import sys, tada.evaluation.scorers; "
        "heavy = [m for m in ('tada.toy.scorer', 'tada.evaluation.scorers.clap', 'tada.evaluation.scorers.muq') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- Audiobox Aesthetics (optional)


def test_aesthetics_missing_package_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "audiobox_aesthetics", None)
    with pytest.raises(ImportError, match="pip install --no-deps audiobox-aesthetics"):
        AudioboxAesthetics.random()


def test_inference_windows_hand_values():
    wavs = torch.arange(50, dtype=torch.float32).reshape(2, 25)
    windows, masks, weights, owners = inference_windows(wavs, window=10)
    assert windows.shape == (6, 1, 10) and masks.shape == (6, 1, 10)
    torch.testing.assert_close(weights, torch.tensor([1.0, 1.0, 0.5, 1.0, 1.0, 0.5], dtype=torch.float64))
    assert owners.tolist() == [0, 0, 0, 1, 1, 1]
    torch.testing.assert_close(windows[2, 0], torch.tensor([20.0, 21, 22, 23, 24, 0, 0, 0, 0, 0]))
    assert masks[2, 0].tolist() == [True] * 5 + [False] * 5
    with pytest.raises(ValueError, match="batch, samples"):
        inference_windows(torch.zeros(3))


class _MaskedMeanAes(torch.nn.Module):
    """Stand-in for AesMultiOutput: every axis scores a window by the mean of its real samples."""

    def __init__(self, target_transform=None, **cfg):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(()))
        self.target_transform = target_transform
        self.cfg = cfg

    def forward(self, batch):
        wav, mask = batch["wav"][:, 0], batch["mask"][:, 0]
        mean = (wav * mask).sum(-1) / mask.sum(-1)
        return {axis: mean * self.weight for axis in AXES}


def test_aesthetics_score_hand_computed():
    transform = {axis: {"mean": 2.0, "std": 0.5} for axis in AXES}
    scorer = AudioboxAesthetics(_MaskedMeanAes(transform), batch_size=1)
    wav = torch.cat([torch.full((10 * 16000,), 1.0), torch.full((5 * 16000,), 3.0)])
    out = scorer.score(Audio(torch.stack([wav, 2 * wav])[:, None], 16000))
    # row 0: windows score 1 and 3 -> ratings 2.5 and 3.5, weights 1 and 0.5 -> (2.5 + 1.75) / 1.5
    # row 1: windows score 2 and 6 -> ratings 3 and 5 -> (3 + 2.5) / 1.5
    expected = torch.tensor([4.25 / 1.5, 5.5 / 1.5], dtype=torch.float64)
    for axis in AXES:
        torch.testing.assert_close(out[axis], expected)


def test_aesthetics_bad_input():
    with pytest.raises(ValueError, match="target_transform"):
        AudioboxAesthetics(_MaskedMeanAes({"CE": {"mean": 0, "std": 1}}))
    scorer = AudioboxAesthetics(_MaskedMeanAes({axis: {"mean": 0, "std": 1} for axis in AXES}))
    with pytest.raises(TadaError, match="Audio"):
        scorer.score(torch.zeros(1, 1, 16000))


def test_aesthetics_original_checkpoint_layout(tmp_path, monkeypatch):
    module = types.ModuleType("audiobox_aesthetics.model.aes")
    module.AesMultiOutput = _MaskedMeanAes
    monkeypatch.setitem(sys.modules, "audiobox_aesthetics.model.aes", module)
    cfg = {"proj_num_layer": 1, "proj_ln": False, "proj_act_fn": "gelu", "proj_dropout": 0, "nth_layer": 13,
           "use_weighted_layer_sum": True, "precision": "32", "normalize_embed": True, "output_dim": 1}  # fmt: skip
    transform = {axis: {"mean": 1.0, "std": 2.0} for axis in AXES}
    torch.save(
        {"state_dict": {"model.weight": torch.tensor(0.5)}, "model_cfg": cfg, "target_transform": transform},
        tmp_path / "checkpoint.pt",
    )
    scorer = AudioboxAesthetics.from_pretrained(tmp_path / "checkpoint.pt")
    assert scorer.model.weight.item() == 0.5 and scorer.model.cfg == cfg
    assert scorer.mean["PQ"] == 1.0 and scorer.std["PQ"] == 2.0
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AudioboxAesthetics.from_pretrained(tmp_path / "missing.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an Audiobox Aesthetics checkpoint"):
        AudioboxAesthetics.from_pretrained(tmp_path / "other.pt")


@pytest.mark.slow
def test_aesthetics_real_model_random_weights():
    pytest.importorskip("audiobox_aesthetics.model.aes")
    scorer = AudioboxAesthetics.random(seed=0)
    audio = _noise(2, 3.0, sr=22050, seed=5)
    out = scorer.score(audio)
    assert set(out) == set(AXES)
    for axis in AXES:
        assert out[axis].shape == (2,) and torch.all(torch.isfinite(out[axis]))
    assert "torchaudio" not in sys.modules
    single = scorer.score(audio[1])
    torch.testing.assert_close(single["CE"], out["CE"][1:], rtol=1e-4, atol=1e-5)

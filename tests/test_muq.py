"""The MuQ-MuLan port against the `muq` package's own outputs (tests/reference/make_muq_mulan.py ran
the package, in an environment where it works, on a tiny random checkpoint)."""

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tada.audio import Audio
from tada.errors import TadaError
from tada.evaluation.registry import load_scorer
from tada.evaluation.scorers.muq import MuQMuLan, MuQScorer

REFERENCE = Path(__file__).parent / "reference" / "muq-mulan-tiny"


@pytest.fixture(scope="module")
def model():
    return MuQMuLan.from_pretrained(REFERENCE)


@pytest.fixture(scope="module")
def reference():
    return load_file(str(REFERENCE / "reference.safetensors")), json.loads((REFERENCE / "reference.json").read_text())


def test_audio_latents_equal_the_package(model, reference):
    tensors, _ = reference
    for case in ("long", "short"):  # 2.5 clips (the last wrapped) and 0.7 of a clip
        torch.testing.assert_close(model.embed_audio(tensors[f"wavs_{case}"]), tensors[f"latents_{case}"],
                                   atol=2e-5, rtol=0)


def test_text_latents_equal_the_package_one_text_at_a_time(model, reference):
    tensors, meta = reference
    ours = model.embed_text(meta["texts"])
    torch.testing.assert_close(ours, tensors["text_latents"], atol=2e-5, rtol=0)
    # The package batched pads and averages over the padding: shorter texts move. Ours do not.
    moved = (tensors["text_latents_batched"] - tensors["text_latents"]).abs().amax(dim=1)
    assert moved[0] < 1e-5 and (moved[1:] > 1e-2).all()
    torch.testing.assert_close(model.embed_text([meta["texts"][2]]), ours[2:])


def test_text_latents_are_unit_norm_and_audio_latents_average_unit_clips(model, reference):
    tensors, meta = reference
    torch.testing.assert_close(model.embed_text(meta["texts"]).norm(dim=-1), torch.ones(3))
    one_clip = model.embed_audio(tensors["wavs_short"])
    torch.testing.assert_close(one_clip.norm(dim=-1), torch.ones(1))
    assert (model.embed_audio(tensors["wavs_long"]).norm(dim=-1) < 1).all()  # a mean of 3 distinct unit vectors


def test_clips_are_consecutive_and_the_rest_wraps_to_the_start(model):
    size = model.clip_samples
    assert size == 24000
    wav = torch.arange(int(2.5 * size), dtype=torch.float32)
    clips = model.clips(wav)
    assert clips.shape == (3, size)
    torch.testing.assert_close(clips[1], wav[size:2 * size])
    torch.testing.assert_close(clips[2], torch.cat([wav[2 * size:], wav[: size // 2]]))
    assert model.clips(torch.arange(2 * size, dtype=torch.float32)).shape == (2, size)
    short = torch.arange(size // 4, dtype=torch.float32)
    torch.testing.assert_close(model.clips(short), torch.cat([short, short])[None])  # up to twice its length


def test_clip_batch_size_does_not_change_latents(model, reference):
    wavs = reference[0]["wavs_long"]
    torch.testing.assert_close(model.embed_audio(wavs, batch_size=1), model.embed_audio(wavs, batch_size=6))


def test_a_double_precision_copy_agrees(model, reference):
    wavs = reference[0]["wavs_short"]
    double = copy.deepcopy(model).double()
    torch.testing.assert_close(double.embed_audio(wavs).float(), model.embed_audio(wavs), atol=1e-5, rtol=0)


def test_hidden_state_index(model, reference):
    wav = reference[0]["wavs_short"]
    encoder = model.audio.encoder
    layers = len(encoder.conformer.layers)
    torch.testing.assert_close(encoder.hidden_state(wav, 0), encoder.conv(encoder.mel(wav)))
    torch.testing.assert_close(encoder.hidden_state(wav, -1), encoder.hidden_state(wav, layers))
    with pytest.raises(TadaError, match="out of range for 2 layers"):
        encoder.hidden_state(wav, layers + 1)


def test_mel_features_shape_and_hand_values(model):
    mel = model.audio.encoder.mel
    frames = mel(torch.zeros(1, 4800))
    assert frames.shape == (1, 128, 4800 // 240)  # centred frames, the last dropped
    torch.testing.assert_close(frames, torch.full_like(frames, (-100.0 - mel.mean) / mel.std))  # 10 log10(1e-10)
    tone = mel(torch.sin(2 * torch.pi * 1000 * torch.arange(24000) / 24000)[None])
    peak_band = int(tone[0, :, 50].argmax())
    centres = 700 * (10 ** (torch.linspace(0, 2595 * torch.log10(torch.tensor(1 + 12000 / 700)), 130) / 2595) - 1)
    assert abs(centres[1:-1][peak_band] - 1000) < 60


def _copy(tmp_path: Path) -> Path:
    dest = tmp_path / "ckpt"
    shutil.copytree(REFERENCE, dest)
    return dest


def test_backbones_missing_from_the_checkpoint_come_from_their_repositories(model, reference, tmp_path):
    root = _copy(tmp_path)
    state = load_file(str(root / "model.safetensors"))
    text = {k[len("mulan.text.model."):]: v for k, v in state.items() if k.startswith("mulan.text.model.")}
    audio = {"model." + k[len("mulan.audio.model.model."):]: v for k, v in state.items()
             if k.startswith("mulan.audio.model.model.")}
    save_file({k: v for k, v in state.items() if not k.startswith(("mulan.text.model.", "mulan.audio.model."))},
              str(root / "model.safetensors"))
    save_file(audio, str(root / "tiny-muq" / "model.safetensors"))
    save_file(text, str(root / "tiny-xlm-roberta" / "model.safetensors"))
    reloaded = MuQMuLan.from_pretrained(root)
    tensors, meta = reference
    torch.testing.assert_close(reloaded.embed_audio(tensors["wavs_short"]), model.embed_audio(tensors["wavs_short"]))
    torch.testing.assert_close(reloaded.embed_text(meta["texts"]), model.embed_text(meta["texts"]))


def test_checkpoint_with_holes_or_unknown_weights_is_refused(tmp_path):
    root = _copy(tmp_path)
    state = load_file(str(root / "model.safetensors"))
    save_file({k: v for k, v in state.items() if k != "mulan.audio_to_latents.weight"}, str(root / "model.safetensors"))
    with pytest.raises(ValueError, match="lacks weights: \\['audio_to_latents.weight'\\]"):
        MuQMuLan.from_pretrained(root)
    save_file({**state, "mulan.extra.weight": torch.zeros(1)}, str(root / "model.safetensors"))
    with pytest.raises(ValueError, match="does not know: \\['extra.weight'\\]"):
        MuQMuLan.from_pretrained(root)


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        MuQMuLan.from_pretrained(tmp_path)
    root = _copy(tmp_path)
    (root / "config.json").write_text(json.dumps({"mulan": {}}))
    with pytest.raises(ValueError, match="lacks 'audio_model'"):
        MuQMuLan.from_pretrained(root)
    with pytest.raises(FileNotFoundError, match="OpenMuQ/MuQ-MuLan-large"):  # tests run with the hub offline
        MuQMuLan.from_pretrained()
    root = _copy(tmp_path / "second")
    cfg = json.loads((root / "tiny-xlm-roberta" / "config.json").read_text())
    (root / "tiny-xlm-roberta" / "config.json").write_text(json.dumps({**cfg, "model_type": "bert"}))
    with pytest.raises(ValueError, match="must be XLM-RoBERTa"):
        MuQMuLan.from_pretrained(root)


def test_scorer_protocol(reference):
    tensors, meta = reference
    scorer = load_scorer("muq", checkpoint=str(REFERENCE))
    assert isinstance(scorer, MuQScorer) and scorer.name == "muq"
    audio = Audio(torch.stack([tensors["wavs_long"][0], tensors["wavs_long"][0]])[:, None].repeat(1, 2, 1), 24000)
    sims = scorer.similarity(audio, meta["texts"])
    assert sims.shape == (2, 3) and sims.dtype == torch.float32
    expected = torch.nn.functional.normalize(tensors["latents_long"][:1], dim=-1) @ tensors["text_latents"].T
    torch.testing.assert_close(sims, expected.repeat(2, 1), atol=2e-5, rtol=0)
    resampled = scorer.embed_audio(Audio(torch.randn(1, 1, 12000), 48000))  # 0.25 s at 48 kHz -> 6000 samples
    assert resampled.shape == (1, 16)
    with pytest.raises(TadaError, match="non-empty list"):
        scorer.embed_text([])
    with pytest.raises(TadaError, match="non-empty"):
        scorer.embed_text(["ok", " "])
    with pytest.raises(TadaError, match="Audio"):
        scorer.embed_audio(tensors["wavs_long"])

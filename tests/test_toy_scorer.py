"""ToyScorer: keyword text side, probability audio side, and the shipped weights' accuracy."""

import numpy as np
import pytest
import torch

from tada.audio import Audio
from tada.errors import TadaError
from tada.evaluation.scorers.base import Scorer
from tada.toy.scorer import (
    ATOMS,
    GROUPS,
    ToyScorer,
    atom_probabilities,
    attribute_targets,
    text_atoms,
)
from tada.toy.synth import SAMPLE_RATE, make_example

INDEX = {atom: k for k, atom in enumerate(ATOMS)}


@pytest.fixture(scope="module")
def scorer():
    return ToyScorer.from_pretrained()


@pytest.fixture(scope="module")
def fresh():
    """24 clips never seen in training (training uses seeds below 1e6, its held-out set 1e6..)."""
    examples = [make_example(2_000_000 + i) for i in range(24)]
    audio = Audio(torch.from_numpy(np.stack([w for _, _, w in examples]))[:, None], SAMPLE_RATE)
    targets = torch.stack([attribute_targets(a) for a, _, _ in examples])
    return audio, targets


def test_text_atoms_match_whole_words():
    got = text_atoms("A slow sad piano ballad with a female vocal")
    on = {("tempo", "slow"), ("mood", "sad"), ("instrument", "piano"), ("vocal", "female")}
    assert got.tolist() == [1.0 if atom in on else 0.0 for atom in ATOMS]
    # "male vocal" is not found inside "female vocal"; synonyms map to the same atom
    assert text_atoms("female voice")[INDEX[("vocal", "male")]] == 0
    assert text_atoms("melancholic")[INDEX[("mood", "sad")]] == 1
    assert text_atoms("upbeat")[INDEX[("mood", "happy")]] == 1
    assert text_atoms("male voice")[INDEX[("vocal", "male")]] == 1


def test_embed_text_unit_norm_and_zero_for_no_keyword(scorer):
    emb = scorer.embed_text(["fast techno with drums and maracas", "a nice song"])
    assert emb.shape == (2, len(ATOMS))
    # four atoms named -> each 1/sqrt(4) = 0.5
    assert torch.allclose(emb[0][emb[0] > 0], torch.full((4,), 0.5))
    assert torch.all(emb[1] == 0)


def test_atom_probabilities_softmax_per_group_sigmoid_per_instrument():
    logits = torch.arange(len(ATOMS), dtype=torch.float32)[None] / 3
    probs = atom_probabilities(logits)
    start = 0
    for values in GROUPS.values():
        block = probs[0, start:start + len(values)]
        assert block.sum().item() == pytest.approx(1.0, abs=1e-6)
        torch.testing.assert_close(block, logits[0, start:start + len(values)].softmax(-1))
        start += len(values)
    torch.testing.assert_close(probs[0, start:], torch.sigmoid(logits[0, start:]))


def test_embeddings_and_similarity_follow_the_protocol(scorer, fresh):
    audio, _ = fresh
    audio = audio[:4]
    assert isinstance(scorer, Scorer) and scorer.name == "toy"
    emb = scorer.embed_audio(audio)
    torch.testing.assert_close(emb, torch.nn.functional.normalize(2 * scorer.probabilities(audio) - 1, dim=-1))
    texts = ["fast", "slow jazz with piano"]
    sim = scorer.similarity(audio, texts)
    assert sim.shape == (4, 2) and sim.dtype == torch.float32
    torch.testing.assert_close(sim, emb @ scorer.embed_text(texts).T)


def test_shipped_scorer_beats_chance_on_fresh_clips(scorer, fresh):
    audio, targets = fresh
    probs = scorer.probabilities(audio)
    start = 0
    for group, values in GROUPS.items():
        sl = slice(start, start + len(values))
        acc = (probs[:, sl].argmax(-1) == targets[:, sl].argmax(-1)).float().mean().item()
        assert acc >= 0.8, (group, acc)  # chance: 1/2 or 1/3
        start += len(values)
    inst_acc = ((probs[:, start:] > 0.5) == (targets[:, start:] > 0.5)).float().mean().item()
    assert inst_acc >= 0.85
    # the similarity to "fast" ranks fast clips above slow ones
    sim = scorer.similarity(audio, ["fast"])[:, 0]
    is_fast = targets[:, INDEX[("tempo", "fast")]] > 0
    assert sim[is_fast].mean() > sim[~is_fast].mean()


def test_other_sample_rates_and_lengths_are_accepted(scorer, fresh):
    audio, _ = fresh
    import soxr

    up = torch.from_numpy(np.stack([soxr.resample(w[0].numpy(), SAMPLE_RATE, 32000) for w in audio.waveform[:3]]))
    p16 = scorer.probabilities(audio[:3])
    p32 = scorer.probabilities(Audio(up[:, None].float(), 32000))
    assert (p16 - p32).abs().max() < 0.15
    short = scorer.probabilities(Audio(audio.waveform[:1, :, :8000], SAMPLE_RATE))
    assert short.shape == (1, len(ATOMS))


def test_bad_inputs_raise_clear_errors(scorer, tmp_path):
    with pytest.raises(TadaError, match="Audio"):
        scorer.embed_audio(torch.zeros(1, 1, 100))
    with pytest.raises(TadaError, match="list of strings"):
        scorer.embed_text("fast")
    with pytest.raises(TadaError, match="must be a str"):
        text_atoms(3)
    with pytest.raises(FileNotFoundError, match="scorer_config.json"):
        ToyScorer.from_pretrained(tmp_path)


def _tones(freqs, seconds: float = 2.0, rate: int = 16000) -> torch.Tensor:
    """Sines faded in and out over 50 ms (a hard start is a click heard at every frequency)."""
    t = torch.arange(int(seconds * rate)) / rate
    fade = torch.clamp(torch.minimum(t, seconds - t) / 0.05, max=1.0)
    return fade * sum(torch.sin(2 * torch.pi * f * t) for f in freqs)[None] / len(freqs)


def _v2_log_mel(wave):
    from tada.toy.worlds import get_world

    mel = get_world("v2").mel_spec()
    return mel.log_mel(wave), mel


@pytest.mark.parametrize("freq, pitch_class", [(440.0, 9), (523.25, 0), (293.66, 2), (1661.2, 8)])
def test_a_tone_lands_on_its_pitch_class(freq, pitch_class):
    from tada.toy.scorer import mel_centres, pitch_class_profile

    log_mel, mel = _v2_log_mel(_tones([freq]))
    centres = mel_centres(mel.n_mels, mel.f_min, mel.f_max)
    profile = pitch_class_profile(log_mel, centres)[0]
    others = torch.cat([profile[:pitch_class], profile[pitch_class + 1:]])
    assert profile.argmax() == pitch_class and profile[pitch_class] > 1.5 * others.max()  # window leakage makes small peaks
    above = pitch_class_profile(_v2_log_mel(_tones([4000.0]))[0], centres)  # above the band
    assert above.sum() < 0.01 * profile.sum()


@pytest.mark.parametrize("key", range(12))
def test_a_triad_in_any_key_puts_its_three_notes_on_top(key):
    from tada.toy.scorer import mel_centres, pitch_class_profile

    for third in (4, 3):  # major, minor
        notes = [(key + k) % 12 for k in (0, third, 7)]
        log_mel, mel = _v2_log_mel(_tones([523.25 * 2 ** ((key + k) / 12) for k in (0, third, 7)]))
        centres = mel_centres(mel.n_mels, mel.f_min, mel.f_max)
        profile = pitch_class_profile(log_mel, centres)[0]
        assert set(profile.topk(3).indices.tolist()) == set(notes)


def test_the_mode_features_do_not_depend_on_the_key(monkeypatch):
    from tada.toy import scorer

    torch.manual_seed(0)
    mode = scorer.PitchClassProfile(256, 30.0, 8000.0)
    major, minor = torch.zeros(1, 12), torch.zeros(1, 12)
    major[:, [0, 4, 7]], minor[:, [0, 3, 7]] = 1.0, 1.0
    x = torch.zeros(1, 256, 5)

    def features(profile):
        monkeypatch.setattr(scorer, "pitch_class_profile", lambda *args: profile)
        return mode(x)

    for shift in range(1, 12):
        torch.testing.assert_close(features(major.roll(shift, dims=1)), features(major), rtol=0, atol=1e-6)
    assert not torch.allclose(features(major), features(minor))  # but the mode is seen

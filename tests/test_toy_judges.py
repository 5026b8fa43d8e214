"""Physical judges of world v2: each separates its concept's classes on fresh clips, also after the round trip."""

import numpy as np
import pytest

from tada.toy import judges, world
from tada.toy.synth import Attributes, caption
from tada.toy.worlds import get_world

SR = world.SAMPLE_RATE
#: seeds no training split uses
FRESH = 4_000_000


def attrs(**kw):
    base = dict(tempo="slow", mood="happy", vocal="instrumental", instruments=("piano",), genre="techno", bpm=70.0)
    base.update(kw)
    return Attributes(**base)


def test_auc_counts_ordered_pairs():
    assert judges.auc([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert judges.auc([4, 3, 2, 1], [False, False, True, True]) == 0.0
    assert judges.auc([1, 1], [False, True]) == 0.5
    assert np.isnan(judges.auc([1, 2], [True, True]))


@pytest.fixture(scope="module")
def fresh():
    examples = [world.make_example(FRESH + i) for i in range(48)]
    waves = np.stack([e[2] for e in examples])
    return examples, waves, judges.round_trip(waves, get_world("v2").mel_spec())


@pytest.mark.parametrize("concept, floor", [("mood", 0.9), ("maracas", 0.9), ("drums", 0.9), ("tempo", 0.75)])
def test_judges_separate_fresh_clips_before_and_after_the_round_trip(fresh, concept, floor):
    examples, waves, decoded = fresh
    before = judges.measure_clips(examples, list(waves), SR, [concept])[concept]
    after = judges.measure_clips(examples, list(decoded), SR, [concept])[concept]
    assert before["n"] >= 20 and min(before["labels"]) != max(before["labels"])
    assert before["auc"] >= floor, before["auc"]
    assert after["auc"] >= floor, after["auc"]


def test_vocal_gender_judge_reads_the_register():
    # the same clip sung by a male and by a female voice, five nuisance draws
    male, female = [], []
    for seed in range(5):
        for vocal, bucket in (("male", male), ("female", female)):
            wave = world.render(attrs(vocal=vocal, instruments=("violin", "guitar"), genre="reggae"), FRESH + seed)
            bucket.append(judges.JUDGES["vocal_gender"].measure(wave, SR))
    assert all(m < judges.JUDGES["vocal_gender"].threshold < f for m, f in zip(male, female)), (male, female)


@pytest.mark.parametrize("instruments", [("violin", "piano"), ("trumpet", "drums")])
def test_mood_judge_follows_the_mode_alone(instruments):
    # same seed and nuisance (key, register, brightness): only the mode changes, and the measure
    # moves with it. (A trumpet alone, whose 4th-5th harmonics are its loudest, adds major thirds:
    # its minor clips can still measure above 0, so only the difference is asserted for it.)
    judge = judges.JUDGES["mood"]
    for seed in range(4):
        happy = world.render(attrs(mood="happy", instruments=instruments), FRESH + seed)
        sad = world.render(attrs(mood="sad", instruments=instruments), FRESH + seed)
        assert judge.measure(happy, SR) > judge.measure(sad, SR) + 0.1
        if "trumpet" not in instruments:
            assert judge.decide(happy, SR) and not judge.decide(sad, SR)


def test_adherence_agrees_with_the_true_captions_and_not_with_swapped_ones(fresh):
    examples, waves, _ = fresh
    subset = [i for i, (a, _, _) in enumerate(examples) if a.vocal == "instrumental"][:16]
    rng = np.random.default_rng(0)
    true = [caption(examples[i][0], rng, omit_prob=0.0) for i in subset]
    wrong = [caption(Attributes(tempo="slow" if a.tempo == "fast" else "fast",
                                mood="sad" if a.mood == "happy" else "happy", vocal=a.vocal,
                                instruments=a.instruments, genre=a.genre,
                                bpm=75.0 if a.tempo == "fast" else 150.0), rng, omit_prob=0.0)
             for a in (examples[i][0] for i in subset)]
    right = judges.adherence(waves[subset], true, SR)
    swapped = judges.adherence(waves[subset], wrong, SR)
    assert right["judge:mood"] >= 0.8 and swapped["judge:mood"] <= 0.2
    assert right["judge:tempo"] >= 0.7 and swapped["judge:tempo"] <= 0.3
    assert right["judge:drums"] >= 0.8 and right["judge:maracas"] >= 0.8
    assert right["judge:trumpet"] >= 0.8


def test_the_ceiling_judges_the_worlds_own_clips_against_their_own_captions():
    """Clips paired with another seed's captions would name the wrong percussion half the time."""
    result = judges.ceiling(n=8, seed_offset=FRESH)
    assert set(result) == {"rendered", "round_trip"}
    for view in result.values():
        assert set(view) == {f"judge:{c}" for c in ("tempo", "mood", "vocal_gender", *judges.INSTRUMENTS)}
        assert view["judge:drums"] >= 0.85 and view["judge:maracas"] >= 0.7 and view["judge:mood"] >= 0.85
        assert view["judge:tempo"] >= 0.75 and view["judge:trumpet"] >= 0.85


@pytest.mark.parametrize("argv, named", [(["--ceiling", "--n", "0"], "n = 0 clips; accepted: 1 or more"),
                                          (["--n", "-3"], "n = -3 clips"),
                                          (["--measures", "--world", "v9"], "unknown toy world 'v9'")])
def test_a_bad_clip_count_or_world_is_one_line_before_any_clip(argv, named, capsys, monkeypatch):
    import dataclasses

    from tada.toy import worlds

    for name, spec in list(worlds.WORLDS.items()):
        monkeypatch.setitem(worlds.WORLDS, name, dataclasses.replace(
            spec, make_example=lambda seed: pytest.fail("a clip was rendered")))
    with pytest.raises(SystemExit) as exit_:
        judges.main(argv)
    assert exit_.value.code == 2 and named in capsys.readouterr().err


def test_the_toy_scorers_pitch_classes_read_the_mode_like_the_judge(fresh):
    """The v2 scorer's fixed pitch-class profile of the log-mel (no learning), scored with Temperley's key
    profiles, separates major from minor clips, also after the round trip."""
    import torch

    from tada.evaluation.mir import profile_key_correlations
    from tada.toy.scorer import mel_centres, pitch_class_profile

    examples, waves, decoded = fresh
    mel = get_world("v2").mel_spec()
    centres = mel_centres(mel.n_mels, mel.f_min, mel.f_max)
    happy = [attrs.mood == "happy" for attrs, _, _ in examples]
    for clips in (waves, decoded):
        profiles = pitch_class_profile(mel.log_mel(torch.from_numpy(np.asarray(clips, dtype=np.float32))), centres)
        scores = [major.max() - minor.max() for major, minor in
                  (profile_key_correlations(p.numpy(), "temperley") for p in profiles)]
        assert judges.auc(scores, happy) >= 0.9, judges.auc(scores, happy)


def test_note_templates_hold_every_part_as_unit_columns():
    templates, owners = judges.note_templates()
    pitches = judges.TEMPLATE_PITCHES
    per_instrument = len(pitches["melodic"]) * len(judges.TEMPLATE_BRIGHTNESS)
    assert [owners.count(i) for i in world.MELODIC] == [per_instrument] * 5
    assert owners.count("vocal") == (len(pitches["male"]) + len(pitches["female"])) * 4
    assert owners.count("bass") == len(pitches["bass"])
    assert templates.shape == (judges.TEMPLATE_FFT // 2 + 1, len(owners))
    np.testing.assert_allclose(np.linalg.norm(templates, axis=0), 1.0, rtol=1e-5)
    # a flute note is nearly one partial: its atom's peak bin is its fundamental's (A4 = MIDI 69, 440 Hz)
    a4 = [k for k, o in enumerate(owners) if o == "flute"][(69 - 40) * len(judges.TEMPLATE_BRIGHTNESS)]
    assert abs(np.argmax(templates[:, a4]) * SR / judges.TEMPLATE_FFT - 440.0) < SR / judges.TEMPLATE_FFT


#: the measured AUCs on these 24 clips, rendered: 0.86-1.0; after the round trip: 0.70-1.0 (docs/toy-world-v2.md)
MELODIC_FLOORS = {"rendered": 0.8, "round_trip": 0.65}


@pytest.mark.parametrize("instrument", ["piano", "flute", "violin", "trumpet"])
def test_an_instruments_share_is_largest_in_the_clip_it_plays_in(instrument):
    # one clip with a voice and drums, played by each melodic instrument in turn; the guitar fails this
    # (the piano's and violin's notes take its share, docs/toy-world-v2.md), so it is not asserted for it
    shares = {other: judges.melodic_shares(world.render(
        attrs(instruments=(other, "drums"), vocal="female", genre="jazz"), FRESH + 7), SR)[instrument]
        for other in world.MELODIC}
    assert max(shares, key=shares.get) == instrument, shares


def test_melodic_shares_sum_to_one_and_refuse_another_sample_rate(fresh):
    _, waves, _ = fresh
    assert abs(sum(judges.melodic_shares(waves[0], SR).values()) - 1.0) < 1e-5
    with pytest.raises(ValueError, match="22050"):
        judges.melodic_shares(waves[0], 22050)


def test_melodic_judges_separate_fresh_clips_before_and_after_the_round_trip(fresh):
    examples, waves, decoded = fresh
    for view, clips in (("rendered", waves), ("round_trip", decoded)):
        report = judges.measure_clips(examples[:24], list(clips[:24]), SR, list(world.MELODIC))
        for instrument in world.MELODIC:
            assert min(report[instrument]["labels"]) != max(report[instrument]["labels"])
            assert report[instrument]["auc"] >= MELODIC_FLOORS[view], (view, instrument, report[instrument]["auc"])

"""MIR measurements on synthesized clips whose answer is known by construction."""

import numpy as np
import pytest

from tada.evaluation import mir

SR = 16000


def click_track(bpm, seconds=8.0, offset=0.1):
    """A 1 kHz-ish decaying click on every beat."""
    out = np.zeros(int(seconds * SR))
    n = int(0.03 * SR)
    t = np.arange(n) / SR
    click = np.sin(2 * np.pi * 1000 * t) * np.exp(-t * 150)
    for start in np.arange(offset, seconds - 0.05, 60.0 / bpm):
        i = int(start * SR)
        out[i:i + n] += click[: len(out) - i]
    return out.astype(np.float32)


def tone(midi, seconds, harmonics=6, rolloff=1.0):
    t = np.arange(int(seconds * SR)) / SR
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    return sum(np.sin(2 * np.pi * k * f0 * t) / k**rolloff for k in range(1, harmonics + 1) if k * f0 < SR / 2)


def chord(root, quality, seconds=4.0):
    third = 4 if quality == "major" else 3
    wave = sum(tone(root + i, seconds) for i in (0, third, 7)) + 0.7 * tone(root - 12, seconds)
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


def sequence(chords, seconds_each=1.5):
    return np.concatenate([chord(root, quality, seconds_each) for root, quality in chords])


def vowel(f0, seconds=3.0, vibrato=0.02):
    """A sung-like vowel: harmonic source falling 6 dB/octave through /a/ formants, with vibrato."""
    t = np.arange(int(seconds * SR)) / SR
    freq = f0 * (1 + vibrato * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(freq) / SR
    wave = np.zeros_like(t)
    for k in range(1, int(7000 // f0)):
        fk = k * f0
        formants = sum(g / (1 + ((fk - fc) / bw) ** 2) for g, fc, bw in ((1, 800, 80), (0.6, 1150, 90), (0.25, 2900, 120)))
        wave += (0.1 + formants) / k * np.sin(k * phase)
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)


# ----------------------------------------------------------------------------- one clip

@pytest.mark.parametrize("bpm", [90.0, 150.0])
def test_tempo_of_a_click_track(bpm):
    assert mir.tempo_bpm(click_track(bpm), SR) == pytest.approx(bpm, rel=0.04)


def test_onset_rates_follow_the_click_rate():
    slow, fast = click_track(90.0), click_track(150.0)
    assert mir.onset_rate(slow, SR) == pytest.approx(1.5, abs=0.2)
    assert mir.onset_rate(fast, SR) == pytest.approx(2.5, abs=0.25)
    # equal clicks weigh alike: the weighted rate is the plain rate
    assert mir.weighted_onset_rate(fast, SR) == pytest.approx(mir.onset_rate(fast, SR), rel=0.15)


def test_weighted_onset_rate_discounts_faint_onsets():
    loud = click_track(60.0)
    faint = 0.1 * np.roll(click_track(60.0), int(0.5 * SR))  # a faint click half-way between the loud ones
    mixed = loud + faint
    assert mir.onset_rate(mixed, SR) > 1.6 * mir.onset_rate(loud, SR)
    assert mir.weighted_onset_rate(mixed, SR) < 0.75 * mir.onset_rate(mixed, SR)


@pytest.mark.parametrize("profiles", ["kk", "temperley"])
@pytest.mark.parametrize("root", [60, 62, 67])
def test_major_minor_score_tells_a_major_from_a_minor_triad(root, profiles):
    assert mir.major_minor_score(chord(root, "major"), SR, profiles) > 0.05
    assert mir.major_minor_score(chord(root, "minor"), SR, profiles) < -0.05


def test_unknown_key_profiles_are_refused():
    with pytest.raises(ValueError, match="temperley"):
        mir.major_minor_score(chord(60, "major"), SR, profiles="bach")


def test_a_given_profile_is_correlated_with_the_rotated_key_profiles():
    # Temperley's own E major profile (tonic 4) is found as E major, with correlation 1
    major, minor = mir.profile_key_correlations(np.roll(mir.TEMPERLEY_MAJOR, 4), "temperley")
    assert int(np.argmax(major)) == 4 and major[4] == pytest.approx(1.0) and minor.max() < 1.0
    with pytest.raises(ValueError, match="12 values; got shape \\(11,\\)"):
        mir.profile_key_correlations(np.ones(11))


def test_key_correlations_find_the_tonic():
    major, minor = mir.key_correlations(chord(62, "major"), SR)  # D major
    assert int(np.argmax(major)) == 2
    major, minor = mir.key_correlations(chord(57, "minor"), SR)  # A minor
    assert int(np.argmax(minor)) == 9


@pytest.mark.parametrize("f0, midi", [(110.0, 45.0), (330.0, 64.0)])
def test_vocal_register_of_a_sung_vowel(f0, midi):
    assert mir.vocal_register(vowel(f0), SR) == pytest.approx(midi, abs=0.5)


def test_vocal_register_is_nan_for_silence():
    assert np.isnan(mir.vocal_register(np.zeros(SR * 2, dtype=np.float32), SR))


def test_brightness_follows_the_harmonics():
    dull = tone(57, 2.0, harmonics=2).astype(np.float32)
    bright = tone(57, 2.0, harmonics=30, rolloff=0.5).astype(np.float32)
    assert mir.brightness(dull, SR) == pytest.approx(220 * (1 + 2 * 0.5) / 1.5, rel=0.15)  # weighted mean of 220, 440
    assert mir.brightness(bright, SR) > 3 * mir.brightness(dull, SR)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="mono"):
        mir.brightness(np.zeros((2, 100), dtype=np.float32), SR)
    with pytest.raises(ValueError, match="NaN"):
        mir.onset_rate(np.full(1000, np.nan, dtype=np.float32), SR)


# ----------------------------------------------------------------------------- preservation

PROGRESSION = [(60, "major"), (65, "major"), (67, "major"), (60, "major")]


def test_identical_clips_are_at_distance_zero():
    music = sequence(PROGRESSION) + np.resize(click_track(120.0, seconds=6.0), 4 * int(1.5 * SR))
    assert mir.harmony_distance(music, music, SR) == pytest.approx(0.0, abs=1e-6)
    assert mir.rhythm_distance(music, music, SR) == pytest.approx(0.0, abs=1e-6)
    assert mir.structure_distance(music, music, SR) == pytest.approx(0.0, abs=1e-6)
    voice = vowel(220.0)
    assert mir.melody_distance(voice, voice, SR) == pytest.approx(0.0, abs=1e-6)


def test_harmony_distance_grows_with_the_harmonic_change():
    c_major = chord(60, "major")
    near = chord(60, "minor")  # two of three notes kept
    far = chord(66, "major")  # F# major: no note in common
    assert 0.05 < mir.harmony_distance(c_major, near, SR) < mir.harmony_distance(c_major, far, SR)
    assert mir.harmony_distance(c_major, far, SR) > 0.4


def test_rhythm_distance_tells_tempo_changes():
    assert mir.rhythm_distance(click_track(90.0), click_track(150.0), SR) > 0.4
    # the same beat, 20 ms later, is within mir_eval's 70 ms window
    assert mir.rhythm_distance(click_track(90.0), click_track(90.0, offset=0.12), SR) < 0.1


def test_melody_distance_tells_pitch_changes():
    assert mir.melody_distance(vowel(110.0), vowel(330.0), SR) > 0.9
    assert mir.melody_distance(vowel(220.0), vowel(220.0 * 2 ** (0.2 / 12)), SR) < 0.1  # 20 cents apart


def test_structure_distance_keeps_transpositions_and_tells_reorderings():
    abab = sequence([(60, "major"), (65, "major"), (60, "major"), (65, "major")])
    transposed = sequence([(62, "major"), (67, "major"), (62, "major"), (67, "major")])
    aabb = sequence([(60, "major"), (60, "major"), (65, "major"), (65, "major")])
    kept = mir.structure_distance(abab, transposed, SR)
    changed = mir.structure_distance(abab, aabb, SR)
    assert kept < 0.2
    assert changed > 0.6

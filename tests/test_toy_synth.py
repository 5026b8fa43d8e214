"""The synthetic world: each attribute is measurable in the rendered audio, captions use the plain words."""

import numpy as np
import pytest

from tada.toy.synth import (
    INSTRUMENTS,
    MELODIC,
    NUM_SAMPLES,
    SAMPLE_RATE,
    VOCABULARY,
    Attributes,
    caption,
    make_example,
    render,
)


def power_spectrum(wave):
    return np.fft.rfftfreq(len(wave), 1 / SAMPLE_RATE), np.abs(np.fft.rfft(wave)) ** 2


def band_share(wave, low, high):
    f, p = power_spectrum(wave)
    return p[(f >= low) & (f < high)].sum() / p.sum()


def onset_count(wave, hop=256):
    """Peaks of positive spectral flux above half its maximum, at least 80 ms apart."""
    frames = np.lib.stride_tricks.sliding_window_view(wave, 1024)[::hop] * np.hanning(1024)
    mag = np.log1p(np.abs(np.fft.rfft(frames, axis=-1)))
    flux = np.clip(np.diff(mag, axis=0), 0, None).sum(-1)
    peaks, last = 0, -1e9
    for i in range(1, len(flux) - 1):
        if flux[i] > 0.5 * flux.max() and flux[i] >= flux[i - 1] and flux[i] >= flux[i + 1]:
            if (i - last) * hop / SAMPLE_RATE > 0.08:
                peaks, last = peaks + 1, i
    return peaks


def attrs(**kw):
    base = dict(tempo="slow", mood="happy", vocal="instrumental", instruments=("piano",), genre="techno", bpm=70.0)
    base.update(kw)
    return Attributes(**base)


def test_render_shape_dtype_and_peak():
    wave = render(attrs(), seed=0)
    assert wave.shape == (NUM_SAMPLES,) and wave.dtype == np.float32
    assert np.abs(wave).max() == pytest.approx(0.9, abs=1e-6)


def test_deterministic_per_seed():
    a1, c1, w1 = make_example(5)
    a2, c2, w2 = make_example(5)
    assert a1 == a2 and c1 == c2 and np.array_equal(w1, w2)
    assert not np.array_equal(w1, make_example(6)[2])


def test_onset_rate_follows_tempo():
    # techno comping plays every 8th note: 2 * bpm / 60 onsets per second, so 160 vs 70 BPM
    # gives 160/70 = 2.29 times as many onsets (9.2 vs 21.1 in a 3.96 s clip).
    slow = onset_count(render(attrs(bpm=70.0), seed=1))
    fast = onset_count(render(attrs(tempo="fast", bpm=160.0), seed=1))
    assert 7 <= slow <= 11
    assert 17 <= fast <= 24
    assert 1.7 < fast / slow < 2.9


def test_vocal_register_follows_gender():
    # a male voice sings 98-196 Hz, a female one 220-440 Hz: the male clip holds more of its
    # energy below 200 Hz, for every seed
    for seed in range(3):
        male = render(attrs(vocal="male", instruments=("flute",), genre="jazz"), seed)
        female = render(attrs(vocal="female", instruments=("flute",), genre="jazz"), seed)
        assert band_share(male, 90, 200) > 2 * band_share(female, 90, 200)
        assert band_share(female, 220, 450) > band_share(male, 220, 450)


def chroma(wave):
    f, p = power_spectrum(wave)
    keep = (f > 60) & (f < 2000)
    pitch_class = np.round(12 * np.log2(f[keep] / 440) + 69).astype(int) % 12
    c = np.bincount(pitch_class, weights=p[keep], minlength=12)
    return c / c.sum()


def triad_preference(wave):
    """Best major-triad chroma mass minus best minor-triad chroma mass over the 12 roots."""
    major, minor = np.zeros(12), np.zeros(12)
    major[[0, 4, 7]] = 1
    minor[[0, 3, 7]] = 1
    c = chroma(wave)
    return max(c @ np.roll(major, k) for k in range(12)) - max(c @ np.roll(minor, k) for k in range(12))


def test_major_vs_minor_shows_in_chroma():
    for seed in range(4):
        happy = render(attrs(mood="happy", instruments=("piano", "violin"), genre="reggae"), seed)
        sad = render(attrs(mood="sad", instruments=("piano", "violin"), genre="reggae"), seed)
        assert triad_preference(happy) > 0.02
        assert triad_preference(sad) < -0.02


def test_instruments_differ_in_spectra():
    spectra = {}
    for name in MELODIC:
        f, p = power_spectrum(render(attrs(instruments=(name,)), seed=2))
        edges = np.geomspace(60, 7800, 41)
        spectra[name] = np.log(np.array([p[(f >= lo) & (f < hi)].sum() for lo, hi in zip(edges, edges[1:])]) + 1e-9)
        spectra[name] -= spectra[name].mean()
    names = list(spectra)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(spectra[a] - spectra[b]).mean() > 0.3, (a, b)
    # the same notes with maracas gain 2.5-5 kHz noise; with drums, low kick energy below 150 Hz
    plain = render(attrs(instruments=("piano",)), seed=2)
    assert band_share(render(attrs(instruments=("piano", "maracas")), seed=2), 2500, 5000) > 5 * band_share(plain, 2500, 5000)
    assert band_share(render(attrs(instruments=("piano", "drums")), seed=2), 40, 150) > band_share(plain, 40, 150)


def test_captions_use_the_plain_vocabulary():
    rng = np.random.default_rng(0)
    a = attrs(tempo="fast", bpm=150.0, mood="sad", vocal="female", instruments=("trumpet", "drums"), genre="jazz")
    for _ in range(20):
        text = caption(a, rng, omit_prob=0.0)
        assert "fast" in text and "jazz" in text and "trumpet" in text and "drums" in text
        assert any(w in text for w in VOCABULARY["mood"]["sad"])
        assert any(w in text for w in VOCABULARY["vocal"]["female"])
    assert set(VOCABULARY["instrument"]) == set(INSTRUMENTS)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(tempo="medium"), "tempo='medium'"),
        (dict(instruments=("banjo",)), "banjo"),
        (dict(instruments=("drums",)), "at least one of"),
        (dict(bpm=120.0), "outside the slow range"),
    ],
)
def test_bad_attributes_are_rejected(kw, match):
    with pytest.raises(ValueError, match=match):
        attrs(**kw)

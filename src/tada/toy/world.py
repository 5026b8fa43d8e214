"""World v2: a synthetic music world in which each concept varies alone and can be measured by physics.

`tada.toy.synth` (v1) couples concepts: happy clips are in a higher register with brighter
harmonics, so a scorer may learn brightness for mood, and its 3.96 s clips are too short for a
beat tracker. Here every concept has one physical cause and everything else is a nuisance drawn
independently of the concepts:

| concept | its only physical cause |
|---|---|
| tempo (fast / slow) | the beat period (130-180 vs 60-85 BPM), played on an 8th-note grid |
| mood (happy / sad) | the mode: major vs harmonic-minor chords on the same tonic, register, timbre |
| vocal (female / male / none) | the sung f0 register (220-440 vs 98-196 Hz) and formant scale |
| instruments | which wavetable timbres play; independent of genre, tempo, mood |
| genre | the groove (which 8th-note steps bass, comping and drums play; swing) |

Nuisances, drawn per clip: key (any of 12 tonics), accompaniment register (octave shift),
brightness (harmonic rolloff), the gain of each part (mix), the final level (peak 0.5-0.9),
the phase of the bar, the chord progression (one of three), the melody's note lengths.

Clips are 6.36 s (101 760 samples at 16 kHz, 160 frames at hop 640): long enough for a beat
tracker to see 6-19 beats. The same seed always gives the same clip. Attributes and captions
are those of v1 (`tada.toy.synth.Attributes`, `tada.toy.synth.caption`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from tada.toy import synth
from tada.toy.synth import (
    _GROOVES,
    _VOWELS,
    MELODIC,
    PERCUSSION,
    SAMPLE_RATE,
    TEMPO_BPM,
    VOCAL_F0,
    Attributes,
    _add,
    _band_noise,
    _drum_kit,
    _envelope,
    _midi_hz,
    _note,
    _oscillate,
    _table,
    caption,
    sample_attributes,
)

#: 159 hops of 640 samples: 160 frames of the v2 representation (6.36 s).
NUM_SAMPLES = 640 * 159
DURATION = NUM_SAMPLES / SAMPLE_RATE

_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
#: harmonic minor: its V chord is major with the leading tone (a major third above the fifth),
#: so minor never shares all its notes with the relative major.
_HARMONIC_MINOR = np.array([0, 2, 3, 5, 7, 8, 11])
#: chord roots as scale degrees (0-based): the tonic chord takes half of every progression, so
#: its third (major or minor) is the most heard interval and the key is the tonic's.
_PROGRESSIONS = ([0, 3, 0, 4], [0, 4, 0, 3], [0, 0, 3, 4])
#: gain of the notes on off-beat 8ths relative to those on beats.
OFFBEAT_GAIN = 0.6
#: formant scale per voice (a shorter vocal tract lifts the formants).
FORMANT_SCALE = {"male": 1.0, "female": 1.17}
#: harmonic amplitudes of the bass
BASS_HARMONICS = (1.0, 0.3, 0.1)


@dataclass(frozen=True)
class Nuisance:
    """Per-clip factors that no concept depends on (see the module docstring)."""

    tonic: int  # MIDI note of the tonic in the middle register, 55-66 (G3-F#4)
    octave: int  # accompaniment register shift in octaves: -1, 0 or +1
    bright: float  # harmonic rolloff of the melodic instruments, 0.3-1.0
    level: float  # final peak level, 0.5-0.9
    gains: tuple[float, ...]  # melody, comping, bass, vocal, drums, maracas
    progression: int  # index into _PROGRESSIONS
    phase: float  # where the first bar starts, in 8ths (0-1)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gains"] = list(self.gains)
        return d


def sample_nuisance(rng: np.random.Generator) -> Nuisance:
    return Nuisance(
        tonic=int(rng.integers(55, 67)),
        octave=int(rng.integers(-1, 2)),
        bright=float(rng.uniform(0.3, 1.0)),
        level=float(rng.uniform(0.5, 0.9)),
        gains=tuple(float(g) for g in rng.uniform([0.3, 0.4, 0.25, 1.0, 0.5, 0.25], [0.6, 0.7, 0.45, 1.4, 0.9, 0.45])),
        progression=int(rng.integers(0, len(_PROGRESSIONS))),
        phase=float(rng.uniform(0.0, 1.0)),
    )


def _vowel(f0: float, dur: float, vowel: str, formant_scale: float) -> np.ndarray:
    """A sung vowel: harmonic source (-6 dB/octave) through three formants, 2% vibrato."""
    k = np.arange(1, int((SAMPLE_RATE / 2 - 300) // f0) + 1, dtype=np.float64)
    freqs = k * f0
    env = np.zeros_like(freqs)
    for gain, (fc, bw) in zip((1.0, 0.6, 0.25), _VOWELS[vowel]):
        env += gain / (1.0 + ((freqs - fc * formant_scale) / (bw * formant_scale)) ** 2)
    n = int(dur * SAMPLE_RATE)
    wave = _oscillate(_table((0.15 + env) / k), f0, n, vibrato=0.02, rate=5.5)
    return wave * _envelope("vocal", n, dur)


def _chord_steps(bpm: float) -> int:
    """8th notes per chord: one beat below 110 BPM, two beats above."""
    return 2 if bpm < 110 else 4


def chord_seconds(bpm: float) -> float:
    """How long each chord lasts at this tempo."""
    return _chord_steps(bpm) * 30.0 / bpm


def _scale_tone(tonic: int, scale: np.ndarray, degree: int) -> int:
    return tonic + int(scale[degree % 7]) + 12 * (degree // 7)


def render(attrs: Attributes, seed: int, nuisance: Nuisance | None = None, num_samples: int = NUM_SAMPLES) -> np.ndarray:
    """Render one clip: float32 (num_samples,) at SAMPLE_RATE, peak = nuisance.level.

    Deterministic for a given (attrs, seed, nuisance); `nuisance` defaults to the one drawn
    from `seed` (what `make_example` uses).
    """
    rng = np.random.default_rng([seed, 2])
    if nuisance is None:
        nuisance = sample_nuisance(np.random.default_rng([seed, 3]))
    out = np.zeros(num_samples, dtype=np.float64)
    scale = _MAJOR if attrs.mood == "happy" else _HARMONIC_MINOR
    progression = _PROGRESSIONS[nuisance.progression]
    tonic = nuisance.tonic + 12 * nuisance.octave
    eighth = 60.0 / attrs.bpm / 2.0
    groove = _GROOVES[attrs.genre]
    n_steps = int(num_samples / SAMPLE_RATE / eighth) + 2
    offset = -nuisance.phase * eighth
    g_melody, g_comp, g_bass, g_vocal, g_drums, g_maracas = nuisance.gains

    def step_time(i: int) -> float:
        return offset + i * eighth + (groove["swing"] * eighth if i % 2 else 0.0)

    def accent(i: int) -> float:
        """Beats carry the accent; off-beat 8ths are played softer, so the beat is the strongest pulse."""
        return 1.0 if i % 2 == 0 else OFFBEAT_GAIN

    # harmonic rhythm in seconds is the same at both tempos (0.67-1 s a chord): one chord a beat
    # when slow, one every two beats when fast, so every clip holds the whole progression
    chord_steps = _chord_steps(attrs.bpm)

    def chord(step: int, base: int = tonic) -> list[int]:
        degree = progression[(step // chord_steps) % len(progression)]
        return [_scale_tone(base, scale, degree + j) for j in (0, 2, 4)]

    melodic = [i for i in attrs.instruments if i in MELODIC]
    roles = {melodic[0]: "comp"} if len(melodic) == 1 else {melodic[0]: "melody", melodic[1]: "comp"}
    for inst, role in roles.items():
        if role == "comp":
            steps = groove["comp"]
            short = eighth * (0.9 if attrs.genre == "techno" else 1.6)
            for i in range(n_steps):
                if i % 8 in steps:
                    root, third, fifth = chord(i)
                    for m in (root, third, fifth, third + 12):  # the third, which carries the mode, doubled
                        _add(out, step_time(i), _note(inst, _midi_hz(m), short, nuisance.bright), accent(i) * g_comp / 4)
        else:
            i = 0
            while i < n_steps:
                length = int(rng.choice([1, 2, 2, 4]))
                if rng.random() < 0.7:
                    m = int(rng.choice(chord(i))) + 12
                else:
                    m = _scale_tone(tonic, scale, int(rng.integers(0, 7))) + 12
                _add(out, step_time(i), _note(inst, _midi_hz(m), eighth * length * 0.95, nuisance.bright),
                     accent(i) * g_melody)
                i += length
    # bass (always): the chord root in the bass register (MIDI 28-39, 41-78 Hz, below every voice), on the
    # groove's bass steps
    bass_base = 28 + (nuisance.tonic - 28) % 12
    for i in range(n_steps):
        if i % 8 in groove["bass"]:
            root = chord(i, bass_base)[0]
            if attrs.genre == "jazz":  # walking: chord tones
                root = int(rng.choice(chord(i, bass_base)))
            bass = _oscillate(_table(np.array(BASS_HARMONICS)), float(_midi_hz(root)), int(eighth * 1.8 * SAMPLE_RATE))
            _add(out, step_time(i), bass * _envelope("piano", len(bass), eighth * 1.8), accent(i) * g_bass)
    # vocal: vowel notes on chord tones in the voice's register, the loudest melodic part
    if attrs.vocal != "instrumental":
        low, high = VOCAL_F0[attrs.vocal]
        i = 0
        while i < n_steps:
            length = int(rng.choice([2, 4]))
            tones = [m + 12 * o for m in chord(i) for o in range(-3, 3)]
            cands = [float(f) for f in _midi_hz(tones) if low <= f <= high]
            f0 = float(rng.choice(cands))
            vowel = str(rng.choice(list(_VOWELS)))
            _add(out, step_time(i), _vowel(f0, eighth * length * 0.95, vowel, FORMANT_SCALE[attrs.vocal]), g_vocal)
            i += length
    if "drums" in attrs.instruments:
        kick, snare, hat = _drum_kit(rng)
        for i in range(n_steps):
            if i % 8 in groove["kick"]:
                _add(out, step_time(i), kick, accent(i) * g_drums)
            if i % 8 in groove["snare"]:
                _add(out, step_time(i), snare, accent(i) * 0.66 * g_drums)
            if i % 8 in groove["hat"]:
                _add(out, step_time(i), hat, accent(i) * 0.55 * g_drums)
    if "maracas" in attrs.instruments:
        shake_n = int(0.09 * SAMPLE_RATE)
        env = np.sin(np.pi * np.arange(shake_n) / shake_n) ** 2
        for i in range(n_steps):  # shakes on the 8th grid (v1 shook 16ths: a pulse faster than the grid)
            _add(out, step_time(i), _band_noise(rng, shake_n, 2500, 5000) * env, accent(i) * g_maracas)
    peak = np.abs(out).max()
    return (nuisance.level * out / max(peak, 1e-9)).astype(np.float32)


def make_example(seed: int) -> tuple[Attributes, str, np.ndarray]:
    """Attributes, caption and clip of one seed (the same seed always gives the same triple)."""
    rng = np.random.default_rng([seed, 0])
    attrs = sample_attributes(rng)
    return attrs, caption(attrs, rng), render(attrs, seed)


def example_nuisance(seed: int) -> Nuisance:
    """The nuisance factors `make_example(seed)` renders with."""
    return sample_nuisance(np.random.default_rng([seed, 3]))


__all__ = ["NUM_SAMPLES", "DURATION", "Nuisance", "sample_nuisance", "render", "make_example", "example_nuisance",
           "SAMPLE_RATE", "TEMPO_BPM", "VOCAL_F0", "MELODIC", "PERCUSSION", "Attributes", "caption", "synth"]

"""A synthetic music world whose ground truth is known: attributes -> audio clip + caption.

Every clip is rendered from a handful of attributes (tempo, mood, vocal, instruments, genre) with
additive wavetable synthesis and filtered noise, deterministically from one integer seed.
`VOCABULARY` is the attribute vocabulary as data: each attribute value maps to the plain words a
caption (or a user) uses for it; the first word is the canonical one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.signal import butter, sosfilt

from tada.errors import TadaError

SAMPLE_RATE = 16000
#: 99 hops of 640 samples: a clip is exactly 100 mel frames (see `tada.toy.model.MelSpec`).
NUM_SAMPLES = 640 * 99

MELODIC = ("piano", "flute", "violin", "trumpet", "guitar")
PERCUSSION = ("drums", "maracas")
INSTRUMENTS = MELODIC + PERCUSSION

#: attribute -> value -> caption words (first = canonical). Instruments and genres name themselves.
VOCABULARY: dict[str, dict[str, list[str]]] = {
    "tempo": {"fast": ["fast"], "slow": ["slow"]},
    "mood": {"happy": ["happy", "upbeat"], "sad": ["sad", "melancholic"]},
    "vocal": {
        "female": ["female vocal", "female voice"],
        "male": ["male vocal", "male voice"],
        "instrumental": ["instrumental"],
    },
    "instrument": {name: [name] for name in INSTRUMENTS},
    "genre": {"techno": ["techno"], "reggae": ["reggae"], "jazz": ["jazz"]},
}

#: Beats per minute drawn uniformly from these ranges.
TEMPO_BPM = {"slow": (60.0, 85.0), "fast": (130.0, 180.0)}
#: Sung fundamental range in Hz per vocal register.
VOCAL_F0 = {"male": (98.0, 196.0), "female": (220.0, 440.0)}


@dataclass(frozen=True)
class Attributes:
    """The ground truth of one clip.

    tempo: "fast" | "slow"; mood: "happy" (major, bright) | "sad" (minor, dark);
    vocal: "female" | "male" | "instrumental"; instruments: sorted subset of `INSTRUMENTS`
    (at least one melodic); genre: "techno" | "reggae" | "jazz"; bpm: beats per minute.
    """

    tempo: str
    mood: str
    vocal: str
    instruments: tuple[str, ...]
    genre: str
    bpm: float

    def __post_init__(self):
        for key in ("tempo", "mood", "vocal", "genre"):
            value = getattr(self, key)
            if value not in VOCABULARY[key]:
                raise TadaError(f"{key}={value!r} is not one of {sorted(VOCABULARY[key])}")
        unknown = [i for i in self.instruments if i not in INSTRUMENTS]
        if unknown:
            raise TadaError(f"unknown instruments {unknown}; accepted: {list(INSTRUMENTS)}")
        if not any(i in MELODIC for i in self.instruments):
            raise TadaError(f"instruments {list(self.instruments)} need at least one of {list(MELODIC)}")
        low, high = TEMPO_BPM[self.tempo]
        if not low <= self.bpm <= high:
            raise TadaError(f"bpm={self.bpm} is outside the {self.tempo} range {low}-{high}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["instruments"] = list(self.instruments)
        return d


def sample_attributes(rng: np.random.Generator) -> Attributes:
    """Draw attributes uniformly: 1-2 melodic instruments, drums and maracas each with p=1/2."""
    tempo = str(rng.choice(["fast", "slow"]))
    n_melodic = int(rng.integers(1, 3))
    melodic = [str(x) for x in rng.choice(MELODIC, size=n_melodic, replace=False)]
    percussion = [p for p in PERCUSSION if rng.random() < 0.5]
    return Attributes(
        tempo=tempo,
        mood=str(rng.choice(["happy", "sad"])),
        vocal=str(rng.choice(["female", "male", "instrumental"])),
        instruments=tuple(melodic + percussion),
        genre=str(rng.choice(["techno", "reggae", "jazz"])),
        bpm=float(rng.uniform(*TEMPO_BPM[tempo])),
    )


# ----------------------------------------------------------------------------- captions

_TEMPLATES = (
    "a {tempo} {mood} {genre} track with {inst}{vocal}",
    "{tempo} {mood} {genre} with {inst}{vocal}",
    "a {mood} {tempo} {genre} song featuring {inst}{vocal}",
    "{inst} playing a {tempo} {mood} {genre} tune{vocal}",
    "a {tempo} {genre} piece, {mood}, with {inst}{vocal}",
    "{mood} and {tempo} {genre} music with {inst}{vocal}",
)


def _join(words: list[str]) -> str:
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " and " + words[-1]


def caption(attrs: Attributes, rng: np.random.Generator, omit_prob: float = 0.15) -> str:
    """A music-caption sentence naming the attributes with varied templates and synonyms.

    Tempo, mood, genre and vocal are each left out with probability `omit_prob`; every
    instrument is named. "instrumental" is said for half of the clips without a vocal.
    """

    def word(attr: str, value: str) -> str:
        return str(rng.choice(VOCABULARY[attr][value]))

    tempo = "" if rng.random() < omit_prob else word("tempo", attrs.tempo)
    mood = "" if rng.random() < omit_prob else word("mood", attrs.mood)
    genre = "" if rng.random() < omit_prob else word("genre", attrs.genre)
    vocal = ""
    if rng.random() >= omit_prob:
        if attrs.vocal == "instrumental":
            vocal = ", instrumental" if rng.random() < 0.5 else ""
        else:
            vocal = f" and a {word('vocal', attrs.vocal)}"
    inst = _join([word("instrument", i) for i in rng.permutation(list(attrs.instruments))])
    template = str(rng.choice(_TEMPLATES))
    if not genre:
        template = template.replace("{genre} ", "").replace(" {genre}", "")
    text = template.format(tempo=tempo, mood=mood, genre=genre or "music", inst=inst, vocal=vocal)
    return " ".join(text.replace(" ,", ",").split())


# ----------------------------------------------------------------------------- synthesis

_TABLE = 2048
_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
#: chord roots as scale degrees (0-based): I-IV-V-I in major (all major triads), i-iv-v-i in
#: natural minor (all minor triads), so every chord carries the mode.
_PROGRESSION = [0, 3, 4, 0]
#: vowel formants (Hz, bandwidth Hz)
_VOWELS = {
    "a": ((800, 80), (1150, 90), (2900, 120)),
    "o": ((450, 70), (800, 80), (2830, 100)),
    "e": ((400, 60), (2000, 100), (2550, 120)),
    "u": ((325, 50), (700, 60), (2530, 170)),
}


def _midi_hz(m):
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=np.float64) - 69.0) / 12.0)


def _drum_kit(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One clip's kick (pitch-swept sine), snare (band noise and a 190 Hz tone) and hi-hat (6.5-7.8 kHz noise)."""
    kick_n = int(0.25 * SAMPLE_RATE)
    t = np.arange(kick_n) / SAMPLE_RATE
    kick = np.sin(2 * np.pi * np.cumsum(50 + 100 * np.exp(-t * 30)) / SAMPLE_RATE) * np.exp(-t * 12)
    snare_n = int(0.18 * SAMPLE_RATE)
    ts = np.arange(snare_n) / SAMPLE_RATE
    snare = (0.7 * _band_noise(rng, snare_n, 1000, 6000) + 0.4 * np.sin(2 * np.pi * 190 * ts)) * np.exp(-ts * 20)
    hat_n = int(0.06 * SAMPLE_RATE)
    hat = _band_noise(rng, hat_n, 6500, 7800) * np.exp(-np.arange(hat_n) / SAMPLE_RATE * 60)
    return kick, snare, hat


def _harmonic_amps(instrument: str, f0: float, bright: float) -> np.ndarray:
    """Harmonic amplitudes (1..K) of an instrument's steady spectrum; `bright` scales the rolloff."""
    k = np.arange(1, 25, dtype=np.float64)
    if instrument == "piano":
        amps = 1.0 / k**1.6
    elif instrument == "flute":
        amps = np.where(k == 1, 1.0, 0.12 / k**2)
    elif instrument == "violin":
        amps = 1.0 / k
    elif instrument == "trumpet":
        amps = np.exp(-0.5 * ((k - 4.0) / 2.5) ** 2) + 0.3 / k
    elif instrument == "guitar":
        amps = np.abs(np.sin(np.pi * k * 0.18)) / k**1.3
    else:
        raise TadaError(f"no harmonic spectrum for {instrument!r}; accepted: {list(MELODIC)}")
    amps = amps * np.exp(-(k - 1) * (1.0 - bright) * 0.25)
    return np.where(k * f0 < SAMPLE_RATE / 2 - 200, amps, 0.0)


def _table(amps: np.ndarray) -> np.ndarray:
    phase = np.arange(_TABLE) / _TABLE * 2 * np.pi
    k = np.arange(1, len(amps) + 1)
    return (amps[:, None] * np.sin(k[:, None] * phase[None, :])).sum(0) / max(amps.sum(), 1e-9)


def _oscillate(table: np.ndarray, f0: float, n: int, vibrato: float = 0.0, rate: float = 5.5) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    freq = f0 * (1.0 + vibrato * np.sin(2 * np.pi * rate * t))
    phase = np.cumsum(freq) / SAMPLE_RATE
    return table[(phase * _TABLE).astype(np.int64) % _TABLE]


def _envelope(instrument: str, n: int, dur: float) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    if instrument == "piano":
        env = np.exp(-t * 3.0)
        attack = 0.005
    elif instrument == "guitar":
        env = np.exp(-t * 5.0)
        attack = 0.003
    elif instrument in ("flute", "violin", "trumpet", "vocal"):
        attack = {"flute": 0.06, "violin": 0.09, "trumpet": 0.03, "vocal": 0.05}[instrument]
        env = np.ones(n)
    else:
        raise TadaError(f"no envelope for {instrument!r}")
    env = env * np.clip(t / attack, 0.0, 1.0)
    release = np.clip((dur - t) / 0.04, 0.0, 1.0)
    return env * release


_VIBRATO = {"piano": 0.0, "guitar": 0.0, "flute": 0.004, "violin": 0.008, "trumpet": 0.002}


def _note(instrument: str, f0: float, dur: float, bright: float) -> np.ndarray:
    sustain = dur + (0.4 if instrument in ("piano", "guitar") else 0.0)
    n_ring = int(sustain * SAMPLE_RATE)
    wave = _oscillate(_table(_harmonic_amps(instrument, f0, bright)), f0, n_ring, _VIBRATO[instrument])
    if instrument == "flute":
        wave = wave + 0.04 * np.random.default_rng(int(f0 * 1000)).standard_normal(n_ring)
    return wave * _envelope(instrument, n_ring, sustain)


def _vowel_note(f0: float, dur: float, vowel: str) -> np.ndarray:
    k = np.arange(1, int((SAMPLE_RATE / 2 - 300) // f0) + 1, dtype=np.float64)
    freqs = k * f0
    env = np.zeros_like(freqs)
    for gain, (fc, bw) in zip((1.0, 0.6, 0.25), _VOWELS[vowel]):
        env += gain / (1.0 + ((freqs - fc) / bw) ** 2)
    amps = (0.15 + env) / k  # glottal source falling 6 dB/octave, shaped by the formants
    n = int(dur * SAMPLE_RATE)
    wave = _oscillate(_table(amps), f0, n, vibrato=0.02, rate=5.5)
    return wave * _envelope("vocal", n, dur)


def _add(out: np.ndarray, start_s: float, wave: np.ndarray, gain: float) -> None:
    start = int(round(start_s * SAMPLE_RATE))
    if start < 0:
        wave, start = wave[-start:], 0
    end = min(len(out), start + len(wave))
    if end > start:
        out[start:end] += gain * wave[: end - start]


def _band_noise(rng, n: int, low: float, high: float) -> np.ndarray:
    sos = butter(2, [low, high], btype="band", fs=SAMPLE_RATE, output="sos")
    return sosfilt(sos, rng.standard_normal(n))


#: genre grooves on an 8th-note grid of one 4/4 bar (steps 0..7); "swing" delays off-beats.
_GROOVES = {
    "techno": {"kick": [0, 2, 4, 6], "snare": [2, 6], "hat": [1, 3, 5, 7], "bass": [1, 3, 5, 7],
               "comp": [0, 1, 2, 3, 4, 5, 6, 7], "swing": 0.0},
    "reggae": {"kick": [4], "snare": [4], "hat": [0, 2, 4, 6], "bass": [0, 3, 4],
               "comp": [1, 3, 5, 7], "swing": 0.0},
    "jazz": {"kick": [0], "snare": [3, 7], "hat": [0, 2, 3, 4, 6, 7], "bass": [0, 2, 4, 6],
             "comp": [0, 3], "swing": 0.33},
}


def render(attrs: Attributes, seed: int) -> np.ndarray:
    """Render one clip: float32 (NUM_SAMPLES,) at SAMPLE_RATE, peak-normalized to 0.9.

    Deterministic for a given (attrs, seed). Tempo sets the 8th-note grid, mood the mode
    (major/minor), register and brightness, genre the groove of bass, comping and drums,
    vocal a formant-shaped sung vowel line in a low (male) or high (female) register.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros(NUM_SAMPLES, dtype=np.float64)
    happy = attrs.mood == "happy"
    scale = _MAJOR if happy else _MINOR
    bright = 0.95 if happy else 0.35
    tonic = int(rng.integers(60, 66)) + (2 if happy else -3)  # C4..F4, happy a bit higher
    eighth = 60.0 / attrs.bpm / 2.0
    groove = _GROOVES[attrs.genre]
    n_steps = int(NUM_SAMPLES / SAMPLE_RATE / eighth) + 2
    offset = -rng.uniform(0, eighth)

    def step_time(i: int) -> float:
        return offset + i * eighth + (groove["swing"] * eighth if i % 2 else 0.0)

    def chord(step: int) -> list[int]:
        degree = _PROGRESSION[(step // 8) % len(_PROGRESSION)]
        return [tonic + scale[(degree + j) % 7] + 12 * ((degree + j) // 7) for j in (0, 2, 4)]

    melodic = [i for i in attrs.instruments if i in MELODIC]
    roles = {melodic[0]: "comp"} if len(melodic) == 1 else {melodic[0]: "melody", melodic[1]: "comp"}
    for inst, role in roles.items():
        gain = rng.uniform(0.5, 0.8)
        if role == "comp":
            short = eighth * (0.9 if attrs.genre == "techno" else 1.6)
            for i in range(n_steps):
                if i % 8 in groove["comp"]:
                    for m in chord(i):
                        _add(out, step_time(i), _note(inst, _midi_hz(m), short, bright), gain / 3)
        else:
            i = 0
            while i < n_steps:
                length = int(rng.choice([1, 2, 2, 4]))
                tones = chord(i)
                m = int(rng.choice(tones)) + 12 if rng.random() < 0.7 else tonic + int(rng.choice(scale)) + 12
                _add(out, step_time(i), _note(inst, _midi_hz(m), eighth * length * 0.95, bright), gain)
                i += length
    # bass (always): root of the chord, two octaves down
    for i in range(n_steps):
        if i % 8 in groove["bass"]:
            root = chord(i)[0] - 24 + (int(rng.choice([0, 2, 4, 7])) if attrs.genre == "jazz" else 0)
            bass = _oscillate(_table(np.array([1.0, 0.3, 0.1])), float(_midi_hz(root)), int(eighth * 1.8 * SAMPLE_RATE))
            _add(out, step_time(i), bass * _envelope("piano", len(bass), eighth * 1.8), 0.35)
    # vocal: long vowel notes on chord tones in the register of the voice
    if attrs.vocal != "instrumental":
        low, high = VOCAL_F0[attrs.vocal]
        i = 0
        while i < n_steps:
            length = int(rng.choice([2, 4]))
            cands = [f for m in chord(i) for f in _midi_hz([m - 24, m - 12, m, m + 12]) if low <= f <= high]
            if cands:
                f0 = float(rng.choice(cands))
                _add(out, step_time(i), _vowel_note(f0, eighth * length * 0.95, str(rng.choice(list(_VOWELS)))), 0.7)
            i += length
    # percussion
    if "drums" in attrs.instruments:
        kick, snare, hat = _drum_kit(rng)
        for i in range(n_steps):
            if i % 8 in groove["kick"]:
                _add(out, step_time(i), kick, 0.9)
            if i % 8 in groove["snare"]:
                _add(out, step_time(i), snare, 0.6)
            if i % 8 in groove["hat"]:
                _add(out, step_time(i), hat, 0.5)
    if "maracas" in attrs.instruments:
        shake_n = int(0.09 * SAMPLE_RATE)
        env = np.sin(np.pi * np.arange(shake_n) / shake_n) ** 2
        for i in range(2 * n_steps):
            start = offset + i * eighth / 2
            _add(out, start, _band_noise(rng, shake_n, 2500, 5000) * env, 0.45 if i % 2 == 0 else 0.3)
    peak = np.abs(out).max()
    return (0.9 * out / max(peak, 1e-9)).astype(np.float32)


def make_example(seed: int) -> tuple[Attributes, str, np.ndarray]:
    """Attributes, caption and clip of one seed (the same seed always gives the same triple)."""
    rng = np.random.default_rng([seed, 0])
    attrs = sample_attributes(rng)
    return attrs, caption(attrs, rng), render(attrs, seed)

"""The MIR checks of a steering sweep: which measurement no scorer learned checks which concept, the
measurements of every generated file, its preservation axes against the same prompt and seed at alpha = 0,
and how well a scorer's alignment agrees with the measurement.

* concept measures (`CONCEPT_MEASURES`, the one that separates the toy's classes best first): tempo by
  strength-weighted onset rate, onset rate and beat-tracker BPM; mood by the major-minor score; vocal gender by the median f0 (vocal register, semitones); every other
  concept (instruments, genres) by brightness (spectral centroid), a timbre measure only, said as such;
* preservation axes (`AXES`, the authors' names): harmony (1 - chroma cosine), rhythm (1 - beat F-measure),
  melody (1 - raw pitch accuracy), ssm (1 - correlation of chroma self-similarity), each 0 at alpha = 0;
* agreement: the Pearson correlation, over files, of each measure with each alignment column. The measures of
  tempo, mood and vocal gender rise with the catalogue's positive prompt (fast, happy, female voice), so there
  r > 0 means the scorer and the measurement agree; brightness has no fixed direction (piano against guitar is
  darker, maracas brighter), so read its sign per concept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from tada.audio import Audio
from tada.errors import TadaError
from tada.evaluation import mir

MEASURES: dict[str, Callable] = {
    "tempo_bpm": mir.tempo_bpm,
    "onset_rate": mir.onset_rate,
    "weighted_onset_rate": mir.weighted_onset_rate,
    "major_minor": mir.major_minor_score,
    "vocal_register": mir.vocal_register,
    "brightness": mir.brightness,
}
CONCEPT_MEASURES: dict[str, tuple[str, ...]] = {
    "tempo": ("weighted_onset_rate", "onset_rate", "tempo_bpm"),  # the best validated first (docs/evaluation.md)
    "mood": ("major_minor",),
    "vocal_gender": ("vocal_register",),
}
FALLBACK_MEASURES = ("brightness",)
#: Below this rate chroma, pyin and the beat tracker see too little of the spectrum to mean anything.
MIN_SAMPLE_RATE = 8000
AXES: dict[str, Callable] = {
    "harmony": mir.harmony_distance,
    "rhythm": mir.rhythm_distance,
    "melody": mir.melody_distance,
    "ssm": mir.structure_distance,
}


def concept_measures(concept: str) -> tuple[str, ...]:
    """The measures that check `concept` (brightness where no measure of the concept itself exists)."""
    return CONCEPT_MEASURES.get(concept, FALLBACK_MEASURES)


def measure_files(audio: Audio, names: Sequence[str]) -> pd.DataFrame:
    """One row per clip of `audio`, one column ``mir_<name>`` per measure."""
    unknown = [n for n in names if n not in MEASURES]
    if unknown:
        raise TadaError(f"unknown MIR measures {unknown}; known: {', '.join(MEASURES)}")
    waves = audio.waveform.mean(dim=1).double().numpy()
    return pd.DataFrame({f"mir_{n}": [MEASURES[n](w, audio.sample_rate) for w in waves] for n in names})


def preservation_axes(index: pd.DataFrame, audio: Audio, axes: Sequence[str] = tuple(AXES)) -> pd.DataFrame:
    """One row per file of a sweep (`index` with prompt_index, seed, alpha, in the order of `audio`), one column
    per axis: its distance to the alpha = 0 file of the same prompt and seed (0 at alpha = 0, NaN where that
    file is missing)."""
    unknown = [a for a in axes if a not in AXES]
    if unknown:
        raise TadaError(f"unknown preservation axes {unknown}; known: {', '.join(AXES)}")
    waves = audio.waveform.mean(dim=1).double().numpy()
    keys = list(zip(index["prompt_index"], index["seed"]))
    reference = {k: i for i, (k, a) in enumerate(zip(keys, index["alpha"])) if a == 0}
    rows = []
    for i, (k, a) in enumerate(zip(keys, index["alpha"])):
        if a == 0:
            rows.append({name: 0.0 for name in axes})
        elif k not in reference:
            rows.append({name: np.nan for name in axes})
        else:
            ref = waves[reference[k]]
            rows.append({name: AXES[name](ref, waves[i], audio.sample_rate) for name in axes})
    return pd.DataFrame(rows, columns=list(axes))


def agreement(per_file: pd.DataFrame, measures: Sequence[str], alignments: Sequence[str]) -> dict[str, float]:
    """``{"corr_<measure>_<alignment>": r}``: the Pearson r over files of ``mir_<measure>`` with each
    alignment column (r > 0: they agree). NaN where either is
    constant or fewer than three files have both: a correlation that means nothing."""
    out = {}
    for m in measures:
        for col in alignments:
            x, y = per_file[f"mir_{m}"].to_numpy(float), per_file[col].to_numpy(float)
            ok = np.isfinite(x) & np.isfinite(y)
            x, y = x[ok], y[ok]
            name = f"corr_{m}_{col.removeprefix('align_')}"
            if len(x) < 3 or x.std() == 0 or y.std() == 0:
                out[name] = float("nan")
            else:
                out[name] = float(np.corrcoef(x, y)[0, 1])
    return out


def per_alpha(per_file: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Means of `columns` at each alpha (a row per alpha)."""
    return per_file.groupby(per_file["alpha"].astype(float))[list(columns)].mean().reset_index()

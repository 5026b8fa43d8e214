"""tada's own alpha sweeps in the column layout of the authors' published per-alpha results, so that
`tada.evaluation.auc_table` (and `tada table`) can compute the benchmark table from them:

    results  cell, concept, axis, alpha, lpaps, muqt, clap      (one row per cell, concept, axis, alpha)
    quality  cell, concept, alpha, content_enjoyment, content_usefulness, production_complexity,
             production_quality

Every value is a mean over the evaluation prompts and seeds at that alpha; `lpaps` is the preservation
distance against the same prompt and seed at alpha = 0 (0 at alpha = 0), `muqt` the MuQ-MuLan and `clap`
the CLAP alignment. A value tada did not measure is left empty (NaN).

`sweep_results` and `quality_results` turn per-file tables into rows; `eval_results` reads a finished
`tada eval` folder (its alignment.csv and the sweeps' WAV files) and measures the distances with the
preservation model it is given, e.g. `ClapLPAPS.from_pretrained()`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from tada.errors import TadaError
from tada.evaluation.auc_table import ALIGNMENTS, KEY_COLUMNS, QUALITY_SCORES

QUALITY_COLUMNS = ("cell", "concept", "alpha", *QUALITY_SCORES.values())
# Which per-file alignment column feeds which published column: tada's scorer names "muq" and "clap".
DEFAULT_ALIGNMENTS = {"muqt": "align_muq", "clap": "align_clap"}
# The published cell prefix of each method whose name differs from it.
METHOD_CELLS = {"text_embedding": "textemb", "token_embedding": "tokemb", "concept_sliders": "cs"}


def cell_name(config: str) -> str:
    """The published cell name of a tada steering configuration: "all layers" -> caa_all, "layers {6,7}" ->
    caa_loc, "SAE(7)" -> sae, "<method> all layers" -> <cell>_all and "<method> layers {6,7}" -> <cell>_loc
    (text_embedding -> textemb, token_embedding -> tokemb, concept_sliders -> cs, others by their name);
    "all but {6,7}" (no published counterpart) -> caa_rest; anything else is kept, lower-cased with runs of
    other characters turned into "_"."""
    method = re.fullmatch(r"(\w+) (all layers|layers \{[\d,]+\})", config)
    if method:
        short = METHOD_CELLS.get(method[1], method[1])
        return f"{short}_all" if method[2] == "all layers" else f"{short}_loc"
    if config == "all layers":
        return "caa_all"
    if re.fullmatch(r"layers \{[\d,]+\}", config):
        return "caa_loc"
    if re.fullmatch(r"all but \{[\d,]+\}", config):
        return "caa_rest"
    if re.fullmatch(r"SAE\([\d,]*\)", config):
        return "sae"
    return re.sub(r"[^0-9a-z]+", "_", config.lower()).strip("_")


def sweep_results(per_file: pd.DataFrame, *, cell: str, concept: str, distances: Mapping[float, float] | None = None,
                  alignments: Mapping[str, str] = DEFAULT_ALIGNMENTS, axis: str = "lpaps") -> pd.DataFrame:
    """Rows of the results layout for one sweep.

    per_file: one row per generated file with an `alpha` column and the alignment columns named in
        `alignments` ({results column: per-file column}); the published columns muqt and clap are always
        written (NaN when not measured), any other results column after them.
    distances: {alpha: mean preservation distance against alpha = 0}; alpha = 0 is 0 whether given or not.
    """
    if "alpha" not in per_file.columns:
        raise TadaError(f"per_file needs an 'alpha' column; it has {list(per_file.columns)}")
    alphas = np.sort(per_file["alpha"].astype(float).unique())
    out = pd.DataFrame({"cell": cell, "concept": concept, "axis": axis, "alpha": alphas})
    dist = {float(a): float(v) for a, v in (distances or {}).items()}
    out["lpaps"] = [0.0 if a == 0 else dist.get(float(a), np.nan) for a in alphas]
    columns = list(dict.fromkeys([*ALIGNMENTS, *alignments]))  # the published two, then any others
    for column in columns:
        source = alignments.get(column)
        if source is not None and source in per_file.columns:
            means = per_file.groupby(per_file["alpha"].astype(float))[source].mean()
            out[column] = means.reindex(alphas).to_numpy()
        else:
            out[column] = np.nan
    return out[[*KEY_COLUMNS, *columns]]


def quality_results(scores: pd.DataFrame, *, cell: str, concept: str) -> pd.DataFrame:
    """Rows of the quality layout: Audiobox scores (long names or CE, CU, PC, PQ; per file or per alpha)
    averaged per alpha."""
    scores = scores.rename(columns=QUALITY_SCORES)
    missing = [c for c in ("alpha", *QUALITY_SCORES.values()) if c not in scores.columns]
    if missing:
        raise TadaError(f"scores lack columns {missing}")
    means = scores.groupby(scores["alpha"].astype(float))[list(QUALITY_SCORES.values())].mean().reset_index()
    return means.assign(cell=cell, concept=concept)[list(QUALITY_COLUMNS)]


def eval_results(out: str | Path, lpaps, *, alignments: Mapping[str, str] | None = None,
                 axis: str = "lpaps") -> pd.DataFrame:
    """Results rows for every (concept, configuration) of a finished `tada eval` folder.

    lpaps: the preservation model (anything with `distance(a, b) -> (B,)`, e.g. `ClapLPAPS`); it is run on
        each sweep's WAV files against that sweep's alpha = 0 files.
    alignments: {published column: scorer name} (default {"muqt": "muq", "clap": "clap"}); the scorer's
        per-file column in alignment.csv is `align_<name>`.
    """
    from tada.experiments.alpha_sweep import folder_name, load_sweep

    out = Path(out)
    alignment = pd.read_csv(out / "alignment.csv")
    names = alignments or {"muqt": "muq", "clap": "clap"}
    columns = {k: f"align_{v}" for k, v in names.items()}
    frames = []
    for (concept, config), per_file in alignment.groupby(["concept", "config"], sort=False):
        index, audio = load_sweep(out / concept / folder_name(config))
        frames.append(sweep_results(per_file, cell=cell_name(config), concept=concept, alignments=columns,
                                    distances=sweep_distances(index, audio, lpaps), axis=axis))
    if not frames:
        raise TadaError(f"{out / 'alignment.csv'} has no rows")
    return pd.concat(frames, ignore_index=True)


def sweep_distances(index: pd.DataFrame, audio, lpaps) -> dict[float, float]:
    """{alpha: mean distance of every (prompt, seed) file to its alpha = 0 file} for one sweep.

    Only (prompt, seed) pairs present at both alphas are compared (a sweep may leave failed cells out); an
    alpha with none gets NaN."""
    from tada.audio import Audio

    keys = list(zip(index["prompt_index"], index["seed"]))
    reference = {k: i for k, i, a in zip(keys, range(len(index)), index["alpha"]) if a == 0}
    if not reference:
        raise TadaError("the sweep has no alpha = 0 files to measure preservation against")
    out = {}
    for alpha in sorted(set(index["alpha"].astype(float)) - {0.0}):
        rows = [(i, reference[k]) for i, (k, a) in enumerate(zip(keys, index["alpha"])) if a == alpha and k in reference]
        if not rows:
            out[alpha] = float("nan")
            continue
        steered = Audio(audio.waveform[[i for i, _ in rows]], audio.sample_rate)
        base = Audio(audio.waveform[[j for _, j in rows]], audio.sample_rate)
        out[alpha] = float(lpaps.distance(steered, base).mean())
    return out

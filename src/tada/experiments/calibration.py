"""Calibrating a steering artifact (:mod:`tada.methods.calibration`): what its strength does, measured by a
short sweep, so a dial can move in units of the effect over the range where it is usable.

`calibrate` runs an alpha sweep over a few prompts and measures, per alpha, the mean change against alpha = 0
of the scorer's alignment with the concept's positive queries and, where the concept has one
(:mod:`tada.evaluation.mir_checks`), of its first MIR measure. Per measure the map alpha -> effect is
piecewise linear through those means. The *usable range* runs, on each side of 0, to the first alpha where the
alignment gain reaches `saturation` of its largest value on that side (stronger alphas add little). Within it,
:meth:`Calibration.to_alpha` inverts the map: it needs the map to be monotonic there, and refuses otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tada.errors import TadaError
from tada.methods.calibration import Calibration, usable_range


def calibrate(model, artifact, prompts: Sequence[str], out: str | Path, alphas: Sequence[float] | None = None,
              units: str = "auto", scorer=None, concept=None, seeds: Sequence[int] = (0,), steps: int | None = None,
              saturation: float = 0.95, catalogue=None, preservation=None,
              max_distance: float | None = None) -> dict[str, Calibration]:
    """{"alignment": Calibration, <MIR measure>: Calibration, <preservation>: Calibration} from a sweep of
    `artifact` into `out`. preservation: the distance to each file's alpha = 0 file (default the protocol's for
    the model, e.g. CLAP-LPAPS); `max_distance` ends the usable range before it is passed on either side."""
    import pandas as pd

    from tada.concepts import load_catalogue
    from tada.evaluation.mir_checks import MIN_SAMPLE_RATE, concept_measures, measure_files
    from tada.evaluation.registry import default_preservation_name, default_scorer, load_preservation
    from tada.experiments.alpha_sweep import alpha_sweep, load_sweep
    from tada.experiments.protocol_results import sweep_distances
    from tada.methods.base import methods

    name = concept or getattr(getattr(artifact, "concept", None), "name", None) or artifact.meta.get("concept")
    if not name:
        raise TadaError("the artifact names no catalogue concept; give one (concept=, --concept)")
    c = (catalogue or load_catalogue())[name]
    method = getattr(artifact, "method", None) or artifact.meta.get("method", "caa")
    if units == "auto":
        units = "norm" if artifact.meta.get("frame_norm") else "raw"
    if alphas is None:
        alphas = methods()[method].sweep(steps or model.default_steps)
    alphas = sorted({0.0, *map(float, alphas)})
    alpha_sweep(model, artifact, prompts, alphas, out, seeds=seeds, steps=steps, units=units)
    index, audio = load_sweep(out)
    scorer = scorer or default_scorer(model)
    per_file = index.assign(alignment=scorer.similarity(audio, list(c.queries.positive)).mean(1).numpy())
    names = ["alignment"]
    if audio.sample_rate >= MIN_SAMPLE_RATE:
        measure = concept_measures(name)[0]
        per_file[measure] = measure_files(audio, [measure])[f"mir_{measure}"].to_numpy()
        names.append(measure)
    means = per_file.groupby("alpha")[names].mean()
    changes = means - means.loc[0.0]
    preservation = preservation or load_preservation(default_preservation_name(model))
    distance_name = getattr(preservation, "name", "preservation")
    distances = sweep_distances(index, audio, preservation)
    changes[distance_name] = [0.0 if a == 0 else distances[a] for a in changes.index]
    usable = usable_range(changes.index.to_numpy(), changes["alignment"].to_numpy(), saturation,
                          changes[distance_name].to_numpy(), max_distance)
    out_map = {n: Calibration(n, units, [float(a) for a in changes.index], [float(v) for v in changes[n]], usable)
               for n in changes.columns}
    pd.DataFrame({"alpha": changes.index, **{f"{n}_change": changes[n] for n in changes.columns}}).to_csv(
        Path(out) / "calibration.csv", index=False)
    return out_map

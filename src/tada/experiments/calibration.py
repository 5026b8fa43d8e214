"""Calibrated dials: what a steering artifact's strength does, measured by a short sweep, so a dial can move in
units of the effect ("+1.5 onsets per second", "+0.2 alignment") over the range where it is usable.

`calibrate` runs an alpha sweep over a few prompts and measures, per alpha, the mean change against alpha = 0
of the scorer's alignment with the concept's positive queries and, where the concept has one
(:mod:`tada.evaluation.mir_checks`), of its first MIR measure. Per measure the map alpha -> effect is
piecewise linear through those means. The *usable range* runs, on each side of 0, to the first alpha where the
alignment gain reaches `saturation` of its largest value on that side (stronger alphas add little). Within it,
:meth:`Calibration.to_alpha` inverts the map: it needs the map to be monotonic there, and refuses otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tada.errors import TadaError


@dataclass
class Calibration:
    """The map from alpha (in `units`) to the mean effect on `measure`, and the usable alpha range."""

    measure: str
    units: str
    alphas: list[float]
    effects: list[float]
    usable: tuple[float, float]

    def monotonic(self) -> bool:
        """Whether the effect is strictly monotonic in alpha over the usable range."""
        a, e = self._usable_points()
        d = np.diff(e)
        return bool(len(d) and ((d > 0).all() or (d < 0).all()))

    def to_effect(self, alpha: float) -> float:
        return float(np.interp(alpha, self.alphas, self.effects))

    def to_alpha(self, effect: float) -> float:
        """The alpha whose mean effect is `effect` (refused outside the usable range's effects)."""
        if not self.monotonic():
            raise TadaError(f"the {self.measure} map is not monotonic over the usable range {self.usable}: an effect "
                            "cannot be turned back into one alpha")
        a, e = self._usable_points()
        low, high = sorted((e[0], e[-1]))
        if not low <= effect <= high:
            raise TadaError(f"a {self.measure} change of {effect:g} is outside the usable range {low:.4g} .. {high:.4g}")
        order = np.argsort(e)
        return float(np.interp(effect, np.asarray(e)[order], np.asarray(a)[order]))

    def _usable_points(self) -> tuple[list[float], list[float]]:
        keep = [(a, e) for a, e in zip(self.alphas, self.effects) if self.usable[0] <= a <= self.usable[1]]
        return [a for a, _ in keep], [e for _, e in keep]



def write_calibrations(path: str | Path, calibrations: dict[str, Calibration]) -> Path:
    """`calibrations` ({measure: Calibration}) as one JSON file."""
    Path(path).write_text(json.dumps({k: asdict(v) for k, v in calibrations.items()}, indent=2))
    return Path(path)


def read_calibrations(path: str | Path) -> dict[str, Calibration]:
    try:
        data = json.loads(Path(path).read_text())
        return {k: Calibration(d["measure"], d["units"], d["alphas"], d["effects"], tuple(d["usable"]))
                for k, d in data.items()}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise TadaError(f"{path} is not a tada calibration file: {err}") from err


def calibration_path(vector: str | Path) -> Path:
    """Where a steering file's calibration lives: beside it, ``NAME.calibration.json``."""
    from tada.methods.base import steering_path

    path = steering_path(vector)
    return path.with_name(path.name.removesuffix(".safetensors") + ".calibration.json")


def usable_range(alphas: Sequence[float], gains: Sequence[float], saturation: float = 0.95) -> tuple[float, float]:
    """Per side of 0, the first alpha whose signed alignment gain s (A(alpha) - A(0)) reaches `saturation` of the
    side's largest gain (the side's last alpha if the gain never rises above 0: nothing saturates)."""
    alphas, gains = np.asarray(alphas, float), np.asarray(gains, float)
    limits = []
    for sign in (-1.0, 1.0):
        side = np.flatnonzero(np.sign(alphas) == sign)
        side = side[np.argsort(np.abs(alphas[side]))]
        if not len(side):
            limits.append(0.0)
            continue
        g = sign * gains[side]
        peak = g.max()
        hit = side[np.flatnonzero(g >= saturation * peak)[0]] if peak > 0 else side[-1]
        limits.append(float(alphas[hit]))
    return limits[0], limits[1]


def calibrate(model, artifact, prompts: Sequence[str], out: str | Path, alphas: Sequence[float] | None = None,
              units: str = "auto", scorer=None, concept=None, seeds: Sequence[int] = (0,), steps: int | None = None,
              saturation: float = 0.95, catalogue=None) -> dict[str, Calibration]:
    """{"alignment": Calibration, <MIR measure>: Calibration} from a sweep of `artifact` into `out`."""
    import pandas as pd

    from tada.concepts import load_catalogue
    from tada.evaluation.mir_checks import MIN_SAMPLE_RATE, concept_measures, measure_files
    from tada.evaluation.registry import default_scorer
    from tada.experiments.alpha_sweep import alpha_sweep, load_sweep
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
    zero = means.loc[0.0]
    gains = (means["alignment"] - zero["alignment"]).to_numpy()
    usable = usable_range(means.index.to_numpy(), gains, saturation)
    out_map = {n: Calibration(n, units, [float(a) for a in means.index], [float(v) for v in means[n] - zero[n]],
                              usable) for n in names}
    pd.DataFrame({"alpha": means.index, **{f"{n}_change": means[n] - zero[n] for n in names}}).to_csv(
        Path(out) / "calibration.csv", index=False)
    return out_map

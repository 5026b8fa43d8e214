"""Calibrated strengths: a steering artifact's strength given in units of its measured effect ("+0.2
alignment", "+1.5 onsets per second") instead of alpha.

A :class:`Calibration` is the map alpha -> mean effect on one measure, piecewise linear through the means a
short sweep measured (:func:`tada.experiments.calibration.calibrate`), and the *usable range* of alpha: on each
side of 0, up to the first alpha whose alignment gain reaches a share (`saturation`) of that side's largest
gain, or before the preservation distance to the unsteered clip passes a cutoff. Within it
:meth:`Calibration.to_alpha` inverts the map, which needs it monotonic there. A steering file's
calibrations live beside it (``NAME.calibration.json``); :func:`tada.methods.base.load` attaches them, and
``artifact.at(artifact.strength(0.2, "alignment"))`` then steers by a requested effect.
"""

from __future__ import annotations

import json
import math
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
            raise TadaError(f"a change of {effect:g} in {self.measure} is outside the usable range {low:.4g} .. {high:.4g}")
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
    """Where a steering file's calibration lives: beside it, ``NAME.calibration.json`` (for NAME or
    NAME.safetensors)."""
    path = Path(vector)
    return path.with_name(path.name.removesuffix(".safetensors") + ".calibration.json")


def usable_range(alphas: Sequence[float], gains: Sequence[float], saturation: float = 0.95,
                 distances: Sequence[float] | None = None, max_distance: float | None = None) -> tuple[float, float]:
    """Per side of 0, the first alpha whose signed alignment gain s (A(alpha) - A(0)) reaches `saturation` of the
    side's largest gain (the side's last alpha if the gain never rises above 0: nothing saturates). With
    `max_distance`, a side also ends before the first alpha whose preservation distance to alpha = 0 (`distances`,
    one per alpha) exceeds it: at the last alpha within it, or at 0."""
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
        end = int(np.flatnonzero(g >= saturation * peak)[0]) if peak > 0 else len(side) - 1
        if max_distance is not None:
            over = np.flatnonzero(~(np.asarray(distances, float)[side] <= max_distance))  # NaN counts as over
            if len(over) and over[0] <= end:
                end = int(over[0]) - 1
        limits.append(float(alphas[side[end]]) if end >= 0 else 0.0)
    return limits[0], limits[1]


def attach(artifact, path: str | Path):
    """`artifact` with the calibrations saved beside its file `path` (``{}`` when there are none)."""
    cal = calibration_path(path)
    artifact.calibrations = read_calibrations(cal) if cal.is_file() else {}
    return artifact


def calibrated(alpha, units: str, calibrations: dict, what: str):
    """(alpha, units): a strength given as an effect in a calibrated measure `units`, turned back into the
    alpha and units the calibration was measured in; any other `units` as they are."""
    if units in ("raw", "norm"):
        return alpha, units
    if units not in calibrations:
        if not calibrations:
            raise TadaError(f"units must be raw or norm; got {units!r} ({what} has no calibration: run tada "
                            "calibrate on its file)")
        raise TadaError(f"units must be raw, norm or a measure {what} is calibrated in "
                        f"({', '.join(sorted(calibrations))}); got {units!r}")
    cal = calibrations[units]
    for a in alpha if isinstance(alpha, (list, tuple)) else [alpha]:
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a):
            raise TadaError(f"a {units} change must be a finite number; got {a!r}")
    alpha = [cal.to_alpha(a) for a in alpha] if isinstance(alpha, (list, tuple)) else cal.to_alpha(alpha)
    return alpha, cal.units

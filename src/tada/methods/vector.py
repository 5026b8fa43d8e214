"""Steering vectors: one direction per site, saved as safetensors + JSON, applied with a strength alpha.

CAA vectors (eq. 2) are applied with ReNorm (eq. 3); SAE vectors (eq. 7) are added as they are (eq. 8).
A vector is either one direction per site, shape (dim,), or one per denoising step, shape (steps, dim).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tada.engine import AddVector, Capture, Copy
from tada.errors import MissingFileError, TadaError


#: how a steering strength is given: as eq. 3 / eq. 8 write it, in units of the sites' frame norm, or as an
#: effect in a measure the artifact is calibrated in (:mod:`tada.methods.calibration`, e.g. "alignment")
Units = str


def frame_norm(model, sites: Sequence[int], prompts: Sequence[str], steps: int | None = None) -> float:
    """Median L2 norm of one frame of the sites' outputs over the generations of `prompts` (seeds 0, 1, ...):
    the natural unit of a steering strength, since eq. 3 keeps each frame's norm."""
    norms: list[torch.Tensor] = []
    cap = Capture(sites=list(sites), reduce=None,  # streamed: only the norms are kept, never the outputs
                  sink=lambda site, step, t, rec: norms.append(rec[:, cap.frames[site]].norm(dim=-1).flatten()))
    model.generate(list(prompts), list(range(len(prompts))), steps=steps, interventions=[cap])
    return float(torch.cat(norms).median())


def raw_strength(alpha: float | Sequence[float], units: Units, frame_norm: float | None, what: str,
                 calibrations: dict | None = None):
    """`alpha` in `units` as a raw strength: itself for "raw", times `frame_norm` for "norm" (refused where
    `what` recorded no frame norm); an effect in a calibrated measure goes back to its alpha first."""
    from tada.methods.calibration import calibrated

    alpha, units = calibrated(alpha, units, calibrations or {}, what)
    if units == "raw":
        return alpha
    if units != "norm":
        raise TadaError(f"units must be 'raw' or 'norm'; got {units!r}")
    if not frame_norm:
        raise TadaError(f"{what} records no frame norm (its strength is not a multiple of one, or it was saved "
                        "by an older tada): give raw strengths (units='raw', --units raw)")
    return [a * frame_norm for a in alpha] if isinstance(alpha, (list, tuple)) else alpha * frame_norm


def vector_path(path: str | Path) -> Path:
    """The .safetensors file of a vector named `path`: `path` itself if it ends so, else `path` + .safetensors
    (so a name with dots, "tempo.v2", is never cut at its last dot). Its metadata is the same name in .json."""
    path = Path(path)
    return path if path.suffix == ".safetensors" else path.with_name(path.name + ".safetensors")


@dataclass
class SteeringVector:
    """Directions keyed by site index.

    vectors: ``{site_index: tensor (dim,) or (steps, dim)}``.
    site_names: the site modules' names, checked against the model when applied or loaded.
    renorm: apply eq. 3 after adding (CAA) or not (SAE, eq. 8).
    meta: model, concept, method, pairs, seeds, library version and anything else worth keeping.
    """

    vectors: dict[int, torch.Tensor]
    site_names: dict[int, str]
    renorm: bool = True
    meta: dict = field(default_factory=dict)
    #: measure -> Calibration, read from the file's NAME.calibration.json when loaded (not part of the vector)
    calibrations: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if not self.vectors:
            raise TadaError("a SteeringVector needs at least one site")
        for idx, v in self.vectors.items():
            if v.ndim not in (1, 2):
                raise TadaError(f"vector for site {idx} must be (dim,) or (steps, dim); got {tuple(v.shape)}")
            if not torch.isfinite(v).all():
                raise TadaError(f"vector for site {idx} contains NaN or inf")

    @property
    def sites(self) -> list[int]:
        return sorted(self.vectors)

    @property
    def method(self) -> str:
        return self.meta.get("method", "caa")

    def content_hash(self) -> str:
        """A hash of everything that decides what this vector does: its tensors, sites and ReNorm."""
        from tada.runs import content_hash

        tensors = [self.vectors[i].detach().float().contiguous().numpy().tobytes() for i in self.sites]
        return content_hash(self.renorm, {str(k): v for k, v in sorted(self.site_names.items())}, *tensors)

    def at(self, alpha: float | Sequence[float], copy: Copy = "cond", window: tuple[float, float] | None = None,
           samples: Sequence[int] | None = None, units: Units = "raw") -> "Steer":
        """This vector at strength `alpha` (one number, or one per prompt of the batch).

        units: "raw" (alpha as eq. 3 and 8 write it), "norm": alpha in units of the median frame norm of
        the sites' outputs, measured when the vector was fit (``meta["frame_norm"]``), so that alpha = 1
        means the same on every model, or a measure of :attr:`calibrations` (alpha is then the wanted effect)."""
        return Steer(self, self.strength(alpha, units), copy, window, samples)

    def strength(self, alpha: float | Sequence[float], units: Units = "raw"):
        """`alpha` given in `units` as a raw strength (see :meth:`at`)."""
        return raw_strength(alpha, units, self.meta.get("frame_norm"), "this vector", self.calibrations)

    def check_model(self, model) -> None:
        for idx, name in self.site_names.items():
            if idx >= len(model.sites) or model.sites[idx].name != name:
                have = model.sites[idx].name if idx < len(model.sites) else f"none (the model has {len(model.sites)})"
                raise TadaError(f"this vector was fit on site {idx} = {name!r}; {model.name} has {have} there")
            dim = self.vectors[idx].shape[-1]
            if dim != model.sites[idx].dim:
                raise TadaError(
                    f"vector for site {idx} has width {dim}; {model.name}'s site {idx} has width {model.sites[idx].dim}"
                )
        fitted = self.meta.get("model")
        if fitted and fitted != model.name:
            raise TadaError(f"this vector was fit on model {fitted!r}; got {model.name!r}")

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.safetensors) and ``path`` with suffix .json (metadata)."""
        from safetensors.torch import save_file

        import tada

        path = vector_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({f"site.{i}": v.contiguous().float() for i, v in self.vectors.items()}, str(path))
        meta = dict(self.meta, renorm=self.renorm, site_names={str(k): v for k, v in self.site_names.items()},
                    sites=[{"index": i, "name": self.site_names[i], "width": int(self.vectors[i].shape[-1])}
                           for i in self.sites],
                    library_version=tada.__version__)
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, model=None) -> "SteeringVector":
        """Read a saved vector; with `model`, check that its sites, widths and model name match."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from tada.methods.calibration import attach

        path = vector_path(path)
        meta_path = path.with_suffix(".json")
        for p in (path, meta_path):
            if not p.exists():
                raise MissingFileError(f"steering vector file {p} does not exist")
        try:
            tensors = load_file(str(path))
            meta = json.loads(meta_path.read_text())
            names = {int(k): v for k, v in meta.pop("site_names").items()}
            vectors = {int(k.split(".", 1)[1]): v for k, v in tensors.items()}
        except (SafetensorError, json.JSONDecodeError, KeyError, ValueError, IndexError) as err:
            raise TadaError(f"{path} is not a tada steering vector: {err}") from err
        if set(names) != set(vectors):
            raise TadaError(f"{path}: sites in the tensors {sorted(vectors)} and metadata {sorted(names)} differ")
        meta.pop("library_version", None)
        meta.pop("sites", None)
        vec = cls(vectors, names, bool(meta.pop("renorm", True)), meta)
        if model is not None:
            vec.check_model(model)
        return attach(vec, path)


@dataclass
class Steer:
    """A steering vector at a strength: what ``model.generate(steer=[...])`` takes."""

    vector: SteeringVector
    alpha: float | Sequence[float]
    copy: Copy = "cond"
    window: tuple[float, float] | None = None
    samples: Sequence[int] | None = None

    def interventions(self, model, prompts=None, steps=None, duration=None) -> list:
        """The engine interventions of this steer (what ``model.generate(steer=[...])`` installs)."""
        return [self.intervention(model)]

    def intervention(self, model) -> AddVector:
        self.vector.check_model(model)
        return AddVector(self.vector.vectors, self.alpha, renorm=self.vector.renorm, copy=self.copy,
                         samples=self.samples, window=self.window)

"""One interface for every steering method.

A *method* is fit from a concept, a catalogue name, a :class:`~tada.concepts.Concept`, or explicit
``(positive, negative[, neutral])`` prompts, on chosen sites (indices or names, ``"all"``, or a
:class:`~tada.localization.impact.LayerImpact`'s top k), and gives a :class:`Steering` *artifact*:

* ``artifact.at(alpha)`` is what ``model.generate(steer=[...])`` takes; alpha is one number or one per
  prompt of the batch (so one batch can hold a whole alpha sweep); several steers compose, each one's
  interventions installed after the previous one's, so at a site they act in the order given;
* ``alpha = 0`` (for every sample) installs nothing: bit-identical to plain generation, for every method;
* ``artifact.save(path)`` writes ``path.safetensors`` (its tensors) and ``path.json`` (model, sites with
  names and widths, method, concept, settings, library version); :func:`load` reads any method's file
  (the CAA/SAE files of :class:`~tada.methods.vector.SteeringVector` included) and, given a model, refuses
  one fit on another model or site layout, naming both.

:data:`METHODS` lists every method with a one-line description and its cost in denoiser passes.
Prompt-level methods (PCI, text-embedding, FreeSliders) build their prompts from the generation's own
prompt with the concept's first steering template (``"{base} with a fast tempo"``): the generation prompt
is the *neutral* prompt, the filled templates are the positive and negative ones.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from tada.engine import Copy, Intervention, check_copy, resolve_sites
from tada.errors import MissingFileError, TadaError

FORMAT = "tada-steering"
FORMAT_VERSION = 1


DEFAULT_SWEEP = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class MethodInfo:
    """A registered method. `units` is "norm" where the artifact records its sites' frame norm (alphas may be
    multiples of it), else "raw"; `alphas` is its default sweep, in fractions of the step count (rounded to
    whole steps) where `per_step`."""

    name: str
    description: str
    cost: str
    cls: type
    units: str = "raw"
    alphas: tuple[float, ...] = DEFAULT_SWEEP
    per_step: bool = False

    def sweep(self, steps: int) -> list[float]:
        """The default alpha sweep of this method for a generation of `steps` steps."""
        if self.per_step:
            return sorted({float(round(a * steps)) for a in self.alphas})
        return list(self.alphas)


#: method name -> :class:`MethodInfo`, filled as the method modules are imported (see :func:`methods`).
METHODS: dict[str, MethodInfo] = {}

_MODULES = ("caa", "sae", "austeer", "pci", "text_embedding", "token_embedding", "freesliders", "concept_sliders")


def register(name: str, description: str, cost: str, **sweep):
    """Class decorator: add a :class:`Steering` subclass to :data:`METHODS` under `name` (`sweep`: the
    :class:`MethodInfo` fields units, alphas, per_step)."""
    def deco(cls):
        cls.method = name
        METHODS[name] = MethodInfo(name, description, cost, cls, **sweep)
        return cls
    return deco


def methods() -> dict[str, MethodInfo]:
    """Every registered method (importing the method modules registers them)."""
    import importlib

    for mod in _MODULES:
        importlib.import_module(f"tada.methods.{mod}")
    order = {f"tada.methods.{mod}": i for i, mod in enumerate(_MODULES)}  # not the order they were imported in
    return dict(sorted(METHODS.items(), key=lambda kv: (order.get(kv[1].cls.__module__, len(order)), kv[0])))


def method(name: str) -> MethodInfo:
    table = methods()
    if name not in table:
        raise TadaError(f"no steering method {name!r}; the methods are {', '.join(table)}")
    return table[name]


# ------------------------------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class ConceptPrompts:
    """What a method is fit from: contrastive pairs, the templates prompt-level methods fill with the
    generation prompt, and an optional neutral prompt.

    name: the catalogue concept (None for explicit prompts). pairs: (positive, negative) prompts.
    templates: (positive, negative) with ``{base}``; None when the prompts are fixed (explicit prompts
    without ``{base}``, used as they are whatever the generation prompt).
    """

    name: str | None
    pairs: tuple[tuple[str, str], ...]
    templates: tuple[tuple[str, str], ...] | None
    neutral: str | None = None
    bases: tuple[str, ...] = ()

    def neutral_prompts(self) -> list[str]:
        """Prompts without the concept (the bases the templates were filled with, or the explicit neutral)."""
        out = [self.neutral] if self.neutral else list(self.bases)
        if not out:
            raise TadaError("this method needs neutral prompts: give a catalogue concept, templates with {base}, or "
                            "explicit (positive, negative, neutral) prompts")
        return out

    def positive_negative(self, prompts: Sequence[str], template: int = 0) -> tuple[list[str], list[str]]:
        """The positive and negative prompt for each generation prompt."""
        if self.templates is None:
            pos, neg = self.pairs[0]
            return [pos] * len(prompts), [neg] * len(prompts)
        if not 0 <= template < len(self.templates):
            raise TadaError(f"template {template} does not exist; the concept has {len(self.templates)}")
        pos, neg = self.templates[template]
        return [pos.format(base=p) for p in prompts], [neg.format(base=p) for p in prompts]

    def to_json(self) -> dict:
        return {"name": self.name, "pairs": [list(p) for p in self.pairs],
                "templates": None if self.templates is None else [list(t) for t in self.templates],
                "neutral": self.neutral, "bases": list(self.bases)}

    @classmethod
    def from_json(cls, d: dict) -> "ConceptPrompts":
        t = d.get("templates")
        return cls(d.get("name"), tuple(tuple(p) for p in d["pairs"]),
                   None if t is None else tuple(tuple(x) for x in t), d.get("neutral"), tuple(d.get("bases", ())))


def _is_prompt_tuple(x) -> bool:
    return isinstance(x, (tuple, list)) and len(x) in (2, 3) and all(isinstance(p, str) for p in x)


def concept_prompts(concept, n_pairs: int | None = None, catalogue=None) -> ConceptPrompts:
    """A catalogue name, a Concept, explicit ``(positive, negative[, neutral])`` prompts (with ``{base}`` they
    are templates), or a list of (positive, negative) pairs, as :class:`ConceptPrompts`."""
    from tada.concepts import Concept, load_catalogue

    if isinstance(concept, ConceptPrompts):
        return concept
    if isinstance(concept, str):
        concept = (catalogue or load_catalogue())[concept]
    if isinstance(concept, Concept):
        from tada.concepts.catalogue import load_steering_bases

        pairs = tuple(concept.contrastive_prompts(n=n_pairs))
        bases = tuple(b for b in load_steering_bases() if not concept.has_concept(b) and not concept.has_counter(b))
        return ConceptPrompts(concept.name, pairs, tuple((t.positive, t.negative) for t in concept.templates),
                              bases=bases)
    if _is_prompt_tuple(concept):
        items = [p.strip() for p in concept]
        if not all(items):
            raise TadaError(f"the prompts must be non-empty; got {tuple(concept)!r}")
        pos, neg = items[:2]
        neutral = items[2] if len(items) == 3 else None
        if "{base}" in pos or "{base}" in neg:
            if not ("{base}" in pos and "{base}" in neg):
                raise TadaError("a template pair needs {base} in both the positive and the negative prompt")
            from tada.concepts.catalogue import load_steering_bases

            bases = load_steering_bases()[: n_pairs or None]
            return ConceptPrompts(None, tuple((pos.format(base=b), neg.format(base=b)) for b in bases),
                                  ((pos, neg),), neutral, tuple(bases))
        return ConceptPrompts(None, ((pos, neg),), None, neutral)
    if isinstance(concept, (list, tuple)) and concept and all(_is_prompt_tuple(p) and len(p) == 2 for p in concept):
        pairs = tuple((p, n) for p, n in concept)
        if not all(p.strip() and n.strip() for p, n in pairs):
            raise TadaError("each pair must be two non-empty prompts (positive, negative)")
        return ConceptPrompts(None, pairs[:n_pairs] if n_pairs else pairs, None)
    raise TadaError("a concept is a catalogue name, a Concept, (positive, negative[, neutral]) prompts or a list of "
                    f"(positive, negative) pairs; got {concept!r}")


def choose_sites(model, sites=None, top_k: int = 2, concept: str | None = None) -> list[int]:
    """Site indices from indices/names, "all"/None (every site), or a LayerImpact (its `top_k` for `concept`)."""
    from tada.localization.impact import LayerImpact

    if isinstance(sites, LayerImpact):
        try:
            sites = sites.top(top_k, concept)
        except TadaError:
            sites = sites.top(top_k)
    return resolve_sites(model.sites, sites, model.name)


def check_alpha_list(alpha, batch: int, integer: bool = False) -> list[float]:
    """One alpha per sample from one number or a list of `batch` numbers."""
    values = [alpha] * batch if isinstance(alpha, (int, float)) and not isinstance(alpha, bool) else list(alpha)
    if len(values) != batch:
        raise TadaError(f"got {len(values)} alphas for a batch of {batch} prompts")
    for a in values:
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not torch.isfinite(torch.tensor(float(a))):
            raise TadaError(f"alpha must be a finite number; got {a!r}")
        if integer and float(a) != int(a):
            raise TadaError(f"this method's alpha is a whole number of steps; got {a!r}")
    return [float(a) for a in values]


# ------------------------------------------------------------------------------------------ artifacts
def steering_path(path: str | Path) -> Path:
    """`path` if it ends in .safetensors, else `path` + .safetensors (a name with dots keeps its name)."""
    path = Path(path)
    return path if path.suffix == ".safetensors" else path.with_name(path.name + ".safetensors")


class Steering:
    """A fitted steering method: tensors, the sites it was fit on, its settings and where it came from.

    Subclasses set :attr:`method` (via :func:`register`) and implement :meth:`fit` and :meth:`interventions`.
    """

    method: ClassVar[str] = ""

    def __init__(self, tensors: dict[str, torch.Tensor], sites: dict[int, tuple[str, int]], settings: dict,
                 concept: ConceptPrompts | None = None, model: str | None = None, meta: dict | None = None):
        for key, t in tensors.items():
            if not torch.isfinite(t).all():
                raise TadaError(f"{self.method}: tensor {key} contains NaN or inf")
        self.tensors, self.site_info, self.settings = dict(tensors), dict(sorted(sites.items())), dict(settings)
        self.concept, self.model, self.meta = concept, model, dict(meta or {})
        self.calibrations: dict = {}  # measure -> Calibration, read from NAME.calibration.json by load()

    # --- to implement ----------------------------------------------------------------------------
    @classmethod
    def fit(cls, model, concept, sites=None, **settings) -> "Steering":
        raise NotImplementedError

    def interventions(self, model, alpha, prompts: Sequence[str], steps: int, duration: float | None = None,
                      copy: Copy = "cond") -> list[Intervention]:
        """The engine interventions that apply this artifact at `alpha` (one per sample) to a generation of
        `prompts` with `steps` steps; ``[]`` when every alpha is 0."""
        raise NotImplementedError

    # --- shared ----------------------------------------------------------------------------------
    @property
    def sites(self) -> list[int]:
        return list(self.site_info)

    def at(self, alpha, copy: Copy = "cond", window: tuple[float, float] | None = None,
           units: str = "raw") -> "MethodSteer":
        """This artifact at strength `alpha` (one number, or one per prompt of the batch) given in `units`
        (:meth:`strength`). Timestep windows belong to the vector methods (CAA, SAE); a method with a step
        setting takes it at fit time."""
        if window is not None:
            raise TadaError(f"{self.method} takes no timestep window; steer from a step with its start setting")
        return MethodSteer(self, self.strength(alpha, units), check_copy(copy))

    def strength(self, alpha, units: str = "raw"):
        """`alpha` in `units` as this method's own strength: "raw"; "norm" (multiples of the sites' frame norm) only
        for methods that record one when they are fit (see :meth:`tada.methods.vector.SteeringVector.at`); or a
        measure of :attr:`calibrations`, where `alpha` is the wanted effect (:mod:`tada.methods.calibration`)."""
        from tada.methods.vector import raw_strength

        return raw_strength(alpha, units, self.meta.get("frame_norm"), f"this {self.method} artifact",
                            self.calibrations)

    def check_model(self, model) -> None:
        """Refuse a model other than the one this was fit on, or another site layout or width."""
        if self.model and self.model != model.name:
            raise TadaError(f"this {self.method} artifact was fit on model {self.model!r}; got {model.name!r}")
        for idx, (name, width) in self.site_info.items():
            if idx >= len(model.sites):
                raise TadaError(f"this {self.method} artifact was fit on site {idx} = {name!r} (width {width}); "
                                f"{model.name} has {len(model.sites)} sites")
            site = model.sites[idx]
            if site.name != name or site.dim != width:
                raise TadaError(f"this {self.method} artifact was fit on site {idx} = {name!r} (width {width}); "
                                f"{model.name} has {site.name!r} (width {site.dim}) there")

    def content_hash(self) -> str:
        from tada.runs import content_hash

        tensors = [self.tensors[k].detach().float().contiguous().numpy().tobytes() for k in sorted(self.tensors)]
        return content_hash(self.method, self.model, {str(k): list(v) for k, v in self.site_info.items()},
                            self.settings, None if self.concept is None else self.concept.to_json(), *tensors)

    def header(self) -> dict:
        import tada

        return {"format": FORMAT, "format_version": FORMAT_VERSION, "method": self.method, "model": self.model,
                "sites": [{"index": i, "name": n, "width": w} for i, (n, w) in self.site_info.items()],
                "concept": None if self.concept is None else self.concept.to_json(), "settings": self.settings,
                "library_version": tada.__version__, "meta": self.meta}

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.safetensors) and the same name with .json."""
        from safetensors.torch import save_file

        path = steering_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().float().cpu() for k, v in self.tensors.items()}, str(path))
        path.with_suffix(".json").write_text(json.dumps(self.header(), indent=2))
        return path

    @classmethod
    def _from_saved(cls, tensors: dict, header: dict) -> "Steering":
        sites = {int(s["index"]): (s["name"], int(s["width"])) for s in header["sites"]}
        concept = None if header.get("concept") is None else ConceptPrompts.from_json(header["concept"])
        return cls(tensors, sites, header.get("settings", {}), concept, header.get("model"), header.get("meta", {}))

    def __repr__(self) -> str:
        name = self.concept.name if self.concept else None
        return f"{type(self).__name__}(method={self.method!r}, model={self.model!r}, concept={name!r}, sites={self.sites})"


def site_info(model, sites: Sequence[int]) -> dict[int, tuple[str, int]]:
    return {i: (model.sites[i].name, model.sites[i].dim) for i in sites}


def load(path: str | Path, model=None):
    """Any saved steering artifact: a method's (:class:`Steering`) or a CAA/SAE steering vector; with
    `model`, checked against it (model name, site names and widths)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from tada.methods.calibration import attach
    from tada.methods.vector import SteeringVector

    path = steering_path(path)
    meta_path = path.with_suffix(".json")
    for p in (path, meta_path):
        if not p.exists():
            raise MissingFileError(f"steering file {p} does not exist")
    try:
        header = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise TadaError(f"{meta_path} is not a tada steering file: {err}") from err
    if header.get("format") != FORMAT:
        return SteeringVector.load(path, model)  # CAA / SAE steering vectors
    if header.get("format_version", 0) > FORMAT_VERSION:
        raise TadaError(f"{path} was written by a newer tada (format {header['format_version']}); upgrade tada")
    info = method(header.get("method", "?"))
    try:
        tensors = load_file(str(path))
        art = info.cls._from_saved(tensors, header)
    except (SafetensorError, KeyError, ValueError, TypeError) as err:
        raise TadaError(f"{path} is not a readable {info.name} artifact: {err}") from err
    if model is not None:
        art.check_model(model)
    return attach(art, path)


@dataclass
class MethodSteer:
    """An artifact at a strength: what ``model.generate(steer=[...])`` takes."""

    artifact: Any
    alpha: Any
    copy: Copy = "cond"

    def text_prompts(self, prompts: Sequence[str]) -> list[str]:
        """Other prompts whose contexts this steer patches into a generation of `prompts` (none at alpha 0)."""
        alphas = [self.alpha] if isinstance(self.alpha, (int, float)) else list(self.alpha)
        if not any(alphas) or not hasattr(self.artifact, "text_prompts"):
            return []
        return self.artifact.text_prompts(list(prompts))

    def interventions(self, model, prompts: Sequence[str], steps: int, duration: float | None = None
                      ) -> list[Intervention]:
        self.artifact.check_model(model)
        return self.artifact.interventions(model, self.alpha, list(prompts), steps, duration, copy=self.copy)


def encode_together(model, groups: Sequence[Sequence[str]], duration: float | None = None):
    """``model.encode`` of each group of prompts, all at one text length where the family pads to its batch
    (:meth:`~tada.models.base.AudioModel.common_text_length`), so their contexts line up position by position."""
    everything = [p for g in groups for p in g]
    with model.common_text_length(everything, duration):  # inside a generation's own one, the outer length wins
        return [model.encode(list(g), duration=duration) for g in groups]


def warn_identical(c_pos, c_neg, prompts: Sequence[str], method: str) -> None:
    """Warn when a prompt's positive and negative prompts encode to the same contexts at every site (e.g. the
    concept words were cut off by the text encoder's length limit): steering changes nothing there."""
    same = [i for i in range(len(prompts))
            if all(torch.equal(c_pos.contexts[k][0][i], c_neg.contexts[k][0][i]) for k in c_pos.contexts)]
    if same:
        warnings.warn(f"{method}: for {len(same)} of {len(prompts)} prompts the positive and negative prompts encode "
                      f"identically (cut off by the text encoder's length limit?), e.g. {prompts[same[0]]!r}: "
                      "steering changes nothing there", stacklevel=3)


class PromptMethod(Steering):
    """Shared by the training-free prompt-level methods: fit records the prompts, the sites and settings only
    (no model run, no tensors)."""

    defaults: ClassVar[dict] = {}

    @classmethod
    def fit(cls, model, concept, sites=None, catalogue=None, top_k: int = 2, **settings) -> "PromptMethod":
        unknown = set(settings) - set(cls.defaults)
        if unknown:
            raise TadaError(f"{cls.method} has no setting {', '.join(sorted(unknown))}; its settings are "
                            f"{', '.join(cls.defaults) or 'none'}")
        cp = concept_prompts(concept, None, catalogue)
        chosen = choose_sites(model, sites, top_k, cp.name)
        if not chosen:
            raise TadaError("choose at least one site")
        full = {**cls.defaults, **settings}
        full["localized"] = len(chosen) < len(model.sites)
        return cls({}, site_info(model, chosen), full, cp, model.name)

    def prompts_for(self, prompts: Sequence[str]) -> tuple[list[str], list[str]]:
        return self.concept.positive_negative(prompts, int(self.settings.get("template", 0)))

    def encoded(self, model, alpha, prompts: Sequence[str], duration=None, neutral: bool = False):
        """(alphas, [c_neutral,] c_pos, c_neg) for a generation of `prompts`, encoded at one text length, or None
        when every alpha is 0; warns where a positive and a negative prompt encode identically."""
        alphas = check_alpha_list(alpha, len(prompts))
        if not any(alphas):
            return None
        pos, neg = self.prompts_for(prompts)
        groups = encode_together(model, [list(prompts), pos, neg] if neutral else [pos, neg], duration)
        warn_identical(groups[-2], groups[-1], prompts, self.method)
        return alphas, groups

    def text_prompts(self, prompts: Sequence[str]) -> list[str]:
        pos, neg = self.prompts_for(prompts)
        return pos + neg

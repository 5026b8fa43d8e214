"""Scorers and FAD embeddings by name: `load_scorer("clap")`, the scorer a model is judged by, and
`load_embedder("vggish")`.

Heavy or optional back ends are imported only when their name is asked for.
"""

from __future__ import annotations

from collections.abc import Callable

from tada.errors import TadaError
from tada.evaluation.metrics import Embedder
from tada.evaluation.scorers.base import Scorer


def _clap(**kw) -> Scorer:
    from tada.evaluation.scorers.clap import ClapScorer

    return ClapScorer.from_pretrained(**kw)


def _clap_tiny(**kw) -> Scorer:
    from tada.evaluation.scorers.clap import ClapScorer

    return ClapScorer.random(**kw)


def _muq(**kw) -> Scorer:
    from tada.evaluation.scorers.muq import MuQScorer

    return MuQScorer.from_pretrained(**kw)


def _toy(**kw) -> Scorer:
    from tada.toy.scorer import ToyScorer

    return ToyScorer.from_pretrained(**kw)


SCORERS: dict[str, Callable[..., Scorer]] = {
    "clap": _clap,  # real CLAP weights: checkpoint=<hub id or folder>, default laion/larger_clap_music
    "clap-tiny": _clap_tiny,  # random tiny CLAP built offline: seed=, tiny=
    "muq": _muq,  # MuQ-MuLan (ported): checkpoint=<hub id or folder>, default OpenMuQ/MuQ-MuLan-large
    "toy": _toy,  # the toy world's shipped scorer: path=
}


def check_scorer_name(name: str) -> str:
    """`name` if a scorer is registered under it, else one error listing the known names."""
    if not isinstance(name, str):
        raise TadaError(f"scorer name must be a str; got {type(name).__name__}")
    if name not in SCORERS:
        raise TadaError(f"unknown scorer {name!r}; known scorers: {', '.join(sorted(SCORERS))}")
    return name


def load_scorer(name: str, **kw) -> Scorer:
    """Build the scorer registered under `name` ("clap", "clap-tiny", "muq", "toy"); keyword arguments go to
    its constructor (e.g. `load_scorer("clap", checkpoint="laion/clap-htsat-unfused")`)."""
    return SCORERS[check_scorer_name(name)](**kw)


def offline_scorer_name(model) -> str | None:
    """The one scorer a model built offline can be judged by: the toy world's own for "toy", a tiny random
    CLAP for "tiny-*" models (shape checks); None for a real model."""
    name = getattr(model, "name", "")
    if name == "toy":
        return "toy"
    if name.startswith("tiny-"):
        return "clap-tiny"
    return None


def default_scorer(model) -> Scorer:
    """The scorer a model is judged by when none is named: its offline scorer, else the music CLAP checkpoint."""
    return load_scorer(offline_scorer_name(model) or "clap")


def paper_scorer_names(model) -> list[str]:
    """The alignment scorers of the paper's Table 1 (sec. 4.2), CLAP and MuQ-MuLan, for a real model; the
    toy and tiny models keep their offline scorer, which is all they can be judged by here."""
    offline = offline_scorer_name(model)
    return [offline] if offline else ["clap", "muq"]


def load_embedder(name: str) -> Embedder:
    """FAD's embedding by name: "vggish" (Kilgour et al.'s, every 0.96 s example; `tada.evaluation.vggish`) or a scorer of
    `load_scorer` ("clap", "muq", ...), whose `embed_audio` gives one vector a row."""
    if name == "vggish":
        from tada.evaluation.vggish import VGGish

        return VGGish.from_pretrained().embed_frames
    if name not in SCORERS:
        raise TadaError(f"unknown FAD embedding {name!r}; known: {', '.join(['vggish', *sorted(SCORERS)])}")
    return load_scorer(name).embed_audio


def _clap_lpaps(**kw):
    from tada.evaluation.clap_lpaps import ClapLPAPS

    return ClapLPAPS.from_pretrained(**kw)


def _clap_tiny_lpaps(**kw):
    from tada.evaluation.clap_lpaps import ClapLPAPS
    from tada.evaluation.scorers.clap import ClapScorer

    return ClapLPAPS(ClapScorer.random(**kw))


def _toy_lpaps(**kw):
    from tada.toy.lpaps import ToyLPAPS

    return ToyLPAPS.from_pretrained(**kw)


#: Preservation distances of the benchmark protocol (anything with ``distance(a, b) -> (B,)``).
PRESERVATIONS: dict[str, Callable] = {
    "clap-lpaps": _clap_lpaps,  # CLAP-LPAPS on the music CLAP checkpoint: checkpoint=, device=, windowing=
    "clap-tiny-lpaps": _clap_tiny_lpaps,  # the same on a random tiny CLAP built offline (shape checks)
    "toy-lpaps": _toy_lpaps,  # the same reduction on the toy world's scorer network: path=
}


def load_preservation(name: str, **kw):
    """The preservation distance registered under `name` ("clap-lpaps", "clap-tiny-lpaps", "toy-lpaps")."""
    if name not in PRESERVATIONS:
        raise TadaError(f"unknown preservation distance {name!r}; known: {', '.join(PRESERVATIONS)}")
    return PRESERVATIONS[name](**kw)


def default_preservation_name(model) -> str:
    """The protocol's preservation distance for a model: CLAP-LPAPS, or its offline stand-in."""
    offline = offline_scorer_name(model)
    return {"toy": "toy-lpaps", "clap-tiny": "clap-tiny-lpaps"}.get(offline, "clap-lpaps")

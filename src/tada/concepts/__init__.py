"""Musical concepts: the catalogue, counterfactual prompt pairs, and the shipped prompt corpora."""

from tada.concepts.catalogue import (
    KINDS,
    Catalogue,
    CatalogueError,
    Concept,
    Queries,
    Template,
    load_catalogue,
    load_eval_prompts,
    load_steering_bases,
)
from tada.concepts.pairs import (
    DROP_REASONS,
    Pair,
    PairSet,
    SelectionReport,
    build_pairs,
    load_captions,
)

__all__ = [
    "DROP_REASONS",
    "KINDS",
    "Catalogue",
    "CatalogueError",
    "Concept",
    "Pair",
    "PairSet",
    "Queries",
    "SelectionReport",
    "Template",
    "build_pairs",
    "load_captions",
    "load_catalogue",
    "load_eval_prompts",
    "load_steering_bases",
]

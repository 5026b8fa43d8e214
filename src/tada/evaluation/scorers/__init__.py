"""Audio-text scorers behind one `Scorer` protocol (the registry that builds one by name is
:mod:`tada.evaluation.registry`)."""

from tada.evaluation.scorers.base import Scorer, cosine_similarity

__all__ = ["Scorer", "cosine_similarity"]

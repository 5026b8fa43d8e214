"""Counterfactual prompt pairs (P_c, P_c~) for localization (paper §4.1 and App. A; the prompts of eq. 9).

Captions that contain a keyword of concept c and none of c~ are rewritten with the concept's replacement
rules, so each pair differs only in the concept's terms. Every caption not kept is counted under the reason
it was dropped.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tada.concepts.catalogue import Concept, shipped_data
from tada.errors import MissingFileError, TadaError

NO_KEYWORD = "no keyword"
BOTH_PRESENT = "both variants present"
UNCHANGED = "replacement changed nothing"
TERM_LEFT = "concept term left after replacement"
DUPLICATE = "duplicate caption"
OVER_LIMIT = "over the limit n"
DROP_REASONS = (NO_KEYWORD, BOTH_PRESENT, UNCHANGED, TERM_LEFT, DUPLICATE, OVER_LIMIT)
"""Why a caption was not kept, in the order the checks run."""

PAIR_COLUMNS = ("concept", "id", "positive", "negative")


class Pair(NamedTuple):
    """One counterfactual pair."""

    id: str
    """Id of the caption the pair came from."""
    positive: str
    """P_c: the caption as written, containing c."""
    negative: str
    """P_c~: the same caption with c's terms replaced by c~'s."""


class SelectionReport(NamedTuple):
    """How many captions were read, kept, and dropped for each reason."""

    total: int
    kept: int
    dropped: dict[str, int]
    """Reason (one of ``DROP_REASONS``) -> number of captions; reasons with no caption are left out."""

    def __str__(self) -> str:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in self.dropped.items())
        return f"kept {self.kept} of {self.total} captions" + (f" (dropped {reasons})" if reasons else "")


@dataclass(frozen=True)
class PairSet:
    """The counterfactual pairs of one concept, with the report of how they were selected.

    ``report`` is ``None`` for a set read back from CSV, which stores the pairs only.
    """

    concept: str
    pairs: tuple[Pair, ...]
    report: SelectionReport | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[Pair]:
        return iter(self.pairs)

    @property
    def positives(self) -> list[str]:
        """P_c of every pair, in order."""
        return [p.positive for p in self.pairs]

    @property
    def negatives(self) -> list[str]:
        """P_c~ of every pair, in order."""
        return [p.negative for p in self.pairs]

    def to_csv(self, path: str | PathLike) -> Path:
        """Write the pairs as CSV with columns concept, id, positive, negative; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(PAIR_COLUMNS)
            writer.writerows((self.concept, *pair) for pair in self.pairs)
        return path

    @classmethod
    def read_csv(cls, path: str | PathLike) -> PairSet:
        """Read pairs written by :meth:`to_csv`."""
        rows = _csv_rows(_read_text(path), str(path), PAIR_COLUMNS)
        concepts = sorted({row["concept"] for row in rows})
        if len(concepts) != 1:
            raise TadaError(f"{path}: a pair file holds one concept, found {concepts}")
        return cls(concepts[0], tuple(Pair(row["id"], row["positive"], row["negative"]) for row in rows))


def _read_text(path: str | PathLike) -> str:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"CSV file {path} does not exist")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TadaError(f"{path}: not UTF-8 text: {exc}") from None


def _csv_rows(text: str, source: str, required: Sequence[str]) -> list[dict[str, str]]:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
        header = reader.fieldnames
        rows = list(reader)
    except csv.Error as exc:
        raise TadaError(f"{source}: not a readable CSV file: {exc}") from None
    if not header:
        raise TadaError(f"{source}: empty file; expected a header with columns {', '.join(required)}")
    missing = [c for c in required if c not in header]
    if missing:
        raise TadaError(f"{source}: missing column(s) {', '.join(missing)}; found columns {', '.join(header)}")
    for line, row in enumerate(rows, start=2):
        if None in row or any(value is None for value in row.values()):
            raise TadaError(f"{source}: line {line} does not have one value per column of the header")
    if not rows:
        raise TadaError(f"{source}: has a header but no rows")
    return rows


def load_captions(path: str | PathLike | None = None) -> dict[str, str]:
    """Captions by id from a CSV file with a ``caption`` column (and optionally ``id``; else the row number).

    ``path=None`` reads the shipped corpus (``tada/data/captions.csv``).
    """
    if path is None:
        source, text = "tada/data/captions.csv", shipped_data("captions.csv").read_text(encoding="utf-8")
    else:
        source, text = str(path), _read_text(path)
    rows = _csv_rows(text, source, ("caption",))
    captions: dict[str, str] = {}
    for number, row in enumerate(rows):
        key = row["id"].strip() if "id" in row else str(number)
        caption = row["caption"].strip()
        if not key or not caption:
            raise TadaError(f"{source}: row {number + 1} has an empty {'id' if not key else 'caption'}")
        if key in captions:
            raise TadaError(f"{source}: id {key!r} appears twice")
        captions[key] = caption
    return captions


def build_pairs(concept: Concept, captions: Sequence[str] | dict[str, str], n: int | None = None,
                seed: int = 0) -> PairSet:
    """Counterfactual pairs (P_c, P_c~) of ``concept`` from ``captions`` (paper §4.1, App. A; used by eq. 9).

    A caption is kept when it contains a keyword of c, none of c~, the replacement rules change it, and the
    rewritten caption has no keyword of c left. Repeated captions count once. With ``n``, at most ``n`` of the
    usable captions are kept, drawn at random with ``seed`` and returned in corpus order.
    ``captions`` is a list of strings (ids are their positions) or a dict id -> caption.
    """
    if not isinstance(concept, Concept):
        raise TadaError(f"concept must be a Concept (e.g. load_catalogue()['tempo']), got {type(concept).__name__}")
    if isinstance(captions, dict):
        items = [(str(k), v) for k, v in captions.items()]
    elif isinstance(captions, Sequence) and not isinstance(captions, str):
        items = [(str(i), v) for i, v in enumerate(captions)]
    else:
        raise TadaError(f"captions must be a list of strings or a dict id -> caption, got {type(captions).__name__}")
    for key, text in items:
        if not isinstance(text, str):
            raise TadaError(f"caption {key!r} must be a string, got {type(text).__name__}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise TadaError(f"n must be a positive integer or None, got {n!r}")

    dropped: Counter[str] = Counter()
    usable: list[Pair] = []
    seen: set[str] = set()
    for key, text in items:
        if not concept.has_concept(text):
            dropped[NO_KEYWORD] += 1
        elif concept.has_counter(text):
            dropped[BOTH_PRESENT] += 1
        elif (negative := concept.counterfactual(text)) == text:
            dropped[UNCHANGED] += 1
        elif concept.has_concept(negative):
            dropped[TERM_LEFT] += 1
        elif text in seen:
            dropped[DUPLICATE] += 1
        else:
            seen.add(text)
            usable.append(Pair(key, text, negative))
    if n is not None and len(usable) > n:
        chosen = np.sort(np.random.default_rng(seed).choice(len(usable), size=n, replace=False))
        dropped[OVER_LIMIT] = len(usable) - n
        usable = [usable[i] for i in chosen]
    report = SelectionReport(len(items), len(usable), {r: dropped[r] for r in DROP_REASONS if dropped[r]})
    return PairSet(concept.name, tuple(usable), report)

"""The concept catalogue: which words mark a musical concept c, which mark its counterpart c~, how to
rewrite c into c~, and the text the scorers and the steering prompts use for each concept.

A catalogue file (YAML or JSON) holds a top-level ``version`` and a list of ``concepts``; the format is
described in ``docs/concepts.md``. The shipped catalogue lives in ``tada/data/concepts.yaml``.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from tada.errors import MissingFileError, TadaError

KINDS = ("binary", "swap")
"""``binary``: c~ is the opposite value of the same attribute (female/male, fast/slow, happy/sad).
``swap``: c~ is another member of the same category put in c's place (violin -> trumpet, jazz -> reggae)."""

_CONCEPT_FIELDS = {"name", "kind", "description", "keywords", "counter_keywords", "replacements", "ignore",
                   "queries", "templates"}
_REQUIRED_FIELDS = ("name", "kind", "keywords", "counter_keywords", "replacements", "queries", "templates")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_VOWELS = frozenset("aeiouAEIOU")

PathArg = str | PathLike


class Queries(NamedTuple):
    """Text queries a scorer compares audio with (paper App. B.3, Table 5; the "concept name" of eq. 9)."""

    positive: tuple[str, ...]
    """Descriptions of c, e.g. "female vocals"."""
    negative: tuple[str, ...]
    """Descriptions of c~, e.g. "male vocals"."""


class Template(NamedTuple):
    """One contrastive steering template pair (paper App. B.1, Table 4); both contain ``{base}``."""

    positive: str
    negative: str


class CatalogueError(ValueError):
    """A catalogue file is malformed; the message names the file, the concept and the field."""


def plural(phrase: str) -> str:
    """Regular English plural of a phrase's last word: drum -> drums, brass -> brasses, melody -> melodies."""
    head, _, last = phrase.rpartition(" ")
    if re.search(r"(s|x|z|ch|sh)$", last):
        last += "es"
    elif re.search(r"[^aeiou]y$", last):
        last = last[:-1] + "ies"
    else:
        last += "s"
    return f"{head} {last}" if head else last


def match_case(source: str, target: str) -> str:
    """Write ``target`` with the capitalisation of ``source``: ALL CAPS, Title Case Words, Capitalised, lower."""
    letters = [ch for ch in source if ch.isalpha()]
    if len(letters) > 1 and all(ch.isupper() for ch in letters):
        return target.upper()
    words = source.split()
    if len(words) > 1 and all(w[0].isupper() for w in words):
        return " ".join(w[:1].upper() + w[1:] for w in target.split())
    if source[:1].isupper():
        return target[:1].upper() + target[1:]
    return target


def _key(phrase: str) -> str:
    """A phrase as rules are looked up: lower case, single spaces."""
    return " ".join(phrase.lower().split())


def _article_for(word: str, written: str) -> str:
    """"a" or "an" for ``word`` (by its first letter), in the capitalisation of the ``written`` article."""
    return match_case(written, "an" if word[:1] in _VOWELS else "a")


@dataclass(frozen=True)
class Concept:
    """One musical concept c and its counterpart c~ (paper §4.1 and App. A).

    ``keywords`` and ``counter_keywords`` are regular-expression fragments matched case-insensitively as whole
    words. ``replacements`` maps literal phrases of c to phrases of c~; regular plurals of both sides are
    derived unless written out. ``ignore`` lists phrases that look like c but are not (e.g. "drum and bass"):
    they are neither matched nor replaced.
    """

    name: str
    kind: str
    keywords: tuple[str, ...]
    counter_keywords: tuple[str, ...]
    replacements: tuple[tuple[str, str], ...]
    queries: Queries
    templates: tuple[Template, ...]
    ignore: tuple[str, ...] = ()
    description: str = ""
    source: str = "<memory>"

    def __post_init__(self) -> None:
        _normalise(self)
        _validate_concept(self)
        rules = {_key(src): dst for src, dst in self.replacements}
        for src, dst in self.replacements:
            rules.setdefault(_key(plural(src)), plural(dst))
        ignored = [re.escape(p).replace(r"\ ", r"\s+") for p in self.ignore]
        terms = sorted(list(rules) + [_key(p) for p in self.ignore], key=len, reverse=True)
        object.__setattr__(self, "_rules", rules)
        object.__setattr__(self, "_ignore_re", _words(ignored) if ignored else None)
        object.__setattr__(self, "_keyword_re", _words(list(self.keywords)))
        object.__setattr__(self, "_counter_re", _words(list(self.counter_keywords)))
        phrases = "|".join(re.escape(t).replace(r"\ ", r"\s+") for t in terms)  # any run of spaces between words
        object.__setattr__(self, "_replace_re", re.compile(
            r"(?:\b(?P<article>an?)(?P<space>\s+))?\b(?P<term>" + phrases + r")\b", re.IGNORECASE))

    def _unignored(self, text: str) -> str:
        return self._ignore_re.sub(" ", text) if self._ignore_re is not None else text

    def has_concept(self, text: str) -> bool:
        """Whether ``text`` contains a keyword of c (outside the ignored phrases)."""
        return self._keyword_re.search(self._unignored(text)) is not None

    def has_counter(self, text: str) -> bool:
        """Whether ``text`` contains a keyword of c~ (outside the ignored phrases)."""
        return self._counter_re.search(self._unignored(text)) is not None

    def counterfactual(self, text: str) -> str:
        """Rewrite ``text`` from c to c~ with the replacement rules, in one pass (no chained rewrites).

        Whole words only, capitalisation kept, and an "a"/"an" right before a replaced term is re-chosen
        for the new word. Ignored phrases are left as they are.
        """

        def substitute(match: re.Match) -> str:
            term = match["term"]
            target = self._rules.get(_key(term))
            if target is None:  # an ignored phrase
                return match[0]
            new = match_case(term, target)
            if match["article"] is None:
                return new
            return _article_for(new, match["article"]) + match["space"] + new

        return self._replace_re.sub(substitute, text)

    def contrastive_prompts(self, bases: Sequence[str] | None = None, n: int | None = None
                            ) -> list[tuple[str, str]]:
        """(positive, negative) steering prompts: every template filled with every base (paper App. B.1, Table 4),
        the inputs of CAA (eq. 2) and of SAE feature scoring (eq. 6).

        Bases that already mention c or c~ (e.g. "a jazz piece" for ``jazz``) are skipped, since they would
        contradict one side of the pair. The order cycles through the bases first, so the first ``n`` pairs
        use as many different bases as possible. ``bases=None`` uses the shipped steering bases.
        """
        if bases is None:
            bases = load_steering_bases()
        if isinstance(bases, str) or not isinstance(bases, Sequence):
            raise TadaError(f"bases must be a sequence of strings, got {type(bases).__name__}")
        for base in bases:
            if not isinstance(base, str) or not base.strip():
                raise TadaError(f"every base must be a non-empty string, got {base!r}")
        usable = [b for b in bases if not self.has_concept(b) and not self.has_counter(b)]
        prompts = [(t.positive.format(base=b), t.negative.format(base=b)) for t in self.templates for b in usable]
        if n is None:
            return prompts
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise TadaError(f"n must be a positive integer or None, got {n!r}")
        if n > len(prompts):
            raise TadaError(f"n={n} but concept {self.name!r} has only {len(prompts)} contrastive prompts "
                             f"({len(self.templates)} templates x {len(usable)} usable bases of {len(bases)})")
        return prompts[:n]


def _normalise(c: Concept) -> None:
    """Accept lists and dicts where tuples are stored, so concepts can be written by hand in Python."""
    def setattr_(field: str, value: Any) -> None:
        object.__setattr__(c, field, value)

    for field in ("keywords", "counter_keywords", "ignore"):
        if isinstance(getattr(c, field), list):
            setattr_(field, tuple(getattr(c, field)))
    if isinstance(c.replacements, dict):
        setattr_("replacements", tuple(c.replacements.items()))
    elif isinstance(c.replacements, list):
        setattr_("replacements", tuple(tuple(r) if isinstance(r, list) else r for r in c.replacements))
    if isinstance(c.queries, tuple) and len(c.queries) == 2:
        setattr_("queries", Queries(*(tuple(q) if isinstance(q, list) else q for q in c.queries)))
    if isinstance(c.templates, list):
        setattr_("templates", tuple(c.templates))
    if isinstance(c.templates, tuple):
        setattr_("templates", tuple(Template(*t) if isinstance(t, (tuple, list)) and len(t) == 2 else t
                                    for t in c.templates))


def _words(patterns: list[str]) -> re.Pattern:
    return re.compile(r"\b(?:" + "|".join(f"(?:{p})" for p in patterns) + r")\b", re.IGNORECASE)


def _fail(concept: Concept | None, field: str, message: str, source: str | None = None) -> CatalogueError:
    where = source if source is not None else concept.source
    name = f"concept {concept.name!r}" if concept is not None else "catalogue"
    return CatalogueError(f"{where}: {name}, field {field!r}: {message}")


def _strings(concept: Concept, field: str, value: Any, allow_empty: bool = False) -> None:
    if not isinstance(value, tuple) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _fail(concept, field, f"must be a list of non-empty strings, got {value!r}")
    if not value and not allow_empty:
        raise _fail(concept, field, "must not be empty")


def _whole_words(concept: Concept, field: str, phrase: str) -> None:
    if not (phrase[0].isalnum() and phrase[-1].isalnum()):
        raise _fail(concept, field, f"phrase {phrase!r} must begin and end with a letter or digit "
                                    f"(it is matched as whole words)")


def _validate_concept(c: Concept) -> None:
    if not isinstance(c.name, str) or not _NAME.fullmatch(c.name):
        raise _fail(None, "name", f"must be a short id of lowercase letters, digits and '_', got {c.name!r}",
                    c.source)
    if not isinstance(c.description, str):
        raise _fail(c, "description", f"must be a string, got {c.description!r}")
    if c.kind not in KINDS:
        raise _fail(c, "kind", f"unknown kind {c.kind!r}; accepted: {', '.join(KINDS)}")
    for field in ("keywords", "counter_keywords"):
        value = getattr(c, field)
        _strings(c, field, value)
        for pattern in value:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise _fail(c, field, f"bad regular expression {pattern!r}: {exc}") from None
            if compiled.search(""):
                raise _fail(c, field, f"regular expression {pattern!r} matches the empty string")
    _strings(c, "ignore", c.ignore, allow_empty=True)
    for phrase in c.ignore:
        _whole_words(c, "ignore", phrase)
    if not isinstance(c.replacements, tuple) or not c.replacements:
        raise _fail(c, "replacements", "must map at least one phrase of c to its c~ counterpart")
    seen: set[str] = set()
    for rule in c.replacements:
        if (not isinstance(rule, tuple) or len(rule) != 2
                or not all(isinstance(s, str) and s.strip() for s in rule)):
            raise _fail(c, "replacements", f"each rule must map a non-empty phrase to a non-empty phrase, "
                                           f"got {rule!r}")
        _whole_words(c, "replacements", rule[0])
        if _key(rule[0]) == _key(rule[1]):
            raise _fail(c, "replacements", f"rule {rule[0]!r} -> {rule[1]!r} changes nothing")
        if _key(rule[0]) in seen:
            raise _fail(c, "replacements", f"phrase {rule[0]!r} has two rules")
        seen.add(_key(rule[0]))
    for phrase in c.ignore:
        if _key(phrase) in seen:
            raise _fail(c, "ignore", f"phrase {phrase!r} is also replaced by a rule; keep it in one of the two")
    if not isinstance(c.queries, Queries):
        raise _fail(c, "queries", f"must hold a positive and a negative list, got {c.queries!r}")
    for side in Queries._fields:
        _strings(c, f"queries.{side}", getattr(c.queries, side))
    if not isinstance(c.templates, tuple) or not c.templates:
        raise _fail(c, "templates", "must hold at least one positive/negative template pair")
    for template in c.templates:
        if not isinstance(template, Template):
            raise _fail(c, "templates", f"each template must be a positive/negative pair, got {template!r}")
        for side, text in zip(Template._fields, template):
            if not isinstance(text, str):
                raise _fail(c, f"templates.{side}", f"must be a string, got {text!r}")
            try:
                fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
            except ValueError as exc:
                raise _fail(c, f"templates.{side}", f"bad template {text!r}: {exc}") from None
            if fields != {"base"}:
                raise _fail(c, f"templates.{side}", f"template {text!r} must contain the placeholder {{base}} "
                                                    f"and no other, found {sorted(fields)}")


class Catalogue(Mapping[str, Concept]):
    """Concepts by name, read from one or more catalogue files."""

    def __init__(self, concepts: Sequence[Concept], sources: Sequence[tuple[str, str]]):
        self._concepts: dict[str, Concept] = {}
        for concept in concepts:
            if concept.name in self._concepts:
                first = self._concepts[concept.name].source
                raise _fail(concept, "name", f"duplicate concept name, already defined in {first}")
            self._concepts[concept.name] = concept
        self.sources = tuple(sources)
        """(file, version) of every file read, in order."""

    @property
    def version(self) -> str:
        """The catalogue's version: the files' versions joined by "+" (the shipped one first when merged)."""
        return "+".join(version for _, version in self.sources)

    def __getitem__(self, name: str) -> Concept:
        try:
            return self._concepts[name]
        except KeyError:
            raise TadaError(f"unknown concept {name!r}; known concepts: {', '.join(self._concepts)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._concepts)

    def __len__(self) -> int:
        return len(self._concepts)

    def __repr__(self) -> str:
        return f"Catalogue(version={self.version!r}, concepts={list(self._concepts)})"


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML loader that refuses a mapping with a repeated key instead of keeping the last value."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        for i, key in enumerate(keys):
            if key in keys[:i]:
                raise yaml.constructor.ConstructorError(None, None, f"repeated key {key!r}", node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    repeated = {k for k in keys if keys.count(k) > 1}
    if repeated:
        raise TadaError(f"repeated key {sorted(repeated)[0]!r}")
    return dict(pairs)


def _parse(text: str, suffix: str, source: str) -> Any:
    try:
        if suffix == ".json":
            return json.loads(text, object_pairs_hook=_json_pairs)
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except (yaml.YAMLError, ValueError) as exc:
        raise CatalogueError(f"{source}: not a valid {suffix.lstrip('.').upper()} file: {exc}") from None


def _concept_from_dict(raw: Any, index: int, source: str) -> Concept:
    if not isinstance(raw, dict):
        raise CatalogueError(f"{source}: concept #{index} must be a mapping of fields, got {raw!r}")
    label = repr(raw["name"]) if isinstance(raw.get("name"), str) else f"#{index}"
    for field in _REQUIRED_FIELDS:
        if field not in raw:
            raise CatalogueError(f"{source}: concept {label}, field {field!r}: missing "
                                 f"(required: {', '.join(_REQUIRED_FIELDS)})")
    unknown = sorted(set(raw) - _CONCEPT_FIELDS)
    if unknown:
        raise CatalogueError(f"{source}: concept {label}, field {unknown[0]!r}: unknown field; "
                             f"accepted: {', '.join(sorted(_CONCEPT_FIELDS))}")

    def need_mapping(field: str, value: Any, keys: tuple[str, ...]) -> None:
        if not isinstance(value, dict) or set(value) != set(keys):
            raise CatalogueError(f"{source}: concept {label}, field {field!r}: must be a mapping with keys "
                                 f"{', '.join(keys)}, got {value!r}")

    replacements = raw["replacements"]
    if not isinstance(replacements, dict):
        raise CatalogueError(f"{source}: concept {label}, field 'replacements': must be a mapping "
                             f"'phrase of c: phrase of c~', got {replacements!r}")
    need_mapping("queries", raw["queries"], Queries._fields)
    templates = raw["templates"]
    if not isinstance(templates, list):
        raise CatalogueError(f"{source}: concept {label}, field 'templates': must be a list of "
                             f"positive/negative mappings, got {templates!r}")
    for template in templates:
        need_mapping("templates", template, Template._fields)
    return Concept(
        name=raw["name"],
        kind=raw["kind"],
        keywords=raw["keywords"],
        counter_keywords=raw["counter_keywords"],
        replacements=replacements,
        queries=Queries(raw["queries"]["positive"], raw["queries"]["negative"]),
        templates=[Template(t["positive"], t["negative"]) for t in templates],
        ignore=raw.get("ignore", []),
        description=raw.get("description", ""),
        source=source,
    )


def _read_catalogue_text(text: str, suffix: str, source: str) -> tuple[list[Concept], str]:
    data = _parse(text, suffix, source)
    if not isinstance(data, dict):
        raise CatalogueError(f"{source}: must hold a mapping with 'version' and 'concepts', got {type(data).__name__}")
    unknown = sorted(set(data) - {"version", "concepts"})
    if unknown:
        raise CatalogueError(f"{source}: unknown top-level field {unknown[0]!r}; accepted: version, concepts")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, (str, int, float)) or not str(version).strip():
        raise CatalogueError(f"{source}: top-level field 'version' is missing or empty; write e.g. 'version: 1'")
    concepts = data.get("concepts")
    if not isinstance(concepts, list) or not concepts:
        raise CatalogueError(f"{source}: top-level field 'concepts' must be a non-empty list of concepts")
    return [_concept_from_dict(raw, i, source) for i, raw in enumerate(concepts)], str(version)


def _read_catalogue_file(path: PathArg) -> tuple[list[Concept], str]:
    path = Path(path)
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise TadaError(f"{path}: catalogue files must end in .yaml, .yml or .json")
    if not path.is_file():
        raise MissingFileError(f"concept catalogue {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogueError(f"{path}: not UTF-8 text: {exc}") from None
    return _read_catalogue_text(text, path.suffix.lower(), str(path))


def shipped_data(name: str):
    """The shipped data file ``tada/data/<name>`` (an importlib.resources traversable)."""
    return resources.files("tada").joinpath("data", name)


def load_catalogue(path: PathArg | Sequence[PathArg] | None = None, *, merge: bool = True) -> Catalogue:
    """Load the concept catalogue.

    ``path=None`` gives the shipped catalogue. With one or more user files, ``merge=True`` (default) adds their
    concepts to the shipped ones (a name defined twice is an error); ``merge=False`` uses the user files alone.
    """
    paths: list[PathArg]
    if path is None:
        paths = []
    elif isinstance(path, (str, PathLike)):
        paths = [path]
    elif isinstance(path, Sequence) and all(isinstance(p, (str, PathLike)) for p in path):
        paths = list(path)
    else:
        raise TadaError(f"path must be a file path, a list of file paths or None, got {path!r}")
    if not paths and not merge:
        raise TadaError("merge=False needs at least one catalogue file to load instead of the shipped one")
    concepts: list[Concept] = []
    sources: list[tuple[str, str]] = []
    if merge or not paths:
        shipped = shipped_data("concepts.yaml")
        found, version = _read_catalogue_text(shipped.read_text(encoding="utf-8"), ".yaml", "tada/data/concepts.yaml")
        concepts += found
        sources.append(("tada/data/concepts.yaml", version))
    for p in paths:
        found, version = _read_catalogue_file(p)
        concepts += found
        sources.append((str(p), version))
    return Catalogue(concepts, sources)


def _read_lines(path: PathArg | None, shipped_name: str) -> list[str]:
    if path is None:
        text, source = shipped_data(shipped_name).read_text(encoding="utf-8"), f"tada/data/{shipped_name}"
    else:
        source = str(path)
        if not Path(path).is_file():
            raise MissingFileError(f"prompt file {path} does not exist")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise TadaError(f"{path}: not UTF-8 text: {exc}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise TadaError(f"{source}: holds no prompts (expected one prompt per line)")
    return lines


def load_steering_bases(path: PathArg | None = None) -> list[str]:
    """Base styles filling the ``{base}`` of steering templates (App. B.1), one per line; ``None``: shipped."""
    return _read_lines(path, "steering_bases.txt")


def load_eval_prompts(path: PathArg | None = None) -> list[str]:
    """Evaluation prompts across styles (App. B.2), one per line; ``None``: the shipped 100+."""
    return _read_lines(path, "eval_prompts.txt")

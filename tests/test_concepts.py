"""Concept catalogue, counterfactual pair builder and the shipped prompt corpora."""

import difflib
import json
import re

import pytest

from tada.concepts import (
    DROP_REASONS,
    Catalogue,
    CatalogueError,
    Concept,
    Pair,
    PairSet,
    Queries,
    Template,
    build_pairs,
    load_captions,
    load_catalogue,
    load_eval_prompts,
    load_steering_bases,
)
from tada.concepts.catalogue import match_case, plural
from tada.concepts.pairs import (
    BOTH_PRESENT,
    DUPLICATE,
    NO_KEYWORD,
    OVER_LIMIT,
    TERM_LEFT,
    UNCHANGED,
)
from tada.errors import TadaError

PAPER_CONCEPTS = ["vocal_gender", "tempo", "mood", "drums", "flute", "guitar", "maracas", "trumpet", "violin",
                  "piano", "jazz", "techno", "reggae"]
TOY_WORDS = ["fast", "slow", "happy", "sad", "upbeat", "melancholic", "female vocal", "male vocal", "female voice",
             "male voice", "piano", "flute", "violin", "trumpet", "guitar", "drums", "maracas", "jazz", "techno",
             "reggae"]


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


@pytest.fixture(scope="module")
def captions():
    return load_captions()


def small_concept(**changes):
    fields = dict(
        name="bells", kind="swap", keywords=["bells?"], counter_keywords=["gongs?"],
        replacements={"bell": "organ"}, queries=Queries(["bells"], ["organ"]),
        templates=[Template("{base} with bells", "{base} with an organ")],
    )
    fields.update(changes)
    return Concept(**fields)


# --- small helpers -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("word, expected", [("drum", "drums"), ("brass", "brasses"), ("melody", "melodies"),
                                            ("key", "keys"), ("box", "boxes"), ("drum kit", "drum kits"),
                                            ("maraca player", "maraca players")])
def test_plural(word, expected):
    assert plural(word) == expected


@pytest.mark.parametrize("source, target, expected", [("fast", "slow", "slow"), ("Fast", "slow", "Slow"),
                                                      ("FAST", "slow", "SLOW"), ("Grand Piano", "acoustic guitar",
                                                                                 "Acoustic Guitar"),
                                                      ("Grand piano", "acoustic guitar", "Acoustic guitar"),
                                                      ("A", "an", "An"), ("a", "an", "an")])
def test_match_case(source, target, expected):
    assert match_case(source, target) == expected


# --- counterfactual rewriting on tricky captions -----------------------------------------------------------

def test_word_inside_another_word_is_not_a_keyword(catalogue):
    drums, tempo, gender = catalogue["drums"], catalogue["tempo"], catalogue["vocal_gender"]
    assert not drums.has_concept("he taps drumsticks against his eardrum")
    assert not tempo.has_concept("a breakfast radio jingle")
    assert not gender.has_counter("a female vocal")
    assert gender.has_counter("a male vocal")
    assert not catalogue["reggae"].has_concept("a reggaeton beat")
    assert tempo.counterfactual("Breakfast music, fast and breakfast-ready") == \
        "Breakfast music, slow and breakfast-ready"
    assert drums.counterfactual("drumsticks and drums") == "drumsticks and maracas"


def test_replacement_keeps_capitals(catalogue):
    tempo, gender = catalogue["tempo"], catalogue["vocal_gender"]
    assert tempo.counterfactual("Fast drums. FAST drums. fast drums.") == "Slow drums. SLOW drums. slow drums."
    assert gender.counterfactual("She sings; HER voice; Female Vocalist") == "He sings; HIS voice; Male Vocalist"


def test_replacement_handles_plurals(catalogue):
    assert catalogue["violin"].counterfactual("two violins and a violinist") == "two trumpets and a trumpeter"
    assert catalogue["drums"].counterfactual("drummers and a drum") == "maraca players and a maraca"
    assert catalogue["vocal_gender"].counterfactual("girls, women and ladies") == "boys, men and gentlemen"
    assert catalogue["maracas"].counterfactual("Maracas and a maraca") == "Drums and a drum"


def test_replacement_fixes_the_article(catalogue):
    assert catalogue["tempo"].counterfactual("An uptempo song, an up-tempo beat") == \
        "A downtempo song, a down-tempo beat"
    assert catalogue["mood"].counterfactual("an upbeat song and AN uplifting one") == \
        "a melancholic song and A depressing one"
    assert catalogue["piano"].counterfactual("A grand piano and a piano") == "An acoustic guitar and a guitar"
    # an article not right before the term stays
    assert catalogue["guitar"].counterfactual("an electric guitar") == "an electric piano"


def test_longest_phrase_wins_and_no_chained_rewrite(catalogue):
    piano = catalogue["piano"]
    assert piano.counterfactual("an upright piano") == "an acoustic guitar"
    assert piano.counterfactual("an upright\n piano") == "an acoustic guitar"
    assert catalogue["drums"].counterfactual("a drum  kit") == "a pair of maracas"
    # one pass: the "guitar" written by a rule is not rewritten again by another concept's rules
    swap = small_concept(replacements={"bell": "gong", "gong": "bell"}, counter_keywords=["harps?"])
    assert swap.counterfactual("a bell and a gong") == "a gong and a bell"


def test_ignored_phrases_are_neither_matched_nor_replaced(catalogue):
    drums, guitar = catalogue["drums"], catalogue["guitar"]
    assert not drums.has_concept("a drum and bass track")
    assert drums.counterfactual("Drum and bass with live drums") == "Drum and bass with live maracas"
    assert not guitar.has_concept("a bass guitar riff")
    assert guitar.counterfactual("a bass guitar and a guitar") == "a bass guitar and a piano"
    assert not catalogue["piano"].has_counter("piano over a bass guitar")
    assert not catalogue["maracas"].has_counter("maracas in a drum and bass track")


def test_build_pairs_reports_every_reason():
    bells = small_concept(keywords=["bells?", "chimes?"])
    texts = [
        "a song with bells",                  # kept
        "a Bell and a gong",                  # both variants present
        "a quiet song",                       # no keyword
        "chimes ring",                        # keyword without a rule: changes nothing
        "a bell with chimes",                 # chimes survive the rewrite
        "a song with bells",                  # duplicate
        "Bells over a choir",                 # kept
        "doorbells and barbells",             # no keyword: inside other words
    ]
    pairs = build_pairs(bells, texts)
    assert pairs.concept == "bells"
    assert list(pairs) == [Pair("0", "a song with bells", "a song with organs"),
                           Pair("6", "Bells over a choir", "Organs over a choir")]
    assert pairs.report.total == 8 and pairs.report.kept == 2
    assert pairs.report.dropped == {NO_KEYWORD: 2, BOTH_PRESENT: 1, UNCHANGED: 1, TERM_LEFT: 1, DUPLICATE: 1}
    assert str(pairs.report).startswith("kept 2 of 8 captions (dropped no keyword: 2")
    assert pairs.positives == ["a song with bells", "Bells over a choir"]
    assert pairs.negatives == ["a song with organs", "Organs over a choir"]


def test_build_pairs_takes_ids_from_a_dict():
    pairs = build_pairs(small_concept(), {"x7": "a bell", "y2": "a gong"})
    assert list(pairs) == [Pair("x7", "a bell", "an organ")]


def test_build_pairs_limit_is_seeded_and_keeps_corpus_order():
    texts = [f"bell number {i}" for i in range(20)]
    first = build_pairs(small_concept(), texts, n=5, seed=3)
    again = build_pairs(small_concept(), texts, n=5, seed=3)
    other = build_pairs(small_concept(), texts, n=5, seed=4)
    assert first.pairs == again.pairs
    assert len(first) == 5 and first.report.kept == 5 and first.report.dropped == {OVER_LIMIT: 15}
    ids = [int(p.id) for p in first]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert [p.id for p in other] != [p.id for p in first]
    everything = build_pairs(small_concept(), texts, n=50)
    assert len(everything) == 20 and OVER_LIMIT not in everything.report.dropped


@pytest.mark.parametrize("args, error, message", [
    (("tempo", ["a"]), TadaError, "concept must be a Concept"),
    ((None, "a bell"), TadaError, "captions must be a list of strings"),
    ((None, ["a bell", 3]), TadaError, "caption '1' must be a string"),
    ((None, ["a bell"], 0), ValueError, "n must be a positive integer"),
    ((None, ["a bell"], 2.5), ValueError, "n must be a positive integer"),
])
def test_build_pairs_rejects_bad_input(args, error, message):
    concept = args[0] if args[0] is not None else small_concept()
    with pytest.raises(error, match=message):
        build_pairs(concept, *args[1:])


# --- the shipped catalogue and corpus --------------------------------------------------------------------

def test_shipped_catalogue_holds_the_paper_concepts(catalogue):
    assert list(catalogue) == PAPER_CONCEPTS
    assert catalogue.version == "1"
    assert {catalogue[n].kind for n in ("vocal_gender", "tempo", "mood")} == {"binary"}
    assert {catalogue[n].kind for n in PAPER_CONCEPTS[3:]} == {"swap"}
    assert catalogue["vocal_gender"].queries.positive[0] == "female vocals"
    assert catalogue["tempo"].queries.positive[0] == "fast tempo music"


def test_toy_vocabulary_is_in_the_catalogue(catalogue):
    for word in TOY_WORDS:
        sides = [(c.has_concept(word), c.has_counter(word)) for c in catalogue.values()]
        assert any(a or b for a, b in sides), word
    for concept, word, counter in [("tempo", "fast", "slow"), ("mood", "happy", "sad"),
                                   ("mood", "upbeat", "melancholic"), ("vocal_gender", "female vocal", "male vocal"),
                                   ("vocal_gender", "female voice", "male voice")]:
        assert catalogue[concept].counterfactual(word) == counter


def test_unknown_concept_error_lists_known_names(catalogue):
    with pytest.raises(TadaError, match="unknown concept 'tuba'; known concepts: vocal_gender, tempo, mood"):
        catalogue["tuba"]


def _words(text):
    return re.findall(r"[a-z']+", text.lower())


def _forms(phrases):
    """Words of the phrases with their regular plurals, derived here independently of the code under test."""
    words = set()
    for phrase in phrases:
        for w in re.split(r"[\s-]+", phrase.lower()):
            words |= {w, w + "s", w + "es", w[:-1] + "ies"}
    return words


@pytest.mark.parametrize("name", PAPER_CONCEPTS)
def test_every_concept_gets_15_pairs_that_differ_only_in_concept_terms(catalogue, captions, name):
    concept = catalogue[name]
    pairs = build_pairs(concept, captions)
    assert len(pairs) >= 15, pairs.report
    assert pairs.report.total == len(captions)
    assert pairs.report.kept + sum(pairs.report.dropped.values()) == pairs.report.total
    allowed_old = _forms(src for src, _ in concept.replacements) | {"a", "an"}
    allowed_new = _forms(dst for _, dst in concept.replacements) | {"a", "an"}
    for pair in pairs:
        assert pair.positive == captions[pair.id]
        assert concept.has_concept(pair.positive) and not concept.has_counter(pair.positive)
        assert not concept.has_concept(pair.negative)
        old, new = _words(pair.positive), _words(pair.negative)
        changes = [op for op in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
                   if op[0] != "equal"]
        assert changes, pair
        for _, i1, i2, j1, j2 in changes:
            assert set(old[i1:i2]) <= allowed_old, (pair, old[i1:i2])
            assert set(new[j1:j2]) <= allowed_new, (pair, new[j1:j2])
        # outside the words, nothing changes: the same punctuation in the same order
        assert re.sub(r"[\w\s'-]+", "", pair.positive) == re.sub(r"[\w\s'-]+", "", pair.negative)


def test_corpus_sizes_and_no_duplicates(captions):
    assert len(captions) >= 300
    assert len(set(c.lower() for c in captions.values())) == len(captions)
    bases, prompts = load_steering_bases(), load_eval_prompts()
    assert len(bases) >= 50 and len(set(bases)) == len(bases)
    assert len(prompts) >= 100 and len(set(prompts)) == len(prompts)
    assert all(line == line.strip() and line for line in bases + prompts)


# --- contrastive steering prompts ------------------------------------------------------------------------

def test_contrastive_prompts_hand_computed():
    concept = small_concept(templates=[Template("{base} with bells", "{base} with an organ"),
                                       Template("bells in {base}", "an organ in {base}")])
    assert concept.contrastive_prompts(["a song", "a gong solo", "music"]) == [
        ("a song with bells", "a song with an organ"),
        ("music with bells", "music with an organ"),
        ("bells in a song", "an organ in a song"),
        ("bells in music", "an organ in music"),
    ]
    assert concept.contrastive_prompts(["a song", "music"], n=3)[2] == ("bells in a song", "an organ in a song")


@pytest.mark.parametrize("name", PAPER_CONCEPTS)
def test_contrastive_prompts_per_concept(catalogue, name):
    concept = catalogue[name]
    bases = load_steering_bases()
    usable = [b for b in bases if not concept.has_concept(b) and not concept.has_counter(b)]
    prompts = concept.contrastive_prompts()
    assert len(prompts) == len(concept.templates) * len(usable) >= 100
    for pos, neg in prompts:
        assert pos != neg
        assert concept.has_concept(pos) and not concept.has_counter(pos), pos
        assert concept.has_counter(neg) and not concept.has_concept(neg), neg
    first = concept.contrastive_prompts(bases, n=len(usable))
    assert [pos for pos, _ in first] == [concept.templates[0].positive.format(base=b) for b in usable]


def test_contrastive_prompts_skip_bases_naming_the_concept(catalogue):
    prompts = catalogue["jazz"].contrastive_prompts(["a jazz piece", "reggae music", "a song"])
    assert prompts[0] == ("a song in a jazz style", "a song in a reggae style")
    assert len(prompts) == len(catalogue["jazz"].templates)


@pytest.mark.parametrize("bases, n, error, message", [
    ("a song", None, TadaError, "bases must be a sequence of strings"),
    (["a song", ""], None, ValueError, "every base must be a non-empty string"),
    (["a song"], 0, ValueError, "n must be a positive integer"),
    (["a song"], 4, ValueError, "n=4 but concept 'bells' has only 1 contrastive prompts"),
])
def test_contrastive_prompts_reject_bad_input(bases, n, error, message):
    with pytest.raises(error, match=message):
        small_concept().contrastive_prompts(bases, n=n)


# --- user catalogues ---------------------------------------------------------------------------------------

USER_CONCEPT = {
    "name": "brass", "kind": "swap", "keywords": ["brass"], "counter_keywords": ["strings"],
    "replacements": {"brass": "strings"},
    "queries": {"positive": ["brass section"], "negative": ["string section"]},
    "templates": [{"positive": "{base} with brass", "negative": "{base} with strings"}],
}


def write_catalogue(tmp_path, concepts, version=7, suffix=".json", name="mine"):
    path = tmp_path / f"{name}{suffix}"
    data = {"concepts": concepts} if version is None else {"version": version, "concepts": concepts}
    path.write_text(json.dumps(data))
    return path


def test_user_catalogue_merged_and_standalone(tmp_path):
    json_path = write_catalogue(tmp_path, [USER_CONCEPT])
    merged = load_catalogue(json_path)
    assert list(merged) == PAPER_CONCEPTS + ["brass"]
    assert merged.version == "1+7"
    assert merged.sources[1] == (str(json_path), "7")
    assert merged["brass"].counterfactual("Brass stabs") == "Strings stabs"
    yaml_path = tmp_path / "other.yaml"
    yaml_path.write_text("version: v2\nconcepts:\n  - " + json.dumps({**USER_CONCEPT, "name": "horns"}) + "\n")
    alone = load_catalogue([json_path, yaml_path], merge=False)
    assert isinstance(alone, Catalogue) and list(alone) == ["brass", "horns"] and alone.version == "7+v2"


def bad(field, value):
    return {**USER_CONCEPT, field: value}


@pytest.mark.parametrize("concept, message", [
    ({k: v for k, v in USER_CONCEPT.items() if k != "keywords"}, "concept 'brass', field 'keywords': missing"),
    (bad("keywords", []), "concept 'brass', field 'keywords': must not be empty"),
    (bad("keywords", ["brass("]), "concept 'brass', field 'keywords': bad regular expression 'brass\\('"),
    (bad("counter_keywords", ["[a-"]), "concept 'brass', field 'counter_keywords': bad regular expression"),
    (bad("counter_keywords", ["x?"]), "field 'counter_keywords': regular expression 'x\\?' matches the empty"),
    (bad("replacements", {}), "concept 'brass', field 'replacements': must map at least one phrase"),
    (bad("replacements", ["brass"]), "concept 'brass', field 'replacements': must be a mapping"),
    (bad("replacements", {"brass": ""}), "field 'replacements': each rule must map a non-empty phrase"),
    (bad("replacements", {"brass": "Brass"}), "field 'replacements': rule 'brass' -> 'Brass' changes nothing"),
    (bad("replacements", {"brass": "x", "Brass": "y"}), "field 'replacements': phrase 'Brass' has two rules"),
    (bad("replacements", {"'n'": "x"}), "field 'replacements': phrase \"'n'\" must begin and end with a letter"),
    (bad("ignore", ["bass "]), "field 'ignore': phrase 'bass ' must begin and end with a letter"),
    ({**USER_CONCEPT, "ignore": ["Brass"]}, "field 'ignore': phrase 'Brass' is also replaced by a rule"),
    (bad("kind", "pair"), "concept 'brass', field 'kind': unknown kind 'pair'; accepted: binary, swap"),
    (bad("name", "Brass Band"), "field 'name': must be a short id"),
    (bad("queries", {"positive": ["x"]}), "field 'queries': must be a mapping with keys positive, negative"),
    (bad("queries", {"positive": ["x"], "negative": []}), "field 'queries.negative': must not be empty"),
    (bad("templates", []), "concept 'brass', field 'templates': must hold at least one"),
    (bad("templates", [{"positive": "with brass", "negative": "{base} with strings"}]),
     "field 'templates.positive': template 'with brass' must contain the placeholder \\{base\\}"),
    (bad("templates", [{"positive": "{base} {x}", "negative": "{base}"}]), "found \\['base', 'x'\\]"),
    (bad("description", 3), "field 'description': must be a string"),
    (bad("colour", "red"), "concept 'brass', field 'colour': unknown field"),
])
def test_user_catalogue_validation_names_file_concept_and_field(tmp_path, concept, message):
    path = write_catalogue(tmp_path, [concept])
    with pytest.raises(CatalogueError, match=re.escape(str(path)) + ".*" + message):
        load_catalogue(path)


def test_user_catalogue_file_level_errors(tmp_path):
    with pytest.raises(CatalogueError, match="concept 'brass', field 'name': duplicate concept name"):
        load_catalogue(write_catalogue(tmp_path, [USER_CONCEPT, USER_CONCEPT]))
    with pytest.raises(CatalogueError, match="concept 'tempo', field 'name': duplicate concept name, already "
                                             "defined in tada/data/concepts.yaml"):
        load_catalogue(write_catalogue(tmp_path, [{**USER_CONCEPT, "name": "tempo"}]))
    assert list(load_catalogue(write_catalogue(tmp_path, [{**USER_CONCEPT, "name": "tempo"}]), merge=False)) \
        == ["tempo"]
    with pytest.raises(CatalogueError, match="top-level field 'version' is missing"):
        load_catalogue(write_catalogue(tmp_path, [USER_CONCEPT], version=None))
    with pytest.raises(CatalogueError, match="'concepts' must be a non-empty list"):
        load_catalogue(write_catalogue(tmp_path, []))
    with pytest.raises(CatalogueError, match="unknown top-level field 'extra'"):
        path = tmp_path / "extra.json"
        path.write_text(json.dumps({"version": 1, "concepts": [USER_CONCEPT], "extra": 1}))
        load_catalogue(path)
    with pytest.raises(CatalogueError, match="repeated key 'name'"):
        path = tmp_path / "twice.yaml"
        path.write_text("version: 1\nconcepts:\n  - name: a\n    name: b\n")
        load_catalogue(path)
    with pytest.raises(CatalogueError, match="repeated key 'brass'"):
        path = tmp_path / "twice.json"
        path.write_text('{"version": 1, "concepts": [{"replacements": {"brass": "a", "brass": "b"}}]}')
        load_catalogue(path)
    with pytest.raises(CatalogueError, match="not a valid YAML file"):
        path = tmp_path / "broken.yaml"
        path.write_text("version: [1\n")
        load_catalogue(path)
    with pytest.raises(CatalogueError, match="concept #0 must be a mapping"):
        load_catalogue(write_catalogue(tmp_path, ["brass"]))


def test_load_catalogue_rejects_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_catalogue(tmp_path / "absent.yaml")
    with pytest.raises(ValueError, match="must end in .yaml, .yml or .json"):
        load_catalogue(tmp_path / "concepts.txt")
    with pytest.raises(TadaError, match="path must be a file path"):
        load_catalogue(3)
    with pytest.raises(ValueError, match="merge=False needs at least one catalogue file"):
        load_catalogue(merge=False)


def test_concept_written_in_python_is_validated():
    concept = small_concept()
    assert concept.keywords == ("bells?",) and concept.replacements == (("bell", "organ"),)
    with pytest.raises(CatalogueError, match="<memory>: concept 'bells', field 'keywords': must not be empty"):
        small_concept(keywords=[])


# --- files ---------------------------------------------------------------------------------------------------

def test_pair_set_csv_round_trip(tmp_path):
    pairs = PairSet("bells", (Pair("a,1", 'a "quoted", bell', 'a "quoted", organ'),
                              Pair("2", "NA", "line\nbreak")))
    path = pairs.to_csv(tmp_path / "sub" / "pairs.csv")
    back = PairSet.read_csv(path)
    assert back == PairSet("bells", pairs.pairs, None)


def test_pair_set_read_errors(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("concept,id,positive,negative\na,1,x,y\nb,2,x,y\n")
    with pytest.raises(ValueError, match="a pair file holds one concept, found \\['a', 'b'\\]"):
        PairSet.read_csv(path)
    path.write_text("concept,id,positive\na,1,x\n")
    with pytest.raises(ValueError, match="missing column\\(s\\) negative; found columns concept, id, positive"):
        PairSet.read_csv(path)


def test_load_captions_without_ids_uses_row_numbers(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('caption,source\n"a bell, loud",x\n  a gong  ,y\n')
    assert load_captions(path) == {"0": "a bell, loud", "1": "a gong"}


@pytest.mark.parametrize("content, error, message", [
    (None, FileNotFoundError, "does not exist"),
    ("", ValueError, "empty file; expected a header with columns caption"),
    ("id,text\n1,a bell\n", ValueError, "missing column\\(s\\) caption; found columns id, text"),
    ("id,caption\n", ValueError, "has a header but no rows"),
    ("id,caption\n1,a bell,extra\n", ValueError, "line 2 does not have one value per column"),
    ("id,caption\n1\n", ValueError, "line 2 does not have one value per column"),
    ('id,caption\n1,"a bell\n', ValueError, "not a readable CSV file"),
    ('id,caption\n1,"a bell"x\n', ValueError, "not a readable CSV file"),
    (b"\xff\xfe\x00caption", ValueError, "not UTF-8 text"),
    ("id,caption\n1,a bell\n1,a gong\n", ValueError, "id '1' appears twice"),
    ("id,caption\n1,  \n", ValueError, "row 1 has an empty caption"),
])
def test_load_captions_rejects_bad_files(tmp_path, content, error, message):
    path = tmp_path / "captions.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(error, match=message):
        load_captions(path)


def test_prompt_files(tmp_path):
    path = tmp_path / "bases.txt"
    path.write_text("a song\n\n  music  \n")
    assert load_steering_bases(path) == ["a song", "music"]
    path.write_text("\n  \n")
    with pytest.raises(ValueError, match="holds no prompts"):
        load_eval_prompts(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_eval_prompts(tmp_path / "absent.txt")


def test_drop_reasons_are_the_documented_ones():
    assert DROP_REASONS == ("no keyword", "both variants present", "replacement changed nothing",
                            "concept term left after replacement", "duplicate caption", "over the limit n")

"""The authors' benchmark table (protocol v2): their published piano and mood tables reproduced from their
published per-alpha results, and hand-computed cases."""

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tada.evaluation import auc_table as T

DATA = Path(__file__).parent / "data" / "steer_audio"


def parse_published(path: Path) -> dict:
    """{concept: {"cutoff": (pos, neg), "rows": {method: [5 cell strings]}}} from a tables_lpaps.md."""
    out, current = {}, None
    for line in path.read_text().splitlines():
        heading = re.match(r"^## (\S+)\s+\(cutoff pos=([-\d.]+), neg=([-\d.]+)\)$", line)
        if heading:
            current = out.setdefault(heading.group(1), {"cutoff": (heading.group(2), heading.group(3)), "rows": {}})
        elif line.startswith("## "):
            current = None
        elif current is not None and line.startswith("| ") and not line.startswith("| Method"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            current["rows"][cells[0]] = cells[1:]
    return out


@pytest.fixture(scope="module")
def published():
    return parse_published(DATA / "tables_lpaps.md")


@pytest.fixture(scope="module")
def tables():
    return T.benchmark_tables(T.read_results(DATA / "steering_metrics.csv"), T.read_quality(DATA / "quality_metrics.csv"))


def test_the_published_tables_are_reproduced_cell_by_cell(published, tables):
    assert list(published) == ["piano", "mood"] == list(tables.concepts)
    compared = 0
    for concept, pub in published.items():
        cut = tables.cutoffs[concept]
        assert (T._fmt(cut["pos"]), T._fmt(cut["neg"])) == pub["cutoff"]
        ours = tables.concepts[concept]
        assert list(ours.index) == list(pub["rows"])
        for method, cells in pub["rows"].items():
            assert [T._fmt(ours.loc[method, c]) for c in T.COLUMNS] == cells, (concept, method)
            compared += len(cells)
    assert compared == 150


def test_the_markdown_sections_are_the_published_file_plus_the_average(tables):
    ours = tables.to_markdown()
    published = (DATA / "tables_lpaps.md").read_text()
    assert ours.startswith(published.rstrip("\n") + "\n")
    average = ours[len(published.rstrip("\n")):]
    assert "## Averaged over the 2 concepts" in average
    mean = (tables.concepts["piano"].loc["CAA (loc.)", "auc_muqt"] + tables.concepts["mood"].loc["CAA (loc.)", "auc_muqt"]) / 2
    assert tables.average.loc["CAA (loc.)", "auc_muqt"] == pytest.approx(mean)


def test_a_published_dash_is_a_side_that_never_gains(tables):
    # mood, Token Embeddings (loc.): one side's MuQ gain never rises above 0 within the cutoff
    assert math.isnan(tables.concepts["mood"].loc["Token Embeddings (loc.)", "smooth_muqt"])
    # the average skips it: it is piano's value alone
    assert tables.average.loc["Token Embeddings (loc.)", "smooth_muqt"] == pytest.approx(
        tables.concepts["piano"].loc["Token Embeddings (loc.)", "smooth_muqt"])


# ------------------------------------------------------------------ hand-computed


def test_auc_of_a_three_point_curve():
    alpha, dist, align = [0, 1, 2], [0.0, 1.0, 2.0], [0.1, 0.3, 0.2]
    # gains 0, 0.2, 0.1: (1 - 0)(0 + 0.2)/2 + (2 - 1)(0.2 + 0.1)/2
    assert T.side_auc(alpha, dist, align, cutoff=5.0, sign=1.0) == pytest.approx(0.25)
    # cutoff 1.5 drops alpha 2; closing point at 1.5 with alignment 0.3 + 0.5 (0.2 - 0.3) = 0.25, gain 0.15
    assert T.side_auc(alpha, dist, align, cutoff=1.5, sign=1.0) == pytest.approx(0.1 + 0.5 * (0.2 + 0.15) / 2)
    # negative side: the gain is A(0) - A(alpha)
    assert T.side_auc([0, -1, -2], dist, [0.1, 0.0, -0.1], cutoff=5.0, sign=-1.0) == pytest.approx(0.05 + 0.15)
    # points may come in any order; they are walked by |alpha|
    assert T.side_auc([2, 0, 1], [2.0, 0.0, 1.0], [0.2, 0.1, 0.3], cutoff=5.0, sign=1.0) == pytest.approx(0.25)


def test_a_distance_that_goes_back_subtracts_area():
    # |alpha| order 0, 1, 2 visits distances 0, 2, 1 with gains 0, 1, 1: 2 (0 + 1)/2 + (1 - 2)(1 + 1)/2 = 0
    assert T.side_auc([0, 1, 2], [0.0, 2.0, 1.0], [0.0, 1.0, 1.0], cutoff=5.0, sign=1.0) == pytest.approx(0.0)


def test_smoothness_and_quality_by_hand():
    # gains 0, 0.2, 0.1 -> /0.2 -> 0, 1, 0.5 -> differences 1, -0.5 -> population std 0.75
    assert T.side_smoothness([0, 1, 2], [0.0, 1.0, 2.0], [0.1, 0.3, 0.2], cutoff=5.0, sign=1.0) == pytest.approx(0.75)
    # grid 0, 0.5, 1 on scores 6, 7, 8 at distances 0, 1, 2 -> 6, 6.5, 7
    assert T.side_quality([0.0, 1.0, 2.0], [6.0, 7.0, 8.0], cutoff=1.0, n_points=3) == pytest.approx(6.5)
    # grid points beyond the observed distances are left out: 0 and 1.5 of 0, 1.5, 3
    assert T.side_quality([0.0, 2.0], [6.0, 8.0], cutoff=3.0, n_points=3) == pytest.approx((6.0 + 7.5) / 2)


def _results(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["cell", "concept", "axis", "alpha", "lpaps", "muqt", "clap"])


def _curve(cell, alphas, dist, muqt, clap=None, concept="toy"):
    clap = muqt if clap is None else clap
    return [(cell, concept, "lpaps", a, d, m, c) for a, d, m, c in zip(alphas, dist, muqt, clap)]


ALPHAS = [-2, -1, 0, 1, 2]


def test_a_curve_that_never_reaches_the_cutoff_is_integrated_whole():
    rows = (_curve("pci_all", ALPHAS, [4, 2, 0, 2, 4], [0.0, 0.1, 0.2, 0.3, 0.4])
            + _curve("pci_loc", ALPHAS, [3, 1.5, 0, 1.5, 3], [0.0, 0.1, 0.2, 0.3, 0.4])
            + _curve("caa_loc", ALPHAS, [1.0, 0.5, 0, 0.5, 1.0], [0.0, 0.1, 0.2, 0.3, 0.5]))
    table, cut, _, sides = T.concept_table(_results(rows), "toy")
    assert cut == {"pos": 3.0, "neg": 3.0}  # the smaller PCI maximum on each side
    # caa_loc: no point is dropped and no closing point is added, the area stops at distance 1
    pos = np.trapezoid([0.0, 0.1, 0.3], [0.0, 0.5, 1.0])
    neg = np.trapezoid([0.0, 0.1, 0.2], [0.0, 0.5, 1.0])
    assert table.loc["CAA (loc.)", "auc_muqt"] == pytest.approx((pos + neg) / 2)
    assert sides.loc["CAA (loc.)", "auc_muqt_pos"] == pytest.approx(pos)
    assert sides.loc["CAA (loc.)", "auc_muqt_neg"] == pytest.approx(neg)
    # pci_loc reaches the cutoff exactly: kept, again no closing point
    assert table.loc["PCI (loc.)", "auc_muqt"] == pytest.approx(np.trapezoid([0, 0.1, 0.2], [0, 1.5, 3.0]))
    # pci_all passes it: closing point at distance 3, alignment halfway between 0.3 (at 2) and 0.4 (at 4)
    assert table.loc["PCI", "auc_muqt"] == pytest.approx(np.trapezoid([0, 0.1, 0.15], [0, 2, 3]))


def test_undefined_values_print_as_a_dash(tmp_path):
    rows = (_curve("pci_all", ALPHAS, [2, 1, 0, 1, 2], [0.2, 0.2, 0.2, 0.3, 0.4])   # negative side flat: no gain
            + _curve("pci_loc", ALPHAS, [2, 1, 0, 1, 2], [0.1, 0.15, 0.2, 0.3, 0.4])
            + _curve("sae", ALPHAS, [5, 4, 0, 4, 5], [0.3, 0.25, 0.2, 0.3, 0.4]))  # only alpha = 0 within the cutoff
    tables = T.benchmark_tables(_results(rows))
    toy = tables.concepts["toy"]
    assert math.isnan(toy.loc["PCI", "smooth_muqt"]) and math.isfinite(toy.loc["PCI (loc.)", "smooth_muqt"])
    assert math.isfinite(toy.loc["PCI", "auc_muqt"])
    assert math.isnan(toy.loc["SAE (loc.)", "smooth_muqt"])
    # sae: alpha = 0 and the closing point at the cutoff: an AUC exists
    assert math.isfinite(toy.loc["SAE (loc.)", "auc_muqt"])
    assert toy["quality"].isna().all()  # no quality file
    md = tables.to_markdown()
    assert re.search(r"\| PCI \| 0.100 \| 0.100 \| - \| - \| - \|", md)
    assert re.search(r"\| SAE \(loc.\) \| 0.0\d\d \| 0.0\d\d \| - \| - \| - \|", md)
    assert T._fmt(None) == T._fmt(float("nan")) == T._fmt(float("inf")) == "-"
    assert T._fmt(-0.0004) == "-0.000"


def test_an_auc_needs_two_points():
    assert math.isnan(T.side_auc([0], [0.0], [0.3], cutoff=1.0, sign=1.0))
    assert math.isnan(T.side_auc([0, 1], [0.5, 2.0], [0.3, 0.4], cutoff=0.1, sign=1.0))  # nothing kept


def test_quality_scores_accept_short_names_and_average_the_sides(tmp_path):
    rows = (_curve("pci_all", ALPHAS, [2, 1, 0, 1, 2], [0.3, 0.25, 0.2, 0.3, 0.4])
            + _curve("pci_loc", ALPHAS, [2, 1, 0, 1, 2], [0.3, 0.25, 0.2, 0.3, 0.4]))
    q = pd.DataFrame({"cell": "pci_all", "concept": "toy", "alpha": ALPHAS, "CE": [5.0, 6.0, 7.0, 8.0, 9.0],
                      "CU": 7.0, "PC": 7.0, "PQ": 7.0})
    path = tmp_path / "q.csv"
    q.to_csv(path, index=False)
    tables = T.benchmark_tables(_results(rows), T.read_quality(path), concepts=["toy"])
    scores = tables.quality_scores["toy"]
    # CE: positive side 7 -> 9 over distance 0 -> 2, mean 8 on the grid; negative side 7 -> 5, mean 6; sides 7
    assert scores.loc["PCI", "CE"] == pytest.approx(7.0)
    assert tables.concepts["toy"].loc["PCI", "quality"] == pytest.approx(7.0)
    assert math.isnan(tables.concepts["toy"].loc["PCI (loc.)", "quality"])  # no scores for that cell


def test_cutoff_cells_can_be_chosen_and_are_required():
    rows = _curve("caa_loc", ALPHAS, [2, 1, 0, 1, 2], [0.3, 0.25, 0.2, 0.3, 0.4]) + _curve(
        "layers {6,7}", ALPHAS, [1, 0.5, 0, 0.5, 1], [0.3, 0.25, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="cutoff cells"):
        T.benchmark_tables(_results(rows))
    tables = T.benchmark_tables(_results(rows), cutoff_cells=["caa_loc"])
    assert tables.cutoffs["toy"] == {"pos": 2.0, "neg": 2.0}
    assert list(tables.concepts["toy"].index) == ["CAA (loc.)", "layers {6,7}"]  # unknown cells keep their name
    assert r"layers \{6,7\}" in tables.to_latex()


def test_write_tables(tmp_path):
    paths = T.write_tables(DATA / "steering_metrics.csv", tmp_path / "out", quality=DATA / "quality_metrics.csv")
    assert paths["markdown"].read_text().startswith("# Benchmark tables — preservation: LPAPS")
    tex = paths["latex"].read_text()
    assert tex.count(r"\begin{tabular}") == 3 and "PCI (loc.) & $0.044$" in tex and "--" in tex
    frame = pd.read_csv(paths["csv"])
    assert set(frame.concept) == {"piano", "mood", "average"} and len(frame) == 45
    piano = frame[frame.concept == "piano"].set_index("method")
    assert piano.loc["CAA", "auc_clap"] == pytest.approx((piano.loc["CAA", "auc_clap_pos"] + piano.loc["CAA", "auc_clap_neg"]) / 2)
    assert piano.loc["CAA", "quality"] == pytest.approx(piano.loc["CAA", ["CE", "CU", "PC", "PQ"]].mean())


def test_other_axes_and_bad_files(tmp_path):
    harmony = T.benchmark_tables(T.read_results(DATA / "steering_metrics.csv"), axis="harmony")
    assert "preservation: harmony" in harmony.to_markdown()
    with pytest.raises(ValueError, match="axis 'loudness'"):
        T.benchmark_tables(T.read_results(DATA / "steering_metrics.csv"), axis="loudness")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"cell": ["x"], "alpha": [0.0]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="missing columns"):
        T.read_results(bad)

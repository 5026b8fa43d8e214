"""The steering benchmark table of the paper's authors ("protocol v2"): per concept, a preservation budget
set by prompt injection, and for every method the area under its alignment-gain curve within that budget,
the smoothness of the gain and the audio quality along the way.

Inputs are per-alpha means over the evaluation prompts, in the layout of the authors' published files:

    results  cell, concept, axis, alpha, lpaps, muqt, clap
    quality  cell, concept, alpha, content_enjoyment, content_usefulness, production_complexity,
             production_quality      (CE, CU, PC, PQ are accepted as column names too)

`lpaps` is the preservation distance against the alpha = 0 audio on the given `axis` (the main table uses
axis "lpaps"); `muqt` and `clap` are text alignments. Any other alignment column may stand in for them or
beside them (e.g. `toy`, the toy world's scorer): every column after `lpaps` is an alignment, and the
tables get an AUC and a smoothness column for each. A *cell* is one steering method (e.g. `caa_loc`).

Per concept and side (positive: alpha >= 0, negative: alpha <= 0; alpha = 0 is on both; a side's points
are taken in order of increasing |alpha|):

* **cutoff**: the smaller of the largest distances reached on that side by the cutoff cells, by default
  the two prompt-injection arms `pci_all` and `pci_loc`;
* **gain**: g(alpha) = s (A(alpha) - A(0)), s = +1 on the positive side and -1 on the negative one;
* **AUC**: points with distance <= cutoff (tolerance 1e-9) are kept; if any point is dropped, one closing
  point is added at distance = cutoff, its alignment linearly interpolated in distance between the kept
  point of largest distance and the dropped point of smallest distance, and placed in the |alpha| order at
  that dropped point. The trapezoid rule is applied along the |alpha| order (a stretch where the distance
  falls back subtracts area). The table shows the mean of the two sides;
* **smoothness**: on the kept points only, g divided by its positive peak max(max g, 0) (undefined if the
  peak is <= 1e-9), then the population standard deviation of consecutive differences. Mean of the sides,
  undefined if either side is;
* **quality**: each Audiobox score, paired with the distance at the same alpha and sorted by distance, is
  interpolated linearly at 15 evenly spaced distances from 0 to the cutoff (those inside the observed
  range) and averaged; per score the two sides are averaged, and Quality is the mean of the four scores.

The averaged table is the mean over concepts of each value, skipping undefined ones. Numbers print with 3
decimals, undefined ones as "-".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from tada.errors import TadaError, check_file

# Table rows: label and cell name, in the published order.
METHODS: tuple[tuple[str, str], ...] = (
    ("PCI", "pci_all"),
    ("PCI (loc.)", "pci_loc"),
    ("Text Embeddings", "textemb_all"),
    ("Text Embeddings (loc.)", "textemb_loc"),
    ("Token Embeddings", "tokemb_all"),
    ("Token Embeddings (loc.)", "tokemb_loc"),
    ("FreeSliders", "freesliders_all"),
    ("FreeSliders (loc.)", "freesliders_loc"),
    ("Concept Sliders", "cs_all"),
    ("Concept Sliders (loc.)", "cs_loc"),
    ("AUSteer", "austeer_all"),
    ("AUSteer (loc.)", "austeer_loc"),
    ("CAA", "caa_all"),
    ("CAA (loc.)", "caa_loc"),
    ("SAE (loc.)", "sae"),
)
CUTOFF_CELLS = ("pci_all", "pci_loc")
ALIGNMENTS = ("muqt", "clap")  # the published alignment columns
ALIGNMENT_TITLES = {"muqt": "MuQ", "clap": "CLAP"}
QUALITY_SCORES = {
    "CE": "content_enjoyment",
    "CU": "content_usefulness",
    "PC": "production_complexity",
    "PQ": "production_quality",
}
KEY_COLUMNS = ("cell", "concept", "axis", "alpha", "lpaps")
RESULT_COLUMNS = (*KEY_COLUMNS, *ALIGNMENTS)  # the published layout
N_QUALITY_POINTS = 15
TOLERANCE = 1e-9
SIDES = {"pos": 1.0, "neg": -1.0}


def table_columns(alignments: Sequence[str] = ALIGNMENTS) -> dict[str, str]:
    """Columns of a concept's table and their headings: AUC per alignment, smoothness per alignment, Quality."""
    titles = [ALIGNMENT_TITLES.get(a, a) for a in alignments]
    return {**{f"auc_{a}": f"AUC {t}" for a, t in zip(alignments, titles)},
            **{f"smooth_{a}": f"Smooth {t}" for a, t in zip(alignments, titles)}, "quality": "Quality"}


COLUMNS = table_columns()  # the published tables' columns


def alignment_columns(results: pd.DataFrame) -> list[str]:
    """The alignment columns of a results table: every column besides cell, concept, axis, alpha and lpaps that
    holds a value (a scorer that was not run leaves its column empty)."""
    found = [c for c in results.columns if c not in KEY_COLUMNS and results[c].notna().any()]
    if not found:
        raise TadaError(f"the results have no alignment column besides {', '.join(KEY_COLUMNS)} "
                        f"(the published ones are {', '.join(ALIGNMENTS)})")
    return found


# ------------------------------------------------------------------ reading


def read_results(path: str | Path) -> pd.DataFrame:
    """Per-alpha results in the published layout (or with other alignment columns after `lpaps`); `axis` may be
    missing (then every row is axis "lpaps")."""
    df = pd.read_csv(check_file(path, "results file"))
    if "axis" not in df.columns:
        df["axis"] = "lpaps"
    missing = [c for c in KEY_COLUMNS if c not in df.columns]
    if missing or len(df.columns) == len(KEY_COLUMNS):
        raise TadaError(f"{path}: missing columns {missing or 'of alignment'}; expected {', '.join(RESULT_COLUMNS)}")
    df["cell"] = df["cell"].astype(str)
    df["concept"] = df["concept"].astype(str)
    return df


def read_quality(path: str | Path) -> pd.DataFrame:
    """Per-alpha Audiobox Aesthetics means: cell, concept, alpha and the four scores (long or short names)."""
    df = pd.read_csv(check_file(path, "quality file")).rename(columns=QUALITY_SCORES)
    missing = [c for c in ("cell", "concept", "alpha", *QUALITY_SCORES.values()) if c not in df.columns]
    if missing:
        raise TadaError(f"{path}: missing columns {missing}")
    df["cell"] = df["cell"].astype(str)
    df["concept"] = df["concept"].astype(str)
    return df


# ------------------------------------------------------------------ one side of one curve


def side_points(df: pd.DataFrame, side: str) -> pd.DataFrame:
    """Rows of one side (alpha >= 0 for "pos", <= 0 for "neg"), ordered by increasing |alpha|."""
    if side not in SIDES:
        raise TadaError(f"side must be 'pos' or 'neg'; got {side!r}")
    rows = df[df["alpha"] >= 0] if side == "pos" else df[df["alpha"] <= 0]
    order = np.argsort(rows["alpha"].abs().to_numpy(), kind="stable")
    return rows.iloc[order].reset_index(drop=True)


def _gain(values: np.ndarray, abs_alpha: np.ndarray, sign: float) -> np.ndarray:
    """s (A - A(0)), A(0) taken at the point of smallest |alpha|."""
    return sign * (values - values[int(np.argmin(abs_alpha))])


def side_auc(alpha, distance, alignment, cutoff: float, sign: float) -> float:
    """Area under the gain of one side over the distance, up to `cutoff` (see module docstring).

    alpha, distance, alignment: one side's points in any order. NaN when fewer than two points remain."""
    alpha, distance, alignment = (np.asarray(x, dtype=np.float64) for x in (alpha, distance, alignment))
    kept = distance <= cutoff + TOLERANCE
    if kept.sum() == 0 or not math.isfinite(cutoff):
        return float("nan")
    abs_alpha, dist, vals = np.abs(alpha[kept]), distance[kept], alignment[kept]
    if (~kept).any():
        last = int(np.argmax(dist))  # kept point of largest distance
        dropped = np.flatnonzero(~kept)
        first = dropped[int(np.argmin(distance[dropped]))]  # dropped point of smallest distance
        frac = (cutoff - dist[last]) / (distance[first] - dist[last])
        closing = vals[last] + frac * (alignment[first] - vals[last])
        abs_alpha = np.append(abs_alpha, abs(alpha[first]))
        dist = np.append(dist, cutoff)
        vals = np.append(vals, closing)
    if len(dist) < 2:
        return float("nan")
    order = np.argsort(abs_alpha, kind="stable")
    gain = _gain(vals, abs_alpha, sign)[order]
    dist = dist[order]
    return float(np.sum(np.diff(dist) * (gain[1:] + gain[:-1]) / 2))


def side_smoothness(alpha, distance, alignment, cutoff: float, sign: float) -> float:
    """Population std of consecutive differences of the peak-normalised gain on the kept points."""
    alpha, distance, alignment = (np.asarray(x, dtype=np.float64) for x in (alpha, distance, alignment))
    kept = distance <= cutoff + TOLERANCE
    if kept.sum() < 2:
        return float("nan")
    abs_alpha = np.abs(alpha[kept])
    order = np.argsort(abs_alpha, kind="stable")
    gain = _gain(alignment[kept], abs_alpha, sign)[order]
    peak = max(float(np.max(gain)), 0.0)
    if not peak > TOLERANCE:  # also catches NaN
        return float("nan")
    return float(np.std(np.diff(gain / peak)))


def side_quality(distance, scores, cutoff: float, n_points: int = N_QUALITY_POINTS) -> float:
    """Mean of one score interpolated at `n_points` distances from 0 to the cutoff inside the observed range."""
    distance, scores = np.asarray(distance, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    if len(distance) == 0 or not math.isfinite(cutoff):
        return float("nan")
    order = np.argsort(distance, kind="stable")
    dist, vals = distance[order], scores[order]
    grid = np.linspace(0.0, cutoff, n_points)
    grid = grid[(grid >= dist[0] - TOLERANCE) & (grid <= dist[-1] + TOLERANCE)]
    if len(grid) == 0:
        return float("nan")
    return float(np.mean(np.interp(grid, dist, vals)))


def _mean_of_sides(values: Sequence[float]) -> float:
    return float(np.mean(values)) if all(math.isfinite(v) for v in values) else float("nan")


# ------------------------------------------------------------------ tables


@dataclass
class BenchmarkTables:
    """Per-concept tables (rows: method labels, columns: the keys of `columns`), their cutoffs, and the average."""

    axis: str
    alignments: list[str] = field(default_factory=lambda: list(ALIGNMENTS))
    concepts: dict[str, pd.DataFrame] = field(default_factory=dict)
    cutoffs: dict[str, dict[str, float]] = field(default_factory=dict)
    quality_scores: dict[str, pd.DataFrame] = field(default_factory=dict)  # CE, CU, PC, PQ per method
    sides: dict[str, pd.DataFrame] = field(default_factory=dict)  # AUC and smoothness per side, per method

    @property
    def columns(self) -> dict[str, str]:
        return table_columns(self.alignments)

    @property
    def average(self) -> pd.DataFrame:
        """Mean over concepts of each value, skipping undefined ones; rows in table order."""
        frames = list(self.concepts.values())
        if not frames:
            return pd.DataFrame(columns=list(self.columns))
        order = _row_order([label for f in frames for label in f.index])
        return pd.concat(frames).groupby(level=0, sort=False).mean().reindex(order)

    def to_markdown(self) -> str:
        """The tables as Markdown: one section per concept, then the average."""
        lines = [f"# Benchmark tables — preservation: {_axis_title(self.axis)}", ""]
        for concept, table in self.concepts.items():
            cut = self.cutoffs[concept]
            lines += [f"## {concept}  (cutoff pos={_fmt(cut['pos'])}, neg={_fmt(cut['neg'])})", "",
                      *_markdown_rows(table, self.columns), ""]
        n = len(self.concepts)
        lines += [f"## Averaged over the {n} concept{'s' if n != 1 else ''}", "",
                  *_markdown_rows(self.average, self.columns), ""]
        return "\n".join(lines)

    def to_latex(self) -> str:
        """The same tables as LaTeX tabulars (booktabs rules), one per concept and one for the average."""
        parts = [f"% Benchmark tables, preservation: {_latex_escape(_axis_title(self.axis))}"]
        for concept, table in self.concepts.items():
            cut = self.cutoffs[concept]
            caption = f"{concept} (cutoff pos={_fmt(cut['pos'])}, neg={_fmt(cut['neg'])})"
            parts.append(_latex_table(table, caption, self.columns))
        parts.append(_latex_table(self.average, f"Averaged over the {len(self.concepts)} concepts", self.columns))
        return "\n\n".join(parts) + "\n"

    def to_frame(self) -> pd.DataFrame:
        """Long table with full precision: concept ("average" last), method, cutoffs, every column, and per
        concept the values of each side and the four quality scores."""
        rows = []
        for concept, table in [*self.concepts.items(), ("average", self.average)]:
            cut = self.cutoffs.get(concept, {"pos": np.nan, "neg": np.nan})
            sides, scores = self.sides.get(concept), self.quality_scores.get(concept)
            for label, r in table.iterrows():
                extra = {}
                if sides is not None:
                    extra.update(sides.loc[label].to_dict())
                if scores is not None:
                    extra.update(scores.loc[label].to_dict())
                rows.append({"concept": concept, "method": label, "cutoff_pos": cut["pos"], "cutoff_neg": cut["neg"],
                             **{c: r[c] for c in self.columns}, **extra})
        return pd.DataFrame(rows)


def cutoffs(results: pd.DataFrame, concept: str, cells: Sequence[str] = CUTOFF_CELLS) -> dict[str, float]:
    """{"pos": ..., "neg": ...}: per side, the smallest over `cells` of the largest distance on that side."""
    rows = results[(results["concept"] == concept) & results["cell"].isin(list(cells))]
    if rows.empty:
        raise TadaError(f"concept {concept!r} has no rows of the cutoff cells {list(cells)}; the cutoff needs at "
                         "least one of them (choose others with cutoff_cells / --cutoff-cells)")
    out = {}
    for side in SIDES:
        maxima = [side_points(g, side)["lpaps"].max() for _, g in rows.groupby("cell")]
        maxima = [m for m in maxima if math.isfinite(m)]
        out[side] = float(min(maxima)) if maxima else float("nan")
    return out


class ConceptTable(NamedTuple):
    """One concept's results: the table, its cutoffs, the four quality scores and the per-side values."""

    table: pd.DataFrame  # rows: method labels; columns: COLUMNS
    cutoffs: dict[str, float]  # {"pos": ..., "neg": ...}
    quality_scores: pd.DataFrame  # columns CE, CU, PC, PQ (both sides averaged)
    sides: pd.DataFrame  # columns auc_<alignment>_<side>, smooth_<alignment>_<side>


def concept_table(results: pd.DataFrame, concept: str, quality: pd.DataFrame | None = None,
                  cutoff_cells: Sequence[str] = CUTOFF_CELLS, n_quality_points: int = N_QUALITY_POINTS,
                  alignments: Sequence[str] | None = None) -> ConceptTable:
    """One concept's table, cutoffs, per-score quality and per-side values (results filtered to one axis;
    alignments: default every alignment column of `results`)."""
    alignments = list(alignments) if alignments is not None else alignment_columns(results)
    cut = cutoffs(results, concept, cutoff_cells)
    rows, scores, sides = {}, {}, {}
    mine = results[results["concept"] == concept]
    for cell in _cell_order(mine["cell"].unique()):
        curve = mine[mine["cell"] == cell]
        if curve["alpha"].duplicated().any():
            raise TadaError(f"concept {concept!r}, cell {cell!r}: alphas repeat; give one row per alpha and axis")
        row, per_side = {}, {}
        for name in alignments:
            aucs, smooth = [], []
            for side, sign in SIDES.items():
                pts = side_points(curve, side)
                aucs.append(side_auc(pts["alpha"], pts["lpaps"], pts[name], cut[side], sign))
                smooth.append(side_smoothness(pts["alpha"], pts["lpaps"], pts[name], cut[side], sign))
                per_side[f"auc_{name}_{side}"], per_side[f"smooth_{name}_{side}"] = aucs[-1], smooth[-1]
            row[f"auc_{name}"] = _mean_of_sides(aucs)
            row[f"smooth_{name}"] = _mean_of_sides(smooth)
        per_score = _quality(curve, quality, concept, cell, cut, n_quality_points)
        finite = [v for v in per_score.values() if math.isfinite(v)]
        row["quality"] = float(np.mean(finite)) if finite else float("nan")
        label = _label(cell)
        rows[label], scores[label], sides[label] = row, per_score, per_side
    return ConceptTable(pd.DataFrame.from_dict(rows, orient="index", columns=list(table_columns(alignments))), cut,
                        pd.DataFrame.from_dict(scores, orient="index", columns=list(QUALITY_SCORES)),
                        pd.DataFrame.from_dict(sides, orient="index"))


def benchmark_tables(results: pd.DataFrame, quality: pd.DataFrame | None = None, axis: str = "lpaps",
                     concepts: Sequence[str] | None = None, cutoff_cells: Sequence[str] = CUTOFF_CELLS,
                     n_quality_points: int = N_QUALITY_POINTS) -> BenchmarkTables:
    """Every concept's table for one preservation axis (default "lpaps", the main table).

    Quality pairs the Audiobox scores with that axis's distances; concepts default to those of the results
    in order of first appearance."""
    rows = results[results["axis"] == axis] if "axis" in results.columns else results
    if rows.empty:
        known = sorted(results["axis"].unique()) if "axis" in results.columns else []
        raise TadaError(f"no results for axis {axis!r}; the file has axes {known}")
    names = list(concepts) if concepts is not None else list(dict.fromkeys(rows["concept"]))
    alignments = alignment_columns(rows)
    tables = BenchmarkTables(axis=axis, alignments=alignments)
    for concept in names:
        if not (rows["concept"] == concept).any():
            raise TadaError(f"no results for concept {concept!r} on axis {axis!r}")
        result = concept_table(rows, concept, quality, cutoff_cells, n_quality_points, alignments)
        tables.concepts[concept], tables.cutoffs[concept] = result.table, result.cutoffs
        tables.quality_scores[concept], tables.sides[concept] = result.quality_scores, result.sides
    return tables


def write_tables(results: str | Path | pd.DataFrame, out: str | Path, quality: str | Path | pd.DataFrame | None = None,
                 axis: str = "lpaps", cutoff_cells: Sequence[str] = CUTOFF_CELLS) -> dict[str, Path]:
    """Compute the tables and write `tables.md`, `tables.tex` and `tables.csv` (full precision) into `out`."""
    results = read_results(results) if not isinstance(results, pd.DataFrame) else results
    if quality is not None and not isinstance(quality, pd.DataFrame):
        quality = read_quality(quality)
    tables = benchmark_tables(results, quality, axis=axis, cutoff_cells=cutoff_cells)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "tables.md", "latex": out / "tables.tex", "csv": out / "tables.csv"}
    paths["markdown"].write_text(tables.to_markdown())
    paths["latex"].write_text(tables.to_latex())
    tables.to_frame().to_csv(paths["csv"], index=False)
    return paths


# ------------------------------------------------------------------ helpers


def _quality(curve: pd.DataFrame, quality: pd.DataFrame | None, concept: str, cell: str, cut: dict[str, float],
             n_points: int) -> dict[str, float]:
    nan = {short: float("nan") for short in QUALITY_SCORES}
    if quality is None:
        return nan
    q = quality[(quality["concept"] == concept) & (quality["cell"] == cell)]
    if q.empty:
        return nan
    left = curve[["alpha", "lpaps"]].assign(key=curve["alpha"].round(6))
    right = q[["alpha", *QUALITY_SCORES.values()]].assign(key=q["alpha"].round(6)).drop(columns="alpha")
    merged = left.merge(right, on="key")
    out = {}
    for short, column in QUALITY_SCORES.items():
        sides = []
        for side in SIDES:
            pts = side_points(merged, side)
            sides.append(side_quality(pts["lpaps"], pts[column], cut[side], n_points))
        finite = [v for v in sides if math.isfinite(v)]
        out[short] = float(np.mean(finite)) if finite else float("nan")
    return out


_LABELS = {cell: label for label, cell in METHODS}


def _label(cell: str) -> str:
    return _LABELS.get(cell, cell)


def _cell_order(cells) -> list[str]:
    known = [cell for _, cell in METHODS if cell in set(cells)]
    return known + [c for c in cells if c not in _LABELS]


def _row_order(labels) -> list[str]:
    present = list(dict.fromkeys(labels))
    known = [label for label, _ in METHODS if label in present]
    return known + [label for label in present if label not in known]


def _axis_title(axis: str) -> str:
    return "LPAPS" if axis == "lpaps" else axis


def _fmt(value) -> str:
    """3 decimals; undefined (None, NaN, inf) as "-"."""
    if value is None:
        return "-"
    value = float(value)
    return f"{value:.3f}" if math.isfinite(value) else "-"


def _markdown_rows(table: pd.DataFrame, columns: dict[str, str]) -> list[str]:
    lines = ["| Method | " + " | ".join(columns.values()) + " |", "|" + "---|" * (len(columns) + 1)]
    for label, r in table.iterrows():
        lines.append("| " + " | ".join([str(label), *(_fmt(r[c]) for c in columns)]) + " |")
    return lines


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                          ("$", r"\$"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(char, escaped)
    return text


def _latex_table(table: pd.DataFrame, caption: str, columns: dict[str, str]) -> str:
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_latex_escape(caption)}}}",
             r"\begin{tabular}{l" + "r" * len(columns) + "}", r"\toprule",
             "Method & " + " & ".join(columns.values()) + r" \\", r"\midrule"]
    for label, r in table.iterrows():
        cells = [_fmt(r[c]) for c in columns]
        lines.append(_latex_escape(str(label)) + " & " + " & ".join(f"${c}$" if c != "-" else "--" for c in cells)
                     + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)

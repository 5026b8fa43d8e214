"""A static HTML page a person can open: figures, and audio players for each steering sweep."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd


def sweep_section(title: str, index: pd.DataFrame, base: Path, root: Path, score_column: str | None = None) -> str:
    """One table per sweep: a row per (prompt, seed), a column per alpha, each cell an audio player."""
    alphas = sorted(index.alpha.unique())
    head = "".join(f"<th>alpha {a:+g}</th>" for a in alphas)
    rows = []
    for (i, prompt, seed), df in index.groupby(["prompt_index", "prompt", "seed"], sort=True):
        cells = []
        for a in alphas:
            hit = df[df.alpha == a]
            if hit.empty:
                cells.append("<td></td>")
                continue
            rel = (base / hit.path.iloc[0]).relative_to(root)
            score = f"<br><small>{hit[score_column].iloc[0]:.3f}</small>" if score_column else ""
            cells.append(f'<td><audio controls preload="none" src="{html.escape(str(rel))}"></audio>{score}</td>')
        rows.append(f"<tr><td>{html.escape(prompt)} <small>(seed {seed})</small></td>{''.join(cells)}</tr>")
    return (f"<h2>{html.escape(title)}</h2><table><tr><th>prompt</th>{head}</tr>{''.join(rows)}</table>")


def write_report(root: str | Path, title: str, figures: Sequence[tuple[str, Path]], sections: Sequence[str],
                 notes: str = "") -> Path:
    """Write ``root/index.html`` with the figures (caption, PNG path) and prepared sections."""
    root = Path(root)
    figs = "".join(
        f'<figure><img src="{html.escape(str(Path(p).relative_to(root)))}"><figcaption>{html.escape(c)}</figcaption></figure>'
        for c, p in figures)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px;font-size:13px}} audio{{width:150px}} figure{{display:inline-block;margin:1em}}
img{{max-width:640px}}</style></head>
<body><h1>{html.escape(title)}</h1><p>{html.escape(notes)}</p>{figs}{''.join(sections)}</body></html>
"""
    path = root / "index.html"
    path.write_text(page)
    return path

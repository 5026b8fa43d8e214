"""A static HTML page a person can open: figures, and audio players for each steering sweep."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd


def sweep_section(title: str, index: pd.DataFrame, base: Path, root: Path, score_column: str | None = None) -> str:
    """One table per sweep, a row per (prompt, seed): a slider over the precomputed strengths switches the row's
    player between their files (it plays offline from the folder), then a player per alpha."""
    alphas = sorted(index.alpha.unique())
    head = "".join(f"<th>alpha {a:+g}</th>" for a in alphas)
    rows = []
    for (i, prompt, seed), df in index.groupby(["prompt_index", "prompt", "seed"], sort=True):
        cells, choices = [], []
        for a in alphas:
            hit = df[df.alpha == a]
            if hit.empty:
                cells.append("<td></td>")
                continue
            rel = html.escape(str((base / hit.path.iloc[0]).relative_to(root)))
            choices.append((a, rel))
            score = f"<br><small>{hit[score_column].iloc[0]:.3f}</small>" if score_column else ""
            cells.append(f'<td><audio controls preload="none" src="{rel}"></audio>{score}</td>')
        zero = next((k for k, (a, _) in enumerate(choices) if a == 0), 0)
        dial = (f'<td class="dial"><input type="range" min="0" max="{len(choices) - 1}" step="1" value="{zero}" '
                f'data-srcs="{html.escape(json.dumps([r for _, r in choices]))}" '
                f'data-alphas="{html.escape(json.dumps([float(a) for a, _ in choices]))}" oninput="dial(this)">'
                f'<span>alpha {choices[zero][0]:+g}</span><br><audio controls preload="none" '
                f'src="{choices[zero][1]}"></audio></td>') if choices else "<td></td>"
        rows.append(f"<tr><td>{html.escape(prompt)} <small>(seed {seed})</small></td>{dial}{''.join(cells)}</tr>")
    return (f"<h2>{html.escape(title)}</h2><table><tr><th>prompt</th><th>dial</th>{head}</tr>{''.join(rows)}</table>")


_DIAL_JS = """<script>
function dial(input) {
  const srcs = JSON.parse(input.dataset.srcs), alphas = JSON.parse(input.dataset.alphas), i = Number(input.value);
  const cell = input.parentElement, player = cell.querySelector("audio");
  cell.querySelector("span").textContent = "alpha " + (alphas[i] >= 0 ? "+" : "") + alphas[i];
  player.src = srcs[i];
}
</script>"""


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
<body><h1>{html.escape(title)}</h1><p>{html.escape(notes)}</p>{figs}{''.join(sections)}{_DIAL_JS}</body></html>
"""
    path = root / "index.html"
    path.write_text(page)
    return path

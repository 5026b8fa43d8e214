"""The SAE feature browser as static files that open from disk (no server, relative links only):

    index.html          every feature: density, mean activation, flags, best TF-IDF concept, auto label;
    index-data.js       its rows (a script, since browsers refuse to fetch files next to a page opened from disk);
                        the page renders the first rows that match the search box, sorted by the clicked column
    features/fNNNNN.html one page a live feature: players of its top clips with their log-mel spectrogram and
                        activation over time (firing positions shaded), histogram, TF-IDF and correlation per
                        concept, cosines to CAA vectors, players of the feature steering the first prompt
    spec/uNNNNN.png     one spectrogram a clip, shared by every feature that shows the clip

The inputs are plain rows and dicts (see :func:`write_site`); nothing here measures anything.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

INDEX_COLUMNS = ("feature", "density", "mean_act", "flags", "top_concept", "tfidf", "label", "r")
ROWS_SHOWN = 500

_STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:1200px} table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px} th{cursor:pointer;background:#f3f3f3}
.clip{display:inline-block;margin:0 1em 1.5em 0;vertical-align:top} .clip img,.clip svg{display:block;width:420px}
audio{width:420px} .flag{color:#a00}"""

_INDEX_JS = """
const cols = %s; let sortKey = "density", sortDir = -1;
function render() {
  const q = document.getElementById("search").value.toLowerCase();
  let rows = FEATURES.filter(r => !q || cols.some(c => String(r[c]).toLowerCase().includes(q)));
  rows.sort((a, b) => (a[sortKey] > b[sortKey] ? 1 : a[sortKey] < b[sortKey] ? -1 : 0) * sortDir);
  const shown = rows.slice(0, %d);
  document.getElementById("count").textContent = rows.length + " of " + FEATURES.length + " features match"
      + (rows.length > shown.length ? ", the first " + shown.length + " shown" : "");
  document.getElementById("rows").innerHTML = shown.map(r => "<tr>" + cols.map(c => c === "feature"
      ? (r.page ? '<td><a href="' + r.page + '">' + r.feature + "</a></td>" : "<td>" + r.feature + "</td>")
      : "<td>" + (r[c] === null ? "-" : typeof r[c] === "number" ? r[c].toPrecision(3) : r[c]) + "</td>")
      .join("") + "</tr>").join("");
}
document.querySelectorAll("th").forEach(th => th.onclick = () => {
  sortDir = sortKey === th.dataset.key ? -sortDir : -1; sortKey = th.dataset.key; render(); });
document.getElementById("search").oninput = render;
render();
"""


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>{body}</body></html>\n")


def trace_svg(values: list[float], seconds: list[float], duration: float, width: int = 420, height: int = 60) -> str:
    """The activation over time as a line on the clip's time axis (0..duration), firing positions shaded."""
    peak = max(max(values), 1e-12)
    x = [width * t / duration for t in seconds]
    step = (x[1] - x[0]) if len(x) > 1 else width
    shade = "".join(f'<rect class="fires" x="{xi:.1f}" y="0" width="{step:.1f}" height="{height}" fill="#fc8" fill-opacity="0.45" />'
                    for xi, v in zip(x, values) if v > 0)
    points = " ".join(f"{xi + step / 2:.1f},{height - height * v / peak:.1f}" for xi, v in zip(x, values))
    return (f'<svg viewBox="0 0 {width} {height}" style="height:{height}px">{shade}'
            f'<polyline points="{points}" fill="none" stroke="#c40" stroke-width="1.5"/>'
            f'<text x="2" y="10" font-size="9">peak {peak:.3g}; 0 to {duration:.2f} s</text></svg>')


def histogram_svg(counts: list[float], edges: list[float], width: int = 420, height: int = 80) -> str:
    top = max(max(counts), 1)
    bar = width / len(counts)
    bars = "".join(f'<rect x="{i * bar:.1f}" y="{height - height * c / top:.1f}" width="{bar - 1:.1f}" '
                   f'height="{height * c / top:.1f}" fill="#48c"><title>{edges[i]:.3g}-{edges[i + 1]:.3g}: '
                   f"{int(c)}</title></rect>" for i, c in enumerate(counts))
    return (f'<svg viewBox="0 0 {width} {height + 12}" width="{width}">{bars}<text x="0" y="{height + 11}" '
            f'font-size="9">{edges[0]:.0e}</text><text x="{width - 30}" y="{height + 11}" font-size="9">'
            f"{edges[-1]:.0e}</text></svg>")


def _table(head: list[str], rows: list[list]) -> str:
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>" for r in rows)
    return "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" + cells + "</table>"


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_site(out: str | Path, title: str, index_rows: list[dict], pages: list[dict], duration: float,
               seconds: list[float], edges: list[float]) -> Path:
    """Write index.html, index-data.js and one page per entry of `pages`.

    index_rows: one dict per feature with INDEX_COLUMNS (and "page", its relative link, where it has one).
    pages: dicts with feature, stats (label -> value), hist (counts), clips ([{wav, spec, prompt, seed, peak,
    trace}]), concepts ([concept, tfidf, r]), cosines ([vector, cosine]), steered ([strength, wav]), prompt.
    """
    out = Path(out)
    (out / "features").mkdir(parents=True, exist_ok=True)
    (out / "index-data.js").write_text("window.FEATURES = " + json.dumps(index_rows, separators=(",", ":")) + ";\n")
    head = "".join(f'<th data-key="{c}">{c}</th>' for c in INDEX_COLUMNS)
    body = (f"<h1>{html.escape(title)}</h1><p><input id=\"search\" placeholder=\"search: a concept, a label, a "
            f"feature number, dead\" size=\"50\"> <span id=\"count\"></span></p><table><thead><tr>{head}</tr></thead>"
            f'<tbody id="rows"></tbody></table><script src="index-data.js"></script>'
            f"<script>{_INDEX_JS % (json.dumps(list(INDEX_COLUMNS)), ROWS_SHOWN)}</script>")
    index = out / "index.html"
    index.write_text(_page(title, body))
    for p in pages:
        clips = "".join(
            f'<div class="clip"><b>{html.escape(c["prompt"])}</b> <small>seed {c["seed"]}, peak {c["peak"]:.3g}'
            f'</small><audio controls preload="none" src="../{html.escape(c["wav"])}"></audio>'
            f'<img alt="log-mel spectrogram" src="../{html.escape(c["spec"])}">'
            f'{trace_svg(c["trace"], seconds, duration)}</div>' for c in p["clips"])
        steer = "".join(f'<div class="clip">strength {a:+g} x frame norm<audio controls preload="none" '
                        f'src="../{html.escape(w)}"></audio></div>' for a, w in p["steered"])
        stats = _table(["", ""], [[k, v] for k, v in p["stats"].items()])
        body = (f'<p><a href="../index.html">all features</a></p><h1>Feature {p["feature"]}</h1>{stats}'
                f"<h2>Activation histogram (non-zero activations, log bins)</h2>{histogram_svg(p['hist'], edges)}"
                f"<h2>Top clips</h2>{clips or '<p>no clip fires it</p>'}"
                f"<h2>Concepts</h2>{_table(['concept', 'TF-IDF (eq. 6)', 'r with the concept signal'], p['concepts'])}"
                + (f"<h2>Cosine to CAA vectors at this site</h2>{_table(['vector', 'cosine'], p['cosines'])}"
                   if p["cosines"] else "")
                + (f"<h2>Steer with this feature</h2><p>{html.escape(p['prompt'])}</p>{steer}" if steer else ""))
        (out / "features" / f"f{p['feature']:05d}.html").write_text(_page(f"feature {p['feature']}", body))
    return index

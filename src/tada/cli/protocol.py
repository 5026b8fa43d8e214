"""Commands of the authors' benchmark protocol (v2): `tada table`, `tada protocol-results`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tada.cli.app import app, say


@app.command("table")
def protocol_table(
    results: Path = typer.Argument(..., help="per-alpha results: cell, concept, axis, alpha, lpaps, muqt, clap"),
    quality: Optional[Path] = typer.Option(None, help="per-alpha Audiobox scores: cell, concept, alpha, CE, CU, PC, PQ"),
    out: Path = typer.Option(..., help="folder for tables.md, tables.tex and tables.csv"),
    axis: str = typer.Option("lpaps", help="preservation axis of the results file (main table: lpaps)"),
    cutoff_cells: str = typer.Option("pci_all,pci_loc", help="cells whose largest distance sets the cutoff"),
):
    """The benchmark table of the paper's authors: AUC, smoothness and quality within a PCI cutoff."""
    from tada.evaluation.auc_table import write_tables
    from tada.runs import check_output_dir

    cells = [c.strip() for c in cutoff_cells.split(",") if c.strip()]
    check_output_dir(out)
    paths = write_tables(results, out, quality=quality, axis=axis, cutoff_cells=cells)
    say(paths["markdown"].read_text())
    say(f"wrote {', '.join(str(p) for p in paths.values())}")


@app.command("protocol-results")
def protocol_results(
    folder: Path = typer.Argument(..., help="a finished tada eval folder (alignment.csv and the sweeps)"),
    out: Path = typer.Option(Path("steering_metrics.csv"), help="results file in the published layout"),
    clap: str = typer.Option("laion/larger_clap_music", help="CLAP checkpoint for CLAP-LPAPS (hub id or folder)"),
    windowing: str = typer.Option("fixed", help="CLAP-LPAPS windows: fixed (ClapScorer's) or zeta (10 s every 9 s)"),
    muq: str = typer.Option("muq", help="scorer name of the muqt column in alignment.csv"),
    clap_scorer: str = typer.Option("clap", help="scorer name of the clap column in alignment.csv"),
    device: str = typer.Option("cpu"),
):
    """Per-alpha results of a tada eval run in the layout of the authors' steering_metrics.csv."""
    from tada.evaluation.clap_lpaps import ClapLPAPS
    from tada.experiments.protocol_results import eval_results
    from tada.runs import check_output_dir

    check_output_dir(out.parent)
    lpaps = ClapLPAPS.from_pretrained(clap, device=device, windowing=windowing)
    rows = eval_results(folder, lpaps, alignments={"muqt": muq, "clap": clap_scorer})
    rows.to_csv(out, index=False)
    say(f"wrote {len(rows)} rows to {out}; next: tada table {out} --out <dir> --cutoff-cells <cells>")

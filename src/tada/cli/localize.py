"""Commands on concepts and layers: `tada localize`, `tada concepts`, `tada pairs`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tada.cli.app import CONCEPTS, MODEL, OVERWRITE, app, catalogue, say
from tada.errors import TadaError


@app.command()
def localize(
    model: str = MODEL,
    concept: list[str] = typer.Option(["tempo"], "--concept", "-c", help="catalogue concept(s); repeat for several"),
    pairs: int = typer.Option(8, min=1, help="counterfactual pairs per concept"),
    seeds: int = typer.Option(2, help="seeds per pair"),
    steps: Optional[int] = typer.Option(None, help="denoising steps (model default if omitted)"),
    captions: Optional[Path] = typer.Option(None, help="CSV with a 'caption' column (the shipped corpus if omitted)"),
    concepts: Optional[Path] = CONCEPTS,
    scorer: Optional[str] = typer.Option(None, help="clap, clap-tiny, muq, toy (default: toy for the toy model, else clap)"),
    max_batch: int = typer.Option(16, min=1, help="rows per denoiser batch"),
    window: int = typer.Option(1, min=1, help="patch this many consecutive layers together (Impact per window)"),
    adaptive: bool = typer.Option(False, "--adaptive", help="rounds of pairs, dropping layers that cannot reach the "
                                                            "top k, until the top k is separated or --budget is spent"),
    budget: Optional[int] = typer.Option(None, min=1, help="--adaptive: at most this many generations per concept"),
    top_k: int = typer.Option(2, min=1, help="--adaptive: how many top layers to separate"),
    min_units: int = typer.Option(8, min=1, help="--adaptive: (pair, seed) units before a layer may be dropped"),
    out: Path = typer.Option(Path("runs/localize"), help="run folder (resumes if it exists)"),
    overwrite: bool = OVERWRITE,
):
    """Activation patching over every cross-attention layer: Impact (eq. 9) per concept and layer."""
    import tada
    from tada.concepts import load_captions
    from tada.evaluation.registry import check_scorer_name, load_scorer
    from tada.localization.sweep import sweep_rows
    from tada.runs import check_output_dir

    cat = catalogue(concepts, concept)
    check_output_dir(out)
    load_captions(captions)
    if scorer:
        check_scorer_name(scorer)
    if budget is not None and not adaptive:
        raise TadaError("--budget applies to --adaptive sweeps; add --adaptive")
    m = tada.load(model)
    sweep_rows(len(m.sites), None, window)  # a window longer than the model: refused before any generation
    result = tada.localize(m, concept, n_pairs=pairs, seeds=seeds, steps=steps, captions=captions,
                           scorer=load_scorer(scorer) if scorer else None, out=out, max_batch=max_batch,
                           catalogue=cat, overwrite=overwrite, window=window,
                           adaptive={"top_k": top_k, "budget": budget, "min_units": min_units} if adaptive else None)
    for c in concept:
        rows = result.table[result.table.concept == c]
        flags = sorted({f for fl in rows["flags"] for f in str(fl).split(";") if f})
        note = f" (flags: {', '.join(flags)}; see impact.csv)" if flags else ""
        say(f"{c}: top layers {result.top(3, concept=c)}{note}")
    if result.adaptive is not None:
        for r in result.adaptive.itertuples():
            say(f"{r.concept}: adaptive sweep stopped ({r.stopped}) after {r.generations} of the full sweep's "
                f"{r.full_sweep_generations} generations")
    say(f"wrote {out}/impact.csv, {out}/heatmap.png")


@app.command("concepts")
def list_concepts(concepts: Optional[Path] = CONCEPTS):
    """List the concept catalogue."""
    cat = catalogue(concepts)
    say(f"catalogue version {cat.version}")
    for name in cat:
        c = cat[name]
        say(f"  {name} ({c.kind}): {', '.join(c.keywords[:4])} -> queries {list(c.queries.positive)}")


@app.command()
def pairs(
    concept: str = typer.Option(..., "--concept", "-c"),
    captions: Optional[Path] = typer.Option(None, help="CSV with a 'caption' column"),
    concepts: Optional[Path] = CONCEPTS,
    n: Optional[int] = typer.Option(None, "-n", min=1, help="at most this many pairs"),
    out: Path = typer.Option(Path("pairs.csv")),
):
    """Build counterfactual pairs (P_c, P_c~) from a caption corpus and report what was dropped."""
    from tada.concepts import build_pairs, load_captions

    ps = build_pairs(catalogue(concepts, [concept])[concept], load_captions(captions), n=n)
    ps.to_csv(out)
    say(str(ps.report))
    say(f"wrote {len(ps.pairs)} pairs to {out}")

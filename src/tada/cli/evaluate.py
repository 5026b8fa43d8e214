"""Commands that run whole experiments: `tada eval` (Table 1) and `tada demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tada.cli.app import CONCEPTS, MODEL, OVERWRITE, app, catalogue, check_units, ints, say


@app.command()
def demo(
    out: Path = typer.Option(Path("tada-demo"), help="report folder (resumes if it exists)"),
    model: str = MODEL,
    concept: list[str] = typer.Option(["tempo", "mood"], "--concept", "-c"),
    concepts: Optional[Path] = CONCEPTS,
    pairs: int = typer.Option(3, min=1, help="counterfactual pairs per concept for localization"),
    prompt: list[str] = typer.Option([], "--prompt", "-p", help="prompts to steer (three defaults if omitted)"),
    steps: Optional[int] = typer.Option(None),
    overwrite: bool = OVERWRITE,
):
    """The whole method on the embedded toy model: localize, fit CAA vectors, steer, report (HTML)."""
    import tada
    from tada.experiments.demo import DEMO_PROMPTS, run_demo
    from tada.models.base import check_prompts
    from tada.runs import check_output_dir

    cat = catalogue(concepts, concept)
    prompts = check_prompts(prompt) if prompt else DEMO_PROMPTS
    check_output_dir(out)
    page = run_demo(out, model=tada.load(model), concepts=concept, n_pairs=pairs, steps=steps, prompts=prompts,
                    catalogue=cat, overwrite=overwrite)
    say(f"open {page}")


@app.command("eval")
def evaluate(
    model: str = MODEL,
    concept: list[str] = typer.Option(["tempo"], "--concept", "-c"),
    concepts: Optional[Path] = CONCEPTS,
    layers: str = typer.Option(..., help="functional layers, e.g. 6,7 (from tada localize)"),
    sae_vector: list[Path] = typer.Option([], "--sae-vector", help="SAE vectors (from tada sae features) to add as rows"),
    scorer: list[str] = typer.Option([], "--scorer", help="alignment scorers (default: the model's)"),
    lpaps: Optional[Path] = typer.Option(None, help="folder with SpecVQGAN's lpaps.pth and vggishish16.pt"),
    fad_embedding: Optional[str] = typer.Option(
        None, help="FAD's embedding: vggish, or a scorer name (default: the first scorer; vggish with --paper)"),
    aesthetics: bool = typer.Option(False, help="Audiobox Aesthetics CE, CU, PC, PQ (optional extra)"),
    alphas: Optional[str] = typer.Option(None, help="in --units (default -2:2:0.5 in norm units; with --paper the "
                                                    "paper's raw -100:100:10)"),
    units: Optional[str] = typer.Option(None, "--units", help="norm (default), raw (default with --paper) or auto"),
    prompts: int = typer.Option(4, min=1, help="evaluation prompts (paper: 100)"),
    steps: Optional[int] = typer.Option(None),
    paper: bool = typer.Option(
        False, help="the paper's settings: 100 prompts, 60 steps, all contrastive pairs, CLAP and MuQ scorers, "
                    "VGGish FAD"),
    out: Path = typer.Option(Path("runs/eval")),
    overwrite: bool = OVERWRITE,
):
    """The steering table (Table 1): alpha sweeps per configuration and every metric of sec. 4.2."""
    import tada
    from tada.evaluation.registry import (
        check_scorer_name,
        load_scorer,
        offline_scorer_name,
        paper_scorer_names,
    )
    from tada.experiments.alpha_sweep import parse_alphas
    from tada.experiments.steering_table import EvalSettings, steering_table
    from tada.methods.vector import SteeringVector
    from tada.runs import check_output_dir

    cat = catalogue(concepts, concept)
    functional = ints(layers)
    grid = parse_alphas(alphas) if alphas is not None else None
    if units is not None:
        check_units(units)
    for name in scorer:
        check_scorer_name(name)
    check_output_dir(out)
    sae_vecs = {}
    for p in sae_vector:
        v = SteeringVector.load(p)
        sae_vecs[v.meta.get("concept")] = v
    m = tada.load(model)
    for v in sae_vecs.values():
        v.check_model(m)
    if paper and not scorer:
        scorer = paper_scorer_names(m)
    if paper and fad_embedding is None and offline_scorer_name(m) is None:  # the paper's FAD (Kilgour et al.)
        fad_embedding = "vggish"
    settings = EvalSettings.paper() if paper else EvalSettings(n_prompts=prompts, steps=steps)
    if grid is not None:
        settings.alphas = grid
    if units is not None:
        settings.units = check_units(units, list(sae_vecs.values()))
    lp = None
    if lpaps is not None:
        from tada.evaluation.lpaps import LPAPS

        lp = LPAPS.from_pretrained(lpaps)
    aes = None
    if aesthetics:
        from tada.evaluation.scorers.aesthetics import AudioboxAesthetics

        aes = AudioboxAesthetics.from_pretrained()
    scorers = {name: load_scorer(name) for name in scorer} or None
    table = steering_table(m, concept, functional, out, scorers=scorers, settings=settings, lpaps=lp,
                           fad_embed=fad_embedding or "scorer", aesthetics=aes, sae_vectors=sae_vecs,
                           catalogue=cat, overwrite=overwrite)
    say(table.to_string(index=False))
    say(f"wrote {out}/results.csv, {out}/table.md, {out}/curves/")

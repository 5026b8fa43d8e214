"""Commands that run whole experiments: `tada eval` (Table 1) and `tada demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tada.cli.app import CONCEPTS, MODEL, OVERWRITE, app, catalogue, check_units, say
from tada.errors import TadaError


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
    layers: str = typer.Option(..., help="functional layers, e.g. 6,7, or an Impact CSV of tada localize (each "
                                         "concept's --top-k layers)"),
    top_k: int = typer.Option(2, min=1, help="layers taken per concept from an Impact CSV"),
    sae_vector: list[Path] = typer.Option([], "--sae-vector", help="SAE vectors (from tada sae features) to add as rows"),
    scorer: list[str] = typer.Option([], "--scorer", help="alignment scorers (default: the model's)"),
    lpaps: Optional[Path] = typer.Option(None, help="folder with SpecVQGAN's lpaps.pth and vggishish16.pt"),
    fad_embedding: Optional[str] = typer.Option(
        None, help="FAD's embedding: vggish, or a scorer name (default: the first scorer; vggish with --paper)"),
    aesthetics: bool = typer.Option(False, help="Audiobox Aesthetics CE, CU, PC, PQ (optional extra)"),
    alphas: Optional[str] = typer.Option(None, help="in --units (default -2:2:0.5 in norm units; with --paper the "
                                                    "paper's raw -100:100:10)"),
    units: Optional[str] = typer.Option(None, "--units", help="norm (default), raw (default with --paper) or auto"),
    methods: Optional[str] = typer.Option(None, "--methods", help="steering methods, comma-separated, or all (see "
                                          "`tada methods`); each on the --layers and on all layers (default: caa; "
                                          "caa,pci with the auc protocol)"),
    method_alphas: list[str] = typer.Option([], "--method-alphas", help="one method's own alphas, e.g. "
                                            "pci=-25:25:5 (repeatable; default: its registered sweep)"),
    method_set: list[str] = typer.Option([], "--set", help="a method's fit setting METHOD.KEY=VALUE, e.g. "
                                         "concept_sliders.iterations=100 (repeatable)"),
    sae: Optional[Path] = typer.Option(None, "--sae", help="a trained SAE folder for the sae method"),
    protocol: Optional[str] = typer.Option(None, help="v1 (Table 1, default) or auc (also the authors' benchmark "
                                                      "tables; default with --paper; needs pci among --methods)"),
    preservation_name: Optional[str] = typer.Option(None, "--preservation", help="the auc protocol's distance: "
                                                    "clap-lpaps (default), toy-lpaps (the toy's), clap-tiny-lpaps"),
    mir: bool = typer.Option(True, "--mir/--no-mir", help="MIR measures of the concept and the four preservation "
                                                          "axes per file, with their agreement with each scorer"),
    prompts: int = typer.Option(4, min=1, help="evaluation prompts (paper: 100)"),
    steps: Optional[int] = typer.Option(None),
    paper: bool = typer.Option(
        False, help="the paper's settings: 100 prompts, 60 steps, all contrastive pairs, CLAP and MuQ scorers, "
                    "VGGish FAD"),
    out: Path = typer.Option(Path("runs/eval")),
    overwrite: bool = OVERWRITE,
):
    """The steering table: alpha sweeps of every method per configuration, Table 1's metrics of sec. 4.2, the MIR
    checks, and with --protocol auc the authors' benchmark tables."""
    import tada
    from tada.evaluation.registry import (
        PRESERVATIONS,
        check_scorer_name,
        load_preservation,
        load_scorer,
        offline_scorer_name,
        paper_scorer_names,
    )
    from tada.experiments.alpha_sweep import parse_alphas
    from tada.experiments.steering_table import EvalSettings, steering_table
    from tada.methods.vector import SteeringVector
    from tada.runs import check_output_dir

    cat = catalogue(concepts, concept)
    functional = functional_layers(layers, top_k, concept)
    grid = parse_alphas(alphas) if alphas is not None else None
    if units is not None:
        check_units(units)
    for name in scorer:
        check_scorer_name(name)
    auc = (protocol or ("auc" if paper else "v1")) == "auc"
    chosen = parse_methods(methods or ("caa,pci" if auc else "caa"), sae is not None)
    own_alphas = parse_method_alphas(method_alphas)
    fit_settings = parse_method_settings(method_set)
    if sae is not None:
        from tada.sae.model import TopKSAE

        TopKSAE.load(sae)  # a folder that is no SAE is refused here
        fit_settings.setdefault("sae", {})["sae"] = str(sae)
    if preservation_name is not None and preservation_name not in PRESERVATIONS:
        raise TadaError(f"--preservation {preservation_name!r} is unknown; known: {', '.join(PRESERVATIONS)}")
    settings = EvalSettings.paper() if paper else EvalSettings(n_prompts=prompts, steps=steps)
    settings.methods, settings.method_alphas, settings.method_settings, settings.mir = (
        chosen, own_alphas, fit_settings, mir)
    if protocol is not None:
        settings.protocol = protocol
    settings.check()  # before the model loads
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
    distance = load_preservation(preservation_name) if preservation_name and settings.protocol == "auc" else None
    table = steering_table(m, concept, functional, out, scorers=scorers, settings=settings, lpaps=lp,
                           fad_embed=fad_embedding or "scorer", aesthetics=aes, sae_vectors=sae_vecs,
                           catalogue=cat, overwrite=overwrite, preservation_distance=distance)
    say(table.to_string(index=False))
    extra = (", mir.csv" if mir else "") + (", steering_metrics.csv, protocol/tables.md" if settings.protocol == "auc"
                                            else "")
    say(f"wrote {out}/results.csv, table.md, alignment.csv{extra}, curves/")


def functional_layers(spec: str, top_k: int, concepts: list[str]) -> list[int] | dict[str, list[int]]:
    """--layers: site indices for every concept, or an Impact CSV's top `top_k` layers per concept."""
    from tada.cli.methods import parse_layers

    layers = parse_layers(spec, top_k)
    if layers == "all":
        raise TadaError("--layers all leaves no functional layers to compare against all layers; give indices or "
                        "an Impact CSV")
    if isinstance(layers, list):
        return layers
    return {c: layers.top(top_k, c) for c in concepts}


def parse_methods(spec: str, have_sae: bool) -> list[str]:
    """--methods: names or "all" (every method; sae only with an SAE to read, said when left out)."""
    from tada.methods.base import methods

    known = methods()
    if spec.strip() == "all":
        if not have_sae:
            say("--methods all: sae left out (give --sae DIR to include it)")
        return [n for n in known if n != "sae" or have_sae]
    names = [n.strip() for n in spec.split(",") if n.strip()]
    for n in names:
        if n not in known:
            raise TadaError(f"--methods: no steering method {n!r}; the methods are {', '.join(known)}, or all")
    if not names:
        raise TadaError("--methods names no method; give e.g. caa,pci or all")
    return list(dict.fromkeys(names))


def parse_method_alphas(items: list[str]) -> dict[str, list[float]]:
    """--method-alphas METHOD=ALPHAS items."""
    from tada.experiments.alpha_sweep import parse_alphas

    out = {}
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep or not name.strip():
            raise TadaError(f"--method-alphas expects METHOD=ALPHAS, e.g. pci=-25:25:5; got {item!r}")
        out[name.strip()] = parse_alphas(spec)
    return out


def parse_method_settings(items: list[str]) -> dict[str, dict]:
    """--set METHOD.KEY=VALUE items, each checked against that method's fit."""
    from tada.cli.methods import check_settings, parse_settings
    from tada.methods.base import method as method_info

    out: dict[str, dict] = {}
    for item in items:
        target, dot, rest = item.partition(".")
        if not dot or "=" not in rest:
            raise TadaError(f"--set expects METHOD.KEY=VALUE, e.g. concept_sliders.iterations=100; got {item!r}")
        info = method_info(target.strip())
        options = parse_settings([rest])
        check_settings(info.cls.fit, info.name, options)
        out.setdefault(info.name, {}).update(options)
    return out


"""The `tada` command line; every command calls a Python function of the library."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# torchsde (Stable Audio's scheduler) warns on every float rounding of its time grid
warnings.filterwarnings("ignore", category=UserWarning, module="torchsde")
# diffusers' own StableAudioDiTModel.forward uses its deprecated Transformer2DModelOutput on every call
warnings.filterwarnings("ignore", message=".*Transformer2DModelOutput.*", category=FutureWarning)

from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

import typer  # noqa: E402
from rich.console import Console  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Localize musical concepts in text-to-music diffusion models and steer them.")
console = Console()

MODEL = typer.Option("toy", "--model", "-m", help="toy (default, offline), tiny-*, a checkpoint alias or hub id")


def _ints(spec: str | None) -> list[int] | None:
    if spec is None:
        return None
    try:
        return [int(x) for x in spec.split(",") if x.strip()]
    except ValueError as err:
        raise typer.BadParameter(f"expected comma-separated integers, e.g. 6,7; got {spec!r}") from err


def _seeds(n: int) -> list[int]:
    if n < 1:
        raise typer.BadParameter(f"--seeds must be >= 1; got {n}")
    return list(range(n))


@app.command()
def localize(
    model: str = MODEL,
    concept: list[str] = typer.Option(["tempo"], "--concept", "-c", help="catalogue concept(s); repeat for several"),
    pairs: int = typer.Option(8, help="counterfactual pairs per concept"),
    seeds: int = typer.Option(2, help="seeds per pair"),
    steps: Optional[int] = typer.Option(None, help="denoising steps (model default if omitted)"),
    captions: Optional[Path] = typer.Option(None, help="CSV with a 'caption' column (the shipped corpus if omitted)"),
    catalogue: Optional[Path] = typer.Option(None, help="your own concepts (YAML/JSON), merged with the shipped ones"),
    scorer: Optional[str] = typer.Option(None, help="clap, clap-tiny, muq, toy (default: toy for the toy model, else clap)"),
    max_batch: int = typer.Option(16, help="rows per denoiser batch"),
    out: Path = typer.Option(Path("runs/localize"), help="run folder (resumes if it exists)"),
):
    """Activation patching over every cross-attention layer: Impact (eq. 9) per concept and layer."""
    import tada
    from tada.concepts import load_catalogue
    from tada.scoring import load_scorer

    m = tada.load(model)
    result = tada.localize(m, concept, n_pairs=pairs, seeds=seeds, steps=steps, captions=captions,
                           scorer=load_scorer(scorer) if scorer else None, out=out, max_batch=max_batch,
                           catalogue=load_catalogue(catalogue) if catalogue else None)
    for c in concept:
        console.print(f"[bold]{c}[/]: top layers {result.top(3, concept=c)}")
    console.print(f"wrote {out}/impact.csv, {out}/heatmap.png")


@app.command()
def caa(
    model: str = MODEL,
    concept: str = typer.Option(..., "--concept", "-c", help="catalogue concept"),
    layers: str = typer.Option(..., help="site indices, e.g. 6,7"),
    pairs: Optional[int] = typer.Option(None, help="number of contrastive pairs (all if omitted)"),
    seeds: int = typer.Option(1, help="seeds per pair"),
    steps: Optional[int] = typer.Option(None),
    per_step: bool = typer.Option(False, help="one direction per denoising step"),
    out: Path = typer.Option(..., help="output .safetensors (a .json with metadata is written beside it)"),
):
    """Fit a CAA steering vector (eq. 2) on the chosen layers."""
    import tada
    from tada.caa import fit

    m = tada.load(model)
    vec = fit(m, concept, sites=_ints(layers), seeds=seeds, steps=steps, per_step=per_step, n_pairs=pairs)
    path = vec.save(out)
    console.print(f"wrote {path} ({len(vec.meta['pairs'])} pairs, sites {vec.sites})")


@app.command()
def steer(
    vector: list[Path] = typer.Option(..., "--vector", "-v", help="saved steering vector(s); several compose"),
    model: str = MODEL,
    prompt: list[str] = typer.Option(["a jazz piece"], "--prompt", "-p", help="prompt(s) to steer"),
    alphas: str = typer.Option("-100:100:10", help="start:stop:step or a comma list"),
    seeds: int = typer.Option(1),
    steps: Optional[int] = typer.Option(None),
    out: Path = typer.Option(Path("runs/steer")),
):
    """Alpha sweep: one WAV per prompt, seed and alpha (resumable)."""
    import tada
    from tada.experiments.alpha_sweep import alpha_sweep, parse_alphas
    from tada.steering import SteeringVector

    m = tada.load(model)
    vecs = [SteeringVector.load(v, model=m) for v in vector]
    index = alpha_sweep(m, vecs, prompt, parse_alphas(alphas), out, seeds=_seeds(seeds), steps=steps)
    console.print(f"wrote {len(index)} files under {out}/audio and {out}/index.csv")


@app.command()
def generate(
    prompt: list[str] = typer.Option(..., "--prompt", "-p"),
    model: str = MODEL,
    seed: int = typer.Option(0),
    steps: Optional[int] = typer.Option(None),
    out: Path = typer.Option(Path("runs/generate")),
):
    """Plain generation, one WAV per prompt."""
    import tada

    m = tada.load(model)
    paths = m.generate(prompt, [seed] * len(prompt), steps=steps).save(out)
    console.print("\n".join(str(p) for p in paths))


@app.command()
def concepts(catalogue: Optional[Path] = typer.Option(None, help="your own concepts file, merged")):
    """List the concept catalogue."""
    from tada.concepts import load_catalogue

    cat = load_catalogue(catalogue)
    console.print(f"catalogue version {cat.version}")
    for name in cat:
        c = cat[name]
        console.print(f"  [bold]{name}[/] ({c.kind}): {', '.join(c.keywords[:4])} -> queries {list(c.queries.positive)}")


@app.command()
def pairs(
    concept: str = typer.Option(..., "--concept", "-c"),
    captions: Optional[Path] = typer.Option(None, help="CSV with a 'caption' column"),
    catalogue: Optional[Path] = typer.Option(None),
    n: Optional[int] = typer.Option(None, "-n", help="at most this many pairs"),
    out: Path = typer.Option(Path("pairs.csv")),
):
    """Build counterfactual pairs (P_c, P_c~) from a caption corpus and report what was dropped."""
    from tada.concepts import build_pairs, load_captions, load_catalogue

    ps = build_pairs(load_catalogue(catalogue)[concept], load_captions(captions), n=n)
    ps.to_csv(out)
    console.print(ps.report)
    console.print(f"wrote {len(ps.pairs)} pairs to {out}")


@app.command()
def demo(
    out: Path = typer.Option(Path("tada-demo"), help="report folder (resumes if it exists)"),
    model: str = MODEL,
    concept: list[str] = typer.Option(["tempo", "mood"], "--concept", "-c"),
    pairs: int = typer.Option(3, help="counterfactual pairs per concept for localization"),
    prompt: list[str] = typer.Option([], "--prompt", "-p", help="prompts to steer (three defaults if omitted)"),
    steps: Optional[int] = typer.Option(None),
):
    """The whole method on the embedded toy model: localize, fit CAA vectors, steer, report (HTML)."""
    import tada
    from tada.experiments.demo import DEMO_PROMPTS, run_demo

    page = run_demo(out, model=tada.load(model), concepts=concept, n_pairs=pairs, steps=steps,
                    prompts=prompt or DEMO_PROMPTS)
    console.print(f"open {page}")


sae_app = typer.Typer(no_args_is_help=True, help="TopK sparse autoencoders on one site (eq. 4-8).")
app.add_typer(sae_app, name="sae")


@sae_app.command("collect")
def sae_collect(
    site: int = typer.Option(..., help="site index (a functional layer)"),
    model: str = MODEL,
    prompts: Optional[Path] = typer.Option(None, help="CSV with a 'caption' column (the shipped corpus if omitted)"),
    n: int = typer.Option(64, help="number of prompts"),
    seeds: int = typer.Option(1),
    steps: Optional[int] = typer.Option(None),
    out: Path = typer.Option(Path("runs/sae/activations")),
):
    """Write the site's outputs (every frame of every step) as float16 shards (resumable)."""
    import tada
    from tada.concepts import load_captions
    from tada.sae_steering import collect

    m = tada.load(model)
    texts = list(load_captions(prompts).values())[:n]
    reader = collect(m, texts, site, out, seeds=_seeds(seeds), steps=steps)
    console.print(f"{len(reader)} rows of width {reader.d} in {out}")


@sae_app.command("train")
def sae_train(
    activations: Path = typer.Option(Path("runs/sae/activations")),
    expansion: str = typer.Option("4", help="m, or a comma list for a grid search (paper: 2,4,8,16)"),
    k: str = typer.Option("64", help="k, or a comma list (paper: 16,32,64)"),
    epochs: int = typer.Option(15),
    batch_size: int = typer.Option(4096),
    out: Path = typer.Option(Path("runs/sae/model")),
):
    """Train a TopK SAE, or a grid of them and pick one by the paper's rule (resumable)."""
    import shutil

    from tada.activation_store import ActivationReader
    from tada.sae import choose_sae, grid_search

    reader = ActivationReader(activations)
    table = grid_search(reader, m_values=_ints(expansion), k_values=_ints(k), epochs=epochs, batch_size=batch_size,
                        out=out / "grid")
    best = choose_sae(table)
    chosen = out / "grid" / f"m{int(best.m)}_k{int(best.k)}"
    for name in ("sae.safetensors", "cfg.json"):
        shutil.copy(chosen / name, out / name)
    console.print(table.to_string(index=False))
    console.print(f"chose m={int(best.m)} k={int(best.k)} -> {out}/sae.safetensors, {out}/cfg.json")


@sae_app.command("features")
def sae_features(
    site: int = typer.Option(...),
    concept: str = typer.Option(..., "--concept", "-c"),
    model: str = MODEL,
    sae: Path = typer.Option(Path("runs/sae/model")),
    tau: int = typer.Option(20, help="features kept (paper: 20, 40 for mood)"),
    pairs: Optional[int] = typer.Option(None),
    seeds: int = typer.Option(1),
    steps: Optional[int] = typer.Option(None),
    out: Path = typer.Option(..., help="output .safetensors of the SAE steering vector"),
):
    """Score SAE features by TF-IDF (eq. 6) and save the top-tau decoder sum (eq. 7) as a vector."""
    import tada
    from tada.sae import TopKSAE
    from tada.sae_steering import sae_vector

    m = tada.load(model)
    vec, table = sae_vector(m, TopKSAE.load(sae), site, concept, tau=tau, seeds=_seeds(seeds), steps=steps,
                            n_pairs=pairs)
    path = vec.save(out)
    table.to_csv(path.with_suffix(".features.csv"), index=False)
    console.print(f"wrote {path} (features {vec.meta['features']}) and {path.with_suffix('.features.csv')}")


@sae_app.command("steer")
def sae_steer(
    vector: Path = typer.Option(..., "--vector", "-v"),
    model: str = MODEL,
    prompt: list[str] = typer.Option(["a jazz piece"], "--prompt", "-p"),
    alphas: str = typer.Option("-100:100:10"),
    seeds: int = typer.Option(1),
    steps: Optional[int] = typer.Option(None),
    out: Path = typer.Option(Path("runs/sae/steer")),
):
    """Alpha sweep with an SAE vector (added without ReNorm, eq. 8)."""
    steer([vector], model, prompt, alphas, seeds, steps, out)


@app.command("eval")
def evaluate(
    model: str = MODEL,
    concept: list[str] = typer.Option(["tempo"], "--concept", "-c"),
    layers: str = typer.Option(..., help="functional layers, e.g. 6,7 (from tada localize)"),
    sae_vector: list[Path] = typer.Option([], "--sae-vector", help="SAE vectors (from tada sae features) to add as rows"),
    scorer: list[str] = typer.Option([], "--scorer", help="alignment scorers (default: the model's)"),
    lpaps: Optional[Path] = typer.Option(None, help="folder with SpecVQGAN's lpaps.pth and vggishish16.pt"),
    fad_embedding: Optional[str] = typer.Option(
        None, help="FAD's embedding: vggish, or a scorer name (default: the first scorer; vggish with --paper)"),
    aesthetics: bool = typer.Option(False, help="Audiobox Aesthetics CE, CU, PC, PQ (optional extra)"),
    alphas: str = typer.Option("-100:100:10"),
    prompts: int = typer.Option(4, help="evaluation prompts (paper: 100)"),
    steps: Optional[int] = typer.Option(None),
    paper: bool = typer.Option(
        False, help="the paper's settings: 100 prompts, 60 steps, all contrastive pairs, CLAP and MuQ scorers, "
                    "VGGish FAD"),
    out: Path = typer.Option(Path("runs/eval")),
):
    """The steering table (Table 1): alpha sweeps per configuration and every metric of sec. 4.2."""
    import tada
    from tada.experiments.alpha_sweep import parse_alphas
    from tada.experiments.steering_table import EvalSettings, steering_table
    from tada.scoring import load_scorer, offline_scorer_name, paper_scorer_names
    from tada.steering import SteeringVector

    m = tada.load(model)
    if paper and not scorer:
        scorer = paper_scorer_names(m)
    if paper and fad_embedding is None and offline_scorer_name(m) is None:  # the paper's FAD (Kilgour et al.)
        fad_embedding = "vggish"
    settings = EvalSettings.paper() if paper else EvalSettings(n_prompts=prompts, steps=steps)
    settings.alphas = parse_alphas(alphas)
    sae_vecs = {}
    for p in sae_vector:
        v = SteeringVector.load(p, model=m)
        sae_vecs[v.meta.get("concept")] = v
    lp = None
    if lpaps is not None:
        from tada.lpaps import LPAPS

        lp = LPAPS.from_pretrained(lpaps)
    aes = None
    if aesthetics:
        from tada.scoring.aesthetics import AudioboxAesthetics

        aes = AudioboxAesthetics.from_pretrained()
    scorers = {name: load_scorer(name) for name in scorer} or None
    table = steering_table(m, concept, _ints(layers), out, scorers=scorers, settings=settings, lpaps=lp,
                           fad_embed=fad_embedding or "scorer", aesthetics=aes, sae_vectors=sae_vecs)
    console.print(table.to_string(index=False))
    console.print(f"wrote {out}/results.csv, {out}/table.md, {out}/curves/")


def main():
    """Entry point: usage errors as typer prints them, bad values as one line naming them."""
    try:
        app()
    except (ValueError, IndexError, KeyError, TypeError, OSError, RuntimeError) as err:
        console.print(f"[red]error:[/] {err}")
        raise SystemExit(2) from None


# ---------------------------------------------------------------------------------------------------------
# Protocol v2: the authors' benchmark tables (tada.evaluation). Keep this block self-contained.


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

    cells = [c.strip() for c in cutoff_cells.split(",") if c.strip()]
    paths = write_tables(results, out, quality=quality, axis=axis, cutoff_cells=cells)
    console.print(paths["markdown"].read_text(), markup=False, highlight=False)
    console.print(f"wrote {', '.join(str(p) for p in paths.values())}")


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
    from tada.evaluation.protocol_results import eval_results

    lpaps = ClapLPAPS.from_pretrained(clap, device=device, windowing=windowing)
    rows = eval_results(folder, lpaps, alignments={"muqt": muq, "clap": clap_scorer})
    out.parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out, index=False)
    console.print(f"wrote {len(rows)} rows to {out}; next: tada table {out} --out <dir> --cutoff-cells <cells>")


if __name__ == "__main__":
    main()

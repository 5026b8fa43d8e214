"""The `tada` command line; every command calls a Python function of the library."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

import typer  # noqa: E402
from rich.console import Console  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True,
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


def main():
    app()


if __name__ == "__main__":
    main()

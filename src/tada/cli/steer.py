"""Commands that fit and apply steering vectors: `tada caa`, `tada steer`, `tada generate`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tada.cli.app import CONCEPTS, MODEL, OVERWRITE, UNITS, app, catalogue, check_units, ints, say
from tada.cli.app import seeds as seed_range
from tada.errors import TadaError


def check_vector_out(out: Path) -> Path:
    """The .safetensors path a vector will be saved at, checked writable before any work."""
    from tada.methods.vector import vector_path
    from tada.runs import check_output_dir

    path = vector_path(out)
    if Path(out).is_dir() or path.is_dir():
        raise TadaError(f"--out {out} is a folder; name the vector's file, e.g. {out}/tempo.safetensors")
    check_output_dir(path.parent)
    return path


@app.command()
def caa(
    model: str = MODEL,
    concept: str = typer.Option(..., "--concept", "-c", help="catalogue concept"),
    concepts: Optional[Path] = CONCEPTS,
    layers: str = typer.Option(..., help="site indices, e.g. 6,7"),
    pairs: Optional[int] = typer.Option(None, min=1, help="number of contrastive pairs (all if omitted)"),
    seeds: int = typer.Option(1, help="seeds per pair"),
    steps: Optional[int] = typer.Option(None),
    per_step: bool = typer.Option(False, help="one direction per denoising step"),
    out: Path = typer.Option(..., help="output .safetensors (a .json with metadata is written beside it)"),
):
    """Fit a CAA steering vector (eq. 2) on the chosen layers."""
    import tada
    from tada.methods.caa import fit
    from tada.runs.distributed import is_main

    cat = catalogue(concepts, [concept])
    sites = ints(layers)
    path = check_vector_out(out)
    seed_range(seeds)
    m = tada.load(model)
    vec = fit(m, cat[concept], sites=sites, seeds=seeds, steps=steps, per_step=per_step, n_pairs=pairs)
    if is_main():  # under torchrun every process holds the same vector; one writes it
        vec.save(path)
        say(f"wrote {path} ({len(vec.meta['pairs'])} pairs, sites {vec.sites})")


@app.command()
def steer(
    vector: list[Path] = typer.Option(..., "--vector", "-v", help="saved steering file(s) of any method; several "
                                      "compose"),
    model: str = MODEL,
    prompt: list[str] = typer.Option(["a jazz piece"], "--prompt", "-p", help="prompt(s) to steer"),
    alphas: str = typer.Option("-2:2:0.5", help="start:stop:step or a comma list, in --units"),
    seeds: int = typer.Option(1),
    steps: Optional[int] = typer.Option(None),
    batch_size: int = typer.Option(8, min=1, help="generations per model batch"),
    out: Path = typer.Option(Path("runs/steer")),
    overwrite: bool = OVERWRITE,
    units: str = UNITS,
):
    """Alpha sweep: one WAV per prompt, seed and alpha (resumable; splits over torchrun's processes)."""
    import tada
    from tada.experiments.alpha_sweep import alpha_sweep, parse_alphas
    from tada.methods.base import load
    from tada.models.base import check_prompts
    from tada.runs import check_output_dir

    grid, seed_list = parse_alphas(alphas), seed_range(seeds)
    check_prompts(prompt)
    check_output_dir(out)
    vecs = [load(v) for v in vector]
    units = check_units(units, vecs)
    for v in vecs:  # e.g. an effect outside a calibration's usable range: refused before the model loads
        for a in grid:
            v.strength(a, units)
    m = tada.load(model)
    for v in vecs:
        v.check_model(m)
    index = alpha_sweep(m, vecs, prompt, grid, out, seeds=seed_list, steps=steps, overwrite=overwrite, units=units,
                        batch_size=batch_size)
    failed = int((index.status != "ok").sum())
    say(f"wrote {len(index) - failed} files under {out}/audio and {out}/index.csv (alphas in {units} units)"
        + (f"; {failed} cells went non-finite (see index.csv)" if failed else ""))


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
    from tada.models.base import check_prompts
    from tada.runs import check_output_dir

    check_prompts(prompt)
    check_output_dir(out)
    m = tada.load(model)
    paths = m.generate(prompt, [seed] * len(prompt), steps=steps).save(out)
    say("\n".join(str(p) for p in paths))


@app.command()
def calibrate(
    vector: Path = typer.Argument(..., help="a steering file of any method"),
    model: str = MODEL,
    prompts: int = typer.Option(4, min=1, help="evaluation prompts of the short sweep"),
    alphas: Optional[str] = typer.Option(None, help="strengths (default: the method's own sweep)"),
    units: str = UNITS,
    concept: Optional[str] = typer.Option(None, "--concept", "-c", help="catalogue concept (default: the file's)"),
    steps: Optional[int] = typer.Option(None),
    out: Optional[Path] = typer.Option(None, help="sweep folder (default: beside the vector)"),
    max_distance: Optional[float] = typer.Option(None, help="end the usable range before the preservation distance "
                                                            "to the unsteered clip (e.g. CLAP-LPAPS) passes this"),
):
    """Measure what the artifact's strength does (alignment, the concept's MIR measure, the preservation
    distance) and its usable range; writes NAME.calibration.json and NAME.calibration.png beside the file."""
    import pandas as pd

    import tada
    from tada.concepts import load_eval_prompts
    from tada.experiments.alpha_sweep import parse_alphas
    from tada.experiments.calibration import calibrate as run_calibration
    from tada.methods.base import load, steering_path
    from tada.methods.calibration import calibration_path, write_calibrations
    from tada.report.plots import alpha_curves

    art = load(vector)
    grid = parse_alphas(alphas) if alphas is not None else None
    if max_distance is not None and not max_distance > 0:
        raise TadaError(f"--max-distance must be a positive number; got {max_distance}")
    if units not in ("norm", "raw", "auto"):
        raise TadaError(f"--units must be norm, raw or auto to calibrate (a sweep is measured in alphas); got {units!r}")
    units = check_units(units, [art])
    target = calibration_path(vector)
    folder = out or steering_path(vector).with_name(target.name.removesuffix(".json"))
    m = tada.load(model)
    art.check_model(m)
    cals = run_calibration(m, art, load_eval_prompts()[:prompts], folder, alphas=grid, units=units, concept=concept,
                           steps=steps, max_distance=max_distance)
    write_calibrations(target, cals)
    cal = cals["alignment"]
    alpha_curves(pd.DataFrame({"alpha": cal.alphas, "alignment": cal.effects, "prompt_index": 0, "seed": 0}),
                 target.with_suffix(".png"), title=f"{steering_path(vector).stem}: alignment change, usable {cal.usable}")
    for name, c in cals.items():
        say(f"{name}: usable alphas {c.usable[0]:+g} .. {c.usable[1]:+g} ({c.units}); effect "
            f"{c.to_effect(c.usable[0]):+.4g} .. {c.to_effect(c.usable[1]):+.4g}"
            + ("" if c.monotonic() else "; not monotonic there"))
    say(f"wrote {target} and {target.with_suffix('.png')}")

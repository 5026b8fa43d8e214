"""`tada sae collect | train | features | steer`: TopK sparse autoencoders on one site (eq. 4-8)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tada.cli.app import CONCEPTS, MODEL, OVERWRITE, UNITS, app, catalogue, ints, say
from tada.cli.app import seeds as seed_range
from tada.cli.steer import check_vector_out, steer

sae_app = typer.Typer(no_args_is_help=True, help="TopK sparse autoencoders on one site (eq. 4-8).")
app.add_typer(sae_app, name="sae")


@sae_app.command("collect")
def sae_collect(
    site: int = typer.Option(..., help="site index (a functional layer)"),
    model: str = MODEL,
    prompts: Optional[Path] = typer.Option(None, help="CSV with a 'caption' column (the shipped corpus if omitted)"),
    n: int = typer.Option(64, "--n-prompts", "--n", min=1, help="number of prompts (--n-prompts under torchrun, whose "
                                                          "own options --n abbreviates)"),
    seeds: int = typer.Option(1),
    steps: Optional[int] = typer.Option(None),
    batch_size: int = typer.Option(8, min=1, help="generations per model batch"),
    out: Path = typer.Option(Path("runs/sae/activations")),
    overwrite: bool = OVERWRITE,
):
    """Write the site's outputs (every frame of every step) as float16 shards (resumable; splits over torchrun's
    processes)."""
    import tada
    from tada.concepts import load_captions
    from tada.methods.sae import collect
    from tada.runs import check_output_dir

    texts = list(load_captions(prompts).values())[:n]
    seed_list = seed_range(seeds)
    check_output_dir(out)
    m = tada.load(model)
    reader = collect(m, texts, site, out, seeds=seed_list, steps=steps, batch_size=batch_size, overwrite=overwrite)
    say(f"{len(reader)} rows of width {reader.d} in {out}")


@sae_app.command("train")
def sae_train(
    activations: Path = typer.Option(Path("runs/sae/activations")),
    expansion: str = typer.Option("4", help="m, or a comma list for a grid search (paper: 2,4,8,16)"),
    k: str = typer.Option("64", help="k, or a comma list (paper: 16,32,64)"),
    epochs: int = typer.Option(15, min=1),
    batch_size: int = typer.Option(4096, min=1),
    out: Path = typer.Option(Path("runs/sae/model")),
):
    """Train a TopK SAE, or a grid of them and pick one by the paper's rule (resumable; data-parallel over
    torchrun's processes)."""
    import shutil

    from tada.runs import check_output_dir, writing
    from tada.runs.distributed import is_main
    from tada.sae import ActivationReader, choose_sae, grid_search

    m_values, k_values = ints(expansion, "--expansion"), ints(k, "--k")
    check_output_dir(out)
    reader = ActivationReader(activations)
    table = grid_search(reader, m_values=m_values, k_values=k_values, epochs=epochs, batch_size=batch_size,
                        out=out / "grid")
    best = choose_sae(table)
    chosen = out / "grid" / f"m{int(best.m)}_k{int(best.k)}"
    if not is_main():
        return
    with writing(out):
        for name in ("sae.safetensors", "cfg.json"):
            shutil.copy(chosen / name, out / name)
    say(table.to_string(index=False))
    say(f"chose m={int(best.m)} k={int(best.k)} -> {out}/sae.safetensors, {out}/cfg.json")


@sae_app.command("features")
def sae_features(
    site: int = typer.Option(...),
    concept: str = typer.Option(..., "--concept", "-c"),
    concepts: Optional[Path] = CONCEPTS,
    model: str = MODEL,
    sae: Path = typer.Option(Path("runs/sae/model")),
    tau: int = typer.Option(20, min=1, help="features kept (paper: 20, 40 for mood)"),
    pairs: Optional[int] = typer.Option(None, min=1),
    seeds: int = typer.Option(1),
    steps: Optional[int] = typer.Option(None),
    out: Path = typer.Option(..., help="output .safetensors of the SAE steering vector"),
):
    """Score SAE features by TF-IDF (eq. 6) and save the top-tau decoder sum (eq. 7) as a vector."""
    import tada
    from tada.methods.sae import sae_vector
    from tada.sae import TopKSAE

    cat = catalogue(concepts, [concept])
    path = check_vector_out(out)
    seed_list = seed_range(seeds)
    autoencoder = TopKSAE.load(sae)
    m = tada.load(model)
    vec, table = sae_vector(m, autoencoder, site, cat[concept], tau=tau, seeds=seed_list, steps=steps,
                            n_pairs=pairs)
    vec.save(path)
    table.to_csv(path.with_suffix(".features.csv"), index=False)
    say(f"wrote {path} (features {vec.meta['features']}) and {path.with_suffix('.features.csv')}")


@sae_app.command("steer")
def sae_steer(
    vector: Path = typer.Option(..., "--vector", "-v"),
    model: str = MODEL,
    prompt: list[str] = typer.Option(["a jazz piece"], "--prompt", "-p"),
    alphas: str = typer.Option("-2:2:0.5", help="start:stop:step or a comma list, in --units"),
    seeds: int = typer.Option(1),
    steps: Optional[int] = typer.Option(None),
    out: Path = typer.Option(Path("runs/sae/steer")),
    overwrite: bool = OVERWRITE,
    units: str = UNITS,
):
    """Alpha sweep with an SAE vector (added without ReNorm, eq. 8)."""
    steer([vector], model, prompt, alphas, seeds, steps, out=out, overwrite=overwrite, units=units)


@sae_app.command("browse")
def sae_browse(
    sae: Path = typer.Argument(..., help="a trained SAE folder (cfg.json, sae.safetensors)"),
    activations: Path = typer.Option(Path("runs/sae/activations"), help="the tada sae collect folder it reads"),
    model: str = MODEL,
    concepts: Optional[Path] = CONCEPTS,
    concept: list[str] = typer.Option([], "--concept", "-c", help="concepts to score and label by (default: all)"),
    top_k: int = typer.Option(6, min=1, help="top clips per feature"),
    pairs: int = typer.Option(4, min=1, help="contrastive pairs per concept for the TF-IDF scores"),
    steer_features: int = typer.Option(8, min=0, help="features (highest TF-IDF) to steer the first prompt with"),
    caa: list[Path] = typer.Option([], "--caa", help="CAA vectors to compare each decoder direction with"),
    out: Path = typer.Option(Path("runs/sae/browser")),
    overwrite: bool = OVERWRITE,
):
    """A static HTML browser of the SAE's features that opens from disk: index, a page per feature, players."""
    import tada
    from tada.experiments.sae_browser import build_browser, collected_prompts, write_browser
    from tada.methods.vector import SteeringVector
    from tada.runs import RunFolder, check_output_dir, content_hash
    from tada.sae import TopKSAE

    cat = catalogue(concepts, concept)
    autoencoder = TopKSAE.load(sae)
    collected, _ = collected_prompts(activations)
    check_output_dir(out)
    vectors = {p.name: SteeringVector.load(p) for p in caa}
    # A site made from another SAE, store or settings is refused (or cleared with --overwrite), never mixed.
    RunFolder(out, "sae-browser", {
        "model": model, "sae": content_hash(*(f.read_bytes() for f in sorted(Path(sae).glob("*")) if f.is_file())),
        "activations": {k: collected.get(k) for k in ("model", "site", "prompts", "seeds", "steps")},
        "concepts": concept or list(cat), "top_k": top_k, "pairs": pairs, "steer_features": steer_features,
        "caa": {name: v.content_hash() for name, v in vectors.items()}}, overwrite=overwrite).begin()
    m = tada.load(model)
    data = build_browser(m, autoencoder, activations, out, catalogue=cat, concepts=concept or None, top_k=top_k,
                         concept_pairs=pairs, steer_features=steer_features, caa=vectors)
    say(f"open {write_browser(data, out)}")

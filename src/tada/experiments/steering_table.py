"""The paper's steering table (Table 1): for each concept and steering configuration, an alpha sweep
over evaluation prompts and every column of sec. 4.2 (preservation, delta alignment, smoothness,
audio quality)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tada.audio import Audio
from tada.engine import Site, resolve_sites
from tada.errors import TadaError
from tada.evaluation.metrics import delta_alignment, preservation, smoothness
from tada.evaluation.registry import load_embedder
from tada.experiments.alpha_sweep import alpha_sweep, load_sweep
from tada.methods.caa import fit
from tada.methods.vector import SteeringVector, Units
from tada.models.base import AudioModel
from tada.runs import RunFolder, check_output_dir, content_hash


@dataclass
class EvalSettings:
    """Sizes of one evaluation run. The defaults suit a laptop CPU; :meth:`paper` gives sec. 4.2's."""

    alphas: list[float] = field(default_factory=lambda: [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    units: Units = "norm"  # alphas as multiples of each vector's frame norm; the paper's are raw
    n_prompts: int = 4
    seeds: list[int] = field(default_factory=lambda: [0])
    steps: int | None = None
    caa_pairs: int | None = 16
    caa_seeds: int = 1
    batch_size: int = 8

    @classmethod
    def paper(cls) -> "EvalSettings":
        return cls(alphas=[float(a) for a in range(-100, 101, 10)], units="raw", n_prompts=100, steps=60,
                   caa_pairs=None)


def configurations(sites: Sequence[Site], functional: Sequence[int]) -> dict[str, list[int]]:
    """Table 1's CAA rows: the functional layers, all layers, and all but the functional layers."""
    if not functional:
        raise TadaError("name at least one functional layer")
    functional = resolve_sites(sites, functional)
    n_sites = len(sites)
    rest = [s for s in range(n_sites) if s not in functional]
    configs = {f"layers {{{','.join(map(str, functional))}}}": functional, "all layers": list(range(n_sites))}
    if rest:
        configs[f"all but {{{','.join(map(str, functional))}}}"] = rest
    return configs


def sweep_metrics(index: pd.DataFrame, audio: Audio, queries: Sequence[str], scorers: dict, lpaps=None,
                  fad_embed=None, aesthetics=None) -> tuple[dict, pd.DataFrame]:
    """Every column of Table 1 for one finished alpha sweep, and the per-file alignment table."""
    per_file = index.copy()
    for name, scorer in scorers.items():
        per_file[f"align_{name}"] = scorer.similarity(audio, list(queries)).mean(dim=1).numpy()
    row: dict = {}
    curves = per_file.sort_values("alpha")
    for name in scorers:
        wide = curves.pivot_table(index=["prompt_index", "seed"], columns="alpha", values=f"align_{name}")
        alphas = wide.columns.to_numpy(dtype=float)
        sims = wide.to_numpy().T  # (A, units)
        row[f"delta_align_{name}"] = float(np.mean(delta_alignment(alphas, sims)))
        row[f"smoothness_{name}"] = float(np.mean(smoothness(alphas, sims)))
    ref_rows = per_file.index[per_file.alpha == 0].to_numpy()
    if len(ref_rows) == 0:
        raise TadaError("the sweep has no alpha = 0 generations to measure preservation against")
    reference = Audio(audio.waveform[ref_rows.tolist()], audio.sample_rate)
    key = ["prompt_index", "seed"]
    ref_order = per_file.loc[ref_rows, key].to_records(index=False).tolist()
    steered = {}
    for alpha, df in per_file[per_file.alpha != 0].groupby("alpha"):
        order = dict(zip(df[key].to_records(index=False).tolist(), df.index))
        steered[float(alpha)] = Audio(audio.waveform[[order[k] for k in ref_order]], audio.sample_rate)
    embed = fad_embed if len(ref_rows) > 1 else None  # a Frechet distance needs two rows per set
    pres = preservation(steered, reference, lpaps=lpaps, embed=embed, progress=False) if (lpaps or embed) else None
    row["lpaps"] = np.nan if pres is None or pres.lpaps is None else pres.lpaps
    row["fad"] = np.nan if pres is None or pres.fad is None else pres.fad
    if aesthetics is not None:
        scores = aesthetics.score(Audio.cat(list(steered.values())))
        for axis, values in scores.items():
            row[axis] = float(values.float().mean())
    return row, per_file


def steering_table(model: AudioModel, concepts: Sequence[str], functional: dict[str, Sequence[int]] | Sequence[int],
                   out: str | Path, prompts: Sequence[str] | None = None, scorers: dict | None = None,
                   settings: EvalSettings | None = None, lpaps=None, fad_embed="scorer",
                   aesthetics=None, sae_vectors: dict[str, SteeringVector] | None = None, catalogue=None,
                   overwrite: bool = False) -> pd.DataFrame:
    """Run Table 1 for `concepts` on `model` into `out` (resumable: vectors and WAV files are reused).

    functional: the functional layers (one list for every concept, or per concept, e.g. from
        ``LayerImpact.top``); configurations are those layers, all layers, and all but those layers.
    sae_vectors: optional ``{concept: SAE steering vector}`` added as an ``SAE(site)`` row.
    scorers: ``{name: Scorer}`` for alignment (default: the model's default scorer).
    fad_embed: FAD's embedding: "scorer" (the first scorer's ``embed_audio``), a name for
        ``tada.evaluation.registry.load_embedder`` ("vggish", "clap", ...), any ``Embedder``, or None to skip FAD.
    Writes results.csv, table.md, alignment.csv and curves/<concept>.png into a
    :class:`~tada.runs.RunFolder`: a rerun with other settings refuses (or starts clean with `overwrite`).
    """
    from tada.concepts import load_catalogue, load_eval_prompts
    from tada.evaluation.registry import default_scorer
    from tada.report.plots import alpha_curves

    settings = settings or EvalSettings()
    if 0.0 not in settings.alphas:
        settings.alphas = sorted([*settings.alphas, 0.0])
    if not concepts:
        raise TadaError("choose at least one concept to evaluate")
    catalogue = catalogue or load_catalogue()
    chosen = {c: catalogue[c] for c in concepts}  # unknown names fail here, before any work
    check_output_dir(out)
    prompts = list(prompts) if prompts is not None else load_eval_prompts()[: settings.n_prompts]
    scorers = scorers or {getattr(s, "name", "scorer"): s for s in [default_scorer(model)]}
    if fad_embed == "scorer":
        fad_embed = next(iter(scorers.values())).embed_audio
    elif isinstance(fad_embed, str):
        fad_embed = load_embedder(fad_embed)
    layer_sets = {c: configurations(model.sites, functional[c] if isinstance(functional, dict) else functional)
                  for c in concepts}
    run = RunFolder(out, "steering-table", {
        "model": model.name, "concepts": list(concepts), "configurations": layer_sets,
        "concept_definitions": content_hash([repr(c) for c in chosen.values()]),
        "alphas": settings.alphas, "units": settings.units, "prompts": content_hash(prompts), "seeds": settings.seeds,
        "steps": settings.steps or model.default_steps, "caa_pairs": settings.caa_pairs,
        "caa_seeds": settings.caa_seeds, "batch_size": settings.batch_size, "scorers": list(scorers),
        "sae_vectors": {k: v.content_hash() for k, v in (sae_vectors or {}).items()},
        "lpaps": lpaps is not None, "fad": fad_embed is not None, "aesthetics": aesthetics is not None},
        overwrite=overwrite)
    out = run.path
    rows, per_files = [], []
    for concept in concepts:
        c = chosen[concept]
        vectors: dict[str, SteeringVector] = {}
        for label, sites in layer_sets[concept].items():
            vectors[label] = run.load_or_fit(
                Path("vectors") / f"{concept}-{_slug(label)}.safetensors",
                lambda: fit(model, c, sites, seeds=settings.caa_seeds, steps=settings.steps,
                            n_pairs=settings.caa_pairs, batch_size=settings.batch_size),
                lambda path: SteeringVector.load(path, model=model))
        if sae_vectors and concept in sae_vectors:
            sae_vec = sae_vectors[concept]
            vectors[f"SAE({','.join(map(str, sae_vec.sites))})"] = sae_vec
        for label, vec in vectors.items():
            folder = out / concept / _slug(label)
            alpha_sweep(model, vec, prompts, settings.alphas, folder, seeds=settings.seeds,
                        steps=settings.steps, batch_size=settings.batch_size, overwrite=overwrite,
                        units=settings.units)
            index, audio = load_sweep(folder)
            row, per_file = sweep_metrics(index, audio, c.queries.positive, scorers, lpaps, fad_embed, aesthetics)
            rows.append({"concept": concept, "config": label, "sites": ",".join(map(str, vec.sites)), **row})
            per_files.append(per_file.assign(concept=concept, config=label))
            run.write_table("results.csv", pd.DataFrame(rows))
        alignment = pd.concat([p for p in per_files if p.concept.iloc[0] == concept])
        first = f"align_{next(iter(scorers))}"
        alpha_curves(alignment, run.file(Path("curves") / f"{concept}.png"), y=first, title=f"{concept}: alignment vs alpha")
    table = pd.DataFrame(rows)
    run.write_table("alignment.csv", pd.concat(per_files))
    run.write_text("table.md", _markdown(table))
    return table


def _slug(label: str) -> str:
    return label.replace(" ", "_").replace("{", "").replace("}", "").replace("(", "").replace(")", "")


def _markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(lines) + "\n"

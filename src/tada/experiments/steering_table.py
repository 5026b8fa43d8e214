"""The paper's steering table (Table 1): for each concept and steering configuration, an alpha sweep
over evaluation prompts and every column of sec. 4.2 (preservation, delta alignment, smoothness,
audio quality)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tada.audio import Audio
from tada.engine import Site, resolve_sites
from tada.errors import TadaError
from tada.evaluation.metrics import delta_alignment, preservation, smoothness
from tada.evaluation.mir_checks import (
    AXES,
    MIN_SAMPLE_RATE,
    agreement,
    concept_measures,
    measure_files,
    per_alpha,
    preservation_axes,
)
from tada.evaluation.registry import load_embedder
from tada.experiments.alpha_sweep import alpha_sweep, folder_name, load_sweep
from tada.methods.base import methods
from tada.methods.vector import SteeringVector, Units
from tada.models.base import AudioModel
from tada.runs import RunFolder, check_output_dir, content_hash
from tada.runs.distributed import is_main


@dataclass
class EvalSettings:
    """Sizes of one evaluation run. The defaults suit a laptop CPU; :meth:`paper` gives sec. 4.2's.

    alphas/units: the sweep of the vector methods (CAA, SAE, AUSteer: units "norm" or "raw"); every other method
    sweeps its own registered alphas (:meth:`tada.methods.base.MethodInfo.sweep`) unless `method_alphas` names
    them. method_settings: fit settings per method, e.g. ``{"sae": {"sae": "runs/sae"}}`` (SAE needs one).
    mir: measure every file with the concept's MIR measures and the four preservation axes
    (:mod:`tada.evaluation.mir_checks`). protocol: "v1" (Table 1) or "auc" (Table 1 plus the authors' benchmark
    tables, :mod:`tada.evaluation.auc_table`, whose cutoff needs the pci method).
    """

    alphas: list[float] = field(default_factory=lambda: [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    units: Units = "norm"  # alphas as multiples of each vector's frame norm; the paper's are raw
    n_prompts: int = 4
    seeds: list[int] = field(default_factory=lambda: [0])
    steps: int | None = None
    caa_pairs: int | None = 16
    caa_seeds: int = 1
    batch_size: int = 8
    methods: list[str] = field(default_factory=lambda: ["caa"])
    method_alphas: dict[str, list[float]] = field(default_factory=dict)
    method_settings: dict[str, dict] = field(default_factory=dict)
    mir: bool = True
    protocol: str = "v1"

    @classmethod
    def paper(cls) -> "EvalSettings":
        return cls(alphas=[float(a) for a in range(-100, 101, 10)], units="raw", n_prompts=100, steps=60,
                   caa_pairs=None, protocol="auc")

    def check(self) -> None:
        """Refuse an unknown method, protocol or setting before any work."""
        known = methods()
        for name in [*self.methods, *self.method_alphas, *self.method_settings]:
            if name not in known:
                raise TadaError(f"no steering method {name!r}; the methods are {', '.join(known)}")
        if not self.methods:
            raise TadaError("choose at least one steering method")
        if self.protocol not in PROTOCOLS:
            raise TadaError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {self.protocol!r}")
        if self.protocol == "auc" and "pci" not in self.methods:
            raise TadaError("the auc protocol's preservation cutoff is set by prompt injection: add pci to the methods")
        if "sae" in self.methods and "sae" not in self.method_settings.get("sae", {}):
            raise TadaError("the sae method needs a trained SAE: give its folder (--sae DIR; train one with "
                            "`tada sae train`)")

    def sweep(self, method: str, steps: int) -> tuple[list[float], Units]:
        """The alphas (0 included) and their units for one method."""
        if method in self.method_alphas:
            alphas, units = self.method_alphas[method], "raw"
        elif methods()[method].units == "norm":
            alphas, units = self.alphas, self.units
        else:
            alphas, units = methods()[method].sweep(steps), "raw"
        return sorted({0.0, *map(float, alphas)}), units


PROTOCOLS = ("v1", "auc")


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


def method_configurations(method: str, sites: Sequence[Site], functional: Sequence[int],
                          sae_site: int | None = None) -> dict[str, list[int]]:
    """The rows of one method: CAA's three (:func:`configurations`), the SAE's one site (``SAE(7)``), and for
    every other method the functional layers and all layers (``austeer layers {6,7}``, ``austeer all layers``)."""
    if method == "caa":
        return configurations(sites, functional)
    if method == "sae":
        if sae_site is None:
            raise TadaError("the SAE row needs the SAE's site")
        return {f"SAE({sae_site})": [sae_site]}
    chosen = resolve_sites(sites, functional)
    if not chosen:
        raise TadaError("name at least one functional layer")
    return {f"{method} layers {{{','.join(map(str, chosen))}}}": chosen, f"{method} all layers": list(range(len(sites)))}


def fit_method(model: AudioModel, method: str, concept, sites: Sequence[int], settings: EvalSettings,
               checkpoint: Path | None = None):
    """Fit `method` on `sites` with the run's shared sizes (steps, pairs, seeds, batch) where its fit takes
    them, and its own settings from ``settings.method_settings``; `checkpoint` for a resumable training."""
    import inspect

    fit = methods()[method].cls.fit
    params = inspect.signature(fit).parameters
    shared = {"steps": settings.steps, "n_pairs": settings.caa_pairs, "seeds": settings.caa_seeds,
              "batch_size": settings.batch_size, "checkpoint": checkpoint}
    kw = {k: v for k, v in shared.items() if k in params}
    kw.update(settings.method_settings.get(method, {}))
    return fit(model, concept, sites=list(sites), **kw)


def sweep_metrics(index: pd.DataFrame, audio: Audio, queries: Sequence[str], scorers: dict, lpaps=None,
                  fad_embed=None, aesthetics=None, concept: str | None = None,
                  mir: bool = False) -> tuple[dict, pd.DataFrame]:
    """Every column of Table 1 for one finished alpha sweep, and the per-file table (alignment per scorer; with
    `mir`, the concept's MIR measures and the preservation axes, and their agreement in the row)."""
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
    if aesthetics is not None:  # every file scored once: Table 1 averages the steered ones, the auc protocol all
        for axis, values in aesthetics.score(audio).items():
            per_file[axis] = values.float().numpy()
            row[axis] = float(per_file.loc[per_file.alpha != 0, axis].mean())
    if mir and audio.sample_rate < MIN_SAMPLE_RATE:
        warnings.warn(f"MIR checks skipped: the audio's sample rate {audio.sample_rate} Hz is below "
                      f"{MIN_SAMPLE_RATE} Hz, too low for chroma, pitch and beat tracking", stacklevel=2)
    elif mir:
        measures = concept_measures(concept or "")
        per_file = pd.concat([per_file, measure_files(audio, measures), preservation_axes(index, audio)], axis=1)
        row.update(agreement(per_file, measures, [f"align_{n}" for n in scorers]))
        steered_rows = per_file[per_file.alpha != 0]
        row.update({f"mir_{axis}": float(steered_rows[axis].mean()) for axis in AXES})
    return row, per_file


def steering_table(model: AudioModel, concepts: Sequence[str], functional: dict[str, Sequence[int]] | Sequence[int],
                   out: str | Path, prompts: Sequence[str] | None = None, scorers: dict | None = None,
                   settings: EvalSettings | None = None, lpaps=None, fad_embed="scorer",
                   aesthetics=None, sae_vectors: dict[str, SteeringVector] | None = None, catalogue=None,
                   overwrite: bool = False, preservation_distance=None) -> pd.DataFrame:
    """Run Table 1 for `concepts` on `model` into `out` (resumable: artifacts and WAV files are reused).

    functional: the functional layers (one list for every concept, or per concept, e.g. from
        ``LayerImpact.top``); each method of ``settings.methods`` gets its rows (:func:`method_configurations`).
    sae_vectors: optional ``{concept: SAE steering vector}`` added as an ``SAE(site)`` row.
    scorers: ``{name: Scorer}`` for alignment (default: the model's default scorer).
    fad_embed: FAD's embedding: "scorer" (the first scorer's ``embed_audio``), a name for
        ``tada.evaluation.registry.load_embedder`` ("vggish", "clap", ...), any ``Embedder``, or None to skip FAD.
    preservation_distance: the auc protocol's distance (``distance(a, b) -> (B,)``; default the model's, see
        ``tada.evaluation.registry.default_preservation_name``).
    Writes results.csv, table.md, alignment.csv, curves/<concept>.png and index.html (the curves and a player
    with a dial over the strengths per sweep row) (with ``settings.mir`` also mir.csv,
    the per-alpha means of the MIR measures and axes; with the auc protocol steering_metrics.csv in the
    authors' layout and protocol/tables.md) into a :class:`~tada.runs.RunFolder`: a rerun with other settings
    refuses (or starts clean with `overwrite`).
    """
    from tada.concepts import load_catalogue, load_eval_prompts
    from tada.evaluation.registry import default_scorer
    from tada.experiments.protocol_results import cell_name, quality_results
    from tada.methods.base import load
    from tada.report.html import sweep_section, write_report
    from tada.report.plots import alpha_curves

    settings = settings or EvalSettings()
    settings.check()
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
    sae_site = _sae_site(settings) if "sae" in settings.methods else None
    layer_sets = {c: {m: method_configurations(m, model.sites, functional[c] if isinstance(functional, dict)
                                               else functional, sae_site) for m in settings.methods}
                  for c in concepts}
    steps = settings.steps or model.default_steps
    sweeps = {m: settings.sweep(m, steps) for m in settings.methods}
    if settings.protocol == "auc" and preservation_distance is None:
        from tada.evaluation.registry import (
            default_preservation_name,
            load_preservation,
        )

        preservation_distance = load_preservation(default_preservation_name(model))
    run = RunFolder(out, "steering-table", {
        "model": model.name, "concepts": list(concepts), "configurations": layer_sets,
        "concept_definitions": content_hash([repr(c) for c in chosen.values()]),
        "sweeps": sweeps, "prompts": content_hash(prompts), "seeds": settings.seeds,
        "steps": steps, "caa_pairs": settings.caa_pairs, "caa_seeds": settings.caa_seeds,
        "batch_size": settings.batch_size, "method_settings": settings.method_settings, "scorers": list(scorers),
        "sae_vectors": {k: v.content_hash() for k, v in (sae_vectors or {}).items()},
        "lpaps": lpaps is not None, "fad": fad_embed is not None, "aesthetics": aesthetics is not None,
        "mir": settings.mir, "protocol": settings.protocol,
        "preservation": getattr(preservation_distance, "name", None if preservation_distance is None else "custom")},
        overwrite=overwrite)
    out = run.path
    rows, per_files, protocol_rows, quality_rows, sections = [], [], [], [], []
    for concept in concepts:
        c = chosen[concept]
        artifacts: dict[str, tuple] = {}
        for method, configs in layer_sets[concept].items():
            for label, sites in configs.items():
                name = Path("vectors") / f"{concept}-{folder_name(label)}"
                artifacts[label] = (run.load_or_fit(
                    name.with_suffix(".safetensors"),
                    lambda m=method, s=sites, n=name: fit_method(model, m, c, s, settings, run.file(n.with_suffix(".ckpt"))),
                    lambda path: load(path, model=model)), *sweeps[method])
        if sae_vectors and concept in sae_vectors:
            sae_vec = sae_vectors[concept]
            artifacts[f"SAE({','.join(map(str, sae_vec.sites))})"] = (sae_vec, settings.alphas, settings.units)
        for label, (artifact, alphas, units) in artifacts.items():
            folder = out / concept / folder_name(label)
            alpha_sweep(model, artifact, prompts, alphas, folder, seeds=settings.seeds, steps=settings.steps,
                        batch_size=settings.batch_size, overwrite=overwrite, units=units)
            index, audio = load_sweep(folder)
            row, per_file = sweep_metrics(index, audio, c.queries.positive, scorers, lpaps, fad_embed, aesthetics,
                                          concept=concept, mir=settings.mir)
            rows.append({"concept": concept, "config": label, "sites": ",".join(map(str, artifact.sites)), **row})
            per_files.append(per_file.assign(concept=concept, config=label))
            sections.append(sweep_section(f"{concept}: {label} (alphas in {units} units; under each player its "
                                          f"{next(iter(scorers))} alignment)", per_file, folder, out,
                                          f"align_{next(iter(scorers))}"))
            if settings.protocol == "auc":
                protocol_rows.append(_protocol_rows(per_file, index, audio, concept, label, scorers,
                                                    preservation_distance, settings.mir))
                if aesthetics is not None:
                    quality_rows.append(quality_results(per_file, cell=cell_name(label), concept=concept))
            run.write_table("results.csv", pd.DataFrame(rows))
        alignment = pd.concat([p for p in per_files if p.concept.iloc[0] == concept])
        first = f"align_{next(iter(scorers))}"
        alpha_curves(alignment, run.file(Path("curves") / f"{concept}.png"), y=first, title=f"{concept}: alignment vs alpha")
    table = pd.DataFrame(rows)
    everything = pd.concat(per_files)
    run.write_table("alignment.csv", everything)
    if settings.mir:
        columns = [c for c in everything.columns if c.startswith("mir_") or c in AXES]
        means = [per_alpha(g, columns).assign(concept=k[0], config=k[1])
                 for k, g in everything.groupby(["concept", "config"], sort=False)]
        run.write_table("mir.csv", pd.concat(means, ignore_index=True)[["concept", "config", "alpha", *columns]])
    run.write_text("table.md", _markdown(table))
    if is_main():
        write_report(out, f"tada eval: {model.name}", [(f"{c}: alignment against alpha", out / "curves" / f"{c}.png")
                                                        for c in concepts], sections,
                     f"{len(prompts)} prompts x {len(settings.seeds)} seeds; the table is table.md, every number per "
                     "file is in alignment.csv. Each row's dial switches its player between the sweep's strengths.")
    if settings.protocol == "auc":
        _write_protocol(run, pd.concat(protocol_rows, ignore_index=True),
                        pd.concat(quality_rows, ignore_index=True) if quality_rows else None)
    return table


def _sae_site(settings: EvalSettings) -> int:
    from tada.sae.model import TopKSAE

    sae = settings.method_settings["sae"]["sae"]
    sae = sae if isinstance(sae, TopKSAE) else TopKSAE.load(sae)
    site = (sae.cfg.source or {}).get("site")
    if site is None:
        raise TadaError("the SAE records no site it was trained on (cfg.json source.site); retrain it with "
                        "`tada sae train`")
    return int(site)


def _protocol_rows(per_file: pd.DataFrame, index: pd.DataFrame, audio: Audio, concept: str, label: str,
                   scorers: dict, distance, mir: bool) -> pd.DataFrame:
    """The sweep's rows of the authors' results layout: axis "lpaps" by `distance`, and with `mir` one axis per
    MIR preservation axis; the alignment columns are muqt/clap for the scorers of those names, else the
    scorer's own name."""
    from tada.experiments.protocol_results import (
        cell_name,
        sweep_distances,
        sweep_results,
    )

    alignments = {{"muq": "muqt"}.get(n, n): f"align_{n}" for n in scorers}
    cell = cell_name(label)
    frames = [sweep_results(per_file, cell=cell, concept=concept, alignments=alignments,
                            distances=sweep_distances(index, audio, distance), axis="lpaps")]
    if mir:
        for axis in AXES:
            means = per_file.groupby(per_file["alpha"].astype(float))[axis].mean()
            frames.append(sweep_results(per_file, cell=cell, concept=concept, alignments=alignments,
                                        distances=means.to_dict(), axis=axis))
    return pd.concat(frames, ignore_index=True)


def _write_protocol(run: RunFolder, results: pd.DataFrame, quality: pd.DataFrame | None) -> None:
    """steering_metrics.csv (and quality_metrics.csv) in the authors' layout, and their tables per axis."""
    from tada.evaluation.auc_table import benchmark_tables

    run.write_table("steering_metrics.csv", results)
    if quality is not None:
        run.write_table("quality_metrics.csv", quality)
    for axis in results["axis"].unique():
        tables = benchmark_tables(results, quality if axis == "lpaps" else None, axis=axis)
        stem = "tables" if axis == "lpaps" else f"tables_{axis}"
        run.write_text(Path("protocol") / f"{stem}.md", tables.to_markdown())
        run.write_text(Path("protocol") / f"{stem}.tex", tables.to_latex())
        run.write_table(Path("protocol") / f"{stem}.csv", tables.to_frame())


def _markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(lines) + "\n"

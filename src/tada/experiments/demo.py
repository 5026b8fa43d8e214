"""`tada demo`: the whole method on the embedded toy model, in minutes on a laptop CPU.

1. localize two concepts by activation patching (eq. 9) -> heatmap;
2. fit a CAA vector (eq. 2) on each concept's two most functional layers;
3. steer three prompts over an alpha sweep with ReNorm (eq. 3) -> WAV files and alignment curves;
4. write an HTML report with the figures and an audio player per prompt and alpha.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tada.experiments.alpha_sweep import alpha_sweep, load_sweep
from tada.methods.vector import frame_norm
from tada.runs import RunFolder, check_output_dir, content_hash

DEMO_PROMPTS = ["a calm piano melody", "an energetic techno track with drums", "a jazz tune with a trumpet"]


def run_demo(out: str | Path = "tada-demo", model=None, concepts: Sequence[str] = ("tempo", "mood"),
             n_pairs: int = 3, seeds: int = 1, caa_pairs: int = 8, prompts: Sequence[str] = DEMO_PROMPTS,
             alpha_units: Sequence[float] = (-2, -1, 0, 1, 2), steps: int | None = None, top: int = 2,
             n_boot: int = 200, catalogue=None, overwrite: bool = False) -> Path:
    """Run the demo into `out` (a :class:`~tada.runs.RunFolder`) and return the path of its index.html.
    Every stage resumes; a rerun with other settings refuses, or starts clean with `overwrite`."""
    import tada
    from tada.concepts import load_catalogue
    from tada.evaluation.registry import default_scorer
    from tada.methods.caa import fit
    from tada.methods.vector import SteeringVector
    from tada.report.html import sweep_section, write_report
    from tada.report.plots import alpha_curves

    catalogue = catalogue or load_catalogue()
    chosen = {c: catalogue[c] for c in concepts}  # unknown names fail here, before any work
    prompts = list(prompts)
    check_output_dir(out)
    model = model or tada.load("toy")
    run = RunFolder(out, "demo", {"model": model.name, "concepts": list(concepts), "n_pairs": n_pairs, "seeds": seeds,
                                  "caa_pairs": caa_pairs, "prompts": prompts, "alpha_units": list(alpha_units),
                                  "steps": steps or model.default_steps, "top": top, "n_boot": n_boot,
                                  "concept_definitions": content_hash([repr(c) for c in chosen.values()])},
                    overwrite=overwrite)
    out = run.path
    scorer = default_scorer(model)
    impact = tada.localize(model, list(concepts), n_pairs=n_pairs, seeds=seeds, steps=steps, scorer=scorer,
                           out=out / "localize", n_boot=n_boot, catalogue=catalogue)
    figures = [("Impact (eq. 9) of each cross-attention layer", out / "localize" / "heatmap.png")]
    sections, summary = [], []
    for concept in concepts:
        layers = impact.top(top, concept=concept)
        vec = run.load_or_fit(Path("vectors") / f"{concept}.safetensors",
                              lambda: fit(model, chosen[concept], layers, seeds=1, steps=steps, n_pairs=caa_pairs),
                              lambda path: SteeringVector.load(path, model=model))
        unit = frame_norm(model, vec.sites, prompts[:1], steps)
        alphas = [round(a * unit, 3) for a in alpha_units]
        folder = out / "steer" / concept
        alpha_sweep(model, vec, prompts, alphas, folder, seeds=[0], steps=steps)
        index, audio = load_sweep(folder)
        queries = chosen[concept].queries
        sim = scorer.similarity(audio, list(queries.positive) + list(queries.negative))
        npos = len(queries.positive)
        index["alignment"] = (sim[:, :npos].mean(1) - sim[:, npos:].mean(1)).numpy()
        run.write_table(Path("steer") / concept / "alignment.csv", index)
        png = alpha_curves(index.assign(config=[p[:40] for p in index.prompt]), out / "curves" / f"{concept}.png",
                           hue="config", title=f"{concept}: steering on layers {vec.sites}")
        figures.append((f"{concept}: concept score (positive minus negative queries) against alpha", png))
        sections.append(sweep_section(f"{concept} steered on layers {vec.sites} (alpha in units of {unit:.2f}, "
                                      "the median frame norm)", index, folder, out, "alignment"))
        by_alpha = index.groupby("alpha").alignment.mean()
        summary.append({"concept": concept, "layers": vec.sites, "alpha_unit": unit,
                        "alignment_at_min_alpha": by_alpha.iloc[0], "alignment_at_max_alpha": by_alpha.iloc[-1],
                        "monotonic": bool(np.all(np.diff(by_alpha.to_numpy()) >= 0))})
    run.write_table("summary.csv", pd.DataFrame(summary))
    notes = (f"Model {model.name} ({len(model.sites)} cross-attention layers). Concept scores come from the "
             f"{getattr(scorer, 'name', 'default')} scorer. Files: localize/ (scores, Impact table), vectors/, "
             "steer/<concept>/audio/, summary.csv.")
    return write_report(out, "tada demo: localize, then steer", figures, sections, notes)

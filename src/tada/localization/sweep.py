"""Localization by activation patching (sec. 3, fig. 2) and the layer Impact of eq. 9.

For one counterfactual pair (P_c, P_c~) and one seed, a single batch of L + 2 rows shares the initial
noise: row 0 is generated from P_c~ at every site, row 1 from P_c at every site, and row 2 + l from
P_c~ everywhere except site l, which attends to P_c's context (keys and values ``c W_K``, ``c W_V``).
All rows are generated from the prompt P_c~; the concept reaches rows 1.. only through patched
contexts, so the three terms of eq. 9 come from one batched generation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from tada.engine import PatchContext
from tada.errors import TadaError
from tada.localization.impact import SOURCE, TARGET, LayerImpact, impact_table
from tada.models.base import AudioModel, check_prompts, seed_list
from tada.progress import progress_bar


def _units(n_pairs: int, seeds: Sequence[int]) -> list[tuple[int, int]]:
    return [(p, s) for p in range(n_pairs) for s in seeds]


def sweep_rows(n_layers: int, layers: Sequence[int] | None = None) -> list[tuple[int, list[int] | None]]:
    """The rows of one unit: (layer label, patched sites), layer label SOURCE, TARGET or the site index."""
    layers = range(n_layers) if layers is None else layers
    return [(SOURCE, []), (TARGET, list(range(n_layers)))] + [(l, [l]) for l in layers]


def run_sweep(model: AudioModel, scorer, concept: str, pairs: Sequence[tuple[str, str]], queries: Sequence[str],
              seeds: Sequence[int] = (0,), steps: int | None = None, guidance: float | None = None,
              layers: Sequence[int] | None = None, max_batch: int = 16, scores_path: str | Path | None = None,
              desc: str | None = None) -> pd.DataFrame:
    """Score every row of every (pair, seed) unit; with `scores_path`, append each finished unit's rows to
    that CSV as it goes and skip the units already there (a killed run resumes).

    pairs: (P_c, P_c~) prompts. queries: texts describing the concept; a row's `sim` is its mean
    similarity to them under `scorer`.
    """
    if not pairs:
        raise TadaError(f"no counterfactual pairs for concept {concept!r}")
    for pc, pn in pairs:
        check_prompts([pc, pn])
    queries = check_prompts(list(queries))
    if max_batch < 1:
        raise TadaError(f"max_batch must be >= 1; got {max_batch}")
    rows_def = sweep_rows(len(model.sites), layers)
    done = pd.DataFrame()
    if scores_path is not None and Path(scores_path).exists() and Path(scores_path).stat().st_size:
        done = pd.read_csv(scores_path)
        done = done[done.concept == concept]
    finished = set(zip(done.get("pair", []), done.get("seed", [])))
    units = _units(len(pairs), seeds)
    # Batches are a fixed function of the unit list (whole units packed, or one unit split in fixed
    # pieces), so a resumed run computes every unit in the same batch as an uninterrupted one.
    per_batch = max(1, max_batch // len(rows_def))
    blocks = [units[i:i + per_batch] for i in range(0, len(units), per_batch)]
    records: list[dict] = []
    with progress_bar(desc or f"localize {concept}", total=len(units), done=len(finished & set(units))) as bar:
        for block in blocks:
            if all(u in finished for u in block):
                continue
            flat = [(u, label, sites) for u in block for label, sites in rows_def]
            unit_rows: dict[tuple[int, int], list[dict]] = {u: [] for u in block}
            targets = sorted({pairs[u[0]][0] for u in block})
            # Where cross-attention sees padding, the block's prompts are all encoded at one token length.
            with model.common_text_length([p for u in block for p in pairs[u[0]]]):
                enc = model.encode(targets, guidance=guidance)  # once per block, whatever its number of batches
                for start in range(0, len(flat), max_batch):
                    chunk = flat[start:start + max_batch]
                    source = enc.select([targets.index(pairs[u[0]][0]) for u, _, _ in chunk])
                    patch = PatchContext(source, sites=[sites for _, _, sites in chunk])
                    audio = model.generate([pairs[u[0]][1] for u, _, _ in chunk], [u[1] for u, _, _ in chunk],
                                           steps=steps, guidance=guidance, interventions=[patch])
                    sims = scorer.similarity(audio, queries).mean(dim=1)
                    for (u, label, _), sim in zip(chunk, sims.tolist()):
                        unit_rows[u].append({"concept": concept, "pair": u[0], "seed": u[1], "layer": label,
                                             "sim": sim, "target_prompt": pairs[u[0]][0],
                                             "source_prompt": pairs[u[0]][1]})
            for u, rows in unit_rows.items():
                if u in finished:
                    continue
                records += rows
                if scores_path is not None:
                    _append_csv(scores_path, rows)
                bar.advance(1)
    new = pd.DataFrame(records)
    return pd.concat([done, new], ignore_index=True) if len(done) else new


def _append_csv(path: str | Path, rows: list[dict]) -> None:
    path = Path(path)
    header = not path.exists() or path.stat().st_size == 0
    pd.DataFrame(rows).to_csv(path, mode="a", header=header, index=False)


def localize(model: AudioModel, concept: str | Sequence[str] = "tempo", n_pairs: int = 8, seeds: int | Sequence[int] = 2,
             steps: int | None = None, guidance: float | None = None, scorer=None, captions: str | Path | None = None,
             out: str | Path | None = None, max_batch: int = 16, layers: Sequence[int] | None = None,
             n_boot: int = 1000, catalogue=None) -> LayerImpact:
    """Localize one or more catalogue concepts on `model` (sec. 4.1) and return their LayerImpact.

    Pairs come from the caption corpus (`captions`, a CSV with a `caption` column; the shipped one by
    default) through the concept's keywords and replacement rules. With `out`, the run folder gets
    manifest.json, pairs.csv, scores.csv (written as it goes), impact.csv and heatmap.png; running again
    with the same folder resumes and ends with the same table.
    """
    import tada
    from tada.concepts import build_pairs, load_captions, load_catalogue
    from tada.evaluation.scorers import default_scorer

    concepts = [concept] if isinstance(concept, str) else list(concept)
    if not concepts:
        raise TadaError("choose at least one concept to localize")
    catalogue = catalogue or load_catalogue()
    seeds = seed_list(seeds)
    scorer = scorer or default_scorer(model)
    caption_list = load_captions(captions)  # {id: caption}
    out = Path(out) if out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        manifest = {"model": model.name, "concepts": concepts, "n_pairs": n_pairs, "seeds": seeds,
                    "steps": steps or model.default_steps, "guidance": guidance if guidance is not None else model.default_guidance,
                    "layers": list(layers) if layers is not None else list(range(len(model.sites))),
                    "scorer": getattr(scorer, "name", type(scorer).__name__), "catalogue_version": catalogue.version,
                    "captions": str(captions) if captions else "shipped", "library_version": tada.__version__}
        _check_manifest(out / "manifest.json", manifest)
    frames, pair_rows = [], []
    for name in concepts:
        c = catalogue[name]
        pairs = build_pairs(c, caption_list, n=n_pairs).pairs
        pair_list = [(p.positive, p.negative) for p in pairs]
        pair_rows += [{"concept": name, "pair": i, "target": t, "source": s} for i, (t, s) in enumerate(pair_list)]
        frames.append(run_sweep(model, scorer, name, pair_list, c.queries.positive, seeds, steps, guidance,
                                layers, max_batch, out / "scores.csv" if out else None))
    result = impact_table(pd.concat(frames, ignore_index=True), n_boot=n_boot)
    if out is not None:
        pd.DataFrame(pair_rows).to_csv(out / "pairs.csv", index=False)
        result.to_csv(out / "impact.csv")
        result.heatmap(out / "heatmap.png", title=f"Impact (eq. 9) on {model.name}")
    return result


def _check_manifest(path: Path, manifest: dict) -> None:
    """Write the manifest, or check that a resumed run uses the same settings."""
    if path.exists():
        old = json.loads(path.read_text())
        diff = {k: (old.get(k), v) for k, v in manifest.items() if k != "library_version" and old.get(k) != v}
        if diff:
            raise TadaError(
                f"{path.parent} holds a run with other settings ({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items())}); "
                "use another --out folder or the same settings to resume"
            )
    path.write_text(json.dumps(manifest, indent=2))

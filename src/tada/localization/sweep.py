"""Localization by activation patching (sec. 3, fig. 2) and the layer Impact of eq. 9.

For one counterfactual pair (P_c, P_c~) and one seed, a single batch of L + 2 rows shares the initial
noise: row 0 is generated from P_c~ at every site, row 1 from P_c at every site, and row 2 + l from
P_c~ everywhere except site l, which attends to P_c's context (keys and values ``c W_K``, ``c W_V``).
All rows are generated from the prompt P_c~; the concept reaches rows 1.. only through patched
contexts, so the three terms of eq. 9 come from one batched generation.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from tada.engine import PatchContext, resolve_sites
from tada.errors import TadaError
from tada.localization.impact import SOURCE, TARGET, LayerImpact, impact_table
from tada.models.base import AudioModel, check_prompts, seed_list
from tada.progress import progress_bar
from tada.runs import RunFolder, check_output_dir, content_hash
from tada.runs.distributed import barrier, is_main, my_share, world_size


def _units(n_pairs: int, seeds: Sequence[int]) -> list[tuple[int, int]]:
    return [(p, s) for p in range(n_pairs) for s in seeds]


def sweep_rows(n_layers: int, layers: Sequence[int] | None = None, window: int = 1) -> list[tuple[int, list[int]]]:
    """The rows of one unit: (layer label, patched sites), layer label SOURCE, TARGET or a site index. With
    `window` w, the row labelled l patches the w consecutive sites l .. l + w - 1 together (windows that would
    run past the last site are left out), so a concept carried by several neighbouring layers can show."""
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= n_layers:
        raise TadaError(f"window must be a whole number of layers from 1 to {n_layers}; got {window!r}")
    layers = range(n_layers) if layers is None else layers
    windows = [(l, list(range(l, l + window))) for l in layers if l + window <= n_layers]
    if not windows:
        raise TadaError(f"no window of {window} layers starts at the layers {list(layers)} of {n_layers}")
    return [(SOURCE, []), (TARGET, list(range(n_layers)))] + windows


SCORE_COLUMNS = ("concept", "pair", "seed", "layer", "sim", "target_prompt", "source_prompt")


def run_sweep(model: AudioModel, scorer, concept: str, pairs: Sequence[tuple[str, str]], queries: Sequence[str],
              seeds: Sequence[int] = (0,), steps: int | None = None, guidance: float | None = None,
              layers: Sequence[int] | None = None, max_batch: int = 16, run: RunFolder | None = None,
              desc: str | None = None, window: int = 1, pair_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Score every row of every (pair, seed) unit (of the pairs `pair_ids` only, if given); with `run`, each
    finished unit is appended to the run folder as it finishes and units already there are skipped (a killed
    run resumes).

    pairs: (P_c, P_c~) prompts. queries: texts describing the concept; a row's `sim` is its mean
    similarity to them under `scorer`. A unit's key holds its concept, prompts, seed and layers, so a unit
    is reused only for exactly that work.
    """
    if not pairs:
        raise TadaError(f"no counterfactual pairs for concept {concept!r}")
    for pc, pn in pairs:
        check_prompts([pc, pn])
    queries = check_prompts(list(queries))
    if max_batch < 1:
        raise TadaError(f"max_batch must be >= 1; got {max_batch}")
    layers = resolve_sites(model.sites, layers, model.name)
    rows_def = sweep_rows(len(model.sites), layers, window)
    units = [u for u in _units(len(pairs), seeds) if pair_ids is None or u[0] in set(pair_ids)]
    extra = [window] if window != 1 else []  # window 1 keeps the keys of a plain sweep
    keys = {u: content_hash("localize", concept, pairs[u[0]], u[1], layers, list(queries), *extra) for u in units}
    stored = run.units() if run is not None else {}
    done = {u: stored[keys[u]]["rows"] for u in units if keys[u] in stored}
    # Batches are a fixed function of the unit list (whole units packed, or one unit split in fixed
    # pieces), so a resumed run computes every unit in the same batch as an uninterrupted one.
    per_batch = max(1, max_batch // len(rows_def))
    blocks = [units[i:i + per_batch] for i in range(0, len(units), per_batch)]
    if world_size() > 1 and run is None:
        raise TadaError("a distributed sweep needs a run folder (out=...) to merge the processes' units in")
    mine = [block for _, block in my_share(blocks)]
    with progress_bar(desc or f"localize {concept}", total=sum(map(len, mine)),
                      done=sum(u in done for b in mine for u in b)) as bar:
        for block in mine:
            if all(u in done for u in block):
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
                if u in done:
                    continue
                done[u] = rows
                if run is not None:
                    run.append({"key": keys[u], "rows": rows})
                bar.advance(1)
    if run is not None and world_size() > 1:
        barrier()
        stored = run.units()
        done = {u: stored[keys[u]]["rows"] for u in units}
    return pd.DataFrame([r for u in units for r in done[u]], columns=list(SCORE_COLUMNS))  # one order, fresh or read back


class AdaptiveResult(NamedTuple):
    """What an adaptive sweep did: its scores (rows of the units it ran), why it stopped, its generations."""

    scores: pd.DataFrame
    stopped: str
    generations: int
    full_generations: int


def adaptive_sweep(model: AudioModel, scorer, concept: str, pairs: Sequence[tuple[str, str]], queries: Sequence[str],
                   seeds: Sequence[int] = (0,), steps: int | None = None, guidance: float | None = None,
                   layers: Sequence[int] | None = None, max_batch: int = 16, run: RunFolder | None = None,
                   top_k: int = 2, budget: int | None = None, round_pairs: int = 2, n_boot: int = 1000,
                   window: int = 1, min_units: int = 8, order_seed: int | None = 0) -> AdaptiveResult:
    """Localization in rounds of `round_pairs` pairs (all their seeds). After each round, Impact and its
    bootstrap interval (:func:`~tada.localization.impact.impact_table`, each layer over the units that patched
    it) decide which layers are still contenders for the top `top_k`: a layer whose upper bound falls below the
    k-th best lower bound is no longer patched. It stops when only the top k are left ("separated"), when the
    next round would pass `budget` generations ("budget"), or when the pairs run out ("all pairs"). The rows of
    the units it ran are those of the full sweep (same keys, so either resumes the other's units).

    min_units: no layer is dropped before this many (pair, seed) units have patched it (a bootstrap interval of
    a few units is too narrow to trust). order_seed: take the pairs in an order shuffled by this seed (pair lists
    are often grouped by style, so their first rounds are not a sample of the rest); None keeps their order."""
    layers = resolve_sites(model.sites, layers, model.name)
    contenders, frames, used = list(layers), [], 0
    full = len(pairs) * len(seeds) * len(sweep_rows(len(model.sites), layers, window))
    stopped = "all pairs"
    order = list(range(len(pairs))) if order_seed is None else \
        np.random.default_rng(order_seed).permutation(len(pairs)).tolist()
    for start in range(0, len(pairs), round_pairs):
        ids = sorted(order[start:start + round_pairs])
        cost = len(ids) * len(seeds) * len(sweep_rows(len(model.sites), contenders, window))
        if budget is not None and used + cost > budget:
            stopped = "budget"
            break
        frames.append(run_sweep(model, scorer, concept, pairs, queries, seeds, steps, guidance, contenders, max_batch,
                                run, desc=f"localize {concept} (adaptive, round {start // round_pairs + 1})", window=window,
                                pair_ids=ids))
        used += cost
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # flags of a partial table; the final table warns
            table = impact_table(pd.concat(frames, ignore_index=True), n_boot=n_boot).table
        table = table[table.layer.isin(contenders)].sort_values("impact", ascending=False, kind="stable")
        if len(table) <= top_k or table.impact.isna().all() or (start + len(ids)) * len(seeds) < min_units:
            continue
        kth_low = table.ci_low.iloc[top_k - 1]
        contenders = sorted(int(l) for l, hi, rank in zip(table.layer, table.ci_high, range(len(table)))
                            if rank < top_k or not hi < kth_low)
        if len(contenders) <= top_k:
            stopped = "separated"
            break
    if not frames:
        raise TadaError(f"a budget of {budget} generations does not pay for one round "
                        f"({round_pairs} pairs x {len(seeds)} seeds x {len(layers) + 2} rows)")
    return AdaptiveResult(pd.concat(frames, ignore_index=True), stopped, used, full)


def localize(model: AudioModel, concept: str | Sequence[str] = "tempo", n_pairs: int = 8, seeds: int | Sequence[int] = 2,
             steps: int | None = None, guidance: float | None = None, scorer=None, captions: str | Path | None = None,
             out: str | Path | None = None, max_batch: int = 16, layers: Sequence[int] | None = None,
             n_boot: int = 1000, catalogue=None, overwrite: bool = False, window: int = 1,
             adaptive: dict | None = None) -> LayerImpact:
    """Localize one or more catalogue concepts on `model` (sec. 4.1) and return their LayerImpact.

    Pairs come from the caption corpus (`captions`, a CSV with a `caption` column; the shipped one by
    default) through the concept's keywords and replacement rules. With `out`, the run folder
    (:class:`~tada.runs.RunFolder`) gets manifest.json, the finished units, pairs.csv, scores.csv,
    impact.csv and heatmap.png; running again with the same folder and settings resumes and ends with the
    same table, with other settings it refuses (or starts clean with `overwrite`). `window` w > 1 patches w
    consecutive layers per row (:func:`sweep_rows`); the table's `layer` is each window's first layer and its
    `sites` column names the window. `adaptive`: run :func:`adaptive_sweep` with these settings (e.g.
    ``{"top_k": 2, "budget": 400}``) instead of the full sweep; why each concept stopped is in ``result.adaptive``
    and adaptive.csv.
    """
    from tada.concepts import build_pairs, load_captions, load_catalogue
    from tada.evaluation.registry import default_scorer

    concepts = [concept] if isinstance(concept, str) else list(concept)
    if not concepts:
        raise TadaError("choose at least one concept to localize")
    catalogue = catalogue or load_catalogue()
    chosen = [catalogue[name] for name in concepts]  # unknown names fail here, before any work
    seeds = seed_list(seeds)
    layers = resolve_sites(model.sites, layers, model.name)
    caption_list = load_captions(captions)  # {id: caption}
    run = None
    if out is not None:
        check_output_dir(out)
        scorer = scorer or default_scorer(model)
        settings = {"model": model.name, "concepts": concepts, "n_pairs": n_pairs, "seeds": seeds,
                    "steps": steps or model.default_steps,
                    "guidance": guidance if guidance is not None else model.default_guidance, "layers": layers,
                    **({"window": window} if window != 1 else {}), **({"adaptive": adaptive} if adaptive else {}),
                    "scorer": getattr(scorer, "name", type(scorer).__name__),
                    "concept_definitions": content_hash([repr(c) for c in chosen]),
                    "captions": content_hash(sorted(caption_list.items()))}
        run = RunFolder(out, "localize", settings, overwrite=overwrite)
    scorer = scorer or default_scorer(model)
    frames, pair_rows, stops = [], [], []
    for name, c in zip(concepts, chosen):
        pairs = build_pairs(c, caption_list, n=n_pairs).pairs
        if len(pairs) < n_pairs:
            warnings.warn(f"concept {name!r}: the caption corpus yields {len(pairs)} counterfactual pairs, fewer than "
                          f"the {n_pairs} asked for; localizing on {len(pairs)}", stacklevel=2)
        pair_list = [(p.positive, p.negative) for p in pairs]
        pair_rows += [{"concept": name, "pair": i, "target": t, "source": s} for i, (t, s) in enumerate(pair_list)]
        if adaptive is None:
            frames.append(run_sweep(model, scorer, name, pair_list, c.queries.positive, seeds, steps, guidance,
                                    layers, max_batch, run, window=window))
            continue
        res = adaptive_sweep(model, scorer, name, pair_list, c.queries.positive, seeds, steps, guidance, layers,
                             max_batch, run, n_boot=n_boot, window=window, **adaptive)
        frames.append(res.scores)
        stops.append({"concept": name, "stopped": res.stopped, "generations": res.generations,
                      "full_sweep_generations": res.full_generations})
    scores = pd.concat(frames, ignore_index=True)
    result = impact_table(scores, n_boot=n_boot)
    if stops:
        result.adaptive = pd.DataFrame(stops)
    if window != 1:  # a row's `layer` is its window's first layer; `sites` spells the window out
        result.table.insert(2, "sites", [f"{l}-{l + window - 1}" for l in result.table["layer"]])
    if run is not None and is_main():
        run.write_table("pairs.csv", pd.DataFrame(pair_rows))
        run.write_table("scores.csv", scores)
        run.write_table("impact.csv", result.table)
        if stops:
            run.write_table("adaptive.csv", result.adaptive)
        title = f"Impact (eq. 9) on {model.name}" + (f", windows of {window} layers (first layer shown)"
                                                      if window != 1 else "")
        result.heatmap(run.file("heatmap.png"), title=title)
    barrier()
    return result

"""Localization at a fraction of the cost, measured side by side on one model:

* full: the full sweep (every pair, seed and layer) per concept, the reference top 2;
* adaptive: the adaptive sweep (rounds of --round-pairs pairs, layers dropped by their bootstrap bounds once
  --min-units units have patched them, pairs shuffled with --order-seed) on the same units; it reads the full sweep's units from the same run folder (same keys), so it costs nothing
  here, and the generations it *would* have run are counted;
* fewer steps: the full sweep at a quarter of the denoising steps.

Prints, per concept: the full sweep's top 2, the adaptive top 2, whether they agree, the share of the full
sweep's generations the adaptive one used and why it stopped; and the quarter-step top 2.

    python benchmarks/localize_adaptive.py --model toy --concepts tempo mood vocal_gender piano drums --pairs 8 --seeds 2
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toy")
    parser.add_argument("--concepts", nargs="+", default=["tempo", "mood", "vocal_gender", "piano", "drums"])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (the model's default if omitted)")
    parser.add_argument("--round-pairs", type=int, default=2)
    parser.add_argument("--min-units", type=int, nargs="+", default=[0],
                        help="adaptive: units before a layer may be dropped (several: one adaptive run each)")
    parser.add_argument("--order-seed", type=int, default=None, help="adaptive: shuffle the pairs with this seed")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-localize-adaptive"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    import tada
    from tada.concepts import build_pairs, load_captions, load_catalogue
    from tada.evaluation.registry import default_scorer
    from tada.localization import impact_table
    from tada.localization.sweep import adaptive_sweep, run_sweep
    from tada.runs import RunFolder

    model, catalogue, captions = tada.load(args.model), load_catalogue(), load_captions()
    scorer = default_scorer(model)
    steps = args.steps or model.default_steps
    seeds = list(range(args.seeds))
    rows = []
    for quarter in (False, True):
        s = max(1, steps // 4) if quarter else steps
        run = RunFolder(args.out / f"steps{s}", "bench-localize", {"model": model.name, "steps": s, "seeds": seeds,
                                                                   "pairs": args.pairs})
        for name in args.concepts:
            c = catalogue[name]
            pairs = [(p.positive, p.negative) for p in build_pairs(c, captions, n=args.pairs).pairs]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                full = impact_table(run_sweep(model, scorer, name, pairs, c.queries.positive, seeds, s, run=run))
                if quarter:
                    rows.append({"concept": name, "quarter_steps_top2": full.top(2)})
                    continue
                row = {"concept": name, "full_top2": full.top(2)}
                for m in args.min_units:
                    ad = adaptive_sweep(model, scorer, name, pairs, c.queries.positive, seeds, s, run=run, top_k=2,
                                        round_pairs=args.round_pairs, min_units=m, order_seed=args.order_seed)
                    ad_top = impact_table(ad.scores).top(2)
                    row.update({f"adaptive_top2@{m}": ad_top, f"same@{m}": sorted(full.top(2)) == sorted(ad_top),
                                f"share@{m}": round(ad.generations / ad.full_generations, 3), f"stopped@{m}": ad.stopped})
            rows.append(row)
    table = pd.DataFrame(rows).groupby("concept", sort=False).first().reset_index()
    table["quarter_steps_same_top2"] = [sorted(a) == sorted(b) for a, b in zip(table.full_top2,
                                                                                table.quarter_steps_top2)]
    print(f"{model.name}, {args.pairs} pairs x {args.seeds} seeds, {steps} steps (quarter: {max(1, steps // 4)})")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()

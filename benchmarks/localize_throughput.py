"""Generations per second of the batched activation-patching sweep, side by side with:

* plain: plain batched generation of the same prompts at the same batch size (no hooks, no encode);
* naive: a per-layer loop, one generation per patched row (batch 1), as a first implementation would.

Scoring is left out (a constant scorer) so that the three measure generation alone; the three run
interleaved, `--repeats` times, and the medians are compared. Targets: batched >= 0.9x plain and
>= 2x naive.

    python benchmarks/localize_throughput.py --model toy --pairs 2 --batch 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TADA_QUIET", "1")

import tada  # noqa: E402
from tada.engine import PatchContext  # noqa: E402
from tada.localization import run_sweep, sweep_rows  # noqa: E402

PAIRS = [("a fast piano piece with drums", "a slow piano piece with drums"),
         ("a happy jazz tune with a trumpet", "a sad jazz tune with a trumpet"),
         ("techno with a female vocal", "techno with a male vocal"),
         ("a fast reggae song", "a slow reggae song")]


class ConstantScorer:
    name = "constant"

    def similarity(self, audio, texts):
        return torch.zeros(len(audio), len(texts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="toy")
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=None, help="rows per batch (default: one unit, L + 2)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repetitions; medians are printed")
    args = ap.parse_args()
    model = tada.load(args.model)
    pairs = PAIRS[: args.pairs]
    rows = sweep_rows(len(model.sites))
    batch = args.batch or len(rows)
    n = len(pairs) * len(rows)
    print(f"model={args.model} sites={len(model.sites)} pairs={len(pairs)} rows={n} batch={batch} steps={args.steps}")
    model.generate([pairs[0][1]], [0], steps=args.steps)  # warm-up

    prompts = [pn for _, pn in pairs for _ in rows]

    def batched_sweep():
        run_sweep(model, ConstantScorer(), "bench", pairs, ["x"], seeds=[0], steps=args.steps, max_batch=batch)

    def plain_batched():
        for start in range(0, n, batch):
            chunk = prompts[start:start + batch]
            model.generate(chunk, [0] * len(chunk), steps=args.steps)

    def naive_loop():
        for pc, pn in pairs:
            enc = model.encode([pc])
            for _, sites in rows:
                model.generate([pn], [0], steps=args.steps, interventions=[PatchContext(enc, sites=sites)])

    runs = {"batched": batched_sweep, "plain": plain_batched, "naive": naive_loop}
    rates: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            rates[name].append(n / (time.perf_counter() - t0))
    batched, plain, naive = (statistics.median(rates[k]) for k in runs)

    print(f"batched sweep   {batched:8.3f} generations/s")
    print(f"plain batched   {plain:8.3f} generations/s   batched/plain = {batched / plain:.3f}x (target >= 0.9)")
    print(f"naive per layer {naive:8.3f} generations/s   batched/naive = {batched / naive:.3f}x (target >= 2)")


if __name__ == "__main__":
    main()

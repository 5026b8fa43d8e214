"""Cost of every steering method per steered generation, relative to plain generation, on the toy model.

For each registered method: one small fit, then plain and steered generations of the same prompt batch
interleaved (plain, steered, plain, ...) so the machine's drifts hit both alike. Prints per method:

* rows/sample/call: denoiser rows per prompt per denoiser call (plain guided = 2; counted by
  :class:`tada.engine.CountRows` installed after the method's interventions);
* calls: denoiser calls per generation;
* passes x: the method's denoiser rows over plain's (the denoiser work);
* wall x: median wall time of a steered generation over plain's (includes the method's prompt encodings
  and the toy's Griffin-Lim decoding, the same for both);
* fit s: wall seconds of the fit.

    OMP_NUM_THREADS=1 python benchmarks/method_cost.py --steps 10 --reps 5 --batch 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import tada  # noqa: E402
from tada.engine import CountRows  # noqa: E402
from tada.methods import base  # noqa: E402
from tada.sae import SaeConfig, TopKSAE  # noqa: E402

PAIRS = [("fast piano", "slow piano"), ("fast jazz with drums", "slow jazz with drums")]


def fits(model, steps: int, sae_dir: Path) -> dict:
    torch.manual_seed(0)
    TopKSAE(SaeConfig(d_in=model.sites[3].dim, expansion_factor=2, k=4)).save(sae_dir)
    table = {
        "caa": dict(concept=PAIRS, sites=[2, 3], steps=steps),
        "sae": dict(concept=PAIRS, sites=[3], sae=sae_dir, tau=3, steps=steps),
        "austeer": dict(concept=PAIRS, sites=[2, 3], k=16, steps=steps),
        "pci": dict(concept="tempo", sites="all"),
        "text_embedding": dict(concept="tempo", sites=[2, 3]),
        "token_embedding": dict(concept="tempo", sites="all"),
        "freesliders": dict(concept="tempo", sites="all"),
        "freesliders (localized)": dict(method="freesliders", concept="tempo", sites=[2, 3]),
        "concept_sliders": dict(concept="tempo", sites=[2, 3], iterations=20, steps=steps),
    }
    return table


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = tada.load("toy")
    prompts = ["a jazz song", "a calm ambient song", "a rock song", "a folk song"][: args.batch]  # token-embedding adds at "song"
    prompts = (prompts * args.batch)[: args.batch]
    registry = base.methods()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, kw in fits(model, args.steps, Path(tmp) / "sae").items():
            name = kw.pop("method", label)
            if name not in registry:
                continue
            t0 = time.perf_counter()
            art = registry[name].cls.fit(model, **kw)
            fit_s = time.perf_counter() - t0
            alpha = 2 if name == "pci" else 0.5
            plain_t, steer_t = [], []
            plain_count, steer_count = CountRows(), CountRows()
            for rep in range(args.reps + 1):  # the first round warms up and is not timed
                for which in ("plain", "steer"):
                    count = (plain_count if which == "plain" else steer_count) if rep == 0 else CountRows()
                    steer = [art.at(alpha)] if which == "steer" else []
                    t0 = time.perf_counter()  # a steered generation includes building its interventions
                    ivs = [iv for s in steer for iv in s.interventions(model, prompts, args.steps)] + [count]
                    model.generate(prompts, list(range(len(prompts))), steps=args.steps, interventions=ivs)
                    dt = time.perf_counter() - t0
                    if rep:
                        (plain_t if which == "plain" else steer_t).append(dt)
            ratio = statistics.median(s / p for s, p in zip(steer_t, plain_t))
            rows.append((label, steer_count.per_sample, steer_count.calls, steer_count.rows / plain_count.rows,
                         ratio, fit_s))
    print(f"toy model, {args.steps} steps, batch {args.batch}, {args.reps} interleaved reps, "
          f"{torch.get_num_threads()} thread(s)")
    print(f"{'method':<26}{'rows/sample/call':>17}{'calls':>7}{'passes x':>10}{'wall x':>9}{'fit s':>8}")
    for label, per, calls, passes, wall, fit_s in rows:
        print(f"{label:<26}{per:>17.1f}{calls:>7d}{passes:>10.2f}{wall:>9.2f}{fit_s:>8.1f}")


if __name__ == "__main__":
    main()

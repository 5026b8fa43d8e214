"""CLAP-LPAPS at HTSAT-base's widths (the music checkpoint's architecture): agreement with laion_clap, and time.

Make the reference first, with laion_clap, in an environment where it runs (see the docstring of
tests/reference/make_clap_lpaps.py):

    PYTHONPATH=src clap-env/bin/python tests/reference/make_clap_lpaps.py --full-size clap-full-reference
    python benchmarks/clap_lpaps_full_size.py clap-full-reference

It prints, for each clip pair, the largest absolute difference between our per-stage distances and
laion_clap's, the difference of the totals, and our seconds per pair of 10 s windows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from tada.audio import Audio
from tada.evaluation.clap_lpaps import ClapLPAPS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("reference", type=Path, help="folder written by make_clap_lpaps.py --full-size")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    lpaps = ClapLPAPS.from_pretrained(args.reference / "hf")
    load_s = time.perf_counter() - t0
    params = sum(p.numel() for p in lpaps.encoder.parameters()) / 1e6
    meta = json.loads((args.reference / "reference.json").read_text())
    ref = load_file(str(args.reference / "reference.safetensors"))
    print(f"audio tower {params:.0f}M parameters, loaded in {load_s:.1f} s, torch threads {torch.get_num_threads()}")
    worst, seconds = 0.0, []
    for i in range(meta["pairs"]):
        a, b = (Audio(ref[f"{k}{i}"].float()[None, None] / meta["pcm_scale"], meta["sample_rate"]) for k in "ab")
        t0 = time.perf_counter()
        ours = lpaps.stage_distances(a, b)[0]
        seconds.append(time.perf_counter() - t0)
        stage_diff = (ours - ref["stages"][i]).abs().max().item()
        total_diff = abs(ours.sum().item() - ref["lpaps"][i].item())
        worst = max(worst, stage_diff, total_diff)
        print(f"pair {i} ({a.duration:.1f} s): laion_clap {ref['lpaps'][i]:.6f}, ours {ours.sum():.6f}; "
              f"max |stage diff| {stage_diff:.2e}, |total diff| {total_diff:.2e}")
    print(f"largest difference {worst:.2e}; {sum(seconds) / len(seconds):.2f} s per pair of windows")


if __name__ == "__main__":
    main()

"""The MuQ-MuLan port at MuQ-MuLan-large's widths: agreement with the `muq` package, and embedding time.

Make the reference first, with the package, in an environment where it runs (see the docstring of
tests/reference/make_muq_mulan.py):

    muq-env/bin/python tests/reference/make_muq_mulan.py --full-size muq-full-reference
    python benchmarks/muq_full_size.py muq-full-reference

It prints the largest absolute difference between the port's latents and the package's (audio of 2.5
clips, two rows, and of 0.7 of a clip; each text alone) and the port's seconds per 10 s clip and per text.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from tada.evaluation.scorers.muq import MuQMuLan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("reference", type=Path, help="folder written by make_muq_mulan.py --full-size")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = MuQMuLan.from_pretrained(args.reference)
    load_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters()) / 1e6
    ref = load_file(str(args.reference / "reference.safetensors"))
    texts = json.loads((args.reference / "reference.json").read_text())["texts"]

    t0 = time.perf_counter()
    long = model.embed_audio(ref["wavs_long"])
    audio_s = time.perf_counter() - t0
    clips = len(ref["wavs_long"]) * model.clips(ref["wavs_long"][0]).shape[0]
    short = model.embed_audio(ref["wavs_short"])
    t0 = time.perf_counter()
    text = model.embed_text(texts)
    text_s = time.perf_counter() - t0

    print(f"parameters {params:.0f}M, loaded in {load_s:.1f} s, torch threads {torch.get_num_threads()}")
    print(f"audio, 2.5 clips x 2 rows: max |port - package| = {(long - ref['latents_long']).abs().max():.2e}")
    print(f"audio, 0.7 of a clip:      max |port - package| = {(short - ref['latents_short']).abs().max():.2e}")
    print(f"texts, one at a time:      max |port - package| = {(text - ref['text_latents']).abs().max():.2e}")
    print(f"time: {audio_s / clips:.2f} s per {model.clip_samples / model.sample_rate:.0f} s clip, "
          f"{text_s / len(texts):.3f} s per text")


if __name__ == "__main__":
    main()

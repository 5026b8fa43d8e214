"""Generations per second of an alpha sweep (`tada steer`) on 1 process and on N processes under torchrun, side
by side in one run; the files of every run are compared with the first one's (they must be identical).

    python benchmarks/distributed_throughput.py --model toy --processes 1 2 --prompts 8 --threads 1   # CPU
    python benchmarks/distributed_throughput.py --model stable-audio-open --processes 1 8 --device auto  # 8 GPUs

Each process uses --threads CPU threads; on a CPU give processes x threads <= cores.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def tada(args: list[str], processes: int, threads: int, device: str) -> float:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", "-m"]
    cmd = [*(launcher if processes > 1 else [sys.executable, "-m"]), "tada", "--threads", str(threads),
           "--device", device, *args]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toy")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--alphas", default="-2,-1,0,1,2")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from tada.concepts import load_eval_prompts

    root = Path(tempfile.mkdtemp())
    try:
        vec = root / "tempo"
        tada(["caa", "--model", args.model, "-c", "tempo", "--layers", "1", "--pairs", "2", "--steps",
              str(args.steps), "--out", str(vec)], 1, args.threads, args.device)
        prompts = [x for p in load_eval_prompts()[: args.prompts] for x in ("-p", p)]
        n = args.prompts * len(args.alphas.split(","))
        first = None
        for procs in args.processes:
            out = root / f"p{procs}"
            wall = tada(["steer", "--model", args.model, "-v", str(vec.with_suffix(".safetensors")), "--alphas",
                         args.alphas, "--steps", str(args.steps), "--batch-size", str(args.batch_size), *prompts,
                         "--out", str(out)], procs, args.threads, args.device)
            wavs = sorted(p.relative_to(out) for p in out.rglob("*.wav"))
            same = first is None or (wavs == first[1] and all(filecmp.cmp(first[0] / w, out / w, shallow=False)
                                                               for w in wavs))
            first = first or (out, wavs)
            print(f"{procs} process(es): {n} generations in {wall:.1f} s (start-up included) = {n / wall:.2f} "
                  f"generations/s; files identical to the first run: {same}")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()

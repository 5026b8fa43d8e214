"""Cost of tada's hooks on a full-size denoiser forward: plain vs patched vs steered.

Builds the Stable Audio Open 1.0 and ACE-Step 1.5 denoiser configs with random weights, makes one
pipeline-shaped call, and times three variants on the same inputs, interleaved (plain, patched,
steered, plain, ...) so drifts of the machine hit all three alike:

* plain: no hooks;
* patched: PatchContext on every site for the conditional rows (localization's heaviest case);
* steered: AddVector with ReNorm on every site (CAA on all layers, Table 1's heaviest row).

Prints the median wall seconds and CPU seconds per forward and the ratios to plain. Target: <= 1.02x.
On a shared CPU, wall time swings by tens of percent with the neighbours' load; the process's CPU
time with one thread (the default on CPU) measures the work done and is the figure to read there.
`--layers N` keeps the first N blocks at full width (the ratio per block is what hooks change),
for a quicker run; the default is the whole model.

    python benchmarks/hooks_overhead.py --family stable-audio --reps 5 --dtype bfloat16 --device cuda
    python benchmarks/hooks_overhead.py --reps 7 --layers 4 --dtype float32      # CPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.full_configs import denoiser_call, full_size_denoiser  # noqa: E402
from tada.engine import AddVector, Conditioning, GuidanceLayout, PatchContext, intervene  # noqa: E402
from tada.models.base import AudioModel, make_sites  # noqa: E402

SITE_NAMES = {
    "stable-audio": lambda den: [f"transformer_blocks.{i}.attn2" for i in range(len(den.transformer_blocks))],
    "ace-step": lambda den: [f"layers.{i}.cross_attn" for i in range(len(den.layers))],
}
LAYOUT = {"stable-audio": ("uncond", "cond"), "ace-step": ("cond", "uncond")}


class DenoiserOnly(AudioModel):
    """An AudioModel around a bare denoiser: enough for the hook engine, no pipeline."""

    def __init__(self, family: str, den):
        self.name = family
        self.guidance_layout = GuidanceLayout(LAYOUT[family])
        super().__init__(None, den, make_sites(den, SITE_NAMES[family](den)), 44100)

    def frame_slice(self, site, duration):
        return slice(1, None) if self.name == "stable-audio" else slice(None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", choices=sorted(SITE_NAMES), nargs="+", default=sorted(SITE_NAMES))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1, help="prompts (rows are doubled by guidance)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--layers", type=int, default=None, help="keep only the first N blocks (full width)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (ignored on cuda)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(f"device={args.device} dtype={args.dtype} batch={args.batch} seconds={args.seconds} reps={args.reps}")
    for family in args.family:
        den = full_size_denoiser(family, dtype=dtype, device=args.device)
        if args.layers:
            blocks = "transformer_blocks" if family == "stable-audio" else "layers"
            setattr(den, blocks, getattr(den, blocks)[: args.layers])
        model = DenoiserOnly(family, den)
        a, kw = denoiser_call(family, den, batch=args.batch, seconds=args.seconds)
        ctx = kw["encoder_hidden_states"]
        g = torch.Generator(ctx.device).manual_seed(1)
        other = torch.randn(ctx.shape, generator=g, device=ctx.device, dtype=ctx.dtype)
        source = Conditioning(["other"] * args.batch, {
            (s.index, kind): (other[model.guidance_layout.rows(len(other), args.batch, kind)], None)
            for s in model.sites for kind in ("cond", "uncond")})
        vectors = {s.index: torch.nn.functional.normalize(torch.randn(s.dim, generator=torch.Generator().manual_seed(s.index)), dim=0).to(args.device, dtype)
                   for s in model.sites}
        variants = {
            "plain": [],
            "patched": [PatchContext(source, sites=range(len(model.sites)))],
            "steered": [AddVector(vectors, alpha=40.0, renorm=True)],
        }
        times: dict[str, list[float]] = {k: [] for k in variants}
        cpu: dict[str, list[float]] = {k: [] for k in variants}
        with torch.no_grad():
            den(*a, **kw)  # warm-up
            for _ in range(args.reps):
                for name, ivs in variants.items():
                    if args.device == "cuda":
                        torch.cuda.synchronize()
                    t0, c0 = time.perf_counter(), time.process_time()
                    with intervene(model, args.batch, ivs):
                        den(*a, **kw)
                    if args.device == "cuda":
                        torch.cuda.synchronize()
                    times[name].append(time.perf_counter() - t0)
                    cpu[name].append(time.process_time() - c0)
        base, cbase = statistics.median(times["plain"]), statistics.median(cpu["plain"])
        n_params = sum(p.numel() for p in den.parameters()) / 1e6
        print(f"\n{family} ({n_params:.0f}M parameters, {len(model.sites)} sites, rows={2 * args.batch})")
        for name in variants:
            med, cmed = statistics.median(times[name]), statistics.median(cpu[name])
            print(f"  {name:8s} wall {med:8.4f} s ({med / base:6.3f}x)   cpu {cmed:8.4f} s ({cmed / cbase:6.3f}x)")
        del den, model


if __name__ == "__main__":
    main()

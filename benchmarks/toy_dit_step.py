"""Seconds per training step of a toy world's DiT, eager and under torch.compile, side by side in one run.

One step is `tada.toy.train.flow_step`, what `python -m tada.toy.train model` does per batch: the flow-matching
loss of the DiT's velocity on a batch of noised tokens, its backward pass, gradient clipping and an AdamW update. Both variants start from
the same weights and see the same batches; the first `--warmup` steps (compilation included) are not timed,
and the losses of the timed steps must agree to 1e-4 relative, or the run stops.

    python benchmarks/toy_dit_step.py --world v2 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="v2")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from tada.toy.model import LinearLatent
    from tada.toy.train import flow_step
    from tada.toy.worlds import get_world

    spec = get_world(args.world)
    mel = spec.mel_spec()
    frames = torch.randn(64, mel.n_mels, mel.frames)
    latent = None if spec.latent_components is None else LinearLatent.fit(frames, spec.latent_components)
    pipe = spec.random_pipeline(0, mel, latent)
    rotary = pipe.rotary_embedding()
    states, mask = pipe.unconditional_context(args.batch)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.batch, pipe.channels, mel.frames, generator=g), torch.rand(args.batch, generator=g),
                torch.randn(args.batch, pipe.channels, mel.frames, generator=g))
               for _ in range(args.warmup + args.steps)]
    eager = pipe.transformer.train()
    variants = {"eager": eager, "compiled": torch.compile(copy.deepcopy(eager))}
    losses, seconds = {}, {}
    for name, net in variants.items():
        opt = torch.optim.AdamW(net.parameters(), lr=5e-4, weight_decay=1e-2)
        pipe.transformer = net
        losses[name] = []
        for k, (xt, t, target) in enumerate(batches):
            if k == args.warmup:
                start = time.perf_counter()
            losses[name].append(flow_step(pipe, opt, xt, t, states, mask, rotary, target).item())
        seconds[name] = (time.perf_counter() - start) / args.steps
    for a, b in zip(losses["eager"], losses["compiled"]):
        if abs(a - b) > 1e-4 * abs(a):
            raise SystemExit(f"the compiled DiT's losses differ from the eager one's: {losses}")
    print(f"world {args.world}, batch {args.batch}, {args.threads} threads, {args.steps} timed steps")
    for name in variants:
        print(f"  {name:9s} {seconds[name]:.3f} s/step")
    print(f"  speed-up  {seconds['eager'] / seconds['compiled']:.2f}x")


if __name__ == "__main__":
    main()

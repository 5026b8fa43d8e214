"""Our TopK SAE trainer against EleutherAI sparsify's ``SparseCoder`` on the same data and settings.

Both train d_in x expansion latents with top-k, AuxK (same alpha and dead window), unit-norm decoder
rows with the parallel gradient removed, Adam at one constant learning rate, the same batch size and
number of steps. sparsify's ``SparseCoder`` is driven by a loop that does what its trainer does per
step (its trainer needs a language model). Reported: samples per wall-clock second and per CPU
second (the latter is steadier on a shared machine) over the whole training call (init
included), FVU on held-out rows at equal steps, and whether sparsify loads our saved folder
and reconstructs the same.

sparsify is never a dependency of this project: install it (PyPI name ``eai-sparsify``) in a
separate environment, e.g. a virtualenv made with ``--system-site-packages`` and
``pip install --no-deps eai-sparsify simple_parsing einops natsort datasets schedulefree``.

    python benchmarks/sae_train.py --d-in 256 --expansion 4 --k 32 --batch 1024 --steps 300
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time

import torch

from tada.sae import SaeConfig, TopKSAE, default_lr, fvu, train_sae


def synthetic_activations(rows: int, d: int, atoms: int, active: int, seed: int) -> torch.Tensor:
    """Sparse non-negative mixtures of random unit atoms with heavy-tailed weights, noise and an offset."""
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(atoms, d, generator=torch.Generator().manual_seed(10_000 + seed))
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    chosen = torch.randint(0, atoms, (rows, active), generator=g)
    weights = torch.distributions.Exponential(1.0).sample((rows, active))
    h = torch.nn.functional.embedding_bag(chosen, dictionary, per_sample_weights=weights, mode="sum")
    return h + 0.05 * torch.randn(rows, d, generator=g) + 0.5


def train_sparsify(SparseCoder, SparseCoderConfig, data: torch.Tensor, args, lr: float) -> tuple[object, float, float]:
    torch.manual_seed(args.seed)
    sae = SparseCoder(args.d_in, SparseCoderConfig(expansion_factor=args.expansion, k=args.k))
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    since_fired = torch.zeros(sae.num_latents, dtype=torch.long)
    g = torch.Generator().manual_seed(args.seed)
    started, cpu_started = time.perf_counter(), time.process_time()
    order, cursor = torch.randperm(len(data), generator=g), 0
    for step in range(args.steps):
        if cursor + args.batch > len(data):
            order, cursor = torch.randperm(len(data), generator=g), 0
        x = data[order[cursor:cursor + args.batch]]
        cursor += args.batch
        if step == 0:
            sae.b_dec.data = x.mean(0)  # sparsify's trainer initializes b_dec to the first batch's mean
        sae.set_decoder_norm_to_unit_norm()
        out = sae(x, dead_mask=since_fired > args.dead_tokens)
        (out.fvu + args.auxk_alpha * out.auxk_loss).backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            since_fired += len(x)
            since_fired[out.latent_indices.flatten()] = 0
    return sae, time.perf_counter() - started, time.process_time() - cpu_started


def train_ours(data: torch.Tensor, args, lr: float) -> tuple[TopKSAE, float, float]:
    cfg = SaeConfig(d_in=args.d_in, expansion_factor=args.expansion, k=args.k, auxk_alpha=args.auxk_alpha,
                    dead_tokens=args.dead_tokens)
    epochs = math.ceil(args.steps / (len(data) // args.batch))
    started, cpu_started = time.perf_counter(), time.process_time()
    result = train_sae(data, cfg, epochs=epochs, batch_size=args.batch, lr=lr, seed=args.seed, progress=False,
                       max_steps=args.steps)
    return result.sae, time.perf_counter() - started, time.process_time() - cpu_started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-in", type=int, default=256)
    parser.add_argument("--expansion", type=int, default=4)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=None, help="default: 2e-4 / sqrt(latents / 2^14)")
    parser.add_argument("--auxk-alpha", type=float, default=1 / 32)
    parser.add_argument("--dead-tokens", type=int, default=50_000)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=2, help="timing: best of this many runs each, interleaved")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    try:
        from sparsify import SparseCoder, SparseCoderConfig
    except ImportError as err:
        print(f"sparsify is not importable here ({err}); install eai-sparsify in a separate environment "
              "to run this comparison (see this file's docstring). Nothing to compare.")
        return 0

    lr = args.lr or default_lr(args.d_in * args.expansion)
    data = synthetic_activations(args.rows, args.d_in, atoms=8 * args.d_in, active=16, seed=args.seed)
    heldout = synthetic_activations(16_384, args.d_in, atoms=8 * args.d_in, active=16, seed=args.seed + 1)
    print(f"d_in={args.d_in} latents={args.d_in * args.expansion} k={args.k} batch={args.batch} steps={args.steps} "
          f"lr={lr:.3g} auxk_alpha={args.auxk_alpha:.4g} dead_tokens={args.dead_tokens} "
          f"threads={torch.get_num_threads()}")

    # One short untimed run each first: the first training in a process pays one-time costs
    # (thread pools, allocator, lazy imports) that would otherwise land on whichever runs first.
    warmup = argparse.Namespace(**{**vars(args), "steps": min(10, args.steps)})
    train_ours(data, warmup, lr)
    train_sparsify(SparseCoder, SparseCoderConfig, data, warmup, lr)
    ours_times, theirs_times = [], []  # (wall, cpu) seconds per run
    for _ in range(args.repeats):
        ours, *seconds = train_ours(data, args, lr)
        ours_times.append(seconds)
        theirs, *seconds = train_sparsify(SparseCoder, SparseCoderConfig, data, args, lr)
        theirs_times.append(seconds)

    with torch.no_grad():
        ours_fvu = fvu(heldout, ours(heldout).h_hat).item()
        theirs_fvu = fvu(heldout, theirs(heldout).sae_out).item()
        with tempfile.TemporaryDirectory() as folder:
            ours.save(folder)
            reloaded = SparseCoder.load_from_disk(folder)
            gap = (reloaded(heldout).sae_out - ours(heldout).h_hat).abs().amax(dim=1)

    samples = args.steps * args.batch
    print(f"{'':30}{'tada':>12}{'sparsify':>12}{'ratio':>10}")
    for column, label in ((0, "samples/s wall"), (1, "samples/CPU-s")):
        ours_rate = samples / min(t[column] for t in ours_times)
        theirs_rate = samples / min(t[column] for t in theirs_times)
        print(f"{label + ' (best of ' + str(args.repeats) + ')':30}{ours_rate:12.0f}{theirs_rate:12.0f}"
              f"{ours_rate / theirs_rate:9.2f}x")
    print(f"{'held-out FVU':30}{ours_fvu:12.5f}{theirs_fvu:12.5f}{ours_fvu / theirs_fvu:9.3f}x")
    # An exact tie at the k-th largest pre-activation may be broken differently (both are TopK).
    print(f"sparsify loads our folder: max |reconstruction difference| = {gap.max().item():.2e}, "
          f"rows differing by more than 1e-4: {int((gap > 1e-4).sum())} of {len(gap)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

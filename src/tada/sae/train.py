"""Training TopK SAEs: the trainer (resumable, AuxK), the paper's hyper-parameter grid and its selection rule."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch
from torch import Tensor

from tada.errors import TadaError
from tada.runs.distributed import is_main, join_process_group, process_rank, world_size
from tada.sae.model import (
    CHECKPOINT_NAME,
    GRID_NAME,
    HISTORY_NAME,
    Data,
    SaeConfig,
    TopKSAE,
    check_data,
    epoch_batches,
    positive_int,
)
from tada.sae.store import ActivationReader


def store_source(reader: ActivationReader) -> dict | None:
    """Model, site and width of an activation store made by ``tada.methods.sae.collect`` (from its manifest)."""
    manifest = Path(reader.folder) / "manifest.json"
    if not manifest.exists():
        return None
    settings = json.loads(manifest.read_text())
    return {k: settings[k] for k in ("model", "site", "site_name", "width") if k in settings} or None


class TrainResult(NamedTuple):
    sae: TopKSAE
    """The trained autoencoder."""

    history: pd.DataFrame
    """One row per epoch (the last may be partial when ``max_steps`` stopped it): epoch, step,
    rows_seen, fvu and auxk_loss (means over the epoch's batches), dead_fraction,
    high_freq_fraction, seconds (training time so far)."""


def default_lr(num_latents: int) -> float:
    """Adam learning rate scaled with the latent count as in Gao et al.: 2e-4 / sqrt(num_latents / 2^14)."""
    return 2e-4 / math.sqrt(num_latents / 2**14)


def train_sae(data: Data, cfg: SaeConfig, epochs: int = 15, batch_size: int = 4096, lr: float | None = None,
              seed: int = 0, out: str | Path | None = None, progress: bool = True,
              max_steps: int | None = None, checkpoint_every: int = 500, median_sample: int = 4096) -> TrainResult:
    """Train a TopK SAE with Adam on rows of ``data`` (a tensor (n, d_in) or an activation store).

    Each step minimizes FVU + auxk_alpha * AuxK on one shuffled batch (the last short batch of an
    epoch is dropped), then removes the decoder gradient parallel to the decoder rows, steps, and
    renormalizes the rows. The first ``median_sample`` rows of epoch 0 initialize ``b_pre`` and the
    encoder scale (:meth:`TopKSAE.init_from_sample_`).

    Metrics per epoch:
    - fvu: mean over the epoch's batches of sum((h - h_hat)^2) / sum((h - batch mean)^2).
    - dead_fraction: latents that have not fired (value > 0) in the last ``cfg.dead_tokens`` training
      rows (or in all rows seen, while fewer have been seen).
    - high_freq_fraction: latents firing on more than ``cfg.high_freq_threshold`` of the epoch's rows.

    With ``out``, a checkpoint is written every ``checkpoint_every`` steps, at each epoch end and
    when stopping, and a run started again with the same arguments continues from it (to the same
    result as an uninterrupted run); the finished SAE is saved there (``sae.safetensors``,
    ``cfg.json``) with ``history.csv``.

    Under torchrun or accelerate (N processes) training is data-parallel through
    ``torch.nn.parallel.DistributedDataParallel`` on gloo: every process draws the same shuffled batch,
    computes the loss on its N-th of it, and the gradients are averaged across processes before the step, so
    every process holds the same SAE. A slice's FVU and AuxK are normalised by the whole batch's variance
    (over N), so the averaged gradient is the one-process gradient of the batch, up to the order of
    floating-point sums. Firing statistics (dead latents, AuxK's mask, frequencies) are summed over processes
    and the metrics averaged; the main process writes the checkpoints and results. A checkpoint records N and
    resumes only with N processes.
    """
    rows = check_data(data, cfg.d_in)
    if cfg.source is None and isinstance(data, ActivationReader):
        cfg = replace(cfg, source=store_source(data))
    positive_int("epochs", epochs)
    positive_int("batch_size", batch_size)
    positive_int("checkpoint_every", checkpoint_every)
    positive_int("median_sample", median_sample)
    if batch_size < 2 or batch_size > rows:
        raise TadaError(f"batch_size must be in [2, {rows}] (the number of rows); got {batch_size}")
    if max_steps is not None:
        positive_int("max_steps", max_steps)
    lr = default_lr(cfg.num_latents) if lr is None else lr
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise TadaError(f"lr must be a positive number; got {lr!r}")
    steps_per_epoch = rows // batch_size
    total_steps = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    run = {"cfg": cfg.to_json(), "batch_size": batch_size, "lr": lr, "seed": seed, "rows": rows}
    processes, rank = world_size(), process_rank()
    if processes > 1:
        if batch_size < 2 * processes:
            raise TadaError(f"batch_size {batch_size} cannot be split over {processes} processes (2 rows each at least)")
        run["processes"] = processes

    sae = TopKSAE(cfg, torch.Generator().manual_seed(seed))
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    state = {"step": 0, "epoch": 0, "batch": 0, "since_fired": torch.zeros(cfg.num_latents, dtype=torch.long),
             "fire_counts": torch.zeros(cfg.num_latents, dtype=torch.long), "fvu_sum": 0.0, "auxk_sum": 0.0,
             "rows_seen": 0, "seconds": 0.0, "history": []}
    checkpoint = Path(out) / CHECKPOINT_NAME if out is not None else None
    if checkpoint is not None and checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=True)
        if saved["run"] != run:
            raise TadaError(f"{checkpoint} belongs to another run: it has {saved['run']}, this call asks for {run}; "
                             "use another out folder")
        sae.load_state_dict(saved["sae"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
    else:
        sample, taken = [], 0
        for batch in epoch_batches(data, batch_size, seed, 0):
            sample.append(batch)
            taken += len(batch)
            if taken >= median_sample:
                break
        sae.init_from_sample_(torch.cat(sample)[:median_sample])

    forward = sae
    if processes > 1:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        join_process_group()
        forward = DistributedDataParallel(sae)  # averages the gradients of the processes' slices

    def summed(t: Tensor) -> Tensor:
        if processes > 1:
            dist.all_reduce(t)
        return t

    def save_checkpoint():
        if checkpoint is None or not is_main():
            return
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint.with_name(checkpoint.name + ".tmp")
        torch.save({"run": run, "sae": sae.state_dict(), "optimizer": optimizer.state_dict(), "state": state}, tmp)
        os.replace(tmp, checkpoint)

    def epoch_row() -> dict:
        batches = state["batch"]
        return {
            "epoch": state["epoch"] + 1, "step": state["step"], "rows_seen": state["rows_seen"],
            "fvu": state["fvu_sum"] / batches, "auxk_loss": state["auxk_sum"] / batches,
            "dead_fraction": (state["since_fired"] >= min(cfg.dead_tokens, state["rows_seen"])).float().mean().item(),
            "high_freq_fraction": (state["fire_counts"] > cfg.high_freq_threshold * batches * batch_size)
            .float().mean().item(),
            "seconds": state["seconds"]}

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("SAE m={task.fields[m]} k={task.fields[k]}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("fvu {task.fields[fvu]:.4f}"), TimeRemainingColumn(), disable=not progress or not is_main())
    with bar:
        task = bar.add_task("train", total=total_steps, completed=state["step"], m=cfg.expansion_factor, k=cfg.k,
                            fvu=float("nan"))
        while state["step"] < total_steps:
            started = time.perf_counter()
            for batch_number, h in enumerate(epoch_batches(data, batch_size, seed, state["epoch"])):
                if batch_number < state["batch"]:
                    continue  # done before the last checkpoint
                dead = state["since_fired"] >= cfg.dead_tokens
                mine, variance = h, None
                if processes > 1:  # this process's slice, its losses over the whole batch's variance (times N)
                    mine, variance = h.tensor_split(processes)[rank], (h - h.mean(0)).pow(2).sum() / processes
                result = forward(mine, dead_mask=dead if cfg.auxk_alpha > 0 else None, variance=variance)
                loss = result.fvu + cfg.auxk_alpha * result.auxk_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                sae.remove_parallel_decoder_grad_()
                optimizer.step()
                sae.normalize_decoder_()

                counts = summed(torch.bincount(result.indices[result.latents > 0], minlength=cfg.num_latents))
                metrics = summed(torch.stack([result.fvu.detach(), result.auxk_loss.detach()]).double()) / processes
                state["since_fired"] += len(h)
                state["since_fired"][counts > 0] = 0
                state["fire_counts"] += counts
                state["fvu_sum"] += metrics[0].item()
                state["auxk_sum"] += metrics[1].item()
                state["rows_seen"] += len(h)
                state["step"] += 1
                state["batch"] += 1
                bar.update(task, advance=1, fvu=metrics[0].item())
                stopping = state["step"] >= total_steps
                if stopping or state["step"] % checkpoint_every == 0:
                    state["seconds"] += time.perf_counter() - started
                    started = time.perf_counter()
                    save_checkpoint()
                if stopping:
                    break
            else:
                state["seconds"] += time.perf_counter() - started
                state["history"].append(epoch_row())
                state.update(epoch=state["epoch"] + 1, batch=0, fvu_sum=0.0, auxk_sum=0.0)
                state["fire_counts"].zero_()
                save_checkpoint()
    partial_epoch = [epoch_row()] if state["batch"] > 0 else []
    history = pd.DataFrame(state["history"] + partial_epoch)
    if out is not None and is_main():
        sae.save(out)
        history.to_csv(Path(out) / HISTORY_NAME, index=False)
    if processes > 1:
        dist.barrier()  # the others return once the main process has written the results
    return TrainResult(sae, history)


def grid_search(data: Data, m_values=(2, 4, 8, 16), k_values=(16, 32, 64), epochs: int = 15,
                batch_size: int = 4096, lr: float | None = None, seed: int = 0, out: str | Path | None = None,
                progress: bool = True, **cfg_options) -> pd.DataFrame:
    """Train one SAE per (m, k) and tabulate its last-epoch metrics (the paper's sec. 4.2 search).

    Columns: m, k, num_latents, fvu, dead_fraction, high_freq_fraction, step. With ``out``, each
    SAE trains (resumably) in ``out/m{m}_k{k}`` and the table is rewritten to ``out/grid.csv`` after
    each one. ``cfg_options`` go to every :class:`SaeConfig` (e.g. ``dead_tokens``).
    """
    if isinstance(data, ActivationReader):
        d_in = data.d
    elif isinstance(data, Tensor) and data.ndim == 2:
        d_in = data.shape[1]
    else:
        raise TadaError(f"data must be a Tensor (n, d) or an ActivationReader; got {type(data).__name__}")
    if not m_values or not k_values:
        raise TadaError(f"m_values and k_values must be non-empty; got {m_values!r}, {k_values!r}")
    configs = [SaeConfig(d_in=d_in, expansion_factor=m, k=k, **cfg_options) for m in m_values for k in k_values]
    table = []
    for cfg in configs:
        folder = Path(out) / f"m{cfg.expansion_factor}_k{cfg.k}" if out is not None else None
        history = train_sae(data, cfg, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, out=folder,
                            progress=progress).history
        last = history.iloc[-1]
        table.append({"m": cfg.expansion_factor, "k": cfg.k, "num_latents": cfg.num_latents, "fvu": last["fvu"],
                      "dead_fraction": last["dead_fraction"], "high_freq_fraction": last["high_freq_fraction"],
                      "step": int(last["step"])})
        if out is not None:
            pd.DataFrame(table).to_csv(Path(out) / GRID_NAME, index=False)
    return pd.DataFrame(table)


def choose_sae(table: pd.DataFrame) -> pd.Series:
    """The paper's rule (lowest error with the fewest dead and high-frequency latents), made exact.

    Score = fvu + dead_fraction + high_freq_fraction (three fractions on one scale); the lowest
    score wins; ties go to the lower fvu, then fewer latents, then smaller k. Returns that row.
    """
    needed = ["fvu", "dead_fraction", "high_freq_fraction", "num_latents", "k"]
    if not isinstance(table, pd.DataFrame):
        raise TadaError(f"table must be a pandas DataFrame from grid_search; got {type(table).__name__}")
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise TadaError(f"table lacks columns {missing}; grid_search's table has {needed}")
    if table.empty:
        raise TadaError("table is empty: no SAE to choose from")
    scored = table.assign(score=table["fvu"] + table["dead_fraction"] + table["high_freq_fraction"])
    return scored.sort_values(["score", "fvu", "num_latents", "k"], kind="stable").iloc[0]

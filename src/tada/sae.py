"""TopK sparse autoencoders on cross-attention outputs: the model (eq. 4-5), its trainer, the
hyper-parameter grid and selection rule, TF-IDF feature scores (eq. 6) and SAE steering directions
(eq. 7; eq. 8 adds ``alpha`` times that direction to the layer output without ReNorm).

Notation. The paper writes ``W_dec`` as a (d, m*d) matrix whose *columns* are the latents'
directions. The tensors here follow EleutherAI sparsify's file layout, so ``W_dec`` is stored as
(num_latents, d_in): row j here is column j of the paper. ``b_dec`` is the paper's ``b_pre``.

Choices (see docs/sae.md for the reasons):
- TopK, then ReLU on the k kept values (Gao et al. 2024). Latents are then non-negative, which the
  mean activations of eq. 6 need (its IDF term is only defined for mu >= 0), and a selected feature
  adds its decoder direction with a positive weight, as eq. 7 assumes. The reconstruction equals
  sparsify's ReLU-then-TopK.
- The encoder has a learned bias (``encoder.bias``, zero at init): Gao et al.'s form, and the key
  sparsify files carry. Eq. 4 is the case ``encoder.bias = 0``.
- AuxK loss on by default (alpha = 1/32, Gao et al.): the ``d_in // 2`` most active dead latents
  reconstruct the residual of the main reconstruction.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator, NamedTuple

import pandas as pd
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from tada.activation_store import ActivationReader

WEIGHTS_NAME = "sae.safetensors"
CONFIG_NAME = "cfg.json"
CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.csv"
GRID_NAME = "grid.csv"


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value


@dataclass
class SaeConfig:
    """Shape and training behaviour of a TopK SAE."""

    d_in: int
    """Width of the activations (the cross-attention output dimension d)."""

    expansion_factor: int = 4
    """m: the SAE has m * d_in latents."""

    k: int = 64
    """Number of latents kept per row by TopK (eq. 4)."""

    auxk_alpha: float = 1 / 32
    """Weight of the AuxK loss for dead latents; 0 turns it off."""

    dead_tokens: int = 1_000_000
    """N: a latent is dead when it has not fired (value > 0) on any of the last N training rows."""

    high_freq_threshold: float = 0.1
    """A latent is high-frequency when it fires on more than this fraction of an epoch's rows."""

    def __post_init__(self):
        _positive_int("d_in", self.d_in)
        _positive_int("expansion_factor", self.expansion_factor)
        _positive_int("k", self.k)
        _positive_int("dead_tokens", self.dead_tokens)
        if self.k > self.num_latents:
            raise ValueError(f"k={self.k} exceeds the number of latents {self.num_latents} "
                             f"(d_in={self.d_in} x expansion_factor={self.expansion_factor})")
        if not (isinstance(self.auxk_alpha, (int, float)) and self.auxk_alpha >= 0):
            raise ValueError(f"auxk_alpha must be a number >= 0; got {self.auxk_alpha!r}")
        if not (isinstance(self.high_freq_threshold, (int, float)) and 0 < self.high_freq_threshold < 1):
            raise ValueError(f"high_freq_threshold must be in (0, 1); got {self.high_freq_threshold!r}")

    @property
    def num_latents(self) -> int:
        return self.d_in * self.expansion_factor

    def to_json(self) -> dict:
        """``cfg.json`` content: sparsify's fields (so its loader accepts the folder) plus ours."""
        return {"activation": "topk", "expansion_factor": self.expansion_factor, "normalize_decoder": True,
                "num_latents": self.num_latents, "k": self.k, "multi_topk": False, "skip_connection": False,
                "transcode": False, "auxk_alpha": self.auxk_alpha, "dead_tokens": self.dead_tokens,
                "high_freq_threshold": self.high_freq_threshold, "d_in": self.d_in}

    @classmethod
    def from_json(cls, payload: dict) -> "SaeConfig":
        """Read our ``cfg.json`` or sparsify's (its TopK autoencoders without skip connection)."""
        for name, allowed in (("activation", "topk"), ("skip_connection", False), ("transcode", False)):
            if payload.get(name, allowed) != allowed:
                raise ValueError(f"cfg.json has {name}={payload[name]!r}; only {name}={allowed!r} is supported")
        for name in ("d_in", "expansion_factor", "k"):
            if name not in payload:
                raise ValueError(f"cfg.json lacks {name!r}")
        own = {f.name for f in fields(cls)}
        cfg = cls(**{name: value for name, value in payload.items() if name in own})
        if payload.get("num_latents", 0) not in (0, cfg.num_latents):
            raise ValueError(f"cfg.json has num_latents={payload['num_latents']}; only d_in x expansion_factor "
                             f"= {cfg.num_latents} is supported")
        return cfg


class EncoderOutput(NamedTuple):
    latents: Tensor
    """(n, k) values of the kept latents, after ReLU (eq. 4's non-zero entries)."""

    indices: Tensor
    """(n, k) int64 latent index of each kept value."""

    pre_acts: Tensor
    """(n, num_latents) encoder outputs before TopK, ``W_enc (h - b_pre) + b_enc``."""


class ForwardOutput(NamedTuple):
    h_hat: Tensor
    """(n, d_in) reconstruction, eq. 5."""

    latents: Tensor
    """(n, k) values of the kept latents, after ReLU."""

    indices: Tensor
    """(n, k) latent index of each kept value."""

    fvu: Tensor
    """Fraction of variance unexplained of this batch, see :func:`fvu`."""

    auxk_loss: Tensor
    """AuxK loss: how well the top ``d_in // 2`` dead latents reconstruct the residual, over the batch
    variance; 0 when no dead mask is given or no latent is dead."""


def fvu(h: Tensor, h_hat: Tensor) -> Tensor:
    """Fraction of variance unexplained: sum((h - h_hat)^2) / sum((h - mean_rows(h))^2).

    Normalized MSE: 0 is perfect, 1 is as good as predicting the batch mean for every row.
    """
    return (h - h_hat).pow(2).sum() / (h - h.mean(0)).pow(2).sum()


def geometric_median(points: Tensor, max_iter: int = 200, tol: float = 1e-9) -> Tensor:
    """The point minimizing the sum of Euclidean distances to the rows of ``points`` (n, d).

    Weiszfeld's iterations from the mean: y <- sum_i w_i x_i / sum_i w_i with w_i = 1 / |x_i - y|
    (distances clamped at 1e-12 so a y landing on a data point stays finite), computed in float64,
    stopped when a step moves less than ``tol`` times (1 + |y|). Returns float32 (d,).
    """
    if not isinstance(points, Tensor) or points.ndim != 2 or len(points) == 0:
        raise ValueError(f"points must be a non-empty (n, d) tensor; got "
                         f"{tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__}")
    x = points.double()
    y = x.mean(0)
    for _ in range(max_iter):
        weights = 1.0 / (x - y).norm(dim=1).clamp_min(1e-12)
        new = (weights[:, None] * x).sum(0) / weights.sum()
        moved = (new - y).norm()
        y = new
        if moved <= tol * (1 + y.norm()):
            break
    return y.float()


SPARSE_BACKWARD_DENSITY = 0.2
"""Largest fraction of non-zero pre-activation gradients for which the encoder's backward uses
sparse products; above it dense matrix products are faster on CPU (measured crossover ~20%)."""


class _SparseGradLinear(torch.autograd.Function):
    """``F.linear(x, weight, bias)`` whose backward exploits a sparse incoming gradient.

    Only the pre-activations kept by TopK (and by AuxK) receive gradient, k + k_aux of m*d per row,
    so the two backward products cost O(n (k + k_aux) d) as sparse-dense products instead of
    O(n m d). The result is the same gradient as ``F.linear``'s.
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        dense = torch.count_nonzero(grad).item() > SPARSE_BACKWARD_DENSITY * grad.numel()
        g = grad if dense else grad.to_sparse()
        grad_x = torch.mm(g, weight) if ctx.needs_input_grad[0] else None
        grad_weight = torch.mm(g.t(), x) if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(0) if ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias


class TopKSAE(nn.Module):
    """f = ReLU(TopK(W_enc (h - b_pre) + b_enc)) (eq. 4) and h_hat = W_dec f + b_pre (eq. 5).

    Parameters (sparsify's names): ``encoder.weight`` (num_latents, d_in), ``encoder.bias``
    (num_latents,), ``W_dec`` (num_latents, d_in) with unit-norm rows, ``b_dec`` (d_in,) = b_pre.
    At init the decoder rows are random unit vectors, the encoder is their copy and both biases are 0.
    """

    def __init__(self, cfg: SaeConfig, generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(cfg, SaeConfig):
            raise TypeError(f"cfg must be a SaeConfig; got {type(cfg).__name__}")
        self.cfg = cfg
        directions = torch.randn(cfg.num_latents, cfg.d_in, generator=generator)
        directions /= directions.norm(dim=1, keepdim=True)
        self.encoder = nn.Linear(cfg.d_in, cfg.num_latents)
        with torch.no_grad():
            self.encoder.weight.copy_(directions)
            self.encoder.bias.zero_()
        self.W_dec = nn.Parameter(directions.clone())
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))

    def _check_rows(self, h: Tensor) -> None:
        if not isinstance(h, Tensor) or not h.is_floating_point():
            raise TypeError(f"activations must be a floating-point Tensor (n, {self.cfg.d_in}); got "
                            f"{type(h).__name__}" + (f" of dtype {h.dtype}" if isinstance(h, Tensor) else ""))
        if h.ndim != 2 or h.shape[1] != self.cfg.d_in:
            raise ValueError(f"activations must have shape (n, d_in={self.cfg.d_in}); got {tuple(h.shape)}")

    def encode(self, h: Tensor) -> EncoderOutput:
        """Eq. 4: keep the k largest of ``W_enc (h - b_pre) + b_enc`` per row, then ReLU them."""
        self._check_rows(h)
        pre_acts = _SparseGradLinear.apply(h - self.b_dec, self.encoder.weight, self.encoder.bias)
        values, indices = pre_acts.topk(self.cfg.k, dim=1, sorted=False)
        return EncoderOutput(F.relu(values), indices, pre_acts)

    def decode(self, latents: Tensor, indices: Tensor) -> Tensor:
        """Eq. 5: h_hat = sum over kept j of f_j W_dec[j] + b_pre, for (n, k) values and indices."""
        return F.embedding_bag(indices, self.W_dec, per_sample_weights=latents, mode="sum") + self.b_dec

    def forward(self, h: Tensor, dead_mask: Tensor | None = None) -> ForwardOutput:
        """Encode, decode, and the losses; ``dead_mask`` (num_latents,) bool turns on the AuxK term."""
        latents, indices, pre_acts = self.encode(h)
        h_hat = self.decode(latents, indices)
        variance = (h - h.mean(0)).pow(2).sum()
        residual = h - h_hat
        auxk_loss = h_hat.new_zeros(())
        if dead_mask is not None and dead_mask.any():
            dead = dead_mask.nonzero().squeeze(1)
            k_aux = min(max(self.cfg.d_in // 2, 1), len(dead))
            aux_values, chosen = pre_acts[:, dead].topk(k_aux, dim=1, sorted=False)
            e_hat = F.embedding_bag(dead[chosen], self.W_dec, per_sample_weights=F.relu(aux_values), mode="sum")
            auxk_loss = (e_hat - residual.detach()).pow(2).sum() / variance
        return ForwardOutput(h_hat, latents, indices, residual.pow(2).sum() / variance, auxk_loss)

    @torch.no_grad()
    def init_from_sample_(self, sample: Tensor) -> None:
        """Set b_pre to the geometric median of ``sample`` (n, d_in), then scale the encoder rows by the
        least-squares factor s = sum <x, y> / sum <y, y>, x = h - b_pre, y = h_hat - b_pre, so that the
        initial reconstructions have the right length (TopK and ReLU scale with s, the bias being 0)."""
        self._check_rows(sample)
        self.b_dec.copy_(geometric_median(sample))
        x = sample - self.b_dec
        y = self.decode(*self.encode(sample)[:2]) - self.b_dec
        if (y * y).sum() > 0 and (x * y).sum() > 0:
            self.encoder.weight.mul_((x * y).sum() / (y * y).sum())

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Rescale every decoder direction (row of ``W_dec``) to unit L2 norm."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(torch.finfo(self.W_dec.dtype).eps)

    @torch.no_grad()
    def remove_parallel_decoder_grad_(self) -> None:
        """Drop the part of each decoder row's gradient along that (unit) row: norm changes are undone anyway."""
        if self.W_dec.grad is not None:
            parallel = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
            self.W_dec.grad -= parallel * self.W_dec

    def save(self, folder: str | Path) -> Path:
        """Write ``sae.safetensors`` + ``cfg.json`` (sparsify's layout) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {name: value.detach().contiguous() for name, value in self.state_dict().items()}
        save_file(tensors, str(folder / WEIGHTS_NAME))
        (folder / CONFIG_NAME).write_text(json.dumps(self.cfg.to_json(), indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "TopKSAE":
        """Load a folder written by :meth:`save` or by sparsify; shapes and names are checked."""
        folder = Path(folder)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name} is missing; an SAE folder holds {CONFIG_NAME} and {WEIGHTS_NAME}")
        try:
            cfg = SaeConfig.from_json(json.loads((folder / CONFIG_NAME).read_text()))
        except json.JSONDecodeError as err:
            raise ValueError(f"{folder / CONFIG_NAME} is not valid JSON: {err}") from err
        try:
            tensors = load_file(str(folder / WEIGHTS_NAME))
        except SafetensorError as err:
            raise ValueError(f"{folder / WEIGHTS_NAME} is not a readable safetensors file: {err}") from err
        sae = cls(cfg)
        expected = {name: tuple(value.shape) for name, value in sae.state_dict().items()}
        if set(tensors) != set(expected):
            raise ValueError(f"{folder / WEIGHTS_NAME} has tensors {sorted(tensors)}; expected {sorted(expected)}")
        for name, shape in expected.items():
            if tuple(tensors[name].shape) != shape:
                raise ValueError(f"{folder / WEIGHTS_NAME}: {name} has shape {tuple(tensors[name].shape)}; "
                                 f"cfg.json implies {shape}")
        sae.load_state_dict({name: value.float() for name, value in tensors.items()})
        return sae


Data = Tensor | ActivationReader


def _check_data(data: Data, d_in: int) -> int:
    """Validate training/evaluation data and return its row count."""
    if isinstance(data, ActivationReader):
        width, rows = data.d, len(data)
    elif isinstance(data, Tensor):
        if not data.is_floating_point() or data.ndim != 2:
            raise ValueError(f"activation tensor must be floating-point (n, d); got {data.dtype} {tuple(data.shape)}")
        width, rows = data.shape[1], data.shape[0]
    else:
        raise TypeError(f"data must be a Tensor (n, d) or an ActivationReader; got {type(data).__name__}")
    if width != d_in:
        raise ValueError(f"activations have width d={width}; the SAE expects d_in={d_in}")
    if rows == 0:
        raise ValueError("no activation rows to read: the data is empty")
    return rows


def _epoch_batches(data: Data, batch_size: int, seed: int, epoch: int) -> Iterator[Tensor]:
    """Full, shuffled float32 batches of one epoch; the order depends only on (seed, epoch)."""
    epoch_seed = seed * 1_000_003 + epoch
    if isinstance(data, ActivationReader):
        yield from data.batches(batch_size, seed=epoch_seed, drop_last=True)
        return
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(epoch_seed))
    for start in range(0, len(data) - batch_size + 1, batch_size):
        yield data[order[start:start + batch_size]].float()


def _rows_in_order(data: Data, batch_size: int) -> Iterator[Tensor]:
    if isinstance(data, ActivationReader):
        yield from data.batches(batch_size, shuffle=False)
    else:
        yield from (chunk.float() for chunk in data.split(batch_size))


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
    """
    rows = _check_data(data, cfg.d_in)
    _positive_int("epochs", epochs)
    _positive_int("batch_size", batch_size)
    _positive_int("checkpoint_every", checkpoint_every)
    _positive_int("median_sample", median_sample)
    if batch_size < 2 or batch_size > rows:
        raise ValueError(f"batch_size must be in [2, {rows}] (the number of rows); got {batch_size}")
    if max_steps is not None:
        _positive_int("max_steps", max_steps)
    lr = default_lr(cfg.num_latents) if lr is None else lr
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number; got {lr!r}")
    steps_per_epoch = rows // batch_size
    total_steps = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    run = {"cfg": cfg.to_json(), "batch_size": batch_size, "lr": lr, "seed": seed, "rows": rows}

    sae = TopKSAE(cfg, torch.Generator().manual_seed(seed))
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    state = {"step": 0, "epoch": 0, "batch": 0, "since_fired": torch.zeros(cfg.num_latents, dtype=torch.long),
             "fire_counts": torch.zeros(cfg.num_latents, dtype=torch.long), "fvu_sum": 0.0, "auxk_sum": 0.0,
             "rows_seen": 0, "seconds": 0.0, "history": []}
    checkpoint = Path(out) / CHECKPOINT_NAME if out is not None else None
    if checkpoint is not None and checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=True)
        if saved["run"] != run:
            raise ValueError(f"{checkpoint} belongs to another run: it has {saved['run']}, this call asks for {run}; "
                             "use another out folder")
        sae.load_state_dict(saved["sae"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
    else:
        sample, taken = [], 0
        for batch in _epoch_batches(data, batch_size, seed, 0):
            sample.append(batch)
            taken += len(batch)
            if taken >= median_sample:
                break
        sae.init_from_sample_(torch.cat(sample)[:median_sample])

    def save_checkpoint():
        if checkpoint is None:
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

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("SAE m={task.fields[m]} k={task.fields[k]}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("fvu {task.fields[fvu]:.4f}"), TimeRemainingColumn(), disable=not progress)
    with bar:
        task = bar.add_task("train", total=total_steps, completed=state["step"], m=cfg.expansion_factor, k=cfg.k,
                            fvu=float("nan"))
        while state["step"] < total_steps:
            started = time.perf_counter()
            for batch_number, h in enumerate(_epoch_batches(data, batch_size, seed, state["epoch"])):
                if batch_number < state["batch"]:
                    continue  # done before the last checkpoint
                dead = state["since_fired"] >= cfg.dead_tokens
                result = sae(h, dead_mask=dead if cfg.auxk_alpha > 0 else None)
                loss = result.fvu + cfg.auxk_alpha * result.auxk_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                sae.remove_parallel_decoder_grad_()
                optimizer.step()
                sae.normalize_decoder_()

                fired = result.indices[result.latents > 0]
                state["since_fired"] += len(h)
                state["since_fired"][fired] = 0
                state["fire_counts"] += torch.bincount(fired, minlength=cfg.num_latents)
                state["fvu_sum"] += result.fvu.item()
                state["auxk_sum"] += result.auxk_loss.item()
                state["rows_seen"] += len(h)
                state["step"] += 1
                state["batch"] += 1
                bar.update(task, advance=1, fvu=result.fvu.item())
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
    if out is not None:
        sae.save(out)
        history.to_csv(Path(out) / HISTORY_NAME, index=False)
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
        raise TypeError(f"data must be a Tensor (n, d) or an ActivationReader; got {type(data).__name__}")
    if not m_values or not k_values:
        raise ValueError(f"m_values and k_values must be non-empty; got {m_values!r}, {k_values!r}")
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
        raise TypeError(f"table must be a pandas DataFrame from grid_search; got {type(table).__name__}")
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}; grid_search's table has {needed}")
    if table.empty:
        raise ValueError("table is empty: no SAE to choose from")
    scored = table.assign(score=table["fvu"] + table["dead_fraction"] + table["high_freq_fraction"])
    return scored.sort_values(["score", "fvu", "num_latents", "k"], kind="stable").iloc[0]


@torch.no_grad()
def mean_activations(sae: TopKSAE, activations: Data, batch_size: int = 4096) -> Tensor:
    """mu_j(P) = (1/|P|) sum over rows h of f_j(h), for every latent j (eq. 6's TF and IDF inputs).

    ``activations`` holds the rows of the generations of one prompt set. Returns float32 (num_latents,).
    """
    rows = _check_data(activations, sae.cfg.d_in)
    _positive_int("batch_size", batch_size)
    sums = torch.zeros(sae.cfg.num_latents, dtype=torch.float64)
    for h in _rows_in_order(activations, batch_size):
        latents, indices, _ = sae.encode(h)
        sums.index_add_(0, indices.flatten(), latents.flatten().double())
    return (sums / rows).float()


def tfidf_scores(mu_concept: Tensor, mu_counter: Tensor, eps: float = 1e-6) -> Tensor:
    """Eq. 6: score_j = mu_j(P_c) * log(1 + 1 / (mu_j(P_counter) + eps)), for every latent j."""
    for name, mu in (("mu_concept", mu_concept), ("mu_counter", mu_counter)):
        if not isinstance(mu, Tensor) or mu.ndim != 1:
            raise ValueError(f"{name} must be a 1-D tensor of mean latent activations; got "
                             f"{tuple(mu.shape) if isinstance(mu, Tensor) else type(mu).__name__}")
        if (mu < 0).any():
            raise ValueError(f"{name} must be >= 0 (means of ReLU latents); its minimum is {mu.min().item():g}")
    if mu_concept.shape != mu_counter.shape:
        raise ValueError(f"mu_concept {tuple(mu_concept.shape)} and mu_counter {tuple(mu_counter.shape)} differ in shape")
    if not (isinstance(eps, (int, float)) and eps > 0):
        raise ValueError(f"eps must be a positive number; got {eps!r}")
    return mu_concept * torch.log1p(1.0 / (mu_counter + eps))


def select_features(scores: Tensor, tau: int) -> Tensor:
    """Indices (int64) of the ``tau`` highest scores, best first; equal scores keep index order."""
    if not isinstance(scores, Tensor) or scores.ndim != 1:
        raise ValueError(f"scores must be a 1-D tensor; got {tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__}")
    if isinstance(tau, bool) or not isinstance(tau, int) or not 1 <= tau <= len(scores):
        raise ValueError(f"tau must be an int in [1, {len(scores)}]; got {tau!r}")
    return torch.sort(scores, descending=True, stable=True).indices[:tau]


def sae_direction(sae: TopKSAE, features) -> Tensor:
    """Eq. 7: v = sum over j in F of W_dec[:, j] (paper layout; row j of our ``W_dec``). Returns (d_in,)."""
    index = torch.as_tensor(features)
    if index.ndim != 1 or len(index) == 0 or index.is_floating_point() or index.dtype == torch.bool:
        raise ValueError(f"features must be a non-empty 1-D sequence of latent indices; got {features!r}")
    if index.min() < 0 or index.max() >= sae.cfg.num_latents:
        raise ValueError(f"feature indices must be in [0, {sae.cfg.num_latents}); got {index.tolist()}")
    if len(index.unique()) != len(index):
        raise ValueError(f"feature indices must be distinct; got {index.tolist()}")
    return sae.W_dec.detach()[index].sum(0)

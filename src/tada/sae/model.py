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
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator, NamedTuple

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from tada.errors import MissingFileError, TadaError
from tada.sae.store import ActivationReader

WEIGHTS_NAME = "sae.safetensors"
CONFIG_NAME = "cfg.json"
CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.csv"
GRID_NAME = "grid.csv"


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise TadaError(f"{name} must be a positive int; got {value!r}")
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

    source: dict | None = None
    """Where the training activations came from (model, site, site_name, width), from the activation store's
    manifest; an SAE is refused at any other model or site."""

    def __post_init__(self):
        positive_int("d_in", self.d_in)
        positive_int("expansion_factor", self.expansion_factor)
        positive_int("k", self.k)
        positive_int("dead_tokens", self.dead_tokens)
        if self.k > self.num_latents:
            raise TadaError(f"k={self.k} exceeds the number of latents {self.num_latents} "
                             f"(d_in={self.d_in} x expansion_factor={self.expansion_factor})")
        if not (isinstance(self.auxk_alpha, (int, float)) and self.auxk_alpha >= 0):
            raise TadaError(f"auxk_alpha must be a number >= 0; got {self.auxk_alpha!r}")
        if not (isinstance(self.high_freq_threshold, (int, float)) and 0 < self.high_freq_threshold < 1):
            raise TadaError(f"high_freq_threshold must be in (0, 1); got {self.high_freq_threshold!r}")

    @property
    def num_latents(self) -> int:
        return self.d_in * self.expansion_factor

    def to_json(self) -> dict:
        """``cfg.json`` content: sparsify's fields (so its loader accepts the folder) plus ours."""
        return {"activation": "topk", "expansion_factor": self.expansion_factor, "normalize_decoder": True,
                "num_latents": self.num_latents, "k": self.k, "multi_topk": False, "skip_connection": False,
                "transcode": False, "auxk_alpha": self.auxk_alpha, "dead_tokens": self.dead_tokens,
                "high_freq_threshold": self.high_freq_threshold, "d_in": self.d_in,
                **({"source": self.source} if self.source else {})}

    @classmethod
    def from_json(cls, payload: dict) -> "SaeConfig":
        """Read our ``cfg.json`` or sparsify's (its TopK autoencoders without skip connection)."""
        for name, allowed in (("activation", "topk"), ("skip_connection", False), ("transcode", False)):
            if payload.get(name, allowed) != allowed:
                raise TadaError(f"cfg.json has {name}={payload[name]!r}; only {name}={allowed!r} is supported")
        for name in ("d_in", "expansion_factor", "k"):
            if name not in payload:
                raise TadaError(f"cfg.json lacks {name!r}")
        own = {f.name for f in fields(cls)}
        cfg = cls(**{name: value for name, value in payload.items() if name in own})
        if payload.get("num_latents", 0) not in (0, cfg.num_latents):
            raise TadaError(f"cfg.json has num_latents={payload['num_latents']}; only d_in x expansion_factor "
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
        raise TadaError(f"points must be a non-empty (n, d) tensor; got "
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
            raise TadaError(f"cfg must be a SaeConfig; got {type(cfg).__name__}")
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
            raise TadaError(f"activations must be a floating-point Tensor (n, {self.cfg.d_in}); got "
                            f"{type(h).__name__}" + (f" of dtype {h.dtype}" if isinstance(h, Tensor) else ""))
        if h.ndim != 2 or h.shape[1] != self.cfg.d_in:
            raise TadaError(f"activations must have shape (n, d_in={self.cfg.d_in}); got {tuple(h.shape)}")

    def encode(self, h: Tensor) -> EncoderOutput:
        """Eq. 4: keep the k largest of ``W_enc (h - b_pre) + b_enc`` per row, then ReLU them."""
        self._check_rows(h)
        pre_acts = _SparseGradLinear.apply(h - self.b_dec, self.encoder.weight, self.encoder.bias)
        values, indices = pre_acts.topk(self.cfg.k, dim=1, sorted=False)
        return EncoderOutput(F.relu(values), indices, pre_acts)

    def decode(self, latents: Tensor, indices: Tensor) -> Tensor:
        """Eq. 5: h_hat = sum over kept j of f_j W_dec[j] + b_pre, for (n, k) values and indices."""
        return F.embedding_bag(indices, self.W_dec, per_sample_weights=latents, mode="sum") + self.b_dec

    def forward(self, h: Tensor, dead_mask: Tensor | None = None, variance: Tensor | None = None) -> ForwardOutput:
        """Encode, decode, and the losses; ``dead_mask`` (num_latents,) bool turns on the AuxK term. `variance`:
        the denominator of FVU and AuxK, by default the batch's sum((h - mean h)^2); a slice of a batch split over
        N processes passes the whole batch's / N, so that the mean of the slices' losses is the batch's."""
        latents, indices, pre_acts = self.encode(h)
        h_hat = self.decode(latents, indices)
        variance = (h - h.mean(0)).pow(2).sum() if variance is None else variance
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
                raise MissingFileError(f"{folder / name} is missing; an SAE folder holds {CONFIG_NAME} and {WEIGHTS_NAME}")
        try:
            cfg = SaeConfig.from_json(json.loads((folder / CONFIG_NAME).read_text()))
        except json.JSONDecodeError as err:
            raise TadaError(f"{folder / CONFIG_NAME} is not valid JSON: {err}") from err
        try:
            tensors = load_file(str(folder / WEIGHTS_NAME))
        except SafetensorError as err:
            raise TadaError(f"{folder / WEIGHTS_NAME} is not a readable safetensors file: {err}") from err
        sae = cls(cfg)
        expected = {name: tuple(value.shape) for name, value in sae.state_dict().items()}
        if set(tensors) != set(expected):
            raise TadaError(f"{folder / WEIGHTS_NAME} has tensors {sorted(tensors)}; expected {sorted(expected)}")
        for name, shape in expected.items():
            if tuple(tensors[name].shape) != shape:
                raise TadaError(f"{folder / WEIGHTS_NAME}: {name} has shape {tuple(tensors[name].shape)}; "
                                 f"cfg.json implies {shape}")
        sae.load_state_dict({name: value.float() for name, value in tensors.items()})
        return sae


Data = Tensor | ActivationReader


def check_data(data: Data, d_in: int) -> int:
    """Validate training/evaluation data and return its row count."""
    if isinstance(data, ActivationReader):
        width, rows = data.d, len(data)
    elif isinstance(data, Tensor):
        if not data.is_floating_point() or data.ndim != 2:
            raise TadaError(f"activation tensor must be floating-point (n, d); got {data.dtype} {tuple(data.shape)}")
        width, rows = data.shape[1], data.shape[0]
    else:
        raise TadaError(f"data must be a Tensor (n, d) or an ActivationReader; got {type(data).__name__}")
    if width != d_in:
        raise TadaError(f"activations have width d={width}; the SAE expects d_in={d_in}")
    if rows == 0:
        raise TadaError("no activation rows to read: the data is empty")
    return rows


def epoch_batches(data: Data, batch_size: int, seed: int, epoch: int) -> Iterator[Tensor]:
    """Full, shuffled float32 batches of one epoch; the order depends only on (seed, epoch)."""
    epoch_seed = seed * 1_000_003 + epoch
    if isinstance(data, ActivationReader):
        yield from data.batches(batch_size, seed=epoch_seed, drop_last=True)
        return
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(epoch_seed))
    for start in range(0, len(data) - batch_size + 1, batch_size):
        yield data[order[start:start + batch_size]].float()


def rows_in_order(data: Data, batch_size: int) -> Iterator[Tensor]:
    if isinstance(data, ActivationReader):
        yield from data.batches(batch_size, shuffle=False)
    else:
        yield from (chunk.float() for chunk in data.split(batch_size))

"""From SAE latents to a steering direction: mean activations, TF-IDF scores (eq. 6), top-tau selection and
the decoder sum (eq. 7)."""

from __future__ import annotations

import torch
from torch import Tensor

from tada.errors import TadaError
from tada.sae.model import Data, TopKSAE, check_data, positive_int, rows_in_order


@torch.no_grad()
def mean_activations(sae: TopKSAE, activations: Data, batch_size: int = 4096) -> Tensor:
    """mu_j(P) = (1/|P|) sum over rows h of f_j(h), for every latent j (eq. 6's TF and IDF inputs).

    ``activations`` holds the rows of the generations of one prompt set. Returns float32 (num_latents,).
    """
    rows = check_data(activations, sae.cfg.d_in)
    positive_int("batch_size", batch_size)
    sums = torch.zeros(sae.cfg.num_latents, dtype=torch.float64)
    for h in rows_in_order(activations, batch_size):
        latents, indices, _ = sae.encode(h)
        sums.index_add_(0, indices.flatten(), latents.flatten().double())
    return (sums / rows).float()


def tfidf_scores(mu_concept: Tensor, mu_counter: Tensor, eps: float = 1e-6) -> Tensor:
    """Eq. 6: score_j = mu_j(P_c) * log(1 + 1 / (mu_j(P_counter) + eps)), for every latent j."""
    for name, mu in (("mu_concept", mu_concept), ("mu_counter", mu_counter)):
        if not isinstance(mu, Tensor) or mu.ndim != 1:
            raise TadaError(f"{name} must be a 1-D tensor of mean latent activations; got "
                             f"{tuple(mu.shape) if isinstance(mu, Tensor) else type(mu).__name__}")
        if (mu < 0).any():
            raise TadaError(f"{name} must be >= 0 (means of ReLU latents); its minimum is {mu.min().item():g}")
    if mu_concept.shape != mu_counter.shape:
        raise TadaError(f"mu_concept {tuple(mu_concept.shape)} and mu_counter {tuple(mu_counter.shape)} differ in shape")
    if not (isinstance(eps, (int, float)) and eps > 0):
        raise TadaError(f"eps must be a positive number; got {eps!r}")
    return mu_concept * torch.log1p(1.0 / (mu_counter + eps))


def select_features(scores: Tensor, tau: int) -> Tensor:
    """Indices (int64) of the ``tau`` highest scores, best first; equal scores keep index order."""
    if not isinstance(scores, Tensor) or scores.ndim != 1:
        raise TadaError(f"scores must be a 1-D tensor; got {tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__}")
    if isinstance(tau, bool) or not isinstance(tau, int) or not 1 <= tau <= len(scores):
        raise TadaError(f"tau must be an int in [1, {len(scores)}]; got {tau!r}")
    return torch.sort(scores, descending=True, stable=True).indices[:tau]


def sae_direction(sae: TopKSAE, features) -> Tensor:
    """Eq. 7: v = sum over j in F of W_dec[:, j] (paper layout; row j of our ``W_dec``). Returns (d_in,)."""
    index = torch.as_tensor(features)
    if index.ndim != 1 or len(index) == 0 or index.is_floating_point() or index.dtype == torch.bool:
        raise TadaError(f"features must be a non-empty 1-D sequence of latent indices; got {features!r}")
    if index.min() < 0 or index.max() >= sae.cfg.num_latents:
        raise TadaError(f"feature indices must be in [0, {sae.cfg.num_latents}); got {index.tolist()}")
    if len(index.unique()) != len(index):
        raise TadaError(f"feature indices must be distinct; got {index.tolist()}")
    return sae.W_dec.detach()[index].sum(0)

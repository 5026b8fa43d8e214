"""Steering evaluation metrics of the paper (sec. 4.2, "Evaluation Metrics").

A steering sweep generates the same prompts and seeds at strengths alpha in {alpha_min, ..., alpha_max}
(alpha = 0 is the unsteered baseline). Four families of numbers judge it:

- Delta alignment: audio-text similarity at alpha_max minus at alpha_min (`delta_alignment`).
- Smoothness: standard deviation of the consecutive alignment differences along alpha (`smoothness`).
- Preservation: LPAPS and FAD of the steered audio against the alpha = 0 audio, averaged over
  alphas (`preservation`, with `frechet_distance`, `fad` and `fad_infinity` underneath).
- Audio quality: Audiobox Aesthetics (see `tada.evaluation.scorers.aesthetics`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from rich.progress import track

from tada.audio import Audio
from tada.errors import TadaError

if TYPE_CHECKING:
    from tada.evaluation.lpaps import LPAPS

Embedder = Callable[[Audio], torch.Tensor]
"""Anything that maps an `Audio` batch to (N, E) embeddings, FAD's feature space: one a row (a scorer's
`embed_audio`) or several (VGGish's `embed_frames`, one per 0.96 s example)."""


def _as_float64(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TadaError(f"{name} must be numeric (array, tensor or list of numbers); got {type(x).__name__}") from err
    if not np.all(np.isfinite(arr)):
        raise TadaError(f"{name} contains NaN or infinite values")
    return arr


def _sorted_sweep(alphas, similarities) -> tuple[np.ndarray, np.ndarray]:
    """Validate a sweep and return (alphas, similarities) sorted by alpha; similarities keep trailing axes."""
    a = _as_float64(alphas, "alphas")
    s = _as_float64(similarities, "similarities")
    if a.ndim != 1:
        raise TadaError(f"alphas must be one-dimensional; got shape {a.shape}")
    if s.ndim == 0 or s.shape[0] != a.shape[0]:
        raise TadaError(
            f"similarities must have one row per alpha along axis 0 (length {a.shape[0]}); got shape {s.shape}"
        )
    if len(np.unique(a)) != len(a):
        raise TadaError(f"alphas must be distinct; got {a.tolist()}")
    order = np.argsort(a, kind="stable")
    return a[order], s[order]


def delta_alignment(alphas, similarities) -> np.ndarray | float:
    """Delta alignment (paper sec. 4.2): similarity at the largest alpha minus similarity at the smallest.

    alphas: (A,) distinct steering strengths, any order, at least two.
    similarities: (A,) or (A, ...) audio-text similarities, row i measured at alphas[i]
        (extra axes, e.g. prompts, are kept and reduced separately).
    Returns a float for 1-D input, else an array of the trailing shape. Higher means more concept change.
    """
    a, s = _sorted_sweep(alphas, similarities)
    if len(a) < 2:
        raise TadaError(f"delta_alignment needs at least two alphas; got {a.tolist()}")
    out = s[-1] - s[0]
    return float(out) if out.ndim == 0 else out


def smoothness(alphas, similarities) -> np.ndarray | float:
    """Smoothness (paper sec. 4.2): standard deviation of consecutive alignment differences along alpha.

    With alphas sorted a_0 < ... < a_{A-1} and d_i = s(a_{i+1}) - s(a_i), returns std(d_0, ..., d_{A-2}).
    The population standard deviation (ddof = 0, numpy's default) is used: the A-1 differences are every
    transition of the grid, not a sample drawn from a larger set, so no small-sample correction applies.
    A perfectly linear response gives 0; lower is smoother.

    alphas: (A,) distinct steering strengths, any order, at least three (two give a single difference,
        whose spread is always 0).
    similarities: (A,) or (A, ...) similarities, row i at alphas[i]; extra axes are reduced separately.
    """
    a, s = _sorted_sweep(alphas, similarities)
    if len(a) < 3:
        raise TadaError(f"smoothness needs at least three alphas; got {a.tolist()}")
    out = np.diff(s, axis=0).std(axis=0, ddof=0)
    return float(out) if out.ndim == 0 else out


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues -> 0)."""
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between two Gaussians (Kilgour et al. 2019, FAD; paper sec. 4.2 preservation):

        d^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    The trace of (S1 S2)^(1/2) is computed as the sum of square roots of the eigenvalues of the symmetric PSD
    matrix S1^(1/2) S2 S1^(1/2), which has the same spectrum as S1 S2; this needs no non-symmetric matrix
    square root and stays real and finite for singular covariances (fewer samples than dimensions).
    Computed in float64. Inputs: mu (E,), sigma (E, E) symmetric PSD.
    """
    m1, m2 = _as_float64(mu1, "mu1"), _as_float64(mu2, "mu2")
    s1, s2 = _as_float64(sigma1, "sigma1"), _as_float64(sigma2, "sigma2")
    if m1.ndim != 1 or m1.shape != m2.shape:
        raise TadaError(f"mu1 and mu2 must be vectors of one length; got shapes {m1.shape} and {m2.shape}")
    e = m1.shape[0]
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        if s.shape != (e, e):
            raise TadaError(f"{name} must be ({e}, {e}) to match the means; got shape {s.shape}")
        if not np.allclose(s, s.T, rtol=1e-6, atol=1e-10 * max(1.0, np.abs(s).max())):
            raise TadaError(f"{name} must be symmetric")
    root1 = _psd_sqrt(s1)
    middle = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = m1 - m2
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean
    return float(max(value, 0.0))


def gaussian_stats(emb) -> tuple[np.ndarray, np.ndarray]:
    """Mean (E,) and unbiased covariance (E, E) (ddof = 1, as in the FAD reference code) of (N, E) embeddings."""
    x = _as_float64(emb, "embeddings")
    if x.ndim != 2:
        raise TadaError(f"embeddings must be (N, E); got shape {x.shape}")
    if x.shape[0] < 2:
        raise TadaError(f"a covariance needs at least 2 embeddings; got {x.shape[0]}")
    return x.mean(axis=0), np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1])


def fad(emb_a, emb_b) -> float:
    """Frechet Audio Distance (Kilgour et al. 2019; paper sec. 4.2): the Frechet distance between Gaussians fitted
    to two embedding sets, (N_a, E) and (N_b, E). The embedding model is the caller's choice (`Embedder`)."""
    mu_a, s_a = gaussian_stats(emb_a)
    mu_b, s_b = gaussian_stats(emb_b)
    if mu_a.shape != mu_b.shape:
        raise TadaError(f"embedding sets must share a dimension; got {mu_a.shape[0]} and {mu_b.shape[0]}")
    return frechet_distance(mu_a, s_a, mu_b, s_b)


class FadInfinity(NamedTuple):
    """Result of `fad_infinity`."""

    value: float
    """FAD extrapolated to an infinite evaluation set (intercept of the fit at 1/N = 0)."""
    slope: float
    """Slope of FAD against 1/N: the bias a finite set of N adds is about slope / N."""
    ns: tuple[int, ...]
    """Evaluation-set sizes used."""
    fads: tuple[float, ...]
    """FAD measured at each size in `ns`."""


def extrapolate_to_infinity(ns: Sequence[int], values: Sequence[float]) -> tuple[float, float]:
    """Least-squares line values = intercept + slope / N; returns (intercept, slope). Needs two distinct N."""
    n = _as_float64(ns, "ns")
    v = _as_float64(values, "values")
    if n.ndim != 1 or n.shape != v.shape:
        raise TadaError(f"ns and values must be vectors of one length; got shapes {n.shape} and {v.shape}")
    if np.any(n <= 0):
        raise TadaError(f"ns must be positive; got {n.tolist()}")
    if len(np.unique(n)) < 2:
        raise TadaError(f"a line in 1/N needs at least two distinct sizes; got {n.tolist()}")
    slope, intercept = np.polyfit(1.0 / n, v, deg=1)
    return float(intercept), float(slope)


def fad_infinity(emb_a, emb_b, ns: Sequence[int] | None = None, seed: int = 0) -> FadInfinity:
    """FAD-infinity (Chung & Kim 2020, "Effectively unbiased FID"; used for audio by fadtk, Gui et al. 2024).

    FAD is biased upward by roughly slope / N for an evaluation set of N samples. For each N in `ns`, N rows of
    `emb_b` (the evaluated set) are drawn without replacement and scored against all of `emb_a` (the reference);
    a least-squares line in 1/N is fitted and its value at 1/N = 0 returned.

    ns: subset sizes, each in [2, len(emb_b)]; default: 10 sizes evenly spaced from max(2, len(emb_b) // 2)
        to len(emb_b). (fadtk uses 25 sizes from 500 up, which needs thousands of clips.)
    seed: seeds one numpy Generator, so the result is reproducible.
    """
    a = _as_float64(emb_a, "emb_a")
    b = _as_float64(emb_b, "emb_b")
    if b.ndim != 2:
        raise TadaError(f"emb_b must be (N, E); got shape {b.shape}")
    total = b.shape[0]
    if ns is None:
        ns = np.unique(np.linspace(max(2, total // 2), total, 10).astype(int))
    sizes = tuple(int(n) for n in ns)
    bad = [n for n in sizes if not 2 <= n <= total]
    if bad:
        raise TadaError(f"every size in ns must lie in [2, {total}] (rows of emb_b); got {bad}")
    mu_a, s_a = gaussian_stats(a)
    rng = np.random.default_rng(seed)
    fads = []
    for n in sizes:
        mu_b, s_b = gaussian_stats(b[rng.choice(total, size=n, replace=False)])
        fads.append(frechet_distance(mu_a, s_a, mu_b, s_b))
    value, slope = extrapolate_to_infinity(sizes, fads)
    return FadInfinity(value, slope, sizes, tuple(fads))


class Preservation(NamedTuple):
    """Result of `preservation`."""

    lpaps: float | None
    """LPAPS against the alpha = 0 audio, averaged over rows and alphas (None when no LPAPS model was given)."""
    fad: float | None
    """FAD against the alpha = 0 audio, averaged over alphas (None when no embedder was given)."""
    per_alpha: dict[float, dict[str, float]]
    """{alpha: {"lpaps": ..., "fad": ...}} for every non-zero alpha."""


def preservation(
    steered: Mapping[float, Audio],
    reference: Audio,
    *,
    lpaps: LPAPS | None = None,
    embed: Embedder | None = None,
    progress: bool = True,
) -> Preservation:
    """Preservation (paper sec. 4.2): LPAPS and FAD of steered audio against the unsteered (alpha = 0) audio,
    averaged over all steering strengths.

    steered: {alpha: Audio}; row i of every Audio must come from the same prompt and seed as row i of
        `reference`. An alpha = 0 entry, if present, is the baseline itself and is left out of the averages.
    reference: the alpha = 0 generations.
    lpaps: an `tada.evaluation.lpaps.LPAPS` model; LPAPS is the mean over rows of the per-pair distance.
    embed: FAD's embedding, any `Embedder` (by name: `tada.evaluation.registry.load_embedder`); None skips FAD.
        FAD compares the set of steered embeddings with the set of reference embeddings: at least 2 in each.
    progress: show a progress bar over alphas.
    At least one of `lpaps` and `embed` must be given.
    """
    if lpaps is None and embed is None:
        raise TadaError("preservation needs lpaps=<LPAPS model>, embed=<callable Audio -> (B, E)>, or both")
    if embed is not None and not callable(embed):
        raise TadaError(f"embed must be a callable Audio -> (N, E), or None; got {type(embed).__name__}")
    if not isinstance(reference, Audio):
        raise TadaError(f"reference must be an Audio; got {type(reference).__name__}")
    alphas = sorted(float(a) for a in steered if float(a) != 0.0)
    if not alphas:
        raise TadaError(f"steered needs at least one non-zero alpha; got keys {list(steered)}")
    by_alpha = {float(a): audio for a, audio in steered.items()}
    for a in alphas:
        audio = by_alpha[a]
        if not isinstance(audio, Audio):
            raise TadaError(f"steered[{a}] must be an Audio; got {type(audio).__name__}")
        if len(audio) != len(reference):
            raise TadaError(f"steered[{a}] has {len(audio)} rows but reference has {len(reference)}")
    ref_emb = embed(reference) if embed is not None else None
    per_alpha: dict[float, dict[str, float]] = {}
    for a in track(alphas, description="preservation", disable=not progress, transient=True):
        row: dict[str, float] = {}
        if lpaps is not None:
            row["lpaps"] = float(lpaps.distance(by_alpha[a], reference).mean())
        if ref_emb is not None:
            row["fad"] = fad(ref_emb, embed(by_alpha[a]))
        per_alpha[a] = row
    mean_lpaps = float(np.mean([r["lpaps"] for r in per_alpha.values()])) if lpaps is not None else None
    mean_fad = float(np.mean([r["fad"] for r in per_alpha.values()])) if embed is not None else None
    return Preservation(mean_lpaps, mean_fad, per_alpha)

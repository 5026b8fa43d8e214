import math

import numpy as np
import pytest
import scipy.linalg
import torch

from tada.audio import Audio
from tada.errors import TadaError
from tada.evaluation.metrics import (
    FadInfinity,
    Preservation,
    delta_alignment,
    extrapolate_to_infinity,
    fad,
    fad_infinity,
    frechet_distance,
    gaussian_stats,
    preservation,
    smoothness,
)
from tada.evaluation.registry import load_embedder

# ---------------------------------------------------------------- delta alignment and smoothness


def test_delta_alignment_hand_values_any_order():
    alphas = [0, -10, 10, 20]
    sims = [0.30, 0.10, 0.35, 0.50]  # at -10: 0.10, at 20: 0.50
    assert delta_alignment(alphas, sims) == pytest.approx(0.40)


def test_delta_alignment_keeps_trailing_axes():
    alphas = torch.tensor([1.0, -1.0, 0.0])
    sims = torch.tensor([[0.9, 0.2], [0.1, 0.4], [0.5, 0.3]])
    np.testing.assert_allclose(delta_alignment(alphas, sims), [0.8, -0.2])


def test_smoothness_of_linear_series_is_zero():
    alphas = np.arange(-100, 101, 10)
    assert smoothness(alphas, 0.002 * alphas + 0.3) == pytest.approx(0.0, abs=1e-12)


def test_smoothness_hand_value_population_std():
    # sorted sims 0, 1, 1, 4 -> differences 1, 0, 3; mean 4/3; population variance
    # ((1-4/3)^2 + (0-4/3)^2 + (3-4/3)^2) / 3 = (1/9 + 16/9 + 25/9) / 3 = 42/27
    alphas = [3, 0, 1, 2]
    sims = [4, 0, 1, 1]
    assert smoothness(alphas, sims) == pytest.approx(math.sqrt(42 / 27))


def test_smoothness_per_column():
    alphas = [0, 1, 2, 3]
    sims = np.stack([[0, 1, 1, 4], [0, 2, 4, 6]], axis=1)
    np.testing.assert_allclose(smoothness(alphas, sims), [math.sqrt(42 / 27), 0.0], atol=1e-12)


@pytest.mark.parametrize(
    "alphas, sims, match",
    [
        ([0, 1, 1], [0.1, 0.2, 0.3], "distinct"),
        ([0, 1, 2], [0.1, 0.2], "one row per alpha"),
        ([[0, 1, 2]], [0.1, 0.2, 0.3], "one-dimensional"),
        ([0, 1], [0.1, 0.2], "at least three"),
        ([0, 1, 2], [0.1, float("nan"), 0.3], "NaN"),
    ],
)
def test_smoothness_bad_input(alphas, sims, match):
    with pytest.raises(ValueError, match=match):
        smoothness(alphas, sims)


def test_delta_alignment_needs_two_alphas_and_numbers():
    with pytest.raises(ValueError, match="at least two"):
        delta_alignment([1.0], [0.2])
    with pytest.raises(TadaError, match="numeric"):
        delta_alignment(["a", "b"], [0.1, 0.2])


# ---------------------------------------------------------------- Frechet distance and FAD


def test_frechet_distance_diagonal_closed_form():
    # |mu1-mu2|^2 = 1 + 4 = 5; sum (sqrt(s1) - sqrt(s2))^2 = (1-2)^2 + (2-3)^2 = 2
    d = frechet_distance([0, 0], np.diag([1.0, 4.0]), [1, 2], np.diag([4.0, 9.0]))
    assert d == pytest.approx(7.0)


def test_frechet_distance_is_rotation_invariant():
    c, s = math.cos(0.3), math.sin(0.3)
    rot = np.array([[c, -s], [s, c]])
    s1 = rot @ np.diag([1.0, 4.0]) @ rot.T
    s2 = rot @ np.diag([4.0, 9.0]) @ rot.T
    assert frechet_distance(rot @ [0, 0], s1, rot @ [1.0, 2.0], s2) == pytest.approx(7.0)


def test_frechet_distance_non_commuting_2x2_closed_form():
    # For 2x2, tr sqrt(S1 S2) = sqrt(tr(S1 S2) + 2 sqrt(det S1 det S2)) = sqrt(8 + 2*3) = sqrt(14)
    s1 = np.array([[2.0, 1.0], [1.0, 2.0]])
    s2 = np.array([[1.0, 0.0], [0.0, 3.0]])
    assert frechet_distance([0, 0], s1, [0, 0], s2) == pytest.approx(8 - 2 * math.sqrt(14))


def test_frechet_distance_singular_covariances_stay_finite():
    s = np.zeros((3, 3))
    s[0, 0] = 1.0
    assert frechet_distance(np.zeros(3), s, np.zeros(3), s) == pytest.approx(0.0, abs=1e-12)
    assert frechet_distance(np.zeros(3), s, np.ones(3), np.zeros((3, 3))) == pytest.approx(4.0)


def test_frechet_distance_bad_input():
    with pytest.raises(ValueError, match="symmetric"):
        frechet_distance([0, 0], np.array([[1.0, 2.0], [0.0, 1.0]]), [0, 0], np.eye(2))
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        frechet_distance([0, 0], np.eye(3), [0, 0], np.eye(2))
    with pytest.raises(ValueError, match="one length"):
        frechet_distance([0, 0], np.eye(2), [0, 0, 0], np.eye(3))


def _reference_fad(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy's general matrix square root, as in the original FAD code."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fad_matches_textbook_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 6))
    b = rng.normal(loc=0.5, scale=1.5, size=(150, 6)) @ rng.normal(size=(6, 6))
    assert fad(a, b) == pytest.approx(_reference_fad(a, b), rel=1e-8)
    assert fad(torch.from_numpy(a).float(), torch.from_numpy(b).float()) == pytest.approx(
        _reference_fad(a, b), rel=1e-4
    )


def test_fad_of_identical_sets_is_zero_and_symmetric():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(50, 4)), rng.normal(size=(40, 4))
    assert fad(a, a) == pytest.approx(0.0, abs=1e-9)
    assert fad(a, b) == pytest.approx(fad(b, a), rel=1e-9)


def test_gaussian_stats_unbiased_covariance():
    mu, cov = gaussian_stats([[0.0, 0.0], [2.0, 4.0]])
    np.testing.assert_allclose(mu, [1.0, 2.0])
    np.testing.assert_allclose(cov, [[2.0, 4.0], [4.0, 8.0]])  # ddof = 1: (1 + 1) / 1 etc.


def test_fad_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        fad(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"\(N, E\)"):
        fad(np.zeros(3), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="share a dimension"):
        fad(np.zeros((4, 3)), np.zeros((5, 2)))


# ---------------------------------------------------------------- FAD-infinity


def test_extrapolation_recovers_exact_line():
    ns = [10, 20, 50, 100]
    intercept, slope = extrapolate_to_infinity(ns, [3 + 5 / n for n in ns])
    assert intercept == pytest.approx(3.0)
    assert slope == pytest.approx(5.0)


def test_extrapolation_bad_input():
    with pytest.raises(ValueError, match="two distinct"):
        extrapolate_to_infinity([10, 10], [1.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        extrapolate_to_infinity([0, 10], [1.0, 1.0])


def test_fad_infinity_full_size_equals_fad_and_is_reproducible():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(80, 3)), rng.normal(size=(60, 3))
    out = fad_infinity(a, b, ns=[20, 40, 60], seed=3)
    assert isinstance(out, FadInfinity)
    assert out.ns == (20, 40, 60)
    assert out.fads[-1] == pytest.approx(fad(a, b))  # all 60 rows, only their order differs
    assert out == fad_infinity(a, b, ns=[20, 40, 60], seed=3)
    intercept, slope = extrapolate_to_infinity(out.ns, out.fads)
    assert (out.value, out.slope) == pytest.approx((intercept, slope))


def test_fad_infinity_removes_small_sample_bias():
    # Both sets come from one distribution, so the true distance is 0; finite-N FAD is biased upward.
    rng = np.random.default_rng(4)
    a = rng.normal(size=(20000, 4))
    b = rng.normal(size=(400, 4))
    out = fad_infinity(a, b, ns=[50, 100, 200, 400], seed=0)
    assert out.slope > 0
    assert abs(out.value) < fad(a, b[:50])


def test_fad_infinity_default_sizes_and_bad_sizes():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(30, 2)), rng.normal(size=(20, 2))
    out = fad_infinity(a, b)
    assert out.ns[0] == 10 and out.ns[-1] == 20 and len(out.ns) == len(set(out.ns))
    with pytest.raises(ValueError, match=r"\[2, 20\]"):
        fad_infinity(a, b, ns=[1, 10])
    with pytest.raises(ValueError, match=r"\[2, 20\]"):
        fad_infinity(a, b, ns=[10, 21])


# ---------------------------------------------------------------- preservation


class _AbsDiffLpaps:
    """Stand-in with the LPAPS call shape: mean absolute sample difference per row."""

    def distance(self, a: Audio, b: Audio) -> torch.Tensor:
        return (a.waveform - b.waveform).abs().mean(dim=(1, 2))


def _first_samples(audio: Audio) -> torch.Tensor:
    return audio.waveform[:, 0, :3]


def test_preservation_averages_over_nonzero_alphas():
    rng = torch.Generator().manual_seed(0)
    ref = Audio(torch.randn(5, 1, 8, generator=rng), 8000)
    steered = {
        0: ref,
        -1.0: Audio(ref.waveform + 0.5, 8000),
        2.0: Audio(ref.waveform - 1.5 + 0.1 * torch.randn(5, 1, 8, generator=rng), 8000),
    }
    out = preservation(steered, ref, lpaps=_AbsDiffLpaps(), embed=_first_samples, progress=False)
    assert isinstance(out, Preservation)
    assert sorted(out.per_alpha) == [-1.0, 2.0]
    assert out.per_alpha[-1.0]["lpaps"] == pytest.approx(0.5)
    expected_lpaps = (0.5 + float((steered[2.0].waveform - ref.waveform).abs().mean())) / 2
    assert out.lpaps == pytest.approx(expected_lpaps, rel=1e-6)
    # a pure shift by 0.5 in every sample moves the mean by 0.5 per dimension: FAD = 3 * 0.25
    assert out.per_alpha[-1.0]["fad"] == pytest.approx(0.75, rel=1e-6)
    ref_emb = _first_samples(ref).double().numpy()
    expected_fad = (0.75 + _reference_fad(ref_emb, _first_samples(steered[2.0]).double().numpy())) / 2
    assert out.fad == pytest.approx(expected_fad, rel=1e-5)


def test_preservation_optional_parts_and_errors():
    ref = Audio(torch.zeros(2, 1, 8), 8000)
    only_lpaps = preservation({1: Audio(torch.ones(2, 1, 8), 8000)}, ref, lpaps=_AbsDiffLpaps(), embed=None)
    assert only_lpaps.fad is None and only_lpaps.lpaps == pytest.approx(1.0)
    with pytest.raises(ValueError, match="lpaps=.*embed="):
        preservation({1: ref}, ref, embed=None)
    with pytest.raises(TadaError, match="callable"):
        preservation({1: ref}, ref, embed=3)
    with pytest.raises(ValueError, match="non-zero alpha"):
        preservation({0: ref}, ref, lpaps=_AbsDiffLpaps(), embed=None)
    with pytest.raises(ValueError, match="3 rows but reference has 2"):
        preservation({1: Audio(torch.zeros(3, 1, 8), 8000)}, ref, lpaps=_AbsDiffLpaps(), embed=None)
    with pytest.raises(TadaError, match="must be an Audio"):
        preservation({1: torch.zeros(2, 1, 8)}, ref, lpaps=_AbsDiffLpaps(), embed=None)


def test_preservation_embeds_through_a_named_scorer():
    from tada.evaluation.scorers.clap import ClapScorer

    gen = torch.Generator().manual_seed(1)
    ref = Audio(0.1 * torch.randn(3, 1, 48000, generator=gen), 48000)
    steered = {5.0: Audio(0.1 * torch.randn(3, 1, 48000, generator=gen), 48000)}
    out = preservation(steered, ref, embed=load_embedder("clap-tiny"), progress=False)
    clap = ClapScorer.random(seed=0)
    expected = _reference_fad(clap.embed_audio(ref).double().numpy(), clap.embed_audio(steered[5.0]).double().numpy())
    assert out.lpaps is None
    assert out.fad == pytest.approx(expected, rel=1e-4)

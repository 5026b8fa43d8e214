"""CLAP-LPAPS against laion_clap itself (tests/reference/make_clap_lpaps.py ran laion_clap 1.1.7, driven as
ZETA's evaluation code drives it, on a tiny random HTSAT written both as a laion_clap state dict and as a
transformers ClapModel folder), and its own properties."""

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tada.audio import Audio
from tada.errors import TadaError
from tada.evaluation.clap_lpaps import ClapLPAPS
from tada.evaluation.metrics import preservation
from tada.evaluation.scorers.clap import ClapScorer

REFERENCE = Path(__file__).parent / "reference" / "clap-lpaps-tiny"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def lpaps():
    return ClapLPAPS.from_pretrained(REFERENCE / "hf")


@pytest.fixture(scope="module")
def reference():
    meta = json.loads((REFERENCE / "reference.json").read_text())
    tensors = load_file(str(REFERENCE / "reference.safetensors"))
    pairs = [(_audio(tensors[f"a{i}"], meta), _audio(tensors[f"b{i}"], meta)) for i in range(meta["pairs"])]
    return pairs, tensors["stages"], tensors["lpaps"]


def _audio(pcm: torch.Tensor, meta: dict) -> Audio:
    return Audio(pcm.float()[None, None] / meta["pcm_scale"], meta["sample_rate"])


def test_agrees_with_laion_clap(lpaps, reference):
    pairs, stages, totals = reference
    assert len(pairs) == 3 and (totals > 0.01).all()  # nothing trivially zero
    for (a, b), ref_stages, ref_total in zip(pairs, stages, totals):
        ours = lpaps.stage_distances(a, b)[0]
        torch.testing.assert_close(ours, ref_stages, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(lpaps.distance(a, b)[0], ref_total, atol=TOLERANCE, rtol=0)


def test_the_folder_holds_the_laion_clap_weights():
    laion = load_file(str(REFERENCE / "laion_clap_audio.safetensors"))
    ours = ClapScorer.from_pretrained(REFERENCE / "hf", check=False).model.state_dict()
    torch.testing.assert_close(ours["audio_model.audio_encoder.batch_norm.running_var"], laion["audio_branch.bn0.running_var"])
    qkv = laion["audio_branch.layers.3.blocks.1.attn.qkv.weight"]
    prefix = "audio_model.audio_encoder.layers.3.blocks.1.attention.self."
    torch.testing.assert_close(torch.cat([ours[prefix + p + ".weight"] for p in ("query", "key", "value")]), qkv)


def test_identical_inputs_give_zero_and_order_does_not_matter(lpaps, reference):
    a, b = reference[0][0]
    assert lpaps.distance(a, a).item() == 0.0
    torch.testing.assert_close(lpaps.distance(a, b), lpaps.distance(b, a), atol=1e-7, rtol=0)


def test_rows_are_independent_of_their_batch(lpaps, reference):
    a, b = reference[0][0]
    flipped = Audio(a.waveform.flip(-1), a.sample_rate)
    batch_a, batch_b = Audio.cat([a, flipped, b]), Audio.cat([b, a, flipped])
    together = lpaps.distance(batch_a, batch_b)
    alone = torch.cat([lpaps.distance(batch_a[i], batch_b[i]) for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=0)
    one_at_a_time = ClapLPAPS(lpaps.scorer, batch_size=1).distance(batch_a, batch_b)
    torch.testing.assert_close(one_at_a_time, together, atol=1e-6, rtol=0)
    assert together.shape == (3,) and together.dtype == torch.float32


def test_long_audio_is_the_mean_over_fixed_windows(lpaps):
    gen = torch.Generator().manual_seed(0)
    sr, n = 48000, 12 * 48000  # 12 s: windows at 0 s and at 2 s (the one ending at the last sample)
    a = Audio(0.1 * torch.randn(1, 2, n, generator=gen), sr)
    b = Audio(0.1 * torch.randn(1, 1, n, generator=gen), sr)
    whole = lpaps.stage_distances(a, b)
    windows = [lpaps.stage_distances(Audio(a.waveform[..., s:s + 10 * sr], sr), Audio(b.waveform[..., s:s + 10 * sr], sr))
               for s in (0, 2 * sr)]
    torch.testing.assert_close(whole, (windows[0] + windows[1]) / 2, atol=1e-6, rtol=0)
    assert torch.equal(lpaps.distance(a, b), lpaps.distance(a, b))  # no random crop anywhere


def test_zeta_windows_start_every_nine_seconds(lpaps):
    gen = torch.Generator().manual_seed(1)
    sr, n = 48000, 12 * 48000  # windows 0-10 s and 9-12 s (the short one repeat-padded)
    a, b = (Audio(0.1 * torch.randn(1, 1, n, generator=gen), sr) for _ in range(2))
    zeta = ClapLPAPS(lpaps.scorer, windowing="zeta")
    pieces_a, _, owners = zeta.windows(a, b)
    assert [len(p) for p in pieces_a] == [10 * sr, 3 * sr] and owners == [0, 0]
    parts = [lpaps.stage_distances(Audio(a.waveform[..., s:e], sr), Audio(b.waveform[..., s:e], sr))
             for s, e in ((0, 10 * sr), (9 * sr, n))]
    torch.testing.assert_close(zeta.stage_distances(a, b), (parts[0] + parts[1]) / 2, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="windowing"):
        ClapLPAPS(lpaps.scorer, windowing="random")


def test_pairs_are_compared_over_the_shorter_length(lpaps, reference):
    a, b = reference[0][0]
    longer = Audio(torch.cat([b.waveform, torch.zeros(1, 1, 4800)], dim=-1), b.sample_rate)
    torch.testing.assert_close(lpaps.distance(a, longer), lpaps.distance(a, b))


def test_other_sample_rates_are_resampled(lpaps, reference):
    a, b = reference[0][1]
    half = Audio(a.waveform[..., ::2], 24000)
    assert lpaps.distance(half, Audio(b.waveform[..., ::2], 24000)).shape == (1,)


def test_a_double_precision_copy_agrees(lpaps, reference):
    a, b = reference[0][0]
    double = ClapLPAPS(copy.deepcopy(lpaps.scorer))
    double.scorer.model.double()
    assert double.dtype == torch.float64 and lpaps.dtype == torch.float32
    torch.testing.assert_close(double.distance(a, b), lpaps.distance(a, b), atol=1e-5, rtol=0)


def test_a_half_precision_model_gives_float32_distances_close_to_the_reference(lpaps, reference):
    (a, b), total = reference[0][0], reference[2][0]
    half = ClapLPAPS(copy.deepcopy(lpaps.scorer))
    half.scorer.model.to(torch.bfloat16)
    d = half.distance(a, b)
    assert half.dtype == torch.bfloat16 and d.dtype == torch.float32
    assert abs(d.item() - total.item()) < 0.02  # bfloat16 keeps 8 bits of mantissa


def test_serves_as_the_preservation_distance(lpaps, reference):
    a, b = reference[0][0]
    result = preservation({0.0: a, 1.0: b, 2.0: a}, a, lpaps=lpaps, embed=None, progress=False)
    assert result.per_alpha[2.0]["lpaps"] == 0.0
    assert result.lpaps == pytest.approx(lpaps.distance(b, a).item() / 2, abs=1e-6)


def test_bad_inputs_are_named(lpaps, reference):
    a, b = reference[0][0]
    with pytest.raises(ValueError, match="row by row"):
        lpaps.distance(Audio.cat([a, a]), b)
    with pytest.raises(TadaError, match="Audio"):
        lpaps.distance(a.waveform, b)
    with pytest.raises(TadaError, match="ClapScorer"):
        ClapLPAPS(lpaps.scorer.model)

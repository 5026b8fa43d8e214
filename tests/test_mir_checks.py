"""The MIR checks of a sweep (tada.evaluation.mir_checks) on clips whose answer is known, and Toy-LPAPS."""

import numpy as np
import pandas as pd
import pytest
import torch
from test_mir import SR, chord, click_track

from tada.audio import Audio
from tada.errors import TadaError
from tada.evaluation import mir_checks as M


def audio(*waves):
    return Audio(torch.tensor(np.stack(waves))[:, None], SR)


def test_the_concept_picks_its_measures():
    assert M.concept_measures("tempo") == ("weighted_onset_rate", "onset_rate", "tempo_bpm")
    assert M.concept_measures("mood") == ("major_minor",)
    assert M.concept_measures("vocal_gender") == ("vocal_register",)
    assert M.concept_measures("piano") == ("brightness",)  # a timbre measure only


def test_measure_files_reads_each_clip():
    clips = audio(click_track(90.0), click_track(150.0))
    table = M.measure_files(clips, ["tempo_bpm", "onset_rate"])
    assert list(table.columns) == ["mir_tempo_bpm", "mir_onset_rate"]
    assert table.mir_tempo_bpm.tolist() == pytest.approx([90.0, 150.0], rel=0.04)
    assert table.mir_onset_rate[1] > table.mir_onset_rate[0]
    with pytest.raises(TadaError, match="unknown MIR measures \\['bpm'\\]"):
        M.measure_files(clips, ["bpm"])


def test_preservation_axes_against_the_same_prompt_and_seed_at_alpha_zero():
    major, minor = chord(60, "major"), chord(60, "minor")
    index = pd.DataFrame({"prompt_index": [0, 0, 0, 1], "seed": [0, 0, 0, 0], "alpha": [0.0, 1.0, 2.0, 1.0]})
    table = M.preservation_axes(index, audio(major, major, minor, major), axes=["harmony", "ssm"])
    assert table.loc[0].tolist() == [0.0, 0.0]  # the reference itself
    assert table.loc[1, "harmony"] == pytest.approx(0.0, abs=1e-9)  # the same clip at another alpha
    assert table.loc[2, "harmony"] > 0.02  # the third moved
    assert table.loc[3].isna().all()  # prompt 1 has no alpha = 0 file
    with pytest.raises(TadaError, match="unknown preservation axes"):
        M.preservation_axes(index, audio(major, major, minor, major), axes=["tempo"])


def test_agreement_is_pearson_and_flags_what_means_nothing():
    per_file = pd.DataFrame({"mir_onset_rate": [1.0, 2.0, 3.0, 4.0], "align_a": [0.1, 0.2, 0.2, 0.5],
                             "align_flat": [0.3] * 4, "mir_brightness": [1.0, np.nan, 2.0, np.nan]})
    out = M.agreement(per_file, ["onset_rate"], ["align_a", "align_flat"])
    assert out["corr_onset_rate_a"] == pytest.approx(np.corrcoef([1, 2, 3, 4], [0.1, 0.2, 0.2, 0.5])[0, 1])
    assert np.isnan(out["corr_onset_rate_flat"])  # a constant alignment: no correlation to speak of
    assert np.isnan(M.agreement(per_file, ["brightness"], ["align_a"])["corr_brightness_a"])  # two finite rows


def test_toy_lpaps_is_the_clap_lpaps_reduction_on_the_toy_scorer():
    from tada.evaluation.clap_lpaps import stage_distance
    from tada.toy.lpaps import ToyLPAPS

    lp = ToyLPAPS()
    rng = np.random.default_rng(0)
    a = audio(*(0.1 * rng.standard_normal((3, SR * 2))).astype(np.float32))
    b = audio(*(0.1 * rng.standard_normal((3, SR * 2))).astype(np.float32))
    d = lp.distance(a, b)
    assert torch.equal(lp.distance(a, a), torch.zeros(3))
    torch.testing.assert_close(d, lp.distance(b, a))  # symmetric
    torch.testing.assert_close(lp.distance(a[1:2], b[1:2]), d[1:2])  # batch-independent
    h_a, h_b, expected = lp.scorer.features(a), lp.scorer.features(b), torch.zeros(3)
    body = lp.scorer.net.body
    assert len(body) == 15  # five conv blocks
    for i in range(0, 15, 3):
        h_a, h_b = body[i:i + 3](h_a), body[i:i + 3](h_b)
        expected += stage_distance(h_a.transpose(1, 2), h_b.transpose(1, 2))
    torch.testing.assert_close(d, expected)
    assert ((d > 0) & (d <= 4 * 5)).all()


def test_the_measures_are_validated_on_the_toys_own_clips():
    from tada.toy.judges import JUDGES, auc, validate_measures
    from tada.toy.worlds import get_world

    report = validate_measures(n=6, world="v1", concepts=("maracas",))
    assert set(report) == {"rendered", "round_trip"}
    examples = [get_world("v1").make_example(2_000_000 + i) for i in range(6)]
    labelled = [(JUDGES["maracas"].label(e[0]), e[2]) for e in examples]
    scores = [M.MEASURES["brightness"](w, 16000) for _, w in labelled]
    assert report["rendered"]["maracas"] == {"brightness": auc(scores, [lab for lab, _ in labelled]), "n": 6}
    assert 0 <= report["round_trip"]["maracas"]["brightness"] <= 1

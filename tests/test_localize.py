"""Eq. 9, its bootstrap, and the batched activation-patching sweep."""

import numpy as np
import pandas as pd
import pytest
import torch

import tada
from tada.runs import RunFolder
from tada.errors import TadaError
from tada.evaluation.registry import load_scorer
from tada.localization import (
    SOURCE,
    TARGET,
    LayerImpact,
    bootstrap_impact,
    impact,
    impact_table,
    run_sweep,
)

PAIRS = [("fast piano with drums", "slow piano with drums"), ("happy jazz", "sad jazz")]


def test_impact_matches_hand_computation():
    # two units, three layers; means: source 0.15, target 0.55, patched (0.55, 0.15, 0.35)
    patched = np.array([[0.5, 0.1, 0.3], [0.6, 0.2, 0.4]])
    src, tgt = np.array([0.1, 0.2]), np.array([0.5, 0.6])
    np.testing.assert_allclose(impact(patched, src, tgt), [1.0, 0.0, 0.5])


def test_impact_is_a_ratio_of_means_not_a_mean_of_ratios():
    # unit 2 has a tiny denominator (0.001): a mean of ratios would be (1 + 100) / 2
    patched = np.array([[0.3], [0.2]])
    src, tgt = np.array([0.2, 0.1]), np.array([0.3, 0.101])
    assert impact(patched, src, tgt)[0] == pytest.approx((0.25 - 0.15) / (0.2005 - 0.15))


def test_impact_is_nan_when_the_concept_changes_nothing():
    assert np.isnan(impact(np.ones((3, 2)), np.ones(3), np.ones(3))).all()


def test_impact_refuses_bad_shapes():
    with pytest.raises(ValueError, match="expected patched"):
        impact(np.ones(3), np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="at least one"):
        impact(np.ones((0, 2)), np.ones(0), np.ones(0))


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(0)
    src = rng.normal(0.1, 0.01, 40)
    tgt = rng.normal(0.5, 0.01, 40)
    patched = np.stack([rng.normal(0.3, 0.05, 40), rng.normal(0.1, 0.05, 40)], 1)
    lo, hi = bootstrap_impact(patched, src, tgt, n_boot=300)
    est = impact(patched, src, tgt)
    assert (lo <= est).all() and (est <= hi).all()
    assert hi[0] - lo[0] < 0.2 and lo[0] > 0.3


def test_layer_impact_top_and_table():
    table = pd.DataFrame({"concept": ["a"] * 3 + ["b"] * 3, "layer": [0, 1, 2] * 2,
                          "impact": [0.1, 0.9, 0.5, 0.2, 0.7, 0.8], "ci_low": 0.0, "ci_high": 1.0, "units": 4})
    li = LayerImpact(table)
    assert li.top(1, concept="a") == [1]
    assert li.top(2) == [1, 2]  # means 0.15, 0.8, 0.65
    with pytest.raises(ValueError, match="no concept"):
        li.top(1, concept="c")


@pytest.fixture(scope="module")
def small():
    return tada.load("tiny-stable-audio"), load_scorer("clap-tiny")


def test_batched_sweep_equals_one_layer_at_a_time(small, tmp_path):
    model, scorer = small
    n = len(model.sites)
    batched = run_sweep(model, scorer, "tempo", PAIRS, ["fast tempo"], seeds=[0, 1], max_batch=n + 2)
    # naive: one generation per row, patching a single layer at a time
    from tada.engine import PatchContext

    naive = []
    for p, (pc, pn) in enumerate(PAIRS):
        enc = model.encode([pc])
        for seed in (0, 1):
            for layer, sites in [(SOURCE, []), (TARGET, list(range(n)))] + [(l, [l]) for l in range(n)]:
                audio = model.generate([pn], [seed], interventions=[PatchContext(enc, sites=sites)])
                naive.append({"pair": p, "seed": seed, "layer": layer,
                              "sim": scorer.similarity(audio, ["fast tempo"]).mean(1).item()})
    merged = batched.merge(pd.DataFrame(naive), on=["pair", "seed", "layer"], suffixes=("", "_naive"))
    assert len(merged) == len(PAIRS) * 2 * (n + 2)
    np.testing.assert_allclose(merged.sim, merged.sim_naive, rtol=0, atol=1e-6)


def test_sweep_resumes_and_ends_with_the_same_table(small, tmp_path):
    model, scorer = small
    full = run_sweep(model, scorer, "tempo", PAIRS, ["fast tempo"], seeds=[0], max_batch=4)
    run = RunFolder(tmp_path, "localize", {"test": 1})
    calls = {"n": 0}
    real = model.generate

    def dying(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    model.generate = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(model, scorer, "tempo", PAIRS, ["fast tempo"], seeds=[0], max_batch=4, run=run)
    finally:
        del model.generate
    assert 0 < len(run.units()) < len(PAIRS)  # the first unit was written before the kill
    resumed = run_sweep(model, scorer, "tempo", PAIRS, ["fast tempo"], seeds=[0], max_batch=4,
                        run=RunFolder(tmp_path, "localize", {"test": 1}))
    key = ["pair", "seed", "layer"]
    a = impact_table(full.sort_values(key)).table
    b = impact_table(resumed.sort_values(key)).table
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), atol=1e-6)
    assert len(run.units()) == len(PAIRS)


def test_localize_writes_a_run_folder(small, tmp_path):
    model, scorer = small
    result = tada.localize(model, ["tempo", "piano"], n_pairs=2, seeds=1, scorer=scorer, out=tmp_path, n_boot=50)
    for name in ("manifest.json", "pairs.csv", "scores.csv", "impact.csv", "heatmap.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert set(result.table.concept) == {"tempo", "piano"}
    assert len(result.table) == 2 * len(model.sites)
    with pytest.raises(ValueError, match="other settings"):
        tada.localize(model, ["tempo"], n_pairs=3, seeds=1, scorer=scorer, out=tmp_path)


def test_sweep_refuses_bad_input(small):
    model, scorer = small
    with pytest.raises(ValueError, match="no counterfactual pairs"):
        run_sweep(model, scorer, "tempo", [], ["fast"])
    with pytest.raises(ValueError, match="max_batch"):
        run_sweep(model, scorer, "tempo", PAIRS, ["fast"], max_batch=0)
    with pytest.raises(TadaError, match="is not a site"):
        run_sweep(model, scorer, "tempo", PAIRS, ["fast"], layers=[99])


UNEQUAL = ("a very very happy song with drums", "a sad song")  # two prompts of different token lengths


@pytest.fixture(scope="module")
def ace_step():
    return tada.load("tiny-ace-step")


def test_common_text_length_encodes_like_one_pipeline_batch(ace_step, small):
    long, short = UNEQUAL
    joint = ace_step.generate([short, long], [0, 1], steps=2).waveform
    with ace_step.common_text_length([long, short]) as length:
        alone = ace_step.generate([short], [0], steps=2).waveform
    solo = ace_step.generate([short], [0], steps=2).waveform
    short_alone = ace_step.pipe.encode_prompt(prompt=[short], lyrics=[""], device="cpu", audio_duration=30.0)[1]
    assert length > short_alone.shape[1]
    assert (alone[0] - joint[0]).abs().max() < 1e-5  # the same up to batch-size rounding
    assert (solo[0] - joint[0]).abs().max() > 1e-3  # without a mask, padding changes the audio
    model = small[0]  # a family with a mask: nothing to do
    with model.common_text_length([long, short]):
        inside = model.generate([short], [0]).waveform
    assert torch.equal(inside, model.generate([short], [0]).waveform)


def test_ace_step_sweeps_a_pair_of_unequal_token_lengths(ace_step, small):
    from tada.engine import PatchContext

    scorer, n = small[1], len(ace_step.sites)
    with pytest.raises(ValueError, match="no attention mask"):  # what the sweep avoids
        ace_step.generate([UNEQUAL[1]], [0], steps=2,
                          interventions=[PatchContext(ace_step.encode([UNEQUAL[0]]), sites=[0])])
    batched = run_sweep(ace_step, scorer, "mood", [UNEQUAL], ["happy"], seeds=[0], steps=2, max_batch=n + 2)
    naive = []
    with ace_step.common_text_length(UNEQUAL):
        enc = ace_step.encode([UNEQUAL[0]])
        for layer, sites in [(SOURCE, []), (TARGET, list(range(n)))] + [(l, [l]) for l in range(n)]:
            audio = ace_step.generate([UNEQUAL[1]], [0], steps=2, interventions=[PatchContext(enc, sites=sites)])
            naive.append({"layer": layer, "sim": scorer.similarity(audio, ["happy"]).mean().item()})
    merged = batched.merge(pd.DataFrame(naive), on="layer", suffixes=("", "_naive"))
    assert len(merged) == n + 2
    np.testing.assert_allclose(merged.sim, merged.sim_naive, rtol=0, atol=1e-5)


def test_fewer_pairs_than_asked_is_said(small, tmp_path):
    model, scorer = small
    corpus = tmp_path / "captions.csv"
    corpus.write_text("caption\na fast song with piano\na calm song\n")
    with pytest.warns(UserWarning, match="yields 1 counterfactual pairs, fewer than the 8 asked for"):
        tada.localize(model, "tempo", n_pairs=8, seeds=1, scorer=scorer, captions=corpus, n_boot=10)


def test_window_patching_patches_consecutive_layers_and_window_1_is_the_plain_sweep(tmp_path):
    from tada.localization.sweep import sweep_rows

    assert sweep_rows(4, None, 1) == sweep_rows(4)
    assert sweep_rows(4, None, 2)[2:] == [(0, [0, 1]), (1, [1, 2]), (2, [2, 3])]
    assert sweep_rows(4, [1, 3], 2)[2:] == [(1, [1, 2])]  # the window from 3 would run past the last site
    for bad in (0, 5, 1.5):
        with pytest.raises(TadaError, match="window must be a whole number of layers from 1 to 4"):
            sweep_rows(4, None, bad)
    model = tada.load("tiny-stable-audio")
    plain = tada.localize(model, "tempo", n_pairs=2, seeds=1, steps=2, out=tmp_path / "plain")
    one = tada.localize(model, "tempo", n_pairs=2, seeds=1, steps=2, out=tmp_path / "one", window=1)
    pd.testing.assert_frame_equal(plain.table, one.table)
    two = tada.localize(model, "tempo", n_pairs=2, seeds=1, steps=2, out=tmp_path / "two", window=2)
    assert list(two.table["sites"]) == [f"{l}-{l + 1}" for l in range(len(model.sites) - 1)]
    scores = pd.read_csv(tmp_path / "two" / "scores.csv")
    assert sorted(scores.layer.unique()) == [-2, -1, *range(len(model.sites) - 1)]


def _fake_sweep(base, noise=0.02):
    """A stand-in for run_sweep: sim = base[layer] + noise per (pair, layer); source 0, target 1."""
    from tada.localization.impact import SOURCE, TARGET

    calls = []

    def sweep(model, scorer, concept, pairs, queries, seeds, steps, guidance, layers, max_batch, run, desc=None,
              window=1, pair_ids=None):
        calls.append((list(pair_ids), list(layers)))
        rows = []
        for p in pair_ids:
            rng = np.random.default_rng(p)
            for s in seeds:
                rows += [{"concept": concept, "pair": p, "seed": s, "layer": SOURCE, "sim": 0.0},
                         {"concept": concept, "pair": p, "seed": s, "layer": TARGET, "sim": 1.0}]
                rows += [{"concept": concept, "pair": p, "seed": s, "layer": l, "sim": base[l] + noise * rng.normal()}
                         for l in layers]
        return pd.DataFrame(rows)
    return sweep, calls


def test_adaptive_localization_stops_when_the_top_k_is_separated(monkeypatch):
    from tada.localization import sweep as S

    base = [0.9, 0.8, 0.1, 0.15, 0.05, 0.1]
    fake, calls = _fake_sweep(base)
    monkeypatch.setattr(S, "run_sweep", fake)
    model = tada.load("tiny-stable-audio")
    layers = list(range(len(model.sites)))
    pairs = [(f"fast {i}", f"slow {i}") for i in range(12)]
    res = S.adaptive_sweep(model, None, "tempo", pairs, ["fast"], seeds=[0], layers=layers, top_k=2, round_pairs=3,
                           n_boot=200, min_units=0, order_seed=None)  # the rule alone: drop from round 1, in order
    assert res.stopped == "separated"
    assert calls[0] == ([0, 1, 2], layers)  # round 1 patches every layer
    assert len(calls) < 4 and res.generations < res.full_generations
    table = impact_table(res.scores, n_boot=200)
    assert table.top(2) == [0, 1]
    assert (table.table.set_index("layer").units[[0, 1]] == 3 * len(calls)).all()  # the top two: every unit


def test_adaptive_localization_waits_for_min_units_and_can_shuffle_the_pairs(monkeypatch):
    from tada.localization import sweep as S

    fake, calls = _fake_sweep([0.9, 0.8, 0.1, 0.15, 0.05, 0.1])
    monkeypatch.setattr(S, "run_sweep", fake)
    model = tada.load("tiny-stable-audio")
    layers = list(range(len(model.sites)))
    pairs = [(f"fast {i}", f"slow {i}") for i in range(12)]
    res = S.adaptive_sweep(model, None, "tempo", pairs, ["fast"], seeds=[0], layers=layers, top_k=2, round_pairs=3,
                           n_boot=200, min_units=9, order_seed=0)
    assert [c[1] for c in calls[:3]] == [layers] * 3  # no layer dropped before 9 units (3 rounds of 3)
    assert res.stopped == "separated" and len(calls) == 3 and impact_table(res.scores, n_boot=200).top(2) == [0, 1]
    order = np.random.default_rng(0).permutation(12).tolist()
    assert [c[0] for c in calls] == [sorted(order[i:i + 3]) for i in range(0, 9, 3)]  # the shuffled rounds


def test_adaptive_localization_respects_its_budget(monkeypatch):
    from tada.localization import sweep as S

    fake, calls = _fake_sweep([0.5] * 6, noise=0.2)  # no layer stands out: only the budget stops it
    monkeypatch.setattr(S, "run_sweep", fake)
    model = tada.load("tiny-stable-audio")
    pairs = [(f"fast {i}", f"slow {i}") for i in range(12)]
    one_round = 2 * 1 * (len(model.sites) + 2)
    res = S.adaptive_sweep(model, None, "tempo", pairs, ["fast"], seeds=[0], round_pairs=2, budget=2 * one_round,
                           n_boot=100)
    assert res.stopped == "budget" and res.generations == 2 * one_round and len(calls) == 2
    with pytest.raises(TadaError, match="does not pay for one round"):
        S.adaptive_sweep(model, None, "tempo", pairs, ["fast"], seeds=[0], round_pairs=2, budget=one_round - 1)


def test_adaptive_rows_are_the_full_sweeps_rows(tmp_path):
    model = tada.load("tiny-stable-audio")
    tada.localize(model, "tempo", n_pairs=4, seeds=1, steps=2, out=tmp_path / "full")
    res = tada.localize(model, "tempo", n_pairs=4, seeds=1, steps=2, out=tmp_path / "adaptive",
                        adaptive={"top_k": 1, "round_pairs": 2})
    full = pd.read_csv(tmp_path / "full" / "scores.csv")
    part = pd.read_csv(tmp_path / "adaptive" / "scores.csv")
    merged = part.merge(full, on=["concept", "pair", "seed", "layer"], suffixes=("", "_full"))
    assert len(merged) == len(part)  # rows of the full sweep, the same up to batch-size rounding (shuffled rounds
    assert (merged.sim - merged.sim_full).abs().max() < 1e-5  # batch other pairs together than the full sweep does)
    assert list(pd.read_csv(tmp_path / "adaptive" / "adaptive.csv").columns) == [
        "concept", "stopped", "generations", "full_sweep_generations"]
    assert res.adaptive.generations.iloc[0] <= res.adaptive.full_sweep_generations.iloc[0]

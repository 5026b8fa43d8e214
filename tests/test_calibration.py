"""Calibrated dials on the toy: the map from alpha to the measured effect, its usable range, and a requested
effect that lands near what held-out prompts then measure."""

import json

import pytest

import tada
from tada.concepts import load_catalogue, load_eval_prompts
from tada.errors import TadaError
from tada.evaluation.registry import load_scorer
from tada.experiments.calibration import Calibration, calibrate, read_calibrations, usable_range, write_calibrations
from tada.methods.base import method

STEPS = 10


def test_the_usable_range_ends_where_the_gain_saturates():
    alphas = [-2, -1, -0.5, 0, 0.5, 1, 2]
    gains = [-0.30, -0.29, -0.10, 0, 0.10, 0.20, 0.21]
    assert usable_range(alphas, gains, saturation=0.95) == (-1, 1)  # -0.29 >= 0.95 * 0.30; 0.20 >= 0.95 * 0.21
    assert usable_range(alphas, gains, saturation=1.0) == (-2, 2)
    assert usable_range(alphas, [0.1, 0.05, 0.0, 0, 0.1, 0.2, 0.3]) == (-2, 2)  # a side that never gains


def test_the_map_inverts_only_where_it_is_monotonic(tmp_path):
    cal = Calibration("alignment", "norm", [-1, 0, 1, 2], [-0.2, 0, 0.1, 0.3], (-1, 2))
    assert cal.monotonic() and cal.to_alpha(0.2) == pytest.approx(1.5) and cal.to_effect(-0.5) == pytest.approx(-0.1)
    with pytest.raises(TadaError, match="outside the usable range"):
        cal.to_alpha(0.5)
    flat = Calibration("alignment", "norm", [-1, 0, 1], [0.1, 0, 0.1], (-1, 1))
    with pytest.raises(TadaError, match="not monotonic"):
        flat.to_alpha(0.05)
    path = write_calibrations(tmp_path / "c.json", {"alignment": cal})
    assert read_calibrations(path) == {"alignment": cal}
    (tmp_path / "bad.json").write_text(json.dumps({"alignment": {"measure": 1}}))
    with pytest.raises(TadaError, match="not a tada calibration file"):
        read_calibrations(tmp_path / "bad.json")


@pytest.fixture(scope="module")
def toy():
    return tada.load("toy")


def test_on_the_toy_tempo_and_mood_maps_are_monotonic_and_a_request_lands(toy, tmp_path):
    held_in, held_out = load_eval_prompts()[:3], load_eval_prompts()[3:6]
    tempo = method("caa").cls.fit(toy, "tempo", sites="all", steps=STEPS, n_pairs=4)
    cals = calibrate(toy, tempo, held_in, tmp_path / "tempo", steps=STEPS)
    assert set(cals) == {"alignment", "weighted_onset_rate"}
    cal = cals["alignment"]
    assert cal.monotonic() and cal.usable[0] < 0 < cal.usable[1]
    request = 0.5 * cal.to_effect(cal.usable[1])
    alpha = cal.to_alpha(request)
    scorer, queries = load_scorer("toy"), list(load_catalogue()["tempo"].queries.positive)
    steered = toy.generate(held_out, [0] * 3, steps=STEPS, steer=[tempo.at(tempo.strength(alpha, "norm"))])
    plain = toy.generate(held_out, [0] * 3, steps=STEPS)
    measured = float((scorer.similarity(steered, queries).mean(1) - scorer.similarity(plain, queries).mean(1)).mean())
    assert measured == pytest.approx(request, abs=0.5 * abs(request) + 0.02), (request, measured, alpha)
    mood = method("caa").cls.fit(toy, "mood", sites=[3, 4], n_pairs=4)
    assert calibrate(toy, mood, held_in, tmp_path / "mood")["alignment"].monotonic()

"""Calibrated dials on the toy: the map from alpha to the measured effect, its usable range, and a requested
effect that lands near what held-out prompts then measure."""

import json

import pytest

import tada
from tada.concepts import load_catalogue, load_eval_prompts
from tada.errors import TadaError
from tada.evaluation.registry import load_scorer
from tada.experiments.calibration import calibrate
from tada.methods.base import method
from tada.methods.calibration import Calibration, read_calibrations, usable_range, write_calibrations

STEPS = 10


def test_the_usable_range_ends_where_the_gain_saturates():
    alphas = [-2, -1, -0.5, 0, 0.5, 1, 2]
    gains = [-0.30, -0.29, -0.10, 0, 0.10, 0.20, 0.21]
    assert usable_range(alphas, gains, saturation=0.95) == (-1, 1)  # -0.29 >= 0.95 * 0.30; 0.20 >= 0.95 * 0.21
    assert usable_range(alphas, gains, saturation=1.0) == (-2, 2)
    assert usable_range(alphas, [0.1, 0.05, 0.0, 0, 0.1, 0.2, 0.3]) == (-2, 2)  # a side that never gains
    distances = [0.5, 0.3, 0.1, 0, 0.1, 0.2, 0.6]
    assert usable_range(alphas, gains, 1.0, distances, max_distance=0.25) == (-0.5, 1)  # the cutoff comes first
    assert usable_range(alphas, gains, 0.95, distances, max_distance=0.35) == (-1, 1)  # saturation comes first
    assert usable_range(alphas, gains, 0.95, distances, max_distance=0.05) == (0, 0)  # nothing is within it
    assert usable_range(alphas, gains, 1.0, [0.1, float("nan"), 0.1, 0, 0.1, 0.2, 0.3], 0.5) == (-0.5, 2)  # NaN: over


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
    assert set(cals) == {"alignment", "weighted_onset_rate", "toy-lpaps"}
    lpaps = cals["toy-lpaps"]
    assert lpaps.to_effect(0.0) == 0.0 and all(d > 0 for a, d in zip(lpaps.alphas, lpaps.effects) if a != 0)
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


def _calibrated_vector(toy, folder):
    """A hand-made vector on one toy site with a hand-written calibration beside its file."""
    import torch

    from tada.methods.calibration import calibration_path
    from tada.methods.vector import SteeringVector

    vec = SteeringVector({1: torch.randn(toy.sites[1].dim, generator=torch.Generator().manual_seed(0))},
                         {1: toy.sites[1].name}, meta={"model": "toy", "concept": "tempo", "frame_norm": 2.0})
    path = vec.save(folder / "tempo")
    cal = Calibration("alignment", "norm", [-2.0, 0.0, 1.0, 2.0], [-0.2, 0.0, 0.1, 0.3], (-2.0, 2.0))
    write_calibrations(calibration_path(path), {"alignment": cal})
    return path, cal


def test_a_loaded_file_takes_strengths_as_effects_in_its_calibrated_measure(toy, tmp_path):
    from tada.methods.base import load

    path, cal = _calibrated_vector(toy, tmp_path)
    vec = load(path, model=toy)
    assert vec.calibrations == {"alignment": cal}
    assert vec.strength(0.2, "alignment") == pytest.approx(1.5 * 2.0)  # effect 0.2 -> alpha 1.5 norm -> x frame norm
    assert vec.at(0.2, units="alignment").alpha == vec.at(1.5, units="norm").alpha
    assert vec.strength([-0.1, 0.05], "alignment") == pytest.approx([-1.0 * 2.0, 0.5 * 2.0])
    with pytest.raises(TadaError, match="outside the usable range"):
        vec.strength(0.5, "alignment")
    with pytest.raises(TadaError, match=r"units must be raw, norm or a measure this vector is calibrated in "
                                        r"\(alignment\); got 'bpm'"):
        vec.strength(1.0, "bpm")
    pci = method("pci").cls.fit(toy, "mood", sites="all")
    pci.save(tmp_path / "mood")
    write_calibrations(tmp_path / "mood.calibration.json",
                       {"alignment": Calibration("alignment", "raw", [0.0, 10.0, 20.0], [0.0, 0.1, 0.2], (0.0, 20.0))})
    assert load(tmp_path / "mood").at(0.05, units="alignment").alpha == pytest.approx(5.0)
    with pytest.raises(TadaError, match="has no calibration: run tada calibrate"):
        pci.at(0.05, units="alignment")  # fitted here, never calibrated


def test_tada_steer_sweeps_in_a_calibrated_measure_and_a_new_calibration_is_another_sweep(toy, tmp_path):
    from typer.testing import CliRunner

    from tada.cli import app
    from tada.methods.calibration import calibration_path

    path, cal = _calibrated_vector(toy, tmp_path)
    run = ["steer", "--vector", str(path), "--prompt", "a calm song", "--alphas", "0,0.2", "--units", "alignment",
           "--steps", "2", "--out", str(tmp_path / "sweep")]
    result = CliRunner().invoke(app, run)
    assert result.exit_code == 0, result.output
    import pandas as pd

    from tada.audio import Audio
    from tada.methods.base import load

    index = pd.read_csv(tmp_path / "sweep" / "index.csv")
    steered = Audio.load([tmp_path / "sweep" / index.loc[index.alpha == 0.2, "path"].item()]).waveform
    vec = load(path)
    expected = toy.generate(["a calm song"], [0], steps=2, steer=[vec.at(1.5, units="norm")]).waveform
    import torch

    torch.testing.assert_close(steered, expected, atol=1 / 32768, rtol=0)
    outside = CliRunner().invoke(app, run[:5] + ["--alphas", "0,0.9", "--model", "no-such-model"] + run[7:])
    assert isinstance(outside.exception, TadaError)  # refused before the (unknown) model is looked up
    assert "a change of 0.9 in alignment is outside the usable range -0.2 .. 0.3" in str(outside.exception)
    write_calibrations(calibration_path(path), {"alignment": Calibration("alignment", "norm", cal.alphas,
                                                                         [-0.1, 0.0, 0.2, 0.4], cal.usable)})
    rerun = CliRunner().invoke(app, run)  # the same effects now mean other alphas: not the files already made
    assert isinstance(rerun.exception, TadaError) and "other settings" in str(rerun.exception)

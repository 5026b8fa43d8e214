"""CAA (eq. 2), ReNorm (eq. 3), steering vectors on disk, and their application."""

import json

import pytest
import torch

import tada
from tada.engine import Capture, renorm
from tada.errors import TadaError
from tada.methods.caa import caa_direction, fit
from tada.methods.vector import SteeringVector

PAIRS = [("fast piano", "slow piano"), ("fast jazz with drums", "slow jazz with drums")]


def test_caa_direction_by_hand():
    h_pos = torch.tensor([[3.0, 0.0], [1.0, 2.0]])
    h_neg = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # differences (2, 0) and (0, 2): mean (1, 1), unit norm (1/sqrt2, 1/sqrt2)
    torch.testing.assert_close(caa_direction(h_pos, h_neg), torch.tensor([1.0, 1.0]) / 2**0.5)


def test_caa_direction_refuses_degenerate_input():
    with pytest.raises(ValueError, match="zero"):
        caa_direction(torch.ones(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="shape"):
        caa_direction(torch.ones(2, 3), torch.ones(3, 3))
    with pytest.raises(ValueError, match="at least one pair"):
        caa_direction(torch.ones(0, 3), torch.ones(0, 3))


def test_renorm_by_hand():
    old = torch.tensor([[3.0, 4.0]])  # norm 5
    new = torch.tensor([[6.0, 8.0]])  # norm 10
    torch.testing.assert_close(renorm(new, old), torch.tensor([[3.0, 4.0]]))


@pytest.fixture(scope="module")
def model():
    return tada.load("tiny-stable-audio")


def test_fit_equals_mean_difference_of_captured_activations(model):
    sites = [1, 2]
    vec = fit(model, PAIRS, sites=sites, seeds=[3, 4], batch_size=8)
    # by hand: each prompt with each seed, captured on its own
    for s in sites:
        diffs = []
        for pos, neg in PAIRS:
            for seed in (3, 4):
                caps = []
                for prompt in (pos, neg):
                    cap = Capture(sites=[s])
                    model.generate([prompt], [seed], interventions=[cap])
                    caps.append(cap.result[s][0])
                diffs.append(caps[0] - caps[1])
        v = torch.stack(diffs).mean(0)
        torch.testing.assert_close(vec.vectors[s], v / v.norm(), rtol=1e-4, atol=1e-5)
    assert vec.renorm and vec.meta["method"] == "caa"


def test_per_step_vectors_have_one_unit_direction_per_step(model):
    vec = fit(model, PAIRS[:1], sites=[0], seeds=1, per_step=True, steps=3)
    assert vec.vectors[0].shape == (3, model.sites[0].dim)
    torch.testing.assert_close(vec.vectors[0].norm(dim=-1), torch.ones(3))
    model.generate(["a song"], [0], steps=3, steer=[vec.at(2.0)])
    with pytest.raises(ValueError, match="generate with 3 steps"):
        model.generate(["a song"], [0], steps=4, steer=[vec.at(2.0)])


def test_alpha_zero_is_bit_identical_and_alpha_changes_audio(model):
    vec = fit(model, PAIRS, sites=[1], seeds=1)
    plain = model.generate(["a jazz piece"], [5]).waveform
    assert torch.equal(model.generate(["a jazz piece"], [5], steer=[vec.at(0.0)]).waveform, plain)
    assert not torch.equal(model.generate(["a jazz piece"], [5], steer=[vec.at(8.0)]).waveform, plain)


def test_vectors_compose(model):
    a = SteeringVector({0: torch.randn(model.sites[0].dim)}, {0: model.sites[0].name}, renorm=False,
                       meta={"model": model.name})
    b = SteeringVector({2: torch.randn(model.sites[2].dim)}, {2: model.sites[2].name}, renorm=False,
                       meta={"model": model.name})
    plain = model.generate(["a song"], [0]).waveform
    both = model.generate(["a song"], [0], steer=[a.at(3.0), b.at(3.0)]).waveform
    only_a = model.generate(["a song"], [0], steer=[a.at(3.0)]).waveform
    assert not torch.equal(both, only_a) and not torch.equal(both, plain)


def test_save_load_round_trip_and_checks(model, tmp_path):
    vec = SteeringVector({1: torch.randn(model.sites[1].dim)}, {1: model.sites[1].name},
                         meta={"model": model.name, "concept": "tempo"})
    path = vec.save(tmp_path / "tempo")
    back = SteeringVector.load(path, model=model)
    assert torch.equal(back.vectors[1], vec.vectors[1]) and back.renorm and back.meta["concept"] == "tempo"
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["library_version"] == tada.__version__
    other = tada.load("tiny-ace-step")
    with pytest.raises(ValueError, match="site 1"):
        SteeringVector.load(path, model=other)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a tada steering vector"):
        SteeringVector.load(path)
    with pytest.raises(FileNotFoundError):
        SteeringVector.load(tmp_path / "missing")


def test_bad_steering_input(model):
    with pytest.raises(ValueError, match="NaN"):
        SteeringVector({0: torch.tensor([float("nan")] * model.sites[0].dim)}, {0: model.sites[0].name})
    wrong = SteeringVector({0: torch.ones(model.sites[0].dim + 2)}, {0: model.sites[0].name})
    with pytest.raises(ValueError, match="width"):
        model.generate(["a song"], [0], steer=[wrong.at(1.0)])
    with pytest.raises(TadaError, match="is not a site"):
        fit(model, PAIRS, sites=[len(model.sites)])
    with pytest.raises(ValueError, match="empty"):
        fit(model, [], sites=[0])


def test_strengths_in_frame_norm_units():
    model = tada.load("tiny-stable-audio")
    vec = fit(model, PAIRS, sites=[1], steps=2)
    cap = Capture(sites=[1], reduce=None, per_step=True)
    model.generate([PAIRS[0][0]], [0], steps=2, interventions=[cap])
    by_hand = torch.stack(cap.result[1])[:, :, cap.frames[1]].norm(dim=-1).median()
    assert vec.meta["frame_norm"] == pytest.approx(float(by_hand), rel=1e-6)
    norm = model.generate(["a song"], [0], steps=2, steer=[vec.at(1.5, units="norm")]).waveform
    raw = model.generate(["a song"], [0], steps=2, steer=[vec.at(1.5 * vec.meta["frame_norm"])]).waveform
    assert torch.equal(norm, raw)
    bare = SteeringVector(vec.vectors, vec.site_names, meta={"model": model.name})
    with pytest.raises(TadaError, match="records no frame norm"):
        bare.at(1.0, units="norm")
    with pytest.raises(TadaError, match="units must be raw or norm; got 'sigma'"):
        vec.at(1.0, units="sigma")


def test_a_vector_name_with_dots_keeps_its_name(tmp_path):
    model = tada.load("tiny-stable-audio")
    vec = SteeringVector({1: torch.ones(model.sites[1].dim)}, {1: model.sites[1].name}, meta={"model": model.name})
    a = vec.save(tmp_path / "tempo.v2")
    b = vec.save(tmp_path / "tempo.v3.safetensors")
    assert a.name == "tempo.v2.safetensors" and b.name == "tempo.v3.safetensors"
    assert (tmp_path / "tempo.v2.json").exists() and (tmp_path / "tempo.v3.json").exists()
    assert torch.equal(SteeringVector.load(tmp_path / "tempo.v2").vectors[1], vec.vectors[1])

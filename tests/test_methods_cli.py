"""`tada methods`, `tada fit` for any method, and `tada steer` / alpha_sweep applying any method's file."""

import json

import pytest
import torch
from typer.testing import CliRunner

import tada
from tada.cli import app
from tada.errors import TadaError
from tada.experiments.alpha_sweep import alpha_sweep
from tada.methods import base

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def refused(*args) -> str:
    """The one-line message of the TadaError a command stops with (printed by `tada`'s entry point)."""
    result = runner.invoke(app, [str(a) for a in args])
    assert isinstance(result.exception, TadaError), result.output + repr(result.exception)
    return str(result.exception)


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("TADA_QUIET", "1")


def test_methods_lists_every_registered_method():
    out = run("methods")
    for name, info in base.methods().items():
        assert name in out and info.description[:30] in out


@pytest.mark.parametrize("method,extra", [
    ("pci", ["--layers", "all"]),
    ("text_embedding", ["--layers", "2,3", "--set", "start=1"]),
    ("freesliders", ["--layers", "all"]),
    ("austeer", ["--layers", "2", "--set", "k=8", "--set", "mode=scale", "--set", "steps=2", "--set", "n_pairs=2"]),
    ("caa", ["--layers", "2,3", "--set", "steps=2", "--set", "n_pairs=2"]),
])
def test_fit_then_steer_any_method(tmp_path, method, extra):
    out = tmp_path / f"{method}.safetensors"
    run("fit", "--method", method, "--concept", "tempo", *extra, "--out", out)
    header = json.loads(out.with_suffix(".json").read_text())
    assert header["method"] == method and header["model"] == "toy"
    alphas = "-2,0,2" if method == "pci" else "-1,0,1"
    run("steer", "-v", out, "-p", "a jazz piece", "--alphas", alphas, "--steps", 3, "--out", tmp_path / "steer")
    assert len(list((tmp_path / "steer" / "audio").glob("*.wav"))) == 3


def test_fit_with_explicit_prompts_and_settings(tmp_path):
    out = tmp_path / "fs"
    run("fit", "--method", "freesliders", "--positive", "fast drums", "--negative", "slow drums",
        "--layers", "3", "--set", "start=2", "--out", out)
    art = base.load(out)
    assert art.concept.pairs == (("fast drums", "slow drums"),) and art.settings["start"] == 2 and art.sites == [3]


def test_fit_refuses_bad_input(tmp_path):
    x = tmp_path / "x"
    assert "no steering method 'nope'" in refused("fit", "--method", "nope", "--concept", "tempo", "--out", x)
    assert "either --concept" in refused("fit", "--method", "pci", "--out", x)
    assert "no setting bogus" in refused("fit", "--method", "pci", "--concept", "tempo", "--set", "bogus=1", "--out", x)
    assert "key=value" in refused("fit", "--method", "pci", "--concept", "tempo", "--set", "bogus", "--out", x)


def test_alpha_sweep_takes_any_method_and_alpha_zero_is_plain(tmp_path):
    m = tada.load("toy")
    art = base.method("text_embedding").cls.fit(m, "tempo", sites=[2, 3])
    index = alpha_sweep(m, art, ["a jazz piece"], [0.0, 0.5], tmp_path / "sweep", steps=3)
    assert list(index.status) == ["ok", "ok"]
    from tada.audio import Audio

    zero = Audio.load([tmp_path / "sweep" / index.path[0]])
    plain = m.generate(["a jazz piece"], [0], steps=3)
    plain.save(tmp_path / "plain", ["p"])
    torch.testing.assert_close(zero.waveform, Audio.load([tmp_path / "plain" / "p.wav"]).waveform)

"""The command line end to end on a tiny model: every command runs and writes what it says."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tada.cli import app

runner = CliRunner()
TINY = ["--model", "tiny-stable-audio"]


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("TADA_QUIET", "1")


def test_localize_caa_steer_chain(tmp_path):
    run("localize", *TINY, "--concept", "tempo", "--pairs", 2, "--seeds", 1, "--out", tmp_path / "loc")
    assert (tmp_path / "loc" / "heatmap.png").exists()
    run("caa", *TINY, "--concept", "tempo", "--layers", "1,2", "--pairs", 2, "--out", tmp_path / "tempo.safetensors")
    meta = json.loads((tmp_path / "tempo.json").read_text())
    assert meta["concept"] == "tempo" and meta["method"] == "caa"
    run("steer", *TINY, "-v", tmp_path / "tempo.safetensors", "-p", "a jazz piece", "--alphas", "-10,0,10",
        "--out", tmp_path / "steer")
    assert len(list((tmp_path / "steer" / "audio").glob("*.wav"))) == 3


def test_sae_chain(tmp_path):
    run("sae", "collect", *TINY, "--site", 1, "--n", 3, "--steps", 2, "--out", tmp_path / "acts")
    run("sae", "train", "--activations", tmp_path / "acts", "--expansion", "2", "--k", "2,4", "--epochs", 1,
        "--batch-size", 16, "--out", tmp_path / "sae")
    assert (tmp_path / "sae" / "cfg.json").exists() and (tmp_path / "sae" / "grid" / "grid.csv").exists()
    run("sae", "features", *TINY, "--site", 1, "--concept", "tempo", "--sae", tmp_path / "sae", "--tau", 2,
        "--pairs", 2, "--steps", 2, "--out", tmp_path / "tempo_sae.safetensors")
    assert (tmp_path / "tempo_sae.features.csv").exists()


def test_eval_and_listing(tmp_path):
    out = run("concepts")
    assert "tempo" in out and "vocal_gender" in out
    run("eval", *TINY, "--concept", "tempo", "--layers", "1", "--alphas", "-5,5", "--prompts", 2, "--steps", 2,
        "--out", tmp_path / "eval")
    assert (tmp_path / "eval" / "table.md").read_text().count("\n") == 2 + 3
    bad = runner.invoke(app, ["eval", *TINY, "--layers", "1", "--fad-embedding", "openl3", "--out",
                              str(tmp_path / "eval2")])
    assert bad.exit_code != 0 and "unknown FAD embedding 'openl3'" in repr(bad.exception) + bad.output


def test_bad_input_exits_with_a_clear_message(tmp_path):
    result = runner.invoke(app, ["caa", *TINY, "--concept", "tempo", "--layers", "x", "--out", str(tmp_path / "v")])
    assert result.exit_code != 0 and "comma-separated integers" in str(result.exception)
    cli = subprocess.run([sys.executable, "-m", "tada", "localize", "--model", "nope", "--out",
                          str(tmp_path / "l")], capture_output=True, text=True)
    assert cli.returncode == 2 and "unknown model 'nope'" in cli.stderr and "Traceback" not in cli.stdout + cli.stderr

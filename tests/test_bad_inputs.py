"""Bad input across every command: each gets one clear message naming the bad value, before any work.

docs/bad-inputs.md is this table as a person reads it; `python tests/test_bad_inputs.py` rewrites it and
the last test fails when the two differ.
"""

import os
import re
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tada.cli import app
from tada.errors import TadaError
from tada.methods.vector import SteeringVector

DOC = Path(__file__).parents[1] / "docs" / "bad-inputs.md"
V = "VEC.safetensors"  # a toy vector made by the fixture; NOTVEC, BARE, AFILE, ADIR, BADYAML likewise

CASES = [
 # localize
 (["localize", "-c", "nope", "--out", "OUT"], "unknown concept 'nope'"),
 (["localize", "-c", "wom[ae]n", "--out", "OUT"], "unknown concept 'wom[ae]n'"),
 (["localize", "--pairs", "0", "--out", "OUT"], "Invalid value for '--pairs'"),
 (["localize", "--seeds", "0", "--out", "OUT"], "seed count must be >= 1"),
 (["localize", "--steps", "0", "--out", "OUT"], "steps must be a positive integer"),
 (["localize", "--max-batch", "0", "--out", "OUT"], "Invalid value for '--max-batch'"),
 (["localize", "--scorer", "nope", "--out", "OUT"], "unknown scorer 'nope'"),
 (["localize", "--captions", "missing.csv", "--out", "OUT"], "missing.csv does not exist"),
 (["localize", "--concepts", "missing.yaml", "--out", "OUT"], "missing.yaml does not exist"),
 (["localize", "--concepts", "BADYAML", "--out", "OUT"], "BADYAML"),
 (["localize", "--model", "nope", "--out", "OUT"], "unknown model 'nope'"),
 (["localize", "--out", "AFILE"], "is a file; name a folder"),
 (["localize", "--window", "0", "--out", "OUT"], "Invalid value for '--window'"),
 (["localize", "--window", "9", "--out", "OUT"], "window must be a whole number of layers from 1 to 8; got 9"),
 (["localize", "--budget", "100", "--out", "OUT"], "--budget applies to --adaptive sweeps"),
 (["--device", "gpu0", "methods"], "--device 'gpu0' is not a device torch knows"),
 (["sae", "browse", "ADIR", "--out", "OUT"], "an SAE folder holds"),
 (["calibrate", "missing.safetensors"], "missing.safetensors does not exist"),
 (["calibrate", V, "--units", "sigma"], "--units must be norm, raw or auto"),
 (["calibrate", V, "--max-distance", "-1"], "--max-distance must be a positive number; got -1.0"),
 (["studio", "--vectors", "AFILE"], "is not a folder of steering files"),
 # caa
 (["caa", "-c", "nope", "--layers", "1", "--out", "OUT/v"], "unknown concept 'nope'"),
 (["caa", "-c", "tempo", "--layers", "x", "--out", "OUT/v"], "--layers expects comma-separated integers"),
 (["caa", "-c", "tempo", "--layers", "99", "--out", "OUT/v"], "site 99 is not a site of toy"),
 (["caa", "-c", "tempo", "--layers", "-1", "--out", "OUT/v"], "site -1 is not a site of toy"),
 (["caa", "-c", "tempo", "--layers", "", "--out", "OUT/v"], "choose at least one site"),
 (["caa", "-c", "tempo", "--layers", "1", "--seeds", "0", "--out", "OUT/v"], "--seeds must be >= 1"),
 (["caa", "-c", "tempo", "--layers", "1", "--pairs", "0", "--out", "OUT/v"], "Invalid value for '--pairs'"),
 (["caa", "-c", "tempo", "--layers", "1", "--steps", "-3", "--out", "OUT/v"], "steps must be a positive integer"),
 (["caa", "-c", "tempo", "--layers", "1", "--out", "ADIR"], "is a folder; name the vector's file"),
 (["caa", "-c", "tempo", "--layers", "1", "--out", "AFILE/v"], "is a file; name a folder"),
 (["caa", "--model", "nope", "-c", "tempo", "--layers", "1", "--out", "OUT/v"], "unknown model 'nope'"),
 # steer
 (["steer", "-v", "missing.safetensors", "--out", "OUT"], "missing.safetensors does not exist"),
 (["steer", "-v", "NOTVEC", "--out", "OUT"], "is not a tada steering vector"),
 (["steer", "-v", V, "--alphas", "1:2", "--out", "OUT"], "alpha range must be start:stop:step"),
 (["steer", "-v", V, "--alphas", "a:b:c", "--out", "OUT"], "alpha range must hold three numbers"),
 (["steer", "-v", V, "--alphas", "5:1:1", "--out", "OUT"], "needs step > 0 and stop >= start"),
 (["steer", "-v", V, "--alphas", "1,x", "--out", "OUT"], "alphas must be numbers separated by commas"),
 (["steer", "-v", V, "--alphas", "nan", "--out", "OUT"], "alphas must be finite"),
 (["steer", "-v", V, "--alphas", "inf,0", "--out", "OUT"], "alphas must be finite"),
 (["steer", "-v", V, "--alphas", ",", "--out", "OUT"], "the alpha list is empty"),
 (["steer", "-v", V, "--units", "sigma", "--out", "OUT"], "--units must be norm, raw or auto"),
 (["steer", "-v", V, "--seeds", "0", "--out", "OUT"], "--seeds must be >= 1"),
 (["steer", "-v", V, "-p", " ", "--out", "OUT"], "prompt 0 is empty"),
 (["steer", "-v", V, "--model", "tiny-stable-audio", "--out", "OUT"], "has width 128; tiny-stable-audio's site 1 has width 16"),
 (["steer", "-v", V, "--out", "AFILE"], "is a file; name a folder"),
 (["steer", "-v", "BARE", "--units", "norm", "--out", "OUT"], "records no frame norm"),
 # generate
 (["generate", "-p", "", "--out", "OUT"], "prompt 0 is empty"),
 (["generate", "-p", "a song", "--steps", "0", "--out", "OUT"], "steps must be a positive integer"),
 (["generate", "-p", "a song", "--out", "AFILE"], "is a file; name a folder"),
 # concepts / pairs
 (["concepts", "--concepts", "missing.yaml"], "missing.yaml does not exist"),
 (["pairs", "-c", "nope"], "unknown concept 'nope'"),
 (["pairs", "-c", "tempo", "--captions", "missing.csv"], "missing.csv does not exist"),
 (["pairs", "-c", "tempo", "-n", "0"], "Invalid value for '-n'"),
 # sae
 (["sae", "collect", "--site", "99", "--n", "2", "--out", "OUT"], "site 99 is not a site of toy"),
 (["sae", "collect", "--site", "1", "--n", "0", "--out", "OUT"], "Invalid value for '--n-prompts' / '--n'"),
 (["sae", "collect", "--site", "1", "--seeds", "0", "--out", "OUT"], "--seeds must be >= 1"),
 (["sae", "collect", "--site", "1", "--out", "AFILE"], "is a file; name a folder"),
 (["sae", "train", "--activations", "missing", "--out", "OUT"], "no activation store at missing"),
 (["sae", "train", "--activations", "OUT", "--expansion", "x", "--out", "OUT2"], "--expansion expects comma-separated integers"),
 (["sae", "train", "--activations", "OUT", "--k", "y", "--out", "OUT2"], "--k expects comma-separated integers"),
 (["sae", "features", "--site", "1", "-c", "nope", "--out", "OUT/v"], "unknown concept 'nope'"),
 (["sae", "features", "--site", "1", "-c", "tempo", "--sae", "missing", "--out", "OUT/v"], "is missing; an SAE folder holds"),
 (["sae", "steer", "-v", V, "--alphas", "1:2", "--out", "OUT"], "alpha range must be start:stop:step"),
 # eval / demo / table
 (["eval", "-c", "nope", "--layers", "1", "--out", "OUT"], "unknown concept 'nope'"),
 (["eval", "--layers", "x", "--out", "OUT"], "--layers expects comma-separated integers"),
 (["eval", "--layers", "1", "--scorer", "nope", "--out", "OUT"], "unknown scorer 'nope'"),
 (["eval", "--layers", "1", "--alphas", "nan", "--out", "OUT"], "alphas must be finite"),
 (["eval", "--layers", "1", "--units", "x", "--out", "OUT"], "--units must be norm, raw or auto"),
 (["eval", "--layers", "1", "--sae-vector", "missing.safetensors", "--out", "OUT"], "does not exist"),
 (["eval", "--layers", "1", "--out", "AFILE"], "is a file; name a folder"),
 (["eval", "--layers", "all", "--out", "OUT"], "--layers all leaves no functional layers"),
 (["eval", "--layers", "missing.csv", "--out", "OUT"], "--layers missing.csv: no such Impact table"),
 (["eval", "--layers", "1", "--methods", "caa,nope", "--out", "OUT"], "--methods: no steering method 'nope'"),
 (["eval", "--layers", "1", "--methods", ",", "--out", "OUT"], "--methods names no method"),
 (["eval", "--layers", "1", "--protocol", "v3", "--out", "OUT"], "protocol must be one of v1, auc; got 'v3'"),
 (["eval", "--layers", "1", "--protocol", "auc", "--methods", "caa", "--out", "OUT"], "add pci to the methods"),
 (["eval", "--layers", "1", "--methods", "sae", "--out", "OUT"], "the sae method needs a trained SAE"),
 (["eval", "--layers", "1", "--sae", "ADIR", "--out", "OUT"], "an SAE folder holds"),
 (["eval", "--layers", "1", "--method-alphas", "pci", "--out", "OUT"], "--method-alphas expects METHOD=ALPHAS"),
 (["eval", "--layers", "1", "--method-alphas", "pci=1:x:2", "--out", "OUT"], "alpha range must hold three numbers"),
 (["eval", "--layers", "1", "--method-alphas", "nope=1", "--out", "OUT"], "no steering method 'nope'"),
 (["eval", "--layers", "1", "--set", "k=3", "--out", "OUT"], "--set expects METHOD.KEY=VALUE"),
 (["eval", "--layers", "1", "--set", "austeer.q=3", "--out", "OUT"], "austeer has no setting q"),
 (["eval", "--layers", "1", "--set", "nope.k=3", "--out", "OUT"], "no steering method 'nope'"),
 (["eval", "--layers", "1", "--protocol", "auc", "--methods", "caa,pci", "--preservation", "nope", "--out", "OUT"],
  "--preservation 'nope' is unknown"),
 (["demo", "-c", "nope", "--out", "OUT"], "unknown concept 'nope'"),
 (["demo", "-p", "", "--out", "OUT"], "prompt 0 is empty"),
 (["demo", "--out", "AFILE"], "is a file; name a folder"),
 (["table", "missing.csv", "--out", "OUT"], "results file missing.csv does not exist"),
 # methods
 (["fit", "--method", "nope", "-c", "tempo", "--out", "OUT/v"], "no steering method 'nope'"),
 (["fit", "--method", "caa", "-c", "tempo", "--set", "bogus=1", "--out", "OUT/v"], "caa has no setting bogus"),
 (["fit", "--method", "pci", "-c", "tempo", "--set", "bogus=1", "--out", "OUT/v"], "pci has no setting bogus"),
 (["fit", "--method", "caa", "--positive", "fast", "--out", "OUT/v"], "both --positive and --negative"),
 (["fit", "--method", "caa", "-c", "tempo", "--layers", "x", "--out", "OUT/v"], "--layers expects comma-separated"),
]


def setup_folder(folder: Path) -> None:
    (folder / "AFILE").write_text("x")
    (folder / "ADIR").mkdir()
    (folder / "NOTVEC.safetensors").write_text("x")
    (folder / "NOTVEC.json").write_text("{}")
    (folder / "BADYAML").write_text("version: [1\n")
    v = SteeringVector({1: torch.ones(128) / 128 ** 0.5}, {1: "transformer_blocks.1.attn2"},
                       meta={"model": "toy", "frame_norm": 2.0})
    v.save(folder / "VEC.safetensors")
    SteeringVector(v.vectors, v.site_names, meta={"model": "toy"}).save(folder / "BARE.safetensors")


def message(args: list[str], n: int) -> tuple[int, str]:
    """Exit code and the one line that says what is wrong."""
    args = [a.replace("OUT", f"OUT{n}") if a.startswith("OUT") else a for a in args]
    result = CliRunner().invoke(app, args)
    if isinstance(result.exception, TadaError):
        return 2, str(result.exception)
    if result.exit_code == 2:  # a usage error as typer prints it: the line inside its box
        lines = [re.sub(r"^[│ ]+|[│ ]+$", "", line) for line in result.output.splitlines()]
        found = [line for line in lines if line.startswith(("Invalid value", "Missing", "No such"))]
        return 2, found[0] if found else result.output
    return result.exit_code, repr(result.exception)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-inputs")
    setup_folder(folder)
    old = os.getcwd()
    os.chdir(folder)
    yield folder
    os.chdir(old)


@pytest.mark.parametrize("n", range(len(CASES)), ids=[" ".join(c[0])[:50] for c in CASES])
def test_bad_input_gets_its_message_and_no_work(folder, n):
    args, expected = CASES[n]
    code, text = message(args, n)
    assert code == 2 and expected in text, text
    assert "\n" not in text.strip()
    assert not any((folder / f"OUT{n}").rglob("*.wav")) and not (folder / f"OUT{n}" / "manifest.json").exists()


def render(folder: Path) -> str:
    rows = ["# Bad input and what tada says", "",
            "Each row is a test (`tests/test_bad_inputs.py`); every one exits with code 2 before any work. "
            "Names in capitals stand for files the test makes: a vector (VEC), a file that is not one (NOTVEC), "
            "a vector without a measured frame norm (BARE), a plain file (AFILE), a folder (ADIR), broken YAML "
            "(BADYAML), output folders (OUTn).", "", "| command | message |", "|---|---|"]
    for n, (args, _) in enumerate(CASES):
        _, text = message(args, n)
        rows.append(f"| `tada {' '.join(a if a else repr(a) for a in args)}` | {text.replace('|', '/')} |")
    return "\n".join(rows) + "\n"


def test_the_doc_is_current(folder):
    assert DOC.read_text() == render(folder), "run python tests/test_bad_inputs.py to rewrite docs/bad-inputs.md"


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        setup_folder(Path(tmp))
        os.chdir(tmp)
        DOC.write_text(render(Path(tmp)))
    print(f"wrote {DOC}", file=sys.stderr)

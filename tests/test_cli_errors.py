"""The command line's contract for errors and reruns: bad input is one literal line before any work, a bug
keeps its traceback, a rerun with other settings refuses for every long command."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

import tada.methods.caa
from tada.cli import app, main
from tada.errors import TadaError

runner = CliRunner()
TINY = ["--model", "tiny-stable-audio"]

MY_CONCEPTS = """
version: 1
concepts:
  - name: kazoo
    kind: binary
    keywords: ["kazoos?"]
    counter_keywords: ["whistles?"]
    replacements: {kazoo: whistle}
    queries: {positive: [kazoo music], negative: [whistle music]}
    templates:
      - {positive: "{base} with a kazoo", negative: "{base} with a whistle"}
"""


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("TADA_QUIET", "1")


def test_a_users_concept_file_reaches_caa(tmp_path):
    (tmp_path / "my.yaml").write_text(MY_CONCEPTS)
    result = invoke("caa", *TINY, "--concepts", tmp_path / "my.yaml", "-c", "kazoo", "--layers", "1", "--pairs", 2,
                    "--steps", 2, "--out", tmp_path / "kazoo")
    assert result.exit_code == 0, repr(result.exception)
    assert (tmp_path / "kazoo.safetensors").exists()
    unknown = invoke("caa", *TINY, "-c", "kazoo", "--layers", "1", "--out", tmp_path / "k2")
    assert isinstance(unknown.exception, TadaError) and "unknown concept 'kazoo'" in str(unknown.exception)


def test_a_bug_inside_a_method_keeps_its_traceback(monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise KeyError("a bug in tada")

    monkeypatch.setattr(tada.methods.caa, "fit", broken)
    monkeypatch.setattr(sys, "argv", ["tada", "caa", *TINY, "-c", "tempo", "--layers", "1", "--out",
                                      str(tmp_path / "v")])
    with pytest.raises(KeyError, match="a bug in tada"):
        main()


def test_bad_input_is_one_literal_line_on_stderr(tmp_path):
    cli = subprocess.run([sys.executable, "-m", "tada", "caa", *TINY, "-c", "wom[ae]n", "--layers", "1", "--out",
                          str(tmp_path / "v")], capture_output=True, text=True)
    assert cli.returncode == 2
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown concept 'wom[ae]n'"), cli.stderr
    assert not (tmp_path / "v.safetensors").exists()


def test_an_unwritable_output_folder_is_one_line_before_the_model_loads(tmp_path, monkeypatch):
    (tmp_path / "taken").write_text("a file")
    result = invoke("caa", "--model", "no-such-model", "-c", "tempo", "--layers", "1", "--out",
                    tmp_path / "taken" / "v")
    assert isinstance(result.exception, TadaError) and "taken is a file; name a folder" in str(result.exception)

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("pathlib.Path.mkdir", read_only)
    result = invoke("localize", "--model", "no-such-model", "--out", tmp_path / "ro")
    assert isinstance(result.exception, TadaError)
    assert str(result.exception).endswith("ro: Read-only file system; choose a writable output folder with free space")


@pytest.mark.parametrize("command", [
    ["localize", *TINY, "--pairs", 1, "--seeds", 1, "--steps", 2],
    ["demo", *TINY, "--pairs", 1, "--steps", 2, "-p", "a song"],
    ["sae", "collect", *TINY, "--site", 1, "--n", 2, "--steps", 2],
    ["eval", *TINY, "--layers", 1, "--alphas", "-1,1", "--prompts", 1, "--steps", 2],
])
def test_every_long_command_refuses_a_rerun_with_other_settings(tmp_path, command):
    first = invoke(*command, "--out", tmp_path / "run")
    assert first.exit_code == 0, repr(first.exception)
    changed = [a if a != 2 else 3 for a in command]  # --steps 2 -> 3
    again = invoke(*changed, "--out", tmp_path / "run")
    assert isinstance(again.exception, TadaError) and "steps: 2 -> 3" in str(again.exception)
    fresh = invoke(*changed, "--out", tmp_path / "run", "--overwrite")
    assert fresh.exit_code == 0, repr(fresh.exception)

"""Long commands under torchrun on 2 CPU processes (gloo) give the files of one process, and a rank that
never finished is made up by running the same command again."""

import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tada.cli import app
from tada.runs.distributed import my_share

runner = CliRunner()

MODEL = ["--model", "tiny-stable-audio"]


def tada(*args, processes=1) -> str:
    """Run a tada command in this process, or under torchrun in `processes` processes; its standard output."""
    if processes == 1:  # the reference run: in this process, which spares a start of Python, torch and diffusers
        done = runner.invoke(app, ["--threads", "1", *args])
        assert done.exit_code == 0, done.output[-3000:] + repr(done.exception)
        return done.output
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", "-m"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, "tada", "--threads", "1", *args], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def same_tree(a: Path, b: Path, pattern: str):
    files_a = sorted(p.relative_to(a) for p in a.rglob(pattern))
    assert files_a and files_a == sorted(p.relative_to(b) for p in b.rglob(pattern))
    for rel in files_a:
        assert filecmp.cmp(a / rel, b / rel, shallow=False), rel


def test_my_share_splits_by_position(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "1")
    assert my_share("abcdefg") == [(1, "b"), (4, "e")]


@pytest.fixture(scope="module")
def vector(tmp_path_factory):
    path = tmp_path_factory.mktemp("vec") / "tempo"
    tada("caa", *MODEL, "-c", "tempo", "--layers", "1", "--pairs", "2", "--steps", "2", "--out", str(path))
    return path.with_suffix(".safetensors")


def test_a_two_process_alpha_sweep_equals_one_process_and_resumes(tmp_path, vector):
    args = ["steer", *MODEL, "-v", str(vector), "--alphas", "-8,0,8", "--steps", "2", "-p", "a song", "-p",
            "a calm song", "-p", "a loud song", "--seeds", "2", "--batch-size", "2", "--units", "raw"]
    tada(*args, "--out", str(tmp_path / "one"))
    tada(*args, "--out", str(tmp_path / "two"), processes=2)
    units = sorted((tmp_path / "two" / "units").glob("*.jsonl"))
    assert [p.name for p in units] == ["units.rank0.jsonl", "units.rank1.jsonl"]  # both ranks did work
    same_tree(tmp_path / "one", tmp_path / "two", "*.wav")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "one" / "index.csv"), pd.read_csv(tmp_path / "two" / "index.csv"))
    # Rank 1 never finished: its units and files are gone. The same command computes just those again.
    for line in units[1].read_text().splitlines():
        (tmp_path / "two" / json.loads(line)["path"]).unlink()
    units[1].unlink()
    tada(*args, "--out", str(tmp_path / "two"), processes=2)
    same_tree(tmp_path / "one", tmp_path / "two", "*.wav")


def test_a_two_process_localization_equals_one_process(tmp_path):
    args = ["localize", *MODEL, "-c", "tempo", "--pairs", "3", "--seeds", "1", "--steps", "2", "--max-batch", "6"]
    tada(*args, "--out", str(tmp_path / "one"))
    tada(*args, "--out", str(tmp_path / "two"), processes=2)
    assert len(list((tmp_path / "two" / "units").glob("*.jsonl"))) == 2
    for name in ("scores.csv", "impact.csv", "pairs.csv"):
        assert filecmp.cmp(tmp_path / "one" / name, tmp_path / "two" / name, shallow=False), name


def test_a_two_process_eval_equals_one_process(tmp_path):
    """Fits happen once (rank 0 saves, the others load), sweeps split, and the tables agree."""
    args = ["eval", *MODEL, "-c", "tempo", "--layers", "1", "--methods", "caa,pci", "--protocol", "auc",
            "--prompts", "2", "--steps", "2", "--alphas", "-1,1", "--no-mir"]
    tada(*args, "--out", str(tmp_path / "one"))
    tada(*args, "--out", str(tmp_path / "two"), processes=2)
    same_tree(tmp_path / "one", tmp_path / "two", "*.wav")
    for name in ("results.csv", "steering_metrics.csv", "protocol/tables.md"):
        assert filecmp.cmp(tmp_path / "one" / name, tmp_path / "two" / name, shallow=False), name


def _units(folder: Path) -> dict:
    from tada.sae import ActivationReader

    return {unit["key"]: rows for unit, rows in ActivationReader(folder).iter_units()}


def test_a_two_process_sae_collect_equals_one_process_and_resumes(tmp_path):
    import torch

    args = ["sae", "collect", *MODEL, "--site", "1", "--n-prompts", "5", "--seeds", "2", "--steps", "2", "--batch-size", "3"]
    tada(*args, "--out", str(tmp_path / "one"))
    tada(*args, "--out", str(tmp_path / "two"), processes=2)
    assert sorted(p.name for p in (tmp_path / "two" / "parts").iterdir()) == ["rank0", "rank1"]
    one, two = _units(tmp_path / "one"), _units(tmp_path / "two")
    assert sorted(one) == sorted(two) and len(one) == 10
    assert all(torch.equal(one[k], two[k]) for k in one)  # same units, same batches, same numbers
    # Rank 1 never finished: its part is gone. The same command (any number of processes) makes up just those.
    import shutil

    shutil.rmtree(tmp_path / "two" / "parts" / "rank1")
    tada(*args, "--out", str(tmp_path / "two"))
    again = _units(tmp_path / "two")
    assert sorted(again) == sorted(one) and all(torch.equal(one[k], again[k]) for k in one)
    assert len(list((tmp_path / "two").glob("shard-*.safetensors"))) >= 1  # the missing units, written alone


def test_two_process_sae_training_reaches_the_fvu_of_one_process(tmp_path):
    import torch

    from tada.sae.store import ActivationWriter

    g = torch.Generator().manual_seed(0)
    basis = torch.randn(6, 16, generator=g)
    with ActivationWriter(tmp_path / "acts", 16, shard_rows=256) as writer:
        for u in range(8):
            codes = torch.relu(torch.randn(128, 6, generator=g))
            writer.add(codes @ basis + 0.05 * torch.randn(128, 16, generator=g), key=str(u))
    args = ["sae", "train", "--activations", str(tmp_path / "acts"), "--expansion", "2", "--k", "4", "--epochs", "4",
            "--batch-size", "64"]
    tada(*args, "--out", str(tmp_path / "one"))
    tada(*args, "--out", str(tmp_path / "two"), processes=2)
    fvu = [pd.read_csv(tmp_path / run / "grid" / "m2_k4" / "history.csv").fvu.iloc[-1] for run in ("one", "two")]
    assert fvu[0] < 0.5 and abs(fvu[1] - fvu[0]) <= 1e-4 * fvu[0], fvu  # the issue asks 1%: the same maths gives more
    saved = json.loads((tmp_path / "two" / "cfg.json").read_text())
    assert saved["k"] == 4


def _pid_of_rank(rank: int, marker: str) -> int | None:
    """The process whose environment has RANK=<rank> and whose command line names `marker` (Linux /proc)."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and marker.encode() in cmd:
            return int(proc.name)
    return None


def test_a_rank_killed_mid_run_is_made_up_by_the_same_command(tmp_path, vector):
    import signal
    import time

    args = ["steer", *MODEL, "-v", str(vector), "--alphas", "-8,-4,0,4,8", "--steps", "8", "-p", "a song", "-p",
            "a calm song", "--seeds", "2", "--batch-size", "1", "--units", "raw"]
    tada(*args, "--out", str(tmp_path / "one"))
    two = tmp_path / "two"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "tada",
                "--threads", "1", *args, "--out", str(two)]
    run = subprocess.Popen(launcher, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    log, deadline, pid = two / "units" / "units.rank1.jsonl", time.time() + 300, None
    while time.time() < deadline and run.poll() is None and pid is None:
        if log.is_file() and log.read_text().count("\n") >= 2:
            pid = _pid_of_rank(1, str(two))
        time.sleep(0.05)
    assert pid is not None, "rank 1 was not seen at work"
    os.kill(pid, signal.SIGKILL)  # a real kill, mid-run: the launcher ends the other rank too
    assert run.wait(timeout=120) != 0
    assert log.read_text().count("\n") < 10  # rank 1 had 10 of the 20 cells
    tada(*args, "--out", str(two), processes=2)
    same_tree(tmp_path / "one", two, "*.wav")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "one" / "index.csv"), pd.read_csv(two / "index.csv"))


def test_a_two_process_caa_fit_equals_one_process(tmp_path):
    args = ["caa", *MODEL, "-c", "tempo", "--layers", "1,2", "--pairs", "6", "--steps", "2"]  # 2 batches of 8
    tada(*args, "--out", str(tmp_path / "one" / "tempo"))
    two = tada(*args, "--out", str(tmp_path / "two" / "tempo"), processes=2)
    assert two.count("wrote ") == 1  # one process writes the vector
    same_tree(tmp_path / "one", tmp_path / "two", "tempo.*")

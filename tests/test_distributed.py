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

from tada.runs.distributed import my_share

MODEL = ["--model", "tiny-stable-audio"]


def tada(*args, processes=1, cwd=None):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", "-m"]
    cmd = [*(launcher if processes > 1 else [sys.executable, "-m"]), "tada", "--threads", "1", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


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

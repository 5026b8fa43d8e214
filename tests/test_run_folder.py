"""The run folder: manifests that refuse other settings, units that survive a kill at any instant."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tada.errors import TadaError
from tada.runs import RunFolder, check_output_dir


def test_other_settings_are_refused_naming_each_key(tmp_path):
    run = RunFolder(tmp_path, "sweep", {"steps": 10, "alphas": [0, 1]})
    run.append({"key": "a", "value": 1})
    with pytest.raises(TadaError, match=r"steps: 10 -> 12; alphas: \[0, 1\] -> \[0, 2\]"):
        RunFolder(tmp_path, "sweep", {"steps": 12, "alphas": [0, 2]})
    with pytest.raises(TadaError, match=r"kind: 'sweep' -> 'localize'"):
        RunFolder(tmp_path, "localize", {"steps": 10, "alphas": [0, 1]})
    assert RunFolder(tmp_path, "sweep", {"steps": 10, "alphas": [0, 1]}).units() == {"a": {"key": "a", "value": 1}}
    fresh = RunFolder(tmp_path, "sweep", {"steps": 12, "alphas": [0, 1]}, overwrite=True)
    assert fresh.units() == {} and not (tmp_path / "manifest.json").exists()


def test_nothing_is_written_before_the_first_result(tmp_path):
    RunFolder(tmp_path / "run", "sweep", {"steps": 10})
    assert list((tmp_path / "run").iterdir()) == []
    RunFolder(tmp_path / "run", "sweep", {"steps": 11})  # a failed start never blocks the corrected rerun


def test_torn_last_line_is_dropped_and_cut(tmp_path):
    run = RunFolder(tmp_path, "sweep", {})
    run.append({"key": "a"})
    run.append({"key": "b"})
    path = tmp_path / "units" / "units.rank0.jsonl"
    path.write_bytes(path.read_bytes()[:-5])  # a kill in the middle of writing "b"
    with pytest.warns(UserWarning, match="torn last line"):
        assert set(run.units()) == {"a"}
    run.append({"key": "c"})
    assert set(run.units()) == {"a", "c"}
    path.write_bytes(b'{"key": "x"\n' + path.read_bytes())
    with pytest.raises(TadaError, match="line 1 is not valid JSON"):
        run.units()


def test_each_rank_writes_its_own_file_and_reading_merges(tmp_path, monkeypatch):
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        RunFolder(tmp_path, "sweep", {}).append({"key": f"unit{rank}"})
    assert sorted(p.name for p in (tmp_path / "units").iterdir()) == ["units.rank0.jsonl", "units.rank1.jsonl"]
    assert set(RunFolder(tmp_path, "sweep", {}).units()) == {"unit0", "unit1"}


WRITER = textwrap.dedent("""
    import sys
    import time
    from tada.runs import RunFolder
    run = RunFolder(sys.argv[1], "sweep", {"n": 400})
    done = run.units()
    for i in range(400):
        if f"u{i}" not in done:
            time.sleep(0.004)  # the unit's work
            run.append({"key": f"u{i}", "value": i * i, "pad": "x" * 2000})
""")


def test_sigkill_at_random_instants_never_changes_the_result(tmp_path):
    rng = random.Random(0)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    out = tmp_path / "run"
    counts = []
    for _ in range(6):
        child = subprocess.Popen([sys.executable, str(script), str(out)])
        time.sleep(rng.uniform(0.7, 1.6))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        counts.append(len(RunFolder(out, "sweep", {"n": 400}).units()) if out.exists() else 0)
    assert any(0 < c < 400 for c in counts), counts  # the kills landed while units were being written
    subprocess.run([sys.executable, str(script), str(out)], check=True)
    units = RunFolder(out, "sweep", {"n": 400}).units()
    assert sorted(units) == sorted(f"u{i}" for i in range(400))
    assert all(units[f"u{i}"]["value"] == i * i for i in range(400))
    lines = (out / "units" / "units.rank0.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1])


def test_output_folder_errors_are_one_line(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(TadaError, match="is a file"):
        check_output_dir(tmp_path / "file")

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("pathlib.Path.mkdir", read_only)
    with pytest.raises(TadaError, match=r"cannot write .*out: Read-only file system"):
        check_output_dir(tmp_path / "out")

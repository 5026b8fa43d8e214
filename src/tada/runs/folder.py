"""The run folder every long command writes: settings in a manifest, finished units appended as they finish.

A run folder holds

* ``manifest.json``: the command (``kind``) and every setting that shapes every output (model, method
  artifacts by content hash, steps, guidance, ...). Opening a folder whose manifest differs refuses, naming
  each differing key ``old -> new``; ``overwrite=True`` empties the folder first. The manifest is written
  only when the first result is, so a run that fails before doing any work leaves nothing behind.
* ``units/<table>.rank<r>.jsonl``: one JSON line per finished unit, each carrying its own ``key`` (what
  makes it: prompt, seed, alpha, ...). A line is written with one ``write`` call and flushed to disk; a kill
  can only leave a torn *last* line, which reading drops and the next append cuts away. Each process of a
  distributed run (``RANK`` in the environment, as ``torchrun`` and ``accelerate launch`` set it) appends to
  its own file; reading merges them.
* anything else through :meth:`RunFolder.write_text` / :meth:`write_table` (temporary file, then rename) or
  a path from :meth:`RunFolder.file`.

A full or read-only disk is a :class:`~tada.errors.TadaError` naming the path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from tada.errors import TadaError
from tada.runs.distributed import barrier, is_main, process_rank, solo, world_size

MANIFEST = "manifest.json"
UNITS = "units"
IGNORED_KEYS = ("library_version",)


def content_hash(*parts: Any) -> str:
    """A 16-hex-digit SHA-256 of JSON-able parts and raw bytes, in order."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an operating-system error while writing `path` into one line naming it."""
    try:
        yield
    except OSError as err:
        raise TadaError(f"cannot write {path}: {err.strerror or err}; choose a writable output folder with free "
                        "space") from err


def check_output_dir(path: str | Path) -> Path:
    """`path` as a folder tada can write into (created if missing): not a file, writable. Call it once the
    other arguments are checked and before any work, so a bad folder never costs a finished computation."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise TadaError(f"output folder {path} is a file; name a folder")
    with writing(path):
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".tada-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    return path


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class RunFolder:
    """One run's folder (see the module docstring).

    kind: the command ("localize", "alpha-sweep", ...). settings: everything that shapes every output.
    overwrite: start clean when the folder holds a run with other settings (else that is refused).
    """

    def __init__(self, path: str | Path, kind: str, settings: dict, overwrite: bool = False):
        self.path = check_output_dir(path)
        self.kind = kind
        self.settings = _jsonable({"kind": kind, **settings})
        self.rank = process_rank()
        self._manifest_written = False
        old = self.manifest()
        if old is not None:
            diff = self.differences(old)
            if diff and not overwrite:
                raise TadaError(
                    f"{self.path} holds a run with other settings ({'; '.join(diff)}); use another output folder, "
                    "the same settings to resume, or --overwrite to start clean")
            if diff:
                self.clear()
            else:
                self._manifest_written = True

    # --- the manifest -------------------------------------------------------------------------------------
    def manifest(self) -> dict | None:
        p = self.path / MANIFEST
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError as err:
            raise TadaError(f"{p} is not a tada manifest ({err}); move the folder aside or use --overwrite") from err

    def differences(self, old: dict) -> list[str]:
        """Each setting that differs between `old` and this run, as ``key: old -> new``."""
        keys = [k for k in dict.fromkeys([*old, *self.settings]) if k not in IGNORED_KEYS]
        return [f"{k}: {old.get(k)!r} -> {self.settings.get(k)!r}" for k in keys if old.get(k) != self.settings.get(k)]

    def clear(self) -> None:
        with writing(self.path):
            for child in self.path.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        self._manifest_written = False

    def begin(self) -> None:
        """Write the manifest (once, by rank 0): called before the first result is written."""
        if not self._manifest_written and self.rank == 0:
            from tada import __version__

            self.write_text(MANIFEST, json.dumps({**self.settings, "library_version": __version__}, indent=2))
        self._manifest_written = True

    # --- finished units -----------------------------------------------------------------------------------
    def _unit_files(self, table: str) -> list[Path]:
        return sorted((self.path / UNITS).glob(f"{table}.rank*.jsonl"))

    def units(self, table: str = "units") -> dict[str, dict]:
        """Every finished unit of `table` over all ranks, by key (a torn last line is dropped)."""
        out: dict[str, dict] = {}
        for path in self._unit_files(table):
            for record in _read_lines(path):
                out[record["key"]] = record
        return out

    def append(self, record: dict, table: str = "units") -> None:
        """Add one finished unit (a dict with a string ``key``) to this rank's file of `table`."""
        if not isinstance(record.get("key"), str):
            raise TadaError(f"a unit record needs a string 'key'; got {record.get('key')!r}")
        line = json.dumps(_jsonable(record), sort_keys=True, allow_nan=False) + "\n"
        self.begin()
        path = self.path / UNITS / f"{table}.rank{self.rank}.jsonl"
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            _cut_torn_tail(path)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    # --- other files --------------------------------------------------------------------------------------
    def file(self, relative: str | Path) -> Path:
        """A path inside the folder (its parent created); write it yourself, e.g. to a temporary name first."""
        self.begin()
        path = self.path / relative
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write_text(self, relative: str | Path, text: str) -> Path:
        """Write a file whole: to a temporary name, then renamed over the old one."""
        if Path(relative) != Path(MANIFEST):
            self.begin()
        path = self.path / relative
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # processes of one run may write the same file
            tmp.write_text(text)
            tmp.replace(path)
        return path

    def write_table(self, relative: str | Path, table: pd.DataFrame) -> Path:
        return self.write_text(relative, table.to_csv(index=False))

    def load_or_fit(self, relative: str | Path, fit: Callable[[], Any], load: Callable[[Path], Any]) -> Any:
        """The artifact saved at `relative` (``load(path)``) if this run made it, else ``fit()`` saved there.

        The artifact's ``save(path)`` writes it; the folder's manifest vouches that it was made with this
        run's settings."""
        path = self.path / relative
        if world_size() > 1:  # rank 0 fits and saves; every rank waits, then loads what it saved
            if is_main() and not path.exists():
                with solo():  # the others wait at the barrier: the fit must not wait for them
                    self._save(relative, fit())
            barrier()  # never read a file another rank may still be writing
            return load(path)
        if path.exists():
            return load(path)
        return self._save(relative, fit())

    def _save(self, relative: str | Path, artifact: Any) -> Any:
        path = self.file(relative)
        with writing(path):
            artifact.save(path)
        return artifact


def _read_lines(path: Path) -> list[dict]:
    lines = path.read_bytes().split(b"\n")
    records = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            records.append(json.loads(raw))
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:  # an unterminated last line: a write cut off by a kill
                warnings.warn(f"{path}: dropped a torn last line (an interrupted write); its unit is redone",
                              stacklevel=3)
                continue
            raise TadaError(f"{path} line {i + 1} is not valid JSON ({err}); the run folder is damaged") from err
    return records


def _cut_torn_tail(path: Path) -> None:
    """Cut an unterminated last line (a write cut off by a kill) so the next line starts clean."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        data = f.seek(0) or f.read()
        f.truncate(data.rfind(b"\n") + 1)

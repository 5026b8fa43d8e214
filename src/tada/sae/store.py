"""An on-disk store of activation rows, written as they are captured and read back in shuffled minibatches.

Layout of a store folder::

    index.json                  {"format", "version", "d", "dtype", "rows", "shards": [...]}
    shard-000000.safetensors    one float16 tensor "activations" of shape (rows, d)
    shard-000001.safetensors
    ...

Each entry of ``shards`` names its file, its row count and its *units*: one unit per
:meth:`ActivationWriter.add` call, with the caller's ``key`` (e.g. ``"prompt12/seed3"``), its row
count and its metadata dict (e.g. ``{"prompt_id": 12, "step": 40}``), which holds for every row of
that unit. A unit is never split across shards, so after a kill every unit is either wholly on disk
or wholly absent: :attr:`ActivationWriter.done_keys` tells the caller which units to skip.

A shard is written to a temporary name, renamed into place, and only then listed in the index
(itself replaced atomically). A shard file that the index does not list is the remains of a kill
and is deleted when the folder is opened for writing again.

Processes of one distributed run each write a store of their own in ``parts/<name>/``;
:func:`merge_parts` lists their shards in the folder's own index (as ``parts/<name>/shard-...``), so the
folder reads as one store.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from tada.errors import MissingFileError, TadaError

INDEX_NAME = "index.json"
TENSOR_NAME = "activations"
STORE_FORMAT = "tada.activations"
STORE_VERSION = 1
STORE_DTYPE = "float16"
FLOAT16_MAX = float(torch.finfo(torch.float16).max)


def _shard_name(number: int) -> str:
    return f"shard-{number:06d}.safetensors"


def _write_json_atomically(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


def _read_index(folder: Path) -> dict:
    path = folder / INDEX_NAME
    if not path.is_file():
        raise MissingFileError(f"no activation store at {folder}: {INDEX_NAME} is missing")
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise TadaError(f"corrupt activation index {path}: not valid JSON ({err})") from err
    if not isinstance(index, dict) or index.get("format") != STORE_FORMAT:
        raise TadaError(f"{path} is not an activation index: expected format {STORE_FORMAT!r}")
    if index.get("version") != STORE_VERSION or index.get("dtype") != STORE_DTYPE:
        raise TadaError(
            f"{path}: unsupported version/dtype {index.get('version')!r}/{index.get('dtype')!r}; "
            f"this reader accepts version {STORE_VERSION} with dtype {STORE_DTYPE!r}"
        )
    for field in ("d", "rows", "shards"):
        if field not in index:
            raise TadaError(f"corrupt activation index {path}: field {field!r} is missing")
    if sum(s["rows"] for s in index["shards"]) != index["rows"]:
        raise TadaError(f"corrupt activation index {path}: shard rows do not add up to {index['rows']}")
    return index


def _check_shard(folder: Path, shard: dict, d: int) -> None:
    """Raise unless the shard file exists and holds one float16 (rows, d) tensor, per the index."""
    path = folder / shard["file"]
    if not path.is_file():
        raise MissingFileError(f"activation shard {path} listed in {INDEX_NAME} is missing")
    try:
        with safe_open(str(path), framework="pt") as f:
            if list(f.keys()) != [TENSOR_NAME]:
                raise TadaError(f"corrupt activation shard {path}: expected one tensor {TENSOR_NAME!r}, got {list(f.keys())}")
            view = f.get_slice(TENSOR_NAME)
            shape, dtype = tuple(view.get_shape()), view.get_dtype()
    except SafetensorError as err:
        raise TadaError(f"corrupt activation shard {path}: {err}") from err
    if shape != (shard["rows"], d) or dtype != "F16":
        raise TadaError(
            f"activation shard {path} holds {dtype} {shape}; the index expects F16 {(shard['rows'], d)}"
        )


class ActivationWriter:
    """Append activation rows to a store folder, one float16 shard at a time.

    ``shard_rows``: a shard is written as soon as the pending rows reach this count. Units are never
    split, so a shard holds at most ``shard_rows - 1`` rows plus the last unit added; memory is
    bounded by that. Reopening an existing folder continues after its last complete shard (``d``
    must match). Use as a context manager, or call :meth:`close`, to write the last partial shard.
    """

    def __init__(self, folder: str | Path, d: int, shard_rows: int = 65536):
        if isinstance(d, bool) or not isinstance(d, int) or d <= 0:
            raise TadaError(f"d must be a positive int (the activation width); got {d!r}")
        if isinstance(shard_rows, bool) or not isinstance(shard_rows, int) or shard_rows <= 0:
            raise TadaError(f"shard_rows must be a positive int; got {shard_rows!r}")
        self.folder = Path(folder)
        self.d = d
        self.shard_rows = shard_rows
        self._pending: list[torch.Tensor] = []
        self._pending_units: list[dict] = []
        self._pending_rows = 0
        if (self.folder / INDEX_NAME).exists():
            self._index = _read_index(self.folder)
            if self._index["d"] != d:
                raise TadaError(f"store {self.folder} holds rows of width d={self._index['d']}; got d={d}")
            for shard in self._index["shards"]:
                _check_shard(self.folder, shard, d)
            listed = {s["file"] for s in self._index["shards"]}
            for stray in self.folder.glob("shard-*.safetensors*"):
                if stray.name not in listed:
                    stray.unlink()
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._index = {"format": STORE_FORMAT, "version": STORE_VERSION, "d": d,
                           "dtype": STORE_DTYPE, "rows": 0, "shards": []}
            _write_json_atomically(self.folder / INDEX_NAME, self._index)
        self._done_keys = {u["key"] for s in self._index["shards"] for u in s["units"] if u["key"] is not None}

    @property
    def done_keys(self) -> set[str]:
        """Keys of the units already in complete shards (a resumed run skips these)."""
        return set(self._done_keys)

    @property
    def rows(self) -> int:
        """Rows on disk plus rows pending in memory."""
        return self._index["rows"] + self._pending_rows

    def add(self, rows: torch.Tensor, meta: dict[str, Any] | None = None, key: str | None = None) -> None:
        """Queue one unit of rows (n, d); ``meta`` (JSON scalars) describes every row of it.

        Values are stored as float16, so they must be finite and within +-65504.
        """
        if not isinstance(rows, torch.Tensor) or not rows.is_floating_point():
            raise TadaError(f"rows must be a floating-point torch.Tensor (n, d); got {type(rows).__name__}"
                            + (f" of dtype {rows.dtype}" if isinstance(rows, torch.Tensor) else ""))
        if rows.ndim != 2 or rows.shape[1] != self.d or rows.shape[0] == 0:
            raise TadaError(f"rows must have shape (n >= 1, d={self.d}); got {tuple(rows.shape)}")
        if key is not None:
            if not isinstance(key, str):
                raise TadaError(f"key must be a str or None; got {type(key).__name__}")
            if key in self._done_keys or any(u["key"] == key for u in self._pending_units):
                raise TadaError(f"unit key {key!r} was already added to {self.folder}")
        meta = {} if meta is None else meta
        if not isinstance(meta, dict):
            raise TadaError(f"meta must be a dict of JSON scalars or None; got {type(meta).__name__}")
        for name, value in meta.items():
            if not isinstance(name, str) or not (value is None or isinstance(value, (str, int, float, bool))):
                raise TadaError(f"meta entries must be str -> JSON scalar (str, int, float, bool, None); got {name!r}: {value!r}")
        values = rows.detach().to("cpu", torch.float32)
        if not torch.isfinite(values).all() or values.abs().max().item() > FLOAT16_MAX:
            raise TadaError(f"rows must be finite and within +-{FLOAT16_MAX:g} to be stored as float16; "
                             f"got max |value| {values.abs().max().item():g}")
        self._pending.append(values.to(torch.float16))
        self._pending_units.append({"key": key, "rows": rows.shape[0], "meta": meta})
        self._pending_rows += rows.shape[0]
        if self._pending_rows >= self.shard_rows:
            self.flush()

    def flush(self) -> None:
        """Write the pending units as one shard (no-op if none are pending)."""
        if not self._pending:
            return
        number = len(self._index["shards"])
        name = _shard_name(number)
        tmp = self.folder / (name + ".tmp")
        save_file({TENSOR_NAME: torch.cat(self._pending).contiguous()}, str(tmp))
        os.replace(tmp, self.folder / name)
        self._index["shards"].append({"file": name, "rows": self._pending_rows, "units": self._pending_units})
        self._index["rows"] += self._pending_rows
        _write_json_atomically(self.folder / INDEX_NAME, self._index)
        self._done_keys.update(u["key"] for u in self._pending_units if u["key"] is not None)
        self._pending, self._pending_units, self._pending_rows = [], [], 0

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> "ActivationWriter":
        return self

    def __exit__(self, *exc) -> None:
        # Every pending unit is complete (add() is atomic), so it is kept even when leaving on an error.
        self.close()


class ActivationReader:
    """Read a store folder: ``len(reader)`` rows of width ``reader.d``, float32 minibatches."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._index = _read_index(self.folder)
        self.d: int = self._index["d"]
        for shard in self._index["shards"]:
            _check_shard(self.folder, shard, self.d)

    def __len__(self) -> int:
        return self._index["rows"]

    @property
    def num_shards(self) -> int:
        return len(self._index["shards"])

    def shard(self, number: int) -> torch.Tensor:
        """All rows of shard ``number`` as float32 (rows, d)."""
        if not 0 <= number < self.num_shards:
            raise TadaError(f"shard number must be in [0, {self.num_shards}); got {number}")
        with safe_open(str(self.folder / self._index["shards"][number]["file"]), framework="pt") as f:
            return f.get_tensor(TENSOR_NAME).float()

    def load_all(self) -> torch.Tensor:
        """Every row in store order as one float32 tensor (len, d): only for stores that fit in memory."""
        if len(self) == 0:
            return torch.empty(0, self.d)
        return torch.cat([self.shard(i) for i in range(self.num_shards)])

    def units(self) -> list[dict]:
        """One dict per added unit, in store order: key, meta, and its global row range [start, stop)."""
        out, start = [], 0
        for shard in self._index["shards"]:
            for unit in shard["units"]:
                out.append({"key": unit["key"], "meta": unit["meta"], "start": start, "stop": start + unit["rows"]})
                start += unit["rows"]
        return out

    def iter_units(self) -> Iterator[tuple[dict, torch.Tensor]]:
        """Every unit (as :meth:`units` gives it) with its float32 rows, in store order, one shard in memory."""
        start = 0
        for number, shard in enumerate(self._index["shards"]):
            rows, offset = self.shard(number), 0
            for unit in shard["units"]:
                yield ({"key": unit["key"], "meta": unit["meta"], "start": start, "stop": start + unit["rows"]},
                       rows[offset:offset + unit["rows"]])
                offset += unit["rows"]
                start += unit["rows"]

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return len(self) // batch_size if drop_last else math.ceil(len(self) / batch_size)

    def batches(self, batch_size: int, seed: int = 0, shuffle: bool = True,
                drop_last: bool = False) -> Iterator[torch.Tensor]:
        """Yield float32 (batch_size, d) minibatches, loading one shard at a time.

        With ``shuffle`` the shard order and the rows inside each shard are permuted by a generator
        seeded with ``seed``; rows left over at the end of a shard open the next batch. The same seed
        gives the same batches. The last short batch is yielded unless ``drop_last``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise TadaError(f"batch_size must be a positive int; got {batch_size!r}")
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(self.num_shards, generator=gen).tolist() if shuffle else range(self.num_shards)
        carry = torch.empty(0, self.d)
        for number in order:
            rows = self.shard(number)
            if shuffle:
                rows = rows[torch.randperm(len(rows), generator=gen)]
            rows = torch.cat([carry, rows])
            full = len(rows) // batch_size * batch_size
            if full:
                yield from rows[:full].split(batch_size)
            carry = rows[full:]
        if len(carry) and not drop_last:
            yield carry


PARTS = "parts"


def merge_parts(folder: str | Path) -> dict:
    """Rewrite ``folder/index.json`` to list the folder's own shards and then every complete shard of the stores
    under ``folder/parts/*/`` (each process's of a distributed run), in the parts' name order; returns the index.
    Idempotent: a shard already listed is listed once."""
    folder = Path(folder)
    own = _read_index(folder) if (folder / INDEX_NAME).is_file() else None
    parts = sorted(p for p in (folder / PARTS).glob("*") if (p / INDEX_NAME).is_file())
    indexes = [(p, _read_index(p)) for p in parts]
    widths = {i["d"] for _, i in indexes} | ({own["d"]} if own else set())
    if len(widths) > 1:
        raise TadaError(f"the stores under {folder} hold rows of different widths {sorted(widths)}")
    if own is None and not indexes:
        raise MissingFileError(f"no activation store at {folder}: neither {INDEX_NAME} nor {PARTS}/*/{INDEX_NAME}")
    shards = [s for s in (own["shards"] if own else []) if "/" not in s["file"]]
    for part, index in indexes:
        prefix = part.relative_to(folder).as_posix()
        shards += [dict(s, file=f"{prefix}/{s['file']}") for s in index["shards"]]
    merged = {"format": STORE_FORMAT, "version": STORE_VERSION, "d": widths.pop(), "dtype": STORE_DTYPE,
              "rows": sum(s["rows"] for s in shards), "shards": shards}
    _write_json_atomically(folder / INDEX_NAME, merged)
    return merged

import json

import pytest
import torch

from tada.errors import TadaError
from tada.sae.store import ActivationReader, ActivationWriter


def _rows(n, d, start=0):
    # Values exactly representable in float16, so round trips can be compared exactly.
    return (torch.arange(start * d, (start + n) * d, dtype=torch.float32).reshape(n, d) / 8)


def test_write_read_round_trip_with_units_and_metadata(tmp_path):
    with ActivationWriter(tmp_path, d=3, shard_rows=4) as w:
        w.add(_rows(2, 3, 0), meta={"prompt_id": 0, "step": 5}, key="p0")
        w.add(_rows(3, 3, 2), meta={"prompt_id": 1, "step": 5}, key="p1")  # 5 >= 4 rows: shard 0 written
        w.add(_rows(1, 3, 5), key="p2")  # pending until close
        assert w.done_keys == {"p0", "p1"}
        assert w.rows == 6
    r = ActivationReader(tmp_path)
    assert (len(r), r.d, r.num_shards) == (6, 3, 2)
    torch.testing.assert_close(r.load_all(), _rows(6, 3), rtol=0, atol=0)
    assert r.load_all().dtype == torch.float32
    assert r.units() == [
        {"key": "p0", "meta": {"prompt_id": 0, "step": 5}, "start": 0, "stop": 2},
        {"key": "p1", "meta": {"prompt_id": 1, "step": 5}, "start": 2, "stop": 5},
        {"key": "p2", "meta": {}, "start": 5, "stop": 6},
    ]
    index = json.loads((tmp_path / "index.json").read_text())
    assert (index["d"], index["dtype"], index["rows"]) == (3, "float16", 6)
    assert [s["rows"] for s in index["shards"]] == [5, 1]


def test_stored_values_are_float16_rounded(tmp_path):
    x = torch.tensor([[0.1, 1000.3, -2.0 / 3.0]])
    with ActivationWriter(tmp_path, d=3) as w:
        w.add(x)
    torch.testing.assert_close(ActivationReader(tmp_path).load_all(), x.half().float(), rtol=0, atol=0)


def test_batches_cover_every_row_once_and_are_seeded(tmp_path):
    with ActivationWriter(tmp_path, d=2, shard_rows=5) as w:
        for i in range(4):
            w.add(_rows(5, 2, 5 * i))
    r = ActivationReader(tmp_path)
    batches = list(r.batches(batch_size=6, seed=3))
    assert [len(b) for b in batches] == [6, 6, 6, 2]
    assert r.num_batches(6) == 4 and r.num_batches(6, drop_last=True) == 3
    seen = torch.cat(batches)
    assert sorted(seen[:, 0].tolist()) == sorted(_rows(20, 2)[:, 0].tolist())
    assert not torch.equal(seen, _rows(20, 2))  # shuffled
    again = torch.cat(list(r.batches(batch_size=6, seed=3)))
    assert torch.equal(seen, again)
    other = torch.cat(list(r.batches(batch_size=6, seed=4)))
    assert not torch.equal(seen, other)
    assert [len(b) for b in r.batches(6, drop_last=True)] == [6, 6, 6]
    assert torch.equal(torch.cat(list(r.batches(7, shuffle=False))), _rows(20, 2))


def test_resume_after_kill_discards_partial_shard_and_keeps_done_keys(tmp_path):
    w = ActivationWriter(tmp_path, d=2, shard_rows=2)
    w.add(_rows(2, 2, 0), key="a")
    w.add(_rows(2, 2, 2), key="b")
    w.add(_rows(1, 2, 4), key="c")  # pending in memory only: lost by the kill
    # Simulate a kill in the middle of writing the next shard: a temporary file and an unlisted shard.
    (tmp_path / "shard-000002.safetensors.tmp").write_bytes(b"half a shard")
    (tmp_path / "shard-000002.safetensors").write_bytes(b"unlisted")
    del w
    w = ActivationWriter(tmp_path, d=2, shard_rows=2)
    assert w.done_keys == {"a", "b"}
    assert not (tmp_path / "shard-000002.safetensors").exists()
    assert not (tmp_path / "shard-000002.safetensors.tmp").exists()
    w.add(_rows(1, 2, 4), key="c")
    w.add(_rows(1, 2, 5), key="d")
    w.close()
    r = ActivationReader(tmp_path)
    assert [u["key"] for u in r.units()] == ["a", "b", "c", "d"]
    assert torch.equal(r.load_all(), _rows(6, 2))


def test_units_are_never_split_across_shards(tmp_path):
    with ActivationWriter(tmp_path, d=1, shard_rows=3) as w:
        w.add(_rows(2, 1), key="a")
        w.add(_rows(7, 1, 2), key="b")
    r = ActivationReader(tmp_path)
    assert r.num_shards == 1 and len(r.shard(0)) == 9


def test_writer_rejects_bad_input(tmp_path):
    w = ActivationWriter(tmp_path, d=3)
    with pytest.raises(ValueError, match="d=3"):
        w.add(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="shape"):
        w.add(torch.zeros(0, 3))
    with pytest.raises(TadaError, match="floating-point"):
        w.add(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(TadaError, match="floating-point"):
        w.add([[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="finite"):
        w.add(torch.full((1, 3), 1e6))
    with pytest.raises(ValueError, match="finite"):
        w.add(torch.tensor([[0.0, float("nan"), 0.0]]))
    with pytest.raises(TadaError, match="JSON scalar"):
        w.add(torch.zeros(1, 3), meta={"x": [1, 2]})
    with pytest.raises(TadaError, match="meta must be"):
        w.add(torch.zeros(1, 3), meta=[1])
    with pytest.raises(TadaError, match="key must be"):
        w.add(torch.zeros(1, 3), key=3)
    w.add(torch.zeros(1, 3), key="u")
    with pytest.raises(ValueError, match="'u' was already added"):
        w.add(torch.zeros(1, 3), key="u")
    with pytest.raises(ValueError, match="d must be"):
        ActivationWriter(tmp_path / "x", d=0)
    with pytest.raises(ValueError, match="shard_rows"):
        ActivationWriter(tmp_path / "x", d=2, shard_rows=0)
    w.close()
    with pytest.raises(ValueError, match="d=3; got d=5"):
        ActivationWriter(tmp_path, d=5)


def test_reader_rejects_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="index.json"):
        ActivationReader(tmp_path)
    with ActivationWriter(tmp_path, d=2, shard_rows=2) as w:
        w.add(_rows(2, 2))
        w.add(_rows(2, 2, 2))
    shard = tmp_path / "shard-000001.safetensors"
    good = shard.read_bytes()
    shard.write_bytes(good[: len(good) - 5])
    with pytest.raises(ValueError, match="corrupt activation shard"):
        ActivationReader(tmp_path)
    shard.unlink()
    with pytest.raises(FileNotFoundError, match="shard-000001"):
        ActivationReader(tmp_path)
    from safetensors.torch import save_file

    save_file({"activations": torch.zeros(3, 2, dtype=torch.float16)}, str(shard))
    with pytest.raises(ValueError, match=r"expects F16 \(2, 2\)"):
        ActivationReader(tmp_path)
    save_file({"activations": torch.zeros(2, 2)}, str(shard))
    with pytest.raises(ValueError, match="holds F32"):
        ActivationReader(tmp_path)
    index = tmp_path / "index.json"
    index.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ActivationReader(tmp_path)
    index.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not an activation index"):
        ActivationReader(tmp_path)


def test_reader_argument_errors(tmp_path):
    with ActivationWriter(tmp_path, d=2) as w:
        w.add(_rows(3, 2))
    r = ActivationReader(tmp_path)
    with pytest.raises(ValueError, match="batch_size"):
        next(r.batches(0))
    with pytest.raises(ValueError, match="shard number"):
        r.shard(1)

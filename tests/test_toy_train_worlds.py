"""The training CLI's --world option: the data folder records its world, later stages read it."""

import json

import pytest
import torch

from tada.toy import train
from tada.toy.worlds import get_world


def test_v2_data_records_its_world_and_representation(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "CHUNK", 3)
    train.build_data(tmp_path, n_train=3, n_test=2, world="v2")
    assert json.loads((tmp_path / "data" / "world.json").read_text()) == {"world": "v2"}
    assert train.world_of(tmp_path) == "v2"
    mel = train.data_mel(tmp_path)
    spec = get_world("v2")
    assert mel.n_mels == spec.mel["n_mels"] and mel.num_samples == spec.num_samples and mel.frames == 160
    chunk = torch.load(tmp_path / "data" / "train_0000000.pt", weights_only=False)
    assert chunk["log_mel"].shape == (3, mel.n_mels, mel.frames)
    assert chunk["log_mel_gl"].shape == chunk["log_mel"].shape
    with pytest.raises(ValueError, match="world 'v2', not 'v1'"):
        train.build_data(tmp_path, n_train=3, n_test=2, world="v1")
    scorer = train.train_scorer(tmp_path, steps=2, seed=0, batch=4)  # v2's scorer also reads the pitch classes
    assert scorer.net.mode is not None and scorer.net.config["mel_range"] == [mel.f_min, mel.f_max]
    from tada.toy.scorer import ToyScorer

    again = ToyScorer.from_pretrained(tmp_path / "scorer")
    assert all(torch.equal(a, b) for a, b in zip(again.net.state_dict().values(), scorer.net.state_dict().values()))
    state = torch.load(tmp_path / "scorer" / "checkpoint.pt", weights_only=False)
    torch.save({**state, "config": {"n_mels": mel.n_mels, "width": 64}}, tmp_path / "scorer" / "checkpoint.pt")
    with pytest.raises(ValueError, match="a scorer of another architecture"):
        train.train_scorer(tmp_path, steps=4, seed=0, batch=4)


def test_a_folder_without_a_world_marker_is_v1(tmp_path):
    assert train.world_of(tmp_path) == "v1"
    with pytest.raises(ValueError, match="accepted"):
        get_world("v3")

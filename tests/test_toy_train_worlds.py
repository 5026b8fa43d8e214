"""The training CLI's --world option: the data folder records its world, later stages read it."""

import json

import pytest
import torch

from tada.toy import train
from tada.toy.model import LinearLatent
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
    torch.save(state, tmp_path / "scorer" / "checkpoint.pt")
    with pytest.raises(ValueError, match="trained with other settings or data"):  # another cosine schedule
        train.train_scorer(tmp_path, steps=4, seed=0, batch=4)
    train.build_data(tmp_path, n_train=6, n_test=2, world="v2")
    with pytest.raises(ValueError, match="trained with other settings or data"):  # more clips
        train.train_scorer(tmp_path, steps=2, seed=0, batch=4)


def test_a_folder_without_a_world_marker_is_v1(tmp_path):
    assert train.world_of(tmp_path) == "v1"
    with pytest.raises(ValueError, match="accepted"):
        get_world("v3")


@pytest.mark.parametrize("components", [None, 16])
def test_dit_training_resumes_to_the_same_weights_and_ends_on_the_cpu(tmp_path, monkeypatch, components):
    """Stopping at step N and resuming == one run: the batches come from the step's own seed, and the
    checkpoint holds the weights, the optimizer state, the EMA and the latent the run fitted."""
    import dataclasses
    import shutil

    from tada.toy import worlds

    monkeypatch.setattr(train, "CHUNK", 3)
    monkeypatch.setitem(worlds.WORLDS, "v1", dataclasses.replace(get_world("v1"), latent_components=components))
    one, two = tmp_path / "one", tmp_path / "two"
    train.build_data(one, n_train=3, n_test=2, world="v1")  # the smaller DiT: the same code as v2's
    train.train_scorer(one, steps=1, seed=0, batch=4)
    shutil.copytree(one, two)
    kw = dict(seed=0, batch=2, eval_every=100, n_eval=2, device=train.training_device("cpu"))
    straight = train.train_model(one, steps=3, **kw)
    train.train_model(two, steps=2, **kw)
    resumed = train.train_model(two, steps=3, **kw)
    a, b = straight.transformer.state_dict(), resumed.transformer.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (resumed.latent is None) == (components is None) and resumed.transformer.config.in_channels == (
        components or resumed.mel.n_mels)
    if components:
        assert torch.equal(resumed.latent.basis, straight.latent.basis)
        assert train.ToyPipeline.from_pretrained(two / "model" / "latest").latent.channels == components
    assert all(v.device.type == "cpu" for v in b.values())
    assert [json.loads(line)["step"] for line in (two / "model" / "log.jsonl").read_text().splitlines()] == [2, 3]
    with pytest.raises(ValueError, match="trained with other settings"):
        train.train_model(two, steps=4, **{**kw, "batch": 3})
    spec = get_world("v1")
    monkeypatch.setitem(worlds.WORLDS, "v1", dataclasses.replace(spec, preconditioned=True))
    with pytest.raises(ValueError, match="trained with other settings.*this run: .*'preconditioned': True"):
        train.train_model(two, steps=4, **kw)  # the same folder, the velocity parametrized otherwise
    monkeypatch.setitem(worlds.WORLDS, "v1", spec)
    state = torch.load(two / "model" / "checkpoint.pt", weights_only=False)
    del state["settings"]["preconditioned"]  # a checkpoint from before preconditioning existed: read as off
    torch.save(state, two / "model" / "checkpoint.pt")
    train.train_model(two, steps=4, **kw)
    assert [json.loads(line)["step"] for line in (two / "model" / "log.jsonl").read_text().splitlines()] == [2, 3, 4]
    train.build_data(two, n_train=4, n_test=2, world="v1")  # more clips: the checkpoint saw other data
    with pytest.raises(ValueError, match="trained with other settings"):
        train.train_model(two, steps=5, **kw)
    state = torch.load(one / "model" / "checkpoint.pt", weights_only=False)
    del state["settings"]
    torch.save(state, one / "model" / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"trained with other settings \(None;"):  # settings unknown: not reused
        train.train_model(one, steps=4, **kw)
    untrained = get_world("v1").random_pipeline(0, latent=straight.latent).transformer.state_dict()
    assert any(not torch.equal(v, w) for v, w in zip(a.values(), untrained.values()))


def test_without_a_scorer_the_checks_are_the_judges_and_v1_is_refused(tmp_path, monkeypatch):
    """The DiT can train before the scorer: its checks are then the physical judges' alone; v1 has none."""
    monkeypatch.setattr(train, "CHUNK", 3)
    train.build_data(tmp_path, n_train=3, n_test=0, world="v1")
    with pytest.raises(ValueError, match="no scorer in .*world v1 has no physical judges"):
        train.train_model(tmp_path, steps=1, seed=0, batch=2)
    assert not (tmp_path / "model").exists()  # refused before any work
    pipe = get_world("v1").random_pipeline(0)
    prompts = ["a fast happy rock song with drums", "a slow sad jazz song with a male vocal"]
    judged = train.prompt_adherence(pipe, None, prompts, seed=0, steps=2, judges=True)
    assert judged and all(k.startswith("judge:") and 0 <= v <= 1 for k, v in judged.items())
    assert {"judge:tempo", "judge:mood", "judge:drums"} <= set(judged)


@pytest.mark.parametrize("name, message", [("gpu", "not a device torch knows"), ("cuda:0", "no CUDA GPU")])
def test_a_training_device_this_machine_lacks_is_refused(name, message, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=message):
        train.training_device(name)


@pytest.mark.parametrize("argv", [["data", "--n-train", "0"], ["data", "--n-extra", "-1"], ["scorer", "--steps", "0"],
                                  ["model", "--batch", "0"], ["model", "--eval-every", "0"], ["model", "--threads", "0"],
                                  ["evaluate", "--n", "0"], ["all", "--model-steps", "0"]])
def test_a_count_below_its_least_is_refused_before_any_work(argv, tmp_path):
    from typer.testing import CliRunner

    result = CliRunner().invoke(train.app, [*argv, "--out", str(tmp_path / "run")] if argv[0] != "evaluate" else argv)
    assert result.exit_code == 2 and f"Invalid value for '{argv[1]}'" in " ".join(result.output.split())
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, message", [
    (["data", "--world", "v9"], "error: unknown toy world 'v9'; accepted: ['v1', 'v2']"),
    (["model"], "error: no scorer in "),  # an empty --out
])
def test_bad_input_to_the_training_cli_is_one_line_before_any_work(argv, message, tmp_path, monkeypatch, capsys):
    """`python -m tada.toy.train` prints a TadaError as the one line `error: ...` with exit code 2, as `tada` does."""
    monkeypatch.setattr("sys.argv", ["tada.toy.train", *argv, "--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as exit_:
        train.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith(message) and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_worker_processes_render_the_same_chunks_as_one(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "CHUNK", 2)
    train.build_data(tmp_path / "one", n_train=4, n_test=2, world="v1")
    train.build_data(tmp_path / "two", n_train=4, n_test=2, world="v1", workers=2)
    names = sorted(p.name for p in (tmp_path / "one" / "data").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two" / "data").iterdir()) and len(names) == 5
    for name in names:
        if name.endswith(".pt"):
            a = torch.load(tmp_path / "one" / "data" / name, weights_only=False)
            b = torch.load(tmp_path / "two" / "data" / name, weights_only=False)
            assert a.keys() == b.keys() and ("log_mel_gl" in a) == (name != "train_0000002.pt")  # GL_EVERY
            assert all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)
        else:
            assert (tmp_path / "one" / "data" / name).read_text() == (tmp_path / "two" / "data" / name).read_text()
    train.build_data(tmp_path / "one", n_train=6, n_test=2, world="v1")  # more clips: the statistics follow
    stats = json.loads((tmp_path / "one" / "data" / "stats.json").read_text())
    log_mel = train.load_split(tmp_path / "one", "train")["log_mel"].float()
    assert stats["clips"] == 6 and len(log_mel) == 6
    torch.testing.assert_close(torch.tensor(stats["mean"]), log_mel.mean((0, 2)))
    with pytest.raises(ValueError, match="workers must be >= 1; got 0"):
        train.build_data(tmp_path / "three", n_train=4, n_test=2, world="v1", workers=0)


def test_round_trip_views_of_another_decoder_are_refused_and_rendered_again(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "CHUNK", 3)
    train.build_data(tmp_path, n_train=3, n_test=2, world="v1")
    path = tmp_path / "data" / "test_1000000.pt"
    chunk = torch.load(path, weights_only=False)
    assert chunk["decoder"] == train.decoder_of(get_world("v1").mel_spec()) and chunk["decoder"]["inverse"] == "pinv"
    fresh = chunk["log_mel_gl"].clone()
    torch.save({**chunk, "decoder": {**chunk["decoder"], "gl_iter": 8}, "log_mel_gl": fresh + 1}, path)
    with pytest.raises(ValueError, match=r"1 chunks .*\(test_1000000.pt, ...\) hold round-trip views decoded"):
        train.load_split(tmp_path, "test")
    assert train.load_split(tmp_path, "test", round_trip=False)["log_mel"].shape[0] == 2  # the frames alone are fine
    stamp = (tmp_path / "data" / "train_0000000.pt").stat().st_mtime_ns
    train.build_data(tmp_path, n_train=3, n_test=2, world="v1")  # the stale chunk alone is rendered again
    assert torch.equal(train.load_split(tmp_path, "test")["log_mel_gl"], fresh)
    assert (tmp_path / "data" / "train_0000000.pt").stat().st_mtime_ns == stamp


def test_the_caption_cache_is_remade_for_other_captions(tmp_path):
    pipe = get_world("v1").random_pipeline(0)
    (tmp_path / "model").mkdir()
    first = [["a slow sad song", "slow and sad"]]
    states, mask = train._text_states(tmp_path, pipe, first)
    assert torch.equal(states[0, 1].float(), pipe.encode_prompt(["slow and sad"])[0][0].half().float())
    other = [["a fast happy song", "fast and happy"]]
    states, mask = train._text_states(tmp_path, pipe, other)  # same file, other captions: encoded anew
    fresh, fresh_mask = pipe.encode_prompt(["a fast happy song"])
    assert torch.equal(states[0, 0], fresh[0].half()) and torch.equal(mask[0, 0], fresh_mask[0])
    assert torch.equal(train._text_states(tmp_path, pipe, other)[0], states)  # and read back when they match


def test_v2s_dit_has_twelve_cross_attention_layers_and_is_as_wide_as_its_latent():
    spec = get_world("v2")
    latent = LinearLatent.fit(torch.randn(2, 256, 160, generator=torch.Generator().manual_seed(0)), 64)
    pipe = spec.random_pipeline(0, latent=latent)
    config = pipe.transformer.config
    assert config.num_layers == 12 and config.in_channels == 64 == pipe.channels and pipe.mel.n_mels == 256
    assert config.num_attention_heads * config.attention_head_dim >= config.in_channels and pipe.time_shift == 2.5
    assert pipe.mel.inverse == "nnls" and pipe.preconditioned and not get_world("v1").preconditioned
    with pytest.raises(ValueError, match="world v2 takes a latent of 64 components; got None"):
        spec.random_pipeline(0)

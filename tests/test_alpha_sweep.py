"""Alpha sweeps as run folders: a rerun reuses a file only for the same settings, prompt, seed and alpha;
a cell that goes non-finite is recorded and the sweep goes on."""

import hashlib

import pytest
import torch

import tada
from tada.errors import NonFiniteAudioError, TadaError
from tada.experiments.alpha_sweep import alpha_sweep, load_sweep
from tada.methods.vector import SteeringVector


@pytest.fixture(scope="module")
def model():
    return tada.load("tiny-stable-audio")


def vector(model, seed, renorm=True):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(model.sites[1].dim, generator=g)
    return SteeringVector({1: v / v.norm()}, {1: model.sites[1].name}, renorm=renorm, meta={"model": model.name})


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (folder / "audio").glob("*.wav")}


def test_rerun_matrix(model, tmp_path):
    out = tmp_path / "sweep"
    a, b = vector(model, 0), vector(model, 1)
    alpha_sweep(model, a, ["a song", "a jazz piece"], [-2.0, 0.0, 2.0], out, steps=2)
    first = digests(out)
    assert len(first) == 6

    # more alphas and a reordered prompt list: only the new cells are generated, the old files are kept
    index = alpha_sweep(model, a, ["a jazz piece", "a song"], [-2.0, 0.0, 2.0, 4.0], out, steps=2)
    second = digests(out)
    assert len(second) == 8 and {k: second[k] for k in first} == first
    assert set(index.path.map(lambda p: p.split("/")[-1])) == set(second)

    # another vector, another step count or another guidance: refused, naming what changed
    for kwargs, changed in ((dict(vectors=b), "vectors"), (dict(steps=3), "steps: 2 -> 3"),
                            (dict(guidance=1.5), "guidance")):
        args = dict(vectors=a, prompts=["a song"], alphas=[0.0], out=out, steps=2) | kwargs
        with pytest.raises(TadaError, match=changed):
            alpha_sweep(model, **args)
    # --overwrite starts clean: nothing from the other vector survives
    alpha_sweep(model, b, ["a song"], [0.0, 1.0], out, steps=2, overwrite=True)
    assert len(digests(out)) == 2


def test_close_alphas_never_share_a_file(model, tmp_path):
    index = alpha_sweep(model, vector(model, 0), ["a song"], [1.0, 1.0000001], tmp_path, steps=2)
    assert index.path.nunique() == 2


def test_a_non_finite_cell_is_recorded_and_the_sweep_goes_on(model, tmp_path):
    v = vector(model, 0, renorm=False)
    with pytest.raises(NonFiniteAudioError, match=r"site \d+ \(.*\), denoising step \d+ of 2"):
        model.generate(["a song"], [0], steps=2, steer=[v.at(1e38)])
    index = alpha_sweep(model, v, ["a song", "a jazz piece"], [0.0, 1e38, 1.0], tmp_path, steps=2)
    bad = index[index.alpha == 1e38]
    assert list(bad.status) == ["nonfinite"] * 2 and bad.path.isna().all()
    assert list(index[index.alpha != 1e38].status) == ["ok"] * 4
    kept, audio = load_sweep(tmp_path)
    assert len(kept) == 4 and torch.isfinite(audio.waveform).all()
    assert not any("e+38" in p.name for p in (tmp_path / "audio").iterdir())


def test_silent_and_constant_generations_are_flagged(model, tmp_path, monkeypatch):
    from tada.experiments.alpha_sweep import audio_flag

    assert audio_flag(torch.zeros(1, 100)) == "silent" and audio_flag(torch.full((1, 100), 0.5)) == "constant"
    assert audio_flag(torch.linspace(-0.5, 0.5, 100)[None]) == ""
    real = model.generate

    def quiet(*args, **kwargs):  # a model whose output is near silence
        audio = real(*args, **kwargs)
        audio.waveform.mul_(1e-6)
        return audio

    monkeypatch.setattr(model, "generate", quiet)
    with pytest.warns(UserWarning, match="is silent"):
        index = alpha_sweep(model, vector(model, 0), ["a song"], [0.0, 1.0], tmp_path, steps=2)
    assert list(index.flag) == ["silent", "silent"] and list(index.status) == ["ok", "ok"]

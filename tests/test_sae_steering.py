"""SAE steering on a model: activation collection, eq. 6 on generations, eq. 7-8 vectors."""

import pytest
import torch

import tada
from tada.engine import Capture
from tada.errors import TadaError
from tada.methods.sae import collect, mean_features, sae_vector
from tada.sae import SaeConfig, TopKSAE, train_sae

PAIRS = [("fast piano", "slow piano"), ("happy jazz", "sad jazz")]


@pytest.fixture(scope="module")
def model():
    return tada.load("tiny-stable-audio")


@pytest.fixture(scope="module")
def store(model, tmp_path_factory):
    return collect(model, ["fast piano", "slow jazz", "happy techno"], site=2,
                   out=tmp_path_factory.mktemp("store"), seeds=[0, 1], steps=3, batch_size=4, shard_rows=50)


def test_collect_writes_every_frame_of_every_step(model, store):
    cap = Capture(sites=[2], reduce=None, per_step=True)
    model.generate(["fast piano"], [0], steps=3, interventions=[cap])
    frames = cap.frames[2]  # after the global token, up to the requested duration
    n_frames = len(range(cap.result[2][0].shape[1])[frames])
    assert 0 < n_frames < cap.result[2][0].shape[1]
    assert len(store) == 3 * 2 * 3 * n_frames and store.d == model.sites[2].dim
    first = torch.stack(cap.result[2], 1)[0, :, frames].reshape(-1, store.d)
    torch.testing.assert_close(store.load_all()[: len(first)], first.half().float())


def test_collect_resumes_without_duplicating(model, store):
    again = collect(model, ["fast piano", "slow jazz", "happy techno"], site=2, out=store.folder, seeds=[0, 1],
                    steps=3, batch_size=4, shard_rows=50)
    assert len(again) == len(store)
    with pytest.raises(TadaError, match=r"site: 2 -> 1.*steps: 3 -> 2"):  # a store records what made it
        collect(model, ["fast piano"], site=1, out=store.folder, seeds=[0, 1], steps=2, batch_size=4)


def test_mean_features_and_sae_vector_follow_eq_6_and_7(model, store):
    sae = train_sae(store.load_all(), SaeConfig(d_in=store.d, expansion_factor=2, k=4), epochs=2, batch_size=32,
                    progress=False).sae
    mu = mean_features(model, sae, 2, ["fast piano"], seeds=[0], steps=3)
    cap = Capture(sites=[2], reduce=None, per_step=True)
    model.generate(["fast piano"], [0], steps=3, interventions=[cap])
    rows = torch.stack(cap.result[2], 1)[0, :, cap.frames[2]].reshape(-1, store.d)
    dense = torch.zeros(rows.shape[0], sae.cfg.num_latents)
    latents, indices, _ = sae.encode(rows)
    dense.scatter_(1, indices, latents)
    torch.testing.assert_close(mu, dense.mean(0), rtol=1e-5, atol=1e-6)

    vec, table = sae_vector(model, sae, 2, PAIRS, tau=3, seeds=[0], steps=3)
    chosen = table[table.selected].latent.tolist()
    assert len(chosen) == 3 and table.score.is_monotonic_decreasing
    torch.testing.assert_close(vec.vectors[2], sae.W_dec[chosen].sum(0).detach())
    assert vec.renorm is False and vec.meta["method"] == "sae"
    plain = model.generate(["a song"], [0], steps=3).waveform
    assert torch.equal(model.generate(["a song"], [0], steps=3, steer=[vec.at(0.0)]).waveform, plain)


def test_sae_of_the_wrong_width_is_refused(model):
    sae = TopKSAE(SaeConfig(d_in=model.sites[0].dim + 1, expansion_factor=2, k=2))
    with pytest.raises(ValueError, match="width"):
        mean_features(model, sae, 0, ["a song"])
    with pytest.raises(TadaError, match="is not a site"):
        mean_features(model, sae, 99, ["a song"])


def test_an_sae_records_its_source_and_is_refused_at_another_site(model, store, tmp_path):
    sae = train_sae(store, SaeConfig(d_in=store.d, expansion_factor=2, k=4), epochs=1, batch_size=32,
                    progress=False).sae
    assert sae.cfg.source == {"model": model.name, "site": 2, "site_name": model.sites[2].name,
                              "width": model.sites[2].dim}
    sae.save(tmp_path / "sae")
    loaded = TopKSAE.load(tmp_path / "sae")
    assert loaded.cfg.source == sae.cfg.source
    mean_features(model, loaded, 2, ["a song"], steps=2)  # the site it was trained on
    with pytest.raises(TadaError, match=r"trained on 'tiny-stable-audio' site 2 .*got 'tiny-stable-audio' site 0"):
        mean_features(model, loaded, 0, ["a song"], steps=2)  # same width, another site

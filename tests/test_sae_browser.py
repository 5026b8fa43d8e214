"""The SAE feature browser: streamed statistics checked against a direct computation, frames to seconds per
family, a feature built to fire on one concept labelled by it, and the pages in headless Chromium."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import tada
from tada.errors import TadaError
from tada.sae import ActivationReader, ActivationWriter, SaeConfig, TopKSAE
from tada.sae.stats import HIST_EDGES, FeatureStats, dense_activations


def random_sae(d=6, m=2, k=2, seed=0):
    return TopKSAE(SaeConfig(d_in=d, expansion_factor=m, k=k), generator=torch.Generator().manual_seed(seed))


def test_streamed_statistics_equal_a_direct_computation(tmp_path):
    gen = torch.Generator().manual_seed(1)
    units = [torch.randn(int(n), 6, generator=gen) for n in (5, 9, 3, 7, 4)]
    with ActivationWriter(tmp_path, 6, shard_rows=12) as w:  # units spread over several shards
        for i, u in enumerate(units):
            w.add(u, meta={"prompt": i, "seed": 0}, key=str(i))
    reader = ActivationReader(tmp_path)
    assert reader.num_shards > 1
    sae = random_sae()
    signals = torch.randn(len(units), 2, generator=gen)
    stats = FeatureStats(sae.cfg.num_latents, top_k=3, n_signals=2)
    for i, (meta, rows) in enumerate(reader.iter_units()):
        assert meta["key"] == str(i)
        torch.testing.assert_close(rows, units[i].half().float())
        stats.add(i, dense_activations(sae, rows), signals[i])
    acts = [dense_activations(sae, u.half().float()) for u in units]
    every = torch.cat(acts)
    assert torch.equal(stats.density.float(), (every > 0).double().mean(0).float())
    for j in range(sae.cfg.num_latents):
        peaks = torch.stack([a[:, j].max() for a in acts])
        order = [int(u) for u in peaks.argsort(descending=True) if peaks[u] > 0][:3]
        assert [u for u, _ in stats.top(j)] == order
        assert stats.hist[j].sum() == (every[:, j] > 0).sum()
        means = torch.stack([a[:, j].mean() for a in acts]).numpy()
        for s in range(2):
            if means.std() > 0:
                assert float(stats.correlations()[j, s]) == pytest.approx(np.corrcoef(means, signals[:, s])[0, 1],
                                                                        abs=1e-6)
    assert len(HIST_EDGES) == 25


def test_a_constant_signal_has_no_correlation():
    stats = FeatureStats(2, n_signals=1)
    for i in range(4):
        stats.add(i, torch.tensor([[float(i), 0.0]]), torch.tensor([1.0]))
    assert torch.isnan(stats.correlations()).all()
    assert stats.dead.tolist() == [False, True] and stats.top(1) == []


def _capture_frames(model, site):
    from tada.engine import Capture

    cap = Capture(sites=[site], reduce=None)
    model.generate(["a song"], [0], steps=2, interventions=[cap])
    return cap.result[site][0][..., cap.frames[site], :].shape[-2]


def test_frames_to_seconds_per_family():
    toy = tada.load("toy")
    n = _capture_frames(toy, 0)
    mel = toy.pipe.mel
    assert n == mel.num_samples // mel.hop + 1  # one DiT position per mel frame
    torch.testing.assert_close(toy.frame_seconds(toy.sites[0], n), torch.arange(n).double() * mel.hop / mel.sample_rate)
    sa = tada.load("tiny-stable-audio")
    n = _capture_frames(sa, 1)
    secs = sa.frame_seconds(sa.sites[1], n, sa.default_duration)
    assert secs[1] == pytest.approx(sa.pipe.vae.hop_length / sa.sample_rate)
    assert secs[-1] < sa.default_duration <= secs[-1] + 2 * secs[1]  # the last latent frame holds the clip's end
    # AudioLDM2: the UNet's tokens are its (time, frequency) grid flattened row by row; read the grid's shape
    # at the attention block independently, from the hidden states it receives.
    ld = tada.load("tiny-audioldm2")
    for site in (ld.sites[0], ld.sites[-1]):
        block = ld.denoiser.get_submodule(site.name.split(".transformer_blocks")[0])
        shapes = []
        hook = block.register_forward_pre_hook(lambda m, args, kw: shapes.append(args[0].shape), with_kwargs=True)
        try:
            n = _capture_frames(ld, site.index)
        finally:
            hook.remove()
        time_rows, width = shapes[0][-2], shapes[0][-1]
        assert n == time_rows * width
        expected = (torch.arange(n) // width).double() * (ld.default_duration / time_rows)
        torch.testing.assert_close(ld.frame_seconds(site, n, ld.default_duration), expected)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A toy store of fast and slow songs and an SAE whose latent 0 reads the CAA tempo direction."""
    from tada.experiments.sae_browser import build_browser, write_browser
    from tada.methods.caa import fit
    from tada.methods.sae import collect

    root = tmp_path_factory.mktemp("browser")
    model, site = tada.load("toy"), 2
    prompts = [f"a {w} {g} song" for w in ("fast", "slow") for g in ("jazz", "rock", "pop")]
    collect(model, prompts, site, root / "acts", steps=4)
    caa = fit(model, "tempo", [site], steps=4, n_pairs=3)
    sae = random_sae(d=model.sites[site].dim, m=1, k=4)
    sae.cfg.source = {"model": "toy", "site": site, "site_name": model.sites[site].name}
    with torch.no_grad():
        sae.encoder.weight[0] = 5 * caa.vectors[site]
        sae.W_dec[0] = caa.vectors[site] / caa.vectors[site].norm()
    sae.save(root / "sae")
    data = build_browser(model, sae, root / "acts", root / "site", concepts=["tempo", "mood"], top_k=3,
                         concept_pairs=2, steer_features=1, strengths=(-1.0, 1.0), caa={"tempo": caa})
    return root, data, write_browser(data, root / "site"), prompts


def test_a_feature_built_to_fire_on_tempo_is_labelled_tempo(browser):
    root, data, index, prompts = browser
    assert data.concepts[int(torch.nan_to_num(data.correlations[0], nan=-2).argmax())] == "tempo"
    assert float(data.correlations[0, 0]) > 0.8
    assert all("fast" in data.units[u]["prompt"] for u, _ in data.stats.top(0))
    assert data.caa_cosines["tempo"][0] == pytest.approx(1.0, abs=1e-5)  # latent 0's decoder is the tempo direction
    rows = json.loads((index.parent / "index-data.js").read_text().removeprefix("window.FEATURES = ").rstrip(";\n"))
    assert rows[0]["label"] == "tempo" and rows[0]["page"] == "features/f00000.html"
    assert len(data.traces[(0, data.stats.top(0)[0][0])]) == len(data.seconds)


def test_the_collect_folder_must_hold_its_prompts(browser, tmp_path):
    from tada.experiments.sae_browser import collected_prompts

    root = browser[0]
    shutil.copytree(root / "acts", tmp_path / "acts")
    (tmp_path / "acts" / "prompts.json").write_text(json.dumps(["another prompt"]))
    with pytest.raises(TadaError, match="does not hold the prompts"):
        collected_prompts(tmp_path / "acts")
    (tmp_path / "acts" / "prompts.json").unlink()
    with pytest.raises(TadaError, match="prompts.json is missing"):
        collected_prompts(tmp_path / "acts")


def _chromium():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("no browser test: the selenium package is not installed")
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        pytest.skip("no browser test: Debian's chromium and chromium-driver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_the_pages_open_from_disk_in_headless_chromium(browser):
    from selenium.webdriver.common.by import By

    root, data, index, _ = browser
    site = index.parent
    driver = _chromium()
    try:
        driver.get(index.as_uri())
        rows = driver.find_elements(By.CSS_SELECTOR, "#rows tr")
        assert len(rows) == data.stats.fired.numel()
        search = driver.find_element(By.ID, "search")
        search.send_keys("dead")
        dead = int(data.stats.dead.sum())
        assert 0 < dead < len(rows)
        assert len(driver.find_elements(By.CSS_SELECTOR, "#rows tr")) == dead
        assert driver.find_element(By.ID, "count").text.startswith(f"{dead} of {len(rows)}")
        search.clear()
        search.send_keys("tempo")
        assert 0 < len(driver.find_elements(By.CSS_SELECTOR, "#rows tr")) < len(rows)
        (steered,) = data.steered
        for j in sorted({0, steered}):
            driver.get((site / "features" / f"f{j:05d}.html").as_uri())
            players = driver.find_elements(By.TAG_NAME, "audio")
            assert len(players) == len(data.stats.top(j)) + len(data.steered.get(j, []))  # top clips, steering
            for p in players:
                src = p.get_attribute("src")
                assert src.startswith("file://") and Path(src.removeprefix("file://")).is_file(), src
            images = driver.find_elements(By.TAG_NAME, "img")
            assert images and all(driver.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images)
    finally:
        driver.quit()



def test_the_browse_command_writes_the_site(browser, tmp_path):
    from typer.testing import CliRunner

    from tada.cli import app

    root = browser[0]
    args = ["sae", "browse", str(root / "sae"), "--activations", str(root / "acts"), "-c", "tempo", "--pairs", "1",
            "--top-k", "2", "--steer-features", "0", "--out", str(tmp_path / "site")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "site" / "index.html").is_file() and (tmp_path / "site" / "features" / "f00000.html").is_file()
    assert "open " in result.output
    other = CliRunner().invoke(app, [*args[:-2], "--top-k", "1", "--out", str(tmp_path / "site")])
    assert other.exit_code != 0 and "top_k: 2 -> 1" in str(other.exception)  # never mixed with the old pages
    bad = CliRunner().invoke(app, ["sae", "browse", str(root / "sae"), "--activations", str(tmp_path)])
    assert bad.exit_code != 0 and "manifest.json is missing: --activations takes a folder" in str(bad.exception)

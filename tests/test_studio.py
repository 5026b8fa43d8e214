"""The studio: its callbacks as plain functions (the library's audio for the same settings), the Gradio server
driven by a real client (two at once), and the page in headless Chromium."""

import json
import socket
import threading

import pytest
import torch

import tada
from tada.audio import Audio
from tada.errors import TadaError
from tada.studio.session import Studio

STEPS = 4


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    from tada.methods.base import method

    root = tmp_path_factory.mktemp("studio")
    model = tada.load("toy")
    method("caa").cls.fit(model, "tempo", sites=[1, 2], steps=STEPS, n_pairs=2).save(root / "vectors" / "tempo")
    method("pci").cls.fit(model, "mood", sites="all").save(root / "vectors" / "mood-pci")
    return Studio.from_folder(model, root / "vectors", root / "cache")


def library(studio, prompt, seed, steer):
    return studio.model.generate([prompt], [seed], steps=STEPS, steer=steer).waveform


def test_a_result_is_the_librarys_audio_and_is_cached(studio):
    tempo = studio.artifacts["tempo"]
    r = studio.generate("a calm song", 3, STEPS, {"tempo": 1.5, "mood-pci": 0})
    expected = library(studio, "a calm song", 3, [tempo.at(tempo.strength(1.5, "norm"))])
    torch.testing.assert_close(Audio.load([r.audio]).waveform, expected, atol=1 / 32768, rtol=0)  # 16-bit WAV
    torch.testing.assert_close(Audio.load([r.reference]).waveform, library(studio, "a calm song", 3, []),
                               atol=1 / 32768, rtol=0)
    settings = json.loads(r.settings.read_text())
    assert settings == {"model": "toy", "prompt": "a calm song", "seed": 3, "steps": STEPS, "duration": None,
                        "window": None, "units": "auto",
                        "strengths": {"tempo": 1.5}}  # a zero strength installs nothing and is left out
    assert r.spectrogram.stat().st_size > 0
    stamp = r.audio.stat().st_mtime_ns
    again = studio.generate("a calm song", 3, STEPS, {"tempo": 1.5})
    assert again == r and again.audio.stat().st_mtime_ns == stamp  # moving back to a strength reads the file
    both = studio.generate("a calm song", 3, STEPS, {"tempo": 1.5, "mood-pci": 2})
    pci = studio.artifacts["mood-pci"]
    torch.testing.assert_close(Audio.load([both.audio]).waveform, library(
        studio, "a calm song", 3, [tempo.at(tempo.strength(1.5, "norm")), pci.at(2.0)]), atol=1 / 32768, rtol=0)


def test_a_timestep_window_steers_only_there_as_the_library_does(studio):
    tempo = studio.artifacts["tempo"]
    r = studio.generate("a calm song", 2, STEPS, {"tempo": 2.0}, window=(0.5, 1.0))
    expected = library(studio, "a calm song", 2, [tempo.at(tempo.strength(2.0, "norm"), window=(0.5, 1.0))])
    torch.testing.assert_close(Audio.load([r.audio]).waveform, expected, atol=1 / 32768, rtol=0)
    whole = Audio.load([studio.generate("a calm song", 2, STEPS, {"tempo": 2.0}).audio]).waveform
    assert not torch.equal(whole, Audio.load([r.audio]).waveform)  # the window is part of the result and its key
    assert json.loads(r.settings.read_text())["window"] == [0.5, 1.0]


@pytest.mark.parametrize("args, message", [
    (("", 0, STEPS, {}), "empty"),
    (("a song", -1, STEPS, {}), "seed must be a whole number >= 0; got -1"),
    (("a song", 0, 0, {}), "steps must be a whole number >= 1; got 0"),
    (("a song", 0, STEPS, {"nope": 1.0}), "no steering artifact 'nope'"),
    (("a song", 0, STEPS, {"tempo": float("nan")}), "the strength of tempo must be a finite number; got nan"),
    (("a song", 0, STEPS, {}, "auto", -4.0), "duration must be a positive number of seconds; got -4.0"),
    (("a song", 0, STEPS, {}, "auto", 5.0), r"the toy model generates [\d.]+ s clips only; got duration=5.0"),
    (("a song", 0, STEPS, {"tempo": 1.0}, "auto", None, (0.8, 0.2)), "from <= to; got \\(0.8, 0.2\\)"),
    (("a song", 0, STEPS, {"mood-pci": 1.0}, "auto", None, (0.2, 0.8)), "pci takes no timestep window"),
    (("a song", 0, STEPS, {"tempo": 1.0}, "alignment"), "this vector has no calibration"),
])
def test_bad_settings_get_one_clear_message(studio, args, message):
    with pytest.raises(TadaError, match=message):
        studio.generate(*args)


def test_a_vector_for_another_model_is_refused(studio):
    other = tada.load("tiny-stable-audio")
    from tada.methods.base import method

    vec = method("caa").cls.fit(other, "tempo", sites=[1], steps=2, n_pairs=1)
    with pytest.raises(TadaError, match="width 16; toy's site 1 has width 128"):
        studio.add("other", vec)


def test_sliders_run_over_each_methods_own_sweep(studio):
    from tada.studio.app import slider_range

    assert slider_range(studio, "tempo") == (-2.0, 2.0, 0.05)  # multiples of the frame norm
    n = studio.model.default_steps
    assert slider_range(studio, "mood-pci") == (-float(n), float(n), 1.0)  # whole steps


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(studio):
    pytest.importorskip("gradio")
    from tada.studio.app import build_app

    from tada.sae import SaeConfig, TopKSAE

    sae = TopKSAE(SaeConfig(d_in=studio.model.sites[1].dim, expansion_factor=1, k=4),
                  generator=torch.Generator().manual_seed(0))
    sae.cfg.source = {"model": "toy", "site": 1, "site_name": studio.model.sites[1].name}
    app = build_app(studio, sae=sae)
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def test_two_clients_at_once_get_the_librarys_audio(server, studio):
    from gradio_client import Client

    results = {}
    chosen = {"tempo": 1.0, "mood-pci": 2.0}  # two sliders at once
    sliders = [chosen[name] for name in studio.artifacts]  # one value per slider, in their order

    def ask(seed):
        client = Client(server, verbose=False)
        results[seed] = client.predict("a rock song", seed, STEPS, "", "", "auto", *sliders,
                                       api_name="/generate")

    threads = [threading.Thread(target=ask, args=(s,)) for s in (5, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    tempo = studio.artifacts["tempo"]
    steer = [studio.artifacts[n].at(v) for n, v in
             {"mood-pci": 2.0, "tempo": tempo.strength(1.0, "norm")}.items()]  # composed in the sliders' order
    for seed in (5, 6):
        files = results[seed][4]  # the download: the studio's own WAV (the player's copy is re-encoded by Gradio)
        audio = next(f for f in files if str(f).endswith(".wav"))
        assert str(results[seed][0]).endswith(".wav")
        expected = library(studio, "a rock song", seed, steer)
        torch.testing.assert_close(Audio.load([audio]).waveform, expected, atol=1 / 32768, rtol=0)
    client = Client(server, verbose=False)
    with pytest.raises(Exception, match="the strength of tempo must be a finite number|empty"):
        client.predict("", 0, STEPS, "", "", "auto", *sliders, api_name="/generate")
    with pytest.raises(Exception, match="the timestep window must be two numbers 'from,to' or empty; got '0.5'"):
        client.predict("a rock song", 0, STEPS, "", "0.5", "auto", *sliders, api_name="/generate")
    only_tempo = [1.0 if name == "tempo" else 0.0 for name in studio.artifacts]
    windowed = client.predict("a rock song", 5, STEPS, "", "0.5, 1", "auto", *only_tempo, api_name="/generate")
    expected = library(studio, "a rock song", 5, [tempo.at(tempo.strength(1.0, "norm"), window=(0.5, 1.0))])
    wav = next(f for f in windowed[4] if str(f).endswith(".wav"))
    torch.testing.assert_close(Audio.load([wav]).waveform, expected, atol=1 / 32768, rtol=0)
    assert client.predict("a rock song", 5, STEPS, "", "", "auto", *sliders,
                          api_name="/generate")  # still serving


def test_the_app_renders_in_headless_chromium(server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    from test_sae_browser import _chromium

    driver = _chromium()
    try:
        driver.get(server)
        wait = WebDriverWait(driver, 60)
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "input[type=range]")))
        assert len(driver.find_elements(By.CSS_SELECTOR, "input[type=range]")) >= 2  # a slider per artifact
        button = driver.find_element(By.ID, "generate")
        driver.execute_script("arguments[0].click()", button)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, 'a[href$="settings.json"]'))  # the download
        assert len(driver.find_elements(By.TAG_NAME, "audio")) >= 2  # the steered and the alpha = 0 players
        links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "a[href]")]
        assert any(h.startswith(server) and h.endswith("audio.wav") for h in links)
        shown = [i for i in driver.find_elements(By.TAG_NAME, "img") if "spectrogram.png" in i.get_attribute("src")]
        assert shown and all(driver.execute_script("return arguments[0].naturalWidth", i) > 0 for i in shown)
    finally:
        driver.quit()


def test_a_calibrated_dial_moves_in_the_measured_effect(studio, tmp_path):
    from tada.methods.calibration import Calibration, calibration_path, write_calibrations
    from tada.studio.app import slider_range

    tempo = studio.artifacts["tempo"]
    tempo.save(tmp_path / "vectors" / "tempo")
    cal = Calibration("alignment", "norm", [-2.0, 0.0, 2.0], [-0.2, 0.0, 0.3], (-2.0, 2.0))
    write_calibrations(calibration_path(tmp_path / "vectors" / "tempo"), {"alignment": cal})
    dial = Studio.from_folder(studio.model, tmp_path / "vectors", tmp_path / "cache")
    assert slider_range(dial, "tempo") == (-0.2, 0.3, 0.005)
    r = dial.generate("a calm song", 1, STEPS, {"tempo": 0.15})  # half way up: alpha 1 in norm units
    expected = library(dial, "a calm song", 1, [tempo.at(tempo.strength(1.0, "norm"))])
    torch.testing.assert_close(Audio.load([r.audio]).waveform, expected, atol=1 / 32768, rtol=0)
    with pytest.raises(TadaError, match="outside the usable range"):
        dial.generate("a calm song", 1, STEPS, {"tempo": 0.5})
    onsets = Calibration("weighted_onset_rate", "norm", [-2.0, 0.0, 2.0], [-1.0, 0.0, 2.0], (-2.0, 2.0))
    write_calibrations(calibration_path(tmp_path / "vectors" / "tempo"), {"alignment": cal, onsets.measure: onsets})
    musical = Studio.from_folder(studio.model, tmp_path / "vectors", tmp_path / "cache", dial=onsets.measure)
    assert slider_range(musical, "tempo") == (-1.0, 2.0, 0.005)  # a dial in onsets per second
    r = musical.generate("a calm song", 1, STEPS, {"tempo": 1.0})  # +1 onset/s: alpha 1 in norm units again
    torch.testing.assert_close(Audio.load([r.audio]).waveform, expected, atol=1 / 32768, rtol=0)


def test_the_localize_tab_opens_a_run_and_refuses_a_folder_without_one(server, tmp_path):
    from gradio_client import Client

    tada.localize(tada.load("toy"), "tempo", n_pairs=1, seeds=1, steps=2, out=tmp_path / "loc", n_boot=10)
    client = Client(server, verbose=False)
    image, table = client.predict(str(tmp_path / "loc"), api_name="/open_localization")
    assert str(image).endswith(".png") and len(table["data"]) == len(tada.load("toy").sites)
    with pytest.raises(Exception, match="holds no impact.csv"):
        client.predict(str(tmp_path), api_name="/open_localization")


def test_the_sae_tab_steers_with_one_feature(server, studio):
    from gradio_client import Client

    client = Client(server, verbose=False)
    audio, reference = client.predict(3, 1.5, "a rock song", 7, STEPS, api_name="/sae_feature")
    feature = studio.artifacts["sae-f3"]
    assert feature.meta["feature"] == 3 and feature.meta["frame_norm"] > 0
    expected = library(studio, "a rock song", 7, [feature.at(feature.strength(1.5, "norm"))])
    torch.testing.assert_close(Audio.load([audio]).waveform, expected, atol=1 / 32768, rtol=0)
    with pytest.raises(Exception, match="feature must be a whole number from 0 to"):
        client.predict(10_000, 1.0, "a rock song", 7, STEPS, api_name="/sae_feature")


def test_fitting_reports_its_progress_to_a_listener(studio, monkeypatch):
    from tada.progress import listen

    seen = []
    for quiet in ("", "1"):  # the listener hears the bars with and without a terminal bar
        monkeypatch.setenv("TADA_QUIET", quiet)
        seen.clear()
        with listen(lambda desc, done, total: seen.append((desc, done, total))):
            name = studio.fit("piano", "caa", [1], steps=2, n_pairs=2)
        assert name == "piano-caa" and seen[0][1] == 0 and seen[-1][1] == seen[-1][2] > 0
        assert all(b[1] <= b[2] for b in seen) and [b[1] for b in seen] == sorted(b[1] for b in seen)
    seen.clear()
    studio.fit("piano", "caa", [1], steps=2, n_pairs=1)
    assert not seen  # outside the block, nobody listens


def test_the_fit_tab_refuses_bad_layers_with_a_message(server):
    from gradio_client import Client

    with pytest.raises(Exception, match="layers must be all or comma-separated integers; got 'x'"):
        Client(server, verbose=False).predict("drums", "caa", "x", api_name="/fit")

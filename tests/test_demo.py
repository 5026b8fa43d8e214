"""`tada demo` end to end on the shipped toy model, with reduced settings, and its report in headless Chromium."""

from pathlib import Path

import pandas as pd
import pytest

import tada
from tada.experiments.demo import run_demo


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return root, run_demo(root, model=tada.load("toy"), concepts=["tempo"], n_pairs=1, steps=2,
                          prompts=["a calm piano melody"], alpha_units=(-1, 0, 1), caa_pairs=2, n_boot=20)


def test_the_reports_dial_switches_between_the_strengths_offline(report):
    from selenium.webdriver.common.by import By
    from test_sae_browser import _chromium

    root, page = report
    driver = _chromium()
    try:
        driver.get(page.as_uri())
        (dial,) = driver.find_elements(By.CSS_SELECTOR, "td.dial input[type=range]")
        player = driver.find_element(By.CSS_SELECTOR, "td.dial audio")
        assert "a+0_" in player.get_attribute("src")  # starts at alpha = 0
        seen = set()
        for value in (0, 2, 1):
            driver.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))",
                                  dial, value)
            src = player.get_attribute("src")
            assert src.startswith("file://") and Path(src.removeprefix("file://")).is_file(), src
            seen.add(src)
        assert len(seen) == 3  # three strengths, three files
        assert driver.find_element(By.CSS_SELECTOR, "td.dial span").text == "alpha +0"
    finally:
        driver.quit()


def test_demo_writes_a_report(report):
    tmp_path, page = report
    html = page.read_text()
    assert page.name == "index.html" and html.count("<audio") == 3 + 1  # a player per alpha and the dial's
    for name in ("localize/heatmap.png", "localize/impact.csv", "vectors/tempo.safetensors",
                 "curves/tempo.png", "summary.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert len(list((tmp_path / "steer" / "tempo" / "audio").glob("*.wav"))) == 3
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary.concept) == ["tempo"] and summary.alpha_unit.iloc[0] > 0

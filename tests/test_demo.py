"""`tada demo` end to end on the shipped toy model, with reduced settings."""

import pandas as pd

import tada
from tada.experiments.demo import run_demo


def test_demo_writes_a_report(tmp_path):
    page = run_demo(tmp_path, model=tada.load("toy"), concepts=["tempo"], n_pairs=1, steps=2,
                    prompts=["a calm piano melody"], alpha_units=(-1, 0, 1), caa_pairs=2, n_boot=20)
    html = page.read_text()
    assert page.name == "index.html" and html.count("<audio") == 3
    for name in ("localize/heatmap.png", "localize/impact.csv", "vectors/tempo.safetensors",
                 "curves/tempo.png", "summary.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert len(list((tmp_path / "steer" / "tempo" / "audio").glob("*.wav"))) == 3
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary.concept) == ["tempo"] and summary.alpha_unit.iloc[0] > 0

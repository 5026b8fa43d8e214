"""`tada eval` over every method: sweeps per method, rows per method, the auc protocol's outputs, the MIR checks."""

import numpy as np
import pandas as pd
import pytest
import torch

import tada
from tada.engine import Site
from tada.errors import TadaError
from tada.evaluation.auc_table import benchmark_tables, read_results
from tada.experiments.protocol_results import cell_name
from tada.experiments.steering_table import EvalSettings, method_configurations, steering_table


@pytest.fixture(scope="module")
def toy():
    return tada.load("toy")


SITES = [Site(i, f"blocks.{i}.attn2", torch.nn.Identity(), 4, 4) for i in range(4)]


def test_each_method_sweeps_its_own_alphas():
    s = EvalSettings()
    assert s.sweep("caa", 25) == ([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], "norm")
    assert s.sweep("austeer", 25)[1] == "norm"
    assert s.sweep("pci", 25) == ([-25.0, -12.0, -6.0, 0.0, 6.0, 12.0, 25.0], "raw")  # whole steps
    assert s.sweep("pci", 4) == ([-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0], "raw")
    assert s.sweep("text_embedding", 25) == ([-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0], "raw")
    assert s.sweep("freesliders", 25) == ([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], "raw")
    own = EvalSettings(method_alphas={"freesliders": [3.0, -3.0]})
    assert own.sweep("freesliders", 25) == ([-3.0, 0.0, 3.0], "raw")  # 0 added, sorted
    raw = EvalSettings(alphas=[-40.0, 40.0], units="raw")
    assert raw.sweep("caa", 25) == ([-40.0, 0.0, 40.0], "raw") and raw.sweep("pci", 4)[0][-1] == 4.0


@pytest.mark.parametrize("settings, message", [
    (EvalSettings(methods=["nope"]), "no steering method 'nope'"),
    (EvalSettings(methods=[]), "at least one steering method"),
    (EvalSettings(protocol="v2"), "protocol must be one of v1, auc; got 'v2'"),
    (EvalSettings(methods=["caa"], protocol="auc"), "add pci to the methods"),
    (EvalSettings(methods=["sae"]), "needs a trained SAE"),
    (EvalSettings(method_alphas={"nope": [1.0]}), "no steering method 'nope'"),
])
def test_settings_are_checked_before_any_work(settings, message):
    with pytest.raises(TadaError, match=message):
        settings.check()


def test_rows_per_method_and_their_published_cells():
    assert method_configurations("caa", SITES, [1]) == {"layers {1}": [1], "all layers": [0, 1, 2, 3],
                                                         "all but {1}": [0, 2, 3]}
    assert method_configurations("sae", SITES, [1], sae_site=2) == {"SAE(2)": [2]}
    rows = method_configurations("text_embedding", SITES, [2, 1])
    assert rows == {"text_embedding layers {1,2}": [1, 2], "text_embedding all layers": [0, 1, 2, 3]}
    assert [cell_name(label) for label in rows] == ["textemb_loc", "textemb_all"]
    names = {"pci": "pci", "token_embedding": "tokemb", "concept_sliders": "cs", "freesliders": "freesliders",
             "austeer": "austeer"}
    for method, cell in names.items():
        assert [cell_name(x) for x in method_configurations(method, SITES, [1])] == [f"{cell}_loc", f"{cell}_all"]
    with pytest.raises(TadaError, match="SAE's site"):
        method_configurations("sae", SITES, [1])


def test_every_method_on_one_protocol_end_to_end(tmp_path):
    """Four methods on a tiny model, auc protocol: Table 1 rows, the published layout, the benchmark tables
    computed from it, and a rerun that regenerates nothing."""
    model = tada.load("tiny-stable-audio")
    prompts = ["a song", "a calm song"]  # short enough that the concept words survive the tiny encoder's limit
    settings = EvalSettings(alphas=[-8.0, 8.0], units="raw", caa_pairs=2, steps=3, mir=False, protocol="auc",
                            methods=["caa", "pci", "austeer", "freesliders"], method_settings={"austeer": {"k": 4}},
                            method_alphas={"freesliders": [-1.0, 1.0]})
    table = steering_table(model, ["tempo"], [1], tmp_path, prompts=prompts, settings=settings)
    assert list(table.config) == ["layers {1}", "all layers", "all but {1}", "pci layers {1}", "pci all layers",
                                  "austeer layers {1}", "austeer all layers", "freesliders layers {1}",
                                  "freesliders all layers"]
    results = read_results(tmp_path / "steering_metrics.csv")
    assert set(results.cell) == {"caa_loc", "caa_all", "caa_rest", "pci_loc", "pci_all", "austeer_loc",
                                 "austeer_all", "freesliders_loc", "freesliders_all"}
    assert list(results.columns[:7]) == ["cell", "concept", "axis", "alpha", "lpaps", "muqt", "clap"]
    pci = results[results.cell == "pci_all"].set_index("alpha")
    assert list(pci.index) == [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]  # PCI's own sweep: whole steps of 3
    assert pci.loc[0.0, "lpaps"] == 0 and pci.loc[3.0, "lpaps"] > 0 and results.muqt.isna().all()
    fs = results[results.cell == "freesliders_loc"]
    assert list(fs.alpha) == [-1.0, 0.0, 1.0]
    # The table written is the benchmark table of the written results (one code path, read back).
    md = (tmp_path / "protocol" / "tables.md").read_text()
    assert md == benchmark_tables(results).to_markdown()
    assert "## tempo  (cutoff pos=" in md and "| PCI (loc.) |" in md and "| FreeSliders |" in md
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.wav")}
    again = steering_table(model, ["tempo"], [1], tmp_path, prompts=prompts, settings=settings)
    assert all(p.stat().st_mtime_ns == t for p, t in stamp.items())
    pd.testing.assert_frame_equal(table, again)


def test_mir_checks_in_the_table_on_the_toy(tmp_path, toy):
    settings = EvalSettings(alphas=[-2.0, 2.0], caa_pairs=2, steps=4, methods=["caa"])
    table = steering_table(toy, ["tempo"], {"tempo": [1]}, tmp_path, prompts=["a calm song", "a rock song"],
                           settings=settings)
    per_file = pd.read_csv(tmp_path / "alignment.csv")
    for col in ("mir_tempo_bpm", "mir_onset_rate", "mir_weighted_onset_rate", "harmony", "rhythm", "melody", "ssm"):
        assert col in per_file.columns, col
    at_zero = per_file[per_file.alpha == 0]
    assert (at_zero[["harmony", "rhythm", "ssm"]] == 0).all().all()
    assert (per_file[per_file.alpha != 0]["harmony"] > 0).all()
    mir = pd.read_csv(tmp_path / "mir.csv")
    assert len(mir) == 3 * 3 and list(mir.columns[:3]) == ["concept", "config", "alpha"]  # configs x alphas
    one = per_file[(per_file.config == "all layers")]
    expected = np.corrcoef(one.mir_onset_rate, one.align_toy)[0, 1]
    row = table.set_index("config").loc["all layers"]
    assert row["corr_onset_rate_toy"] == pytest.approx(expected)
    assert row["mir_harmony"] == pytest.approx(one[one.alpha != 0].harmony.mean())


def test_mir_checks_are_skipped_with_a_warning_on_audio_too_coarse_for_them(tmp_path):
    model = tada.load("tiny-stable-audio")  # 64 Hz audio
    settings = EvalSettings(alphas=[-8.0, 8.0], units="raw", caa_pairs=1, steps=2, methods=["caa"])
    with pytest.warns(UserWarning, match="MIR checks skipped: the audio's sample rate 64 Hz"):
        table = steering_table(model, ["tempo"], [1], tmp_path, prompts=["a song"], settings=settings)
    assert not [c for c in table.columns if c.startswith("corr_")]


def test_a_prompt_method_says_when_the_encoder_cut_the_concept_off():
    from tada.methods.base import method

    model = tada.load("tiny-stable-audio")
    pci = method("pci").cls.fit(model, "tempo", sites=[1])
    long_prompt = " ".join(["word"] * 60)
    with pytest.warns(UserWarning, match="pci: for 1 of 1 prompts the positive and negative prompts encode identically"):
        pci.at(2).interventions(model, [long_prompt], 3)

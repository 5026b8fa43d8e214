"""tada's sweeps written in the layout of the authors' published per-alpha results."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from tada.audio import Audio
from tada.cli import app
from tada.evaluation import auc_table as T
from tada.evaluation.clap_lpaps import ClapLPAPS
from tada.experiments.protocol_results import cell_name, eval_results, quality_results, sweep_results

REFERENCE = Path(__file__).parent / "reference" / "clap-lpaps-tiny"
ALPHAS = [-10.0, 0.0, 10.0, 20.0]


class MeanAbs:
    """A stand-in preservation distance: mean absolute sample difference per row."""

    def distance(self, a: Audio, b: Audio) -> torch.Tensor:
        return (a.waveform - b.waveform).abs().mean(dim=(1, 2))


def test_cell_names():
    assert [cell_name(c) for c in ("all layers", "layers {6,7}", "all but {6,7}", "SAE(7)", "My Run 2")] == [
        "caa_all", "caa_loc", "caa_rest", "sae", "my_run_2"]


def test_sweep_results_average_per_alpha():
    per_file = pd.DataFrame({"alpha": [0.0, 0.0, 10.0, 10.0], "align_clap": [0.1, 0.3, 0.4, 0.6],
                             "align_muq": [0.0, 0.2, 0.2, 0.2]})
    rows = sweep_results(per_file, cell="caa_loc", concept="piano", distances={10.0: 1.5})
    assert list(rows.columns) == list(T.RESULT_COLUMNS)
    assert rows.to_dict("list") == {"cell": ["caa_loc"] * 2, "concept": ["piano"] * 2, "axis": ["lpaps"] * 2,
                                    "alpha": [0.0, 10.0], "lpaps": [0.0, 1.5], "muqt": pytest.approx([0.1, 0.2]),
                                    "clap": pytest.approx([0.2, 0.5])}
    only_clap = sweep_results(per_file.drop(columns="align_muq"), cell="x", concept="c")
    assert only_clap["muqt"].isna().all() and np.isnan(only_clap["lpaps"].iloc[1])


def test_quality_results():
    scores = pd.DataFrame({"alpha": [0, 0, 5], "CE": [6.0, 8.0, 5.0], "CU": 1.0, "PC": 2.0, "PQ": 3.0})
    q = quality_results(scores, cell="sae", concept="mood")
    assert list(q.columns) == ["cell", "concept", "alpha", *T.QUALITY_SCORES.values()]
    assert q["content_enjoyment"].tolist() == [7.0, 5.0]
    with pytest.raises(ValueError, match="lack columns"):
        quality_results(scores.drop(columns="PQ"), cell="sae", concept="mood")


def _fake_eval(out: Path, sr: int = 48000) -> None:
    """An eval folder as tada eval leaves it: per configuration a sweep (index.csv + WAVs) and alignment.csv."""
    gen = torch.Generator().manual_seed(0)
    base = 0.2 * torch.randn(2, 1, sr // 5, generator=gen)  # two prompts, 0.2 s each
    alignment = []
    for config, folder in (("layers {1}", "layers_1"), ("all layers", "all_layers")):
        rows = []
        for alpha in ALPHAS:
            wave = base + 0.01 * abs(alpha) * torch.randn(base.shape, generator=gen)
            names = [f"p{i:03d}_s0_a{alpha:+g}" for i in range(2)]
            Audio(wave.clamp(-1, 1), sr).save(out / "piano" / folder / "audio", names)
            for i, name in enumerate(names):
                rows.append({"prompt_index": i, "prompt": f"prompt {i}", "seed": 0, "alpha": alpha,
                             "path": f"audio/{name}.wav", "status": "ok", "error": ""})
                alignment.append({"prompt_index": i, "seed": 0, "alpha": alpha, "concept": "piano", "config": config,
                                  "align_clap": 0.1 + 0.01 * alpha + 0.01 * i, "align_muq": 0.2 + 0.005 * alpha})
        pd.DataFrame(rows).to_csv(out / "piano" / folder / "index.csv", index=False)
    pd.DataFrame(alignment).to_csv(out / "alignment.csv", index=False)


def test_a_tada_eval_folder_becomes_a_results_file(tmp_path):
    _fake_eval(tmp_path)
    rows = eval_results(tmp_path, MeanAbs())
    assert list(rows.cell.unique()) == ["caa_loc", "caa_all"] and len(rows) == 8
    loc = rows[rows.cell == "caa_loc"].set_index("alpha")
    assert loc.loc[0.0, "lpaps"] == 0.0 and loc.loc[20.0, "lpaps"] > loc.loc[10.0, "lpaps"] > 0
    assert loc.loc[10.0, "clap"] == pytest.approx(0.1 + 0.1 + 0.005)
    assert loc.loc[-10.0, "muqt"] == pytest.approx(0.15)
    # the written file feeds the benchmark table, with a tada arm as the cutoff
    path = tmp_path / "steering_metrics.csv"
    rows.to_csv(path, index=False)
    tables = T.benchmark_tables(T.read_results(path), cutoff_cells=["caa_all"])
    assert list(tables.concepts["piano"].index) == ["CAA", "CAA (loc.)"]
    assert np.isfinite(tables.concepts["piano"].loc["CAA (loc.)", "auc_clap"])


def test_cells_missing_from_a_sweep_are_skipped(tmp_path):
    from tada.experiments.protocol_results import sweep_distances

    index = pd.DataFrame({"prompt_index": [0, 1, 0, 1, 1], "seed": 0, "alpha": [0.0, 0.0, 5.0, 5.0, 9.0]})
    audio = Audio(torch.tensor([0.0, 0.0, 1.0, 3.0, 2.0])[:, None, None].repeat(1, 1, 4), 48000)
    assert sweep_distances(index, audio, MeanAbs()) == {5.0: 2.0, 9.0: 2.0}
    no_reference = index.assign(alpha=[1.0, 0.0, 5.0, 5.0, 9.0])  # prompt 0 has no alpha = 0 file
    distances = sweep_distances(no_reference, audio, MeanAbs())
    assert distances[5.0] == 3.0 and distances[9.0] == 2.0 and np.isnan(distances[1.0])
    with pytest.raises(ValueError, match="alpha = 0"):
        sweep_distances(index.assign(alpha=1.0), audio, MeanAbs())


def test_with_clap_lpaps(tmp_path):
    _fake_eval(tmp_path)
    rows = eval_results(tmp_path, ClapLPAPS.from_pretrained(REFERENCE / "hf"), alignments={"clap": "clap"})
    assert rows["muqt"].isna().all()
    loc = rows[rows.cell == "caa_loc"].set_index("alpha")
    assert loc.loc[0.0, "lpaps"] == 0.0 and loc.loc[20.0, "lpaps"] > 0


def test_the_command_line_writes_the_results_file(tmp_path):
    _fake_eval(tmp_path / "eval")
    runner = CliRunner()
    result = runner.invoke(app, ["protocol-results", str(tmp_path / "eval"), "--out", str(tmp_path / "m.csv"),
                                 "--clap", str(REFERENCE / "hf"), "--windowing", "zeta"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = pd.read_csv(tmp_path / "m.csv")
    assert list(rows.columns) == list(T.RESULT_COLUMNS) and len(rows) == 8
    result = runner.invoke(app, ["table", str(tmp_path / "m.csv"), "--out", str(tmp_path / "t"), "--cutoff-cells",
                                 "caa_all"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "## piano  (cutoff pos=" in result.output

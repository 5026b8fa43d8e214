"""`tada table`: the benchmark tables from per-alpha result files."""

from pathlib import Path

from typer.testing import CliRunner

from tada.cli import app

DATA = Path(__file__).parent / "data" / "steer_audio"
runner = CliRunner()


def test_table_writes_the_published_tables(tmp_path):
    result = runner.invoke(app, ["table", str(DATA / "steering_metrics.csv"), "--quality",
                                 str(DATA / "quality_metrics.csv"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "## piano  (cutoff pos=3.804, neg=3.492)" in result.output
    md = (tmp_path / "out" / "tables.md").read_text()
    assert md.startswith((DATA / "tables_lpaps.md").read_text().rstrip("\n"))
    assert (tmp_path / "out" / "tables.tex").exists() and (tmp_path / "out" / "tables.csv").exists()


def test_table_without_quality_or_cutoff_cells(tmp_path):
    result = runner.invoke(app, ["table", str(DATA / "steering_metrics.csv"), "--axis", "rhythm",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "preservation: rhythm" in result.output
    result = runner.invoke(app, ["table", str(DATA / "steering_metrics.csv"), "--cutoff-cells", "nope",
                                 "--out", str(tmp_path)])
    assert isinstance(result.exception, ValueError) and "cutoff cells" in str(result.exception)

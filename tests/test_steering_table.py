"""The Table 1 runner end to end on a tiny model, and its configurations."""

import re

import pandas as pd
import pytest
import torch

import tada
from tada.engine import Site
from tada.errors import TadaError
from tada.evaluation.lpaps import LPAPS
from tada.evaluation.registry import load_scorer
from tada.experiments.alpha_sweep import parse_alphas
from tada.experiments.steering_table import EvalSettings, configurations, steering_table
from tada.methods.vector import SteeringVector


def test_configurations_cover_the_papers_rows():
    sites = [Site(i, f"blocks.{i}.attn2", torch.nn.Identity(), 4, 4) for i in range(5)]
    cfg = configurations(sites, [1, 2])
    assert cfg == {"layers {1,2}": [1, 2], "all layers": [0, 1, 2, 3, 4], "all but {1,2}": [0, 3, 4]}
    with pytest.raises(TadaError, match=r"site 7 is not a site .* indices 0\.\.4"):
        configurations(sites, [7])
    with pytest.raises(TadaError, match="at least one"):
        configurations(sites, [])


def test_parse_alphas():
    assert parse_alphas("-20:20:10") == [-20, -10, 0, 10, 20]
    assert parse_alphas("-1,0,2.5") == [-1, 0, 2.5]
    for bad in ("1:2", "a:b:c", "5:1:1", "1,x", "nan"):
        with pytest.raises(ValueError):
            parse_alphas(bad)


def test_table_runs_end_to_end_and_resumes(tmp_path):
    model = tada.load("tiny-stable-audio")
    scorer = load_scorer("clap-tiny")
    sae_vec = SteeringVector({1: torch.randn(model.sites[1].dim)}, {1: model.sites[1].name}, renorm=False,
                             meta={"model": model.name, "method": "sae"})
    settings = EvalSettings(alphas=[-8.0, 8.0], units="raw", n_prompts=2, caa_pairs=2, steps=3)
    table = steering_table(model, ["tempo"], [1], tmp_path, scorers={"clap": scorer}, settings=settings,
                           lpaps=LPAPS.random(0), sae_vectors={"tempo": sae_vec})
    assert list(table.config) == ["layers {1}", "all layers", "all but {1}", "SAE(1)"]
    for col in ("delta_align_clap", "smoothness_clap", "lpaps", "fad"):
        assert table[col].notna().all(), col
    assert (table.lpaps > 0).all()
    for name in ("results.csv", "table.md", "alignment.csv", "curves/tempo.png", "manifest.json"):
        assert (tmp_path / name).stat().st_size > 0
    page = (tmp_path / "index.html").read_text()
    assert page.count('td class="dial"') == 4 * 2  # a dial per sweep row: configs x prompts (one seed)
    sources = re.findall(r'<audio controls preload="none" src="([^"]+)"', page)
    assert len(sources) == 4 * 2 * (3 + 1) and all((tmp_path / src).is_file() for src in sources)
    wavs = sorted((tmp_path / "tempo").rglob("*.wav"))
    assert len(wavs) == 4 * 2 * 3  # configs x prompts x alphas (0 added for the reference)
    stamp = {p: p.stat().st_mtime_ns for p in wavs}
    again = steering_table(model, ["tempo"], [1], tmp_path, scorers={"clap": scorer}, settings=settings,
                           lpaps=LPAPS.random(0), sae_vectors={"tempo": sae_vec})
    assert all(p.stat().st_mtime_ns == t for p, t in stamp.items())  # nothing regenerated
    pd.testing.assert_frame_equal(table, again)

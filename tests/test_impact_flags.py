"""Impact values that mean nothing are flagged, warned about and marked on the heatmap."""

import numpy as np
import pandas as pd
import pytest

from tada.localization import SOURCE, TARGET, impact_table
from tada.localization.impact import bootstrap_impact, impact, impact_flags


def scores(sim_source, sim_target, sim_layers):
    rows = []
    for u, (s, t, layers) in enumerate(zip(sim_source, sim_target, sim_layers)):
        rows += [{"concept": "c", "pair": u, "seed": 0, "layer": SOURCE, "sim": s},
                 {"concept": "c", "pair": u, "seed": 0, "layer": TARGET, "sim": t}]
        rows += [{"concept": "c", "pair": u, "seed": 0, "layer": l, "sim": v} for l, v in enumerate(layers)]
    return pd.DataFrame(rows)


def flags_of(src, tgt, patched):
    src, tgt, patched = map(np.asarray, (src, tgt, patched))
    imp = impact(patched, src, tgt)
    lo, hi = bootstrap_impact(patched, src, tgt, n_boot=200)
    return impact_flags(patched, src, tgt, imp, lo, hi)


def test_a_clear_concept_has_no_flags():
    rng = np.random.default_rng(0)
    src = rng.normal(0.0, 0.01, 16)
    tgt = src + 1.0 + rng.normal(0, 0.01, 16)
    patched = np.stack([src + 0.9, src + 0.1], 1) + rng.normal(0, 0.01, (16, 2))
    assert flags_of(src, tgt, patched) == ["", ""]


def test_constant_generations_and_no_effect_are_named():
    assert flags_of([0.5] * 4, [0.5] * 4, [[0.5, 0.5]] * 4) == ["constant", "constant"]
    assert flags_of([0.1, 0.2, 0.3], [0.2, 0.1, 0.3], [[0.4, 0.0]] * 3)[0].startswith("no_effect")


def test_a_denominator_of_noise_is_a_weak_concept_and_its_wide_interval_is_flagged():
    # the paper's worst case: a mean denominator near zero against large per-unit differences
    src = np.array([0.0, 0.0, 0.0, 0.0])
    tgt = np.array([1.0, -1.0, 1.02, -1.0])
    patched = np.array([[0.3, 0.0], [-0.2, 0.0], [0.4, 0.0], [-0.1, 0.0]])
    flags = flags_of(src, tgt, patched)
    assert all("weak_concept" in f for f in flags) and "wide_ci" in flags[0]


def test_the_table_carries_flags_and_warns():
    table = scores([0.5] * 3, [0.5] * 3, [[0.5, 0.5]] * 3)
    with pytest.warns(UserWarning, match="Impact of 'c': constant"):
        result = impact_table(table, n_boot=20)
    assert list(result.table["flags"]) == ["constant", "constant"] and result.table.impact.isna().all()

"""Localization by activation patching (sec. 3): the batched sweep and the layer Impact of eq. 9."""

from tada.localization.impact import (
           SOURCE,
           TARGET,
           LayerImpact,
           bootstrap_impact,
           impact,
           impact_table,
)
from tada.localization.sweep import localize, run_sweep, sweep_rows

__all__ = ["SOURCE", "TARGET", "LayerImpact", "bootstrap_impact", "impact", "impact_table", "localize", "run_sweep",
           "sweep_rows"]

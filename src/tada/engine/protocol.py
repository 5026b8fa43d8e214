"""What the engine needs from a model, stated as a protocol the engine owns (models implement it; the
engine imports nothing from them)."""

from __future__ import annotations

from typing import Protocol

from torch import nn

from tada.engine.sites import GuidanceLayout, Site


class HookableModel(Protocol):
    """A pipeline seen through its cross-attention sites.

    name: for messages. denoiser: the module called once per denoising step. sites: its cross-attention
    modules in execution order. guidance_layout: how guidance copies are stacked in the denoiser batch.
    mask_kwarg: the keyword under which a site receives its context's mask (None if it receives none).
    """

    name: str
    denoiser: nn.Module
    sites: list[Site]
    guidance_layout: GuidanceLayout
    mask_kwarg: str | None

    def frame_slice(self, site: Site, duration: float | None) -> slice:
        """Positions of the site's output sequence that are audio frames, for a generation of `duration`."""

    def timestep_of(self, args: tuple, kwargs: dict) -> float | None:
        """The timestep of one denoiser call, read from its arguments."""

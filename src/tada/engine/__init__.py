"""The intervention engine: the only place in tada that registers torch hooks (see :mod:`tada.engine.hooks`)."""

from tada.engine.hooks import (
                               AddVector,
                               Capture,
                               FirstNonFinite,
                               Generation,
                               Intervention,
                               StopGeneration,
                               check_hookable,
                               intervene,
                               probe_context_modules,
                               renorm,
)
from tada.engine.lowrank import LowRankDelta, RecordCalls, replay
from tada.engine.passes import CountRows, ExtraPasses
from tada.engine.patch import Conditioning, PatchContext, Record
from tada.engine.protocol import HookableModel
from tada.engine.scale import ScaleFeatures
from tada.engine.sites import (
                               COPIES,
                               Copy,
                               GuidanceLayout,
                               Site,
                               check_copy,
                               resolve_site,
                               resolve_sites,
)

__all__ = ["COPIES", "AddVector", "Capture", "Conditioning", "Copy", "CountRows", "ExtraPasses", "FirstNonFinite", "Generation", "GuidanceLayout",
           "HookableModel", "Intervention", "LowRankDelta", "PatchContext", "Record", "RecordCalls", "ScaleFeatures", "Site", "StopGeneration", "check_copy",
           "check_hookable", "intervene", "probe_context_modules", "renorm", "replay", "resolve_site", "resolve_sites"]

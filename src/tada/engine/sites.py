"""Sites, guidance copies, and the one resolver from what a user names to the sites it means.

A *site* is one cross-attention module of the denoiser. A pipeline runs the denoiser on ``copies x batch``
rows: classifier-free guidance stacks an unconditional and a conditional copy of the user's batch. Every
intervention names the guidance copy it acts on with a :data:`Copy`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from torch import nn

from tada.errors import TadaError

#: The guidance copy an intervention acts on: the conditional rows, the unconditional rows, or both.
Copy = Literal["cond", "uncond", "all"]
COPIES: tuple[str, ...] = get_args(Copy)


def check_copy(copy: str) -> Copy:
    """`copy` itself if it is a :data:`Copy`, else one clear error."""
    if copy not in COPIES:
        raise TadaError(f"copy must be one of {', '.join(COPIES)}; got {copy!r}")
    return copy


@dataclass(frozen=True)
class Site:
    """One cross-attention module.

    index: position in execution order (0 = first site the denoiser calls).
    name: the module's qualified name inside the denoiser.
    module: the module itself.
    dim: width of the site's output (what AddVector adds to and Capture records).
    context_dim: width of the context it attends to (what PatchContext replaces).
    """

    index: int
    name: str
    module: nn.Module = field(repr=False, compare=False)
    dim: int
    context_dim: int


@dataclass(frozen=True)
class GuidanceLayout:
    """How a family stacks guidance copies in the denoiser batch.

    order: kinds of the stacked copies, e.g. ``("uncond", "cond")`` for Stable Audio and AudioLDM2,
    ``("cond", "uncond")`` for ACE-Step 1.5. A batch of exactly ``batch`` rows is one conditional copy.
    """

    order: tuple[str, ...] = ("uncond", "cond")

    def rows(self, n_rows: int, batch: int, copy: Copy, samples: Sequence[int] | None = None) -> list[int]:
        """Indices of the denoiser rows of guidance copy `copy` for the chosen samples (all by default)."""
        check_copy(copy)
        if batch <= 0 or n_rows % batch:
            raise RuntimeError(
                f"the denoiser received {n_rows} rows, which is not a multiple of the batch of {batch} prompts: "
                "this pipeline's guidance layout is not the one declared by its adapter"
            )
        copies = n_rows // batch
        if copies == 1:
            kinds = ("cond",)
        elif copies == len(self.order):
            kinds = self.order
        else:
            raise RuntimeError(
                f"the denoiser received {copies} copies of the batch; the layout declares {self.order}"
            )
        samples = range(batch) if samples is None else samples
        return [c * batch + s for c, kind in enumerate(kinds) if copy in ("all", kind) for s in samples]


SiteSpec = int | str


def resolve_sites(sites: Sequence[Site], spec: SiteSpec | Sequence[SiteSpec] | None, owner: str = "the model"
                  ) -> list[int]:
    """Site indices, sorted and distinct, for what a user names: an index, a module name, a list of those
    (empty: none), ``"all"`` or None (every site). Anything else is one error naming the valid range."""
    if spec is None or spec == "all":
        return list(range(len(sites)))
    items = [spec] if isinstance(spec, (int, str)) else list(spec)
    by_name = {s.name: s.index for s in sites}
    out = set()
    for item in items:
        if isinstance(item, str) and item in by_name:
            out.add(by_name[item])
        elif isinstance(item, int) and not isinstance(item, bool) and 0 <= item < len(sites):
            out.add(item)
        else:
            raise TadaError(
                f"site {item!r} is not a site of {owner}: it has {len(sites)} cross-attention sites, indices "
                f"0..{len(sites) - 1} (or their module names, e.g. {sites[0].name!r})"
            )
    return sorted(out)


def resolve_site(sites: Sequence[Site], spec: SiteSpec, owner: str = "the model") -> int:
    """The index of exactly one site (see :func:`resolve_sites`)."""
    if not isinstance(spec, (int, str)) or spec == "all":
        raise TadaError(f"name exactly one site of {owner} (an index 0..{len(sites) - 1} or a module name); "
                        f"got {spec!r}")
    return resolve_sites(sites, spec, owner)[0]

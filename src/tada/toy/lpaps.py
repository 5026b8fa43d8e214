"""Toy-LPAPS: the CLAP-LPAPS reduction (`tada.evaluation.clap_lpaps`) read off the toy world's scorer network
instead of CLAP's HTSAT, so the toy model gets a perceptual preservation distance offline.

For each of the five dilated convolution blocks s of `AttributeNet` (conv, group norm, GELU), take its output
as a frames x channels map F_s of the scorer's normalised log-mel input, and

    Toy-LPAPS(x, y) = sum_s (1 / C) sum_c sum_t ( F_s(x)[t, c] / |F_s(x)[:, c]| - same for y )^2

with |F[:, c]| the norm of channel c over frames: each block adds at most 4, identical clips give 0. The
scorer learned the toy's attributes, so this distance shares its blind spots; the MIR preservation axes
(`tada.evaluation.mir`) are the independent check.
"""

from __future__ import annotations

import torch

from tada.audio import Audio
from tada.errors import TadaError
from tada.evaluation.clap_lpaps import stage_distance


class ToyLPAPS:
    """`distance(a, b)`: (B,) Toy-LPAPS of row i of `a` and row i of `b`; `ToyLPAPS(scorer)` or `from_pretrained()`."""

    name = "toy-lpaps"

    def __init__(self, scorer=None):
        from tada.toy.scorer import ToyScorer

        self.scorer = scorer if scorer is not None else ToyScorer.from_pretrained()
        self.blocks = [self.scorer.net.body[i : i + 3] for i in range(0, len(self.scorer.net.body), 3)]

    @classmethod
    def from_pretrained(cls, path=None) -> "ToyLPAPS":
        from tada.toy.scorer import ToyScorer

        return cls(ToyScorer.from_pretrained(path))

    @torch.no_grad()
    def stage_features(self, audio: Audio) -> list[torch.Tensor]:
        """(B, frames, channels) output of every block."""
        h, out = self.scorer.features(audio), []
        for block in self.blocks:
            h = block(h)
            out.append(h.transpose(1, 2))
        return out

    @torch.no_grad()
    def distance(self, a: Audio, b: Audio) -> torch.Tensor:
        if len(a) != len(b):
            raise TadaError(f"compare row by row: got {len(a)} and {len(b)} rows")
        pairs = zip(self.stage_features(a), self.stage_features(b))
        return torch.stack([stage_distance(fa, fb) for fa, fb in pairs], 1).sum(1)

    __call__ = distance

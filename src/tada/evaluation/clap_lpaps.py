"""CLAP-LPAPS: a perceptual distance between two audio clips read off the CLAP audio tower (HTSAT), with no
learned weights; the preservation distance of ZETA (Manor & Michaeli 2024) and of the steering benchmark of
the paper's authors, whose published LPAPS columns it produces with the music checkpoint
(`laion/larger_clap_music`, laion_clap's `music_audioset_epoch_15_esc_90.14`).

For each stage s of HTSAT's Swin encoder (four for every published size), take its output after the
stage's patch merging as a tokens x channels map F_s (T positions, C channels), as laion_clap's layers
return it. Then

    d_s(x, y) = (1 / C) sum_c sum_t ( F_s(x)[t, c] / (|F_s(x)[:, c]| + 1e-10) - same for y )^2
    CLAP-LPAPS(x, y) = sum_s d_s(x, y)

where |F[:, c]| is the Euclidean norm of channel c over all positions. This is what ZETA's LPAPS code
computes: it applies the LPIPS reduction of Zhang et al. (unit norm along dimension 1, squared difference
summed along dimension 1, mean over the rest) to the (batch, tokens, channels) layer outputs, where
LPIPS meant (batch, channels, height, width) maps. So each *channel* is normalised over positions and
the differences are summed over positions and averaged over channels, not the other way round; each
stage contributes at most 4. We follow the code, since its numbers are the published ones;
`tests/test_clap_lpaps.py` checks agreement with laion_clap driven that way to 1e-4.

Audio is mixed to mono and resampled to 48 kHz (soxr), both rows of a pair are cut to the shorter length
and into the fixed windows of `tada.evaluation.scorers.clap.window_starts` (10 s windows at 0, 10, 20 s, ..., plus one
ending at the last sample when a remainder is left); each window goes through the checkpoint's own feature
extractor (a window shorter than 10 s is repeat-padded, as laion_clap does) and the distance of a pair is
the mean over its windows. For audio of at most 10 s this is exactly the reference's computation. For longer
audio, `windowing="zeta"` takes ZETA's windows instead, as the published numbers did: 10 s windows starting
every 9 s, the last ones shorter and repeat-padded (ZETA cuts them before resampling to 48 kHz, we after,
which only differs at the window edges). A single laion_clap call would take a random 10 s crop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tada.audio import Audio
from tada.errors import TadaError
from tada.evaluation.scorers.clap import DEFAULT_CHECKPOINT, ClapScorer, window_starts

EPS = 1e-10
WINDOWINGS = ("fixed", "zeta")
ZETA_HOP = 0.9  # ZETA's windows overlap by 10 %


def stage_distance(fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """(N,) d_s of one stage between (N, tokens, channels) maps: channels normalised over tokens, squared
    differences summed over tokens, averaged over channels."""
    na = fa / (fa.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
    nb = fb / (fb.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
    return (na - nb).pow(2).sum(dim=1).mean(dim=1)


class ClapLPAPS:
    """CLAP-LPAPS over the audio tower of a `ClapScorer` (see the module docstring).

    Build with `from_pretrained(checkpoint)` or wrap a scorer you already hold: `ClapLPAPS(scorer)` shares its
    model. `distance(a, b)` (or calling the object) gives one value per row pair.
    """

    name = "clap-lpaps"

    def __init__(self, scorer: ClapScorer, batch_size: int | None = None, windowing: str = "fixed"):
        if not isinstance(scorer, ClapScorer):
            raise TadaError(f"scorer must be a ClapScorer; got {type(scorer).__name__}")
        if windowing not in WINDOWINGS:
            raise TadaError(f"windowing must be one of {WINDOWINGS}; got {windowing!r}")
        self.scorer = scorer
        self.windowing = windowing
        self.batch_size = int(batch_size or scorer.batch_size)
        if self.batch_size < 1:
            raise TadaError(f"batch_size must be >= 1; got {batch_size}")
        self.encoder = scorer.model.audio_model.audio_encoder
        self.n_stages = len(self.encoder.layers)

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path = DEFAULT_CHECKPOINT, *, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None, batch_size: int = 8, windowing: str = "fixed") -> "ClapLPAPS":
        """Load a CLAP checkpoint through `ClapScorer.from_pretrained` (hub id or folder). The text-tower checks
        are skipped: only the audio tower is used. `dtype` (e.g. torch.float16 on a GPU) casts the model."""
        scorer = ClapScorer.from_pretrained(checkpoint, device=device, check=False, batch_size=batch_size)
        if dtype is not None:
            scorer.model.to(dtype)
        return cls(scorer, windowing=windowing)

    @property
    def device(self) -> torch.device:
        return self.scorer.device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.encoder.parameters()).dtype

    # -------------------------------------------------------------- features

    def windows(self, a: Audio, b: Audio) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
        """Matching mono 48 kHz windows of the two inputs and, for each window, the row pair it belongs to."""
        for name, x in (("a", a), ("b", b)):
            if not isinstance(x, Audio):
                raise TadaError(f"{name} must be an Audio; got {type(x).__name__}")
        if len(a) != len(b):
            raise TadaError(f"compare row by row: got {len(a)} and {len(b)} rows")
        rate, size = self.scorer.sample_rate, self.scorer.window
        wa = a.mono_at(rate, torch.float64).numpy()
        wb = b.mono_at(rate, torch.float64).numpy()
        pieces_a, pieces_b, owners = [], [], []
        n = min(wa.shape[1], wb.shape[1])
        if self.windowing == "zeta":
            starts = list(range(0, n, int(size * ZETA_HOP)))
        else:
            starts = window_starts(n, size)
        for row in range(len(a)):
            for start in starts:
                stop = min(start + size, n)
                pieces_a.append(wa[row, start:stop])
                pieces_b.append(wb[row, start:stop])
                owners.append(row)
        return pieces_a, pieces_b, owners

    @torch.no_grad()
    def stage_features(self, pieces: list[np.ndarray]) -> list[torch.Tensor]:
        """(N, tokens, channels) float32 output of every Swin stage, one row per window (at most 10 s each)."""
        out: list[list[torch.Tensor]] = [[] for _ in range(self.n_stages)]
        fused = self.scorer.fused
        for i in range(0, len(pieces), self.batch_size):
            batch = pieces[i : i + self.batch_size]
            feats = self.scorer.feature_extractor(batch, sampling_rate=self.scorer.sample_rate,
                                                  truncation="fusion" if fused else "rand_trunc", return_tensors="pt")
            # Every window fits the extractor's length: nothing is cropped, and no row is "longer".
            is_longer = torch.zeros(len(batch), 1, dtype=torch.bool, device=self.device)
            hidden = self.encoder(input_features=feats["input_features"].to(self.device, self.dtype),
                                  is_longer=is_longer, output_hidden_states=True).hidden_states
            # hidden[0] is the patch embedding; then one (N, C, H, W) map per stage, after its patch merging.
            for s, h in enumerate(hidden[1:]):
                out[s].append(h.flatten(2).transpose(1, 2).float())
        return [torch.cat(parts) for parts in out]

    # -------------------------------------------------------------- distances

    stage_distance = staticmethod(stage_distance)

    @torch.no_grad()
    def stage_distances(self, a: Audio, b: Audio) -> torch.Tensor:
        """(B, stages) float32 per-stage distances of row i of `a` and row i of `b`, averaged over windows."""
        pieces_a, pieces_b, owners = self.windows(a, b)
        per_window = []
        for i in range(0, len(owners), self.batch_size):  # one batch of windows at a time bounds the memory
            feats_a = self.stage_features(pieces_a[i : i + self.batch_size])
            feats_b = self.stage_features(pieces_b[i : i + self.batch_size])
            per_window.append(torch.stack([self.stage_distance(fa, fb) for fa, fb in zip(feats_a, feats_b)], 1).cpu())
        per_window = torch.cat(per_window)
        owners_t = torch.tensor(owners)
        sums = torch.zeros(len(a), self.n_stages).index_add_(0, owners_t, per_window)
        counts = torch.bincount(owners_t, minlength=len(a)).clamp(min=1)
        return sums / counts[:, None]

    def distance(self, a: Audio, b: Audio) -> torch.Tensor:
        """(B,) float32 CLAP-LPAPS of row i of `a` and row i of `b` (sum over stages)."""
        return self.stage_distances(a, b).sum(dim=1)

    __call__ = distance

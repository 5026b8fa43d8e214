"""`ToyScorer`: an attribute classifier for the synthetic music world behind the Scorer protocol.

Audio side: a small dilated 1-D CNN over the normalized log-mel of the clip predicts, per
attribute group, probabilities for each *atom* in `ATOMS` (softmax within tempo, mood, vocal and
genre; an independent sigmoid per instrument). The audio embedding is the vector 2p - 1 over the
17 atoms, unit-normalized.

Text side (keywords, no learning): atom k gets +1 when one of its words from
`tada.toy.synth.VOCABULARY` occurs in the lower-cased text as a whole word or phrase ("male vocal"
does not match inside "female vocal"), else 0; the vector is unit-normalized (all zeros when no
word matches, so such a text scores 0 against every clip).

similarity(audio, texts) = cosine of the two (eq. of the Scorer protocol in tada.evaluation.scorers.base).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tada.audio import Audio
from tada.errors import MissingFileError, TadaError
from tada.evaluation.scorers.base import cosine_similarity
from tada.toy.model import WEIGHTS_DIR, MelSpec
from tada.toy.synth import INSTRUMENTS, VOCABULARY

SCORER_CONFIG = "scorer_config.json"
SCORER_WEIGHTS = "scorer.safetensors"

#: exclusive groups (softmax) and their atoms, in embedding order; instruments follow, one sigmoid each.
GROUPS: dict[str, tuple[str, ...]] = {
    "tempo": ("fast", "slow"),
    "mood": ("happy", "sad"),
    "vocal": ("female", "male", "instrumental"),
    "genre": ("techno", "reggae", "jazz"),
}
ATOMS: tuple[tuple[str, str], ...] = tuple(
    [(g, v) for g, values in GROUPS.items() for v in values] + [("instrument", i) for i in INSTRUMENTS]
)
_PATTERNS = [
    re.compile("|".join(rf"(?<![\w-]){re.escape(w)}(?![\w-])" for w in VOCABULARY[g][v])) for g, v in ATOMS
]


def text_atoms(text: str) -> torch.Tensor:
    """(len(ATOMS),) float32: 1 where an atom's word occurs in `text`, else 0."""
    if not isinstance(text, str):
        raise TadaError(f"text must be a str; got {type(text).__name__}")
    low = text.lower()
    return torch.tensor([1.0 if p.search(low) else 0.0 for p in _PATTERNS])


def attribute_targets(attrs) -> torch.Tensor:
    """(len(ATOMS),) 0/1 ground truth of a `tada.toy.synth.Attributes`."""
    return torch.tensor([
        float(v in attrs.instruments) if g == "instrument" else float(getattr(attrs, g) == v) for g, v in ATOMS
    ])


#: the frequencies a pitch-class profile reads (Hz): the sung, lead and chord registers of world v2, above the bass
PITCH_BAND = (130.0, 2100.0)


def mel_centres(n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """(n_mels,) centre frequencies in Hz of the HTK mel bins (tada.audio.htk_mel_edges without its two edges)."""
    from tada.audio import htk_mel_edges

    return torch.from_numpy(htk_mel_edges(n_mels, f_min, f_max)[1:-1]).float()


def pitch_class_profile(log_mel: torch.Tensor, centres: torch.Tensor, band: tuple[float, float] = PITCH_BAND,
                        sigma: float = 0.4, depth: float = 8.0) -> torch.Tensor:
    """(B, 12) pitch-class energy (C = 0) of a (B, n_mels, T) log-mel whose bins are centred at `centres` Hz.

    The log-mel is first raised to a floor `depth` (natural-log units, 69 dB for 8) below the clip's loudest
    value, so that window leakage and silence make no peaks. Then each local maximum b of a frame over the mel
    axis, b_m > b_{m-1} and b_m >= b_{m+1}, is a partial whose
    fractional bin m + d, d = (b_{m-1} - b_{m+1}) / (2 (b_{m-1} - 2 b_m + b_{m+1})) clipped to +-1/2 (the vertex
    of the parabola through the three values), gives its frequency f by interpolating `centres`. A partial in
    `band` adds w = b_m - floor (its height above the floor) to pitch class k with weight
    exp(-d_k^2 / (2 sigma^2)), d_k the circular distance in semitones from 12 log2(f / 440) + 9 to k.
    Folding bins by their centres instead blurs neighbouring semitones where the mel bins are wide. Below
    about 300 Hz the mel bins are narrower than the FFT's (15.6 Hz at 16 kHz, 1024 points) and a partial is
    found at its FFT bin.
    """
    floor = log_mel.amax(dim=(1, 2), keepdim=True) - depth
    log_mel = torch.maximum(log_mel, floor)
    a, b, c = log_mel[:, :-2], log_mel[:, 1:-1], log_mel[:, 2:]
    curvature = a - 2 * b + c
    offset = torch.where(curvature < 0, 0.5 * (a - c) / curvature.clamp_max(-1e-6), torch.zeros_like(b))
    position = (torch.arange(1, log_mel.shape[1] - 1, dtype=b.dtype)[:, None] + offset.clamp(-0.5, 0.5))
    low = position.floor().long().clamp(0, len(centres) - 2)
    freq = torch.lerp(centres[low], centres[low + 1], position - low)
    peak = (b > a) & (b >= c) & (freq >= band[0]) & (freq <= band[1])
    clip = torch.arange(len(log_mel))[:, None, None].expand_as(peak)[peak]
    semitones = (12 * torch.log2(freq[peak] / 440.0) + 9)[:, None] - torch.arange(12.0)
    distance = torch.remainder(semitones + 6, 12) - 6
    kernel = torch.exp(-0.5 * (distance / sigma) ** 2) * (b - floor)[peak][:, None]
    return torch.zeros(len(log_mel), 12, dtype=kernel.dtype).index_add_(0, clip, kernel)


class PitchClassProfile(nn.Module):
    """Key-invariant harmony features for mode: c = :func:`pitch_class_profile` of the log-mel (the input
    x de-normalized with the stored per-bin `mean` and `std`), unit-normalised; then for each of `templates`
    learned 12-vectors t_j the best match over the 12 keys, max_r <t_j, roll(c, r)>."""

    def __init__(self, n_mels: int, f_min: float, f_max: float, templates: int = 8,
                 band: tuple[float, float] = PITCH_BAND):
        super().__init__()
        self.register_buffer("centres", mel_centres(n_mels, f_min, f_max), persistent=False)
        self.register_buffer("mean", torch.zeros(n_mels, 1))  # the scorer's mel statistics, saved with it
        self.register_buffer("std", torch.ones(n_mels, 1))
        self.templates = nn.Parameter(torch.randn(templates, 12) / 12 ** 0.5)
        self.band = tuple(band)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        profile = pitch_class_profile(x * self.std + self.mean, self.centres, self.band)
        profile = torch.nn.functional.normalize(profile, dim=-1)
        keys = torch.stack([profile.roll(r, dims=-1) for r in range(12)], dim=1)  # (B, 12 keys, 12)
        return torch.einsum("bkp,jp->bkj", keys, self.templates).amax(1)


class AttributeNet(nn.Module):
    """Normalized log-mel (B, n_mels, T) -> (B, len(ATOMS)) logits. With `mel_range` (the mel's f_min, f_max), a
    :class:`PitchClassProfile` of the log-mel over `pitch_band` Hz joins the pooled features (world v2, whose mood is
    mode alone); its `mean` and `std` buffers must then hold the mel's statistics (training sets them; they are saved with the weights)."""

    def __init__(self, n_mels: int = 64, width: int = 64, mel_range: tuple[float, float] | None = None,
                 pitch_band: tuple[float, float] | None = None):
        super().__init__()
        band = tuple(pitch_band) if pitch_band is not None else PITCH_BAND
        pitch = {"mel_range": list(mel_range), "pitch_band": list(band)} if mel_range else {}
        self.config = {"n_mels": n_mels, "width": width, **pitch}
        layers, channels = [], n_mels
        for dilation in (1, 2, 4, 8, 1):
            layers += [nn.Conv1d(channels, width, 3, padding=dilation, dilation=dilation), nn.GroupNorm(8, width), nn.GELU()]
            channels = width
        self.body = nn.Sequential(*layers)
        self.mode = PitchClassProfile(n_mels, *mel_range, band=band) if mel_range else None
        self.head = nn.Linear(2 * width + (self.mode.templates.shape[0] if self.mode else 0), len(ATOMS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        pooled = [h.mean(-1), h.amax(-1)] + ([self.mode(x)] if self.mode is not None else [])
        return self.head(torch.cat(pooled, dim=-1))


def atom_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax within each exclusive group of `GROUPS`, sigmoid for each instrument."""
    parts, start = [], 0
    for values in GROUPS.values():
        parts.append(logits[:, start:start + len(values)].softmax(-1))
        start += len(values)
    parts.append(logits[:, start:].sigmoid())
    return torch.cat(parts, dim=-1)


class ToyScorer:
    """The toy world's scorer (see module docstring). `name` = "toy"."""

    name = "toy"

    def __init__(self, net: AttributeNet, mel: MelSpec):
        self.net = net.eval()
        self.mel = mel

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None) -> "ToyScorer":
        folder = Path(path) if path is not None else WEIGHTS_DIR
        config_file, weights_file = folder / SCORER_CONFIG, folder / SCORER_WEIGHTS
        for f in (config_file, weights_file):
            if not f.is_file():
                raise MissingFileError(f"{f} not found; a toy scorer folder holds {SCORER_CONFIG} and {SCORER_WEIGHTS}")
        config = json.loads(config_file.read_text())
        net = AttributeNet(**config["net"])
        net.load_state_dict(load_file(weights_file))
        return cls(net, MelSpec(**config["mel"]))

    def save_pretrained(self, path: str | Path) -> None:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous() for k, v in self.net.state_dict().items()}, str(folder / SCORER_WEIGHTS))
        config = {"net": self.net.config, "mel": self.mel.to_config()}
        (folder / SCORER_CONFIG).write_text(json.dumps(config, indent=1))

    def features(self, audio: Audio) -> torch.Tensor:
        """Normalized log-mel (B, n_mels, frames) of mono, peak-normalized (0.9), cropped/padded audio (at the mel's rate and length)."""
        if not isinstance(audio, Audio):
            raise TadaError(f"ToyScorer needs an tada.audio.Audio; got {type(audio).__name__}")
        wave = audio.mono_at(self.mel.sample_rate)
        n = self.mel.num_samples
        wave = wave[:, :n]
        if wave.shape[1] < n:
            wave = torch.nn.functional.pad(wave, (0, n - wave.shape[1]))
        wave = 0.9 * wave / wave.abs().amax(-1, keepdim=True).clamp_min(1e-8)
        return self.mel.normalize(self.mel.log_mel(wave))

    @torch.no_grad()
    def probabilities(self, audio: Audio) -> torch.Tensor:
        """(B, len(ATOMS)) probability of each atom (softmax per group, sigmoid per instrument)."""
        return atom_probabilities(self.net(self.features(audio)))

    def embed_audio(self, audio: Audio) -> torch.Tensor:
        return torch.nn.functional.normalize(2 * self.probabilities(audio) - 1, dim=-1)

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        if isinstance(texts, str):
            raise TadaError("embed_text needs a list of strings, not one string")
        return torch.nn.functional.normalize(torch.stack([text_atoms(t) for t in texts]), dim=-1)

    def similarity(self, audio: Audio, texts: list[str]) -> torch.Tensor:
        return cosine_similarity(self.embed_audio(audio), self.embed_text(texts))

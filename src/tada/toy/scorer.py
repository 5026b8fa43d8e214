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


#: the mel bins a pitch-class profile reads: above them a bin spans several semitones' FFT bins, below them
#: a 1024-point FFT at 16 kHz (15.6 Hz a bin) cannot tell neighbouring semitones apart
PITCH_BAND = (260.0, 2100.0)


def pitch_class_map(n_mels: int, f_min: float, f_max: float, band: tuple[float, float] = PITCH_BAND) -> torch.Tensor:
    """(12, n_mels) weights from mel bins to pitch classes (C = 0): a bin centred at f within `band` gives
    max(0, 1 - d) to pitch class k, d the circular distance in semitones between 12 log2(f / 440) + 9 and k."""
    from tada.audio import htk_mel_edges

    centres = torch.from_numpy(htk_mel_edges(n_mels, f_min, f_max)[1:-1]).float()
    pc = (12 * torch.log2(centres / 440.0) + 9) % 12
    d = (pc[None, :] - torch.arange(12.0)[:, None]).abs()
    weights = (1 - torch.minimum(d, 12 - d)).clamp_min(0)
    return weights * ((centres >= band[0]) & (centres <= band[1])).float()


class PitchClassProfile(nn.Module):
    """Key-invariant harmony features for mode: the clip's pitch-class profile c = P relu(x) averaged over time
    and unit-normalised (P = :func:`pitch_class_map`, x the normalized log-mel), then for each of `templates`
    learned 12-vectors t_j the best match over the 12 keys, max_r <t_j, roll(c, r)>."""

    def __init__(self, n_mels: int, f_min: float, f_max: float, templates: int = 8):
        super().__init__()
        self.register_buffer("pitch_classes", pitch_class_map(n_mels, f_min, f_max), persistent=False)
        self.templates = nn.Parameter(torch.randn(templates, 12) / 12 ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        profile = torch.nn.functional.normalize(torch.einsum("pm,bmt->bp", self.pitch_classes, x.relu()), dim=-1)
        keys = torch.stack([profile.roll(r, dims=-1) for r in range(12)], dim=1)  # (B, 12 keys, 12)
        return torch.einsum("bkp,jp->bkj", keys, self.templates).amax(1)


class AttributeNet(nn.Module):
    """Normalized log-mel (B, n_mels, T) -> (B, len(ATOMS)) logits. With `mel_range` (the mel's f_min, f_max), a
    :class:`PitchClassProfile` of the log-mel joins the pooled features (world v2, whose mood is mode alone)."""

    def __init__(self, n_mels: int = 64, width: int = 64, mel_range: tuple[float, float] | None = None):
        super().__init__()
        self.config = {"n_mels": n_mels, "width": width, **({"mel_range": list(mel_range)} if mel_range else {})}
        layers, channels = [], n_mels
        for dilation in (1, 2, 4, 8, 1):
            layers += [nn.Conv1d(channels, width, 3, padding=dilation, dilation=dilation), nn.GroupNorm(8, width), nn.GELU()]
            channels = width
        self.body = nn.Sequential(*layers)
        self.mode = PitchClassProfile(n_mels, *mel_range) if mel_range else None
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

"""VGGish embeddings (Hershey et al. 2017), the feature space of FAD as Kilgour et al. (2019) defined it, which
the paper cites for its preservation metric (sec. 4.2).

Input, as the AudioSet reference code (`vggish_input`, `mel_features`) computes it: audio mixed to mono and
resampled to 16 kHz (with soxr; the reference uses resampy); 25 ms frames every 10 ms, no padding, periodic
Hann window, |rfft| over 512 points; 64 mel bands from 125 to 7500 Hz whose triangles are linear in HTK mel
(evaluated at each FFT bin's mel value, the DC bin excluded); log(mel + 0.01); then examples of 96 frames
(0.96 s) every 96 frames. Audio shorter than one example (0.975 s) has none.

Network: a VGG stack (3x3 convolutions of 64, 128, 256, 256, 512, 512 channels with ReLU, four 2x2 max-pools),
flattened channel-last as TensorFlow did, then fully connected 4096 -> 4096 -> 128. The embedding is the last
layer's output before any ReLU: the original TensorFlow model has no activation there, and FAD tools remove the
ReLU that the PyTorch port (torchvggish) put after it. No PCA or 8-bit quantisation: FAD uses raw embeddings.

Weights: torchvggish's release file (`vggish-10086976.pth`, keys `features.*` and `embeddings.*`), from a local
file or downloaded from its URL where the network allows. FAD fits its Gaussians to every 0.96 s example of
every file (`embed_frames`); `embed_audio` gives one (mean) vector a file.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tada.audio import Audio
from tada.errors import MissingFileError, TadaError

WEIGHTS_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
SAMPLE_RATE = 16000
WINDOW, HOP, N_FFT = 400, 160, 512  # 25 ms, 10 ms, next power of two
N_MELS, F_MIN, F_MAX = 64, 125.0, 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s, also the hop between examples
MIN_SAMPLES = WINDOW + (EXAMPLE_FRAMES - 1) * HOP
_LAYOUT = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")


@functools.cache
def vggish_mel_matrix() -> torch.Tensor:
    """(N_FFT // 2 + 1, 64) weights that map |rfft| bins to VGGish's mel bands (see the module docstring)."""
    def hz_to_mel(f):
        return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)

    bins_mel = hz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1))
    edges = np.linspace(hz_to_mel(F_MIN), hz_to_mel(F_MAX), N_MELS + 2)
    lower, center, upper = edges[None, :-2], edges[None, 1:-1], edges[None, 2:]
    rising = (bins_mel[:, None] - lower) / (center - lower)
    falling = (upper - bins_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0] = 0.0  # HTK leaves the DC bin out
    return torch.from_numpy(weights).float()


def log_mel(wave: torch.Tensor) -> torch.Tensor:
    """(N, samples) at 16 kHz -> (N, frames, 64) log mel, frames = 1 + (samples - 400) // 160."""
    if wave.ndim != 2 or wave.shape[-1] < WINDOW:
        raise TadaError(f"log_mel needs (batch, samples >= {WINDOW}) audio at 16 kHz; got {tuple(wave.shape)}")
    frames = wave.float().unfold(-1, WINDOW, HOP)  # (N, frames, WINDOW)
    window = torch.hann_window(WINDOW, periodic=True, device=wave.device)
    spectrum = torch.fft.rfft(frames * window, n=N_FFT).abs()
    return torch.log(spectrum @ vggish_mel_matrix().to(wave.device) + LOG_OFFSET)


class VGGish(nn.Module):
    """The VGGish network; `embed_frames` / `embed_audio` take `Audio` at any rate and channel count."""

    def __init__(self):
        super().__init__()
        layers, channels = [], 1
        for v in _LAYOUT:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU()]
                channels = v
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(nn.Linear(512 * 6 * 4, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
                                        nn.Linear(4096, 128))

    @classmethod
    def random(cls, seed: int = 0) -> VGGish:
        """The network with seeded random weights (offline tests; meaningless embeddings)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls().eval()

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None) -> VGGish:
        """torchvggish's weights: `path` to `vggish-10086976.pth`, or (None) downloaded from its release URL
        into torch's hub cache when the network allows."""
        if path is None:
            try:
                state = torch.hub.load_state_dict_from_url(WEIGHTS_URL, map_location="cpu", progress=False)
            except Exception as err:  # offline, proxy, HTTP error
                raise MissingFileError(
                    f"cannot download VGGish weights from {WEIGHTS_URL} ({err}); download that file elsewhere and "
                    "pass its path") from err
        else:
            path = Path(path)
            if not path.is_file():
                raise MissingFileError(f"VGGish weights {path} not found (expected torchvggish's vggish-10086976.pth)")
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as err:
                raise TadaError(f"{path} is not a readable PyTorch state dict: {err}") from err
        model = cls()
        state = {k: v for k, v in state.items() if not k.startswith("pproc.")}  # PCA postprocessing, unused
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise TadaError(f"{path or WEIGHTS_URL} is not a VGGish state dict: missing {missing[:4]}, "
                             f"unexpected {unexpected[:4]}")
        return model.eval()

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        """(M, 1, 96, 64) log-mel examples -> (M, 128) embeddings."""
        x = self.features(examples)  # (M, 512, 6, 4)
        return self.embeddings(x.permute(0, 2, 3, 1).flatten(1))  # channel-last flatten, as TensorFlow

    @staticmethod
    def examples(audio: Audio) -> torch.Tensor:
        """(B * examples per row, 1, 96, 64) log-mel examples, row by row."""
        if not isinstance(audio, Audio):
            raise TadaError(f"audio must be an Audio; got {type(audio).__name__}")
        wave = audio.mono_at(SAMPLE_RATE)
        if wave.shape[-1] < MIN_SAMPLES:
            raise TadaError(f"VGGish needs at least {MIN_SAMPLES / SAMPLE_RATE:.3f} s of audio (one 0.96 s example); "
                             f"got {wave.shape[-1] / SAMPLE_RATE:.3f} s")
        mel = log_mel(wave).unfold(1, EXAMPLE_FRAMES, EXAMPLE_FRAMES)  # (B, examples, 64, 96)
        return mel.transpose(-1, -2).flatten(0, 1).unsqueeze(1)

    @torch.no_grad()
    def embed_frames(self, audio: Audio, batch_size: int = 64) -> torch.Tensor:
        """(sum of examples, 128): one embedding per 0.96 s example of every row, the set FAD is fitted to."""
        examples = self.examples(audio)
        device = next(self.parameters()).device
        return torch.cat([self(examples[i:i + batch_size].to(device)).float().cpu()
                          for i in range(0, len(examples), batch_size)])

    @torch.no_grad()
    def embed_audio(self, audio: Audio) -> torch.Tensor:
        """(B, 128): the mean example embedding of each row."""
        return self.embed_frames(audio).unflatten(0, (len(audio), -1)).mean(1)  # rows share one length

"""The `Audio` value every model returns and every scorer reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tada.errors import TadaError


@dataclass
class Audio:
    """A batch of waveforms.

    waveform: float32 tensor (B, C, N) on the CPU, values in [-1, 1] for well-behaved models.
    sample_rate: samples per second of every row.
    """

    waveform: torch.Tensor
    sample_rate: int

    def __post_init__(self):
        if self.waveform.ndim != 3:
            raise TadaError(
                f"Audio.waveform must be (batch, channels, samples); got shape {tuple(self.waveform.shape)}"
            )
        if int(self.sample_rate) <= 0:
            raise TadaError(f"Audio.sample_rate must be a positive integer; got {self.sample_rate!r}")
        self.sample_rate = int(self.sample_rate)

    def __len__(self) -> int:
        return self.waveform.shape[0]

    def __getitem__(self, rows) -> "Audio":
        if isinstance(rows, int):
            rows = slice(rows, rows + 1)
        return Audio(self.waveform[rows], self.sample_rate)

    @property
    def duration(self) -> float:
        return self.waveform.shape[-1] / self.sample_rate

    def mono(self) -> torch.Tensor:
        """(B, N) channel average."""
        return self.waveform.mean(dim=1)

    def mono_at(self, sample_rate: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(B, N') channel average resampled to `sample_rate` with soxr (high quality), on the CPU."""
        mono = self.mono().detach().cpu().double()
        if int(sample_rate) != self.sample_rate:
            import numpy as np
            import soxr

            out = soxr.resample(mono.numpy().T, self.sample_rate, int(sample_rate), quality="HQ")
            mono = torch.from_numpy(np.ascontiguousarray(out.T)).reshape(len(self), -1)
        return mono.to(dtype)

    @staticmethod
    def cat(parts: list["Audio"]) -> "Audio":
        if not parts:
            raise TadaError("Audio.cat needs at least one Audio")
        rates = {p.sample_rate for p in parts}
        if len(rates) != 1:
            raise TadaError(f"Audio.cat needs one sample rate; got {sorted(rates)}")
        return Audio(torch.cat([p.waveform for p in parts]), parts[0].sample_rate)

    def save(self, folder: str | Path, names: list[str] | None = None) -> list[Path]:
        """Write one 16-bit WAV per row into `folder`; returns the paths."""
        import soundfile as sf

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        names = names or [f"{i:04d}" for i in range(len(self))]
        if len(names) != len(self):
            raise TadaError(f"got {len(names)} names for {len(self)} waveforms")
        paths = []
        for name, wav in zip(names, self.waveform):
            path = folder / (name if name.endswith(".wav") else f"{name}.wav")
            sf.write(path, wav.detach().float().clamp(-1, 1).T.numpy(), self.sample_rate, subtype="PCM_16")
            paths.append(path)
        return paths

    @staticmethod
    def load(paths: list[str | Path]) -> "Audio":
        """Read WAV files of one sample rate and length into one batch."""
        import soundfile as sf

        if not paths:
            raise TadaError("Audio.load needs at least one path")
        waves, rates = [], set()
        for p in paths:
            try:
                data, sr = sf.read(str(p), dtype="float32", always_2d=True)
            except Exception as err:  # soundfile raises several types for corrupt files
                raise TadaError(f"cannot read audio file {p}: {err}") from err
            waves.append(torch.from_numpy(data.T.copy()))
            rates.add(sr)
        if len(rates) != 1:
            raise TadaError(f"files have different sample rates {sorted(rates)}")
        lengths = {w.shape[-1] for w in waves}
        if len(lengths) != 1:
            raise TadaError(f"files have different lengths {sorted(lengths)}; trim or pad them first")
        return Audio(torch.stack(waves), rates.pop())


def htk_mel_edges(n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """(n_mels + 2,) frequencies in Hz equally spaced on the HTK mel scale, 2595 log10(1 + f / 700), from f_min
    to f_max: filter k rises from edge k to its centre, edge k + 1, and falls to edge k + 2."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    return 700.0 * (10.0 ** (np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2) / 2595.0) - 1.0)


def htk_mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float, f_max: float) -> np.ndarray:
    """(n_mels, n_fft//2+1) triangular filters equally spaced on the HTK mel scale, peak 1, no area
    normalisation (torchaudio's `melscale_fbanks(norm=None, mel_scale="htk")`)."""
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise TadaError(f"need 0 <= f_min < f_max <= {sample_rate / 2}; got f_min={f_min}, f_max={f_max}")
    edges = htk_mel_edges(n_mels, f_min, f_max)
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (center - lower)
    falling = (upper - freqs[None, :]) / (upper - center)
    return np.clip(np.minimum(rising, falling), 0.0, None)

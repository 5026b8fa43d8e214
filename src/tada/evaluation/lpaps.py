"""LPAPS, the learned perceptual audio patch similarity of Iashin & Rahtu 2021 (SpecVQGAN), used by the paper
as a preservation metric (sec. 4.2).

The audio is turned into the SpecVQGAN log-mel spectrogram (22.05 kHz, n_fft 1024, hop 256, 80 slaney mel
bands over 125-7600 Hz, magnitude, 20 log10 with a 1e-5 floor, shifted and scaled to [0, 1], then to
[-1, 1]). Each mel band is standardised with dataset statistics, a 13-layer VGG-like network
("vggishish", trained on VGGSound) gives five feature maps (after relu1_2, relu2_2, relu3_3, relu4_3,
relu5_3), and

    LPAPS(x, y) = sum_l mean_{h,w} w_l . (f_l(x)/|f_l(x)| - f_l(y)/|f_l(y)|)^2

where the normalisation is over channels at each position and w_l is a learned non-negative 1x1 linear layer.

Weight files: `lpaps.pth` (the full metric: band statistics, network, linear layers) and `vggishish16.pt`
(the network alone, a checkpoint dict with the state dict under "model"). Their key layout, taken from the
SpecVQGAN source (`specvqgan/modules/losses/lpaps.py`), is

    scaling_layer.shift / scaling_layer.scale   (1, 1, 80, 1)   -> band_mean / band_std
    net.slice{1..5}.{i}.weight / .bias          conv i of VGG   -> features.{i}.weight / .bias
    lin{k}.model.1.weight (or .model.0.weight)  (1, C_k, 1, 1)  -> layer_weights.{k}.weight
    vggishish16.pt: model["features.{i}.*"]                     -> features.{i}.*

The mapping follows that source; it has not been checked against the released files, which cannot be
downloaded here. `from_pretrained` refuses files that leave any of our tensors unset.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from tada.audio import Audio
from tada.errors import MissingFileError, TadaError

SAMPLE_RATE = 22050
N_FFT = 1024
HOP_LENGTH = 256
N_MELS = 80
F_MIN = 125.0
F_MAX = 7600.0
# VGG16 layout of vggishish: numbers are 3x3 conv widths, "M" a 2x2 max-pool.
_VGG_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# The five compared feature maps end after these indices of the conv/relu/pool sequence.
_SLICE_ENDS = (4, 9, 16, 23, 30)
CHANNELS = (64, 128, 256, 512, 512)
MIN_FRAMES = 16  # four 2x2 max-pools before the last feature map


def _hz_to_mel_slaney(f: torch.Tensor) -> torch.Tensor:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per octave of 6.4)."""
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    return torch.where(f < min_log_hz, f / f_sp, min_log_hz / f_sp + torch.log(f / min_log_hz) / logstep)


def _mel_to_hz_slaney(m: torch.Tensor) -> torch.Tensor:
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return torch.where(m < min_log_mel, m * f_sp, min_log_hz * torch.exp(logstep * (m - min_log_mel)))


def mel_filterbank(
    sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, f_min: float = F_MIN, f_max: float = F_MAX
) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters on Slaney's mel scale with Slaney area normalisation
    (each filter scaled by 2 / bandwidth in Hz), the defaults of librosa's `filters.mel` that SpecVQGAN used."""
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise TadaError(f"need 0 <= f_min < f_max <= sample_rate / 2; got f_min={f_min}, f_max={f_max}, sr={sample_rate}")
    fft_freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mels = torch.linspace(
        float(_hz_to_mel_slaney(torch.tensor(f_min, dtype=torch.float64))),
        float(_hz_to_mel_slaney(torch.tensor(f_max, dtype=torch.float64))),
        n_mels + 2,
        dtype=torch.float64,
    )
    edges = _mel_to_hz_slaney(mels)
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (fft_freqs - lower) / (center - lower)
    falling = (upper - fft_freqs) / (upper - center)
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return (weights * (2.0 / (upper - lower))).float()


def log_mel_spectrogram(waveform: torch.Tensor) -> torch.Tensor:
    """(B, N) waveform at 22.05 kHz -> (B, 1, 80, T) SpecVQGAN log-mel in [-1, 1], T = N // 256 + 1.

    STFT with a periodic Hann window, centred frames and reflect padding (librosa's `stft` of that time);
    magnitude (power 1); then x -> clip((20 log10(max(x, 1e-5)) - 20 + 100) / 100, 0, 1) * 2 - 1.
    """
    if waveform.ndim != 2:
        raise TadaError(f"waveform must be (batch, samples); got shape {tuple(waveform.shape)}")
    if waveform.shape[-1] <= N_FFT // 2:
        raise TadaError(f"waveform needs more than {N_FFT // 2} samples for reflect padding; got {waveform.shape[-1]}")
    spec = torch.stft(
        waveform.float(),
        n_fft=N_FFT,
        hop_length=HOP_LENGTH,
        window=torch.hann_window(N_FFT, periodic=True, dtype=torch.float32, device=waveform.device),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    ).abs()
    mel = mel_filterbank().to(spec.device) @ spec
    return scale_log_mel(mel).unsqueeze(1)


def scale_log_mel(mel: torch.Tensor) -> torch.Tensor:
    """SpecVQGAN's amplitude scaling of a magnitude mel spectrogram to [-1, 1] (see `log_mel_spectrogram`)."""
    db = 20.0 * torch.log10(torch.clamp(mel, min=1e-5)) - 20.0
    return torch.clamp((db + 100.0) / 100.0, 0.0, 1.0) * 2.0 - 1.0


def perceptual_distance(
    feats_a: list[torch.Tensor], feats_b: list[torch.Tensor], layer_weights: list[torch.Tensor], eps: float = 1e-10
) -> torch.Tensor:
    """sum_l mean_{h,w} sum_c w_l[c] (a_l/|a_l| - b_l/|b_l|)^2 with |.| the channel L2 norm per position (+ eps).

    feats_*: per layer (B, C_l, H_l, W_l); layer_weights: per layer (C_l,). Returns (B,).
    """
    total = 0.0
    for a, b, w in zip(feats_a, feats_b, layer_weights, strict=True):
        na = a / (a.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)
        nb = b / (b.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)
        total = total + torch.einsum("bchw,c->bhw", (na - nb) ** 2, w).mean(dim=(1, 2))
    return total


def _vgg_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 1
    for v in _VGG_LAYOUT:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_ch, v, kernel_size=3, padding=1), nn.ReLU()]
            in_ch = v
    return nn.Sequential(*layers)


class LPAPS(nn.Module):
    """LPAPS metric (Iashin & Rahtu 2021), paper sec. 4.2 preservation. Build with `from_pretrained` or `random`."""

    def __init__(self):
        super().__init__()
        self.register_buffer("band_mean", torch.zeros(1, 1, N_MELS, 1))
        self.register_buffer("band_std", torch.ones(1, 1, N_MELS, 1))
        self.features = _vgg_features()
        self.layer_weights = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.eval()
        self.requires_grad_(False)

    @classmethod
    def random(cls, seed: int = 0) -> "LPAPS":
        """Random network and non-negative linear weights, unit band statistics: for tests only."""
        gen = torch.Generator().manual_seed(seed)
        model = cls()
        for conv in model.features:
            if isinstance(conv, nn.Conv2d):
                fan_in = conv.weight[0].numel()
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                conv.bias.zero_()
        for lin in model.layer_weights:
            lin.weight.copy_(torch.rand(lin.weight.shape, generator=gen) / lin.weight.shape[1])
        return model

    @classmethod
    def from_pretrained(cls, path: str | Path, vggishish: str | Path | None = None) -> "LPAPS":
        """Load the original SpecVQGAN weights.

        path: `lpaps.pth`, or a folder holding it (and optionally `vggishish16.pt`).
        vggishish: `vggishish16.pt`, used for network weights that `lpaps.pth` lacks.
        """
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        lpaps_file = folder / "lpaps.pth" if path.is_dir() else path
        if not lpaps_file.is_file():
            raise MissingFileError(f"LPAPS weights not found at {lpaps_file}; pass lpaps.pth or its folder")
        mapped = _map_lpaps_keys(_load_state(lpaps_file))
        net_file = Path(vggishish) if vggishish is not None else folder / "vggishish16.pt"
        if not any(k.startswith("features.") for k in mapped):
            if not net_file.is_file():
                raise MissingFileError(
                    f"{lpaps_file} holds no network weights and {net_file} does not exist; pass vggishish=<vggishish16.pt>"
                )
            ckpt = _load_state(net_file)
            state = ckpt.get("model", ckpt)
            mapped.update({k: v for k, v in state.items() if k.startswith("features.")})
        model = cls()
        missing = sorted(set(model.state_dict()) - set(mapped))
        if missing:
            raise TadaError(f"LPAPS weights leave {len(missing)} tensors unset, e.g. {missing[:4]}")
        model.load_state_dict({k: mapped[k] for k in model.state_dict()})
        return model

    def feature_maps(self, log_mel: torch.Tensor) -> list[torch.Tensor]:
        """(B, 1, 80, T) log-mel in [-1, 1] -> the five compared feature maps."""
        h = (log_mel - self.band_mean) / self.band_std
        maps, start = [], 0
        for end in _SLICE_ENDS:
            h = self.features[start:end](h)
            maps.append(h)
            start = end
        return maps

    def forward(self, log_mel_a: torch.Tensor, log_mel_b: torch.Tensor) -> torch.Tensor:
        """LPAPS of two (B, 1, 80, T) log-mel batches (at least 16 frames) -> (B,)."""
        for name, x in (("log_mel_a", log_mel_a), ("log_mel_b", log_mel_b)):
            if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] != N_MELS or x.shape[3] < MIN_FRAMES:
                raise TadaError(
                    f"{name} must be (batch, 1, {N_MELS}, frames >= {MIN_FRAMES}); got shape {tuple(x.shape)}"
                )
        if log_mel_a.shape != log_mel_b.shape:
            raise TadaError(f"inputs differ in shape: {tuple(log_mel_a.shape)} vs {tuple(log_mel_b.shape)}")
        weights = [lin.weight.flatten() for lin in self.layer_weights]
        return perceptual_distance(self.feature_maps(log_mel_a), self.feature_maps(log_mel_b), weights)

    @torch.no_grad()
    def distance(self, a: Audio, b: Audio) -> torch.Tensor:
        """LPAPS between row i of `a` and row i of `b` (mono, resampled to 22.05 kHz) -> (B,) float32.
        Rows of different lengths are compared over the shorter length."""
        if len(a) != len(b):
            raise TadaError(f"LPAPS compares rows pairwise; got {len(a)} and {len(b)} rows")
        wa, wb = _mono_22k(a), _mono_22k(b)
        n = min(wa.shape[-1], wb.shape[-1])
        return self(log_mel_spectrogram(wa[:, :n]), log_mel_spectrogram(wb[:, :n])).float()


def _mono_22k(audio: Audio) -> torch.Tensor:
    return audio.mono_at(SAMPLE_RATE)


def _load_state(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for foreign or corrupt files
        raise TadaError(f"cannot read {path} as a torch state dict: {err}") from err
    if not isinstance(state, dict):
        raise TadaError(f"{path} holds a {type(state).__name__}, expected a state dict")
    return state


def _map_lpaps_keys(state: dict) -> dict[str, torch.Tensor]:
    """Rename SpecVQGAN's LPAPS keys to ours (table in the module docstring); unknown keys are dropped."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if key == "scaling_layer.shift":
            out["band_mean"] = value.reshape(1, 1, N_MELS, 1)
        elif key == "scaling_layer.scale":
            out["band_std"] = value.reshape(1, 1, N_MELS, 1)
        elif parts[0] == "net" and parts[1].startswith("slice") and len(parts) == 4:
            out[f"features.{parts[2]}.{parts[3]}"] = value
        elif parts[0].startswith("lin") and parts[1:2] == ["model"] and parts[-1] == "weight":
            out[f"layer_weights.{parts[0][3:]}.weight"] = value
    return out

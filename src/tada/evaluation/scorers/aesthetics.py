"""Audiobox Aesthetics (Tjandra et al. 2025), the paper's audio-quality measure (sec. 4.2): four scores per clip,
Content Enjoyment (CE), Content Usefulness (CU), Production Complexity (PC) and Production Quality (PQ).

Optional: it needs the `audiobox-aesthetics` package. That package imports torchaudio at its top level (in
`audiobox_aesthetics.infer`), but its model module `audiobox_aesthetics.model.aes` does not, so we import only
the model and do the rest ourselves: mono, resampling to 16 kHz with soxr, and the reference inference's
windowing. Because torchaudio is never imported, the package can be installed without its dependencies:

    pip install --no-deps audiobox-aesthetics   (it then needs only torch, numpy and huggingface_hub)

Windowing, as in the package's `make_inference_batch`: 10 s windows every 10 s from the start, the last one
zero-padded and masked; each window's score is weighted by its share of 10 s; the model's normalised outputs
are mapped back with the checkpoint's per-axis mean and std.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from tada.audio import Audio
from tada.errors import MissingFileError, TadaError

AXES = ("CE", "CU", "PC", "PQ")
SAMPLE_RATE = 16000
WINDOW = 10 * SAMPLE_RATE
DEFAULT_CHECKPOINT = "facebook/audiobox-aesthetics"
INSTALL_HINT = (
    "Audiobox Aesthetics needs the optional `audiobox-aesthetics` package: "
    "pip install --no-deps audiobox-aesthetics (only its model module is used, so torchaudio is not needed)"
)


def _aes_class():
    try:
        from audiobox_aesthetics.model.aes import AesMultiOutput
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} (import failed: {err})") from err
    return AesMultiOutput


def inference_windows(wavs: torch.Tensor, window: int = WINDOW):
    """Cut (B, N) waveforms into windows as the reference inference does.

    Returns (windows (W, 1, window), masks (W, 1, window) bool, weights (W,), owners (W,)): windows start at
    0, window, 2 window, ... < N, the last is zero-padded, masks mark real samples, weights are the real
    fraction of each window and owners the row each window came from.
    """
    if wavs.ndim != 2 or wavs.shape[1] == 0:
        raise TadaError(f"wavs must be (batch, samples) with samples > 0; got shape {tuple(wavs.shape)}")
    pieces, masks, weights, owners = [], [], [], []
    for row, wav in enumerate(wavs):
        for start in range(0, wav.shape[0], window):
            piece = wav[start : start + window]
            real = piece.shape[0]
            mask = torch.zeros(window, dtype=torch.bool)
            mask[:real] = True
            pieces.append(torch.nn.functional.pad(piece, (0, window - real)))
            masks.append(mask)
            weights.append(real / window)
            owners.append(row)
    return (
        torch.stack(pieces)[:, None],
        torch.stack(masks)[:, None],
        torch.tensor(weights, dtype=torch.float64),
        torch.tensor(owners),
    )


class AudioboxAesthetics:
    """Audio-quality scorer: `score(audio)` -> {"CE", "CU", "PC", "PQ": (B,) float64}, higher is better."""

    name = "audiobox-aesthetics"

    def __init__(self, model: torch.nn.Module, *, batch_size: int = 4):
        transform = getattr(model, "target_transform", None)
        if not isinstance(transform, dict) or any(axis not in transform for axis in AXES):
            raise TadaError(
                f"model.target_transform must map each of {AXES} to {{'mean': ..., 'std': ...}}; got {transform!r}"
            )
        if batch_size < 1:
            raise TadaError(f"batch_size must be >= 1; got {batch_size}")
        self.model = model.eval()
        self.batch_size = batch_size
        self.mean = {axis: float(transform[axis]["mean"]) for axis in AXES}
        self.std = {axis: float(transform[axis]["std"]) for axis in AXES}

    @classmethod
    def from_pretrained(
        cls, checkpoint: str | Path = DEFAULT_CHECKPOINT, *, device: str | torch.device = "cpu", **kwargs
    ) -> "AudioboxAesthetics":
        """Load weights: a hub id or folder in the hub layout (config.json + model.safetensors), or the
        original `checkpoint.pt` (a dict with "state_dict", "model_cfg" and "target_transform")."""
        aes_class = _aes_class()
        path = Path(checkpoint)
        if path.suffix == ".pt":
            if not path.is_file():
                raise MissingFileError(f"Audiobox Aesthetics checkpoint {path} does not exist")
            model = _from_original_checkpoint(aes_class, path)
        else:
            try:
                model = aes_class.from_pretrained(str(checkpoint))
            except OSError as err:
                raise MissingFileError(
                    f"cannot load Audiobox Aesthetics weights {str(checkpoint)!r}: {err}. Pass a hub id reachable "
                    "from here, a folder with config.json and model.safetensors, or the original checkpoint.pt."
                ) from err
        return cls(model.to(device), **kwargs)

    @classmethod
    def random(cls, seed: int = 0, **kwargs) -> "AudioboxAesthetics":
        """The full-size model (94M parameters) with random weights and unit target transform, for tests."""
        aes_class = _aes_class()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = aes_class(target_transform={axis: {"mean": 0.0, "std": 1.0} for axis in AXES})
        return cls(model, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def score(self, audio: Audio) -> dict[str, torch.Tensor]:
        """Per-row CE, CU, PC, PQ: window scores mapped back to the rating scale, averaged with window weights."""
        if not isinstance(audio, Audio):
            raise TadaError(f"audio must be an Audio; got {type(audio).__name__}")
        wavs = audio.mono_at(SAMPLE_RATE)
        windows, masks, weights, owners = inference_windows(wavs)
        raw = {axis: [] for axis in AXES}
        for i in range(0, len(windows), self.batch_size):
            out = self.model(
                {"wav": windows[i : i + self.batch_size].to(self.device), "mask": masks[i : i + self.batch_size].to(self.device)}
            )
            for axis in AXES:
                raw[axis].append(out[axis].detach().double().cpu().reshape(-1))
        totals = torch.zeros(len(audio), dtype=torch.float64).index_add_(0, owners, weights)
        result = {}
        for axis in AXES:
            rating = torch.cat(raw[axis]) * self.std[axis] + self.mean[axis]
            result[axis] = torch.zeros(len(audio), dtype=torch.float64).index_add_(0, owners, rating * weights) / totals
        return result


def _from_original_checkpoint(aes_class, path: Path):
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        cfg_keys = (
            "proj_num_layer", "proj_ln", "proj_act_fn", "proj_dropout", "nth_layer",
            "use_weighted_layer_sum", "precision", "normalize_embed", "output_dim",
        )  # fmt: skip
        model = aes_class(**{k: ckpt["model_cfg"][k] for k in cfg_keys}, target_transform=ckpt["target_transform"])
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    except (KeyError, TypeError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:
        raise TadaError(
            f"{path} is not an Audiobox Aesthetics checkpoint (dict with state_dict, model_cfg, target_transform): {err}"
        ) from err
    model.load_state_dict(state)
    return model

"""MuQ-MuLan audio-text scorer (Zhu et al. 2025), the paper's second alignment model (sec. 4.2, app. B.3).

Decision: the inference path is ported here rather than wrapped. The `muq` package (0.1.0) cannot run
next to this package's core install: it fails on transformers 5 (it hands the conformer a plain dict
as its config) and needs torchaudio, whose wheels do not load next to a CPU torch. Its inference path is
small once training code is set aside, and two of its three large parts are transformers classes we
already depend on (the Wav2Vec2-Conformer layers, XLM-RoBERTa). The port reads the package's checkpoint
layout unchanged (`config.json` + `model.safetensors` of `OpenMuQ/MuQ-MuLan-large`, the MuQ backbone's
`config.json`, the text backbone's config and tokenizer), and `tests/test_muq.py` checks it against
outputs of the package itself on a tiny random checkpoint (`tests/reference/make_muq_mulan.py`).

Inference path, per 10 s clip of 24 kHz mono audio:
    mel: power STFT (n_fft 2048, hop 240, Hann, centred, reflect) -> 128 HTK mel bands -> 10 log10
         (floor 1e-10) -> last frame dropped -> (x - mean) / std with the checkpoint's statistics;
    MuQ: two residual conv blocks (time / 4, freq / 4) -> linear -> Conformer layers; hidden state
         `use_layer_idx` (hidden states are the input, each layer's output, and the last layer-normed);
    MuLan audio tower: linear -> pre-norm transformer (l2-normed q/k, GEGLU) -> mean over frames;
    latent: linear -> l2 norm. Clips are consecutive, the last one filled from the start of the audio,
    and a row's clip latents are averaged.
Text: XLM-RoBERTa last hidden state -> linear (when widths differ) -> transformer -> mean over tokens
    -> linear -> l2 norm.

Where this differs from the package, deliberately:
* texts are embedded one at a time. The package pads a batch to its longest text and then averages
  over the padding too, so a text's embedding depends on its batch-mates; one at a time equals the
  package called with that text alone.
* `MuQScorer` re-normalises the averaged clip latents (cosine similarity, as every scorer here); the
  package's `calc_similarity` is a dot product with the unnormalised average. The two agree for audio
  of one clip and rank texts identically for any audio.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tada.audio import Audio, htk_mel_filterbank
from tada.errors import MissingFileError, TadaError
from tada.evaluation.scorers.base import cosine_similarity

DEFAULT_CHECKPOINT = "OpenMuQ/MuQ-MuLan-large"
SAMPLE_RATE = 24000
N_FFT = 2048
N_MELS = 128

# Checkpoint key prefixes -> ours (first match wins).
_RENAMES = (("mulan.audio.model.model.", "audio.encoder."), ("mulan.text.model.", "text.backbone."), ("mulan.", ""))
# Weights the inference path never reads: training heads and losses, the unused conformer positional
# convolution (the conformer encoder defines it but never calls it), the text backbone's pooler.
_UNUSED = (
    "audio.aggregator.", "contrast.", "audio.encoder.linear.", "audio.encoder.cls_token",
    "audio.encoder.quantizer_", "audio.encoder.rvq.", "audio.encoder.recon_proj.",
    "audio.encoder.conformer.pos_conv_embed.", "text.backbone.pooler.",
)


# ---------------------------------------------------------------------------------------------- files
def _is_local(repo: str | Path) -> bool:
    return Path(repo).is_dir()


def _file(repo: str, filename: str, *, required: bool = True) -> Path | None:
    """`filename` of a folder or hub repository; None when it is absent and not `required`."""
    if _is_local(repo):
        path = Path(repo) / filename
        if path.is_file():
            return path
        if required:
            raise MissingFileError(f"{filename} not found in MuQ-MuLan folder {repo}")
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(hf_hub_download(repo, filename))
    except EntryNotFoundError:
        if required:
            raise MissingFileError(f"{filename} not found in hub repository {repo!r}") from None
        return None
    except Exception as err:  # offline, unknown repository, no cache
        raise MissingFileError(f"cannot fetch {filename} of {repo!r} (a hub id or a local folder): {err}") from err


def _weights(repo: str) -> dict[str, torch.Tensor]:
    """The state dict in `model.safetensors`, else `pytorch_model.bin`, of a folder or hub repository."""
    path = _file(repo, "model.safetensors", required=False)
    if path is not None:
        from safetensors.torch import load_file

        return load_file(str(path))
    path = _file(repo, "pytorch_model.bin", required=False)
    if path is None:
        raise MissingFileError(f"{repo!r} has neither model.safetensors nor pytorch_model.bin")
    return torch.load(path, map_location="cpu", weights_only=True)


def _our_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A `muq`-layout state dict under this port's module names, without the weights inference never reads."""
    ours = {}
    for key, value in state.items():
        new = next((new + key[len(old):] for old, new in _RENAMES if key.startswith(old)), key)
        if not new.startswith(_UNUSED):
            ours[new] = value
    return ours


def _backbone_repo(name: str, root: str) -> str:
    """A backbone named in the config: a folder of that name next to the checkpoint, else a hub id or path."""
    if _is_local(root) and (Path(root) / name).is_dir():
        return str(Path(root) / name)
    return name


# ------------------------------------------------------------------------------------------ audio side
class MelFeatures(nn.Module):
    """(N, samples) 24 kHz -> (N, 128, frames) standardised log-power mel (torchaudio's MelSpectrogram
    + AmplitudeToDB, as MuQ computes it), frames = samples // hop, the last centred frame dropped."""

    def __init__(self, hop_length: int, mean: float, std: float):
        super().__init__()
        self.hop_length, self.mean, self.std = hop_length, mean, std
        fb = htk_mel_filterbank(N_MELS, N_FFT, SAMPLE_RATE, 0.0, SAMPLE_RATE / 2)
        self.register_buffer("filters", torch.from_numpy(fb).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, wavs: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wavs.float(), N_FFT, self.hop_length, window=self.window, center=True,
                          pad_mode="reflect", return_complex=True).abs().pow(2)
        db = 10.0 * torch.log10(torch.clamp(self.filters @ spec, min=1e-10))
        return (db[..., :-1] - self.mean) / self.std


class _ResBlock2d(nn.Module):
    """Two 3x3 conv + batch-norm layers with a (projected when the shape changes) residual."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int]):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, c_out, 3, padding=1, stride=stride), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out)
        self.project = c_in != c_out or stride[0] > 1
        if self.project:
            self.conv3, self.bn3 = nn.Conv2d(c_in, c_out, 3, padding=1, stride=stride), nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu((self.bn3(self.conv3(x)) if self.project else x) + out)


class _ConvSubsampling(nn.Module):
    """(N, mels, T) -> (N, T / 4 or T / 2, width): two residual blocks, then a linear map of (channels x bands)."""

    def __init__(self, channels: int, width: int, n_mels: int, time_strides: tuple[int, int]):
        super().__init__()
        self.conv = nn.Sequential(_ResBlock2d(1, channels, (2, time_strides[0])),
                                  _ResBlock2d(channels, channels, (2, time_strides[1])))
        self.linear = nn.Linear(channels * (n_mels // 4), width)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv(mel.unsqueeze(1))  # (N, C, F, T)
        return self.linear(x.permute(0, 3, 1, 2).flatten(2))  # (N, T, C * F), channel-major as MuQ


class MuQEncoder(nn.Module):
    """MuQ's feature path: mel -> conv subsampling -> Wav2Vec2-Conformer layers (transformers' classes)."""

    def __init__(self, config: dict):
        super().__init__()
        from transformers import Wav2Vec2ConformerConfig
        from transformers.models.wav2vec2_conformer.modeling_wav2vec2_conformer import (
            Wav2Vec2ConformerEncoder,
        )

        n_fold = 100 // int(config.get("label_rate", 25))
        if n_fold not in (2, 4):
            raise TadaError(f"MuQ label_rate must be 25 or 50 (frames / 4 or / 2); got {config.get('label_rate')}")
        n_mels = int(config.get("n_mels", N_MELS))
        if n_mels != N_MELS:
            raise TadaError(f"MuQ computes {N_MELS} mel bands whatever its config says; got n_mels={n_mels}")
        stat = config.get("stat") or {}
        if "melspec_2048_mean" not in stat or "melspec_2048_std" not in stat:
            raise TadaError("MuQ config lacks stat.melspec_2048_mean / stat.melspec_2048_std (feature statistics)")
        width = int(config.get("encoder_dim", 1024))
        self.mel = MelFeatures(int(config.get("hop_length", 240)), stat["melspec_2048_mean"], stat["melspec_2048_std"])
        self.conv = _ConvSubsampling(int(config.get("conv_dim", 512)), width, n_mels, (2, 2) if n_fold == 4 else (2, 1))
        skip = {"model_type", "architectures", "torch_dtype", "transformers_version"}
        w2v2 = {k: v for k, v in (config.get("w2v2_config") or {}).items() if k not in skip}
        w2v2.update(num_hidden_layers=int(config.get("encoder_depth", 12)), hidden_size=width)
        conformer_config = Wav2Vec2ConformerConfig(**w2v2)
        conformer_config._attn_implementation = "sdpa"  # what a full model would pick; layers alone get none
        self.conformer = Wav2Vec2ConformerEncoder(conformer_config)
        del self.conformer.pos_conv_embed  # defined by the encoder class, never called by its forward

    def hidden_state(self, wavs: torch.Tensor, index: int) -> torch.Tensor:
        """(N, samples) -> (N, frames, width): hidden state `index` of [input, layer 1, ..., layer L-1,
        layer_norm(layer L)], the order `output_hidden_states` gives; layers past it are not run."""
        layers = self.conformer.layers
        if not -(len(layers) + 1) <= index <= len(layers):
            raise TadaError(f"MuQ hidden state {index} out of range for {len(layers)} layers")
        stop = index % (len(layers) + 1)
        x = self.conv(self.mel(wavs).to(self.conv.linear.weight.dtype))  # features in float32, then the model's dtype
        rel = self.conformer.embed_positions(x) if self.conformer.embed_positions is not None else None
        for layer in layers[:stop]:
            x = layer(x, attention_mask=None, relative_position_embeddings=rel)
        return self.conformer.layer_norm(x) if stop == len(layers) else x


# --------------------------------------------------------------------------------- MuLan transformer
class _LayerNorm(nn.Module):
    """Layer norm with a learned scale and no bias."""

    def __init__(self, dim: int):
        super().__init__()
        self.learned_gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.learned_gamma)


class _GEGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = x.chunk(2, dim=-1)
        return F.gelu(gate) * x


class _Attention(nn.Module):
    """Pre-norm self-attention with l2-normalised, learnably rescaled queries and keys and logit scale 8."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        self.norm = _LayerNorm(dim)
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_kv = nn.Linear(dim, 2 * heads * dim_head, bias=False)
        self.q_scale = nn.Parameter(torch.ones(dim_head))
        self.k_scale = nn.Parameter(torch.ones(dim_head))
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (self.to_q(x), *self.to_kv(x).chunk(2, -1)))
        q = F.normalize(q, dim=-1) * self.q_scale
        k = F.normalize(k, dim=-1) * self.k_scale
        out = F.scaled_dot_product_attention(q, k, v, scale=8.0)
        return self.to_out(out.transpose(1, 2).flatten(2))


class _Transformer(nn.Module):
    """MuLan's own transformer: residual attention and GEGLU feed-forward blocks, both pre-norm."""

    def __init__(self, dim: int, tf_depth: int, heads: int = 8, dim_head: int = 64, ff_mult: float = 4, **_dropouts):
        super().__init__()
        hidden = int(dim * ff_mult * 2 / 3)
        self.layers = nn.ModuleList(
            nn.ModuleList([
                _Attention(dim, heads, dim_head),
                nn.Sequential(_LayerNorm(dim), nn.Linear(dim, 2 * hidden, bias=False), _GEGLU(), nn.Identity(),
                              nn.Linear(hidden, dim, bias=False)),
            ])
            for _ in range(tf_depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return x


class _AudioTower(nn.Module):
    def __init__(self, encoder: MuQEncoder, layer: int, model_dim: int, transformer: dict):
        super().__init__()
        self.encoder, self.layer = encoder, layer
        self.proj = nn.Linear(model_dim, int(transformer["dim"]))
        self.transformer = _Transformer(**transformer)

    def forward(self, wavs: torch.Tensor) -> torch.Tensor:
        return self.transformer(self.proj(self.encoder.hidden_state(wavs, self.layer))).mean(dim=-2)


class _TextTower(nn.Module):
    def __init__(self, backbone: nn.Module, transformer: dict):
        super().__init__()
        self.backbone = backbone
        width, dim = backbone.config.hidden_size, int(transformer["dim"])
        self.proj = nn.Linear(width, dim) if width != dim else nn.Identity()
        self.transformer = _Transformer(**transformer)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).last_hidden_state
        return self.transformer(self.proj(hidden)).mean(dim=-2)


# ------------------------------------------------------------------------------------------ the model
class MuQMuLan(nn.Module):
    """MuQ-MuLan's two towers; `embed_audio` and `embed_text` give its 512-d (checkpoint's `dim_latent`) latents."""

    def __init__(self, config: dict, muq_config: dict, text_backbone: nn.Module, tokenizer):
        super().__init__()
        mulan, audio_model = config.get("mulan", {}), config.get("audio_model", {})
        self.sample_rate = int(mulan.get("sr", SAMPLE_RATE))
        if self.sample_rate != SAMPLE_RATE:
            raise TadaError(f"MuQ-MuLan works at {SAMPLE_RATE} Hz; config says sr={self.sample_rate}")
        self.clip_samples = int(round(self.sample_rate * float(mulan.get("clip_secs", 10))))
        encoder = MuQEncoder(muq_config)
        model_dim = int(audio_model.get("model_dim") or encoder.conformer.config.hidden_size)
        self.audio = _AudioTower(encoder, int(audio_model.get("use_layer_idx", -1)), model_dim,
                                 config["audio_transformer"])
        self.text = _TextTower(text_backbone, config["text_transformer"])
        dim_latent = int(mulan.get("dim_latent", 512))
        self.audio_to_latents = nn.Linear(int(config["audio_transformer"]["dim"]), dim_latent)
        self.text_to_latents = nn.Linear(int(config["text_transformer"]["dim"]), dim_latent)
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path = DEFAULT_CHECKPOINT) -> MuQMuLan:
        """Load a MuQ-MuLan checkpoint in the `muq` package's layout (hub id or folder). Its backbones are
        read from the repositories its config names (folders of those names next to a local checkpoint
        first). Backbone weights the checkpoint lacks come from those repositories, as the package does."""
        from transformers import AutoConfig, AutoTokenizer, XLMRobertaModel

        root = str(checkpoint)
        config = json.loads(_file(root, "config.json").read_text())
        for part in ("audio_model", "text_model", "audio_transformer", "text_transformer"):
            if part not in config:
                raise TadaError(f"{root}: config.json lacks {part!r}; is this a MuQ-MuLan checkpoint?")
        audio_repo = _backbone_repo(config["audio_model"]["name"], root)
        text_repo = _backbone_repo(config["text_model"]["name"], root)
        text_config = AutoConfig.from_pretrained(text_repo)
        if text_config.model_type != "xlm-roberta":
            raise TadaError(f"MuQ-MuLan text backbone must be XLM-RoBERTa; {text_repo!r} is {text_config.model_type!r}")
        tokenizer = AutoTokenizer.from_pretrained(text_repo)
        if len(tokenizer) > text_config.vocab_size or len(tokenizer) < 5:
            raise TadaError(f"tokenizer of {text_repo!r} has {len(tokenizer)} tokens for an embedding table of "
                             f"{text_config.vocab_size}: a real vocabulary was not loaded")
        muq_config = json.loads(_file(audio_repo, "config.json").read_text())
        model = cls(config, muq_config, XLMRobertaModel(text_config, add_pooling_layer=False), tokenizer)
        model.load_checkpoint(_weights(root), audio_repo=audio_repo, text_repo=text_repo)
        return model.eval()

    def load_checkpoint(self, state: dict[str, torch.Tensor], *, audio_repo: str, text_repo: str) -> None:
        """Load a `muq`-layout state dict. A backbone it omits entirely is read from its own repository, as
        the package builds its backbones from those repositories before it loads the checkpoint."""
        from transformers import XLMRobertaModel

        ours = _our_keys(state)
        backbones = (
            ("audio.encoder.", "mulan.audio.model.", lambda: _weights(audio_repo)),
            ("text.backbone.", "mulan.text.model.",
             lambda: XLMRobertaModel.from_pretrained(text_repo, add_pooling_layer=False).state_dict()),
        )
        for prefix, checkpoint_prefix, read in backbones:
            if not any(k.startswith(prefix) for k in ours):
                ours.update(_our_keys({checkpoint_prefix + k: v for k, v in read().items()}))
        missing, unexpected = self.load_state_dict(ours, strict=False)
        if unexpected:
            raise TadaError(f"MuQ-MuLan checkpoint has weights this port does not know: {sorted(unexpected)[:8]}")
        if missing:
            raise TadaError(f"MuQ-MuLan checkpoint lacks weights: {sorted(missing)[:8]}")

    @property
    def device(self) -> torch.device:
        return self.audio_to_latents.weight.device

    def clips(self, wav: torch.Tensor) -> torch.Tensor:
        """(samples,) -> (clips, clip_samples or fewer): consecutive clips; the rest is completed with the
        start of the audio (audio shorter than a clip: one clip of up to twice its length)."""
        n, size = wav.shape[-1], self.clip_samples
        pieces = [wav[start:start + size] for start in range(0, n - size + 1, size)]
        done = len(pieces) * size
        if done < n:
            pieces.append(torch.cat([wav[done:], wav[: size - (n - done)]]))
        return torch.stack(pieces)

    @torch.no_grad()
    def embed_audio(self, wavs: torch.Tensor, *, batch_size: int = 8) -> torch.Tensor:
        """(N, samples) 24 kHz mono -> (N, dim_latent): the mean of each row's unit clip latents."""
        if wavs.ndim != 2 or wavs.shape[-1] == 0:
            raise TadaError(f"wavs must be (batch, samples) with samples > 0; got shape {tuple(wavs.shape)}")
        clips = torch.stack([self.clips(w) for w in wavs])  # every row has the same clip count and length
        flat = clips.flatten(0, 1).to(self.device)
        latents = torch.cat([
            F.normalize(self.audio_to_latents(self.audio(flat[i:i + batch_size])), dim=-1)
            for i in range(0, len(flat), batch_size)
        ])
        return latents.unflatten(0, clips.shape[:2]).mean(dim=1)

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """(T, dim_latent) unit latents, each text embedded alone (see the module docstring)."""
        rows = []
        for text in texts:
            ids = self.tokenizer(text, truncation=True, return_tensors="pt")["input_ids"].to(self.device)
            rows.append(F.normalize(self.text_to_latents(self.text(ids)), dim=-1))
        return torch.cat(rows)


class MuQScorer:
    """`Scorer` over MuQ-MuLan: unit-norm audio and text embeddings in one space."""

    name = "muq"
    sample_rate = SAMPLE_RATE

    def __init__(self, model: MuQMuLan, checkpoint: str = "custom"):
        self.model = model.eval()
        self.checkpoint = checkpoint

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path = DEFAULT_CHECKPOINT, *,
                        device: str | torch.device = "cpu") -> MuQScorer:
        """MuQ-MuLan weights by hub id (default `OpenMuQ/MuQ-MuLan-large`) or folder."""
        return cls(MuQMuLan.from_pretrained(checkpoint).to(device), checkpoint=str(checkpoint))

    @torch.no_grad()
    def embed_audio(self, audio: Audio) -> torch.Tensor:
        """(B, E) unit-norm float32 embeddings of the audio, mixed to mono and resampled to 24 kHz."""
        if not isinstance(audio, Audio):
            raise TadaError(f"audio must be an Audio; got {type(audio).__name__}")
        return F.normalize(self.model.embed_audio(audio.mono_at(SAMPLE_RATE)).float().cpu(), dim=-1)

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """(T, E) unit-norm float32 text embeddings."""
        if isinstance(texts, str) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise TadaError(f"texts must be a non-empty list of non-empty strings; got {texts!r}")
        return self.model.embed_text(list(texts)).float().cpu()

    def similarity(self, audio: Audio, texts: list[str]) -> torch.Tensor:
        """(B, T) cosine similarity of every audio row with every text."""
        return cosine_similarity(self.embed_audio(audio), self.embed_text(texts))

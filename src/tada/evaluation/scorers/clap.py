"""CLAP audio-text scorer (Wu et al. 2022) through transformers' `ClapModel`, for the paper's alignment
measurements (delta alignment and smoothness, sec. 4.2; impact scores, eq. 9).

Audio is mixed to mono, resampled to 48 kHz with soxr and cut into fixed windows of the feature
extractor's length (10 s): windows start at 0, W, 2W, ...; a remainder shorter than W is covered by one
more window ending exactly at the last sample; audio no longer than W is one window, repeat-padded by the
feature extractor. Window embeddings are averaged and renormalised. No random crop is ever taken, so the
same audio always gives the same embedding (the feature extractor's random choices, `rand_trunc` crops and
the fusion `is_longer` coin, are never reached or are overridden).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import (
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    ClapProcessor,
    RobertaTokenizer,
)

from tada.audio import Audio
from tada.errors import MissingFileError, TadaError
from tada.evaluation.scorers.base import cosine_similarity

DEFAULT_CHECKPOINT = "laion/larger_clap_music"
MIN_VOCAB = 100
MAX_PROMPT_COSINE = 0.99
CHECK_PROMPTS = (
    "a jazz piece with piano",
    "fast electronic dance music",
    "a slow sad song sung by a woman",
    "heavy metal with distorted guitars",
)
# Words of the offline test tokenizer, one token each (besides single characters).
_TINY_WORDS = (
    "a an the with and of in by for to slow fast jazz piano song sung woman man heavy metal distorted "
    "guitars guitar electronic dance music sad happy drums bass rock pop"
).split()


def window_starts(n_samples: int, window: int) -> list[int]:
    """Start samples of the fixed windows that cover `n_samples` (see module docstring)."""
    if n_samples <= 0 or window <= 0:
        raise TadaError(f"need positive lengths; got n_samples={n_samples}, window={window}")
    if n_samples <= window:
        return [0]
    starts = list(range(0, n_samples - window + 1, window))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return starts


class ClapScorer:
    """`Scorer` over a CLAP model: unit-norm audio and text embeddings in CLAP's joint space.

    Build with `from_pretrained(checkpoint)` (hub id or local folder) or `random(seed)` (offline tests).
    At construction the tokenizer and text tower are checked: a vocabulary of at least 100 tokens that
    splits a probe prompt into real tokens, and text embeddings of four different prompts whose pairwise
    cosine stays below 0.99 (`check=False` skips both).
    """

    name = "clap"

    def __init__(
        self,
        model: ClapModel,
        feature_extractor: ClapFeatureExtractor,
        tokenizer,
        *,
        checkpoint: str = "custom",
        batch_size: int = 8,
        check: bool = True,
    ):
        if not isinstance(model, ClapModel):
            raise TadaError(f"model must be a transformers ClapModel; got {type(model).__name__}")
        if batch_size < 1:
            raise TadaError(f"batch_size must be >= 1; got {batch_size}")
        self.model = model.eval()
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.checkpoint = checkpoint
        self.batch_size = batch_size
        self.sample_rate = int(feature_extractor.sampling_rate)
        self.window = int(feature_extractor.nb_max_samples)
        self.fused = bool(model.config.audio_config.enable_fusion)
        if check:
            self._check_tokenizer()
            self._check_text_embeddings()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @classmethod
    def from_pretrained(
        cls, checkpoint: str | Path = DEFAULT_CHECKPOINT, *, device: str | torch.device = "cpu", **kwargs
    ) -> "ClapScorer":
        """Load a CLAP checkpoint (hub id such as laion/larger_clap_music or laion/clap-htsat-unfused, or a
        folder written by `save_pretrained`). Extra keyword arguments go to the constructor."""
        try:
            model = ClapModel.from_pretrained(str(checkpoint))
            processor = ClapProcessor.from_pretrained(str(checkpoint))
        except OSError as err:
            raise MissingFileError(
                f"cannot load CLAP checkpoint {str(checkpoint)!r}: {err}. Pass a hub id reachable from here "
                "(downloads need HF_HUB_OFFLINE unset) or a local folder with the model and processor files."
            ) from err
        return cls(
            model.to(device),
            processor.feature_extractor,
            processor.tokenizer,
            checkpoint=str(checkpoint),
            **kwargs,
        )

    @classmethod
    def random(cls, seed: int = 0, tiny: bool = True, **kwargs) -> "ClapScorer":
        """Random weights built offline, for tests: a small word-level tokenizer and, with `tiny`, a CLAP of
        about 50k parameters (otherwise the default CLAP sizes). Weights are drawn from N(0, 1/fan_in) with one
        seeded generator, so the same seed gives the same scorer."""
        tokenizer = _tiny_tokenizer()
        text = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
        if tiny:
            text.update(
                hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=130
            )
            audio = {
                "depths": [1, 1],
                "num_attention_heads": [2, 2],
                "patch_embeds_hidden_size": 16,
                "hidden_size": 32,
                "window_size": 8,
            }
            config = ClapConfig(text_config=text, audio_config=audio, projection_dim=16)
        else:
            config = ClapConfig(text_config=text)
        model = ClapModel(config)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim >= 2:
                    p.copy_(torch.randn(p.shape, generator=gen) / p[0].numel() ** 0.5)
        return cls(model, ClapFeatureExtractor(), tokenizer, checkpoint=f"random-seed{seed}", **kwargs)

    def save_pretrained(self, folder: str | Path) -> None:
        """Write model and processor so that `from_pretrained(folder)` restores this scorer."""
        self.model.save_pretrained(folder)
        ClapProcessor(feature_extractor=self.feature_extractor, tokenizer=self.tokenizer).save_pretrained(folder)

    # -------------------------------------------------------------- embeddings

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """(T, E) unit-norm float32 text embeddings."""
        if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
            raise TadaError(f"texts must be a non-empty list of strings; got {texts!r}")
        out = []
        for i in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(list(texts[i : i + self.batch_size]), padding=True, truncation=True, return_tensors="pt")
            tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
            out.append(self.model.get_text_features(**tokens).pooler_output.float().cpu())
        return torch.cat(out)

    def windows(self, audio: Audio) -> tuple[list[np.ndarray], list[int]]:
        """Mono 48 kHz windows of every row and, for each window, the row it belongs to."""
        if not isinstance(audio, Audio):
            raise TadaError(f"audio must be an Audio; got {type(audio).__name__}")
        mono = audio.mono_at(self.sample_rate, torch.float64).numpy()
        pieces, owners = [], []
        for row, wav in enumerate(mono):
            for start in window_starts(wav.shape[0], self.window):
                pieces.append(wav[start : start + self.window])
                owners.append(row)
        return pieces, owners

    @torch.no_grad()
    def embed_audio(self, audio: Audio) -> torch.Tensor:
        """(B, E) unit-norm float32 audio embeddings: mean of the row's window embeddings, renormalised."""
        pieces, owners = self.windows(audio)
        window_emb = []
        for i in range(0, len(pieces), self.batch_size):
            batch = pieces[i : i + self.batch_size]
            feats = self.feature_extractor(
                batch,
                sampling_rate=self.sample_rate,
                truncation="fusion" if self.fused else "rand_trunc",
                return_tensors="pt",
            )
            # Every window fits the extractor's length, so none is "longer"; this also overrides the
            # extractor's random pick of one "longer" row in fusion mode.
            is_longer = torch.zeros(len(batch), 1, dtype=torch.bool)
            emb = self.model.get_audio_features(
                input_features=feats["input_features"].to(self.device), is_longer=is_longer.to(self.device)
            ).pooler_output
            window_emb.append(emb.float().cpu())
        window_emb = torch.cat(window_emb)
        sums = torch.zeros(len(audio), window_emb.shape[1]).index_add_(0, torch.tensor(owners), window_emb)
        return torch.nn.functional.normalize(sums, dim=-1)

    def similarity(self, audio: Audio, texts: list[str]) -> torch.Tensor:
        """(B, T) cosine similarity of every audio row with every text."""
        return cosine_similarity(self.embed_audio(audio), self.embed_text(texts))

    # -------------------------------------------------------------- load-time checks

    def _check_tokenizer(self) -> None:
        size = len(self.tokenizer)
        special = set(self.tokenizer.all_special_ids)
        ids = self.tokenizer(CHECK_PROMPTS[0])["input_ids"]
        real = [i for i in ids if i not in special]
        if size < MIN_VOCAB or len(real) < 3:
            raise TadaError(
                f"CLAP tokenizer of {self.checkpoint!r} has {size} tokens and splits {CHECK_PROMPTS[0]!r} into "
                f"{len(real)} non-special tokens; a real vocabulary has at least {MIN_VOCAB} tokens. Offline loading "
                "of a missing checkpoint can yield such a stub: check the checkpoint id or folder."
            )

    def _check_text_embeddings(self) -> None:
        emb = self.embed_text(list(CHECK_PROMPTS))
        norms = emb.norm(dim=-1)
        if not torch.all(torch.isfinite(emb)) or not torch.allclose(norms, torch.ones_like(norms), atol=1e-3):
            raise TadaError(f"CLAP text embeddings of {self.checkpoint!r} are not finite unit vectors (norms {norms.tolist()})")
        cos = emb @ emb.T
        off = cos[~torch.eye(len(emb), dtype=torch.bool)]
        if off.max() >= MAX_PROMPT_COSINE:
            raise TadaError(
                f"CLAP text embeddings of {self.checkpoint!r} have collapsed: different prompts reach cosine "
                f"{off.max():.4f} (limit {MAX_PROMPT_COSINE}). The weights or the tokenizer are broken for this checkpoint."
            )


def _tiny_tokenizer() -> RobertaTokenizer:
    """Byte-level BPE tokenizer over printable ASCII plus one token per word of `_TINY_WORDS`."""
    tokens = ["<s>", "<pad>", "</s>", "<unk>"] + [chr(i) for i in range(33, 127)] + ["\u0120"]
    merges: list[tuple[str, str]] = []
    for word in _TINY_WORDS:
        current = "\u0120"  # byte-level marker of a leading space
        for ch in word:
            merge = (current, ch)
            current += ch
            if merge not in merges:
                merges.append(merge)
            if current not in tokens:
                tokens.append(current)
    vocab = {t: i for i, t in enumerate([*tokens, "<mask>"])}
    return RobertaTokenizer(vocab=vocab, merges=merges, add_prefix_space=True, model_max_length=128)

"""The Scorer protocol: audio-text similarity used by localization (eq. 9) and evaluation."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from tada.audio import Audio


@runtime_checkable
class Scorer(Protocol):
    """Anything that embeds audio and text into one space.

    embed_audio(audio) -> (B, E) unit-norm float32 tensor
    embed_text(texts)  -> (T, E) unit-norm float32 tensor
    similarity(audio, texts) -> (B, T) cosine similarities
    """

    name: str

    def embed_audio(self, audio: Audio) -> torch.Tensor: ...

    def embed_text(self, texts: list[str]) -> torch.Tensor: ...

    def similarity(self, audio: Audio, texts: list[str]) -> torch.Tensor: ...


def cosine_similarity(audio_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """(B, E) x (T, E) -> (B, T) cosine similarity; inputs need not be normalized."""
    a = torch.nn.functional.normalize(audio_emb.float(), dim=-1)
    t = torch.nn.functional.normalize(text_emb.float(), dim=-1)
    return a @ t.T

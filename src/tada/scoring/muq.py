"""MuQ-MuLan audio-text scorer (Zhu et al. 2025), the paper's second alignment model (sec. 4.2, app. B.3).

Optional: it needs the `muq` package, imported only when a `MuQScorer` is built. Decision: we wrap the
package rather than port it. Its inference path spans a conformer audio encoder, nnAudio features, an
XLM-RoBERTa text tower and x-clip projections; a port would be a second copy of that model to keep exact.
The cost: muq 0.1.0 pulls torchaudio and fails at run time on transformers 5 (its text config lacks
`_attn_implementation`), so today it runs only where muq's own requirements hold; a version of muq that
supports transformers 5 works here unchanged. `MuQScorer.from_pretrained` turns both failures into errors
that say what to install.

Audio is mixed to mono and resampled to 24 kHz with soxr; muq itself cuts it into consecutive 10 s clips
(the last one wrapped around to the start) and averages the clip embeddings.
"""

from __future__ import annotations

import torch

from tada.audio import Audio
from tada.scoring.base import cosine_similarity

DEFAULT_CHECKPOINT = "OpenMuQ/MuQ-MuLan-large"
SAMPLE_RATE = 24000
INSTALL_HINT = (
    "MuQ-MuLan scoring needs the optional `muq` package (pip install muq). muq 0.1.0 requires torchaudio and "
    "transformers<5, which conflict with this package's core install; install it where those hold "
    "(a separate environment with a torchaudio build matching its torch), or use the 'clap' scorer."
)


def _muq_class():
    try:
        from muq import MuQMuLan
    except (ImportError, OSError) as err:  # torchaudio built for another torch fails with OSError
        raise ImportError(f"{INSTALL_HINT} (import failed: {err})") from err
    return MuQMuLan


class MuQScorer:
    """`Scorer` over MuQ-MuLan: unit-norm 512-d audio and text embeddings in one space."""

    name = "muq"
    sample_rate = SAMPLE_RATE

    def __init__(self, mulan: torch.nn.Module, checkpoint: str = "custom"):
        self.mulan = mulan.eval()
        self.checkpoint = checkpoint

    @classmethod
    def from_pretrained(cls, checkpoint: str = DEFAULT_CHECKPOINT, *, device: str | torch.device = "cpu") -> "MuQScorer":
        """Load MuQ-MuLan weights (hub id or folder) through the `muq` package."""
        mulan_class = _muq_class()
        try:
            mulan = mulan_class.from_pretrained(checkpoint)
        except AttributeError as err:
            if "_attn_implementation" in str(err):
                raise ImportError(f"{INSTALL_HINT} (this muq fails on the installed transformers: {err})") from err
            raise
        except OSError as err:
            raise FileNotFoundError(f"cannot load MuQ-MuLan checkpoint {checkpoint!r}: {err}") from err
        return cls(mulan.to(device), checkpoint=checkpoint)

    @property
    def device(self) -> torch.device:
        return next(self.mulan.parameters()).device

    @torch.no_grad()
    def embed_audio(self, audio: Audio) -> torch.Tensor:
        """(B, E) unit-norm float32 audio embeddings of mono 24 kHz audio."""
        if not isinstance(audio, Audio):
            raise TypeError(f"audio must be an Audio; got {type(audio).__name__}")
        wavs = audio.mono_at(SAMPLE_RATE)
        emb = self.mulan(wavs=wavs.to(self.device))
        return torch.nn.functional.normalize(emb.float().cpu(), dim=-1)

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """(T, E) unit-norm float32 text embeddings."""
        if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
            raise TypeError(f"texts must be a non-empty list of strings; got {texts!r}")
        return torch.nn.functional.normalize(self.mulan(texts=list(texts)).float().cpu(), dim=-1)

    def similarity(self, audio: Audio, texts: list[str]) -> torch.Tensor:
        """(B, T) cosine similarity of every audio row with every text."""
        return cosine_similarity(self.embed_audio(audio), self.embed_text(texts))

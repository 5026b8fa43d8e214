"""Token-embedding steering: add a concept direction at one word's token of the prompt.

Source: token-level arithmetic on text-encoder outputs, a training-free baseline of the TADA authors' steering
comparison (luk-st/steer-audio); implemented here from the description below.

Maths. Over contrastive pairs that differ only in the concept word (``"... with a fast tempo"`` /
``"... with a slow tempo"``), each site's direction is

    d_s = mean_i ( mean_{t in concept word of P_i} c_s(P_i)[t]  -  mean_{t in counter word of N_i} c_s(N_i)[t] ),

with ``c_s(prompt)[t]`` the text encoder's state of token t as site s receives it (after the denoiser's own
per-token projection, which is the same at every site of the shipped families). At generation, the neutral
(generation) prompt's context at each chosen site becomes ``c_s[t] + alpha * d_s`` at the tokens of a
*generic* word of that prompt ("instrument" for an instrument concept, "song" for tempo and mood), and stays
as it was at every other token. A prompt without that word (most of the evaluation prompts) takes the direction
at its last token instead, with a warning naming it (``fallback="last"``, the default), or is refused
(``fallback="refuse"``).

Families: those whose site context holds the tokenizer's tokens at their own positions (the toy, Stable
Audio); others are refused. Cost: as plain generation, plus one prompt encoding (no extra denoiser rows).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence

import torch

from tada.engine import Conditioning, PatchContext
from tada.errors import TadaError
from tada.methods.base import (Steering, check_alpha_list, choose_sites, concept_prompts, encode_together, register,
                               site_info)

INSTRUMENTS = {"piano", "drums", "flute", "guitar", "maracas", "trumpet", "violin"}


def default_generic(concept: str | None) -> str:
    return "instrument" if concept in INSTRUMENTS else "song"


def _tokenizer(model):
    from tada.models.stable_audio import StableAudioModel
    from tada.models.toy import ToyModel

    if not isinstance(model, (ToyModel, StableAudioModel)):
        raise TadaError(f"token-embedding steering needs a family whose cross-attention context holds the prompt's "
                        f"tokens at their own positions (toy, Stable Audio); {model.name} packs its context otherwise")
    tok = model.pipe.tokenizer
    if not getattr(tok, "is_fast", False):
        raise TadaError(f"{model.name}'s tokenizer gives no character offsets; token positions cannot be found")
    return tok


def token_positions(model, prompt: str, start: int, end: int) -> list[int]:
    """Positions of the tokens of `prompt` that overlap its characters ``start:end``."""
    enc = _tokenizer(model)(prompt, return_offsets_mapping=True, truncation=True)
    out = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a < end and b > start]
    if not out:
        raise TadaError(f"no token of {prompt!r} covers characters {start}:{end} ({prompt[start:end]!r})")
    return out


def differing_span(pos: str, neg: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Character spans of the words in which `pos` and `neg` differ (common leading and trailing words removed)."""
    pw, nw = list(re.finditer(r"\S+", pos)), list(re.finditer(r"\S+", neg))
    i = 0
    while i < min(len(pw), len(nw)) and pw[i].group() == nw[i].group():
        i += 1
    j = 0
    while j < min(len(pw), len(nw)) - i and pw[-1 - j].group() == nw[-1 - j].group():
        j += 1
    if i == len(pw) - j or i == len(nw) - j:
        raise TadaError(f"the pair ({pos!r}, {neg!r}) must differ in a word on each side")
    return (pw[i].start(), pw[len(pw) - 1 - j].end()), (nw[i].start(), nw[len(nw) - 1 - j].end())


FALLBACKS = ("last", "refuse")


def word_span(prompt: str, word: str) -> tuple[int, int]:
    m = re.search(rf"\b{re.escape(word)}\b", prompt, flags=re.IGNORECASE)
    if m is None:
        raise TadaError(f"token-embedding steering adds its direction at the word {word!r}, which the prompt "
                        f"{prompt!r} does not contain; name another word with the generic setting")
    return m.start(), m.end()


def steer_positions(model, prompt: str, word: str, fallback: str = "refuse") -> list[int]:
    """Token positions of `word` in `prompt`; where the prompt (as the encoder keeps it) has none, its last token
    with a warning (`fallback` "last") or an error ("refuse")."""
    try:
        return token_positions(model, prompt, *word_span(prompt, word))
    except TadaError:
        if fallback != "last":
            raise
    offsets = _tokenizer(model)(prompt, return_offsets_mapping=True, truncation=True)["offset_mapping"]
    kept = [i for i, (a, b) in enumerate(offsets) if b > a]
    if not kept:
        raise TadaError(f"the prompt {prompt!r} has no token to steer")
    warnings.warn(f"token-embedding steering: the prompt {prompt!r} has no word {word!r}; the direction goes at its "
                  "last token", stacklevel=3)
    return kept[-1:]


@register("token_embedding", "Token-embedding steering: a direction averaged over pairs at the concept word's token, "
          "added with strength alpha at a generic word's token of the prompt (\"instrument\", \"song\")",
          cost="as plain: no extra denoiser rows (one prompt encoding)")
class TokenEmbedding(Steering):
    """tensors: ``site.{i}`` = the direction ``d_s`` (context width of site i)."""

    @classmethod
    def fit(cls, model, concept, sites=None, generic: str | None = None, fallback: str = "last",
            n_pairs: int | None = 16, catalogue=None, top_k: int = 2) -> "TokenEmbedding":
        if fallback not in FALLBACKS:
            raise TadaError(f"fallback must be one of {', '.join(FALLBACKS)}; got {fallback!r}")
        cp = concept_prompts(concept, n_pairs, catalogue)
        chosen = choose_sites(model, sites, top_k, cp.name)
        if not chosen:
            raise TadaError("choose at least one site")
        pos = [p for p, _ in cp.pairs]
        neg = [n for _, n in cp.pairs]
        c_pos, c_neg = encode_together(model, [pos, neg])
        spans = [differing_span(p, n) for p, n in cp.pairs]
        pos_tokens = [token_positions(model, p, *s[0]) for p, s in zip(pos, spans)]
        neg_tokens = [token_positions(model, n, *s[1]) for n, s in zip(neg, spans)]
        tensors = {}
        for s in chosen:
            cp_s, cn_s = c_pos.contexts[(s, "cond")][0].double(), c_neg.contexts[(s, "cond")][0].double()
            diffs = [cp_s[i, pt].mean(0) - cn_s[i, nt].mean(0)
                     for i, (pt, nt) in enumerate(zip(pos_tokens, neg_tokens))]
            tensors[f"site.{s}"] = torch.stack(diffs).mean(0).float()
        settings = {"generic": generic or default_generic(cp.name), "fallback": fallback, "pairs": len(cp.pairs)}
        return cls(tensors, site_info(model, chosen), settings, cp, model.name)

    def check_model(self, model) -> None:
        super().check_model(model)
        for s in self.sites:
            width = self.tensors[f"site.{s}"].shape[-1]
            if width != model.sites[s].context_dim:
                raise TadaError(f"this token_embedding direction for site {s} has context width {width}; "
                                f"{model.name}'s site {s} attends to width {model.sites[s].context_dim}")

    def interventions(self, model, alpha, prompts: Sequence[str], steps, duration=None, copy="cond"):
        alphas = check_alpha_list(alpha, len(prompts))
        if not any(alphas):
            return []
        generic = self.settings["generic"]
        fallback = self.settings.get("fallback", "refuse")
        positions = [steer_positions(model, p, generic, fallback) if a else [] for p, a in zip(prompts, alphas)]
        (neutral,) = encode_together(model, [prompts], duration)
        contexts = {}
        for s in self.sites:
            ctx, mask = neutral.contexts[(s, "cond")]
            new = ctx.double()
            d = self.tensors[f"site.{s}"].double()
            for b, (a, pos) in enumerate(zip(alphas, positions)):
                if a:
                    new[b, pos] = new[b, pos] + a * d
            contexts[(s, "cond")] = (new.to(ctx.dtype), mask)
        source = Conditioning(list(prompts), contexts)
        return [PatchContext(source, [self.sites if a else [] for a in alphas], copy="cond")]

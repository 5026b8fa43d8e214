"""Text-embedding steering: move each chosen site's context along the positive-minus-negative context.

Source: arithmetic on the text conditioning of contrastive prompts, a training-free baseline of the TADA
authors' steering comparison (luk-st/steer-audio); implemented here from the description below, on the
context each site attends to (the text encoder's states as the pipeline hands them to cross-attention).

Maths. For a generation prompt (the neutral one) and the concept's positive and negative prompts filled
with it (position-aligned: the templates differ only in the concept word), each chosen site's conditional
context becomes ``c' = c_neutral + alpha * (c_pos - c_neg)`` from step ``start`` on (the sum is taken in
float64 and rounded once). The attention mask keeps every token any of the three keeps. Every site: the whole
text path; some sites: localized.

Cost: as plain generation, plus encoding three prompts per row once (no extra denoiser rows).
"""

from __future__ import annotations

import torch

from tada.engine import Conditioning, PatchContext
from tada.engine.patch import _keep_mask, _mask_as
from tada.errors import TadaError
from tada.methods.base import PromptMethod, register


@register("text_embedding", "Text-embedding steering: each chosen site's context becomes c_neutral + alpha (c_pos - "
          "c_neg) (position-aligned prompts), from a chosen step on",
          cost="as plain: no extra denoiser rows (three prompt encodings)", alphas=(-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0))
class TextEmbedding(PromptMethod):
    defaults = {"template": 0, "start": 0}

    def interventions(self, model, alpha, prompts, steps, duration=None, copy="cond"):
        got = self.encoded(model, alpha, prompts, duration, neutral=True)
        if got is None:
            return []
        alphas, (c_n, c_p, c_g) = got
        a = torch.tensor(alphas, dtype=torch.float64)
        contexts = {}
        for s in self.sites:
            (n, n_mask), (p, p_mask), (g, g_mask) = (c.contexts[(s, "cond")] for c in (c_n, c_p, c_g))
            if not (n.shape == p.shape == g.shape):
                raise TadaError(f"site {s}: the neutral, positive and negative contexts differ in shape "
                                f"({tuple(n.shape)}, {tuple(p.shape)}, {tuple(g.shape)}); text-embedding steering "
                                "needs position-aligned prompts of one token length")
            ctx = (n.double() + a.view(-1, *([1] * (n.ndim - 1))) * (p.double() - g.double())).to(n.dtype)
            mask = None
            if n_mask is not None:
                keep = _keep_mask(n_mask, n) | _keep_mask(p_mask, p) | _keep_mask(g_mask, g)
                mask = _mask_as(keep, n_mask)
            contexts[(s, "cond")] = (ctx, mask)
        source = Conditioning(list(prompts), contexts)
        sites = [self.sites if x else [] for x in alphas]
        return [PatchContext(source, sites, copy="cond", start=int(self.settings.get("start", 0)))]

"""FreeSliders: training-free concept sliders from two extra conditional predictions.

Source: "FreeSliders: Training-Free, Modality-Agnostic Concept Sliders" (arXiv 2511.00103).

Maths. Past a split step ``start``, the denoiser's prediction for the generation (neutral) prompt is
replaced by ``eps_guided(neutral) + alpha * (eps(x_t, c_pos) - eps(x_t, c_neg))``: the neutral prompt's
guided prediction plus alpha times the difference of two extra conditional predictions at the same noisy
input and timestep, one with the positive prompt and one with the negative prompt. Localized: the extra
passes differ from the neutral pass only at the chosen sites (there they see the positive/negative context,
elsewhere the neutral one). Engine: :class:`tada.engine.passes.ExtraPasses`.

Cost: two extra conditional rows per sample and step, batched into the same denoiser call: 4 rows per
sample instead of 2 with classifier-free guidance (about 2x the denoiser work), 3 instead of 1 without.
"""

from __future__ import annotations

from tada.engine import ExtraPasses
from tada.methods.base import PromptMethod, register


@register("freesliders", "FreeSliders: past a split step, the neutral guided prediction plus alpha (eps_pos - eps_neg) "
          "from two extra conditional passes; localized: the extra passes differ only at the chosen sites",
          cost="2 extra conditional rows per sample per step, batched in the same call (~2x with guidance)")
class FreeSliders(PromptMethod):
    defaults = {"template": 0, "start": 0}

    def interventions(self, model, alpha, prompts, steps, duration=None, copy="cond"):
        got = self.encoded(model, alpha, prompts, duration)
        if got is None:
            return []
        alphas, (c_p, c_g) = got
        return [ExtraPasses(c_p, c_g, sites=self.sites, alpha=alphas, start=int(self.settings.get("start", 0)))]

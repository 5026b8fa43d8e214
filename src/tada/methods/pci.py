"""Prompt injection (PCI): switch the prompt for the last denoising steps.

Source: prompt switching during sampling, a training-free baseline of the TADA authors' steering comparison
(their repository luk-st/steer-audio names it PCI); implemented here from the description below.

Maths. With N denoising steps and an integer strength alpha, the generation prompt (the neutral prompt)
conditions steps ``0 .. N - |alpha| - 1`` and the positive prompt (alpha > 0) or the negative prompt
(alpha < 0) conditions the last ``|alpha|`` steps: every site's context becomes that prompt's from step
``N - |alpha|`` on. ``|alpha| = N`` is generating the positive/negative prompt; ``alpha = 0`` is the
neutral one. Localized: the switch reaches only the chosen sites (context patching, sec. 3, from that step).

Cost: as plain generation, plus encoding the injected prompts once (no extra denoiser rows).
"""

from __future__ import annotations

from tada.engine import PatchContext
from tada.errors import TadaError
from tada.methods.base import PromptMethod, check_alpha_list, encode_together, register, warn_identical


@register("pci", "Prompt injection: the neutral prompt for the first N-|alpha| steps, then the positive (alpha>0) "
          "or negative (alpha<0) prompt for the last |alpha| (alpha = steps); localized: only at the chosen sites",
          cost="as plain: no extra denoiser rows (one prompt encoding)", alphas=(-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0), per_step=True)
class PromptInjection(PromptMethod):
    defaults = {"template": 0}

    def interventions(self, model, alpha, prompts, steps, duration=None, copy="cond"):
        alphas = [int(a) for a in check_alpha_list(alpha, len(prompts), integer=True)]
        if not any(alphas):
            return []
        for a in alphas:
            if abs(a) > steps:
                raise TadaError(f"PCI's alpha is a number of steps, at most the {steps} steps of the generation; "
                                f"got {a}")
        pos, neg = self.prompts_for(prompts)
        injected = [p if a > 0 else (n if a < 0 else q) for a, p, n, q in zip(alphas, pos, neg, prompts)]
        warn_identical(*encode_together(model, [pos, neg], duration), prompts, self.method)
        (source,) = encode_together(model, [injected], duration)
        sites = [self.sites if a else [] for a in alphas]
        return [PatchContext(source, sites, copy=copy, start=[steps - abs(a) for a in alphas])]

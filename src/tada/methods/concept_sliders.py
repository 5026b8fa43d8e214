"""Concept Sliders: a low-rank adapter trained so the neutral prompt's prediction moves along the concept.

Source: Gandikota et al., "Concept Sliders: LoRA Adaptors for Precise Control in Diffusion Models"
(arXiv 2311.12090).

Maths. Low-rank adapters ``W -> W + s B A`` (rank r, ``s = lora_alpha / r``, ``B`` initialised to zero) on the
attention projections (``to_q, to_k, to_v, to_out.0``) of the chosen sites (every site, or only the chosen ones:
localized) are trained so that, on states x_t of real neutral-prompt trajectories,

    eps_adapted(x_t, c_neutral)  ->  eps(x_t, c_neutral) + eta * (eps(x_t, c_pos) - eps(x_t, c_neg)),

minimising the mean squared error on the conditional prediction; the right-hand side uses the frozen model,
the positive/negative predictions coming from the same call with every site given the positive/negative
context. At generation the adapter is applied at strength alpha: ``W x + alpha s B A x`` on every guidance
copy (an adapted model), one alpha per sample; alpha = 0 is the base model. The adapter is applied through the
engine (:class:`tada.engine.LowRankDelta`), not by replacing modules, so one batch can hold an alpha sweep.

Training is resumable: with ``checkpoint=`` the adapter, the optimiser and the iteration are saved every
``save_every`` iterations, and a fit with the same settings continues from there.

Cost: at generation, as plain generation plus the low-rank products (no extra denoiser rows); training costs
one neutral generation per prompt to record states, three frozen calls per state, and one forward and
backward call per iteration.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from tada.engine import LowRankDelta, PatchContext, RecordCalls, replay
from tada.engine.lowrank import projection
from tada.errors import TadaError
from tada.methods.base import (Steering, check_alpha_list, choose_sites, concept_prompts, encode_together, register,
                               site_info)
from tada.progress import progress_bar

PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")


def _projections(site_module) -> list[str]:
    out = []
    for name in PROJECTIONS:
        try:
            projection(site_module, name)
            out.append(name)
        except TadaError:
            pass
    if not out:
        raise TadaError("the site has none of the projections to_q, to_k, to_v, to_out.0")
    return out


@register("concept_sliders", "Concept Sliders: a LoRA on the chosen sites' attention projections trained so the "
          "neutral prediction moves by eta (eps_pos - eps_neg); alpha scales the adapter",
          cost="as plain at generation (low-rank products only); training: minutes on the toy")
class ConceptSliders(Steering):
    """tensors: ``site.{i}.{projection}.A`` (r, in) and ``.B`` (out, r)."""

    @classmethod
    def fit(cls, model, concept, sites=None, rank: int = 4, lora_alpha: float | None = None, eta: float = 1.0,
            iterations: int = 200, lr: float = 1e-3, n_prompts: int = 4, steps: int | None = None, seed: int = 0,
            template: int = 0, checkpoint: str | Path | None = None, save_every: int = 25, catalogue=None,
            top_k: int = 2) -> "ConceptSliders":
        from tada.runs import content_hash

        cp = concept_prompts(concept, None, catalogue)
        chosen = choose_sites(model, sites, top_k, cp.name)
        if not chosen:
            raise TadaError("choose at least one site")
        if rank < 1 or iterations < 0 or n_prompts < 1:
            raise TadaError(f"rank and n_prompts must be >= 1 and iterations >= 0; got {rank}, {n_prompts}, {iterations}")
        steps = steps or model.default_steps
        lora_alpha = float(rank if lora_alpha is None else lora_alpha)
        neutral = cp.neutral_prompts()[:n_prompts]
        pos, neg = cp.positive_negative(neutral, template)
        settings = {"rank": rank, "lora_alpha": lora_alpha, "eta": eta, "iterations": iterations, "lr": lr,
                    "n_prompts": len(neutral), "steps": steps, "seed": seed, "template": template}
        key = content_hash("concept-sliders", model.name, chosen, settings, neutral, pos, neg)

        # states of real neutral trajectories, and the frozen targets at each of them
        record = RecordCalls()
        with model.common_text_length(neutral + pos + neg):  # so the three prompts' contexts fit each other
            model.generate(neutral, list(range(seed, seed + len(neutral))), steps=steps, interventions=[record])
            c_pos, c_neg = encode_together(model, [pos, neg])
        b = len(neutral)
        with torch.no_grad():
            targets = []
            for call in record.calls:
                e_n = replay(model, call, b)
                e_p = replay(model, call, b, [PatchContext(c_pos, "all")])
                e_g = replay(model, call, b, [PatchContext(c_neg, "all")])
                targets.append((e_n + eta * (e_p - e_g)).detach())

        gen = torch.Generator().manual_seed(seed)
        params: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}
        for s in chosen:
            for name in _projections(model.sites[s].module):
                lin = projection(model.sites[s].module, name)
                A = (torch.randn(rank, lin.in_features, generator=gen) / lin.in_features ** 0.5).requires_grad_()
                B = torch.zeros(lin.out_features, rank).requires_grad_()
                params[(s, name)] = (A, B)
        flat = [t for pair in params.values() for t in pair]
        opt = torch.optim.Adam(flat, lr=lr)
        start, losses = 0, []
        ckpt = Path(checkpoint) if checkpoint is not None else None
        if ckpt is not None and ckpt.exists():
            state = torch.load(ckpt, weights_only=False)
            if state["key"] != key:
                raise TadaError(f"{ckpt} holds a Concept Slider trained with other settings; remove it or choose "
                                "another checkpoint")
            with torch.no_grad():
                for t, saved in zip(flat, state["params"]):
                    t.copy_(saved)
            opt.load_state_dict(state["opt"])
            start, losses = state["iteration"], state["losses"]

        order = torch.Generator().manual_seed(seed + 1)
        picks = torch.randint(len(record.calls), (iterations,), generator=order).tolist()
        frozen = [p for p in model.denoiser.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            with progress_bar(f"Concept Slider {cp.name or 'prompts'}", total=iterations, done=start) as bar:
                for it in range(start, iterations):
                    i = picks[it]
                    with torch.enable_grad():
                        pred = replay(model, record.calls[i], b, [LowRankDelta(params, 1.0, lora_alpha / rank)])
                        loss = torch.nn.functional.mse_loss(pred, targets[i])
                        opt.zero_grad()
                        loss.backward()
                    opt.step()
                    losses.append(loss.detach().item())
                    bar.advance()
                    if ckpt is not None and ((it + 1) % save_every == 0 or it + 1 == iterations):
                        ckpt.parent.mkdir(parents=True, exist_ok=True)
                        tmp = ckpt.with_name(ckpt.name + ".partial")
                        torch.save({"key": key, "iteration": it + 1, "losses": losses, "opt": opt.state_dict(),
                                    "params": [t.detach().clone() for t in flat]}, tmp)
                        tmp.replace(ckpt)
        finally:
            for p in frozen:
                p.requires_grad_(True)
        tensors = {}
        for (s, name), (A, B) in params.items():
            tensors[f"site.{s}.{name}.A"] = A.detach().clone()
            tensors[f"site.{s}.{name}.B"] = B.detach().clone()
        return cls(tensors, site_info(model, chosen), settings, cp, model.name, {"losses": losses})

    def adapters(self) -> dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]:
        out = {}
        for key in self.tensors:
            if key.endswith(".A"):
                _, s, name = key[: -len(".A")].split(".", 2)
                out[(int(s), name)] = (self.tensors[key], self.tensors[key[:-2] + ".B"])
        return out

    def interventions(self, model, alpha, prompts: Sequence[str], steps, duration=None, copy="cond"):
        alphas = check_alpha_list(alpha, len(prompts))
        if not any(alphas):
            return []
        scale = float(self.settings["lora_alpha"]) / int(self.settings["rank"])
        return [LowRankDelta(self.adapters(), alphas, scale, copy="all")]

"""Extra conditional passes batched into the denoiser's own call (the engine side of FreeSliders).

:class:`ExtraPasses` appends two conditional copies of the batch to every denoiser call from a step on: the
same noisy input and timestep, but a *positive* and a *negative* context at the chosen sites (every site: the
whole text path; some sites: a localized slider whose extra passes differ from the neutral one only there).
After the call it adds ``alpha * (eps_pos - eps_neg)`` to every row of the pipeline's own prediction, in every
guidance copy, and returns the call's own rows only. With classifier-free guidance
``eps = eps_u + g (eps_c - eps_u)`` this moves the guided prediction by exactly ``alpha (eps_pos - eps_neg)``,
whatever ``g`` is (a pipeline with another guidance rule gets that rule applied to shifted inputs).

Cost: two extra conditional rows per sample in the same call, i.e. 2 + 2 = 4 rows per sample per step with
guidance (2x a plain step's denoiser work) or 1 + 2 = 3 without; no extra call is made.

While the extended call runs, :attr:`Generation.extra_copies` tells every other intervention that the call
holds extra conditional copies: they count as "cond" rows of their samples, so a vector steering the
conditional copy steers the extra passes too. Several ExtraPasses compose (their shifts add).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tada.engine.hooks import Generation, Intervention, _check_finite
from tada.engine.patch import Conditioning, _fit_source, with_contexts
from tada.engine.sites import Site
from tada.errors import TadaError

_BATCH_KWARGS = ("hidden_states", "sample", "x")


def _rows_of_call(args: tuple, kwargs: dict) -> int:
    for key in _BATCH_KWARGS:
        t = kwargs.get(key)
        if isinstance(t, torch.Tensor) and t.ndim:
            return t.shape[0]
    for t in args:
        if isinstance(t, torch.Tensor) and t.ndim:
            return t.shape[0]
    raise RuntimeError("cannot tell the denoiser call's batch size: no tensor argument")


def _extend(value, n: int, index: torch.Tensor):
    """`value` with rows `index` appended, when it is a tensor of `n` rows; anything else as it is."""
    if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == n:
        return torch.cat([value, value[index.to(value.device)]])
    return value


def _prediction(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return output[0]
    sample = getattr(output, "sample", None)
    if isinstance(sample, torch.Tensor):
        return sample
    raise RuntimeError(f"cannot find the prediction in the denoiser's output ({type(output).__name__})")


def _with_prediction(output, pred: torch.Tensor):
    if isinstance(output, torch.Tensor):
        return pred
    if isinstance(output, (tuple, list)):
        return type(output)([pred, *output[1:]])
    output.sample = pred
    if hasattr(output, "keys") and "sample" in output:
        output["sample"] = pred
    return output


class ExtraPasses(Intervention):
    """From step `start` on, add ``alpha * (eps_pos - eps_neg)`` to the prediction of every denoiser call.

    positive, negative: :class:`Conditioning` of the positive and negative prompts (one row, or one per sample).
    sites: the sites at which the extra passes see the positive/negative context ("all" or None: every site);
        elsewhere they see the generation's own context.
    alpha: one float or one per sample. start: the first denoising step (0-based) with extra passes.
    ``alpha == 0`` for every sample installs nothing (bit-identical to a plain run).
    """

    def __init__(self, positive: Conditioning, negative: Conditioning, sites=None,
                 alpha: float | Sequence[float] = 1.0, start: int = 0):
        alphas = torch.as_tensor(alpha, dtype=torch.float64)
        if alphas.ndim > 1:
            raise TadaError(f"alpha must be a number or one number per sample; got shape {tuple(alphas.shape)}")
        _check_finite("alpha", alphas)
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise TadaError(f"start must be a denoising step >= 0; got {start!r}")
        self.positive, self.negative, self.sites, self.alphas, self.start = positive, negative, sites, alphas, start
        self._call: tuple[int, int] | None = None  # (base rows, first extra copy) of the call in progress

    def install(self, gen: Generation):
        batch = gen.batch
        if self.alphas.ndim == 1 and len(self.alphas) != batch:
            raise TadaError(f"got {len(self.alphas)} alphas for a batch of {batch} prompts")
        alphas = self.alphas.expand(batch) if self.alphas.ndim == 0 else self.alphas
        if not bool((alphas != 0).any()):
            return []
        for name, cond in (("positive", self.positive), ("negative", self.negative)):
            if len(cond) not in (1, batch):
                raise TadaError(f"the {name} conditioning has {len(cond)} rows; expected 1 or {batch}")
        sites = gen.sites(self.sites)
        den = gen.model.denoiser
        handles = [den.register_forward_pre_hook(self._make_pre(gen), with_kwargs=True),
                   den.register_forward_hook(self._make_post(gen, alphas))]
        for idx in sites:
            site = gen.model.sites[idx]
            handles.append(site.module.register_forward_pre_hook(self._make_site_hook(gen, site), with_kwargs=True))
        return handles

    def _make_pre(self, gen: Generation):
        def pre(module, args, kwargs):
            self._call = None
            if gen.step < self.start:
                return None
            n = _rows_of_call(args, kwargs)
            base = n - gen.extra_copies * gen.batch
            cond = gen.model.guidance_layout.rows(base, gen.batch, "cond")
            index = torch.tensor(cond * 2)
            self._call = (base, gen.extra_copies)
            gen.extra_copies += 2
            owners = getattr(gen, "_extra_owners", [])
            gen._extra_owners = [*owners, self]
            return tuple(_extend(a, n, index) for a in args), {k: _extend(v, n, index) for k, v in kwargs.items()}

        return pre

    def _make_post(self, gen: Generation, alphas: torch.Tensor):
        def post(module, args, output):
            if self._call is None:
                return None
            base, first = self._call
            b = gen.batch
            pred = _prediction(output)
            pos = pred[base + first * b: base + (first + 1) * b]
            neg = pred[base + (first + 1) * b: base + (first + 2) * b]
            a = alphas.to(pred.device, pred.dtype).view(-1, *([1] * (pred.ndim - 1)))
            delta = a * (pos - neg)
            copies = base // b
            pred[:base] += delta.repeat(copies, *([1] * (pred.ndim - 1)))
            gen._extra_owners = [o for o in gen._extra_owners if o is not self]
            self._call = None
            if gen._extra_owners:
                return None
            gen.extra_copies = 0
            return _with_prediction(output, pred[:base])

        return post

    def _make_site_hook(self, gen: Generation, site: Site):
        mask_key = gen.model.mask_kwarg
        plans: dict[tuple, list] = {}

        def hook(module, args, kwargs):
            if self._call is None:
                return None
            ctx = kwargs.get("encoder_hidden_states")
            if ctx is None:
                raise RuntimeError(f"site {site.name} was called without encoder_hidden_states as a keyword")
            mask = kwargs.get(mask_key) if mask_key else None
            base, first = self._call
            b = gen.batch
            key = (base, first, ctx.shape[1], None if mask is None else (mask.dtype, tuple(mask.shape[1:])))
            if key not in plans:
                steps = []
                for j, source in enumerate((self.positive, self.negative)):
                    s_ctx, s_mask = source.context(site.index, "cond", list(range(b)))
                    if s_ctx is None:
                        raise TadaError(f"the {('positive', 'negative')[j]} conditioning has no context for site "
                                        f"{site.index}")
                    s_ctx, s_mask = _fit_source(site, s_ctx, s_mask, mask, ctx.shape[1])
                    start = base + (first + j) * b
                    steps.append((slice(start, start + b), s_ctx, s_mask))
                plans[key] = steps
            return args, with_contexts(kwargs, ctx, mask, mask_key, plans[key])

        return hook


class CountRows(Intervention):
    """Count denoiser calls and the rows they run (what a method costs in denoiser work); install it after
    the interventions whose cost is measured, so it sees the batch as they extended it.

    After the generation: ``calls`` (denoiser calls), ``rows`` (rows summed over calls), ``per_sample`` (rows
    per prompt of the batch per call, e.g. 2.0 for plain classifier-free guidance).
    """

    def __init__(self):
        self.calls = 0
        self.rows = 0
        self._batch = 1

    @property
    def per_sample(self) -> float:
        return self.rows / max(1, self.calls) / self._batch

    def install(self, gen: Generation):
        self._batch = gen.batch

        def pre(module, args, kwargs):
            self.calls += 1
            self.rows += _rows_of_call(args, kwargs)

        return [gen.model.denoiser.register_forward_pre_hook(pre, with_kwargs=True)]

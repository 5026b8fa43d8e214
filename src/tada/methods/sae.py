"""SAE steering on a model: collect one site's activations, score SAE features by TF-IDF between
concept and counter-concept generations (eq. 6), and turn the top features into a steering vector
(eq. 7) that is added without ReNorm (eq. 8). The SAE itself is :mod:`tada.sae`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from tada.engine import Capture, resolve_site
from tada.errors import TadaError
from tada.methods.vector import SteeringVector, frame_norm
from tada.models.base import AudioModel, check_prompts, seed_list
from tada.progress import progress_bar
from tada.runs import RunFolder, content_hash
from tada.runs.distributed import barrier, is_main, my_share, process_rank, world_size
from tada.sae import (
    TopKSAE,
    mean_activations,
    sae_direction,
    select_features,
    tfidf_scores,
)
from tada.sae.store import PARTS, ActivationReader, ActivationWriter, merge_parts


def check_sae_source(sae: TopKSAE, model: AudioModel, site: int) -> None:
    """Refuse an SAE trained on another model's or another site's activations (as its cfg.json records)."""
    src = sae.cfg.source
    if not src:
        return
    here = {"model": model.name, "site_name": model.sites[site].name}
    if any(k in src and src[k] != v for k, v in here.items()):
        raise TadaError(f"this SAE was trained on {src.get('model')!r} site {src.get('site')} "
                        f"({src.get('site_name')}); got {model.name!r} site {site} ({model.sites[site].name})")


def _site_rows(model: AudioModel, site: int, prompts: list[str], seeds: list[int], steps: int | None):
    """Per prompt, the conditional-row outputs at the site's frame positions over all steps: (steps*T, d)."""
    cap = Capture(sites=[site], copy="cond", reduce=None, per_step=True)
    model.generate(prompts, seeds, steps=steps, interventions=[cap])
    per_step = torch.stack(cap.result[site], dim=1)[:, :, cap.frames[site]]  # (B, steps, T, d)
    return per_step.reshape(per_step.shape[0], -1, per_step.shape[-1])


def collect(model: AudioModel, prompts: Sequence[str], site: int, out: str | Path, seeds: Sequence[int] = (0,),
            steps: int | None = None, batch_size: int = 8, shard_rows: int = 65536,
            overwrite: bool = False) -> ActivationReader:
    """Write every frame of every step of `site`'s conditional output, for each (prompt, seed), to an
    activation store in `out` (float16 shards), a run folder whose manifest records the model, site and
    settings. Units already in the store are skipped (resumable); other settings are refused.

    The (prompt, seed) units are generated in fixed batches of `batch_size` (a block with a unit missing is
    generated whole, so a resumed run computes each unit in the batch of an uninterrupted one). Under torchrun
    or accelerate, process r takes the blocks at positions r, r + N, ... and writes its own store in
    ``out/parts/rank<r>``; the main process lists every part in ``out/index.json`` (:func:`merge_parts`)."""
    prompts = check_prompts(prompts)
    site = resolve_site(model.sites, site, model.name)
    run = RunFolder(out, "sae-collect", {"model": model.name, "site": site, "site_name": model.sites[site].name,
                                         "width": model.sites[site].dim, "prompts": content_hash(prompts),
                                         "seeds": list(seeds), "steps": steps or model.default_steps,
                                         "batch_size": batch_size}, overwrite=overwrite)
    run.write_text("prompts.json", json.dumps(list(prompts)))  # what the browser and others regenerate from
    units = [(i, s) for i in range(len(prompts)) for s in seeds]
    blocks = [units[start:start + batch_size] for start in range(0, len(units), batch_size)]
    alone = world_size() == 1
    if is_main() and (Path(out) / PARTS).is_dir():
        merge_parts(out)  # a killed distributed run's parts: their units are done
    barrier()
    done = {u["key"] for u in ActivationReader(out).units()} if (Path(out) / "index.json").is_file() else set()
    mine = [block for _, block in my_share(blocks)]
    folder = Path(out) if alone else Path(out) / PARTS / f"rank{process_rank()}"
    with ActivationWriter(folder, model.sites[site].dim, shard_rows=shard_rows) as writer:
        done |= writer.done_keys
        total = sum(len(b) for b in mine)
        with progress_bar(f"collect site {site}", total=total,
                          done=sum(f"{i}:{s}" in done for b in mine for i, s in b)) as bar:
            for block in mine:
                missing = [u for u in block if f"{u[0]}:{u[1]}" not in done]
                if not missing:
                    continue
                rows = _site_rows(model, site, [prompts[i] for i, _ in block], [s for _, s in block], steps)
                for (i, s), r in zip(block, rows):
                    if (i, s) in missing:
                        writer.add(r, meta={"prompt": i, "seed": s}, key=f"{i}:{s}")
                bar.advance(len(missing))
    barrier()
    if is_main() and not alone:
        merge_parts(out)
    barrier()
    return ActivationReader(out)


@torch.no_grad()
def mean_features(model: AudioModel, sae: TopKSAE, site: int, prompts: Sequence[str], seeds: Sequence[int] = (0,),
                  steps: int | None = None, batch_size: int = 8) -> torch.Tensor:
    """mu_j(P) of eq. 6: mean SAE activation of every latent over all frames and steps of the
    generations of `prompts` (each with every seed). Streams; nothing is kept but the sums."""
    prompts = check_prompts(prompts)
    site = resolve_site(model.sites, site, model.name)
    check_sae_source(sae, model, site)
    if sae.cfg.d_in != model.sites[site].dim:
        raise TadaError(f"the SAE reads width {sae.cfg.d_in}; site {site} of {model.name} has width {model.sites[site].dim}")
    jobs = [(p, s) for p in prompts for s in seeds]
    sums = torch.zeros(sae.cfg.num_latents, dtype=torch.float64)
    count = 0
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        rows = _site_rows(model, site, [p for p, _ in chunk], [s for _, s in chunk], steps).reshape(-1, sae.cfg.d_in)
        sums += mean_activations(sae, rows).double() * rows.shape[0]
        count += rows.shape[0]
    return (sums / count).float()


def sae_vector(model: AudioModel, sae: TopKSAE, site: int, concept_or_pairs, tau: int = 20,
               seeds: Sequence[int] = (0,), steps: int | None = None, n_pairs: int | None = None,
               eps: float = 1e-6, batch_size: int = 8, catalogue=None) -> tuple[SteeringVector, pd.DataFrame]:
    """Score every SAE latent by eq. 6 on the concept's contrastive prompts, keep the top `tau` and
    sum their decoder columns (eq. 7). Returns the vector (applied without ReNorm, eq. 8) and the
    score table (latent, mu_concept, mu_counter, score, selected), highest score first."""
    from tada.methods.caa import resolve_pairs

    concept, pairs = resolve_pairs(concept_or_pairs, n_pairs, catalogue)
    seeds = list(seeds)
    with progress_bar(f"SAE features {concept or 'pairs'}", total=2) as bar:
        mu_c = mean_features(model, sae, site, [p for p, _ in pairs], seeds, steps, batch_size)
        bar.advance()
        mu_n = mean_features(model, sae, site, [n for _, n in pairs], seeds, steps, batch_size)
        bar.advance()
    scores = tfidf_scores(mu_c, mu_n, eps=eps)
    chosen = select_features(scores, tau)
    direction = sae_direction(sae, chosen)
    table = pd.DataFrame({"latent": range(len(scores)), "mu_concept": mu_c.numpy(), "mu_counter": mu_n.numpy(),
                          "score": scores.numpy()})
    table["selected"] = table.latent.isin(chosen.tolist())
    table = table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    meta = {"model": model.name, "method": "sae", "concept": concept, "tau": tau, "features": chosen.tolist(),
            "pairs": [list(p) for p in pairs], "seeds": seeds, "steps": steps or model.default_steps}
    meta["frame_norm"] = frame_norm(model, [site], [pairs[0][0]], steps)
    vec = SteeringVector({site: direction}, {site: model.sites[site].name}, renorm=False, meta=meta)
    return vec, table


from tada.methods.base import choose_sites, concept_prompts, register  # noqa: E402


@register("sae", "SAE features: TF-IDF scores of TopK-SAE latents on contrastive prompts (eq. 6), the decoder "
          "columns of the top tau summed (eq. 7) and added without ReNorm (eq. 8)",
          cost="as plain: no extra denoiser rows", units="norm")
class SAE:
    """SAE steering behind the common interface (``sae``: a TopKSAE or its folder, on exactly one site)."""

    @classmethod
    def fit(cls, model: AudioModel, concept, sites=None, sae=None, tau: int = 20, seeds: int | Sequence[int] = (0,),
            steps: int | None = None, n_pairs: int | None = None, batch_size: int = 8, catalogue=None,
            top_k: int = 1) -> SteeringVector:
        if sae is None:
            raise TadaError("SAE steering needs a trained SAE (sae=folder); train one with `tada sae train`")
        if not isinstance(sae, TopKSAE):
            sae = TopKSAE.load(sae)
        cp = concept_prompts(concept, n_pairs, catalogue)
        chosen = choose_sites(model, sites, top_k, cp.name)
        if len(chosen) != 1:
            raise TadaError(f"an SAE reads exactly one site; got sites {chosen}")
        vec, _ = sae_vector(model, sae, chosen[0], list(cp.pairs), tau=tau, seeds=seed_list(seeds), steps=steps,
                            batch_size=batch_size)
        vec.meta["concept"] = cp.name
        return vec

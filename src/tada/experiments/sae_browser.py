"""The SAE feature browser's data: what each latent of a TopK SAE does, measured over the generations of an
activation store (`tada sae collect`), written as a static site by :mod:`tada.report.sae_browser`.

One streamed pass over the store's units (one generation each): every unit's rows are encoded (eq. 4) into
:class:`~tada.sae.stats.FeatureStats`, and the same (prompt, seed) is generated again (as collect generated it,
so the audio is the one the activations came from) to save its WAV and score it against every concept's text
queries. Then, per latent:

* density, mean activation when firing, dead / high-frequency flags, the activation histogram;
* its top units (largest peak activation) with their activation over time: f_j per position averaged over
  the denoising steps, each position at its time in seconds (``model.frame_seconds``);
* **auto label**: the concept whose query similarity, over the units, correlates best with the latent's mean
  activation (Pearson r over units, from streamed sums); the signal of concept c for a clip is its similarity
  to c's positive queries minus its similarity to c's negative ones;
* its TF-IDF score (eq. 6) for every concept, from the concept's contrastive prompts;
* the cosine of its decoder direction W_dec[j] with every CAA vector given at the same site;
* for the `steer_features` latents of highest TF-IDF score, a one-feature SAE vector (eq. 7 with tau = 1,
  applied as eq. 8) at a few strengths (multiples of the site's median frame norm) on the first prompt.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from tada.errors import TadaError
from tada.models.base import AudioModel
from tada.progress import progress_bar
from tada.runs import content_hash
from tada.sae import ActivationReader, TopKSAE, tfidf_scores
from tada.sae.stats import FeatureStats, dense_activations


@dataclass
class BrowserData:
    """Everything the pages show; `units` are (prompt, seed, wav path) per store unit."""

    model: str
    site: int
    site_name: str
    stats: FeatureStats
    units: list[dict]
    concepts: list[str]
    correlations: torch.Tensor  # (num_latents, concepts)
    tfidf: torch.Tensor  # (num_latents, concepts)
    traces: dict[tuple[int, int], list[float]]  # (latent, unit) -> activation per position
    seconds: list[float]  # start time of each position
    caa_cosines: dict[str, torch.Tensor]  # vector name -> (num_latents,)
    steered: dict[int, list[tuple[float, str]]]  # latent -> [(strength, wav path)]
    prompt: str
    duration: float


def collected_prompts(activations: str | Path) -> tuple[dict, list[str]]:
    """The collect run's settings (its manifest) and the prompts it generated (prompts.json)."""
    folder = Path(activations)
    manifest, prompts_file = folder / "manifest.json", folder / "prompts.json"
    for f in (manifest, prompts_file):
        if not f.is_file():
            raise TadaError(f"{f} is missing: --activations takes a folder written by `tada sae collect`")
    settings = json.loads(manifest.read_text())
    prompts = json.loads(prompts_file.read_text())
    if content_hash(prompts) != settings.get("prompts"):
        raise TadaError(f"{prompts_file} does not hold the prompts {manifest} was collected with")
    return settings, prompts


def concept_signal(scorer, audio, concept) -> torch.Tensor:
    """(clips,) similarity to the concept's positive queries minus to its negative ones."""
    pos = scorer.similarity(audio, list(concept.queries.positive)).mean(1)
    neg = scorer.similarity(audio, list(concept.queries.negative)).mean(1) if concept.queries.negative else 0.0
    return (pos - neg).float()


@torch.no_grad()
def build_browser(model: AudioModel, sae: TopKSAE, activations: str | Path, out: str | Path, scorer=None,
                  catalogue=None, concepts: Sequence[str] | None = None, top_k: int = 6, concept_pairs: int = 4,
                  steer_features: int = 8, strengths: Sequence[float] = (-2.0, -1.0, 1.0, 2.0),
                  caa: dict | None = None, batch_size: int = 8) -> BrowserData:
    """Measure everything the browser shows into `out` (WAVs under audio/ and steer/)."""
    from tada.audio import Audio
    from tada.concepts import load_catalogue
    from tada.evaluation.registry import default_scorer
    from tada.methods.sae import check_sae_source, mean_features
    from tada.methods.vector import SteeringVector, frame_norm

    settings, prompts = collected_prompts(activations)
    if settings.get("model") != model.name:
        raise TadaError(f"the activations were collected on {settings.get('model')!r}; got model {model.name!r}")
    site, steps = int(settings["site"]), int(settings["steps"])
    check_sae_source(sae, model, site)
    reader = ActivationReader(activations)
    if reader.d != sae.cfg.d_in:
        raise TadaError(f"the activations have width {reader.d}; the SAE reads width {sae.cfg.d_in}")
    catalogue = catalogue or load_catalogue()
    names = list(concepts) if concepts is not None else list(catalogue)
    chosen = [catalogue[c] for c in names]
    scorer = scorer or default_scorer(model)
    out = Path(out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    units_meta = reader.units()
    stats = FeatureStats(sae.cfg.num_latents, top_k=top_k, n_signals=len(chosen))
    units: list[dict] = []
    pending: list[tuple[dict, torch.Tensor]] = []

    def flush():
        prompts_b = [prompts[int(u["meta"]["prompt"])] for u, _ in pending]
        seeds_b = [int(u["meta"]["seed"]) for u, _ in pending]
        audio = model.generate(prompts_b, seeds_b, steps=steps)
        signals = torch.stack([concept_signal(scorer, audio, c) for c in chosen], 1) if chosen else None
        for row, (u, rows) in enumerate(pending):
            index = len(units)
            (path,) = audio[row].save(out / "audio", [f"u{index:05d}"])
            units.append({"prompt": prompts_b[row], "seed": seeds_b[row], "wav": str(path.relative_to(out)),
                          "rows": rows.shape[0]})
            stats.add(index, dense_activations(sae, rows), None if signals is None else signals[row])
        pending.clear()

    with progress_bar("SAE browser: units", total=len(units_meta)) as bar:
        for unit in reader.iter_units():
            pending.append(unit)
            if len(pending) == batch_size:
                bar.advance(len(pending))
                flush()
        if pending:
            bar.advance(len(pending))
            flush()
    if not units:
        raise TadaError(f"the activation store {activations} holds no units")
    # Activation over time of each latent's top units: a second pass reads only the units that are needed.
    wanted: dict[int, list[int]] = {}
    for latent in range(sae.cfg.num_latents):
        for u, _ in stats.top(latent):
            wanted.setdefault(u, []).append(latent)
    traces: dict[tuple[int, int], list[float]] = {}
    n_positions = units[0]["rows"] // steps
    for index, (_, rows) in enumerate(reader.iter_units()):
        if index in wanted:
            acts = dense_activations(sae, rows)[:, wanted[index]].reshape(steps, -1, len(wanted[index])).mean(0)
            for col, latent in enumerate(wanted[index]):
                traces[(latent, index)] = [round(float(v), 5) for v in acts[:, col]]
    duration = Audio.load([out / units[0]["wav"]]).duration
    seconds = model.frame_seconds(model.sites[site], n_positions, duration).tolist()
    # TF-IDF (eq. 6) of every latent for every concept, on the concept's contrastive prompts.
    tfidf = torch.zeros(sae.cfg.num_latents, len(chosen))
    with progress_bar("SAE browser: concept scores", total=len(chosen)) as bar:
        for col, c in enumerate(chosen):
            pairs = c.contrastive_prompts(n=concept_pairs)
            mu_c = mean_features(model, sae, site, [p for p, _ in pairs], steps=steps, batch_size=batch_size)
            mu_n = mean_features(model, sae, site, [n for _, n in pairs], steps=steps, batch_size=batch_size)
            tfidf[:, col] = tfidf_scores(mu_c, mu_n)
            bar.advance()
    decoder = torch.nn.functional.normalize(sae.W_dec.detach().float(), dim=1)
    cosines = {}
    for name, vec in (caa or {}).items():
        if site in vec.sites:
            cosines[name] = decoder @ torch.nn.functional.normalize(vec.vectors[site].float(), dim=0)
    # One-feature steering for the latents of highest TF-IDF score.
    steered: dict[int, list[tuple[float, str]]] = {}
    best = tfidf.max(1).values if chosen else stats.density.float()
    best = torch.where(stats.dead, torch.full_like(best, -1.0), best)
    picks = [int(j) for j in best.argsort(descending=True)[:steer_features] if not stats.dead[j]]
    if picks and strengths:
        norm = frame_norm(model, [site], [prompts[0]], steps)
        (out / "steer").mkdir(exist_ok=True)
        with progress_bar("SAE browser: steering", total=len(picks)) as bar:
            for latent in picks:
                vec = SteeringVector({site: sae.W_dec[latent].detach().float()}, {site: model.sites[site].name},
                                     renorm=False, meta={"model": model.name, "method": "sae", "frame_norm": norm})
                alphas = list(strengths)
                audio = model.generate([prompts[0]] * len(alphas), [0] * len(alphas), steps=steps,
                                       steer=[vec.at(vec.strength(alphas, "norm"))])
                steered[latent] = []
                for row, a in enumerate(alphas):
                    (path,) = audio[row].save(out / "steer", [f"f{latent:05d}_a{a:+g}"])
                    steered[latent].append((float(a), str(path.relative_to(out))))
                bar.advance()
    return BrowserData(model.name, site, model.sites[site].name, stats, units, names,
                       stats.correlations().float() if chosen else torch.zeros(sae.cfg.num_latents, 0), tfidf, traces,
                       seconds, cosines, steered, prompts[0], duration)


def write_browser(data: BrowserData, out: str | Path) -> Path:
    """The static site of :mod:`tada.report.sae_browser` from measured data; returns index.html."""
    from tada.audio import Audio
    from tada.report.plots import spectrogram_png
    from tada.report.sae_browser import write_site
    from tada.sae.stats import HIST_EDGES

    out = Path(out)
    s = data.stats
    density, mean_act = s.density.tolist(), s.mean_active.tolist()
    rows, pages, specs = [], [], {}
    for j in range(len(density)):
        flags = "dead" if s.dead[j] else ("high-frequency" if s.high_frequency[j] else "")
        top_c, top_score, label, r = "", 0.0, "", float("nan")
        if data.concepts:
            col = int(data.tfidf[j].argmax())
            if data.tfidf[j, col] > 0:
                top_c, top_score = data.concepts[col], float(data.tfidf[j, col])
            corr = data.correlations[j]
            if not torch.isnan(corr).all():
                best = int(torch.nan_to_num(corr, nan=-2.0).argmax())
                label, r = data.concepts[best], float(corr[best])
        row = {"feature": j, "density": density[j], "mean_act": mean_act[j], "flags": flags, "top_concept": top_c,
               "tfidf": top_score, "label": label, "r": None if r != r else round(r, 4)}
        if not s.dead[j]:
            row["page"] = f"features/f{j:05d}.html"
            clips = []
            for u, peak in s.top(j):
                unit = data.units[u]
                if u not in specs:
                    clip = Audio.load([out / unit["wav"]])
                    specs[u] = spectrogram_png(clip.mono()[0].numpy(), clip.sample_rate, out / "spec" / f"u{u:05d}.png")
                clips.append({"wav": unit["wav"], "spec": str(specs[u].relative_to(out)), "prompt": unit["prompt"],
                              "seed": unit["seed"], "peak": peak, "trace": data.traces[(j, u)]})
            pages.append({
                "feature": j, "hist": s.hist[j].tolist(), "clips": clips, "prompt": data.prompt,
                "stats": {"density (firing rate)": density[j], "mean activation when firing": mean_act[j],
                          "flags": flags or "-", "auto label": f"{label} (r = {r:.3f})" if label else "-"},
                "concepts": [[c, float(data.tfidf[j, k]), float(data.correlations[j, k])]
                             for k, c in enumerate(data.concepts)],
                "cosines": [[name, float(cos[j])] for name, cos in data.caa_cosines.items()],
                "steered": data.steered.get(j, [])})
        rows.append(row)
    title = f"SAE features of {data.model}, site {data.site} ({data.site_name})"
    return write_site(out, title, rows, pages, data.duration, data.seconds, HIST_EDGES.tolist())

"""How reliable the SAE browser's auto labels are on the toy, where each clip's prompt says its truth.

Collects one site's activations for the first N captions of the shipped corpus, trains a TopK SAE on them,
measures the browser's data (`tada.experiments.sae_browser.build_browser`) for the toy's concepts, and then,
for every live feature whose auto label has r >= --min-r, checks the label against the prompts: the AUC of the
feature's mean activation per clip for separating clips whose caption names the concept (Concept.has_concept)
from those naming its counterpart (has_counter), or from all others where no caption names the counterpart.
AUC 0.5 is chance; the feature was labelled from the toy
scorer's similarities, the AUC comes from the captions alone.

    python benchmarks/sae_autolabel_toy.py --out runs/sae-autolabel --captions 96 --site 4 --steps 10
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/sae-autolabel"))
    parser.add_argument("--captions", type=int, default=96)
    parser.add_argument("--site", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--expansion", type=int, default=4)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--min-r", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import tada
    from tada.concepts import load_captions, load_catalogue
    from tada.experiments.sae_browser import build_browser, write_browser
    from tada.methods.sae import collect
    from tada.sae import ActivationReader, TopKSAE, choose_sae, grid_search
    from tada.sae.stats import dense_activations
    from tada.toy.judges import auc

    model, catalogue = tada.load("toy"), load_catalogue()
    concepts = ["tempo", "mood", "vocal_gender", "piano", "drums", "guitar"]
    prompts = list(load_captions().values())[: args.captions]
    reader = collect(model, prompts, args.site, args.out / "acts", steps=args.steps)
    table = grid_search(reader, m_values=[args.expansion], k_values=[args.k], epochs=args.epochs, out=args.out / "sae")
    best = choose_sae(table)
    sae = TopKSAE.load(args.out / "sae" / f"m{int(best.m)}_k{int(best.k)}")
    data = build_browser(model, sae, args.out / "acts", args.out / "site", concepts=concepts, steer_features=0)
    print(f"SAE m={int(best.m)} k={int(best.k)}: FVU {float(best.fvu):.3f}; browser: {write_browser(data, args.out / 'site')}")
    means = torch.stack([dense_activations(sae, rows).mean(0) for _, rows in ActivationReader(args.out / "acts").iter_units()])
    corr = torch.nan_to_num(data.correlations, nan=-2.0)
    rows = []
    for j in range(sae.cfg.num_latents):
        if data.stats.dead[j] or corr[j].max() < args.min_r:
            continue
        c = catalogue[concepts[int(corr[j].argmax())]]
        labels = [True if c.has_concept(p) else False if c.has_counter(p) else None for p in prompts]
        if False not in labels:  # the corpus never names the counterpart (e.g. "no drums"): every other caption
            labels = [c.has_concept(p) for p in prompts]
        keep = [i for i, lab in enumerate(labels) if lab is not None]
        rows.append((j, c.name, float(corr[j].max()), auc(means[keep, j].tolist(), [labels[i] for i in keep]),
                     len(keep)))
    print(f"{len(rows)} of {int((~data.stats.dead).sum())} live features labelled with r >= {args.min_r}")
    print("concept | features | median r | median caption AUC | share with caption AUC > 0.6")
    for name in concepts:
        mine = [r for r in rows if r[1] == name]
        if mine:
            aucs = [r[3] for r in mine if np.isfinite(r[3])]
            print(f"{name} | {len(mine)} | {np.median([r[2] for r in mine]):.2f} | "
                  f"{np.median(aucs) if aucs else float('nan'):.2f} | {np.mean([a > 0.6 for a in aucs]):.2f}")


if __name__ == "__main__":
    main()

"""How well the v2 toy scorer's fixed pitch-class profile (no learning) tells major from minor.

On a training folder's held-out clips (`python -m tada.toy.train data --world v2`), the profile of each clip's
log-mel (`tada.toy.scorer.pitch_class_profile`) is scored with Temperley's key profiles (best major minus best
minor correlation, `tada.evaluation.mir.profile_key_correlations`), and the AUC of that score for the clips' true
mode is printed for the rendered clips and for their Griffin-Lim round trip. This bounds what the scorer's learned
templates have to work with; the physical mood judge reads the same clips' audio instead. With `--components K`,
each normalized frame is first replaced by its projection on the leading K principal components of the training
frames (`tada.toy.model.LinearLatent`, the v2 DiT's tokens): what that latent keeps of the mode.

    python benchmarks/toy_mode_profile.py --out runs/toy-v2 --n 500
    python benchmarks/toy_mode_profile.py --out runs/toy-v2 --n 500 --components 128
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/toy-v2"))
    parser.add_argument("--n", type=int, default=500, help="held-out clips to read (the first n)")
    parser.add_argument("--components", type=int, default=None, help="keep the leading K principal components")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from tada.evaluation.mir import profile_key_correlations
    from tada.toy.judges import auc
    from tada.toy.model import LinearLatent
    from tada.toy.scorer import PITCH_BAND, mel_centres, pitch_class_profile
    from tada.toy.train import data_mel, load_split

    mel = data_mel(args.out)
    test = load_split(args.out, "test")
    centres = mel_centres(mel.n_mels, mel.f_min, mel.f_max)
    happy = [a["mood"] == "happy" for a in test["attrs"]][:args.n]
    print(f"{len(happy)} held-out clips, band {PITCH_BAND[0]:g}-{PITCH_BAND[1]:g} Hz")
    latent = None
    if args.components is not None:
        frames = mel.normalize(load_split(args.out, "train", round_trip=False)["log_mel"][::4].float())
        latent = LinearLatent.fit(frames, args.components)
        share = latent.scale.square().sum() / frames.square().sum(1).mean()
        print(f"{args.components} of {mel.n_mels} principal components: {share:.4f} of the frames' second moment")
    for view in ("log_mel", "log_mel_gl"):
        log_mel = test[view][:args.n].float()
        if latent is not None:
            log_mel = mel.denormalize(latent.decode(latent.encode(mel.normalize(log_mel))))
        profiles = pitch_class_profile(log_mel, centres)
        scores = [major.max() - minor.max() for major, minor in
                  (profile_key_correlations(p.numpy(), "temperley") for p in profiles)]
        print(f"{view}: mode AUC {auc(scores, happy):.3f}")


if __name__ == "__main__":
    main()

"""Whether the mode survives the toy decoder: the mood judge on audio decoded from held-out frames, per inverse.

The decoder turns log-mel frames into a linear STFT magnitude and searches its phase with Griffin-Lim. The
magnitude comes from the filterbank's pseudo-inverse, max(pinv(F) m, 0) (`MelSpec(inverse="pinv")`), from
`MelSpec(inverse="nnls")`'s projected-gradient fit of argmin_{s >= 0} ||F s - m||, or from `librosa.util.nnls`
(the same problem solved to convergence, for reference). Each is applied to the stored frames of a training
folder's held-out clips (float16, as the data stage keeps them), and to the same frames with Gaussian noise of
`--noise` natural-log units added, a stand-in for a model's error. With `--components K` the normalized frames
are first projected onto the leading K principal components of the training frames (`LinearLatent`). The
physical mood judge (`tada.toy.judges`) reads each decoded clip, and the AUC for the true mode is printed.

    python benchmarks/toy_mel_inverse.py --out runs/toy-v2 --n 48 [--components 128]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/toy-v2"), help="training folder (its held-out clips)")
    parser.add_argument("--n", type=int, default=48, help="held-out clips (the first n)")
    parser.add_argument("--noise", type=float, default=0.05, help="std of the noise added to the log-mel frames")
    parser.add_argument("--components", type=int, default=None, help="project onto this many principal components")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import librosa

    from tada.toy.judges import auc, mood_measure
    from tada.toy.model import LinearLatent
    from tada.toy.train import data_mel, load_split

    mel = data_mel(args.out)
    test = load_split(args.out, "test", round_trip=False)
    happy = [a["mood"] == "happy" for a in test["attrs"][:args.n]]
    project = lambda log_mel: log_mel  # noqa: E731
    if args.components is not None:
        train = load_split(args.out, "train", round_trip=False)["log_mel"]
        latent = LinearLatent.fit(mel.normalize(train.float()), args.components)
        project = lambda log_mel: mel.denormalize(latent.decode(latent.encode(mel.normalize(log_mel))))  # noqa: E731
    fb = mel._fb.double().numpy()
    pinv, nnls = (dataclasses.replace(mel, inverse=name) for name in ("pinv", "nnls"))
    magnitudes = {  # log-mel (1, n_mels, T) -> (1, n_fft // 2 + 1, T)
        "pinv": pinv.linear_magnitude,
        "nnls": nnls.linear_magnitude,
        "librosa": lambda log_mel: torch.from_numpy(librosa.util.nnls(
            fb, (log_mel[0].double().exp() - mel.floor).clamp_min(0.0).numpy())).float()[None],
    }
    g = torch.Generator().manual_seed(0)
    scores = {(name, noise): [] for name in magnitudes for noise in (0.0, args.noise)}
    seconds = dict.fromkeys(magnitudes, 0.0)
    for i in range(len(happy)):
        frames = project(test["log_mel"][i:i + 1].float())
        for noise in (0.0, args.noise):
            noisy = frames + noise * torch.randn(frames.shape, generator=g)
            for name, magnitude in magnitudes.items():
                start = time.perf_counter()
                mag = magnitude(noisy)
                seconds[name] += time.perf_counter() - start
                wave = mel.griffin_lim_magnitude(mag)[0].numpy()
                scores[name, noise].append(mood_measure(wave, mel.sample_rate))
    kept = f", {args.components} principal components" if args.components else ""
    print(f"{len(happy)} held-out clips of {args.out}{kept}; mood judge AUC on the decoded audio")
    for (name, noise), values in scores.items():
        print(f"{name:8s} noise {noise:<5g} AUC {auc(values, happy):.3f}   magnitude "
              f"{seconds[name] / (2 * len(happy)):.3f} s/clip")


if __name__ == "__main__":
    main()

"""Whether the mode survives the toy decoder: the mood judge on audio decoded from held-out frames, per inverse.

The decoder turns log-mel frames into a linear STFT magnitude and searches its phase with Griffin-Lim. The
magnitude comes either from the filterbank's pseudo-inverse, max(pinv(F) m, 0) (`MelSpec.griffin_lim`), or from
non-negative least squares, argmin_{s >= 0} ||F s - m|| (`librosa.util.nnls`). Each is applied to the stored
frames of a training folder's held-out clips (float16, as the data stage keeps them), and to the same frames
with Gaussian noise of `--noise` natural-log units added, a stand-in for a model's error. The physical mood
judge (`tada.toy.judges`) reads each decoded clip, and the AUC for the true mode is printed.

    python benchmarks/toy_mel_inverse.py --out runs/toy-v2 --n 48
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/toy-v2"), help="training folder (its held-out clips)")
    parser.add_argument("--n", type=int, default=48, help="held-out clips (the first n)")
    parser.add_argument("--noise", type=float, default=0.05, help="std of the noise added to the log-mel frames")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import librosa

    from tada.toy.judges import auc, mood_measure
    from tada.toy.train import data_mel, load_split

    mel = data_mel(args.out)
    test = load_split(args.out, "test")
    happy = [a["mood"] == "happy" for a in test["attrs"][:args.n]]
    fb = mel._fb.double().numpy()
    decoders = {  # log-mel (1, n_mels, T) -> (1, num_samples)
        "pinv": mel.griffin_lim,
        "nnls": lambda log_mel: mel.griffin_lim_magnitude(torch.from_numpy(librosa.util.nnls(
            fb, (log_mel[0].double().exp() - mel.floor).clamp_min(0.0).numpy())).float()[None]),
    }
    g = torch.Generator().manual_seed(0)
    scores = {(name, noise): [] for name in decoders for noise in (0.0, args.noise)}
    for i in range(len(happy)):
        frames = test["log_mel"][i:i + 1].float()
        for noise in (0.0, args.noise):
            noisy = frames + noise * torch.randn(frames.shape, generator=g)
            for name, decode in decoders.items():
                wave = decode(noisy)[0].numpy()
                scores[name, noise].append(mood_measure(wave, mel.sample_rate))
    print(f"{len(happy)} held-out clips of {args.out}; mood judge AUC on the decoded audio")
    for (name, noise), values in scores.items():
        print(f"{name:5s} noise {noise:<5g} AUC {auc(values, happy):.3f}")


if __name__ == "__main__":
    main()

"""How much a toy DiT uses its prompt: its flow loss with the clip's caption, another clip's caption, and none.

On a training folder's held-out clips (`python -m tada.toy.train data`), each clip is noised to a few flow times
t (x_t = (1 - t) x_0 + t eps, the same noise for every context) and the pipeline's velocity is scored against
v = eps - x_0 (mean squared error over bins and frames) with three contexts: the clip's own caption, the caption
of the next clip, and the unconditional context. A model that reads the text has "own" clearly below the other
two, most of all at large t, where the prompt decides what the clip becomes. The last two columns are the losses
of x_0 = 0 (v = x_t / t, error x_0 / t) and of the best linear guess v = c_skip x_t (`tada.toy.model.preconditioning`,
which a preconditioned DiT gives when its output is 0): a model above them at some t has not learned that t.

A second table takes the prompt apart by concept: each clip's caption is written anew from its attributes, naming
every one (omit_prob = 0), and once more with one concept named wrong (fast <-> slow, happy <-> sad, female <-> male,
drums or maracas added or removed), in the same words (for an instrument, the list may be reordered). It gives,
per concept, over the clips the concept applies to and with the same noise, error(wrong) - error(right), where
error is that of the DiT's estimate x_0 = x_t - t v over the normalized log-mel frames (decoded from the latent
where there is one), so that DiTs over different tokens compare, and split into the error of each clip's mean
frame (steady: timbre, register, which instruments sound) and the rest (changing: onsets, beat, note changes).
Near 0: the DiT ignores that word (the own/other gap above can come from a single concept, the voice, while the
others are at 0).

    python benchmarks/toy_text_gain.py --out runs/toy-v2 --weights runs/toy-v2/model/latest
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from tada.toy.synth import TEMPO_BPM, Attributes, caption


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/toy-v2"), help="training folder (its held-out clips)")
    parser.add_argument("--weights", type=Path, required=True, help="toy pipeline folder")
    parser.add_argument("--n", type=int, default=64, help="held-out clips (the first n)")
    parser.add_argument("--times", default="0.2,0.5,0.8,0.95")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from tada.toy.model import ToyPipeline, preconditioning
    from tada.toy.train import load_split

    pipe = ToyPipeline.from_pretrained(args.weights)
    test = load_split(args.out, "test", round_trip=False)
    x0 = pipe.mel.normalize(test["log_mel"][:args.n].float())
    if pipe.latent is not None:  # the DiT's tokens are the frames' latent coordinates
        x0 = pipe.latent.encode(x0)
    own = pipe.encode_prompt([pair[0] for pair in test["captions"][:args.n]])
    other = tuple(torch.roll(c, 1, dims=0) for c in own)
    contexts = {"own": own, "other": other, "none": pipe.unconditional_context(len(x0))}
    rotary = pipe.rotary_embedding()
    g = torch.Generator().manual_seed(0)
    print(f"{args.weights}: {len(x0)} held-out clips; flow loss per context")
    print("t      " + "  ".join(f"{name:>7}" for name in contexts) + "   x0 = 0   linear")
    with torch.no_grad():
        for t in (float(v) for v in args.times.split(",")):
            eps = torch.randn(x0.shape, generator=g)
            xt, target = (1 - t) * x0 + t * eps, eps - x0
            losses = [torch.nn.functional.mse_loss(pipe.velocity(xt, torch.full((len(x0),), t), *c, rotary), target)
                      for c in contexts.values()]
            trivial = x0.pow(2).mean() / t**2
            linear = (target - preconditioning(torch.tensor(t))[1] * xt).pow(2).mean()
            print(f"{t:<6g} " + "  ".join(f"{loss.item():7.4f}" for loss in losses)
                  + f"   {trivial:7.4f}  {linear:7.4f}")

    attrs = [Attributes(**{**a, "instruments": tuple(a["instruments"])}) for a in test["attrs"][:args.n]]
    right = pipe.encode_prompt([caption(a, np.random.default_rng([i, 11]), omit_prob=0.0) for i, a in enumerate(attrs)])
    print("\nx_0 error over the frames, one concept named wrong - every concept named right, x 1000: "
          "total = steady + changing part (clips)")
    print("t      " + "  ".join(f"{c:>29}" for c in CONCEPTS))
    pairs = {}  # concept -> (its clips, their captions with it named wrong, named right), encoded once for every t
    for concept in CONCEPTS:
        flipped = {i: f for i, a in enumerate(attrs) if (f := named_wrong(a, concept)) is not None}
        rows = list(flipped)
        wrong = pipe.encode_prompt([caption(f, np.random.default_rng([i, 11]), omit_prob=0.0)
                                    for i, f in flipped.items()])
        pairs[concept] = rows, wrong, tuple(c[rows] for c in right)
    frames = pipe.latent.decode(x0) if pipe.latent is not None else x0  # what every estimate is scored against
    with torch.no_grad():
        for t in (float(v) for v in args.times.split(",")):
            eps = torch.randn(x0.shape, generator=g)
            xt = (1 - t) * x0 + t * eps
            cells = []
            for concept in CONCEPTS:
                rows, *contexts = pairs[concept]
                gaps = [frame_error(pipe, frames[rows], xt[rows], t, context, rotary) for context in contexts]
                steady, changing = (1000 * (gaps[0] - gaps[1])).tolist()
                cells.append(f"{steady + changing:+7.2f} = {steady:+6.2f} {changing:+6.2f} ({len(rows):2d})")
            print(f"{t:<6g} " + "  ".join(cells))


def frame_error(pipe, frames: torch.Tensor, xt: torch.Tensor, t: float, context: tuple, rotary) -> torch.Tensor:
    """Mean squared error of the DiT's estimate x_0 = x_t - t v against the clean normalized `frames` (decoded from
    the latent where the DiT has one: the frames' projection), in the same units for every representation, split
    exactly into its steady and changing parts: with e the error and e_bar its mean over the frames of a clip,
    mean(e^2) = mean(e_bar^2) + mean((e - e_bar)^2). Returns the two parts."""
    estimate = xt - t * pipe.velocity(xt, torch.full((len(xt),), t), *context, rotary)
    if pipe.latent is not None:
        estimate = pipe.latent.decode(estimate)
    error = estimate - frames
    steady = error.mean(-1, keepdim=True)
    return torch.stack([steady.pow(2).mean(), (error - steady).pow(2).mean()])


#: the concepts whose word `named_wrong` turns into its opposite
CONCEPTS = ("tempo", "mood", "vocal_gender", "drums", "maracas")


def named_wrong(attrs, concept: str):
    """`attrs` with `concept` made its opposite (None where it has none: the gender of an instrumental clip); a flipped
    tempo takes the middle of the other tempo's BPM range (the BPM is never named)."""
    if concept == "tempo":
        tempo = "slow" if attrs.tempo == "fast" else "fast"
        return dataclasses.replace(attrs, tempo=tempo, bpm=sum(TEMPO_BPM[tempo]) / 2)
    if concept == "mood":
        return dataclasses.replace(attrs, mood="sad" if attrs.mood == "happy" else "happy")
    if concept == "vocal_gender":
        flip = {"female": "male", "male": "female"}
        return dataclasses.replace(attrs, vocal=flip[attrs.vocal]) if attrs.vocal in flip else None
    instruments = set(attrs.instruments) ^ {concept}
    return dataclasses.replace(attrs, instruments=tuple(sorted(instruments)))


if __name__ == "__main__":
    main()

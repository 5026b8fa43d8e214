"""The toy worlds the training CLI can build a model of, each with its representation and DiT size.

`v1` is the shipped one (`tada.toy.synth`, 64-bin log-mel, 8 layers); `v2` is `tada.toy.world`
(concepts that vary alone, 6.36 s clips) with a representation that keeps pitch: 256-bin log-mel decoded
through a non-negative magnitude, the DiT (12 layers, 64 wide) over their 64 leading principal components
(see `docs/toy-world-v2.md` for the measurements behind it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from tada.errors import TadaError
from tada.toy import synth, world
from tada.toy.model import LinearLatent, MelSpec, ToyPipeline


@dataclass(frozen=True)
class WorldSpec:
    """How to render a world's clips, analyse them into frames, and size the DiT over those frames."""

    name: str
    make_example: Callable
    num_samples: int
    mel: dict = field(default_factory=dict)  # MelSpec keyword arguments (besides num_samples, mean, std)
    transformer: dict = field(default_factory=dict)  # overrides of tada.toy.model.DEFAULT_TRANSFORMER
    #: the flow-time shift of training and sampling (tada.toy.model.shift_time)
    time_shift: float = 1.0
    #: the DiT predicts the preconditioned residual of the velocity (tada.toy.model.preconditioning)
    preconditioned: bool = False
    #: the scorer reads a key-invariant pitch-class profile (tada.toy.scorer.PitchClassProfile) besides its convolutions
    pitch_classes: bool = False
    #: the DiT's tokens are this many principal components of the frames (tada.toy.model.LinearLatent); None: the bins
    latent_components: int | None = None
    #: tada.toy.judges measures this world's concepts (its thresholds were set on this world's clips)
    judged: bool = False

    def mel_spec(self, mean: list[float] | None = None, std: list[float] | None = None) -> MelSpec:
        n = self.mel.get("n_mels", 64)
        return MelSpec(num_samples=self.num_samples, mean=list(mean) if mean is not None else [0.0] * n,
                       std=list(std) if std is not None else [1.0] * n, **self.mel)

    def random_pipeline(self, seed: int, mel: MelSpec | None = None, latent: LinearLatent | None = None) -> ToyPipeline:
        """This world's untrained pipeline: the DiT (seeded) over `mel` (default: unit statistics), over `latent`'s
        coordinates when the world has a latent."""
        if (latent is None) != (self.latent_components is None) or (
                latent is not None and latent.channels != self.latent_components):
            raise TadaError(f"world {self.name} takes a latent of {self.latent_components} components; got "
                            f"{None if latent is None else latent.channels}")
        return ToyPipeline.random(seed, mel=mel if mel is not None else self.mel_spec(), time_shift=self.time_shift,
                                  latent=latent, preconditioned=self.preconditioned, **self.transformer)


V2_MEL = dict(n_mels=256, n_fft=1024, f_min=30.0, f_max=8000.0, gl_iter=64, inverse="nnls")

WORLDS: dict[str, WorldSpec] = {
    "v1": WorldSpec("v1", synth.make_example, synth.NUM_SAMPLES),
    "v2": WorldSpec("v2", world.make_example, world.NUM_SAMPLES, mel=V2_MEL,
                    transformer=dict(num_layers=12, num_attention_heads=2), time_shift=2.5, preconditioned=True,
                    pitch_classes=True, latent_components=64, judged=True),
}


def get_world(name: str) -> WorldSpec:
    if name not in WORLDS:
        raise TadaError(f"unknown toy world {name!r}; accepted: {sorted(WORLDS)}")
    return WORLDS[name]

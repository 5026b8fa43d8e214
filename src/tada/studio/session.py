"""The studio's callbacks as plain functions on a :class:`Studio`: generate a prompt at a seed, steered by any
number of steering artifacts at chosen strengths, next to its unsteered (alpha = 0) clip of the same seed.

Every result is a file in the studio's cache folder, keyed by (model, prompt, seed, steps, duration, timestep
window, the artifacts' content hashes and calibrations, their strengths and units): asking again for settings already made (a slider moved back) reads the
file instead of generating. A result's settings are written beside it as JSON, in the form
:meth:`Studio.generate` takes, so that a download reproduces it exactly. One lock serialises generation, so any
number of clients can call at once; each gets its own result.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from tada.errors import TadaError
from tada.methods.base import load as load_artifact
from tada.models.base import AudioModel, check_prompts
from tada.runs import content_hash


@dataclass(frozen=True)
class Result:
    """Files of one studio result: the steered clip, its alpha = 0 reference, their spectrograms, the settings."""

    audio: Path
    reference: Path
    spectrogram: Path
    reference_spectrogram: Path
    settings: Path


class Studio:
    """A model, the steering artifacts it can turn (by name), and a cache folder."""

    def __init__(self, model: AudioModel, cache: str | Path, artifacts: dict | None = None, dial: str = "alignment"):
        """`dial`: the calibrated measure the dials of calibrated artifacts move in (`tada calibrate` writes
        alignment and the concept's MIR measure, e.g. weighted_onset_rate for tempo)."""
        self.model, self.cache, self.dial = model, Path(cache), dial
        self.cache.mkdir(parents=True, exist_ok=True)
        self.artifacts: dict = {}
        self._frame_norms: dict = {}  # site -> median frame norm, for SAE features
        self._lock = threading.Lock()
        for name, art in (artifacts or {}).items():
            self.add(name, art)

    @classmethod
    def from_folder(cls, model: AudioModel, folder: str | Path | None, cache: str | Path,
                    dial: str = "alignment") -> "Studio":
        """Every steering file (`*.safetensors` with its .json) in `folder`, checked against the model."""
        artifacts = {}
        if folder is not None:
            folder = Path(folder)
            if not folder.is_dir():
                raise TadaError(f"--vectors {folder} is not a folder of steering files")
            for path in sorted(folder.glob("*.safetensors")):
                artifacts[path.stem] = load_artifact(path, model=model)
        return cls(model, cache, artifacts, dial)

    @property
    def calibrations(self) -> dict:
        """name -> Calibration in :attr:`dial` of the artifacts that have one: their dials move in that measured
        change (units "auto"); `tada calibrate` writes them beside the files, and loading reads them."""
        return {n: a.calibrations[self.dial] for n, a in self.artifacts.items()
                if self.dial in getattr(a, "calibrations", {})}

    def add(self, name: str, artifact) -> None:
        artifact.check_model(self.model)
        self.artifacts[name] = artifact

    def add_feature(self, sae, latent: int) -> str:
        """One SAE feature as a steering artifact (eq. 7 with tau = 1, added as eq. 8), in multiples of its site's
        median frame norm; returns its name, ``sae-f<latent>``."""
        from tada.methods.vector import SteeringVector, frame_norm

        site = int((sae.cfg.source or {}).get("site", -1))
        if not 0 <= site < len(self.model.sites):
            raise TadaError("the SAE records no site of this model it was trained on (cfg.json source.site)")
        if isinstance(latent, float) and latent.is_integer():
            latent = int(latent)
        if isinstance(latent, bool) or not isinstance(latent, int) or not 0 <= latent < sae.cfg.num_latents:
            raise TadaError(f"feature must be a whole number from 0 to {sae.cfg.num_latents - 1}; got {latent!r}")
        name = f"sae-f{latent}"
        if name not in self.artifacts:
            if site not in self._frame_norms:
                self._frame_norms[site] = frame_norm(self.model, [site], ["a song"], self.model.default_steps)
            self.add(name, SteeringVector({site: sae.W_dec[latent].detach().float()}, {site: self.model.sites[site].name},
                                          renorm=False, meta={"model": self.model.name, "method": "sae",
                                                              "feature": latent, "frame_norm": self._frame_norms[site]}))
        return name

    def fit(self, concept: str, method: str = "caa", sites="all", **settings) -> str:
        """Fit a catalogue concept with any method on the spot; returns the name it is added under."""
        from tada.methods.base import method as method_info

        art = method_info(method).cls.fit(self.model, concept, sites=sites, **settings)
        name = f"{concept}-{method}"
        self.add(name, art)
        return name

    # ------------------------------------------------------------------------------------------ generation
    def check(self, prompt: str, seed, steps, strengths: dict[str, float], duration=None, window=None):
        """(prompt, seed, steps, strengths, duration, window) checked, one clear message for the first bad one.
        `window`: ``(t_min, t_max)`` in the denoiser's timestep units (steer only there; vector methods only)."""
        (prompt,) = check_prompts([prompt])
        if isinstance(seed, float) and seed.is_integer():
            seed = int(seed)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise TadaError(f"seed must be a whole number >= 0; got {seed!r}")
        steps = self.model.default_steps if steps is None else steps
        if isinstance(steps, float) and steps.is_integer():
            steps = int(steps)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise TadaError(f"steps must be a whole number >= 1; got {steps!r}")
        clean = {}
        for name, alpha in strengths.items():
            if name not in self.artifacts:
                raise TadaError(f"no steering artifact {name!r}; this studio has {', '.join(self.artifacts) or 'none'}")
            if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
                raise TadaError(f"the strength of {name} must be a finite number; got {alpha!r}")
            if alpha != 0:
                clean[name] = float(alpha)
        if duration is not None:
            if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration) \
                    or duration <= 0:
                raise TadaError(f"duration must be a positive number of seconds; got {duration!r}")
            duration = float(duration)
        if window is not None:
            if len(window) != 2 or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t)
                                           for t in window) or window[0] > window[1]:
                raise TadaError(f"the timestep window must be two finite numbers (from, to) with from <= to; got {window!r}")
            window = (float(window[0]), float(window[1]))
            for name in clean:
                self.artifacts[name].at(0.0, window=window)  # a method without timestep windows says so here
        return prompt, seed, steps, clean, duration, window

    def generate(self, prompt: str, seed: int = 0, steps: int | None = None, strengths: dict | None = None,
                 units: str = "auto", duration: float | None = None, window: tuple[float, float] | None = None
                 ) -> Result:
        """The clip for these settings and its alpha = 0 reference (cached). `units`: "norm" (multiples of the
        artifact's frame norm), "raw", a measure the artifacts are calibrated in, or "auto": the change in the
        studio's :attr:`dial` measure for an artifact calibrated in it (`tada calibrate`), else norm where the
        artifact records a frame norm. `duration`: seconds (the model's default when None); `window`: steer only at denoiser timesteps
        from..to (see :meth:`check`)."""
        prompt, seed, steps, strengths, duration, window = self.check(prompt, seed, steps, strengths or {},
                                                                      duration, window)
        reference = self._clip(prompt, seed, steps, {}, units, duration, None)
        steered = self._clip(prompt, seed, steps, strengths, units, duration, window) if strengths else reference
        return Result(steered / "audio.wav", reference / "audio.wav", steered / "spectrogram.png",
                      reference / "spectrogram.png", steered / "settings.json")

    def _units(self, name: str, units: str) -> str:
        art = self.artifacts[name]
        if units != "auto":
            return units
        if name in self.calibrations:  # the dial gives the measured change: back to an alpha
            return self.dial
        return "norm" if art.meta.get("frame_norm") else "raw"

    def _clip(self, prompt: str, seed: int, steps: int, strengths: dict, units: str, duration, window) -> Path:
        from tada.report.plots import spectrogram_png

        settings = {"model": self.model.name, "prompt": prompt, "seed": seed, "steps": steps, "duration": duration,
                    "window": list(window) if window else None, "units": units, "strengths": strengths}
        # Steers compose in order, so the order is part of the key (the settings' dict alone would be sorted);
        # an effect's alpha comes from its calibration, so the calibrations are part of it too.
        key = content_hash(settings, [(n, self.artifacts[n].content_hash(),
                                       {m: asdict(c) for m, c in getattr(self.artifacts[n], "calibrations", {}).items()})
                                      for n in strengths])
        folder = self.cache / key
        if (folder / "settings.json").is_file():
            return folder
        with self._lock:
            if (folder / "settings.json").is_file():  # made by another caller while this one waited
                return folder
            steer = [self.artifacts[n].at(a, window=window, units=self._units(n, units)) for n, a in strengths.items()]
            audio = self.model.generate([prompt], [seed], steps=steps, duration=duration, steer=steer)
            folder.mkdir(parents=True, exist_ok=True)
            audio.save(folder, ["audio"])
            spectrogram_png(audio.mono()[0].numpy(), audio.sample_rate, folder / "spectrogram.png")
            (folder / "settings.json").write_text(json.dumps(settings, indent=2))  # last: marks the result done
        return folder

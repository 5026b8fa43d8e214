"""Alpha sweeps: one WAV per (prompt, seed, alpha), written as they finish and skipped when present."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tada.audio import Audio
from tada.engine import Copy
from tada.errors import TadaError
from tada.methods.vector import SteeringVector
from tada.models.base import AudioModel, check_prompts
from tada.progress import progress_bar


def parse_alphas(spec: str | Sequence[float]) -> list[float]:
    """``"-100:100:10"`` (start:stop:step, both ends included) or ``"-40,0,40"`` or a list of numbers."""
    if not isinstance(spec, str):
        values = [float(a) for a in spec]
    elif ":" in spec:
        parts = spec.split(":")
        if len(parts) != 3:
            raise TadaError(f"alpha range must be start:stop:step, e.g. -100:100:10; got {spec!r}")
        try:
            start, stop, step = map(float, parts)
        except ValueError as err:
            raise TadaError(f"alpha range must hold three numbers, e.g. -100:100:10; got {spec!r}") from err
        if step <= 0 or stop < start:
            raise TadaError(f"alpha range needs step > 0 and stop >= start; got {spec!r}")
        n = int(np.floor((stop - start) / step + 1e-9)) + 1
        values = [round(start + i * step, 10) for i in range(n)]
    else:
        try:
            values = [float(a) for a in spec.split(",") if a.strip()]
        except ValueError as err:
            raise TadaError(f"alphas must be numbers separated by commas, or start:stop:step; got {spec!r}") from err
    if not values:
        raise TadaError("the alpha list is empty")
    if not all(np.isfinite(values)):
        raise TadaError(f"alphas must be finite; got {values}")
    return values


def wav_name(prompt_index: int, seed: int, alpha: float) -> str:
    return f"p{prompt_index:03d}_s{seed}_a{alpha:+g}.wav"


def alpha_sweep(model: AudioModel, vectors: SteeringVector | Sequence[SteeringVector], prompts: Sequence[str],
                alphas: Sequence[float], out: str | Path, seeds: Sequence[int] = (0,), steps: int | None = None,
                guidance: float | None = None, batch_size: int = 8, copy: Copy = "cond",
                window: tuple[float, float] | None = None) -> pd.DataFrame:
    """Generate every (prompt, seed) at every alpha, all vectors at the same alpha, into ``out/audio``.

    The same seed is used at every alpha, so alpha = 0 is the unsteered reference of each row. Files
    already present are kept and skipped (a killed sweep resumes). Returns and writes ``out/index.csv``
    (prompt_index, prompt, seed, alpha, path).
    """
    prompts = check_prompts(prompts)
    vectors = [vectors] if isinstance(vectors, SteeringVector) else list(vectors)
    if not vectors:
        raise TadaError("give at least one steering vector")
    for v in vectors:
        v.check_model(model)
    out = Path(out)
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(i, p, s, a) for a in alphas for i, p in enumerate(prompts) for s in seeds]
    index = pd.DataFrame([{"prompt_index": i, "prompt": p, "seed": s, "alpha": a,
                           "path": str(Path("audio") / wav_name(i, s, a))} for i, p, s, a in jobs])
    todo = [j for j in jobs if not (audio_dir / wav_name(j[0], j[2], j[3])).exists()]
    with progress_bar(f"alpha sweep ({len(alphas)} alphas)", total=len(jobs), done=len(jobs) - len(todo)) as bar:
        by_alpha: dict[float, list] = {}
        for j in todo:
            by_alpha.setdefault(j[3], []).append(j)
        for alpha, group in by_alpha.items():
            for start in range(0, len(group), batch_size):
                chunk = group[start:start + batch_size]
                steer = [v.at(alpha, copy=copy, window=window) for v in vectors] if alpha != 0 else []
                audio = model.generate([p for _, p, _, _ in chunk], [s for _, _, s, _ in chunk], steps=steps,
                                       guidance=guidance, steer=steer)
                for row, (i, _, s, a) in enumerate(chunk):
                    final = audio_dir / wav_name(i, s, a)
                    (partial,) = audio[row].save(audio_dir, [final.stem + ".partial"])
                    partial.rename(final)  # a kill mid-write leaves no file that looks finished
                bar.advance(len(chunk))
    index.to_csv(out / "index.csv", index=False)
    (out / "manifest.json").write_text(json.dumps({
        "model": model.name, "vectors": [v.meta for v in vectors], "alphas": list(alphas), "seeds": list(seeds),
        "steps": steps or model.default_steps, "guidance": guidance if guidance is not None else model.default_guidance,
        "copy": copy, "window": window}, indent=2, default=str))
    return index


def load_sweep(out: str | Path) -> tuple[pd.DataFrame, Audio]:
    """The index of a finished sweep and all its audio, in index order."""
    out = Path(out)
    index = pd.read_csv(out / "index.csv")
    return index, Audio.load([out / p for p in index.path])

"""Alpha sweeps: one WAV per (prompt, seed, alpha), written as they finish and skipped when present."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tada.audio import Audio
from tada.engine import Copy
from tada.errors import NonFiniteAudioError, TadaError
from tada.methods.vector import SteeringVector, Units
from tada.models.base import AudioModel, check_prompts
from tada.progress import progress_bar
from tada.runs import RunFolder, content_hash
from tada.runs.distributed import barrier, is_main, my_share


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


def sweep_settings(model: AudioModel, vectors: Sequence[SteeringVector], steps: int | None, guidance: float | None,
                   duration: float | None, batch_size: int, copy: Copy, window, units: Units) -> dict:
    """What shapes every file of a sweep (the run folder's manifest); prompts, seeds and alphas key each file."""
    return {"model": model.name, "vectors": [v.content_hash() for v in vectors],
            "vector_meta": [v.meta if isinstance(v, SteeringVector) else _describe(v) for v in vectors],
            "steps": steps or model.default_steps,
            "guidance": guidance if guidance is not None else model.default_guidance,
            "duration": duration if duration is not None else model.default_duration,
            "batch_size": batch_size, "copy": copy, "window": list(window) if window else None, "units": units,
            # an effect's alpha is only as fixed as the calibration it is read from: a new one is another sweep
            **({"calibrations": [asdict(v.calibrations[units]) for v in vectors]} if units not in ("raw", "norm")
               else {})}


def _describe(artifact) -> dict:
    """What a manifest records of a method artifact (its content hash pins the rest)."""
    return {"method": artifact.method, "concept": artifact.concept.name if artifact.concept else None,
            "settings": artifact.settings}


def wav_name(prompt_index: int, seed: int, alpha: float, key: str) -> str:
    """A readable file name that no other (prompt, seed, alpha) shares: the unit key's start ends it."""
    return f"p{prompt_index:03d}_s{seed}_a{alpha:+g}_{key[:10]}.wav"


def alpha_sweep(model: AudioModel, vectors, prompts: Sequence[str],
                alphas: Sequence[float], out: str | Path, seeds: Sequence[int] = (0,), steps: int | None = None,
                guidance: float | None = None, batch_size: int = 8, copy: Copy = "cond",
                window: tuple[float, float] | None = None, duration: float | None = None,
                overwrite: bool = False, units: Units = "raw") -> pd.DataFrame:
    """Generate every (prompt, seed) at every alpha, all vectors at the same alpha, into ``out/audio``.

    vectors: steering artifacts of any method (:mod:`tada.methods.base`), CAA/SAE vectors included; alphas are
    in `units` ("raw"; "norm": multiples of each artifact's measured frame norm, see
    :meth:`SteeringVector.at`; or a measure every artifact is calibrated in, :mod:`tada.methods.calibration`).

    The same seed is used at every alpha, so alpha = 0 is the unsteered reference of each row. ``out`` is a
    :class:`~tada.runs.RunFolder`: a file is reused only when it was made with these settings for the same
    prompt, seed and alpha (a killed sweep resumes; a rerun with other settings refuses, or starts clean with
    `overwrite`). A batch whose audio goes non-finite is retried one generation at a time, and a generation
    that stays non-finite is recorded as a failed cell (``status`` = ``nonfinite`` and ``error``, no file)
    while the sweep goes on; a silent or constant generation is written but flagged (``flag``) with a warning.
    Returns and writes ``out/index.csv`` (prompt_index, prompt, seed, alpha, path, status, error, flag).
    """
    prompts = check_prompts(prompts)
    vectors = [vectors] if hasattr(vectors, "at") else list(vectors)
    if not vectors:
        raise TadaError("give at least one steering vector")
    for v in vectors:
        v.check_model(model)
        for a in alphas:  # a strength these units cannot give (outside a calibration's range): refused before work
            v.strength(float(a), units)
    run = RunFolder(out, "alpha-sweep",
                    sweep_settings(model, vectors, steps, guidance, duration, batch_size, copy, window, units),
                    overwrite=overwrite)
    jobs = [(i, p, s, float(a)) for a in alphas for i, p in enumerate(prompts) for s in seeds]
    keys = [content_hash("alpha-sweep", p, s, a) for _, p, s, a in jobs]
    done = run.units()
    # Batches are a fixed function of the job list (each alpha's jobs in chunks of batch_size), so a resumed
    # or distributed run computes every cell in the same batch as one uninterrupted process.
    blocks = [[(j, k) for j, k in zip(jobs[start:stop], keys[start:stop])]
              for a_start in range(0, len(jobs), len(prompts) * len(seeds))
              for start, stop in _chunks(a_start, a_start + len(prompts) * len(seeds), batch_size)]
    mine = [block for _, block in my_share(blocks)]
    total = sum(len(b) for b in mine)
    with progress_bar(f"alpha sweep ({len(alphas)} alphas)", total=total,
                      done=sum(k in done for b in mine for _, k in b)) as bar:
        for block in mine:
            if all(k in done for _, k in block):
                continue
            alpha = block[0][0][3]
            steer = [v.at(v.strength(alpha, units), copy=copy, window=window) for v in vectors] if alpha != 0 else []
            for record in _generate_cells(model, block, steer, steps, guidance, duration, run):
                if record["key"] not in done:
                    run.append(record)
                    done[record["key"]] = record
                    bar.advance(1)
    barrier()
    done = run.units()
    index = pd.DataFrame([{"prompt_index": i, "prompt": p, "seed": s, "alpha": a, "path": done[k]["path"],
                           "status": done[k]["status"], "error": done[k]["error"], "flag": done[k].get("flag", "")}
                          for (i, p, s, a), k in zip(jobs, keys)])
    if is_main():
        run.write_table("index.csv", index)
    barrier()
    return index


def _chunks(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(i + size, stop)) for i in range(start, stop, size)]


def _generate_cells(model: AudioModel, chunk: list, steer: list, steps, guidance, duration, run: RunFolder):
    """Unit records of one batch of cells, writing each WAV; non-finite cells are retried alone, then failed."""
    try:
        audio = model.generate([j[1] for j, _ in chunk], [j[2] for j, _ in chunk], steps=steps, guidance=guidance,
                               duration=duration, steer=steer)
    except NonFiniteAudioError as err:
        if len(chunk) > 1:  # find which cells fail: alone, each is what it would be in any batch of this one
            for cell in chunk:
                yield from _generate_cells(model, [cell], steer, steps, guidance, duration, run)
            return
        (i, _, s, a), key = chunk[0]
        warnings.warn(f"alpha sweep: the cell prompt {i}, seed {s}, alpha {a:g} failed: {err}", stacklevel=3)
        yield {"key": key, "path": None, "status": "nonfinite", "error": str(err)}
        return
    for row, ((i, _, s, a), key) in enumerate(chunk):
        final = run.file(Path("audio") / wav_name(i, s, a, key))
        (partial,) = audio[row].save(final.parent, [final.stem + ".partial"])
        partial.replace(final)  # a kill mid-write leaves no file that looks finished
        flag = audio_flag(audio.waveform[row])
        if flag:
            warnings.warn(f"alpha sweep: the cell prompt {i}, seed {s}, alpha {a:g} is {flag}: scores of it mean "
                          "nothing", stacklevel=3)
        yield {"key": key, "path": str(final.relative_to(run.path)), "status": "ok", "error": None, "flag": flag}


def audio_flag(wave: torch.Tensor, silence: float = 1e-4) -> str:
    """"silent" when the peak is below `silence` (full scale 1), "constant" when every sample is the same
    non-zero value, else "" : a generation whose scores mean nothing."""
    if wave.abs().max() < silence:
        return "silent"
    if wave.std() == 0:
        return "constant"
    return ""


def folder_name(label: str) -> str:
    """The folder name of a configuration label: "layers {6,7}" -> "layers_6,7", "SAE(7)" -> "SAE7"."""
    return label.replace(" ", "_").replace("{", "").replace("}", "").replace("(", "").replace(")", "")


def load_sweep(out: str | Path) -> tuple[pd.DataFrame, Audio]:
    """The index of a finished sweep's generated cells (failed cells left out) and their audio, in index order."""
    out = Path(out)
    index = pd.read_csv(out / "index.csv")
    index = index[index.status == "ok"].reset_index(drop=True)
    return index, Audio.load([out / p for p in index.path])

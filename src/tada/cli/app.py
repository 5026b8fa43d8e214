"""The typer app every command registers on, and the options and small parsers the commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from tada.errors import TadaError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Localize musical concepts in text-to-music diffusion models and steer them.")
console = Console(highlight=False)

MODEL = typer.Option("toy", "--model", "-m", help="toy (default, offline), tiny-*, a checkpoint alias or hub id")
CONCEPTS = typer.Option(None, "--concepts", help="your own concepts (YAML/JSON), merged with the shipped catalogue")
OVERWRITE = typer.Option(False, "--overwrite", help="start clean when OUT holds a run with other settings")
UNITS = typer.Option("auto", "--units", help="alphas as multiples of the sites' frame norm (norm), raw (raw), "
                                              "auto: norm where every file records a frame norm, else raw, or a "
                                              "measure the files are calibrated in (tada calibrate), e.g. alignment")


@app.callback()
def options(threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for torch (default: "
                                                   "torch's own choice; give 1 when another heavy job shares the cores)"),
            device: str = typer.Option("auto", "--device", help="where models run: auto (this process's GPU if any, "
                                                                "else the CPU), cpu, cuda, cuda:1, ...")):
    """Localize musical concepts in text-to-music diffusion models and steer them."""
    import torch

    from tada.models import registry

    if threads is not None:
        torch.set_num_threads(threads)
    try:
        registry.DEFAULT_DEVICE = registry.auto_device() if device == "auto" else str(torch.device(device))
    except RuntimeError as err:
        raise TadaError(f"--device {device!r} is not a device torch knows (auto, cpu, cuda, cuda:1, ...): {err}") from err


def say(text: str) -> None:
    """Print `text` exactly as written (user text may hold square brackets)."""
    console.print(text, markup=False)


def ints(spec: str | None, option: str = "--layers") -> list[int] | None:
    if spec is None:
        return None
    try:
        return [int(x) for x in spec.split(",") if x.strip()]
    except ValueError as err:
        raise TadaError(f"{option} expects comma-separated integers, e.g. 6,7; got {spec!r}") from err


def check_units(units: str, artifacts=()) -> str:
    """`units` checked; "auto" becomes norm when every artifact records a frame norm, else raw; a calibrated
    measure (e.g. alignment) needs a calibration of it beside every file."""
    if units == "auto":
        return "norm" if all(a.meta.get("frame_norm") for a in artifacts) else "raw"
    if units not in ("norm", "raw"):
        common = set.intersection(*(set(a.calibrations) for a in artifacts)) if artifacts else set()
        if units not in common:
            accepted = (f"norm, raw, auto or a measure every file is calibrated in ({', '.join(sorted(common))})"
                        if common else "norm, raw or auto")
            hint = " (a calibrated measure needs tada calibrate on each file)" if artifacts and not common else ""
            raise TadaError(f"--units must be {accepted}; got {units!r}{hint}")
    for a in artifacts:
        a.strength(1.0 if units in ("norm", "raw") else 0.0, units)  # strengths these units cannot give: refused here
    return units


def seeds(n: int) -> list[int]:
    if n < 1:
        raise TadaError(f"--seeds must be >= 1; got {n}")
    return list(range(n))


def catalogue(path: Optional[Path], names: list[str] = ()):
    """The shipped catalogue merged with the user's file, checked to hold every concept in `names`."""
    from tada.concepts import load_catalogue

    cat = load_catalogue(path)
    for name in names:
        cat[name]
    return cat

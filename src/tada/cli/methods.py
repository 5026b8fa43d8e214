"""Commands over every steering method: `tada methods` (the registry) and `tada fit` (fit any method)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tada.cli.app import CONCEPTS, MODEL, app, catalogue, ints, say
from tada.errors import TadaError


def parse_settings(items: list[str]) -> dict:
    """``key=value`` settings; values read as int, float, true/false or none where they look like one."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise TadaError(f"--set expects key=value, e.g. --set k=64; got {item!r}")
        low = raw.strip().lower()
        value: object = raw.strip()
        if low in ("true", "false"):
            value = low == "true"
        elif low in ("none", "null"):
            value = None
        else:
            for kind in (int, float):
                try:
                    value = kind(raw)
                    break
                except ValueError:
                    pass
        out[key] = value
    return out


def check_settings(fit, method: str, options: dict) -> None:
    """Refuse a --set key that `fit` does not take (a fit with **settings checks its own)."""
    import inspect

    params = inspect.signature(fit).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = [n for n in params if n not in ("cls", "model", "concept", "sites", "top_k", "catalogue")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TadaError(f"{method} has no setting {', '.join(unknown)}; its settings are {', '.join(known) or 'none'}")


def parse_layers(spec: str, top_k: int):
    """"all", comma-separated site indices, or a LayerImpact CSV (its top `top_k` sites)."""
    if spec.strip() == "all":
        return "all"
    if spec.endswith(".csv"):
        from tada.localization.impact import LayerImpact

        path = Path(spec)
        if not path.is_file():
            raise TadaError(f"--layers {spec}: no such Impact table")
        return LayerImpact.read_csv(path)
    return ints(spec)


@app.command("methods")
def list_methods():
    """List every steering method with a one-line description and its cost."""
    from tada.methods.base import methods

    table = methods()
    width = max(len(n) for n in table)
    for name, info in table.items():
        say(f"{name:<{width}}  {info.description} [cost: {info.cost}]")


@app.command()
def fit(
    method: str = typer.Option(..., "--method", help="a steering method (see `tada methods`)"),
    model: str = MODEL,
    concept: Optional[str] = typer.Option(None, "--concept", "-c", help="catalogue concept"),
    concepts: Optional[Path] = CONCEPTS,
    positive: Optional[str] = typer.Option(None, help="explicit positive prompt (instead of --concept)"),
    negative: Optional[str] = typer.Option(None, help="explicit negative prompt"),
    neutral: Optional[str] = typer.Option(None, help="explicit neutral prompt (optional)"),
    layers: str = typer.Option("all", help="site indices (6,7), all, or an Impact CSV (its --top-k sites)"),
    top_k: int = typer.Option(2, help="sites taken from an Impact CSV"),
    settings: list[str] = typer.Option([], "--set", help="method setting key=value (repeatable), e.g. k=64"),
    out: Path = typer.Option(..., help="output .safetensors (a .json with metadata is written beside it)"),
):
    """Fit any steering method on the chosen layers and save it."""
    import tada
    from tada.cli.steer import check_vector_out
    from tada.methods.base import method as method_info
    from tada.runs.distributed import is_main

    info = method_info(method)
    if (concept is None) == (positive is None and negative is None):
        raise TadaError("give either --concept or --positive and --negative")
    if concept is not None:
        subject = catalogue(concepts, [concept])[concept]
    else:
        if not positive or not negative:
            raise TadaError("explicit prompts need both --positive and --negative")
        subject = (positive, negative) + ((neutral,) if neutral else ())
    sites = parse_layers(layers, top_k)
    options = parse_settings(settings)
    check_settings(info.cls.fit, method, options)
    path = check_vector_out(out)
    m = tada.load(model)
    art = info.cls.fit(m, subject, sites=sites, top_k=top_k, **options)
    if is_main():  # under torchrun every process fits the same artifact (CAA and AUSteer split their batches)
        art.save(path)
        say(f"wrote {path} ({method}, sites {art.sites})")

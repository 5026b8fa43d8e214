"""`tada studio`: the live steering studio (Gradio)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tada.cli.app import MODEL, app, say
from tada.errors import TadaError


@app.command()
def studio(
    model: str = MODEL,
    vectors: Optional[Path] = typer.Option(None, help="a folder of steering files (any method): one slider each"),
    cache: Path = typer.Option(Path("runs/studio"), help="results folder (moving a slider back reads it)"),
    host: str = typer.Option("127.0.0.1", help="address to serve on (0.0.0.0: every interface)"),
    port: int = typer.Option(7860, min=1, max=65535),
    sae: Optional[Path] = typer.Option(None, "--sae", help="a trained SAE folder: a tab steers with any of its features"),
    dial: str = typer.Option("alignment", help="the calibrated measure the dials of calibrated files move in "
                                               "(tada calibrate: alignment, or the concept's MIR measure)"),
):
    """The live steering studio (Gradio, the studio extra): sliders over a song, A/B with alpha = 0."""
    try:
        import gradio  # noqa: F401
    except ImportError as err:
        raise TadaError('the studio needs Gradio: pip install -e ".[studio]"') from err
    import tada
    from tada.runs import check_output_dir
    from tada.studio.app import build_app
    from tada.studio.session import Studio

    check_output_dir(cache)
    autoencoder = None
    if sae is not None:
        from tada.sae import TopKSAE

        autoencoder = TopKSAE.load(sae)
    m = tada.load(model)
    session = Studio.from_folder(m, vectors, cache, dial)
    unmatched = [n for n, a in session.artifacts.items() if a.calibrations and n not in session.calibrations]
    if unmatched:
        say(f"note: {', '.join(unmatched)} {'is' if len(unmatched) == 1 else 'are'} calibrated, but not in {dial}: "
            "raw or norm dials")
    say(f"tada studio on http://{host}:{port} ({len(session.artifacts)} sliders)")
    build_app(session, sae=autoencoder).launch(server_name=host, server_port=port)

"""The `tada` command line; every command calls a Python function of the library.

Bad input (a :class:`~tada.errors.TadaError`) prints as one line, exactly as written (no markup), with exit
code 2; any other exception is a bug in tada and keeps its traceback.
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# torchsde (Stable Audio's scheduler) warns on every float rounding of its time grid
warnings.filterwarnings("ignore", category=UserWarning, module="torchsde")
# diffusers' own StableAudioDiTModel.forward uses its deprecated Transformer2DModelOutput on every call
warnings.filterwarnings("ignore", message=".*Transformer2DModelOutput.*", category=FutureWarning)

from tada.cli import evaluate, localize, methods, protocol, sae, steer, studio  # noqa: E402,F401  (each registers its commands)
from tada.cli.app import app  # noqa: E402
from tada.errors import run_command  # noqa: E402


def main():
    """Entry point: usage errors as typer prints them, bad input as one literal line, bugs with tracebacks."""
    run_command(app)

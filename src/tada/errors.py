"""The one error class of bad input: what a user passed (a value, a file, a folder) is not what tada accepts.

The command line prints a :class:`TadaError` as one line and exits with code 2; anything else is a bug and
keeps its traceback.
"""

import sys


class TadaError(ValueError):
    """Bad input: the message names the bad value and what would be accepted."""


class MissingFileError(TadaError, FileNotFoundError):
    """A file or folder the user named does not exist (or lacks a file it must hold)."""


class NonFiniteAudioError(TadaError):
    """A generation went non-finite (NaN or inf), usually under too strong steering; no file is written."""


def check_file(path, what: str = "file"):
    """`path` as a `Path` if it is an existing file, else a :class:`MissingFileError` naming it."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} {path} does not exist" if not path.exists() else f"{what} {path} is not a file")
    return path


def run_command(command) -> None:
    """Run a command-line app (a typer app, or any callable): a :class:`TadaError` prints as the one literal line
    ``error: <message>`` on stderr and exits with code 2; any other exception keeps its traceback."""
    try:
        command()
    except TadaError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None

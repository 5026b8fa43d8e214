"""Run folders: manifest, resumable units, atomic files (see :mod:`tada.runs.folder`)."""

from tada.runs.folder import RunFolder, check_output_dir, content_hash, process_rank, writing

__all__ = ["RunFolder", "check_output_dir", "content_hash", "process_rank", "writing"]

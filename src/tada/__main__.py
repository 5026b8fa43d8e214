"""`python -m tada ...` runs the command line (as `tada ...` does)."""

from tada.cli import main

main()

"""``python -m recdrill``."""

from recdrill.cli import main

main()

"""``python -m serving``."""

from serving.cli import app

app(prog_name="python -m serving")

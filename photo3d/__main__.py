"""``python -m photo3d``: the same command line as ``photo3d``."""

from .cli import app

app(prog_name="photo3d")

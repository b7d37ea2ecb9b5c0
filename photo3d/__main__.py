"""``python -m photo3d``: the same command line as ``photo3d``."""

from . import main

main()

"""Memory checks: the peak of Python's allocations while a call runs, and sparse padded files."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any, Callable


def peak_bytes(call: Callable[[], Any]) -> tuple[Any, int]:
    """``call()``'s result and the peak of what Python allocated meanwhile (tracemalloc)."""
    tracemalloc.start()
    try:
        out = call()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def pad_to(path: Path, size: int) -> Path:
    """``path`` padded with zeros to ``size`` bytes (a sparse file: kilobytes on disk)."""
    with open(path, "ab") as f:
        f.truncate(size)
    return path

"""What a batch says about one input: its :class:`Status` and :class:`Result`."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field, is_dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from ..errors import ExitCode, printable


class Status(StrEnum):
    ok = "ok"
    skipped = "skipped"  # the output exists (resume)
    failed = "failed"
    not_run = "not run"  # the batch stopped (interrupt, fatal error) before this input


def msg(path: Path | str, reason: str) -> str:
    """"PATH: reason" as one printable line (control characters in names escaped)."""
    return f"{printable(path)}: {printable(reason)}"


@dataclass
class Result:
    src: Path
    dst: Path
    status: Status
    seconds: float = 0.0
    bytes: int = 0
    error: str | None = None
    report: dict[str, Any] = field(default_factory=dict)  # the task's per-photo report (JSON-able)
    worker: str | None = None  # which worker ran it ("pid@host")
    peak_rss_mb: float | None = None  # that worker's peak resident memory so far
    fatal: ExitCode | None = None  # not this file's fault (a broken model): stop the batch with this code
    not_made: list[Path] = field(default_factory=list)  # failed: the outputs of this input not written
    also: list[str] = field(default_factory=list)  # failed: the errors of its other outputs that differ (a damaged one each)
    given: str | None = None  # the input as written where src drops part of it ('photo.jpg/': Job.given)

    @property
    def input(self) -> str:
        """The input as given: one per input on the command line or met in a walk (a photo given
        as 'photo.jpg/' and as 'photo.jpg' are two inputs; their src is the same Path)."""
        return self.given if self.given is not None else str(self.src)

    def record(self) -> dict[str, Any]:
        """The summary record: the same for every engine (timings aside)."""
        return {
            "input": self.input,
            "output": str(self.dst),
            "outputs": [str(p) for p in self.report.get("outputs", [self.dst] if self.status == Status.ok else [])],
            "status": self.status.value,
            "seconds": round(self.seconds, 3),
            "bytes": self.bytes,
            "error": self.error,
            **({"not_made": [str(p) for p in self.not_made]} if self.status == Status.failed else {}),
            **({"also": list(self.also)} if self.also else {}),
            "report": jsonable(self.report),
        }


def jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        obj = asdict(obj)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    with contextlib.suppress(Exception):  # numpy scalars
        return obj.item()
    return str(obj)

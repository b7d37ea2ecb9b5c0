"""All photo3d exceptions, and the process exit codes they map to (one place, like OCRmyPDF).

Every error a user can cause is a :class:`Photo3DError`; the CLI prints ``str(err)`` as one
line and exits with ``err.exit_code``.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    ok = 0
    failed = 1  # at least one input could not be processed (bad file, bad model, ...)
    usage = 2  # bad command line: unknown option, missing output, ...
    interrupted = 130


class Photo3DError(Exception):
    """Base class: a one-line message, optionally about one file."""

    exit_code: ExitCode = ExitCode.failed

    def __init__(self, reason: str, path: str | Path | None = None):
        super().__init__(reason)
        self.reason = reason
        self.path = None if path is None else Path(path)

    def __str__(self) -> str:
        msg = " ".join(str(self.reason).split())  # always one line
        return f"{self.path}: {msg}" if self.path is not None else msg


class InputFileError(Photo3DError):
    """An input file cannot be used: missing, unreadable, not an image, truncated, too large."""


class ModelError(Photo3DError):
    """The depth model is missing, corrupt or of the wrong kind."""


class OutputError(Photo3DError):
    """An output cannot be written."""


class UsageError(Photo3DError):
    """The command line asks for something impossible."""

    exit_code = ExitCode.usage

"""All photo3d exceptions, and the process exit codes they map to (one place, like OCRmyPDF).

Every error a user can cause is a :class:`Photo3DError`; the CLI prints ``str(err)`` as one
line and exits with ``err.exit_code``.
"""

from __future__ import annotations

import unicodedata
from enum import IntEnum
from pathlib import Path

_KEEP_CF = {"\u200c", "\u200d"}  # zero-width (non-)joiners: part of ordinary names and emoji


def printable(text: object) -> str:
    """``text`` with every control character escaped, so a message stays one visible line: a file
    name holding a newline, a terminal escape or a bidi override prints as ``\\n``, ``\\x1b``,
    ``\\u202e``; undecodable bytes of a file name (surrogate escapes) as ``\\xNN``."""
    s = str(text)
    if s.isprintable():
        return s
    out = []
    for c in s:
        cat = unicodedata.category(c)
        if cat in ("Cc", "Zl", "Zp") or (cat == "Cf" and c not in _KEEP_CF):
            out.append(repr(c)[1:-1] if c in "\n\r\t" else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")
        elif cat == "Cs":  # a byte of a non-UTF-8 file name (os.fsdecode's surrogateescape)
            out.append(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return "".join(out)


def one_line(text: object) -> str:
    """A library's message as one line: whitespace runs (newlines included) become one space,
    other control characters are escaped."""
    return printable(" ".join(str(text).split()))


def summarize(e: BaseException, limit: int = 160) -> str:
    """A readable one-line summary of an exception from a library (torch, PIL, numpy): the first
    meaningful line, without C++ stack frames, cut at a word boundary (never mid-word)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("Exception raised from", "frame #", "Traceback"))]
    text = one_line(lines[0]) if lines else type(e).__name__
    if len(text) > limit:
        cut = text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:(")
        text = cut + " …"
    return text


_TORCHSCRIPT_WRAPPER = "The following operation failed in the TorchScript interpreter."


def describe(e: BaseException, limit: int = 160) -> str:
    """``Type: summary`` of an exception from a library.  An error inside a TorchScript model
    reaches Python as "The following operation failed in the TorchScript interpreter." and two
    tracebacks of the model's code; what went wrong is the last line of that, ``RuntimeError:
    mat1 and mat2 shapes cannot be multiplied (1152x384 and 3x3)``: that line is the description."""
    text = str(e)
    if text.lstrip().startswith(_TORCHSCRIPT_WRAPPER):
        for line in reversed(text.splitlines()):
            kind, sep, message = line.strip().partition(": ")
            if sep and kind.isidentifier() and kind.endswith(("Error", "Exception")) and message:
                return f"{kind}: {summarize(Exception(message), limit)}"
    return f"{type(e).__name__}: {summarize(e, limit)}"


_console = None


def silence(name: str) -> None:
    """Point the process's ``sys.<name>`` ("stdout", "stderr") at the null device, once it cannot be
    written (what is buffered for it goes there too, so the interpreter's last flush fails no more)."""
    import os
    import sys

    stream = getattr(sys, name)
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, stream.fileno())
        finally:
            os.close(null)
        stream.flush()
    except (OSError, ValueError, AttributeError):
        pass


class _Stderr:
    """``sys.stderr`` (whichever it is now) as the console writes to it, which a reader gone away
    (``photo3d ... 2>&1 | head -1``, a pager quit early) or a full disk (``2>/dev/full``) cannot stop:
    the messages are dropped from then on and the work goes on to its end, outputs and summary
    written (rich raised SystemExit mid-batch and the summary said nothing was run, helper-79)."""

    def __getattr__(self, name: str):
        import sys

        return getattr(sys.stderr, name)

    def write(self, text: str) -> int:
        import sys

        try:
            return sys.stderr.write(text)
        except (OSError, ValueError, AttributeError):  # (a closed file: ValueError; none at all: None)
            silence("stderr")
            return len(text)

    def flush(self) -> None:
        import sys

        try:
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            silence("stderr")


def stderr_console():
    """The one rich Console on stderr of this process: the messages, the batch's progress and a
    video's rendering bar all use it, so their live displays nest (a spinner above a bar) instead
    of overwriting each other's line."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(file=_Stderr(), highlight=False, emoji=False)  # (a file named :fire:.jpg is not 🔥.jpg, helper-72)
    return _console


# What torch 2.13 says of the machinery photo3d runs the depth models with (TorchScript, quantized
# tensors): deprecation notes, not the user's to act on.  Filtered by message, process-wide, once:
# a ``warnings.catch_warnings`` around each call is not thread-safe (it swaps the process's filters),
# and the model loads in a thread beside the photo's work: a batch's per-photo record of warnings
# caught them ("warning: photo.jpg: UserWarning: torch.quantize_per_tensor ... deprecated", helper-63)
LIBRARY_NOISE = (
    (r"`torch\.jit\.\w+` is deprecated", DeprecationWarning),
    (r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor creation", UserWarning),
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
)


def ignore_library_noise() -> None:
    """Filter :data:`LIBRARY_NOISE` out (first in the filters: also where everything else is
    recorded); idempotent."""
    import warnings

    for message, category in LIBRARY_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)


def install_one_line_warnings() -> None:
    """Print any warning that reaches the top (a library's, not caught where it is raised) as one
    line ``warning: Category: message`` instead of Python's two-line block with a source line."""
    import sys
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
        stream = file or sys.stderr
        if stream is not None:
            try:
                stream.write(f"warning: {one_line(f'{category.__name__}: {message}')}\n")
            except (OSError, ValueError):
                pass

    warnings.showwarning = show


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
        msg = one_line(self.reason)  # always one line
        return f"{printable(self.path)}: {msg}" if self.path is not None else msg


class InputFileError(Photo3DError):
    """An input file cannot be used: missing, unreadable, not an image, truncated, too large."""


class TooLargeError(InputFileError):
    """A whole file refused for its size (``--max-megapixels``), not for damage."""


def damaged_existing(src: str | Path, existing: str | Path, kind: str, reason: object) -> InputFileError:
    """The error of an input whose earlier output, which a re-run builds on, is not whole (or of a
    3D photo named as the input itself, which is not one)."""
    if Path(src) == Path(existing):
        said = str(reason)
        return InputFileError(said if said.startswith("not a") else f"not a whole {kind} that photo3d wrote ({said})", src)
    if str(reason) == FOREIGN:  # (a file of the user's under a page's or preview's name)
        return InputFileError(f"the existing {printable(existing)} is not a {kind} photo3d wrote; move it, "
                              "or run again with --overwrite", src)
    return InputFileError(f"the existing {printable(existing)} is not a whole {kind} ({reason}); remove it, "
                          "or run again with --overwrite", src)


FOREIGN = "not one photo3d wrote"  # the reason of a side file (page, preview) that photo3d did not write


class ModelError(Photo3DError):
    """The depth model is missing, corrupt or of the wrong kind."""


class OutputError(Photo3DError):
    """An output cannot be written."""


class UsageError(Photo3DError):
    """The command line asks for something impossible."""

    exit_code = ExitCode.usage


def run_script(main) -> None:
    """``sys.exit(main())`` for a script (the benchmarks): a :class:`Photo3DError` ends it as one
    line ``error: ...`` on stderr, with its exit code."""
    import sys

    try:
        sys.exit(main())
    except Photo3DError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(int(e.exit_code))

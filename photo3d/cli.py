"""Thin command-line front end: parse options, call the core functions, map errors to exit codes."""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import gc
import inspect
import math
import os
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import NoReturn, Optional

import typer

from . import __version__, defaults
from .errors import (ExitCode, Photo3DError, UsageError, ignore_library_noise, install_one_line_warnings, printable, silence,
                     stderr_console)


def _given(opts: list[str], args: list[str]) -> str | None:
    """The value given in ``args`` (the command's arguments) to the option ``opts`` (its last one), if any."""
    value = None
    for i, a in enumerate(args):
        if a in opts and i + 1 < len(args):
            value = args[i + 1]
        elif any(a.startswith(o + "=") for o in opts if o.startswith("--")):
            value = a.split("=", 1)[1]
    return value


def _usage_message(e, args: list[str]) -> str:
    """click's message in photo3d's words: a number out of its range says the range and what was
    given ("--parallax must be a number from 0.001 to 0.2, not nan": a nan was told it was over 0.2)."""
    text = e.format_message().replace("Value error, ", "")
    p = getattr(e, "param", None)
    lo, hi = getattr(p, "min", None), getattr(p, "max", None)
    if "Input should be" in text and (lo is not None or hi is not None) and getattr(p, "opts", None):
        kind = "a whole number" if isinstance(lo if lo is not None else hi, int) else "a number"
        bounds = (f"from {lo:g} to {hi:g}" if lo is not None and hi is not None else
                  f"of at least {lo:g}" if lo is not None else f"of at most {hi:g}")
        given = _given(p.opts, args)
        text = f"{p.opts[-1]} must be {kind} {bounds}" + (f", not {given}" if given is not None else "")
    elif (m := re.fullmatch(r"No such option: (\S+) \(Possible options: ([^)]*)\)", text.strip())):
        # click's suggestions are loose ("--bogus (Possible options: --jobs)"): only a close one is offered
        import difflib

        close = difflib.get_close_matches(m.group(1), [o.strip() for o in m.group(2).split(",")], n=2, cutoff=0.7)
        text = f"No such option: {m.group(1)}" + (f" (did you mean {' or '.join(close)}?)" if close else "")
    elif (m := re.fullmatch(r"Invalid value for '([^']+)': '(.*)' is not one of (.*)\.", text.strip(), re.S)):
        choices = ", ".join(c.strip().strip("'") for c in m.group(3).split(","))
        text = f"{m.group(1).split('/')[-1].strip()} must be one of {choices}, not {m.group(2) or 'an empty value'}"
    return text


def _show_one_line(e, file=None, args: list[str] = (), parsing=None) -> None:
    """Show a command-line mistake as one line (click prints the usage, a hint and the error).
    ``parsing``: the context of the command whose arguments were being parsed (an option missing its
    value comes without one: "--glob requires an argument" had no pointer to --help, helper-99)."""
    ctx = getattr(e, "ctx", None) or parsing
    where = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
    text = _usage_message(e, list(args))
    print(f"error: {printable(text.rstrip('.') if where else text)}{where}", file=file or sys.stderr)


def _one_line_usage_errors(method):
    def wrapped(self, ctx, args, *rest, **kwargs):
        given = list(args)  # (click's parser consumes the list)
        try:
            return method(self, ctx, args, *rest, **kwargs)
        except KeyboardInterrupt:
            _interrupted_before_run()
        except OSError as e:  # --help to a standard output that takes nothing (>/dev/full; a closed pipe): one line
            if e.errno not in (errno.ENOSPC, errno.EPIPE, errno.EIO, errno.EBADF):
                raise
            silence("stdout")
            if e.errno != errno.EPIPE:  # (a reader gone away asked for nothing more: no word, as other tools)
                print(f"error: cannot write to standard output ({e.strerror})", file=sys.stderr)
            raise SystemExit(int(ExitCode.failed)) from None
        except Exception as e:  # click's UsageError (typer may bundle its own click)
            if (getattr(e, "exit_code", None) == 2 and hasattr(e, "format_message")
                    and type(e).__name__ != "NoArgsIsHelpError"):  # (that one shows the help)
                e.show = functools.partial(_show_one_line, e, args=given, parsing=ctx)
            raise

    return wrapped


def _interrupted_before_run() -> NoReturn:
    """A Ctrl-C before the run's own handling begins (the command line parsed, its imports, the checks
    of its options) ended with 130 and no word (helper-72; typer turns it into a silent exit 130): it
    says so, as a stopped run does."""
    err.print("interrupted: nothing written", markup=False, highlight=False)
    raise typer.Exit(int(ExitCode.interrupted)) from None


class _Group(typer.core.TyperGroup):
    """The top level: an unknown command is one line too."""

    parse_args = _one_line_usage_errors(typer.core.TyperGroup.parse_args)
    resolve_command = _one_line_usage_errors(typer.core.TyperGroup.resolve_command)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            _interrupted_before_run()


_COMMAND_PATH: str | None = None  # the command being run ("photo3d convert"), once parsed


class _Command(typer.core.TyperCommand):
    """Plain click help that reads well at 80 columns: a usual usage line (``INPUT...``, not
    ``{inputs}``) and arguments listed by name, without type labels; mistakes are one line."""

    parse_args = _one_line_usage_errors(typer.core.TyperCommand.parse_args)

    def invoke(self, ctx):
        global _COMMAND_PATH
        _COMMAND_PATH = ctx.command_path  # (for _fail's pointer to --help)
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            _interrupted_before_run()

    def _arguments(self, ctx):
        return [p for p in self.get_params(ctx) if p.param_type_name == "argument"]

    def collect_usage_pieces(self, ctx):
        return ([self.options_metavar] if self.options_metavar else []) + [
            p.metavar or p.name.upper() for p in self._arguments(ctx)]

    def format_options(self, ctx, formatter):
        args = [(p.metavar or p.name.upper(), getattr(p, "help", "") or "") for p in self._arguments(ctx)]
        opts = [rv for p in self.get_params(ctx) if p.param_type_name == "option" and (rv := p.get_help_record(ctx))]
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


app = typer.Typer(
    cls=_Group,
    add_completion=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Turn a single 2D photo into a 3D photo (layered depth mesh as glTF).",
)
model_app = typer.Typer(cls=_Group, no_args_is_help=True, rich_markup_mode=None, help="Manage depth models.",
                        context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(model_app, name="model")

err = stderr_console()

# Skip the interpreter's exit-time garbage collection over torch's object graph: ~0.6 s of every
# `photo3d depth` / `convert` run (outputs are written and closed before; atexit callbacks still run).
atexit.register(gc.freeze)

# Help texts stay short (details in the README); plain click help: reads well at 80 columns.
# Paths are not checked by click (readable=False): an unreadable input is one failed file, not a usage error.
# (taken as str: a trailing / says "a folder", and `photo.jpg/`, a file, is a failed input; a Path would drop it)
INPUTS_ARG = typer.Argument(..., metavar="INPUT...", show_default=False, help="Photos or folders.")
MODEL_OPT = typer.Option(None, "--model", metavar="MODEL", readable=False,
                         help="Depth model: a TorchScript .pt or a Tiefenrausch folder (default: the bundled one).")


def _output_opt(text: str):
    """``-o OUT``: a file for one photo, else a folder (``text`` says which files).  Taken as a
    ``str``: a trailing ``/`` (``-o out.d/``) says "a folder" and a Path would drop it."""
    return typer.Option(..., "-o", "--output", metavar="OUT", show_default=False, help=text)


def _one_file_out(inputs: list[str], output: str) -> bool:
    """One photo to one named file (not a folder, not ``-o out.d/``): then -o's suffix chooses the
    format.  A usage error (a folder in the way of -o) ends the command in one line."""
    from .batch import one_file_output

    try:
        return one_file_output(inputs, output)
    except UsageError as e:
        _fail(e)


FORMAT_FOR_FOLDERS = "--format is for folder outputs; for one photo the suffix of -o chooses the format"


def _check_megapixels(value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        _fail(UsageError(f"--max-megapixels must be a finite positive number (there is no 'no limit': "
                         f"it guards against decompression bombs; for larger photos give a larger number), not {value:g}"))


def _batch_options(
    depth_source: str = typer.Option(defaults.DEPTH_SOURCE, "--depth-source", metavar="SOURCE",
                                     help="auto, embedded, stereo or model (auto: the photo's own depth map, else its stereo pair, else the model; embedded, stereo: a photo without it fails)."),
    max_megapixels: float = typer.Option(defaults.MAX_MEGAPIXELS, "--max-megapixels", metavar="MP",
                                         help="Refuse larger images (any finite number > 0)."),
    overwrite: bool = typer.Option(False, "--overwrite", show_default=False,
                                   help="Rewrite existing outputs (default: only for a single input file)."),
    skip_existing: bool = typer.Option(False, "--skip-existing", show_default=False,
                                       help="Keep existing outputs (default for folders and several inputs)."),
    jobs: int = typer.Option(1, "--jobs", "-j", metavar="N", help="Worker processes, or Ray actors (0 = one per CPU)."),
    engine: defaults.Engine = typer.Option(defaults.Engine.local, "--engine", metavar="local|ray",
                                           help="Where to run: here, or on a Ray cluster."),
    address: Optional[str] = typer.Option(None, "--address", metavar="ADDR",
                                          help="Ray cluster to join (default: start a local one)."),
    globs: Optional[list[str]] = typer.Option(None, "--glob", metavar="PATTERN",
                                              help="Folder inputs: keep only files whose name or path below the folder matches PATTERN (case-insensitive, repeatable)."),
    summary: Optional[Path] = typer.Option(None, "--summary", metavar="FILE.json", readable=False,
                                           help="Write a JSON report: one record per planned output (ok, skipped, failed or not run; a failed input: one)."),
) -> SimpleNamespace:
    """The options of every INPUT... command, declared once: :func:`_batch_command` adds them to a
    command (after its own) and hands them over, checked, as one ``batch`` argument."""
    from .batch.run import check_jobs

    _check_source(depth_source)
    _check_megapixels(max_megapixels)
    if overwrite and skip_existing:
        _fail(UsageError("give either --overwrite or --skip-existing, not both"))
    if any(not g.strip() for g in globs or ()):  # (matched nothing, then "no images found in DIR matching ")
        _fail(UsageError("--glob: an empty pattern matches no file name; give one such as '*.jpg'"))
    try:
        check_jobs(jobs)
    except UsageError as e:
        _fail(e)
    overwrite = True if overwrite else False if skip_existing else None  # None: per the inputs (batch_command)
    return SimpleNamespace(depth_source=depth_source, max_megapixels=max_megapixels, overwrite=overwrite, jobs=jobs,
                           engine=engine, address=address, globs=globs or (), summary=summary)


def _batch_command(command):
    """Register ``command(INPUT..., -o OUT, ..., batch)`` as a command taking the options of
    :func:`_batch_options` (after its own) and getting them as ``batch``."""
    shared = inspect.signature(_batch_options, eval_str=True).parameters
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "batch"]

    @functools.wraps(command)
    def run(**kwargs):
        _check_path_names(kwargs)
        kwargs["inputs"] = _once_each(kwargs["inputs"])
        batch = _batch_options(**{name: kwargs.pop(name) for name in shared})
        return command(**kwargs, batch=batch)

    run.__signature__ = inspect.Signature([*own, *shared.values()])
    run.__annotations__ = {p.name: p.annotation for p in run.__signature__.parameters.values()}
    return app.command(cls=_Command)(run)


def _once_each(inputs: list[str]) -> list[str]:
    """INPUT... with an input given again under the same name (``in in/``, ``x.jpg ./x.jpg``) kept
    once, and one warning line for each such input (naming its second spelling; "given N times"
    however often it came): the run is that of the input given once (a folder
    repeated went into ``OUT/<folder>/`` as if it were two, and its photo3d maps were counted twice).
    ``photo.jpg/`` is not ``photo.jpg`` (it asks for a folder, and fails)."""
    from rich.markup import escape

    kept: dict[tuple[Path, bool], list[str]] = {}  # key -> the names it was given under, in order
    for v in inputs:
        kept.setdefault((Path(v), str(v).endswith("/") and not os.path.isdir(v)), []).append(v)
    for names in kept.values():  # one line an input, however often it came (500 times: not 499 lines)
        if len(names) > 1:
            times = "twice" if len(names) == 2 else f"{len(names)} times"
            err.print(f"[yellow]warning:[/yellow] {escape(printable(names[1]))}: given {times}; used once", markup=True,
                      highlight=False, soft_wrap=True)
    return [names[0] for names in kept.values()]


#: The arguments of the INPUT... commands that name files or folders, and how the command line says them
_PATH_ARGS = {"inputs": "INPUT", "output": "-o", "summary": "--summary", "depth_map": "--depth", "model": "--model"}


def _check_path_names(kwargs: dict) -> None:
    """A usage error, before anything else, for a path the system refuses as a name at all (a part
    longer than NAME_MAX, the whole longer than PATH_MAX): every check of it raised, and the command
    ended in a traceback; and for an empty INPUT or -o (``-o "$OUT"`` with OUT unset), which was
    read as the current folder: a photo's output overwrote ``./photo.glb``, a walk converted ``.``.
    (An empty --summary, --depth or --model is a path ``.`` by now: it fails as a folder, writing nothing.)"""
    from .io import path_too_long

    for name, option in _PATH_ARGS.items():
        value = kwargs.get(name)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and not v:  # (an unset shell variable: not the current folder)
                _fail(UsageError(f"{option}: an empty path names no file or folder (write . for the current folder)"))
            if v is not None and (why := path_too_long(v)):
                _fail(UsageError(f"{option} {printable(v)}: {why}"))


def _batch(task, inputs, output: str, suffix: str | list[str], batch: SimpleNamespace, on_result=None,
           progress: bool = True) -> None:
    """Run one per-file task over INPUT... and exit with the batch's exit code (0, 1, 2, 130).
    ``on_result(result)`` is called as each file finishes (e.g. to print a line about it)."""
    from .batch import batch_command

    try:
        code = batch_command(
            task, inputs, output, suffix, jobs=batch.jobs, engine=batch.engine, address=batch.address,
            overwrite=batch.overwrite, globs=batch.globs, summary=batch.summary, console=err,
            command=" ".join(["photo3d", *sys.argv[1:]]), on_result=on_result, progress=progress,
        )
    except Photo3DError as e:
        _fail(e)
    if code == ExitCode.interrupted:
        _exit_interrupted()
    raise typer.Exit(code)


#: A stopped run's cleanup may take this long (worker processes and their semaphores) before the
#: process is ended anyway
EXIT_GRACE_S = 5.0


def _exit_interrupted() -> None:
    """A run that stopped (and said so: its summary and outputs are written) ends with 130, and
    only 130, with nothing printed after its last line. Python's own exit waits for every thread
    (a stop that lands while a thread pool starts a worker left one waiting for good: one run in a
    dozen under load said "interrupted" and never exited, helper-72) and wakes a process pool's
    manager, which on Python 3.11 can race with its closing ("Exception ignored ... OSError: [Errno 9]
    Bad file descriptor" after the last line, CI); skipping every cleanup (os._exit at once) left the
    pool's semaphores to multiprocessing's resource tracker, which warned of them (CI). So the
    ``atexit`` cleanups run (multiprocessing's among them), then the process ends; a daemon timer ends
    it after EXIT_GRACE_S if they hang, and a Ctrl-C pressed again ends it at once (it killed it by
    SIGINT, exit -2 to a caller, session 23)."""
    import signal
    import threading

    from .batch.local import STOP_SIGNALS, ignored

    def now(*_) -> None:
        for stream in (sys.stdout, sys.stderr):  # (None where the descriptor was closed: >&-)
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(int(ExitCode.interrupted))

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, *STOP_SIGNALS):
            if not ignored(sig):
                signal.signal(sig, now)
    timer = threading.Timer(EXIT_GRACE_S, now)
    timer.daemon = True
    timer.start()
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    now()


def _fail(e: Photo3DError) -> None:
    from rich.markup import escape

    # an option's value out of its range or choices, refused by our own checks, points to --help as
    # click's range checks do (--parallax said "(see: photo3d convert --help)", --size and --path
    # did not: helper-94)
    where = (f" (see: {_COMMAND_PATH} --help)" if _COMMAND_PATH and isinstance(e, UsageError)
             and re.match(r"--[a-z-]+ must be ", str(e)) and "--help" not in str(e) else "")
    err.print(f"[red]error:[/red] {escape(printable(e))}{escape(where)}", markup=True, soft_wrap=True)  # one line, [names] kept
    raise typer.Exit(int(e.exit_code))


def _version(value: bool) -> None:
    if value:
        print(f"photo3d {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    install_one_line_warnings()
    # (in the process's own filters from the start: set only by the model's module, they were set inside
    # a task's recording of warnings when the model loaded meanwhile, and undone with it; a run stopped
    # then printed torch's note after its last line, helper-72)
    ignore_library_noise()


def _outputs_line(r) -> str:
    """"SRC -> OUT, OUT.html (open in a browser)": every file this input wrote."""
    outs = [str(p) for p in r.report.get("outputs", [r.dst])]
    names = ", ".join(f"{o} (open in a browser)" if o.lower().endswith(".html") else o for o in outs)
    return f"{r.src} -> {names}"


def _say_result(r, details: str) -> None:
    err.print(printable(f"{_outputs_line(r)}: {details}"), markup=False, highlight=False, soft_wrap=True)


@_batch_command
def depth(
    inputs: list[str] = INPUTS_ARG,
    output: str = _output_opt("A .png (16-bit) or .npy file for one photo, else a folder."),
    model: Optional[Path] = MODEL_OPT,
    raw: bool = typer.Option(False, "--raw", help="Write the depth at its own size, not upsampled to the photo's: the network's output, or a photo's own depth or stereo map."),
    preview: bool = typer.Option(False, "--preview", help="Also write NAME.preview.png (red = near)."),
    fmts: Optional[list[str]] = typer.Option(None, "--format", metavar="png|npy", help="Folder outputs: png (16-bit, default) or npy (float32)."),
    timings: bool = typer.Option(False, "--timings", help="Print the time of each stage."),
    batch: SimpleNamespace = None,  # the batch options (see _batch_options)
) -> None:
    """Predict depth maps (normalized disparity: larger = nearer)."""
    from .depth import DepthOptions

    # (as convert's: any case, a leading dot; once: a map is written in one format)
    given = list(dict.fromkeys(f.lower().lstrip(".") for f in fmts or ()))
    if bad := next((f for f in given if f not in ("png", "npy")), None):
        _fail(UsageError(f"--format must be png or npy, not {bad!r}"))
    if len(given) > 1:
        _fail(UsageError(f"--format is given once for depth maps: png or npy, not {' and '.join(given)}"))
    fmt = given[0] if given else None
    if fmt is not None and _one_file_out(inputs, output):
        _fail(UsageError(FORMAT_FOR_FOLDERS))
    fmt = fmt or "png"
    from .batch import rewrites

    opts = DepthOptions(model=model, raw=raw, preview=preview, max_megapixels=batch.max_megapixels,
                        depth_source=batch.depth_source, keep_existing=not rewrites(inputs, batch.overwrite))

    def said(r) -> None:  # one line per photo as soon as it is done
        if r.status == "ok":
            i = r.report
            line = i["finished"] if "finished" in i else (f"depth from {_source(i)}, {i.get('width', '?')}x"
                                                          f"{i.get('height', '?')} depth map (larger = nearer), {r.seconds:.2f} s")
            if timings and i.get("seconds"):  # (as convert's --timings; depth had none)
                line += " (" + ", ".join(f"{k} {v:.2f}" for k, v in i["seconds"].items()) + ")"
            elif timings and "finished" in i:  # (a preview added to a kept map: its time at least)
                line += f", {r.seconds:.2f} s"
            _say_result(r, line)

    from .depth import depth_task

    _batch(depth_task(opts), inputs, output, "." + fmt, batch, on_result=said)


def _check_source(source: str) -> None:
    from .depth.embedded import SOURCES

    if source not in SOURCES:
        _fail(UsageError(f"--depth-source must be one of {', '.join(SOURCES)}, not {source!r}"))


def _source(info: dict) -> str:
    """Where a photo's depth came from, for its result line."""
    src = info.get("depth_source", "model")
    if src in ("embedded", "stereo"):
        return f"{src} ({info.get('depth_kind')})"
    if src == "file":
        return str(info.get("depth"))
    return f"model ({info.get('model') or info.get('depth')})"


FORMATS = (".glb", ".mp4", ".gif", ".webp", ".html")  # --format (folder outputs; with --stereo also video.STILL_SUFFIXES)
_SIZES = defaults.VIDEO_SIZE_RANGE  # --size


def _file_size(nbytes: int) -> str:
    """A written file's size for the result line: MB with two decimals, kB under 0.01 MB (a small
    GLB or video said "0.00 MB", as if nothing had been written)."""
    return f"{nbytes / 1e6:.2f} MB" if nbytes >= 9_995 else f"{nbytes / 1e3:.1f} kB"


def _share_details(s: dict, nbytes: int) -> str:
    """A video's (or stereo still's) part of the result line: frames, size, MB, and any notes."""
    notes = f" ({'; '.join(s['notes'])})" if s.get("notes") else ""
    what = "image" if s.get("still") else f"{s['frames']} frame(s)"
    return f"{what} {s['size'][0]}x{s['size'][1]}, {_file_size(nbytes)}{notes}"


def _convert_details(r, timings: bool) -> str:
    """What a converted photo holds: depth source, layers, vertices, the size of the file written
    (a video's or still's with its frames; the GLB in memory is not a file), time (+ stage timings)."""
    i = r.report
    if "finished" in i:  # (a page or video added from a kept output: with --timings, its time)
        return i["finished"] + (f", {r.seconds:.2f} s" if timings else "")
    secs = f"{r.seconds:.2f} s"  # (the stages beside the time they add up to, not after a video's notes)
    if timings and i.get("seconds"):
        secs += " (" + ", ".join(f"{k} {v:.2f}" for k, v in i["seconds"].items()) + ")"
    if i.get("from_glb"):  # rendered from the GLB this batch wrote (or found) beside it
        what = _share_details(i["share"], r.bytes) if i.get("share") else _file_size(r.bytes)
        line = f"from {i['from_glb']}, {what}, {secs}"
    else:
        line = (f"depth from {_source(i)}, {i.get('layers', '?')} layer(s), {i.get('vertices', 0):,} vertices, "
                + ("" if i.get("share") else f"{_file_size(r.bytes)}, ") + secs)
        if i.get("share"):
            line += "; " + _share_details(i["share"], r.bytes)
    for key in ("texture_note", "page_note"):
        if i.get(key):
            line += "; " + i[key]
    return line


def _check_video_options_apply(ctx, suffixes: list[str]) -> None:
    """A video option given for a run that writes no video nor stereo still (``-o x.glb --stereo sbs``),
    or a motion option (--path, --seconds, --fps) for one that writes only stills, is a usage
    error, not silently ignored."""
    from .video import STILL_SUFFIXES, VIDEO_SUFFIXES

    given = [f"--{n}" for n in ("path", "seconds", "fps", "size", "stereo")
             if getattr(ctx.get_parameter_source(n), "name", "") == "COMMANDLINE"]
    if not given or not set(suffixes) <= {".glb", ".html", *VIDEO_SUFFIXES, *STILL_SUFFIXES}:
        return  # (an output of another suffix is the error: said when the outputs are planned)
    writes = f"this run writes {', '.join(s for s in suffixes)}"
    motion = [n for n in given if n in ("--path", "--seconds", "--fps")]
    if not set(suffixes) & {*VIDEO_SUFFIXES, *STILL_SUFFIXES}:  # (a stereo still takes no motion option)
        where = ("videos (.mp4 .gif .webp)" if given == motion else
                 "videos (.mp4 .gif .webp; --size and --stereo also for .jpg/.png stereo stills)" if motion else
                 "videos and stereo stills (.mp4 .gif .webp, or .jpg/.png with --stereo)")
        raise UsageError(f"{', '.join(given)}: only for {where}; {writes}")
    if motion and not set(suffixes) & set(VIDEO_SUFFIXES):
        if "--stereo" not in given:  # (-o s.jpg --path swing: no stereo still was asked for, the first thing to say)
            raise UsageError(f"a still image output needs --stereo sbs (or sbs-half); {writes}")
        raise UsageError(f"{', '.join(motion)}: only for videos (.mp4 .gif .webp): a stereo still is one frame; {writes}")


def _check_glb_inputs(ctx, inputs) -> None:
    """A 3D photo (.glb) named as input is rendered as it is: an option that builds one (--model,
    --depth, --depth-source, --quality, --max-texture) given with it is a usage error before any work (raised per file,
    it stopped a batch of photos and GLBs after whichever came first)."""
    from .pipeline import renders_as_is

    builds = {"model": "--model", "depth_map": "--depth", "depth_source": "--depth-source", "quality": "--quality",
              "max_texture": "--max-texture"}
    given = [opt for name, opt in builds.items() if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"]
    glb = next((i for i in inputs if renders_as_is(Path(i))), None)
    if given and glb is not None:
        raise UsageError(f"{printable(glb)}: a 3D photo (.glb) given as input is rendered as it is: "
                         f"{' and '.join(given)} {'does' if len(given) == 1 else 'do'} not apply")


@_batch_command
def convert(
    ctx: typer.Context,
    inputs: list[str] = INPUTS_ARG,
    output: str = _output_opt("A file for one photo (.glb .html .mp4 .gif .webp; .jpg .png with --stereo), else a folder."),
    model: Optional[Path] = MODEL_OPT,
    depth_map: Optional[Path] = typer.Option(None, "--depth", metavar="MAP", readable=False,
                                             help="Use this depth map (16-bit PNG, TIFF, PGM or .npy; larger = nearer: invert distances); one photo only."),
    formats: Optional[list[str]] = typer.Option(
        None, "--format", metavar="FORMAT", help="Folder outputs: glb, mp4, gif, webp, html, or jpg/png with --stereo (repeatable; default glb)."
    ),
    html: bool = typer.Option(False, "--html", help="Also write NAME.html, an offline viewer (beside any output)."),
    parallax: float = typer.Option(defaults.PARALLAX, "--parallax", min=defaults.PARALLAX_RANGE[0],
                                   max=defaults.PARALLAX_RANGE[1], metavar="SHARE",
                                   help="Near vs far shift, share of the width shown (viewer and video; a panorama's centre 21:9)."),
    path: str = typer.Option(defaults.VIDEO_PATH, "--path", metavar="circle|swing|zoom|dolly-zoom", help="Video camera path."),
    seconds: float = typer.Option(defaults.VIDEO_SECONDS, "--seconds", min=0.05, metavar="S", help="Video length in seconds (at most 100,000 frames at --fps)."),
    fps: float = typer.Option(defaults.VIDEO_FPS, "--fps", min=1.0, max=120.0, metavar="FPS", help="Video frames per second."),
    size: Optional[int] = typer.Option(None, "--size", metavar="PX",
                                       help=f"Video / still longer side of each view, {_SIZES[0]}-{_SIZES[1]} (--stereo sbs frames are twice as wide; "
                                            "default: 1080 MP4 and stills, 480 GIF/WebP, or the photo's own size when smaller; a --size above it upscales)."),
    stereo: Optional[str] = typer.Option(None, "--stereo", metavar="sbs|sbs-half",
                                         help="Side-by-side stereo video or still (.jpg/.png): full or half width."),
    timings: bool = typer.Option(False, "--timings", help="Print the time of each stage."),
    quality: int = typer.Option(defaults.JPEG_QUALITY, "--quality", min=1, max=100, metavar="1-100", help="JPEG quality of the 3D photo's texture, which videos and stills are rendered from too (a stereo .jpg still itself is saved at 92)."),
    max_texture: int = typer.Option(defaults.MAX_TEXTURE_SIDE, "--max-texture", min=256, max=defaults.MAX_TEXTURE_LIMIT, metavar="PX", help="Longest side of the texture (at most 16384: what WebGL viewers show)."),
    batch: SimpleNamespace = None,  # the batch options (see _batch_options)
) -> None:
    """Build 3D photos (.glb .html), videos (.mp4 .gif .webp), stills.

    Layered depth mesh with the hidden background inpainted; -o's suffix chooses what is
    written (--format for folders), --html adds the offline viewer page beside it."""
    from .batch import rewrites
    from .pipeline import ConvertOptions

    if depth_map is not None and model is not None:
        _fail(UsageError("give either --depth or --model, not both"))
    if depth_map is not None and (len(inputs) != 1 or os.path.isdir(inputs[0])):
        _fail(UsageError("--depth needs exactly one input photo" + (
            f", not a folder ({printable(inputs[0])})" if len(inputs) == 1 else f", not {len(inputs)} inputs")))
    if depth_map is not None and batch.depth_source != defaults.DEPTH_SOURCE:
        _fail(UsageError("give either --depth or --depth-source, not both"))
    from .video import STILL_SUFFIXES, ShareOptions, check_frames, check_share

    single = len(inputs) == 1 and not os.path.isdir(inputs[0])
    suffixes = ["." + f.lower().lstrip(".") for f in (formats or ["glb"])]
    # (jpeg is jpg: one set of .jpg files, not a second set on a run that spells it the other way)
    suffixes = list(dict.fromkeys(".jpg" if s == ".jpeg" else s for s in suffixes))
    if html and ".glb" in suffixes and ".html" in suffixes:  # (the page is the GLB's side file: written once, one output)
        suffixes.remove(".html")
    try:
        share = ShareOptions(path=path, seconds=seconds, fps=fps, size=size, stereo=stereo, progress=single and batch.jobs == 1)
        check_share(share)
        if formats and _one_file_out(inputs, output):
            raise UsageError(FORMAT_FOR_FOLDERS)
        for s in suffixes:
            if s not in FORMATS + STILL_SUFFIXES:
                raise UsageError(f"--format must be one of {', '.join(f[1:] for f in FORMATS)}, or jpg/png with "
                                 f"--stereo, not {s[1:]!r}")
            if s in STILL_SUFFIXES and not stereo:
                raise UsageError(f"--format {s[1:]}: a still image output needs --stereo sbs (or sbs-half)")
        writes = [Path(output).suffix.lower()] if _one_file_out(inputs, output) else suffixes
        _check_video_options_apply(ctx, writes)
        _check_glb_inputs(ctx, inputs)
        for s in writes:  # (before any work, not once per photo of a batch)
            check_frames(s, share)
    except UsageError as e:
        _fail(e)
    reuse = None
    # the GLB job (else the page's: it holds the GLB) runs first; the others render its 3D photo
    source = ".glb" if ".glb" in suffixes else ".html" if ".html" in suffixes else None
    if source is not None and len(set(suffixes)) > 1:
        suffixes.sort(key=lambda x: x != source)
        reuse = time.time() if batch.overwrite else 0.0  # resuming: an existing GLB is this photo's 3D photo
    opts = ConvertOptions(model=model, depth=depth_map, html=html, jpeg_quality=quality, parallax=parallax,
                          max_texture_side=max_texture, max_megapixels=batch.max_megapixels, depth_source=batch.depth_source,
                          share=share, reuse_glb_since=reuse, keep_existing=not rewrites(inputs, batch.overwrite),
                          html_beside=None if len(set(suffixes)) == 1 else suffixes[0], page_format=".html" in suffixes,
                          reuse_suffix=source or ".glb")

    def said(r) -> None:  # one line per photo as soon as it is done
        if r.status == "ok":
            _say_result(r, _convert_details(r, timings))

    from .pipeline import convert_task

    # (one video: the batch's spinner shows while the photo converts, the rendering bar below it)
    _batch(convert_task(opts), inputs, output, suffixes, batch, on_result=said)


def _spinner(text: str):
    """A spinner with ``text`` and the time so far on a terminal (gone when done); nothing in a pipe."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bar = Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), TimeElapsedColumn(), console=err,
                   transient=True, disable=not err.is_terminal)
    bar.add_task(printable(text), total=None)  # (plain text: no markup, no :emoji:)
    return bar


@model_app.command("import", cls=_Command)
def model_import(
    folder: Path = typer.Argument(..., metavar="DIR", readable=False, help="Folder with tiefenrausch.pb + tiefenrausch_init.pb."),
    output: str = typer.Option(..., "-o", "--output", metavar="FILE.pt", help="TorchScript file to write (.pt; not named like the bundled model)."),
) -> None:
    """Convert Tiefenrausch (Caffe2) to an INT8 TorchScript file."""
    from .batch import check_output_file, names_a_folder
    from .depth.modelfile import check_output_name
    from .depth.tiefenrausch import import_tiefenrausch_file
    from .io import effective_path

    try:  # (-o is checked before the conversion's seconds, not after)
        if not output:
            raise UsageError("-o: an empty path names no file (e.g. -o tiefenrausch.pt)")
        output = effective_path(output)
        if names_a_folder(output):
            raise UsageError(f"-o {printable(output)}: names a folder; give the file to write (e.g. -o {Path(output) / 'tiefenrausch.pt'})")
        check_output_name(output)
        check_output_file(output)
        with _spinner(f"importing {folder}"):  # (several seconds)
            import_tiefenrausch_file(folder, output)
    except Photo3DError as e:
        _fail(e)
    err.print(printable(f"wrote {output}"), markup=False, highlight=False, soft_wrap=True)

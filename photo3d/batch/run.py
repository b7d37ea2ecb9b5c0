"""Run a batch: skip what exists, run the rest on an executor, show progress, report, summary."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..defaults import Engine
from ..errors import ExitCode, Photo3DError, UsageError, damaged_existing, printable, stderr_console
from ..io import OUTPUT_THERE, effective_path, kept_file_problem, output_state, write_bytes_atomic
from .local import (STOP_SIGNALS, Executor, PoolExecutor, SequentialExecutor, available_cpus, signals_handled,
                    stop_signals_ignored)
from .plan import (Job, PlanNotes, check_reads, check_summary_path, check_writable, passed_over, glob_matches, plan_outputs,
                   remove_stale_temps)
from .result import Result, Status, msg
from .task import Task, execute


def _sigterm_to_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


def _size(path: Path) -> int:
    """The size of an output found done (0 if it went meanwhile)."""
    try:
        return os.stat(path).st_size
    except (OSError, ValueError):
        return 0


def check_jobs(jobs: int) -> None:
    """``--jobs``: a worker count, or 0 for one per CPU."""
    if jobs < 0:
        raise UsageError(f"--jobs must be a number of worker processes (1 or more), or 0 for one per CPU; not {jobs}")


def make_executor(engine: Engine | str = Engine.local, jobs: int = 1, address: str | None = None,
                  warn: Callable[[str], None] | None = None) -> Executor:
    """``jobs``: worker count; 0 = one per CPU (local) or per cluster CPU (ray).
    Locally never more workers than the CPUs this process may use: each worker is a process
    with its own model (about 0.5 GB, up to 1 GB with videos), and more than one per CPU only share the CPUs;
    ``warn`` gets one line when the asked ``jobs`` is lowered."""
    if engine not in set(Engine):
        raise UsageError(f"--engine must be one of {', '.join(Engine)}, not {engine!r}")
    check_jobs(jobs)
    if engine == Engine.ray:
        from .ray_executor import RayExecutor

        return RayExecutor(address, jobs or None, warn=warn)
    if address:
        raise UsageError("--address needs --engine ray")
    cpus = available_cpus()
    if jobs > cpus and warn is not None:
        # ("at most": fewer files to convert than CPUs get fewer workers; "lowered to 2" was said
        # of a run that then had 1 worker, or none, helper-94)
        warn(f"--jobs {jobs} lowered to at most {cpus}: this process can use {cpus} CPU{'s' if cpus != 1 else ''}, "
             "and more workers would only share them, each taking its own memory (0.5 GB or more)")
    jobs = min(jobs or cpus, cpus)
    return SequentialExecutor() if jobs == 1 else PoolExecutor(jobs)



@dataclass
class BatchReport:
    results: list[Result]
    engine: str = "local"
    workers: int = 1
    seconds: float = 0.0
    interrupted: bool = False
    fatal: str | None = None  # the error that stopped the batch (a broken model, a bad option)
    fatal_code: ExitCode = ExitCode.failed
    worker_deaths: int = 0  # worker processes that died (killed, out of memory): their photos were run again

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.status == Status.failed]

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted:
            return ExitCode.interrupted
        if self.fatal:
            return self.fatal_code
        return ExitCode.failed if self.failed else ExitCode.ok

    def summary(self, command: str | None = None) -> dict[str, Any]:
        from .. import __version__

        workers: dict[str, float] = {}
        for r in self.results:
            if r.worker and r.peak_rss_mb is not None:
                workers[r.worker] = max(workers.get(r.worker, 0.0), r.peak_rss_mb)
        return {
            "photo3d": __version__,
            "command": command,
            "engine": self.engine,
            "workers": self.workers,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
            "fatal": self.fatal,
            "counts": {s.value: self.count(s) for s in Status},
            "peak_rss_mb_per_worker": {k: round(v, 1) for k, v in sorted(workers.items())},
            "worker_deaths": self.worker_deaths,
            "results": [r.record() for r in self.results],
        }

    def write_summary(self, path: Path, command: str | None = None) -> None:
        write_summary(path, self.summary(command))


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Replace the ``--summary`` file at once (a temp file renamed): never half written."""
    text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8", "backslashreplace"))


def unfinished_summary(inputs: int, engine: str, command: str | None = None) -> dict[str, Any]:
    """The summary a run writes before it starts: ``finished`` null, every input not run yet, no
    records.  A run that is killed outright (``kill -9``, the out-of-memory killer) cannot write its
    own, and must not leave an earlier run's summary to be read as its outcome."""
    summary = BatchReport([], engine=engine, workers=0).summary(command)
    summary.update(finished=None, seconds=None, interrupted=None)
    summary["counts"][Status.not_run.value] = inputs
    return summary



def _sigterm_as_interrupt() -> contextlib.AbstractContextManager[None]:
    return signals_handled(STOP_SIGNALS, _sigterm_to_interrupt)


#: Ctrl-C (kill, a hang-up) before a batch starts: while its inputs are walked, before anything is written
INTERRUPTED_BEFORE = "interrupted while looking for photos, before any was converted: nothing was written"


def say(console: Console, text: str, kind: str = "error") -> None:
    """Print one message line: ``error: ...`` / ``warning: ...`` (control characters escaped)."""
    colour = {"error": "red", "warning": "yellow"}.get(kind)
    head = f"[{colour}]{kind}:[/{colour}] " if colour else ""
    console.print(head + escape(printable(text)), markup=True, highlight=False, soft_wrap=True)


def run_batch(
    jobs: Sequence[Job],
    task: Task,
    executor: Executor | None = None,
    console: Console | None = None,
    overwrite: bool = False,
    progress: bool = True,
    on_result: Callable[[Result], None] | None = None,
    keep_reports: bool = True,
    spare_foreign_sides: bool = False,
) -> BatchReport:
    """Run ``task`` over ``jobs``: skip existing outputs (unless ``overwrite``), print each
    failure as it happens, stop early only for a fatal (model) error or an interrupt.
    ``spare_foreign_sides`` (a single photo rewritten without ``--overwrite``): a file of the user's
    under the name of a page or preview beside the output is not overwritten; its input fails.
    An existing output whose side files are missing or empty (``--html`` added on a re-run) gets
    just those written, by the task's ``finish`` hook, here.
    Results come back in the planned order whatever order the workers finished in;
    ``on_result`` sees each file's Result as soon as it is done (e.g. to print a line).
    On a terminal a progress bar (or, for one file, a spinner) shows; in a pipe nothing does.
    ``keep_reports=False`` (no ``--summary`` to write): each file's report is dropped once it is said,
    so that memory does not grow with the batch (about 3-5 KB a photo, helper-87: gigabytes for an
    archive of millions)."""
    console = console or stderr_console()  # (the process's one: a video's bar nests under the batch's)
    executor = executor or SequentialExecutor()
    t_start = time.perf_counter()
    results: dict[int, Result] = {}
    todo: list[Job] = []
    finish: list[int] = []
    notes: dict[int, str] = {}  # the warning for an output kept although made with other options
    index: dict[tuple[str, str], int] = {}
    failed_srcs: set[tuple[str, str | None]] = set()  # failures said (several formats: each error once per input)

    def say_failed(r: Result, ui_console: Console) -> None:
        if (r.input, r.error) not in failed_srcs:  # (an unreadable photo: one line; two damaged outputs: two)
            failed_srcs.add((r.input, r.error))
            say(ui_console, r.error or msg(r.src, "failed"))

    stamps: dict[Path, tuple[int, int] | None] = {}  # what was at each output before the run (see _written_in_run)
    for i, job in enumerate(jobs):
        rewrite = overwrite or job.numbered  # (a numbered name's output may be another photo's: see Job)
        states = {p: output_state(p) for p in job.outputs}
        stamps.update((p, _stamp(p) if state in OUTPUT_THERE else None) for p, state in states.items())
        if job.error:
            results[i] = Result(job.src, job.dst, Status.failed, error=job.error, given=job.given)
            say_failed(results[i], console)
        elif in_way := [(p, s) for p, s in states.items() if s not in OUTPUT_THERE]:  # not an output that exists
            # (it was skipped as one, exit 0; a page or preview beside it too): in the way
            path, kind = in_way[0]
            results[i] = Result(job.src, job.dst, Status.failed, given=job.given,
                                error=msg(path, f"cannot write ({kind} of that name is in the way; move it, or choose another -o)"))
            say_failed(results[i], console)
        elif (not rewrite or spare_foreign_sides) and (bad := next(
                ((p, pr) for p in job.sides if states[p] == "done" and (pr := kept_file_problem(p, side=True))
                 and (not rewrite or not pr[1].startswith("cut short"))), None)):
            # a page or preview beside the output that photo3d did not write, or not whole: kept as done,
            # or overwritten with the output (helper-98); neither, the input fails.  A single photo's run
            # rewrites its output (the file you named) and a page or preview of photo3d's beside it (also cut
            # short), but not a file of yours that only has the side file's name (helper-119)
            results[i] = Result(job.src, job.dst, Status.failed, given=job.given,
                                error=str(damaged_existing(job.src, bad[0], *bad[1])))
            say_failed(results[i], console)
        else:
            if not rewrite:  # an empty file is never a finished output: what a crash left (an older photo3d's,
                # or another program's), once skipped as done
                for p in (p for p, s in states.items() if s == "empty"):
                    say(console, msg(p, "exists but is empty (cut short by a crash?); written again"), "warning")
            if not rewrite and states[job.dst] == "done":
                if problem := kept_file_problem(job.dst, tagged=task.tags_outputs):
                    # (a junk p.glb, or depth map, was kept as "skipped (output exists)")
                    results[i] = Result(job.src, job.dst, Status.failed, given=job.given,
                                        error=str(damaged_existing(job.src, job.dst, *problem)))
                    say_failed(results[i], console)
                    continue
                # (raw maps kept without a word, helper-112; also when only a side file is missing, helper-114)
                note = task.kept_note(job.src, job.dst, task.options) if task.kept_note is not None else None
                if note:  # (said, and in the --summary record: "warning")
                    say(console, f"{printable(job.dst)}: {note}", "warning")
                    notes[i] = f"{job.dst}: {note}"
                if any(states[p] != "done" for p in job.sides):
                    finish.append(i)
                    index[(str(job.src), str(job.dst))] = i
                    continue
                results[i] = Result(job.src, job.dst, Status.skipped, bytes=_size(job.dst),
                                    report={"kept": [str(p) for p in job.outputs],
                                            **({"warning": notes[i]} if i in notes else {})})
            else:
                todo.append(job)
                index[(str(job.src), str(job.dst))] = i
    remove_stale_temps(jobs)
    missing = _missing_folders(todo)  # (made by this run: removed again where a stop leaves them empty)
    skipped = sum(1 for r in results.values() if r.status == Status.skipped)
    interrupted = False
    fatal: str | None = None
    fatal_code = ExitCode.failed
    counts = {Status.ok: 0, Status.failed: sum(1 for r in results.values() if r.status == Status.failed)}

    show = progress and console.is_terminal and len(todo) + len(finish) > 0
    if len(todo) + len(finish) > 1:
        columns = [
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[green]{task.fields[ok]} ok[/] [yellow]{task.fields[skipped]} skipped[/] "
                       "[red]{task.fields[failed]} failed[/]"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        ]
        description = task.name
    else:  # one file: a spinner with its name and the time so far, gone when it is done
        columns = [SpinnerColumn(), TextColumn("{task.description}", markup=False), TimeElapsedColumn()]
        one = jobs[finish[0]] if finish else (todo[0] if todo else None)
        description = printable(f"{task.name} {one.src.name}") if one else task.name  # (plain text: no markup, no :emoji:)

    warned: set[tuple[str, str]] = set()  # a photo's warning is said once, not once per output

    def done(i: int, r: Result, bar_ui: Progress, bar) -> None:
        if i in notes:  # (a page added beside a kept output made with other options)
            r = replace(r, report={**r.report, "warning": notes[i]})
        results[i] = r  # (first: a stop while it is said keeps it)
        if r.status == Status.failed:
            say_failed(r, bar_ui.console)
        for w in r.report.get("warnings", ()):
            if (str(r.src), w) not in warned:
                warned.add((str(r.src), w))
                say(bar_ui.console, msg(r.src, w), "warning")
        counts[r.status] = counts.get(r.status, 0) + 1
        bar_ui.update(bar, advance=1, ok=counts[Status.ok], failed=counts[Status.failed])
        if on_result is not None:
            on_result(r)
        if not keep_reports:
            results[i] = _lean(r)

    with Progress(*columns, console=console, transient=len(todo) + len(finish) <= 1, disable=not show) as bar_ui, \
            _sigterm_as_interrupt():
        bar = bar_ui.add_task(description, total=len(todo) + len(finish), ok=0, skipped=skipped,
                              failed=counts[Status.failed])
        run_task = task.for_files(job.src for job in todo)
        if any(job.numbered for job in todo) and getattr(task.options, "keep_existing", False):
            # a numbered output is written again (see Job): its page or preview with it, not kept
            run_task = run_task.with_options(replace(task.options, keep_existing=False))
        stream = executor.run(run_task, todo)
        try:
            # the missing side files first: quick (from the existing output), so here in the driver
            finishing = (execute(task, jobs[i].src, jobs[i].dst, finish=True) for i in finish)
            for r in itertools.chain(finishing, stream):
                i = index[(str(r.src), str(r.dst))]
                if r.status == Status.failed and r.fatal is not None:
                    # not this file's fault: stop, the file was not really tried
                    fatal, fatal_code = r.error, r.fatal
                    break
                done(i, r, bar_ui, bar)
            if fatal:  # what the other workers finished meanwhile is written: said so, not "not run"
                for r in executor.finished():
                    if (i := index.get((str(r.src), str(r.dst)))) is not None and i not in results and r.fatal is None:
                        done(i, r, bar_ui, bar)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if interrupted or fatal:
                with stop_signals_ignored():  # (a second Ctrl-C here left no line and no summary)
                    executor.stop()
                    with contextlib.suppress(BaseException):
                        stream.close()
            else:
                try:  # (Ray's shutdown takes a second or more: a stop then keeps what was done)
                    stream.close()
                    executor.close()
                except KeyboardInterrupt:  # every photo was done: the stop came while the workers closed
                    interrupted = True
                    with stop_signals_ignored():
                        executor.stop()
    if executor.worker_deaths and not interrupted:  # (the batch carried on: said, or an out-of-memory kill goes unseen)
        n = executor.worker_deaths
        say(console, f"a worker process died{f' {n} times' if n > 1 else ''} (killed, or out of memory?): "
                     "the photos it had in hand were run again", "warning")
    if executor.worker_deaths or interrupted or fatal:
        # a worker killed while writing (by the system, or by stop() above while another file was being
        # written) left its temp file: not for the next run to find
        with stop_signals_ignored() if interrupted else contextlib.nullcontext():
            remove_stale_temps(jobs)
            # (each worker removes the folders it made while empty, but not one that another worker's
            # temp file was still in: Ctrl-C with --jobs 2 left an empty OUT now and then, helper-79)
            for folder in sorted(missing, key=lambda f: len(f.parts), reverse=True):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
    for i, job in enumerate(jobs):
        if i not in results:  # (a page written before its video was stopped stays: said, not "nothing written")
            with stop_signals_ignored() if interrupted else contextlib.nullcontext():
                made = [str(p) for p in job.outputs if _written_in_run(p, stamps.get(p))] if interrupted else []
            results[i] = Result(job.src, job.dst, Status.not_run, report={"outputs": made} if made else {})
    return BatchReport(
        results=one_failure_per_input([results[i] for i in range(len(jobs))]),
        engine=executor.name,
        workers=executor.workers,
        seconds=time.perf_counter() - t_start,
        interrupted=interrupted,
        fatal=fatal,
        fatal_code=fatal_code,
        worker_deaths=executor.worker_deaths,
    )


def _lean(r: Result) -> Result:
    """``r`` without its report, once said (the closing line needs only whether it completed a page; the
    --summary record keeps the warning for an output kept although made with other options)."""
    return replace(r, report={k: r.report[k] for k in ("finished", "warning") if k in r.report}) if r.report else r


def _missing_folders(jobs: Sequence[Job]) -> set[Path]:
    """The folders the outputs of ``jobs`` go into that do not exist yet (with those above them);
    each folder looked at once."""
    missing: set[Path] = set()
    for d in {Path(os.path.abspath(o.parent)) for job in jobs for o in job.outputs}:
        while d not in missing and d.parent != d and not os.path.lexists(d):
            missing.add(d)
            d = d.parent
    return missing


def one_failure_per_input(results: list[Result]) -> list[Result]:
    """Several outputs per input (``--format glb --format mp4``): the failed results of one input
    become one, at the place of its first, listing in ``not_made`` every output it did not make and
    in ``also`` the other errors (each damaged output kept from an earlier run names itself: all of
    them in one run, not one a run)."""
    first: dict[str, Result] = {}
    out: list[Result] = []
    for r in results:
        if r.status != Status.failed:
            out.append(r)
        elif (seen := first.get(r.input)) is None:
            first[r.input] = r
            r.not_made = [r.dst]
            out.append(r)
        else:
            seen.not_made.append(r.dst)
            if r.error and r.error != seen.error and r.error not in seen.also:
                seen.also.append(r.error)
    return out


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _written_in_run(path: Path, before: tuple[int, int] | None) -> bool:
    """Whether ``path`` is a whole output that this run wrote: there now, and not the file that
    was there before it (``before``: its :func:`_stamp` then; outputs are replaced by a rename, a
    new inode)."""
    return output_state(path) == "done" and _stamp(path) != before


def print_report(report: BatchReport, console: Console, done: str = "converted", folder: bool = False) -> None:
    """Close a batch: the fatal error, the failed files again, and the counts (``done``: what
    the outputs written are called, :attr:`Task.done`); ``folder``: an input was a folder, whose
    run ends with the counts also when it made one output (a script reads that line)."""
    if report.fatal:
        say(console, report.fatal)
    failed = report.failed  # (one per input: :func:`one_failure_per_input`)
    n = len(report.results)
    inputs = len({r.input for r in report.results})
    if n > 1 or (folder and n == 1):  # (one photo given: its own lines say it all, also when interrupted)
        if failed:
            console.print(f"[red]{len(failed)} of {inputs} input(s) failed:[/red]", markup=True, highlight=False, soft_wrap=True)
            for r in failed:  # (an error that names an output says whose it is: the input was named nowhere)
                said = r.error or msg(r.src, "failed")
                whose = "" if said.startswith(printable(r.input) + ":") else f" (the output of {printable(r.input)})"
                say(console, f"  {said}{whose}", kind="")
                for more in r.also:
                    say(console, f"  {more}", kind="")
        completed = sum(1 for r in report.results if r.status == Status.ok and "finished" in r.report)
        # (several formats: the counts are of outputs, failures of inputs, and the line says so)
        outputs = sum(len(r.not_made) if r.status == Status.failed else 1 for r in report.results)
        several = outputs != inputs
        parts = [f"{report.count(Status.ok) - completed} {done}", f"{report.count(Status.skipped)} skipped (output exists)",
                 f"{len(failed)} {'input(s) ' if several else ''}failed"]
        if completed:
            parts.insert(1, f"{completed} completed (missing outputs added)")
        if report.count(Status.not_run):
            parts.append(f"{report.count(Status.not_run)} not run")
        whose = f"{outputs} outputs of {inputs} input(s): " if several else ""
        console.print(whose + ", ".join(parts) + f" in {report.seconds:.1f} s", highlight=False, soft_wrap=True)
    elif n == 1 and report.count(Status.skipped):
        kept = report.results[0].report.get("kept") or [str(report.results[0].dst)]
        these = kept[0] if len(kept) == 1 else f"{', '.join(kept[:-1])} and {kept[-1]}"
        say(console, f"{these} {'exists' if len(kept) == 1 else 'exist'}, kept (--overwrite rewrites "
                     f"{'it' if len(kept) == 1 else 'them'})", kind="")
    if report.interrupted:  # (one output: a new run starts it over, there is nothing to continue)
        # files a photo stopped before its end wrote (its page, written before the video; a map before its preview)
        written = [o for r in report.results if r.status == Status.not_run for o in r.report.get("outputs", ())]
        said = ("interrupted: run the same command again to continue where it stopped" if n > 1 else
                "interrupted" if report.count(Status.ok) or written else "interrupted: nothing written")
        if written:
            said += f" (kept: {', '.join(map(printable, written))}, written before the stop)"
        console.print(said, highlight=False, soft_wrap=True)


def rewrites(inputs: Sequence[Path], overwrite: bool | None) -> bool:
    """Whether existing outputs are rewritten: ``--overwrite`` / ``--skip-existing`` as given, else
    (``None``) only the output of a single input file (you asked for that file)."""
    return overwrite if overwrite is not None else len(inputs) == 1 and not os.path.isdir(inputs[0])


def _write_fatal_summary(path: Path, plan: Sequence[Job], engine: str, e: Photo3DError, command: str | None) -> None:
    """The summary of a run stopped before any work by ``e``: its error, every input not run."""
    report = BatchReport([Result(j.src, j.dst, Status.not_run) for j in plan], engine=engine, workers=0,
                         fatal=str(e), fatal_code=e.exit_code)
    with contextlib.suppress(Photo3DError, OSError):
        report.write_summary(path, command)


def batch_command(
    task: Task,
    inputs: Sequence[Path],
    output: Path | str,
    suffix: str | Sequence[str],
    *,
    jobs: int = 1,
    engine: Engine | str = Engine.local,
    address: str | None = None,
    overwrite: bool | None = None,
    globs: Sequence[str] = (),
    summary: Path | None = None,
    console: Console | None = None,
    command: str | None = None,
    on_result: Callable[[Result], None] | None = None,
    progress: bool = True,
) -> int:
    """The whole INPUT... command, shared by ``photo3d depth`` and ``photo3d convert``:
    plan, run, report, write the summary; returns the exit code.

    ``overwrite=None`` (the default) rewrites the output of a single explicit file (you asked for
    that file), and skips existing outputs for folders and several inputs (resume).
    Several ``suffix`` values: one job per input and suffix (each output resumes on its own)."""
    console = console or stderr_console()  # (the process's one: a video's bar nests under the batch's)
    spare_foreign_sides = overwrite is None  # (a single photo rewritten by default, not by --overwrite)
    output = effective_path(output)  # (``-o new/../photo.png`` is the photo: the checks see it so)
    summary = None if summary is None else effective_path(summary)
    executor: Executor | None = None
    summary_safe = False  # the --summary path is not one of the run's inputs or outputs
    plan: list[Job] = []
    try:  # (Ctrl-C, kill or a hang-up while a huge tree is walked: one line, nothing written)
        with _sigterm_as_interrupt():
            notes = PlanNotes()
            plan = plan_outputs(inputs, output, [suffix] if isinstance(suffix, str) else suffix, globs,
                                task.planned_outputs(), notes)
            reads = task.read_files()
            check_reads(plan, reads)
            if summary is not None:
                check_summary_path(Path(summary), plan, reads)
                summary_safe = True
            plan = check_writable(plan, None if summary is None else Path(summary), output)
            folder_given = any(os.path.isdir(p) for p in inputs)
            task = dataclasses.replace(task, out=Path(output))  # (and still inside it at each write)
            overwrite = rewrites(inputs, overwrite)
            executor = make_executor(engine, jobs, address, warn=lambda line: say(console, line, "warning"))
            if not plan:
                notes.empty = []  # (the error below says it)
            for line in notes.warnings(globs):
                say(console, line, "warning")
            # (it filters walks: named photos are taken, also beside a folder: that said nothing)
            if globs and (named := [p for p in inputs if not os.path.isdir(p) and not glob_matches(Path(p).name, globs)]):
                such = "" if not folder_given else f" (such as {printable(named[0])})"
                say(console, f"--glob {' '.join(globs)} applies to folders; the photos given by name are used{such}", "warning")
    except KeyboardInterrupt:
        with stop_signals_ignored():
            if executor is not None:
                with contextlib.suppress(BaseException):
                    executor.stop()
            console.print(INTERRUPTED_BEFORE, highlight=False, soft_wrap=True)
        return int(ExitCode.interrupted)
    except Photo3DError as e:  # stopped before any work: an earlier run's summary must not be read as this one's
        if summary_safe:
            _write_fatal_summary(Path(summary), plan, str(engine), e, command)
        raise
    if not plan:  # nothing to do is a failure: a wrong folder or --glob, not a success
        said = " (only what photo3d wrote, skipped above)" if notes.own else ""
        if not said and any(os.path.isdir(p) and next(passed_over(Path(p), globs), None) for p in inputs):
            said = " (GIFs are used only when named: their first frame)"
        if not said and task.name == "convert" and (glb := next((g for p in inputs if os.path.isdir(p)
                                                                 for g in passed_over(Path(p), globs, (".glb",))), None)):
            # (a folder of 3D photos given to render videos from: said how, not only "no images")
            said = f" (3D photos are rendered only when named: {glb.parent / '*.glb'})"
        say(console, f"no images found in {', '.join(map(str, inputs))}"
            + (f" matching {' or '.join(globs)}" if globs else "") + said)
        report = BatchReport([], workers=0, fatal="no images found")  # (no worker started)
    else:
        try:
            with _sigterm_as_interrupt():
                if summary is not None:  # (the one from an earlier run goes now: a killed run leaves "finished": null)
                    remove_stale_temps([], also=[Path(summary)])  # (a run killed while writing it left its temp file)
                    try:
                        write_summary(Path(summary), unfinished_summary(len(plan), executor.name, command))
                    except Photo3DError as e:
                        say(console, str(e))
                        return int(ExitCode.failed)
                report = run_batch(plan, task, executor, console=console, overwrite=overwrite, on_result=on_result,
                                   keep_reports=summary is not None, progress=progress,
                                   spare_foreign_sides=spare_foreign_sides)
        except KeyboardInterrupt:  # before the batch's own stop could (the existing outputs were being looked up)
            with stop_signals_ignored():
                with contextlib.suppress(BaseException):
                    executor.stop()
            report = BatchReport([Result(j.src, j.dst, Status.not_run) for j in plan], engine=executor.name,
                                 workers=0, interrupted=True)
        except Photo3DError as e:  # before any file: the engine could not start (a wrong --address)
            if summary is not None:
                _write_fatal_summary(Path(summary), plan, executor.name, e, command)
            raise
    # a batch that was stopped says so and writes its summary whatever is pressed again meanwhile
    with stop_signals_ignored() if report.interrupted else contextlib.nullcontext():
        if plan:
            print_report(report, console, task.done, folder=folder_given)
        if summary is not None:
            try:
                report.write_summary(summary, command)
            except Photo3DError as e:
                say(console, str(e))
                return int(ExitCode.failed)
    if executor is not None:
        with stop_signals_ignored():  # (Ray's shutdown: after what the run says and writes, see RayExecutor.shutdown)
            executor.shutdown()
    return int(report.exit_code)

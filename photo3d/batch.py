"""Run one per-file task over many inputs: discovery, output paths, progress, error collection.

Every command that takes INPUT... goes through :func:`run_batch`, so single files, folders and
whole photo archives behave the same way.  (Minimal version: sequential, in-process.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .errors import InputFileError, Photo3DError, UsageError
from .io import is_image_path


@dataclass
class Job:
    src: Path
    dst: Path


@dataclass
class Result:
    src: Path
    dst: Path
    status: str  # "ok" | "skipped" | "failed"
    seconds: float = 0.0
    bytes: int = 0
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def iter_images(folder: Path) -> Iterable[Path]:
    for p in sorted(folder.rglob("*")):
        if p.is_file() and is_image_path(p) and not any(part.startswith(".") for part in p.relative_to(folder).parts):
            yield p


def plan_jobs(inputs: list[Path], output: Path, suffix: str) -> list[Job]:
    """Map inputs to outputs. One file -> OUTPUT is a file (unless it is an existing folder);
    several inputs or a folder -> OUTPUT is a folder mirroring each input folder's tree."""
    if not inputs:
        raise UsageError("no INPUT given")
    single = len(inputs) == 1 and not inputs[0].is_dir()
    if single and not output.is_dir() and output.suffix:
        return [Job(inputs[0], output)]
    jobs: list[Job] = []
    for inp in inputs:
        if inp.is_dir():
            for p in iter_images(inp):
                rel = p.relative_to(inp)
                jobs.append(Job(p, output / rel.with_suffix(suffix)))
        else:
            jobs.append(Job(inp, output / (inp.stem + suffix)))
    return jobs


def run_batch(
    jobs: list[Job],
    task: Callable[[Path, Path], dict[str, Any]],
    console: Console | None = None,
    overwrite: bool = True,
) -> list[Result]:
    console = console or Console(stderr=True)
    results: list[Result] = []
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=len(jobs) < 2,
    ) as progress:
        bar = progress.add_task("converting", total=len(jobs))
        for job in jobs:
            t0 = time.perf_counter()
            if not overwrite and job.dst.exists():
                results.append(Result(job.src, job.dst, "skipped"))
            else:
                try:
                    info = task(job.src, job.dst) or {}
                    size = job.dst.stat().st_size if job.dst.exists() else 0
                    results.append(Result(job.src, job.dst, "ok", time.perf_counter() - t0, size, info=info))
                except Photo3DError as e:
                    if e.path is None:
                        e.path = job.src
                    console.print(f"[red]error:[/red] {e}", highlight=False, markup=True)
                    results.append(Result(job.src, job.dst, "failed", time.perf_counter() - t0, error=str(e)))
            progress.advance(bar)
    return results

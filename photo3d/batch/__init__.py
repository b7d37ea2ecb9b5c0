"""Run one per-file task over many inputs: discovery, output paths, executors, progress, summary.

Every command that takes INPUT... goes through :func:`batch_command`, so a single file, a folder
and a photo archive of millions of files behave the same way:

* ``plan.py``: :func:`plan_jobs` walks the inputs and maps every image to output paths that
  mirror the input tree (side outputs planned with them, collisions renamed).
* ``task.py``: the per-file :class:`Task` (run, warm-up, outputs, finish, options; frozen and
  picklable) and :func:`execute`, which turns one file's outcome into a :class:`Result`.
* ``local.py``: in-process and process-pool executors (crash isolation, clean stop on signals);
  ``ray_executor.py``: the same on a Ray cluster.
* ``run.py``: :func:`run_batch` skips outputs that exist (unless ``overwrite``), runs the rest,
  shows progress and collects one :class:`Result` per input; a bad file never stops the batch,
  a broken model does (``Result.fatal``).  :class:`BatchReport` prints and writes the summary.

Outputs are written by the tasks through :func:`photo3d.io.atomic_output`, so an interrupted run
(Ctrl-C, ``kill -9``, a dead machine) leaves no partial file under a final name and a re-run
continues where it stopped.  Stale hidden temp files of planned outputs are removed on re-run.
"""

from .local import Executor, PoolExecutor, SequentialExecutor
from .plan import (FILE_SUFFIXES, Job, check_output_file, check_summary_path, discover, names_a_folder, one_file_output, plan_jobs, plan_outputs,
                   remove_stale_temps)
from .result import Result, Status
from .run import BatchReport, Engine, batch_command, make_executor, print_report, rewrites, run_batch, say
from .task import Task, execute, warm_up

__all__ = [
    "FILE_SUFFIXES", "BatchReport", "Engine", "Executor", "Job", "PoolExecutor", "Result", "SequentialExecutor",
    "Status", "Task", "batch_command", "check_output_file", "check_summary_path", "discover", "execute", "make_executor", "names_a_folder",
    "one_file_output", "plan_jobs", "plan_outputs", "print_report", "remove_stale_temps", "rewrites", "run_batch", "say",
    "warm_up",
]


def __getattr__(name: str):  # RayExecutor imports lazily (only --engine ray needs it)
    if name == "RayExecutor":
        from .ray_executor import RayExecutor

        return RayExecutor
    raise AttributeError(name)

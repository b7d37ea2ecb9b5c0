"""Thin command-line front end: parse options, call the core functions, map errors to exit codes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from . import __version__
from .errors import ExitCode, Photo3DError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Turn a single 2D photo into a 3D photo (layered depth mesh as glTF).",
)
model_app = typer.Typer(no_args_is_help=True, help="Manage depth models.")
app.add_typer(model_app, name="model")

err = Console(stderr=True, highlight=False)

MODEL_HELP = (
    "Depth model: an INT8 TorchScript file, or a folder holding Tiefenrausch's "
    "tiefenrausch.pb + tiefenrausch_init.pb. Default: the bundled model."
)


def _fail(e: Photo3DError) -> None:
    err.print(f"[red]error:[/red] {e}", markup=True)
    raise typer.Exit(int(e.exit_code))


def _finish(results) -> None:
    failed = [r for r in results if r.status == "failed"]
    if failed and len(results) > 1:
        err.print(f"[red]{len(failed)} of {len(results)} input(s) failed:[/red]", markup=True)
        for r in failed:
            err.print(f"  {r.error}")
    raise typer.Exit(int(ExitCode.failed if failed else ExitCode.ok))


def _version(value: bool) -> None:
    if value:
        print(f"photo3d {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    pass


@app.command()
def depth(
    inputs: list[Path] = typer.Argument(..., help="Image files or folders."),
    output: Path = typer.Option(..., "-o", "--output", help="Output file (.png 16-bit or .npy) for one input, else a folder."),
    model: Optional[Path] = typer.Option(None, "--model", help=MODEL_HELP),
    raw: bool = typer.Option(False, "--raw", help="Write the network's own output (no upsampling)."),
    preview: bool = typer.Option(False, "--preview", help="Also write a colour-mapped preview PNG."),
    fmt: str = typer.Option("png", "--format", help="Output format in folder mode: png or npy."),
    max_megapixels: float = typer.Option(100.0, "--max-megapixels", help="Refuse larger images."),
    overwrite: bool = typer.Option(True, "--overwrite/--skip-existing", help="Rewrite outputs that exist."),
) -> None:
    """Predict per-pixel depth (normalized disparity: larger = nearer)."""
    from .batch import plan_jobs, run_batch
    from .depth import DepthOptions, depth_file

    opts = DepthOptions(model=model, raw=raw, preview=preview, max_megapixels=max_megapixels)
    try:
        if fmt not in ("png", "npy"):
            from .errors import UsageError

            raise UsageError(f"--format must be png or npy, not {fmt!r}")
        jobs = plan_jobs(inputs, output, "." + fmt)
        results = run_batch(jobs, lambda s, d: depth_file(s, d, opts), console=err, overwrite=overwrite)
    except Photo3DError as e:
        _fail(e)
    _finish(results)


@model_app.command("import")
def model_import(
    folder: Path = typer.Argument(..., help="Folder with tiefenrausch.pb and tiefenrausch_init.pb."),
    output: Path = typer.Option(..., "-o", "--output", help="TorchScript file to write (.pt)."),
) -> None:
    """Convert Facebook's Tiefenrausch Caffe2 net to an INT8 TorchScript file."""
    from .depth.tiefenrausch import import_tiefenrausch_file

    try:
        import_tiefenrausch_file(folder, output)
    except Photo3DError as e:
        _fail(e)
    err.print(f"wrote {output}")


def run() -> None:  # pragma: no cover
    sys.exit(app())

"""Thin command-line front end: parse options, call the core functions, map errors to exit codes."""

from __future__ import annotations

import atexit
import gc
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from . import __version__
from .errors import Photo3DError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Turn a single 2D photo into a 3D photo (layered depth mesh as glTF).",
)
model_app = typer.Typer(no_args_is_help=True, help="Manage depth models.")
app.add_typer(model_app, name="model")

err = Console(stderr=True, highlight=False)

# Skip the interpreter's exit-time garbage collection over torch's object graph: ~0.6 s of every
# `photo3d depth` / `convert` run (outputs are written and closed before; atexit callbacks still run).
atexit.register(gc.freeze)

MODEL_HELP = (
    "Depth model: an INT8 TorchScript file, or a folder holding Tiefenrausch's "
    "tiefenrausch.pb + tiefenrausch_init.pb. Default: the bundled model."
)


# Options of every INPUT... command (photo3d.batch runs them all the same way).
JOBS_OPT = typer.Option(
    1, "--jobs", "-j", min=0, help="Worker processes, each loading the model once; 0 = one per CPU (ray: per cluster CPU)."
)
ENGINE_OPT = typer.Option("local", "--engine", help="local, or ray to run on a Ray cluster (pip install 'photo3d\\[ray]').")
ADDRESS_OPT = typer.Option(
    None, "--address", help="Ray cluster to join (e.g. auto, ray://head:10001). Default: start a local Ray."
)
OVERWRITE_OPT = typer.Option(
    None,
    "--overwrite/--skip-existing",
    help="Rewrite outputs that exist. Default: skip them for folders and several inputs (a re-run resumes), "
    "rewrite them for one input file.",
)
GLOB_OPT = typer.Option(
    None, "--glob", help="Only files whose name or path below the input folder matches (repeatable; e.g. '*.jpg', '2019/*')."
)
DEPTH_SOURCE_OPT = typer.Option(
    "auto", "--depth-source",
    help="Where depth comes from: auto (the photo's own depth map, else its stereo pair, else the model), "
    "embedded, stereo or model.",
)
SUMMARY_OPT = typer.Option(None, "--summary", help="Write a JSON report: one record per input (status, output, seconds, bytes, error).")


def _batch(task: str, options, inputs, output: Path, suffix: str | list[str], jobs: int, engine: str, address, overwrite, globs, summary,
           on_result=None) -> None:
    """Run one per-file task over INPUT... and exit with the batch's exit code (0, 1, 2, 130).
    ``on_result(result)`` is called as each file finishes (e.g. to print a line about it)."""
    from .batch import TaskSpec, batch_command

    try:
        code = batch_command(
            TaskSpec(task, options), inputs, output, suffix, jobs=jobs, engine=engine, address=address,
            overwrite=overwrite, globs=globs or (), summary=summary, console=err,
            command=" ".join(["photo3d", *sys.argv[1:]]), on_result=on_result,
        )
    except Photo3DError as e:
        _fail(e)
    raise typer.Exit(code)


def _fail(e: Photo3DError) -> None:
    from rich.markup import escape

    err.print(f"[red]error:[/red] {escape(str(e))}", markup=True, soft_wrap=True)  # one line, [names] kept
    raise typer.Exit(int(e.exit_code))


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
    depth_source: str = DEPTH_SOURCE_OPT,
    max_megapixels: float = typer.Option(100.0, "--max-megapixels", help="Refuse larger images."),
    overwrite: Optional[bool] = OVERWRITE_OPT,
    jobs: int = JOBS_OPT,
    engine: str = ENGINE_OPT,
    address: Optional[str] = ADDRESS_OPT,
    globs: Optional[list[str]] = GLOB_OPT,
    summary: Optional[Path] = SUMMARY_OPT,
) -> None:
    """Predict per-pixel depth (normalized disparity: larger = nearer)."""
    from .depth import DepthOptions

    if fmt not in ("png", "npy"):
        from .errors import UsageError

        _fail(UsageError(f"--format must be png or npy, not {fmt!r}"))
    _check_source(depth_source)
    opts = DepthOptions(model=model, raw=raw, preview=preview, max_megapixels=max_megapixels, depth_source=depth_source)

    def said(r) -> None:
        if r.status == "ok":
            _warn(r)
            i = r.info
            err.print(f"{r.src} -> {r.dst}: depth from {_source(i)}, {i.get('width')}x{i.get('height')}",
                      markup=False, highlight=False, soft_wrap=True)

    _batch("depth", opts, inputs, output, "." + fmt, jobs, engine, address, overwrite, globs, summary, on_result=said)


def _check_source(source: str) -> None:
    from .depth.embedded import SOURCES
    from .errors import UsageError

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


def _warn(r) -> None:
    for w in r.info.get("warnings") or ():
        err.print(f"warning: {r.src}: {w}", markup=False, highlight=False, soft_wrap=True)


FORMATS = (".glb", ".mp4", ".gif", ".webp", ".html")  # --format (folder outputs)


def _convert_line(r, timings: bool) -> str:
    """One line per converted photo: layers, hole area, vertices, GLB size (+ stage timings)."""
    i = r.info
    if i.get("from_glb"):  # rendered from the GLB this batch wrote (or found) beside it
        s = i["share"] if i.get("share") else None
        what = f"{s['frames']} frame(s) {s['size'][0]}x{s['size'][1]}, " if s else ""
        return f"{r.src} -> {r.dst}: from {i['from_glb']}, {what}{r.bytes / 1e6:.2f} MB, {r.seconds:.2f} s"
    line = (f"{r.src} -> {r.dst}: depth from {_source(i)}, {i.get('layers', '?')} layer(s), hole {100 * i.get('hole_area', 0):.1f} %, "
            f"{i.get('vertices', 0):,} vertices, {i.get('glb_bytes', 0) / 1e6:.2f} MB, {r.seconds:.2f} s")
    if i.get("share"):
        s = i["share"]
        line += f"; {s['frames']} frame(s) {s['size'][0]}x{s['size'][1]}, {r.bytes / 1e6:.2f} MB"
    if timings and i.get("seconds"):
        line += "\n  " + ", ".join(f"{k} {v:.3f}" for k, v in i["seconds"].items())
    return line


@app.command()
def convert(
    inputs: list[Path] = typer.Argument(..., help="Image files or folders."),
    output: Path = typer.Option(
        ..., "-o", "--output",
        help="Output file for one input (.glb; .html; .mp4, .gif or .webp video; .jpg/.png with --stereo), else a folder.",
    ),
    model: Optional[Path] = typer.Option(None, "--model", help=MODEL_HELP),
    depth_map: Optional[Path] = typer.Option(
        None, "--depth", help="Use this depth map (16-bit PNG or .npy, larger = nearer) instead of a model; one input only."
    ),
    formats: Optional[list[str]] = typer.Option(
        None, "--format", help="Folder output: glb, mp4, gif, webp or html; repeatable (each output resumes on its own). Default glb."
    ),
    html: bool = typer.Option(False, "--html", help="Also write NAME.html: a self-contained offline viewer."),
    parallax: float = typer.Option(
        0.04, "--parallax", min=0.001, max=0.2,
        help="Strength: near vs far shift at full offset, as a share of the width (viewer range and video motion).",
    ),
    path: str = typer.Option("circle", "--path", help="Video camera path: circle, swing, zoom or dolly-zoom (a seamless loop)."),
    seconds: float = typer.Option(4.0, "--seconds", min=0.05, help="Video length."),
    fps: float = typer.Option(30.0, "--fps", min=1.0, max=120.0, help="Video frames per second."),
    size: Optional[int] = typer.Option(None, "--size", help="Video / still longer side in pixels. Default 1080 (MP4), 480 (GIF, WebP)."),
    stereo: Optional[str] = typer.Option(
        None, "--stereo", help="sbs: left|right eye side by side at full width (2x wide); sbs-half: squeezed into the normal width."
    ),
    timings: bool = typer.Option(False, "--timings", help="Print the time of each stage."),
    quality: int = typer.Option(80, "--quality", min=1, max=100, help="JPEG quality of the texture."),
    max_texture: int = typer.Option(4096, "--max-texture", min=256, help="Longest side of the photo's texture."),
    depth_source: str = DEPTH_SOURCE_OPT,
    max_megapixels: float = typer.Option(100.0, "--max-megapixels", help="Refuse larger images."),
    overwrite: Optional[bool] = OVERWRITE_OPT,
    jobs: int = JOBS_OPT,
    engine: str = ENGINE_OPT,
    address: Optional[str] = ADDRESS_OPT,
    globs: Optional[list[str]] = GLOB_OPT,
    summary: Optional[Path] = SUMMARY_OPT,
) -> None:
    """Build 3D photos: layered depth mesh with inpainted occlusions, as GLB (+ HTML viewer)."""
    from .errors import UsageError
    from .pipeline import ConvertOptions

    if depth_map is not None and model is not None:
        _fail(UsageError("give either --depth or --model, not both"))
    if depth_map is not None and (len(inputs) != 1 or inputs[0].is_dir()):
        _fail(UsageError("--depth needs exactly one input photo"))
    _check_source(depth_source)
    if depth_map is not None and depth_source != "auto":
        _fail(UsageError("give either --depth or --depth-source, not both"))
    from .video import ShareOptions, check_share

    single = len(inputs) == 1 and not inputs[0].is_dir()
    suffixes = ["." + f.lower().lstrip(".") for f in (formats or ["glb"])]
    try:
        share = ShareOptions(path=path, seconds=seconds, fps=fps, size=size, stereo=stereo, progress=single and jobs == 1)
        check_share(share)
        if formats and single and output.suffix and not output.is_dir():
            raise UsageError("--format is for folder outputs; for one photo the suffix of -o chooses the format")
        for s in suffixes:
            if s not in FORMATS:
                raise UsageError(f"--format must be one of {', '.join(f[1:] for f in FORMATS)}, not {s[1:]!r}")
    except UsageError as e:
        _fail(e)
    reuse = None
    if ".glb" in suffixes and len(set(suffixes)) > 1:  # the GLB job runs first; the others render its file
        suffixes.sort(key=lambda x: x != ".glb")
        reuse = time.time() if overwrite else 0.0  # resuming: an existing GLB is this photo's 3D photo
    opts = ConvertOptions(model=model, depth=depth_map, html=html, jpeg_quality=quality, parallax=parallax,
                          max_texture_side=max_texture, max_megapixels=max_megapixels, depth_source=depth_source,
                          share=share, reuse_glb_since=reuse)

    def said(r) -> None:  # one line per photo as soon as it is done
        if r.status == "ok":
            _warn(r)
            err.print(_convert_line(r, timings), markup=False, highlight=False, soft_wrap=True)

    _batch("convert", opts, inputs, output, suffixes, jobs, engine, address, overwrite, globs, summary, on_result=said)


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

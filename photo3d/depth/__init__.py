"""Depth stage: one photo → normalized disparity map (larger = nearer).

``depth_file`` is what ``photo3d depth`` runs per input; the runtime (model loading, inference,
edge-aware upsampling) is in :mod:`photo3d.depth.runtime`, depth the photo already carries
(embedded maps, stereo pairs) in :mod:`photo3d.depth.embedded`, the file formats in
:mod:`photo3d.depth.maps`.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import defaults
from ..io import DEFAULT_MAX_MEGAPIXELS, load_image, output_state

__all__ = ["DepthOptions", "depth_file", "finish", "model_reads", "outputs", "reads", "start_loading", "warm_up"]

_LOADER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="photo3d-model")
_loads: dict[str, Future] = {}
_loads_lock = threading.Lock()


def start_loading(model: Path | None) -> Future:
    """Load the depth model in a background thread (import torch, read the file, pack its INT8
    weights: about 3 s of a one-photo run, done while the photo is decoded), once per process and
    model, into :func:`photo3d.depth.runtime.load_model`'s cache (the one place a loaded model is
    kept).  Its errors are raised again, naming the file, by the ``load_model`` that waits for it."""
    key = str(model)
    with _loads_lock:
        if key not in _loads:

            def load():
                from .runtime import load_model

                load_model(model).warmup()

            _loads[key] = _LOADER.submit(load)
        return _loads[key]


@dataclass
class DepthOptions:
    model: Path | None = None  # TorchScript file or Tiefenrausch folder; None = bundled model
    raw: bool = False  # write the network's own output (no upsampling)
    preview: bool = False  # also write NAME.preview.png (turbo colour map)
    max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS
    depth_source: str = defaults.DEPTH_SOURCE  # auto | embedded | stereo | model (see photo3d.depth.embedded)
    keep_existing: bool = False  # a preview that exists is kept (a batch without --overwrite)


def depth_file(src: str | Path, dst: str | Path, opts: DepthOptions | None = None) -> dict[str, Any]:
    """Predict the depth of photo ``src`` and write it to ``dst`` (.png 16-bit or .npy float32)."""
    from .embedded import depth_for, find_depth, network_disparity
    from ..errors import printable
    from .maps import check_format, preview_path, save_depth_map

    opts = opts or DepthOptions()
    src, dst = Path(src), Path(dst)
    check_format(dst)
    t0 = time.perf_counter()
    loading = start_loading(opts.model)  # (started by the batch runner already, or now)
    photo = loaded = load_image(src, max_megapixels=opts.max_megapixels)
    t1 = time.perf_counter()
    found = find_depth(src, photo, opts.depth_source)  # (timed as predicting: a stereo pair is matched here)
    photo = found.photo
    t_model = 0.0
    if found.source == "model":
        tm = time.perf_counter()  # (before the import: it waits for the loading thread's import of torch,
        # which a first photo's `predict` carried, 1.3 s of the model's loading; helper-99)
        from .runtime import load_model  # (torch: imported by the loading thread while the photo was read)

        wait([loading])  # (its errors, if any, are raised again by load_model, naming the file)
        model = load_model(opts.model)
        model.warmup()  # (done by the loading thread unless a cleared cache loads it again here)
        t_model = time.perf_counter() - tm  # what the loading had left when the photo was read
        res = model.predict_result(photo.rgb, raw=opts.raw)
        disparity, lo, hi = res.disparity, res.disparity_min, res.disparity_max
        meta = {"depth_source": "model", "model": model.name, "network_size": list(res.network_size)}
        flat = res.flat_warning(model.name)
    else:
        def fill(rgb):  # the model fills the found depth's holes (torch only then)
            from .runtime import load_model

            return network_disparity(load_model(opts.model), rgb)

        out = depth_for(found, photo.rgb, fill, raw=opts.raw)
        disparity, lo, hi, meta = out.disparity, out.disparity_min, out.disparity_max, out.info
        flat = []
    t2 = time.perf_counter()
    meta = {
        **meta,
        "raw": opts.raw,
        "photo_size": [photo.width, photo.height],
        # normalized value v ↔ source disparity: disparity_min + v · (disparity_max − disparity_min)
        "disparity_min": lo,
        "disparity_max": hi,
    }
    # a preview photo3d wrote beside the map is kept in a run that keeps outputs: the map of another
    # --format (a.png, then a.npy) shares it, and it was rewritten without --overwrite (helper-106)
    kept = opts.preview and opts.keep_existing and output_state(preview_path(dst)) == "done"
    written = save_depth_map(dst, disparity, preview=opts.preview and not kept, meta=meta)
    if kept:
        flat = [*flat, f"{printable(preview_path(dst).name)} kept (it exists: an earlier run's); --overwrite rewrites it"]
    t3 = time.perf_counter()
    h, w = disparity.shape
    return {
        "width": w,
        "height": h,
        **meta,
        **({"warnings": said} if (said := [*loaded.warnings, *found.warnings, *flat]) else {}),
        "outputs": [str(p) for p in written],
        "seconds": {k: round(v, 4) for k, v in {  # (to 0.1 ms, as convert's: not 17 digits in the summary)
            "read": t1 - t0, **({"model": t_model} if found.source == "model" else {}),
            # (the network's time; a map the photo carries: decoded or matched, holes filled)
            ("predict" if found.source == "model" else "depth"): t2 - t1 - t_model, "write": t3 - t2}.items()},
    }


def outputs(dst: str | Path, opts: DepthOptions | None = None) -> list[Path]:
    """Every file :func:`depth_file` writes for ``dst``: the map, then its preview (``--preview``)."""
    from .maps import preview_path

    dst = Path(dst)
    return [dst, preview_path(dst)] if (opts or DepthOptions()).preview else [dst]


def finish(src: str | Path, dst: str | Path, opts: DepthOptions | None = None) -> dict[str, Any]:
    """Write the missing preview of an existing depth map ``dst`` (a re-run that adds ``--preview``)."""
    from ..errors import InputFileError, TooLargeError, damaged_existing
    from .maps import load_depth_map, save_preview

    written = []
    for p in outputs(dst, opts)[1:]:
        if output_state(p) != "done":
            try:
                depth = load_depth_map(dst, max_megapixels=(opts or DepthOptions()).max_megapixels)
            except TooLargeError:  # whole, but over --max-megapixels: said as it is
                raise
            except InputFileError as e:  # (as convert says of a damaged GLB: the photo fails, naming the map)
                raise damaged_existing(src, dst, "depth map", e.reason) from None
            save_preview(p, depth)
            written.append(str(p))
    return {"outputs": written, "finished": "missing outputs written from the existing " + Path(dst).name}


def kept_note(src: str | Path, dst: str | Path, opts: DepthOptions | None = None) -> str | None:
    """The warning for a depth map kept as done that an earlier run made with(out) ``--raw`` (its PNG says
    which; a ``.npy`` says nothing): kept at the network's grid, or upsampled, against this run's ask."""
    from .maps import read_png_metadata

    opts = opts or DepthOptions()
    if Path(dst).suffix.lower() != ".png":
        return None
    try:
        raw = read_png_metadata(dst).get("raw")
    except Exception:  # noqa: BLE001 - (a map that cannot be read was refused before it is kept)
        return None
    if not isinstance(raw, bool) or raw == bool(opts.raw):
        return None
    return (f"kept from an earlier run {'with' if raw else 'without'} --raw; run again with --overwrite "
            f"to make it {'without' if raw else 'with'}")


def model_reads(model: Path | None) -> list[tuple[str, Path]]:
    """The files a ``--model`` reads, each with what to call it: a TorchScript file, a Tiefenrausch
    folder's two protobufs, or (None) the bundled model and its manifest.  No output may replace
    them (``--summary p3d-s.pt`` overwrote the bundled model: every later run failed its checksum)."""
    if model is not None:
        model = Path(model)
        if model.is_dir():
            return [("the --model file", model / name) for name in ("tiefenrausch.pb", "tiefenrausch_init.pb")]
        return [("the --model file", model)]
    return [("the bundled model", p) for p in sorted(defaults.MODELS_DIR.glob("*")) if p.suffix in (".pt", ".json")]


def reads(opts: DepthOptions | None = None) -> list[tuple[str, Path]]:
    """The files besides the photos that :func:`depth_file` reads (the model's)."""
    return model_reads((opts or DepthOptions()).model)


def warm_up(opts: DepthOptions | None = None) -> Future:
    """Start loading the model once per process before the first file (the batch runner's per-worker hook)."""
    return start_loading((opts or DepthOptions()).model)


def depth_task(opts: DepthOptions | None = None):
    """``photo3d depth``'s per-file task for the batch runner (:class:`photo3d.batch.Task`)."""
    from ..batch.task import Task

    return Task("depth", depth_file, opts, warm_up=warm_up, outputs=outputs, finish=finish, reads=reads,
                done="depth map(s) written", tags_outputs=True, kept_note=kept_note)

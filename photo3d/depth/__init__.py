"""Depth stage: one photo → normalized disparity map (larger = nearer).

``depth_file`` is what ``photo3d depth`` runs per input; the runtime (model loading, inference,
edge-aware upsampling) is in :mod:`photo3d.depth.runtime`, the file formats in
:mod:`photo3d.depth.maps`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io import DEFAULT_MAX_MEGAPIXELS, load_image

__all__ = ["DepthOptions", "depth_file", "warm_up"]


@dataclass
class DepthOptions:
    model: Path | None = None  # TorchScript file or Tiefenrausch folder; None = bundled model
    raw: bool = False  # write the network's own output (no upsampling)
    preview: bool = False  # also write NAME.preview.png (turbo colour map)
    max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS


def depth_file(src: str | Path, dst: str | Path, opts: DepthOptions | None = None) -> dict[str, Any]:
    """Predict the depth of photo ``src`` and write it to ``dst`` (.png 16-bit or .npy float32)."""
    from .maps import check_format, save_depth_map
    from .runtime import load_model

    opts = opts or DepthOptions()
    src, dst = Path(src), Path(dst)
    check_format(dst)
    t0 = time.perf_counter()
    model = load_model(opts.model)
    t1 = time.perf_counter()
    photo = load_image(src, max_megapixels=opts.max_megapixels)
    t2 = time.perf_counter()
    res = model.predict_result(photo.rgb, raw=opts.raw)
    t3 = time.perf_counter()
    meta = {
        "model": model.name,
        "raw": opts.raw,
        "network_size": list(res.network_size),
        "photo_size": [photo.width, photo.height],
        # normalized value v ↔ network disparity: disparity_min + v · (disparity_max − disparity_min)
        "disparity_min": res.disparity_min,
        "disparity_max": res.disparity_max,
    }
    written = save_depth_map(dst, res.disparity, preview=opts.preview, meta=meta)
    t4 = time.perf_counter()
    h, w = res.disparity.shape
    return {
        "width": w,
        "height": h,
        **meta,
        "files": [str(p) for p in written],
        "seconds": {"load_model": t1 - t0, "read": t2 - t1, "predict": t3 - t2, "write": t4 - t3},
    }


def warm_up(opts: DepthOptions | None = None) -> None:
    """Load the model once per process before the first file (called by the batch runner)."""
    from .runtime import load_model

    load_model((opts or DepthOptions()).model)

"""Depth map files: 16-bit PNG or float32 ``.npy`` of normalized disparity (larger = nearer).

- ``.png``: 16-bit grayscale, value / 65535 = normalized disparity in [0, 1]; the convention and
  the scale are written into PNG text chunks (``photo3d:convention``, ``photo3d:scale``, and a
  JSON ``photo3d`` chunk with e.g. the network disparity range that 0 and 65535 stand for).
- ``.npy``: float32 H×W normalized disparity in [0, 1].
- ``preview=True`` adds ``NAME.preview.png``: the map colour-coded with the turbo colour map
  (red = near, blue = far).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputFileError, OutputError, UsageError
from ..io import atomic_output

CONVENTION = "normalized disparity, larger = nearer"
PNG_SCALE = "value / 65535 = normalized disparity in [0, 1]"
FORMATS = (".png", ".npy")


def preview_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.stem + ".preview.png")


def check_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"depth output must end in .png (16-bit) or .npy (float32), not {suffix or 'no extension'!r}", path)
    return suffix


def colorize(disparity: np.ndarray) -> np.ndarray:
    """Turbo colour map of a [0, 1] map as RGB uint8."""
    import cv2

    u8 = np.clip(np.round(np.nan_to_num(disparity) * 255.0), 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)


def _save_png(path: Path, image, pnginfo=None, compress_level: int = 6) -> None:
    try:
        with atomic_output(path) as tmp:
            image.save(tmp, format="PNG", pnginfo=pnginfo, compress_level=compress_level)
    except OSError as e:
        raise OutputError(f"cannot write ({e.strerror or e})", path) from e


def save_depth_map(path: str | Path, disparity: np.ndarray, preview: bool = False, meta: dict | None = None) -> list[Path]:
    """Write ``disparity`` (H×W, [0, 1], larger = nearer) to ``path``; returns the files written."""
    from PIL import Image, PngImagePlugin

    path = Path(path)
    suffix = check_format(path)
    d = np.asarray(disparity, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"depth map must be H×W, got shape {d.shape}")
    d = np.clip(np.nan_to_num(d, nan=0.0), 0.0, 1.0)
    written = [path]
    if suffix == ".png":
        u16 = np.round(d * 65535.0).astype(np.uint16)
        im = Image.fromarray(u16)  # mode I;16
        info = PngImagePlugin.PngInfo()
        info.add_text("photo3d:convention", CONVENTION)
        info.add_text("photo3d:scale", PNG_SCALE)
        info.add_text("photo3d", json.dumps({"convention": CONVENTION, "scale": PNG_SCALE, **(meta or {})}, default=str))
        # zlib level 1: 4x faster than the default on 16-bit maps, files ~8 % larger
        _save_png(path, im, info, compress_level=1)
    else:
        try:
            with atomic_output(path) as tmp, open(tmp, "wb") as f:
                np.save(f, d.astype(np.float32), allow_pickle=False)
        except OSError as e:
            raise OutputError(f"cannot write ({e.strerror or e})", path) from e
    if preview:
        pv = preview_path(path)
        _save_png(pv, Image.fromarray(colorize(d)))
        written.append(pv)
    return written


def read_png_metadata(path: str | Path) -> dict:
    """The photo3d text chunks of a depth PNG ({} when absent)."""
    from PIL import Image

    with Image.open(path) as im:
        text = dict(getattr(im, "text", {}) or {})
    out = {k: v for k, v in text.items() if k.startswith("photo3d:")}
    if "photo3d" in text:
        try:
            out.update(json.loads(text["photo3d"]))
        except ValueError:
            pass
    return out


def load_depth_map(path: str | Path) -> np.ndarray:
    """Read a depth map written by photo3d (or any grayscale PNG / 2-D .npy) as float32 H×W.

    PNGs are scaled to [0, 1] by their bit depth; ``.npy`` values are returned as stored.
    Larger must mean nearer (normalized disparity).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputFileError("no such depth map file", path)
    if path.suffix.lower() == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise InputFileError(f"not a readable .npy depth map ({e})", path) from e
        a = np.squeeze(np.asarray(a))
        if a.ndim != 2 or not np.issubdtype(a.dtype, np.number):
            raise InputFileError(f"depth map must be a 2-D numeric array, got {a.dtype} {a.shape}", path)
        a = a.astype(np.float32)
        if not np.all(np.isfinite(a)):
            raise InputFileError("depth map holds NaN or infinite values", path)
        return a
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            a = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputFileError(f"not a readable depth map image ({e})", path) from e
    if a.ndim == 3:
        a = a[..., 0]
    if mode.startswith("I;16") or a.dtype == np.uint16:
        return (a.astype(np.float32) / 65535.0).astype(np.float32)
    if mode in ("I",):
        top = 65535.0 if a.max() > 255 else 255.0
        return (a.astype(np.float32) / top).astype(np.float32)
    if mode == "F":
        return a.astype(np.float32)
    return (a.astype(np.float32) / 255.0).astype(np.float32)

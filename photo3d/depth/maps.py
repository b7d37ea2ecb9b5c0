"""Depth map files: 16-bit PNG or float32 ``.npy`` of normalized disparity (larger = nearer).

- ``.png``: 16-bit grayscale, value / 65535 = normalized disparity in [0, 1]; the convention and
  the scale are written into PNG text chunks (``photo3d:convention``, ``photo3d:scale``, and a
  JSON ``photo3d`` chunk with e.g. the network disparity range that 0 and 65535 stand for).
- ``.npy``: float32 H×W normalized disparity in [0, 1].
- ``preview=True`` adds ``NAME.preview.png``: the map colour-coded with the turbo colour map
  (red = near, blue = far), with a colour bar labelled "far" and "near" below it (and a
  ``photo3d:preview`` text chunk: a folder walk knows both files as photo3d's, not photos).
"""

from __future__ import annotations

import io
import json
import os
import stat
import tokenize
from pathlib import Path

import numpy as np

from ..errors import InputFileError, TooLargeError, UsageError, printable, summarize
from ..io import (DEFAULT_MAX_MEGAPIXELS, PHOTO_FORMATS, atomic_output, input_file, no_pillow_pixel_limit, npy_layout,
                  open_image, over_pixel_limit, pixel_limit_hint)

CONVENTION = "normalized disparity, larger = nearer"
PNG_SCALE = "value / 65535 = normalized disparity in [0, 1]"
FORMATS = (".png", ".npy")
PREVIEW_TAG = "photo3d:preview"  # text chunk of a preview PNG (depth map PNGs carry photo3d:convention)
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
MAP_TAG = "photo3d:convention"  # text chunk of a depth map PNG (with photo3d:scale and the JSON photo3d)


def preview_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.stem + ".preview.png")


def check_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        from ..batch.plan import folder_hint

        raise UsageError(f"depth output must end in .png (16-bit) or .npy (float32), not {suffix or 'no extension'!r}"
                         + (folder_hint(path) if suffix else ""), path)
    return suffix


def colorize(disparity: np.ndarray) -> np.ndarray:
    """Turbo colour map of a [0, 1] map as RGB uint8."""
    import cv2

    u8 = np.clip(np.round(np.nan_to_num(disparity) * 255.0), 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)


def with_legend(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` (a colorized map) with a legend strip below: the colour bar from far (left) to near
    (right), labelled "far" and "near" where the image is wide enough for the words."""
    import cv2

    h, w = rgb.shape[:2]
    lh = int(np.clip(round(max(w, h) * 0.04), 12, 48))  # legend height
    strip = np.full((lh, w, 3), 24, np.uint8)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, lh / 40.0
    thick = max(1, round(lh / 20))
    (tw, th), _ = cv2.getTextSize("near", font, scale, thick)
    pad = max(2, lh // 6)
    labels = w >= 2 * tw + 6 * pad + 16
    x0, x1 = (tw + 2 * pad, w - tw - 2 * pad) if labels else (0, w)
    ramp = colorize(np.linspace(0.0, 1.0, max(1, x1 - x0), dtype=np.float32)[None, :])
    strip[pad:lh - pad, x0:x1] = ramp
    if labels:
        y = (lh + th) // 2
        cv2.putText(strip, "far", (pad, y), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
        cv2.putText(strip, "near", (w - tw - pad, y), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return np.concatenate([rgb, strip], axis=0)


def _save_png(path: Path, image, pnginfo=None, compress_level: int = 6) -> None:
    with atomic_output(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=pnginfo, compress_level=compress_level)


def save_preview(path: str | Path, disparity: np.ndarray) -> None:
    """The colour preview of a [0, 1] map (turbo: red = near, blue = far) with its legend."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(PREVIEW_TAG, "depth map preview (turbo: red = near, blue = far)")
    _save_png(Path(path), Image.fromarray(with_legend(colorize(disparity))), info)


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
        info.add_text(MAP_TAG, CONVENTION)
        info.add_text("photo3d:scale", PNG_SCALE)
        info.add_text("photo3d", json.dumps({"convention": CONVENTION, "scale": PNG_SCALE, **(meta or {})}, default=str))
        # zlib level 1: 4x faster than the default on 16-bit maps, files ~8 % larger
        _save_png(path, im, info, compress_level=1)
    else:
        # serialised in memory first: np.save into a file reports a full disk without its errno
        # ("... requested and ... written"), which a batch would not know to stop at
        buf = io.BytesIO()
        np.save(buf, d, allow_pickle=False)
        with atomic_output(path) as tmp:
            tmp.write_bytes(buf.getbuffer())
    if preview:
        pv = preview_path(path)
        save_preview(pv, d)
        written.append(pv)
    return written


def read_png_metadata(path: str | Path) -> dict:
    """The photo3d text chunks of a depth PNG ({} when absent)."""

    with open_image(path, ("PNG",)) as im:
        text = dict(getattr(im, "text", {}) or {})
    out = {k: v for k, v in text.items() if k.startswith("photo3d:")}
    if "photo3d" in text:
        try:
            out.update(json.loads(text["photo3d"]))
        except ValueError:
            pass
    return out


def saved_depth_ratio(path: str | Path) -> float | None:
    """The farthest / nearest depth that photo3d wrote into a depth PNG it made from measured depth
    (``depth_ratio``: a phone's depth map, a stereo pair), read from the header; None for any other
    file.  Given back as ``--depth``, the map then keeps its own relief instead of the default guess."""

    if Path(path).suffix.lower() != ".png":
        return None
    try:
        with open_image(path, ("PNG",)) as im:  # (our text chunks stand before the pixels)
            ratio = float(json.loads(im.info.get("photo3d", "{}")).get("depth_ratio"))
    except Exception:  # no such chunk, not a number, not a PNG
        return None
    return ratio if np.isfinite(ratio) and ratio > 1 else None


def photo3d_kind(path: str | Path) -> str | None:
    """What photo3d wrote that a folder walk skips, as they are not photos (from the file's header):
    ``"depth map"`` or ``"preview"`` (a PNG with :data:`MAP_TAG` or :data:`PREVIEW_TAG`),
    ``"stereo still"`` (a JPEG or PNG tagged ``photo3d-stereo``: an earlier run's output folder
    inside the photos was converted again, each still as a 3D photo of its stereo pair) or ``"video"``
    (an animated WebP tagged ``photo3d-video``); else None.  Named as an input, each is used.
    Quiet: what Pillow says of a photo's header (its EXIF damaged) is said when the photo is read,
    with its name (here, in the walk, it came without one)."""
    import warnings

    from ..video import VIDEO_TAG, stereo_layout_of

    if Path(path).suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        return None
    try:  # never blocks: a named pipe or a terminal under a photo's name is not ours (it fails later, by name)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (the walk runs on the main thread: no other thread sets filters)
            with os.fdopen(fd, "rb", closefd=False) as f, open_image(f, header_only=True) as im:
                info = im.info  # (lazy: the text chunks, comment or XMP before the pixels, where we write them)
                if im.format == "PNG" and (kind := kind_of(info)):
                    return kind
                if stereo_layout_of(im.format, info):
                    return "stereo still"
                if im.format == "WEBP" and VIDEO_TAG.encode() in bytes(info.get("xmp") or b""):
                    return "video"
                return None
    except Exception:  # not a readable image: a photo that fails with its own message later
        return None
    finally:
        os.close(fd)


DISTANCE_TREND = -0.5  # a map whose row means fall this clearly down the picture reads as distances


def distance_warning(path: str | Path, d: np.ndarray) -> str | None:
    """The warning for a ``--depth`` map that looks like distances (smaller = nearer: the usual
    export of a depth camera, in mm, or a renderer's Z) rather than the disparity photo3d reads
    (larger = nearer): its row means fall down the picture (Pearson r of row mean and row below
    ``DISTANCE_TREND``), where almost every photo's ground is nearer at the bottom.  Used as given,
    such a map made a 3D photo inside out without a word (helper-102).  A PNG map photo3d wrote is
    never questioned (a ``.npy`` says nothing of who wrote it).  Measured: Middlebury's 14 ground-truth disparities 0.30-1.00, their
    distances -0.06 to -0.99 (13 of 14 under -0.5); Tiefenrausch's maps of the 322 hold-out photos
    under -0.5 for 11 (3 %), their distances for 284 (88 %).  A warning, not a refusal."""
    if photo3d_kind(path) == "depth map":
        return None
    rows = np.asarray(d, np.float64).mean(axis=1)
    if rows.size < 3 or not rows.std() > 0:
        return None
    if float(np.corrcoef(np.arange(rows.size), rows)[0, 1]) >= DISTANCE_TREND:
        return None
    return ("its values fall toward the bottom of the picture, as distances do (smaller = nearer); --depth "
            "reads larger = nearer: if it holds distances (a depth camera's mm, a renderer's Z), give 1/distance")


def kind_of(info: dict) -> str | None:
    """:func:`photo3d_kind` from the text chunks of a PNG already open (Pillow's ``im.info``)."""
    return "depth map" if MAP_TAG in info else "preview" if PREVIEW_TAG in info else None


GREY_TOLERANCE = 2  # 8-bit levels by which the channels of a grey image stored as RGB may differ (lossy coding)


def _is_colour(a: np.ndarray) -> bool:
    """Whether the RGB(A) pixels ``a`` (H×W×C, uint8) hold colour, not grey stored as three channels."""
    return int(np.ptp(a[..., :3], axis=2).max()) > GREY_TOLERANCE


def _npy_problem(path: Path) -> str | None:
    """What is wrong with the .npy file ``path`` that np.load says in its own terms: an array of
    Python objects (pickled data, never loaded), or a file that ends before the array its header
    describes.  None when its header cannot be read (np.load's reason says why)."""
    try:
        _, dtype, need, size = npy_layout(path)
    except Exception:  # noqa: BLE001 - a header numpy cannot read: np.load's own reason says why
        return None
    if dtype.hasobject:
        return "an array of Python objects (pickled data, not loaded): save a 2-D array of numbers"
    return f"cut short: {size:,} of its {need:,} bytes" if size < need else None


def _is_image(path: Path) -> bool:
    """Whether Pillow knows ``path``'s format (its header only; a damaged or huge image is one too)."""
    from PIL import UnidentifiedImageError

    try:
        with open_image(path, header_only=True):
            return True
    except UnidentifiedImageError:
        return False
    except Exception:  # noqa: BLE001 - recognised, but refused (too large, damaged): load_depth_map says why
        return True


# what numpy's header parser raises besides ValueError for a header that describes no array: a side
# of -1 (OverflowError, helper-72), a header cut inside a token (tokenize's TokenError, helper-77)
_BAD_NPY_HEADER = (OverflowError, SyntaxError, RecursionError, tokenize.TokenError)


def load_depth_map(path: str | Path, max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS) -> np.ndarray:
    """Read a depth map written by photo3d (or any grayscale PNG / 2-D .npy) as float32 H×W.

    The file is read by what it holds, not by its suffix (a ``.npy`` array named ``.png`` is read
    as an array, a PNG named ``.npy`` as an image); an ``.npz`` archive is refused with what to give
    instead.  PNGs are scaled to [0, 1] by their bit depth; ``.npy`` values are returned as stored.  A colour
    image is refused (its channels would be mixed into a depth); grey stored as RGB is read.
    Larger must mean nearer (normalized disparity).  Maps larger than ``max_megapixels`` are
    refused before they are decoded (as photos are); every failure is an :class:`InputFileError`
    naming the map.
    """
    from PIL import ImageOps, UnidentifiedImageError

    path = Path(path)
    input_file(path, "a depth map", "no such depth map file")

    def check_size(w: int, h: int) -> None:
        if w * h == 0:
            raise InputFileError(f"empty depth map ({w}x{h})", path)
        if over := over_pixel_limit(w, h, max_megapixels):
            raise TooLargeError(f"depth map too large ({over}){pixel_limit_hint(w, h, max_megapixels)}", path)

    try:
        with open(path, "rb") as f:
            head = f.read(len(NPY_MAGIC))
    except OSError as e:
        raise InputFileError(f"unreadable ({e.strerror or e})", path) from None
    if not head:
        raise InputFileError("not a depth map (empty file)", path)
    if head.startswith(ZIP_MAGIC):  # np.savez's archive (any name), not one array
        raise InputFileError("a zip archive (NumPy's .npz?), not a depth map: save one 2-D array with "
                             "numpy.save (.npy), or a grey PNG", path)
    if head == NPY_MAGIC:  # read by what it holds: a .npy array named .png (or without a suffix) too
        try:
            a = np.load(path, mmap_mode="r", allow_pickle=False)  # the header only, so far
        except (ValueError, OSError, EOFError, *_BAD_NPY_HEADER) as e:
            why = _npy_problem(path) or ("its header does not describe an array numpy can read"
                                         if isinstance(e, _BAD_NPY_HEADER) or "<ast." in str(e)
                                         else summarize(e))
            raise InputFileError(f"not a readable .npy depth map ({why})", path) from e
        shape = tuple(s for s in a.shape if s != 1) if a.size else a.shape
        if len(shape) != 2 or a.dtype.kind not in "uif":
            got = (f"{a.dtype} values" if a.dtype.kind not in "uif" else f"shape {a.shape}"
                   + (f" ({len(shape)}-D: sides of 1 do not count)" if len(shape) != a.ndim else ""))
            raise InputFileError(f"depth map must be a 2-D array of real numbers, got {got}", path)
        check_size(shape[1], shape[0])
        try:
            a = np.asarray(a, dtype=np.float32).reshape(shape)
        except (ValueError, OSError) as e:
            raise InputFileError(f"not a readable .npy depth map ({summarize(e)})", path) from e
        if not np.all(np.isfinite(a)):
            raise InputFileError("depth map holds NaN or infinite values", path)
        return a
    if path.suffix.lower() == ".npy" and not _is_image(path):
        raise InputFileError("not a readable .npy depth map (no NumPy header)", path)
    try:
        # (our own, clearer limit below; PGM too: other tools write 16-bit depth maps so)
        with no_pillow_pixel_limit(), open_image(path, PHOTO_FORMATS + ("PPM",)) as im:
            check_size(*im.size)
            im.load()
            if im.getexif().get(0x0112, 1) != 1:  # turned as a photo is (helper-72: used as stored, it was
                im = ImageOps.exif_transpose(im)  # refused as the wrong aspect, or a square one used turned)
            if im.mode not in ("1", "L", "LA", "La", "I", "F", "RGB", "RGBA", "RGBa") and not im.mode.startswith("I;16"):
                im = im.convert("RGB")  # a palette (or CMYK, ...) image: its colours, not its indices
            mode = im.mode
            own_preview = PREVIEW_TAG in getattr(im, "text", im.info)
            a = np.asarray(im)
    except InputFileError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise InputFileError(f"not a readable depth map image ({summarize(e)})", path) from e
    if a.ndim == 3:
        if a.shape[2] >= 3 and _is_colour(a):
            if own_preview:  # photo3d's colour preview of a map: the map is beside it (unless renamed)
                name = Path(path).name
                beside = (f"give the map beside it ({printable(name.removesuffix('.preview.png'))}.png or .npy)"
                          if name.endswith(".preview.png") else "give the depth map it was made from")
                raise InputFileError(f"a depth map's colour preview, not the map: {beside}", path)
            raise InputFileError("depth map is a colour image; give a single-channel (grey) depth map", path)
        a = a[..., 0]  # grey (a grey image stored as RGB, or grey + alpha)
    if mode.startswith("I;16") or a.dtype == np.uint16:
        return (a.astype(np.float32) / 65535.0).astype(np.float32)
    if mode in ("I",):
        top = 65535.0 if a.max() > 255 else 255.0
        return (a.astype(np.float32) / top).astype(np.float32)
    if mode == "F":
        a = a.astype(np.float32)
        if not np.all(np.isfinite(a)):
            raise InputFileError("depth map holds NaN or infinite values", path)
        return a
    return (a.astype(np.float32) / 255.0).astype(np.float32)

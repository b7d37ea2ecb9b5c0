"""Image input and atomic output, shared by every command.

``load_image`` is the only way photo3d reads a photo: it decodes fully (so truncated files
fail; a JPEG that ends after a complete scan is read when that is enough, see
:func:`_jpeg_cut_after_a_scan`), applies the EXIF orientation and an embedded colour profile
(:func:`to_srgb`), converts any mode to RGB uint8, refuses decompression bombs
and turns every failure into a one-line :class:`~photo3d.errors.InputFileError`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import io
import mmap
import math
import os
import re
import stat
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageFile, ImageOps, PngImagePlugin, UnidentifiedImageError

from .defaults import MAX_MEGAPIXELS as DEFAULT_MAX_MEGAPIXELS  # noqa: F401  (re-exported)
from .errors import InputFileError, OutputError, Photo3DError, TooLargeError, one_line, printable

HEIF_SUFFIXES = {".heic", ".heif"}
# (HEIC/HEIF files are photos with or without the optional reader: without it each one is a failed
# input that says how to install it, not a file a folder walk skips without a word)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".mpo", ".avif"} | HEIF_SUFFIXES

try:  # optional HEIC/HEIF support
    import pillow_heif  # type: ignore

    pillow_heif.register_heif_opener()
    HEIF_AVAILABLE = True
except Exception:  # pragma: no cover - depends on the optional extra
    HEIF_AVAILABLE = False
try:  # AVIF: Pillow 11.3 and later, built with libavif (its wheels are)
    from PIL import features as _features

    AVIF_AVAILABLE = bool(_features.check("avif"))
except Exception:  # pragma: no cover - depends on Pillow's build
    AVIF_AVAILABLE = False

_EXIF_IFD = 0x8769
_FOCAL_35MM = 0xA405  # FocalLengthIn35mmFilm


@dataclass
class Photo:
    """A decoded photo: RGB uint8 pixels (H, W, 3) after EXIF orientation."""

    rgb: np.ndarray
    path: Path | None = None
    focal_35mm: float | None = None  # EXIF 35 mm equivalent focal length, when present
    focal_ignored: float | None = None  # such a tag that no lens has (so not used: the default guess is)
    original_size: tuple[int, int] | None = None  # (width, height) before any reduction
    warnings: list[str] = field(default_factory=list)  # read, but not as it should be (a truncated progressive JPEG)
    # a cut-out's opacity (H, W) uint8 (an image with transparent parts; ``rgb`` is composited on white), else None
    alpha: np.ndarray | None = None
    orientation: int = 1  # the EXIF orientation applied to the stored pixels (1: none; 5-8 turn them a quarter)

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def _decimals_over(mp: float, limit: float) -> int | None:
    """How many decimals (1-9) show ``mp`` megapixels as over ``limit`` (``0.0012``, not ``0.0``); None: more."""
    return next((d for d in range(1, 10) if float(f"{mp:.{d}f}") > limit), None)


def over_pixel_limit(w: int, h: int, max_megapixels: float | None) -> str | None:
    """``"WxH = N MP exceeds the --max-megapixels limit of L MP"`` when a ``w`` x ``h`` image is over the
    limit, else None; N has as many decimals as it takes to show that it is over (``0.0012 MP`` over
    ``0.001 MP``, not ``0.0 MP``)."""
    if max_megapixels is None or w * h <= max_megapixels * 1e6:
        return None
    mp = w * h / 1e6
    shown = f"{mp:g}" if (d := _decimals_over(mp, max_megapixels)) is None else f"{mp:.{d}f}"
    return f"{w}x{h} = {shown} MP exceeds the --max-megapixels limit of {max_megapixels:g} MP"


def pixel_limit_hint(w: int, h: int, max_megapixels: float) -> str:
    """What to give to read a ``w`` x ``h`` image over the limit (the message said only what was
    over: helper-106): ``"; --max-megapixels 0.3 reads it"``, with the decimals of the size shown."""
    mp = w * h / 1e6
    if mp >= 10:
        return f"; --max-megapixels {math.ceil(mp)} reads it"
    d = _decimals_over(mp, max_megapixels) or 9
    need = f"{math.ceil(round(mp * 10**d, 6)) / 10**d:.{d}f}".rstrip("0").rstrip(".")  # (not 1.5 for 1.500004, nor 2e-05)
    return f"; --max-megapixels {need} reads it"


# Pillow refuses a PNG whose text or colour-profile chunk unpacks to more than 1 MB ("Decompressed
# data too large"): the pixels were fine, the photo "unreadable".  Profiles of calibration tools
# (LUT-based) reach a few MB; 16 MB a chunk, and Pillow's own 64 MB for all of a file's text, bound
# what a chunk made to unpack large can take
PNG_CHUNK_LIMIT = 16 * 2**20
PngImagePlugin.MAX_TEXT_CHUNK = max(PngImagePlugin.MAX_TEXT_CHUNK, PNG_CHUNK_LIMIT)


# The decoders photo3d opens files with.  Pillow chooses a decoder by a file's first bytes, whatever
# its name, and has many more: its EPS plugin runs Ghostscript on the file, and others (ICNS, SGI,
# SPIDER, TGA, ...) are little-used code; a ".jpg" (or a depth map inside a photo) holding one of
# those is "not an image" here.  (An MPO opens as JPEG; GIF: a photo named as input, a folder walk
# passes it by.)
PHOTO_FORMATS = (("JPEG", "PNG", "TIFF", "WEBP", "BMP", "GIF") + (("HEIF",) if HEIF_AVAILABLE else ())
                 + (("AVIF",) if AVIF_AVAILABLE else ()))
READ_FORMATS = "JPEG, PNG, TIFF, WebP, BMP, GIF, HEIC and AVIF"  # (as a message says it)


class RefusedImage(ValueError):
    """An image refused before it is decoded, of a kind made to be slow or to reach little-used
    code (its message says why)."""


# A progressive JPEG has about 10 scans (a camera's, an optimiser's); libjpeg decodes each scan
# over the whole image, so a few hundred KB of empty scans took minutes (5,000 of 100 MP: 51 s,
# 1.5 GB; helper-63).  Counted before decoding by walking the markers to the image's end (as
# libjpeg-turbo's djpeg -maxscans guards): here at 100 MP at most ~10 s.
MAX_JPEG_SCANS = 1000
# An MPO's images, each walked so: a camera's MPO has 2 or 3 (a multi-view one a few more); 4,000
# entries in one 64 KB segment, each at another offset of 16 MB of image data, walked for ~12 min
# (a security review, helper-77)
MAX_MPO_IMAGES = 64
# a JPEG marker: 0xFF then a code (FF00 is a stuffed 0xFF byte in entropy-coded data, FFD0-FFD7 are
# restart markers inside it, FFFF is fill): where a scan's data ends
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# Segments of a JPEG before its image data, and chunks of a PNG other than its image data: a photo
# has a few dozen (an iPhone's JPEG with Extended XMP depth ~200). Millions of empty ones (4 bytes each
# in a 16 MB file) took Pillow's header parser and photo3d's own walks 34 s and 0.9 GB for a 160x120
# photo (helper-72): refused before Pillow opens the file, by a walk that stops at the limit.
MAX_META_SEGMENTS = 10_000
# TIFF compressions decoded here (none, LZW, JPEG, Deflate, PackBits, CCITT for bilevel scans):
# libtiff's others (ThunderScan, SGILog, old-style JPEG, LZMA, ...) are little-used code
TIFF_COMPRESSIONS = {1, 2, 3, 4, 5, 7, 8, 32773, 32946}


def jpeg_markers(buf, start: int = 0) -> Iterator[tuple[int, int, int]]:
    """(marker, payload start, payload end) of each segment of the JPEG image at ``start`` of
    ``buf`` (bytes, or an mmap), up to its end (EOI, or where its structure ends).  Segments are
    skipped by their length (a comment holding marker bytes is not a scan), a scan's data up to
    the next marker."""
    pos, end = start + 2, len(buf)
    while pos + 4 <= end:
        if buf[pos] != 0xFF:
            break
        kind = buf[pos + 1]
        if kind == 0xFF:  # fill byte
            pos += 1
            continue
        if kind == 0xD9:  # EOI
            break
        if kind == 0x01 or 0xD0 <= kind <= 0xD8:  # standalone markers
            pos += 2
            continue
        length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
        if length < 2 or pos + 2 + length > end:
            break
        yield kind, pos + 4, pos + 2 + length
        pos += 2 + length
        if kind == 0xDA:
            m = _JPEG_MARKER.search(buf, pos)
            if m is None:
                break
            pos = m.start()


def jpeg_scan_count(buf, start: int = 0, limit: int = MAX_JPEG_SCANS) -> int:
    """The scans of the JPEG image at ``start`` of ``buf`` (:func:`jpeg_markers`); counting
    stops once past ``limit``."""
    n = 0
    for kind, _, _ in jpeg_markers(buf, start):
        n += kind == 0xDA
        if n > limit:
            break
    return n


@contextlib.contextmanager
def _bytes_of(source) -> Iterator:
    """The bytes of ``source`` (bytes, a BytesIO, a path or an open file: mapped, not read)."""
    with contextlib.ExitStack() as stack:
        if isinstance(source, (bytes, bytearray, memoryview)):
            buf = source
        elif isinstance(source, io.BytesIO):
            buf = source.getbuffer()
            stack.callback(buf.release)
        else:
            f = stack.enter_context(open(source, "rb")) if isinstance(source, (str, os.PathLike)) else source
            try:
                buf = stack.enter_context(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
            except ValueError:  # (an empty file cannot be mapped)
                buf = b""
        yield buf


def _metadata_segments(buf, header_only: bool = False) -> tuple[str, int]:
    """("JPEG" or "PNG", how many steps a reader takes through the file's metadata), counting
    stopped past :data:`MAX_META_SEGMENTS`; ("", 0) for other formats. A JPEG's steps before its
    first scan: each segment, standalone marker, fill byte and stray byte (Pillow steps over stray
    bytes one by one: 16 MB of them took 18 s, helper-74); a PNG's: each chunk but its image data's,
    and each image-data chunk under 1 KB (a million empty IDAT chunks took 7 s), or with
    ``header_only`` those before its image data (what reading its header walks: not every chunk's
    header across the whole file for each file a folder walk looks at)."""
    n, end = 0, len(buf)
    if buf[:2] == b"\xff\xd8":
        pos = 2
        while pos + 1 < end and n <= MAX_META_SEGMENTS:
            n += 1
            kind = buf[pos + 1]
            if buf[pos] != 0xFF or kind == 0xFF:  # a stray byte, a fill byte
                pos += 1
            elif kind == 0xDA or kind == 0xD9:  # the first scan (or the end): the metadata is over
                break
            elif kind == 0x01 or 0xD0 <= kind <= 0xD8:  # standalone markers
                pos += 2
            else:
                pos += 2 + int.from_bytes(buf[pos + 2 : pos + 4], "big")
        return "JPEG", n
    if buf[:8] == b"\x89PNG\r\n\x1a\n":
        pos = 8
        while pos + 8 <= end and n <= MAX_META_SEGMENTS:
            length = int.from_bytes(buf[pos : pos + 4], "big")
            kind = bytes(buf[pos + 4 : pos + 8])
            if kind == b"IEND" or (header_only and kind in (b"IDAT", b"fdAT")):
                break
            n += kind not in (b"IDAT", b"fdAT") or length < 1024
            pos += 12 + length
        return "PNG", n
    return "", 0


def _refuse_padded(source, header_only: bool = False) -> None:
    """:class:`RefusedImage` for a JPEG or PNG of more than :data:`MAX_META_SEGMENTS` metadata segments
    (:func:`_metadata_segments`; the file is mapped, its position left where it was)."""
    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
        return  # (Image.open says what it is; a FIFO is not opened here)
    try:
        with _bytes_of(source) as buf:
            fmt, n = _metadata_segments(buf, header_only)
    except (OSError, ValueError):
        return  # (unreadable: Image.open says why)
    if n > MAX_META_SEGMENTS:
        what = "segments or padding bytes before its image data" if fmt == "JPEG" else "chunks besides its image data"
        raise RefusedImage(f"unsupported {fmt}: more than {MAX_META_SEGMENTS:,} {what}, where a photo has a few dozen")


def _refuse_slow(im: Image.Image, source) -> None:
    """:class:`RefusedImage` for a JPEG (or each image of an MPO) of more than
    :data:`MAX_JPEG_SCANS` scans, and a TIFF in a compression not in :data:`TIFF_COMPRESSIONS`."""
    if im.format == "TIFF":
        if why := _tiff_compression_refused(im.tag_v2.get(259, 1)):
            raise RefusedImage(why)
        return
    if im.format not in ("JPEG", "MPO"):
        return
    starts = sorted(set(getattr(im, "_MpoImageFile__mpoffsets", None) or [0]))  # (Pillow's offsets of an MPO's images)
    if len(starts) > MAX_MPO_IMAGES:
        raise RefusedImage(f"unsupported MPO: {len(starts):,} images, where a camera's has 2 or 3")
    n = 0
    with _bytes_of(source) as buf:
        for s in starts:  # (each image once, and no further than the limit: the sum was taken over
            if 0 <= s < len(buf) and n <= MAX_JPEG_SCANS:  # all, 300 entries of one image walked it 300 times)
                n += jpeg_scan_count(buf, s, MAX_JPEG_SCANS - n)
    if n > MAX_JPEG_SCANS:
        raise RefusedImage(f"unsupported JPEG: more than {MAX_JPEG_SCANS:,} scans, where a progressive JPEG has about 10")


MAX_CONTAINER_BYTES = 256 << 20  # a WebP, HEIC or AVIF photo's data, at most (a 100 MP lossless WebP: about 250 MB)


def photo_source(source):
    """``source`` (a path or an open file), or for a WebP or an ISO media file (HEIC, AVIF) with bytes
    after its container's end (its RIFF chunk, its boxes) the container's bytes alone: their
    decoders read a file whole, and a photo of 38 KB padded with gigabytes took that much memory,
    several times over, also in a folder run's coordinating process (helper-127).
    :class:`RefusedImage` for a container larger than :data:`MAX_CONTAINER_BYTES`."""
    if isinstance(source, (bytes, bytearray, memoryview, io.BytesIO)) or (
            isinstance(source, (str, os.PathLike)) and not os.path.isfile(source)):
        return source  # (in memory already; Image.open says what a path that is no file is, a FIFO unopened)
    try:
        with _bytes_of(source) as buf:
            found = _container_end(buf)
            if found is None:
                return source
            kind, end = found
            if end >= len(buf) and len(buf) <= MAX_CONTAINER_BYTES:
                return source
            if min(end, len(buf)) > MAX_CONTAINER_BYTES:
                raise RefusedImage(f"unsupported {kind}: {min(end, len(buf)) / 2**20:,.0f} MiB of image data, more "
                                   f"than a photo holds (at most {MAX_CONTAINER_BYTES >> 20} MiB)")
            return io.BytesIO(buf[:end])
    except RefusedImage:
        raise
    except (OSError, AttributeError, ValueError):  # (not a file: Image.open reads it as it is)
        return source


def _container_end(buf) -> tuple[str, int] | None:
    """("WebP" or "HEIF", where its RIFF chunk or its last ISO box ends) in the bytes ``buf`` (a box
    of size 0 is the last: its end is the file's for ``mdat``, its start for anything else, such as
    zeros; the walk stops at what is no box); None for other files."""
    head = bytes(buf[:16])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        riff = int.from_bytes(head[4:8], "little") + 8
        return "WebP", riff + (riff & 1)
    if head[4:8] != b"ftyp":
        return None
    pos, n = 0, 0
    while pos + 8 <= len(buf) and n <= MAX_META_SEGMENTS:
        head = bytes(buf[pos:pos + 16])
        box, skip = int.from_bytes(head[:4], "big"), 8
        if not (head[4:8].isascii() and head[4:8].decode("ascii").isprintable()):
            break
        if box == 1 and len(head) == 16:
            box, skip = int.from_bytes(head[8:16], "big"), 16
        if box == 0:
            return "HEIF", len(buf) if head[4:8] == b"mdat" else pos
        if box < skip:
            break
        pos += box
        n += 1
    return "HEIF", pos


def open_image(source, formats: tuple[str, ...] = PHOTO_FORMATS, header_only: bool = False) -> Image.Image:
    """``Image.open`` of the ``formats`` photo3d reads, without Pillow's own pixel limit and its
    warning: the caller checks the size itself before decoding (with a clearer message, against
    --max-megapixels), or reads the header only.  (The limit is lifted for the open alone, not in a
    warnings filter: ``warnings.catch_warnings`` is not thread-safe, the model loads beside it.)
    :class:`RefusedImage` for a JPEG of thousands of scans or a TIFF in a rare compression, unless
    ``header_only`` (the caller reads the header, never the pixels: a JPEG's scans are then not
    walked, which reads the whole file)."""
    _refuse_padded(source, header_only)
    source = photo_source(source)
    with no_pillow_pixel_limit():
        im = Image.open(source, formats=formats)
    if header_only:
        return im
    try:
        _refuse_slow(im, source)
    except BaseException:
        im.close()
        raise
    return im


@contextlib.contextmanager
def no_pillow_pixel_limit() -> Iterator[None]:
    """Pillow's pixel limit lifted (for an open, or a seek to another frame, that reads a header)."""
    saved_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved_limit


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


_WIDE_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # 16- and 32-bit grey


def _to_rgb8(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in _WIDE_GREY:
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        g = np.clip(np.round(a * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
    if mode == "F":
        a = np.asarray(im, dtype=np.float64)
        finite = np.isfinite(a)
        if not finite.all():  # NaN / infinite pixels are black; none finite is no picture
            if not finite.any():
                raise ValueError("a floating-point image without one finite pixel value")
            a = np.where(finite, a, 0.0)
        top = 1.0 if a.max() <= 1.0 else 255.0
        g = np.clip(np.round(a * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
    if mode in ("P", "L", "RGB") and "transparency" in im.info:  # a palette entry or colour that is transparent
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


# mode: (profile space, out); a palette image is made RGB(A) and an LA one is its L channel and alpha first
_ICC_MODES = {"RGB": ("RGB", "RGB"), "RGBA": ("RGB", "RGBA"), "CMYK": ("CMYK", "RGB"), "L": ("GRAY", "RGB")}


def _same_bytes(path: Path, data: bytes) -> bool:
    """Whether the regular file ``path`` holds ``data``, read only when its size is ``data``'s (a
    sparse 20 GB NAME.glb beside a page given as input was read whole to compare, helper-111)."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode) or st.st_size != len(data):
            return False
        return path.read_bytes() == data
    except OSError:
        return False


MAX_ICC_ELEMENTS = 64  # processing elements of a v4 profile's 'mpet' pipeline (real profiles: a handful)
MAX_ICC_TAGS = 1000


def _icc_cost(icc: bytes) -> str | None:
    """Why the colour library must not be given ``icc``, from its tag table alone, or None: a 147 KB
    profile whose 'mpet' pipelines held 60,000 elements took 76 s on a 32×32 photo, a 16 MB one more
    than 15 minutes, deaf to Ctrl-C and kill inside the library (helper-111)."""
    if len(icc) < 132 or icc[36:40] != b"acsp":
        return None  # (no profile, or too short to hold a tag table: the library refuses it at once)
    count = int.from_bytes(icc[128:132], "big")
    if count > MAX_ICC_TAGS and 132 + 12 * count <= len(icc):  # (a table past the end: refused at once)
        return f"{count:,} tags"
    for k in range(min(count, (len(icc) - 132) // 12)):
        at = int.from_bytes(icc[136 + 12 * k:140 + 12 * k], "big")
        if icc[at:at + 4] == b"mpet" and len(icc) >= at + 16:
            elements = int.from_bytes(icc[at + 12:at + 16], "big")
            if elements > MAX_ICC_ELEMENTS:
                return f"a pipeline of {elements:,} elements"
    return None


@functools.lru_cache(maxsize=16)
def _srgb_transform(icc: bytes, mode: str):
    """(transform to sRGB, or None when the profile maps colours like sRGB (within one level) or
    cannot be used; a warning for the latter).  Made once per profile: a folder of photos from one
    camera embeds the same one."""
    from PIL import ImageCms

    space, out = _ICC_MODES[mode]
    if why := _icc_cost(icc):
        return None, f"colour profile ignored ({why}, too costly to apply): colours taken as sRGB"
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if src.profile.xcolor_space.strip() != space:
            return None, f"colour profile ignored ({src.profile.xcolor_space.strip() or 'unknown'} profile on a {mode} image): colours taken as sRGB"
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        transform = ImageCms.buildTransform(src, srgb, mode, out, ImageCms.Intent.RELATIVE_COLORIMETRIC)
        if space in ("RGB", "GRAY"):  # an sRGB profile (many cameras and phones embed one) changes nothing
            levels = np.arange(0, 256, 17, dtype=np.uint8)
            if space == "GRAY":  # (a grey with the sRGB curve: each level stays itself in R, G and B)
                grid = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
                probe = Image.fromarray(np.ascontiguousarray(grid[..., 0]))  # (uint8 H x W: "L")
            else:
                grid = np.stack(np.meshgrid(levels, levels, levels), -1).reshape(1, -1, 3)
                probe = Image.fromarray(grid)  # (uint8 H x W x 3: "RGB")
            if mode == "RGBA":
                probe = probe.convert("RGBA")
            mapped = np.asarray(ImageCms.applyTransform(probe, transform))[..., :3]
            if np.abs(mapped.astype(int) - grid).max() <= 1:
                return None, None
        return transform, None
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
        return None, f"colour profile unusable ({one_line(e) or type(e).__name__}): colours taken as sRGB"


def to_srgb(im: Image.Image, icc: bytes | None = None) -> tuple[Image.Image, str | None]:
    """``im`` with its embedded ICC colour profile (``icc``, default ``im.info``) applied: pixels in
    sRGB, which the GLB's JPEG texture, the viewer, the videos and the depth network all assume.
    Read as they are, a Display P3 photo (every iPhone HEIC) or an Adobe RGB one comes out washed
    out.  Returns (image, warning); a profile that maps colours like sRGB (within one level) leaves
    the image as it is, and one that cannot be used leaves it as it is with a warning."""
    icc = im.info.get("icc_profile") if icc is None else icc
    if not icc:
        return _nclx_to_srgb(im, im.info.get("nclx_profile"))
    if im.mode == "P":  # (a palette's colours are in the profile's space as much as an RGB image's)
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    alpha = None
    if im.mode == "LA":  # (the grey, then its opacity back)
        im, alpha = im.getchannel("L"), im.getchannel("A")
    if im.mode not in _ICC_MODES:
        return im, None
    transform, warning = _srgb_transform(bytes(icc), im.mode)
    if transform is None:
        return (im if alpha is None else Image.merge("LA", (im, alpha))), warning
    from PIL import ImageCms

    try:
        out = ImageCms.applyTransform(im, transform)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
        im = im if alpha is None else Image.merge("LA", (im, alpha))
        return im, f"colour profile unusable ({one_line(e) or type(e).__name__}): colours taken as sRGB"
    if alpha is not None:
        out.putalpha(alpha)
    return out, None


# HEIF colour given as code points (ITU-T H.273 "nclx": an iPhone's HEIC carries an ICC profile, other
# cameras and converters these): primaries other than sRGB's are converted; transfer curves that are
# sRGB's or close to it (BT.709, BT.601, BT.2020: display-referred photos) are read with sRGB's;
# HDR curves (PQ, HLG) cannot be shown as sRGB without tone mapping: said in a warning
_SRGB_PRIMARIES = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290)
_NCLX_SRGB_LIKE_CURVES = {1, 2, 6, 13, 14, 15}
_NCLX_HDR_CURVES = {16: "PQ", 18: "HLG"}


def _rgb_to_xyz(xr, yr, xg, yg, xb, yb, xw, yw) -> np.ndarray:
    """The 3x3 linear RGB → XYZ matrix of primaries and white point given as CIE xy."""
    cols = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in ((xr, yr), (xg, yg), (xb, yb))]).T
    white = np.array([xw / yw, 1.0, (1 - xw - yw) / yw])
    return cols * np.linalg.solve(cols, white)


def _bradford(src_white: np.ndarray, dst_white: np.ndarray) -> np.ndarray:
    b = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
    return np.linalg.inv(b) @ np.diag((b @ dst_white) / (b @ src_white)) @ b


def _nclx_to_srgb(im: Image.Image, nclx: dict | None) -> tuple[Image.Image, str | None]:
    """``im`` (8-bit RGB or RGBA, as pillow-heif gives it) converted to sRGB by its HEIF colour code
    points (relative colorimetric: colours outside sRGB clipped), with a warning for what cannot be."""
    if not isinstance(nclx, dict) or im.mode not in ("RGB", "RGBA"):
        return im, None
    curve = nclx.get("transfer_characteristics")
    if curve in _NCLX_HDR_CURVES:
        return im, f"HDR colours ({_NCLX_HDR_CURVES[curve]} curve) taken as sRGB: the photo looks flatter than on an HDR screen"
    keys = ("red_x", "red_y", "green_x", "green_y", "blue_x", "blue_y", "white_x", "white_y")
    try:
        xy = tuple(float(nclx[f"color_primary_{k}"]) for k in keys)
    except (KeyError, TypeError, ValueError):
        return im, None
    if nclx.get("color_primaries") in (1, 2) or np.allclose(xy, _SRGB_PRIMARIES, atol=2e-3):
        return im, None
    if not all(0.0 < v < 1.0 for v in xy) or (curve is not None and curve not in _NCLX_SRGB_LIKE_CURVES | {8}):
        return im, f"colour code points not understood (primaries {nclx.get('color_primaries')}, curve {curve}): colours taken as sRGB"
    try:
        to_xyz = _rgb_to_xyz(*xy)
        srgb = _rgb_to_xyz(*_SRGB_PRIMARIES)
        m = np.linalg.inv(srgb) @ _bradford(to_xyz.sum(1), srgb.sum(1)) @ to_xyz
    except np.linalg.LinAlgError:
        return im, f"colour code points not understood (primaries {nclx.get('color_primaries')}): colours taken as sRGB"
    levels = np.arange(256) / 255.0
    lut = levels if curve == 8 else np.where(levels <= 0.04045, levels / 12.92, ((levels + 0.055) / 1.055) ** 2.4)
    a = np.asarray(im)
    out = a.copy()
    lut, mt = lut.astype(np.float32), m.T.astype(np.float32)
    for y in range(0, a.shape[0], 256):  # (in bands: a 100 MP photo's floats at once took gigabytes)
        lin = lut[a[y:y + 256, :, :3]] @ mt
        np.clip(lin, 0.0, 1.0, out=lin)
        enc = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * np.power(lin, 1 / 2.4) - 0.055)
        out[y:y + 256, :, :3] = np.clip(np.round(enc * 255.0), 0, 255).astype(np.uint8)
    res = Image.fromarray(out)  # (uint8 RGB or RGBA as ``im``; Pillow 11.3 warns of a mode argument)
    res.info = {k: v for k, v in im.info.items() if k != "nclx_profile"}
    return res, None


INVISIBLE = ("transparent all over (every pixel under half opacity, which a 3D photo leaves out): "
             "its colours are used as if it were opaque")


def _alpha(im: Image.Image) -> np.ndarray | None:
    """The alpha channel (H, W uint8) of an image that has one (or a transparent palette entry or
    colour), else None."""
    if im.mode not in ("RGBA", "LA", "PA", "RGBa", "La") and "transparency" not in im.info:
        return None
    if im.mode in _WIDE_GREY:  # a 16-bit grey's transparent level (Pillow's RGBA of it clips to 8 bits)
        key = im.info["transparency"]
        return np.where(np.asarray(im) == key, 0, 255).astype(np.uint8) if isinstance(key, int) else None
    return np.ascontiguousarray(np.asarray((im if im.mode == "RGBA" else im.convert("RGBA")).getchannel("A"), dtype=np.uint8))


def _rgb8_and_alpha(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """(RGB uint8 composited on white, a cut-out's alpha, a warning).  A cut-out has transparent
    parts (below half opacity, hidden by glTF's alpha test) and visible ones; any other image has
    no alpha.  An image transparent all over would show nothing, and composited on white it came
    out a blank white 3D photo: its stored colours are used, with a warning saying so."""
    alpha = _alpha(im)
    if alpha is not None and alpha.max() < 128:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (Pillow's note on palette transparency)
            opaque = (im.copy() if im.mode in _WIDE_GREY else im.convert("L") if im.mode in ("LA", "La")
                      else im.convert("RGBA").convert("RGB"))
        opaque.info.pop("transparency", None)
        return _to_rgb8(opaque), None, INVISIBLE
    return _to_rgb8(im), (alpha if alpha is not None and alpha.min() < 128 else None), None


@contextlib.contextmanager
def _library_stderr(lines: list[str]) -> Iterator[None]:
    """Capture into ``lines`` what C libraries write straight to the process's stderr (fd 2)
    meanwhile: libtiff prints its warnings and errors there ("ZIPDecode: Decoding error at
    scanline 0, ...") besides the exception Pillow raises."""
    try:
        sys.stderr.flush()
        sink = tempfile.TemporaryFile()
    except (OSError, ValueError, AttributeError):  # no stderr, or nowhere to capture it
        yield
        return
    with sink:
        try:
            saved = os.dup(2)
        except OSError:
            yield
            return
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read(65536).decode("utf-8", "replace")
            # ("tempfile.tif" is what Pillow calls the file when it hands it to libtiff)
            lines.extend(ln.strip().removeprefix("tempfile.tif: ") for ln in text.splitlines() if ln.strip())


_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
          (b"GIF8", "GIF"))


def _announced_format(path: Path) -> str | None:
    """The image format a file's first bytes announce (said when no decoder can open it)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp":  # ISO media: a HEIF or AVIF photo, or a video (.mov, .mp4: not an image)
        return _iso_brand(path)
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"mif2", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}


def _iso_brand(path: Path) -> str | None:
    """"AVIF" or "HEIF" by the brands of an ISO media file's ``ftyp`` box, else None (a video)."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(4), "big")
            box = f.read(min(max(size, 16), 4096))[4:]
    except OSError:
        return None
    brands = {box[i:i + 4] for i in range(0, len(box) - 3, 4) if i != 4}  # (major brand, version, compatible ones)
    return "AVIF" if brands & _AVIF_BRANDS else "HEIF" if brands & _HEIF_BRANDS else None


_TIFF_TYPES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}  # field type: bytes per value
_TIFF_SAMPLE_KINDS = {1: "unsigned integer", 2: "signed integer", 3: "floating-point", 4: "undefined", 5: "complex integer",
                      6: "complex floating-point"}


# compressions of TIFFs not read here, by name (others: by number)
_TIFF_COMPRESSION_NAMES = {6: "old-style JPEG", 32809: "ThunderScan", 33003: "JPEG 2000", 33005: "JPEG 2000",
                           34676: "SGILog", 34677: "SGILog24", 34712: "JPEG 2000", 34887: "LERC", 34925: "LZMA",
                           50000: "Zstandard", 50001: "WebP", 50002: "JPEG XL"}


def _tiff_compression_refused(compression: int) -> str | None:
    """Why a TIFF in ``compression`` is not read (not in :data:`TIFF_COMPRESSIONS`), else None."""
    if compression in TIFF_COMPRESSIONS:
        return None
    name = _TIFF_COMPRESSION_NAMES.get(compression, f"compression {compression}")
    return f"unsupported TIFF ({name}, not read here): save it uncompressed, or with LZW or Deflate"


_TIFF_TAGS_READ = frozenset({258, 259, 273, 277, 279, 324, 325, 339})  # the tags _unsupported_tiff looks at


def _unsupported_tiff(path: Path) -> str | None:
    """Why a classic TIFF that Pillow does not open is not read ("unsupported TIFF (3 samples of
    32-bit floating-point per pixel): ..."), when its first directory and the strips or tiles it
    points to are all in the file: it is then of a kind not supported here, not damaged.  None when
    it is cut short, or cannot be told."""
    try:
        with open(path, "rb") as f:
            data = f.read(64 << 20)  # (a directory at the end of a larger file: not told)
            size = os.fstat(f.fileno()).st_size
        order = {b"II": "little", b"MM": "big"}[data[:2]]
        if int.from_bytes(data[2:4], order) != 42:  # (BigTIFF: not told)
            return None
        ifd = int.from_bytes(data[4:8], order)
        count = int.from_bytes(data[ifd : ifd + 2], order)
        if ifd < 8 or ifd + 2 + 12 * count + 4 > len(data):
            return None
        tags: dict[int, list[int]] = {}
        for e in range(ifd + 2, ifd + 2 + 12 * count, 12):
            tag, kind, n = (int.from_bytes(data[e + a : e + b], order) for a, b in ((0, 2), (2, 4), (4, 8)))
            if tag not in _TIFF_TAGS_READ or tag in tags:  # (only these: 65,535 tags of 65,536 values
                continue  # each, all at one offset, took 20 min and 34 GB to decode from a 1 MB file)
            width = _TIFF_TYPES.get(kind, 1)
            at = e + 8 if width * n <= 4 else int.from_bytes(data[e + 8 : e + 12], order)
            if at + width * n > len(data):
                return None
            if width in (2, 4):
                tags[tag] = [int.from_bytes(data[at + width * i : at + width * (i + 1)], order) for i in range(min(n, 1 << 16))]
        offsets, counts = tags.get(273) or tags.get(324), tags.get(279) or tags.get(325)  # strips, or tiles
        if not offsets or not counts or max(o + c for o, c in zip(offsets, counts)) > size:
            return None
        if why := _tiff_compression_refused((tags.get(259) or [1])[0]):
            return why
        bits, samples = (tags.get(258) or [1])[0], (tags.get(277) or [1])[0]
        kind = _TIFF_SAMPLE_KINDS.get((tags.get(339) or [1])[0], "unknown")
        return f"unsupported TIFF ({samples} sample{'s' if samples != 1 else ''} of {bits}-bit {kind} per pixel): save it as 8- or 16-bit RGB"
    except (OSError, KeyError, ValueError):
        return None


def _is_frame_header(kind: int) -> bool:
    """Whether the JPEG marker ``0xFF kind`` starts a frame header (SOF0-SOF15; C4, C8, CC are others)."""
    return 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC)


_JPEG_LOSSLESS, _JPEG_HIERARCHICAL = (0xC3, 0xC7, 0xCB, 0xCF), (0xC5, 0xC6, 0xC7, 0xCD, 0xCE, 0xCF)


def _libjpeg_turbo() -> str:
    """The version of Pillow's libjpeg-turbo ("" for another JPEG library)."""
    from PIL import features

    return features.version_feature("libjpeg_turbo") or ""


def _reads_lossless_jpeg() -> bool:
    """Whether Pillow's JPEG library decodes lossless (SOF3) JPEGs: libjpeg-turbo does from 3.0
    on (Pillow 13's wheels: 3.2); with 2.x (Pillow 10.0's wheels: 2.1.5.1) or IJG libjpeg, Pillow
    opens one and its decoding fails ('broken data stream when reading image file')."""
    major = _libjpeg_turbo().split(".")[0]
    return major.isdigit() and int(major) >= 3


def _unsupported_jpeg(path: Path) -> str | None:
    """What makes a JPEG whose frame header (SOFn) is all there one Pillow does not read
    ("12-bit samples": 8 bits only; "2 components per pixel": 1, 3 or 4 only; "hierarchical":
    no libjpeg reads it; "lossless": libjpeg-turbo 3.0 and later only), so that it is not called
    damaged; None when its header is cut, malformed, or of a kind Pillow reads."""
    try:
        with open(path, "rb") as f:
            data = f.read(16 << 20)  # (APPn segments before the frame header: 64 KB each at most)
    except OSError:
        return None
    pos = 2  # after SOI
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        kind = data[pos + 1]
        if kind == 0xFF:  # fill before a marker
            pos += 1
            continue
        seg = pos + 2
        if kind in (0xD9, 0xDA):  # the end, or a scan, before any frame header
            return None
        if _is_frame_header(kind):  # the frame header
            if seg + 8 > len(data):
                return None
            bits, components = data[seg + 2], data[seg + 7]
            held = [name for name, kinds in (("lossless", _JPEG_LOSSLESS), ("hierarchical", _JPEG_HIERARCHICAL))
                    if kind in kinds]
            if bits != 8:
                held.append(f"{bits}-bit samples")
            if components not in (1, 3, 4):
                held.append(f"{components} components per pixel")
            unread = (bits != 8 or components not in (1, 3, 4) or kind in _JPEG_HIERARCHICAL
                      or (kind in _JPEG_LOSSLESS and not _reads_lossless_jpeg()))
            return ", ".join(held) if unread else None
        pos = seg + int.from_bytes(data[seg : seg + 2], "big")
    return None


def _unsupported_jpeg_text(held: str) -> str:
    if held == "lossless":  # 8-bit: a newer JPEG library reads it
        turbo = _libjpeg_turbo()
        lib = f"libjpeg-turbo {turbo}" if turbo else "JPEG library"
        return (f"unsupported JPEG (lossless): this Pillow's {lib} does not read it (libjpeg-turbo 3.0 and later "
                "do: pip install -U pillow), or save it as PNG or TIFF")
    if held == "hierarchical":  # 8-bit too
        return "unsupported JPEG (hierarchical): save it as a baseline JPEG, or as PNG or TIFF"
    return f"unsupported JPEG ({held}): save it as an 8-bit JPEG, or as PNG or TIFF"


def _container_truncated(path: Path) -> bool:
    """Whether ``path`` is an ISO media file (HEIC/HEIF: boxes after an ``ftyp``) or a WebP (RIFF)
    that ends before its boxes (its chunk) do.  libheif decodes the missing tiles of a cut-off
    iPhone photo as flat green instead of failing, so this is checked before decoding.  A HEIF cut
    after all of its primary image's data (inside an item stored after it: the depth map, a
    thumbnail) is not: the photo is whole, what it carries besides is said to be malformed when read
    (it failed as a truncated photo, helper-93)."""
    try:
        with open(path, "rb") as f:
            end = os.fstat(f.fileno()).st_size
            pos = 0
            meta = None
            while pos + 8 <= end:
                f.seek(pos)
                head = f.read(16)
                if pos == 0 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                    return int.from_bytes(head[4:8], "little") + 8 > end
                if pos == 0 and head[4:8] != b"ftyp":
                    return False
                size, skip = int.from_bytes(head[:4], "big"), 8
                if size == 1:  # a 64-bit size follows the type
                    if len(head) < 16:
                        return True
                    size, skip = int.from_bytes(head[8:16], "big"), 16
                if size == 0:  # the last box, to the end of the file
                    return False
                if size < 8:  # not a box: left to the decoder to refuse
                    return False
                if head[4:8] == b"meta" and pos + size <= end and size <= _MAX_META:
                    meta = (pos + skip, size - skip)  # (read only for a file cut short)
                pos += size
            if pos <= end:
                return False
            if meta is None:
                return True
            f.seek(meta[0])
            primary_end = _heif_primary_end(f.read(meta[1]))
            return primary_end is None or primary_end > end
    except OSError:  # unreadable: the decoder says so
        return False


_MAX_META = 1 << 20  # a HEIF's meta box (item locations and properties) is a few KB (pug.heic: 3.9 KB)


def _boxes(data: bytes, start: int = 0) -> Iterator[tuple[bytes, bytes]]:
    """(type, payload) of the ISO boxes laid end to end in ``data`` from ``start``."""
    pos = start
    while pos + 8 <= len(data):
        size, kind, skip = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8], 8
        if size == 1:
            size, skip = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
        elif size == 0:
            size = len(data) - pos
        if size < skip or pos + size > len(data):
            return
        yield kind, data[pos + skip:pos + size]
        pos += size


def _heif_primary_end(meta: bytes) -> int | None:
    """Where the data of a HEIF's primary image (and, for a grid, of its tiles) ends in the file, by
    its ``meta`` box's payload (``pitm``, ``iref`` ``dimg``, ``iloc``); None where that cannot be
    told (an extent to the file's end, data elsewhere, a box that does not parse)."""
    def uint(b: bytes, at: int, n: int) -> int:
        if at + n > len(b):
            raise ValueError("short box")
        return int.from_bytes(b[at:at + n], "big") if n else 0

    try:
        boxes = dict((k, v) for k, v in _boxes(meta, 4))  # (a full box: version and flags first)
        pitm = boxes[b"pitm"]
        primary = uint(pitm, 4, 2 if pitm[0] == 0 else 4)
        wanted = {primary}
        if b"iref" in boxes:
            iref = boxes[b"iref"]
            n = 2 if iref[0] == 0 else 4
            for kind, ref in _boxes(iref, 4):
                if kind == b"dimg" and uint(ref, 0, n) == primary:
                    count = uint(ref, n, 2)
                    wanted |= {uint(ref, n + 2 + i * n, n) for i in range(count)}
        iloc = boxes[b"iloc"]
        version = iloc[0]
        sizes = uint(iloc, 4, 2)
        off_n, len_n, base_n, idx_n = sizes >> 12, (sizes >> 8) & 15, (sizes >> 4) & 15, sizes & 15
        if version == 0:
            idx_n = 0
        if off_n + len_n + idx_n == 0:  # (extents of no bytes: a crafted box would loop for nothing)
            return None
        at = 6
        count = uint(iloc, at, 2 if version < 2 else 4)
        at += 2 if version < 2 else 4
        last, found = 0, set()
        for _ in range(count):
            item = uint(iloc, at, 2 if version < 2 else 4)
            at += 2 if version < 2 else 4
            method = 0
            if version in (1, 2):
                method = uint(iloc, at, 2) & 15
                at += 2
            at += 2  # data_reference_index
            base = uint(iloc, at, base_n)
            at += base_n
            extents = uint(iloc, at, 2)
            at += 2
            for _ in range(extents):
                at += idx_n
                offset, length = uint(iloc, at, off_n), uint(iloc, at + off_n, len_n)
                at += off_n + len_n
                if item in wanted:
                    if method == 1:  # in the meta box's idat: read whole already
                        continue
                    if method != 0 or length == 0:
                        return None
                    last = max(last, base + offset + length)
            if item in wanted:
                found.add(item)
        return last if found == wanted else None
    except (KeyError, ValueError, IndexError):
        return None


# stand-ins for what could follow the data (entropy-coded bits, no 0xFF): ..0101.., ..1010.., and mixed
_JPEG_TAILS = (b"\x55" * 64, b"\xaa" * 64, bytes((i * 73 + 41) % 255 for i in range(256)))


@dataclass
class _Scans:
    """What a JPEG that ends without its EOI holds: ``body``, the file up to the end of its last
    scan's data (a marker segment cut off after it dropped); ``count`` scans; ``complete``: every
    component's 64 coefficients down to their last bit (a baseline file: one scan for all components,
    or one each; a progressive one: every band and refinement); ``detailed``: every component's 64
    coefficients at some precision (a progressive file missing only refinement bits)."""

    body: bytes
    progressive: bool
    count: int
    complete: bool
    detailed: bool


def _jpeg_prefix(path: Path, size: tuple[int, int]) -> bytes:
    """The first bytes of a JPEG of ``size`` pixels, as many as its headers and image data can take
    (64 MiB of metadata and 8 bytes a pixel, twice what quality 100 without subsampling writes for
    noise): what follows is a trailer, and a file padded with gigabytes (a sparse file takes
    kilobytes on disk) is not read whole into memory, nor copied."""
    with open(path, "rb") as f:
        return f.read((64 << 20) + 8 * size[0] * size[1])


def _jpeg_scans(data: bytes, to_eoi: bool = False) -> _Scans | None:
    """The scans of the JPEG ``data`` (which ends without its EOI; with ``to_eoi``, the scans
    before its first EOI); None when it ends before its first scan's data, or is a kind not ours
    to mend.  Whether the last scan's own data is all there, only decoding tells."""
    data = data.rstrip(b"\xff")  # (the first byte of the next marker, or fill: never entropy-coded data)
    progressive, components, scans = None, [], []  # scans: (header start, data start, components, Ss, Se, Al)
    pos, end = 2, len(data)  # (after SOI)
    try:
        while (m := _JPEG_MARKER.search(data, pos)) is not None:
            kind, seg = data[m.start() + 1], m.start() + 2
            if kind == 0xD9 and to_eoi:  # (what follows it is another image, or a trailer)
                end = len(data[: m.start()].rstrip(b"\xff"))  # (fill bytes may stand before a marker)
                break
            if kind in (0xD8, 0xD9):  # an end (cut elsewhere), or a second image
                return None
            after = seg + int.from_bytes(data[seg : seg + 2], "big")  # (the segment's length counts its own 2 bytes)
            if seg + 2 > end or after > end:  # cut inside this segment
                end = m.start()
                break
            if _is_frame_header(kind):  # a frame header (SOFn)
                if kind not in (0xC0, 0xC1, 0xC2):  # lossless, hierarchical, arithmetic: not ours to mend
                    return None
                progressive = kind == 0xC2
                components = [data[seg + 8 + 3 * i] for i in range(data[seg + 7])]
            elif kind == 0xDA and progressive is not None:  # a scan: its components, band and bit
                n = data[seg + 2]
                ss, se, al = data[seg + 3 + 2 * n], data[seg + 4 + 2 * n], data[seg + 5 + 2 * n] & 15
                scans.append((m.start(), after, data[seg + 3 : seg + 3 + 2 * n : 2], ss, se, al))
            pos = after
    except IndexError:  # a malformed header
        return None
    if scans and scans[-1][1] >= end:  # cut right after a scan's header: that scan has not started
        end = scans.pop()[0]
    if not scans or not components:
        return None
    bit: dict[int, list[int | None]] = {c: [None] * 64 for c in components}  # the last bit each coefficient has
    for _, _, comps, ss, se, al in scans:
        for c in comps:
            for k in (range(64) if not progressive else range(ss, min(se, 63) + 1)):
                if c in bit:
                    bit[c][k] = al if progressive else 0
    got = [b for c in components for b in bit[c]]
    return _Scans(data[:end], bool(progressive), len(scans), all(b == 0 for b in got), all(b is not None for b in got))


def _with_eoi(body: bytes, tail: bytes = b"", reduced: tuple[str, tuple[int, int]] | None = None) -> Image.Image:
    """The JPEG ``body`` (its scans so far) decoded with ``tail`` and an EOI after it, in draft
    mode ``reduced`` if given: how both judgements below tell whether a scan's data is all there."""
    im = open_image(io.BytesIO(body + tail + b"\xff\xd9"), ("JPEG",))
    if reduced is not None:
        im.draft(*reduced)
    im.load()
    return im


def _jpeg_cut_after_a_scan(path: Path, draft: tuple[str, tuple[int, int]] | None,
                           size: tuple[int, int]) -> tuple[Image.Image, str | None]:
    """The image of a JPEG that ends after a complete scan, without its end marker (EOI), and a
    warning when it is not the whole image; :class:`InputFileError` when it cannot be used.

    - Only the EOI missing (some cameras write none; a download cut 2 bytes short): the whole image.
    - A progressive JPEG cut between scans once every component has all its coefficients at some
      precision (only refinement bits missing): read at reduced quality, with a warning; cut
      earlier (a blurred or blocky preview; a baseline one missing a colour's scan): refused.
    - Cut inside a scan's data (its missing blocks would decode grey, or as noise): refused.

    A scan's data is all there when the pixels do not depend on what follows it: decoded with the
    EOI right after it, and with stand-in data before that EOI (a scan cut short decodes the
    EOI's zero padding, or the stand-ins, as its missing blocks), at full size."""
    scans = _jpeg_scans(_jpeg_prefix(path, size))
    if scans is None:
        raise InputFileError("truncated image file", path)

    def decode(tail: bytes, reduced: tuple[str, tuple[int, int]] | None = None) -> Image.Image:
        return _with_eoi(scans.body, tail, reduced)

    try:
        ended = decode(b"")
        pixels = np.asarray(ended)
        ok = all(np.array_equal(pixels, np.asarray(decode(tail))) for tail in _JPEG_TAILS)
        if ok and draft is not None:
            ended = decode(b"", draft)
    except Exception:
        ok = False
    if not ok:  # cut inside a scan's data
        raise InputFileError("truncated image file", path)
    if scans.complete:
        return ended, None
    what = f"truncated {'progressive ' if scans.progressive else ''}JPEG (ends after {scans.count} complete " \
        f"scan{'s' if scans.count > 1 else ''}"
    if not scans.detailed:
        missing = "before its full detail: only a blurred preview" if scans.progressive else "a colour component missing"
        raise InputFileError(f"{what}, {missing})", path)
    return ended, f"{what}): read at reduced quality"


def _jpeg_cut_before_eoi(path: Path, size: tuple[int, int]) -> bool:
    """Whether a JPEG that has its EOI was cut inside a scan's data before it (a download cut short
    and "repaired", a forged header declaring a huge image over a few bytes): libjpeg decodes the
    missing blocks as one flat colour, without an error.  Judged as :func:`_jpeg_cut_after_a_scan`
    judges a file without its EOI (do the pixels depend on stand-in data put before the EOI?), at
    1/8 scale (libjpeg's DCT scaling: each block's mean colour, a fraction of a full decode)."""
    scans = _jpeg_scans(_jpeg_prefix(path, size), to_eoi=True)
    if scans is None:  # not a kind ours to judge: as decoded
        return False
    probe = ("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
    try:  # (one stand-in: a scan cut short decodes it as its missing blocks, not the flat fill)
        return not np.array_equal(np.asarray(_with_eoi(scans.body, b"", probe)),
                                  np.asarray(_with_eoi(scans.body, _JPEG_TAILS[-1], probe)))
    except MemoryError:
        raise
    except Exception:  # the body that decoded whole fails with its EOI moved: not whole after all
        return True


def _flat_bottom(im: Image.Image, rows: int = 8) -> bool:
    """Whether the last ``rows`` rows of a decoded image are all one colour: what libjpeg makes of
    the blocks of a scan whose data ends early (a real photo's last rows are seldom exactly flat;
    when they are, a few more decodes tell)."""
    w, h = im.size
    a = np.asarray(im.crop((0, max(0, h - rows), w, h)))
    return a.size > 0 and bool((a == a.reshape(-1, *a.shape[2:])[0]).all())


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")


def input_file(path: Path, what: str, missing: str = "no such file", error: type[Photo3DError] = InputFileError,
               folder_ok: bool = False) -> os.stat_result:
    """The ``stat`` of the input ``path`` (``what``: "an image", "a depth map", ...), or a one-line
    ``error`` naming it: ``missing``, a folder (unless ``folder_ok``), unreadable, or not a regular
    file (/dev/zero, a named pipe, a device: no size and maybe no end, so reading it would hang or
    fill the memory).  Every option that reads a file checks it here first."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        try:  # a link whose target is gone (a photo on an unmounted drive): say so, `ls` shows it
            missing = f"{missing} (a broken symbolic link to {os.readlink(path)})" if path.is_symlink() else missing
        except OSError:
            pass
        raise error(missing, path) from None
    except PermissionError:
        raise error("unreadable (permission denied)", path) from None
    except OSError as e:
        raise error(f"unreadable ({e.strerror or e})", path) from None
    if stat.S_ISDIR(st.st_mode):
        if folder_ok:
            return st
        raise error(f"is a folder, not {what}", path)
    if not stat.S_ISREG(st.st_mode):
        raise error(f"not {what} ({_file_kind(st.st_mode)}, not a regular file)", path)
    return st


# a 35 mm-equivalent focal under this is no rectilinear lens's (the widest are 10-12 mm): a fisheye's, or
# a wrong tag; the pinhole camera of 1 mm saw 175 degrees, the viewer's zoom hit its cap of 20x and
# the videos' frames were up to 35 % black (helper-108).  Such a tag is not used: the default guess is.
MIN_FOCAL_35MM = 8.0


def _focal_35mm(im: Image.Image) -> tuple[float | None, float | None]:
    """(the EXIF 35 mm-equivalent focal length, or None; the tag's value where no lens has it, or None)."""
    try:
        exif = im.getexif()
        value = exif.get_ifd(_EXIF_IFD).get(_FOCAL_35MM) or exif.get(_FOCAL_35MM)
        value = float(value) if value else None
    except Exception:
        return None, None
    if value is None or not np.isfinite(value):
        return None, None
    return (value, None) if MIN_FOCAL_35MM <= value <= 5000.0 else (None, value)


#: Formats whose several frames are an animation: of an animated GIF, WebP or PNG the first frame
#: is the photo, and a warning says so (it was taken without a word)
ANIMATED_FORMATS = ("GIF", "WEBP", "PNG")


def load_image(
    path: str | Path,
    max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
    max_side: int | None = None,
) -> Photo:
    """Decode ``path`` to an RGB uint8 :class:`Photo`.

    ``max_megapixels`` refuses larger images before decoding them (decompression bombs).
    ``max_side`` allows a reduced decode (JPEG draft mode, then INTER_AREA) where the caller
    never needs more than that many pixels on the longer side.
    """
    from .depth.maps import kind_of  # (lazy: photo3d.depth.maps imports this module)

    path = Path(path)
    st = input_file(path, "an image")
    if st.st_size == 0:
        raise InputFileError("not an image (empty file)", path)
    if _container_truncated(path):
        raise InputFileError("truncated image file", path)
    declared = None  # (w, h) as the file says, once it is open
    try:
        # (our own, clearer limit below; Pillow's is lifted for the decode too: its TIFF reader
        # checks it again there)
        with no_pillow_pixel_limit(), open_image(path) as im:
            w, h = declared = im.size
            if over := over_pixel_limit(w, h, max_megapixels):
                raise TooLargeError(f"too large ({over}){pixel_limit_hint(w, h, max_megapixels)}", path)
            draft = None
            if max_side is not None and im.format == "JPEG" and max(w, h) > max_side:
                draft = ("RGB", (max_side, max_side))
                im.draft(*draft)
            if getattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False):
                ImageFile.LOAD_TRUNCATED_IMAGES = False
            # decode first: reading a PNG's EXIF decodes it too, and the metadata readers below
            # swallow their errors (a damaged file must fail here, not come out half black)
            noise: list[str] = []
            warning = None
            # only libtiff writes to stderr itself: other formats decode without the capture
            # (a temp file and two dup2 per photo, and a process-wide redirect, for nothing)
            capture = _library_stderr(noise) if im.format == "TIFF" else contextlib.nullcontext()
            try:
                with capture:
                    im.load()
            except OSError as e:  # Pillow says "decoder error -2": libtiff said why
                if noise and "decoder error" in str(e):
                    raise OSError(noise[-1].rstrip(".")) from e
                if im.format == "JPEG" and (held := _unsupported_jpeg(path)):  # opened, not decoded
                    raise InputFileError(_unsupported_jpeg_text(held), path) from e
                if im.format != "JPEG" or "truncated" not in str(e):
                    raise
                im, warning = _jpeg_cut_after_a_scan(path, draft, (w, h))  # (InputFileError when it cannot be used)
            else:  # a JPEG cut inside a scan with an EOI after it decodes, its missing blocks flat
                # (baseline files: a progressive one so cut decodes its missing detail blurred,
                # seldom flat, and would pay for its slower decodes for nothing)
                if (im.format == "JPEG" and not im.info.get("progressive") and _flat_bottom(im)
                        and _jpeg_cut_before_eoi(path, (w, h))):
                    raise InputFileError("truncated image file (cut inside its image data)", path)
            focal, focal_ignored = _focal_35mm(im)
            frames = getattr(im, "n_frames", 1) if im.format in ANIMATED_FORMATS else 1
            if frames > 1:  # (a camera's MPO pair or a TIFF's pages are not an animation: not said)
                warning = warning or f"an animation ({frames} frames): its first frame is used"
            try:
                orientation = int(im.getexif().get(0x0112) or 1)  # EXIF orientation
            except Exception:
                orientation = 1
            swap = orientation in (5, 6, 7, 8)
            osize = (h, w) if swap else (w, h)
            icc = im.info.get("icc_profile")
            own = kind_of(im.info) if im.format == "PNG" else None  # a map photo3d wrote?
            try:
                im = ImageOps.exif_transpose(im)
            except Exception:  # malformed EXIF: keep the stored orientation, not fail
                orientation = 1
            im, colour_warning = to_srgb(im, icc)
            rgb, alpha, clear_warning = _rgb8_and_alpha(im)
    except InputFileError:
        raise
    except RefusedImage as e:
        raise InputFileError(str(e), path) from None
    except UnidentifiedImageError as e:
        if path.suffix.lower() in HEIF_SUFFIXES and not HEIF_AVAILABLE:
            raise InputFileError('reading HEIC/HEIF needs pillow-heif: pip install "photo3d[heif]"', path) from e
        fmt = _announced_format(path)
        if fmt == "AVIF" and not AVIF_AVAILABLE:
            raise InputFileError("reading AVIF needs Pillow 11.3 or later built with AVIF (pip install -U pillow)", path) from e
        if fmt == "TIFF" and (why := _unsupported_tiff(path)):  # whole, of a kind Pillow does not read
            raise InputFileError(why, path) from e
        if fmt == "JPEG" and (held := _unsupported_jpeg(path)):  # Pillow reads 8-bit JPEGs only
            raise InputFileError(_unsupported_jpeg_text(held), path) from e
        if fmt:  # e.g. a TIFF cut off before its directory (at its end)
            raise InputFileError(f"damaged or truncated {fmt} file (its header cannot be read)", path) from e
        if path.suffix.lower() in (".html", ".htm"):  # photo3d's own page: which file to give instead
            from .viewer import page_glb

            if (glb := page_glb(path)) is not None:
                beside = path.with_suffix(".glb")  # (named only where it is the page's own: -o NAME.html writes none)
                said = (f"give the 3D photo it shows ({printable(beside.name)}), which is rendered as it is"
                        if _same_bytes(beside, glb) else
                        "photo3d renders a 3D photo given as a .glb: convert the photo with -o NAME.glb (or "
                        "--format glb) to have one")
                raise InputFileError(f"a viewer page, not a photo: {said}", path) from e
        if path.suffix.lower() == ".glb":  # (convert renders one, pipeline.renders_as_is; depth said "not an image", helper-117)
            raise InputFileError("a 3D photo (GLB), not a photo: give the photo it was made from (photo3d convert "
                                 "renders a GLB as it is: to a video, GIF, page or stereo still)", path) from e
        raise InputFileError(f"not an image (unknown or unsupported format; photo3d reads {READ_FORMATS})", path) from e
    except PermissionError as e:
        raise InputFileError("unreadable (permission denied)", path) from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        text = str(e)
        if "truncated" in text.lower() or isinstance(e, EOFError):
            raise InputFileError("truncated image file", path) from e
        raise InputFileError(f"unreadable image ({text or type(e).__name__})", path) from e
    except MemoryError as e:  # (the file may be fine: the machine, or a ulimit, has too little for it)
        size = f" {declared[0]}x{declared[1]}" if declared else ""
        raise InputFileError(f"not enough memory to decode this{size} image", path) from e
    except Exception as e:  # any other decoder failure is still one clean line
        raise InputFileError(f"unreadable image ({type(e).__name__}: {e})", path) from e
    if max_side is not None and max(rgb.shape[:2]) > max_side:
        import cv2

        s = max_side / max(rgb.shape[:2])
        nw, nh = max(1, round(rgb.shape[1] * s)), max(1, round(rgb.shape[0] * s))
        rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        alpha = None if alpha is None else cv2.resize(alpha, (nw, nh), interpolation=cv2.INTER_AREA)
    if own:  # given as the photo (a folder walk skips these; named, it is used as said)
        own = f"a {'depth ' if own == 'preview' else ''}{own} photo3d wrote, used as a photo"
    return Photo(rgb=rgb, path=path, focal_35mm=focal, focal_ignored=focal_ignored, original_size=osize,
                 warnings=[w for w in (own, warning, colour_warning, clear_warning) if w], alpha=alpha,
                 orientation=orientation if orientation in range(2, 9) else 1)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once at import (os.umask can only be read by setting it)


def _host_tag() -> str:
    """Whose process ids a temp file's pid is: the host's name, its machine id and the pid namespace
    (a container that shares the host's name, ``unshare -p``: its pid 12 is not the host's pid 12, and a
    run there deleted a live temp of a run outside it as stale, helper-79).  A temp of another tag is
    never deleted (one left by a container gone stays)."""
    import hashlib
    import socket

    parts = [socket.gethostname()]
    for path, read in (("/etc/machine-id", lambda p: Path(p).read_text().strip()), ("/proc/self/ns/pid", os.readlink)):
        try:
            parts.append(read(path))
        except (OSError, ValueError):
            parts.append("")
    return hashlib.sha1("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:8]


HOST_TAG = _host_tag()
# ".NAME.<pid>-<host>-<random>.tmp": the owner of a temp file is in its name, so a later run can tell a
# stale temp (its process is gone) from the live temp of a run still going on the same output folder
_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.(?P<pid>\d{1,7})-(?P<host>[0-9a-f]{8})-[a-z0-9_]+\.tmp")
# what a temp name adds to its output's: two dots, a pid (at most 7 digits: Linux's pid_max is at most
# 2**22), "-", the host tag, "-", mkstemp's 8 random characters and ".tmp"
_TEMP_EXTRA = 2 + 7 + 1 + 8 + 1 + 8 + 4


#: The longest path the system takes, terminating NUL included (Linux's PATH_MAX)
PATH_MAX = 4096


def name_max(folder: str | Path) -> int:
    """The longest file name (bytes) that ``folder``'s filesystem takes: NAME_MAX, 255 on most."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def temp_stem(name: str, longest: int = 255) -> str:
    """The part of a temp file's name that names its output (see :func:`atomic_output`): ``name``
    itself, or, when the temp's name would pass ``longest`` bytes (an output name near NAME_MAX is
    legal, its temp's name was not: "File name too long" after the whole conversion), the start of
    ``name`` and a hash of all of it.  The same for the same name, so a later run still finds a
    stale temp's output."""
    room = longest - _TEMP_EXTRA
    if len(os.fsencode(name)) <= room:
        return name
    import hashlib

    tag = "~" + hashlib.sha1(os.fsencode(name)).hexdigest()[:8]
    head, size = [], 0
    for ch in name:  # whole characters (an undecodable byte is one)
        size += len(os.fsencode(ch))
        if size > room - len(tag):
            break
        head.append(ch)
    return "".join(head) + tag


def path_too_long(path: str | Path) -> str | None:
    """Why the system refuses ``path`` as a name at all (ENAMETOOLONG: a part longer than a file
    name may be, the whole longer than a path may be), else None."""
    import errno

    try:
        os.stat(path)
    except OSError as e:
        if e.errno != errno.ENAMETOOLONG:
            return None
        raw = os.fsencode(path)
        longest, most = max(len(part) for part in raw.split(b"/")), name_max(existing_folder(path))
        if longest > most:
            return f"file name too long ({longest} bytes in one name; the most is {most})"
        return f"path too long ({len(raw)} bytes)"
    except ValueError:  # (a NUL byte: the command line cannot pass one)
        return None
    return None


def effective_path(path: str | Path) -> str | Path:
    """The name the system will open at ``path`` once the missing folders on its way are made:
    ``..`` after a folder that is not there yet undoes it (``new/../photo.jpg`` is ``photo.jpg``).
    Every check of an output (is it an input? is it there?) looked at the path as written, which
    the system refuses while ``new`` is missing, so the output passed as new; its write then made
    ``new`` and replaced the photo (``convert photo.png -o new/../photo.png`` lost the photo).
    Paths without such a ``..`` come back unchanged (the same type; a trailing separator kept)."""
    text = os.fspath(path)
    kept: list[str] = []
    changed = False
    for part in Path(text).parts:
        if part == ".." and kept and kept[-1] != ".." and not os.path.lexists(os.path.join(*kept)):
            kept.pop()  # (a folder this run would make, and leave again at once)
            changed = True
        else:
            kept.append(part)
    if not changed:
        return path
    out = os.path.join(*kept) if kept else "."
    if text.endswith(os.sep) and not out.endswith(os.sep):
        out += os.sep
    return Path(out) if isinstance(path, Path) else out


def existing_folder(path: str | Path) -> Path:
    """The nearest folder above ``path`` that exists (for its filesystem's limits)."""
    d = Path(os.path.abspath(path)).parent
    while d.parent != d:
        try:
            if d.is_dir():
                return d
        except OSError:
            pass
        d = d.parent
    return d


def _process_started_after(pid: int, mtime: float) -> bool | None:
    """Whether process ``pid`` (alive) started after ``mtime`` (then it cannot own a file last
    written at ``mtime``: its pid was reused); None when that cannot be told (no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if fields[0] == "Z":  # a zombie owns nothing any more
            return True
        btime = next(int(ln.split()[1]) for ln in Path("/proc/stat").read_text().splitlines() if ln.startswith("btime "))
        started = btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return started > mtime + 2.0  # (btime has a one-second resolution)
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def stale_temp_target(entry: os.DirEntry | Path) -> str | None:
    """The output name that the temp file ``entry`` (as written by :func:`atomic_output`) was for,
    as :func:`temp_stem` gives it (cut short and hashed when very long), when it is provably stale:
    written on this machine by a process that is gone.  None for any other file, and for the temp
    of a live run."""
    m = _TEMP_NAME.fullmatch(entry.name)
    return m["target"] if m and owner_gone(int(m["pid"]), m["host"], entry) else None


MAX_PID = 1 << 22  # Linux's largest pid_max


def owner_gone(pid: int, host: str, entry: os.DirEntry | Path) -> bool:
    """Whether the process ``pid`` that made ``entry`` is provably gone: on this machine (``host``, the
    tag of :data:`HOST_TAG`) and not running, or its pid taken by a process started after ``entry``."""
    if host != HOST_TAG or pid == os.getpid() or not 0 < pid <= MAX_PID:  # (os.kill overflowed on a planted
        return False  # name of 20 digits: every run writing there stopped on a traceback; helper-127)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive (another user's), or cannot tell
        return False
    try:
        mtime = entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return False
    return _process_started_after(pid, mtime)


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns the ones this call created, deepest first."""
    missing = []
    d = folder
    while not d.is_dir() and d.parent != d:
        missing.append(d)
        d = d.parent
    created = []
    for d in reversed(missing):
        try:
            d.mkdir()
            created.append(d)
        except FileExistsError:  # made meanwhile by another run (or a file: mkstemp says so below)
            pass
    return created[::-1]


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders (deepest first) that a failed write created, as long as they are empty."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:  # not empty (another output, another run's temp file), or gone
            return


def _to_disk(path: Path) -> None:
    """Wait until ``path``'s data is on the disk (whoever wrote it: Pillow, FFmpeg).  Without it a
    rename can reach the disk before the data does, and a power cut leaves the final name on an
    empty file; a write error that a network filesystem reports late (NFS: a full disk) is raised
    here, while the output can still be refused."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def link_out_of(folder: Path, output: Path) -> Path | None:
    """The first folder below OUT (``output``) on the way to the output folder ``folder`` that is a
    symbolic link leading outside OUT (an output written there would land elsewhere), or None."""
    root = Path(os.path.abspath(output))
    try:
        rel = Path(os.path.abspath(folder)).relative_to(root)
    except ValueError:  # (a one-file output: its folder is no OUT)
        return None
    real_root, d = Path(os.path.realpath(root)), Path(output)
    for part in rel.parts:
        d = d / part
        if d.is_symlink() and not Path(os.path.realpath(d)).is_relative_to(real_root):
            return d
    return None


# the OUT folder of the batch whose outputs this context writes (None: one file, or not a batch)
_CONFINED: contextvars.ContextVar[Path | None] = contextvars.ContextVar("photo3d_out", default=None)


@contextlib.contextmanager
def confined_to(output: str | Path | None) -> Iterator[None]:
    """Within: :func:`atomic_output` refuses an output whose folder a link leads out of ``output``
    (the batch's OUT), checked again at the write itself: a link made while the batch runs (a
    shared output folder) would otherwise send the rest of its outputs elsewhere."""
    token = _CONFINED.set(None if output is None else Path(output))
    try:
        yield
    finally:
        _CONFINED.reset(token)


def _check_confined(path: Path) -> None:
    if (root := _CONFINED.get()) is not None and (link := link_out_of(path.parent, root)) is not None:
        from .errors import printable

        raise OutputError(f"cannot write ({printable(link)} is a link to {printable(os.path.realpath(link))}, "
                          f"outside {printable(root)})", path)


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    A crash, Ctrl-C or ``kill -9`` leaves at most a hidden ``.NAME.<pid>-<host>-XXXX.tmp`` file,
    never a partial output under the final name (see :func:`stale_temp_target`); the data is on
    the disk (fsync) before the rename, so a power cut or a kernel crash cannot leave an empty or
    partial file under the final name either, for a re-run to skip as done; a failure or
    Ctrl-C also removes the folders this call created for ``path`` while they are empty.  Any OS
    error while writing (a full disk, a read-only folder) is an :class:`OutputError` naming ``path``.
    """
    path = Path(path)
    _check_confined(path)
    created: list[Path] = []
    try:
        for attempt in range(3):
            created = _make_folders(path.parent)
            try:
                stem = temp_stem(path.name, name_max(path.parent))
                fd, tmp = tempfile.mkstemp(prefix=f".{stem}.{os.getpid()}-{HOST_TAG}-", suffix=".tmp", dir=path.parent)
                break
            except FileNotFoundError:  # the folder was removed by a parallel write that failed: again
                if attempt == 2:
                    raise
        os.close(fd)
    except BaseException as e:
        _remove_empty(created)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write ({e.strerror or e})", path) from e
        raise
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        yield tmp_path
        _check_confined(path)  # (again: a link may have been made while the output was written ...
        _to_disk(tmp_path)
        _check_confined(path)  # ... or while it went to the disk)
        os.replace(tmp_path, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        _remove_empty(created)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write ({e.strerror or e})", path) from e
        raise


OUTPUT_THERE = ("missing", "empty", "done")  # what output_state says of a name that is not in the way


def output_state(path: str | Path) -> str:
    """What stands under an output's name (links followed): "missing", "empty" (an empty file: what
    a crash left, written again), "done" (a file with something in it), or what is in the way and
    never a finished output: "a folder", "a named pipe", "a character device" ... (a pipe counted as
    done was skipped on every re-run; writing one hung, reading it as a kept GLB too)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return "missing"
    if stat.S_ISDIR(st.st_mode):
        return "a folder"
    if not stat.S_ISREG(st.st_mode):
        return _file_kind(st.st_mode)
    return "empty" if st.st_size == 0 else "done"


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def npy_layout(path: str | Path) -> tuple[tuple[int, ...], np.dtype, int, int]:
    """(shape, dtype, the bytes its header and array take, the file's size) of a ``.npy`` file by its
    header alone; numpy's errors (ValueError and others) for a header it cannot read."""
    fmt = np.lib.format
    with open(path, "rb") as f:
        version = fmt.read_magic(f)
        shape, _, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
        need = f.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return shape, dtype, need, os.fstat(f.fileno()).st_size


def kept_file_problem(path: str | Path, side: bool = False, tagged: bool = False) -> tuple[str, str] | None:
    """(what the file should be, why it is not whole) for an existing output that a re-run would
    keep, by its container alone (its first and last bytes, a header: no decoding), or None: a GLB
    (:func:`photo3d.export.glb_file_problem`), a PNG (its signature, its IEND chunk last), a NumPy
    file (its header, and the bytes its array takes), a JPEG (SOI first, EOI last), a video, GIF or
    WebP (:func:`_animation_problem`).  A junk depth
    map was kept as "skipped (output exists)", and failed only a re-run that added its preview
    (helper-94).  A viewer page (``.html``: :func:`photo3d.viewer.page_problem`) or, ``side``, a depth preview
    (``NAME.preview.png``) is also one photo3d wrote (``errors.FOREIGN`` if not): a page cut short,
    or a file of the user's under that name, was kept as done without a word, or (a preview whose
    map was missing) overwritten (helper-98).  (A main output named ``x.preview.png``, a map or a
    still, is no preview: it failed every re-run, helper-103.)  A kept depth map or stereo still
    (``.png``, ``.jpg``) is one photo3d tagged as such too, for a task that tags them (``tagged``,
    :func:`_foreign`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".glb":
        from .export import glb_file_problem

        return ("3D photo", problem) if (problem := glb_file_problem(path)) else None
    if suffix == ".html":
        from .viewer import page_problem

        return page_problem(path)
    if suffix in (".mp4", ".gif", ".webp"):
        return _animation_problem(path, suffix)
    preview = side and path.name.lower().endswith(".preview.png")
    kinds = {".png": "depth preview" if preview else "PNG image", ".npy": "NumPy array", ".jpg": "JPEG image",
             ".jpeg": "JPEG image"}
    if suffix not in kinds:
        return None
    try:
        if suffix == ".npy":
            _, _, need, size = npy_layout(path)
            return None if size == need else (kinds[suffix], f"{size:,} bytes where its header needs {need:,}")
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            f.seek(max(0, size - 12))
            tail = f.read(12)
    except OSError as e:
        return kinds[suffix], f"unreadable ({e.strerror or e})"
    except Exception:  # noqa: BLE001 - numpy's errors for a header it cannot read
        return kinds[suffix], "not a NumPy file"
    if suffix == ".png":
        if head != b"\x89PNG\r\n\x1a\n":
            return kinds[suffix], "not a PNG file"
        if tail != _PNG_END:
            return kinds[suffix], "cut short: no end chunk"
        if preview:
            return _foreign(path, kinds[suffix], ("preview",))
        return _foreign(path, kinds[suffix], OWN_STILLS) if tagged else None
    if head[:2] != b"\xff\xd8":
        return kinds[suffix], "not a JPEG file"
    if tail[-2:] != b"\xff\xd9":
        return kinds[suffix], "cut short: no end marker"
    return _foreign(path, kinds[suffix], OWN_STILLS) if tagged else None


OWN_STILLS = ("depth map", "stereo still")  # what a kept .png / .jpg output is (depth.maps.photo3d_kind)


def _foreign(path: Path, kind: str, own: tuple[str, ...]) -> tuple[str, str] | None:
    """``(kind, FOREIGN)`` unless ``path`` is tagged as one of photo3d's ``own`` kinds: a photo of the
    user's under a depth map's or a stereo still's name (``-o`` the photos' own folder) was kept as
    "skipped (output exists)", and taken for photo3d's own by every later run (helper-112)."""
    from .depth.maps import photo3d_kind
    from .errors import FOREIGN

    return None if photo3d_kind(path) in own else (kind, FOREIGN)


def _animation_problem(path: Path, suffix: str) -> tuple[str, str] | None:
    """:func:`kept_file_problem` of a video (MP4: its top-level boxes, ``ftyp`` first, ``moov`` among
    them, their sizes adding up to the file's), a GIF (its signature, its trailer byte last) or an
    animated WebP (its RIFF header, the size it gives being the file's).  A video cut short, or a
    text file under its name, was kept as done and counted as shared (helper-100)."""
    kind = {".mp4": "MP4 video", ".gif": "GIF", ".webp": "WebP"}[suffix]
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(12)
            if suffix == ".gif":
                f.seek(max(0, size - 2))
                if head[:6] not in (b"GIF87a", b"GIF89a"):
                    return kind, "not a GIF file"
                # (a block terminator, then the trailer: a cut ending in ";" by chance passed, helper-103)
                return None if f.read(2) == b"\x00;" else (kind, "cut short: no trailer")
            if suffix == ".webp":
                if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
                    return kind, "not a WebP file"
                said = int.from_bytes(head[4:8], "little") + 8
                return None if said == size else (kind, f"{size:,} bytes where its header says {said:,}")
            if head[4:8] != b"ftyp":
                return kind, "not an MP4 file"
            at, boxes = 0, set()
            while at < size:
                f.seek(at)
                box = f.read(16)
                if len(box) < 8:
                    break
                n, name = int.from_bytes(box[:4], "big"), box[4:8]
                if n == 1 and len(box) < 16:
                    return kind, "cut short"
                if n == 1:
                    n = int.from_bytes(box[8:16], "big")
                elif n == 0:
                    n = size - at
                if n < 8:
                    return kind, "not an MP4 file (a box of under 8 bytes)"
                boxes.add(name)
                at += n
    except OSError as e:
        return kind, f"unreadable ({e.strerror or e})"
    if at != size:
        return kind, "cut short: its last box ends past the file" if at > size else "cut short"
    return None if b"moov" in boxes else (kind, "cut short: no moov box")


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)

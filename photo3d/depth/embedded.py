"""Depth a photo already carries: embedded depth maps and stereo pairs (a depth source beside the network).

:func:`find_depth` looks inside an input, in this order (``--depth-source auto``):

1. **embedded** depth maps
   - HEIF/HEIC auxiliary depth images (iPhone portrait photos), read with pillow-heif; the
     ``representation_type`` of the HEIF depth representation info decides the conversion:
     0 uniform inverse Z, 1 uniform disparity (``d_min`` … ``d_max``), 2 uniform Z
     (``z_near`` … ``z_far``), 3 non-uniform disparity (used as monotone disparity);
   - GDepth XMP in a JPEG (Google Camera "Lens Blur"/portrait): ``GDepth:Format`` RangeInverse or
     RangeLinear, ``Near``, ``Far``, ``Mime``, base64 ``Data`` (PNG or JPEG), an optional
     ``Confidence`` map; the data usually sits in Extended XMP, split over several APP1 segments;
   - Android Dynamic Depth 1.0: the XMP's ``Device:Container`` directory lists the items appended
     after the primary JPEG (``Item:Mime``, ``Item:Semantic``, ``Item:Length``, ``Item:Padding``;
     newer files name items by ``Item:DataURI``), ``DepthMap:`` gives Format/Near/Far and the
     semantic (or URI) of the depth and confidence items;
2. **stereo** pairs: a HEIF stereo pair (entity group ``ster``: left view, right view), an MPO
   whose images are of MP type "Disparity" (CIPA DC-007, stereo cameras), or a side-by-side JPEG
   (left half, right half; taken when asked for, or when a wide photo's halves match as a
   rectified pair; half-width side by side, each view squeezed, when photo3d's own still says so or,
   asked for, when the halves match: :func:`side_by_side`).  Disparity from the two views with OpenCV's SGBM, a left-right consistency
   check, occlusions filled from the background side and smoothed along the left view's colour
   edges, and a confidence that drops where texture is weak; the left view is the photo.

MPF (CIPA DC-007) defines no depth image type, so depth in vendor-specific MPF images is not read
(MPF stereo pairs are).

Every map is turned into disparity (LARGER = NEARER; proportional to 1/Z where the format says
so, ``metric``).  :func:`depth_for` brings it to the photo: where it has holes or low confidence
it is fused with the network's prediction (aligned to it by a weighted least-squares scale and
shift), and it is upsampled edge-aware with the same colour guided filter as the network's output
(:func:`photo3d.depth.upsample.guided_upsample`, on log-disparity).

Malformed embedded data (bad base64, undecodable or wrongly sized images, NaN parameters, a map
of another aspect ratio) never stops an ``auto`` conversion: the next source is used and one
warning is recorded in ``Found.warnings``.  A source asked for by name (``embedded``, ``stereo``)
that the photo lacks fails that input (one line: the file and the reason).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import re
import struct
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from ..export import DIAGONAL_35MM
from ..errors import InputFileError, summarize
from ..io import Photo, RefusedImage, jpeg_markers, no_pillow_pixel_limit, open_image, photo_source, to_srgb

SOURCES = ("auto", "embedded", "stereo", "model")

NS_GDEPTH = "http://ns.google.com/photos/1.0/depthmap/"
NS_XMPNOTE = "http://ns.adobe.com/xmp/note/"
NS_DD_DEPTHMAP = "http://ns.google.com/photos/dd/1.0/depthmap/"
NS_DD_ITEM = "http://ns.google.com/photos/dd/1.0/item/"
XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXT_HEADER = b"http://ns.adobe.com/xmp/extension/\x00"
MP_TYPE_DISPARITY = 0x020002  # CIPA DC-007 MP type of the images of a stereo pair

ASPECT_TOLERANCE = 0.02  # a depth map's width/height may differ from the photo's by 2 %
MIN_MAP_SIDE = 8
LOW_CONFIDENCE = 0.5  # pixels below this are fused with the network
FUSE_MIN_SHARE = 0.002  # ... when they cover more than this share of the map (else: filled)
STEREO_SIDE = 1024  # longer side the stereo matcher works at
# a side-by-side photo is taken for a stereo pair (auto) only when its disparities spread over this
# many pixels (5th to 95th percentile, views at <= 768 px): a picture beside a copy of itself, or a
# recoloured copy (before / after), spreads over 0 px at any size; real pairs: a Middlebury pair at
# 256 px 3.0, the Apple spatial photo's views 39 (at 768 px) and 16 (at 256 px)
MIN_SPREAD_PX = 1.5
# A depth map, confidence map or second view larger than the photo (in pixels) is refused before it is
# decoded (a few KB can claim gigapixels); small photos may carry maps up to this many pixels.
MIN_MAP_LIMIT = 4_000_000
MAX_ITEM_BYTES = 64 << 20  # an embedded map's bytes (Extended XMP, a Dynamic Depth item): far above any camera's
# XMP's markup, counted before it is parsed (elements and attributes: each "<" and "="; a map's base64
# data has neither but its padding): a camera writes tens, an editor's history thousands; 63 MiB of
# "<a/>" parsed into 4 GB of tree (helper-63)
MAX_XMP_MARKUP = 200_000
HEAD_BYTES = MAX_ITEM_BYTES + (1 << 20)  # a JPEG's metadata (its segments before the image data) is read from this much
# Stereo holes (occlusions, the margin only one view sees) keep their background-side fill with
# this weight in the fusion with the network: on the constructed pair of tests/test_embedded.py,
# with a blurred true disparity as the "network", the mean error in the holes drops from
# 0.76 / 1.09 px (fill weight 0; blur sigma 8 / 20 px) to 0.54 / 0.71 px.  Below LOW_CONFIDENCE, so
# holes are still fused and never used to align the network.
FILLED_CONFIDENCE = 0.45


class EmbeddedDepthError(ValueError):
    """Embedded depth that is there but unusable (the caller falls back, with a warning)."""


@dataclass
class SourceDepth:
    """A depth map found in (or computed from) the input, at its own resolution."""

    disparity: np.ndarray  # float32 h×w, larger = nearer; NaN = no value
    kind: str  # heif-depth, gdepth, dynamic-depth, heif-stereo, mpo-stereo, sbs-stereo, sbs-half-stereo
    confidence: np.ndarray | None = None  # float32 h×w in [0, 1]
    metric: bool = False  # disparity ∝ 1/Z (ratios are real), not just monotone
    meta: dict = field(default_factory=dict)


@dataclass
class Found:
    """What :func:`find_depth` found: the photo to use (the left view for stereo) and its depth."""

    photo: Photo
    source: str = "model"  # embedded | stereo | model
    depth: SourceDepth | None = None  # the embedded map, or the stereo pair's disparity
    kind: str | None = None
    warnings: list[str] = field(default_factory=list)


# ============================================================================ JPEG / XMP


class FileBytes:
    """An open file's bytes, read when sliced: its first 64 KB at once (what tells the format), a
    JPEG's metadata at the start once asked for (at most ``HEAD_BYTES``), other ranges (Dynamic
    Depth items at the end) on demand.  Not a memory map: a
    file cut short meanwhile reads short (malformed data), where a mapped one would crash the
    process (SIGBUS)."""

    def __init__(self, f):
        self.f = f
        self.size = os.fstat(f.fileno()).st_size
        self._head = f.read(min(self.size, 1 << 16))  # (read(n) makes a buffer of n bytes first)

    @property
    def head(self) -> bytes:
        """The file's first ``HEAD_BYTES`` (all of it when smaller), read when first asked for (a JPEG's)."""
        if len(self._head) < min(self.size, HEAD_BYTES):
            self.f.seek(0)  # (read again whole: adding the rest would hold it twice)
            self._head = self.f.read(min(self.size, HEAD_BYTES))
        return self._head

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, k: slice) -> bytes:
        start, stop, step = k.indices(self.size)
        if step != 1:
            raise ValueError("FileBytes takes plain slices")
        if stop <= len(self._head):
            return self._head[start:stop]
        self.f.seek(start)
        return self.f.read(max(0, stop - start))


def jpeg_segments(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(marker, payload) of the JPEG's segments before the image data (SOS), one at a time."""
    if data[:2] != b"\xff\xd8":
        return
    for marker, start, end in jpeg_markers(data):
        yield marker, data[start:end]
        if marker == 0xDA:  # start of scan: no more metadata
            break


def read_xmp(data: bytes) -> tuple[bytes | None, bytes | None]:
    """The JPEG's standard XMP packet and its Extended XMP (reassembled), as raw XML bytes.

    Extended XMP (XMP spec part 3, 1.1.3.1): APP1 segments with the extension header, a 32-byte
    GUID (the MD5 of the full extension, named by ``xmpNote:HasExtendedXMP`` in the standard
    packet), the full length and this chunk's offset (big-endian uint32), then the chunk."""
    main, chunks, kept = None, {}, 0
    for marker, payload in jpeg_segments(data):
        if marker != 0xE1:
            continue
        if payload.startswith(XMP_HEADER) and main is None:
            main = payload[len(XMP_HEADER):]
        elif payload.startswith(XMP_EXT_HEADER):
            kept += len(payload)
            if kept > MAX_ITEM_BYTES:
                raise EmbeddedDepthError(f"Extended XMP of more than {MAX_ITEM_BYTES >> 20} MiB")
            body = payload[len(XMP_EXT_HEADER):]
            if len(body) < 40:
                raise EmbeddedDepthError("truncated Extended XMP segment")
            guid = body[:32].decode("ascii", "replace")
            total, offset = struct.unpack(">II", body[32:40])
            chunks.setdefault(guid, []).append((offset, total, body[40:]))
    if main is None:
        return None, None
    ext = None
    if chunks:
        m = re.search(rb'HasExtendedXMP\s*(?:=\s*["\']|>)\s*([0-9A-Fa-f]{32})', main)
        guid = m.group(1).decode() if m else next(iter(chunks))
        parts = chunks.get(guid) or chunks.get(guid.upper())
        if parts is None:
            raise EmbeddedDepthError(f"Extended XMP {guid} named but not present")
        total = parts[0][1]
        if any(t != total or offset + len(chunk) > total for offset, t, chunk in parts):
            raise EmbeddedDepthError("Extended XMP chunks of inconsistent size")
        got = sum(len(chunk) for _, _, chunk in parts)  # (checked before the buffer is made: the
        if got != total:  # header's length is what the file claims, up to 4 GB)
            raise EmbeddedDepthError(f"Extended XMP incomplete ({got} of {total} bytes)")
        buf = bytearray(total)
        for offset, _, chunk in parts:
            buf[offset:offset + len(chunk)] = chunk
        ext = bytes(buf)
    return main, ext


def _parse_xml(xml: bytes) -> ET.Element:
    # drop the <?xpacket ...?> wrappers (by a scan: a regular expression retried the rest of the
    # packet for each unclosed one, n² time): from each "<?xpacket" to the first ">" after it, when
    # that ends "?>" (as the expression did); each stretch is scanned once
    parts, pos, gt = [], 0, -1
    while (i := xml.find(b"<?xpacket", pos)) >= 0:
        if gt < i:
            gt = xml.find(b">", i)
        if gt < 0:
            break
        if xml[gt - 1:gt] == b"?":
            parts.append(xml[pos:i])
            pos = gt + 1
        else:
            parts.append(xml[pos:i + 1])
            pos = i + 1
    parts.append(xml[pos:])
    xml = b"".join(parts).strip(b"\x00 \t\r\n")
    if (markup := xml.count(b"<") + xml.count(b"=")) > MAX_XMP_MARKUP:
        raise EmbeddedDepthError(f"XMP of {markup:,} elements and attributes, more than any photo's")
    parser = ET.XMLParser(target=_NoDoctype())  # (XMP allows no DTD; entities multiply a few bytes: helper-64)
    try:
        parser.feed(xml)
        return parser.close()
    except (ET.ParseError, ValueError) as e:  # (ValueError: "multi-byte encodings are not supported")
        raise EmbeddedDepthError(f"malformed XMP ({e})") from None


class _NoDoctype(ET.TreeBuilder):
    """A tree builder that stops at a document type declaration, in any encoding, before its
    entities are read (a check for the UTF-8 bytes ``<!DOCTYPE`` let an Extended XMP in UTF-16
    through, whose entities expat expanded up to 100-fold: 1.6 GB for 16 MB; helper-77)."""

    def doctype(self, name, pubid, system):  # noqa: ARG002
        raise EmbeddedDepthError("XMP with a document type or entity declarations, which XMP does not allow")


def xmp_properties(root: ET.Element, ns: str) -> dict[str, str]:
    """The properties of namespace ``ns`` anywhere in the XMP tree, as attributes or as simple
    elements (``<ns:Name>value</ns:Name>``); the first occurrence wins."""
    out: dict[str, str] = {}
    pre = "{" + ns + "}"
    for el in root.iter():
        for k, v in el.attrib.items():
            if k.startswith(pre):
                out.setdefault(k[len(pre):], v)
        if el.tag.startswith(pre) and len(el) == 0 and el.text and el.text.strip():
            out.setdefault(el.tag[len(pre):], el.text.strip())
    return out


def _container_items(root: ET.Element) -> list[dict[str, str]]:
    """The Dynamic Depth container directory: one dict of ``Item:`` properties per entry, in order."""
    pre = "{" + NS_DD_ITEM + "}"
    li_tag = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}li"
    items = []
    for li in root.iter(li_tag):
        props: dict[str, str] = {}
        stack = [li]
        while stack:  # the entry's own elements, not those of entries nested in it (each is its own
            el = stack.pop()  # entry: walking them again for every enclosing one took n² time)
            for k, v in el.attrib.items():
                if k.startswith(pre):
                    props[k[len(pre):]] = v
            if el.tag.startswith(pre) and len(el) == 0 and el.text:
                props[el.tag[len(pre):]] = el.text.strip()
            stack.extend(c for c in reversed(el) if c.tag != li_tag)
        if props:
            items.append(props)
    return items


# ============================================================================ decoding helpers


def _float(props: dict[str, str], key: str, what: str) -> float:
    if key not in props:
        raise EmbeddedDepthError(f"{what}: no {key}")
    try:
        v = float(props[key])
    except ValueError:
        raise EmbeddedDepthError(f"{what}: {key} is not a number ({props[key][:20]!r})") from None
    if not math.isfinite(v):
        raise EmbeddedDepthError(f"{what}: {key} is {v}")
    return v


def map_limit(photo: Photo) -> int:
    """The most pixels an embedded map or a second view of ``photo`` may have (checked before decoding)."""
    w, h = photo.original_size or (photo.width, photo.height)
    return max(w * h, MIN_MAP_LIMIT)


def check_map_size(size: tuple[int, int], max_px: int, what: str) -> None:
    if size[0] * size[1] > max_px:
        raise EmbeddedDepthError(f"{what}: an image of {size[0]}×{size[1]}, larger than the photo")


def _check_png_crcs(blob: bytes, what: str) -> None:
    """A PNG's chunks must match their CRCs: Pillow does not check those of the image data, so a
    flipped byte there decoded to other depth without a word (fuzzing, helper-50)."""
    if not blob.startswith(b"\x89PNG\r\n\x1a\n"):
        return
    pos = 8
    while pos + 12 <= len(blob):
        (n,) = struct.unpack(">I", blob[pos:pos + 4])
        end = pos + 8 + n
        if end + 4 > len(blob):
            return  # cut short: the decoder says so
        if zlib.crc32(blob[pos + 4:end]) != struct.unpack(">I", blob[end:end + 4])[0]:
            raise EmbeddedDepthError(f"{what}: corrupted PNG (the CRC of its {blob[pos + 4:pos + 8].decode('latin-1')!r} chunk does not match)")
        if blob[pos + 4:pos + 8] == b"IEND":
            return
        pos = end + 4


def decode_map_image(blob: bytes, what: str, max_px: int) -> np.ndarray:
    """A PNG/JPEG depth or confidence image as float32 in [0, 1] (8- or 16-bit grey), of at most
    ``max_px`` pixels (:func:`map_limit`)."""
    from PIL import UnidentifiedImageError

    _check_png_crcs(blob, what)
    try:
        with no_pillow_pixel_limit(), open_image(io.BytesIO(blob), ("PNG", "JPEG")) as im:  # (the size is checked here)
            check_map_size(im.size, max_px, what)
            im.load()
            if im.mode in ("P", "PA"):  # a palette's grey levels, not its indices
                im = im.convert("L")
            mode = im.mode
            a = np.asarray(im)
    except EmbeddedDepthError:
        raise
    except RefusedImage as e:
        raise EmbeddedDepthError(f"{what}: {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise EmbeddedDepthError(f"{what}: its image cannot be decoded (cut short or damaged: {summarize(e, 80)})") from None
    if a.ndim == 3:
        a = a[..., 0]
    if a.ndim != 2 or min(a.shape) < MIN_MAP_SIDE:
        raise EmbeddedDepthError(f"{what}: image of size {a.shape[::-1]}")
    if a.dtype == np.uint16 or mode.startswith("I;16") or (mode == "I" and a.max() > 255):
        top = 65535.0
    elif mode == "F":
        top = 1.0
    else:
        top = 255.0
    out = a.astype(np.float32) / np.float32(top)
    if not np.all(np.isfinite(out)):
        raise EmbeddedDepthError(f"{what}: NaN or infinite values")
    lo, hi = float(out.min()), float(out.max())
    if lo < 0.0 or hi > 1.0 + 1e-6:  # a float or 32-bit map: normalized values are 0..1
        raise EmbeddedDepthError(f"{what}: values {lo:g}..{hi:g} outside the normalized range 0..1")
    return out


def range_to_disparity(v: np.ndarray, fmt: str, near: float, far: float, what: str) -> np.ndarray:
    """Normalized GDepth / Dynamic Depth values (0 = Near) -> disparity 1/d.

    RangeLinear: d = Near + v (Far − Near); RangeInverse: d = Far·Near / (Far − v (Far − Near))."""
    if not (near > 0 and far > near):
        raise EmbeddedDepthError(f"{what}: Near {near:g} / Far {far:g} are not 0 < Near < Far")
    with np.errstate(all="ignore"):  # (extreme Near / Far: checked below, not a numpy warning)
        v = v.astype(np.float64)
        if fmt == "RangeLinear":
            d = near + v * (far - near)
        elif fmt == "RangeInverse":
            d = far * near / (far - v * (far - near))
        else:
            raise EmbeddedDepthError(f"{what}: unknown Format {fmt!r}")
        disp = (1.0 / d).astype(np.float32)
    if not (np.all(np.isfinite(disp)) and float(disp.min()) > 0.0):
        raise EmbeddedDepthError(f"{what}: Near {near:g} / Far {far:g} give depths that are not finite and positive")
    return disp


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise EmbeddedDepthError(f"{what}: bad base64 data") from None


# ============================================================================ readers


def read_gdepth(root: ET.Element, max_px: int) -> SourceDepth | None:
    p = xmp_properties(root, NS_GDEPTH)
    if "Data" not in p and "Format" not in p:
        return None
    what = "GDepth"
    if "Data" not in p:
        raise EmbeddedDepthError(f"{what}: no Data")
    v = decode_map_image(_b64(p["Data"], what), what, max_px)
    disp = range_to_disparity(v, p.get("Format", ""), _float(p, "Near", what), _float(p, "Far", what), what)
    conf = None
    if p.get("Confidence"):
        conf = decode_map_image(_b64(p["Confidence"], what + " confidence"), what + " confidence", max_px)
    meta = {k: p[k] for k in ("Format", "Near", "Far", "Units", "MeasureType", "Mime") if k in p}
    return SourceDepth(disp, "gdepth", _same_size(conf, disp.shape, what), True, meta)


def read_dynamic_depth(root: ET.Element, data: FileBytes, max_px: int) -> SourceDepth | None:
    """Android Dynamic Depth 1.0: items appended after the primary image, in directory order
    (only the items used are read)."""
    p = xmp_properties(root, NS_DD_DEPTHMAP)
    if not p:
        return None
    what = "Dynamic Depth"
    items = _container_items(root)
    if not items:
        raise EmbeddedDepthError(f"{what}: no container directory")
    # byte ranges: the primary is the file's start; the others end at the end of the file
    sizes = []
    for it in items[1:]:
        try:
            length, pad = int(it.get("Length", "")), int(it.get("Padding", "0") or 0)
        except ValueError:
            raise EmbeddedDepthError(f"{what}: item without a valid Length") from None
        if length <= 0 or pad < 0:
            raise EmbeddedDepthError(f"{what}: item Length {length}")
        sizes.append((length, pad))
    pos = len(data) - sum(a + b for a, b in sizes)
    if pos < 2:
        raise EmbeddedDepthError(f"{what}: items ({len(data) - pos} bytes) larger than the file")
    spans: dict[str, tuple[int, int]] = {}  # name -> (start, length) of its bytes
    for it, (length, pad) in zip(items[1:], sizes):
        for key in ("Semantic", "DataURI"):
            if it.get(key):
                spans.setdefault(it[key], (pos, length))
        pos += length + pad

    def item(*keys: str | None) -> bytes | None:
        for key in keys:
            if key and key in spans:
                start, length = spans[key]
                if length > MAX_ITEM_BYTES:
                    raise EmbeddedDepthError(f"{what}: an item of {length} bytes")
                return data[start:start + length]
        return None

    blob = item(p.get("ItemSemantic"), p.get("DepthURI"), "Depth")
    if blob is None:
        raise EmbeddedDepthError(f"{what}: no depth item in the container")
    v = decode_map_image(blob, what, max_px)
    disp = range_to_disparity(v, p.get("Format", ""), _float(p, "Near", what), _float(p, "Far", what), what)
    cblob = item(p.get("ConfidenceItemSemantic"), p.get("ConfidenceURI"))
    conf = decode_map_image(cblob, what + " confidence", max_px) if cblob else None
    meta = {k: p[k] for k in ("Format", "Near", "Far", "Units", "MeasureType") if k in p}
    return SourceDepth(disp, "dynamic-depth", _same_size(conf, disp.shape, what), True, meta)


def _same_size(conf: np.ndarray | None, shape: tuple[int, ...], what: str) -> np.ndarray | None:
    if conf is None:
        return None
    if conf.shape != shape:
        raise EmbeddedDepthError(f"{what}: confidence map {conf.shape[::-1]} differs from the depth map {shape[::-1]}")
    return conf


def heif_depth_to_disparity(v: np.ndarray, meta: dict) -> tuple[np.ndarray, bool]:
    """HEIF depth representation info (ISO/IEC 23008-12 / the depth SEI of ITU-T H.265 I.6):
    normalized samples ``v`` in [0, 1] -> (disparity, metric)."""
    what = "HEIF depth"
    rtype = meta.get("representation_type", 1)
    try:
        rtype = int(rtype)
    except (TypeError, ValueError):
        raise EmbeddedDepthError(f"{what}: representation_type {rtype!r}") from None

    def num(key):
        if meta.get(key) is None:
            return None
        x = float(meta[key])
        if not math.isfinite(x):
            raise EmbeddedDepthError(f"{what}: {key} is {x}")
        return x

    if rtype == 0:  # uniform inverse Z: 1/Z from 1/z_far (v = 0) to 1/z_near (v = 1)
        zn, zf = num("z_near"), num("z_far")
        if zn and zf and zf > zn > 0:
            return (1.0 / zf + v * (1.0 / zn - 1.0 / zf)).astype(np.float32), True
        return v.astype(np.float32), False
    if rtype in (1, 3):  # uniform (3: non-uniform, used as monotone) disparity d_min … d_max
        dmin, dmax = num("d_min"), num("d_max")
        if dmin is not None and dmax is not None:
            if not dmax > dmin:
                raise EmbeddedDepthError(f"{what}: d_min {dmin:g} >= d_max {dmax:g}")
            return (dmin + v * (dmax - dmin)).astype(np.float32), rtype == 1 and dmin >= 0
        return v.astype(np.float32), False
    if rtype == 2:  # uniform Z: z_near (v = 0) … z_far (v = 1)
        zn, zf = num("z_near"), num("z_far")
        if zn is None or zf is None or not zf > zn > 0:
            zn, zf = 1.0, 10.0  # an assumed range: only the order is known
        return (1.0 / (zn + v * (zf - zn))).astype(np.float32), bool(meta.get("z_near"))
    raise EmbeddedDepthError(f"{what}: unknown representation_type {rtype}")


def read_heif(path: Path, max_px: int) -> tuple[SourceDepth | EmbeddedDepthError | None, tuple | EmbeddedDepthError | None]:
    """(auxiliary depth of the primary image, (left, right[, focal_35mm]) views of a stereo pair),
    either may be None or the reason it is unusable; images of more than ``max_px`` pixels are
    not decoded."""
    import pillow_heif  # type: ignore

    try:
        heif = pillow_heif.open_heif(photo_source(str(path)), convert_hdr_to_8bit=True)
    except Exception:
        return None, None
    try:
        depth = _heif_depth(heif, max_px)
    except EmbeddedDepthError as e:
        depth = e
    try:
        return depth, _heif_pair(heif, max_px)
    except EmbeddedDepthError as e:  # (a view too large: the depth may still serve)
        return depth, e


def _heif_depth(heif, max_px: int) -> SourceDepth | None:
    primary = heif.primary_index if hasattr(heif, "primary_index") else 0
    im = heif[primary]
    depth_images = im.info.get("depth_images") or []
    if not depth_images:
        return None
    what = "HEIF depth"
    d = depth_images[0]
    meta = dict(d.info.get("metadata") or {})
    check_map_size(d.size, max_px, what)
    try:
        a = np.asarray(d.to_pillow())
    except Exception as e:
        raise EmbeddedDepthError(f"{what}: its image cannot be decoded (cut short or damaged: {summarize(e, 80)})") from None
    if a.ndim == 3:
        a = a[..., 0]
    if a.ndim != 2 or min(a.shape) < MIN_MAP_SIDE:
        raise EmbeddedDepthError(f"{what}: image of size {a.shape[::-1]}")
    bits = int(getattr(d, "bit_depth", 0) or (16 if a.dtype == np.uint16 else 8))
    top = float((1 << bits) - 1) if a.dtype == np.uint16 and bits < 16 and a.max() <= (1 << bits) - 1 else (
        65535.0 if a.dtype == np.uint16 else 255.0)
    disp, metric = heif_depth_to_disparity(a.astype(np.float32) / np.float32(top), meta)
    return SourceDepth(disp, "heif-depth", None, metric, {k: v for k, v in meta.items() if v is not None})


def _heif_pair(heif, max_px: int) -> tuple | None:
    for group in heif.info.get("entity_groups") or []:
        if group.get("type") == "ster" and len(group.get("images") or []) >= 2:
            i, j = group["images"][:2]
            for k in (i, j):
                check_map_size(heif[k].size, max_px, "HEIF stereo pair")
            pair = []
            for n, k in enumerate((i, j)):
                try:
                    pair.append(np.asarray(to_srgb(heif[k].to_pillow())[0].convert("RGB")))  # (in sRGB, as the photo)
                except Exception as e:  # (a damaged view: said, as an MPO's is; it was taken for no pair, helper-93)
                    raise EmbeddedDepthError(f"HEIF stereo pair: view {n + 1} does not decode ({type(e).__name__})") from None
            pair = tuple(pair)
            # the left camera's focal length (HEIF camera intrinsics), as a 35 mm equivalent
            fx = ((heif[i].info.get("heif") or {}).get("camera_intrinsic_matrix") or {}).get("focal_length_x")
            if fx and math.isfinite(float(fx)) and float(fx) > 0:
                h, w = pair[0].shape[:2]
                pair = (*pair, float(fx) * DIAGONAL_35MM / math.hypot(w, h))
            return pair
    return None


def read_jpeg_depth(data: FileBytes, max_px: int) -> SourceDepth | None:
    main, ext = read_xmp(data.head)
    if main is None:
        return None
    roots = [_parse_xml(main)]
    if ext is not None:
        roots.append(_parse_xml(ext))
    merged = ET.Element("merged")
    merged.extend(roots)
    return read_gdepth(merged, max_px) or read_dynamic_depth(merged, data, max_px)


def read_mpo_pair(path: Path, max_px: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The two views of an MPO stereo pair (MP type Disparity), or None; a view of more than
    ``max_px`` pixels is refused before it is decoded."""


    try:
        with open_image(path, ("JPEG",)) as im:
            if getattr(im, "format", None) != "MPO" or getattr(im, "n_frames", 1) < 2:
                return None
            entries = (getattr(im, "mpinfo", None) or {}).get(0xB002) or []
            types = [e.get("Attribute", {}).get("MPType") for e in entries[:2]]
            # Pillow names the types ("Multi-Frame Image: (Disparity)"); the MPF order of a
            # disparity set is left to right
            if not any(t == MP_TYPE_DISPARITY or "Disparity" in str(t) for t in types):
                return None
            views = []
            for k in (0, 1):  # (a stereo pair by its types: what fails now is said, not taken for no pair)
                try:
                    with no_pillow_pixel_limit():  # (its size is checked here, before it is decoded)
                        im.seek(k)
                    check_map_size(im.size, max_px, "MPO stereo pair")
                    views.append(np.asarray(to_srgb(im.convert("RGB"), im.info.get("icc_profile"))[0]))  # (in sRGB, as the photo)
                except EmbeddedDepthError:
                    raise
                except Exception as e:
                    raise EmbeddedDepthError(f"MPO stereo pair: view {k + 1} does not decode ({type(e).__name__})") from None
            return views[0], views[1]
    except EmbeddedDepthError:
        raise
    except Exception:
        return None


# ============================================================================ stereo


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


ORB_MIN_SIDE = 63  # ORB finds features at least its edge threshold (31 px) inside the image


def _row_matches(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Sparse ORB matches of a (roughly) rectified pair that agree on the rows: (their points in
    the left view, in the right view, the median vertical offset), or None."""
    if min(*left.shape[:2], *right.shape[:2]) < ORB_MIN_SIDE:  # no room for a feature (ORB's scale pyramid
        return None  # of a view 1 px tall fails an OpenCV assertion instead)
    orb = cv2.ORB_create(3000)
    kl, dl = orb.detectAndCompute(_gray(left), None)
    kr, dr = orb.detectAndCompute(_gray(right), None)
    if dl is None or dr is None or len(kl) < 20 or len(kr) < 20:
        return None
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(dl, dr)
    if len(matches) < 20:
        return None
    pl = np.array([kl[m.queryIdx].pt for m in matches])
    pr = np.array([kr[m.trainIdx].pt for m in matches])
    dy = pl[:, 1] - pr[:, 1]
    dy0 = float(np.median(dy))
    ok = np.abs(dy - dy0) <= 2.0
    if ok.sum() < 20 or ok.mean() < 0.3:
        return None
    return pl[ok], pr[ok], dy0


def match_range(left: np.ndarray, right: np.ndarray) -> tuple[float, float, float, int, float] | None:
    """Sparse ORB matches of a (roughly) rectified pair: (median vertical offset, 1st and 99th
    percentile of the horizontal disparity, number of row-consistent matches, the spread between
    its 5th and 95th percentiles), or None."""
    m = _row_matches(left, right)
    if m is None:
        return None
    pl, pr, dy0 = m
    lo, low, high, hi = (float(x) for x in np.percentile(pl[:, 0] - pr[:, 0], (1, 5, 95, 99)))
    return dy0, lo, hi, len(pl), high - low


def _shrunk(view: np.ndarray, s: float) -> np.ndarray:
    """``view`` scaled by ``s`` (< 1), at least one pixel on each side: a view a few pixels tall
    and thousands wide (a 1x20000 strip's halves) would shrink to 0 rows, which OpenCV refuses
    with an assertion instead of a reason."""
    h, w = view.shape[:2]
    return cv2.resize(view, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def is_stereo_pair(left: np.ndarray, right: np.ndarray) -> bool:
    """Do two images look like a rectified stereo pair: rows agree, disparities in a narrow band
    but spread by the scene's depth?  A picture beside a copy of itself (a before/after image, the
    copy recoloured) matches too, but its disparities are all equal: that is no pair (``auto``
    would show half the image, torn).  (A scaled copy's disparities follow the position as a
    slanted plane's would: not told apart from a pair.)"""
    s = min(1.0, 768 / max(left.shape[:2]))
    l = _shrunk(left, s) if s < 1 else left
    r = _shrunk(right, s) if s < 1 else right
    m = match_range(l, r)
    if m is None:
        return False
    dy0, lo, hi, n, spread = m
    return bool(n >= 40 and abs(dy0) < 0.02 * l.shape[0] and hi - lo < 0.25 * l.shape[1] and spread >= MIN_SPREAD_PX)


def _fill_rows_background(d: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill invalid pixels with the smaller (farther) of the nearest valid values to their left
    and right on the same row: occluded pixels belong to the background."""
    h, w = d.shape
    idx = np.where(valid, np.arange(w)[None, :], -1)
    left = np.maximum.accumulate(idx, axis=1)
    idx_r = np.where(valid, np.arange(w)[None, :], w)
    right = np.minimum.accumulate(idx_r[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(h)[:, None]
    big = np.float32(np.inf)
    vl = np.where(left >= 0, d[rows, np.clip(left, 0, w - 1)], big)
    vr = np.where(right < w, d[rows, np.clip(right, 0, w - 1)], big)
    fill = np.minimum(vl, vr)
    out = np.where(valid, d, fill)
    out[~np.isfinite(out)] = np.nan
    return out.astype(np.float32)


def stereo_disparity(left: np.ndarray, right: np.ndarray, max_side: int = STEREO_SIDE) -> SourceDepth:
    """Disparity (in pixels of the views as given, larger = nearer; matched at ``max_side`` at most)
    of the left view of a rectified pair, with holes filled and a confidence map; raises
    EmbeddedDepthError when the two views do not match as a stereo pair.  (It was in pixels of the
    1024-px working size: the depth PNG's disparity_min / max of a 2560-px spatial photo were 2.5x
    too small for Z = f B / d at the photo's resolution, helper-67.)"""
    if left.shape != right.shape:
        right = cv2.resize(right, (left.shape[1], left.shape[0]), interpolation=cv2.INTER_AREA)
    s = min(1.0, max_side / max(left.shape[:2]))
    if s < 1:
        left, right = _shrunk(left, s), _shrunk(right, s)
    h, w = left.shape[:2]
    m = match_range(left, right)
    if m is None:
        raise EmbeddedDepthError("stereo: the two views do not match")
    dy0, dlo, dhi, n, spread = m
    if spread < MIN_SPREAD_PX:  # (an MPO of one picture twice, re-encoded or not: matching noise is no depth)
        raise EmbeddedDepthError(f"stereo: the two views show no disparity (spread {spread:.2f} px; the same picture twice?)")
    if abs(dy0) > 0.5:  # vertical offset between the views: shift the right one onto the left's rows
        right = cv2.warpAffine(right, np.float32([[1, 0, 0], [0, 1, dy0]]), (w, h), borderMode=cv2.BORDER_REPLICATE)
    margin = max(4.0, 0.15 * (dhi - dlo))
    min_d = int(math.floor(dlo - margin))
    num = int(math.ceil((dhi + margin - min_d) / 16.0)) * 16
    num = max(16, min(num, 16 * (w // 32)))
    block = 5
    sgbm = cv2.StereoSGBM_create(
        minDisparity=min_d, numDisparities=num, blockSize=block, P1=8 * 3 * block * block, P2=32 * 3 * block * block,
        disp12MaxDiff=-1, uniquenessRatio=10, speckleWindowSize=100, speckleRange=2, preFilterCap=63,
        mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY,
    )
    gl, gr = _gray(left), _gray(right)
    dl = sgbm.compute(gl, gr).astype(np.float32) / 16.0
    # right view's disparity: the same matcher on the mirrored pair (right becomes "left")
    dr = sgbm.compute(np.ascontiguousarray(gr[:, ::-1]), np.ascontiguousarray(gl[:, ::-1]))[:, ::-1].astype(np.float32) / 16.0
    inval = min_d - 0.5
    valid = dl > inval
    xs = np.arange(w, dtype=np.float32)[None, :] - np.where(valid, dl, 0)
    xi = np.clip(np.round(xs).astype(np.int32), 0, w - 1)
    d_back = dr[np.arange(h)[:, None], xi]
    lr = valid & (d_back > inval) & (np.abs(dl - d_back) <= 1.0) & (xs >= 0)
    if lr.mean() < 0.2:
        raise EmbeddedDepthError(f"stereo: only {100 * lr.mean():.0f} % of the pixels match consistently")
    filled = _fill_rows_background(dl, lr)
    filled = np.where(np.isfinite(filled), filled, np.nanmedian(dl[lr])).astype(np.float32)
    # edge-aware smoothing of the filled map along the left view's colour edges (the holes and
    # SGBM's streaks); consistent pixels keep their own value
    guide = left.astype(np.float32) / 255.0
    from .upsample import guided_coefficients

    a, b = guided_coefficients(guide, filled, 4, 1e-3)
    smooth = np.einsum("hwc,hwc->hw", a, guide) + b
    smooth = cv2.medianBlur(smooth.astype(np.float32), 5)
    disp = np.where(lr, dl, smooth).astype(np.float32)
    # confidence: consistent matches, scaled down where the left view has little texture
    std = np.sqrt(np.maximum(cv2.blur(gl.astype(np.float32) ** 2, (7, 7)) - cv2.blur(gl.astype(np.float32), (7, 7)) ** 2, 0))
    texture = np.clip(std / 4.0, 0.0, 1.0)
    conf = (lr.astype(np.float32) * (0.6 + 0.4 * texture)).astype(np.float32)
    conf = cv2.erode(conf, np.ones((3, 3), np.uint8))  # the pixels right at a hole's edge are suspect too
    conf[conf == 0] = FILLED_CONFIDENCE
    meta = {"working_size": [w, h], "disparity_range_px": [round(dlo / s, 2), round(dhi / s, 2)], "matches": n,
            "vertical_offset_px": round(dy0 / s, 2), "consistent": round(float(lr.mean()), 4),
            "order_votes": _order_votes(left, dl, lr)}
    return SourceDepth(disp / s if s < 1 else disp, "stereo", conf, metric=dlo > 0, meta=meta)


def _order_votes(left: np.ndarray, disp: np.ndarray, consistent: np.ndarray) -> list[int]:
    """[for, against] the views being in the left-right order, from the strips of the left view that
    the right one cannot see (its occlusions): one lies just left of a step up in disparity and
    belongs to the farther surface, so it looks like its left neighbour; were the views swapped,
    it would lie right of the step and look like its right neighbour.  One vote per strip 2-40 px
    wide at a step over 1.5 px whose colour is clearly nearer one side's (``benchmarks/stereo_order.py``:
    of the 13 Middlebury 2006 pairs that match, none in order is read as swapped, 9 swapped are)."""
    lab = cv2.cvtColor(left, cv2.COLOR_RGB2LAB).astype(np.float32)
    bad = ~consistent
    edge = np.diff(bad.astype(np.int8), axis=1)
    ys, starts = np.nonzero(edge == 1)  # the strip starts at starts + 1
    yb, ends = np.nonzero(edge == -1)  # the strip's last pixel is ends
    votes = [0, 0]
    order = np.lexsort((ends, yb))
    yb, ends = yb[order], ends[order]
    pos = np.searchsorted(yb * (disp.shape[1] + 1) + ends, ys * (disp.shape[1] + 1) + starts)
    for y, a0, k in zip(ys, starts, pos):
        if k >= len(ends) or yb[k] != y:
            continue
        a, b = a0 + 1, ends[k] + 1  # the strip a..b-1, its neighbours a-1 (left) and b (right)
        if not 2 <= b - a <= 40 or b >= disp.shape[1] or disp[y, b] - disp[y, a - 1] <= 1.5:
            continue
        run = lab[y, a:b]
        to_left = np.abs(run - lab[y, max(0, a - 3):a].mean(0)).sum(1).mean()
        to_right = np.abs(run - lab[y, b:b + 3].mean(0)).sum(1).mean()
        if abs(to_left - to_right) > 4:
            votes[0 if to_left < to_right else 1] += 1
    return votes


def _views_swapped(depth: SourceDepth) -> bool:
    """Whether a side-by-side pair is laid out for cross-eyed viewing (the right view first): every
    match lies to the left (which a pair in order shows too when its stereo window puts all of it
    behind the screen), and its occluded strips say so clearly (:func:`_order_votes`)."""
    good, bad = depth.meta.get("order_votes", (0, 0))
    return depth.meta["disparity_range_px"][1] < 0 and good + bad >= 30 and bad - good >= 0.15 * (good + bad)


def _crossed(depth: SourceDepth) -> SourceDepth:
    """The depth of a side-by-side pair laid out for cross-eyed viewing (the right view on the left,
    a common layout): every match lies to the left, nearer ones further, so the left view's
    disparity is negated (it made near things far: the 3D photo inside out, helper-82)."""
    lo, hi = depth.meta["disparity_range_px"]
    good, bad = depth.meta["order_votes"]
    meta = {**depth.meta, "disparity_range_px": [-hi, -lo], "order_votes": [bad, good], "views": "crossed (right view first)"}
    return replace(depth, disparity=-depth.disparity, metric=hi < 0, meta=meta)


# ============================================================================ finding


def stereo_layout(path: Path) -> str | None:
    """The layout photo3d wrote into its own stereo still ("sbs" / "sbs-half"), or None.  From the
    header: photo3d writes the tag before the pixels (a PNG's text chunks after them would take a
    second decode of the whole image to reach)."""
    from ..video import stereo_layout_of

    try:
        with open_image(path, header_only=True) as im:
            return stereo_layout_of(im.format, im.info)
    except Exception:
        return None


def side_by_side(photo: Photo, source: str, layout: str | None = None) -> tuple[tuple[np.ndarray, np.ndarray] | None, str | None]:
    """((left, right), kind) of a side-by-side image ("sbs-stereo", "sbs-half-stereo"), or (None, None).  Full width (a photo of >= 1.8:1,
    two views of >= 0.9:1): taken when ``source`` is "stereo", or when the halves match as a
    rectified pair (:func:`is_stereo_pair`).  Half width (each view squeezed to half the width, what
    3D TVs take; photo3d's own ``--stereo sbs-half``): taken when ``layout`` says so (photo3d's tag),
    or, asked for by ``source`` "stereo", when the halves of a narrower photo match as a pair;
    the views are stretched back to the full width.  ``auto`` never guesses half width (a normal
    photo's halves are two pictures)."""
    w, h = photo.width, photo.height
    half = w // 2
    if half < MIN_MAP_SIDE:
        return None, None
    l, r = photo.rgb[:, :half], photo.rgb[:, half:2 * half]
    tagged, layout = layout is not None, layout or ("sbs" if w >= 1.8 * h else None)
    if layout == "sbs":
        if tagged or source == "stereo" or is_stereo_pair(l, r):
            return (np.ascontiguousarray(l), np.ascontiguousarray(r)), "sbs-stereo"
        return None, None
    if layout != "sbs-half" and not (source == "stereo" and is_stereo_pair(l, r)):
        return None, None
    return tuple(cv2.resize(v, (2 * half, h), interpolation=cv2.INTER_CUBIC) for v in (l, r)), "sbs-half-stereo"


def find_depth(path: str | Path, photo: Photo, source: str = "auto") -> Found:
    """Look for depth in ``path`` (already decoded as ``photo``) per ``source``
    (auto | embedded | stereo | model).  ``auto`` never raises for malformed data: it is skipped
    with a warning in ``Found.warnings`` and the next source used (a stereo pair's disparity is
    computed here, so that views that do not match fall back too).  A source asked for by name
    that the photo lacks (or holds malformed) raises :class:`InputFileError` (the input fails).
    Only the file's metadata and the items used are read (a photo may end in gigabytes of anything)."""
    if source not in SOURCES:
        from ..errors import UsageError

        raise UsageError(f"--depth-source must be one of {', '.join(SOURCES)}, not {source!r}")
    found = Found(photo)
    if source == "model":
        return found
    path = Path(path)
    try:
        f = open(path, "rb")
    except OSError:
        return found
    with f:
        return _find_depth(path, photo, source, found, FileBytes(f))


def _find_depth(path: Path, photo: Photo, source: str, found: Found, data: FileBytes, probe: bool = False) -> Found:
    """``probe``: only which source ``auto`` takes (a stereo pair's views are found, not matched)."""
    max_px = map_limit(photo)
    is_heif = data[4:8] == b"ftyp"
    is_jpeg = data[:2] == b"\xff\xd8"
    pair = None
    if source in ("auto", "embedded"):
        try:
            if is_heif:
                depth, pair = read_heif(path, max_px)
                if isinstance(depth, EmbeddedDepthError):
                    raise depth
            elif is_jpeg:
                depth = read_jpeg_depth(data, max_px)
                if depth is not None:  # (turned with the photo; a map some writer stored upright already
                    turned = oriented(depth, _orientation(path))  # fits only unturned: used so, helper-82)
                    depth = turned if _fits(turned.disparity, photo) or not _fits(depth.disparity, photo) else depth
            else:
                depth = None
            if depth is not None:
                check_aspect(depth.disparity, photo)
                check_confident(depth)
                found.source, found.depth, found.kind = "embedded", depth, depth.kind
                return found
        except EmbeddedDepthError as e:
            found.warnings.append(f"malformed embedded depth ({e})")
        except Exception as e:  # a reader's bug or a decoder's surprise: still never fatal
            found.warnings.append(f"unreadable embedded depth ({type(e).__name__}: {e})")
        if source == "embedded":  # asked for: the photo lacks it, the input fails
            raise InputFileError(f"--depth-source embedded: {found.warnings[-1] if found.warnings else 'no embedded depth map'}"
                                 f" ({_what_auto_uses(path, photo, data)})", path)
    # stereo
    try:
        kind = None
        if pair is None and is_heif and source == "stereo":  # (auto and embedded read it above)
            _, pair = read_heif(path, max_px)
        if isinstance(pair, EmbeddedDepthError):
            raise pair
        if pair is not None:
            kind = "heif-stereo"
        elif is_jpeg:
            pair = read_mpo_pair(path, max_px)
            kind = "mpo-stereo" if pair is not None else None
        tagged = None
        if pair is None:
            tagged = stereo_layout(path)
            pair, kind = side_by_side(photo, source, tagged)
        if pair is not None and probe:
            found.source, found.kind = "stereo", kind
            return found
        if pair is not None:
            left, right = pair[:2]
            orientation = _orientation(path) if kind == "mpo-stereo" else None
            if orientation in _TRANSPOSE:
                # the views as stored (the baseline along their rows), the disparity then turned
                # like the photo, which load_image turned by the EXIF orientation
                depth = oriented(stereo_disparity(left, right), orientation)
                check_aspect(depth.disparity, photo)
            else:
                if left.shape[:2] != (photo.height, photo.width) or kind in ("heif-stereo", "sbs-half-stereo"):
                    photo = replace(photo, rgb=left, original_size=(left.shape[1], left.shape[0]), alpha=None)
                if len(pair) > 2 and not photo.focal_35mm:
                    photo = replace(photo, focal_35mm=pair[2])
                depth = stereo_disparity(photo.rgb, right)
                if kind in ("sbs-stereo", "sbs-half-stereo") and tagged is None and _views_swapped(depth):
                    depth = _crossed(depth)
                    found.warnings.append("a cross-eyed pair (the right view first, as the strips its views do not "
                                          "share tell): its depth is read so")
            depth.kind = kind
            found.photo, found.depth, found.source, found.kind = photo, depth, "stereo", kind
            return found
    except EmbeddedDepthError as e:
        found.warnings.append(f"unusable stereo pair ({e})")
    except Exception as e:
        found.warnings.append(f"unreadable stereo pair ({type(e).__name__}: {e})")
    if source == "stereo":  # asked for: the photo lacks it, the input fails
        why = found.warnings[-1] if found.warnings else (
            "no stereo pair found (a HEIF stereo pair, an MPO, or a side-by-side image whose halves match)")
        raise InputFileError(f"--depth-source stereo: {why} ({_what_auto_uses(path, photo, data, stereo_failed=True)})", path)
    if found.warnings:
        found.warnings[-1] += "; using the depth model"
    return found


def _what_auto_uses(path: Path, photo: Photo, data: FileBytes, stereo_failed: bool = False) -> str:
    """The hint of a source asked for by name that the photo lacks: what ``auto`` takes instead (a
    HEIC with a depth map but no stereo pair: its depth map, not the model, as the hint once said).
    The probe finds a stereo pair without matching its views (seconds): where that match is still
    to come, auto "would try" the pair; where it has just failed (``stereo_failed``), auto takes
    the model (a pair of the same picture twice was named as what auto would use)."""
    used = _find_depth(path, photo, "auto", Found(photo), data, probe=True).source
    if used == "stereo":
        return ("--depth-source auto would use the depth model" if stereo_failed else
                "--depth-source auto would try its stereo pair, then the depth model")
    return "--depth-source auto would use " + ("its embedded depth map" if used == "embedded" else "the depth model")


_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
              7: "TRANSVERSE", 8: "ROTATE_90"}  # EXIF orientation -> the transform that shows it upright


def _orientation(path: Path) -> int | None:
    """A JPEG's EXIF orientation tag (None: none or unreadable)."""

    try:
        with open_image(path, ("JPEG",), header_only=True) as im:
            return im.getexif().get(0x0112)
    except Exception:
        return None


def oriented(sd: SourceDepth, orientation: int | None) -> SourceDepth:
    """A JPEG's depth map turned like the photo by its EXIF ``orientation`` (:func:`photo3d.io.load_image`
    applies it to the photo; the map is stored in the sensor's orientation, as the image data)."""
    from PIL import Image

    method = _TRANSPOSE.get(orientation)
    if method is None:
        return sd
    op = getattr(Image.Transpose, method)

    def turn(a):
        return None if a is None else np.asarray(Image.fromarray(a.astype(np.float32)).transpose(op))

    return replace(sd, disparity=turn(sd.disparity), confidence=turn(sd.confidence))


MIN_CONFIDENT = 0.01  # a map needs this share of confident (>= LOW_CONFIDENCE), finite pixels to be used


def check_confident(sd: SourceDepth) -> None:
    """A map whose pixels are (nearly) all unknown or below ``LOW_CONFIDENCE`` is no depth: it would
    be filled from a handful of pixels (flat) or not at all."""
    ok = np.isfinite(sd.disparity)
    if sd.confidence is not None:
        ok &= np.nan_to_num(sd.confidence) >= LOW_CONFIDENCE
    n = int(ok.sum())
    if n < min(ok.size, max(100, MIN_CONFIDENT * ok.size)):  # (a map of 8x8 pixels, all confident, is one)
        raise EmbeddedDepthError(f"depth map: {n} of its {ok.size} pixels are confident (confidence >= {LOW_CONFIDENCE})")


def _fits(disp: np.ndarray, photo: Photo) -> bool:
    h, w = disp.shape
    return abs(w / h - photo.width / photo.height) <= ASPECT_TOLERANCE * photo.width / photo.height


def check_aspect(disp: np.ndarray, photo: Photo) -> None:
    h, w = disp.shape
    if not np.isfinite(disp).any():
        raise EmbeddedDepthError("depth map holds no finite value")
    if not _fits(disp, photo):
        raise EmbeddedDepthError(f"depth map is {w}x{h}, not the photo's aspect ratio ({photo.width}x{photo.height})")


# ============================================================================ to the photo


def network_disparity(model, rgb: np.ndarray) -> np.ndarray:
    """The depth network's disparity (exp of its log-disparity) at its own resolution, one pass
    (it fills the holes of a measured map)."""
    return np.exp(model.predict_log(rgb, tta="none"))


@dataclass
class DepthOut:
    disparity: np.ndarray  # float32 H×W in [0, 1], larger = nearer
    disparity_min: float  # source disparity mapped to 0 …
    disparity_max: float  # … and to 1
    info: dict


def _align(src: np.ndarray, ref: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted least squares a, b with a·src + b ≈ ref."""
    sw = float(w.sum())
    ms, mr = float((w * src).sum() / sw), float((w * ref).sum() / sw)
    var = float((w * (src - ms) ** 2).sum() / sw)
    cov = float((w * (src - ms) * (ref - mr)).sum() / sw)
    a = cov / var if var > 0 else 0.0
    return a, mr - a * ms


def _spread(values: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Normalized convolution: ``values`` known with ``weight`` (0 = unknown) spread into the
    unknown pixels, coarse to fine, so every pixel gets the weighted mean of its nearest
    known neighbourhood."""
    h, w = values.shape
    out = np.zeros_like(values)
    r = max(h, w) // 4
    while r >= 2:
        k = (2 * r + 1, 2 * r + 1)
        num = cv2.blur(values * weight, k, borderType=cv2.BORDER_REFLECT)
        den = cv2.blur(weight, k, borderType=cv2.BORDER_REFLECT)
        ok = den > 1e-3
        out = np.where(ok, num / np.maximum(den, 1e-6), out)
        r //= 2
    return out.astype(np.float32)


def fuse_with_network(sd: SourceDepth, net_disp: np.ndarray | None) -> tuple[np.ndarray, dict]:
    """``sd``'s disparity with its holes / low-confidence pixels taken from the network's
    disparity, blended by confidence.  The network is aligned to the found map by a weighted
    least-squares scale and shift over the confident pixels, and its remaining local offset
    from the found map (interpolated from the confident pixels around) is added back, so a
    hole continues the depth of its surroundings with the network's shape."""
    d = sd.disparity
    conf = np.ones_like(d) if sd.confidence is None else np.clip(np.nan_to_num(sd.confidence), 0, 1)
    conf = np.where(np.isfinite(d), conf, 0.0).astype(np.float32)
    d0 = np.nan_to_num(d, nan=0.0).astype(np.float32)
    info: dict = {"low_confidence": round(float((conf < LOW_CONFIDENCE).mean()), 4)}
    if net_disp is None:
        return d0, info
    net = cv2.resize(net_disp.astype(np.float32), (d.shape[1], d.shape[0]), interpolation=cv2.INTER_AREA)
    good = conf >= LOW_CONFIDENCE
    a, b = _align(net[good], d0[good], conf[good]) if good.sum() >= 100 else (0.0, 0.0)
    if not a > 0:  # the network disagrees with the measured depth altogether: keep the map
        info["fused"] = False
        return _fill_small_holes(np.where(good, d0, np.nan).astype(np.float32)), info
    aligned = (a * net + b).astype(np.float32)
    w = np.where(good, conf, 0.0).astype(np.float32)
    aligned += _spread(d0 - aligned, w)
    out = conf * d0 + (1.0 - conf) * aligned
    info.update({"fused": True, "network_scale": round(a, 6), "network_shift": round(b, 6)})
    return out.astype(np.float32), info


def _fill_small_holes(d: np.ndarray) -> np.ndarray:
    """A few missing values: filled from the background side along their row (as stereo occlusions)."""
    valid = np.isfinite(d)
    out = _fill_rows_background(np.where(valid, d, 0).astype(np.float32), valid)
    return np.where(np.isfinite(out), out, float(np.median(d[valid]))).astype(np.float32)


def depth_for(found: Found, rgb: np.ndarray, predict: Callable[[np.ndarray], np.ndarray] | None = None,
              raw: bool = False) -> DepthOut:
    """Normalized disparity at ``rgb``'s size (the photo, or its working-size copy) from what
    :func:`find_depth` found.  ``predict(rgb)`` returns the network's disparity (any size); it is
    called only when the found map has holes or low-confidence pixels worth fusing."""
    info: dict = {"depth_source": found.source, "depth_kind": found.kind}
    sd = found.depth
    assert sd is not None, "find_depth gives an embedded or stereo source its depth"
    info.update({"depth_map_size": [sd.disparity.shape[1], sd.disparity.shape[0]], **{f"depth_{k}": v for k, v in sd.meta.items()}})
    conf = sd.confidence
    low = ~np.isfinite(sd.disparity)
    if conf is not None:
        low |= conf < LOW_CONFIDENCE
    if low.mean() > FUSE_MIN_SHARE and predict is not None:
        small = cv2.resize(rgb, (sd.disparity.shape[1], sd.disparity.shape[0]), interpolation=cv2.INTER_AREA)
        disp, finfo = fuse_with_network(sd, predict(small))
    elif low.any():
        disp, finfo = fuse_with_network(replace(sd, disparity=_fill_small_holes(sd.disparity)), None)
    else:
        disp, finfo = sd.disparity.astype(np.float32), {"low_confidence": 0.0}
    info.update(finfo)
    # (a floor relative to the map's own scale: an absolute 1e-6 flattened a map of far depths, Near 1e7)
    floor = max(float(np.percentile(disp, 0.01)), 1e-6 * float(disp.max()), float(np.finfo(np.float32).tiny)) if sd.metric else None
    shift = 0.0
    if sd.metric:
        disp = np.maximum(disp, floor)
    else:  # only monotone (or a stereo pair's signed pixels): shifted to positive before taking logs
        lo = float(disp.min())
        shift = -lo + max(1e-3, 0.01 * (float(disp.max()) - lo))
        disp = disp + shift
    log = np.log(disp.astype(np.float32))
    if not raw:
        from .upsample import guided_upsample

        log = guided_upsample(log, rgb)
    out = np.exp(log.astype(np.float32))
    np.clip(out, float(disp.min()), float(disp.max()), out=out)  # no overshoot of the guided filter
    if found.source == "embedded":  # measured and quantized: its whole range
        lo, hi = float(out.min()), float(out.max())
    else:  # computed: a robust range, as for the network
        step = max(1, out.size // 2_000_000)
        lo, hi = (float(v) for v in np.percentile(out.reshape(-1)[::step], (0.1, 99.9)))
    if sd.metric and lo > 0:
        info["depth_ratio"] = round(hi / lo, 4)  # farthest / nearest depth: the real ratio
    norm = ((out - lo) / (hi - lo) if hi > lo else np.zeros_like(out)).astype(np.float32)
    np.clip(norm, 0.0, 1.0, out=norm)
    # (the range in the source's own values: a stereo pair's disparities reaching below zero, photo3d's
    # own stills or a window-adjusted pair, were written shifted by the shift above, 13 px off, helper-84)
    return DepthOut(norm, lo - shift, hi - shift, info)

"""Layer meshes + JPEG textures -> GLB, written directly (a small, dependency-free glTF 2.0 writer:
importing trimesh and its scipy/networkx dependencies alone took ~1.1 s of CPU, a quarter of the
time budget of a whole conversion; tests read the files back with trimesh and the Khronos validator).

Conventions of every file photo3d writes:

- camera at the origin looking down -Z, +Y up (glTF's own camera frame), as a perspective
  camera node with the photo's field of view;
- one unlit material (``KHR_materials_unlit``) per JPEG texture (the photo; the inpainted
  background layer), double-sided, ``alphaMode: MASK`` with the silhouette softness in the
  vertex colour's alpha (``COLOR_0``);
- clamp-to-edge, mipmapped samplers;
- ``extras.photo3d``: depth convention, field of view, source size, parallax range, version.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__

DEFAULT_FOCAL_35MM = 28.0  # a phone's main camera (63 deg horizontal on a 4:3 photo, diagonal-matched), when EXIF has none
DIAGONAL_35MM = math.hypot(36.0, 24.0)
DEPTH_CONVENTION = (
    "positions in camera space: camera at the origin looking down -Z, +Y up; "
    "depth = -z; inverse depth 1/depth is what the depth model predicts (larger = nearer)"
)

_CLAMP, _LINEAR, _LINEAR_MIPMAP_LINEAR = 33071, 9729, 9987
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


@dataclass
class Camera:
    focal_px: float  # in source pixels
    width: int  # source size
    height: int
    focal_35mm: float
    focal_source: str  # "exif" | "default"

    @property
    def yfov(self) -> float:
        return 2.0 * math.atan(self.height / (2.0 * self.focal_px))

    @property
    def xfov(self) -> float:
        return 2.0 * math.atan(self.width / (2.0 * self.focal_px))


def camera_for(width: int, height: int, focal_35mm: float | None) -> Camera:
    """Pinhole camera of a photo from its 35 mm equivalent focal length (diagonal-matched)."""
    source = "exif" if focal_35mm else "default"
    f35 = float(focal_35mm or DEFAULT_FOCAL_35MM)
    focal_px = f35 / DIAGONAL_35MM * math.hypot(width, height)
    return Camera(focal_px, width, height, f35, source)


@dataclass
class MeshData:
    name: str
    vertices: np.ndarray  # (n, 3) float32
    faces: np.ndarray  # (m, 3) int32
    uv: np.ndarray  # (n, 2) float32 in [0, 1], glTF convention (origin top-left)
    alpha: np.ndarray  # (n,) uint8
    texture: int = 0  # which of the GLB's textures (one material per texture)


@dataclass
class ExportOptions:
    extras: dict[str, Any] = field(default_factory=dict)


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """Baseline 4:2:0 JPEG (what every glTF viewer decodes); OpenCV's encoder is ~2x PIL's."""
    import cv2

    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


def vertex_bytes(with_alpha: bool) -> int:
    """GLB bytes per vertex: float32 position, normalized uint16 UV, (uint8 RGBA colour)."""
    return 12 + 4 + (4 if with_alpha else 0)


def index_bytes(num_vertices: int) -> int:
    return 2 if num_vertices < 65535 else 4


def mesh_bytes(m: MeshData) -> int:
    """Bytes ``m`` takes in a GLB written by :func:`to_glb` (for size budgets)."""
    n = len(m.vertices)
    tri = 3 * len(m.faces) * index_bytes(n)
    return n * vertex_bytes(bool((m.alpha < 255).any())) + tri + (-tri % 4)


class _Bin:
    """The GLB's binary chunk: 4-byte aligned buffer views."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.views: list[dict] = []

    def add(self, data: bytes, target: int | None = None) -> int:
        view = {"buffer": 0, "byteOffset": self.size, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.views.append(view)
        pad = -len(data) % 4
        self.parts.append(data + b"\x00" * pad)
        self.size += len(data) + pad
        return len(self.views) - 1


def to_glb(meshes: list[MeshData], textures: bytes | list[bytes], camera: Camera, opts: ExportOptions) -> bytes:
    """GLB bytes of ``meshes``; ``textures``: JPEG bytes (one or a list), one unlit material each.

    Attributes are stored compactly (core glTF 2.0, no extension needed): float32 positions,
    normalized uint16 texture coordinates, normalized uint8 RGBA vertex colours (white, carrying
    the silhouette alpha) only on meshes with soft edges, 16-bit indices where they fit.
    """
    if isinstance(textures, (bytes, bytearray)):
        textures = [bytes(textures)]
    binary = _Bin()
    accessors: list[dict] = []

    def accessor(arr: np.ndarray, ctype: int, kind: str, target: int | None, normalized: bool = False,
                 bounds: bool = False) -> int:
        view = binary.add(np.ascontiguousarray(arr).tobytes(), target)
        acc = {"bufferView": view, "componentType": ctype, "count": int(arr.shape[0]), "type": kind}
        if normalized:
            acc["normalized"] = True
        if bounds:
            acc["min"] = [float(v) for v in arr.min(axis=0)]
            acc["max"] = [float(v) for v in arr.max(axis=0)]
        accessors.append(acc)
        return len(accessors) - 1

    gl_meshes, nodes = [], []
    for m in meshes:
        if len(m.faces) == 0:
            continue
        n = len(m.vertices)
        faces = m.faces.reshape(-1)
        if n < 65535:
            idx = accessor(faces.astype("<u2"), 5123, "SCALAR", _ELEMENT_ARRAY_BUFFER)
        else:
            idx = accessor(faces.astype("<u4"), 5125, "SCALAR", _ELEMENT_ARRAY_BUFFER)
        accessors[idx]["min"], accessors[idx]["max"] = [int(faces.min())], [int(faces.max())]
        attrs = {"POSITION": accessor(m.vertices.astype("<f4"), 5126, "VEC3", _ARRAY_BUFFER, bounds=True)}
        uv = np.round(np.clip(m.uv, 0.0, 1.0) * 65535.0).astype("<u2")
        attrs["TEXCOORD_0"] = accessor(uv, 5123, "VEC2", _ARRAY_BUFFER, normalized=True)
        if (m.alpha < 255).any():  # COLOR_0 only carries the silhouette alpha
            colors = np.full((n, 4), 255, np.uint8)
            colors[:, 3] = m.alpha
            attrs["COLOR_0"] = accessor(colors, 5121, "VEC4", _ARRAY_BUFFER, normalized=True)
        prim = {"attributes": attrs, "indices": idx, "mode": 4, "material": int(m.texture)}
        gl_meshes.append({"name": m.name, "primitives": [prim]})
        nodes.append({"name": m.name, "mesh": len(gl_meshes) - 1})
    images = [{"bufferView": binary.add(jpeg), "mimeType": "image/jpeg"} for jpeg in textures]
    materials = [
        {
            "name": "photo" if i == 0 else f"layer{i}",
            "pbrMetallicRoughness": {"baseColorTexture": {"index": i}, "metallicFactor": 0.0, "roughnessFactor": 1.0},
            "alphaMode": "MASK",
            "doubleSided": True,
            "extensions": {"KHR_materials_unlit": {}},
        }
        for i in range(len(textures))
    ]
    tree: dict[str, Any] = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": list(range(len(nodes)))}],
        "nodes": nodes,
        "meshes": gl_meshes,
        "materials": materials,
        "textures": [{"sampler": 0, "source": i} for i in range(len(textures))],
        "images": images,
        "accessors": accessors,
        "bufferViews": binary.views,
        "buffers": [{"byteLength": binary.size}],
    }
    _finish_tree(tree, camera, opts)
    return _pack_glb(tree, b"".join(binary.parts))


def _pack_glb(tree: dict, binary: bytes) -> bytes:
    js = json.dumps(tree, separators=(",", ":"), allow_nan=False).encode("utf-8")
    js += b" " * (-len(js) % 4)
    binary += b"\x00" * (-len(binary) % 4)
    total = 12 + 8 + len(js) + (8 + len(binary) if binary else 0)
    out = [struct.pack("<4sII", b"glTF", 2, total), struct.pack("<I4s", len(js), b"JSON"), js]
    if binary:
        out += [struct.pack("<I4s", len(binary), b"BIN\x00"), binary]
    return b"".join(out)


def _finish_tree(tree: dict, camera: Camera, opts: ExportOptions) -> None:
    tree["asset"]["generator"] = f"photo3d {__version__}"
    tree["samplers"] = [{"magFilter": _LINEAR, "minFilter": _LINEAR_MIPMAP_LINEAR, "wrapS": _CLAMP, "wrapT": _CLAMP}]
    tree["extensionsUsed"] = ["KHR_materials_unlit"]
    tree["cameras"] = [
        {
            "name": "photo",
            "type": "perspective",
            "perspective": {
                "yfov": camera.yfov,
                "aspectRatio": camera.width / camera.height,
                "znear": 0.05,
                "zfar": 1000.0,
            },
        }
    ]
    nodes = tree.setdefault("nodes", [])
    nodes.append({"name": "camera", "camera": 0})
    tree["scenes"][0].setdefault("nodes", []).append(len(nodes) - 1)
    extras = {
        "version": __version__,
        "depth_convention": DEPTH_CONVENTION,
        "fov_y_deg": math.degrees(camera.yfov),
        "fov_x_deg": math.degrees(camera.xfov),
        "focal_35mm": camera.focal_35mm,
        "focal_source": camera.focal_source,
        "source_size": [camera.width, camera.height],
    }
    extras.update(opts.extras)
    tree["extras"] = {"photo3d": extras}


MAX_JSON_BYTES = 1 << 20  # a 3D photo's JSON is a few KB


def glb_file_problem(path: str | Path) -> str | None:
    """Why the file at ``path`` is not a whole GLB 2.0 by its 12-byte header (magic, version, the
    length it declares against the file's), or None; read when a re-run keeps an existing GLB
    (a junk ``p.glb`` was kept as "skipped (output exists)")."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    return glb_header_problem(head, size)


def glb_header_problem(head: bytes, size: int) -> str | None:
    """Why a file of ``size`` bytes that begins with ``head`` is not a whole GLB 2.0, or None."""
    if len(head) < 12 or size < 20 or head[:4] != b"glTF":
        return "not a GLB file"
    _, version, length = struct.unpack_from("<4sII", head, 0)
    if version != 2:
        return f"a GLB of version {version}, not 2.0"
    if length != size:
        return (f"cut short: {size:,} of its {length:,} bytes" if length > size
                else f"{size:,} bytes where its header says {length:,}")
    return None


def _json_chunk(chunk: bytes) -> dict:
    """A GLB's JSON chunk parsed as glTF's JSON (ValueError saying why for anything else)."""
    def not_json(word: str):  # (Python's parser takes NaN and Infinity; JSON, and glTF, do not: helper-108)
        raise ValueError(f"{word} is not a JSON number")

    if chunk[:3] == b"\xef\xbb\xbf":  # (glTF's JSON has none)
        raise ValueError("its JSON starts with a byte-order mark")
    try:
        tree = json.loads(chunk, parse_constant=not_json)
    except RecursionError:
        raise ValueError("its JSON is nested too deep") from None
    except ValueError as e:  # (not UTF-8, not JSON, a number of 5,000 digits)
        raise ValueError(f"its JSON does not parse ({str(e)[:80]})") from None
    if not isinstance(tree, dict):
        raise ValueError("its JSON is not an object")
    return tree


def _json_length(head: bytes, size: int) -> int:
    """The length of the JSON chunk of a GLB of ``size`` bytes that begins with ``head`` (its first 20
    bytes); ValueError saying why when it is no whole GLB 2.0 or its JSON chunk is missing or far
    larger than a 3D photo's."""
    if problem := glb_header_problem(head[:12], size):
        raise ValueError(problem)
    jlen, jtype = struct.unpack_from("<II", head, 12)
    if jtype != 0x4E4F534A or 20 + jlen > size:
        raise ValueError("no JSON chunk")
    if jlen > MAX_JSON_BYTES:  # (parsed, 30 MB of "{}" took 26 times as much memory)
        raise ValueError(f"a JSON chunk of {jlen:,} bytes, far more than a 3D photo's")
    return jlen


def read_glb_json(path: str | Path) -> dict:
    """The glTF JSON of the GLB file ``path``, read from its JSON chunk alone (a kept GLB of any size is
    not read whole); ValueError (or OSError) saying why for anything else."""
    with open(path, "rb") as f:
        jlen = _json_length(f.read(20), os.fstat(f.fileno()).st_size)
        return _json_chunk(f.read(jlen))


def built_parallax(tree: dict) -> float | None:
    """The ``--parallax`` a 3D photo was built with (its glTF JSON's photo3d metadata), or None (not
    recorded: an older photo3d's, or another tool's GLB)."""
    try:
        return float(tree["extras"]["photo3d"]["parallax"]["strength"])
    except (KeyError, TypeError, ValueError):
        return None


def read_glb(data: bytes) -> tuple[dict, bytes]:
    """(glTF JSON, binary chunk) of a GLB; ValueError saying why for anything else (not a GLB 2.0,
    cut short, a JSON chunk that does not parse)."""
    jlen = _json_length(data[:20], len(data))
    tree = _json_chunk(data[20 : 20 + jlen])
    off = 20 + jlen
    binary = b""
    if off < len(data):
        if off + 8 > len(data):
            raise ValueError("cut short inside its binary chunk's header")
        blen, btype = struct.unpack_from("<II", data, off)
        if btype != 0x004E4942 or off + 8 + blen > len(data):
            raise ValueError("its second chunk is not a binary chunk that fits in the file")
        binary = data[off + 8 : off + 8 + blen]
    return tree, binary


# ---------------------------------------------------------------- the viewer's framing (what the GLB tells it)


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World-to-camera rotation (3 x 3) of a camera at ``eye`` whose -Z looks at ``target``, +Y up,
    as three.js's ``Camera.lookAt`` (the viewer aims at the focus point from every offset)."""
    z = np.asarray(eye, float) - np.asarray(target, float)
    z /= np.linalg.norm(z)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z])


def cover_zoom(meta: dict) -> float:
    """The viewer's zoom (``layout()`` in viewer.src.js): tan(fov / 2) of the photo divided by
    this, so that the parallax at full offset never shows what lies beyond the photo's border.
    Written into the GLB by :func:`edge_cover_zoom` (``parallax.cover_zoom``); a file made before
    that gets the old estimate, which missed the turn of a wide lens's edges (below)."""
    p = meta["parallax"]
    if "cover_zoom" in p:
        return float(p["cover_zoom"])
    tx, ty = math.tan(math.radians(meta["fov_x_deg"]) / 2), math.tan(math.radians(meta["fov_y_deg"]) / 2)
    lo, hi = p["inverse_depth_range"]
    margin = p["max_offset"] * (hi - lo) / 2 * 1.15
    return max(tx / max(tx - margin, 1e-3), ty / max(ty - margin, 1e-3)) * 1.02


#: the photo's border, seen from every offset on the rim of the viewer's disc (shifts are largest there)
COVER_ANGLES, COVER_SLACK = 72, 1.02
#: the most a GLB says (its readers refuse more: render._check_meta, viewer.src.js layout()); a border
#: that crosses the middle (a 2 mm lens at --parallax 0.2) asked for 4,080x (helper-74)
MAX_COVER_ZOOM = 20.0
_SIDES = {"left": (0, -1), "right": (0, 1), "top": (1, 1), "bottom": (1, -1)}  # (axis, outward sign)


def border_points(meshes: list[MeshData], tx: float, ty: float, grid: tuple[int, int]) -> dict[str, np.ndarray]:
    """Each border's vertices ("left", "right", "top", "bottom" -> (n, 3)): those of every layer
    within half a cell of the ``grid`` (h, w) of the photo's border (tan(fov / 2) = ``tx``, ``ty``),
    as the photo's camera sees them, that are drawn (alpha >= 0.5), for :func:`edge_cover_zoom`.
    (A cut-out's transparent border has none: nothing there to keep in the frame.)"""
    pts = np.concatenate([m.vertices[m.alpha >= 128] for m in meshes]).astype(np.float64).reshape(-1, 3)
    z = np.maximum(-pts[:, 2], 1e-9)
    u, v = pts[:, 0] / z, pts[:, 1] / z
    du, dv = tx / max(grid[1] - 1, 1), ty / max(grid[0] - 1, 1)  # half a cell
    return {"left": pts[u <= -tx + du], "right": pts[u >= tx - du], "top": pts[v >= ty - dv], "bottom": pts[v <= -ty + dv]}


def edge_cover_zoom(tx: float, ty: float, max_offset: float, focus_depth: float, border: dict[str, np.ndarray]) -> float:
    """The least zoom (tan(fov / 2) divided by it, ``COVER_SLACK`` more) at which no offset of the
    viewer's disc shows past the photo's border: the border's vertices (:func:`border_points`)
    projected from cameras on the disc's rim aimed at the focus point, as the viewer places them.
    The camera's turn toward the focus moves a border at tan(fov / 2) = u by (1 + u^2) times what it
    moves the middle: an 80-degree lens's edges 1.7x more than the old estimate (:func:`cover_zoom`)
    allowed for, which showed a black line at the frame's edge."""
    half = [tx, ty]  # how far in from the middle the frame may reach, across and up (tan units)
    target = np.array([0.0, 0.0, -focus_depth])
    for a in np.linspace(0.0, 2.0 * math.pi, COVER_ANGLES, endpoint=False):
        eye = np.array([math.cos(a) * max_offset, math.sin(a) * max_offset, 0.0])
        rot = look_at(eye, target)
        for side, p in border.items():
            if len(p):  # (how far in that border comes at worst)
                axis, sign = _SIDES[side]
                c = (p - eye) @ rot.T
                half[axis] = min(half[axis], float((sign * c[:, axis] / np.maximum(-c[:, 2], 1e-9)).min()))
    zoom = max(tx / max(half[0], 1e-9), ty / max(half[1], 1e-9)) * COVER_SLACK
    return min(zoom, MAX_COVER_ZOOM) if math.isfinite(zoom) else MAX_COVER_ZOOM

"""Render stage: the GLB's scene seen from a moving camera, on the CPU.

The renderer reads the very bytes :mod:`photo3d.export` writes (meshes, vertex alpha, the photo's
and the inpainted background's JPEG textures, the camera and ``extras.photo3d.parallax``) and
draws them the way the HTML viewer (``assets/viewer.src.js``, three.js) does:

- camera at ``offset * parallax.max_offset`` (offset in the unit disc), looking at the point
  ``focus_depth`` straight ahead, +Y up; the field of view zoomed in by the viewer's *cover*
  factor (:func:`cover_zoom`, ~1.05-1.2, written into the GLB) so that no frame shows past the
  photo's edge;
- unlit textures, bilinear sampling from a texture pre-filtered to the frame's scale (what the
  viewer's mipmaps do), alpha test at 0.5 on the interpolated vertex alpha (``alphaMode: MASK``),
  no back-face culling, z-buffer.

It is a software triangle rasteriser: vertices are transformed with numpy, the triangle loop
(bounding box, row spans from the barycentric planes, z-buffer, alpha test, perspective-correct
texture coordinates) is compiled by numba, and one ``cv2.remap`` over a texture atlas colours
the frame.  Anti-aliasing: supersampling (``supersample`` x ``supersample`` samples per pixel,
box-filtered).  Why not a torch/numpy-vectorised rasteriser or forward splatting: see
``benchmarks/render_speed.py`` and the README (about 10x slower per frame on two cores).
"""

from __future__ import annotations

import io
import math
import os
import struct
import threading
from dataclasses import dataclass
from typing import Iterator

import cv2
import numba
import numpy as np

from . import defaults
from .export import MAX_COVER_ZOOM, cover_zoom, look_at, read_glb

PATHS = ("circle", "swing", "zoom", "dolly-zoom")
ALPHA_CUTOFF = 0.5  # glTF's default alphaCutoff for alphaMode MASK
ZNEAR, ZFAR = 0.05, 1000.0  # the viewer's camera planes
# forward travel of `zoom` and `dolly-zoom`, in max_offset (the sideways range): about what the
# inpainted background covers; the nearest things grow ~15 %, the dolly-zoom widens the view ~10 %
ZOOM_TRAVEL = 3.0


def zoom_travel(meta: dict | None) -> float:
    """How far the zoom paths move in: ``ZOOM_TRAVEL`` x the offset range, at most half the way to
    the focus plane (an ultra-wide photo at --parallax 0.2 moved the camera past it: the dolly zoom
    divided by zero, or went dark mid-loop)."""
    p = (meta or {}).get("parallax", {})
    return min(ZOOM_TRAVEL * p.get("max_offset", 0.05), 0.5 * p.get("focus_depth", 2.0))
_COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


# ---------------------------------------------------------------- the scene of a GLB


@dataclass
class SceneMesh:
    positions: np.ndarray  # (n, 3) float32, camera space
    uv: np.ndarray  # (n, 2) float32, glTF convention (origin top-left)
    alpha: np.ndarray | None  # (n,) float32 in [0, 1], None = opaque
    faces: np.ndarray  # (m, 3) int64
    texture: int


@dataclass
class Scene:
    meshes: list[SceneMesh]
    textures: list[np.ndarray]  # RGB uint8
    meta: dict  # extras.photo3d

    @property
    def aspect(self) -> float:
        w, h = self.meta["source_size"]
        return w / h


def _index(v, n: int, what: str) -> int:
    """``v`` as an index into ``n`` things (an int, 0 <= v < n: a negative one read another, 1.7 was cut to 1)."""
    if type(v) is not int or not 0 <= v < n:
        raise SceneError(f"{what} {v!r} of {n}")
    return v


MAX_MESHES = 8  # photo3d writes the visible layer and the background layer (a cut-out: the visible one alone)
MAX_OVERDRAW = 6.0  # the meshes' triangles, seen from the photo's viewpoint or an extreme one, cover the frame at most this often
MAX_VERTICES = 4_000_000  # per mesh (a 2 MB 3D photo has far fewer than 200,000)
GLTF_IMAGE_FORMATS = ("JPEG", "PNG")  # the image types glTF allows (photo3d writes JPEG; validate says so)
_ATTRIBUTES = {"POSITION": ({5126}, "VEC3"), "TEXCOORD_0": ({5123}, "VEC2"), "COLOR_0": ({5121}, "VEC4")}


def validate(tree: dict, binary: bytes) -> None:
    """:class:`SceneError` saying why unless ``tree`` (and ``binary``) has the structure
    :func:`photo3d.export.to_glb` writes: every part used once and every byte read once (a few KB
    naming one mesh 2,000 times took 3.6 GB to render, eight meshes reading one 10 MB buffer 1.3 GB),
    JPEG textures, as many texture coordinates as positions (fewer crashed the rasteriser), finite
    geometry in front of the camera whose triangles cover the frame a few times at most from the
    photo's viewpoint and the viewer's extreme ones (triangles spanning the frame, or edge-on to the
    photo's viewpoint, took 30 s a still), nothing the page would show otherwise (node transforms,
    strides, extensions) and metadata in photo3d's ranges.  Nothing is decoded here (see
    :func:`check_textures`)."""
    meta = tree["extras"]["photo3d"]
    _check_meta(meta)
    if tree.get("extensionsRequired") or set(tree.get("extensionsUsed") or ()) - {"KHR_materials_unlit"}:
        raise SceneError("it uses extensions photo3d never writes")
    accessors, views, meshes = tree["accessors"], tree["bufferViews"], tree["meshes"]
    nodes, materials, textures, images = tree["nodes"], tree["materials"], tree["textures"], tree["images"]
    cameras, samplers, buffers = tree.get("cameras", []), tree.get("samplers", []), tree.get("buffers")
    if not all(isinstance(x, list) for x in (accessors, views, meshes, nodes, materials, textures, images, cameras,
                                             samplers, buffers)):
        raise SceneError("its parts are not lists")
    # what the Khronos validator refuses and photo3d never writes (helper-108: such a GLB given as input
    # was copied as it is, and its page said it was damaged): another glTF version, a buffer not the
    # binary chunk, a camera or sampler named that is not there, a camera looking from behind itself
    if not isinstance(tree.get("asset"), dict) or tree["asset"].get("version") != "2.0":
        raise SceneError("not glTF 2.0")
    if len(buffers) != 1 or set(buffers[0]) - {"byteLength", "name"} or type(buffers[0].get("byteLength")) is not int \
            or not 0 <= len(binary) - buffers[0]["byteLength"] < 4:
        raise SceneError("its buffer is not its binary chunk")
    for n in nodes:
        if "camera" in n:
            _index(n["camera"], len(cameras), "a node names camera")
    for c in cameras:
        persp = c.get("perspective") if isinstance(c, dict) else None
        if c.get("type") != "perspective" or not isinstance(persp, dict) \
                or not all(isinstance(persp.get(k), (int, float)) for k in ("yfov", "znear")) \
                or not 0 < persp["yfov"] < math.pi or not persp["znear"] > 0 \
                or ("zfar" in persp and not (isinstance(persp["zfar"], (int, float)) and persp["zfar"] > persp["znear"])):
            raise SceneError("a camera not as photo3d writes it")
    for tex in textures:
        if "sampler" in tex:
            _index(tex["sampler"], len(samplers), "a texture names sampler")
    if any(v.get("target", 34962) not in (34962, 34963) for v in views):
        raise SceneError("a buffer view of another kind than vertices or indices")
    declared = set(tree.get("extensionsUsed") or ())
    for m in materials:
        pbr = m.get("pbrMetallicRoughness") if isinstance(m, dict) else None
        if not isinstance(pbr, dict) or not all(isinstance(pbr.get(k, 0), (int, float)) and 0 <= pbr.get(k, 0) <= 1
                                                for k in ("metallicFactor", "roughnessFactor")) \
                or set(m.get("extensions") or ()) - declared:
            raise SceneError("a material not as photo3d writes it")
    if not 1 <= len(meshes) <= MAX_MESHES or len(nodes) > len(meshes) + 1 or len(materials) > MAX_MESHES \
            or len(textures) > MAX_MESHES or len(images) != len(textures):
        raise SceneError(f"{len(nodes)} nodes, {len(meshes)} meshes, {len(textures)} textures: not as photo3d writes them")
    if [n.get("mesh") for n in nodes if "mesh" in n] != list(range(len(meshes))) \
            or any(set(n) - {"name", "mesh", "camera"} for n in nodes) \
            or tree.get("scenes") != [{"nodes": list(range(len(nodes)))}] or tree.get("scene", 0) != 0:
        raise SceneError("nodes that do not show each mesh once, as it is")
    spans = []  # (offset, length) of each buffer view, all inside the binary chunk
    for v in views:
        off, n = v.get("byteOffset", 0), v.get("byteLength")
        if set(v) - {"buffer", "byteOffset", "byteLength", "target", "name"} or v.get("buffer") != 0 \
                or type(off) is not int or type(n) is not int or off < 0 or n <= 0 or off + n > len(binary):
            raise SceneError("a buffer view outside the file, or not as photo3d writes it")
        spans.append((off, n))
    ordered = sorted(spans)
    if any(a[0] + a[1] > b[0] for a, b in zip(ordered, ordered[1:])):
        raise SceneError("buffer views that overlap: not as photo3d writes them")
    view_users: list[int] = []
    for i, tex in enumerate(textures):
        _index(tex["source"], len(images), "a texture names image")
        if tex["source"] != i or images[i].get("mimeType") != "image/jpeg" or set(tex) - {"sampler", "source"}:
            raise SceneError("textures not as photo3d writes them (one JPEG image each)")
        view_users.append(_index(images[i]["bufferView"], len(views), "an image names buffer view"))
    for m in materials:
        info = m["pbrMetallicRoughness"]["baseColorTexture"]
        _index(info["index"], len(textures), "a material names texture")
        if set(info) != {"index"} or set(m.get("extensions") or ()) - {"KHR_materials_unlit"}:
            raise SceneError("a material not as photo3d writes it")
    used: set[int] = set()

    def acc(i, what: str, ctypes: set[int], kind: str) -> dict:
        i = _index(i, len(accessors), f"{what} names accessor")
        a = accessors[i]
        if i in used or a.get("componentType") not in ctypes or a.get("type") != kind \
                or set(a) - {"bufferView", "byteOffset", "componentType", "count", "type", "normalized", "min", "max", "name"}:
            raise SceneError(f"{what}: accessor {i} is not as photo3d writes it")
        view = _index(a["bufferView"], len(views), f"{what}: accessor {i} names buffer view")
        count, off = a["count"], a.get("byteOffset", 0)
        need = count * _WIDTH[kind] * np.dtype(_COMPONENTS[a["componentType"]]).itemsize if type(count) is int else -1
        if not 0 < count <= MAX_VERTICES * 3 or type(off) is not int or off < 0 or off + need > spans[view][1]:
            raise SceneError(f"{what}: accessor {i} reads outside its buffer view")
        used.add(i)
        view_users.append(view)
        return a

    eyes = [(0.0, 0.0)] + [(sx * meta["parallax"]["max_offset"], sy * meta["parallax"]["max_offset"])
                           for sx, sy in ((1, 0), (-1, 0), (0, 1), (0, -1))]  # the photo's viewpoint and the extremes
    half = np.array([math.tan(math.radians(meta["fov_x_deg"]) / 2), math.tan(math.radians(meta["fov_y_deg"]) / 2)])
    frame = 16.0 * half[0] * half[1]  # (the box the coverage is clipped to)
    covered, faces_total = [0.0] * len(eyes), 0
    for mesh in meshes:
        prims = mesh["primitives"]
        if not isinstance(prims, list) or len(prims) != 1 or prims[0].get("mode", 4) != 4:
            raise SceneError("a mesh not as photo3d writes it (one primitive of triangles)")
        prim = prims[0]
        _index(prim.get("material", 0), len(materials), "a primitive names material")
        attrs = prim["attributes"]
        if set(attrs) - set(_ATTRIBUTES) or not {"POSITION", "TEXCOORD_0"} <= set(attrs):
            raise SceneError(f"a mesh with attributes {sorted(attrs)}")
        counts = {acc(attrs[name], name, ctypes, kind)["count"] for name, (ctypes, kind) in _ATTRIBUTES.items() if name in attrs}
        if any(accessors[attrs[name]].get("normalized", False) is not (name != "POSITION") for name in attrs):
            raise SceneError("texture coordinates or colours that are not normalized: not as photo3d writes them")
        acc(prim["indices"], "indices", {5123, 5125}, "SCALAR")
        # (each buffer view as the kind it is used as: indices, vertices)
        if views[accessors[prim["indices"]]["bufferView"]].get("target", 34963) != 34963 or any(
                views[accessors[attrs[name]]["bufferView"]].get("target", 34962) != 34962 for name in attrs):
            raise SceneError("a buffer view used as another kind than it says")
        if len(counts) != 1 or counts.pop() > MAX_VERTICES:
            raise SceneError("a mesh whose vertices have not one position, texture coordinate (and colour) each")
        pos = _accessor(tree, binary, attrs["POSITION"])
        if not np.isfinite(pos).all() or (pos[:, 2] >= 0).any():
            raise SceneError("positions that are not numbers in front of the camera")
        bounds = accessors[attrs["POSITION"]]
        lo, hi = (np.asarray(bounds.get(k, ()), np.float64) for k in ("min", "max"))
        if lo.shape != (3,) or hi.shape != (3,) or (pos.min(axis=0) < lo - 1e-4 * (1 + abs(lo))).any() \
                or (pos.max(axis=0) > hi + 1e-4 * (1 + abs(hi))).any():
            raise SceneError("positions outside the bounds their accessor gives (glTF requires them)")
        faces = _accessor(tree, binary, prim["indices"]).reshape(-1, 3).astype(np.int64)
        if faces.size and (faces.max() >= len(pos)):
            raise SceneError(f"a face names vertex {int(faces.max())} of {len(pos)}")
        ib = accessors[prim["indices"]]
        if faces.size and any(k in ib and ib[k] != [int(f(faces))] for k, f in (("min", np.min), ("max", np.max))):
            raise SceneError("indices outside the bounds their accessor gives")
        for k, (ex, ey) in enumerate(eyes):
            q = (pos[:, :2] - np.array([ex, ey], np.float32)) / -pos[:, 2:3]  # on the image plane at distance 1
            tri = q[faces]  # (m, 3, 2)
            # what the rasteriser visits: each triangle's bounding box within the frame (twice the
            # field of view each way: the dolly zoom widens it)
            lo = np.maximum(tri.min(axis=1), -2 * half)
            hi = np.minimum(tri.max(axis=1), 2 * half)
            covered[k] += float(np.prod(np.clip(hi - lo, 0, None), axis=1).sum())
        faces_total += len(faces)
    if len(set(view_users)) != len(view_users):
        raise SceneError("parts that read the same bytes: not as photo3d writes them")
    if not faces_total:
        raise SceneError("no triangles")
    if max(covered) > MAX_OVERDRAW * frame:
        raise SceneError(f"triangles that cover the frame {max(covered) / frame:.1f} times over")



def _accessor(tree: dict, binary: bytes, index: int) -> np.ndarray:
    acc = tree["accessors"][index]
    view = tree["bufferViews"][acc["bufferView"]]
    dtype = np.dtype(_COMPONENTS[acc["componentType"]]).newbyteorder("<")
    width = _WIDTH[acc["type"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    a = np.frombuffer(binary, dtype, acc["count"] * width, start).reshape(acc["count"], width)
    if acc.get("normalized"):
        a = a.astype(np.float32) / float(np.iinfo(dtype).max)
    return a


def _texture_bytes(tree: dict, binary: bytes) -> Iterator[bytes]:
    """Each texture's encoded bytes (of a GLB :func:`validate` passed: its indices and views are checked)."""
    for tex in tree.get("textures", []):
        view = tree["bufferViews"][tree["images"][tex["source"]]["bufferView"]]
        off = view.get("byteOffset", 0)
        yield binary[off:off + view["byteLength"]]


def check_textures(tree: dict, binary: bytes, max_megapixels: float | None) -> None:
    """ValueError saying why when a texture of a GLB (``read_glb``'s parts) kept from an earlier run
    is not an image, is over ``max_megapixels`` (from its header, before decoding: a few KB of PNG
    can claim gigapixels), or does not decode (found here, in Pillow, which prints nothing: the
    renderer's OpenCV decoder prints libpng's complaints to stderr)."""
    from .io import open_image, over_pixel_limit, pixel_limit_hint

    try:
        widest, tall = 0, 0
        for data in _texture_bytes(tree, binary):
            with open_image(io.BytesIO(data), GLTF_IMAGE_FORMATS) as im:
                w, h = im.size
                widest, tall = max(widest, w), tall + h
                if im.format != "JPEG":  # (from the header: a PNG claiming gigapixels is not photo3d's either)
                    raise ValueError(f"a {im.format} texture: photo3d writes JPEG")
                if over := over_pixel_limit(w, h, max_megapixels):  # (a JPEG, as photo3d writes: too large, not damaged)
                    raise TextureTooLarge(f"its texture is too large ({over}){pixel_limit_hint(w, h, max_megapixels)}")
                if im.getexif().get(0x0112, 1) != 1:  # (the page's browser turned it, the videos did not: helper-108)
                    raise ValueError("a texture with an EXIF orientation, which photo3d never writes")
                if max(w, h) > defaults.MAX_TEXTURE_LIMIT:
                    raise ValueError(f"a texture of {w}×{h}: photo3d writes at most {defaults.MAX_TEXTURE_LIMIT} px a side")
                # (the renderer stacks them into one atlas: 32000×8 over 8×32000 took 3.2 GB)
                if max_megapixels is not None and widest * tall > 2e6 * max_megapixels:
                    raise ValueError(f"textures that stack to {widest}×{tall}, over twice --max-megapixels {max_megapixels:g}")
                try:
                    im.load()
                except (OSError, SyntaxError, EOFError):
                    raise ValueError("a texture that does not decode") from None
    except (KeyError, IndexError, TypeError) as e:
        raise ValueError(f"textures not as photo3d writes them ({type(e).__name__}: {e})") from None
    except OSError as e:
        raise ValueError(f"a texture that is not an image ({type(e).__name__})") from None


class TextureTooLarge(ValueError):
    """A GLB's texture over ``--max-megapixels``: whole, but too large to render here."""


class SceneError(ValueError):
    """A GLB that is not a whole 3D photo as photo3d writes them (one kept from an earlier run)."""


def _decode(data: bytes) -> np.ndarray:
    """A texture's RGB pixels, decoded by Pillow (silent: OpenCV's libjpeg printed "Corrupt JPEG
    data" to the terminal); :class:`SceneError` when it does not decode whole."""
    from .io import open_image

    try:
        with open_image(io.BytesIO(data), GLTF_IMAGE_FORMATS) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, EOFError, ValueError):
        raise SceneError("a texture that does not decode") from None


def scene_from_glb(glb: bytes) -> Scene:
    """The meshes, textures and viewer metadata of a GLB written by :func:`photo3d.export.to_glb`
    (one from elsewhere: :func:`photo3d.pipeline.check_existing_glb` first); :class:`SceneError`
    saying why for one that is not whole."""
    try:
        return _scene(glb)
    except SceneError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, struct.error) as e:
        raise SceneError(f"not as photo3d writes it ({type(e).__name__}: {e})") from None


def _scene(glb: bytes) -> Scene:
    tree, binary = read_glb(glb)  # (this run's own, or one checked by validate at its door)
    textures = []
    for data in _texture_bytes(tree, binary):
        textures.append(_decode(data))
    meshes = []
    for mesh in tree["meshes"]:  # (one primitive each, node i shows mesh i: see validate)
        prim = mesh["primitives"][0]
        attrs = prim["attributes"]
        alpha = _accessor(tree, binary, attrs["COLOR_0"])[:, 3].astype(np.float32) if "COLOR_0" in attrs else None
        tex = tree["materials"][prim.get("material", 0)]["pbrMetallicRoughness"]["baseColorTexture"]["index"]
        meshes.append(SceneMesh(
            positions=_accessor(tree, binary, attrs["POSITION"]).astype(np.float32),
            uv=_accessor(tree, binary, attrs["TEXCOORD_0"]).astype(np.float32),
            alpha=alpha,
            faces=_accessor(tree, binary, prim["indices"]).reshape(-1, 3).astype(np.int64),
            texture=tex,
        ))
    return Scene(meshes, textures, tree["extras"]["photo3d"])


def _check_meta(meta: dict) -> None:
    """The viewer metadata the renderer reads, in the ranges photo3d writes (1e308 x 1e-308 pixels
    divided by zero, a focus at the dolly zoom's travel too, a depth range of [1e300, 1e301] zoomed 655x)."""
    p = meta["parallax"]
    numbers = [meta["fov_x_deg"], meta["fov_y_deg"], *meta["source_size"], p["max_offset"], p["focus_depth"],
               *p["inverse_depth_range"], p.get("strength", 0.04)]
    if len(meta["source_size"]) != 2 or len(p["inverse_depth_range"]) != 2:
        raise SceneError("its metadata is not as photo3d writes it (sizes)")
    # (an int of 400 digits is no float: math.isfinite raised OverflowError, an internal error; helper-77)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1e300 for v in numbers) \
            or not 0 < meta["fov_x_deg"] < 180 or not 0 < meta["fov_y_deg"] < 180:
        raise SceneError("its metadata is not as photo3d writes it (not a number where one belongs)")
    w, h = meta["source_size"]
    lo, hi = p["inverse_depth_range"]
    if "cover_zoom" in p and not (isinstance(p["cover_zoom"], (int, float)) and not isinstance(p["cover_zoom"], bool)
                                  and 1 <= p["cover_zoom"] <= MAX_COVER_ZOOM):
        raise SceneError("its metadata is not as photo3d writes it (cover zoom)")
    if not (type(w) is int and type(h) is int and 1 <= w <= 1_000_000 and 1 <= h <= 1_000_000 and 1e-4 <= lo <= hi <= 1.01
            and p["max_offset"] <= 10 and p["focus_depth"] <= 1e4 and p.get("strength", 0.04) <= 1):
        raise SceneError("its metadata is not as photo3d writes it (out of range)")


# ---------------------------------------------------------------- camera (as the viewer places it)


@dataclass(frozen=True)
class View:
    """A camera pose: ``x, y`` offset in the viewer's unit disc (1 = the file's full parallax),
    ``forward`` in scene units toward the scene, ``fov_scale`` multiplies tan(fov / 2)."""

    x: float = 0.0
    y: float = 0.0
    forward: float = 0.0
    fov_scale: float = 1.0
    # a stereo eye: moved this much (same unit as x) along the camera's own right axis, looking the
    # same way, its image shifted so the focus point stays put (parallel cameras, off-axis frusta:
    # no vertical disparity, which two cameras each aimed at the focus give in the corners)
    eye: float = 0.0


def dolly_zoom_extra(scene: "Scene") -> float:
    """Further zoom the dolly-zoom path needs: moving in with a wider field of view shrinks
    whatever lies behind the focus plane; the farthest point shrinks by this factor at most."""
    focus = scene.meta["parallax"]["focus_depth"]
    far = max(focus, *(float(-m.positions[:, 2].min()) for m in scene.meshes))
    d = zoom_travel(scene.meta)
    shrink = (focus - d) / focus * far / (far - d)
    return 1.0 / shrink


def view_projection(meta: dict, view: View, width: int, height: int, zoom: float = 1.0) -> np.ndarray:
    """4 x 4 clip-from-scene matrix of ``view`` for a ``width`` x ``height`` frame, the viewer's
    framing (``place()`` and ``layout()`` in viewer.src.js) further zoomed by ``zoom``."""
    p = meta["parallax"]
    x, y = view.x, view.y
    r = math.hypot(x, y)
    if r > 1:
        x, y = x / r, y / r
    t = p["max_offset"]
    centre = np.array([x * t, y * t, -view.forward])
    focus = np.array([0.0, 0.0, -p["focus_depth"]])
    rot = look_at(centre, focus)
    eye = centre + view.eye * t * rot[0]  # (rot's first row: the camera's right axis)
    vm = np.eye(4)
    vm[:3, :3] = rot
    vm[:3, 3] = -rot @ eye
    tx, ty = math.tan(math.radians(meta["fov_x_deg"]) / 2), math.tan(math.radians(meta["fov_y_deg"]) / 2)
    k = cover_zoom(meta) * zoom
    aspect = width / height
    half_y = ty / k if aspect <= tx / ty else tx / k / aspect
    half_y *= view.fov_scale
    f = 1.0 / half_y
    pm = np.zeros((4, 4))
    pm[0, 0], pm[1, 1] = f / aspect, f
    if view.eye:  # the focus point, at (-eye t, 0, -distance) in this eye's frame, back to the centre
        pm[0, 2] = -pm[0, 0] * view.eye * t / float(np.linalg.norm(focus - centre))
    pm[2, 2], pm[2, 3] = (ZFAR + ZNEAR) / (ZNEAR - ZFAR), 2 * ZFAR * ZNEAR / (ZNEAR - ZFAR)
    pm[3, 2] = -1.0
    return pm @ vm


# ---------------------------------------------------------------- camera paths


def path_views(path: str, frames: int, meta: dict | None = None) -> list[View]:
    """``frames`` camera poses along ``path``, a seamless loop (frame ``frames`` would be frame 0
    again) that starts at the photo's own viewpoint (frame 0 reproduces the photo):

    - ``circle``: round an ellipse through the centre, (0.9 sin t, 0.3 (1 - cos t)) of the full
      offset (sideways over most of the range, up and back down);
    - ``swing``: side to side, sin t;
    - ``zoom``: in and out, forward (1 - cos t) / 2 x :func:`zoom_travel` (``ZOOM_TRAVEL`` max_offset);
    - ``dolly-zoom``: the same travel while the field of view widens to keep the focus plane's
      size (the "vertigo" effect).
    """
    if path not in PATHS:
        raise ValueError(f"unknown camera path {path!r} (choose {', '.join(PATHS)})")
    out = []
    for i in range(frames):
        t = 2 * math.pi * i / frames
        c = (1 - math.cos(t)) / 2  # 0 -> 1 -> 0
        travel = c * zoom_travel(meta)
        if path == "circle":
            out.append(View(0.9 * math.sin(t), 0.6 * c))
        elif path == "swing":
            out.append(View(math.sin(t), 0.0))
        elif path == "zoom":
            out.append(View(forward=travel))
        else:
            focus = (meta or {}).get("parallax", {}).get("focus_depth", 2.0)
            out.append(View(forward=travel, fov_scale=focus / (focus - travel)))
    return out


# ---------------------------------------------------------------- the rasteriser


def _user_cache() -> None:
    """Where numba keeps the compiled rasteriser: ``NUMBA_CACHE_DIR`` when set, else the user's cache
    (``$XDG_CACHE_HOME/photo3d/numba``, ``~/.cache/photo3d/numba``).  numba's own default is the
    package's ``__pycache__`` wherever that is writable: files no package owns, which ``pip uninstall``
    left behind (after it, ``import photo3d`` found an empty namespace package), and, under sudo, files
    in a system site-packages.  (numba's setting is per process: other code's cached functions in a
    process that imports photo3d are kept there too.)"""
    if numba.config.CACHE_DIR:
        return
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    if os.path.isabs(base):  # (no home at all: numba's own choice)
        numba.config.CACHE_DIR = os.path.join(base, "photo3d", "numba")


_user_cache()


def _njit(**options):
    """``numba.njit`` with its on-disk cache (compiled once, ~3-8 s), or without it where there is
    nowhere to keep one: photo3d installed read-only (a system site-packages, a container image)
    and no writable home or NUMBA_CACHE_DIR.  numba refuses such a function with a RuntimeError when
    it is defined, which was every share command's crash (a 100-line traceback, 'cannot cache
    function '_clip_span': no locator available'); now it compiles on each run instead."""
    def wrap(f):
        try:
            return numba.njit(cache=True, **options)(f)
        except RuntimeError:
            return numba.njit(cache=False, **options)(f)
    return wrap


def _raster(*args) -> None:
    """:func:`raster`, compiled without its on-disk cache where the cache cannot be written (a full
    disk, a file size limit: numba's failed save ended the video with "cannot write (File too
    large)" though the compiled code was fine, before any frame)."""
    try:
        raster(*args)
    except OSError:
        from numba.core.caching import NullCache

        if isinstance(getattr(raster, "_cache", None), NullCache):
            raise
        raster._cache = NullCache()  # (compiled again, kept in memory only)
        raster(*args)


@_njit(inline="always")
def _clip_span(a: float, r: float, lo: float, hi: float) -> tuple[float, float]:
    """[lo, hi] cut to where a x + r >= 0 (a little tolerance: no cracks between neighbours)."""
    if a > 0.0:
        return max(lo, (-r - 1e-7) / a), hi
    if a < 0.0:
        return lo, min(hi, (-r - 1e-7) / a)
    return (lo, hi) if r >= -1e-7 else (lo, lo - 1.0)


@_njit(nogil=True, fastmath=True)
def raster(sx, sy, iw, alpha, u, v, faces, face_tex, face_soft, tex_box, W, H, zbuf, mx, my):
    """Draw every face into the z-buffer ``zbuf`` and the atlas coordinates ``mx``, ``my`` (flat
    H x W arrays); compiled by numba on first use and cached on disk."""
    # zbuf holds 1/w (larger = nearer); 1/w, u/w, v/w and alpha/w are linear in screen space
    for f in range(faces.shape[0]):
        i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
        w0, w1, w2 = iw[i0], iw[i1], iw[i2]
        if w0 <= 0.0 or w1 <= 0.0 or w2 <= 0.0:
            continue
        x0, y0, x1, y1, x2, y2 = sx[i0], sy[i0], sx[i1], sy[i1], sx[i2], sy[i2]
        d = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if abs(d) < 1e-12:
            continue
        xa = max(0, int(np.ceil(min(x0, x1, x2) - 0.5)))
        xb = min(W - 1, int(np.floor(max(x0, x1, x2) - 0.5)))
        ya = max(0, int(np.ceil(min(y0, y1, y2) - 0.5)))
        yb = min(H - 1, int(np.floor(max(y0, y1, y2) - 0.5)))
        if xa > xb or ya > yb:
            continue
        # barycentric planes l_i = a_i x + b_i y + c_i (x, y: pixel centres)
        a1, b1 = (y2 - y0) / d, -(x2 - x0) / d
        a2, b2 = -(y1 - y0) / d, (x1 - x0) / d
        c1, c2 = -(a1 * x0 + b1 * y0), -(a2 * x0 + b2 * y0)
        a0, b0, c0 = -a1 - a2, -b1 - b2, 1.0 - c1 - c2
        # screen-linear planes of 1/w, u/w, v/w (and alpha/w)
        t = face_tex[f]
        ox, oy, sw, sh = tex_box[t, 0], tex_box[t, 1], tex_box[t, 2], tex_box[t, 3]
        g0, g1, g2 = w0, w1, w2
        sX, sY, sC = a1 * (g1 - g0) + a2 * (g2 - g0), b1 * (g1 - g0) + b2 * (g2 - g0), g0 + c1 * (g1 - g0) + c2 * (g2 - g0)
        g0, g1, g2 = w0 * (u[i0] * sw + ox - 0.5), w1 * (u[i1] * sw + ox - 0.5), w2 * (u[i2] * sw + ox - 0.5)
        uX, uY, uC = a1 * (g1 - g0) + a2 * (g2 - g0), b1 * (g1 - g0) + b2 * (g2 - g0), g0 + c1 * (g1 - g0) + c2 * (g2 - g0)
        g0, g1, g2 = w0 * (v[i0] * sh + oy - 0.5), w1 * (v[i1] * sh + oy - 0.5), w2 * (v[i2] * sh + oy - 0.5)
        vX, vY, vC = a1 * (g1 - g0) + a2 * (g2 - g0), b1 * (g1 - g0) + b2 * (g2 - g0), g0 + c1 * (g1 - g0) + c2 * (g2 - g0)
        soft = face_soft[f]
        g0, g1, g2 = w0 * (alpha[i0] - 0.5), w1 * (alpha[i1] - 0.5), w2 * (alpha[i2] - 0.5)
        aX, aY, aC = a1 * (g1 - g0) + a2 * (g2 - g0), b1 * (g1 - g0) + b2 * (g2 - g0), g0 + c1 * (g1 - g0) + c2 * (g2 - g0)
        for y in range(ya, yb + 1):
            cy = y + 0.5
            # the span of x where all three l_i >= 0 on this row
            lo, hi = _clip_span(a0, b0 * cy + c0, xa + 0.5, xb + 0.5)
            lo, hi = _clip_span(a1, b1 * cy + c1, lo, hi)
            lo, hi = _clip_span(a2, b2 * cy + c2, lo, hi)
            if hi < lo:
                continue
            xs, xe = max(xa, int(np.ceil(lo - 0.5))), min(xb, int(np.floor(hi - 0.5)))
            if xs > xe:
                continue
            cx = xs + 0.5
            s = sX * cx + sY * cy + sC
            qu = uX * cx + uY * cy + uC
            qv = vX * cx + vY * cy + vC
            qa = aX * cx + aY * cy + aC
            k = y * W + xs
            for _ in range(xs, xe + 1):
                if s > zbuf[k] and (not soft or qa >= 0.0):  # z test; alphaMode MASK, cutoff 0.5
                    zbuf[k] = s
                    inv = 1.0 / s
                    mx[k] = qu * inv
                    my[k] = qv * inv
                s += sX
                qu += uX
                qv += vX
                qa += aX
                k += 1


class Renderer:
    """Renders ``scene`` into ``width`` x ``height`` RGB frames (see the module docstring)."""

    def __init__(self, scene: Scene, width: int, height: int, supersample: int = 2, zoom: float = 1.0,
                 clear: tuple[int, int, int] = (0, 0, 0)):
        self.scene, self.width, self.height = scene, int(width), int(height)
        self.ss, self.zoom, self.clear = int(supersample), float(zoom), np.array(clear, np.uint8)
        self.W, self.H = self.width * self.ss, self.height * self.ss
        pos, uv, alpha, faces, tex, soft = [], [], [], [], [], []
        base = 0
        for m in scene.meshes:
            a = m.alpha if m.alpha is not None else np.ones(len(m.positions), np.float32)
            pos.append(m.positions)
            uv.append(m.uv)
            alpha.append(a)
            faces.append(m.faces + base)
            tex.append(np.full(len(m.faces), m.texture, np.int8))
            soft.append((a[m.faces] < 1.0).any(1))  # only these need the alpha test
            base += len(m.positions)
        self.pos = np.concatenate(pos).astype(np.float64)
        uv = np.concatenate(uv).astype(np.float64)
        self.u, self.v = np.ascontiguousarray(uv[:, 0]), np.ascontiguousarray(uv[:, 1])
        self.alpha = np.concatenate(alpha).astype(np.float64)
        self.faces = np.ascontiguousarray(np.concatenate(faces).astype(np.int32))
        self.face_tex = np.concatenate(tex)
        self.face_soft = np.concatenate(soft)
        # the photo's texture pre-filtered to about one texel per sample at the viewer's framing
        # (what the viewer's mipmaps do); the background's is at the geometry's working
        # resolution (<= 768 px), already coarser than the frames
        # (a frame narrower than the photo, beyond frame_size's rounding, shows the centre of its
        # full height: a panorama's video, see defaults.MAX_ASPECT)
        aspect = scene.meta["source_size"][0] / scene.meta["source_size"][1]
        cropped = self.height * aspect > self.width + 1.5 * (1 + aspect)
        samples = (self.H * aspect if cropped else self.W) * cover_zoom(scene.meta) * self.zoom  # across the photo's width
        textures = []
        for i, t in enumerate(scene.textures):
            s = samples / t.shape[1]
            if i == 0 and s < 0.999:
                t = cv2.resize(t, (max(1, round(t.shape[1] * s)), max(1, round(t.shape[0] * s))), interpolation=cv2.INTER_AREA)
            textures.append(t)
        # one atlas for a single cv2.remap per frame: the textures stacked, each with a 1-texel
        # border of its own edge (clamp-to-edge), and a patch of the clear colour
        boxes, y = [], 0
        for t in textures:
            boxes.append((1, y + 1, t.shape[1], t.shape[0]))
            y += t.shape[0] + 2
        atlas = np.zeros((y + 3, max([t.shape[1] for t in textures] + [1]) + 2, 3), np.uint8)
        for t, (bx, by, bw, bh) in zip(textures, boxes):
            atlas[by - 1 : by + bh + 1, bx - 1 : bx + bw + 1] = cv2.copyMakeBorder(t, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
        atlas[y:, :3] = self.clear
        self.atlas = atlas
        self.clear_xy = (1.0, y + 1.0)
        self.tex_box = np.array(boxes, np.float64).reshape(-1, 4)
        self._local = threading.local()  # per-thread frame buffers: frames may render in parallel

    def render(self, view: View, depth: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """One RGB frame (uint8, height x width x 3) seen from ``view``; with ``depth``, also the
        inverse depth 1/w of each pixel (float32, 0 where nothing was drawn)."""
        W, H = self.W, self.H
        mvp = view_projection(self.scene.meta, view, self.width, self.height, self.zoom)
        p = self.pos @ mvp[:, :3].T + mvp[:, 3]
        w = p[:, 3]
        ok = w > ZNEAR
        iw = np.where(ok, 1.0 / np.where(ok, w, 1.0), -1.0)
        sx = (p[:, 0] * iw + 1) * 0.5 * W  # pixel (i, j) covers [i, i+1) x [j, j+1), centre at +0.5
        sy = (1 - p[:, 1] * iw) * 0.5 * H
        bufs = getattr(self._local, "buffers", None)
        if bufs is None:
            bufs = self._local.buffers = tuple(np.empty(W * H, np.float32) for _ in range(3))
        zbuf, mx, my = bufs
        zbuf.fill(0.0)
        mx.fill(self.clear_xy[0])
        my.fill(self.clear_xy[1])
        _raster(sx, sy, iw, self.alpha, self.u, self.v, self.faces, self.face_tex, self.face_soft,
                self.tex_box, W, H, zbuf, mx, my)
        out = cv2.remap(self.atlas, mx.reshape(H, W), my.reshape(H, W), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if self.ss > 1:
            out = cv2.resize(out, (self.width, self.height), interpolation=cv2.INTER_AREA)
        if not depth:
            return out
        inv = zbuf.reshape(H, W)
        if self.ss > 1:
            inv = cv2.resize(inv, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return out, inv.copy()

    def frames(self, views: list[View], threads: int = 2, ahead: int = 4) -> Iterator[np.ndarray]:
        """The frames of ``views`` in order, rendered by ``threads`` threads (the triangle loop
        and OpenCV release the GIL), at most ``ahead`` frames in advance."""
        if threads <= 1:
            yield from (self.render(v) for v in views)
            return
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            pending: deque = deque()
            for v in views:
                pending.append(pool.submit(self.render, v))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()


def shown_size(size: tuple[int, int], max_aspect: float | None = None) -> tuple[float, float]:
    """The part of a ``size`` = (width, height) photo that frames show: all of it, or when it is
    wider than ``max_aspect`` (a panorama), or taller than its inverse, its centre at that aspect
    ratio (the renderer's framing crops the rest: :func:`view_projection`)."""
    w, h = size
    if max_aspect is None:
        return float(w), float(h)
    a = min(max(w / h, 1.0 / max_aspect), max_aspect)
    return min(w, h * a), min(h, w / a)


def frame_size(scene: Scene, longer_side: int, even: bool = True, max_aspect: float | None = None) -> tuple[int, int]:
    """(width, height) of frames with the photo's aspect ratio (at most ``max_aspect``: see
    :func:`shown_size`) and the given longer side (even numbers: what H.264 in yuv420p needs)."""
    w, h = shown_size(scene.meta["source_size"], max_aspect)
    s = longer_side / max(w, h)
    fw, fh = max(2, round(w * s)), max(2, round(h * s))
    if even:
        fw, fh = fw - fw % 2, fh - fh % 2
    return fw, fh

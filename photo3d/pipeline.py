"""``photo3d convert``: photo -> depth -> layered depth image -> inpainting -> meshes -> GLB.

Each stage is a named function over a small artifact; :func:`convert_file` chains them and
times each one.  Geometry is built at a *working resolution* (``working_side`` pixels on the
longer side; the depth network sees far less anyway) while the texture keeps the photo's own
resolution (up to ``max_texture_side``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import InputFileError, UsageError
from .export import Camera, ExportOptions, MeshData, camera_for, encode_jpeg, preload, to_glb
from .inpaint import Background, inpaint_background
from .io import DEFAULT_MAX_MEGAPIXELS, Photo, load_image, write_bytes_atomic
from .layers import LayeredDepth, LayerParams, build_layers, find_cuts, sanitize_inverse_depth
from .mesh import LayerMesh, grid_to_image, triangulate, unproject

ATLAS_GAP = 16  # pixels between atlas regions (mipmaps must not bleed across)


@dataclass
class ConvertOptions:
    model: Path | None = None  # TorchScript file or Tiefenrausch folder; None = bundled model
    depth: Path | None = None  # bring your own depth map (.png 16-bit / .npy, larger = nearer)
    html: bool = False  # also write NAME.html, the offline viewer
    working_side: int = 768  # geometry resolution (longer side)
    max_texture_side: int = 4096
    jpeg_quality: int = 80
    parallax: float = 0.04  # nearest vs farthest point move by this share of the width at full offset
    depth_ratio: float = 10.0  # farthest / nearest depth when the depth is only known up to an affine map
    tol_px: float = 1.0  # largest geometric error of the simplified mesh, working pixels at full parallax
    layered: bool = True  # False: one stretched single-layer mesh (the classic baseline)
    mirror: bool = True  # re-texture holes by mirroring the background across the edge
    snap_edges: bool | None = None  # snap depth edges to colour edges; None = for model depth only
    max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS
    layer_params: LayerParams = field(default_factory=LayerParams)


@dataclass
class Geometry:
    """Inverse depth (1/Z) at the working resolution, the camera, and the viewer's parallax."""

    inv: np.ndarray  # (h, w) float32 > 0
    camera: Camera
    max_offset: float  # camera offset (scene units) the viewer allows at full parallax

    @property
    def shift_px_per_inv(self) -> float:
        """Working pixels a unit of inverse depth moves at the largest camera offset."""
        h, w = self.inv.shape
        return self.camera.focal_px * (w / self.camera.width) * self.max_offset


@dataclass
class Meshes:
    layers: list[tuple[str, LayerMesh, np.ndarray]]  # (name, mesh, per-vertex inverse depth)
    grid_shape: tuple[int, int]


# ---------------------------------------------------------------- stages


def working_shape(width: int, height: int, side: int) -> tuple[int, int]:
    """(h, w) of the vertex grid: longer side <= ``side``, each side 1 + a multiple of 32 (or 8)."""
    s = min(1.0, side / max(width, height))
    step = 32 if max(width, height) * s >= 512 else 8
    h = max(step, round((height * s - 1) / step) * step) + 1
    w = max(step, round((width * s - 1) / step) * step) + 1
    return h, w


def load_depth_file(path: Path, photo: Photo) -> np.ndarray:
    from .depth.maps import load_depth_map

    d = np.nan_to_num(load_depth_map(path).astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    dh, dw = d.shape
    if abs(dw / dh - photo.width / photo.height) > 0.02 * photo.width / photo.height:
        raise InputFileError(f"depth map is {dw}x{dh}, not the photo's aspect ratio ({photo.width}x{photo.height})", path)
    lo, hi = float(d.min()), float(d.max())
    return ((d - lo) / (hi - lo) if hi > lo else np.zeros_like(d)).astype(np.float32)


def working_photo(photo: Photo, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    return cv2.resize(photo.rgb, (w, h), interpolation=cv2.INTER_AREA)


def estimate_depth(photo: Photo, small: np.ndarray, opts: ConvertOptions) -> tuple[np.ndarray, dict]:
    """Normalized disparity in [0, 1] (larger = nearer) at the working size of ``small``."""
    h, w = small.shape[:2]
    if opts.depth is not None:
        d = load_depth_file(Path(opts.depth), photo)
        return cv2.resize(d, (w, h), interpolation=cv2.INTER_AREA), {"depth": str(opts.depth)}
    from .depth.runtime import load_model

    model = load_model(opts.model)
    res = model.predict_result(small, upsample="bilinear")  # edges are snapped to the photo in layers
    return res.disparity, {"depth": model.name}


def to_geometry(disparity: np.ndarray, camera: Camera, opts: ConvertOptions) -> Geometry:
    """Normalized disparity -> inverse depth in [1/depth_ratio, 1] and the parallax range."""
    lo = 1.0 / opts.depth_ratio
    inv = (lo + np.clip(disparity, 0, 1) * (1.0 - lo)).astype(np.float32)
    # nearest vs farthest shift = parallax * width  <=>  focal * offset * (1 - lo) = parallax * width
    offset = opts.parallax * camera.width / (camera.focal_px * (1.0 - lo))
    return Geometry(inv, camera, offset)


def layer_depth(geo: Geometry, opts: ConvertOptions, photo_small: np.ndarray | None = None) -> LayeredDepth:
    if not opts.layered:
        inv = sanitize_inverse_depth(geo.inv)
        z = np.zeros(inv.shape, bool)
        cuts = find_cuts(inv, 0.0, opts.layer_params)  # threshold 0 px => jump test never passes
        return LayeredDepth(inv, cuts, z, z.copy(), z.copy(), z.copy(), inv.copy())
    snap = opts.snap_edges if opts.snap_edges is not None else opts.depth is None
    return build_layers(geo.inv, geo.shift_px_per_inv, opts.layer_params, rgb=photo_small if snap else None)


def inpaint(photo_small: np.ndarray, ldi: LayeredDepth, opts: ConvertOptions) -> Background:
    return inpaint_background(photo_small, ldi, mirror=opts.mirror, rel=opts.layer_params.rel_jump)


def build_meshes(geo: Geometry, ldi: LayeredDepth, bg: Background, opts: ConvertOptions) -> Meshes:
    tol = opts.tol_px / max(geo.shift_px_per_inv, 1e-9)
    shape = ldi.inv.shape
    front = triangulate(ldi.inv, np.ones(shape, bool), ldi.cuts, tol, soft_edge=ldi.near if opts.layered else None)
    out = [("visible", front, ldi.inv[front.grid_yx[:, 0], front.grid_yx[:, 1]])]
    if bg.mask.any():
        cuts = find_cuts(bg.inv, geo.shift_px_per_inv, opts.layer_params)
        back = triangulate(bg.inv, bg.mask, cuts, tol)
        if len(back.faces):
            out.append(("background", back, bg.inv[back.grid_yx[:, 0], back.grid_yx[:, 1]]))
    return Meshes(out, shape)


@dataclass
class Atlas:
    rgb: np.ndarray  # (H, W, 3) uint8
    photo_rect: tuple[int, int, int, int]  # x, y, w, h of the photo region
    bg_rect: tuple[int, int, int, int]  # x, y, w, h of the background-layer region


def build_atlas(photo: Photo, bg: Background, max_side: int) -> Atlas:
    """The photo at up to ``max_side`` plus the background layer's colours below (or beside) it."""
    H, W = photo.height, photo.width
    gh, gw = bg.rgb.shape[:2]
    below = W >= H
    # background region: working resolution, no larger than the photo's side it sits along
    bs = min(1.0, (W if below else H) / (gw if below else gh))
    bw, bh = max(1, round(gw * bs)), max(1, round(gh * bs))
    total_w = W if below else W + ATLAS_GAP + bw
    total_h = H + ATLAS_GAP + bh if below else H
    s = min(1.0, max_side / max(total_w, total_h))
    tw, th = max(1, round(W * s)), max(1, round(H * s))
    bw, bh = max(1, round(bw * s)), max(1, round(bh * s))
    gap = round(ATLAS_GAP * s) or 1
    if below:  # rounding must not push the atlas past max_side
        bh = max(1, min(bh, max_side - th - gap))
    else:
        bw = max(1, min(bw, max_side - tw - gap))
    aw, ah = (max(tw, bw), th + gap + bh) if below else (tw + gap + bw, max(th, bh))
    atlas = np.full((ah, aw, 3), 128, np.uint8)
    atlas[:th, :tw] = photo.rgb if (tw, th) == (W, H) else cv2.resize(photo.rgb, (tw, th), interpolation=cv2.INTER_AREA)
    bx, by = (0, th + gap) if below else (tw + gap, 0)
    if bg.mask.any():
        keep = cv2.dilate(bg.mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=6).astype(bool)
        col = np.where(keep[:, :, None], bg.rgb, np.uint8(128))
        atlas[by : by + bh, bx : bx + bw] = cv2.resize(col, (bw, bh), interpolation=cv2.INTER_LINEAR)
    return Atlas(atlas, (0, 0, tw, th), (bx, by, bw, bh))


def mesh_data(meshes: Meshes, geo: Geometry, atlas: Atlas) -> list[MeshData]:
    ah, aw = atlas.rgb.shape[:2]
    out = []
    for name, m, inv in meshes.layers:
        st = grid_to_image(m.grid_yx, meshes.grid_shape)
        x, y, w, h = atlas.bg_rect if name == "background" else atlas.photo_rect
        uv = np.stack([(x + st[:, 0] * w) / aw, (y + st[:, 1] * h) / ah], 1).astype(np.float32)
        verts = unproject(st, inv, geo.camera.focal_px, (geo.camera.width, geo.camera.height))
        out.append(MeshData(name, verts, m.faces, uv, m.alpha))
    return out


def export_glb(data: list[MeshData], atlas: Atlas, geo: Geometry, opts: ConvertOptions, extras: dict) -> bytes:
    jpeg = encode_jpeg(atlas.rgb, opts.jpeg_quality)
    lo, hi = float(np.percentile(geo.inv, 1)), float(np.percentile(geo.inv, 99))
    extras = {
        "parallax": {"max_offset": geo.max_offset, "inverse_depth_range": [lo, hi], "focus_depth": 2.0 / (lo + hi)},
        **extras,
    }
    return to_glb(data, jpeg, geo.camera, ExportOptions(opts.jpeg_quality, extras))


# ---------------------------------------------------------------- driver


def build_from_geometry(
    photo: Photo, geo: Geometry, opts: ConvertOptions, timings: dict, extras: dict, small: np.ndarray | None = None
) -> tuple[bytes, dict]:
    """Stages after depth: layers, inpainting, meshes, atlas, GLB.  Returns (glb, report)."""

    def timed(name, fn, *a):
        t = time.perf_counter()
        r = fn(*a)
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t
        return r

    h, w = geo.inv.shape
    if small is None:
        small = timed("resize", working_photo, photo, (h, w))
    ldi = timed("layers", layer_depth, geo, opts, small)
    bg = timed("inpaint", inpaint, small, ldi, opts)
    meshes = timed("mesh", build_meshes, geo, ldi, bg, opts)
    atlas = timed("atlas", build_atlas, photo, bg, opts.max_texture_side)
    data = timed("mesh", mesh_data, meshes, geo, atlas)
    glb = timed("export", export_glb, data, atlas, geo, opts, {"layers": len(meshes.layers), **extras})
    report = {
        "layers": len(meshes.layers),
        "hole_area": float(ldi.hole.mean()),
        "discontinuity_px": int(ldi.near.sum()),
        "vertices": int(sum(len(d.vertices) for d in data)),
        "faces": int(sum(len(d.faces) for d in data)),
        "grid": [w, h],
        "texture": [int(atlas.rgb.shape[1]), int(atlas.rgb.shape[0])],
        "glb_bytes": len(glb),
    }
    return glb, report


def convert_file(src: str | Path, dst: str | Path, opts: ConvertOptions | None = None) -> dict[str, Any]:
    """Build the 3D photo of ``src`` and write it to ``dst`` (.glb); returns a per-photo report."""
    opts = opts or ConvertOptions()
    src, dst = Path(src), Path(dst)
    if opts.depth is not None and opts.model is not None:
        raise UsageError("give either --depth or --model, not both")
    if dst.suffix.lower() != ".glb":
        raise UsageError("convert writes .glb files", dst)
    timings: dict[str, float] = {}
    threading.Thread(target=preload, daemon=True).start()  # overlap trimesh's imports with depth
    t = time.perf_counter()
    photo = load_image(src, max_megapixels=opts.max_megapixels)
    timings["read"] = time.perf_counter() - t
    shape = working_shape(photo.width, photo.height, opts.working_side)
    camera = camera_for(photo.width, photo.height, photo.focal_35mm)
    t = time.perf_counter()
    small = working_photo(photo, shape)
    timings["resize"] = time.perf_counter() - t
    t = time.perf_counter()
    disparity, info = estimate_depth(photo, small, opts)
    timings["depth"] = time.perf_counter() - t
    geo = to_geometry(disparity, camera, opts)
    if photo.original_size:
        info["source_size"] = list(photo.original_size)
    glb, report = build_from_geometry(photo, geo, opts, timings, info, small)
    t = time.perf_counter()
    write_bytes_atomic(dst, glb)
    outputs = [str(dst)]
    if opts.html:
        from .viewer import write_viewer

        html = dst.with_suffix(".html")
        write_viewer(html, glb, title=src.stem)
        outputs.append(str(html))
    timings["write"] = time.perf_counter() - t
    report.update(info)
    report["outputs"] = outputs
    report["seconds"] = {k: round(v, 4) for k, v in timings.items()}
    return report

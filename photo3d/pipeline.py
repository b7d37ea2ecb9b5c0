"""``photo3d convert``: photo -> depth -> layered depth image -> inpainting -> meshes -> GLB.

Each stage is a named function over a small artifact; :func:`convert_file` chains them and
times each one.  Geometry is built at a *working resolution* (``working_side`` pixels on the
longer side; the depth network sees far less anyway) while the texture keeps the photo's own
resolution (up to ``max_texture_side``).

Speed (a 12 MP JPEG in ~3 s on 2 cores): the depth model is imported, loaded and warmed up in a
background thread (:func:`warm_up`) while the photo is decoded, and the photo's JPEG texture is
encoded in another while the depth network runs.  Size: ``max_glb_bytes`` (2 MB by default)
bounds the GLB; the texture gets at most 60 % of it, and :func:`fit_to_budget` fits the rest
(mesh tolerance, then grid, then texture).
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from . import defaults
from .errors import InputFileError, OutputError, UsageError, damaged_existing, printable
from .export import DEFAULT_FOCAL_35MM, Camera, ExportOptions, MeshData, camera_for, encode_jpeg, mesh_bytes, to_glb
from .inpaint import Background, fine_background, inpaint_background, stitch_seams
from .io import DEFAULT_MAX_MEGAPIXELS, Photo, input_file, load_image, output_state, write_bytes_atomic
from .layers import (COARSE_MAP, Cuts, LayeredDepth, LayerParams, band_to_foreground, build_layers, find_cuts,
                     is_sharp_map, nearest_values, sanitize_inverse_depth)
from .mesh import TEXTURE_SHIFT_PX, LayerMesh, grid_to_image, triangulate, unproject
from .video import STILL_SUFFIXES, VIDEO_SUFFIXES, ShareOptions

BG_TEXTURE_MARGIN = 8  # working pixels of real colour kept around the background layer (mipmaps)
FINE_BG_SCALE = 2  # the background's texture at most this many times the working resolution
MIN_TEXTURE_SIDE = 1024  # the size budget never shrinks the photo's texture below this
MAX_TOL_SCALE = 8.0  # ... nor coarsens the mesh beyond this many times ``tol_px``
MIN_WORKING_SIDE = 384  # ... before that, the geometry grid itself gets coarser, down to this side
LAST_WORKING_SIDE = 96  # ... or to this one, where the meshes leave the texture less than MIN_TEXTURE_BYTES
MIN_TEXTURE_BYTES = 150_000  # (a depth map rough all over, cut at every pixel: a 4.1 MB GLB said to fit 2 MB)
SHOWN = 128  # alpha from which a pixel of a cut-out is shown (glTF's alpha test at 0.5); below, it is left out


@dataclass
class ConvertOptions:
    model: Path | None = None  # TorchScript file or Tiefenrausch folder; None = bundled model
    depth: Path | None = None  # bring your own depth map (.png 16-bit / .npy, larger = nearer)
    depth_source: str = defaults.DEPTH_SOURCE  # auto | embedded | stereo | model: depth the photo carries first
    html: bool = False  # also write NAME.html, the offline viewer
    html_beside: str | None = None  # several formats: only the output with this suffix writes NAME.html
    keep_existing: bool = False  # a side file (NAME.html) that exists is kept (a batch without --overwrite)
    working_side: int = 768  # geometry resolution (longer side)
    max_texture_side: int = defaults.MAX_TEXTURE_SIDE
    jpeg_quality: int = defaults.JPEG_QUALITY
    max_glb_bytes: int | None = defaults.GLB_MAX_BYTES  # size budget: texture, then mesh tolerance adapt to it
    parallax: float = defaults.PARALLAX  # nearest vs farthest point move by this share of the width shown at full offset
    depth_ratio: float = 10.0  # farthest / nearest depth when the depth is only known up to an affine map
    tol_px: float = 1.0  # largest geometric error of the simplified mesh, working pixels at full parallax
    layered: bool = True  # False: one stretched single-layer mesh (the classic baseline)
    mirror: bool = True  # re-texture holes by mirroring the background across the edge
    snap_edges: bool | None = None  # snap depth edges to colour edges; None = for model depth and blurred depth files
    max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS
    layer_params: LayerParams = field(default_factory=LayerParams)
    share: ShareOptions = field(default_factory=ShareOptions)  # .mp4/.gif/.webp/stereo outputs
    # folder mode with several formats: a video / HTML job renders the photo's NAME.glb beside it
    # when that was written at or after this time (0 = any existing one) instead of converting again
    reuse_glb_since: float | None = None
    page_format: bool = False  # NAME.html is one of this run's formats (written by a job of its own)
    reuse_suffix: str = ".glb"  # several formats: the output the others are rendered from (.glb, else .html)


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


# EXIF orientation -> the numpy steps that show stored pixels as the photo is seen (PIL's exif_transpose)
_ORIENT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1], 5: lambda a: a.T,
           6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].T, 8: lambda a: np.rot90(a, 1)}


def load_depth_file(path: Path, photo: Photo, opts: ConvertOptions, said: list[str] | None = None) -> np.ndarray:
    """A ``--depth`` map normalized to [0, 1].  A map of the photo's pixels as stored, where the
    photo's EXIF orientation turns them a quarter to be shown (what a tool that ignores the tag
    saves), is turned the same way, and ``said`` gets a line saying so; so does a map of one depth
    everywhere (a flat 3D photo)."""
    from .depth.maps import load_depth_map

    d = load_depth_map(path, max_megapixels=opts.max_megapixels)
    dh, dw = d.shape
    if photo.orientation in (5, 6, 7, 8) and dw != dh and photo.width != photo.height and (dh > dw) != (
            photo.height > photo.width) and abs(dh / dw - photo.width / photo.height) <= 0.02 * photo.width / photo.height:
        d = np.ascontiguousarray(_ORIENT[photo.orientation](d))
        dh, dw = d.shape
        if said is not None:
            said.append(f"{printable(path.name)}: depth map of the photo as stored ({dh}x{dw}), turned as its EXIF "
                        f"orientation turns the photo ({dw}x{dh})")
    if abs(dw / dh - photo.width / photo.height) > 0.02 * photo.width / photo.height and not _network_grid(photo, dw, dh):
        hint = ""
        if abs(2 * dw / dh - photo.width / photo.height) <= 0.02 * photo.width / photo.height:
            hint = ("; a side-by-side stereo photo's map is of its left view: give that view as the photo, or leave "
                    "--depth out and photo3d reads the pair's depth itself")
        raise InputFileError(f"depth map is {dw}x{dh}, not the photo's aspect ratio ({photo.width}x{photo.height}){hint}", path)
    lo, hi = float(d.min()), float(d.max())
    if not hi > lo:
        if said is not None:  # (as for a model's flat map: a map saved wrongly made a flat card without a word)
            said.append(f"{printable(path.name)}: the same depth at every pixel: the 3D photo is flat")
        return np.zeros_like(d)
    return ((d.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)  # float64: no overflow on any finite map


def _network_grid(photo: Photo, w: int, h: int) -> bool:
    """Whether w x h is a depth network's grid for this photo at some input size (each side floored
    to a multiple of 32: a 16:9 photo's raw map from ``photo3d depth --raw`` is 384 x 192, 2:1).
    Sizes a model's metadata may give (up to 8192 px, not only multiples of 32: at 400 a 16:9
    photo's grid is 384 x 224), from 128 px (below, flooring makes any photo's grid nearly square:
    a 64 x 64 map passed for a 4:3 photo), and the multiples of 32 from 64 as before."""
    from .depth.runtime import MAX_INPUT_SIZE, network_size

    if w % 32 or h % 32:
        return False
    return any(network_size(photo.width, photo.height, size) == (w, h)
               for size in (64, 96, *range(128, MAX_INPUT_SIZE + 1)))


def working_photo(photo: Photo, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    return cv2.resize(photo.rgb, (w, h), interpolation=cv2.INTER_AREA)


def working_alpha(photo: Photo, shape: tuple[int, int]) -> np.ndarray | None:
    """A cut-out's alpha at the working grid (None: not a cut-out)."""
    h, w = shape
    return None if photo.alpha is None else cv2.resize(photo.alpha, (w, h), interpolation=cv2.INTER_AREA)


def cut_out_colours(photo: Photo) -> Photo:
    """A cut-out (``photo.alpha``, see :func:`photo3d.io.load_image`) in its own colours instead of
    composited on white: its shown pixels un-composited, the hidden ones (alpha < ``SHOWN``) in the
    colour of the nearest shown pixel.  The texture's filtering at the silhouette, the inpainting
    and the edge snapping then never see the white.  Any other photo as it is."""
    if photo.alpha is None:
        return photo
    shown = photo.alpha >= SHOWN
    a = np.maximum(photo.alpha, SHOWN).astype(np.float32)[..., None] / 255.0
    own = 255.5 - (255.0 - photo.rgb.astype(np.float32)) / a  # (composite = a·own + (1 − a)·white, rounded)
    own = np.clip(own, 0, 255, out=own).astype(np.uint8)
    h, w = shown.shape
    _, nearest = nearest_values(shown, np.arange(h * w, dtype=np.int32).reshape(h, w))
    return replace(photo, rgb=own.reshape(-1, 3)[nearest])


def estimate_depth(photo: Photo, small: np.ndarray, opts: ConvertOptions, found=None) -> tuple[np.ndarray, dict]:
    """Normalized disparity in [0, 1] (larger = nearer) at the working size of ``small``;
    ``found``: what :func:`photo3d.depth.embedded.find_depth` found in the input (None: the model)."""
    h, w = small.shape[:2]
    if opts.depth is not None:
        from .depth.maps import distance_warning, saved_depth_ratio

        warnings: list[str] = []
        d = load_depth_file(Path(opts.depth), photo, opts, warnings)
        info = {"depth": str(opts.depth), "depth_source": "file", "depth_size": [d.shape[1], d.shape[0]]}
        if said := distance_warning(opts.depth, d):
            warnings.append(f"{printable(Path(opts.depth).name)}: {said}")
        if warnings:
            info["warnings"] = warnings
        if ratio := saved_depth_ratio(opts.depth):  # measured depth that `photo3d depth` saved: its own ratio
            info["depth_ratio"] = ratio
        return cv2.resize(d, (w, h), interpolation=cv2.INTER_AREA), info
    if found is not None and found.source != "model":
        from .depth.embedded import depth_for, network_disparity

        def predict(rgb):  # torch is imported only when the found depth has holes to fill
            from .depth.runtime import load_model

            return network_disparity(load_model(opts.model), rgb)

        out = depth_for(found, small, predict)
        return out.disparity, {"depth": f"{found.source} ({found.kind})", **out.info}
    from .depth.runtime import load_model

    model = load_model(opts.model)
    # one pass, bilinear: the builder snaps edges to the photo itself and is tuned to single-pass
    # maps (flip-averaged ones soften the coffee table's far edge into a ramp that carries the room)
    res = model.predict_result(small, upsample="bilinear", tta="none")
    flat = res.flat_warning(model.name)
    return res.disparity, {"depth": model.name, "depth_source": "model", **({"warnings": flat} if flat else {})}


def to_geometry(disparity: np.ndarray, camera: Camera, opts: ConvertOptions) -> Geometry:
    """Normalized disparity -> inverse depth in [1/depth_ratio, 1] and the parallax range."""
    lo = 1.0 / opts.depth_ratio
    inv = (lo + np.clip(disparity, 0, 1) * (1.0 - lo)).astype(np.float32)
    # nearest vs farthest shift = parallax * width  <=>  focal * offset * (1 - lo) = parallax * width,
    # the width shown: a panorama's centre 21:9 (of a 8:1 strip the whole width made 3.4x the shift
    # on screen, cut at every small step, and frame 0 showed re-synthesized background along the cuts)
    shown = min(camera.width, defaults.MAX_ASPECT * camera.height)  # (render.shown_size's width, without loading the renderer)
    offset = opts.parallax * shown / (camera.focal_px * (1.0 - lo))
    return Geometry(inv, camera, offset)


def layer_depth(geo: Geometry, opts: ConvertOptions, photo_small: np.ndarray | None = None) -> LayeredDepth:
    if not opts.layered:
        inv = sanitize_inverse_depth(geo.inv)
        z = np.zeros(inv.shape, bool)
        cuts = find_cuts(inv, 0.0, opts.layer_params)  # threshold 0 px => jump test never passes
        return LayeredDepth(inv, cuts, z, z.copy(), z.copy(), z.copy(), inv.copy())
    # where to cut is judged at the default parallax's shift when this one is stronger (build_layers
    # takes the smaller of the two)
    return build_layers(geo.inv, geo.shift_px_per_inv, opts.layer_params, rgb=photo_small if snaps(opts) else None,
                        cut_shift_px_per_inv=geo.shift_px_per_inv * defaults.PARALLAX / opts.parallax)


def snaps(opts: ConvertOptions) -> bool:
    """Whether depth edges are uncertain (network depth, or a depth file whose edges are blurred,
    see :func:`photo3d.layers.is_sharp_map`, or coarser than the working grid, see ``COARSE_MAP``): sharpened, snapped to the photo's colour edges, and
    their far-side pixels of foreground colour re-synthesized.  A sharp depth map is used as it
    is: its edges lie where it says, their far-side pixels are the background's but for the photo's
    anti-aliased rim, one pixel (``LayerParams.sharp_band_px``, see :func:`inpaint`)."""
    return opts.snap_edges if opts.snap_edges is not None else opts.depth is None


def inpaint(photo_small: np.ndarray, ldi: LayeredDepth, opts: ConvertOptions) -> Background:
    """The background layer (:func:`photo3d.inpaint.inpaint_background`).  Its far band: for an
    uncertain (network) edge a few pixels and a sharpening halo; for a sharp map's edge the one
    pixel of the photo's anti-aliased rim beyond it, which still carries the foreground's colour:
    read by the fill, that rim tinted all of it (a red disc on a blue wall left a purple haze in
    the whole disocclusion, and its outline on the wall), so it goes with the foreground as well.
    A snapped map's fill also carries the background's texture (``texture``); a sharp map's is
    the smooth fill, which its measured views prefer."""
    lp, snapped = opts.layer_params, snaps(opts)
    band_px, halo_px = (lp.far_band_px, lp.halo_px) if snapped else (lp.sharp_band_px, 0)
    return inpaint_background(photo_small, ldi, mirror=opts.mirror, rel=lp.rel_jump, band_px=band_px, halo_px=halo_px,
                              texture=snapped)


def visible_layer(ldi: LayeredDepth, bg: Background) -> tuple[np.ndarray, Cuts]:
    """Inverse depth and cuts of the visible layer: the far-side edge pixels of foreground colour
    (``bg.band``) join the foreground's edge; the background layer re-synthesizes what lies behind
    them."""
    if bg.band is None:
        return ldi.inv, ldi.cuts
    return band_to_foreground(ldi, bg.band)


def build_meshes(geo: Geometry, visible: tuple[np.ndarray, Cuts], bg: Background, opts: ConvertOptions,
                 scale: float = 1.0, alpha: np.ndarray | None = None, rgb: np.ndarray | None = None) -> Meshes:
    """Triangulate the layers (``visible``: :func:`visible_layer`); ``scale`` multiplies the
    geometric tolerance (size budget).  ``alpha``: a cut-out's (:func:`working_alpha`): its
    hidden pixels are in no mesh, but for a ring around the shown ones whose vertex alpha puts the
    silhouette where the photo's alpha crosses one half.  ``rgb``: the photo at the grid's size,
    which places the soft edges along the cuts (:func:`photo3d.mesh.triangulate`'s skirts)."""
    tol = scale * opts.tol_px / max(geo.shift_px_per_inv, 1e-9)
    inv, cuts = visible
    shape = inv.shape
    valid = np.ones(shape, bool) if alpha is None else cv2.dilate((alpha >= SHOWN).astype(np.uint8), np.ones((3, 3))) > 0
    shift = scale * TEXTURE_SHIFT_PX  # the size budget coarsens both
    front = triangulate(inv, valid, cuts, tol, shift_px=shift, skirt=opts.layered, rgb=rgb)
    if alpha is not None:
        np.minimum(front.alpha, alpha[front.grid_yx[:, 0], front.grid_yx[:, 1]], out=front.alpha)
    out = [("visible", front, front.inv)]
    if (bg.mask & valid).any():
        # never cut: nothing lies behind the background layer, so a cut in it would open a hole
        # at some view (a step inside it stretches instead)
        back = triangulate(bg.inv, bg.mask & valid, None, tol, shift_px=shift)
        if len(back.faces):
            out.append(("background", back, back.inv))
    return Meshes(out, shape)


@dataclass
class Texture:
    jpeg: bytes
    size: tuple[int, int]  # (width, height) of the encoded image
    rect: tuple[int, int, int, int] = (0, 0, 0, 0)  # x, y, w, h it covers, in working pixels (background)
    quality: int = 0  # the JPEG quality it was encoded at (the photo's: lowered to fit a size budget)


def photo_texture(photo: Photo, max_side: int, quality: int, max_bytes: int | None = None) -> Texture:
    """The photo as a JPEG texture (longer side <= ``max_side``); with ``max_bytes``, smaller
    (down to ``MIN_TEXTURE_SIDE``), then at a lower quality (down to 50), until it fits: a busy
    12 MP photo can take 4 MB at quality 80."""
    H, W = photo.height, photo.width
    s = min(1.0, min(max_side, defaults.MAX_TEXTURE_LIMIT) / max(W, H))  # (the CLI refuses more; the API clamps)
    floor = min(s, MIN_TEXTURE_SIDE / max(W, H))
    q = quality
    for _ in range(8):
        tw, th = max(1, round(W * s)), max(1, round(H * s))
        img = photo.rgb if (tw, th) == (W, H) else cv2.resize(photo.rgb, (tw, th), interpolation=cv2.INTER_AREA)
        jpeg, used = encode_jpeg(img, q), q
        if max_bytes is None or len(jpeg) <= max_bytes:
            break
        if s > floor:
            s = max(floor, s * 0.95 * (max_bytes / len(jpeg)) ** 0.5)  # bytes ~ pixels
        elif q > 50:
            q = max(50, q - 10)
        else:
            break
    return Texture(jpeg, (tw, th), quality=used)


def background_texture(bg: Background, quality: int, max_side: int = defaults.MAX_TEXTURE_LIMIT,
                       photo: np.ndarray | None = None) -> Texture | None:
    """The inpainted background around its layer (cropped, with a margin of real colour so
    mipmapping never blends in anything else), scaled as the photo's texture is when the working
    grid's longer side is more than ``max_side`` (``--max-texture 256`` left a 769 x 312 background
    texture).  At the working resolution, or up to ``FINE_BG_SCALE`` times it where the photo
    (full resolution) is that much larger and the fill knows where its finer detail lies
    (:func:`photo3d.inpaint.fine_background`)."""
    if not bg.mask.any():
        return None
    h, w = bg.mask.shape
    ys, xs = np.nonzero(bg.mask.any(axis=1))[0], np.nonzero(bg.mask.any(axis=0))[0]
    m = BG_TEXTURE_MARGIN
    y0, y1 = max(0, ys[0] - m), min(h, ys[-1] + m + 1)
    x0, x1 = max(0, xs[0] - m), min(w, xs[-1] + m + 1)
    # (1 % of slack: a photo of twice the grid's cells, 1536 px for a grid of 769 vertices, is twice it)
    k = 1 if photo is None or bg.source is None else min(FINE_BG_SCALE, int(1.01 * min(photo.shape[0] / h, photo.shape[1] / w)))
    k = max(1, min(k, int(max_side // max(h, w))))
    if k > 1:
        crop = fine_background(bg, photo, k, (y0, y1, x0, x1))
    else:
        crop = np.ascontiguousarray(bg.rgb[y0:y1, x0:x1])
    s = min(1.0, max_side / max(h, w))
    if s < 1.0:  # (the UVs span the crop's rect in working pixels, whatever its size in texels)
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s))),
                          interpolation=cv2.INTER_AREA)
    return Texture(encode_jpeg(crop, quality), (crop.shape[1], crop.shape[0]), (x0, y0, x1 - x0, y1 - y0))


def mesh_data(meshes: Meshes, geo: Geometry, bg_tex: Texture | None) -> list[MeshData]:
    gh, gw = meshes.grid_shape
    out = []
    for name, m, inv in meshes.layers:
        st = grid_to_image(m.grid_yx, meshes.grid_shape)
        if name == "background" and bg_tex is not None:
            x, y, w, h = bg_tex.rect
            uv = np.stack([(st[:, 0] * gw - x) / w, (st[:, 1] * gh - y) / h], 1).astype(np.float32)
            texture = 1
        else:
            uv, texture = st.astype(np.float32), 0
        verts = unproject(st, inv, geo.camera.focal_px, (geo.camera.width, geo.camera.height))
        out.append(MeshData(name, verts, m.faces, uv, m.alpha, texture))
    return out


def fit_meshes(geo: Geometry, visible: tuple[np.ndarray, Cuts], bg: Background, opts: ConvertOptions,
               budget: int | None, bg_tex: Texture | None, alpha: np.ndarray | None = None,
               rgb: np.ndarray | None = None) -> tuple[list[MeshData], float]:
    """Mesh data within ``budget`` bytes: the tolerance grows (from ``opts.tol_px``) until it fits.
    ``visible``: :func:`visible_layer` (the same at every tolerance).  Returns (data, tolerance scale
    used).  ``alpha``, ``rgb``: as for :func:`build_meshes`."""
    scale, last = 1.0, None
    while True:
        data = mesh_data(build_meshes(geo, visible, bg, opts, scale, alpha, rgb), geo, bg_tex)
        size = sum(mesh_bytes(d) for d in data)
        if budget is None or size <= budget or scale >= MAX_TOL_SCALE or (last and size > 0.9 * last):
            return data, scale  # (the last test: depth edges hold the vertices, coarsening can't help)
        last = size
        # vertices ~ 1 / tolerance on smooth surfaces; edges and cuts keep theirs
        scale = min(MAX_TOL_SCALE, scale * min(4.0, max(1.25, 1.2 * size / max(budget, 1))))


def export_glb(data: list[MeshData], textures: list[Texture], geo: Geometry, extras: dict,
               strength: float = defaults.PARALLAX) -> bytes:
    """``strength``: the ``--parallax`` it was built with (outputs made later from it say so when asked for another)."""
    from .export import border_points, edge_cover_zoom

    lo, hi = float(np.percentile(geo.inv, 1)), float(np.percentile(geo.inv, 99))
    focus, cam = 2.0 / (lo + hi), geo.camera
    tx, ty = cam.width / (2 * cam.focal_px), cam.height / (2 * cam.focal_px)
    zoom = edge_cover_zoom(tx, ty, geo.max_offset, focus, border_points(data, tx, ty, geo.inv.shape))
    extras = {
        "parallax": {"max_offset": geo.max_offset, "inverse_depth_range": [lo, hi], "focus_depth": focus,
                     "strength": strength, "cover_zoom": round(zoom, 5)},
        **extras,
    }
    return to_glb(data, [t.jpeg for t in textures], geo.camera, ExportOptions(extras))


#: Threads for work that overlaps the main thread's (model loading, texture encoding: torch and
#: OpenCV release the GIL).
_THREADS = ThreadPoolExecutor(thread_name_prefix="photo3d")


@contextlib.contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Add the seconds the block takes to ``timings[name]`` (a photo's per-stage times)."""
    t = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t


# ---------------------------------------------------------------- driver

_JSON_SLACK = 16_000  # bytes of GLB header, JSON and padding the budget keeps free


def texture_budget(opts: ConvertOptions) -> int | None:
    """Bytes the photo's texture may take: 60 % of the GLB budget (the rest is geometry)."""
    return None if not opts.max_glb_bytes else int(0.6 * opts.max_glb_bytes)


def start_photo_texture(photo: Photo, opts: ConvertOptions) -> Future:
    """The photo's texture (within its share of the budget), encoded in a background thread."""
    return _THREADS.submit(photo_texture, photo, opts.max_texture_side, opts.jpeg_quality, texture_budget(opts))


@dataclass
class Built:
    """A 3D photo at one grid, before packing: meshes, textures and the budget they were fit to."""

    geo: Geometry
    ldi: LayeredDepth
    data: list[MeshData]
    textures: list[Texture]  # the photo's, then the background layer's (if it has a mesh)
    scale: float  # mesh tolerance used, in units of ``opts.tol_px``
    budget: int | None  # bytes the meshes may take (None: no size budget)

    @property
    def mesh_bytes(self) -> int:
        return sum(mesh_bytes(d) for d in self.data)

    @property
    def overshoot(self) -> float:
        """Mesh bytes / budget (> 1: over the budget)."""
        return 0.0 if self.budget is None else self.mesh_bytes / max(self.budget, 1)


def build_from_geometry(photo: Photo, geo: Geometry, opts: ConvertOptions, timings: dict, small: np.ndarray | None = None,
                        texture: Texture | Future | None = None) -> Built:
    """Stages after depth at one grid: layers, inpainting, textures, meshes (their tolerance
    coarsened to fit what the textures leave of the budget, :func:`fit_meshes`).

    ``texture``: the photo's texture when already made (or being made in a thread).  A cut-out
    (``photo.alpha``; ``photo`` and ``small`` in its own colours, :func:`cut_out_colours`): its
    hidden parts take the depth of the nearest shown pixel (no depth edge, so no cut, no background
    layer at its silhouette) and are left out of the meshes."""
    h, w = geo.inv.shape
    alpha = working_alpha(photo, (h, w))
    if alpha is not None:
        geo = replace(geo, inv=nearest_values(alpha >= SHOWN, geo.inv)[1])
    if small is None:
        with timed(timings, "resize"):
            small = working_photo(photo, (h, w))
    if texture is None:  # encoded while the layers are built (OpenCV releases the GIL)
        texture = start_photo_texture(photo, opts)
    with timed(timings, "layers"):
        ldi = layer_depth(geo, opts, small)
    with timed(timings, "inpaint"):
        bg = inpaint(small, ldi, opts)
        visible = visible_layer(ldi, bg)
        bg = stitch_seams(bg, small, *visible)
    with timed(timings, "texture"):
        bg_tex = background_texture(bg, opts.jpeg_quality, opts.max_texture_side, photo.rgb)
    if isinstance(texture, Future):
        with timed(timings, "texture"):
            texture = texture.result()

    def fitted(bg_tex: Texture | None) -> tuple[list[Texture], int | None, list[MeshData], float]:
        textures = [texture] + ([bg_tex] if bg_tex is not None else [])
        budget = None
        if opts.max_glb_bytes:
            budget = opts.max_glb_bytes - sum(len(t.jpeg) for t in textures) - _JSON_SLACK
        with timed(timings, "mesh"):
            data, scale = fit_meshes(geo, visible, bg, opts, budget, bg_tex, alpha, small)
        return textures, budget, data, scale

    textures, budget, data, scale = fitted(bg_tex)
    # the background's finer detail is the first thing to give way to the size budget: the meshes
    # must fit at their own tolerance beside it (a 40 KB finer background texture tipped a spatial
    # photo's GLB over 2 MB, and its grid went from 769 to 609 pixels)
    if scale > 1.0 and bg_tex is not None and bg_tex.size[0] > bg_tex.rect[2]:  # (at 1.0 they fit)
        with timed(timings, "texture"):
            bg_tex = background_texture(bg, opts.jpeg_quality, opts.max_texture_side)
        textures, budget, data, scale = fitted(bg_tex)
    if not any(d.texture == 1 and len(d.faces) for d in data):
        textures = textures[:1]  # no background mesh after all: no unused texture either
    return Built(geo, ldi, data, textures, scale, budget)


def fit_to_budget(photo: Photo, geo: Geometry, opts: ConvertOptions, timings: dict, small: np.ndarray | None = None,
                  texture: Texture | Future | None = None, disparity: np.ndarray | None = None) -> Built:
    """The 3D photo within the GLB's size budget (``opts.max_glb_bytes``), giving up, in this order:

    0. the background texture's detail finer than the grid (:func:`build_from_geometry`);
    1. mesh detail: a coarser tolerance (:func:`build_from_geometry`, up to ``MAX_TOL_SCALE``);
    2. grid resolution, when depth edges hold the vertices: a coarser working grid, down to
       ``MIN_WORKING_SIDE`` (only with ``disparity``, from which the grid is rebuilt);
    3. texture resolution, then quality: the photo's texture takes what the meshes leave.
    """
    side = max(geo.inv.shape)
    while True:
        built = build_from_geometry(photo, geo, opts, timings, small, texture)
        if built.overshoot <= 1.0 or disparity is None:
            break
        left = opts.max_glb_bytes - built.mesh_bytes - sum(len(t.jpeg) for t in built.textures[1:]) - _JSON_SLACK
        floor = MIN_WORKING_SIDE if left >= MIN_TEXTURE_BYTES else LAST_WORKING_SIDE
        if side <= floor:
            break
        # vertices along depth edges grow with the grid's side: shrink it by the overshoot, and some
        # (below MIN_WORKING_SIDE, a depth cut all over: its vertices grow with the grid's area)
        if side > MIN_WORKING_SIDE:
            side = max(MIN_WORKING_SIDE, int(side * min(0.8, 0.9 / built.overshoot)))
        else:
            side = max(floor, int(side * min(0.8, (0.9 / built.overshoot) ** 0.5)))
        shape = working_shape(photo.width, photo.height, side)
        small = working_photo(photo, shape)
        disparity = cv2.resize(disparity, shape[::-1], interpolation=cv2.INTER_AREA)
        geo = to_geometry(disparity, geo.camera, opts)
    if built.overshoot > 1.0:  # the mesh cannot get any coarser: the photo's texture gives up the difference
        rest = opts.max_glb_bytes - built.mesh_bytes - sum(len(t.jpeg) for t in built.textures[1:]) - _JSON_SLACK
        with timed(timings, "texture"):
            built.textures[0] = photo_texture(photo, opts.max_texture_side, opts.jpeg_quality, max(rest, 1))
    return built


def pack_glb(built: Built, opts: ConvertOptions, timings: dict, extras: dict) -> tuple[bytes, dict]:
    """The GLB of ``built`` and the per-photo report (with ``extras``, also stored in the GLB; of a
    ``--depth`` file the GLB keeps the name only: a 3D photo is made to be shared, and the path of
    the map, ``/home/NAME/...``, is the user's own business)."""
    data = built.data
    if extras.get("depth_source") == "file":
        extras = {**extras, "depth": Path(extras["depth"]).name}
    with timed(timings, "export"):
        glb = export_glb(data, built.textures, built.geo, {"layers": len(data), **extras}, opts.parallax)
    h, w = built.geo.inv.shape
    note = texture_note(built.textures[0], built.geo.camera, opts)
    report = {
        "layers": len(data),
        "hole_area": float(built.ldi.hole.mean()),
        "discontinuity_px": int(built.ldi.near.sum()),
        "vertices": int(sum(len(d.vertices) for d in data)),
        "faces": int(sum(len(d.faces) for d in data)),
        "grid": [w, h],
        "texture": list(built.textures[0].size),
        "tolerance_px": round(opts.tol_px * built.scale, 3),
        "glb_bytes": len(glb),
    }
    if note:
        report["texture_note"] = note
    if opts.max_glb_bytes and len(glb) > opts.max_glb_bytes:  # (the coarsest grid still over: said, not claimed to fit)
        report["warnings"] = [f"the GLB is {len(glb) / 1e6:.2f} MB, over its {opts.max_glb_bytes / 1e6:g} MB budget: the "
                              "depth is too rough all over for the mesh to coarsen (a smoother depth map, or a smaller "
                              "--parallax)"]
    return glb, report


def texture_note(texture: Texture, camera: Camera, opts: ConvertOptions) -> str | None:
    """What the size budget took from the photo's texture, for the result line: the side or the
    quality asked for (``--max-texture``, ``--quality``) given up to fit the GLB's budget without a
    word read as if the options had been ignored."""
    if not opts.max_glb_bytes:
        return None
    asked = min(opts.max_texture_side, defaults.MAX_TEXTURE_LIMIT, max(camera.width, camera.height))
    lost = []
    if max(texture.size) < asked:
        lost.append(f"{texture.size[0]}x{texture.size[1]}")
    if texture.quality and texture.quality < opts.jpeg_quality:
        lost.append(f"quality {texture.quality}")
    return f"the 3D photo's texture reduced to {', '.join(lost)} to fit the GLB's {opts.max_glb_bytes / 1e6:g} MB" if lost else None


def warm_up(opts: ConvertOptions | None) -> Future | None:
    """Start loading the depth model in the background (:func:`photo3d.depth.start_loading`) unless
    the depth comes from a file.  Also the batch runner's per-worker hook."""
    if opts is None or opts.depth is not None:
        return None
    from .depth import start_loading

    return start_loading(opts.model)


OUTPUT_SUFFIXES = (".glb", ".html") + VIDEO_SUFFIXES + STILL_SUFFIXES


def outputs(dst: str | Path, opts: ConvertOptions | None = None) -> list[Path]:
    """Every file :func:`convert_file` writes for ``dst``: ``dst``, then NAME.html (``--html``)."""
    dst, opts = Path(dst), opts or ConvertOptions()
    html = opts.html and dst.suffix.lower() != ".html" and opts.html_beside in (None, dst.suffix.lower())
    return [dst, dst.with_suffix(".html")] if html else [dst]


MAX_EXISTING_GLB = 256 << 20  # bytes: far above any 3D photo photo3d writes (2 MB by default)


def read_existing_glb(src: Path, path: Path) -> bytes | None:
    """The bytes of the GLB ``path`` that a re-run builds on (None: there is none).  A named pipe or
    a device there (reading it would hang or fill the memory), or a file far larger than a 3D
    photo, fails the input ``src``, saying so."""
    try:
        st = path.stat()
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise damaged_existing(src, path, "3D photo", "not a regular file")
    if st.st_size > MAX_EXISTING_GLB:
        raise damaged_existing(src, path, "3D photo", f"{st.st_size:,} bytes, more than any 3D photo")
    try:
        return path.read_bytes()
    except OSError:
        return None


def batch_glb(src: Path, dst: Path, since: float, source: str = ".glb") -> tuple[Path, bytes] | None:
    """The 3D photo of ``src`` that this batch made before ``dst`` (several formats: the first
    planned one, ``source``), written at or after ``since``: ``NAME.glb``, or with no glb among the
    formats the GLB inside ``NAME.html`` (``--format html --format mp4`` built the layers twice);
    None when there is none, or ``dst`` is that output itself.  Only the source format's file is
    read: a ``NAME.glb`` left by another run is no page run's 3D photo, nor an old page a GLB run's."""
    sibling = dst.with_suffix(source)
    if sibling == dst:
        return None
    try:
        st = os.stat(sibling)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_mtime < since:
        return None
    if source == ".glb":
        glb = read_existing_glb(src, sibling)
    else:
        from .viewer import page_glb

        glb = page_glb(sibling)
    return None if glb is None else (sibling, glb)


def check_existing_glb(src: Path, path: Path, glb: bytes, max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS) -> dict:
    """A GLB found beside the outputs (a re-run adds ``--html`` or renders ``--format mp4`` from it)
    must be a whole 3D photo photo3d wrote: a file cut short (an interrupted copy) or another
    tool's GLB went into the viewer page as it was (a page that shows nothing) or failed the video
    with 'internal error (error: unpack_from requires a buffer ...)'; with ``max_megapixels`` (it is
    to be rendered), its textures are whole images within that size.  The input fails, saying so.
    Returns its photo3d metadata."""
    from .errors import TooLargeError
    from .export import read_glb
    from .render import TextureTooLarge, check_textures, validate

    try:
        tree, binary = read_glb(glb)
        meta = (tree.get("extras") or {}).get("photo3d")
        if not isinstance(meta, dict):
            raise ValueError("not a 3D photo photo3d wrote")
        # photo3d embeds everything: an image or buffer named by address would be fetched by the
        # "offline" page when opened (a GLB edited in a shared OUT)
        if any(isinstance(x, dict) and "uri" in x for x in [*(tree.get("images") or []), *(tree.get("buffers") or [])]):
            raise ValueError("it refers to files or web addresses outside it, which photo3d never writes")
        validate(tree, binary)  # (whatever is made from it: a page, a copy, a video)
        check_textures(tree, binary, max_megapixels)
    except TextureTooLarge as e:
        raise TooLargeError(str(e), path) from None
    except (ValueError, struct.error, AttributeError, TypeError, KeyError, IndexError, OverflowError) as e:
        raise damaged_existing(src, path, "3D photo", _reason(e)) from None
    return meta


def _reason(e: Exception) -> str:
    """What is wrong with a GLB, in words: a missing part (``KeyError: 5130``) says which."""
    if isinstance(e, (KeyError, IndexError)):
        return f"not as photo3d writes it (no {e.args[0]!r})" if e.args else "not as photo3d writes it"
    return str(e)


def parallax_kept(glb_path: Path | None, meta: dict, opts: ConvertOptions, again: str = "again with --overwrite") -> list[str]:
    """A warning when outputs made from an existing GLB (``meta``: its photo3d metadata) keep another
    ``--parallax`` than this run's (the depth steps, and so the layers, were built for the GLB's).
    ``glb_path`` None: the GLB is the input, whose name leads the warning ("it was built ...")."""
    try:
        built = float((meta.get("parallax") or {})["strength"])
    except (KeyError, TypeError, ValueError, AttributeError):
        built = None  # (not recorded, or not a number)
    if built is None and opts.parallax == defaults.PARALLAX:
        return []
    if built is not None and abs(built - opts.parallax) < 1e-9:
        return []
    was = f"with --parallax {built:g}" if built is not None else "by a photo3d that did not record its --parallax"
    this = "the default --parallax" if opts.parallax == defaults.PARALLAX else "--parallax"  # (a run without the option)
    name = "it" if glb_path is None else printable(glb_path)
    return [f"{name} was built {was}: what is made from it keeps that; for {this} {opts.parallax:g} convert {again}"]


def _build(glb: bytes | None) -> dict | None:
    """What a 3D photo was built from and with (its photo3d metadata, less what varies between runs)."""
    from .export import read_glb

    try:
        meta = read_glb(glb)[0]["extras"]["photo3d"]
        par = meta.get("parallax") or {}
        return {"parallax": par.get("strength"), "range": [round(float(v), 3) for v in par.get("inverse_depth_range") or ()],
                **{k: meta.get(k) for k in ("source_size", "focal_35mm", "depth", "depth_source", "layers")}}
    except (KeyError, TypeError, ValueError, AttributeError, struct.error):
        return None


def kept_page_warning(page: Path, glb: bytes) -> str | None:
    """A run without --overwrite keeps a page that exists beside the 3D photo it writes (a folder
    run resumes): the warning when that page shows another 3D photo (another --parallax, depth, photo)."""
    if (shows := _page_shows_other(page, glb)) is None:
        return None
    return f"{printable(page)} kept: it shows {shows}; --overwrite rewrites it"


def stale_page_warning(dst: Path, glb: bytes, opts: ConvertOptions) -> str | None:
    """A GLB written where a page of an earlier one stays beside it (a run without ``--html``): the
    warning when that page shows another 3D photo (``-o c.glb --parallax 0.08`` after ``-o c.glb
    --html`` left ``c.html`` showing the old one, without a word; new-user trial, session 23)."""
    if dst.suffix.lower() != ".glb" or opts.html or (opts.page_format and not opts.keep_existing):
        return None  # (a page job that resumes keeps the page: said below)
    page = dst.with_suffix(".html")
    if output_state(page) != "done" or (shows := _page_shows_other(page, glb)) is None:
        return None
    how = "--html --overwrite rewrites it" if opts.keep_existing else "--html rewrites it"  # (a folder run resumes)
    return f"{printable(page)} beside it still shows {shows}; {how}"


def _page_shows_other(page: Path, glb: bytes) -> str | None:
    """Which other 3D photo than ``glb`` the page photo3d wrote at ``page`` shows, in words; None
    when it shows this one (or is no page of photo3d's)."""
    from .viewer import page_glb

    old, new = _build(page_glb(page)), _build(glb)
    if old is None or new is None or old == new:
        return None
    return (f"the 3D photo built with --parallax {old['parallax']:g} (this one: {new['parallax']:g})"
            if old["parallax"] != new["parallax"] and isinstance(old["parallax"], (int, float)) else "an earlier 3D photo")


def _built_parallax(path: Path) -> float | None:
    """The ``--parallax`` the 3D photo at ``path`` (a GLB, or a page's) records, or None; a GLB's from its
    JSON chunk alone (:func:`photo3d.export.read_glb_json`)."""
    from .export import built_parallax, read_glb, read_glb_json
    from .viewer import page_glb

    try:
        if path.suffix.lower() == ".html":
            glb = page_glb(path)
            return None if glb is None else built_parallax(read_glb(glb)[0])
        return built_parallax(read_glb_json(path))
    except (OSError, ValueError, struct.error):  # (not readable, or no 3D photo: it says nothing)
        return None


def kept_note(src: str | Path, dst: str | Path, opts: ConvertOptions | None = None) -> str | None:
    """The warning for an output kept as done (a folder run resumes) that an earlier run made with
    other options than this run's: a 3D photo or page built with another ``--parallax``, a video,
    GIF, WebP or stereo still made with another ``--path``, ``--seconds``, ``--fps``, ``--size``,
    ``--stereo`` or ``--parallax`` (what it records, :func:`photo3d.video.recorded_settings`; a GIF kept
    at another ``--size`` was kept without a word, helper-112).  None when it records nothing.  For a 3D
    photo given as input (``src``) the ``--parallax`` is the one it records, whatever this run's."""
    from .video import recorded_settings, share_settings

    src, dst, opts = Path(src), Path(dst), opts or ConvertOptions()
    suffix = dst.suffix.lower()
    parallax = _built_parallax(src) if renders_as_is(src) else opts.parallax
    if suffix in (".glb", ".html"):
        built = _built_parallax(dst)
        had = None if built is None else {"parallax": f"{built:g}"}
        want = {"parallax": f"{parallax:g}"} if parallax is not None else {}
    else:
        had = recorded_settings(dst)
        want = share_settings(opts.share, suffix, parallax)
    differ = [k for k in want if had and k in had and had[k] != want[k]]
    if not differ:
        return None

    def said(k: str, v: str) -> str:
        return f"no --{k}" if v in ("auto", "none") else f"--{k} {v}"

    return (f"kept from an earlier run with {', '.join(said(k, had[k]) for k in differ)} (this run: "
            f"{', '.join(said(k, want[k]) for k in differ)}); run again with --overwrite to make it with this run's")


def finish(src: str | Path, dst: str | Path, opts: ConvertOptions | None = None) -> dict[str, Any]:
    """Write the missing viewer page of an existing output ``dst`` (a re-run that adds ``--html``)
    from the GLB (``dst`` itself, or the GLB beside a video): nothing is converted again.  Without
    a GLB to show, the photo is converted again."""
    from .viewer import page_note, write_viewer

    src, dst = Path(src), Path(dst)
    glb_path = dst if dst.suffix.lower() == ".glb" else dst.with_suffix(".glb")
    glb = read_existing_glb(src, glb_path)
    if glb is None:
        return convert_file(src, dst, opts)
    meta = check_existing_glb(src, glb_path, glb, (opts or ConvertOptions()).max_megapixels)
    written = []
    for p in outputs(dst, opts)[1:]:
        if output_state(p) != "done":
            write_viewer(p, glb, title=src.stem)
            written.append(str(p))
    note = page_note(glb) if written else None
    kept = parallax_kept(glb_path, meta, opts) if written else []
    return {"outputs": written, "finished": "missing outputs written from the existing " + glb_path.name
            + (f"; {note}" if note else ""), **({"warnings": kept} if kept else {})}


def convert_file(src: str | Path, dst: str | Path, opts: ConvertOptions | None = None) -> dict[str, Any]:
    """Build the 3D photo of ``src`` and write it to ``dst``: the GLB (.glb), the offline viewer
    alone (.html), or a video / stereo still rendered from the GLB's scene (.mp4, .gif, .webp,
    .jpg, .png; see :mod:`photo3d.video`).  Returns a per-photo report."""
    opts = opts or ConvertOptions()
    src, dst = Path(src), Path(dst)
    if opts.depth is not None and opts.model is not None:
        raise UsageError("give either --depth or --model, not both")
    suffix = dst.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        from .batch.plan import folder_hint

        raise UsageError(f"convert writes {', '.join(OUTPUT_SUFFIXES[:5])} (or a stereo .jpg/.png), not {suffix or 'no suffix'}"
                         + (folder_hint(dst) if suffix else ""), dst)
    if suffix not in (".glb", ".html"):
        from .video import check

        check(dst, opts.share)
    timings: dict[str, float] = {}
    if opts.reuse_glb_since is not None and (made := batch_glb(src, dst, opts.reuse_glb_since, opts.reuse_suffix)):
        sibling, glb = made  # this batch's 3D photo of the same photo: render that
        from .render import SceneError

        kept = parallax_kept(sibling, check_existing_glb(src, sibling, glb, opts.max_megapixels), opts)
        try:
            return write_outputs(src, dst, glb, {"glb_bytes": len(glb), "from_glb": str(sibling),
                                                 **({"warnings": kept} if kept else {})}, opts, timings)
        except SceneError as e:  # (what only rendering finds: metadata or indices it cannot use)
            raise damaged_existing(src, sibling, "3D photo", e) from None
    if renders_as_is(src):  # a 3D photo photo3d wrote, named as input: its page, video or stills
        if opts.depth is not None or opts.model is not None:  # (the command line says so before any work)
            raise UsageError("a 3D photo (.glb) given as input is rendered as it is: --depth and --model do not apply")
        input_file(src, "a 3D photo")
        glb = read_existing_glb(src, src)
        if glb is None:
            raise InputFileError("unreadable", src)
        from .render import SceneError

        kept = parallax_kept(None, check_existing_glb(src, src, glb, opts.max_megapixels), opts, again="its photo")
        try:
            return write_outputs(src, dst, glb, {"glb_bytes": len(glb), "from_glb": str(src),
                                                 **({"warnings": kept} if kept else {})}, opts, timings)
        except SceneError as e:
            raise damaged_existing(src, src, "3D photo", e) from None
    loading = warm_up(opts)  # started by the batch runner already, or now
    with timed(timings, "read"):
        photo = loaded = load_image(src, max_megapixels=opts.max_megapixels)
    found = None
    if opts.depth is None:  # depth the photo carries (the left view is the photo of a stereo pair)
        from .depth.embedded import find_depth

        with timed(timings, "depth"):  # (a stereo pair is matched here)
            found = find_depth(src, photo, opts.depth_source)
        photo = found.photo
    else:  # photo3d's own stereo still: its left view is the photo, with --depth as without (a half-width
        # still given its map was built with both squeezed views in one texture, helper-82)
        from .depth.embedded import side_by_side, stereo_layout

        if (layout := stereo_layout(src)) is not None and (pair := side_by_side(photo, "stereo", layout)[0]) is not None:
            left = pair[0]
            photo = replace(photo, rgb=left, original_size=(left.shape[1], left.shape[0]), alpha=None)
    shown = cut_out_colours(photo)  # a cut-out in its own colours (the depth is still estimated on white)
    texture = start_photo_texture(shown, opts)
    shape = working_shape(photo.width, photo.height, opts.working_side)
    camera = camera_for(photo.width, photo.height, photo.focal_35mm)
    with timed(timings, "resize"):
        small = working_photo(photo, shape)
    # the rest of torch's import + model load, not overlapped with the above (embedded depth needs
    # no model unless it has holes to fuse, and then load_model waits for the loading thread)
    if loading is not None and (found is None or found.source != "embedded"):
        with timed(timings, "model"):
            wait([loading])  # (its errors, if any, are raised again by estimate_depth, with the file name)
    with timed(timings, "depth"):
        disparity, info = estimate_depth(photo, small, opts, found)
    lens = ([] if loaded.focal_ignored is None else  # (the field of view is the default guess's, not the camera's)
            [f"its EXIF focal length ({loaded.focal_ignored:g} mm, 35 mm equivalent) is no lens's: "
             f"{DEFAULT_FOCAL_35MM:g} mm assumed"])
    if said := [*loaded.warnings, *lens, *(found.warnings if found is not None else ()), *info.get("warnings", ())]:
        info["warnings"] = said
    if opts.depth is not None and opts.snap_edges is None:  # a depth file: sharp, or blurred like a network's?
        sharp = is_sharp_map(disparity)
        coarse = disparity.shape[1] > COARSE_MAP * info["depth_size"][0]  # upsampled: its edges miss the photo's
        opts = replace(opts, snap_edges=not sharp or coarse)
        info["depth_edges"] = ("sharp (used as they are)" if sharp and not coarse else
                               "coarse (snapped to the photo)" if sharp else "blurred (snapped to the photo)")
    if info.get("depth_source") != "model" and opts.layer_params.ramp_px:
        # measured depth (a depth file, the depth a photo carries) may be coarse but is not displaced
        # off its objects as a network's blur is: wide ramps snapped to the photo's colour edge (see
        # layers.snap_ramps) pulled a plush toy's fibres off it, left on the wall as dark flecks
        opts = replace(opts, layer_params=replace(opts.layer_params, ramp_px=0))
    if info.get("depth_ratio"):  # measured depth: its own far / near ratio, not the default guess
        opts = replace(opts, depth_ratio=min(100.0, max(1.25, float(info["depth_ratio"]))))
    if photo.original_size:
        info["source_size"] = list(photo.original_size)
    if shown is not photo:  # a cut-out: the rest sees its own colours, and leaves its hidden parts out
        info["hidden_area"] = round(float((working_alpha(photo, shape) < SHOWN).mean()), 4)
        photo, small = shown, working_photo(shown, shape)
    built = fit_to_budget(photo, to_geometry(disparity, camera, opts), opts, timings, small, texture, disparity)
    glb, report = pack_glb(built, opts, timings, info)
    warnings = [*info.get("warnings", ()), *report.get("warnings", ())]  # (the budget's, after the photo's)
    report.update(info)
    if warnings:
        report["warnings"] = warnings
    return write_outputs(src, dst, glb, report, opts, timings)


def write_outputs(src: Path, dst: Path, glb: bytes, report: dict, opts: ConvertOptions, timings: dict) -> dict[str, Any]:
    """Write what ``dst`` asks for from the 3D photo ``glb`` (and NAME.html with ``opts.html``)."""
    suffix = dst.suffix.lower()
    from .viewer import page_note, write_viewer

    planned = outputs(dst, opts)
    written = [p for i, p in enumerate(planned) if i == 0 or not (opts.keep_existing and output_state(p) == "done")]
    if stale := [w for p in planned if p not in written and (w := kept_page_warning(p, glb))]:
        report["warnings"] = [*report.get("warnings", ()), *stale]
    if w := stale_page_warning(dst, glb, opts):
        report["warnings"] = [*report.get("warnings", ()), w]
    if any(p.suffix.lower() == ".html" for p in written) and (note := page_note(glb)):
        report["page_note"] = note  # a panorama's page shows its centre: said on the result line
    made: list[Path] = []
    try:
        with timed(timings, "write"):
            for side in written[1:]:  # side files first: a resumed batch looks for ``dst``, so it comes last
                write_viewer(side, glb, title=src.stem)
                made.append(side)
            if suffix == ".glb":
                write_bytes_atomic(dst, glb)
            elif suffix == ".html":
                write_viewer(dst, glb, title=src.stem)
            else:
                from .video import write_share

                report["share"] = write_share(dst, glb, opts.share, timings)
    except OutputError as e:  # (each file is atomic: the one that failed is not there)
        if len(written) > 1:  # say what became of this photo's other outputs
            e.reason += f"; kept: {', '.join(map(str, made))}" if made else f"; {dst} not written either (nothing kept)"
        raise
    timings["write"] -= sum(timings.get(k, 0.0) for k in ("render", "encode"))  # (timed on their own)
    report["outputs"] = [str(p) for p in written]
    report["seconds"] = {k: round(v, 4) for k, v in timings.items()}
    return report


def reads(opts: ConvertOptions | None = None) -> list[tuple[str, Path]]:
    """The files besides the photos that :func:`convert_file` reads: the ``--depth`` map, the model's."""
    from .depth import model_reads

    opts = opts or ConvertOptions()
    return ([("the --depth map", Path(opts.depth))] if opts.depth is not None else []) + model_reads(opts.model)


def renders_as_is(src: Path) -> bool:
    """Whether ``src`` is a 3D photo (.glb) named as input: rendered as it is (its page, video or
    stills), no depth model."""
    return src.suffix.lower() == ".glb" and not src.is_dir()


def needs_model(src: Path) -> bool:
    """Whether converting ``src`` may run the depth model (the batch runner's ``needs_warm_up``)."""
    return not renders_as_is(Path(src))


def convert_task(opts: ConvertOptions | None = None):
    """``photo3d convert``'s per-file task for the batch runner (:class:`photo3d.batch.Task`)."""
    from .batch.task import Task

    return Task("convert", convert_file, opts, warm_up=warm_up, outputs=outputs, finish=finish, reads=reads,
                needs_warm_up=needs_model, tags_outputs=True, kept_note=kept_note)

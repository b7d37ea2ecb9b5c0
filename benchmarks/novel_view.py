"""Novel-view check on real data: 3D photo from Middlebury view1, rendered at view5, vs the real view5.

For each scene of ``../shared/data/middlebury2006``: predict depth for view1.png with a model
(default: the bundled model; `--model ../shared/data/tiefenrausch` for the teacher), align it to the GT
disparity (disp1.png / 3) by least squares (scale + shift), build the 3D photo with photo3d's
own pipeline, **write and re-read the GLB**, rasterize it (numpy, perspective-correct, z-buffer,
alpha mask, bilinear texture) at view5's camera -- a pure horizontal shift by the stereo
baseline: pixel (x, y) of view1 lands at (x - d, y) -- and compare with view5.png:

- ``all``: PSNR over view5 pixels with known GT disparity that lie inside view1's frame;
- ``disocc``: PSNR over the ones hidden in view1 (disoccluded: the GT disparity of view1 at the
  corresponding position says something nearer covered it);
- SSIM (luma, over ``all``);
- false-tear rate: the share of view5 pixels that see no disocclusion (not within 1 px of one,
  by ``disp5``) but that the 3D photo shows from its background layer or leaves empty;
- speckles: fragments of the rendered view smaller than ``SPECKLE_PX`` pixels (one layer, or
  nothing, showing in a tiny patch inside another);
- revealed: the share of the disoccluded pixels that the 3D photo shows from its background layer
  (the rest the visible layer covers: the depth has no step there, or a smaller one than the real);
- below the table, the depth's own step at the ground truth's disoccluding steps, as a share of the
  real step (:func:`step_shares`): what any builder has to work with.

Baseline in the same run: one stretched single-layer mesh (no cuts, no background layer).

    python benchmarks/novel_view.py [--model PATH] [--gt] [--scenes Baby1,Wood2] [--json rows.json]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from photo3d.export import camera_for, read_glb  # noqa: E402
from photo3d.io import Photo  # noqa: E402
from photo3d.pipeline import ConvertOptions, Geometry, fit_to_budget, pack_glb, working_shape  # noqa: E402

_NP = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}
_N = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def shared_dir() -> Path:
    import os

    return Path(os.environ.get("PHOTO3D_SHARED", REPO.parent / "shared"))


# ------------------------------------------------------------------ GLB reading + rasterizing


def load_glb_meshes(glb: bytes) -> tuple[list[dict], np.ndarray, dict]:
    """Primitives (positions, uv, alpha, faces, texture) in world space, the first texture, and the JSON."""
    tree, binary = read_glb(glb)

    def accessor(i):
        a = tree["accessors"][i]
        v = tree["bufferViews"][a["bufferView"]]
        n = _N[a["type"]]
        off = v.get("byteOffset", 0) + a.get("byteOffset", 0)
        arr = np.frombuffer(binary, _NP[a["componentType"]], a["count"] * n, off).reshape(a["count"], n)
        if a.get("normalized"):
            arr = arr.astype(np.float32) / np.iinfo(arr.dtype).max
        return arr

    def image(i):
        v = tree["bufferViews"][tree["images"][i]["bufferView"]]
        off = v.get("byteOffset", 0)
        return np.asarray(Image.open(io.BytesIO(binary[off : off + v["byteLength"]])).convert("RGB"))

    images = [image(i) for i in range(len(tree.get("images", [])))]
    texture = images[0]
    out = []
    for node in tree["nodes"]:
        if "mesh" not in node:
            continue
        m = np.eye(4)
        if "matrix" in node:
            m = np.asarray(node["matrix"], float).reshape(4, 4).T
        for prim in tree["meshes"][node["mesh"]]["primitives"]:
            at = prim["attributes"]
            pos = accessor(at["POSITION"]).astype(np.float64)
            pos = pos @ m[:3, :3].T + m[:3, 3]
            alpha = accessor(at["COLOR_0"])[:, 3] if "COLOR_0" in at else np.ones(len(pos))
            mat = tree["materials"][prim.get("material", 0)]
            tex = tree["textures"][mat["pbrMetallicRoughness"]["baseColorTexture"]["index"]]["source"]
            out.append({"pos": pos, "uv": accessor(at["TEXCOORD_0"]).astype(np.float64), "alpha": alpha,
                        "faces": accessor(prim["indices"]).reshape(-1, 3).astype(np.int64), "texture": images[tex]})
    return out, texture, tree


def viewer_camera(tree: dict, width: int, offset: tuple[float, float] = (0.0, 0.0)):
    """The HTML viewer's camera for a GLB (its JSON ``tree``) in a view ``width`` pixels wide, at
    ``offset`` (-1 .. 1 of the parallax's largest offset, horizontal and vertical): placed to the
    side, aimed at the focus depth, zoomed just enough that the parallax never shows beyond the
    photo's border (``photo3d/assets/viewer.src.js``: layout()).  Returns (focal, (width, height),
    eye, rot), the arguments of :func:`rasterize`."""
    import math

    from photo3d.render import cover_zoom, look_at

    ex = tree["extras"]["photo3d"]
    tx, ty = math.tan(math.radians(ex["fov_x_deg"]) / 2), math.tan(math.radians(ex["fov_y_deg"]) / 2)
    height = max(1, round(width * ty / tx))
    focal = (height / 2) / (ty / cover_zoom(ex))
    target = np.array([0.0, 0.0, -ex["parallax"]["focus_depth"]])
    eye = np.array([offset[0], offset[1], 0.0]) * ex["parallax"]["max_offset"]
    return focal, (width, height), eye, look_at(eye, target)


def rasterize(meshes: list[dict], texture: np.ndarray, focal: float, size: tuple[int, int], eye: np.ndarray,
              cutoff: float = 0.5, rot: np.ndarray | None = None, with_layer: bool = False, with_faces: bool = False):
    """Render from ``eye`` looking down -Z (pinhole ``focal`` px, ``size`` = (W, H)); ``rot``: the
    world-to-camera rotation (None = the axes of the photo's camera).

    Returns (rgb float32 HxWx3, covered bool HxW), and with ``with_layer`` the index of the
    primitive each pixel shows (-1 = empty) as a third element; with ``with_faces`` also the index
    of its face within that primitive (-1 = empty) and each primitive's faces' areas on screen.
    """
    W, H = size
    cand_pix, cand_depth, cand_uv, cand_mesh, cand_face, areas = [], [], [], [], [], []
    for k, m in enumerate(meshes):
        p = m["pos"] - eye
        if rot is not None:
            p = p @ np.asarray(rot, float).T
        w = -p[:, 2]  # distance along the view axis
        sx = focal * p[:, 0] / w + W / 2  # continuous image coords, pixel centres at +0.5
        sy = -focal * p[:, 1] / w + H / 2
        f = m["faces"]
        if with_faces:  # (every face's, by its index in the primitive)
            X, Y = sx[f], sy[f]
            areas.append(0.5 * np.abs((X[:, 1] - X[:, 0]) * (Y[:, 2] - Y[:, 0]) - (X[:, 2] - X[:, 0]) * (Y[:, 1] - Y[:, 0])))
        fid = np.nonzero((w[f] > 1e-6).all(1))[0]
        f = f[fid]
        X, Y = sx[f], sy[f]  # (m, 3)
        bx0 = np.clip(np.floor(X.min(1) - 0.5), 0, W - 1).astype(np.int64)
        bx1 = np.clip(np.ceil(X.max(1) - 0.5), 0, W - 1).astype(np.int64)
        by0 = np.clip(np.floor(Y.min(1) - 0.5), 0, H - 1).astype(np.int64)
        by1 = np.clip(np.ceil(Y.max(1) - 0.5), 0, H - 1).astype(np.int64)
        nx, ny = bx1 - bx0 + 1, by1 - by0 + 1
        keep = (X.max(1) >= 0) & (X.min(1) <= W) & (Y.max(1) >= 0) & (Y.min(1) <= H)
        f, fid, X, Y, bx0, by0, nx, ny = f[keep], fid[keep], X[keep], Y[keep], bx0[keep], by0[keep], nx[keep], ny[keep]
        cnt = nx * ny
        tri = np.repeat(np.arange(len(f)), cnt)
        local = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        px = bx0[tri] + local % nx[tri]
        py = by0[tri] + local // nx[tri]
        cx, cy = px + 0.5, py + 0.5
        ax, ay, bx, by, qx, qy = X[tri, 0], Y[tri, 0], X[tri, 1], Y[tri, 1], X[tri, 2], Y[tri, 2]
        den = (by - qy) * (ax - qx) + (qx - bx) * (ay - qy)
        ok = np.abs(den) > 1e-12
        den = np.where(ok, den, 1.0)
        l0 = ((by - qy) * (cx - qx) + (qx - bx) * (cy - qy)) / den
        l1 = ((qy - ay) * (cx - qx) + (ax - qx) * (cy - qy)) / den
        l2 = 1 - l0 - l1
        eps = -1e-9
        inside = ok & (l0 >= eps) & (l1 >= eps) & (l2 >= eps)
        tri, px, py, l0, l1, l2 = tri[inside], px[inside], py[inside], l0[inside], l1[inside], l2[inside]
        ft = f[tri]
        iw = 1.0 / w[ft]  # perspective-correct weights
        b = np.stack([l0, l1, l2], 1) * iw
        inv_depth = b.sum(1)
        b /= inv_depth[:, None]
        alpha = (b * m["alpha"][ft]).sum(1)
        vis = alpha >= cutoff
        uv = np.einsum("ni,nij->nj", b[vis], m["uv"][ft[vis]])
        cand_pix.append(py[vis] * W + px[vis])
        cand_depth.append(inv_depth[vis])
        cand_uv.append(uv)
        cand_mesh.append(np.full(len(uv), k))
        cand_face.append(fid[tri[vis]])
    pix = np.concatenate(cand_pix)
    depth = np.concatenate(cand_depth)
    uv = np.concatenate(cand_uv)
    mesh_id = np.concatenate(cand_mesh)
    face_id = np.concatenate(cand_face)
    order = np.lexsort((-depth, pix))  # per pixel, nearest first
    pix, uv, mesh_id, face_id = pix[order], uv[order], mesh_id[order], face_id[order]
    first = np.ones(len(pix), bool)
    first[1:] = pix[1:] != pix[:-1]
    pix, uv, mesh_id, face_id = pix[first], uv[first], mesh_id[first], face_id[first]
    out = np.zeros((H * W, 3), np.float32)
    for k, m in enumerate(meshes):  # each primitive samples its own texture
        tex = m.get("texture", texture)
        sel = mesh_id == k
        th, tw = tex.shape[:2]
        n = int(sel.sum())
        if n == 0:
            continue
        pad = (-n) % 1024  # cv2.remap wants maps shorter than 32767 per side
        mx = np.pad(uv[sel, 0] * tw - 0.5, (0, pad)).astype(np.float32).reshape(-1, 1024)
        my = np.pad(uv[sel, 1] * th - 0.5, (0, pad)).astype(np.float32).reshape(-1, 1024)
        col = cv2.remap(tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out[pix[sel]] = col.reshape(-1, tex.shape[2])[:n, :3]
    covered = np.zeros(H * W, bool)
    covered[pix] = True
    if with_layer or with_faces:
        layer = np.full(H * W, -1, np.int32)
        layer[pix] = mesh_id
        if not with_faces:
            return out.reshape(H, W, 3), covered.reshape(H, W), layer.reshape(H, W)
        face = np.full(H * W, -1, np.int64)
        face[pix] = face_id
        return out.reshape(H, W, 3), covered.reshape(H, W), layer.reshape(H, W), face.reshape(H, W), areas
    return out.reshape(H, W, 3), covered.reshape(H, W)


# ------------------------------------------------------------------ evaluation


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    if not mask.any():
        return float("nan")
    mse = np.mean((a[mask].astype(np.float64) - b[mask].astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004: Gaussian window sigma 1.5, K1 0.01, K2 0.03) of the luma of
    ``a`` and ``b`` over ``mask``."""
    if not mask.any():
        return float("nan")
    luma = np.array([0.299, 0.587, 0.114])
    x, y = (np.asarray(a, np.float64) @ luma), (np.asarray(b, np.float64) @ luma)
    blur = lambda z: cv2.GaussianBlur(z, (11, 11), 1.5)  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s[mask].mean())


def false_tear_rate(layer: np.ndarray, valid: np.ndarray, disocc: np.ndarray, framed: np.ndarray | None = None) -> float:
    """Share of the view's pixels that see no disocclusion (``valid`` and not within 1 px of
    ``disocc``) but that the 3D photo shows from its background layer (primitive index > 0) or
    leaves empty: tears the layering opened where the real scene has none.  ``framed``: the
    pixels a single-layer mesh of the same depth covers (the others lie beyond the photo's
    frame at this view, whatever the layering; they do not count)."""
    solid = valid & ~cv2.dilate(disocc.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if framed is not None:
        solid &= framed
    return float(((layer != 0) & solid).sum() / max(int(solid.sum()), 1))


SPECKLE_PX = 25  # fragments smaller than this many pixels of the rendered view count as speckles


def speckle_count(layer: np.ndarray, min_area: int = SPECKLE_PX) -> int:
    """Fragments of the rendered view smaller than ``min_area`` pixels: 8-connected regions
    showing one layer (or nothing) inside another (flecks of foreground floating on the
    background, background or emptiness showing through a foreground, torn-off slivers)."""
    n = 0
    for k in np.unique(layer):
        cnt, _, stats, _ = cv2.connectedComponentsWithStats((layer == k).astype(np.uint8), connectivity=8)
        n += int((stats[1:, cv2.CC_STAT_AREA] < min_area).sum())
    return n


STREAK = 2.5  # a visible-layer face drawn this many times larger than from the photo's viewpoint is a streak


def streak_pixels(meshes: list[dict], texture: np.ndarray, tree: dict, offset: float, width: int = 800) -> int:
    """Pixels of the viewer's view at ``offset`` (-1 .. 1) that the visible layer (primitive 0) draws
    from a face ``STREAK`` times or more its area in the rest view: texture smeared across a step
    that is not cut (an edge's pixel drawn as a thin line across the opening beside it)."""
    views = {}
    for off in (0.0, offset):
        focal, size, eye, rot = viewer_camera(tree, width, (off, 0.0))
        views[off] = rasterize(meshes, texture, focal, size, eye, rot=rot, with_faces=True)
    _, _, layer, face, areas = views[offset]
    rest = views[0.0][4][0]
    sel = layer == 0
    return int((areas[0][face[sel]] >= STREAK * np.maximum(rest[face[sel]], 1e-9)).sum())


def eval_masks(disp1: np.ndarray, disp5: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(valid, disoccluded) masks over view5, from the GT disparities (pixels)."""
    H, W = disp5.shape
    xs = np.arange(W)[None, :] + np.round(disp5).astype(int)
    valid = (disp5 > 0) & (xs < W)
    ys = np.repeat(np.arange(H)[:, None], W, 1)
    d1 = disp1[ys, np.clip(xs, 0, W - 1)]
    disocc = valid & ((d1 == 0) | (d1 > disp5 + 1.0))
    return valid, disocc


def step_shares(disp: np.ndarray, disp1: np.ndarray, k: int = 6, reach: int = 4) -> np.ndarray:
    """For each pair of pixels ``k`` apart across a step of the ground truth ``disp1`` that opens a
    disocclusion at view5 (near side on the left, more than 4 px of disparity), the depth's step over
    the same pair widened by ``reach`` px each side, as a share of the real step (1: all of it)."""
    g1, g2 = disp1[:, :-k], disp1[:, k:]
    pairs = (g1 > 0) & (g2 > 0) & (g1 - g2 > 4)
    wide = np.ones((1, 2 * reach + 1), np.uint8)
    step = cv2.dilate(disp, wide)[:, :-k] - cv2.erode(disp, wide)[:, k:]
    return (step[pairs] / (g1 - g2)[pairs]).astype(np.float32)


def align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Least-squares scale + shift of ``pred`` to ``gt`` on valid pixels; clipped at half min GT."""
    v = gt > 0
    A = np.stack([pred[v], np.ones(v.sum())], 1)
    (a, b), *_ = np.linalg.lstsq(A, gt[v], rcond=None)
    return np.maximum(a * pred + b, 0.5 * gt[v].min()).astype(np.float32)


def build_and_render(rgb: np.ndarray, disp_px: np.ndarray, layered: bool, snap: bool = False,
                     mirror: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """3D photo from view1 with disparity ``disp_px`` (pixels), rendered one baseline to the right."""
    H, W = disp_px.shape
    camera = camera_for(W, H, None)
    h, w = working_shape(W, H, 1024)
    # Z = focal * B / d with baseline B = 1  =>  inverse depth = d / focal
    inv = cv2.resize(disp_px, (w, h), interpolation=cv2.INTER_AREA) / camera.focal_px
    geo = Geometry(inv.astype(np.float32), camera, max_offset=1.0)
    opts = ConvertOptions(layered=layered, mirror=mirror, snap_edges=snap)
    timings: dict = {}
    glb, report = pack_glb(fit_to_budget(Photo(rgb=rgb), geo, opts, timings), opts, timings, {})
    meshes, texture, _ = load_glb_meshes(glb)
    img, covered, layer = rasterize(meshes, texture, camera.focal_px, (W, H), np.array([1.0, 0.0, 0.0]),
                                    with_layer=True)
    report["seconds"] = timings
    report["layer_map"] = layer
    return img, covered, report


def model_disparity(model_path: Path | None, rgb: np.ndarray, upsample: str = "bilinear") -> tuple[np.ndarray, str]:
    """The model's normalized disparity as ``photo3d convert`` computes it: one pass (whatever the
    model's operating point for ``photo3d depth``), upsampled bilinearly (the layering stage snaps
    edges to the photo)."""
    from photo3d.depth.runtime import load_model

    model = load_model(model_path)
    return model.predict_result(rgb, upsample=upsample, tta="none").disparity, model.name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="depth model (default: the bundled one)")
    ap.add_argument("--gt", action="store_true", help="also run with the GT disparity as depth (upper bound)")
    ap.add_argument("--scenes", default="", help="comma-separated subset")
    ap.add_argument("--save", type=Path, default=None, help="write renders as PNGs into this folder")
    ap.add_argument("--json", type=Path, default=None, help="write the per-scene rows to this JSON file")
    ap.add_argument("--smooth-fill", action="store_true", help="inpaint holes with the smooth fill only (no mirroring)")
    ap.add_argument("--upsample", default="bilinear", choices=["bilinear", "guided"], help="depth upsampling")
    args = ap.parse_args(argv)
    root = shared_dir() / "data" / "middlebury2006"
    if not root.is_dir():
        print(f"no data at {root}")
        return 1
    model_path = args.model  # None: the bundled model
    scenes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if args.scenes:
        scenes = [s for s in scenes if s in args.scenes.split(",")]
    sources = ["model"] + (["gt"] if args.gt else [])
    rows = []
    shares: dict[str, list[np.ndarray]] = {}  # depth source -> step_shares of every scene
    name = "?"
    for scene in scenes:
        d = root / scene
        rgb = np.asarray(Image.open(d / "view1.png").convert("RGB"))
        view5 = np.asarray(Image.open(d / "view5.png").convert("RGB"))
        disp1 = np.asarray(Image.open(d / "disp1.png")).astype(np.float32) / 3.0
        disp5 = np.asarray(Image.open(d / "disp5.png")).astype(np.float32) / 3.0
        valid, disocc = eval_masks(disp1, disp5)
        for src in sources:
            if src == "model":
                pred, name = model_disparity(model_path, rgb, args.upsample)
                disp = align(pred, disp1)
            else:
                disp = align(disp1, disp1)
                disp[disp1 == 0] = cv2.inpaint(disp, (disp1 == 0).astype(np.uint8), 3, cv2.INPAINT_NS)[disp1 == 0]
            row = {"scene": scene, "depth": src}
            shares.setdefault(src, []).append(step_shares(disp, disp1))
            framed = None
            for method, layered in (("stretched", False), ("layered", True)):
                t = time.perf_counter()
                # network depth is blurry: snap its edges to the photo's (as `convert` does)
                img, covered, rep = build_and_render(rgb, disp, layered, snap=src == "model", mirror=not args.smooth_fill)
                row[f"{method}_all"] = psnr(img, view5, valid)
                row[f"{method}_disocc"] = psnr(img, view5, disocc)
                row[f"{method}_ssim"] = ssim(img, view5, valid)
                row[f"{method}_tears"] = false_tear_rate(rep["layer_map"], valid, disocc, framed)
                framed = covered if framed is None else framed
                row[f"{method}_speckles"] = speckle_count(rep["layer_map"])
                row[f"{method}_holes"] = float((~covered & valid).mean())
                row[f"{method}_revealed"] = float(((rep["layer_map"] != 0) & disocc).sum() / max(int(disocc.sum()), 1))
                row[f"{method}_vertices"] = rep["vertices"]
                row[f"{method}_seconds"] = time.perf_counter() - t
                if args.save:
                    args.save.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(args.save / f"{scene}_{src}_{method}.png")
            row["disocc_share"] = float(disocc.sum() / max(valid.sum(), 1))
            row["valid_px"] = int(valid.sum())
            rows.append(row)
            print(f"{scene:11s} {src:5s} layered {row['layered_all']:6.2f} / {row['layered_disocc']:6.2f} dB   "
                  f"stretched {row['stretched_all']:6.2f} / {row['stretched_disocc']:6.2f} dB   "
                  f"SSIM {row['layered_ssim']:.3f}/{row['stretched_ssim']:.3f}  tears {row['layered_tears']:.4f}  "
                  f"speckles {row['layered_speckles']}/{row['stretched_speckles']}  "
                  f"verts {row['layered_vertices']} vs {row['stretched_vertices']}", flush=True)
    if args.json:
        import json

        args.json.write_text(json.dumps(rows, indent=1))
    print()
    print(f"depth model: {name} (aligned to GT by least-squares scale+shift); PSNR in dB, mean over scenes")
    print("| depth | layered (all) | stretched (all) | layered (disoccluded) | stretched (disoccluded) | layered wins disocc "
          "| layered ≥ stretched − 0.1 dB (all) | SSIM layered / stretched | false tears (layered) | speckles (layered / stretched) "
          "| disoccluded px revealed (layered) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")

    def pooled(rs: list[dict]) -> float:  # over all scenes' disoccluded pixels, not a mean of shares
        n = [r["disocc_share"] * r["valid_px"] for r in rs]
        return float(np.dot(n, [r["layered_revealed"] for r in rs]) / max(sum(n), 1e-9))

    for src in sources:
        rs = [r for r in rows if r["depth"] == src]
        m = {k: float(np.nanmean([r[k] for r in rs])) for k in rs[0] if k not in ("scene", "depth")}
        wins = sum(r["layered_disocc"] > r["stretched_disocc"] for r in rs)
        ge = sum(r["layered_all"] >= r["stretched_all"] - 0.1 for r in rs)
        print(f"| {src} | {m['layered_all']:.2f} | {m['stretched_all']:.2f} | {m['layered_disocc']:.2f} | "
              f"{m['stretched_disocc']:.2f} | {wins}/{len(rs)} | {ge}/{len(rs)} | {m['layered_ssim']:.4f} / "
              f"{m['stretched_ssim']:.4f} | {100 * m['layered_tears']:.2f} % | {m['layered_speckles']:.1f} / "
              f"{m['stretched_speckles']:.1f} | {100 * pooled(rs):.1f} % |")
    for src in sources:  # what the builder has to work with where the real view uncovers the background
        sh = np.concatenate(shares[src])
        print(f"{src}: depth step where view5 sees a disocclusion, as a share of the real step: median "
              f"{np.median(sh):.2f}, under 0.3 at {np.mean(sh < 0.3):.0%} of {sh.size:,} pairs")
    ok = all(np.nanmean([r["layered_disocc"] for r in rows if r["depth"] == s]) >
             np.nanmean([r["stretched_disocc"] for r in rows if r["depth"] == s]) for s in sources)
    print("layered beats stretched on disoccluded pixels:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

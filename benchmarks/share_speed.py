"""Speed of the shareable outputs: a 12 MP JPEG -> 4 s 1080p MP4 (target <= 15 s whole process on
two cores), the example's GIF at 480 px (target <= 5 MB), and the renderer against vectorised
alternatives (why photo3d/render.py is a numba-compiled rasteriser).

    python benchmarks/share_speed.py [--photo IN.jpg] [--skip-mp4] [--skip-compare]

1. ``photo3d convert PHOTO -o out.mp4`` as a whole process (interpreter, imports, model, depth,
   mesh, render, encode): wall time and CPU time (user + sys of the process and FFmpeg), and the
   split from the run's own report: convert (everything before the first frame), render (time
   the encoder waited for frames), encode (what FFmpeg needed after the last frame); then the same
   parts as CPU time, measured one by one in this process (load-independent).
2. ``photo3d convert examples/coffee.jpg -o coffee.gif``: size.
3. CPU time per 1080 x 720 frame of the example's scene: this renderer (1 and 2 x 2 samples per
   pixel), benchmarks/novel_view.py's vectorised numpy rasteriser (the same mesh), and a
   vectorised torch forward splatting of the scene's layered points (z-buffer by
   ``scatter_reduce``; a lower bound: no soft alpha, no gap filling).

Without --photo, a 12 MP test photo is made as benchmarks/convert_speed.py makes it.  The machine
is shared: wall times stretch with the load, CPU times much less (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from convert_speed import make_photo, wall  # noqa: E402

EXAMPLE = REPO / "examples" / "coffee.jpg"
CLI = [sys.executable, "-c", "import photo3d; photo3d.main()"]


def cpu() -> float:
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def whole_mp4(photo: Path, tmp: Path) -> None:
    out, summary = tmp / "out.mp4", tmp / "summary.json"
    w, c = wall(CLI + ["convert", str(photo), "-o", str(out), "--summary", str(summary)])
    rep = json.loads(summary.read_text())["results"][0]["report"]
    s = rep["seconds"]
    render, encode = s.get("render", 0.0), s.get("encode", 0.0)
    print(f"whole process, {photo.name} -> {out.name} ({rep['share']['frames']} frames "
          f"{rep['share']['size'][0]}x{rep['share']['size'][1]}, {out.stat().st_size / 1e6:.2f} MB): "
          f"wall {w:.2f} s, CPU {c:.2f} s (user + sys, all threads, FFmpeg included)")
    print(f"  wall split: convert {w - render - encode:.2f} s (interpreter, imports, model, depth, layers, mesh, "
          f"GLB), render {render:.2f} s (waiting for frames; FFmpeg encodes meanwhile), encode {encode:.2f} s (after the last frame)")


def cpu_split(photo: Path, tmp: Path) -> None:
    """CPU seconds of each part on its own: convert to GLB, render 120 frames, encode 120 frames."""
    from photo3d.pipeline import ConvertOptions, convert_file
    from photo3d.render import Renderer, frame_size, path_views, scene_from_glb
    from photo3d.video import ShareOptions, _write_mp4

    c0 = cpu()
    convert_file(photo, tmp / "p.glb", ConvertOptions())
    c1 = cpu()
    scene = scene_from_glb((tmp / "p.glb").read_bytes())
    w, h = frame_size(scene, 1080)
    r = Renderer(scene, w, h, supersample=ShareOptions().supersample)
    views = path_views("circle", 120, scene.meta)
    r.render(views[0])  # compile / load the kernel first
    c2 = cpu()
    frames = [r.render(v) for v in views]
    c3 = cpu()
    _write_mp4(tmp / "e.mp4", iter(frames), (w, h), 30.0)
    c4 = cpu()
    print(f"  CPU split (in-process, one part at a time): convert {c1 - c0:.2f} s (model load and imports "
          f"included), render {c3 - c2:.2f} s ({1000 * (c3 - c2) / 120:.0f} ms/frame), encode {c4 - c3:.2f} s; "
          f"sum {c1 - c0 + c4 - c2:.2f} CPU s = {(c1 - c0 + c4 - c2) / 2:.2f} s of wall time on 2 idle cores at best")


def gif_size(tmp: Path) -> None:
    out = tmp / "coffee.gif"
    w, _ = wall(CLI + ["convert", str(EXAMPLE), "-o", str(out)])
    from PIL import Image

    im = Image.open(out)
    print(f"example GIF: {im.size[0]}x{im.size[1]}, {im.n_frames} frames, {out.stat().st_size / 1e6:.2f} MB ({w:.1f} s wall)")


def _splat_points(scene, w: int, h: int):
    """The scene's layered points in camera space and their colours: every pixel of each layer
    seen from the photo's viewpoint at the frame's resolution."""
    from photo3d.render import Renderer, Scene, View, cover_zoom

    k = cover_zoom(scene.meta)
    f = (h / 2) / (np.tan(np.radians(scene.meta["fov_y_deg"]) / 2) / k)
    pts, cols = [], []
    for m in scene.meshes:
        rgb, inv = Renderer(Scene([m], scene.textures, scene.meta), w, h, supersample=1).render(View(), depth=True)
        ys, xs = np.nonzero(inv > 0)
        z = 1.0 / inv[ys, xs]
        pts.append(np.stack([(xs + 0.5 - w / 2) / f * z, -(ys + 0.5 - h / 2) / f * z, -z], 1))
        cols.append(rgb[ys, xs])
    return np.concatenate(pts), np.concatenate(cols)


def compare_renderers() -> None:
    import torch

    from novel_view import load_glb_meshes, rasterize
    from photo3d.pipeline import convert_file
    from photo3d.render import Renderer, View, frame_size, look_at, path_views, scene_from_glb, view_projection

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as d:
        convert_file(EXAMPLE, Path(d) / "c.glb")
        glb = (Path(d) / "c.glb").read_bytes()
    scene = scene_from_glb(glb)
    w, h = frame_size(scene, 1080)
    views = path_views("circle", 120, scene.meta)[:: 120 // 6]
    print(f"CPU time per {w}x{h} frame of the example ({sum(len(m.faces) for m in scene.meshes):,} triangles), "
          f"mean of {len(views)} frames:")

    def per_frame(fn) -> float:
        fn(views[0])
        c = cpu()
        for v in views:
            fn(v)
        return (cpu() - c) / len(views)

    for ss in (1, 2):
        r = Renderer(scene, w, h, supersample=ss)
        print(f"  photo3d.render (numba rasteriser), {ss}x{ss} samples/pixel: {1000 * per_frame(r.render):7.1f} ms")
    meshes, texture, _ = load_glb_meshes(glb)

    target = np.array([0.0, 0.0, -scene.meta["parallax"]["focus_depth"]])
    focal = (h / 2) * view_projection(scene.meta, View(), w, h)[1, 1]  # the viewer's zoomed framing
    t = scene.meta["parallax"]["max_offset"]

    def numpy_raster(v: View):
        eye = np.array([v.x * t, v.y * t, 0.0])
        return rasterize(meshes, texture, focal, (w, h), eye, rot=look_at(eye, target))

    print(f"  benchmarks/novel_view.py rasterize (vectorised numpy):   {1000 * per_frame(numpy_raster):7.1f} ms")
    pts, cols = _splat_points(scene, w, h)
    P = torch.from_numpy(np.concatenate([pts, np.ones((len(pts), 1))], 1))
    C = torch.from_numpy(cols.astype(np.uint8))

    def splat(v: View):
        m = torch.from_numpy(view_projection(scene.meta, v, w, h))
        q = P @ m.T
        iw = 1.0 / q[:, 3]
        x = ((q[:, 0] * iw + 1) * 0.5 * w).long().clamp(0, w - 1)
        y = ((1 - q[:, 1] * iw) * 0.5 * h).long().clamp(0, h - 1)
        key = ((1.0 / iw) * 1e6).long() * (1 << 24) + torch.arange(len(q))  # nearest first, then point id
        best = torch.full((w * h,), torch.iinfo(torch.int64).max, dtype=torch.int64)
        best.scatter_reduce_(0, y * w + x, key, "amin")
        hit = best != torch.iinfo(torch.int64).max
        out = torch.zeros((w * h, 3), dtype=torch.uint8)
        out[hit] = C[best[hit] & ((1 << 24) - 1)]
        return out

    print(f"  vectorised torch forward splatting ({len(pts):,} points, 2 threads): {1000 * per_frame(splat):7.1f} ms")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photo", type=Path)
    ap.add_argument("--skip-mp4", action="store_true")
    ap.add_argument("--skip-compare", action="store_true")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="photo3d-share-"))
    load0 = os.getloadavg()[0]
    if not args.skip_mp4:
        photo = args.photo or tmp / "photo12mp.jpg"
        if args.photo is None:
            make_photo(photo)
        from PIL import Image

        pw, ph = Image.open(photo).size
        print(f"photo: {photo} ({pw}x{ph} = {pw * ph / 1e6:.1f} MP, {photo.stat().st_size / 1e6:.2f} MB JPEG)")
        whole_mp4(photo, tmp)
        cpu_split(photo, tmp)
    gif_size(tmp)
    if not args.skip_compare:
        compare_renderers()
    print(f"load average: {load0:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    t = time.perf_counter()
    code = main()
    print(f"({time.perf_counter() - t:.0f} s)")
    sys.exit(code)

"""Contact sheet: each photo's 3D photo at the viewer's extreme left and right offsets, side by side.

Every photo is converted with ``photo3d convert``'s own pipeline (a temporary GLB), the GLB is read
back and rendered by the benchmark's software rasteriser (benchmarks/novel_view.py) with the HTML
viewer's camera: placed at ``offset * max_offset`` to the side, aimed at the focus depth, its field
of view zoomed just enough that the parallax never shows beyond the photo's border (as
``photo3d/assets/viewer.src.js`` does).  Empty pixels are black, as the viewer's clear colour.

    python scripts/contact_sheet.py PHOTO... -o sheet.png [--model PATH]... [--width 400] [--layers]

``--model`` may be given more than once (``bundled`` = the bundled model): one row per photo and model.

``--layers`` adds a third column per photo: the right view with the background layer tinted
magenta and empty pixels red (where the layering tears or speckles).  ``--depth`` puts the photo
and the depth preview (``photo3d depth --preview``: red = near, blue = far) before the views.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from novel_view import load_glb_meshes, rasterize, speckle_count, viewer_camera  # noqa: E402

from photo3d.io import write_bytes_atomic  # noqa: E402
from photo3d.pipeline import ConvertOptions, convert_file  # noqa: E402


def viewer_views(glb: bytes, width: int, offsets=((-1.0, 0.0), (1.0, 0.0))) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rgb uint8, layer index per pixel) of the GLB as the viewer shows it at each offset."""
    meshes, texture, tree = load_glb_meshes(glb)
    out = []
    for offset in offsets:
        focal, size, eye, rot = viewer_camera(tree, width, offset)
        img, _, layer = rasterize(meshes, texture, focal, size, eye, rot=rot, with_layer=True)
        out.append((np.clip(img, 0, 255).astype(np.uint8), layer))
    return out


def label(img: np.ndarray, text: str) -> np.ndarray:
    img = img.copy()
    # a black outline: the same thin text shifted around it (OpenCV widens every letter's advance by
    # the stroke's thickness, so one thick black pass runs ahead of the white text)
    for dx, dy in ((-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)):
        cv2.putText(img, text, (6 + dx, 18 + dy), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def tint_layers(img: np.ndarray, layer: np.ndarray) -> np.ndarray:
    out = img.astype(np.float32)
    bg = layer > 0
    out[bg] = 0.5 * out[bg] + 0.5 * np.array([255, 0, 255])
    out[layer < 0] = (255, 0, 0)
    return out.astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("photos", nargs="+", type=Path)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--model", action="append", default=None,
                    help="depth model, repeatable ('bundled' or none given: the bundled one)")
    ap.add_argument("--width", type=int, default=400, help="width of each view in pixels")
    ap.add_argument("--offset", type=float, default=1.0, help="horizontal offset (1 = the viewer's extreme)")
    ap.add_argument("--layers", action="store_true", help="add the right view with the layers shown")
    ap.add_argument("--depth", action="store_true", help="start each row with the photo and its depth preview")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for src, model in [(s, m) for s in args.photos for m in (args.model or ["bundled"])]:
            dst = Path(tmp) / (src.stem + ".glb")
            rep = convert_file(src, dst, ConvertOptions(model=None if model == "bundled" else Path(model)))
            (left, _), (right, layer) = viewer_views(dst.read_bytes(), args.width, ((-args.offset, 0), (args.offset, 0)))
            n = speckle_count(layer)
            name = "" if args.model is None else f" ({Path(model).stem})"
            cells = [label(left, f"{src.stem}{name}  left"), label(right, f"right  {rep['layers']} layers, {n} speckles")]
            if args.depth:  # the photo and `photo3d depth`'s map, in the preview's colours
                from photo3d.depth import DepthOptions, depth_file
                from photo3d.depth.maps import colorize, load_depth_map
                from photo3d.io import load_image

                d = Path(tmp) / (src.stem + ".png")
                depth_file(src, d, DepthOptions(model=None if model == "bundled" else Path(model)))

                def fit(a: np.ndarray, h: int = left.shape[0]) -> np.ndarray:  # the whole picture at the views' height
                    return cv2.resize(a, (max(1, round(a.shape[1] * h / a.shape[0])), h), interpolation=cv2.INTER_AREA)

                cells = [label(fit(load_image(src).rgb), src.stem),
                         label(fit(colorize(load_depth_map(d))), "depth (red = near)")] + cells
            if args.layers:
                cells.append(label(tint_layers(right, layer), "background layer / empty"))
            rows.append(np.concatenate([np.pad(c, ((2, 2), (2, 2), (0, 0)), constant_values=255) for c in cells], 1))
            print(f"{src}: {rep['layers']} layers, {rep['vertices']} vertices, {rep['glb_bytes']} bytes, "
                  f"{n} speckles at the right offset", flush=True)
    w = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 0), (0, w - r.shape[1]), (0, 0)), constant_values=255) for r in rows], 0)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(args.output.suffix or ".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    write_bytes_atomic(args.output, buf.tobytes())
    print(f"wrote {args.output} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    from photo3d.errors import Photo3DError

    try:
        sys.exit(main())
    except Photo3DError as e:  # (a photo it cannot read, an -o it cannot write: one line, not a traceback)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(int(e.exit_code))

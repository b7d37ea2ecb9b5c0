"""GIF size: photo3d's GIF (one shared palette, unchanged pixels left transparent) against a
palette per frame (Pillow's default for an animated GIF of RGB frames), on the same frames.

    python benchmarks/gif_palette.py [PHOTO_OR_GLB] [--size PX]

Defaults: ``examples/coffee.jpg`` (converted with the bundled model) and the GIF's defaults:
480 px, 4 s at 30 fps along ``circle``.  Prints both sizes.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("photo", nargs="?", type=Path, default=REPO / "examples" / "coffee.jpg")
    ap.add_argument("--size", type=int, default=None, help="longer side (default: the GIF's, 480)")
    args = ap.parse_args()

    from PIL import Image

    from photo3d.pipeline import ConvertOptions, convert_file
    from photo3d.video import GIF_COLOURS, ShareOptions, _encode_gif, render_frames

    if args.photo.suffix.lower() == ".glb":
        glb = args.photo.read_bytes()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            convert_file(args.photo, Path(tmp) / "x.glb", ConvertOptions())
            glb = (Path(tmp) / "x.glb").read_bytes()
    opts = ShareOptions(size=args.size)
    frames, _, (w, h), _ = render_frames(glb, ".gif", opts)
    frames = list(frames)
    shared = _encode_gif(frames, opts.fps, GIF_COLOURS)
    buf = io.BytesIO()
    ims = [Image.fromarray(f) for f in frames]
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:], duration=round(1000 / opts.fps), loop=0)
    print(f"{args.photo.name}: {len(frames)} frames {w}x{h}")
    print(f"  photo3d (one palette, transparent unchanged pixels): {len(shared):,} bytes ({len(shared) / 1e6:.2f} MB)")
    print(f"  a palette per frame (Pillow's default):               {len(buf.getvalue()):,} bytes "
          f"({len(buf.getvalue()) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()

"""Single-file offline HTML viewer: the GLB inlined as base64 plus the bundled three.js viewer.

``assets/viewer.bundle.js`` is three.js + GLTFLoader + ``assets/viewer.src.js`` bundled by
esbuild at build time (see ``assets/README.md``); three.js is MIT-licensed and its licence is
embedded in every page.  The page needs no network.
"""

from __future__ import annotations

import base64
import html
from importlib import resources
from pathlib import Path

from .io import write_bytes_atomic

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="photo3d {version}">
<title>{title}</title>
<style>html,body{{margin:0;height:100%;overflow:hidden;background:#000}}canvas{{display:block;touch-action:none}}</style>
</head><body>
<script id="photo3d-glb" type="application/octet-stream">{glb}</script>
<script>/*! three.js (bundled with GLTFLoader) — {license} */
{bundle}</script>
<script>Photo3D.start(document.getElementById("photo3d-glb").textContent);</script>
</body></html>
"""


def _asset(name: str) -> str:
    return resources.files("photo3d").joinpath("assets", name).read_text(encoding="utf-8")


def viewer_html(glb: bytes, title: str = "3D photo") -> str:
    from . import __version__

    bundle = _asset("viewer.bundle.js").replace("</script", "<\\/script")
    license_text = " ".join(_asset("three.LICENSE").split()).replace("*/", "* /")
    return _PAGE.format(
        version=__version__,
        title=html.escape(title),
        glb=base64.b64encode(glb).decode("ascii"),
        license=license_text,
        bundle=bundle,
    )


def write_viewer(path: str | Path, glb: bytes, title: str = "3D photo") -> None:
    write_bytes_atomic(path, viewer_html(glb, title).encode("utf-8"))

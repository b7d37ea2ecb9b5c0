"""The generated viewer bundle is up to date with its source."""

from __future__ import annotations

import hashlib

from helpers.paths import REPO
from photo3d.viewer import BUNDLE_BANNER, viewer_html

ASSETS = REPO / "photo3d" / "assets"


def test_viewer_bundle_is_built_from_the_current_source():
    first = (ASSETS / "viewer.bundle.js").read_text(encoding="utf-8").split("\n", 1)[0]
    assert first.startswith(BUNDLE_BANNER), "viewer.bundle.js has no build banner: run scripts/build-viewer.sh"
    built_from = first[len(BUNDLE_BANNER):].split(":", 1)[0]
    source = hashlib.sha256((ASSETS / "viewer.src.js").read_bytes()).hexdigest()
    assert built_from == source, "photo3d/assets/viewer.src.js changed without a rebuild: run scripts/build-viewer.sh"


def test_banner_is_not_part_of_the_page():
    page = viewer_html(b"glTF", "t")
    assert BUNDLE_BANNER not in page and "var Photo3D=" in page

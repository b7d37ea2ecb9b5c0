"""The README's main job on a fresh clone: the bundled model and the bundled example photo,
no --model and no ../shared needed."""

import numpy as np
from PIL import Image

from helpers.cli import cli
from helpers.gltf import assert_valid_glb
from helpers.paths import REPO
from photo3d.depth.modelfile import bundled_model_path, verify_bundled
from photo3d.export import read_glb

EXAMPLE = REPO / "examples" / "coffee.jpg"


def test_bundled_model_is_present_and_intact():
    path = bundled_model_path()
    assert path.is_file() and path.stat().st_size <= 4_000_000
    verify_bundled(path)


def test_convert_example_with_bundled_model(tmp_path):
    out = tmp_path / "coffee.glb"
    res = cli("convert", EXAMPLE, "-o", out, "--html")
    assert res.exit_code == 0, res.output
    assert_valid_glb(out)
    data = out.read_bytes()
    assert len(data) <= 2_000_000
    gltf, _ = read_glb(data)
    extras = gltf["asset"].get("extras") or gltf.get("extras") or gltf["scenes"][0].get("extras")
    assert "KHR_materials_unlit" in gltf["extensionsUsed"]
    assert any("perspective" in c for c in gltf["cameras"])
    assert extras is not None
    html = (tmp_path / "coffee.html").read_text()
    assert "three" in html.lower() and len(html) > len(data)  # the GLB is inlined


def test_depth_example_with_bundled_model(tmp_path):
    out = tmp_path / "coffee.png"
    res = cli("depth", EXAMPLE, "-o", out)
    assert res.exit_code == 0, res.output
    d = np.asarray(Image.open(out))
    assert d.dtype == np.uint16 and d.shape == (400, 600)
    # the cup and saucer (centre bottom) are nearer than the far table edge (top-left corner)
    assert d[250:350, 200:400].mean() > d[:60, :120].mean()

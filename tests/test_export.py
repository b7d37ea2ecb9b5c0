import io
import math

import numpy as np
import pytest
from gltf_validate import assert_valid_glb
from PIL import Image

from photo3d.export import DEFAULT_FOCAL_35MM, MeshData, camera_for, encode_jpeg, read_glb, to_glb, ExportOptions
from photo3d.pipeline import ConvertOptions, convert_file


def make_photo(path, w=320, h=240, focal=None):
    rng = np.random.default_rng(1)
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:] = (40, 90, 200)
    rgb[::12] = 255
    rgb[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] = (220, 30, 30)
    rgb = np.clip(rgb.astype(int) + rng.integers(-6, 7, rgb.shape), 0, 255).astype(np.uint8)
    im = Image.fromarray(rgb)
    if focal:
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0xA405] = focal
        im.save(path, exif=exif, quality=95)
    else:
        im.save(path, quality=95)
    depth = np.full((h, w), 0.1, np.float32)
    depth[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] = 0.9
    np.save(path.with_suffix(".npy"), depth)
    return path


@pytest.fixture
def glb_file(tmp_path):
    src = make_photo(tmp_path / "photo.jpg", focal=50)
    dst = tmp_path / "photo.glb"
    report = convert_file(src, dst, ConvertOptions(depth=src.with_suffix(".npy")))
    return dst, report


def test_glb_passes_the_khronos_validator(glb_file):
    path, _ = glb_file
    report = assert_valid_glb(path)
    assert report["issues"]["numWarnings"] == 0
    assert report["info"]["drawCallCount"] == 2  # visible + background layer


def test_glb_conventions(glb_file):
    path, report = glb_file
    tree, binary = read_glb(path.read_bytes())
    assert "KHR_materials_unlit" in tree["extensionsUsed"]
    assert "extensionsRequired" not in tree
    (mat,) = tree["materials"]
    assert "KHR_materials_unlit" in mat["extensions"]
    assert mat["alphaMode"] == "MASK" and mat["doubleSided"] is True
    (sampler,) = tree["samplers"]
    assert sampler["wrapS"] == sampler["wrapT"] == 33071  # CLAMP_TO_EDGE
    assert all(t["sampler"] == 0 for t in tree["textures"])
    (img,) = tree["images"]
    assert img["mimeType"] == "image/jpeg"
    view = tree["bufferViews"][img["bufferView"]]
    off = view.get("byteOffset", 0)
    atlas = Image.open(io.BytesIO(binary[off : off + view["byteLength"]]))
    assert atlas.format == "JPEG" and max(atlas.size) <= 4096
    # camera node at the origin looking down -Z (no transform), FOV from EXIF 50 mm
    cam_nodes = [n for n in tree["nodes"] if "camera" in n]
    assert len(cam_nodes) == 1 and not any(k in cam_nodes[0] for k in ("matrix", "rotation", "translation"))
    persp = tree["cameras"][0]["perspective"]
    expected = camera_for(320, 240, 50.0)
    assert persp["yfov"] == pytest.approx(expected.yfov)
    assert persp["aspectRatio"] == pytest.approx(320 / 240)
    extras = tree["extras"]["photo3d"]
    assert extras["focal_source"] == "exif" and extras["focal_35mm"] == 50.0
    assert extras["source_size"] == [320, 240]
    assert "larger = nearer" in extras["depth_convention"]
    assert extras["version"]
    assert extras["parallax"]["max_offset"] > 0
    # geometry in front of the camera, all finite
    pos = tree["accessors"][tree["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    assert pos["max"][2] < 0


def test_default_fov_without_exif(tmp_path):
    src = make_photo(tmp_path / "noexif.png")
    dst = tmp_path / "noexif.glb"
    convert_file(src, dst, ConvertOptions(depth=src.with_suffix(".npy")))
    tree, _ = read_glb(dst.read_bytes())
    extras = tree["extras"]["photo3d"]
    assert extras["focal_source"] == "default" and extras["focal_35mm"] == DEFAULT_FOCAL_35MM
    diag = math.hypot(36, 24)
    f = DEFAULT_FOCAL_35MM / diag * math.hypot(320, 240)
    assert tree["cameras"][0]["perspective"]["yfov"] == pytest.approx(2 * math.atan(120 / f))
    assert_valid_glb(dst)


def test_texture_quality_and_size_options(tmp_path):
    src = make_photo(tmp_path / "q.jpg", w=640, h=480)
    sizes = {}
    for q in (40, 95):
        dst = tmp_path / f"q{q}.glb"
        sizes[q] = convert_file(src, dst, ConvertOptions(depth=src.with_suffix(".npy"), jpeg_quality=q))["glb_bytes"]
    assert sizes[40] < sizes[95]
    dst = tmp_path / "small.glb"
    report = convert_file(src, dst, ConvertOptions(depth=src.with_suffix(".npy"), max_texture_side=300))
    assert max(report["texture"]) <= 300
    assert_valid_glb(dst)


def test_to_glb_minimal_mesh(tmp_path):
    v = np.array([[0, 0, -1], [1, 0, -1], [0, 1, -1]], np.float32)
    mesh = MeshData("visible", v, np.array([[0, 1, 2]], np.int32), np.array([[0, 1], [1, 1], [0, 0]], np.float32),
                    np.array([255, 255, 0], np.uint8))
    data = to_glb([mesh], encode_jpeg(np.zeros((8, 8, 3), np.uint8), 80), camera_for(8, 8, None), ExportOptions())
    path = tmp_path / "tri.glb"
    path.write_bytes(data)
    assert_valid_glb(path)

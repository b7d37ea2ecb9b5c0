"""`photo3d depth`: 16-bit PNG and .npy outputs, convention metadata, folders, --raw, --preview,
the edge-aware upsampling, the default-model message and the metrics."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from helpers.cli import cli as _cli
from helpers.paths import REPO
from photo3d.depth import DepthOptions, depth_file
from photo3d.depth.maps import CONVENTION, load_depth_map, preview_path, read_png_metadata, save_depth_map
from photo3d.depth.runtime import load_model, network_size, normalize
from photo3d.depth.upsample import guided_upsample
from photo3d.errors import ExitCode, InputFileError, ModelError, UsageError
from photo3d.train.metrics import abs_rel_delta1, edge_order_accuracy, evaluate, lower_rows_prior




# --------------------------------------------------------------------------------------------
# without ../shared


def test_network_size():
    assert network_size(1024, 768, 384) == (384, 288)
    assert network_size(768, 1024, 384) == (288, 384)
    assert network_size(413, 370, 384) == (384, 320)
    # a panorama keeps a third of the input size on its shorter side, within the 4:3 frame's pixels
    # (a 4000 x 600 photo went in at 384 x 32: texture stamped into its depth, helper-58)
    assert network_size(4000, 600, 384) == (832, 128) and network_size(600, 4000, 384) == (128, 832)
    assert network_size(3000, 900, 384) == (416, 128) and network_size(1920, 1080, 384) == (384, 192)
    w, h = network_size(4000, 100, 384)
    assert (w, h) == (2080, 32) and w * h <= 384 * 288
    assert network_size(65000, 2, 384) == (4608, 32) and network_size(2, 65000, 384) == (32, 4608)  # (59936 x 32)


def test_normalize_robust():
    d = np.linspace(1.0, 2.0, 10000, dtype=np.float32)
    d[0] = 1000.0  # an outlier must not squash the rest
    n, lo, hi = normalize(d)
    assert n.dtype == np.float32 and n.min() == 0.0 and n.max() == 1.0
    assert 0.4 < float(np.median(n)) < 0.6
    assert np.all(normalize(np.ones((4, 4), np.float32))[0] == 0)


def test_guided_upsample_snaps_to_colour_edge():
    # photo: left half dark, right half bright, edge at column 100; low-res depth: blurry step
    H, W = 120, 200
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, 100:] = 230
    x = np.linspace(0, 1, 50, dtype=np.float32)
    low = np.tile(1.0 / (1.0 + np.exp(-(x - 0.5) * 12)), (30, 1)).astype(np.float32)  # soft ramp
    up = guided_upsample(low, rgb)
    assert up.shape == (H, W)
    row = up[60]
    assert row[:100].max() < row[100:].min()  # a step exactly at the colour edge
    jump = row[100] - row[99]
    bil = np.interp(np.arange(W), (np.arange(50) + 0.5) * W / 50 - 0.5, low[15])
    assert jump > 5 * (bil[100] - bil[99])  # much sharper than bilinear
    # flat regions stay smooth and inside the input range
    assert low.min() - 1e-3 <= up.min() and up.max() <= low.max() + 1e-3


def test_metrics_definitions():
    gt = np.zeros((20, 20), np.float32)
    gt[:, :10] = 10.0
    gt[:, 10:] = 20.0
    assert edge_order_accuracy(gt, gt) == 1.0
    assert edge_order_accuracy(-gt, gt) == 0.0
    assert edge_order_accuracy(np.ones_like(gt), gt) == 0.0  # ties are wrong
    ar, d1 = abs_rel_delta1(3 * gt + 7, gt)  # scale + shift invariant
    assert ar == pytest.approx(0.0, abs=1e-9) and d1 == 1.0
    gt[0, 0] = 0  # unknown pixels are ignored
    s = evaluate(gt * 2, gt)
    assert s.abs_rel == pytest.approx(0.0, abs=1e-9) and s.edge_order == 1.0 and s.edge_pairs > 0
    assert lower_rows_prior((3, 2)).tolist() == [[0, 0], [1, 1], [2, 2]]


def test_tiny_model_outputs(tmp_path, tiny_depth_model):
    rgb = np.random.default_rng(0).integers(0, 256, (90, 130, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    info = depth_file(tmp_path / "a.png", tmp_path / "a.npy", DepthOptions(model=tiny_depth_model))
    d = np.load(tmp_path / "a.npy")
    assert d.dtype == np.float32 and d.shape == (90, 130)
    assert 0.0 <= d.min() and d.max() <= 1.0
    assert d[-5:].mean() > d[:5].mean()  # tiny model: lower rows nearer = larger
    assert info["network_size"] == [128, 64] and info["photo_size"] == [130, 90]
    assert load_model(tiny_depth_model).input_size == 128


def test_wrong_output_suffix(tmp_path, tiny_depth_model):
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    with pytest.raises(UsageError):
        depth_file(tmp_path / "a.png", tmp_path / "a.jpg", DepthOptions(model=tiny_depth_model))


def test_a_colour_depth_map_is_refused_and_grey_in_any_mode_is_read(tmp_path):
    g = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (30, 1))
    grey = {"L.png": Image.fromarray(g), "rgb.png": Image.fromarray(np.dstack([g] * 3)),
            "rgb.jpg": Image.fromarray(np.dstack([g] * 3)), "rgba.png": Image.fromarray(np.dstack([g] * 3 + [g * 0 + 255])),
            "la.png": Image.fromarray(g).convert("LA"), "palette.png": Image.fromarray(np.dstack([g] * 3)).quantize(256)}
    for name, im in grey.items():
        im.save(tmp_path / name)
        d = load_depth_map(tmp_path / name)
        assert d.shape == (30, 40) and d.dtype == np.float32, name
        assert np.abs(d * 255 - g).max() <= (4 if name in ("rgb.jpg", "palette.png") else 0), name
    rgb = np.dstack([g, g[:, ::-1], g])  # red and green differ: colour
    colour = {"rgb.png": Image.fromarray(rgb), "rgb.jpg": Image.fromarray(rgb),
              "palette.png": Image.fromarray(rgb).quantize(64), "rgba.png": Image.fromarray(rgb).convert("RGBA")}
    for name, im in colour.items():
        im.save(tmp_path / f"colour-{name}")
        with pytest.raises(InputFileError) as e:
            load_depth_map(tmp_path / f"colour-{name}")
        assert str(e.value) == f"{tmp_path / f'colour-{name}'}: depth map is a colour image; give a single-channel (grey) depth map"


def test_save_and_load_maps(tmp_path):
    d = np.linspace(0, 1, 12 * 7, dtype=np.float32).reshape(7, 12)
    written = save_depth_map(tmp_path / "m.png", d, preview=True, meta={"model": "x"})
    assert written == [tmp_path / "m.png", tmp_path / "m.preview.png"]
    with Image.open(tmp_path / "m.png") as im:
        assert im.mode == "I;16" and im.size == (12, 7)
        raw = np.asarray(im)
    assert raw.min() == 0 and raw.max() == 65535
    meta = read_png_metadata(tmp_path / "m.png")
    assert meta["photo3d:convention"] == CONVENTION and meta["model"] == "x"
    assert np.abs(load_depth_map(tmp_path / "m.png") - d).max() < 1e-4
    save_depth_map(tmp_path / "m.npy", d)
    assert np.array_equal(load_depth_map(tmp_path / "m.npy"), d)
    with Image.open(tmp_path / "m.preview.png") as im:  # the map, then its legend strip below
        assert im.mode == "RGB" and im.size[0] == 12 and im.size[1] > 7
        pv = np.asarray(im).astype(int)
    assert pv[6, -1, 0] > pv[6, -1, 2] and pv[0, 0, 2] > pv[0, 0, 0]  # turbo: near red, far blue
    (tmp_path / "bad.npy").write_bytes(b"junk")
    with pytest.raises(InputFileError):
        load_depth_map(tmp_path / "bad.npy")
    assert not list(tmp_path.glob(".*.tmp"))


def test_missing_default_model_says_how(tmp_path, monkeypatch):
    from photo3d.depth import modelfile, runtime

    monkeypatch.setattr(modelfile, "MODELS_DIR", tmp_path / "no_models")
    runtime.clear_cache()  # an earlier test may have loaded the real default
    with pytest.raises(ModelError) as e:
        load_model(None)
    assert "--model" in str(e.value) and "tiefenrausch" in str(e.value)
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    r = _cli("depth", tmp_path / "a.png", "-o", tmp_path / "a.depth.png")
    assert r.exit_code == ExitCode.failed
    assert "--model" in r.output


# --------------------------------------------------------------------------------------------
# with the Tiefenrausch model (../shared)


@pytest.fixture(scope="module")
def photos(tiefenrausch_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    for n in ("pumpkin.jpg", "columns.jpg"):
        shutil.copy(tiefenrausch_dir / n, d / n)
    return d


def test_png_output(tmp_path, photos, tiefenrausch_pt):
    r = _cli("depth", photos / "pumpkin.jpg", "-o", tmp_path / "p.png", "--model", tiefenrausch_pt)
    assert r.exit_code == 0, r.output
    with Image.open(photos / "pumpkin.jpg") as im:
        size = im.size
    with Image.open(tmp_path / "p.png") as im:
        assert im.mode == "I;16" and im.size == size
        a = np.asarray(im)
    assert a.dtype == np.uint16 and a.min() == 0 and a.max() == 65535
    meta = read_png_metadata(tmp_path / "p.png")
    assert meta["photo3d:convention"] == "normalized disparity, larger = nearer"
    assert "65535" in meta["photo3d:scale"]
    assert meta["raw"] is False and meta["network_size"] == [288, 384]
    assert meta["disparity_max"] > meta["disparity_min"] > 0
    # larger = nearer: the ground at the bottom is nearer than the sky at the top
    assert a[-50:].mean() > 3 * a[:50].mean()
    assert not preview_path(tmp_path / "p.png").exists()


def test_a_preview_added_to_a_damaged_map_says_how_to_go_on(tmp_path):
    """A re-run that adds --preview reads the existing maps; a damaged one said only "out/X.png: not
    a readable depth map image", naming the output as if it were the input, with no way on.  Now it
    says it as convert says it of a damaged GLB: the photo, the map, and what to do."""
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(REPO / "examples" / "coffee.jpg", src / "X.jpg")
    out = tmp_path / "out"
    assert _cli("depth", src, "-o", out).exit_code == 0
    (out / "X.png").write_bytes(b"garbage")
    r = _cli("depth", src, "-o", out, "--preview")
    # (found by its container before the map is read: Pillow's words were nested in ours, helper-94)
    assert r.exit_code == 1 and r.output.startswith(
        f"error: {src / 'X.jpg'}: the existing {out / 'X.png'} is not a whole PNG image (not a PNG file)"), r.output
    assert r.output.splitlines()[0].endswith("remove it, or run again with --overwrite"), r.output
    assert (out / "X.png").read_bytes() == b"garbage" and not preview_path(out / "X.png").exists()
    assert _cli("depth", src, "-o", out, "--overwrite").exit_code == 0  # a whole map over the limit is no damage
    r = _cli("depth", src, "-o", out, "--preview", "--max-megapixels", "0.001")
    assert r.exit_code == 1 and "depth map too large" in r.output and "not a whole" not in r.output, r.output


def test_one_photo_to_a_map_name_where_a_folder_is_in_the_way_is_one_line(tmp_path):
    (tmp_path / "d.png").mkdir()
    for extra in ([], ["--format", "npy"]):  # (--format is checked against -o first: no traceback there either)
        r = _cli("depth", REPO / "examples" / "coffee.jpg", "-o", tmp_path / "d.png", *extra)
        assert r.exit_code == 2 and r.output == (f"error: -o {tmp_path / 'd.png'}: a folder of that name is in the way; "
                                                 f"to write into it, give -o {tmp_path / 'd.png'}/\n"), r.output


def test_npy_output_raw_and_preview(tmp_path, photos, tiefenrausch_pt):
    r = _cli("depth", photos / "columns.jpg", "-o", tmp_path / "c.npy", "--model", tiefenrausch_pt, "--preview")
    assert r.exit_code == 0, r.output
    d = np.load(tmp_path / "c.npy")
    with Image.open(photos / "columns.jpg") as im:
        w, h = im.size
    assert d.dtype == np.float32 and d.shape == (h, w)
    assert d.min() == 0.0 and d.max() == 1.0
    with Image.open(tmp_path / "c.preview.png") as im:  # the map and its legend strip
        assert im.mode == "RGB" and im.size[0] == w and h < im.size[1] < 1.1 * h
    r = _cli("depth", photos / "columns.jpg", "-o", tmp_path / "raw.npy", "--model", tiefenrausch_pt, "--raw")
    assert r.exit_code == 0, r.output
    raw = np.load(tmp_path / "raw.npy")
    nw, nh = network_size(w, h, 384)
    assert raw.shape == (nh, nw)
    # the full-resolution map is the raw map upsampled: they agree at low resolution
    import cv2

    small = cv2.resize(d, (nw, nh), interpolation=cv2.INTER_AREA)
    assert np.corrcoef(small.ravel(), raw.ravel())[0, 1] > 0.98


@pytest.mark.slow
def test_folder_input(tmp_path, photos, tiefenrausch_pt):
    r = _cli("depth", photos, "-o", tmp_path / "out", "--model", tiefenrausch_pt, "--format", "npy")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["columns.npy", "pumpkin.npy"]
    r = _cli("depth", photos, "-o", tmp_path / "out16", "--model", tiefenrausch_pt)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out16").iterdir()) == ["columns.png", "pumpkin.png"]
    assert sorted(p.name for p in photos.iterdir()) == ["columns.jpg", "pumpkin.jpg"]  # inputs untouched


def test_tiefenrausch_folder_as_model(tmp_path, photos, tiefenrausch_dir):
    info = depth_file(photos / "pumpkin.jpg", tmp_path / "p.npy", DepthOptions(model=tiefenrausch_dir))
    assert info["model"] == "tiefenrausch" and (tmp_path / "p.npy").is_file()


def test_model_import_command(tmp_path, tiefenrausch_dir):
    r = _cli("model", "import", tiefenrausch_dir, "-o", tmp_path / "t.pt")
    assert r.exit_code == 0, r.output
    assert load_model(tmp_path / "t.pt").meta["name"] == "tiefenrausch"
    r = _cli("model", "import", tmp_path, "-o", tmp_path / "u.pt")
    assert r.exit_code == ExitCode.failed and "tiefenrausch.pb" in r.output


def test_model_breaking_the_contract(tmp_path):
    import warnings

    import torch

    class ThreeChannels(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    path = tmp_path / "bad.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(ThreeChannels()), str(path))
    model = load_model(path)
    with pytest.raises(ModelError) as e:
        model.predict(np.zeros((40, 60, 3), np.uint8))
    assert "bad.pt" in str(e.value) and "(1, 1," in str(e.value)


def test_flip_tta_from_metadata(tmp_path):
    """A model whose metadata asks for flip test-time augmentation gets the mean of the photo and
    its mirror image (the operating point travels with the model file)."""
    import json
    import warnings

    import torch

    from photo3d.depth.runtime import load_model

    class LeftNear(torch.nn.Module):  # not mirror-symmetric: log-disparity = column position
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            w = x.shape[3]
            return torch.linspace(1.0, 0.0, w).view(1, 1, 1, w).expand(1, 1, x.shape[2], w).contiguous()

    paths = {}
    for tta in ("none", "flip"):
        paths[tta] = tmp_path / f"{tta}.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(torch.jit.script(LeftNear()), str(paths[tta]),
                           _extra_files={"photo3d.json": json.dumps({"name": tta, "input_size": 64, "tta": tta})})
    rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    plain = load_model(paths["none"]).predict_log(rgb)
    flipped = load_model(paths["flip"]).predict_log(rgb)
    assert plain[0, 0] > plain[0, -1] + 0.9  # left nearer
    np.testing.assert_allclose(flipped, 0.5, atol=1e-6)  # the mirrored ramp cancels it
    # a caller may ask for one pass; `photo3d depth` runs the model's operating point, `convert`
    # one pass (the builder is tuned to single-pass maps), and so does filling a measured map's holes
    flip_model = load_model(paths["flip"])
    np.testing.assert_array_equal(flip_model.predict_log(rgb, tta="none"), plain)
    with pytest.raises(ValueError, match="tta must be one of none, flip"):
        flip_model.predict_log(rgb, tta="mirror")
    # an unknown operating point in a model's metadata (a typo ran one pass without a word: helper-53)
    from photo3d.errors import ModelError

    typo = tmp_path / "typo.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(LeftNear()), str(typo),
                       _extra_files={"photo3d.json": json.dumps({"name": "typo", "input_size": 64, "tta": "Flip"})})
    with pytest.raises(ModelError, match='tta must be one of none, flip, flip-small, not "Flip"'):
        load_model(typo)
    # "flip-small": the mirror image at 5/6 of the size (192 -> 160 px), brought back to the grid
    small = tmp_path / "small.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(LeftNear()), str(small), _extra_files={
            "photo3d.json": json.dumps({"name": "small", "input_size": 192, "tta": "flip-small"})})
    big = np.random.default_rng(1).integers(0, 255, (144, 192, 3), dtype=np.uint8)
    y = load_model(small).predict_log(big)
    assert y.shape == (128, 192)
    np.testing.assert_allclose(y[:, 3:-3], 0.5, atol=0.01)  # the ramp cancelled by its mirror at 160 px
    from photo3d.depth.runtime import preprocess, with_tta

    x = preprocess(big, 192)
    run = torch.jit.script(LeftNear())
    np.testing.assert_allclose(with_tta(run, x, run(x), "flip-small").numpy(),  # without the photo: from x
                               with_tta(run, x, run(x), "flip-small", big).numpy(), atol=1e-6)
    from photo3d.depth.runtime import network_size, small_pass_size

    # the second pass lays the photo out at 5/6 of the size: a 448x298 photo (first pass 384x224) goes in
    # at 320x192, its own aspect, not the first grid scaled (320x160); never larger than the first pass
    assert small_pass_size(224, 384, 298, 448) == (192, 320)
    for W, H in ((768, 512), (4000, 600), (600, 4000), (65000, 2), (1000, 999)):
        w1, h1 = network_size(W, H, 384)
        h2, w2 = small_pass_size(h1, w1, H, W, 384)
        assert 32 <= h2 <= h1 and 32 <= w2 <= w1 and h2 % 32 == 0 and w2 % 32 == 0, (W, H)
        assert h2 * w2 < 0.8 * h1 * w1 or h1 * w1 <= 32 * 32 * 4, (W, H)  # smaller (a panorama too: 704x96 after 832x128)

    # a pair of networks in one file: `convert`'s one pass is the first's, flip's mirrored pass the second's
    from photo3d.depth.modelfile import pair_models, save_model

    class Flat(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :1] * 0.0 + 0.25

    pair = tmp_path / "pair.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = pair_models(torch.jit.script(LeftNear()), torch.jit.script(Flat()))
    save_model(scripted, pair, {"name": "pair", "input_size": 64, "tta": "flip", "second_net": True})
    both = load_model(pair)
    np.testing.assert_array_equal(both.predict_log(rgb, tta="none"), plain)
    np.testing.assert_allclose(both.predict_log(rgb), 0.5 * (plain + 0.25), atol=1e-6)
    both.warmup()
    for bad, why in (({"tta": "none", "second_net": True}, "tta is not flip or flip-small"),
                     ({"tta": "flip", "second_net": 1}, "second_net must be true or false, not 1")):
        save_model(scripted, tmp_path / "bad.pt", {"name": "bad", "input_size": 64, **bad})
        with pytest.raises(ModelError, match=why):
            load_model(tmp_path / "bad.pt")
    save_model(scripted, tmp_path / "first.pt", {"name": "first", "input_size": 64, "tta": "flip", "second_net": False})
    np.testing.assert_allclose(load_model(tmp_path / "first.pt").predict_log(rgb), 0.5, atol=1e-6)  # its first net twice
    with warnings.catch_warnings():  # metadata that claims a pair on a single network
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(LeftNear()), str(tmp_path / "one.pt"), _extra_files={
            "photo3d.json": json.dumps({"name": "one", "input_size": 64, "tta": "flip", "second_net": True})})
    with pytest.raises(ModelError, match="second_net is true, but the file holds one network"):
        load_model(tmp_path / "one.pt")

    class Wrong(torch.nn.Module):  # a second network that breaks the contract: a one-line error naming the model
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_model(pair_models(torch.jit.script(LeftNear()), torch.jit.script(Wrong())), tmp_path / "wrong.pt",
                   {"name": "wrong", "input_size": 64, "tta": "flip", "second_net": True})
    with pytest.raises(ModelError, match=r"depth model's second network returned \(1, 3, 32, 64\), expected \(1, 1, 32, 64\)"):
        load_model(tmp_path / "wrong.pt").predict_log(rgb)
    from PIL import Image

    from photo3d.depth import DepthOptions, depth_file
    from photo3d.depth.embedded import network_disparity
    from photo3d.io import load_image
    from photo3d.pipeline import ConvertOptions, estimate_depth

    np.testing.assert_allclose(np.log(network_disparity(flip_model, rgb)), plain, atol=1e-6)
    src = tmp_path / "p.png"
    Image.fromarray(rgb).save(src)
    photo = load_image(src)
    disp, _ = estimate_depth(photo, rgb, ConvertOptions(model=paths["flip"]))
    assert disp[:, 0].mean() > disp[:, -1].mean() + 0.5  # the ramp, not its cancelled mean
    info = depth_file(src, tmp_path / "d.npy", DepthOptions(model=paths["flip"], raw=True))
    d = np.load(tmp_path / "d.npy")
    assert np.ptp(d) < 1e-3, info  # flat: the model's operating point (flip) cancels the ramp


def test_load_scene_reads_a_middlebury_folder(tmp_path):
    """benchmarks/depth_quality.py and novel_view.py read scenes with train.metrics.load_scenes."""
    import cv2

    from photo3d.train.metrics import load_scenes

    scene = tmp_path / "Toy1"
    scene.mkdir()
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    disp = np.full((40, 50), 60, np.uint8)
    disp[:, :10] = 0  # unknown
    cv2.imwrite(str(scene / "view1.png"), rgb)
    cv2.imwrite(str(scene / "disp1.png"), disp)
    (s,) = load_scenes(tmp_path)
    assert s.rgb.shape == (40, 50, 3) and s.disparity.shape == (40, 50)
    assert np.isclose(s.disparity[0, 20], 20.0) and s.disparity[0, 0] == 0  # value / 3 px, 0 = unknown


def test_the_bundled_model_meets_the_dev_scene_bars(shared_dir):
    """Issue 8's bars on the 14 Middlebury dev scenes, through ``photo3d depth``'s own path
    (bundled model, full resolution, guided upsampling): AbsRel <= 0.200, delta1 >= 0.630,
    edge-order >= 0.760 (v3: 0.1947 / 0.6505 / 0.7606; with the previous guided radius of 4 network
    pixels its edge-order was 0.753)."""
    from photo3d.train.metrics import load_scenes, mean_scores

    scenes = load_scenes(shared_dir / "data" / "middlebury2006")
    assert len(scenes) == 14
    model = load_model(None)
    m = mean_scores([evaluate(model.predict(s.rgb), s.disparity, s.valid) for s in scenes])
    assert m.abs_rel <= 0.200 and m.delta1 >= 0.630 and m.edge_order >= 0.760, m


def test_a_panorama_wider_than_32767_px_gets_its_depth_map(tmp_path):
    """The guided filter's last step (one cv2.remap over a band of rows) failed at 32,767 columns
    and more (OpenCV's SHRT_MAX): `photo3d depth` of a stitched panorama under the 100 MP limit
    (36000x2700) was an "internal error".  It now goes in tiles of columns, with the same result."""
    import photo3d.depth.upsample as up

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (8, 33000, 3), dtype=np.uint8)
    low = rng.random((2, 384)).astype(np.float32)
    whole = guided_upsample(low, rgb[:, :30000])
    old, up.REMAP_COLUMNS = up.REMAP_COLUMNS, 7000  # tiles give what one pass gives
    try:
        assert np.array_equal(guided_upsample(low, rgb[:, :30000]), whole)
    finally:
        up.REMAP_COLUMNS = old
    Image.fromarray(rgb).save(tmp_path / "pano.png")
    r = _cli("depth", tmp_path / "pano.png", "-o", tmp_path / "pano.depth.png")
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "pano.depth.png").size == (33000, 8)


def test_format_with_a_single_file_output_is_a_usage_error(tmp_path):
    from helpers.paths import REPO

    res = _cli("depth", str(REPO / "examples" / "coffee.jpg"), "-o", str(tmp_path / "d.png"), "--format", "npy")
    assert res.exit_code == 2 and "--format is for folder outputs" in res.output
    assert not list(tmp_path.iterdir())


def test_depth_format_is_read_as_converts_and_given_once(tmp_path):
    """``depth --format npy --format png`` wrote only .png, without a word, and ``--format PNG`` was
    refused, where ``convert --format`` takes any case and each of several formats (helper-55).
    Now any case (and a leading dot) is read as convert reads it, and a second, different format is
    a usage error: a depth map is written in one format."""
    from helpers.paths import REPO

    src = tmp_path / "in"
    src.mkdir()
    Image.open(REPO / "examples" / "coffee.jpg").resize((64, 48)).save(src / "c.jpg")
    r = _cli("depth", src, "-o", tmp_path / "o1", "--format", "npy", "--format", "png")
    assert r.exit_code == 2 and "--format is given once for depth maps: png or npy, not npy and png" in r.output, r.output
    assert not (tmp_path / "o1").exists()
    r = _cli("depth", src, "-o", tmp_path / "o2", "--format", "NPY", "--format", ".npy")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "o2").iterdir()) == ["c.npy"]


def test_a_16_bit_pgm_depth_map_is_read(tmp_path):
    """Depth maps of other tools are often 16-bit PGM: read (as PNG and TIFF); other formats that
    are no photos (an EPS: Ghostscript) are not opened."""
    from PIL import Image

    a = (np.arange(48 * 64).reshape(48, 64) * 20).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "d.pgm")
    got = load_depth_map(tmp_path / "d.pgm")
    assert np.allclose(got * 65535.0, a, atol=0.5)
    (tmp_path / "d.eps").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 60 40\nshowpage\n")
    with pytest.raises(InputFileError, match="not a readable depth map image"):
        load_depth_map(tmp_path / "d.eps")



def _can_mount_a_small_disk() -> bool:
    import subprocess

    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                          capture_output=True).returncode == 0


@pytest.mark.slow  # the CLI in a subprocess
@pytest.mark.skipif(not _can_mount_a_small_disk(), reason="needs root and unshare to mount a small disk")
@pytest.mark.parametrize("suffix", [".npy", ".png"])
def test_a_depth_map_meeting_a_full_disk_stops_the_batch(tmp_path, suffix):
    """A full disk under ``.npy`` maps was 'cannot write (120000 requested and 58336 written)' for
    every photo of a folder, one after another (helper-119): NumPy writing into a file drops the
    system's errno when the disk takes part of the map, so the batch did not know the disk was full.
    The map is serialised in memory and written as a PNG is: the system's own error, and the batch
    stops at the first map that does not fit.  A real small disk (tmpfs, in a mount namespace of its
    own: it goes with the process)."""
    import subprocess

    from helpers.cli import cli_command, env

    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(src / f"p{i}.png")
    disk = tmp_path / "disk"
    disk.mkdir()
    size = "700k" if suffix == ".npy" else "8k"  # one 480 kB map fits, the next only in part; PNGs: none
    cmd = " ".join(f"'{a}'" for a in cli_command("depth", src, "-o", disk / "out", "--format", suffix[1:]))
    p = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size={size} tmpfs '{disk}' && {cmd}"],
                       capture_output=True, text=True, env=env(), timeout=300)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1, p.stderr
    errors = [x for x in lines if x.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and errors[0].endswith(
        "stopped: free some space, then run the same command again to continue"), p.stderr
    assert "not run" in lines[-1], p.stderr

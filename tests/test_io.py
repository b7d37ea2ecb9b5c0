"""Image input: every mode to RGB uint8, EXIF orientation, bad files, bombs, CLI exit codes."""

from __future__ import annotations

import io
import os
import stat
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from helpers.cli import cli as _cli
from helpers.photos import jpeg_12bit, jpeg_of_empty_scans, lossless_jpeg, photo_rgb
from photo3d.errors import ExitCode, InputFileError, OutputError
from photo3d.io import INVISIBLE, atomic_output, load_image, write_bytes_atomic


def _one_line_about(err: InputFileError, path: Path, *words: str) -> None:
    text = str(err)
    assert "\n" not in text
    assert str(path) in text
    for w in words:
        assert w in text.lower(), text


# --------------------------------------------------------------------------------------------
# modes


def test_rgb_png_exact(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    p = load_image(tmp_path / "a.png")
    assert p.rgb.dtype == np.uint8 and p.rgb.shape == (17, 23, 3)
    assert np.array_equal(p.rgb, a)
    assert (p.width, p.height) == (23, 17)


def test_grayscale_l(tmp_path):
    Image.new("L", (5, 4), 77).save(tmp_path / "g.png")
    p = load_image(tmp_path / "g.png")
    assert p.rgb.shape == (4, 5, 3)
    assert np.all(p.rgb == 77)


def test_bilevel_1(tmp_path):
    Image.new("1", (4, 4), 1).save(tmp_path / "b.png")
    assert np.all(load_image(tmp_path / "b.png").rgb == 255)


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 0] = 200  # red
    a[:2, :, 3] = 255  # opaque top half
    a[2:, :, 3] = 0  # transparent bottom half
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    p = load_image(tmp_path / "a.png")
    rgb = p.rgb
    assert rgb.shape == (4, 4, 3)
    assert tuple(rgb[0, 0]) == (200, 0, 0)
    assert tuple(rgb[3, 3]) == (255, 255, 255)
    assert np.array_equal(p.alpha, a[..., 3])  # a cut-out: its alpha is kept (convert leaves the clear half out)
    a[..., 3] = 255
    Image.fromarray(a, "RGBA").save(tmp_path / "opaque.png")
    assert load_image(tmp_path / "opaque.png").alpha is None  # nothing transparent: an ordinary photo


def test_la(tmp_path):
    Image.new("LA", (4, 4), (100, 255)).save(tmp_path / "opaque.png")
    Image.new("LA", (4, 4), (100, 0)).save(tmp_path / "clear.png")
    assert np.all(load_image(tmp_path / "opaque.png").rgb == 100)
    clear = load_image(tmp_path / "clear.png")  # transparent all over: its grey, not a blank white
    assert np.all(clear.rgb == 100) and clear.alpha is None and clear.warnings == [INVISIBLE]


def test_an_image_transparent_all_over_is_its_colours_with_a_warning(tmp_path):
    """A real photo whose alpha is under half everywhere (an export that lost its alpha, a faint
    overlay) was composited on white: a blank white depth input and a white 3D photo, without a
    word. Now its colours are used, as if opaque, and a warning says so; the depth map is the
    opaque photo's. A cut-out (some pixels shown) is unchanged."""
    from helpers.cli import cli
    from helpers.gltf import assert_valid_glb
    from helpers.paths import REPO

    rgb = np.asarray(Image.open(REPO / "examples" / "coffee.jpg").convert("RGB"))
    Image.fromarray(rgb).save(tmp_path / "opaque.png")
    for name, a in (("clear.png", 0), ("faint.png", 100)):
        Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], a, np.uint8)])).save(tmp_path / name)
        p = load_image(tmp_path / name)
        assert np.array_equal(p.rgb, rgb) and p.alpha is None and p.warnings == [INVISIBLE], name
    cut = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    cut[:, :100, 3] = 0
    Image.fromarray(cut).save(tmp_path / "cut.png")
    assert load_image(tmp_path / "cut.png").alpha is not None and not load_image(tmp_path / "cut.png").warnings

    maps = {}
    for name in ("opaque.png", "clear.png"):
        r = cli("depth", tmp_path / name, "-o", tmp_path / f"{name}.depth.npy")
        assert r.exit_code == 0, r.output
        maps[name] = np.load(tmp_path / f"{name}.depth.npy")
        assert ("warning:" in r.output) == (name == "clear.png"), r.output
    assert np.array_equal(maps["clear.png"], maps["opaque.png"])
    r = cli("convert", tmp_path / "clear.png", "-o", tmp_path / "clear.glb")
    assert r.exit_code == 0, r.output
    assert f"warning: {tmp_path / 'clear.png'}: {INVISIBLE}" in r.output
    assert_valid_glb(tmp_path / "clear.glb")


def test_palette_with_and_without_transparency(tmp_path):
    pal = [0, 0, 0, 10, 20, 30, 40, 50, 60, 200, 100, 50] + [0] * (252 * 3)
    p = Image.new("P", (4, 4), 3)
    p.putpalette(pal)
    p.save(tmp_path / "p.png")
    p.save(tmp_path / "pt.png", transparency=3)
    assert Image.open(tmp_path / "p.png").mode == "P"
    assert tuple(load_image(tmp_path / "p.png").rgb[0, 0]) == (200, 100, 50)
    clear = load_image(tmp_path / "pt.png")  # transparent all over: its colour, said (it was a blank white)
    assert tuple(clear.rgb[0, 0]) == (200, 100, 50) and clear.alpha is None and clear.warnings == [INVISIBLE]
    p.putpixel((0, 0), 2)  # one pixel of another colour: a cut-out with that one pixel shown
    p.save(tmp_path / "pt1.png", transparency=3)
    cut = load_image(tmp_path / "pt1.png")
    assert cut.alpha.tolist() == [[255, 0, 0, 0]] + [[0] * 4] * 3
    assert tuple(cut.rgb[0, 0]) == (40, 50, 60) and tuple(cut.rgb[1, 1]) == (255, 255, 255)  # composited on white


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)  # pure red
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    rgb = load_image(tmp_path / "c.jpg").rgb
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    r, g, b = (int(v) for v in rgb[8, 8])
    assert r > 240 and g < 15 and b < 15


def _swapped_srgb_profile() -> bytes:
    """An ICC profile that is sRGB with its red and blue colorants swapped: a pixel stored as
    (0, 0, 255) is red in it (a stand-in for Display P3 / Adobe RGB that no reading can hide)."""
    import struct

    from PIL import ImageCms

    b = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack(">I", b[128:132])[0]
    tags = {bytes(b[132 + 12 * i: 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    r, bl = tags[b"rXYZ"], tags[b"bXYZ"]
    b[r + 4: r + 12], b[bl + 4: bl + 12] = b[bl + 4: bl + 12], b[r + 4: r + 12]
    b[84:100] = bytes(16)  # (no profile ID)
    return bytes(b)


@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("JPEG", ".jpg"), ("TIFF", ".tif"), ("WEBP", ".webp")])
def test_an_embedded_colour_profile_is_applied(tmp_path, fmt, suffix):
    """Pixels come out in sRGB (what the texture, viewer, videos and network assume): a Display P3
    iPhone photo read as stored looked washed out.  An sRGB profile changes nothing (byte-identical),
    an unusable one leaves the pixels as stored and says so."""
    from PIL import ImageCms

    from helpers.photos import photo_rgb

    opts = {"quality": 100} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "WEBP":
        opts["lossless"] = True
    im = Image.new("RGB", (32, 16), (0, 0, 255))
    im.paste((128, 128, 128), (16, 0, 32, 16))
    im.save(tmp_path / f"swapped{suffix}", fmt, icc_profile=_swapped_srgb_profile(), **opts)
    photo = load_image(tmp_path / f"swapped{suffix}")
    assert photo.warnings == []
    assert np.abs(photo.rgb[8, 4].astype(int) - (255, 0, 0)).max() <= 3, photo.rgb[8, 4]  # red, as the profile says
    assert np.abs(photo.rgb[8, 28].astype(int) - 128).max() <= 2, photo.rgb[8, 28]  # grey stays grey
    rgb = photo_rgb(32, 16)  # (a colour ramp with noise)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(rgb).save(tmp_path / f"plain{suffix}", fmt, **opts)
    Image.fromarray(rgb).save(tmp_path / f"srgb{suffix}", fmt, icc_profile=srgb, **opts)
    assert np.array_equal(load_image(tmp_path / f"srgb{suffix}").rgb, load_image(tmp_path / f"plain{suffix}").rgb)
    Image.fromarray(rgb).save(tmp_path / f"broken{suffix}", fmt, icc_profile=b"not a profile" * 20, **opts)
    broken = load_image(tmp_path / f"broken{suffix}")
    assert np.array_equal(broken.rgb, load_image(tmp_path / f"plain{suffix}").rgb)
    (warning,) = broken.warnings
    assert warning.startswith("colour profile unusable (") and warning.endswith("): colours taken as sRGB"), warning


def _s15(x: float) -> bytes:
    return struct.pack(">i", round(float(x) * 65536))


def _pad(d: bytes) -> bytes:
    return d + b"\0" * (-len(d) % 4)


_D50 = (0.9642, 1.0, 0.8249)


def _icc(space: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    """A minimal ICC v2 display profile of colour ``space`` (b"GRAY", b"RGB ") with ``tags`` besides
    its description, copyright and (D50) white point."""
    text = b"test\0"
    tags = [(b"desc", _pad(b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(79))),
            (b"cprt", _pad(b"text" + bytes(4) + b"none\0")),
            (b"wtpt", b"XYZ " + bytes(4) + b"".join(_s15(v) for v in _D50))] + tags
    off, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for sig, d in tags:
        table += sig + struct.pack(">II", off + len(data), len(d))
        data += d
    body = struct.pack(">I", len(tags)) + table + data
    head = (struct.pack(">I", 128 + len(body)) + b"none" + bytes([2, 0x40, 0, 0]) + b"mntr" + space + b"XYZ " + bytes(12)
            + b"acsp" + bytes(24) + bytes(4) + b"".join(_s15(v) for v in _D50) + bytes(48))
    assert len(head) == 128
    return head + body


def _grey_profile(gamma: float) -> bytes:
    """A greyscale profile with a pure-gamma curve."""
    return _icc(b"GRAY", [(b"kTRC", _pad(b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256))))])


def test_a_colour_profile_is_applied_to_palette_and_grey_photos_too(tmp_path):
    """A palette PNG's profile and a grey photo's (GRAY) profile were ignored without a word (helper-80):
    the palette one kept its Display P3 colours as if sRGB, a Gamma 1.8 grey came out too dark."""
    im = Image.new("RGB", (32, 16), (0, 0, 255))
    im.paste((128, 128, 128), (16, 0, 32, 16))
    im.quantize(4).save(tmp_path / "pal.png", icc_profile=_swapped_srgb_profile())
    assert Image.open(tmp_path / "pal.png").mode == "P"
    photo = load_image(tmp_path / "pal.png")
    assert photo.warnings == [] and np.abs(photo.rgb[8, 4].astype(int) - (255, 0, 0)).max() <= 3, photo.rgb[8, 4]
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))
    Image.fromarray(ramp, "L").save(tmp_path / "g18.png", icc_profile=_grey_profile(1.8))
    Image.fromarray(ramp, "L").save(tmp_path / "g22.jpg", quality=100, icc_profile=_grey_profile(2.2))
    for name, gamma in (("g18.png", 1.8), ("g22.jpg", 2.2)):
        grey = load_image(tmp_path / name)
        assert grey.warnings == []
        lin = (ramp[4].astype(float) / 255) ** gamma  # what the profile says each level is, in sRGB
        want = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055) * 255
        assert np.abs(grey.rgb[4, :, 0].astype(float) - want).max() <= 2.5, (name, grey.rgb[4, :, 0], want.round())
        assert (grey.rgb[4, :, 0] == grey.rgb[4, :, 2]).all()
    grey = load_image(tmp_path / "g18.png")
    assert grey.rgb[4, 32, 0] > ramp[4, 32] + 10  # (gamma 1.8 is lighter than sRGB's curve: not left as stored)
    la = np.dstack([ramp, np.full_like(ramp, 255)])
    la[:, :8, 1] = 0
    Image.fromarray(la, "LA").save(tmp_path / "g18a.png", icc_profile=_grey_profile(1.8))
    cut = load_image(tmp_path / "g18a.png")
    assert cut.alpha is not None and (cut.alpha[:, :8] == 0).all() and (cut.alpha[:, 8:] == 255).all()
    assert np.array_equal(cut.rgb[:, 8:], grey.rgb[:, 8:])


def test_a_heif_colour_space_given_as_code_points_is_applied(tmp_path):
    """A HEIC that names its colours by code points (nclx: Display P3 primaries), not an ICC profile,
    was read as sRGB without a word (helper-80): now converted, as its ICC twin is; HDR curves say so."""
    pytest.importorskip("pillow_heif")
    from PIL import ImageCms

    from photo3d.io import _nclx_to_srgb

    cols = [(230, 40, 40), (40, 200, 60), (40, 60, 220), (128, 128, 128)]
    a = np.zeros((64, 256, 3), np.uint8)
    for i, c in enumerate(cols):
        a[:, 64 * i: 64 * i + 64] = c
    Image.fromarray(a).save(tmp_path / "p3.heic", quality=100, color_primaries=12, transfer_characteristics=13,
                            matrix_coefficients=6, full_range_flag=1)
    Image.fromarray(a).save(tmp_path / "srgb.heic", quality=100, color_primaries=1, transfer_characteristics=13,
                            matrix_coefficients=6, full_range_flag=1)
    p3, plain = load_image(tmp_path / "p3.heic"), load_image(tmp_path / "srgb.heic")
    assert p3.warnings == [] and plain.warnings == []
    # the Display P3 profile's conversion of the same colours (LittleCMS), to within a level or two
    p3_icc = _rgb_icc_from_primaries((0.680, 0.320, 0.265, 0.690, 0.150, 0.060, 0.3127, 0.3290))
    want = np.asarray(ImageCms.profileToProfile(Image.fromarray(plain.rgb), ImageCms.ImageCmsProfile(io.BytesIO(p3_icc)),
                                                ImageCms.createProfile("sRGB"), renderingIntent=1))
    for i in range(4):
        x = 64 * i + 32
        assert np.abs(p3.rgb[32, x].astype(int) - want[32, x]).max() <= 3, (i, p3.rgb[32, x], want[32, x])
    assert p3.rgb[32, 32, 0] > plain.rgb[32, 32, 0] + 10  # P3 red is redder than sRGB's
    hdr = Image.fromarray(a)
    _, warning = _nclx_to_srgb(hdr, {"color_primaries": 9, "transfer_characteristics": 16})
    assert warning.startswith("HDR colours (PQ curve) taken as sRGB")


def _rgb_icc_from_primaries(xy) -> bytes:
    """An RGB profile with the sRGB curve and the primaries / white ``xy`` (Bradford-adapted to D50)."""
    from photo3d.io import _bradford, _rgb_to_xyz

    m = _rgb_to_xyz(*xy)
    m = _bradford(m.sum(1), np.array(_D50)) @ m
    # the sRGB curve as ICC parametric curve type 3 (para): Y = (aX+b)^g for X >= d, else cX
    para = _pad(b"para" + bytes(4) + struct.pack(">HH", 3, 0)
                + b"".join(_s15(v) for v in (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)))
    tags = [(sig, b"XYZ " + bytes(4) + b"".join(_s15(v) for v in m[:, i])) for i, sig in enumerate((b"rXYZ", b"gXYZ", b"bXYZ"))]
    return _icc(b"RGB ", tags + [(sig, para) for sig in (b"rTRC", b"gTRC", b"bTRC")])


def test_a_16_bit_grey_png_keeps_its_transparent_level(tmp_path):
    """A 16-bit grey PNG whose tRNS key is white came out a blank white 3D photo "transparent all over"
    (Pillow's RGBA of a 16-bit grey clips to 8 bits, helper-80); keys of 256 or 1000 lost the transparency."""
    g = (np.tile(np.linspace(2000, 60000, 48), (32, 1))).astype(np.uint16)
    for key in (65535, 1000):
        a = g.copy()
        a[:6] = key
        raw = b"".join(b"\0" + a.astype(">u2")[y].tobytes() for y in range(32))

        def chunk(t, d):
            return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

        (tmp_path / "g.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 48, 32, 16, 0, 0, 0, 0))
                                         + chunk(b"tRNS", struct.pack(">H", key)) + chunk(b"IDAT", zlib.compress(raw))
                                         + chunk(b"IEND", b""))
        p = load_image(tmp_path / "g.png")
        assert p.warnings == [], (key, p.warnings)
        assert (p.alpha[:6] == 0).all() and (p.alpha[6:] == 255).all(), key
        assert np.abs(p.rgb[6:, :, 0].astype(int) - np.round(g[6:] / 257)).max() <= 1  # the grey as stored


def test_avif_photos_are_read_and_videos_are_not_images(tmp_path):
    """An AVIF photo (which Pillow reads) was "damaged or truncated HEIF", and so was a .mov or .mp4 (any
    file with an ftyp box, helper-80)."""
    from photo3d.io import AVIF_AVAILABLE

    rgb = photo_rgb(64, 48)
    (tmp_path / "clip.mov").write_bytes(struct.pack(">I", 20) + b"ftypqt  " + bytes(4) + b"qt  " + bytes(4000))
    with pytest.raises(InputFileError) as e:
        load_image(tmp_path / "clip.mov")
    _one_line_about(e.value, tmp_path / "clip.mov", "not an image", "avif")
    if not AVIF_AVAILABLE:
        pytest.skip("this Pillow reads no AVIF")
    Image.fromarray(rgb).save(tmp_path / "a.avif", quality=95)
    (tmp_path / "named.jpg").write_bytes((tmp_path / "a.avif").read_bytes())
    for name in ("a.avif", "named.jpg"):
        p = load_image(tmp_path / name)
        assert p.rgb.shape == (48, 64, 3) and np.abs(p.rgb.astype(int) - rgb).mean() < 8, name
    r = _cli("depth", tmp_path, "-o", tmp_path / "maps")  # (a folder walk takes .avif files as photos)
    assert r.exit_code == 0 and (tmp_path / "maps" / "a.png").is_file(), r.output
    (tmp_path / "cut.avif").write_bytes((tmp_path / "a.avif").read_bytes()[:200])
    with pytest.raises(InputFileError) as e:
        load_image(tmp_path / "cut.avif")
    _one_line_about(e.value, tmp_path / "cut.avif", "truncated")


def test_a_colour_profile_warning_is_one_line_naming_the_photo(tmp_path):
    Image.new("RGB", (64, 48), (90, 120, 200)).save(tmp_path / "p.png", icc_profile=b"junk" * 40)
    np.save(tmp_path / "d.npy", np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64))
    r = _cli("convert", tmp_path / "p.png", "-o", tmp_path / "out.glb", "--depth", tmp_path / "d.npy")
    assert r.exit_code == 0 and (tmp_path / "out.glb").stat().st_size > 0, r.output
    (line,) = [ln for ln in r.output.splitlines() if ln.startswith("warning:")]
    assert line.startswith(f"warning: {tmp_path / 'p.png'}: colour profile unusable (") and line.endswith("colours taken as sRGB")


@pytest.mark.parametrize("fmt,suffix", [("GIF", ".gif"), ("WEBP", ".webp"), ("PNG", ".png")])
def test_an_animated_photo_says_its_first_frame_is_used(tmp_path, fmt, suffix):
    """An animated GIF, WebP or PNG became a 3D photo of its first frame without a word.  Now a
    warning line says so (the pixels are still the first frame's); a still of the same format, and
    a TIFF's pages (scans, not an animation), say nothing."""
    frames = [Image.fromarray(photo_rgb(64, 48, seed=i)) for i in range(3)]
    frames[0].save(tmp_path / f"anim{suffix}", fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(tmp_path / f"still{suffix}", fmt)
    frames[0].save(tmp_path / "pages.tif", "TIFF", save_all=True, append_images=frames[1:])
    anim = load_image(tmp_path / f"anim{suffix}")
    assert anim.warnings == ["an animation (3 frames): its first frame is used"]
    first = np.asarray(Image.open(tmp_path / f"anim{suffix}").convert("RGB"))
    assert np.array_equal(anim.rgb, first)
    assert load_image(tmp_path / f"still{suffix}").warnings == [] and load_image(tmp_path / "pages.tif").warnings == []
    np.save(tmp_path / "d.npy", np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64))
    r = _cli("convert", tmp_path / f"anim{suffix}", "-o", tmp_path / "out.glb", "--depth", tmp_path / "d.npy")
    assert r.exit_code == 0, r.output
    assert [ln for ln in r.output.splitlines() if ln.startswith("warning:")] == [
        f"warning: {tmp_path / f'anim{suffix}'}: an animation (3 frames): its first frame is used"]


def test_i16_png(tmp_path):
    a = np.array([[0, 257 * 100, 65535]] * 3, dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    rgb = load_image(tmp_path / "d.png").rgb
    assert rgb.dtype == np.uint8 and rgb.shape == (3, 3, 3)
    assert list(rgb[0, :, 0]) == [0, 100, 255]
    assert np.all(rgb[..., 0] == rgb[..., 2])


def test_rgb_16bit_png(tmp_path):
    a = np.zeros((5, 6, 3), np.uint16)
    a[..., 0] = 65535
    a[..., 1] = 257 * 128
    a[..., 2] = 0
    cv2.imwrite(str(tmp_path / "c16.png"), a[..., ::-1])  # OpenCV writes BGR
    rgb = load_image(tmp_path / "c16.png").rgb
    assert rgb.dtype == np.uint8 and rgb.shape == (5, 6, 3)
    assert tuple(rgb[2, 3]) == (255, 128, 0)


def test_a_png_with_a_large_metadata_chunk_is_read(tmp_path):
    """A colour profile or compressed text chunk unpacking to more than 1 MB (Pillow's limit) made
    the photo "unreadable image (Decompressed data too large ...)" though its pixels were fine."""
    from PIL import PngImagePlugin

    rgb = photo_rgb(40, 30)
    Image.fromarray(rgb).save(tmp_path / "icc.png", icc_profile=b"\0" * 3_000_000)
    p = load_image(tmp_path / "icc.png")
    assert np.array_equal(p.rgb, rgb) and any("colour profile unusable" in w for w in p.warnings)
    info = PngImagePlugin.PngInfo()
    info.add_itxt("Comment", "y" * 5_000_000, zip=True)
    Image.fromarray(rgb).save(tmp_path / "text.png", pnginfo=info)
    assert np.array_equal(load_image(tmp_path / "text.png").rgb, rgb)


def test_running_out_of_memory_while_decoding_says_so(tmp_path, monkeypatch):
    """It said "unreadable image (MemoryError: )" of a file that was fine, for a machine (or a
    ulimit) with too little memory for it."""
    Image.fromarray(photo_rgb(40, 30)).save(tmp_path / "p.png")

    def load(self):
        raise MemoryError()

    monkeypatch.setattr(Image.Image, "load", load)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", load)
    with pytest.raises(InputFileError) as e:
        load_image(tmp_path / "p.png")
    _one_line_about(e.value, tmp_path / "p.png", "not enough memory to decode this 40x30 image")


def test_float_and_int32_tiff(tmp_path):
    Image.new("F", (4, 4), 0.5).save(tmp_path / "f.tif")
    assert np.all(load_image(tmp_path / "f.tif").rgb == 128)
    Image.new("I", (4, 4), 200).save(tmp_path / "i.tif")
    assert np.all(load_image(tmp_path / "i.tif").rgb == 200)
    # NaN / infinite pixels (a numpy RuntimeWarning, then whatever the cast gave): black; an image
    # with no finite pixel at all is no picture: one line
    a = np.full((4, 4), 0.5, np.float32)
    a[0, 0], a[1, 1] = np.nan, np.inf
    Image.fromarray(a).save(tmp_path / "some_nan.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rgb = load_image(tmp_path / "some_nan.tif").rgb
    assert tuple(rgb[0, 0]) == tuple(rgb[1, 1]) == (0, 0, 0) and tuple(rgb[2, 2]) == (128, 128, 128)
    Image.fromarray(np.full((4, 4), np.nan, np.float32)).save(tmp_path / "nan.tif")
    with pytest.raises(InputFileError, match="without one finite pixel value"):
        load_image(tmp_path / "nan.tif")


# --------------------------------------------------------------------------------------------
# EXIF


def _red_left_blue_right(w=40, h=20) -> np.ndarray:
    im = np.zeros((h, w, 3), np.uint8)
    im[:, : w // 2] = (255, 0, 0)
    im[:, w // 2 :] = (0, 0, 255)
    return im


@pytest.mark.parametrize(
    "orientation, shape, top_left, bottom_right",
    [
        (1, (20, 40), "red", "blue"),
        (3, (20, 40), "blue", "red"),  # 180°
        (6, (40, 20), "red", "blue"),  # 90° clockwise to display: stored left half goes to the top
        (8, (40, 20), "blue", "red"),  # 90° counter-clockwise: stored right half goes to the top
    ],
)
def test_exif_orientation(tmp_path, orientation, shape, top_left, bottom_right):
    im = Image.fromarray(_red_left_blue_right())
    exif = im.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    im.save(path, exif=exif.tobytes(), quality=95)
    p = load_image(path)
    assert p.rgb.shape[:2] == shape
    assert p.original_size == (shape[1], shape[0])  # (width, height) as displayed
    colour = {"red": 0, "blue": 2}
    assert p.rgb[2, 2, colour[top_left]] > 200
    assert p.rgb[-3, -3, colour[bottom_right]] > 200


def test_focal_length_from_exif(tmp_path):
    im = Image.fromarray(_red_left_blue_right())
    exif = im.getexif()
    exif.get_ifd(0x8769)[0xA405] = 28
    im.save(tmp_path / "f.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "f.jpg").focal_35mm == 28.0
    im.save(tmp_path / "nof.jpg")
    assert load_image(tmp_path / "nof.jpg").focal_35mm is None
    # a focal no rectilinear lens has (1 mm: a wrong tag, or a fisheye's) is not used (helper-108: the
    # pinhole camera saw 175 degrees, the zoom hit its 20x cap, video frames were up to 35 % black)
    # and convert says so (it was dropped without a word, helper-119)
    for focal, used in ((1, None), (7, None), (8, 8.0), (13, 13.0), (65535, None)):
        exif.get_ifd(0x8769)[0xA405] = focal
        im.save(tmp_path / "w.jpg", exif=exif.tobytes())
        p = load_image(tmp_path / "w.jpg")
        assert (p.focal_35mm, p.focal_ignored) == (used, None if used else float(focal)), focal
    from helpers.cli import cli

    r = cli("convert", tmp_path / "w.jpg", "-o", tmp_path / "w.glb")
    assert r.exit_code == 0 and (f"warning: {tmp_path / 'w.jpg'}: its EXIF focal length (65535 mm, 35 mm equivalent) "
                                 "is no lens's: 28 mm assumed") in r.output, r.output


def test_reduced_decode(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)).save(tmp_path / "big.jpg")
    p = load_image(tmp_path / "big.jpg", max_side=200)
    assert max(p.rgb.shape[:2]) == 200 and p.rgb.shape[:2] == (150, 200)
    assert p.original_size == (800, 600)


# --------------------------------------------------------------------------------------------
# bad inputs: one line naming the file and the reason


def _jpeg_bytes(**options) -> bytes:
    import io

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90, **options)
    return buf.getvalue()


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 60 40\n(hello) print\nshowpage\n"


def _ghostscript_spy(tmp_path, monkeypatch) -> Path:
    """A ``gs`` first on PATH that leaves a file behind when run (Pillow's EPS decoder runs it)."""
    spy = tmp_path / "bin"
    spy.mkdir()
    (spy / "gs").write_text(f"#!/bin/sh\ntouch {tmp_path / 'gs-ran'}\nexit 1\n")
    (spy / "gs").chmod(0o755)
    monkeypatch.setenv("PATH", f"{spy}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "gs-ran"


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script as gs")
def test_only_photo_formats_are_decoded(tmp_path, monkeypatch):
    """A file is opened with the decoders photo3d reads photos with, whatever Pillow knows: an EPS
    named .jpg ran Ghostscript on it (as a photo, as a --depth map, as a photo's embedded depth
    map); a PPM, TGA or ICO named .jpg reached Pillow's little-used decoders."""
    from photo3d.depth.embedded import EmbeddedDepthError, decode_map_image
    from photo3d.depth.maps import load_depth_map

    ran = _ghostscript_spy(tmp_path, monkeypatch)
    eps = tmp_path / "holiday.jpg"
    eps.write_bytes(EPS)
    with pytest.raises(InputFileError) as e:
        load_image(eps)
    _one_line_about(e.value, eps, "not an image")
    with pytest.raises(InputFileError) as e:
        load_depth_map(eps)
    assert str(eps) in str(e.value)
    with pytest.raises(EmbeddedDepthError):
        decode_map_image(EPS, "GDepth", 10**6)
    assert not ran.exists()
    rgb = photo_rgb(40, 60)
    for fmt in ("PPM", "TGA", "ICO", "SGI"):
        path = tmp_path / f"as_{fmt.lower()}.jpg"
        Image.fromarray(rgb).save(path, format=fmt)
        with pytest.raises(InputFileError) as e:
            load_image(path)
        _one_line_about(e.value, path, "not an image")
    for fmt in ("JPEG", "PNG", "TIFF", "WEBP", "BMP", "GIF"):  # what a photo is (under any name)
        path = tmp_path / f"as_{fmt.lower()}.jpg"
        Image.fromarray(rgb).save(path, format=fmt)
        assert load_image(path).rgb.shape == rgb.shape


def _mpo_of_entries(path: Path, offsets_of_second: list[int], filler: int = 1 << 16) -> Path:
    """An MPO: a 64x48 JPEG, then a 16x16 one padded with ``filler`` stuffed bytes, its MP index
    listing the first and then one entry per relative offset in ``offsets_of_second`` (0: the second
    image's own start)."""
    import io as _io

    def jpeg(rgb):
        b = _io.BytesIO()
        Image.fromarray(rgb).save(b, "JPEG")
        return b.getvalue()

    main, small = jpeg(photo_rgb(64, 48)), jpeg(np.zeros((16, 16, 3), np.uint8))
    sos = small.index(b"\xff\xda")
    second = small[:sos + 2 + int.from_bytes(small[sos + 2:sos + 4], "big")] + b"\xff\x00" * filler + b"\xff\xd9"
    n = 1 + len(offsets_of_second)
    ifd = (struct.pack("<H", 3) + struct.pack("<HHI4s", 0xB000, 7, 4, b"0100") + struct.pack("<HHII", 0xB001, 4, 1, n)
           + struct.pack("<HHII", 0xB002, 7, 16 * n, 8 + 2 + 12 * 3 + 4) + bytes(4))
    body = 4 + 8 + len(ifd) + 16 * n
    first_len = len(main) + 4 + body
    entries = struct.pack("<IIIHH", 0x030000, first_len, 0, 0, 0) + b"".join(
        struct.pack("<IIIHH", 0, len(second) - d, first_len - 10 + d, 0, 0) for d in offsets_of_second)
    path.write_bytes(main[:2] + b"\xff\xe2" + struct.pack(">H", body + 2) + b"MPF\x00" + b"II*\x00"
                     + struct.pack("<I", 8) + ifd + entries + main[2:] + second)
    return path


def test_an_mpo_of_many_entries_walks_each_image_once(tmp_path, monkeypatch):
    """Each MP entry's image was walked for its scans, the same image once per entry that named it:
    300 entries of one 16 MB image took 52 s, 4,000 at other offsets ~12 min (a security review,
    helper-77).  Each image is walked once; more than MAX_MPO_IMAGES images are refused."""
    import photo3d.io as pio

    walks = []
    count = pio.jpeg_scan_count
    monkeypatch.setattr(pio, "jpeg_scan_count", lambda buf, start=0, limit=pio.MAX_JPEG_SCANS: walks.append(start) or count(buf, start, limit))
    same = _mpo_of_entries(tmp_path / "same.jpg", [0] * 300)
    with Image.open(same) as im:
        assert im.format == "MPO" and len(im._MpoImageFile__mpoffsets) == 301
    assert load_image(same).rgb.shape == (48, 64, 3)
    assert sorted(set(walks)) == sorted(walks) and len(walks) == 2  # (each image once)
    many = _mpo_of_entries(tmp_path / "many.jpg", list(range(0, 2 * pio.MAX_MPO_IMAGES, 2)))
    with pytest.raises(InputFileError) as e:
        load_image(many)
    _one_line_about(e.value, many, "unsupported mpo", f"{pio.MAX_MPO_IMAGES + 1} images")


def test_a_jpeg_of_thousands_of_scans_is_refused_before_decoding(tmp_path):
    """Each scan of a progressive JPEG is decoded over the whole image: 5,000 empty scans (0.9 MB)
    took 51 s at 100 MP (helper-63).  Counted before decoding; a file at the limit is read."""
    from photo3d.depth.embedded import EmbeddedDepthError, decode_map_image
    from photo3d.io import MAX_JPEG_SCANS, RefusedImage
    from photo3d.render import check_textures

    from photo3d.depth.maps import load_depth_map

    ok = jpeg_of_empty_scans(tmp_path / "ok.jpg", MAX_JPEG_SCANS - 1)  # (and its DC scan)
    assert load_image(ok).rgb.shape == (48, 64, 3)
    slow = jpeg_of_empty_scans(tmp_path / "slow.jpg", 5000)
    # the same scans, each after a comment segment: a count of the file's first 64 MiB missed them
    # (here the comments hold SOS marker bytes instead: counted as scans by a plain byte count)
    data = slow.read_bytes()
    com = b"\xff\xfe" + (2 + 64).to_bytes(2, "big") + b"\xff\xda" * 32
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(data[:2] + data[2:].replace(b"\xff\xda", com + b"\xff\xda"))
    for path in (slow, padded):
        with pytest.raises(InputFileError) as e:
            load_image(path)
        _one_line_about(e.value, path, "unsupported jpeg", f"more than {MAX_JPEG_SCANS:,} scans")
    with pytest.raises(InputFileError, match=f"more than {MAX_JPEG_SCANS:,} scans"):  # (a --depth map)
        load_depth_map(slow)
    with pytest.raises(EmbeddedDepthError, match=f"more than {MAX_JPEG_SCANS:,} scans"):  # (a depth map inside a photo)
        decode_map_image(data, "GDepth", 10**6)
    with pytest.raises(RefusedImage):  # (a GLB's texture: 55 s of a 0.9 MB GLB, helper-64)
        check_textures({"textures": [{"source": 0}], "images": [{"bufferView": 0}],
                        "bufferViews": [{"buffer": 0, "byteLength": len(data)}]}, data, 100)
    # marker bytes in comments or in a trailer (a motion photo's video after the image) are not scans
    few = jpeg_of_empty_scans(tmp_path / "few.jpg", 10).read_bytes()
    quoted = tmp_path / "quoted.jpg"
    quoted.write_bytes(few[:2] + b"\xff\xfe" + (2 + 4000).to_bytes(2, "big") + b"\xff\xda" * 2000 + few[2:]
                       + b"\xff\xda" * 2000)
    assert load_image(quoted).rgb.shape == (48, 64, 3)


def test_a_photo_padded_with_millions_of_empty_segments_is_refused_before_pillow_reads_it(tmp_path):
    """A 160x120 JPEG with 4 M empty APP0 segments (16 MB) took 34 s and 0.9 GB, 16 M took 130 s and
    2.6 GB; a PNG with 1.3 M empty private chunks 17 s (helper-72): Pillow's header parser and
    photo3d's own marker walks went through each. A photo has a few dozen; past MAX_META_SEGMENTS
    the file is refused before Pillow opens it (here 20,000, a file at the limit is read)."""
    import struct
    import zlib

    from photo3d.depth.maps import load_depth_map
    from photo3d.io import MAX_META_SEGMENTS

    jpg, png = tmp_path / "p.jpg", tmp_path / "p.png"
    Image.fromarray(photo_rgb(160, 120)).save(jpg, quality=90)
    Image.fromarray(photo_rgb(160, 120)).save(png)
    app0, data = b"\xff\xe0\x00\x02", jpg.read_bytes()
    chunk = struct.pack(">I", 0) + b"prVt" + struct.pack(">I", zlib.crc32(b"prVt"))
    pdata = png.read_bytes()
    idat = struct.pack(">I", 0) + b"IDAT" + struct.pack(">I", zlib.crc32(b"IDAT"))
    cases = {"pj.jpg": data[:2] + app0 * 20_000 + data[2:], "pp.png": pdata[:33] + chunk * 20_000 + pdata[33:],
             # the same done with what a walk of segments skips (helper-74): fill bytes, restart markers,
             # a stray byte (Pillow steps over stray bytes one by one), empty image-data chunks
             "fill.jpg": data[:2] + b"\xff" * 40_000 + data[2:], "rst.jpg": data[:2] + b"\xff\xd0" * 20_000 + data[2:],
             "stray.jpg": data[:2] + b"\x00" + app0 * 20_000 + data[2:],
             "idat.png": pdata[:33] + idat * 20_000 + pdata[33:]}
    for name, blob in cases.items():
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(InputFileError) as e:
            load_image(path)
        what = "segments or padding bytes before its image data" if name.endswith(".jpg") else "chunks besides its image data"
        _one_line_about(e.value, path, "unsupported " + ("jpeg" if name.endswith(".jpg") else "png"),
                        f"more than {MAX_META_SEGMENTS:,} {what}")
        with pytest.raises(InputFileError, match=f"more than {MAX_META_SEGMENTS:,}"):  # (a --depth map)
            load_depth_map(path)
    ok = tmp_path / "ok.jpg"
    ok.write_bytes(data[:2] + app0 * (MAX_META_SEGMENTS - 20) + data[2:])  # (and its own ~10)
    assert load_image(ok).rgb.shape == (120, 160, 3)


JPEG_KINDS = {"baseline 4:2:0": {}, "baseline 4:4:4": {"subsampling": 0},
              "progressive": {"progressive": True}, "restart markers": {"restart_marker_rows": 1}}


@pytest.mark.parametrize("kind", JPEG_KINDS)
def test_a_jpeg_missing_only_its_end_marker_is_read_whole(tmp_path, kind):
    """No EOI (some cameras; a download 2 bytes short): read, every pixel as the whole file's."""
    data = _jpeg_bytes(**JPEG_KINDS[kind])
    assert data.endswith(b"\xff\xd9")
    (tmp_path / "whole.jpg").write_bytes(data)
    whole, reduced = load_image(tmp_path / "whole.jpg").rgb, load_image(tmp_path / "whole.jpg", max_side=60).rgb
    for cut in (2, 1):  # no EOI; or its first byte only
        path = tmp_path / f"no-eoi-{cut}.jpg"
        path.write_bytes(data[:-cut])
        assert np.array_equal(load_image(path).rgb, whole)
        assert np.array_equal(load_image(path, max_side=60).rgb, reduced)  # (the reduced decode too)


def test_a_jpeg_missing_its_end_marker_keeps_its_exif(tmp_path):
    im = Image.fromarray(_red_left_blue_right())
    exif = im.getexif()
    exif[0x0112] = 6  # 90° clockwise
    exif.get_ifd(0x8769)[0xA405] = 28
    path = tmp_path / "o6.jpg"
    im.save(path, exif=exif.tobytes(), quality=95, subsampling=0)
    path.write_bytes(path.read_bytes()[:-2])
    p = load_image(path)
    assert p.rgb.shape[:2] == (40, 20) and p.focal_35mm == 28.0
    assert p.rgb[2, 2, 0] > 200 and p.rgb[-3, -3, 2] > 200


@pytest.mark.parametrize("kind", JPEG_KINDS)
def test_a_jpeg_cut_inside_its_scan_data_is_still_refused(tmp_path, kind):
    """A byte or more of the image data missing (the rest would decode grey): refused, whichever."""
    data = _jpeg_bytes(**JPEG_KINDS[kind])
    for cut in [*range(3, 40), 100, len(data) // 3]:
        path = tmp_path / f"cut-{cut}.jpg"
        path.write_bytes(data[:-cut])
        with pytest.raises(InputFileError) as e:
            load_image(path)
        _one_line_about(e.value, path, "truncated")


@pytest.mark.parametrize("kind", [k for k in JPEG_KINDS if k != "progressive"])
def test_a_jpeg_cut_inside_its_scan_data_with_an_end_marker_after_it_is_refused(tmp_path, kind):
    """Cut inside its image data with an EOI appended (a "repaired" download; a header forged to
    declare a huge image over a few bytes: 1.45 GB of memory for a 3 kB file), libjpeg decoded
    the missing blocks as flat grey without a word, and the photo was converted.  Refused now; a
    whole JPEG whose last rows are flat (black bars) is read as it is.  (A progressive file cut so
    decodes with blurred, not flat, blocks: not judged; nor a forged size over a file with restart
    markers, whose missing intervals the stand-in data cannot reach.)"""
    data = _jpeg_bytes(**JPEG_KINDS[kind])
    for cut in (len(data) // 2, len(data) // 3, 2 * len(data) // 3):
        path = tmp_path / f"cut-{cut}.jpg"
        path.write_bytes(data[:cut] + b"\xff\xd9")
        with pytest.raises(InputFileError) as e:
            load_image(path)
        _one_line_about(e.value, path, "truncated")
    sof = data.index(b"\xff\xc0")  # the frame header: its height and width, declared 4x larger
    big = bytearray(data)
    big[sof + 5 : sof + 9] = struct.pack(">HH", 480, 640)
    (tmp_path / "forged.jpg").write_bytes(bytes(big))
    if kind != "restart markers":
        with pytest.raises(InputFileError, match="truncated"):
            load_image(tmp_path / "forged.jpg")
    from photo3d.io import _flat_bottom

    rgb = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    rgb[64:] = 0  # (whole MCU rows: 4:2:0 chroma of the rows above does not reach the last 8)
    Image.fromarray(rgb).save(tmp_path / "bars.jpg", quality=90, **JPEG_KINDS[kind])
    with Image.open(tmp_path / "bars.jpg") as im:
        im.load()
        assert _flat_bottom(im)  # (so the check runs, and finds the file whole)
    assert load_image(tmp_path / "bars.jpg").rgb.shape == (120, 160, 3)
    # fill bytes before the EOI are legal: whole too
    (tmp_path / "fill.jpg").write_bytes((tmp_path / "bars.jpg").read_bytes()[:-2] + b"\xff\xff\xff\xd9")
    assert load_image(tmp_path / "fill.jpg").rgb.shape == (120, 160, 3)


def _scans(data: bytes) -> list[tuple[int, int, int]]:
    """(header start, data start, data end) of each scan of the whole JPEG ``data``."""
    import re

    out, pos = [], 2
    while (at := data.find(b"\xff\xda", pos)) >= 0:  # (0xFFDA is never in entropy-coded data)
        start = at + 2 + int.from_bytes(data[at + 2 : at + 4], "big")
        pos = re.compile(rb"\xff[^\x00\xd0-\xd7]").search(data, start).start()  # the next marker (tables, a scan, EOI)
        out.append((at, start, pos))
    return out


PROGRESSIVE = {"4:2:0": ({}, "RGB", 5), "4:4:4": ({"subsampling": 0}, "RGB", 5), "grey": ({}, "L", 3)}


@pytest.mark.parametrize("kind", PROGRESSIVE)
def test_a_progressive_jpeg_cut_between_scans(tmp_path, kind):
    """Cut after a complete scan (or in the headers before the next one's data): read, with a warning,
    once every component has all its detail at some precision (libjpeg's script: after scan 5 of 10,
    3 of 6 for grey; only refinement bits missing); refused before, saying why (a blurred, blocky
    preview); cut inside a scan's data: refused as ever.  Pillow's global LOAD_TRUNCATED_IMAGES stays off."""
    import io

    from PIL import ImageFile

    from helpers.photos import photo_rgb

    options, mode, first = PROGRESSIVE[kind]
    buf = io.BytesIO()
    Image.fromarray(photo_rgb(160, 120)).convert(mode).save(buf, "JPEG", quality=90, progressive=True, **options)
    data = buf.getvalue()
    (tmp_path / "whole.jpg").write_bytes(data)
    whole = load_image(tmp_path / "whole.jpg").rgb.astype(float)
    scans = _scans(data)
    assert len(scans) == (10 if mode == "RGB" else 6)
    for n in range(1, len(scans)):  # the file ends after scan n's data: before, in or after the next headers
        _, begin, end = scans[n - 1]
        start = scans[n][1]  # (scan n + 1's data, after its tables and header)
        for cut in (end, end + 1, (end + start) // 2, start):
            path = tmp_path / f"after-{n}-{cut}.jpg"
            path.write_bytes(data[:cut])
            if n < first:
                with pytest.raises(InputFileError) as e:
                    load_image(path)
                _one_line_about(e.value, path, f"truncated progressive jpeg (ends after {n} complete scan",
                                "before its full detail: only a blurred preview")
                continue
            p = load_image(path)
            assert p.warnings == [f"truncated progressive JPEG (ends after {n} complete scans): read at reduced quality"]
            assert np.array_equal(p.rgb, np.asarray(Image.open(io.BytesIO(data[:end] + b"\xff\xd9")).convert("RGB")))
            psnr = 10 * np.log10(255**2 / np.mean((p.rgb - whole) ** 2))
            assert psnr > 25, (n, psnr)  # (the whole photo's detail, a little noisier)
            assert load_image(path, max_side=60).warnings == p.warnings  # (the reduced decode too)
        for cut in (begin + 1, (begin + end) // 2, end - 1):  # inside scan n's data: refused
            path = tmp_path / f"inside-{n}-{cut}.jpg"
            path.write_bytes(data[:cut])
            with pytest.raises(InputFileError) as e:
                load_image(path)
            _one_line_about(e.value, path, "truncated image file")
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


def test_a_progressive_jpeg_cut_between_scans_says_so_on_the_command_line(tmp_path):
    """The warning reaches the user as one line naming the photo; the 3D photo is made."""
    import io

    from helpers.photos import photo_rgb

    buf = io.BytesIO()
    Image.fromarray(photo_rgb(160, 120)).save(buf, "JPEG", quality=90, progressive=True)
    data = buf.getvalue()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: _scans(data)[5][2]])  # after 6 scans of 10
    np.save(tmp_path / "d.npy", np.linspace(0, 1, 160 * 120, dtype=np.float32).reshape(120, 160))
    r = _cli("convert", path, "-o", tmp_path / "out.glb", "--depth", tmp_path / "d.npy")
    assert r.exit_code == 0, r.output
    assert f"warning: {path}: truncated progressive JPEG (ends after 6 complete scans): read at reduced quality" \
        in r.output.splitlines()
    assert (tmp_path / "out.glb").stat().st_size > 0


def test_a_jpeg_padded_with_hundreds_of_megabytes_is_not_read_whole(tmp_path):
    """A baseline JPEG whose last rows are flat (a black border) is checked for a cut inside its
    image data (libjpeg fills missing blocks with one flat colour): that check read the whole file,
    so the photo padded to 3 GB (a sparse file: kilobytes on disk) took 3.4 GB of memory and 41 s,
    and under a memory limit failed with "not enough memory to decode this 320x213 image" (helper-54).
    Now it reads what a JPEG of its size can hold (64 MiB and 8 bytes a pixel); here padded to
    512 MiB."""
    from helpers.memory import pad_to, peak_bytes

    rgb = photo_rgb(160, 120)
    rgb[-24:] = 0
    path = tmp_path / "padded.jpg"
    Image.fromarray(rgb).save(path, quality=90)
    p, peak = peak_bytes(lambda: load_image(pad_to(path, 512 << 20)))
    assert p.rgb.shape == (120, 160, 3) and p.rgb[-1].max() < 20
    assert peak < 150e6, f"{peak / 1e6:.0f} MB"


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.98])
def test_truncated_jpeg(tmp_path, fraction):
    data = _jpeg_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(InputFileError) as e:
        load_image(path)
    _one_line_about(e.value, path, "truncated")


def test_truncated_png(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError) as e:
        load_image(path)
    _one_line_about(e.value, path, "truncated")


@pytest.mark.parametrize("suffix,options,reason", [
    (".webp", {}, "truncated image file"),  # (was "could not create decoder object")
    (".tif", {"compression": "tiff_lzw"}, "damaged or truncated TIFF file (its header cannot be read)"),  # (was "not an image")
])
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # (Pillow, reading the cut TIFF's tags)
def test_a_cut_off_webp_or_tiff_says_so(tmp_path, suffix, options, reason):
    rgb = np.random.default_rng(0).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / f"full{suffix}", **options)
    data = (tmp_path / f"full{suffix}").read_bytes()
    for fraction in (0.01, 0.5, 0.95):
        path = tmp_path / f"cut{suffix}"
        path.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(InputFileError) as e:
            load_image(path)
        assert str(e.value) == f"{path}: {reason}"


@pytest.mark.parametrize("compression,name", [(34712, "JPEG 2000"), (12345, "compression 12345"), (32809, "ThunderScan"),
                                              (34676, "SGILog")])
def test_a_tiff_in_a_compression_not_read_here_says_so(tmp_path, compression, name):
    """A TIFF in JPEG 2000 (or LERC, JPEG XL, ...) compression was "unsupported TIFF (3 samples of
    8-bit unsigned integer per pixel): save it as 8- or 16-bit RGB", which it was (helper-63); one in
    a compression libtiff reads but few files use (ThunderScan, SGILog, ...) reached that little-used
    code (helper-64): refused before decoding."""
    path = tmp_path / "c.tif"
    Image.fromarray(photo_rgb(64, 48)).save(path, compression="raw")
    im = Image.open(path)
    at = im.tag_v2  # (the Compression entry of the first directory: tag 259, SHORT, 1 value)
    data = bytearray(path.read_bytes())
    entry = data.find(struct.pack("<HHI", 259, 3, 1))
    assert entry > 0 and at[259] == 1
    data[entry + 8 : entry + 10] = struct.pack("<H", compression)
    path.write_bytes(bytes(data))
    with pytest.raises(InputFileError) as e:
        load_image(path)
    assert str(e.value) == f"{path}: unsupported TIFF ({name}, not read here): save it uncompressed, or with LZW or Deflate"


@pytest.mark.filterwarnings("ignore:Tag data larger than file")  # (Pillow, on each filler tag)
def test_a_tiff_with_thousands_of_long_tags_is_told_at_once(tmp_path):
    """The check that names an unsupported TIFF decoded every tag of its first directory, up to
    65,536 values each; 65,535 tags pointing at one 256 KB block (a 1 MB file) took ~20 min and
    ~34 GB (a security review, helper-77; 3,000 tags: 55 s, 1.9 GB).  It reads its eight tags only."""
    w = h = 8
    pixels, block = bytes(w * h * 12), bytes(65536 * 4)
    base = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 32), (259, 3, 1, 1), (262, 3, 1, 2), (273, 4, 1, 0),
            (277, 3, 1, 3), (278, 4, 1, h), (279, 4, 1, len(pixels)), (339, 3, 1, 3)]
    filler = 20000  # LONG tags of 65,536 values, all at the same block
    n = len(base) + filler
    at_pixels = 8 + 2 + 12 * n + 4
    entries = sorted([(t, k, c, at_pixels if t == 273 else v) for t, k, c, v in base]
                     + [(40000 + i, 4, 65536, at_pixels + len(pixels)) for i in range(filler)])
    data = bytearray(b"II*\0" + struct.pack("<IH", 8, n))
    for tag, kind, count, value in entries:
        data += struct.pack("<HHI", tag, kind, count) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
    path = tmp_path / "tags.tif"
    path.write_bytes(bytes(data) + bytes(4) + pixels + block)
    with pytest.raises(InputFileError) as e:
        load_image(path)
    assert str(e.value) == f"{path}: unsupported TIFF (3 samples of 32-bit floating-point per pixel): save it as 8- or 16-bit RGB"


@pytest.mark.parametrize("dtype,held", [(np.float32, "3 samples of 32-bit floating-point"), (np.int32, "3 samples of 32-bit signed integer")])
def test_a_whole_tiff_of_a_kind_pillow_does_not_read_is_not_called_damaged(tmp_path, dtype, held):
    """A float or 32-bit integer RGB TIFF (HDR and scientific tools write them) that is all there
    was 'damaged or truncated TIFF file (its header cannot be read)': the user went looking for a
    broken copy.  Now it says what it holds; the same file cut short is still truncated."""
    import cv2

    rgb = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    path = tmp_path / "hdr.tif"
    assert cv2.imwrite(str(path), rgb.astype(np.float32) / 255 if dtype == np.float32 else rgb.astype(dtype))
    with pytest.raises(InputFileError) as e:
        load_image(path)
    assert str(e.value) == f"{path}: unsupported TIFF ({held} per pixel): save it as 8- or 16-bit RGB"
    data = path.read_bytes()
    for fraction in (0.3, 0.9):
        cut = tmp_path / "cut.tif"
        cut.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(InputFileError) as e:
            load_image(cut)
        assert str(e.value) == f"{cut}: damaged or truncated TIFF file (its header cannot be read)"


@pytest.mark.parametrize("sof,held", [(0xC1, "12-bit samples"), (0xC3, "lossless, 12-bit samples")])
def test_a_12_bit_jpeg_is_unsupported_not_damaged(tmp_path, sof, held):
    """A 12-bit JPEG (extended or lossless: some cameras, scanners and medical tools write them)
    was 'damaged or truncated JPEG file (its header cannot be read)'; Pillow reads 8-bit JPEGs
    only.  Now it says what it holds, in one line, in a batch too; cut inside its frame header it is
    still truncated."""
    path = jpeg_12bit(tmp_path / "scan.jpg", sof)
    with pytest.raises(InputFileError) as e:
        load_image(path)
    assert str(e.value) == f"{path}: unsupported JPEG ({held}): save it as an 8-bit JPEG, or as PNG or TIFF"
    r = _cli("depth", path, "-o", tmp_path / "d.png")
    assert r.exit_code == 1 and not (tmp_path / "d.png").exists()
    assert f"unsupported JPEG ({held})" in r.output and "damaged" not in r.output
    data = path.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: data.index(bytes([0xFF, sof])) + 6])  # the marker, its length and precision
    with pytest.raises(InputFileError) as e:
        load_image(cut)
    assert str(e.value) == f"{cut}: truncated image file"


def test_an_8_bit_lossless_jpeg_is_read_or_said_unsupported(tmp_path, monkeypatch):
    """An 8-bit lossless (SOF3) JPEG is read exactly where Pillow's libjpeg-turbo is 3.0 or later
    (Pillow 13's wheels: 3.2).  With an older one (Pillow 10.0's wheels, which pyproject allows:
    libjpeg-turbo 2.1.5.1) Pillow opens it and fails to decode it: that said 'unreadable image
    (broken data stream when reading image file)'; now it says it is an unsupported kind and why."""
    import PIL.features
    from PIL import JpegImagePlugin

    rgb = photo_rgb(40, 24, noise=60)
    path = lossless_jpeg(tmp_path / "scan.jpg", rgb)
    if int((PIL.features.version_feature("libjpeg_turbo") or "0").split(".")[0]) >= 3:
        assert np.array_equal(load_image(path).rgb, rgb)
    # Pillow with libjpeg-turbo 2.1.5.1, as Pillow 10.0.0 behaves (measured): it opens, not decodes
    version = PIL.features.version_feature
    monkeypatch.setattr(PIL.features, "version_feature", lambda f: "2.1.5.1" if f == "libjpeg_turbo" else version(f))

    def load(self):
        raise OSError("broken data stream when reading image file")

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", load)
    with pytest.raises(InputFileError) as e:
        load_image(path)
    assert str(e.value) == (f"{path}: unsupported JPEG (lossless): this Pillow's libjpeg-turbo 2.1.5.1 does not read "
                            "it (libjpeg-turbo 3.0 and later do: pip install -U pillow), or save it as PNG or TIFF")
    r = _cli("depth", path, "-o", tmp_path / "d.png")
    assert r.exit_code == 1 and not (tmp_path / "d.png").exists()
    assert "unsupported JPEG (lossless)" in r.output and "broken data stream" not in r.output, r.output


def test_a_hierarchical_jpeg_is_unsupported_not_broken(tmp_path):
    """No libjpeg reads a hierarchical JPEG (SOF5-7, 13-15), 8-bit too: it said 'unreadable image
    (broken data stream when reading image file)'."""
    path = jpeg_12bit(tmp_path / "h.jpg", 0xC5, bits=8)
    with pytest.raises(InputFileError) as e:
        load_image(path)
    assert str(e.value) == f"{path}: unsupported JPEG (hierarchical): save it as a baseline JPEG, or as PNG or TIFF"


@pytest.mark.parametrize("fraction", [0.02, 0.6, 0.999])
def test_truncated_heic_is_an_error_not_green_tiles(tmp_path, monkeypatch, fraction):
    """An iPhone HEIC is a grid of tiles; libheif decodes the tiles missing from a cut-off file as
    flat green (0, 136, 0) without an error.  A truncated HEIC is a truncated file."""
    pillow_heif = pytest.importorskip("pillow_heif")
    monkeypatch.setattr(pillow_heif.options, "GRID_TILE_SIZE", 128)  # a grid, as an iPhone writes
    rgb = np.random.default_rng(0).integers(0, 256, (384, 512, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "full.heic", format="HEIF", quality=90)
    data = (tmp_path / "full.heic").read_bytes()
    assert load_image(tmp_path / "full.heic").rgb.shape == (384, 512, 3)
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(InputFileError) as e:
        load_image(path)
    _one_line_about(e.value, path, "truncated")


@pytest.mark.parametrize("offset", ["middle", 60])
def test_damaged_png_is_an_error_not_a_black_photo(tmp_path, offset):
    """One flipped byte in the compressed data (or a chunk's CRC): the decoder fails, and so must
    we (reading a PNG's EXIF decodes it too; that error was once swallowed and the half-decoded,
    partly black image went on as a photo)."""
    rgb = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    src = tmp_path / "rot.png"
    Image.fromarray(rgb).save(src)
    data = bytearray(src.read_bytes())
    data[len(data) // 2 if offset == "middle" else offset] ^= 0xFF
    src.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match="rot.png: unreadable image"):
        load_image(src)


@pytest.mark.parametrize("compression,reason", [("tiff_deflate", "zipdecode: decoding error"),
                                                 ("tiff_lzw", "using code not yet in table")])
def test_damaged_tiff_is_one_line_without_libtiff_noise(tmp_path, capfd, compression, reason):
    """libtiff prints its own complaint straight to stderr (fd 2): it becomes the reason of our one
    line instead of a second line (and of Pillow's bare "decoder error -2")."""
    a = np.random.default_rng(0).integers(0, 256, size=(200, 300, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.tif", compression=compression)
    data = bytearray((tmp_path / "a.tif").read_bytes())
    n = len(data) // 3
    data[n: n + 2000] = bytes(b ^ 0x5A for b in data[n: n + 2000])  # the image data, not the header
    (tmp_path / "a.tif").write_bytes(bytes(data))
    capfd.readouterr()
    with pytest.raises(InputFileError) as e:
        load_image(tmp_path / "a.tif")
    _one_line_about(e.value, tmp_path / "a.tif", "unreadable image", reason)
    assert capfd.readouterr() == ("", "")


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n" * 20)
    with pytest.raises(InputFileError) as e:
        load_image(path)
    _one_line_about(e.value, path, "not an image")


def test_heic_without_the_heif_extra_says_how_to_read_it(tmp_path):
    """Without pillow-heif (``photo3d[heif]``), an iPhone's HEIC is one failed input that says
    what to install, in a folder too (not "not an image", not silently left out of the batch)."""
    pytest.importorskip("pillow_heif")  # (to write the test file)
    Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(tmp_path / "IMG_0001.HEIC", format="HEIF")
    code = ("import sys; sys.modules['pillow_heif'] = None\n"  # as if the extra were not installed
            "from photo3d.batch import discover\nfrom photo3d.io import load_image\n"
            "print([p.name for p in discover(sys.argv[1])])\n"
            "try:\n    load_image(sys.argv[1] + '/IMG_0001.HEIC')\nexcept Exception as e:\n    print(e)")
    from helpers.cli import env

    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env(), timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["['IMG_0001.HEIC']",
                                     f'{tmp_path}/IMG_0001.HEIC: reading HEIC/HEIF needs pillow-heif: pip install "photo3d[heif]"']
    assert load_image(tmp_path / "IMG_0001.HEIC").rgb.shape == (30, 40, 3)  # (with it: read)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(InputFileError) as e:
        load_image(path)
    _one_line_about(e.value, path, "empty")


def test_not_a_regular_file_says_so(tmp_path):
    """/dev/zero (no size, no end) or a named pipe: "not a regular file", not "empty file", at once."""
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    for path, kind in ((Path("/dev/zero"), "character device"), (fifo, "named pipe")):
        if not path.exists():
            continue
        with pytest.raises(InputFileError) as e:
            load_image(path)
        _one_line_about(e.value, path, "not an image", kind, "not a regular file")
        assert "empty" not in str(e.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputFileError) as e:
        load_image(tmp_path / "nope.jpg")
    _one_line_about(e.value, tmp_path / "nope.jpg", "no such file")
    with pytest.raises(InputFileError) as e:
        load_image(tmp_path)
    _one_line_about(e.value, tmp_path, "folder")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width × height RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1000)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def test_decompression_bomb_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_bomb_png(100_000, 100_000))
    assert path.stat().st_size < 2000
    with pytest.raises(InputFileError) as e:
        load_image(path)
    _one_line_about(e.value, path, "too large", "max-megapixels")


def test_max_megapixels_small_limit(tmp_path):
    Image.new("RGB", (300, 200)).save(tmp_path / "a.png")
    with pytest.raises(InputFileError) as e:
        load_image(tmp_path / "a.png", max_megapixels=0.05)
    _one_line_about(e.value, tmp_path / "a.png", "too large")
    assert load_image(tmp_path / "a.png", max_megapixels=0.1).rgb.shape == (200, 300, 3)


# --------------------------------------------------------------------------------------------
# atomic output


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    dst = tmp_path / "sub" / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_output(dst) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert not dst.exists()
    assert list(tmp_path.iterdir()) == []  # nor the folder made for it
    write_bytes_atomic(dst, b"done")
    assert dst.read_bytes() == b"done"
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(dst.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["out.bin"]


def test_a_failed_atomic_write_removes_only_the_empty_folders_it_made(tmp_path):
    deep = tmp_path / "a" / "b" / "c" / "out.bin"
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(deep) as tmp:
            tmp.write_bytes(b"partial")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "kept.txt").write_text("x")
    with pytest.raises(OutputError, match="out.bin: cannot write"):
        with atomic_output(deep) as tmp:
            raise OSError(28, "No space left on device")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "kept.txt"]  # b/c went, a (not made) stays
    with pytest.raises(RuntimeError), atomic_output(deep) as tmp:
        write_bytes_atomic(deep.with_name("other.bin"), b"x")  # another output in c meanwhile
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "c", "kept.txt", "other.bin"]


# --------------------------------------------------------------------------------------------
# CLI exit codes (a tiny TorchScript model: no ../shared needed)




def test_cli_bad_inputs_exit_1(tmp_path, tiny_depth_model):
    good = tmp_path / "in" / "good.png"
    good.parent.mkdir()
    Image.fromarray(_red_left_blue_right()).save(good)
    bad = tmp_path / "in" / "bad.jpg"
    bad.write_text("not an image")
    # one bad file
    r = _cli("depth", bad, "-o", tmp_path / "bad.png", "--model", tiny_depth_model)
    assert r.exit_code == ExitCode.failed, r.output
    assert "bad.jpg" in r.output and "not an image" in r.output
    assert not (tmp_path / "bad.png").exists()
    # a folder with one good and one bad file: the good one is written, exit 1
    r = _cli("depth", tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_depth_model)
    assert r.exit_code == ExitCode.failed, r.output
    assert (tmp_path / "out" / "good.png").is_file()
    assert "bad.jpg" in r.output
    # the closing line says what was written: depth maps, not conversions
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("1 depth map(s) written, 0 skipped (output exists), 1 failed in "), r.output
    # truncated and bomb inputs
    data = _jpeg_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    r = _cli("depth", tmp_path / "cut.jpg", "-o", tmp_path / "cut.png", "--model", tiny_depth_model)
    assert r.exit_code == ExitCode.failed and "truncated" in r.output
    (tmp_path / "bomb.png").write_bytes(_bomb_png(50_000, 50_000))
    r = _cli("depth", tmp_path / "bomb.png", "-o", tmp_path / "b.png", "--model", tiny_depth_model)
    assert r.exit_code == ExitCode.failed and "too large" in r.output
    r = _cli("depth", good, "-o", tmp_path / "g.png", "--model", tiny_depth_model, "--max-megapixels", "0.0001")
    assert r.exit_code == ExitCode.failed and "too large" in r.output
    # missing input
    r = _cli("depth", tmp_path / "missing.jpg", "-o", tmp_path / "m.png", "--model", tiny_depth_model)
    assert r.exit_code == ExitCode.failed and "missing.jpg" in r.output


def test_cli_good_input_exit_0(tmp_path, tiny_depth_model):
    good = tmp_path / "good.png"
    Image.fromarray(_red_left_blue_right()).save(good)
    r = _cli("depth", good, "-o", tmp_path / "d.png", "--model", tiny_depth_model)
    assert r.exit_code == ExitCode.ok, r.output
    assert (tmp_path / "d.png").is_file()


def test_cli_usage_errors_exit_2(tmp_path, tiny_depth_model):
    good = tmp_path / "good.png"
    Image.fromarray(_red_left_blue_right()).save(good)
    assert _cli("depth", good).exit_code == ExitCode.usage  # no -o
    assert _cli("depth", good, "-o", tmp_path / "x.png", "--no-such-option").exit_code == ExitCode.usage
    assert _cli("depth", "-o", tmp_path / "x.png").exit_code == ExitCode.usage  # no INPUT
    r = _cli("depth", good, "-o", tmp_path / "out", "--format", "tiff", "--model", tiny_depth_model)
    assert r.exit_code == ExitCode.usage
    assert _cli("frobnicate").exit_code == ExitCode.usage
    for jobs in ("-1", "-8"):  # one line that says which values there are
        r = _cli("depth", good, "-o", tmp_path / "x.png", "--jobs", jobs, "--model", tiny_depth_model)
        assert r.exit_code == ExitCode.usage, r.output
        assert r.output.strip() == (f"error: --jobs must be a number of worker processes (1 or more), or 0 for one "
                                    f"per CPU; not {jobs} (see: photo3d depth --help)"), r.output
    assert not (tmp_path / "x.png").exists()


def test_an_output_is_on_the_disk_before_it_gets_its_name(tmp_path, monkeypatch):
    """The temp file is fsync'ed before the rename: without it the rename can reach the disk first,
    and a power cut left an empty or partial file under the final name (that a re-run skips as
    done).  Whoever wrote the temp (Pillow, FFmpeg), its data is synced."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        return real_fsync(fd)

    def replace(a, b):
        events.append(("replace", os.path.basename(a)))
        return real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_bytes_atomic(tmp_path / "a.glb", b"whole")
    (synced,), (renamed,) = [n for e, n in events if e == "fsync"], [n for e, n in events if e == "replace"]
    assert events.index(("fsync", synced)) < events.index(("replace", renamed)) and synced == renamed
    assert (tmp_path / "a.glb").read_bytes() == b"whole"


def test_pillows_own_pixel_limit_plays_no_part(tmp_path, monkeypatch):
    """photo3d checks sizes itself (--max-megapixels): Pillow's limit (89 MP: a warning; 179 MP: an
    error) is lifted wherever a file is opened or decoded.  A 99 MP photo, within the default, was
    "warning: DecompressionBombWarning" from the walk's and the stereo check's looks at its header,
    and a TIFF's decode checks it again (helper-63).  Here at Pillow's limit of 1,000 pixels."""
    from photo3d.depth.maps import load_depth_map, photo3d_kind

    rgb = photo_rgb(64, 48)
    frames = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    files = {}
    for name, fmt in (("a.jpg", "JPEG"), ("a.png", "PNG"), ("a.tif", "TIFF"), ("a.gif", "GIF"), ("a.webp", "WEBP"),
                      ("a.mpo", "MPO")):
        files[name] = tmp_path / name
        frames[0].save(files[name], format=fmt, **({} if fmt == "JPEG" else {"save_all": True, "append_images": frames[1:]}))
    Image.fromarray(np.full((48, 64), 700, np.uint16)).save(tmp_path / "d.tif")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for path in files.values():
            assert load_image(path).rgb.shape == (48, 64, 3)
            photo3d_kind(path)
        assert load_depth_map(tmp_path / "d.tif").shape == (48, 64)
    assert [str(w.message) for w in caught] == []
    assert Image.MAX_IMAGE_PIXELS == 1000  # (lifted for the open and the decode only)


def test_effective_path_undoes_folders_not_made_yet(tmp_path):
    """``..`` after a folder that is not there yet cancels it, as the system will once the folder is
    made; ``..`` over existing folders, or paths without such a part, are left as written."""
    from photo3d.io import effective_path

    (tmp_path / "there").mkdir()
    t = str(tmp_path)
    assert effective_path(f"{t}/new/../a.png") == f"{t}/a.png"
    assert effective_path(tmp_path / "new" / ".." / "a.png") == tmp_path / "a.png"  # (a Path stays a Path)
    assert effective_path(f"{t}/new/x/../../there/../out/") == f"{t}/there/../out/"  # (a folder keeps its separator)
    assert effective_path(f"{t}/new/../../a.png") == f"{t}/../a.png"
    assert effective_path(f"{t}/there/../a.png") == f"{t}/there/../a.png"
    assert effective_path(f"{t}/new/a.png") == f"{t}/new/a.png"
    assert effective_path("new-folder-xyz/..") == "."


def _icc_with_pipeline(n: int) -> bytes:
    """An ICC v4 RGB profile (sRGB-like colorants and curves) whose D2B0 'mpet' pipeline holds ``n``
    matrix elements: what helper-111 made to keep the colour library busy for minutes."""
    def s15(x):
        return struct.pack(">i", int(round(x * 65536)))

    matf = b"matf" + b"\0" * 4 + struct.pack(">HH", 3, 3) + struct.pack(">9f", 1 - 1e-6, 0, 0, 0, 1 - 1e-6, 0, 0, 0,
                                                                          1 - 1e-6) + struct.pack(">3f", 1e-7, 0, 0)
    head = 16 + 8 * n
    mpet = b"mpet" + b"\0" * 4 + struct.pack(">HHI", 3, 3, n) + b"".join(
        struct.pack(">II", head + k * len(matf), len(matf)) for k in range(n)) + matf * n

    def xyz(x, y, z):
        return b"XYZ " + b"\0" * 4 + s15(x) + s15(y) + s15(z)

    desc = b"mluc" + b"\0" * 4 + struct.pack(">II", 1, 12) + b"enUS" + struct.pack(">II", 2, 28) + "x".encode("utf-16-be")
    curv = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, int(2.2 * 256)) + b"\0\0"
    tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)), (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)),
            (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)), (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)), (b"rTRC", curv),
            (b"gTRC", curv), (b"bTRC", curv), (b"D2B0", mpet)]
    off = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        data += b"\0" * (-(off + len(data)) % 4)
        table += sig + struct.pack(">II", off + len(data), len(body))
        data += body
    total = off + len(data)
    hdr = (struct.pack(">I", total) + b"lcms" + struct.pack(">I", 0x04300000) + b"mntr" + b"RGB " + b"XYZ " + b"\0" * 12
           + b"acsp" + b"APPL" + b"\0" * 4 + b"\0" * 16 + struct.pack(">I", 1) + s15(0.9642) + s15(1.0) + s15(0.8249)
           + b"lcms" + b"\0" * 44)
    return hdr + struct.pack(">I", len(tags)) + table + data


def test_a_colour_profile_made_to_take_minutes_is_ignored_with_a_warning(tmp_path):
    """A 147 KB profile whose pipeline held 60,000 elements kept the colour library busy for 76 s on a
    32×32 photo (a 16 MB one more than 15 minutes, deaf to Ctrl-C and kill; helper-111). A profile of
    more than ``MAX_ICC_ELEMENTS`` elements in a pipeline is ignored, with a warning naming why."""
    from photo3d import io as pio

    path = tmp_path / "bomb.png"
    Image.new("RGB", (32, 32), (120, 90, 60)).save(path, icc_profile=_icc_with_pipeline(3000))
    photo = pio.load_image(path)
    assert any("colour profile ignored (a pipeline of 3,000 elements, too costly to apply)" in w for w in photo.warnings), photo.warnings
    assert photo.rgb[0, 0].tolist() == [120, 90, 60]
    assert pio._icc_cost(_icc_with_pipeline(8)) is None  # a real profile's handful of elements is applied as before


@pytest.mark.parametrize("fmt", ["webp", "heic", "avif"])
def test_a_webp_heic_or_avif_padded_with_hundreds_of_megabytes_is_not_read_whole(tmp_path, fmt):
    """Their decoders read a file whole: a photo of 38 KB padded with zeros to 3 GB (sparse) took
    6.6 GB to convert, a padded WebP 3.1 GB in a folder run's coordinating process as the walk
    looked at it, a HEIC once more as its depth was looked for (helper-127).  Now they are given
    the container's bytes alone (its RIFF chunk, its boxes); here padded to 256 MiB.  A container
    larger than a photo's is refused, one line."""
    from helpers.memory import pad_to, peak_bytes
    from photo3d.depth.embedded import read_heif
    from photo3d.depth.maps import photo3d_kind

    if fmt != "webp":
        pytest.importorskip("pillow_heif").register_heif_opener()
    path = tmp_path / f"padded.{fmt}"
    Image.fromarray(photo_rgb(160, 120)).save(path)
    pad_to(path, 256 << 20)
    p, peak = peak_bytes(lambda: load_image(path))
    assert p.rgb.shape == (120, 160, 3) and peak < 64e6, f"{peak / 1e6:.0f} MB"
    kind, peak = peak_bytes(lambda: photo3d_kind(path))
    assert kind is None and peak < 64e6, f"{peak / 1e6:.0f} MB"
    if fmt == "heic":
        _, peak = peak_bytes(lambda: read_heif(path, 10**8))
        assert peak < 64e6, f"{peak / 1e6:.0f} MB"
    if fmt == "webp":  # the zeros inside its RIFF chunk, as a chunk of their own
        data = bytearray(path.read_bytes()[:64 << 10].rstrip(b"\0"))
        size = 300 << 20
        data[4:8] = (size - 8).to_bytes(4, "little")
        big = tmp_path / "big.webp"
        big.write_bytes(bytes(data) + b"JUNK" + (size - len(data) - 8).to_bytes(4, "little"))
        pad_to(big, size)
        with pytest.raises(InputFileError) as e:
            load_image(big)
        _one_line_about(e.value, big, "unsupported webp: 300 mib of image data, more than a photo holds")

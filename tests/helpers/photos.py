"""Test photos: a stand-in photo, and an album of good files of every awkward kind and bad files of
every kind (``make_album``; ``GOOD`` and ``BAD`` list them)."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from photo3d.io import HEIF_AVAILABLE


def photo_rgb(w: int = 200, h: int = 150, seed: int = 0, noise: int = 20) -> np.ndarray:
    """A smooth colour ramp with noise (a stand-in photo)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], axis=2).astype(np.uint8)
    return np.clip(rgb.astype(int) + rng.integers(-noise, noise, rgb.shape), 0, 255).astype(np.uint8)


def bomb_png(path: Path, w: int = 40000, h: int = 40000) -> None:
    """A tiny PNG whose header claims 1.6 gigapixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)  # 1-bit greyscale
    idat = zlib.compress(b"\0" * (w // 8 + 1) * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


GOOD = [
    "plain.jpg",
    "sub/sixteen bit.png",
    "sub/deeper/cmyk.jpg",
    "rotated.jpg",
    "grey.jpeg",
    "ünïcødé ñame 写真.JPG",
    "sub/scan.tiff",
    "web.webp",
    "old.bmp",
] + (["sub/phone.HEIC"] if HEIF_AVAILABLE else [])  # with photo3d[heif] (the test extra)
BAD = {
    "bad/truncated.jpg": "truncated",
    "bad/text.jpg": "not an image",
    "bad/empty.jpg": "empty",
    "bad/bomb.png": "too large",
    "bad/gone.jpg": "no such file (a broken symbolic link to ../nowhere/gone.jpg)",  # (was skipped without a word)
    "bad/pipe.jpg": "not an image (a named pipe, not a regular file)",  # (refused unread: no hang)
}


def make_album(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "bad").mkdir()
    rgb = photo_rgb()
    Image.fromarray(rgb).save(root / "plain.jpg", quality=90)
    g16 = (rgb[:, :, 0].astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(g16).save(root / "sub" / "sixteen bit.png")
    assert Image.open(root / "sub" / "sixteen bit.png").mode.startswith("I")
    Image.fromarray(rgb).convert("CMYK").save(root / "sub" / "deeper" / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    Image.fromarray(photo_rgb(200, 120, 1)).save(root / "rotated.jpg", exif=exif)
    Image.fromarray(rgb).convert("L").save(root / "grey.jpeg")
    Image.fromarray(photo_rgb(180, 160, 2)).save(root / "ünïcødé ñame 写真.JPG")
    Image.fromarray(rgb).save(root / "sub" / "scan.tiff")
    Image.fromarray(rgb).save(root / "web.webp")
    Image.fromarray(rgb).save(root / "old.bmp")
    if HEIF_AVAILABLE:
        Image.fromarray(rgb).save(root / "sub" / "phone.HEIC", format="HEIF")
    # bad files
    buf = io.BytesIO()
    Image.fromarray(photo_rgb(400, 300, 3)).save(buf, format="JPEG", quality=95)
    (root / "bad" / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    (root / "bad" / "text.jpg").write_text("this is not a photo\n")
    (root / "bad" / "empty.jpg").write_bytes(b"")
    bomb_png(root / "bad" / "bomb.png")
    os.symlink("../nowhere/gone.jpg", root / "bad" / "gone.jpg")  # a photo on a drive that is gone
    os.mkfifo(root / "bad" / "pipe.jpg")
    # ignored: hidden files and folders, non-images, a symlink loop
    Image.fromarray(rgb).save(root / ".hidden.jpg")
    (root / ".cache").mkdir()
    Image.fromarray(rgb).save(root / ".cache" / "thumb.jpg")
    (root / "notes.txt").write_text("not an image type\n")
    os.symlink("..", root / "sub" / "loop")
    return root


def photo(path: Path, w: int = 96, h: int = 72, seed: int = 0) -> Path:
    """Write a small stand-in photo to ``path`` (format from its suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo_rgb(w, h, seed, noise=15)).save(path)
    return path


def jpeg_12bit(path: Path, sof: int = 0xC1, w: int = 64, h: int = 48, bits: int = 12) -> Path:
    """A JPEG whose frame header says 12-bit samples (``sof`` 0xC1: extended sequential, 0xC3:
    lossless; 0xC5: hierarchical), the rest a baseline JPEG's: what a 12-bit camera or medical file
    looks like to a reader that stops at the header (Pillow reads 8-bit JPEGs only); ``bits``: another
    sample precision."""
    buf = io.BytesIO()
    Image.fromarray(photo_rgb(w, h)).save(buf, "JPEG", quality=90)
    data = bytearray(buf.getvalue())
    pos = 2  # walk the segments after SOI to the frame header (SOF0)
    while data[pos + 1] != 0xC0:
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    data[pos + 1], data[pos + 4] = sof, bits  # the marker, and the sample precision after the length
    path.write_bytes(bytes(data))
    return path


def jpeg_of_empty_scans(path: Path, scans: int, w: int = 64, h: int = 48) -> Path:
    """A grey progressive JPEG (flat mid-grey) of a DC scan and ``scans`` AC scans that hold only
    end-of-block codes: each scan a few bytes, each decoded over the whole image (thousands of them
    take libjpeg minutes at 100 MP)."""

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body

    def bits(codes: str) -> bytes:  # a scan's data: the codes, padded with 1s
        codes += "1" * (-len(codes) % 8)
        data = bytes(int(codes[i : i + 8], 2) for i in range(0, len(codes), 8))
        return data.replace(b"\xff", b"\xff\x00")

    blocks = ((w + 7) // 8) * ((h + 7) // 8)
    head = (b"\xff\xd8" + segment(0xDB, bytes([0] + [1] * 64))
            + segment(0xC2, bytes([8]) + h.to_bytes(2, "big") + w.to_bytes(2, "big") + bytes([1, 1, 0x11, 0]))
            + segment(0xC4, bytes([0x00, 1] + [0] * 15 + [0]))  # DC table: the one code "0", no difference
            + segment(0xC4, bytes([0x10, 0, 1] + [0] * 14 + [0x00])))  # AC table: the one code "00", end of block
    dc = segment(0xDA, bytes([1, 1, 0x00, 0, 0, 0])) + bits("0" * blocks)
    ac = segment(0xDA, bytes([1, 1, 0x00, 1, 63, 0])) + bits("00" * blocks)
    path.write_bytes(head + dc + ac * scans + b"\xff\xd9")
    return path


def lossless_jpeg(path: Path, rgb: np.ndarray) -> Path:
    """A lossless (SOF3) 8-bit JPEG of ``rgb`` (H x W x 3 uint8), written here byte by byte (no
    library writes one): predictor 1 (the pixel to the left; above at a row's start; 128 first),
    one Huffman table coding the differences' bit counts 0-8 in 4 bits each.  FFmpeg decodes it
    to ``rgb`` exactly."""
    h, w, comps = rgb.shape

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body

    ids = range(1, comps + 1)
    sof = bytes([8]) + h.to_bytes(2, "big") + w.to_bytes(2, "big") + bytes([comps]) + b"".join(bytes([i, 0x11, 0]) for i in ids)
    dht = bytes([0x00]) + bytes([0, 0, 0, 9] + [0] * 12) + bytes(range(9))  # DC table 0: 9 codes of 4 bits
    sos = bytes([comps]) + b"".join(bytes([i, 0x00]) for i in ids) + bytes([1, 0, 0])  # predictor 1, Se 0, Al 0
    x = rgb.astype(int)
    pred = np.empty_like(x)
    pred[:, 1:], pred[1:, 0], pred[0, 0] = x[:, :-1], x[:-1, 0], 128
    bits = []
    for d in (x - pred).reshape(-1):  # row by row, the components of a pixel in turn
        n = int(abs(d)).bit_length()
        bits += [(n >> k) & 1 for k in (3, 2, 1, 0)]
        v = d if d > 0 else d + (1 << n) - 1  # (a negative difference: its bits minus one)
        bits += [(v >> k) & 1 for k in range(n - 1, -1, -1)]
    bits += [1] * (-len(bits) % 8)
    scan = bytearray()
    for k in range(0, len(bits), 8):
        byte = int("".join(map(str, bits[k : k + 8])), 2)
        scan += bytes([0xFF, 0x00]) if byte == 0xFF else bytes([byte])  # (a 0xFF byte is stuffed)
    path.write_bytes(b"\xff\xd8" + segment(0xC3, sof) + segment(0xC4, dht) + segment(0xDA, sos) + bytes(scan) + b"\xff\xd9")
    return path

"""Share stage: a 3D photo (GLB bytes) -> a video along a camera path, or a stereo still.

- ``.mp4``: H.264, yuv420p, even dimensions, ``+faststart`` (plays in browsers and phones),
  encoded by the FFmpeg binary the ``imageio-ffmpeg`` wheel ships (no system package);
- ``.gif``: Pillow, one shared palette, no dithering (no crawling noise), unchanged pixels
  transparent (about 2 MB for 4 s of the example at 480 px instead of 12 MB);
- ``.webp``: Pillow, lossy animated WebP;
- GIF and WebP stay within ``ShareOptions.max_bytes`` (4 MB by default): :func:`fit_animation`;
- ``.jpg`` / ``.png``: a still, only with ``stereo``.

Frames have the photo's aspect ratio, up to ``defaults.MAX_ASPECT`` (21:9, or 9:21): of a panorama they
show the centre, at full height, rather than a 1080 x 134 sliver.

``stereo="sbs"`` puts the left and the right eye's frames side by side at full width (the frame
is twice as wide); ``"sbs-half"`` squeezes each eye to half the width (the frame keeps its
size; what 3D TVs expect).  The eyes are ``STEREO_EYE`` of the viewer's offset range left and
right of the path's camera, whose motion is scaled by ``1 - STEREO_EYE`` to stay in range: parallel
cameras, their images shifted to put the focus point at zero disparity (``render.View.eye``).

Frames are rendered (:mod:`photo3d.render`) while FFmpeg encodes the previous ones in its own
process, so the two cores both work.
"""

from __future__ import annotations

import math
import os
import re
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from . import defaults
from .errors import OutputError, UsageError, printable, stderr_console
from .io import atomic_output

VIDEO_SUFFIXES = (".mp4", ".gif", ".webp")
STILL_SUFFIXES = (".jpg", ".jpeg", ".png")
STEREO_MODES = ("sbs", "sbs-half")
STEREO_TAG = "photo3d-stereo"  # a stereo still's layout, in its PNG text / JPEG comment (see photo3d.depth.embedded)
VIDEO_TAG = "photo3d-video"  # in an animated WebP's XMP: a folder walk knows it as photo3d's, not a photo
# the options a video, GIF, WebP or still was made with (:func:`share_settings`), in its comment (GIF,
# JPEG, the MP4's "comment" tag), XMP (WebP) or text chunk (PNG): a resume that keeps it says when
# they are not this run's (:func:`photo3d.pipeline.kept_note`)
SHARE_TAG = "photo3d-share"
RECORD_ANIMATION_BYTES = 64 << 20  # a kept WebP or GIF larger than this (photo3d's keep within 4 MB) is not opened for its record
_SETTING_KEY, _SETTING_VALUE = re.compile(r"[a-z]{1,16}"), re.compile(r"[A-Za-z0-9.+-]{1,24}")


def share_settings(opts: ShareOptions, suffix: str, parallax: float | None = None) -> dict[str, str]:
    """The options that made a video, GIF, WebP (``suffix``) or stereo still, as asked (``--size``
    unset: "auto"), and the ``parallax`` of the 3D photo it shows: ``{"size": "auto", "stereo": "sbs"}``
    (written into the file as ``size=auto stereo=sbs``)."""
    still = suffix in STILL_SUFFIXES
    fps = min(opts.fps, MAX_FPS.get(suffix, math.inf))  # (what the file plays at: a GIF asked for 120 fps plays 50)
    said = {} if still else {"path": opts.path, "seconds": f"{opts.seconds:g}", "fps": f"{fps:g}"}
    said.update(size=str(opts.size or "auto"), stereo=opts.stereo or "none")
    if parallax is not None:
        said["parallax"] = f"{parallax:g}"
    return said


def recorded_settings(path: str | Path) -> dict[str, str] | None:
    """What :func:`share_settings` wrote into the video, GIF, WebP or still at ``path`` (None: nothing,
    or no file photo3d wrote)."""
    import warnings

    from PIL import Image

    path = Path(path)
    try:
        if path.suffix.lower() == ".mp4":
            text = _mp4_comment(path)
        elif path.suffix.lower() in (".webp", ".gif") and path.stat().st_size > RECORD_ANIMATION_BYTES:
            text = None  # (Pillow reads an animated WebP whole to open it, a GIF's blocks byte by byte)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(path) as im:
                    info = im.info
            if im.format == "PNG":
                text = info.get(SHARE_TAG)
            elif im.format == "WEBP":
                m = re.search(rf"{SHARE_TAG} ([^<]*)", bytes(info.get("xmp") or b"").decode("latin-1"))
                text = m.group(1) if m else None
            else:  # GIF: "photo3d-share SETTINGS"; JPEG: a line "photo3d-share=SETTINGS"
                comment = info.get("comment")
                lines = comment.decode("latin-1").split("\n") if isinstance(comment, bytes) else []
                text = next((ln[len(SHARE_TAG) + 1:] for ln in lines if ln.startswith(SHARE_TAG)), None)
    except Exception:  # noqa: BLE001 - a file that cannot be read records nothing (it fails where it is used)
        return None
    if not text:
        return None
    # only words photo3d writes: the values go into a warning line (a file's comment is anyone's to write:
    # escape codes or markup in it are not passed to the terminal)
    said = dict(kv.split("=", 1) for kv in text.split()[:16] if "=" in kv)
    return {k: v for k, v in said.items() if _SETTING_KEY.fullmatch(k) and _SETTING_VALUE.fullmatch(v)} or None


def _mp4_comment(path: Path, limit: int = 16 << 20) -> str | None:
    """The MP4's "comment" tag (moov/udta/meta/ilst/©cmt/data, as FFmpeg writes it) when it is
    photo3d's, read from the ``moov`` box (at the front: ``+faststart``) of at most ``limit`` bytes."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        at = 0
        while at + 8 <= size:
            f.seek(at)
            head = f.read(8)
            n, kind = int.from_bytes(head[:4], "big"), head[4:]
            if n == 1:
                n = int.from_bytes(f.read(8), "big")
            if n < 8:
                return None
            if kind == b"moov":
                if n > limit:
                    return None
                box = f.read(n - 8)
                i = box.find(b"\xa9cmt")
                if i < 0 or box[i + 8 : i + 12] != b"data":
                    return None
                end = i + 4 + int.from_bytes(box[i + 4 : i + 8], "big")
                text = box[i + 20 : end].decode("utf-8", "replace")
                return text[len(SHARE_TAG) + 1:] if text.startswith(SHARE_TAG + " ") else None
            at += n
    return None


def stereo_layout_of(fmt: str | None, info: dict) -> str | None:
    """The layout ("sbs" / "sbs-half") that photo3d wrote into its own stereo still, from the open
    image's format and text chunks (PNG) or comment (JPEG); None for any other image."""
    value = info.get(STEREO_TAG) if fmt == "PNG" else None
    if value is None and isinstance(info.get("comment"), bytes):  # (its first line: the settings follow)
        key, _, value = info["comment"].decode("latin-1").split("\n")[0].partition("=")
        value = value if key == STEREO_TAG else None
    return value if value in STEREO_MODES else None
STEREO_EYE = 0.3  # each eye's offset (unit disc): left/right disparity ~ 0.6 x the full parallax
VIDEO_SIDE, SMALL_SIDE = 1080, 480  # default longer side: MP4 (and stills); GIF and WebP
ZOOM_NOTE = 1.25  # a video, still or page zoomed more than this (a high --parallax) says so in its result line


def zoom_note(zoom: float) -> str | None:
    """What a result line says of a view zoomed ``zoom`` times to keep the parallax inside the photo."""
    if zoom <= ZOOM_NOTE:
        return None
    return f"zoomed {zoom:.2f}x: the parallax never shows beyond the photo's border; a smaller --parallax zooms less"
MAX_ASPECT_TEXT = {True: "21:9", False: "9:21"}  # defaults.MAX_ASPECT for the result line: a wide photo, a tall one
MP4_CRF = 20
# the MP4's colours: RGB -> YUV with the BT.709 matrix, limited range, and the stream says so (and
# that the frames are sRGB); FFmpeg's default is BT.601 without a word, which browsers and players
# read as BT.709 at HD sizes (Chromium showed red 220, 30, 30 as 236, 49, 31)
MP4_COLOUR = ["-vf", "scale=out_color_matrix=bt709:out_range=tv,"
              "setparams=range=tv:color_primaries=bt709:color_trc=iec61966-2-1:colorspace=bt709"]
GIF_SAME = 24  # sum of |RGB| differences under which a GIF pixel keeps the previous frame's colour
GIF_MAX_FPS = 50  # a GIF frame lasts whole 1/100 s, at least 2 (browsers slow shorter ones to 1/10 s)
# browsers slow a WebP frame of 10 ms or less to 100 ms too (a 120 fps loop of 1 s played for ~11 s,
# helper-81): at most 90 fps, every frame 11 ms or more
WEBP_MAX_FPS = 90
MAX_FPS = {".gif": GIF_MAX_FPS, ".webp": WEBP_MAX_FPS}
GIF_COLOURS, WEBP_QUALITY = 255, 80  # (index 255 of the GIF's palette is the transparent one)
# over the size budget (ShareOptions.max_bytes), GIF / WebP give up (see fit_animation):
BUDGET_MIN_FPS = 12  # frame rate, halved while it stays at least this,
BUDGET_COLOURS, BUDGET_QUALITY = 128, 60  # then colours (WebP: quality) down to this, then size
# GIF / WebP hold all their frames in memory (one palette, the size budget), the encoders ~1.6x more:
# larger frames are rendered smaller (--size 8192 -o x.gif: 120 frames of 8192x6144 are 18 GB)
ANIMATION_MAX_BYTES = 500_000_000
# ... and their encoders need ~60 B a pixel of one frame besides (palette, dithering, the GIF's
# frame differences; measured 56-64 B): a short loop's few frames are capped too (two frames of
# 15812x5270, --seconds 0.05 --stereo sbs --size 8192, took 5.3 GB as a GIF, 3.5 GB as a WebP)
ANIMATION_ENCODER_BYTES = 60
ANIMATION_FRAME_MAX_BYTES = 1_000_000_000  # one frame's encoding: ~16.7 MP
# a WebP image is at most 16383 px a side (the format's 14-bit sizes): larger frames (--stereo sbs
# --size 8192: 16384 px wide) are rendered smaller; the encoder failed ('encoding error 5')
WEBP_MAX_SIDE = 16383
# H.264's largest level (6.2) allows frames of at most 139,264 macroblocks of 16x16 px (8192x4352);
# libx264 writes larger ones (marked 6.2) without a word: FFmpeg decodes them, hardware decoders
# (phones, TVs, headsets) may not. An MP4 keeps the size asked; the result line says so, and which
# --size keeps within (--size 8192: 8192x5460, --stereo sbs 16384x5460)
H264_MAX_MACROBLOCKS = 139_264
# The renderer's buffers (per frame in flight: depth, texture coordinates, the remapped colours;
# RENDER_SAMPLE_BYTES per sample, 2x2 samples per pixel) over RENDER_MAX_BYTES: one sample per
# pixel, then one frame at a time (MP4 and stills keep the size asked; --size 8192 with 2x2 samples
# on two threads needed 5.7 GB of buffers at 8192x5460, the job peaked at 5.8-6.6 GB; README --size)
RENDER_MAX_BYTES = 1_500_000_000
RENDER_SAMPLE_BYTES = 16
RENDER_THREADS = 2
# libx264 encodes several frames at once, one per thread (its own count: 1.5 x the CPUs), each
# holding about MP4_THREAD_BYTES per pixel (FFmpeg's peak at 8192x5460: 3.2 GB on 1 thread,
# 4.6 GB on 6): so the memory grew with the machine's CPUs (--stereo sbs --size 8192, 16384x5460:
# 5.7 GB on 1 thread, 6.7 GB on 3, 10.3 GB on 12 = an 8-CPU laptop's).  Frames that large get
# fewer threads, as many as MP4_THREADS_MAX_BYTES takes (at least 1); smaller ones keep x264's count
MP4_THREAD_BYTES = 6
MP4_THREADS_MAX_BYTES = 1_000_000_000
# FFmpeg's libx264 (veryfast) holds ~15-18 frames at once (look-ahead, B-frames, references, each
# with its half-pel planes): FFmpeg took 8.2-8.8 GB for 30 frames of 16384x5460 (--stereo sbs
# --size 8192), 91-98 bytes a pixel, beside the renderer's 2.7 GB: the out-of-memory killer ended a
# laptop's job.  An MP4 whose encoder and renderer would need more than the memory available is not
# started (one line, and the --size that fits); this is a low estimate, so only what clearly cannot fit
MP4_ENCODER_BYTES = 80
MP4_ENCODER_BASE = 50_000_000  # (FFmpeg and libx264 themselves)


@dataclass
class ShareOptions:
    path: str = defaults.VIDEO_PATH  # camera path: circle | swing | zoom | dolly-zoom
    seconds: float = defaults.VIDEO_SECONDS
    fps: float = defaults.VIDEO_FPS
    size: int | None = None  # longer side; None = 1080 (MP4, stills) or 480 (GIF, WebP), or the photo's if smaller
    stereo: str | None = None  # None | "sbs" | "sbs-half"
    supersample: int = 2  # anti-aliasing: samples per pixel along each axis
    progress: bool = False  # a progress bar on stderr (when it is a terminal)
    max_bytes: int | None = defaults.SHARE_MAX_BYTES  # GIF / WebP size budget (None: none); see fit_animation

    def frames(self) -> int:
        return frame_count(self.seconds, self.fps)


def frame_count(seconds: float, fps: float) -> int:
    """The whole frames of a loop of ``seconds`` at ``fps``, a half rounded up (Python's round() made
    2.5 frames 2 and 3.5 frames 4, helper-100)."""
    return max(1, math.floor(seconds * fps + 0.5))


def play_fps(suffix: str, fps: float) -> float:
    """The rate a ``suffix`` output is rendered at: ``fps``, or the format's most (``MAX_FPS``)."""
    return min(fps, MAX_FPS.get(suffix.lower(), math.inf))


def check(dst: Path, opts: ShareOptions) -> None:
    """Refuse impossible requests before any work (one-line errors)."""
    suffix = dst.suffix.lower()
    if suffix not in VIDEO_SUFFIXES + STILL_SUFFIXES:
        raise UsageError(f"unknown output format {suffix or '(none)'!r} (.glb, .html, .mp4, .gif, .webp; .jpg/.png with --stereo)", dst)
    if suffix in STILL_SUFFIXES and not opts.stereo:
        raise UsageError("a still image output needs --stereo sbs (or sbs-half)", dst)
    check_share(opts)
    check_frames(suffix, opts, moving=False)


def check_frames(suffix: str, opts: ShareOptions, moving: bool = True) -> None:
    """A video of one frame does not move: the command refuses it before any work (``--seconds 0.5
    --fps 1`` wrote a still MP4, GIF or WebP and said ``1 frame(s)``).  A still takes one frame
    whatever the options.  (:func:`write_share` itself still writes one frame when asked:
    ``moving=False``.)  Nor more than ``MAX_FRAMES``, counted at the rate the format is rendered at
    (a GIF asked for at 120 fps plays at 50: it was refused for the 120's count)."""
    if suffix.lower() not in VIDEO_SUFFIXES:
        return
    fps = play_fps(suffix, opts.fps)
    at = f"--fps {opts.fps:g}" + (f" ({suffix.lower()} plays at most {fps:g})" if fps != opts.fps else "")
    if (n := frame_count(opts.seconds, fps)) > MAX_FRAMES:
        raise UsageError(f"--seconds {opts.seconds:g} at {at} make {n:,} frames; "
                         f"at most {MAX_FRAMES:,} (a loop of {MAX_FRAMES / fps:g} s at this rate)")
    if moving and n < 2:
        raise UsageError(f"--seconds {opts.seconds:g} at {at} make 1 frame: a video needs at least 2 "
                         f"(--seconds x --fps of 1.5 or more)")


MAX_FRAMES = 100_000  # (over 55 minutes at 30 fps: more is a typo, not a loop to share)


def check_share(opts: ShareOptions) -> None:
    from .render import PATHS

    if opts.stereo is not None and opts.stereo not in STEREO_MODES:
        raise UsageError(f"--stereo must be {' or '.join(STEREO_MODES)}, not {opts.stereo!r}")
    if opts.path not in PATHS:
        raise UsageError(f"--path must be one of {', '.join(PATHS)}, not {opts.path!r}")
    if not all(math.isfinite(v) and v > 0 for v in (opts.seconds, opts.fps)):
        raise UsageError("--seconds and --fps must be finite positive numbers")
    if not math.isfinite(n := opts.seconds * opts.fps) or n > 1e9:  # (2e306 s at 100 fps: inf, not a count;
        # a count the format's rate brings under MAX_FRAMES is judged by check_frames, which knows the format)
        raise UsageError(f"--seconds {opts.seconds:g} at --fps {opts.fps:g} make {n:.3g} frames; "
                         f"at most {MAX_FRAMES:,} (a loop of {MAX_FRAMES / opts.fps:g} s at this --fps)")
    lo, hi = defaults.VIDEO_SIZE_RANGE
    if opts.size is not None and not lo <= opts.size <= hi:
        raise UsageError(f"--size must be a whole number from {lo} to {hi} (pixels), not {opts.size}")


def default_side(suffix: str) -> int:
    return SMALL_SIDE if suffix.lower() in (".gif", ".webp") else VIDEO_SIDE


def _eyes(view, stereo: str | None):
    from .render import View

    if not stereo:
        return [view]
    s = 1.0 - STEREO_EYE
    return [View(view.x * s, view.y * s, view.forward, view.fov_scale, eye=e) for e in (-STEREO_EYE, STEREO_EYE)]


def _compose(eyes: list[np.ndarray], stereo: str | None) -> np.ndarray:
    if not stereo:
        return eyes[0]
    import cv2

    if stereo == "sbs-half":
        h, w = eyes[0].shape[:2]
        eyes = [cv2.resize(e, (w // 2, h), interpolation=cv2.INTER_AREA) for e in eyes]
    return np.ascontiguousarray(np.concatenate(eyes, axis=1))


def centre_part(w: int, h: int) -> str | None:
    """What frames (and the viewer page) show of a ``w`` x ``h`` panorama: its centre at 21:9
    (:data:`photo3d.defaults.MAX_ASPECT`; a tall photo's 9:21), said on the result line; None for any other photo."""
    from .render import shown_size

    sw, sh = shown_size((w, h), defaults.MAX_ASPECT)
    return f"the centre {MAX_ASPECT_TEXT[w > h]} of the {w}x{h} photo" if round(sw) < w or round(sh) < h else None


def output_side(photo_size: tuple[int, int], suffix: str, size: int | None) -> tuple[int, str | None]:
    """The frames' longer side (one eye's) for a ``photo_size`` = (width, height) photo, and a note
    for the result line when it is not the usual one: by default a smaller photo is not upscaled
    (its own size, made even); an explicit ``--size`` larger than the photo is what it asks, said
    as an upscale.  A panorama's frames show its centre at 21:9 (:data:`photo3d.defaults.MAX_ASPECT`): said too."""
    from .render import shown_size

    w, h = (int(round(v)) for v in photo_size)
    sw, sh = shown_size((w, h), defaults.MAX_ASPECT)
    shown = round(max(sw, sh))
    part = centre_part(w, h)
    if size is not None:
        if size > shown:
            return size, f"upscaled: {part} is {round(sw)}x{round(sh)} px" if part else f"upscaled: the photo is {shown} px"
        return size, part
    side = default_side(suffix)
    if shown < side:
        return shown, (f"{part}, at its own size, not upscaled to {side} px" if part
                       else f"the photo's own size, not upscaled to {side} px")
    return side, part


def _upscale_undone(notes: list[str], glb: bytes, side: float) -> list[str]:
    """The notes of an animation the size budget shrank to a longer side of ``side`` px: "upscaled"
    goes when that is no more than the photo's own (``--size 768`` of a 500-px photo ended at 477 px,
    said "upscaled: the photo is 500 px"); a panorama's note of the part shown stays."""
    from .export import read_glb
    from .render import shown_size

    try:
        w, h = (int(round(v)) for v in read_glb(glb)[0]["extras"]["photo3d"]["source_size"])
    except (KeyError, TypeError, ValueError):
        return notes
    if round(side) > round(max(shown_size((w, h), defaults.MAX_ASPECT))):
        return notes
    part = centre_part(w, h)
    return [(part if n.startswith("upscaled") else n) for n in notes if part or not n.startswith("upscaled")]


def render_frames(glb: bytes, suffix: str, opts: ShareOptions, timings: dict | None = None) -> tuple[Iterator[np.ndarray], int, tuple[int, int], list[str]]:
    """(frames, count, (width, height), notes) of the share output; frames are rendered lazily."""
    from .render import Renderer, cover_zoom, dolly_zoom_extra, frame_size, path_views, scene_from_glb

    scene = scene_from_glb(glb)
    side, note = output_side(scene.meta["source_size"], suffix, opts.size)
    notes = [note] if note else []

    def frame(side: int) -> tuple[int, int, int]:  # (one eye's width, height, the frame's width)
        w, h = frame_size(scene, side, max_aspect=defaults.MAX_ASPECT)
        if opts.stereo == "sbs-half":
            w = max(4, w - w % 4)  # each eye gets an even half (2 px of a 1- or 2-px wide photo, not 0)
        return w, h, w * (2 if opts.stereo == "sbs" else 1)

    at = side  # the longer side rendered (one eye's)
    w, h, out_w = frame(at)
    still = suffix.lower() in STILL_SUFFIXES
    views = path_views(opts.path, 1 if still else opts.frames(), scene.meta)
    held, encoding = len(views) * out_w * h * 3, out_w * h * ANIMATION_ENCODER_BYTES
    frames_room = ANIMATION_MAX_BYTES / held  # (under 1: the frames must shrink by that much in pixels)
    room = min(frames_room, ANIMATION_FRAME_MAX_BYTES / encoding)
    if suffix.lower() in (".gif", ".webp") and room < 1:
        w0, h0 = out_w, h
        by_frames = frames_room == room
        at = max(16, int(side * room ** 0.5))
        w, h, out_w = frame(at)
        notes.append(f"rendered at {out_w}x{h}: {len(views)} frames of {w0}x{h0} would take {_amount(held)} of memory"
                     if by_frames else
                     f"rendered at {out_w}x{h}: encoding frames of {w0}x{h0} would take about {_amount(encoding)} of memory")
    if suffix.lower() == ".webp" and max(out_w, h) > WEBP_MAX_SIDE:
        w0, h0 = out_w, h
        at = at * WEBP_MAX_SIDE // max(out_w, h)
        while at > 16 and max(frame(at)[1:]) > WEBP_MAX_SIDE:  # (frame_size rounds)
            at -= 2
        w, h, out_w = frame(at)
        notes.append(f"rendered at {out_w}x{h}: a WebP frame is at most {WEBP_MAX_SIDE} px a side, not {w0}x{h0}")
    if suffix.lower() == ".mp4" and _macroblocks(out_w, h) > H264_MAX_MACROBLOCKS:
        fit = min(at, int(at * (H264_MAX_MACROBLOCKS / _macroblocks(out_w, h)) ** 0.5) + 16) // 2 * 2
        while fit > 16:  # the largest that fits
            _, fit_h, fit_w = frame(fit)
            if _macroblocks(fit_w, fit_h) <= H264_MAX_MACROBLOCKS:
                break
            fit -= 2
        notes.append(f"{out_w}x{h} is beyond H.264's largest level (6.2: {H264_MAX_MACROBLOCKS:,} macroblocks, "
                     f"e.g. 8192x4352): players that decode in hardware may refuse it; --size {fit} keeps within")
    zoom = dolly_zoom_extra(scene) if opts.path == "dolly-zoom" and not still else 1.0
    panorama = centre_part(*(int(v) for v in scene.meta["source_size"])) is not None  # (its own note says what is shown)
    if not panorama and (note := zoom_note(cover_zoom(scene.meta) * zoom)):  # (frame 0: the photo's middle, not all of it)
        notes.append(note)
    eyes = [e for v in views for e in _eyes(v, opts.stereo)]
    n = 2 if opts.stereo else 1
    parallel = min(RENDER_THREADS, len(eyes))
    ss, threads = render_budget(w, h, opts.supersample, parallel)
    if ss < opts.supersample:  # (the result line says so, as it says a GIF's smaller frames)
        need = render_bytes(w, h, opts.supersample, parallel)
        one = "" if threads == parallel else ", one eye at a time" if still else ", one frame at a time"
        notes.append(f"rendered with 1 sample per pixel{one}: {opts.supersample}x{opts.supersample} samples "
                     f"at {w}x{h} would take {_amount(need)} of memory")
    renderer = Renderer(scene, w, h, supersample=ss, zoom=zoom)

    def gen() -> Iterator[np.ndarray]:
        t = time.perf_counter()
        rendered = renderer.frames(eyes, threads=threads)
        for _ in views:
            frame = _compose([next(rendered) for _ in range(n)], opts.stereo)
            if timings is not None:  # time spent waiting for frames (the encoder works meanwhile)
                timings["render"] = timings.get("render", 0.0) + time.perf_counter() - t
            yield frame
            t = time.perf_counter()

    return gen(), len(views), (out_w, h), notes


def _macroblocks(w: int, h: int) -> int:
    return -(-w // 16) * -(-h // 16)


def _amount(nbytes: int) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.0f} MB"


def render_budget(w: int, h: int, supersample: int, threads: int) -> tuple[int, int]:
    """(samples per pixel along each axis, frames rendered at once) for frames of ``w`` x ``h``
    within :data:`RENDER_MAX_BYTES`: the asked ``supersample`` and ``threads`` when they fit, else
    one sample per pixel (at such sizes a pixel is small), else also one frame at a time.  The size
    stays: at most 8192 x 8192 (--size's limit) on one thread is 1.1 GB."""
    if render_bytes(w, h, supersample, threads) <= RENDER_MAX_BYTES:
        return supersample, threads
    return 1, (threads if render_bytes(w, h, 1, threads) <= RENDER_MAX_BYTES else 1)


def render_bytes(w: int, h: int, supersample: int, threads: int) -> int:
    """The renderer's buffers for ``threads`` frames of ``w`` x ``h`` in flight at ``supersample`` x
    ``supersample`` samples per pixel."""
    return threads * w * h * supersample * supersample * RENDER_SAMPLE_BYTES


def _progress(total: int, enabled: bool, label: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = stderr_console()  # (the batch's: this bar shows below its spinner)
    return Progress(TextColumn(label, markup=False), BarColumn(),  # (plain text: no markup, no :emoji:)
                    MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                    transient=True, disable=not (enabled and console.is_terminal))


def write_share(dst: str | Path, glb: bytes, opts: ShareOptions, timings: dict | None = None) -> dict:
    """Render the 3D photo ``glb`` and write ``dst`` (.mp4, .gif, .webp, or a stereo .jpg/.png)
    atomically.  Returns a report (frames, size, bytes)."""
    from .export import built_parallax, read_glb

    dst = Path(dst)
    check(dst, opts)
    suffix = dst.suffix.lower()
    timings = timings if timings is not None else {}
    asked = opts.fps
    if opts.fps > MAX_FPS.get(suffix, math.inf):  # (a GIF at 120 fps: a 1 s loop lasted 2.4 s)
        opts = replace(opts, fps=MAX_FPS[suffix])
    frames, count, (w, h), notes = render_frames(glb, suffix, opts, timings)
    if suffix == ".mp4":
        _check_mp4_memory(dst, w, h, opts)
    if opts.fps != asked:
        why = (f"a GIF frame lasts at least 1/{GIF_MAX_FPS} s" if suffix == ".gif" else
               "browsers slow WebP frames of 10 ms or less to 100 ms")
        notes.insert(0, f"{asked:g} → {opts.fps:g} fps: {why}")
    # (a name's escape codes, rich markup and :emoji: codes shown as text, as on the batch's bar)
    with _progress(count, opts.progress and count > 1, f"rendering {printable(dst.name)}") as bar:
        task = bar.add_task("render", total=count)

        def ticking() -> Iterator[np.ndarray]:
            for f in frames:
                yield f
                bar.advance(task)

        t0 = time.perf_counter()
        report = {"frames": count, "size": [w, h], "fps": opts.fps}
        with atomic_output(dst) as tmp:
            said = share_settings(opts, suffix, built_parallax(read_glb(glb)[0]))
            note = " ".join(f"{k}={v}" for k, v in said.items())
            if suffix == ".mp4":
                _write_mp4(tmp, ticking(), (w, h), opts.fps, opts.stereo, note=note)
            elif suffix in (".gif", ".webp"):
                data, report = fit_animation(list(ticking()), suffix, opts.fps, opts.max_bytes, opts.stereo, note=note)
                tmp.write_bytes(data)
                if 0 < (held := _frames_held(data)) < report["frames"]:
                    by = "libwebp merges" if suffix == ".webp" else "Pillow's GIF writer merges"
                    notes.append(f"the file holds {held}: {by} identical neighbouring frames into longer ones")
                if report["reduced"]:
                    notes.append(f"reduced to fit {opts.max_bytes / 1e6:g} MB: {', '.join(report['reduced'])}")
                if report["size"][0] < w and opts.size and any(n.startswith("upscaled") for n in notes):
                    notes = _upscale_undone(notes, glb, opts.size * report["size"][0] / w)
            else:
                _write_still(tmp, next(ticking()), suffix, opts.stereo, note=note)
    timings["encode"] = max(0.0, time.perf_counter() - t0 - timings.get("render", 0.0))
    return {**report, "bytes": dst.stat().st_size, "path": opts.path, "stereo": opts.stereo, "notes": notes,
            "still": suffix in STILL_SUFFIXES}


def memory_available() -> int | None:
    """Bytes of memory this process can still take: the system's available memory and free swap
    (/proc/meminfo), within its cgroup's limit (a container's); None where the system does not say."""
    try:
        info = {k: int(v.split()[0]) * 1024 for k, v in
                (ln.split(":", 1) for ln in Path("/proc/meminfo").read_text().splitlines() if ":" in ln)}
        free = info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, KeyError, ValueError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            free = min(free, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(0, free)


def mp4_memory(w: int, h: int, opts: ShareOptions) -> int:
    """What an MP4 of ``w`` x ``h`` frames takes beyond the process as it is: FFmpeg's encoder
    (:data:`MP4_ENCODER_BYTES` a pixel, and its own MP4_ENCODER_BASE) and the renderer's buffers (within RENDER_MAX_BYTES)."""
    eye_w = w // 2 if opts.stereo == "sbs" else w
    return MP4_ENCODER_BASE + w * h * MP4_ENCODER_BYTES + min(RENDER_MAX_BYTES, render_bytes(eye_w, h, opts.supersample, RENDER_THREADS))


def _check_mp4_memory(dst: Path, w: int, h: int, opts: ShareOptions) -> None:
    """Refuse, before any frame, an MP4 that needs more memory than there is: the out-of-memory
    killer would end it (and its batch) after minutes of work.  Says which --size fits."""
    need, free = mp4_memory(w, h, opts), memory_available()
    if free is None or need <= free:
        return
    side = max(w // 2 if opts.stereo == "sbs" else w, h)
    fit = int(side * (free / need) ** 0.5) // 2 * 2
    while fit >= defaults.VIDEO_SIZE_RANGE[0] and mp4_memory(-(-w * fit // side), -(-h * fit // side), opts) > free:
        fit -= 2  # (the frames' sides scale with --size; the renderer's part does not quite)
    hint = f"--size {fit} fits" if fit >= defaults.VIDEO_SIZE_RANGE[0] else "free some memory"
    raise OutputError(f"not written: {w}x{h} frames need about {_amount(need)} of memory to encode, "
                      f"{_amount(free)} is available; {hint}", dst)


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg
    except ImportError as e:  # pragma: no cover - a dependency
        raise UsageError("MP4 output needs the imageio-ffmpeg package (pip install imageio-ffmpeg)") from e
    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_rate(fps: float) -> str:
    """``fps`` as FFmpeg's exact rational: the NTSC rates typed as 23.976, 29.97, 59.94 ... are
    24000/1001, 30000/1001, ...; others as typed (``f"{fps:.2f}"`` made 23.976 a rate of 23.98)."""
    from fractions import Fraction

    for base in (24, 30, 48, 60, 120):
        if abs(fps - base * 1000 / 1001) < 0.0015:
            return f"{base * 1000}/1001"
    rate = Fraction(fps).limit_denominator(1000)
    return f"{rate.numerator}/{rate.denominator}"


def _write_mp4(path: Path, frames: Iterator[np.ndarray], size: tuple[int, int], fps: float,
               stereo: str | None = None, note: str = "") -> None:
    """Encode ``frames`` (RGB uint8, ``size`` = (w, h)) to H.264 in ``path`` with FFmpeg, fed raw
    frames on its stdin.  FFmpeg's exit code is checked: when it cannot write (a full disk) this
    raises an OSError with FFmpeg's reason (``atomic_output`` makes it the output's one line), and its messages are not shown.  Interrupted
    (Ctrl-C) or failed while rendering: FFmpeg is killed at once (in its own process group, the
    terminal's Ctrl-C is not its to see), silently.  A ``stereo`` video says it is side by side in
    its stream (H.264's frame-packing SEI, type 3, which 3D TVs and players read); without it, it was
    a wide flat video to them (helper-81)."""
    import subprocess
    import tempfile

    w, h = size
    threads = mp4_threads(w, h)
    cmd = [ffmpeg_exe(), "-y", "-v", "error", "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{w}x{h}",
           "-pix_fmt", "rgb24", "-r", ffmpeg_rate(fps), "-i", "-", "-an", *MP4_COLOUR, "-vcodec", "libx264", "-pix_fmt", "yuv420p",
           *(["-x264-params", "frame-packing=3"] if stereo else []),
           "-crf", str(MP4_CRF), "-preset", "veryfast", *(["-threads", str(threads)] if threads else []),
           *(["-metadata", f"comment={SHARE_TAG} {note}"] if note else []),
           "-movflags", "+faststart", "-f", "mp4", str(path)]
    with tempfile.TemporaryFile() as log:
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        try:
            try:
                for f in frames:
                    p.stdin.write(np.ascontiguousarray(f, dtype=np.uint8).data)
                p.stdin.close()
            except BrokenPipeError:  # FFmpeg stopped early: its exit code and log say why
                try:
                    p.stdin.close()
                except OSError:
                    pass
            code = p.wait()
        except BaseException:
            p.kill()
            p.wait()
            raise
        if code != 0:  # (atomic_output names the output: "OUT: cannot write (FFmpeg: ...)")
            log.seek(0)
            said = [ln.strip() for ln in log.read(65536).decode("utf-8", "replace").splitlines() if ln.strip()]
            if said:  # its last word, without the "[out#0/mp4 @ 0x...]" prefix
                reason = re.sub(r"^(\[[^\]]*\]\s*)+", "", said[-1])
            else:
                reason = (signal.strsignal(-code) or f"signal {-code}") if code < 0 else f"exit code {code}"
            raise OSError(f"FFmpeg: {reason.rstrip('.')}")


def mp4_threads(w: int, h: int) -> int | None:
    """libx264's threads for frames of ``w`` x ``h``: None (its own count, 1.5 x the CPUs) when that
    many fit in :data:`MP4_THREADS_MAX_BYTES`, else as many as fit, at least 1 (see MP4_THREAD_BYTES)."""
    from .batch.local import available_cpus

    fit = max(1, MP4_THREADS_MAX_BYTES // (w * h * MP4_THREAD_BYTES))
    return None if fit >= available_cpus() * 3 // 2 else fit


def frame_delays(count: int, fps: float, unit_ms: int, min_units: int = 1, starts: list[int] | None = None,
                 total: int | None = None) -> list[int]:
    """Per-frame delays in ms, whole multiples of ``unit_ms`` (GIF: 10, WebP: 1), that add up to the
    loop's length (``count / fps``), each at least ``min_units`` units: 30 fps in 1/100 s is 30,
    30, 40 ms, ...; in ms 33, 33, 34, ... (one fixed 33 ms made a 4 s loop 3.96 s, 8 ms at 120 fps 3.84 s).
    ``starts``: the frames are these of a loop of ``total`` rendered at ``fps`` (every other one
    of an odd count: the last lasts half as long, so the loop stays even and as long)."""
    if starts is None:
        starts, total = list(range(count)), count
    stops = [*starts[1:], total]
    ends = [max(min_units * (i + 1), round(e * 1000.0 / fps / unit_ms)) for i, e in enumerate(stops)]
    return [unit_ms * (e - b) for b, e in zip([0] + ends[:-1], ends)]


def _encode_webp(frames: list[np.ndarray], fps: float, quality: int, starts: list[int] | None = None,
                 total: int | None = None, note: str = "") -> bytes:
    import io

    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="WEBP", save_all=True, append_images=images[1:], duration=frame_delays(len(images), fps, 1, 11, starts, total), loop=0,
                   quality=quality, method=4, xmp=f'<x:xmpmeta xmlns:x="adobe:ns:meta/">{VIDEO_TAG}{f" {SHARE_TAG} {note}" if note else ""}</x:xmpmeta>'.encode())
    return buf.getvalue()


def _frames_held(data: bytes) -> int:
    """Frames an animated WebP or GIF holds (libwebp, and Pillow's GIF writer, merge a frame identical
    to the one before into that one, its delay added: 30 rendered can be 28 in the file, the loop as
    long; a flat photo's 15 GIF frames were 2, the line said 15: a new-user trial)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return getattr(im, "n_frames", 1)


def _encode_gif(frames: list[np.ndarray], fps: float, colours: int, starts: list[int] | None = None,
                total: int | None = None, note: str = "") -> bytes:
    import io

    from PIL import Image

    # one palette for all frames (_gif_palette), no dithering;
    # a pixel whose colour stays within GIF_SAME of what is on screen becomes transparent
    # (frames are not disposed): long transparent runs compress well; which colour stays on
    # screen, so that the loop's wrap is a step like any other: _gif_screens.
    pal = _gif_palette(np.concatenate(frames[:: max(1, len(frames) // 8)], axis=0), colours)
    palette = np.array(pal.getpalette()[:768], np.int16).reshape(-1, 3)
    palette = np.concatenate([palette, np.zeros((256 - len(palette), 3), np.int16)])
    quantized = [np.asarray(Image.fromarray(f).quantize(palette=pal, dither=Image.Dither.NONE)) for f in frames]
    images, screen = [], None
    for shown in _gif_screens(quantized, palette):
        out = shown if screen is None else np.where(shown == screen, np.uint8(255), shown)
        screen = shown
        im = Image.frombytes("P", (out.shape[1], out.shape[0]), np.ascontiguousarray(out, np.uint8).tobytes())
        im.putpalette(pal.getpalette()[:768])
        images.append(im)
    buf = io.BytesIO()  # (delays of at least 2/100 s: browsers slow down shorter ones)
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=frame_delays(len(images), fps, 10, 2, starts, total),
                   loop=0, optimize=False, disposal=1, transparency=255,
                   **({"comment": f"{SHARE_TAG} {note}".encode()} if note else {}))
    return buf.getvalue()


def _gif_palette(mosaic: np.ndarray, colours: int):
    """A palette image of ``colours`` for the pixels ``mosaic`` (H x W x 3): three quarters from a
    median cut of its pixels (smooth gradients: a sky in 45 steps), a quarter from a median cut of
    the 2 % of pixels those serve worst, so that a small object of its own colour gets some. Median
    cut alone gave an Apple spatial photo's green watering can one washed-out colour (25 levels off,
    helper-73); an octree kept it but drew a sky in 12 bands (helper-74). 99.9th percentile of the
    error (CIELAB) over the frames of three photos' videos (the spatial photo, the coffee, the pug),
    median cut 32.6 / 18.6 / 31.8, this 17.8 / 13.8 / 11.0; mean 3.39 / 3.41 / 2.56, this 3.20 / 3.37 / 2.48."""
    from PIL import Image

    def as_image(pal: np.ndarray):
        img = Image.new("P", (1, 1))
        img.putpalette(np.pad(pal.ravel(), (0, 768 - pal.size)).tolist())
        return img

    def median_cut(pixels: np.ndarray, n: int) -> np.ndarray:
        q = Image.fromarray(pixels).quantize(n, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        return np.array(q.getpalette()[: 3 * n], np.uint8).reshape(-1, 3)[np.unique(np.asarray(q))]

    rare = colours // 4
    pal = median_cut(mosaic, colours - rare)
    image = Image.fromarray(mosaic)
    shown = np.asarray(image.quantize(palette=as_image(pal), dither=Image.Dither.NONE).convert("RGB"))
    err = np.abs(shown.astype(np.int16) - mosaic).sum(axis=2).ravel()
    worst = mosaic.reshape(-1, 3)[err >= max(np.quantile(err, 0.98), 1)]
    if len(worst) >= rare:
        pal = np.unique(np.concatenate([pal, median_cut(worst[None], rare)]), axis=0)[:colours]
    return as_image(pal)


def _gif_screens(q: list[np.ndarray], palette: np.ndarray) -> Iterator[np.ndarray]:
    """What a looping GIF of the palette indices ``q`` shows, frame by frame: each pixel keeps its
    colour while the frame's stays within ``GIF_SAME`` of it (such pixels are sent transparent).

    Kept from frame 0 on (track F), a pixel drifts up to GIF_SAME from its frame's colour, and the
    loop's restart (frame 0 is opaque) redrew all stale pixels at once: 31 % of the example's pixels
    changed at the wrap, 3-7 % at the other steps (the wood grain sparkled once per loop).  So a
    second track B is kept backwards from the wrap (B(n) = frame 0, B(t) = B(t+1) while frame t's
    colour is within GIF_SAME of it): it reaches the wrap with a step like any other.  Each pixel
    shows F until its switch frame s, then B; s is the frame with the fewest changes in all
    (F's before s, the switch itself, B's after), preferring a switch that changes nothing, else
    the pixel's own random frame: the catch-ups of stale pixels are spread over the loop.  Never
    more changes than F alone (s = n), and every pixel shown stays within GIF_SAME of its frame's."""
    n = len(q)
    near = (np.abs(palette[:, None] - palette[None]).sum(axis=2) <= GIF_SAME).ravel()  # [256 * a + b]

    def keep(cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
        return np.where(near[cur.astype(np.intp) * 256 + prev], prev, cur)

    back = [q[0]] * (n + 1)  # B(0..n), B(n) = frame 0 after the wrap
    for t in range(n - 1, 0, -1):
        back[t] = keep(q[t], back[t + 1])
    b_left = sum((back[t] != back[t + 1]).astype(np.int32) for t in range(1, n))  # B's changes from s = 1 on
    own = np.random.default_rng(0).integers(1, n + 1, q[0].shape)  # a pixel's frame for a forced switch
    best = np.full(q[0].shape, np.iinfo(np.int32).max, np.int32)
    switch = np.full(q[0].shape, n, np.int32)
    fwd, f_changes = q[0], np.zeros(q[0].shape, np.int32)
    for s in range(1, n + 1):  # F until s - 1, B from s on
        jump = fwd != back[s]
        cost = (f_changes + jump + b_left) * 4 + jump * 2 + (own != s)
        better = cost < best
        best, switch = np.where(better, cost, best), np.where(better, s, switch)
        if s < n:
            b_left -= back[s] != back[s + 1]
            nxt = keep(q[s], fwd)
            f_changes += nxt != fwd
            fwd = nxt
    fwd = q[0]
    for t in range(n):
        if t:
            fwd = keep(q[t], fwd)
        yield np.where(switch > t, fwd, back[t])
        q[t] = back[t] = None  # (done with: the encoder holds the frames' images meanwhile)


def _shrunk(frames: list[np.ndarray], w: int, h: int, stereo: str | None) -> list[np.ndarray]:
    """``frames`` at ``w`` x ``h`` (INTER_AREA); a side-by-side pair eye by eye, ``w`` being a
    whole number of eyes (see :func:`_pair_width`): resized whole, the seam's column mixed the two
    eyes and a 301-px frame gave them 150.5 px each (helper-100)."""
    import cv2

    if stereo not in ("sbs", "sbs-half"):
        return [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]
    half = frames[0].shape[1] // 2
    return [np.concatenate([cv2.resize(f[:, :half], (w // 2, h), interpolation=cv2.INTER_AREA),
                            cv2.resize(f[:, half:], (w // 2, h), interpolation=cv2.INTER_AREA)], axis=1) for f in frames]


def _pair_width(w: int, stereo: str | None) -> int:
    """A frame width the layout keeps: ``sbs`` two equal eyes (even), ``sbs-half`` two even eyes (a
    multiple of 4, as the full-size frame); any width without stereo."""
    step = {"sbs": 2, "sbs-half": 4}.get(stereo or "", 1)
    return max(step, w - w % step)


def fit_animation(frames: list[np.ndarray], suffix: str, fps: float, max_bytes: int | None,
                  stereo: str | None = None, note: str = "") -> tuple[bytes, dict]:
    """The GIF / animated WebP of ``frames`` within ``max_bytes`` (None: no budget), and what it
    is (frames, size, fps, ``reduced``: what was given up).  Over the budget it gives up, in order:

    1. frame rate: every other frame, while the rate stays at least ``BUDGET_MIN_FPS`` and at least
       two frames are left (the loop keeps its length and stays seamless: the paths' frames at half
       the count are every other one; of an odd count the last lasts half as long, see
       :func:`frame_delays`; a loop of one frame would be a still);
    2. colours: the GIF's palette to ``BUDGET_COLOURS`` (the WebP's quality to ``BUDGET_QUALITY``);
    3. size: the frames shrink (INTER_AREA) by the square root of the overshoot, and 5 % more,
       until it fits (down to 16 pixels on the longer side); a ``stereo`` pair eye by eye, its width
       kept whole for its layout.
    """
    gif = suffix == ".gif"
    encode = _encode_gif if gif else _encode_webp
    level, low = (GIF_COLOURS, BUDGET_COLOURS) if gif else (WEBP_QUALITY, BUDGET_QUALITY)
    base, shown, fps0 = frames, frames, fps
    starts, total = list(range(len(frames))), len(frames)  # (each shown frame's place in the rendered loop)
    h0, w0 = frames[0].shape[:2]
    reduced: list[str] = []
    data = encode(shown, fps0, level, starts, total, note)
    while max_bytes and len(data) > max_bytes:
        h, w = shown[0].shape[:2]
        # (two frames stay two: helper-93; an odd count too, its last frame half as long: it kept its
        # rate and gave up more than half its pixels instead, helper-100)
        if len(base) >= 4 and fps / 2 >= BUDGET_MIN_FPS:
            base, starts, fps = base[::2], starts[::2], fps / 2
            shown = base if (w, h) == (w0, h0) else _shrunk(base, w, h, stereo)
        elif level != low:
            level = low
        else:
            s = min(0.9, (0.95 * max_bytes / len(data)) ** 0.5)
            if max(w, h) <= 16:
                break  # cannot get any smaller: the budget is not met (said below)
            w, h = _pair_width(max(2, round(w * s)), stereo), max(2, round(h * s))
            shown = _shrunk(base, w, h, stereo)
        data = encode(shown, fps0, level, starts, total, note)
    h, w = shown[0].shape[:2]
    if fps != fps0:
        reduced.append(f"{fps0:g} → {fps:g} fps")
    if level != (GIF_COLOURS if gif else WEBP_QUALITY):
        reduced.append(f"{GIF_COLOURS} → {level} colours" if gif else f"quality {WEBP_QUALITY} → {level}")
    if (w, h) != (w0, h0):
        reduced.append(f"{w0}x{h0} → {w}x{h}")
    if max_bytes and len(data) > max_bytes:
        reduced.append(f"still over {max_bytes / 1e6:g} MB")
    return data, {"frames": len(shown), "size": [w, h], "fps": fps, "reduced": reduced}


def _write_still(path: Path, frame: np.ndarray, suffix: str, stereo: str | None = None, note: str = "") -> None:
    """A stereo still, tagged with its layout (:data:`STEREO_TAG`: a PNG text chunk, a JPEG
    comment), so ``--depth-source`` finds the pair in photo3d's own ``sbs-half`` stills too."""
    from PIL import Image, PngImagePlugin

    img = Image.fromarray(frame)
    if suffix == ".png":
        info = PngImagePlugin.PngInfo()
        if stereo:
            info.add_text(STEREO_TAG, stereo)
        if note:
            info.add_text(SHARE_TAG, note)
        img.save(path, format="PNG", pnginfo=info)
    else:
        said = ([f"{STEREO_TAG}={stereo}"] if stereo else []) + ([f"{SHARE_TAG}={note}"] if note else [])
        img.save(path, format="JPEG", quality=92, **({"comment": "\n".join(said).encode()} if said else {}))

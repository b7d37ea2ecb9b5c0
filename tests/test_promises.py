"""The README's "Promises": output safety, one-line errors, and the first run of a new user.

One test (or a few) per promise, each through the real command line (typer's CliRunner in-process,
or a subprocess where the process itself matters: warnings, permissions, file size limits).  The
depth model is the ``tiny_depth_model`` fixture or a ``--depth`` map, so nothing needs ../shared.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from helpers.gltf import assert_valid_glb
from helpers.batch_tasks import THUMB
from helpers.cli import cli, cli_command, cli_process, env
from helpers.paths import REPO
from helpers.photos import photo, photo_rgb
from photo3d.export import read_glb


def depth_npy(path: Path, w: int = 96, h: int = 72) -> Path:
    d = np.full((h, w), 0.2, np.float32)
    d[h // 4: 3 * h // 4, w // 3: 2 * w // 3] = 0.9
    np.save(path, d)
    return path


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


# ------------------------------------------------------------------------------------------
# Output safety


def test_summary_never_overwrites_an_input(tmp_path):
    src = photo(tmp_path / "photo.png")
    before = src.read_bytes()
    r = cli("convert", src, "-o", tmp_path / "o.glb", "--depth", depth_npy(tmp_path / "d.npy"), "--summary", src)
    assert r.exit_code == 2, r.output
    assert src.read_bytes() == before
    assert lines(r.output) == [f"error: --summary {src}: would overwrite an input; choose another file"]
    assert not (tmp_path / "o.glb").exists()


def test_summary_is_never_the_folder_the_outputs_go_into(tmp_path):
    """``--summary sd`` with ``-o sd/`` (a folder not made yet): the summary, written before any
    work, took the folder's name, the photo failed with a bare "Not a directory", and the same
    command run again was refused as "-o sd: exists and is not a folder" (helper-55).  Now a usage
    error before anything is written, as for a summary that is one of the outputs."""
    src = photo(tmp_path / "photo.png")
    d = depth_npy(tmp_path / "d.npy")
    for out, summary in ((tmp_path / "sd", tmp_path / "sd"), (tmp_path / "deep" / "er", tmp_path / "deep")):
        r = cli("convert", src, "-o", f"{out}{os.sep}", "--depth", d, "--summary", summary)
        assert r.exit_code == 2, r.output
        assert lines(r.output) == [f"error: --summary {summary}: is the folder the outputs go into; choose another file"]
        assert not summary.exists()


def test_summary_never_replaces_what_is_not_a_file(tmp_path):
    """``--summary`` replaces the file at its name: a named pipe there (or ``/dev/null``, a device)
    was replaced by a regular file, exit 0; run as root, ``--summary /dev/null`` would have put the
    JSON in place of the system's ``/dev/null``.  What is not a file is a usage error now, before any
    work, and stays as it was; so is a symbolic link (``/dev/stdout`` is one; written through, a link
    to the run's own output put the JSON over it, exit 0)."""
    src = photo(tmp_path / "photo.png")
    d = depth_npy(tmp_path / "d.npy")
    pipe = tmp_path / "pipe.json"
    os.mkfifo(pipe)
    r = cli("convert", src, "-o", tmp_path / "o.glb", "--depth", d, "--summary", pipe)
    assert r.exit_code == 2, r.output
    assert lines(r.output) == [f"error: --summary {pipe}: is a named pipe; give a file name"]
    assert pipe.is_fifo() and not (tmp_path / "o.glb").exists()
    (tmp_path / "link.json").symlink_to("o.glb")
    r = cli("convert", src, "-o", tmp_path / "o.glb", "--depth", d, "--summary", tmp_path / "link.json")
    assert r.exit_code == 2, r.output
    assert lines(r.output) == [f"error: --summary {tmp_path / 'link.json'}: is a symbolic link (to o.glb); give the file itself"]
    assert (tmp_path / "link.json").is_symlink() and not (tmp_path / "o.glb").exists()


def test_no_output_or_summary_replaces_the_depth_map_or_the_model(tmp_path, tiny_depth_model):
    """The ``--depth`` map and the ``--model`` file are inputs too: ``-o d.png --stereo sbs --depth
    d.png`` wrote the stereo still over the map, ``--summary d.png`` / ``--summary model.pt`` the
    JSON over the map / the model (``--summary photo3d/models/p3d-s.pt`` the bundled one: every
    later run failed its checksum).  Each is a usage error before any work; nothing is written."""
    src = photo(tmp_path / "photo.png", 96, 72)
    Image.fromarray(np.full((72, 96), 30000, np.uint16)).save(tmp_path / "d.png")
    model = tmp_path / "m.pt"
    shutil.copy(tiny_depth_model, model)
    before = {p: p.read_bytes() for p in (src, tmp_path / "d.png", model)}
    cases = [
        (("convert", src, "-o", tmp_path / "d.png", "--stereo", "sbs", "--depth", tmp_path / "d.png"),
         f"error: {src}: output {tmp_path / 'd.png'} would overwrite the --depth map {tmp_path / 'd.png'}; choose another -o"),
        (("convert", src, "-o", tmp_path / "o.glb", "--depth", tmp_path / "d.png", "--summary", tmp_path / "d.png"),
         f"error: --summary {tmp_path / 'd.png'}: would overwrite the --depth map; choose another file"),
        (("depth", src, "-o", tmp_path / "o.png", "--model", model, "--summary", model),
         f"error: --summary {model}: would overwrite the --model file; choose another file"),
    ]
    for args, message in cases:
        r = cli(*args)
        assert r.exit_code == 2 and lines(r.output) == [message], r.output
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.png", "m.pt", "photo.png"]
    from photo3d.depth import depth_task, model_reads
    from photo3d.depth.modelfile import bundled_model_path
    from photo3d.pipeline import convert_task

    # (the bundled model is not overwritten here to show it: the same check, on the same list)
    assert ("the bundled model", bundled_model_path()) in depth_task().read_files() == convert_task().read_files()
    assert model_reads(tmp_path) == [("the --model file", tmp_path / n) for n in ("tiefenrausch.pb", "tiefenrausch_init.pb")]


def test_an_output_over_its_own_input_is_a_usage_error(tmp_path):
    """``-o`` naming the input itself (or a side file landing on it) is refused before any work."""
    src = photo(tmp_path / "a.png")
    pv = photo(tmp_path / "b.preview.png")
    before = src.read_bytes(), pv.read_bytes()
    d = depth_npy(tmp_path / "d.npy")
    link = tmp_path / "link.png"
    link.symlink_to(src)  # another name of the input
    for args, name, out in [(("convert", src, "-o", src, "--depth", d), src, src),
                            (("convert", src, "-o", link, "--depth", d), src, link),
                            (("depth", src, "-o", src), src, src),
                            (("depth", pv, "-o", tmp_path / "b.png", "--preview"), pv, pv),
                            (("depth", src, pv, "-o", tmp_path), src, src)]:
        r = cli(*args)
        assert r.exit_code == 2, (args, r.output)
        assert lines(r.output) == [f"error: {name}: output {out} would overwrite the input; choose another -o"]
    assert (src.read_bytes(), pv.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.preview.png", "d.npy", "link.png"]


def test_a_path_through_a_folder_not_made_yet_is_seen_as_the_file_it_names(tmp_path):
    """``new/../a.png`` is ``a.png`` once ``new`` is made, but every check looked at the path as
    written, which the system refuses while ``new`` is missing: the output passed as new, its write
    made ``new`` and replaced the photo (found by a new-user trial: ``convert a.png -o
    new/../a.png --stereo sbs`` exit 0, the photo gone; ``depth album -o new/../album`` wrote depth
    maps over the album; ``--summary new/../a.png`` the JSON over the photo).  Each is refused as
    the plain path is, nothing is written and no folder is left behind; a harmless such path
    writes where it points."""
    src = photo(tmp_path / "a.png")
    album = tmp_path / "album"
    album.mkdir()
    shot = photo(album / "b.png")
    d = depth_npy(tmp_path / "d.npy")
    before = {p: p.read_bytes() for p in (src, shot, d)}
    cases = [
        (("convert", src, "-o", tmp_path / "new/../a.png", "--stereo", "sbs", "--depth", d),
         f"error: {src}: output {src} would overwrite the input; choose another -o"),
        (("depth", src, "-o", tmp_path / "new/deeper/../../a.png"),
         f"error: {src}: output {src} would overwrite the input; choose another -o"),
        (("depth", album, "-o", tmp_path / "new/../album"),
         f"error: -o {album}: the output folder must differ from the input folder {album}"),
        (("convert", src, "-o", tmp_path / "o.glb", "--depth", d, "--summary", tmp_path / "new/../a.png"),
         f"error: --summary {src}: would overwrite an input; choose another file"),
        (("convert", src, "-o", tmp_path / "new/../d.npy", "--depth", d),
         f"error: {src}: output {d} would overwrite the --depth map {d}; choose another -o"),
    ]
    for args, message in cases:
        r = cli(*args)
        assert r.exit_code == 2 and lines(r.output) == [message], (args, r.output)
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "album", "d.npy"]
    r = cli("convert", src, "-o", tmp_path / "new/../out/a.glb", "--depth", d)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "album", "d.npy", "out"]
    assert_valid_glb(tmp_path / "out" / "a.glb")


# Ctrl-C (a real SIGINT, raised in the process) just as the GLB would be renamed into place
_CTRL_C_AT_THE_GLB = """import os, signal
rename = os.replace
def replace(src, dst, *args, **kwargs):
    if str(dst).endswith(".glb"):
        signal.raise_signal(signal.SIGINT)
    return rename(src, dst, *args, **kwargs)
os.replace = replace
from photo3d.cli import app
app(prog_name="photo3d")
"""


def test_a_failed_or_interrupted_single_file_run_leaves_no_new_folder(tmp_path):
    src, d = photo(tmp_path / "photo.png"), depth_npy(tmp_path / "d.npy")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    r = cli("convert", bad, "-o", tmp_path / "new" / "sub" / "out.glb", "--depth", d)
    assert r.exit_code == 1 and lines(r.output) == [f"error: {bad}: not an image (unknown or unsupported format; photo3d reads JPEG, PNG, TIFF, WebP, BMP, GIF, HEIC and AVIF)"]
    out = tmp_path / "new" / "sub" / "out.glb"
    p = subprocess.run([sys.executable, "-c", _CTRL_C_AT_THE_GLB, "convert", str(src), "-o", str(out), "--depth", str(d)],
                       capture_output=True, text=True, env=env(), timeout=300)
    assert p.returncode == 130, p.stderr
    assert "interrupted" in p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bad.jpg", "d.npy", "photo.png"]  # no new/, no temp file
    # the same run without Ctrl-C writes the file, folders and all
    r = cli("convert", src, "-o", out, "--depth", d)
    assert r.exit_code == 0 and [x.name for x in out.parent.iterdir()] == ["out.glb"]
    assert_valid_glb(out)


def test_depth_previews_are_planned_with_the_outputs(tmp_path, tiny_depth_model):
    """b.tif's preview (b.preview.png) and b.preview.jpg's map (b.preview.png) would collide:
    both inputs keep their full names, and every preview is the preview of its own map."""
    src = tmp_path / "in"
    photo(src / "b.tif", seed=1)
    photo(src / "b.preview.jpg", 80, 80, seed=2)
    out = tmp_path / "out"
    r = cli("depth", src, "-o", out, "--preview", "--model", tiny_depth_model, "--summary", tmp_path / "s.json")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == [
        "b.preview.jpg.png", "b.preview.jpg.preview.png", "b.tif.png", "b.tif.preview.png"]
    from photo3d.depth.maps import colorize, load_depth_map

    for name in ("b.tif", "b.preview.jpg"):
        d = load_depth_map(out / f"{name}.png")
        pv = np.asarray(Image.open(out / f"{name}.preview.png").convert("RGB"))
        assert pv.shape[1] == d.shape[1] and pv.shape[0] > d.shape[0]  # the map, then the legend
        assert np.abs(pv[: d.shape[0]].astype(int) - colorize(d)).max() <= 1
    records = json.loads((tmp_path / "s.json").read_text())["results"]
    assert sorted(Path(o).name for rec in records for o in rec["outputs"]) == sorted(p.name for p in out.iterdir())


def test_a_page_or_preview_beside_an_output_that_photo3d_did_not_write_or_is_cut_short_fails_its_photo(
        tmp_path, tiny_depth_model):
    """The side files (NAME.preview.png with --preview, NAME.html with --html) were only checked
    to exist (helper-98): a preview or page cut short, or junk, was kept as "skipped (output
    exists)"; a page of the user's under NAME.html was kept and the asked-for page never written,
    without a word; and a picture of the user's under NAME.preview.png was overwritten when the
    map beside it was missing.  Each now fails its photo, naming the file, and nothing is
    touched; --overwrite rewrites them."""
    src = tmp_path / "in"
    photo(src / "a.jpg", seed=1)
    photo(src / "b.jpg", seed=2)
    d, c = tmp_path / "d", tmp_path / "c"
    assert cli("depth", src, "-o", d, "--preview", "--model", tiny_depth_model).exit_code == 0
    assert cli("convert", src, "-o", c, "--html", "--model", tiny_depth_model).exit_code == 0
    cut = {d / "a.preview.png": (d / "a.preview.png").read_bytes()[:-30], c / "a.html": (c / "a.html").read_bytes()[:-200]}
    junk = {d / "b.preview.png": b"junk\n", c / "b.html": b"<html>my notes</html>\n"}
    for path, data in {**cut, **junk}.items():
        path.write_bytes(data)
    why = {d / "a.preview.png": "is not a whole depth preview (cut short: no end chunk); remove it",
           d / "b.preview.png": "is not a whole depth preview (not a PNG file); remove it",
           c / "a.html": "is not a whole viewer page (cut short); remove it",
           c / "b.html": "is not a viewer page photo3d wrote; move it"}
    for cmd, out in ((("depth", src, "-o", d, "--preview"), d), (("convert", src, "-o", c, "--html"), c)):
        r = cli(*cmd, "--model", tiny_depth_model)
        assert r.exit_code == 1, r.output
        for name in ("a", "b"):
            side = next(p for p in why if p.parent == out and p.name.startswith(name + "."))
            assert f"error: {src / (name + '.jpg')}: the existing {side} {why[side]}, or run again with --overwrite" in r.output, r.output
    for path, data in {**cut, **junk}.items():
        assert path.read_bytes() == data, path
    # a picture of the user's under the preview's name, its map missing: not overwritten
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(d / "b.preview.png")
    mine = (d / "b.preview.png").read_bytes()
    (d / "b.png").unlink()
    r = cli("depth", src / "b.jpg", src / "a.jpg", "-o", d, "--preview", "--model", tiny_depth_model)
    assert r.exit_code == 1 and "the existing " + str(d / "b.preview.png") + " is not a depth preview photo3d wrote" in r.output, r.output
    assert (d / "b.preview.png").read_bytes() == mine and not (d / "b.png").exists()
    for cmd in (("depth", src, "-o", d, "--preview"), ("convert", src, "-o", c, "--html")):
        r = cli(*cmd, "--model", tiny_depth_model, "--overwrite")
        assert r.exit_code == 0, r.output
    from photo3d.io import kept_file_problem

    assert all(kept_file_problem(p, side=True) is None for p in why), [kept_file_problem(p, side=True) for p in why]
    # a map (the main output) named like a preview is no preview: it failed every re-run (helper-103)
    photo(tmp_path / "sea" / "view.preview.jpg", seed=3)
    for _ in range(2):
        r = cli("depth", tmp_path / "sea", "-o", tmp_path / "sea-out", "--model", tiny_depth_model)
        assert r.exit_code == 0, r.output
    assert "0 depth map(s) written, 1 skipped (output exists)" in r.output, r.output


def test_a_single_photos_run_rewrites_its_output_but_not_a_file_of_yours_under_its_pages_name(tmp_path, tiny_depth_model):
    """A single photo's output is rewritten by default (you named it), and so were the page or
    preview beside it even when they were files of the user's that only had their names
    (``echo notes > x.preview.png; photo3d depth x.jpg -o x.png --preview``: the notes gone, helper-119),
    which a folder run refuses.  Now a single photo's run refuses them too, naming the file, nothing
    touched; photo3d's own page or preview, even cut short, is rewritten; ``--overwrite`` rewrites all."""
    photo(tmp_path / "x.jpg", seed=1)
    out = tmp_path / "o"
    out.mkdir()
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(out / "x.preview.png")  # a picture of yours
    (out / "x.html").write_bytes(b"<html>my page</html>\n")
    mine = {p: p.read_bytes() for p in (out / "x.preview.png", out / "x.html")}
    for cmd, side in ((("depth", tmp_path / "x.jpg", "-o", out / "x.png", "--preview"), out / "x.preview.png"),
                      (("convert", tmp_path / "x.jpg", "-o", out / "x.glb", "--html"), out / "x.html")):
        kind = "depth preview" if side.suffix == ".png" else "viewer page"
        r = cli(*cmd, "--model", tiny_depth_model)
        assert r.exit_code == 1, r.output
        assert (f"error: {tmp_path / 'x.jpg'}: the existing {side} is not a {kind} photo3d wrote; move it, "
                "or run again with --overwrite") in r.output, r.output
        assert side.read_bytes() == mine[side]
        r = cli(*cmd, "--model", tiny_depth_model, "--overwrite")
        assert r.exit_code == 0 and side.read_bytes() != mine[side], r.output
        side.write_bytes(side.read_bytes()[:-40])  # photo3d's own, cut short: rewritten by default
        r = cli(*cmd, "--model", tiny_depth_model)
        assert r.exit_code == 0, r.output
        from photo3d.io import kept_file_problem

        assert kept_file_problem(side, side=True) is None


def _no_read_override():
    """In a child process run as root: give up root's right to read any file (the capabilities
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH leave the bounding set, so the exec'd program lacks them)."""
    if os.getuid() == 0:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (1, 2):
            libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP


@pytest.mark.slow
def test_an_unreadable_file_on_the_command_line_is_one_failed_input(tmp_path, tiny_depth_model):
    good = photo(tmp_path / "good.png")
    bad = photo(tmp_path / "secret.png")
    bad.chmod(0)
    probe = subprocess.run([sys.executable, "-c", "import sys; open(sys.argv[1], 'rb')", str(bad)],
                           capture_output=True, preexec_fn=_no_read_override)
    if probe.returncode == 0:
        pytest.skip("cannot make a file unreadable for a child process here")
    p = cli_process("depth", bad, good, "-o", tmp_path / "out", "--model", tiny_depth_model,
                    preexec_fn=_no_read_override)
    assert p.returncode == 1, p.stderr
    assert f"error: {bad}: unreadable (permission denied)" in p.stderr
    assert "Usage:" not in p.stderr
    assert (tmp_path / "out" / "good.png").is_file() and not (tmp_path / "out" / "secret.png").exists()


def test_a_photo_written_as_a_folder_is_a_failed_input(tmp_path, tiny_depth_model):
    """`photo.jpg/` names a folder (open('photo.jpg/') fails: not a directory), but a Path drops
    the / and the photo was converted as if it were `photo.jpg`.  Now: one line naming the input as
    written, exit 1 (a bad input, as a missing one), and nothing written for it."""
    src = photo(tmp_path / "photo.png")
    for target in (tmp_path / "d.png", tmp_path / "out"):
        r = cli("depth", f"{src}/", "-o", target, "--model", tiny_depth_model)
        assert r.exit_code == 1, r.output
        assert lines(r.output)[0] == f"error: {src}/: not a folder ({src} is a file; leave out the trailing /)"
        assert not target.exists()
    # beside a good input: that one is converted, the batch exits 1 naming the bad one
    good = photo(tmp_path / "good.png")
    r = cli("depth", f"{src}/.", good, "-o", tmp_path / "out", "--model", tiny_depth_model)
    assert r.exit_code == 1, r.output
    assert f"error: {src}/.: not a folder ({src} is a file)" in lines(r.output)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png"]


@pytest.mark.parametrize("order", ["slash first", "slash last"])
def test_a_photo_given_as_a_folder_and_as_itself_counts_as_two_inputs(tmp_path, tiny_depth_model, order):
    """`photo.png/ photo.png`: the first fails, the second is converted, under the name it has when
    given alone; the lines count two inputs. It said '1 of 1 input(s) failed' (both are the Path
    photo.png) and wrote out/photo-2.png.png (the failed input took photo.png's name); a second
    failure of the same photo was not said at all."""
    src = photo(tmp_path / "photo.png")
    args = [f"{src}/", str(src)] if order == "slash first" else [str(src), f"{src}/"]
    out, summary = tmp_path / "out", tmp_path / "summary.json"
    r = cli("depth", *args, "-o", out, "--model", tiny_depth_model, "--summary", summary)
    assert r.exit_code == 1, r.output
    said = lines(r.output)
    assert f"error: {src}/: not a folder ({src} is a file; leave out the trailing /)" in said, said
    assert "1 of 2 input(s) failed:" in said and said[-1].startswith("1 depth map(s) written, 0 skipped (output exists), 1 failed"), said
    assert sorted(p.name for p in out.iterdir()) == ["photo.png"]
    records = {rec["input"]: rec for rec in json.loads(summary.read_text())["results"]}
    assert records[str(src)]["status"] == "ok" and records[str(src)]["output"] == str(out / "photo.png"), records
    assert records[f"{src}/"]["status"] == "failed" and records[f"{src}/"]["not_made"] != [str(out / "photo.png")], records
    # a photo that cannot be read, given both ways: two failures, each said
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    args = [f"{bad}/", str(bad)] if order == "slash first" else [str(bad), f"{bad}/"]
    r = cli("depth", *args, "-o", tmp_path / "out2", "--model", tiny_depth_model)
    said = lines(r.output)
    assert r.exit_code == 1 and "2 of 2 input(s) failed:" in said, said
    assert f"error: {bad}/: not a folder ({bad} is a file; leave out the trailing /)" in said, said
    assert any(line.startswith(f"error: {bad}: ") for line in said), said


def test_a_broken_link_named_on_the_command_line_says_so(tmp_path, tiny_depth_model):
    """A photo named on the command line that is a link whose target is gone (a photo on an
    unmounted drive) says so, as it does when found in a folder: `ls` shows the name. It said
    'no such file or folder'."""
    src = photo(tmp_path / "photo.png")
    gone = tmp_path / "gone.png"
    gone.symlink_to("../nowhere/gone.png")
    r = cli("depth", gone, src, "-o", tmp_path / "out", "--model", tiny_depth_model)
    assert r.exit_code == 1, r.output
    said = lines(r.output)
    assert f"error: {gone}: no such file (a broken symbolic link to ../nowhere/gone.png)" in said, said
    assert "1 of 2 input(s) failed:" in said, said
    # a name that is not there at all is still 'no such file or folder'
    r = cli("depth", tmp_path / "absent.png", "-o", tmp_path / "out2", "--model", tiny_depth_model)
    assert r.exit_code == 1 and f"error: {tmp_path / 'absent.png'}: no such file or folder" in lines(r.output), r.output


def test_a_folder_that_may_not_be_searched_is_one_line(tmp_path, tiny_depth_model, monkeypatch):
    """A path through a folder the user may not search (``priv/`` mode 700, another user's):
    pathlib's ``exists()`` / ``is_dir()`` raise PermissionError there, and a photo named in it, an
    ``-o`` below it or a ``model import -o`` below it ended in a traceback (code review, session 23).
    Here the system's refusal is played by ``os.stat`` (the tests may run as root, whom modes do
    not stop); as user nobody the same commands say ``cannot write into ... Permission denied``."""
    priv = tmp_path / "priv"
    priv.mkdir()
    src = photo(tmp_path / "photo.png")
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        if os.fspath(path).startswith(str(priv) + os.sep):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    r = cli("depth", priv / "x.png", src, "-o", tmp_path / "out", "--model", tiny_depth_model)
    assert r.exit_code == 1 and r.exception is None or isinstance(r.exception, SystemExit), r.output
    assert f"error: {priv / 'x.png'}: permission denied (a folder on its way may not be searched)" in lines(r.output)
    assert "1 of 2 input(s) failed:" in lines(r.output) and (tmp_path / "out" / "photo.png").is_file()
    for args in (["depth", src, "-o", priv / "sub" / "d.png"], ["depth", src, "-o", f"{priv / 'sub'}/"],
                 ["model", "import", tmp_path, "-o", priv / "sub" / "t.pt"]):
        r = cli(*args, *(["--model", tiny_depth_model] if args[0] == "depth" else []))
        assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.output)
        assert "Traceback" not in r.output and all(not x.startswith(" ") for x in lines(r.output)[:1]), (args, r.output)


def _stopped_run(before: str = "", after: str = "") -> subprocess.CompletedProcess:
    """A process whose batch ends interrupted (its code run ``before``; ``after`` where the command
    would end, in an ``except typer.Exit as e``)."""
    script = (
        "import os, queue, signal, sys, threading, time, types, typer\n" + before +
        "import photo3d.batch as b, photo3d.cli as c\n"
        "b.batch_command = lambda *a, **k: 130\n"
        "opts = types.SimpleNamespace(jobs=1, engine='local', address=None, overwrite=None, globs=(), summary=None)\n"
        "try:\n"
        "    c._batch(None, ['x.jpg'], 'x.glb', '.glb', opts)\n"
        "except typer.Exit as e:\n" + (after or "    raise\n")
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env(), timeout=120)


def test_a_ctrl_c_after_a_stopped_run_has_said_so_does_not_change_its_exit_code():
    """Ctrl-C twice 50 ms apart: the run stopped, said so, wrote its summary, and the second
    signal reached the process while it was exiting: killed by SIGINT (-2 to a caller) instead of
    exit 130 (new-user trial, session 23).  Played here: the batch ends interrupted, and SIGINT
    comes during a slow cleanup at exit (which the second Ctrl-C cuts short)."""
    t0 = time.monotonic()
    p = _stopped_run(before="import atexit\natexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(60)))\n")
    assert p.returncode == 130 and time.monotonic() - t0 < 30, (p.returncode, p.stderr)


def test_a_stopped_run_exits_although_a_thread_waits_for_good():
    """One Ctrl-C in the first seconds under load: the run said "interrupted" and then never exited
    (helper-72: 2 runs in 25): exiting waited for a thread pool's worker that the stop had left
    waiting forever. A stopped run now ends with 130 after cli.EXIT_GRACE_S at most, also with its
    stdout closed (``>&-``: sys.stdout is None, helper-74). Played here: a thread that never ends."""
    p = _stopped_run(before="os.close(1); sys.stdout = None\nthreading.Thread(target=queue.SimpleQueue().get).start()\n")
    assert p.returncode == 130, (p.returncode, p.stderr)


def test_torchs_notes_stay_filtered_after_a_task_that_recorded_warnings():
    """The filter of torch's deprecation notes was set when the model's module was imported: in a
    thread, while a task recorded warnings (catch_warnings), so it was undone with that record; a run
    stopped then printed "warning: UserWarning: torch.quantize_per_tensor ..." after its last line
    (helper-72). The command sets it in the process's own filters at its start."""
    script = (
        "import warnings\n"
        "import photo3d.cli as c\n"
        "from photo3d.errors import ignore_library_noise\n"
        "c.main(version=False)\n"
        "with warnings.catch_warnings(record=True):\n"
        "    warnings.simplefilter('always')\n"
        "    ignore_library_noise()  # (the model's module, imported meanwhile)\n"
        "warnings.warn('torch.quantize_per_tensor, torch.quantize_per_channel and other quantized tensor creation "
        "functions are deprecated', UserWarning)\n"
    )
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env(), timeout=120)
    assert p.returncode == 0 and p.stderr == "", p.stderr


def test_a_ctrl_c_before_the_run_begins_says_so(monkeypatch, tmp_path):
    """Ctrl-C in the first half second (the command's imports and checks, before the run's own
    handling) ended with 130 and not a word (helper-72)."""
    import photo3d.cli as c

    def pressed(kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(c, "_check_path_names", pressed)
    r = cli("convert", photo(tmp_path / "p.png"), "-o", tmp_path / "p.glb")
    assert r.exit_code == 130 and r.output == "interrupted: nothing written\n", r.output
    assert not (tmp_path / "p.glb").exists()


def test_a_ctrl_c_while_the_command_line_is_read_says_so(monkeypatch, tmp_path):
    """Ctrl-C while the top level reads the command line (its callback, before the command's own
    handling): typer made it a silent exit 130 (about one press in ten in the first 0.2 s)."""
    import photo3d.cli as c

    def pressed():
        raise KeyboardInterrupt

    monkeypatch.setattr(c, "ignore_library_noise", pressed)
    r = cli("convert", photo(tmp_path / "p.png"), "-o", tmp_path / "p.glb")
    assert r.exit_code == 130 and r.output == "interrupted: nothing written\n", r.output
    assert not (tmp_path / "p.glb").exists()


def test_a_ctrl_c_while_the_command_line_loads_says_so(tmp_path):
    """Ctrl-C in the first 0.1-0.2 s of `photo3d` (the command line's modules loading: typer, rich)
    printed a 15-30-line import traceback and ended with -2 or 1. The command's entry point (and
    ``python -m photo3d``) says it in one line and ends with 130. (A module whose loading is
    interrupted stands in for the key press: a timed signal would land anywhere.)"""
    stub = tmp_path / "stub" / "typer"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise KeyboardInterrupt\n")
    e = env()
    e["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "stub"), e["PYTHONPATH"]])
    for argv in (cli_command("convert", "a.jpg", "-o", "a.glb"), [sys.executable, "-m", "photo3d", "--help"]):
        r = subprocess.run(argv, capture_output=True, text=True, env=e, cwd=tmp_path, timeout=120)
        assert r.returncode == 130 and r.stderr == "interrupted: nothing written\n" and r.stdout == "", r.stderr[-2000:]
    # kill (SIGTERM) or a closed terminal (SIGHUP) then: the same line (they ended it without a word,
    # exit 143 / 129, helper-87)
    for sig in ("SIGTERM", "SIGHUP"):
        (stub / "__init__.py").write_text(f"import os, signal, time\nos.kill(os.getpid(), signal.{sig})\ntime.sleep(30)\n")
        r = subprocess.run(cli_command("convert", "a.jpg", "-o", "a.glb"), capture_output=True, text=True, env=e,
                           cwd=tmp_path, timeout=120)
        assert r.returncode == 130 and r.stderr == "interrupted: nothing written\n", (sig, r.returncode, r.stderr[-2000:])
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"photo3d": "photo3d:main"}  # the installed command is that entry point


def test_a_second_run_leaves_the_live_temp_file_of_the_first_alone(tmp_path):
    """Two runs on the same OUT: the second may only remove temp files whose writer is gone."""
    from photo3d.batch import SequentialExecutor, plan_jobs, run_batch

    src = tmp_path / "in"
    photo(src / "a.png")
    out = tmp_path / "out"
    first = subprocess.Popen(
        [sys.executable, "-c", "import sys; from photo3d.io import atomic_output\n"
         "with atomic_output(sys.argv[1]) as t:\n t.write_bytes(b'first'); print('ready', flush=True); sys.stdin.readline()",
         str(out / "a.png")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env())
    try:
        assert first.stdout.readline().strip() == "ready"
        (live,) = out.glob(".a.png.*.tmp")
        jobs = plan_jobs([src], out, ".png")
        rep = run_batch(jobs, _thumb(), SequentialExecutor(), progress=False)
        assert [r.status for r in rep.results] == ["ok"]
        assert live.is_file()  # still there: its writer is alive
    finally:
        first.communicate("\n", timeout=60)
    assert first.returncode == 0  # the first run could still finish its file
    assert (out / "a.png").read_bytes() == b"first" and not list(out.glob(".*.tmp"))


def test_a_run_in_another_pid_namespace_leaves_a_live_temp_file_alone(tmp_path):
    """A run in a container that shares the host's name (``unshare -p``) saw a live run's temp file
    as stale (its pid is no process in there) and deleted it: the first run failed writing its MP4
    (helper-79).  The owner tag of a temp name now holds the pid namespace too."""
    import shutil

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-p", "-f", "--mount-proc", "true"],
                                                         capture_output=True).returncode != 0:
        pytest.skip("cannot make a pid namespace here (unshare, root)")
    from photo3d.io import atomic_output, stale_temp_target

    check = "import sys; from pathlib import Path; from photo3d.io import stale_temp_target; print(stale_temp_target(Path(sys.argv[1])))"
    with atomic_output(tmp_path / "a.mp4") as tmp:
        tmp.write_bytes(b"being written")
        (live,) = tmp_path.glob(".a.mp4.*.tmp")
        assert stale_temp_target(live) is None
        there = subprocess.run(["unshare", "-p", "-f", "--mount-proc", sys.executable, "-c", check, str(live)],
                               capture_output=True, text=True, env=env(), timeout=120)
        assert there.returncode == 0 and there.stdout.strip() == "None", there.stdout + there.stderr
        assert live.is_file()
    assert (tmp_path / "a.mp4").read_bytes() == b"being written"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_help_to_a_full_standard_output_is_one_line(tmp_path):
    """``photo3d convert --help >/dev/full`` printed a 60-line traceback box (helper-79): one line now."""
    for args in (["convert", "--help"], ["--help"], ["--version"]):
        with open("/dev/full", "w") as full:
            p = subprocess.run(cli_command(*args), stdout=full, stderr=subprocess.PIPE, text=True, env=env(), timeout=120)
        assert p.returncode == 1 and p.stderr == "error: cannot write to standard output (No space left on device)\n", (args, p.stderr)


def _thumb():
    return THUMB


def _model_with_metadata(path: Path, meta: dict) -> Path:
    import warnings

    import torch

    class Flat(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=1, keepdim=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(Flat()), str(path), _extra_files={"photo3d.json": json.dumps(meta)})
    return path


@pytest.mark.parametrize("size", ["abc", None, 0])
def test_bad_model_metadata_stops_the_batch_as_a_broken_model(tmp_path, size):
    model = _model_with_metadata(tmp_path / "m.pt", {"name": "m", "input_size": size})
    for i in range(3):
        photo(tmp_path / "in" / f"p{i}.png", seed=i)
    r = cli("depth", tmp_path / "in", "-o", tmp_path / "out", "--model", model, "--summary", tmp_path / "s.json")
    assert r.exit_code == 1, r.output
    assert lines(r.output)[0] == (f"error: {model}: bad photo3d.json metadata: input_size must be a whole number "
                                  f"of pixels from 32 to 8192, not {json.dumps(size)}")
    assert "internal error" not in r.output
    assert json.loads((tmp_path / "s.json").read_text())["counts"] == {"ok": 0, "skipped": 0, "failed": 0, "not run": 3}


def _png_header_only(path: Path, w: int, h: int) -> Path:
    """A small PNG whose header claims w x h 16-bit grey pixels (only a few rows of data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (2 * w + 1) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_depth_maps_get_the_megapixel_guard_and_their_own_errors(tmp_path):
    src = photo(tmp_path / "photo.png", 60, 40)
    out = tmp_path / "o.glb"

    def run(depth, *extra):
        r = cli("convert", src, "-o", out, "--depth", depth, *extra)
        assert r.exit_code == 1, r.output
        assert "internal error" not in r.output and not out.exists()
        (line,) = lines(r.output)
        assert line.startswith(f"error: {depth}: "), line  # the map is named, not the photo
        return line

    bomb = _png_header_only(tmp_path / "bomb.png", 30000, 30000)  # 900 MP
    assert "depth map too large (30000x30000 = 900.0 MP exceeds the --max-megapixels limit of 100 MP)" in run(bomb)
    np.save(tmp_path / "big.npy", np.zeros((300, 450), np.float32))  # 0.135 MP
    assert "depth map too large" in run(tmp_path / "big.npy", "--max-megapixels", "0.1")
    np.save(tmp_path / "empty.npy", np.zeros((0, 0), np.float32))
    assert run(tmp_path / "empty.npy").endswith("empty depth map (0x0)")
    np.save(tmp_path / "complex.npy", np.ones((40, 60), np.complex64))
    assert run(tmp_path / "complex.npy").endswith("2-D array of real numbers, got complex64 values")
    np.save(tmp_path / "row.npy", np.ones((1, 5), np.float32))  # (it said "2-D ..., got float32 (1, 5)")
    assert run(tmp_path / "row.npy").endswith("got shape (1, 5) (1-D: sides of 1 do not count)")
    np.save(tmp_path / "nan.npy", np.full((40, 60), np.nan, np.float32))
    assert run(tmp_path / "nan.npy").endswith("depth map holds NaN or infinite values")
    colour = photo(tmp_path / "colour.jpg", 60, 40)  # a photo given as the map by mistake
    assert run(colour).endswith("depth map is a colour image; give a single-channel (grey) depth map")


def test_a_depth_map_is_read_by_what_it_holds_and_a_wrong_kind_says_what_it_is(tmp_path):
    """A .npy array named .png (and a PNG named .npy) is read as what it is; an .npz archive, a .npy
    cut short or holding pickled objects, and an empty file each fail with one line saying so (the
    .npz was `internal error (AttributeError: 'NpzFile' object has no attribute 'size')`, the
    renamed files `cannot identify image file` and `This file contains pickled (object) data`)."""
    src = REPO / "examples" / "coffee.jpg"
    with Image.open(src) as im:
        w, h = im.size
    ramp = np.tile(np.linspace(0.1, 0.9, h, dtype=np.float32)[:, None], (1, w))  # lower rows nearer
    np.save(tmp_path / "d.npy", ramp)
    Image.fromarray(np.round(ramp * 65535).astype(np.uint16)).save(tmp_path / "d.png")
    shutil.copy(tmp_path / "d.npy", tmp_path / "npy-named.png")
    shutil.copy(tmp_path / "d.png", tmp_path / "png-named.npy")
    for depth, same_as in (("npy-named.png", "d.npy"), ("png-named.npy", "d.png")):
        outs = []
        for name in (depth, same_as):
            out = tmp_path / f"{name}.glb"
            r = cli("convert", src, "-o", out, "--depth", tmp_path / name)
            assert r.exit_code == 0, r.output
            assert f"depth from {tmp_path / name}," in r.output
            tree, binary = read_glb(out.read_bytes())
            tree["extras"]["photo3d"].pop("depth")  # the map's name
            outs.append((tree, binary))
        assert outs[0] == outs[1], depth  # the same 3D photo as from the same map under its own name
    assert_valid_glb(tmp_path / "npy-named.png.glb")

    np.savez(tmp_path / "maps.npz", depth=ramp)
    shutil.copy(tmp_path / "maps.npz", tmp_path / "npz-named.npy")
    data = (tmp_path / "d.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) // 2])
    np.save(tmp_path / "objects.npy", np.array([{"depth": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "empty.npy").write_bytes(b"")
    np.save(tmp_path / "small.npy", np.zeros((4, 160), np.float32))  # a side of -1 (numpy: OverflowError), and
    small = (tmp_path / "small.npy").read_bytes()  # a side written as an expression (helper-72)
    for name, bad in (("negative.npy", b"(-1, 160)"), ("expression.npy", b"(10**10, 1)")):
        (tmp_path / name).write_bytes(small.replace(b"(4, 160)", bad.ljust(8)))
    # a header cut inside a token ("... 'fortran_order': Fal"): tokenize's TokenError was an internal
    # error blamed on the photo (a security review, helper-77)
    (tmp_path / "token.npy").write_bytes(small.replace(b"False", b"Fal  ").replace(b"(4, 160)", b"(4, 160 "))
    expected = {
        "token.npy": "not a readable .npy depth map (its header does not describe an array numpy can read)",
        "negative.npy": "not a readable .npy depth map (its header does not describe an array numpy can read)",
        "expression.npy": "not a readable .npy depth map (its header does not describe an array numpy can read)",
        "maps.npz": "a zip archive (NumPy's .npz?), not a depth map: save one 2-D array with numpy.save (.npy), or a grey PNG",
        "npz-named.npy": "a zip archive (NumPy's .npz?), not a depth map: save one 2-D array with numpy.save (.npy), or a grey PNG",
        "cut.npy": f"not a readable .npy depth map (cut short: {len(data) // 2:,} of its {len(data):,} bytes)",
        "objects.npy": "not a readable .npy depth map (an array of Python objects (pickled data, not loaded): "
                       "save a 2-D array of numbers)",
        "empty.npy": "not a depth map (empty file)",
    }
    for name, reason in expected.items():
        out = tmp_path / "bad.glb"
        r = cli("convert", src, "-o", out, "--depth", tmp_path / name)
        assert r.exit_code == 1, r.output
        assert lines(r.output) == [f"error: {tmp_path / name}: {reason}"], name
        assert not out.exists()


def test_a_depth_map_image_is_turned_by_its_exif_orientation_as_a_photo_is(tmp_path):
    """A depth JPEG stored 120x160 with EXIF orientation 6 (shown 160x120) was read as stored: refused
    as the wrong aspect for a 160x120 photo (a square map would have been used turned; helper-72)."""
    src = photo(tmp_path / "photo.png", 160, 120)
    ramp = np.tile(np.linspace(0, 255, 120).astype(np.uint8), (160, 1))  # stored: near at the right
    im = Image.fromarray(ramp)
    exif = im.getexif()
    exif[0x0112] = 6  # turned 90 degrees clockwise to show: near at the bottom
    im.save(tmp_path / "d.jpg", exif=exif, quality=95)
    out = tmp_path / "o.glb"
    r = cli("convert", src, "-o", out, "--depth", tmp_path / "d.jpg")
    assert r.exit_code == 0, r.output
    from photo3d.depth.maps import load_depth_map

    d = load_depth_map(tmp_path / "d.jpg")
    assert d.shape == (120, 160) and d[-10:].mean() > d[:10].mean() + 0.5  # near at the bottom, as shown


def test_a_file_named_like_an_emoji_code_is_named_as_it_is(tmp_path):
    """Rich turned ``:smile:`` in a file's name into an emoji in every message, naming files that do
    not exist (helper-72)."""
    bad = tmp_path / ":smile:.jpg"
    bad.write_bytes(b"junk")
    r = cli("convert", bad, "-o", tmp_path / ":x:.glb")
    assert r.exit_code == 1 and r.output.startswith(f"error: {bad}: not an image"), r.output
    good = photo(tmp_path / "in" / ":fire:.png")
    r = cli("convert", good.parent, "-o", tmp_path / "out")
    assert r.exit_code == 0 and f"{good} -> {tmp_path / 'out' / ':fire:.glb'}" in r.output, r.output


def _file_size_limit():
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (2_000, 2_000))


@pytest.mark.slow
def test_a_failed_glb_write_says_cannot_write_naming_the_output(tmp_path):
    src = photo(tmp_path / "photo.png")
    out = tmp_path / "out" / "photo.glb"
    p = cli_process("convert", src, "-o", out, "--depth", depth_npy(tmp_path / "d.npy"),
                    preexec_fn=_file_size_limit)
    assert p.returncode == 1, p.stderr
    assert lines(p.stderr) == [f"error: {out}: cannot write (File too large)"]
    assert not out.exists() and not out.parent.exists()  # nor the folder made for it


@pytest.mark.slow
def test_a_failed_mp4_write_says_cannot_write_and_leaves_nothing(tmp_path):
    """FFmpeg writes the MP4: when it cannot (a full disk), photo3d says so in one line and exits 1,
    and no partial video is left under the final name (FFmpeg's own lines are not shown)."""
    src = photo(tmp_path / "photo.png", 320, 240)
    out = tmp_path / "out" / "photo.mp4"
    p = cli_process("convert", src, "-o", out, "--depth", depth_npy(tmp_path / "d.npy", 320, 240), "--seconds", "1",
                    preexec_fn=_file_size_limit)
    assert p.returncode == 1, p.stderr
    # FFmpeg either dies of the limit's signal or, when it sees the write fail first, says why: both
    # are the same reason in one line (seen on a loaded machine: "File too large")
    (line,) = lines(p.stderr)
    assert re.fullmatch(rf"error: {re.escape(str(out))}: cannot write \(FFmpeg: (.*: )?(File size limit exceeded|File too large)\)",
                        line), p.stderr
    assert not out.exists() and not out.parent.exists()


@pytest.mark.parametrize("name", ["L" * 251 + ".png", "\u00e9" * 120 + ".png"])
def test_an_output_name_near_the_longest_a_folder_takes_is_written(tmp_path, tiny_depth_model, name):
    """An output name near NAME_MAX (255 bytes) fits, but its temp file's name (".NAME.<pid>-<host>-
    <random>.tmp", 30 bytes more) did not: each such photo failed after its whole conversion with
    'cannot write (File name too long)'.  Now the temp's name is cut short (with a hash of the
    name), and the stale temp that a kill -9 leaves is still found and removed by the next run."""
    src = photo(tmp_path / "in" / name)
    out = tmp_path / "out"
    code = "import os, sys; from photo3d.io import atomic_output\n" \
           "with atomic_output(sys.argv[1]) as t:\n t.write_bytes(b'partial'); os.kill(os.getpid(), 9)"
    subprocess.run([sys.executable, "-c", code, str(out / name)], env=env(), timeout=60)
    (stale,) = out.glob(".*.tmp")
    assert len(os.fsencode(stale.name)) <= 255
    r = cli("depth", src.parent, "-o", out, "--model", tiny_depth_model)
    assert r.exit_code == 0, r.output
    assert [p.name for p in out.iterdir()] == [name]
    assert Image.open(out / name).size == Image.open(src).size


def test_an_output_name_longer_than_a_folder_takes_fails_before_any_work(tmp_path):
    """A 251-byte photo name gives a 255-byte NAME.glb but a 256-byte NAME.html: that input fails
    at once with one line naming the file and why (after the whole conversion it said 'cannot write
    (File name too long)', or, into an existing folder, 'internal error (OSError: [Errno 36] File
    name too long ...)'); the other inputs go on."""
    src = photo(tmp_path / ("L" * 251 + ".png"))
    other = photo(tmp_path / "other.png")
    out = tmp_path / "out"
    out.mkdir()
    r = cli("convert", src, other, "-o", out, "--html")
    assert r.exit_code == 1, r.output
    glb, page = out / ("L" * 251 + ".glb"), out / ("L" * 251 + ".html")
    assert lines(r.output)[0] == (f"error: {page}: cannot write (file name too long: 256 bytes, the folder takes at "
                                  f"most 255); {glb} not written either"), r.output
    assert sorted(p.name for p in out.iterdir()) == ["other.glb", "other.html"]


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_folder_in_the_place_of_an_output_fails_its_input(tmp_path, tiny_depth_model, overwrite):
    """OUT/b.png is a folder: b.png was 'skipped (output exists)' and the batch said all done
    (exit 0); with --overwrite it was converted first, then failed with 'cannot write (Is a
    directory)'.  Now it fails at once, one line naming the folder and the way out; a re-run says
    so again (it is never taken for a finished output)."""
    src = tmp_path / "in"
    photo(src / "a.png"), photo(src / "b.png")
    out = tmp_path / "out"
    (out / "b.png").mkdir(parents=True)
    for _ in range(2):
        r = cli("depth", src, "-o", out, "--model", tiny_depth_model, *overwrite)
        assert r.exit_code == 1, r.output
        assert lines(r.output)[0] == (f"error: {out / 'b.png'}: cannot write (a folder of that name is in the way; "
                                      "move it, or choose another -o)"), r.output
        assert (out / "a.png").is_file() and (out / "b.png").is_dir()


@pytest.mark.parametrize("where", ["INPUT", "-o", "--summary", "INPUT among others"])
def test_a_path_the_system_refuses_as_a_name_is_a_usage_error(tmp_path, tiny_depth_model, where):
    """A name longer than NAME_MAX (a typo, a pasted line) on the command line: every check of it
    raised ENAMETOOLONG and the command ended in a traceback.  Now one line, exit 2, nothing written."""
    good = photo(tmp_path / "good.png")
    long = tmp_path / ("q" * 300 + ".png")
    args = {"INPUT": [long, "-o", tmp_path / "out"], "-o": [good, "-o", long],
            "--summary": [good, "-o", tmp_path / "out", "--summary", long],
            "INPUT among others": [good, long, "-o", tmp_path / "out"]}[where]
    r = cli("depth", *args, "--model", tiny_depth_model)
    assert r.exit_code == 2, (r.output, r.exception)
    assert lines(r.output) == [f"error: {where.split()[0]} {long}: file name too long (304 bytes in one name; the most is 255)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.png"]


def test_an_output_path_longer_than_the_system_takes_fails_its_input(tmp_path, tiny_depth_model):
    """A deep input tree mirrored under a long -o: the outputs whose path passes PATH_MAX (4096
    bytes) fail at once, one line each, the others are written (the command ended in a traceback)."""
    deep = tmp_path / "in"
    for i in range(16):
        deep = deep / (f"d{i:02d}" + "x" * 240)
    photo(deep / "photo.png")
    photo(tmp_path / "in" / "short.png")
    out = tmp_path / ("o" * 200)
    far = out / deep.relative_to(tmp_path / "in") / "photo.png"
    assert len(str(tmp_path / "in" / "x")) < 4096 <= len(str(far))
    r = cli("depth", tmp_path / "in", "-o", out, "--model", tiny_depth_model)
    assert r.exit_code == 1, (r.output, r.exception)
    assert lines(r.output)[0] == f"error: {far}: cannot write (path too long: {len(str(far))} bytes, the most is 4095)"
    assert [p.name for p in out.iterdir()] == ["short.png"]


def test_an_empty_output_is_written_again_not_skipped(tmp_path, tiny_depth_model):
    """An empty file under an output's name is never a finished output (what a crash left, before
    outputs were synced to the disk, or another program): a re-run skipped it as done ('1 skipped
    (output exists)', exit 0).  Now it is written again, with a warning line saying so."""
    src = tmp_path / "in"
    photo(src / "a.png"), photo(src / "b.png")
    out = tmp_path / "out"
    assert cli("depth", src, "-o", out, "--model", tiny_depth_model).exit_code == 0
    (out / "b.png").write_bytes(b"")
    kept = (out / "a.png").stat().st_mtime_ns
    r = cli("depth", src, "-o", out, "--model", tiny_depth_model)
    assert r.exit_code == 0, r.output
    assert lines(r.output)[0] == f"warning: {out / 'b.png'}: exists but is empty (cut short by a crash?); written again"
    assert Image.open(out / "b.png").size == Image.open(src / "b.png").size
    assert (out / "a.png").stat().st_mtime_ns == kept and "1 skipped (output exists)" in r.output


def test_an_empty_page_or_preview_beside_an_output_is_written_again(tmp_path, tiny_depth_model):
    """The same for the files written beside an output (NAME.html with --html, NAME.preview.png
    with --preview): an empty one was taken as finished ('2 skipped (output exists)', exit 0) and
    stayed empty.  Now it is written again from the existing output, with the warning line."""
    src = tmp_path / "in"
    photo(src / "a.png"), photo(src / "b.png")

    def rerun_with_empty(command: str, flag: str, side: Path):  # (a first run, the side emptied, a re-run)
        assert cli(command, src, "-o", side.parent, "--model", tiny_depth_model, flag).exit_code == 0
        side.write_bytes(b"")
        r = cli(command, src, "-o", side.parent, "--model", tiny_depth_model, flag)
        assert r.exit_code == 0, r.output
        assert lines(r.output)[0] == f"warning: {side}: exists but is empty (cut short by a crash?); written again"
        return r

    out = tmp_path / "out"
    r = rerun_with_empty("depth", "--preview", out / "b.preview.png")
    assert Image.open(out / "b.preview.png").size[0] > 0 and "1 completed (missing outputs added)" in r.output
    glbs = tmp_path / "glbs"
    rerun_with_empty("convert", "--html", glbs / "a.html")
    assert (glbs / "a.html").read_text().startswith("<!doctype html>")
    (glbs / "b.glb").unlink()  # the photo converted again: its empty page is not kept either
    (glbs / "b.html").write_bytes(b"")
    r = cli("convert", src, "-o", glbs, "--model", tiny_depth_model, "--html")
    assert r.exit_code == 0 and (glbs / "b.html").read_text().startswith("<!doctype html>"), r.output


@pytest.mark.parametrize("command", ["convert", "depth"])
def test_a_folder_in_the_place_of_a_page_or_preview_fails_its_photo(tmp_path, tiny_depth_model, command):
    """A folder named like the page (NAME.html) or preview (NAME.preview.png) written beside an
    output: a folder run wrote the output, said nothing of the page and ended '0 failed' (exit 0),
    and every re-run skipped the photo as done; one photo failed only after the work, with 'Is a
    directory'.  Now the photo fails at once, as with a folder in the place of the output itself."""
    src = tmp_path / "in"
    photo(src / "a.png"), photo(src / "b.png")
    out = tmp_path / "out"
    side = out / ("a.html" if command == "convert" else "a.preview.png")
    side.mkdir(parents=True)
    extra = ["--model", tiny_depth_model, "--html" if command == "convert" else "--preview"]
    for _ in range(2):  # a re-run too
        r = cli(command, src, "-o", out, *extra)
        assert r.exit_code == 1, r.output
        assert f"error: {side}: cannot write (a folder of that name is in the way; move it, or choose another -o)" in lines(r.output)
        assert not (out / ("a.glb" if command == "convert" else "a.png")).exists() and side.is_dir()
        assert (out / ("b.glb" if command == "convert" else "b.png")).is_file()
    r = cli(command, src / "a.png", "-o", out / ("a.glb" if command == "convert" else "a.png"), *extra)
    assert r.exit_code == 1 and lines(r.output) == [f"error: {side}: cannot write (a folder of that name is in the way; "
                                                    "move it, or choose another -o)"], r.output
    side.rmdir()  # a named pipe there: skipped as done on every run before, now in the way as well
    os.mkfifo(side)
    r = cli(command, src, "-o", out, *extra)
    assert r.exit_code == 1 and f"error: {side}: cannot write (a named pipe of that name is in the way; " \
        "move it, or choose another -o)" in lines(r.output), r.output


@pytest.mark.parametrize("command", ["convert", "depth"])
def test_an_empty_path_is_a_usage_error_not_the_current_folder(tmp_path, monkeypatch, tiny_depth_model, command):
    """``-o "$OUT"`` or ``"$IN"`` with the variable unset: an empty path was read as the current
    folder, so one photo's output overwrote ./photo.glb (./photo.png) and an empty INPUT converted
    every photo under the current folder.  Now either is a usage error (exit 2) and nothing is written."""
    monkeypatch.chdir(tmp_path)
    photo(tmp_path / "photo.png")
    mine = tmp_path / ("photo.glb" if command == "convert" else "photo.npy")
    mine.write_bytes(b"precious")
    for args, option in ((["photo.png", "-o", ""], "-o"), (["", "-o", "out/"], "INPUT"), (["photo.png", "", "-o", "out/"], "INPUT")):
        r = cli(command, *args, "--model", tiny_depth_model)
        assert r.exit_code == 2, r.output
        assert lines(r.output) == [f"error: {option}: an empty path names no file or folder (write . for the current folder)"]
    assert mine.read_bytes() == b"precious" and sorted(p.name for p in tmp_path.iterdir()) == sorted(["photo.png", mine.name])


def test_a_depth_map_given_as_the_photo_is_said(tmp_path, tiny_depth_model):
    """A folder walk skips the maps and previews photo3d wrote; named as INPUT, one was converted as a
    photo without a word (``photo3d convert depth.png`` meant as ``--depth``).  It still is, with a warning."""
    assert cli("depth", photo(tmp_path / "p.png"), "-o", tmp_path / "d.png", "--preview", "--model", tiny_depth_model).exit_code == 0
    for name, kind in (("d.png", "depth map"), ("d.preview.png", "depth preview")):
        r = cli("convert", tmp_path / name, "-o", tmp_path / "x.glb", "--model", tiny_depth_model)
        assert r.exit_code == 0, r.output
        assert lines(r.output)[0] == f"warning: {tmp_path / name}: a {kind} photo3d wrote, used as a photo"


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-5"])
def test_max_megapixels_must_be_a_positive_number(tmp_path, value):
    src = photo(tmp_path / "photo.png")
    r = cli("convert", src, "-o", tmp_path / "o.glb", "--depth", depth_npy(tmp_path / "d.npy"), "--max-megapixels", value)
    assert r.exit_code == 2, r.output
    (line,) = lines(r.output)
    assert line.startswith("error: --max-megapixels must be a finite positive number")
    # ("not 0", not "not 0.0"; and the pointer to --help that click's range checks give: helper-94)
    assert line.endswith(f"not {float(value):g} (see: photo3d convert --help)")
    assert not (tmp_path / "o.glb").exists()


def test_depth_with_a_folder_says_it_needs_a_photo_not_a_folder(tmp_path):
    """`--depth` with a folder holding one photo said "needs exactly one input photo", which did
    not say what was wrong (helper-94)."""
    photo(tmp_path / "in" / "photo.png")
    r = cli("convert", tmp_path / "in", "-o", tmp_path / "o", "--depth", depth_npy(tmp_path / "d.npy"))
    assert r.exit_code == 2 and lines(r.output) == [
        f"error: --depth needs exactly one input photo, not a folder ({tmp_path / 'in'})"], r.output


def _exif_with_a_bad_tag(path: Path) -> Path:
    """A JPEG whose EXIF block has a tag pointing past its end (PIL warns while reading it)."""
    ifd = (struct.pack("<2sHI", b"II", 42, 8) + struct.pack("<H", 1)
           + struct.pack("<HHII", 0x010E, 2, 1000, 9999) + struct.pack("<I", 0))
    Image.fromarray(np.full((72, 96, 3), 128, np.uint8)).save(path, exif=b"Exif\x00\x00" + ifd)
    return path


@pytest.mark.slow
def test_every_message_is_one_line(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "two\nlines.jpg").write_text("not a photo")
    (folder / "esc\x1b[31mape.jpg").write_text("not a photo")
    (folder / "bidi\u202egpj.jpg").write_text("not a photo")
    _exif_with_a_bad_tag(folder / "exif.jpg")
    p = cli_process("convert", folder, "-o", tmp_path / "out", "--summary", tmp_path / "s.json")
    # (no model needed to fail the bad files; the good one converts with the bundled model)
    assert p.returncode == 1, p.stderr
    got = lines(p.stderr)
    assert f"error: {folder}/two\\nlines.jpg: not an image (unknown or unsupported format; photo3d reads JPEG, PNG, TIFF, WebP, BMP, GIF, HEIC and AVIF)" in got
    assert f"error: {folder}/esc\\x1b[31mape.jpg: not an image (unknown or unsupported format; photo3d reads JPEG, PNG, TIFF, WebP, BMP, GIF, HEIC and AVIF)" in got
    assert f"error: {folder}/bidi\\u202egpj.jpg: not an image (unknown or unsupported format; photo3d reads JPEG, PNG, TIFF, WebP, BMP, GIF, HEIC and AVIF)" in got
    for ln in got:  # no raw control character, no Python warning block
        assert ln.isprintable(), ln
        assert not ln.lstrip().startswith("warnings.warn") and "UserWarning" not in ln.split(":")[0], ln
    assert any(ln.startswith(f"warning: {folder}/exif.jpg: UserWarning: Tag data larger than file") for ln in got)
    assert (tmp_path / "out" / "exif.glb").is_file()


def test_a_file_name_that_is_not_utf8_gets_its_viewer_page(tmp_path):
    """A photo whose name is not UTF-8 (Latin-1 bytes from an old camera card or archive): the
    ``--html`` page is written, its title shows the byte escaped as in the messages."""
    src = photo(tmp_path / os.fsdecode(b"caf\xe9.png"))
    r = cli("convert", src, "-o", tmp_path / "out", "--depth", depth_npy(tmp_path / "d.npy"), "--html")
    assert r.exit_code == 0, r.output
    page = (tmp_path / "out" / os.fsdecode(b"caf\xe9.html")).read_text(encoding="utf-8")
    assert "<title>caf\\xe9</title>" in page
    glb = shutil.copy(tmp_path / "out" / os.fsdecode(b"caf\xe9.glb"), tmp_path / "cafe.glb")  # (the validator takes UTF-8 paths)
    assert_valid_glb(glb)


def _model_returning(path: Path, value: float) -> Path:
    import warnings

    import torch

    class Broken(torch.nn.Module):
        def __init__(self, v: float):
            super().__init__()
            self.v = v

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=1, keepdim=True) * 0.0 + self.v

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(Broken(value)), str(path))
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_model_giving_nan_or_inf_is_an_error_not_a_flat_map(tmp_path, value):
    model = _model_returning(tmp_path / "broken.pt", value)
    src = photo(tmp_path / "photo.png")
    r = cli("depth", src, "-o", tmp_path / "d.png", "--model", model)
    assert r.exit_code == 1, r.output
    assert lines(r.output) == [f"error: {model}: depth model output holds NaN or infinite values (a broken model)"]
    assert not (tmp_path / "d.png").exists()


def test_a_torch_load_error_is_a_readable_sentence(tmp_path):
    import torch

    torch.save({"weights": torch.zeros(3)}, tmp_path / "state_dict.pt")  # not TorchScript
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(5000))
    src = photo(tmp_path / "photo.png")
    for name, reason in (("state_dict.pt", "a PyTorch file, but not TorchScript: save it with torch.jit.save"),
                         ("random.pt", "not a TorchScript archive")):
        r = cli("depth", src, "-o", tmp_path / "d.png", "--model", tmp_path / name)
        assert r.exit_code == 1, r.output
        assert lines(r.output) == [f"error: {tmp_path / name}: not a TorchScript depth model ({reason})"]


def test_summarize_cuts_long_messages_at_a_word():
    from photo3d.errors import summarize

    e = RuntimeError("first line is " + "long " * 60 + "\nException raised from foo at bar.cpp:12")
    s = summarize(e, limit=80)
    assert len(s) <= 82 and s.endswith(" …") and s[:-2].endswith("long") and "\n" not in s


# ------------------------------------------------------------------------------------------
# First run


def test_one_photo_to_an_existing_file_without_a_suffix_says_why(tmp_path):
    """``-o /dev/null`` (or any existing file without a suffix) for one photo: the reason was
    'several outputs need a folder', of a run with one input."""
    src, target = photo(tmp_path / "p.png"), tmp_path / "notes"
    target.write_text("mine")
    for command, suffix in (("convert", ".glb"), ("depth", ".png")):
        r = cli(command, src, "-o", target)
        assert r.exit_code == 2 and lines(r.output) == [
            f"error: -o {target}: exists and is not a folder (an -o without a file suffix ({suffix}) names a folder)"], r.output
    r = cli("depth", src, photo(tmp_path / "q.png"), "-o", target)
    assert lines(r.output) == [f"error: -o {target}: exists and is not a folder (several outputs need a folder)"]
    assert target.read_text() == "mine"
    # a file with a suffix, written as a folder: the / kept, and it is what makes it a folder (the
    # reason spoke of a missing suffix, helper-65)
    glb = tmp_path / "p.glb"
    glb.write_text("mine")
    r = cli("convert", src, "-o", f"{glb}/")
    assert r.exit_code == 2 and lines(r.output) == [
        f"error: -o {glb}/: exists and is not a folder (the trailing / names a folder)"], r.output
    assert glb.read_text() == "mine"


def test_a_folder_input_with_a_file_output_is_a_usage_error(tmp_path):
    photo(tmp_path / "in" / "a.png")
    r = cli("convert", tmp_path / "in", "-o", tmp_path / "x.glb")
    assert r.exit_code == 2, r.output
    assert lines(r.output) == [f"error: -o {tmp_path / 'x.glb'}: a folder input needs an output folder (e.g. -o {tmp_path / 'x'}/)"]
    assert not (tmp_path / "x.glb").exists()
    r = cli("convert", tmp_path / "in" / "a.png", photo(tmp_path / "in" / "b.png"), "-o", tmp_path / "y.glb")
    assert r.exit_code == 2 and "several inputs need an output folder" in r.output


def test_rerun_with_html_writes_the_missing_page_and_keeps_the_glb(tmp_path):
    src, depth = photo(tmp_path / "in" / "photo.png"), depth_npy(tmp_path / "d.npy")
    out = tmp_path / "out.glb"
    assert cli("convert", src, "-o", out, "--depth", depth).exit_code == 0
    stamp = (out.stat().st_ino, out.stat().st_mtime_ns)
    r = cli("convert", src, "-o", out, "--depth", depth, "--html", "--skip-existing")
    assert r.exit_code == 0, r.output
    assert (out.stat().st_ino, out.stat().st_mtime_ns) == stamp  # the GLB was kept, not rebuilt
    page = out.with_suffix(".html").read_text()
    assert "Photo3D.start" in page
    import base64

    b64 = re.search(r'id="photo3d-glb" type="application/octet-stream">([^<]*)<', page)[1]
    assert base64.b64decode(b64) == out.read_bytes()  # the page shows that very GLB
    assert lines(r.output) == [f"{src} -> {out.with_suffix('.html')} (open in a browser): "
                               f"missing outputs written from the existing out.glb"]
    assert_valid_glb(out)


def test_a_rerun_does_not_put_a_glb_that_points_outside_itself_into_a_page(tmp_path, tiny_depth_model):
    """A re-run adding --html embedded the existing GLB if it carried photo3d's metadata: one edited
    (in a shared OUT) so that its texture is a web address made the "offline" page fetch it when
    opened (helper-54).  photo3d embeds every image and buffer: such a GLB fails the input now."""
    from photo3d.export import _pack_glb

    (tmp_path / "in").mkdir()
    photo(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert cli("convert", tmp_path / "in", "-o", out, "--model", tiny_depth_model).exit_code == 0
    tree, binary = read_glb((out / "a.glb").read_bytes())
    tree["images"][0] = {"uri": "https://tracker.example/pixel.jpg", "mimeType": "image/jpeg"}
    (out / "a.glb").write_bytes(_pack_glb(tree, binary))
    r = cli("convert", tmp_path / "in", "-o", out, "--model", tiny_depth_model, "--html")
    assert r.exit_code == 1 and [ln for ln in lines(r.output) if ln.startswith("error:")] == [
        f"error: {tmp_path / 'in' / 'a.png'}: the existing {out / 'a.glb'} is not a whole 3D photo (it refers to files "
        "or web addresses outside it, which photo3d never writes); remove it, or run again with --overwrite"], r.output
    assert not (out / "a.html").exists()
    tree["images"] = 5  # (not a list: an internal error, once the images were looked at)
    (out / "a.glb").write_bytes(_pack_glb(tree, binary))
    r = cli("convert", tmp_path / "in", "-o", out, "--model", tiny_depth_model, "--html")
    assert r.exit_code == 1 and "is not a whole 3D photo (" in r.output and "internal error" not in r.output, r.output


def test_a_rerun_does_not_build_on_a_broken_existing_glb(tmp_path, tiny_depth_model):
    """A re-run adding --html (or --format mp4 beside the GLB) uses the existing GLB: one cut short
    (an interrupted copy) or not a GLB at all went into the page as it was (a viewer that shows
    nothing, exit 0), or failed the video with 'internal error (error: unpack_from requires a
    buffer ...)'.  Now the input fails, naming the GLB and what to do; --overwrite rebuilds it."""
    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        photo(tmp_path / "in" / f"{name}.png", seed=ord(name))
    out = tmp_path / "out"
    assert cli("convert", tmp_path / "in", "-o", out, "--model", tiny_depth_model).exit_code == 0
    whole = (out / "a.glb").read_bytes()
    (out / "a.glb").write_bytes(whole[: len(whole) // 2])
    (out / "b.glb").write_bytes(b"not a 3D photo at all")
    why = {"a": f"cut short: {len(whole) // 2:,} of its {len(whole):,} bytes", "b": "not a GLB file"}
    want = [f"error: {tmp_path / 'in' / f'{n}.png'}: the existing {out / f'{n}.glb'} is not a whole 3D photo ({why[n]}); "
            "remove it, or run again with --overwrite" for n in "ab"]
    # (a plain re-run kept both as "skipped (output exists)", exit 0, and so did the GLB job beside
    # an mp4, whose own job then blamed the GLB: new-user trial, session 23)
    for args in ((), ("--html",), ("--format", "glb", "--format", "mp4", "--seconds", "0.1")):
        r = cli("convert", tmp_path / "in", "-o", out, "--model", tiny_depth_model, "--summary", tmp_path / "s.json", *args)
        assert r.exit_code == 1 and [ln for ln in lines(r.output) if ln.startswith("error:")] == want, r.output
        assert sorted(p.name for p in out.iterdir()) == ["a.glb", "b.glb"]
        assert "skipped" not in {x["status"] for x in json.loads((tmp_path / "s.json").read_text())["results"]}, args
    r = cli("convert", tmp_path / "in", "-o", out, "--model", tiny_depth_model, "--html", "--overwrite")
    assert r.exit_code == 0, r.output
    for n in "ab":
        assert_valid_glb(out / f"{n}.glb")
        assert (out / f"{n}.html").exists()


def _png_claiming(w: int, h: int, length: int) -> bytes:
    """``length`` bytes of PNG whose header claims an RGB image of w×h (a text chunk pads it)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    data, end = chunk(b"IDAT", zlib.compress(b"\x00" * 64)), chunk(b"IEND", b"")
    pad = length - len(head) - len(data) - len(end) - 12 - 4  # (a tEXt chunk: 12 bytes, keyword 4)
    assert pad >= 0
    return head + chunk(b"tEXt", b"pad\x00" + b" " * pad) + data + end


def test_a_rerun_refuses_an_existing_glb_that_is_no_file_or_claims_gigapixels(tmp_path, tiny_depth_model):
    """What a re-run builds on is read with care (a security review): an existing NAME.glb that is
    a named pipe hung the run (a device such as /dev/zero filled the memory; now it is in the way of
    the output, as a folder is, and never read); one whose texture
    (a few KB of PNG) claims 20,000 × 20,000 pixels was decoded to render a GIF (2.7 GB; here
    12,000²: Pillow opens up to 179 MP); one whose
    JSON is not an object, or whose material names a texture it lacks (read out of bounds), was an
    'internal error' or rendered.  Each fails its photo in one line now."""
    (tmp_path / "in").mkdir()
    for name in "cdefg":
        photo(tmp_path / "in" / f"{name}.png", seed=ord(name))
    out = tmp_path / "out"
    assert cli("convert", tmp_path / "in", "-o", out, "--model", tiny_depth_model).exit_code == 0
    (out / "c.glb").unlink()
    os.mkfifo(out / "c.glb")
    tree, binary = read_glb((out / "d.glb").read_bytes())
    view = tree["bufferViews"][tree["images"][0]["bufferView"]]
    start = view.get("byteOffset", 0)
    bomb = _png_claiming(12000, 12000, view["byteLength"])
    glb = bytearray((out / "d.glb").read_bytes())
    at = glb.find(binary) + start
    glb[at:at + len(bomb)] = bomb
    (out / "d.glb").write_bytes(bytes(glb))
    body = b"[]  "
    (out / "e.glb").write_bytes(b"glTF" + struct.pack("<II", 2, 20 + len(body)) + struct.pack("<II", len(body), 0x4E4F534A) + body)
    from photo3d.export import _pack_glb

    tree, binary = read_glb((out / "f.glb").read_bytes())
    tree["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"]["index"] = 7  # (read out of bounds by the rasterizer)
    (out / "f.glb").write_bytes(_pack_glb(tree, binary))
    tree, binary = read_glb((out / "g.glb").read_bytes())
    del tree["extras"]["photo3d"]["fov_x_deg"]  # (the renderer's KeyError)
    (out / "g.glb").write_bytes(_pack_glb(tree, binary))
    why = {"d": "a PNG texture: photo3d writes JPEG",
           "e": "its JSON is not an object", "f": "a material names texture 7 of 1",
           "g": "not as photo3d writes it (no 'fov_x_deg')"}

    def said(n: str) -> str:  # (the pipe is no output at all: in the way, as a folder is)
        if n == "c":
            return f"error: {out / 'c.glb'}: cannot write (a named pipe of that name is in the way; move it, or choose another -o)"
        return (f"error: {tmp_path / 'in' / f'{n}.png'}: the existing {out / f'{n}.glb'} is not a whole 3D photo ({why[n]}); "
                "remove it, or run again with --overwrite")

    def hung(*_):
        raise TimeoutError("the run hung on the named pipe")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        # (a page of d, f or g was written before helper-60: only videos looked inside; now every output does)
        for args, names in ((("--html",), "cdefg"), (("--format", "glb", "--format", "gif", "--seconds", "0.2"), "cdefg")):
            r = cli("convert", tmp_path / "in", "-o", out, "--model", tiny_depth_model, *args)
            assert r.exit_code == 1, r.output
            assert [ln for ln in lines(r.output) if ln.startswith("error:")] == [said(n) for n in names], r.output
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert not (out / "d.gif").exists() and not any((out / f"{n}.html").exists() for n in "cdefg")
    assert (out / "c.gif").is_file()  # (the pipe is no GLB to render from: c.gif is made from the photo)


def test_a_link_in_the_output_tree_does_not_lead_writes_outside_out(tmp_path, tiny_depth_model):
    """A subfolder of OUT that is a symbolic link to a folder elsewhere took that subfolder's
    outputs there, and --overwrite replaced a file outside OUT (a security review).  Those photos
    fail now, naming the link; the others are written; a link that stays inside OUT is followed."""
    for rel in ("sub/x.png", "ok/y.png", "top.png"):
        photo(tmp_path / "in" / rel, seed=len(rel))
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.png").write_bytes(b"not yours")
    (out / "inside").mkdir(parents=True)
    (out / "sub").symlink_to("../elsewhere")
    (out / "ok").symlink_to("inside")
    from photo3d.io import HOST_TAG

    # a file there named as photo3d's temp of x.png by a process that is gone: the stale temps'
    # cleanup deleted it through the link, although the write was refused (a security review, helper-77)
    (elsewhere / f".x.png.999999-{HOST_TAG}-abcdefgh.tmp").write_bytes(b"not yours either")
    for extra in ((), ("--overwrite",)):
        r = cli("depth", tmp_path / "in", "-o", out, "--model", tiny_depth_model, *extra)
        assert r.exit_code == 1, r.output
        assert [ln for ln in lines(r.output) if ln.startswith("error:")] == [
            f"error: {out / 'sub' / 'x.png'}: cannot write ({out / 'sub'} is a link to {elsewhere}, outside {out})"], r.output
        assert (elsewhere / "x.png").read_bytes() == b"not yours"
        assert sorted(p.name for p in elsewhere.iterdir()) == [f".x.png.999999-{HOST_TAG}-abcdefgh.tmp", "x.png"]
        assert (out / "top.png").is_file() and (out / "inside" / "y.png").is_file()


def test_rerun_of_a_folder_with_preview_adds_only_the_previews(tmp_path, tiny_depth_model):
    for i in range(2):
        photo(tmp_path / "in" / f"p{i}.png", seed=i)
    out = tmp_path / "out"
    assert cli("depth", tmp_path / "in", "-o", out, "--model", tiny_depth_model).exit_code == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    summary = tmp_path / "s.json"
    r = cli("depth", tmp_path / "in", "-o", out, "--model", tiny_depth_model, "--preview", "--summary", summary)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p0.preview.png", "p1.png", "p1.preview.png"]
    assert {n: (out / n).stat().st_mtime_ns for n in stamps} == stamps
    assert "0 depth map(s) written, 2 completed (missing outputs added), 0 skipped (output exists), 0 failed" in r.output
    # with --timings such a line says its time too (it said nothing more: helper-106)
    (out / "p0.preview.png").unlink()
    r = cli("depth", tmp_path / "in", "-o", out, "--model", tiny_depth_model, "--preview", "--timings")
    assert re.search(r"missing outputs written from the existing p0\.png, \d+\.\d\d s$", lines(r.output)[0]), r.output
    # the summary's records: the previews written, their bytes (they were the kept maps' bytes, helper-66)
    for rec in json.loads(summary.read_text())["results"]:
        preview = Path(rec["output"]).with_suffix(".preview.png")
        assert rec["status"] == "ok" and rec["outputs"] == [str(preview)] and "finished" in rec["report"], rec
        assert rec["bytes"] == preview.stat().st_size, rec


def test_a_folder_run_of_another_format_keeps_the_preview_beside_it(tmp_path, tiny_depth_model):
    """``depth in -o out --preview``, then the same with ``--format npy``: the NPY map shares the
    PNG's preview name, and the preview was rewritten without --overwrite (helper-106), as if a
    kept output.  It is kept, with a warning line; --overwrite rewrites it."""
    photo(tmp_path / "in" / "p.png")
    out = tmp_path / "out"
    assert cli("depth", tmp_path / "in", "-o", out, "--model", tiny_depth_model, "--preview").exit_code == 0
    before = (out / "p.preview.png").read_bytes()
    (out / "p.preview.png").touch()
    stamp = (out / "p.preview.png").stat().st_mtime_ns
    r = cli("depth", tmp_path / "in", "-o", out, "--model", tiny_depth_model, "--preview", "--format", "npy")
    assert r.exit_code == 0, r.output
    assert "p.preview.png kept (it exists: an earlier run's); --overwrite rewrites it" in r.output, r.output
    assert (out / "p.preview.png").stat().st_mtime_ns == stamp and (out / "p.npy").is_file()
    assert f"-> {out / 'p.npy'}:" in r.output  # (the preview is not named as written)
    r = cli("depth", tmp_path / "in", "-o", out, "--model", tiny_depth_model, "--preview", "--format", "npy", "--overwrite")
    assert r.exit_code == 0 and "kept" not in r.output, r.output
    assert (out / "p.preview.png").stat().st_mtime_ns != stamp
    assert np.array_equal(np.asarray(Image.open(out / "p.preview.png")), np.asarray(Image.open(io.BytesIO(before))))


def test_the_result_line_names_every_output(tmp_path, tiny_depth_model):
    src = photo(tmp_path / "photo.png")
    out = tmp_path / "coffee.glb"
    r = cli("convert", src, "-o", out, "--model", tiny_depth_model, "--html")
    assert r.exit_code == 0, r.output
    (line,) = lines(r.output)
    assert line.startswith(f"{src} -> {out}, {tmp_path / 'coffee.html'} (open in a browser): ")
    assert "hole" not in line and re.search(r"layer\(s\), [\d,]+ vertices, \d+\.\d\d MB, \d+\.\d\d s$", line)
    assert_valid_glb(out)
    # single-file depth says what it wrote, too
    r = cli("depth", src, "-o", tmp_path / "d.png", "--model", tiny_depth_model, "--preview")
    assert r.exit_code == 0, r.output
    (line,) = lines(r.output)
    assert line.startswith(f"{src} -> {tmp_path / 'd.png'}, {tmp_path / 'd.preview.png'}: "
                           f"depth from model (tiny), 96x72 depth map (larger = nearer), "), line


def test_an_output_written_as_a_folder_is_a_folder(tmp_path, tiny_depth_model):
    """``-o NAME/`` is a folder even when NAME has a suffix (``v1.0/``, ``clips.mp4/``): the outputs
    go into it, never into a file called NAME; ``model import -o DIR/`` is refused before any work."""
    src = photo(tmp_path / "a.png")
    r = cli("depth", src, "-o", f"{tmp_path / 'v1.0'}/", "--model", tiny_depth_model)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "v1.0" / "a.png").is_file()
    r = cli("convert", src, "-o", f"{tmp_path / 'clips.glb'}/", "--depth", depth_npy(tmp_path / "d.npy"))
    assert r.exit_code == 0, r.output
    assert_valid_glb(tmp_path / "clips.glb" / "a.glb")
    r = cli("convert", src, "-o", tmp_path / "one.glb", "--depth", tmp_path / "d.npy")  # (no slash: the file)
    assert r.exit_code == 0 and (tmp_path / "one.glb").is_file(), r.output
    r = cli("model", "import", tmp_path, "-o", f"{tmp_path / 'models'}/")
    assert r.exit_code == 2 and not (tmp_path / "models").exists()
    assert lines(r.output) == [f"error: -o {tmp_path / 'models'}/: names a folder; give the file to write "
                               f"(e.g. -o {tmp_path / 'models' / 'tiefenrausch.pt'})"]
    r = cli("model", "import", tmp_path, "-o", "")  # (an unset variable: not the current folder)
    assert r.exit_code == 2 and lines(r.output) == ["error: -o: an empty path names no file (e.g. -o tiefenrausch.pt)"]
    # a path through a file: said before the conversion (after it, as "cannot write (Not a directory)", helper-65)
    (tmp_path / "notes.txt").write_text("mine")
    r = cli("model", "import", tmp_path, "-o", tmp_path / "notes.txt" / "t.pt")  # (tmp_path holds no model: no work either way)
    assert r.exit_code == 2 and lines(r.output) == [
        f"error: -o {tmp_path / 'notes.txt' / 't.pt'}: cannot write into {tmp_path / 'notes.txt'} ({tmp_path / 'notes.txt'} is a file)"], r.output


def test_model_import_writes_only_a_model_file_that_model_loads(tmp_path):
    """``model import DIR -o FILE``: FILE must be a ``.pt`` not named like the bundled model, checked
    before any work (``-o DIR/tiefenrausch_init.pb`` replaced the Caffe2 weights it was reading;
    ``-o p3d-s.pt`` wrote a file that ``--model`` then refuses)."""
    folder = tmp_path / "tr"
    folder.mkdir()
    for name in ("tiefenrausch.pb", "tiefenrausch_init.pb"):
        (folder / name).write_bytes(b"caffe2 " + name.encode())
    for out, reason in (
        (folder / "tiefenrausch_init.pb", f"a depth model is a TorchScript .pt file, not .pb (e.g. -o {folder / 'tiefenrausch_init.pt'})"),
        (tmp_path / "tr.glb", f"a depth model is a TorchScript .pt file, not .glb (e.g. -o {tmp_path / 'tr.pt'})"),
        (tmp_path / "p3d-s.pt", "p3d-s.pt is the bundled model's name and --model refuses any other file by that name; "
                                f"choose another (e.g. -o {tmp_path / 'tiefenrausch.pt'})"),
    ):
        r = cli("model", "import", folder, "-o", out)
        assert r.exit_code == 2 and lines(r.output) == [f"error: -o {out}: {reason}"], r.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["tiefenrausch.pb", "tiefenrausch_init.pb", "tr"]
    assert (folder / "tiefenrausch_init.pb").read_bytes() == b"caffe2 tiefenrausch_init.pb"


def test_one_file_shows_progress_on_a_terminal_and_nothing_in_a_pipe(tmp_path):
    from photo3d.batch import batch_command

    src = photo(tmp_path / "a photo.png")
    task = _thumb()
    for terminal in (True, False):
        buf = io.StringIO()
        console = Console(file=buf, force_terminal=terminal, width=100, highlight=False)
        assert batch_command(task, [src], tmp_path / f"{terminal}.png", ".png", console=console) == 0
        shown = "a photo.png" in buf.getvalue()
        assert shown is terminal, buf.getvalue()


def test_model_import_shows_a_spinner_on_a_terminal_and_nothing_in_a_pipe(tmp_path, monkeypatch):
    """``photo3d model import`` works for several seconds: on a terminal a spinner says so."""
    import photo3d.cli
    import photo3d.depth.tiefenrausch

    monkeypatch.setattr(photo3d.depth.tiefenrausch, "import_tiefenrausch_file", lambda folder, out: Path(out).write_bytes(b"pt"))
    for terminal in (True, False):
        buf = io.StringIO()
        monkeypatch.setattr(photo3d.cli, "err", Console(file=buf, force_terminal=terminal, width=100, highlight=False))
        out = tmp_path / f"{terminal}.pt"
        r = cli("model", "import", tmp_path / "tiefenrausch", "-o", out)
        assert r.exit_code == 0 and out.is_file(), r.output
        assert ("importing " + str(tmp_path / "tiefenrausch") in buf.getvalue()) is terminal, buf.getvalue()
        assert buf.getvalue().rstrip().endswith(f"wrote {out}")


def test_standard_input_and_output_are_usage_errors(tmp_path, monkeypatch):
    """``-`` is not a file: as INPUT, -o or --summary it is one line, exit 2 (not "-: no such file",
    exit 1; --summary - wrote a file called ``-``)."""
    monkeypatch.chdir(tmp_path)
    r = cli("depth", photo(tmp_path / "a.png"), "-o", tmp_path / "d.png", "--summary", "-")
    assert r.exit_code == 2 and lines(r.output) == [
        "error: --summary -: cannot write to standard output; give a file name"], r.output
    r = cli("depth", "-", "-o", tmp_path / "d.png")
    assert r.exit_code == 2 and lines(r.output) == [
        "error: INPUT -: cannot read a photo from standard input; give a file or a folder"], r.output
    r = cli("depth", photo(tmp_path / "a.png"), "-o", "-")
    assert r.exit_code == 2 and lines(r.output) == ["error: -o -: cannot write to standard output; give a file or a folder"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_an_empty_folder_or_a_glob_matching_nothing_fails(tmp_path):
    (tmp_path / "empty").mkdir()
    r = cli("convert", tmp_path / "empty", "-o", tmp_path / "out", "--summary", tmp_path / "s.json")
    assert r.exit_code == 1 and lines(r.output) == [f"error: no images found in {tmp_path / 'empty'}"]
    record = json.loads((tmp_path / "s.json").read_text())  # (no worker started: it said 1, helper-79)
    assert record["fatal"] == "no images found" and record["workers"] == 0
    (tmp_path / "s.json").unlink()
    photo(tmp_path / "in" / "a.png")
    r = cli("convert", tmp_path / "in", "-o", tmp_path / "out", "--glob", "*.jpg")
    assert r.exit_code == 1 and lines(r.output) == [f"error: no images found in {tmp_path / 'in'} matching *.jpg"]
    for empty in ("", " "):  # a usage error, not "no images found in DIR matching " (helper-117)
        r = cli("depth", tmp_path / "in", "-o", tmp_path / "out", "--glob", empty)
        assert r.exit_code == 2 and lines(r.output) == [
            "error: --glob: an empty pattern matches no file name; give one such as '*.jpg'"], r.output
    (tmp_path / "gifs").mkdir()  # a folder of GIFs: they are used only when named, and it says so
    Image.new("RGB", (20, 20)).save(tmp_path / "gifs" / "a.gif")
    r = cli("convert", tmp_path / "gifs", "-o", tmp_path / "out")
    assert r.exit_code == 1 and lines(r.output) == [
        f"error: no images found in {tmp_path / 'gifs'} (GIFs are used only when named: their first frame)"]


def test_an_empty_folder_beside_other_inputs_is_a_warning(tmp_path, tiny_depth_model):
    """``photo3d depth a.png empty/ -o out/``: one warning line for the folder, the rest runs."""
    a = photo(tmp_path / "a.png")
    (tmp_path / "empty").mkdir()
    photo(tmp_path / "pngs" / "b.png")
    r = cli("depth", a, tmp_path / "empty", tmp_path / "pngs", "-o", tmp_path / "out", "--model", tiny_depth_model,
            "--glob", "*.png")
    assert r.exit_code == 0, r.output
    assert [ln for ln in lines(r.output) if ln.startswith(("warning", "error"))] == [
        f"warning: {tmp_path / 'empty'}: holds no photos matching *.png; skipped"]
    assert (tmp_path / "out" / "a.png").is_file() and (tmp_path / "out" / "pngs" / "b.png").is_file()
    r = cli("convert", a, tmp_path / "empty", "-o", tmp_path / "glbs", "--model", tiny_depth_model)
    assert r.exit_code == 0, r.output
    assert f"warning: {tmp_path / 'empty'}: holds no photos; skipped" in lines(r.output)
    assert_valid_glb(tmp_path / "glbs" / "a.glb")


def test_depth_prints_its_stage_times_with_timings(tmp_path, tiny_depth_model):
    """``photo3d depth --timings``, as ``convert --timings``: the result line ends with the stages'
    seconds (it was ``No such option: --timings``, exit 2)."""
    src = photo(tmp_path / "a.png")
    r = cli("depth", src, "-o", tmp_path / "a.npy", "--model", tiny_depth_model, "--timings")
    assert r.exit_code == 0, r.output
    (line,) = lines(r.output)
    # (model: loading and first-call weight packing apart from predicting, since session 16)
    assert re.search(r" depth map \(larger = nearer\), \d+\.\d\d s \(read \d+\.\d\d, model \d+\.\d\d, predict \d+\.\d\d, "
                     r"write \d+\.\d\d\)$", line), line
    r = cli("depth", src, "-o", tmp_path / "b.npy", "--model", tiny_depth_model, "--summary", tmp_path / "s.json")
    assert r.exit_code == 0 and lines(r.output)[0].endswith(" s"), r.output
    # the summary's stage seconds to 0.1 ms, as convert's (they had 17 digits: helper-106)
    seconds = json.loads((tmp_path / "s.json").read_text())["results"][0]["report"]["seconds"]
    assert set(seconds) == {"read", "model", "predict", "write"}
    assert all(v == round(v, 4) for v in seconds.values()), seconds


def test_depth_timings_count_the_model_loading_of_a_one_photo_run(tmp_path):
    """``photo3d depth x.jpg --timings`` said 0.88 s of a 4 s run (helper-61): the batch runner loaded
    the model before the file's clock started.  Now the model loads in the background while the photo
    is read (as in ``convert``), and what the file waits for is its ``model`` stage: in a fresh
    process, the stages add up to most of the run."""
    code = ("import sys, time, json; t = time.perf_counter(); from photo3d.cli import app\n"
            "try:\n    app(['depth', sys.argv[1], '-o', sys.argv[2], '--summary', sys.argv[3]])\n"
            "except SystemExit:\n    pass\n"
            "print(json.dumps({'wall': time.perf_counter() - t}))")
    s = tmp_path / "s.json"
    r = subprocess.run([sys.executable, "-c", code, str(REPO / "examples" / "coffee.jpg"), str(tmp_path / "c.png"), str(s)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env())
    assert r.returncode == 0, r.stderr
    wall = json.loads(r.stdout.strip().splitlines()[-1])["wall"]
    (rec,) = json.loads(s.read_text())["results"]
    stages = rec["report"]["seconds"]
    assert stages["model"] > 0 and sum(stages.values()) >= 0.6 * wall, (stages, wall)


def test_an_input_given_twice_under_one_name_is_one_input(tmp_path, tiny_depth_model):
    """``photo3d depth in in/ -o out`` (a folder repeated, as shell completion writes it) is the run
    of ``in`` alone: its tree mirrored into ``out``, the photos and photo3d's own maps counted once,
    and one warning line.  It went into ``out/in/`` (as for two folders) and said ``skipped 4 depth
    maps`` of 2, without a word about the repeat."""
    src = tmp_path / "in"
    photo(src / "a.png")
    photo(src / "b.jpg", seed=3)
    r = cli("depth", src, "-o", src / "depth", "--model", tiny_depth_model)
    assert r.exit_code == 0, r.output
    r = cli("depth", src, f"{src}/", "-o", tmp_path / "out", "--model", tiny_depth_model)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    warned = [ln for ln in lines(r.output) if ln.startswith("warning")]
    assert warned == [f"warning: {src}/: given twice; used once",
                      f"warning: skipped 2 depth maps photo3d wrote, not photos (such as {src / 'depth' / 'a.png'})"]
    assert lines(r.output)[-1].startswith("2 depth map(s) written, 0 skipped (output exists), 0 failed")
    # one photo given twice is one photo: -o may name its file
    r = cli("depth", src / "a.png", src / "a.png", "-o", tmp_path / "a.npy", "--model", tiny_depth_model)
    assert r.exit_code == 0 and (tmp_path / "a.npy").is_file(), r.output
    assert lines(r.output)[0] == f"warning: {src / 'a.png'}: given twice; used once"
    # given 500 times: one line, not 499 of the same
    r = cli("depth", *[src / "a.png"] * 500, "-o", tmp_path / "a.npy", "--model", tiny_depth_model)
    assert r.exit_code == 0 and [ln for ln in lines(r.output) if ln.startswith("warning")] == [
        f"warning: {src / 'a.png'}: given 500 times; used once"], r.output
    # a photo and the folder that holds it are two inputs, as before
    r = cli("depth", src, src / "a.png", "-o", tmp_path / "two", "--model", tiny_depth_model)
    assert r.exit_code == 0 and (tmp_path / "two" / "in" / "b.png").is_file(), r.output


def test_a_walk_skips_the_depth_maps_photo3d_wrote(tmp_path, tiny_depth_model):
    """Depth maps written into the input folder are not photos of a later run over that folder:
    they are skipped, with one line for all of them; a grey 16-bit PNG from elsewhere is a photo."""
    src = tmp_path / "in"
    photo(src / "a.png")
    photo(src / "b.jpg", seed=3)
    Image.fromarray((np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20)).save(src / "grey16.png")
    r = cli("depth", src, "-o", src / "depth", "--preview", "--model", tiny_depth_model)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (src / "depth").iterdir()) == [
        "a.png", "a.preview.png", "b.png", "b.preview.png", "grey16.png", "grey16.preview.png"]
    r = cli("depth", src, "-o", tmp_path / "again", "--model", tiny_depth_model)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["a.png", "b.png", "grey16.png"]
    warned = [ln for ln in lines(r.output) if ln.startswith("warning")]
    # (3 maps and their 3 previews: it said "skipped 6 depth maps")
    assert warned == [f"warning: skipped 3 depth maps and 3 previews photo3d wrote, not photos (such as {src / 'depth' / 'a.png'})"]
    r = cli("convert", src / "depth", "-o", tmp_path / "glbs", "--glob", "a.png", "--model", tiny_depth_model)
    assert r.exit_code == 1 and lines(r.output) == [
        f"warning: {src / 'depth' / 'a.png'}: skipped: a depth map photo3d wrote, not a photo",
        f"error: no images found in {src / 'depth'} matching a.png (only what photo3d wrote, skipped above)"]
    r = cli("convert", src / "depth", "-o", tmp_path / "glbs", "--glob", "a.preview.png", "--model", tiny_depth_model)
    assert r.exit_code == 1 and lines(r.output)[0] == \
        f"warning: {src / 'depth' / 'a.preview.png'}: skipped: a depth preview photo3d wrote, not a photo", r.output
    r = cli("depth", src / "depth" / "a.png", "-o", tmp_path / "named.png", "--model", tiny_depth_model)
    assert r.exit_code == 0 and (tmp_path / "named.png").is_file()  # named on the command line: taken
    # (a --glob with photos given by name only was ignored without a word; helper-55)
    r = cli("depth", src / "depth" / "a.png", "-o", tmp_path / "named.png", "--glob", "*.jpg", "--model", tiny_depth_model)
    assert r.exit_code == 0 and lines(r.output)[0] == "warning: --glob *.jpg applies to folders; the photos given by name are used"
    # beside a folder too (it said nothing there: new-user trial, session 23); a named photo the glob matches is no news
    r = cli("depth", src / "depth" / "a.png", tmp_path / "in", "-o", tmp_path / "mixed", "--glob", "*.jpg", "--model", tiny_depth_model)
    assert "warning: --glob *.jpg applies to folders; the photos given by name are used (such as " \
           f"{src / 'depth' / 'a.png'})" in lines(r.output), r.output
    r = cli("depth", src / "depth" / "a.png", "-o", tmp_path / "named2.png", "--glob", "*.png", "--model", tiny_depth_model)
    assert r.exit_code == 0 and "--glob" not in r.output, r.output


@pytest.mark.parametrize("args,message", [
    (["convert", "x.jpg", "--bogus"], "error: No such option: --bogus (see:"),  # (click offered "--jobs")
    (["convert", "x.jpg", "--parralax", "0.1"], "error: No such option: --parralax (did you mean --parallax?)"),
    (["convert"], "error: Missing argument 'INPUT...' (see:"),
    (["depth", "x.jpg"], "error: Missing option '-o' / '--output' (see:"),
    # (an option missing its value came without the pointer to --help; helper-99)
    (["depth", "x.jpg", "--glob"], "error: Option '--glob' requires an argument (see: photo3d depth --help)"),
    (["convert", "x.jpg", "-o", "x.glb", "--quality", "500"], "error: --quality must be a whole number from 1 to 100, not 500"),
    # (a nan was told "Input should be less than or equal to 0.2"; helper-55)
    (["convert", "x.jpg", "-o", "x.mp4", "--parallax", "nan"], "error: --parallax must be a number from 0.001 to 0.2, not nan"),
    (["convert", "x.jpg", "-o", "x.mp4", "--seconds=0"], "error: --seconds must be a number of at least 0.05, not 0"),
    (["convert", "x.jpg", "-o", "x.glb", "--engine", "spark"], "error: --engine must be one of local, ray, not spark"),
    (["bogus"], "error: No such command 'bogus' (see:"),
])
def test_command_line_mistakes_are_one_line(args, message):
    r = cli(*args)
    assert r.exit_code == 2, r.output
    (line,) = lines(r.output)
    assert line.startswith(message) and line.endswith("--help)"), line


@pytest.mark.parametrize("command", [[], ["convert"], ["depth"], ["model"], ["model", "import"]])
def test_help_reads_well_at_80_columns(command):
    r = cli(*command, "--help", width=80)
    assert r.exit_code == 0, r.output
    text = r.output
    assert all(len(ln) <= 80 for ln in text.splitlines()), text
    assert "<bool>" not in text and "<path>" not in text and "…" not in text and "..." not in text.replace("INPUT...", "").replace("[ARGS]...", "")
    assert "{" not in text.splitlines()[0]
    if command in (["convert"], ["depth"]):
        assert text.splitlines()[0] == f"Usage: photo3d {command[0]} [OPTIONS] INPUT..."
        # --depth-source auto as the README says: the photo's own depth map, else its stereo pair, else the model
        assert "(auto: the photo's own depth map, else its stereo pair, else the model;" in " ".join(text.split())


def test_the_preview_has_a_near_far_legend(tmp_path):
    from photo3d.depth.maps import save_depth_map

    d = np.tile(np.linspace(0, 1, 400, dtype=np.float32), (300, 1))
    save_depth_map(tmp_path / "m.png", d, preview=True)
    pv = np.asarray(Image.open(tmp_path / "m.preview.png").convert("RGB")).astype(int)
    assert pv.shape[1] == 400 and 300 + 12 <= pv.shape[0] <= 300 + 48
    strip = pv[300:]
    mid = strip.shape[0] // 2
    bar = strip[mid, 60:340]  # the colour bar: far (blue) on the left, near (red) on the right
    assert bar[0, 2] > bar[0, 0] + 60 and bar[-1, 0] > bar[-1, 2] + 60
    white = (strip.min(axis=2) > 200)
    assert white[:, :40].sum() > 10 and white[:, -50:].sum() > 10  # the words "far" and "near"
    readme = (REPO / "README.md").read_text()
    assert "red = near" in readme


def test_the_quick_start_writes_nothing_git_would_pick_up(tmp_path):
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    outs = re.findall(r"photo3d convert \S+ -o (\S+)", quick)
    assert outs, quick
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    for o in outs:
        for path in (o, str(Path(o).with_suffix(".html"))):
            p = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", path], capture_output=True)
            assert p.returncode == 0, f"{path} is not ignored by git"


def test_the_test_setup_says_that_chromium_needs_root(monkeypatch):
    readme = (REPO / "README.md").read_text()
    tests = readme.split("Run the tests", 1)[1].split("##", 1)[0]
    assert "root" in tests and "apt-get" in tests
    from helpers.paths import missing_tool

    monkeypatch.delenv("CI", raising=False)
    from helpers.browser import CHROMIUM_MISSING

    with pytest.raises(pytest.skip.Exception, match="needs root"):
        missing_tool(CHROMIUM_MISSING)


@pytest.mark.slow
def test_python_dash_m_photo3d_is_the_same_command():
    out = subprocess.run([sys.executable, "-m", "photo3d", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("photo3d "), out


def test_overwrite_and_skip_existing_together_is_a_usage_error(tmp_path):
    """They contradict each other: one usage line, exit 2, nothing written."""
    src = photo(tmp_path / "p.png")
    for cmd, out in (("convert", "p.glb"), ("depth", "d.png")):
        r = cli(cmd, src, "-o", tmp_path / out, "--overwrite", "--skip-existing")
        assert r.exit_code == 2 and r.output == "error: give either --overwrite or --skip-existing, not both\n", r.output
        assert not (tmp_path / out).exists()


def test_one_photo_kept_by_skip_existing_names_every_kept_output(tmp_path):
    """``-o p.glb --html --skip-existing`` with both there said only "p.glb exists, kept" (helper-66)."""
    src, depth = photo(tmp_path / "p.png"), depth_npy(tmp_path / "d.npy")
    assert cli("convert", src, "-o", tmp_path / "p.glb", "--html", "--depth", depth).exit_code == 0
    r = cli("convert", src, "-o", tmp_path / "p.glb", "--html", "--depth", depth, "--skip-existing")
    assert r.exit_code == 0 and lines(r.output) == [
        f"{tmp_path / 'p.glb'} and {tmp_path / 'p.html'} exist, kept (--overwrite rewrites them)"], r.output
    r = cli("convert", src, "-o", tmp_path / "p.glb", "--depth", depth, "--skip-existing")
    assert r.exit_code == 0 and lines(r.output) == [f"{tmp_path / 'p.glb'} exists, kept (--overwrite rewrites it)"], r.output


def test_html_as_a_format_and_as_the_glbs_page_is_one_output(tmp_path, tiny_depth_model):
    """``--format glb --format html --html`` wrote the page twice (once beside the GLB, once as a format
    of its own) and counted two outputs, where ``--format glb --html`` counts one (helper-55)."""
    photo(tmp_path / "in" / "p.png")
    for n, args in enumerate((("--format", "glb", "--html"), ("--format", "glb", "--format", "html", "--html"))):
        out = tmp_path / f"out{n}"
        r = cli("convert", tmp_path / "in", "-o", out, *args, "--model", tiny_depth_model)
        assert r.exit_code == 0, r.output
        assert sorted(p.name for p in out.iterdir()) == ["p.glb", "p.html"]
        assert lines(r.output)[-1].startswith("1 converted, 0 skipped (output exists), 0 failed"), r.output


def test_a_later_run_with_html_keeps_an_existing_page(tmp_path, tiny_depth_model):
    """A folder run is a resume: NAME.html written by `--format html` is kept (not rewritten, not
    named in the result line) when a later run adds `--format glb --html`; --overwrite rewrites it."""
    photo(tmp_path / "in" / "p.png")
    out = tmp_path / "out"
    r = cli("convert", tmp_path / "in", "-o", out, "--format", "html", "--model", tiny_depth_model)
    assert r.exit_code == 0, r.output
    page = out / "p.html"
    os.utime(page, ns=(1_000_000_000, 1_000_000_000))
    before = page.read_bytes()
    r = cli("convert", tmp_path / "in", "-o", out, "--format", "webp", "--format", "glb", "--html",
            "--seconds", "0.4", "--fps", "5", "--model", tiny_depth_model)
    assert r.exit_code == 0, r.output
    assert page.stat().st_mtime_ns == 1_000_000_000 and page.read_bytes() == before
    assert f"-> {out / 'p.glb'}:" in r.output and "p.html" not in r.output, r.output
    assert_valid_glb(out / "p.glb")
    assert (out / "p.webp").is_file()
    assert "warning" not in r.output, r.output  # (the page shows the same 3D photo)
    # the GLB rebuilt with another --parallax: the page kept says it shows the earlier one (helper-61)
    (out / "p.glb").unlink()
    r = cli("convert", tmp_path / "in", "-o", out, "--format", "glb", "--html", "--parallax", "0.08", "--model", tiny_depth_model)
    assert r.exit_code == 0 and page.read_bytes() == before, r.output
    assert f"warning: {tmp_path / 'in' / 'p.png'}: {page} kept: it shows the 3D photo built with --parallax 0.04 " \
           "(this one: 0.08); --overwrite rewrites it" in r.output, r.output
    (out / "p.glb").unlink()
    r = cli("convert", tmp_path / "in", "-o", out, "--format", "glb", "--html", "--overwrite", "--model", tiny_depth_model)
    assert r.exit_code == 0 and page.stat().st_mtime_ns != 1_000_000_000 and "warning" not in r.output, r.output
    # a run without --html that rebuilds the GLB: the page beside it is stale and the run says so
    # (it said nothing: new-user trial, session 23); a run that writes the page does not
    r = cli("convert", tmp_path / "in", "-o", out, "--format", "glb", "--overwrite", "--parallax", "0.08", "--model", tiny_depth_model)
    assert r.exit_code == 0, r.output
    assert f"warning: {tmp_path / 'in' / 'p.png'}: {page} beside it still shows the 3D photo built with --parallax " \
           "0.04 (this one: 0.08); --html rewrites it" in r.output, r.output
    for extra in (["--html"], ["--format", "html"]):
        r = cli("convert", tmp_path / "in", "-o", out, "--format", "glb", *extra, "--overwrite", "--model", tiny_depth_model)
        assert r.exit_code == 0 and "warning" not in r.output, (extra, r.output)
    # a folder run that resumes keeps the page (also as a format of its own): the advice says --overwrite
    (out / "p.glb").unlink()
    for extra in ([], ["--format", "html"]):
        r = cli("convert", tmp_path / "in", "-o", out, "--format", "glb", *extra, "--parallax", "0.08", "--model", tiny_depth_model)
        assert r.exit_code == 0 and f"{page} beside it still shows the 3D photo built with --parallax 0.04 (this one: 0.08); " \
            "--html --overwrite rewrites it" in r.output, (extra, r.output)
        (out / "p.glb").unlink()


def test_output_errors_name_the_option_and_the_true_reason(tmp_path):
    """An output folder that cannot be written names -o, the summary's names --summary; /proc (a
    folder that exists, where no file can be made) is not "No such file or directory"; a
    suffix that is no format hints that a trailing / makes -o a folder."""
    src = photo(tmp_path / "p.png")
    depth = depth_npy(tmp_path / "d.npy")
    r = cli("convert", src, "-o", "/proc/k.glb", "--depth", depth)
    assert r.exit_code == 1 and r.output.startswith("error: -o /proc/k.glb: cannot write into /proc ("), r.output
    assert "No such file" not in r.output and r.output.count("\n") == 1, r.output
    if os.geteuid() == 0:  # (others are refused by the permission bits first)
        assert r.output == "error: -o /proc/k.glb: cannot write into /proc (it accepts no new files)\n", r.output
    r = cli("convert", src, "-o", tmp_path / "k.glb", "--depth", depth, "--summary", "/proc/s.json")
    assert r.exit_code == 1 and r.output.startswith("error: --summary /proc/s.json: cannot write into /proc ("), r.output
    assert not (tmp_path / "k.glb").exists()
    for cmd, extra in (("convert", ["--depth", depth]), ("depth", [])):
        r = cli(cmd, src, "-o", tmp_path / "v1.0", *extra)
        assert r.exit_code == 2 and r.output.rstrip().endswith(
            f"not {'.0' if cmd == 'convert' else repr('.0')}; to write into a folder of that name, end it with /: "
            f"-o {tmp_path / 'v1.0'}/"), r.output


@pytest.mark.slow
def test_a_failed_side_page_says_the_glb_was_not_kept_either(tmp_path):
    """-o X.glb --html on a full disk: the page fails first, the GLB is then not written: the one
    line says both, and neither file (nor the folder made for them) is left."""
    src = photo(tmp_path / "photo.png")
    out = tmp_path / "out" / "photo.glb"
    p = cli_process("convert", src, "-o", out, "--html", "--depth", depth_npy(tmp_path / "d.npy"),
                    preexec_fn=_file_size_limit)
    assert p.returncode == 1, p.stderr
    assert lines(p.stderr) == [f"error: {out.with_suffix('.html')}: cannot write (File too large); "
                               f"{out} not written either (nothing kept)"], p.stderr
    assert not out.parent.exists()


def test_a_walk_skips_photo3ds_own_stereo_stills_and_videos(tmp_path, tiny_depth_model):
    """A stereo still photo3d wrote (tagged with its layout so its pair gives depth) was once skipped
    by a walk as "a depth map photo3d wrote" (every PNG whose text chunks began with "photo3d"), then
    taken as a photo: an earlier run's output folder inside the photos was converted again by the
    next run with another -o, each still and each animated WebP (its first frame) as a 3D photo of
    its own, with a warning that photo3d's own still was "an unusable stereo pair" (helper-55).  Now
    a walk skips them, named in one warning as depth maps are; given by name, a still is used."""
    src = tmp_path / "in"
    photo(src / "a.png")
    for args in (("-o", src / "out" / "a.sbs.png", "--stereo", "sbs"), ("-o", src / "out" / "a.sbs.jpg", "--stereo", "sbs"),
                 ("-o", src / "out" / "a.webp", "--seconds", "0.2", "--size", "64")):
        r = cli("convert", src / "a.png", *args, "--model", tiny_depth_model)
        assert r.exit_code == 0, r.output
    r = cli("depth", src, "-o", tmp_path / "out", "--model", tiny_depth_model, "--depth-source", "model")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]
    assert [ln for ln in lines(r.output) if ln.startswith("warning")] == [
        f"warning: skipped 2 stereo stills and 1 video photo3d wrote, not photos (such as {src / 'out' / 'a.sbs.jpg'})"]
    r = cli("convert", src / "out" / "a.sbs.png", "-o", tmp_path / "still.glb", "--model", tiny_depth_model)
    assert r.exit_code == 0 and f"{src / 'out' / 'a.sbs.png'} -> {tmp_path / 'still.glb'}" in r.output, r.output


def test_a_tiny_megapixel_limit_shows_a_size_over_it(tmp_path):
    """``--max-megapixels 0.001`` on a 40x30 photo said "40x30 = 0.0 MP exceeds the --max-megapixels
    limit of 0.001 MP": a size that reads as under the limit.  Now as many decimals as it takes."""
    src = tmp_path / "small.png"
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(src)
    r = cli("convert", src, "-o", tmp_path / "o.glb", "--depth", depth_npy(tmp_path / "d.npy"), "--max-megapixels", "0.001")
    assert r.exit_code == 1, r.output
    assert (f"error: {src}: too large (40x30 = 0.0012 MP exceeds the --max-megapixels limit of 0.001 MP); "
            "--max-megapixels 0.0012 reads it") in lines(r.output)
    assert not (tmp_path / "o.glb").exists()


@pytest.mark.parametrize("command, out", [("convert", "o.glb"), ("depth", "o.png")])
def test_a_model_that_gives_one_depth_everywhere_says_so(tmp_path, command, out):
    """A --model whose output is the same at every pixel (a broken export, an untrained net) made a
    flat depth map and a flat 3D photo without a word.  Now a warning names the model and the photo."""
    import warnings

    import torch

    from photo3d.depth.modelfile import save_model

    class Constant(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(x[:, :1])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (torch.jit is deprecated in torch 2.13)
        scripted = torch.jit.script(Constant())
    model = save_model(scripted, tmp_path / "constant.pt", {"name": "constant", "input_size": 128})
    src = photo(tmp_path / "photo.png")
    r = cli(command, src, "-o", tmp_path / out, "--model", model)
    assert r.exit_code == 0, r.output
    assert (f"warning: {src}: the depth model constant gave the same depth at nearly every pixel: the depth is flat "
            "(a photo of one even colour, or a broken model)") in lines(r.output)
    assert (tmp_path / out).is_file()


def test_a_depth_file_of_one_depth_everywhere_says_so(tmp_path):
    """A ``--depth`` map of one value everywhere (saved wrongly) made a flat card without a word,
    where a model's flat map is said (helper-119).  Now a warning names the photo and the map."""
    src = photo(tmp_path / "photo.png")
    np.save(tmp_path / "flat.npy", np.ones((48, 64), np.float32))
    r = cli("convert", src, "-o", tmp_path / "o.glb", "--depth", tmp_path / "flat.npy")
    assert r.exit_code == 0, r.output
    assert f"warning: {src}: flat.npy: the same depth at every pixel: the 3D photo is flat" in lines(r.output), r.output
    np.save(tmp_path / "ramp.npy", np.tile(np.linspace(0, 1, 64, dtype=np.float32), (48, 1)))
    r = cli("convert", src, "-o", tmp_path / "o2.glb", "--depth", tmp_path / "ramp.npy")
    assert r.exit_code == 0 and "warning" not in r.output, r.output

def test_a_damaged_exif_in_a_folder_is_said_once_with_the_photos_name(tmp_path, tiny_depth_model):
    """Pillow warns of a damaged EXIF block when it opens the file: the folder walk's look at each
    header said it first, without a name ("warning: UserWarning: Tag data larger than file.
    Skipping tag 274"), then the photo's read again with it (helper-63)."""
    buf = io.BytesIO()
    Image.fromarray(photo_rgb(64, 48)).save(buf, "JPEG")
    ifd = struct.pack(">HHHII", 1, 0x0112, 3, 1000, 4096) + struct.pack(">I", 0)  # orientation: 1000 values past the end
    exif = b"Exif\0\0" + b"MM\0*" + struct.pack(">I", 8) + ifd
    data = buf.getvalue()
    (tmp_path / "in").mkdir()
    src = tmp_path / "in" / "a.jpg"
    src.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + data[2:])
    r = cli("depth", tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_depth_model)
    assert r.exit_code == 0, r.output
    said = [ln for ln in lines(r.output) if ln.startswith("warning")]
    assert said and all(ln.startswith(f"warning: {src}: ") for ln in said), r.output
    assert len(said) == len(set(said)), said


def test_photos_in_an_output_folder_inside_the_input_are_said(tmp_path, tiny_depth_model):
    """``photo3d convert in/ -o in/sub/``: the output folder is not walked (its outputs are not
    photos), but photos of the user's in it were left out without a word (helper-63)."""
    photo(tmp_path / "in" / "a.png")
    photo(tmp_path / "in" / "sub" / "b.png")
    photo(tmp_path / "in" / "sub" / "deeper" / "c.png")
    r = cli("convert", tmp_path / "in", "-o", tmp_path / "in" / "sub", "--model", tiny_depth_model)
    assert r.exit_code == 0, r.output
    said = [ln for ln in lines(r.output) if ln.startswith("warning")]
    assert said == [f"warning: {tmp_path / 'in' / 'sub'}: skipped: the output folder, inside the input; its 2 photos "
                    "are left out"], r.output
    assert (tmp_path / "in" / "sub" / "a.glb").is_file() and not (tmp_path / "in" / "sub" / "sub").exists()
    (tmp_path / "in" / "sub" / "b.png").unlink()
    (tmp_path / "in" / "sub" / "deeper" / "c.png").unlink()
    r = cli("convert", tmp_path / "in", "-o", tmp_path / "in" / "sub", "--model", tiny_depth_model)
    assert r.exit_code == 0 and not [ln for ln in lines(r.output) if ln.startswith("warning")], r.output  # (its GLBs: not said)


def test_summary_never_replaces_a_file_that_is_not_a_summary(tmp_path, tiny_depth_model):
    """``--summary y.png`` over a photo of the user's that is no input of the run: replaced with
    JSON, exit 0 (helper-63).  Refused, before any work; an earlier summary is replaced as always."""
    src = photo(tmp_path / "in" / "a.png")
    other = photo(tmp_path / "y.png")
    before = other.read_bytes()
    r = cli("convert", src.parent, "-o", tmp_path / "out", "--model", tiny_depth_model, "--summary", other)
    assert r.exit_code == 2 and lines(r.output) == [
        f"error: --summary {other}: is a file that is not a photo3d summary; choose another name (or remove that file)"], r.output
    assert other.read_bytes() == before and not (tmp_path / "out").exists()
    summary = tmp_path / "s.json"
    for _ in range(2):  # (written, then replaced by the re-run)
        r = cli("convert", src.parent, "-o", tmp_path / "out", "--model", tiny_depth_model, "--summary", summary)
        assert r.exit_code == 0, r.output
    assert json.loads(summary.read_text())["counts"]["skipped"] == 1


def test_a_file_photo3d_wrote_given_in_the_wrong_place_is_named_with_what_to_give(tmp_path, tiny_depth_model, monkeypatch):
    """helper-106: a map's colour preview given as --depth ("depth map is a colour image"), a viewer
    page given as the photo ("not an image"), a folder of 3D photos given to render videos ("no
    images found") and a photo over --max-megapixels: each message now says what to give."""
    src = photo(tmp_path / "p.png")
    assert cli("depth", src, "-o", tmp_path / "m.png", "--model", tiny_depth_model, "--preview").exit_code == 0
    r = cli("convert", src, "-o", tmp_path / "a.glb", "--depth", tmp_path / "m.preview.png")
    assert r.exit_code != 0 and lines(r.output) == [
        f"error: {tmp_path / 'm.preview.png'}: a depth map's colour preview, not the map: give the map beside it "
        "(m.png or .npy)"], r.output
    out = tmp_path / "glbs"
    assert cli("convert", src, "-o", out / "p.glb", "--model", tiny_depth_model, "--html").exit_code == 0
    r = cli("convert", out / "p.html", "-o", tmp_path / "v.gif")
    assert r.exit_code != 0 and lines(r.output) == [
        f"error: {out / 'p.html'}: a viewer page, not a photo: give the 3D photo it shows (p.glb), which is rendered as it is"], r.output
    # a huge file of the GLB's name beside the page is not read to be compared (a sparse 20 GB one was
    # read whole, helper-111): only a file of the page's GLB's size is
    page_glb = out / "p.glb"
    page_glb.rename(out / "p.kept")
    with open(page_glb, "wb") as f:
        f.truncate(3 << 30)  # (sparse: no disk taken)
    read_bytes = Path.read_bytes

    def guarded(self):
        assert self.stat().st_size < 1 << 30, f"{self} read whole"
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", guarded)
    r = cli("convert", out / "p.html", "-o", tmp_path / "v.gif")
    assert r.exit_code != 0 and lines(r.output) == [
        f"error: {out / 'p.html'}: a viewer page, not a photo: photo3d renders a 3D photo given as a .glb: convert "
        "the photo with -o NAME.glb (or --format glb) to have one"], r.output
    monkeypatch.undo()
    (out / "p.kept").replace(page_glb)
    # a page alone (-o NAME.html writes no GLB; helper-107): no GLB is named that is not there
    assert cli("convert", src, "-o", out / "alone.html", "--model", tiny_depth_model).exit_code == 0
    r = cli("convert", out / "alone.html", "-o", tmp_path / "w.gif")
    assert r.exit_code != 0 and lines(r.output) == [
        f"error: {out / 'alone.html'}: a viewer page, not a photo: photo3d renders a 3D photo given as a .glb: convert "
        "the photo with -o NAME.glb (or --format glb) to have one"], r.output
    # a 3D photo given to `depth` (convert takes one): "not an image" said nothing of it (helper-117)
    r = cli("depth", out / "p.glb", "-o", tmp_path / "g.png", "--model", tiny_depth_model)
    assert r.exit_code != 0 and lines(r.output) == [
        f"error: {out / 'p.glb'}: a 3D photo (GLB), not a photo: give the photo it was made from (photo3d convert "
        "renders a GLB as it is: to a video, GIF, page or stereo still)"], r.output
    # a preview renamed: no map "beside it" of a made-up name
    shutil.copy(tmp_path / "m.preview.png", tmp_path / "colours.png")
    r = cli("convert", src, "-o", tmp_path / "c.glb", "--depth", tmp_path / "colours.png")
    assert r.exit_code != 0 and lines(r.output) == [
        f"error: {tmp_path / 'colours.png'}: a depth map's colour preview, not the map: give the depth map it was made from"]
    r = cli("convert", out, "-o", tmp_path / "videos", "--format", "gif")
    assert r.exit_code != 0 and f"no images found in {out} (3D photos are rendered only when named: {out / '*.glb'})" in r.output
    r = cli("depth", out, "-o", tmp_path / "maps")  # (depth maps are of photos: no such hint)
    assert r.exit_code != 0 and f"no images found in {out}" in r.output and "rendered" not in r.output
    from photo3d.io import pixel_limit_hint

    assert pixel_limit_hint(934, 1606, 1.5) == "; --max-megapixels 1.500004 reads it"  # (not 1.5, the limit itself)
    assert pixel_limit_hint(4, 5, 0.00001) == "; --max-megapixels 0.00002 reads it"  # (not 2e-05)
    r = cli("convert", src, "-o", tmp_path / "b.glb", "--model", tiny_depth_model, "--max-megapixels", "0.001")
    assert r.exit_code != 0 and "(96x72 = 0.01 MP exceeds the --max-megapixels limit of 0.001 MP); --max-megapixels 0.01 reads it" in r.output, r.output


def test_two_photos_whose_outputs_are_one_file_through_a_link_in_out_do_not_share_it(tmp_path, tiny_depth_model):
    """``OUT/sub -> .``: ``in/y.png`` and ``in/sub/y.png`` both wrote ``OUT/y.png``, both said ok, and
    the first photo's map was gone (a re-run skipped both; helper-105).  Outputs are told apart by
    the folders they resolve to: the second fails, naming the first, and --summary cannot take an
    output's place through the link either."""
    photo(tmp_path / "in" / "y.png", seed=1)
    photo(tmp_path / "in" / "sub" / "y.png", seed=2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(".")
    r = cli("depth", tmp_path / "in", "-o", out, "--model", tiny_depth_model)
    assert r.exit_code == 1, r.output
    assert (f"{out / 'y.png'}: cannot write (the same file as {out / 'sub' / 'y.png'}, through a link in the output "
            "folder; rename one of the photos, or remove the link)") in r.output, r.output
    assert "1 depth map(s) written, 0 skipped (output exists), 1 failed" in r.output
    r = cli("depth", tmp_path / "in", "-o", out, "--model", tiny_depth_model, "--summary", out / "sub" / "y.png")
    assert r.exit_code == 2 and "is one of the outputs" in r.output, r.output


def test_a_page_written_before_its_video_was_stopped_is_said(tmp_path, tiny_depth_model):
    """A photo stopped while its video rendered said "interrupted: nothing written", with its
    ``--html`` page (written first: the GLB is in memory only then) on disk, a page of the user's
    replaced (helper-105).  The stop line names it, and the summary's record lists it.  (The video's
    writer sends the Ctrl-C itself: a timed signal would land anywhere.)"""
    src = photo(tmp_path / "p.png")
    args = ["convert", str(src), "-o", str(tmp_path / "v.mp4"), "--html", "--model", str(tiny_depth_model),
            "--summary", str(tmp_path / "s.json")]
    code = ("import os, signal, sys, time\n"
            "import photo3d.video as video\n"
            "def stopped(*a, **k):\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(30)\n"
            "video.write_share = stopped\n"
            f"sys.argv = ['photo3d'] + {args!r}\n"
            "import photo3d\n"
            "photo3d.main()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), cwd=tmp_path, timeout=300)
    assert r.returncode == 130, r.stderr[-3000:]
    assert r.stderr.splitlines()[-1] == f"interrupted (kept: {tmp_path / 'v.html'}, written before the stop)", r.stderr
    assert (tmp_path / "v.html").is_file() and not (tmp_path / "v.mp4").exists()
    (rec,) = json.loads((tmp_path / "s.json").read_text())["results"]
    assert rec["status"] == "not run" and rec["outputs"] == [str(tmp_path / "v.html")], rec
    # a depth map written before its preview was stopped (helper-107): the map is said, not "nothing written"
    code = code.replace("photo3d.video as video", "photo3d.depth.maps as video").replace("video.write_share", "video.save_preview")
    code = code.replace(repr(args), repr(["depth", str(src), "-o", str(tmp_path / "m.png"), "--preview", "--model",
                                          str(tiny_depth_model)]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), cwd=tmp_path, timeout=300)
    assert r.returncode == 130 and r.stderr.splitlines()[-1] == (
        f"interrupted (kept: {tmp_path / 'm.png'}, written before the stop)"), r.stderr[-3000:]


@pytest.mark.parametrize("case", ["columns", "numba", "cwd"])
def test_an_odd_environment_gives_one_line_not_silence_or_a_traceback(tmp_path, case):
    """helper-105: ``COLUMNS=0`` printed nothing at all, errors included (rich took the width as 0);
    ``NUMBA_NUM_THREADS=0`` ended a GIF in a 60-line traceback; a working folder deleted under the
    shell ended in torch's "Intel oneMKL FATAL ERROR" with the usage-error code 2."""
    e = env()
    argv = cli_command("convert", str(tmp_path / "missing.jpg"), "-o", str(tmp_path / "x.glb"))
    cwd = tmp_path
    if case == "columns":
        e["COLUMNS"] = "0"
    elif case == "numba":
        e["NUMBA_NUM_THREADS"] = "0"
    else:
        gone = tmp_path / "gone"
        gone.mkdir()
        argv = [sys.executable, "-c", f"import os, sys; os.chdir({str(gone)!r}); os.rmdir({str(gone)!r}); "
                f"sys.argv = ['photo3d'] + {argv[argv.index('convert'):]!r}; import photo3d; photo3d.main()"]
    r = subprocess.run(argv, capture_output=True, text=True, env=e, cwd=cwd, timeout=120)
    said = {"columns": [f"error: {tmp_path / 'missing.jpg'}: no such file or folder"],
            "numba": ["warning: NUMBA_NUM_THREADS='0' is not a number of threads; ignored",
                      f"error: {tmp_path / 'missing.jpg'}: no such file or folder"],
            "cwd": ["error: the current folder no longer exists (deleted while the shell was in it); cd to another folder"]}
    assert r.returncode == 1 and r.stderr.splitlines() == said[case] and r.stdout == "", r.stderr[-3000:]


def test_a_3d_photo_whose_texture_is_over_max_megapixels_says_what_reads_it(tmp_path, tiny_depth_model):
    """A whole GLB of photo3d's given with a small --max-megapixels said "not a whole 3D photo that
    photo3d wrote (a texture of 500×500, over ...)" (helper-108): it is whole and photo3d's; now it
    says it is too large and what reads it, as for a photo."""
    src = photo(tmp_path / "p.png")
    assert cli("convert", src, "-o", tmp_path / "p.glb", "--model", tiny_depth_model).exit_code == 0
    r = cli("convert", tmp_path / "p.glb", "-o", tmp_path / "p.gif", "--seconds", "0.2", "--max-megapixels", "0.001")
    assert r.exit_code == 1, r.output
    (line,) = lines(r.output)
    assert line.startswith(f"error: {tmp_path / 'p.glb'}: its texture is too large (") and "reads it" in line, line
    assert "not a whole" not in line


def test_a_3d_photo_whose_texture_carries_an_exif_orientation_is_refused(tmp_path, tiny_depth_model):
    """A GLB whose JPEG texture carries EXIF orientation 6: the page's browser showed it turned, the
    videos did not (helper-108).  photo3d never writes one: it is refused, in one line."""
    from photo3d.export import _pack_glb

    src = photo(tmp_path / "p.png")
    assert cli("convert", src, "-o", tmp_path / "p.glb", "--model", tiny_depth_model).exit_code == 0
    tree, binary = read_glb((tmp_path / "p.glb").read_bytes())
    chunks = [binary[v.get("byteOffset", 0): v.get("byteOffset", 0) + v["byteLength"]] for v in tree["bufferViews"]]
    k = tree["images"][0]["bufferView"]
    im = Image.open(io.BytesIO(chunks[k]))
    exif = im.getexif()
    exif[0x0112] = 6
    out = io.BytesIO()
    im.save(out, "JPEG", exif=exif.tobytes())
    chunks[k] = out.getvalue()
    body, at = b"", 0
    for v, c in zip(tree["bufferViews"], chunks):
        v["byteOffset"], v["byteLength"] = at, len(c)
        pad = c + b"\0" * (-len(c) % 4)
        body += pad
        at += len(pad)
    tree["buffers"][0]["byteLength"] = len(body)
    (tmp_path / "turned.glb").write_bytes(_pack_glb(tree, body))
    r = cli("convert", tmp_path / "turned.glb", "-o", tmp_path / "t.html")
    assert r.exit_code == 1 and lines(r.output) == [
        f"error: {tmp_path / 'turned.glb'}: not a whole 3D photo that photo3d wrote (a texture with an EXIF orientation, "
        "which photo3d never writes)"], r.output


def test_a_rerun_on_a_kept_glb_whose_jpeg_texture_claims_gigapixels_is_refused(tmp_path, tiny_depth_model):
    """The megapixel guard on a kept GLB's texture, read from its header before decoding, for a JPEG
    (photo3d's own kind; a PNG is refused before, as not photo3d's: helper-109)."""
    from photo3d.export import _pack_glb

    photo(tmp_path / "in" / "d.png", seed=4)
    out = tmp_path / "out"
    assert cli("convert", tmp_path / "in", "-o", out, "--model", tiny_depth_model).exit_code == 0
    tree, binary = read_glb((out / "d.glb").read_bytes())
    view = tree["bufferViews"][tree["images"][0]["bufferView"]]
    start, n = view.get("byteOffset", 0), view["byteLength"]
    jpeg = bytearray(binary[start:start + n])
    sof = jpeg.find(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", 12000, 12000)  # (height, width in the frame header)
    body = bytearray(binary)
    body[start:start + n] = jpeg
    (out / "d.glb").write_bytes(_pack_glb(tree, bytes(body)))
    r = cli("convert", tmp_path / "in", "-o", out, "--model", tiny_depth_model, "--html")
    assert r.exit_code == 1, r.output
    assert (f"error: {out / 'd.glb'}: its texture is too large (12000x12000 = 144.0 MP exceeds the --max-megapixels "
            "limit of 100 MP); --max-megapixels 144 reads it") in lines(r.output), r.output
    assert not (out / "d.html").exists()

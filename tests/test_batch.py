"""Batch runs over photo folders: discovery, mirrored outputs, bad files, summary, resume.

The fast tests use a model-free task (``helpers.batch_tasks``: decode with
``photo3d.io.load_image`` and write a grey thumbnail atomically) so they exercise the real
decoder on real good and bad files without a depth model.  The end-to-end tests (marked
``slow``) run the real ``photo3d depth`` / ``photo3d convert`` commands in subprocesses with the
bundled model, so they need no ``../shared``.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from helpers.gltf import assert_valid_glb
from photo3d.batch import (
    PoolExecutor,
    SequentialExecutor,
    Status,
    Task,
    batch_command,
    plan_jobs,
    run_batch,
)
from photo3d.batch.plan import PlanNotes, _has_photo_sibling, discover
from photo3d.errors import UsageError
from photo3d.io import HEIF_AVAILABLE, load_image

from helpers.batch_tasks import (AFTER_FIRST, THUMB, THUMB_SAID, DiesInWorkers, ThumbOptions, batch_task_broken_model, batch_task_crashy,
                                 batch_task_crashy_writing, batch_task_disk_full, batch_task_thumb)
from helpers.cli import cli_command, env, pool_cli_command
from helpers.photos import BAD, GOOD, make_album, photo, photo_rgb


@pytest.fixture()
def album(tmp_path: Path) -> Path:
    return make_album(tmp_path / "album")


def _cpus_for(workers: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``jobs=workers`` starts that many worker processes on any machine: ``--jobs`` is lowered to the
    CPUs this process may use, so on one CPU the pool tests ran one process and tested nothing."""
    import photo3d.batch.run

    cpus = photo3d.batch.run.available_cpus
    monkeypatch.setattr(photo3d.batch.run, "available_cpus", lambda: max(cpus(), workers))


def _snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """(inode, mtime_ns, bytes) of every file under root, links not followed."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_ino, st.st_mtime_ns, p.read_bytes() if p.is_file() else b"")
    return out


# --------------------------------------------------------------------------------------------
# Discovery and output paths


def test_discovery_mirrors_tree_skips_hidden_output_and_link_loops(album: Path) -> None:
    out = album / "out"  # output inside the input: must be skipped on the next run
    (out / "sub").mkdir(parents=True)
    Image.fromarray(photo_rgb()).save(out / "plain.png")
    jobs = plan_jobs([album], out, ".png")
    rel = sorted(str(j.src.relative_to(album)) for j in jobs)
    assert rel == sorted(GOOD + list(BAD))  # once each: the loop sub/loop -> .. is not walked twice
    for j in jobs:
        assert j.error is None
        assert j.dst == out / j.src.relative_to(album).with_suffix(".png")


def test_glob_filters_case_insensitively(album: Path, tmp_path: Path) -> None:
    jobs = plan_jobs([album], tmp_path / "o", ".png", globs=["*.jpg"])
    names = sorted(j.src.name for j in jobs)
    assert names == sorted(["plain.jpg", "cmyk.jpg", "rotated.jpg", "ünïcødé ñame 写真.JPG",
                            "truncated.jpg", "text.jpg", "empty.jpg", "gone.jpg", "pipe.jpg"])
    # '**/' also matches no folder: the same files as '*.jpg' (top level included)
    assert sorted(j.src.name for j in plan_jobs([album], tmp_path / "o", ".png", globs=["**/*.jpg"])) == names
    jobs = plan_jobs([album], tmp_path / "o", ".png", globs=["sub/*"])
    want = ["cmyk.jpg", "scan.tiff", "sixteen bit.png"] + (["phone.HEIC"] if HEIF_AVAILABLE else [])
    assert sorted(j.src.name for j in jobs) == sorted(want)


def test_a_named_pipe_with_a_png_name_does_not_hang_the_walk(tmp_path: Path) -> None:
    """The walk opens each .png to see whether photo3d wrote it (a depth map or preview, skipped):
    a named pipe called ``pipe.png`` blocked that open() until a writer came, so a folder batch hung
    before its first photo, without a word (a ``.jpg`` pipe already failed by name).  Now it is an
    input like any other, which fails with its own line."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo_rgb(20, 20)).save(src / "a.png")
    os.mkfifo(src / "pipe.png")

    def unblock():  # a hang reads an end of file after 10 s instead of stalling the suite
        try:
            os.close(os.open(src / "pipe.png", os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass

    import threading
    timer = threading.Timer(10.0, unblock)
    timer.daemon = True
    timer.start()
    t0 = time.monotonic()
    jobs = plan_jobs([src], tmp_path / "out", ".glb")
    took = time.monotonic() - t0
    timer.cancel()
    assert sorted(j.src.name for j in jobs) == ["a.png", "pipe.png"]
    assert took < 8, f"the walk waited {took:.1f} s on the named pipe"


def test_a_link_made_in_the_output_folder_mid_batch_sends_nothing_outside_it(tmp_path: Path) -> None:
    """A subfolder of OUT that is a link to a folder elsewhere fails the photos that would be written
    there, but it was checked only when the batch started: a link made while the batch ran (another
    user of a shared output folder) sent the rest of the outputs through it, exit 0 (helper-54).
    Now each write checks again, and the photo fails by name."""
    from helpers.batch_tasks import ThumbOptions, batch_task_thumb_linking
    from photo3d.batch import Task
    from photo3d.io import atomic_output, confined_to, write_bytes_atomic

    src, out, elsewhere = tmp_path / "in", tmp_path / "out", tmp_path / "elsewhere"
    (src / "z").mkdir(parents=True)
    (out / "z").mkdir(parents=True)
    elsewhere.mkdir()
    Image.fromarray(photo_rgb(20, 20)).save(src / "first.png")
    Image.fromarray(photo_rgb(20, 20)).save(src / "z" / "later.png")
    text = io.StringIO()
    task = Task("batch_task_thumb_linking", batch_task_thumb_linking, ThumbOptions())
    code = batch_command(task, [src], out, ".png", console=Console(file=text, width=300), progress=False)
    assert code == 1, text.getvalue()
    assert (out / "first.png").is_file() and not list(elsewhere.iterdir())
    assert f"{out / 'z' / 'later.png'}: cannot write ({out / 'z'} is a link to {elsewhere}, outside {out})" \
        in text.getvalue().replace("\n", ""), text.getvalue()
    with confined_to(out):  # every write checks: the driver's of a Ray batch too
        with pytest.raises(Exception, match="is a link to"):
            write_bytes_atomic(out / "z" / "x.glb", b"x")
        (out / "w").mkdir()  # ... and again before its rename: a link made while the output was written
        with pytest.raises(Exception, match="is a link to"):
            with atomic_output(out / "w" / "x.glb") as tmp:
                tmp.write_bytes(b"x")
                (out / "w").rename(out / "w-was")
                (out / "w").symlink_to(elsewhere, target_is_directory=True)
    assert not list(elsewhere.iterdir())  # (the temp file stays in the folder moved away: a stale temp of OUT)


def test_names_that_differ_only_in_unicode_form_get_outputs_of_their_own(tmp_path: Path) -> None:
    """"café.jpg" typed (é one character) and as some cameras and macOS write it (e and a combining
    accent) are two files here but one on macOS, SMB or ZFS shares: their outputs were two names
    for the planner and one file there, so one photo's output was lost (helper-54).  They are
    numbered now, as names that differ only in case are."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("caf\u00e9.jpg", "cafe\u0301.jpg", "A.jpg", "a.jpg"):
        Image.fromarray(photo_rgb(20, 20)).save(src / name)
    jobs = plan_jobs([src], tmp_path / "out", ".png")
    names = sorted(j.dst.name for j in jobs)
    import unicodedata
    assert len({unicodedata.normalize("NFC", n).casefold() for n in names}) == 4, names


def test_a_folder_run_ends_with_its_counts_also_for_one_photo(tmp_path: Path) -> None:
    """"A folder run prints one such line per output and ends with counts" (README): not when the
    folder (or its --glob) held one photo, so a script that reads the counts found none (helper-55)."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo_rgb(20, 20)).save(src / "a.png")
    for want in ("1 converted, 0 skipped (output exists), 0 failed in ", "0 converted, 1 skipped (output exists), 0 failed in "):
        text = io.StringIO()
        code = batch_command(THUMB, [src], tmp_path / "out", ".png", console=Console(file=text, width=300), progress=False)
        assert code == 0 and text.getvalue().splitlines()[-1].startswith(want), text.getvalue()
    text = io.StringIO()  # one photo given by name: its own line says it all
    batch_command(THUMB, [src / "a.png"], tmp_path / "one.png", ".png", console=Console(file=text, width=300), progress=False)
    assert "converted" not in text.getvalue(), text.getvalue()


def test_output_names_never_clash_or_hit_inputs(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.jpg", "a.png", "b.png"):
        Image.fromarray(photo_rgb(20, 20)).save(src / name)
    jobs = plan_jobs([src], tmp_path / "out", ".png")
    assert sorted(j.dst.name for j in jobs) == ["a.jpg.png", "a.png.png", "b.png"]
    # several inputs: each folder goes into OUTDIR/<name>, files into OUTDIR
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(photo_rgb(20, 20)).save(other / "b.png")
    Image.fromarray(photo_rgb(20, 20)).save(tmp_path / "c.png")
    jobs = plan_jobs([src, other, src / "b.png", tmp_path / "c.png"], tmp_path / "out", ".glb")
    dsts = sorted(str(j.dst.relative_to(tmp_path / "out")) for j in jobs)  # in/b.png given twice: once
    assert dsts == ["c.glb", "in/a.jpg.glb", "in/a.png.glb", "in/b.glb", "other/b.glb"]
    # writing into the input folder itself, or over an input's own file, is refused (a usage
    # error); an output that is another input of the run fails that job
    with pytest.raises(Exception, match="must differ"):
        plan_jobs([src], src, ".png")
    with pytest.raises(UsageError, match="would overwrite the input"):
        plan_jobs([src / "b.png"], src / "b.png", ".png")
    with pytest.raises(UsageError, match="would overwrite the input"):
        plan_jobs([tmp_path / "c.png", other / "b.png"], tmp_path, ".png")  # c.png -> tmp_path/c.png
    given = tmp_path / "out" / "in" / "b.png"  # in/b.png's output, and also given as an input
    given.parent.mkdir(parents=True)
    Image.fromarray(photo_rgb(20, 20)).save(given)
    jobs = {j.src: j for j in plan_jobs([src, given], tmp_path / "out", ".png")}
    assert jobs[src / "b.png"].error == f"{src / 'b.png'}: output {given} would overwrite the input {given}; choose another -o"
    assert jobs[given].error is None and jobs[given].dst == tmp_path / "out" / "b.png"
    # a missing input is a failed job, not a crash
    missing, ok = plan_jobs([tmp_path / "nope.jpg", src / "b.png"], tmp_path / "out", ".png")
    assert missing.error == f"{tmp_path / 'nope.jpg'}: no such file or folder" and ok.error is None
    # ... also alone, to one file: failed when planned, so nothing is run for it (it loaded the
    # depth model first, ~2 s before its one-line error, helper-65)
    (missing,) = plan_jobs([tmp_path / "nope.jpg"], tmp_path / "nope.glb", ".glb")
    assert missing.error == f"{tmp_path / 'nope.jpg'}: no such file or folder"


def test_a_photo_beside_a_namesake_keeps_its_full_name_in_every_run(tmp_path: Path) -> None:
    """a.jpg beside a.png, given one at a time (or picked by --glob): a.jpg took out/a.png when a.png
    was not in the run, and a later run of a.png skipped that as its own output, done, exit 0."""
    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (20, 20), (30, 30, 30)).save(src / "a.jpg")
    Image.new("RGB", (20, 20), (220, 220, 220)).save(src / "A.png")  # (any case: one name on macOS and Windows)
    Image.fromarray(photo_rgb(20, 20)).save(src / "c.jpg")
    out = tmp_path / "out"
    for inputs, globs, want in (([src / "a.jpg", src / "c.jpg"], (), ["a.jpg.png", "c.png"]),
                                ([src / "A.png", src / "c.jpg"], (), ["A.png.png", "c.png"]),
                                ([src], ("*.jpg",), ["a.jpg.png", "c.png"])):
        assert sorted(j.dst.name for j in plan_jobs(inputs, out, ".png", globs=globs)) == want
    text = io.StringIO()
    batch_command(THUMB, [src / "a.jpg", src / "c.jpg"], out, ".png", console=Console(file=text, width=300), progress=False)
    text = io.StringIO()
    code = batch_command(THUMB, [src / "A.png", src / "c.jpg"], out, ".png", console=Console(file=text, width=300), progress=False)
    assert code == 0 and "1 converted, 1 skipped" in text.getvalue(), text.getvalue()
    assert np.asarray(Image.open(out / "A.png.png")).mean() > 200 > 40 > np.asarray(Image.open(out / "a.jpg.png")).mean()
    # the photo itself typed in another case is no namesake (one file on macOS and Windows)
    (tmp_path / "one").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "one" / "b.jpg")
    assert not _has_photo_sibling(tmp_path / "one" / "B.JPG", {})
    # photo3d's own depth map beside its photo is no namesake: the photo keeps its short name
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(photo_rgb(20, 20)).save(other / "p.jpg")
    subprocess.run(cli_command("depth", other / "p.jpg", "-o", other / "p.png"), check=True, env=env(), capture_output=True)
    assert [j.dst.name for j in plan_jobs([other / "p.jpg"], out, ".glb")] == ["p.glb"]


def test_a_folder_walk_finds_mpo_stereo_photos(tmp_path: Path) -> None:
    """An MPO (a camera's stereo JPEG) named as input was used; in a folder it was never found."""
    (tmp_path / "in").mkdir()
    Image.fromarray(photo_rgb(20, 20)).save(tmp_path / "in" / "x.MPO", format="JPEG")
    assert [j.dst.name for j in plan_jobs([tmp_path / "in"], tmp_path / "out", ".glb")] == ["x.glb"]


def test_an_output_never_stands_where_a_folder_of_outputs_must_be(tmp_path: Path) -> None:
    """An input folder named like another photo's output (``x.jpg`` beside the folder ``x.glb/``):
    ``x.jpg`` became the file ``OUT/x.glb`` and ``x.glb/a.jpg`` failed ("Not a directory") on every
    run.  The file output keeps its full name instead (``x.jpg.glb``), as for any clash."""
    src = tmp_path / "in"
    (src / "x.glb").mkdir(parents=True)
    for p in (src / "x.jpg", src / "x.glb" / "a.jpg"):
        Image.fromarray(photo_rgb(20, 20)).save(p)
    jobs = plan_jobs([src], tmp_path / "out", ".glb")
    assert sorted(str(j.dst.relative_to(tmp_path / "out")) for j in jobs) == ["x.glb/a.glb", "x.jpg.glb"]


def test_a_tree_a_thousand_folders_deep_is_walked(tmp_path: Path) -> None:
    """Python 3.11's os.walk recursed once a level: a photo 1,000 folders down (a 2 kB path, well
    under the system's limit) ended the whole run in a RecursionError traceback, nothing written."""
    deep = tmp_path / "in"
    deep.mkdir()
    for _ in range(1000):  # (Path.mkdir(parents=True) recurses too)
        deep = deep / "a"
        os.mkdir(deep)
    Image.fromarray(photo_rgb(20, 20)).save(deep / "p.jpg")
    Image.fromarray(photo_rgb(20, 20)).save(tmp_path / "in" / "top.jpg")
    try:
        jobs = plan_jobs([tmp_path / "in"], tmp_path / "out", ".png")
        assert sorted(j.src.name for j in jobs) == ["p.jpg", "top.jpg"]
        assert all(j.error is None for j in jobs)
    finally:  # (pytest's clean-up of old temp folders recurses too: left, it ended a later run in a RecursionError)
        (deep / "p.jpg").unlink()
        while deep != tmp_path / "in":
            os.rmdir(deep)
            deep = deep.parent


def test_input_folders_of_one_name_keep_apart_in_any_order(tmp_path: Path) -> None:
    """Two input folders of one name (2019/DCIM, 2020/DCIM) shared OUT/DCIM, their photos of one
    name numbered (IMG_1.png.png, IMG_1-2.png.png) in the order given: given in the other order on
    a re-run, each photo was 'skipped (output exists)' on the other's depth map or 3D photo.  Now
    each goes into OUT/<its path below where they part>, whatever the order."""
    ins = []
    for year, seed in (("2019", 0), ("2020", 1)):
        d = tmp_path / year / "DCIM"
        d.mkdir(parents=True)
        Image.fromarray(photo_rgb(20, 20, seed=seed)).save(d / "IMG_1.png")
        ins.append(d)
    want = {i / "IMG_1.png": tmp_path / "out" / i.parent.name / "DCIM" / "IMG_1.png" for i in ins}
    for order in (ins, ins[::-1]):
        assert {j.src: j.dst for j in plan_jobs(order, tmp_path / "out", ".png")} == want
    # photos of one name given as files: numbered by their paths, not by the order given
    files = [i / "IMG_1.png" for i in ins]
    want = {files[0]: tmp_path / "out" / "IMG_1.png.png", files[1]: tmp_path / "out" / "IMG_1-2.png.png"}
    for order in (files, files[::-1]):
        assert {j.src: j.dst for j in plan_jobs(order, tmp_path / "out", ".png")} == want
    # one folder given twice, or with a folder of another name: OUT/<name> as before
    jobs = plan_jobs([ins[0], ins[0], tmp_path / "2020"], tmp_path / "out", ".png")
    assert sorted(str(j.dst.relative_to(tmp_path / "out")) for j in jobs) == ["2020/DCIM/IMG_1.png", "DCIM/IMG_1.png"]


def test_one_real_file_reached_twice_is_converted_once(tmp_path: Path) -> None:
    """A folder given under two names (`loop/self loop`, self -> .; `a a/../a`) converted each
    photo twice (one.png.png and one-2.png.png), and so did a link in a walked folder to a photo
    walked already.  Now each real file is converted once, under the first name met that is not
    reached through a link, and one warning line says so."""
    loop = tmp_path / "loop"
    loop.mkdir()
    Image.fromarray(photo_rgb(20, 20)).save(loop / "one.png")
    (loop / "self").symlink_to(".")
    (loop / "fav.png").symlink_to("one.png")  # a link beside the photo it names
    for inputs in ([loop / "self", loop], [loop, loop / ".." / "loop"]):
        out = tmp_path / "out"
        text = io.StringIO()
        code = batch_command(THUMB, inputs, out, ".png", console=Console(file=text, width=300), progress=False)
        assert code == 0, text.getvalue()
        made = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
        assert made == ["loop/one.png"], (inputs, made)  # (not fav.png, met first but a link)
        warnings = [line for line in text.getvalue().splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1 and "paths to photos met already" in warnings[0], warnings
        for p in out.rglob("*"):
            if p.is_file():
                p.unlink()
    # one input folder, one photo and a link to it: one output, one line naming both
    notes = PlanNotes()
    jobs = plan_jobs([loop], tmp_path / "o2", ".png", notes=notes)
    assert [j.src for j in jobs] == [loop / "one.png"]
    assert notes.warnings() == [f"{loop / 'fav.png'}: skipped: the same file as {loop / 'one.png'} (reached through a link, or an input given twice)"]
    # the same path given twice stays silent, as before
    notes = PlanNotes()
    assert len(plan_jobs([loop / "one.png", loop / "one.png"], tmp_path / "o3", ".png", notes=notes)) == 1
    assert notes.warnings() == []
    # a broken link met under two names is one failed input, not two (a new-user trial: "3 of 6 failed")
    (loop / "gone.jpg").symlink_to("nothere.jpg")
    notes = PlanNotes()
    jobs = plan_jobs([loop / "gone.jpg", loop / "self"], tmp_path / "o4", ".png", notes=notes)
    assert [j.src for j in jobs if j.error] == [loop / "gone.jpg"]
    assert len(jobs) == 2  # (gone.jpg, and one.png through the link: the walk meets it as fav.png and one.png)
    assert notes.warnings() == [f"skipped 2 paths to photos met already (through links, or inputs given twice), such as "
                                f"{loop / 'self' / 'gone.jpg'}, the same file as {loop / 'gone.jpg'}"]


def test_a_link_to_a_folder_in_the_walk_gives_way_to_the_folders_own_path(tmp_path: Path) -> None:
    """A link inside the walked tree to a folder the walk also reaches directly (``alias -> real``,
    ``zz -> real``): the walk once took the folder under whichever name came first (``alias``,
    sorting before ``real``), pruned the real one as visited, and said nothing.  Now the photo is
    converted under the folder's own path and one warning names the skipped paths, whatever the
    order; a loop back to a folder above (``real/up -> ..``) stays silent."""
    top = tmp_path / "top"
    (top / "real").mkdir(parents=True)
    Image.fromarray(photo_rgb(20, 20)).save(top / "real" / "one.png")
    (top / "alias").symlink_to("real", target_is_directory=True)
    (top / "zz").symlink_to("real", target_is_directory=True)
    (top / "real" / "up").symlink_to("..", target_is_directory=True)
    notes = PlanNotes()
    jobs = plan_jobs([top], tmp_path / "out", ".png", notes=notes)
    assert [(j.src, j.dst) for j in jobs] == [(top / "real" / "one.png", tmp_path / "out" / "real" / "one.png")]
    assert sorted(notes.twice) == [(top / "alias" / "one.png", top / "real" / "one.png"),
                                   (top / "zz" / "one.png", top / "real" / "one.png")]
    assert len(notes.warnings()) == 1 and "skipped 2 paths to photos met already" in notes.warnings()[0]
    # a link to a folder outside the tree is followed as before (its photos are reached only so)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Image.fromarray(photo_rgb(20, 20)).save(elsewhere / "two.png")
    (top / "ext").symlink_to(elsewhere, target_is_directory=True)
    notes = PlanNotes()
    jobs = plan_jobs([top], tmp_path / "out", ".png", notes=notes)
    assert sorted(str(j.dst.relative_to(tmp_path / "out")) for j in jobs) == ["ext/two.png", "real/one.png"]
    assert len(notes.twice) == 2


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc here")
def test_a_link_into_the_systems_own_folders_is_not_followed(tmp_path: Path) -> None:
    """A link to /proc in a folder reached the whole disk through /proc/PID/root: photos from all
    over it converted into OUT, tens of thousands of inputs counted in seconds (helper-127).  A link
    into /proc, /sys or /dev is not followed, and says so; the folder's photos are converted."""
    top = tmp_path / "top"
    top.mkdir()
    Image.fromarray(photo_rgb(20, 20)).save(top / "one.png")
    (top / "p").symlink_to("/proc", target_is_directory=True)
    (top / "s").symlink_to("/sys", target_is_directory=True)
    errors: list[tuple[Path, str]] = []
    assert list(discover(top, errors=errors)) == [top / "one.png"]
    assert sorted(errors) == [(top / "p", "a link to /proc, a system folder of no photos: not followed"),
                              (top / "s", "a link to /sys, a system folder of no photos: not followed")]


def test_a_glob_naming_a_link_to_a_walked_folder_still_finds_its_photos(tmp_path: Path) -> None:
    """``--glob 'alias/*'`` where ``alias -> real`` and the walk takes ``real`` under its own path:
    the photos matched nothing and the run said "no images found" (code review, session 23);
    they match under the link's name too and are converted under the real path, as without a glob."""
    top = tmp_path / "top"
    (top / "real" / "sub").mkdir(parents=True)
    Image.fromarray(photo_rgb(20, 20)).save(top / "real" / "one.png")
    Image.fromarray(photo_rgb(20, 20)).save(top / "real" / "sub" / "two.png")
    Image.fromarray(photo_rgb(20, 20)).save(top / "three.png")
    (top / "alias").symlink_to("real", target_is_directory=True)
    (top / "real" / "up").symlink_to("..", target_is_directory=True)  # a loop: not a name for top's photos
    out = tmp_path / "out"
    for globs, want in [(["alias/*"], ["real/one.png", "real/sub/two.png"]), (["alias/sub/*"], ["real/sub/two.png"]),
                        (["real/up/*"], []), (["three.png"], ["three.png"])]:
        jobs = plan_jobs([top], out, ".png", globs=globs, notes=PlanNotes())
        assert sorted(str(j.dst.relative_to(out)) for j in jobs) == want, globs


def test_a_folder_of_links_to_itself_without_photos_ends_at_once(tmp_path: Path) -> None:
    """Two links to the folder itself (``a -> .``, ``b -> .``) and no photo: the search for GIFs
    to mention in "no images found" walked 2^40 paths and never ended (code review, session 23)."""
    from photo3d.batch.plan import passed_over

    top = tmp_path / "loopy"
    top.mkdir()
    for name in "abcdefgh":
        (top / name).symlink_to(".", target_is_directory=True)
    (top / "notes.txt").write_text("x")
    assert list(passed_over(top)) == []
    (top / "x.gif").write_bytes(b"GIF89a")
    assert list(passed_over(top)) == [top / "x.gif"]


# --------------------------------------------------------------------------------------------
# Batches with the model-free task


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])  # slow: a process pool
def test_good_files_convert_bad_files_are_named(album: Path, tmp_path: Path, workers: int,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _cpus_for(workers, monkeypatch)
    before = _snapshot(album)
    out = tmp_path / "out"
    summary = tmp_path / "report" / "summary.json"
    code = batch_command(THUMB, [album], out, ".png", jobs=workers, summary=summary)
    assert code == 1
    assert _snapshot(album) == before  # inputs untouched, nothing written into the input tree
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted(str(Path(g).with_suffix(".png")) for g in GOOD)
    for g in GOOD:
        assert Image.open(out / Path(g).with_suffix(".png")).size == (32, 32)
    data = json.loads(summary.read_text(encoding="utf-8"))
    assert data["counts"] == {"ok": len(GOOD), "skipped": 0, "failed": len(BAD), "not run": 0}
    first_run_workers = data["workers"]
    recs = {Path(r["input"]).relative_to(album).as_posix(): r for r in data["results"]}
    assert set(recs) == set(GOOD) | set(BAD)
    for g in GOOD:
        r = recs[g]
        assert r["status"] == "ok" and r["error"] is None
        assert r["bytes"] == (out / Path(g).with_suffix(".png")).stat().st_size > 0
        assert r["output"] == str(out / Path(g).with_suffix(".png"))
    assert recs["rotated.jpg"]["report"] == {"width": 120, "height": 200}  # EXIF orientation applied
    for b, reason in BAD.items():
        r = recs[b]
        assert r["status"] == "failed"
        assert r["error"].startswith(str(album / b) + ": ") and reason in r["error"], r["error"]
        assert "\n" not in r["error"]
    # a re-run skips everything that exists, rewrites nothing and still reports the bad ones
    snap = _snapshot(out)
    code = batch_command(THUMB, [album], out, ".png", jobs=workers, summary=summary)
    assert code == 1
    assert _snapshot(out) == snap
    data = json.loads(summary.read_text(encoding="utf-8"))
    assert data["counts"]["skipped"] == len(GOOD) and data["counts"]["failed"] == len(BAD)
    assert first_run_workers == workers


def test_a_killed_runs_temp_of_another_output_is_cleaned_by_the_next_run_there(album: Path, tmp_path: Path) -> None:
    """A run killed while it wrote out/plain.mp4 left its temp file; a later run writing other
    outputs into out (GLBs, not MP4s) left it there for good, although the README promises that a
    run removes the temp files of earlier runs when it starts (helper-94).  Any stale photo3d temp
    in the folders a run writes into is removed; a live run's and another program's stay."""
    out = tmp_path / "out"
    out.mkdir()
    code = "import os, sys; from photo3d.io import atomic_output\n" \
           "with atomic_output(sys.argv[1]) as t:\n t.write_bytes(b'partial'); os.kill(os.getpid(), 9)"
    subprocess.run([sys.executable, "-c", code, str(out / "plain.mp4")], env=env(), timeout=60)
    (stale,) = out.glob(".plain.mp4.*.tmp")
    other = out / ".notes.txt.tmp"  # (not photo3d's)
    other.write_text("mine")
    rep = run_batch(plan_jobs([album], out, ".png", globs=["plain.jpg"]), THUMB, SequentialExecutor(), progress=False)
    assert [r.status for r in rep.results] == [Status.ok] and not stale.exists() and other.read_text() == "mine"


def test_overwrite_rewrites_and_stale_temps_are_cleaned(album: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    jobs = plan_jobs([album], out, ".png", globs=["plain.jpg"])
    (out).mkdir()
    # what a kill -9 inside atomic_output leaves: the temp file of a process that is gone
    code = "import os, sys; from photo3d.io import atomic_output\n" \
           "with atomic_output(sys.argv[1]) as t:\n t.write_bytes(b'partial'); os.kill(os.getpid(), 9)"
    subprocess.run([sys.executable, "-c", code, str(out / "plain.png")], env=env(), timeout=60)
    (stale,) = out.glob(".plain.png.*.tmp")
    rep = run_batch(jobs, THUMB, SequentialExecutor(), progress=False)
    assert [r.status for r in rep.results] == [Status.ok] and not stale.exists()
    ino = (out / "plain.png").stat().st_ino
    rep = run_batch(jobs, THUMB, SequentialExecutor(), progress=False)
    assert [r.status for r in rep.results] == [Status.skipped]
    rep = run_batch(jobs, THUMB, SequentialExecutor(), overwrite=True, progress=False)
    assert [r.status for r in rep.results] == [Status.ok]
    assert (out / "plain.png").stat().st_ino != ino  # replaced by rename, never written in place


def test_a_temp_name_with_an_impossible_pid_is_left_alone(album: Path, tmp_path: Path) -> None:
    """A file named like photo3d's temp files with a pid of 20 digits (anyone can plant one in a
    shared folder, such as the ``--summary`` file's /tmp) stopped every run writing there: ``os.kill``
    overflowed, a traceback, exit 1 (helper-127). Such a name is no temp file of photo3d's: left, the
    run goes on; so does a Ray worker's sweep of its scratch folders."""
    from photo3d.batch.ray_executor import _sweep_scratch
    from photo3d.io import HOST_TAG

    out = tmp_path / "out"
    out.mkdir()
    planted = [out / f".plain.png.{'9' * 20}-{HOST_TAG}-abc12345.tmp", out / f".plain.png.{'9' * 200}-{HOST_TAG}-x.tmp"]
    for f in planted:
        f.write_bytes(b"")
    (tmp_path / f"photo3d-ray-{'9' * 20}-{HOST_TAG}-x").mkdir()
    rep = run_batch(plan_jobs([album], out, ".png", globs=["plain.jpg"]), THUMB, SequentialExecutor(), progress=False)
    assert [r.status for r in rep.results] == [Status.ok] and all(f.exists() for f in planted)
    assert _sweep_scratch(str(tmp_path)) == 0


def test_a_name_that_is_not_utf8_survives_the_summary(tmp_path: Path) -> None:
    """The summary is UTF-8 JSON; a file name that is not UTF-8 keeps each undecodable byte as a
    \\udcXX escape, from which os.fsencode gives the name back (as the README says)."""
    src = tmp_path / "in"
    src.mkdir()
    raw = os.fsencode(src) + b"/caf\xe9 \xff.jpg"
    Image.fromarray(photo_rgb(40, 30)).save(os.fsdecode(raw))
    summary = tmp_path / "s.json"
    assert batch_command(THUMB, [src], tmp_path / "out", ".png", summary=summary) == 0
    text = summary.read_bytes().decode("utf-8")  # (strict: all UTF-8)
    assert "\\udce9 \\udcff" in text
    (rec,) = json.loads(text)["results"]
    assert os.fsencode(rec["input"]) == raw and os.path.isfile(os.fsencode(rec["output"]))


class _SecondCtrlC(SequentialExecutor):
    """Ctrl-C pressed again while the batch stops its workers (an impatient double press)."""

    def stop(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        super().stop()


def test_a_second_ctrl_c_while_stopping_still_says_so_and_writes_the_summary(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C twice: the second came while the workers were being stopped, and the command ended
    there (exit 130, or killed by SIGINT) without the 'interrupted' line, without the lines of the
    files done, and without writing the summary.  Now a batch that is stopping finishes its stop."""
    import photo3d.batch.run as run_module

    srcs = [photo(tmp_path / "in" / f"p{i}.png") for i in range(3)]
    monkeypatch.setattr(run_module, "make_executor", lambda *a, **k: _SecondCtrlC())
    text = io.StringIO()
    summary = tmp_path / "s.json"

    def first_ctrl_c(r) -> None:  # pressed once the first photo is done
        raise KeyboardInterrupt

    try:
        code = batch_command(THUMB, srcs, tmp_path / "out", ".png", summary=summary, on_result=first_ctrl_c,
                             console=Console(file=text, width=200), progress=False)
    except KeyboardInterrupt:
        pytest.fail("the second Ctrl-C ended the batch before it said so and wrote the summary")
    assert code == 130
    assert text.getvalue().splitlines()[-1] == "interrupted: run the same command again to continue where it stopped"
    data = json.loads(summary.read_text())
    assert data["interrupted"] is True and data["counts"] == {"ok": 1, "skipped": 0, "failed": 0, "not run": 2}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # (Ctrl-C works again afterwards)


def test_the_temp_file_of_a_summary_cut_short_is_removed_by_the_next_run(tmp_path: Path) -> None:
    """A run killed while it wrote its summary (seconds for millions of records) left the summary's
    hidden temp file beside it for good: the stale temp files removed were those of the outputs."""
    summary = tmp_path / "report" / "s.json"
    summary.parent.mkdir()
    code = "import os, sys; from photo3d.io import atomic_output\n" \
           "with atomic_output(sys.argv[1]) as t:\n t.write_bytes(b'{\"photo3d\"'); os.kill(os.getpid(), 9)"
    subprocess.run([sys.executable, "-c", code, str(summary)], env=env(), timeout=60)
    (stale,) = summary.parent.glob(".s.json.*.tmp")
    assert batch_command(THUMB, [photo(tmp_path / "in" / "a.png")], tmp_path / "out", ".png", summary=summary) == 0
    assert sorted(p.name for p in summary.parent.iterdir()) == ["s.json"]


def _peek_summary(src: Path, dst: Path, summary: Path) -> dict:
    """A task that reads the --summary file while the batch runs: what a kill -9 would leave."""
    seen = json.loads(summary.read_text(encoding="utf-8")) if summary.exists() else None
    batch_task_thumb(src, dst, ThumbOptions())
    return {"seen": seen}


def test_a_killed_run_leaves_no_earlier_summary_to_be_read_as_its_own(tmp_path: Path) -> None:
    """The summary is written when a batch ends (also on Ctrl-C, kill and hang-up, then with
    "interrupted": true).  A run killed outright (kill -9, the out-of-memory killer) writes none,
    and the previous run's summary stayed, read as this run's outcome ("finished", all ok).  Now a
    run first replaces it with one saying it has not finished: "finished" null, every input not run,
    no records; the end of the run replaces that (a re-run too: its records, skipped ones included)."""
    srcs = [photo(tmp_path / "in" / f"p{i}.png") for i in range(3)]
    out, summary = tmp_path / "out", tmp_path / "s.json"
    assert batch_command(THUMB, srcs[:1], out, ".png", summary=summary) == 0
    assert json.loads(summary.read_text())["finished"] is not None  # an earlier run's summary
    peek = Task("peek_summary", _peek_summary, summary)
    assert batch_command(peek, srcs, out, ".png", summary=summary, command="photo3d depth in -o out") == 0
    data = json.loads(summary.read_text())
    seen = data["results"][1]["report"]["seen"]  # (while the first file to convert ran)
    assert seen["finished"] is None and seen["interrupted"] is None and seen["results"] == [], seen
    assert seen["counts"] == {"ok": 0, "skipped": 0, "failed": 0, "not run": 3} and seen["command"] == "photo3d depth in -o out"
    assert data["finished"] is not None and data["counts"] == {"ok": 2, "skipped": 1, "failed": 0, "not run": 0}


@pytest.mark.slow  # a process pool
def test_pool_results_keep_planned_order_and_report_workers(album: Path, tmp_path: Path) -> None:
    jobs = plan_jobs([album], tmp_path / "out", ".png")
    rep = run_batch(jobs, THUMB, PoolExecutor(2), progress=False)
    assert [r.src for r in rep.results] == [j.src for j in jobs]
    assert rep.count(Status.ok) == len(GOOD) and rep.count(Status.failed) == len(BAD)
    workers = rep.summary()["peak_rss_mb_per_worker"]
    assert 1 <= len(workers) <= 2 and all(v > 10 for v in workers.values())


@pytest.mark.slow  # a process pool
def test_pool_starts_an_inputs_other_outputs_after_its_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--format glb --format mp4 --jobs 2``: each photo's video is made from its finished GLB,
    never while the GLB is still being made by the other worker (a second conversion)."""
    srcs = [tmp_path / "in" / f"{n}.png" for n in "abc"]
    for i, p in enumerate(srcs):
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(photo_rgb(40, 30, seed=i)).save(p)
    summary = tmp_path / "s.json"
    _cpus_for(2, monkeypatch)
    assert batch_command(AFTER_FIRST, [tmp_path / "in"], tmp_path / "out", [".png", ".txt"], jobs=2, summary=summary) == 0
    assert json.loads(summary.read_text())["workers"] == 2
    records = json.loads(summary.read_text())["results"]
    assert sorted(r["output"] for r in records) == sorted(str(tmp_path / "out" / f"{n}{s}") for n in "abc" for s in (".png", ".txt"))
    assert all(r["status"] == "ok" for r in records)
    assert [r["report"]["first_done"] for r in records if r["output"].endswith(".txt")] == [True] * 3


@pytest.mark.slow  # a process pool
def test_the_summary_counts_the_workers_really_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--jobs 50`` on two files starts two worker processes, and the summary says 2, not 50
    (on a machine with CPUs to spare: the CPU cap has its own test below)."""
    import photo3d.batch.run

    monkeypatch.setattr(photo3d.batch.run, "available_cpus", lambda: 8)
    srcs = [tmp_path / "in" / f"{n}.png" for n in "ab"]
    for i, p in enumerate(srcs):
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(photo_rgb(40, 30, seed=i)).save(p)
    summary = tmp_path / "s.json"
    assert batch_command(THUMB, srcs, tmp_path / "out", ".png", jobs=50, summary=summary) == 0
    data = json.loads(summary.read_text())
    assert data["workers"] == 2 and data["counts"]["ok"] == 2
    assert 1 <= len(data["peak_rss_mb_per_worker"]) <= 2  # the processes that converted a file
    # a re-run has nothing to do (both outputs exist): no worker is started
    assert batch_command(THUMB, srcs, tmp_path / "out", ".png", jobs=50, summary=summary) == 0
    data = json.loads(summary.read_text())
    assert data["workers"] == 0 and data["counts"]["skipped"] == 2


def test_jobs_beyond_the_cpus_are_lowered_and_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--jobs 1000`` on a process that may use one CPU starts one worker (not one per file, each
    with its own model), and one warning line says why."""
    srcs = [tmp_path / "in" / f"{n}.png" for n in "abcde"]
    for i, p in enumerate(srcs):
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(photo_rgb(40, 30, seed=i)).save(p)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(os, "process_cpu_count", lambda: 1, raising=False)
    summary = tmp_path / "s.json"
    console = Console(file=io.StringIO(), width=200)
    assert batch_command(THUMB, srcs, tmp_path / "out", ".png", jobs=1000, summary=summary, console=console) == 0
    data = json.loads(summary.read_text())
    assert data["workers"] == 1 and data["counts"]["ok"] == 5
    lines = [x for x in console.file.getvalue().splitlines() if x.startswith("warning:")]
    assert lines == ["warning: --jobs 1000 lowered to at most 1: this process can use 1 CPU, and more workers would only "
                     "share them, each taking its own memory (0.5 GB or more)"]


def test_sequential_summary_says_one_worker_or_none(tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    Image.fromarray(photo_rgb(40, 30)).save(src)
    summary = tmp_path / "s.json"
    for workers, overwrite in ((1, None), (0, False)):  # converted; then skipped (the output exists)
        assert batch_command(THUMB, [src], tmp_path / "out", ".png", overwrite=overwrite, summary=summary) == 0
        assert json.loads(summary.read_text())["workers"] == workers


def test_single_file_and_usage_errors(tmp_path: Path) -> None:
    src = tmp_path / "one photo.jpg"
    Image.fromarray(photo_rgb()).save(src)
    dst = tmp_path / "o" / "result.png"
    assert batch_command(THUMB, [src], dst, ".png") == 0 and dst.is_file()
    # an explicit single file is rewritten by default (you asked for that file)
    ino = dst.stat().st_ino
    assert batch_command(THUMB, [src], dst, ".png") == 0 and dst.stat().st_ino != ino
    ino = dst.stat().st_ino
    assert batch_command(THUMB, [src], dst, ".png", overwrite=False) == 0 and dst.stat().st_ino == ino
    from photo3d.errors import UsageError

    with pytest.raises(UsageError):
        batch_command(THUMB, [src], dst, ".png", engine="spark")
    with pytest.raises(UsageError):
        batch_command(THUMB, [src, src], dst, ".png")  # several inputs need a folder
    with pytest.raises(UsageError, match="standard output"):
        batch_command(THUMB, [src], Path("-"), ".png")


def test_unwritable_output_or_summary_fails_once_before_any_work(album: Path, tmp_path: Path) -> None:
    from photo3d.errors import UsageError

    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    with pytest.raises(UsageError, match="cannot write into .*a file"):  # (a mistake in -o, as -o FILE: exit 2)
        batch_command(THUMB, [album], blocker / "out", ".png")
    with pytest.raises(UsageError, match="--summary .*cannot write into .*a file"):
        batch_command(THUMB, [album], tmp_path / "out", ".png", summary=blocker / "s.json")
    with pytest.raises(UsageError, match="--summary .* is a folder"):
        batch_command(THUMB, [album], tmp_path / "out", ".png", summary=tmp_path)
    assert not (tmp_path / "out").exists()  # nothing was converted first


def test_one_photo_to_a_file_name_where_a_folder_is_in_the_way_is_refused(tmp_path: Path) -> None:
    """``-o clip.png`` for one photo where ``clip.png`` is a folder: the output went into that folder
    under another name (a GLB for ``-o v.mp4``), without a word.  Now refused in one line; written
    as a folder (``-o clip.png/``) it is one."""
    src = photo(tmp_path / "p.png")
    (tmp_path / "clip.png").mkdir()
    with pytest.raises(UsageError, match=r"-o .*clip.png: a folder of that name is in the way; to write into it, give -o .*clip.png/$"):
        batch_command(THUMB, [src], tmp_path / "clip.png", ".png")
    assert batch_command(THUMB, [src], f"{tmp_path / 'clip.png'}/", ".png") == 0
    assert [p.name for p in (tmp_path / "clip.png").iterdir()] == ["p.png"]


def test_a_run_stopped_before_any_work_replaces_the_last_runs_summary(tmp_path: Path) -> None:
    """An output folder that cannot be written stops a run before any work; the summary of an
    earlier, successful run stayed beside it, to be read by a script as this run's outcome
    ("ok": 4 after exit 1).  Now it says this run: its error, every input not run."""
    from photo3d.errors import UsageError

    srcs = [photo(tmp_path / "in" / f"p{i}.png") for i in range(2)]
    summary = tmp_path / "s.json"
    assert batch_command(THUMB, srcs, tmp_path / "out", ".png", summary=summary, command="first") == 0
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    with pytest.raises(UsageError, match="cannot write into") as e:  # (a file in -o's way: exit 2)
        batch_command(THUMB, srcs, blocker / "out", ".png", summary=summary, command="second")
    data = json.loads(summary.read_text())
    assert data["command"] == "second" and data["fatal"] == str(e.value), data
    assert data["counts"] == {"ok": 0, "skipped": 0, "failed": 0, "not run": 2}, data


def test_a_subfolder_that_cannot_be_written_fails_only_its_photos(tmp_path: Path) -> None:
    """A mirrored tree whose output has one subfolder that cannot be written (here a file of
    that name is in the way; a read-only folder alike): the whole batch stopped before any work.
    Now the photos that go there fail, each with one line naming its output and the reason, and
    the others are converted (exit 1); only when no output can be written does the run stop at once."""
    src = tmp_path / "in"
    for rel in ["a/p.png", "c/q.png", "c/r.png"]:
        photo(src / rel)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_text("in the way")
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=300, highlight=False)
    summary = tmp_path / "s.json"
    assert batch_command(THUMB, [src], out, ".png", console=console, summary=summary) == 1
    assert sorted(p.name for p in (out / "c").iterdir()) == ["q.png", "r.png"]
    line = f"{out / 'a' / 'p.png'}: cannot write ({out / 'a'} is a file)"
    assert buf.getvalue().count(line) == 2, buf.getvalue()  # as it happened, and in the closing list
    assert json.loads(summary.read_text())["counts"] == {"ok": 2, "skipped": 0, "failed": 1, "not run": 0}
    assert (out / "a").read_text() == "in the way"


def test_a_finished_output_in_a_folder_that_cannot_be_written_is_skipped(tmp_path: Path, monkeypatch) -> None:
    """Resuming a batch whose finished outputs lie in a folder that has since become read-only:
    those outputs are skipped as done, not failed for a write that is not needed."""
    import errno
    import tempfile

    src = tmp_path / "in"
    for rel in ["a/p.png", "c/q.png"]:
        photo(src / rel)
    out = tmp_path / "out"
    assert batch_command(THUMB, [src], out, ".png") == 0
    mkstemp = tempfile.mkstemp

    def read_only_a(*args, dir=None, **kw):  # out/a read-only (root writes anywhere: a read-only mount)
        if dir is not None and Path(dir) == out / "a":
            raise PermissionError(errno.EACCES, "Permission denied")
        return mkstemp(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", read_only_a)
    summary = tmp_path / "s.json"
    assert batch_command(THUMB, [src], out, ".png", summary=summary) == 0
    assert json.loads(summary.read_text())["counts"] == {"ok": 0, "skipped": 2, "failed": 0, "not run": 0}


def test_a_bad_input_with_several_formats_is_one_failure(album: Path, tmp_path: Path) -> None:
    """Two formats: each bad photo is one error line, one failed summary record (listing the
    outputs it did not make) and counted once, as one failed input."""
    from rich.console import Console

    for suffixes in (".png", [".png", ".txt"]):
        buf = io.StringIO()
        console = Console(file=buf, force_terminal=False, width=300, highlight=False)
        summary = tmp_path / f"s{len(suffixes)}.json"
        out = tmp_path / str(len(suffixes))
        assert batch_command(THUMB, [album], out, suffixes, console=console, summary=summary) == 1
        text = buf.getvalue()
        assert f"{len(BAD)} of {len(GOOD) + len(BAD)} input(s) failed:" in text, text
        for b in BAD:
            assert text.count(f"error: {album / b}:") == 1, text  # said once as it happened ...
            assert text.count(f"  {album / b}:") == 1, text  # ... and once in the closing list
        data = json.loads(summary.read_text(encoding="utf-8"))
        failed = [r for r in data["results"] if r["status"] == "failed"]
        assert sorted(r["input"] for r in failed) == sorted(str(album / b) for b in BAD)
        assert data["counts"]["failed"] == len(BAD)
        n = 1 if isinstance(suffixes, str) else 2
        for r in failed:
            assert len(r["not_made"]) == n and all(Path(x).parent.is_relative_to(out) for x in r["not_made"])


# --------------------------------------------------------------------------------------------
# End to end: the real CLI with a real model (skipped without ../shared)



@pytest.mark.slow
def test_cli_depth_folder_with_bad_files(album: Path, tmp_path: Path) -> None:
    out = tmp_path / "depth out"
    summary = tmp_path / "s.json"
    p = subprocess.run(
        pool_cli_command(2, "depth", str(album), "-o", str(out), "--jobs", "2", "--summary", str(summary)),
        capture_output=True, text=True, timeout=600,
    )
    assert p.returncode == 1, p.stderr
    for b in BAD:
        assert str(album / b) in p.stderr
    assert f"{len(BAD)} of {len(GOOD) + len(BAD)} input(s) failed" in p.stderr
    for g in GOOD:
        d = out / Path(g).with_suffix(".png")
        im = Image.open(d)
        src = load_image(album / g)
        assert im.size == (src.width, src.height)
    data = json.loads(summary.read_text(encoding="utf-8"))
    assert data["counts"] == {"ok": len(GOOD), "skipped": 0, "failed": len(BAD), "not run": 0}
    assert data["workers"] == 2


def _outputs(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def _children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return kids


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _resume_after_kill(tmp_path: Path, command: list[str], suffix: str, check, n: int = 12,
                       sig: int = signal.SIGKILL) -> None:
    src = tmp_path / "many photos"
    for i in range(n):
        sub = src / f"roll {i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo_rgb(224, 168, seed=i)).save(sub / f"photo {i:02d}.jpg", quality=90)
    out = tmp_path / "out"
    args = pool_cli_command(2, *command, str(src), "-o", str(out))
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and len(_outputs(out) if out.exists() else []) < 2:
        time.sleep(0.02)
    assert proc.poll() is None, "the batch finished before it could be killed: " + proc.stderr.read().decode()
    workers = _children(proc.pid)
    proc.send_signal(sig)
    code = proc.wait(60)
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    if sig == signal.SIGINT:  # Ctrl-C: a clean stop, exit 130, told how to resume
        assert code == 130, stderr
        assert "run the same command again" in stderr
    deadline = time.monotonic() + 30  # worker processes do not outlive the batch
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not [w for w in workers if _alive(w)], "orphaned worker processes"
    done_before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in _outputs(out)}
    assert 0 < len(done_before) < n
    for p in done_before:  # whatever exists under a final name is complete
        check(p)
    p = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    final = _outputs(out)
    assert len(final) == n
    assert [q for q in out.rglob(".*")] == []  # stale temp files are gone
    for q in final:
        check(q)
    for q, stamp in done_before.items():  # finished files were not rewritten
        assert (q.stat().st_ino, q.stat().st_mtime_ns) == stamp, q


def _check_depth_png(path: Path) -> None:
    im = Image.open(path)
    im.load()
    assert im.size == (224, 168) and im.mode.startswith("I")


@pytest.mark.slow
@pytest.mark.parametrize("jobs,sig", [("1", signal.SIGKILL), ("2", signal.SIGKILL), ("2", signal.SIGINT)],
                         ids=["jobs1-kill9", "jobs2-kill9", "jobs2-ctrl-c"])
def test_depth_resume_after_kill(tmp_path: Path, jobs: str, sig: int) -> None:
    _resume_after_kill(tmp_path, ["depth", "--jobs", jobs], ".png", _check_depth_png,
                       sig=sig)


def _depth_batch_under_way(tmp_path: Path, jobs: str, n: int, out: Path, preexec_fn=None) -> subprocess.Popen:
    """``photo3d depth`` of ``n`` photos into ``out`` in a process group of its own (as under a terminal),
    returned once 2 outputs are written (stderr piped)."""
    src = tmp_path / "many photos"
    src.mkdir()
    for i in range(n):
        Image.fromarray(photo_rgb(224, 168, seed=i)).save(src / f"photo {i:02d}.jpg", quality=90)
    proc = subprocess.Popen(pool_cli_command(int(jobs), "depth", "--jobs", jobs, src, "-o", out), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env(), start_new_session=True, preexec_fn=preexec_fn)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and len(_outputs(out) if out.exists() else []) < 2:
        time.sleep(0.02)
    assert proc.poll() is None, "the batch finished before the hang-up: " + proc.stderr.read().decode()
    return proc


@pytest.mark.parametrize("jobs", ["1", pytest.param("2", marks=pytest.mark.slow)])  # slow: a process pool
def test_a_closed_terminal_stops_the_batch_as_ctrl_c_does(tmp_path: Path, jobs: str) -> None:
    """Closing the terminal sends SIGHUP to the batch's process group (workers too): it killed the
    batch at once, without the 'interrupted' line, leaving the temp files being written for the
    next run to remove.  Now SIGHUP stops it as SIGTERM and Ctrl-C do: exit 130, the line, no
    temp file, every output under its final name whole, no worker left."""
    n, out = 12, tmp_path / "out"
    proc = _depth_batch_under_way(tmp_path, jobs, n, out)
    workers = _children(proc.pid)
    os.killpg(proc.pid, signal.SIGHUP)  # what the terminal does when it closes
    code = proc.wait(60)
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert code == 130, (code, stderr)
    # a worker's output finished after the stop but before its result came back is named on the line
    # (session 31: "(kept: PATH, written before the stop)"), and is whole like the others (below)
    last = stderr.splitlines()[-1]
    assert re.fullmatch(r"interrupted: run the same command again to continue where it stopped"
                        r"( \(kept: .+, written before the stop\))?", last), stderr
    assert "Traceback" not in stderr and "warning" not in stderr, stderr  # (a killed helper: resource_tracker ...)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not [w for w in workers if _alive(w)], "orphaned worker processes"
    assert [q.name for q in out.rglob(".*")] == []  # no temp file left for the next run to remove
    done = _outputs(out)
    assert 0 < len(done) < n
    for q in done:
        _check_depth_png(q)


@pytest.mark.parametrize("jobs", ["1", pytest.param("2", marks=pytest.mark.slow)])  # slow: a process pool
def test_a_batch_under_nohup_outlives_its_terminal(tmp_path: Path, jobs: str) -> None:
    """``nohup photo3d ...`` ignores SIGHUP, so that a long batch outlives the terminal it was started
    from; the batch put its own handler in and stopped when the terminal closed (its workers too). A
    signal ignored from the start stays ignored: the batch runs to its end."""
    n, out = 8, tmp_path / "out"
    proc = _depth_batch_under_way(tmp_path, jobs, n, out, lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))  # nohup
    os.killpg(proc.pid, signal.SIGHUP)  # the terminal closes
    code = proc.wait(300)
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert code == 0 and "interrupted" not in stderr, (code, stderr)
    done = _outputs(out)
    assert len(done) == n
    for q in done:
        _check_depth_png(q)


@pytest.mark.slow  # a process pool
def test_a_batch_killed_outright_leaves_no_python_warning(tmp_path: Path) -> None:
    """``kill -9`` (the out-of-memory killer) of a batch with a process pool: multiprocessing's
    resource tracker, left behind, printed a two-line Python warning about the pool's semaphores
    (which it then cleans up) to the batch's terminal (helper-87, 4 of 4)."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(8):
        Image.fromarray(photo_rgb(224, 168, seed=i)).save(src / f"p{i}.jpg", quality=90)
    out = tmp_path / "out"
    proc = subprocess.Popen(pool_cli_command(2, "depth", "--jobs", "2", src, "-o", out), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env(), start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and len(_outputs(out) if out.exists() else []) < 1:
        time.sleep(0.02)
    assert proc.poll() is None, "the batch finished before the kill"
    os.kill(proc.pid, signal.SIGKILL)
    stderr = proc.stderr.read().decode()  # (to its end: the tracker holds it until it has cleaned up)
    proc.stderr.close()
    proc.wait(60)
    assert "resource_tracker" not in stderr and "warn" not in stderr, stderr


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])  # slow: a process pool
def test_a_broken_model_stops_the_batch_without_blaming_files(album: Path, tmp_path: Path, workers: int) -> None:
    jobs = plan_jobs([album], tmp_path / "out", ".png", globs=["*.jpg"])
    task = Task("batch_task_broken_model", batch_task_broken_model)
    executor = SequentialExecutor() if workers == 1 else PoolExecutor(workers)
    rep = run_batch(jobs, task, executor, progress=False)
    assert rep.fatal == "/models/broken.pt: not a TorchScript file"
    assert rep.exit_code == 1 and rep.failed == []
    assert {r.status for r in rep.results} == {"not run"}
    assert not (tmp_path / "out").exists()


def _check_glb(path: Path) -> None:
    assert path.suffix == ".glb"
    assert_valid_glb(path)


@pytest.mark.slow
def test_convert_resume_after_kill_9_gives_valid_glbs(tmp_path: Path) -> None:
    _resume_after_kill(tmp_path, ["convert", "--jobs", "2"], ".glb", _check_glb, n=8)


@pytest.mark.slow
def test_cli_convert_folder_with_bad_files(album: Path, tmp_path: Path) -> None:
    out = tmp_path / "3d"
    summary = tmp_path / "s.json"
    p = subprocess.run(
        cli_command("convert", str(album), "-o", str(out), "--summary", str(summary)),
        capture_output=True, text=True, timeout=600,
    )
    assert p.returncode == 1, p.stderr
    for b, reason in BAD.items():
        line = next(x for x in p.stderr.splitlines() if x.startswith(f"error: {album / b}: "))
        assert reason in line
    written = sorted(str(q.relative_to(out)) for q in out.rglob("*") if q.is_file())
    assert written == sorted(str(Path(g).with_suffix(".glb")) for g in GOOD)
    _check_glb(out / "ünïcødé ñame 写真.glb")
    _check_glb(out / "sub" / "sixteen bit.glb")
    data = json.loads(summary.read_text(encoding="utf-8"))
    assert data["counts"] == {"ok": len(GOOD), "skipped": 0, "failed": len(BAD), "not run": 0}
    for r in data["results"]:
        if r["status"] == "ok":
            assert r["bytes"] == Path(r["output"]).stat().st_size == r["report"]["glb_bytes"]


def _batch_on(executor, tmp_path: Path, n: int, buf: io.StringIO, monkeypatch) -> int:
    """The thumbnail batch of ``n`` photos in tmp_path/in, run by ``batch_command`` on ``executor``, its
    lines into ``buf``, its summary tmp_path/s.json; the exit code."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(n):
        Image.fromarray(photo_rgb(40, 30)).save(src / f"p{i}.jpg")
    import photo3d.batch.run as run

    monkeypatch.setattr(run, "make_executor", lambda *a, **k: executor)
    return batch_command(THUMB, [src], tmp_path / "out", ".png", console=Console(file=buf, width=300), progress=False,
                         summary=tmp_path / "s.json")


def test_a_stop_while_the_workers_close_keeps_what_was_done(tmp_path: Path, monkeypatch) -> None:
    """A stop (Ctrl-C, kill, a hang-up) that lands while the executor closes, after the last photo (Ray's
    shutdown takes a second or more): every result was thrown away, "0 converted, 40 not run" and a
    summary of 40 not run beside 40 finished outputs (helper-90, every time). What was done stays done."""

    class ClosedByCtrlC(SequentialExecutor):
        def close(self) -> None:
            raise KeyboardInterrupt

    buf = io.StringIO()
    code = _batch_on(ClosedByCtrlC(), tmp_path, 3, buf, monkeypatch)
    data = json.loads((tmp_path / "s.json").read_text())
    assert code == 130 and data["interrupted"] is True, buf.getvalue()
    assert data["counts"]["ok"] == 3 and data["counts"]["not run"] == 0, data["counts"]
    assert "3 converted" in buf.getvalue()


def test_rays_shutdown_comes_after_the_closing_line_and_the_summary(tmp_path: Path, monkeypatch) -> None:
    """Ray's shutdown sets SIGTERM back to the system's default while it runs (a second or two): a
    ``kill`` then ended the run before its closing line, the summary left as at its start ("finished":
    null, every input "not run"; helper-112, 7 of 7). It now runs last, after both."""
    seen = {}

    class ShutsDownLast(SequentialExecutor):
        def shutdown(self) -> None:
            seen["said"] = buf.getvalue()
            seen["summary"] = json.loads((tmp_path / "s.json").read_text())

    buf = io.StringIO()
    code = _batch_on(ShutsDownLast(), tmp_path, 2, buf, monkeypatch)
    assert code == 0 and "2 converted" in seen["said"], buf.getvalue()
    assert seen["summary"]["finished"] is not None and seen["summary"]["counts"]["ok"] == 2, seen["summary"]


def test_a_batch_without_a_summary_keeps_no_reports(tmp_path: Path, monkeypatch) -> None:
    """Every photo's report was kept until the batch ended (3-5 KB a photo in the parent, helper-87:
    gigabytes for the "archive of millions" this README promises). Without --summary, nothing reads
    them after each photo's line: each is dropped once said; with it, all are kept for the file."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        Image.fromarray(photo_rgb(40, 30)).save(src / f"p{i}.jpg")
    said = []
    for keep in (False, True):
        jobs = plan_jobs([src], tmp_path / f"out{keep}", ".png")
        rep = run_batch(jobs, THUMB_SAID, SequentialExecutor(), progress=False, keep_reports=keep,
                        console=Console(file=io.StringIO()), on_result=lambda r: said.append(dict(r.report)))
        assert rep.count("ok") == 4
        assert all(bool(r.report) == keep for r in rep.results), [r.report for r in rep.results]
    assert all(r and r["outputs"] for r in said)  # (each photo's line had its whole report)
    # the command passes it: a run with --summary writes every report, one without keeps none
    import photo3d.batch.run as run

    kept, real = [], run.run_batch
    monkeypatch.setattr(run, "run_batch", lambda *a, **k: kept.append(k["keep_reports"]) or real(*a, **k))
    for i, summary in enumerate((tmp_path / "s.json", None)):
        code = batch_command(THUMB_SAID, [src], tmp_path / f"cmd{i}", ".png", console=Console(file=io.StringIO()),
                             summary=summary, progress=False)
        assert code == 0
    assert kept == [True, False]
    assert all(r["report"]["outputs"] for r in json.loads((tmp_path / "s.json").read_text())["results"])


@pytest.mark.slow  # a process pool
def test_a_worker_killed_by_one_file_fails_only_that_file(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    names = [f"p{i}.jpg" for i in range(6)] + ["crash.jpg"]
    for n in names:
        Image.fromarray(photo_rgb(40, 30)).save(src / n)
    jobs = plan_jobs([src], tmp_path / "out", ".png")
    buf = io.StringIO()
    rep = run_batch(jobs, Task("batch_task_crashy", batch_task_crashy, ThumbOptions()), PoolExecutor(2),
                    console=Console(file=buf, width=300), progress=False)
    status = {r.src.name: (r.status, r.error) for r in rep.results}
    assert status.pop("crash.jpg") == ("failed", f"{src / 'crash.jpg'}: worker process died (out of memory or a crash)")
    assert all(v == ("ok", None) for v in status.values()), status
    assert rep.fatal is None and rep.exit_code == 1
    # the deaths are said (the photos rerun beside it succeeded without a word: an out-of-memory kill of a
    # worker whose photos then went through went unseen, helper-87), and counted in the summary
    assert "warning: a worker process died" in buf.getvalue() and "run again" in buf.getvalue(), buf.getvalue()
    assert rep.summary()["worker_deaths"] == rep.worker_deaths >= 1


@pytest.mark.slow  # a process pool
def test_a_worker_killed_while_writing_leaves_no_temp_file(tmp_path: Path) -> None:
    """A worker killed (kill -9, the out-of-memory killer) while it wrote an output leaves its
    hidden temp file: it stayed in OUT after the batch (for the next run to remove), partial data
    that a copy of OUT takes along.  Now the batch removes the temp files of its dead workers."""
    src = tmp_path / "in"
    src.mkdir()
    for n in ["p0.jpg", "p1.jpg", "crash.jpg"]:
        Image.fromarray(photo_rgb(40, 30)).save(src / n)
    out = tmp_path / "out"
    jobs = plan_jobs([src], out, ".png")
    rep = run_batch(jobs, Task("batch_task_crashy_writing", batch_task_crashy_writing, ThumbOptions()), PoolExecutor(2),
                    progress=False)
    assert {r.src.name: r.status for r in rep.results} == {"crash.jpg": "failed", "p0.jpg": "ok", "p1.jpg": "ok"}
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])  # slow: a process pool
def test_a_full_disk_stops_the_batch(tmp_path: Path, workers: int) -> None:
    """A full disk fails every output after it: the batch converted each remaining photo only to
    fail to write it (a line each, hours on an archive).  Now the first 'No space left on device'
    stops the batch with one line saying how to go on; the files not reached are 'not run', exit 1,
    nothing partial is left (not even the temp file of another worker stopped while it wrote), and a
    re-run (space freed) continues where it stopped."""
    src = tmp_path / "in"
    src.mkdir()
    c0 = "c0 slow" if workers > 1 else "c0"  # (another worker, still writing when the batch stops)
    for n in ["a0.jpg", "a1.jpg", "b full.jpg", f"{c0}.jpg", "c1.jpg", "c2.jpg"]:
        Image.fromarray(photo_rgb(40, 30)).save(src / n)
    out = tmp_path / "out"
    jobs = plan_jobs([src], out, ".png")
    task = Task("batch_task_disk_full", batch_task_disk_full, ThumbOptions())
    executor = SequentialExecutor() if workers == 1 else PoolExecutor(workers)
    rep = run_batch(jobs, task, executor, progress=False)
    assert rep.fatal == (f"{out / 'b full.png'}: cannot write (No space left on device); stopped: free some space, "
                         "then run the same command again to continue")
    assert rep.exit_code == 1 and rep.failed == []
    status = {r.src.name: r.status for r in rep.results}
    assert status["b full.jpg"] == "not run" and list(status.values()).count("not run") >= 4 - workers, status
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    rep = run_batch(jobs, THUMB, SequentialExecutor(), progress=False)  # space freed
    assert rep.exit_code == 0 and sorted(p.name for p in out.iterdir()) == [f"{n}.png" for n in
                                                                           ["a0", "a1", "b full", c0, "c1", "c2"]]


def test_an_output_through_a_broken_link_is_refused_before_any_work(tmp_path: Path) -> None:
    """``-o`` a broken symbolic link (or a loop of links) ran the model over every photo, then each
    output failed "No such file or directory" (a folder: hours of work for nothing, helper-79): the
    check before the work probed the folder above the link.  Now one line at once, nothing written."""
    from helpers.cli import cli

    for n in ("a.jpg", "b.jpg"):
        Image.fromarray(photo_rgb(40, 30)).save(tmp_path / n)
    (tmp_path / "dead").symlink_to(tmp_path / "not-there")
    (tmp_path / "loop").symlink_to("loop")
    cases = [(["a.jpg", "b.jpg"], "dead", f"-o {tmp_path / 'dead'}: cannot write into {tmp_path / 'dead'} "
                                           f"(a symbolic link to {tmp_path / 'not-there'}, which does not exist)"),
             (["a.jpg"], "dead/x.png", f"-o {tmp_path / 'dead/x.png'}: cannot write into {tmp_path / 'dead'} "
                                       f"(a symbolic link to {tmp_path / 'not-there'}, which does not exist)"),
             (["a.jpg", "b.jpg"], "loop", f"-o {tmp_path / 'loop'}: cannot write into {tmp_path / 'loop'} (a loop of symbolic links)")]
    for inputs, out, line in cases:
        r = cli("depth", *[tmp_path / i for i in inputs], "-o", tmp_path / out)
        assert r.exit_code == 1 and r.output.splitlines() == [f"error: {line}"], r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "b.jpg", "dead", "loop"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_dead_stderr_does_not_stop_the_batch(tmp_path: Path) -> None:
    """Messages that cannot be written (``2>/dev/full``; ``2>&1 | head -1``: the reader gone) stopped a
    batch after its first photo, without a word (rich raised SystemExit from the result line): the other
    outputs never written and the summary left saying nothing was run (helper-79).  Now the messages
    are dropped and the batch runs to its end: every output, the summary finished, the exit code the
    outputs' own (the bad photo: 1)."""
    src = make_album(tmp_path / "album")
    ok = subprocess.run(cli_command("depth", src, "-o", tmp_path / "out-ok", "--summary", tmp_path / "ok.json"),
                        capture_output=True, text=True, env=env(), timeout=300)
    want = sorted(x.relative_to(tmp_path / "out-ok").as_posix() for x in (tmp_path / "out-ok").rglob("*.png"))
    assert ok.returncode == 1 and len(want) >= 8 and len(ok.stderr.splitlines()) > 3, ok.stderr
    for how in ("full", "pipe"):
        out, summary = tmp_path / f"out-{how}", tmp_path / f"{how}.json"
        argv = cli_command("depth", src, "-o", out, "--summary", summary)
        if how == "full":
            with open("/dev/full", "w") as full:
                code = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=full, env=env(), timeout=300).returncode
        else:  # the reader reads one line and goes away
            p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env())
            p.stderr.readline()
            p.stderr.close()
            code = p.wait(timeout=300)
        made = sorted(x.relative_to(out).as_posix() for x in out.rglob("*.png"))
        assert made == want, (how, made)
        record = json.loads(summary.read_text())
        assert record["finished"] and record["counts"] == json.loads((tmp_path / "ok.json").read_text())["counts"], how
        assert record["counts"]["not run"] == 0 and code == 1, (how, code)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_stop_that_unwinds_into_another_error_still_ends_the_worker(tmp_path: Path) -> None:
    """A closed terminal sends SIGHUP to the workers, and the parent then SIGTERM: the second landed
    while the first's KeyboardInterrupt unwound a lock's wait (the model loading), which made it
    'RuntimeError: release unlocked lock', a failed result; the worker took the next photo and
    wrote it after the batch had stopped, the summary calling it not run (helper-87, half of 20
    tries). A worker that got a stop signal ends whatever its job raised."""
    code = (
        "import signal, sys\n"
        "from pathlib import Path\n"
        "import photo3d.batch.local as L\n"
        "from photo3d.batch.task import Task\n"
        "def run(src, dst, options):\n"
        "    try:\n"
        "        L._worker_sigterm(signal.SIGHUP, None)  # the signal, inside the task\n"
        "    except KeyboardInterrupt:\n"
        "        raise RuntimeError('release unlocked lock') from None  # what a second signal made of it\n"
        f"r = L._pool_execute(Task('t', run), Path('a.png'), Path({str(tmp_path / 'a.glb')!r}))\n"
        "print('returned', r.status, r.error)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=120)
    assert p.returncode == 128 + signal.SIGTERM and "returned" not in p.stdout, (p.returncode, p.stdout, p.stderr[-2000:])


def test_a_full_disk_stops_the_batch_while_side_files_are_added(tmp_path: Path) -> None:
    """A re-run that adds missing side files (``--html`` on a folder of GLBs) went on past a full disk:
    each later page failed with "stopped: free some space" and the batch did not stop (helper-79).
    Now it stops at the first, as the conversions do: the rest "not run", nothing failed, exit 1."""
    from helpers.batch_tasks import batch_finish_side, batch_task_thumb, thumb_and_side

    src = tmp_path / "in"
    src.mkdir()
    for n in ["a0.jpg", "b full.jpg", "c0.jpg", "c1.jpg"]:
        Image.fromarray(photo_rgb(40, 30)).save(src / n)
    out = tmp_path / "out"
    run_batch(plan_jobs([src], out, ".png"), THUMB, SequentialExecutor(), progress=False)  # the thumbnails alone
    task = Task("thumb+side", batch_task_thumb, ThumbOptions(), finish=batch_finish_side)
    rep = run_batch(plan_jobs([src], out, ".png", outputs=thumb_and_side), task, SequentialExecutor(), progress=False)
    assert rep.fatal and "No space left on device" in rep.fatal and "stopped: free some space" in rep.fatal
    assert rep.exit_code == 1 and rep.failed == []
    assert {r.src.name: r.status for r in rep.results} == {"a0.jpg": "ok", "b full.jpg": "not run", "c0.jpg": "not run",
                                                           "c1.jpg": "not run"}
    assert sorted(p.name for p in out.iterdir()) == ["a0.png", "a0.side.txt", "b full.png", "c0.png", "c1.png"]


@pytest.mark.slow  # a process pool
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_outputs_finished_when_a_full_disk_stops_the_batch_count_as_written() -> None:
    """When a full disk stops a batch of several workers, a file another worker had finished meanwhile
    (written, complete) was counted "not run" in the summary and the counts (helper-79): the pool
    threw its result away.  The pool's ``finished()`` gives it back."""
    import tempfile

    from helpers.batch_tasks import batch_task_full_at_once

    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "in"
        src.mkdir()
        for n in ["a full.jpg", "b0.jpg"]:
            Image.fromarray(photo_rgb(40, 30)).save(src / n)
        jobs = plan_jobs([src], Path(d) / "out", ".png")
        pool = PoolExecutor(2)
        stream = pool.run(Task("full at once", batch_task_full_at_once, ThumbOptions()), jobs)
        first = next(stream)
        assert first.src.name == "a full.jpg" and first.fatal is not None
        time.sleep(4)  # b0 finishes meanwhile (it takes a second)
        try:
            (late,) = pool.finished()
            assert late.src.name == "b0.jpg" and late.status == "ok" and late.dst.is_file()
        finally:
            pool.stop()
            stream.close()


@pytest.mark.slow  # a process pool
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_stopped_batch_leaves_no_empty_output_folder_of_its_own(tmp_path: Path) -> None:
    """Stopped while two workers wrote into a folder it made (Ctrl-C, a full disk), a batch left that
    folder behind empty now and then (helper-79): each worker removes the folders it made while they
    are empty, and the one that made it found the other's temp file still in it."""
    src = tmp_path / "in"
    src.mkdir()
    for n in ["b full.jpg", "c0 slow.jpg"]:
        Image.fromarray(photo_rgb(40, 30)).save(src / n)
    out = tmp_path / "out" / "deeper"
    rep = run_batch(plan_jobs([src], out, ".png"), Task("batch_task_disk_full", batch_task_disk_full, ThumbOptions()),
                    PoolExecutor(2), progress=False)
    assert rep.fatal and rep.count("ok") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


@pytest.mark.slow  # a process pool
def test_workers_that_cannot_start_stop_the_batch(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for i in range(5):
        Image.fromarray(photo_rgb(40, 30)).save(src / f"p{i}.jpg")
    jobs = plan_jobs([src], tmp_path / "out", ".png")
    rep = run_batch(jobs, Task("batch_task_thumb", batch_task_thumb, DiesInWorkers(os.getpid())), PoolExecutor(2),
                    progress=False)
    assert rep.fatal and "keep dying" in rep.fatal and rep.exit_code == 1
    assert rep.count("ok") == 0


# a stop signal raised in the process while the inputs are walked (a huge tree: minutes), before any photo
_STOPPED_IN_THE_SCAN = """import signal, sys
import photo3d.batch.plan as plan
walk, sig = plan._walk, getattr(signal, sys.argv.pop(1))
def walking(*args, **kwargs):
    for i, step in enumerate(walk(*args, **kwargs)):
        if i == 1:
            signal.raise_signal(sig)
        yield step
plan._walk = walking
from photo3d.cli import app
app(prog_name="photo3d")
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_batch_stopped_while_it_looks_for_photos_says_so(tmp_path: Path, sig: str) -> None:
    """Ctrl-C (or kill) during the walk of the input folders, before any photo was converted: the
    command ended with exit 130 and not a word (kill: no 130 either).  Now it says it in one line,
    and leaves nothing: no output folder, no probe or temp file, an earlier --summary untouched."""
    src = make_album(tmp_path / "album")
    summary = tmp_path / "s.json"
    summary.write_text('{"earlier": true}\n')
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-c", _STOPPED_IN_THE_SCAN, sig, "depth", str(src), "-o", str(out),
                        "--summary", str(summary)], capture_output=True, text=True, env=env(), timeout=300)
    assert p.returncode == 130, p.stderr
    assert p.stderr.splitlines() == ["interrupted while looking for photos, before any was converted: nothing was written"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["album", "s.json"]
    assert summary.read_text() == '{"earlier": true}\n'


def test_a_disk_already_full_stops_the_batch_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk was found only when the first output was written, after its photo's work
    (minutes for a large video).  Now a disk with less than DISK_MIN_FREE (64 KB) left stops the
    batch before the work, with the full disk's line; with room the same batch runs.  (The disk's
    numbers are the system's, with the blocks and files left set to what a full disk reports.)"""
    srcs = [photo(tmp_path / "in" / f"p{i}.png") for i in range(3)]
    out = tmp_path / "out"
    started = []

    def thumb(src: Path, dst: Path, opts: ThumbOptions) -> dict:
        started.append(src.name)
        return batch_task_thumb(src, dst, opts)

    counting = Task("thumb", thumb, ThumbOptions())
    real = os.statvfs

    def statvfs(path):
        st = real(path)
        if not Path(os.path.abspath(path)).is_relative_to(out.parent) or (left := disk["left"]) is None:
            return st
        return os.statvfs_result((st.f_bsize, st.f_frsize, st.f_blocks, left[0], left[0], st.f_files, left[1], left[1],
                                  st.f_flag, st.f_namemax))

    monkeypatch.setattr(os, "statvfs", statvfs)
    frsize, disk = real(tmp_path).f_frsize, {}
    for disk["left"], said in (((12288 // frsize, 100), "No space left on device: 12 KB free"),
                               ((10_000_000 // frsize, 0), "No space left on device: no file can be made")):
        console = Console(file=io.StringIO(), width=300)
        assert batch_command(counting, srcs, out, ".png", console=console) == 1
        assert started == [] and not out.exists()
        assert console.file.getvalue().splitlines()[0] == (
            f"error: {out / 'p0.png'}: cannot write ({said}); stopped: free some space, then run the same command again "
            "to continue"), console.file.getvalue()
    disk["left"] = None  # room again: the same command converts them all
    assert batch_command(counting, srcs, out, ".png") == 0
    assert started == ["p0.png", "p1.png", "p2.png"] and sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png", "p2.png"]


def test_torch_deprecation_notes_from_the_model_loading_thread_are_not_a_photos_warnings(tmp_path):
    """The depth model loads in a thread while a photo is worked on, whose warnings the batch
    records (process-wide): torch's note on quantized tensors, raised in that thread, was shown as
    the photo's ("warning: a.jpg: UserWarning: torch.quantize_per_tensor ... deprecated", now and
    then; helper-63).  Filtered by message; the photo's own warnings are still recorded."""
    import threading
    import warnings

    from photo3d.batch.task import Task, execute

    def run(src, dst, options):
        def loader():  # (what the model loader's first QNNPACK call says, once a process)
            warnings.warn("torch.quantize_per_tensor, torch.quantize_per_channel and other quantized tensor creation "
                          "functions that produce tensors with dtype torch.quint8 are deprecated", UserWarning, stacklevel=2)
            warnings.warn("`torch.jit.load` is deprecated. Please switch to `torch.export`.", DeprecationWarning, stacklevel=2)

        t = threading.Thread(target=loader)
        t.start()
        t.join()
        warnings.warn("the photo's own", UserWarning, stacklevel=2)
        dst.write_bytes(b"x")
        return {}

    r = execute(Task("noise", run), tmp_path / "a.jpg", tmp_path / "a.out")
    assert r.report.get("warnings") == ["UserWarning: the photo's own"], r.report


def test_a_photo_given_by_name_and_inside_a_folder_given_goes_with_the_folder(tmp_path: Path) -> None:
    """`photo3d depth in/a.jpg in -o out` put a.jpg in out/, `in in/a.jpg` in out/in/, silently: a
    re-run in the other order converted it again, and out held two maps of one photo (helper-94).
    Now it goes where the folder's tree puts it, whatever the order, and one warning line says so."""
    top = tmp_path / "in"
    top.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(photo_rgb(20, 20)).save(top / name)
    for inputs in ([top / "a.png", top], [top, top / "a.png"], [top / "." / "a.png", top]):
        notes = PlanNotes()
        jobs = plan_jobs(inputs, tmp_path / "out", ".png", notes=notes)
        assert sorted(str(j.dst.relative_to(tmp_path / "out")) for j in jobs) == ["in/a.png", "in/b.png"], inputs
        assert notes.warnings() == [f"{inputs[0] if inputs[0] != top else inputs[1]}: given by name and inside {top}, "
                                    "also given: converted once, with that folder"], notes.warnings()


def test_an_output_named_only_by_its_suffix_is_refused(tmp_path: Path) -> None:
    """`-o .glb` (a hidden name: Python sees no suffix) wrote a hidden folder .glb/ holding
    photo.glb, which `ls` does not show (helper-94); it is a usage error naming the fix, and
    `-o .glb/` still writes into such a folder."""
    src = tmp_path / "photo.png"
    Image.fromarray(photo_rgb(20, 20)).save(src)
    for out, what in ((tmp_path / ".glb", ".glb"), (tmp_path / "sub" / ".PNG", ".png")):
        with pytest.raises(UsageError, match=r"a name that is only a suffix; give the file a name \(-o .*photo\.(glb|PNG)\), "
                                             r"or end it with / to write into a folder \.(glb|PNG)"):
            plan_jobs([src], out, what)
        assert not out.exists()
    jobs = plan_jobs([src], str(tmp_path / ".glb") + "/", ".glb")
    assert [j.dst for j in jobs] == [tmp_path / ".glb" / "photo.glb"]


def test_a_named_pipe_in_the_way_of_an_output_is_not_called_a_file(tmp_path: Path) -> None:
    """`-o bad/pipe.jpg/x.glb` with pipe.jpg a named pipe said "pipe.jpg is a file" (helper-94)."""
    from photo3d.batch.plan import check_output_file

    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(UsageError, match=r"cannot write into .*pipe\.jpg \(.*pipe\.jpg is not a folder\)"):
        check_output_file(tmp_path / "pipe.jpg" / "x.glb")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match=r"notes\.txt is a file\)"):
        check_output_file(tmp_path / "notes.txt" / "x.glb")


def test_a_kept_output_that_is_not_whole_fails_its_photo(album: Path, tmp_path: Path) -> None:
    """A junk or cut-off depth map (PNG, NumPy) or still was kept as "skipped (output exists)", and
    failed only a re-run that added its preview, with Pillow's words nested in ours (helper-94).
    Now every kept PNG, .npy and JPEG is checked by its container, as a GLB is."""
    from photo3d.io import kept_file_problem

    out = tmp_path / "out"
    jobs = plan_jobs([album], out, ".png", globs=["plain.jpg"])
    assert [r.status for r in run_batch(jobs, THUMB, SequentialExecutor(), progress=False).results] == [Status.ok]
    whole = (out / "plain.png").read_bytes()
    assert [r.status for r in run_batch(jobs, THUMB, SequentialExecutor(), progress=False).results] == [Status.skipped]
    for data, why in ((b"junk\n", "not a PNG file"), (whole[:-20], "cut short: no end chunk")):
        (out / "plain.png").write_bytes(data)
        (r,) = run_batch(jobs, THUMB, SequentialExecutor(), progress=False).results
        assert r.status == Status.failed and r.error == (
            f"{album / 'plain.jpg'}: the existing {out / 'plain.png'} is not a whole PNG image ({why}); remove it, "
            "or run again with --overwrite"), r.error
        assert (out / "plain.png").read_bytes() == data  # (not touched)
    np.save(tmp_path / "d.npy", np.zeros((4, 5), np.float32))
    assert kept_file_problem(tmp_path / "d.npy") is None
    data = (tmp_path / "d.npy").read_bytes()
    (tmp_path / "d.npy").write_bytes(data[:-4])
    assert kept_file_problem(tmp_path / "d.npy") == ("NumPy array", f"{len(data) - 4:,} bytes where its header needs {len(data):,}")
    (tmp_path / "d.npy").write_bytes(b"junk")
    assert kept_file_problem(tmp_path / "d.npy") == ("NumPy array", "not a NumPy file")
    Image.fromarray(photo_rgb(20, 20)).save(tmp_path / "s.jpg")
    assert kept_file_problem(tmp_path / "s.jpg") is None
    (tmp_path / "s.jpg").write_bytes((tmp_path / "s.jpg").read_bytes()[:-2])
    assert kept_file_problem(tmp_path / "s.jpg") == ("JPEG image", "cut short: no end marker")
    # a video, GIF or WebP cut short, or a text file under its name, was kept as shared (helper-100)
    frames = [Image.fromarray(photo_rgb(20, 20, seed=k)) for k in range(3)]
    for name in ("a.gif", "a.webp"):
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:], duration=100, loop=0)
    box = lambda name, body: (8 + len(body)).to_bytes(4, "big") + name + body  # noqa: E731
    (tmp_path / "a.mp4").write_bytes(box(b"ftyp", b"isom" + bytes(4)) + box(b"moov", bytes(40)) + box(b"mdat", bytes(900)))
    for name, kind in (("a.gif", "GIF"), ("a.webp", "WebP"), ("a.mp4", "MP4 video")):
        whole = (tmp_path / name).read_bytes()
        assert kept_file_problem(tmp_path / name) is None, name
        (tmp_path / name).write_bytes(whole[:-30])
        assert kept_file_problem(tmp_path / name)[0] == kind and "cut short" in kept_file_problem(tmp_path / name)[1] \
            or kind == "WebP" and "bytes where its header says" in kept_file_problem(tmp_path / name)[1], name
        (tmp_path / name).write_bytes(b"junk\n")
        assert kept_file_problem(tmp_path / name) == (kind, f"not a{'n' if kind[0] == 'M' else ''} {kind.split()[0]} file"), name
    (tmp_path / "a.mp4").write_bytes(box(b"ftyp", b"isom" + bytes(4)) + box(b"mdat", bytes(900)))
    assert kept_file_problem(tmp_path / "a.mp4") == ("MP4 video", "cut short: no moov box")
    # a GIF cut where a byte happens to be the trailer's ";" passed 1 time in 256 (helper-103)
    whole = (tmp_path / "b.gif")
    frames[0].save(whole, save_all=True, append_images=frames[1:], duration=100, loop=0)
    data = whole.read_bytes()
    cuts = [k for k in range(100, len(data) - 1) if data[k - 1:k] == b";"]
    for k in cuts[:5]:
        whole.write_bytes(data[:k])
        assert kept_file_problem(whole) == ("GIF", "cut short: no trailer"), k
    # a page: its GLB checked where it ends (not decoded whole), wrapped base64 and whitespace after
    # </html> are whole still (the page shows them), a page cut inside its GLB is not (helper-103)
    from photo3d.viewer import viewer_html

    from photo3d.pipeline import ConvertOptions, convert_file

    src = tmp_path / "p.png"
    Image.fromarray(photo_rgb(40, 30)).save(src)
    convert_file(src, tmp_path / "p.glb", ConvertOptions())
    page = viewer_html((tmp_path / "p.glb").read_bytes(), "p")
    at = page.index('type="application/octet-stream">') + len('type="application/octet-stream">')
    end = page.index("</script>", at)
    b64 = page[at:end]
    for name, text, problem in (
            ("whole", page, None),
            ("spaced", page + " " * 40 + "\n", None),
            ("wrapped", page[:at] + "\n".join(b64[i:i + 76] for i in range(0, len(b64), 76)) + page[end:], None),
            ("cut", page[:at] + b64[: len(b64) // 2] + page[end:], ("viewer page", "cut short")),
            ("mine", "<html>my notes</html>\n", ("viewer page", "not one photo3d wrote"))):
        (tmp_path / f"{name}.html").write_text(text, encoding="utf-8")
        assert kept_file_problem(tmp_path / f"{name}.html") == problem, name


def test_a_photo_added_beside_its_namesakes_never_keeps_another_photos_output(tmp_path: Path) -> None:
    """Photos of one name given from several folders are numbered by their paths (x.png.png,
    x-2.png.png); a photo added later moves the numbers, and the resume check looked at names only:
    o/x.png took x.png.png (p's depth map) and p took x-2.png.png (q's), both "skipped (output
    exists)", exit 0, o never converted (helper-112).  A numbered output is now written again."""
    srcs = {}
    for name, seed in (("p", 1), ("q", 2), ("o", 3)):
        (tmp_path / name).mkdir()
        Image.fromarray(photo_rgb(48, 32, seed=seed)).save(tmp_path / name / "x.png")
        srcs[name] = tmp_path / name / "x.png"
    out = tmp_path / "out"

    def depth(*names: str) -> subprocess.CompletedProcess:
        return subprocess.run(cli_command("depth", *[str(srcs[n]) for n in names], "-o", str(out), "--preview"),
                              capture_output=True, text=True, env=env(), timeout=300)

    def own(name: str) -> bytes:  # the photo's depth map made alone
        alone = tmp_path / "alone" / f"{name}.png"
        res = subprocess.run(cli_command("depth", str(srcs[name]), "-o", str(alone)), capture_output=True, text=True,
                             env=env(), timeout=300)
        assert res.returncode == 0, res.stderr
        return np.asarray(Image.open(alone)).tobytes()

    assert depth("p", "q").returncode == 0
    res = depth("o", "p", "q")
    assert res.returncode == 0, res.stderr
    assert "skipped" not in res.stderr.splitlines()[-1].replace("0 skipped", ""), res.stderr
    want = {"o": out / "x.png.png", "p": out / "x-2.png.png", "q": out / "x-3.png.png"}
    for name, path in want.items():
        assert np.asarray(Image.open(path)).tobytes() == own(name), f"{path.name} is not {name}/x.png's depth map"
        preview = path.with_name(path.name[:-4] + ".preview.png")
        assert preview.stat().st_mtime >= path.stat().st_mtime - 5  # written with it, not kept from the first run


def test_a_photo_of_the_users_under_a_depth_maps_name_is_not_kept_as_done(tmp_path: Path) -> None:
    """``-o`` the photos' own folder: OUT/x.png, a photo of the user's, stood where new/x.jpg's depth
    map goes, and was "skipped (output exists)", then taken for photo3d's own by every later run
    (helper-112).  A kept .png / .jpg output must be one photo3d tagged (a depth map, a stereo still),
    as a kept page or preview must: else the input fails, naming the file, and the photo is untouched."""
    (tmp_path / "new").mkdir()
    Image.fromarray(photo_rgb(48, 32, seed=1)).save(tmp_path / "new" / "x.jpg")
    mine = tmp_path / "x.png"
    Image.fromarray(photo_rgb(48, 32, seed=2)).save(mine)
    before = mine.read_bytes()
    res = subprocess.run(cli_command("depth", str(tmp_path / "new"), "-o", str(tmp_path)), capture_output=True,
                         text=True, env=env(), timeout=300)
    assert res.returncode != 0, res.stderr
    assert f"the existing {mine} is not a PNG image photo3d wrote; move it, or run again with --overwrite" in res.stderr
    assert "skipped (output exists)" in res.stderr and "0 skipped" in res.stderr
    assert mine.read_bytes() == before
    # photo3d's own depth map there is kept as done
    mine.unlink()
    assert subprocess.run(cli_command("depth", str(tmp_path / "new"), "-o", str(tmp_path)), capture_output=True,
                          env=env(), timeout=300).returncode == 0
    res = subprocess.run(cli_command("depth", str(tmp_path / "new"), "-o", str(tmp_path)), capture_output=True,
                         text=True, env=env(), timeout=300)
    assert res.returncode == 0 and "1 skipped (output exists)" in res.stderr, res.stderr


def test_a_link_to_itself_is_called_a_loop_not_a_broken_link(tmp_path: Path) -> None:
    """A symbolic link to itself given as an input was "no such file (a broken symbolic link to
    self.jpg)" (helper-112): it is a loop, and says so."""
    (tmp_path / "self.jpg").symlink_to("self.jpg")
    jobs = plan_jobs([tmp_path / "self.jpg"], tmp_path / "out", ".png")
    assert [j.error for j in jobs] == [f"{tmp_path / 'self.jpg'}: a symbolic link that loops (to self.jpg, never to a file)"]


def test_a_depth_map_kept_from_a_run_with_other_raw_says_so(tmp_path: Path) -> None:
    """``depth C -o d --raw`` then ``depth C -o d``: the network-grid maps were kept as done without a
    word, though each PNG says it is raw (helper-112). Kept all the same (a resume does not redo
    finished work), with one warning line each naming the map and what to run."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        Image.fromarray(photo_rgb(64, 48, seed=i)).save(src / f"p{i}.png")
    out = tmp_path / "d"

    def depth(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(cli_command("depth", str(src), "-o", str(out), *extra), capture_output=True, text=True,
                              env=env(), timeout=300)

    assert depth("--raw").returncode == 0
    res = depth()
    assert res.returncode == 0 and "2 skipped (output exists)" in res.stderr, res.stderr
    for i in range(2):
        assert (f"warning: {out / f'p{i}.png'}: kept from an earlier run with --raw; run again with --overwrite "
                "to make it without") in res.stderr, res.stderr
    res = depth("--raw")  # the same options: no word
    assert res.returncode == 0 and "warning" not in res.stderr, res.stderr


def test_a_video_or_3d_photo_kept_from_a_run_with_other_options_says_so(tmp_path: Path) -> None:
    """``convert P -o out --format gif --size 64`` then ``--size 96``: the GIF made at 64 px was kept as
    done without a word (helper-112), and so was a 3D photo built with another ``--parallax``. Kept
    all the same (a resume does not redo finished work), with one warning line naming the output,
    what it was made with and what to run; the same options again: no word."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo_rgb(64, 48, seed=3)).save(src / "p.png")
    out = tmp_path / "out"

    def convert(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(cli_command("convert", str(src), "-o", str(out), *extra), capture_output=True,
                              text=True, env=env(), timeout=300)

    gif = ("--format", "gif", "--seconds", "0.2", "--fps", "10")
    assert convert(*gif, "--size", "64").returncode == 0
    summary = tmp_path / "summary.json"
    res = convert(*gif, "--size", "96", "--summary", str(summary))
    assert res.returncode == 0 and "1 skipped (output exists)" in res.stderr, res.stderr
    said = (f"{out / 'p.gif'}: kept from an earlier run with --size 64 (this run: --size 96); run again "
            "with --overwrite to make it with this run's")
    assert f"warning: {said}" in res.stderr, res.stderr
    record = json.loads(summary.read_text())["results"][0]  # ... and the --summary record holds it
    assert record["status"] == "skipped" and record["report"]["warning"] == said, record
    res = convert(*gif, "--size", "64", "--summary", str(summary))
    assert res.returncode == 0 and "warning" not in res.stderr, res.stderr
    assert "warning" not in json.loads(summary.read_text())["results"][0]["report"]
    assert convert("--format", "glb", "--parallax", "0.05").returncode == 0
    res = convert("--format", "glb")
    assert res.returncode == 0 and "1 skipped (output exists)" in res.stderr, res.stderr
    assert (f"warning: {out / 'p.glb'}: kept from an earlier run with --parallax 0.05 (this run: --parallax 0.04)"
            in res.stderr), res.stderr
    # a 3D photo given as input keeps its own --parallax: its GIF says nothing of this run's default
    glbs = tmp_path / "glbs"
    glbs.mkdir()
    (out / "p.glb").rename(glbs / "p.glb")
    assert_valid_glb(glbs / "p.glb")
    for _ in range(2):
        res = subprocess.run(cli_command("convert", str(glbs / "p.glb"), "-o", str(tmp_path / "g") + "/", *gif,
                                         "--skip-existing"), capture_output=True,
                             text=True, env=env(), timeout=300)
        assert res.returncode == 0 and "kept from" not in res.stderr, res.stderr
    assert "p.gif exists, kept" in res.stderr, res.stderr
    # ... its own: that 3D photo made again with another --parallax, the GIF made from it says so
    assert convert("--format", "glb", "--parallax", "0.08", "--overwrite").returncode == 0
    (out / "p.glb").replace(glbs / "p.glb")
    res = subprocess.run(cli_command("convert", str(glbs / "p.glb"), "-o", str(tmp_path / "g") + "/", *gif,
                                     "--skip-existing"), capture_output=True, text=True, env=env(), timeout=300)
    assert "kept from an earlier run with --parallax 0.05 (this run: --parallax 0.08)" in res.stderr, res.stderr
    # a page added to a kept GIF made at another --size: the page is written, the GIF's options said
    res = convert(*gif, "--size", "96", "--html", "--summary", str(summary))
    assert res.returncode == 0 and (out / "p.html").exists(), res.stderr
    assert f"warning: {out / 'p.gif'}: kept from an earlier run with --size 64 (this run: --size 96)" in res.stderr, res.stderr
    record = json.loads(summary.read_text())["results"][0]
    assert record["status"] == "ok" and record["report"]["warning"].startswith(said[:60]), record


def test_the_kept_3d_photos_parallax_is_read_from_its_json_alone(tmp_path: Path) -> None:
    """A kept GLB is not read whole to find its ``--parallax`` (a sparse file of gigabytes under its name
    would fill the memory): its JSON chunk only, and only a JSON of photo3d's size."""
    import struct as st

    from photo3d.pipeline import ConvertOptions, kept_note

    def glb(json_bytes: bytes, declared: int | None = None) -> Path:
        path = tmp_path / f"g{len(list(tmp_path.iterdir()))}.glb"
        n = len(json_bytes) if declared is None else declared
        path.write_bytes(b"glTF" + st.pack("<II", 2, 20 + len(json_bytes)) + st.pack("<I", n) + b"JSON" + json_bytes)
        return path

    meta = b'{"extras": {"photo3d": {"parallax": {"strength": 0.05}}}}'
    assert kept_note(tmp_path / "p.jpg", glb(meta), ConvertOptions()) == (
        "kept from an earlier run with --parallax 0.05 (this run: --parallax 0.04); run again with --overwrite "
        "to make it with this run's")
    assert kept_note(tmp_path / "p.jpg", glb(meta), ConvertOptions(parallax=0.05)) is None
    assert kept_note(tmp_path / "p.jpg", glb(meta, declared=3 << 30), ConvertOptions()) is None  # (not read)
    assert kept_note(tmp_path / "p.jpg", glb(b"{" * 100), ConvertOptions()) is None


def test_a_kept_outputs_record_is_compared_as_the_file_plays_and_said_plainly(tmp_path: Path, monkeypatch) -> None:
    """A GIF asked for 120 fps plays at 50 (a GIF frame lasts at least 2/100 s): a resume asking for 50
    warned that it was made "with --fps 120"; a still made without --stereo was "kept from an earlier run
    with without --stereo"; a GIF of a gigabyte of zeros under the output's name (sparse: 8 kB on disk)
    was read byte by byte for its record, 91 s without a word (helper-114)."""
    import os as os_

    from photo3d.pipeline import ConvertOptions, kept_note
    from photo3d.video import SHARE_TAG, ShareOptions, recorded_settings, share_settings

    assert share_settings(ShareOptions(fps=120), ".gif") == share_settings(ShareOptions(fps=50), ".gif")
    assert share_settings(ShareOptions(fps=120), ".mp4") != share_settings(ShareOptions(fps=50), ".mp4")
    gif = tmp_path / "v.gif"
    Image.new("RGB", (8, 8)).save(gif, comment=f"{SHARE_TAG} path=circle seconds=4 fps=30 size=auto stereo=none".encode())
    opts = ConvertOptions(share=ShareOptions(seconds=4, fps=30, path="circle", stereo="sbs", size=96))
    assert kept_note(tmp_path / "p.jpg", gif, opts) == (
        "kept from an earlier run with no --size, no --stereo (this run: --size 96, --stereo sbs); run again with "
        "--overwrite to make it with this run's")
    big = tmp_path / "big.gif"
    with open(big, "wb") as f:
        f.write(b"GIF89a" + bytes(7))
        f.truncate(1 << 30)
    with open(big, "r+b") as f:
        f.seek(-2, os_.SEEK_END)
        f.write(b"\x00;")
    import PIL.Image

    def never(*a, **k):
        raise AssertionError("opened")

    monkeypatch.setattr(PIL.Image, "open", never)  # (not opened at all: its size says it is no GIF of photo3d's)
    assert recorded_settings(big) is None

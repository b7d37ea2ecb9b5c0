"""Model-free per-file batch tasks: decode with ``photo3d.io.load_image`` and write a grey thumbnail
atomically, so batch tests exercise the real decoder on real good and bad files without a depth
model.  Pickled by reference: worker processes import ``helpers.batch_tasks`` (tests/ is on their path)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from photo3d.batch import Task
from photo3d.io import atomic_output, load_image


@dataclass(frozen=True)
class ThumbOptions:
    size: int = 32
    max_megapixels: float = 100.0


def batch_task_thumb(src: Path, dst: Path, opts: ThumbOptions) -> dict:
    photo = load_image(src, max_megapixels=opts.max_megapixels)
    g = photo.rgb.mean(axis=2).astype(np.uint8)
    im = Image.fromarray(g).resize((opts.size, opts.size), Image.BILINEAR)
    with atomic_output(dst) as tmp:
        im.save(tmp, format="PNG")
    return {"width": photo.width, "height": photo.height}


THUMB = Task("batch_task_thumb", batch_task_thumb, ThumbOptions())


def batch_task_thumb_said(src: Path, dst: Path, opts: ThumbOptions) -> dict:
    """Like batch_task_thumb, and its report names its output as the real tasks do: a path in
    ``outputs``, a message that names it (escaped) in ``warnings``."""
    from photo3d.errors import printable

    return {**batch_task_thumb(src, dst, opts), "outputs": [str(dst)], "warnings": [f"{printable(dst)}: written"]}


THUMB_SAID = Task("batch_task_thumb_said", batch_task_thumb_said, ThumbOptions())


def batch_task_crashy(src: Path, dst: Path, opts: ThumbOptions) -> dict:
    """Like batch_task_thumb, but a file named *crash* kills its worker (as the OOM killer would)."""
    if "crash" in src.name:
        os.kill(os.getpid(), signal.SIGKILL)
    return batch_task_thumb(src, dst, opts)


def batch_task_crashy_writing(src: Path, dst: Path, opts: ThumbOptions) -> dict:
    """Like batch_task_crashy, but the worker is killed while it writes the output's temp file."""
    if "crash" in src.name:
        with atomic_output(dst) as tmp:
            tmp.write_bytes(b"partial")
            os.kill(os.getpid(), signal.SIGKILL)
    return batch_task_thumb(src, dst, opts)


def batch_task_disk_full(src: Path, dst: Path, opts: ThumbOptions) -> dict:
    """Like batch_task_thumb, but writing the output of a file named *full* meets a full disk
    (the system's own ENOSPC: /dev/full); one named *slow* is still writing its temp file when the
    batch stops, deaf to SIGTERM (as in a long system call), so the batch has to kill its worker."""
    import time

    writing = src.parent / "slow one is writing.txt"  # (not a photo: a re-run does not see it)
    if "slow" in src.name:
        with atomic_output(dst) as tmp:
            tmp.write_bytes(b"partial")
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            writing.touch()
            time.sleep(8)
    if "full" in src.name:
        if any("slow" in p.name for p in src.parent.iterdir()):  # wait until the slow one is writing
            deadline = time.monotonic() + 30
            while not writing.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        with atomic_output(dst) as tmp, open("/dev/full", "wb") as disk:
            tmp.write_bytes(b"partial")
            disk.write(b"x")
            disk.flush()
    return batch_task_thumb(src, dst, opts)


def _dies_outside(pid: int):
    if os.getpid() != pid:
        os._exit(3)  # a worker that cannot even start (say, a broken install)
    return DiesInWorkers(pid)


@dataclass(frozen=True)
class DiesInWorkers:
    pid: int

    def __reduce__(self):
        return (_dies_outside, (self.pid,))


def batch_task_broken_model(src: Path, dst: Path, opts) -> dict:
    from photo3d.errors import ModelError

    raise ModelError("not a TorchScript file", "/models/broken.pt")


def batch_task_after_first(src: Path, dst: Path, opts: ThumbOptions) -> dict:
    """Like batch_task_thumb for ``.png``; any other output says whether the input's ``.png`` was
    already there when it started (as a video rendered from the GLB beside it needs)."""
    if dst.suffix == ".png":
        import time

        time.sleep(0.3)  # a conversion that takes a while (the other worker is idle meanwhile)
        return batch_task_thumb(src, dst, opts)
    first_done = dst.with_suffix(".png").is_file()
    with atomic_output(dst) as tmp:
        tmp.write_text(str(first_done))
    return {"first_done": first_done}


AFTER_FIRST = Task("batch_task_after_first", batch_task_after_first, ThumbOptions())


def batch_task_thumb_linking(src: Path, dst: Path, opts: ThumbOptions) -> dict:
    """Like batch_task_thumb; the photo named *first* then turns the output folder ``z`` beside its
    output into a link to ``../elsewhere`` (another user of a shared output folder, mid-batch)."""
    out = batch_task_thumb(src, dst, opts)
    if "first" in src.name:
        z = dst.parent / "z"
        z.rmdir()
        z.symlink_to(dst.parent.parent / "elsewhere", target_is_directory=True)
    return out


def _meet_a_full_disk(dst: Path) -> None:
    """Write ``dst`` to a full disk (the system's own ENOSPC: /dev/full)."""
    with atomic_output(dst) as tmp, open("/dev/full", "wb") as disk:
        tmp.write_bytes(b"partial")
        disk.write(b"x")
        disk.flush()


def batch_task_full_at_once(src: Path, dst: Path, opts: ThumbOptions) -> dict:
    """A file named *full* meets a full disk at once; the others are written after a second."""
    import time

    if "full" in src.name:
        _meet_a_full_disk(dst)
    time.sleep(1.0)
    return batch_task_thumb(src, dst, opts)


def thumb_and_side(dst: Path) -> list[Path]:
    """The outputs of THUMB_WITH_SIDE: the thumbnail and its side file NAME.side.txt."""
    return [dst, dst.with_name(dst.stem + ".side.txt")]


def batch_finish_side(src: Path, dst: Path, opts: ThumbOptions) -> dict:
    """The finish hook: write the missing side file of an existing thumbnail; *full*: a full disk."""
    side = thumb_and_side(dst)[1]
    if "full" in src.name:
        _meet_a_full_disk(side)
    with atomic_output(side) as tmp:
        tmp.write_text("side\n")
    return {"outputs": [str(side)]}

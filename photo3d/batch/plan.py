"""Plan a batch: INPUT... -> (input, output paths) jobs.

:func:`plan_jobs` walks the inputs (recursive, hidden entries, the output folder and the depth
map PNGs photo3d wrote skipped, symlink loops visited once) and maps every image to an output path that mirrors the input tree.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import unicodedata
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from ..errors import OutputError, Photo3DError, UsageError, printable
from ..depth.maps import photo3d_kind
from ..io import (OUTPUT_THERE, link_out_of, PATH_MAX, IMAGE_SUFFIXES, existing_folder, is_image_path, name_max, output_state,
                  stale_temp_target)
from .result import msg


@dataclass
class Job:
    src: Path
    dst: Path
    error: str | None = None  # known to fail before running (unreadable folder, output = input)
    sides: tuple[Path, ...] = ()  # side outputs written with dst (NAME.html, NAME.preview.png)
    given: str | None = None  # the input as written where its Path drops part of it ('photo.jpg/')
    # its output's name depends on the other inputs (photos of one name, numbered by their paths): an
    # output of that name from an earlier run may be another photo's, so it is written again, not kept
    numbered: bool = False

    @property
    def outputs(self) -> list[Path]:
        return [self.dst, *self.sides]


@dataclass
class PlanNotes:
    """What a walk passed over, for warnings: input folders without photos, photo3d's own
    depth maps (and previews) found in a walk, which are not photos, and other paths to photos
    met already."""

    empty: list[Path] = field(default_factory=list)
    own: list[tuple[Path, str]] = field(default_factory=list)  # (path, "depth map" or "preview")
    # a photo met twice (a folder given under two names, a link to a photo met already): converted once
    twice: list[tuple[Path, Path]] = field(default_factory=list)  # (skipped path, the path converted)
    inside: list[tuple[Path, int]] = field(default_factory=list)  # (the output folder inside an input, its photos)
    # a photo given by name that a given folder holds too: converted once, in that folder's tree
    named_in: list[tuple[Path, Path]] = field(default_factory=list)  # (the photo as given, the folder given)

    def warnings(self, globs: Sequence[str] = ()) -> list[str]:
        """One line per empty folder, one line for all the skipped depth maps."""
        match = f" matching {' or '.join(globs)}" if globs else ""
        out = [msg(p, f"holds no photos{match}; skipped") for p in self.empty]
        out += [msg(p, f"skipped: the output folder, inside the input; its {n} photo{'s' if n > 1 else ''} "
                       f"{'are' if n > 1 else 'is'} left out") for p, n in self.inside]  # (not "converted": depth says it too)
        if len(self.own) == 1:
            (p, kind), = self.own
            out.append(msg(p, f"skipped: a {'depth ' if kind == 'preview' else ''}{kind} photo3d wrote, not a photo"))
        elif self.own:  # (previews are not depth maps: "6 depth maps" were 3 maps and their 3 previews)
            kinds = Counter(kind for _, kind in self.own)
            parts = [f"{n} {'depth ' if kind == 'preview' and not kinds['depth map'] else ''}{kind}{'s' if n > 1 else ''}"
                     for kind in ("depth map", "preview", "stereo still", "video") if (n := kinds[kind])]
            listed = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
            out.append(f"skipped {listed} photo3d wrote, not photos (such as {printable(self.own[0][0])})")
        if len(self.named_in) == 1:
            (p, folder), = self.named_in
            out.append(msg(p, f"given by name and inside {printable(folder)}, also given: converted once, with that folder"))
        elif self.named_in:
            p, folder = self.named_in[0]
            out.append(f"{len(self.named_in)} photos given by name are inside folders also given: each converted once, "
                       f"with its folder (such as {printable(p)}, inside {printable(folder)})")
        if len(self.twice) == 1:
            (p, kept), = self.twice
            out.append(msg(p, f"skipped: the same file as {printable(kept)} (reached through a link, or an input given twice)"))
        elif self.twice:
            p, kept = self.twice[0]
            out.append(f"skipped {len(self.twice)} paths to photos met already (through links, or inputs given twice), "
                       f"such as {printable(p)}, the same file as {printable(kept)}")
        return out


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def glob_matches(rel: str, globs: Sequence[str]) -> bool:
    if not globs:
        return True
    rel_l = rel.lower()
    name_l = rel_l.rsplit("/", 1)[-1]
    # `**/` also matches no folder at all (as in shell globstar): '**/*.jpg' takes top-level files too
    pats = [g.lower() for g in globs] + [g.lower()[3:] for g in globs if g.startswith("**/")]
    return any(fnmatch.fnmatchcase(rel_l, g) or fnmatch.fnmatchcase(name_l, g) for g in pats)


def discover(
    folder: Path,
    globs: Sequence[str] = (),
    exclude: Iterable[Path] = (),
    errors: list[tuple[Path, str]] | None = None,
    own: list[tuple[Path, str]] | None = None,
    passed: list[Path] | None = None,
    linked: list[tuple[Path, Path]] | None = None,
) -> Iterator[Path]:
    """Yield the image files under ``folder``, sorted, depth first.

    Hidden files and folders (name starting with ".") are skipped, and so are the folders in
    ``exclude`` (the output folder when it lies inside the input).  Symbolic links to folders are
    followed, but every real folder is visited once, so link loops end; a folder that the walk
    also reaches without a link is visited under that path, never through the link (``alias ->
    real`` beside ``real``: ``real/x.jpg``, whichever sorts first), and such a link and the
    path it leads to go into ``linked`` (links that loop back to a folder above them do not:
    a loop is not a second path to a photo).  ``globs`` filter on the
    path relative to ``folder`` or on the file name (case-insensitive; ``*`` crosses folders).
    Folders that cannot be listed are appended to ``errors`` as (path, reason).  Depth map PNGs
    that photo3d wrote (:func:`~photo3d.depth.maps.photo3d_kind`) are not photos: they are
    skipped, and appended to ``own`` with their kind.  The ``exclude`` folders met are appended
    to ``passed``.
    """
    excluded = set()
    for p in exclude:
        with contextlib.suppress(OSError):
            st = os.stat(p)
            excluded.add((st.st_dev, st.st_ino))
    visited: set[tuple[int, int]] = set()
    direct: set[tuple[int, int]] | None = None  # listed when the walk meets its first link to a folder

    dir_links: list[str] = []  # links to folders met by reached_directly's walk

    def reached_directly() -> set[tuple[int, int]]:
        """The folders reached without a link (not hidden, not excluded): a link to one is not followed."""
        out: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in _walk(folder, lambda e: None, follow_links=False):
            with contextlib.suppress(OSError):
                st = os.stat(dirpath)
                if (st.st_dev, st.st_ino) in excluded:
                    dirnames[:] = []
                    continue
                out.add((st.st_dev, st.st_ino))
            dirnames[:] = [d for d in dirnames if not _is_hidden(d)]
            if globs:  # (a link to a folder is a file of a walk that does not follow links)
                dir_links.extend(full for f in filenames if not _is_hidden(f)
                                 and os.path.islink(full := os.path.join(dirpath, f)) and os.path.isdir(full))
        return out

    aliases: list[tuple[str, str]] | None = None  # with globs: (real folder, a link's path to it relative to folder)

    def alias_matches(dirpath: str, name: str) -> bool:
        """``--glob 'alias/*'`` names photos by a link to a folder the walk takes under its own
        path (``alias -> real``): they match under the link's name too."""
        nonlocal aliases, direct
        if aliases is None:
            direct = reached_directly() if direct is None else direct
            aliases = []
            for full in dir_links:
                with contextlib.suppress(OSError, ValueError):
                    st = os.stat(full)
                    if (st.st_dev, st.st_ino) in direct and not _loops_back(full, os.path.dirname(full)):
                        aliases.append((os.path.realpath(full).rstrip(os.sep), Path(full).relative_to(folder).as_posix()))
        if not aliases:
            return False
        here = os.path.realpath(dirpath)
        return any(glob_matches(link + here[len(real):].replace(os.sep, "/") + "/" + name, globs)
                   for real, link in aliases if here == real or here.startswith(real + os.sep))

    walked_at: dict[tuple[int, int], Path] = {}
    links: list[tuple[Path, tuple[int, int]]] = []

    def onerror(e: OSError) -> None:
        if errors is not None:
            reason = "unreadable folder (permission denied)" if isinstance(e, PermissionError) else (
                f"unreadable folder ({e.strerror or e})"
            )
            errors.append((Path(e.filename) if e.filename else folder, reason))

    for dirpath, dirnames, filenames in _walk(folder, onerror):
        try:
            st = os.stat(dirpath)
            key = (st.st_dev, st.st_ino)
        except OSError:
            dirnames[:] = []
            continue
        if key in visited or key in excluded:
            dirnames[:] = []
            continue
        visited.add(key)
        walked_at[key] = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            if _is_hidden(d):
                continue
            full = os.path.join(dirpath, d)
            try:
                st = os.stat(full)
            except OSError:  # dangling link
                continue
            target = (st.st_dev, st.st_ino)
            if os.path.islink(full):
                if real := _system_folder(full):  # (``x -> /proc``: /proc/PID/root reached the whole disk; helper-127)
                    if errors is not None:
                        errors.append((Path(full), f"a link to {printable(real)}, a system folder of no photos: not followed"))
                    continue
                direct = reached_directly() if direct is None else direct
                if target in direct:  # visited (or to be) under its own path
                    if not _loops_back(full, dirpath):
                        links.append((Path(full), target))
                    continue
            if (st.st_dev, st.st_ino) in excluded and passed is not None:
                passed.append(Path(dirpath) / d)
            if (st.st_dev, st.st_ino) in visited or (st.st_dev, st.st_ino) in excluded:
                continue
            keep.append(d)
        dirnames[:] = keep
        base = Path(dirpath)
        for name in sorted(filenames):
            if _is_hidden(name):
                continue
            p = base / name
            if not is_image_path(p):
                continue
            if not glob_matches(p.relative_to(folder).as_posix(), globs) and not alias_matches(dirpath, name):
                continue
            if kind := photo3d_kind(p):
                if own is not None:
                    own.append((p, kind))
                continue
            yield p  # (a broken link, a named pipe, ...: a failed input that says so, not skipped without a word)
    if linked is not None:
        linked += [(link, walked_at[t]) for link, t in links if t in walked_at]


_SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")


def _system_folder(link: str) -> str | None:
    """Where the link ``link`` leads when that is inside the system's own folders of processes and
    devices, else None."""
    real = os.path.realpath(link)
    return real if any(real == d or real.startswith(d + "/") for d in _SYSTEM_FOLDERS) else None


def _loops_back(link: str, here: str) -> bool:
    """Whether the link ``link`` in the folder ``here`` leads to ``here`` or a folder above it (a
    loop: not a second path to a photo)."""
    real, at = os.path.realpath(link).rstrip(os.sep), os.path.realpath(here)
    return at == real or at.startswith(real + os.sep)


def passed_over(folder: Path, globs: Sequence[str] = (), suffixes: Sequence[str] = (".gif",)) -> Iterator[Path]:
    """The GIFs (or other files of ``suffixes``: 3D photos) a walk of ``folder`` passes over (it
    takes only photos; a GIF is used when named, a GLB rendered when named).  Each real folder is
    listed once (two links ``a -> .`` and ``b -> .`` made 2^40 paths)."""
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in _walk(folder, lambda e: None):
        try:
            st = os.stat(dirpath)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = [d for d in dirnames if not _is_hidden(d)]
        for name in filenames:
            p = Path(dirpath) / name
            if not _is_hidden(name) and p.suffix.lower() in suffixes and glob_matches(p.relative_to(folder).as_posix(), globs):
                yield p


def _walk(top: str | Path, onerror: Callable[[OSError], None],
          follow_links: bool = True) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(top, followlinks=follow_links, onerror=onerror)`` (top-down; the caller may prune
    ``dirnames``) with a stack instead of recursion: Python 3.11's os.walk recursed once a folder
    level and a tree 1,000 folders deep (a 2 kB path) ended the whole run in a RecursionError."""
    stack = [os.fspath(top)]
    while stack:
        here = stack.pop()
        try:
            with os.scandir(here) as it:
                entries = list(it)
        except OSError as e:
            onerror(e)
            continue
        dirs, files = [], []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=follow_links)  # (links to folders too: followed)
            except OSError:
                is_dir = False
            (dirs if is_dir else files).append(entry.name)
        yield here, dirs, files
        stack.extend(os.path.join(here, d) for d in reversed(dirs))


def _not_a_folder(name: str | Path) -> str | None:
    """The error of an input written as a folder (``photo.jpg/``, ``photo.jpg/.``) that names a
    file: the system says "not a directory" (open('photo.jpg/') fails), a Path drops the ``/``
    and would read the photo.  None for any other input."""
    name = str(name)
    try:
        os.stat(name)
    except NotADirectoryError:
        if not os.path.exists(Path(name)):  # (a/photo.jpg/x.jpg: no such file, said as usual; Path drops the /)
            return None
        slash = "; leave out the trailing /" if name.endswith(("/", os.sep)) else ""
        return msg(name, f"not a folder ({printable(Path(name))} is a file{slash})")
    except (OSError, ValueError):
        return None
    return None


def _through_link(p: Path) -> bool:
    """``p`` names its file through a symbolic link (itself, or a folder on its way)."""
    return os.path.realpath(p) != os.path.abspath(p)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


#: Output names that mean a file, not a folder: ``-o x.glb`` with a folder input is a mistake.
FILE_SUFFIXES = IMAGE_SUFFIXES | {".glb", ".gltf", ".npy", ".html", ".json", ".mp4", ".gif", ".webp"}


def _ends_with_separator(output: str | Path) -> bool:
    return str(output).endswith(("/", os.sep))


def names_a_folder(output: str | Path) -> bool:
    """``-o`` written as a folder: it ends with a separator (``out/``, ``clips.mp4/``) or is one."""
    return _ends_with_separator(output) or os.path.isdir(output)


def one_file_output(inputs: Sequence[str | Path], output: str | Path) -> bool:
    """One input file to one named file: ``-o`` has a suffix (the format) and does not name a folder.
    One photo to ``-o clip.mp4`` where a folder ``clip.mp4`` is in the way is refused (a GLB went
    into that folder instead, without a word); ``-o clip.mp4/`` writes into it."""
    name = Path(output).name
    if (name.lower() in FILE_SUFFIXES and not _ends_with_separator(output) and not os.path.isdir(output)):
        # `-o .glb` is a hidden name without a suffix: it made a hidden folder .glb/ (helper-94)
        raise UsageError(f"-o {printable(output)}: a name that is only a suffix; give the file a name "
                         f"(-o {printable(Path(output).with_name('photo' + name))}), or end it with / to write "
                         f"into a folder {printable(name)}")
    one = len(inputs) == 1 and not os.path.isdir(inputs[0]) and bool(Path(output).suffix)
    if one and Path(output).suffix.lower() in FILE_SUFFIXES and not _ends_with_separator(output) and os.path.isdir(output):
        raise UsageError(f"-o {printable(output)}: a folder of that name is in the way; to write into it, "
                         f"give -o {printable(str(output))}{os.sep}")
    return one and not names_a_folder(output)


def _missing(inp: Path) -> str:
    """Why an input named on the command line is not there: a link whose target is gone (a photo
    on an unmounted drive) says so, as in a folder (`ls` shows the name); so does a folder on
    the way that may not be searched (``priv/x.jpg`` with ``priv`` mode 700, another user's)."""
    with contextlib.suppress(OSError):
        if os.path.islink(inp):
            try:
                os.stat(inp)
            except OSError as e:  # (a link to itself, or a ring of links, is no broken link: helper-112)
                if e.errno == errno.ELOOP:
                    return f"a symbolic link that loops (to {os.readlink(inp)}, never to a file)"
            return f"no such file (a broken symbolic link to {os.readlink(inp)})"
    try:
        os.stat(inp)
    except PermissionError:
        return "permission denied (a folder on its way may not be searched)"
    except (OSError, ValueError):
        pass
    return "no such file or folder"


def plan_jobs(
    inputs: Sequence[Path],
    output: Path,
    suffix: str,
    globs: Sequence[str] = (),
    outputs: Callable[[Path], Sequence[Path]] | None = None,
    notes: PlanNotes | None = None,
    walks: dict[Path, tuple[list[Path], list[tuple[Path, str]], list[tuple[Path, str]], list[Path],
                         list[tuple[Path, Path]]]] | None = None,
    namesakes: dict[Path, dict[str, list[str]]] | None = None,
) -> list[Job]:
    """Map INPUT... to output paths.

    * One input file and an OUTPUT with a file suffix (that is not an existing folder nor written
      as one, ``out.d/``; pass OUTPUT as a ``str`` to keep its trailing separator): OUTPUT is that file.
    * Otherwise OUTPUT is a folder (a usage error when it is named like a file, ``-o x.glb``).  A
      single input folder's tree is mirrored directly into it; with several inputs each folder goes
      into ``OUTPUT/<folder name>/`` and each file into ``OUTPUT/``.  Outputs get ``suffix`` in
      place of the input's suffix.
    * ``outputs(dst)`` lists every file a job writes (``dst`` first, then side files such as
      ``NAME.preview.png``); they are planned together: inputs whose outputs would collide
      (``a.jpg`` and ``a.png``; ``b.tif``'s preview and ``b.preview.jpg``) keep their full name
      (``a.jpg.glb``), then get numbered.  An output that would overwrite an input fails its job.
    * Inputs that are missing, or folders that cannot be listed, become jobs that fail.  Input
      folders without photos, photo3d's own depth maps met in a walk, and the output folder inside
      an input when photos of the user's are in it, go into ``notes``.
    * ``walks``: input folder -> its walk (photos, walk errors, photo3d's own maps, the output
      folder met, links to folders walked under their own path), filled and
      reused, so that planning several output formats walks (and reads) each folder once;
      ``namesakes`` likewise caches each input's folder's photos by name (:func:`_has_photo_sibling`).
    """
    if not inputs:
        raise UsageError("no INPUT given")
    if str(output) == "-":
        raise UsageError("-o -: cannot write to standard output; give a file or a folder")
    if any(str(p) == "-" for p in inputs):
        raise UsageError("INPUT -: cannot read a photo from standard input; give a file or a folder")
    # a Path drops a trailing / (`photo.jpg/` became photo.jpg); for the system it names a folder
    not_folders = {n: (str(p), e) for n, p in enumerate(inputs) if (e := _not_a_folder(p))}
    inputs = [Path(p) for p in inputs]
    as_folder = names_a_folder(output)
    single_file = one_file_output(inputs, output)
    slash = _ends_with_separator(output)
    output = Path(output)

    def sides(dst: Path) -> tuple[Path, ...]:
        return tuple(outputs(dst))[1:] if outputs is not None else ()

    if single_file:
        given, error = not_folders.get(0, (None, None))
        if error is None and not os.path.lexists(inputs[0]):  # (said now: no model is loaded for it)
            error = msg(inputs[0], _missing(inputs[0]))
        jobs = [Job(inputs[0], output, error, sides=sides(output), given=given)]
        _refuse_overwriting_inputs(jobs)
        return jobs
    if not as_folder and output.suffix.lower() in FILE_SUFFIXES | {suffix.lower()}:
        what = "a folder input needs" if any(os.path.isdir(p) for p in inputs) else "several inputs need"
        raise UsageError(f"-o {printable(output)}: {what} an output folder (e.g. -o {printable(output.with_suffix(''))}/)")
    if os.path.exists(output) and not os.path.isdir(output):
        why = ("several outputs need a folder" if len(inputs) > 1 or os.path.isdir(inputs[0]) else
               "the trailing / names a folder" if slash else f"an -o without a file suffix ({suffix}) names a folder")
        raise UsageError(f"-o {printable(output)}{os.sep if slash else ''}: exists and is not a folder ({why})")
    for p in inputs:
        if os.path.isdir(p) and _same_file(p, output):
            raise UsageError(f"-o {printable(output)}: the output folder must differ from the input folder {printable(p)}")

    jobs: list[Job] = []
    # one job per real file (a folder given under two names, `a a/../a`; a link to a photo met
    # already): its (device, inode), else its path.  The path kept is the first met that is not
    # reached through a link (else the first met); the others go into notes.twice
    kept: dict[object, int] = {}  # key -> index in jobs
    met: dict[object, list[Path]] = {}
    # a photo given by name that a folder given also holds goes where that folder's tree puts it,
    # whichever comes first (it went to OUT/NAME or OUT/FOLDER/NAME by the order given, silently,
    # and a re-run in the other order converted it again: helper-94)
    named: dict[object, Path] = {}  # key -> the path given
    origin: dict[object, Path | None] = {}  # key -> the folder whose walk gave the job kept (None: named)

    def add(job: Job, folder: Path | None = None) -> None:
        # (a broken link: its own inode, so that the same link met through two names is one input)
        key = _file_id(job.src) or _file_id(job.src, follow_symlinks=False) or job.src
        if folder is None:
            named.setdefault(key, job.src)
        if key not in kept:
            kept[key] = len(jobs)
            met[key] = [job.src]
            jobs.append(job)
            origin[key] = folder
            return
        n = kept[key]
        if folder is not None and origin[key] is None and not _through_link(job.src):
            jobs[n] = job  # (the folder's place, whatever the order given; said in notes.named_in)
            met[key], origin[key] = [job.src], folder
            return
        if job.src not in met[key]:
            met[key].append(job.src)
        if _through_link(jobs[n].src) and not _through_link(job.src):
            jobs[n] = job
            origin[key] = folder

    bases = _folder_bases(inputs, output)
    for n, inp in enumerate(inputs):
        if n in not_folders:
            given, error = not_folders[n]
            jobs.append(Job(inp, output / (inp.stem + suffix), error, given=given))
        elif os.path.isdir(inp):
            base = bases[inp]
            walk = None if walks is None else walks.get(inp)
            if walk is None:
                walk_errors: list[tuple[Path, str]] = []
                own: list[tuple[Path, str]] = []
                passed: list[Path] = []
                linked: list[tuple[Path, Path]] = []
                found = list(discover(inp, globs, exclude=[output], errors=walk_errors, own=own, passed=passed,
                                      linked=linked))
                walk = found, walk_errors, own, passed, linked
                if walks is not None:
                    walks[inp] = walk
            found, walk_errors, own, passed, linked = walk
            for p in found:
                add(Job(p, base / p.relative_to(inp).with_suffix(suffix)), inp)
            if notes is not None:  # photos under a link to a folder the walk took under its own path
                for link, real in linked:  # (string prefixes: is_relative_to took 4.5 s for 10 links x 100k photos)
                    prefix = str(real).rstrip(os.sep) + os.sep
                    notes.twice += [(link / str(p)[len(prefix):], p) for p in found if str(p).startswith(prefix)]
            for p, reason in walk_errors:
                jobs.append(Job(p, base / p.relative_to(inp) if p != inp else base, msg(p, reason)))
            if notes is not None:
                notes.own += own
                # the output folder inside the input, with photos of the user's in it (not photo3d's)
                notes.inside += [(d, n) for d in passed if (n := sum(1 for _ in discover(d, globs)))]
                if not (found or own or walk_errors):
                    notes.empty.append(inp)
        else:
            err = None if os.path.exists(inp) else msg(inp, _missing(inp))
            add(Job(inp, output / (inp.stem + suffix), err))
    if notes is not None:
        inside = {key for key in named if origin.get(key) is not None}  # (said as such, not as "twice")
        for key, paths in met.items():
            notes.twice += [(p, jobs[kept[key]].src) for p in paths
                            if p != jobs[kept[key]].src and not (key in inside and p == named[key])]
        notes.named_in += [(named[key], origin[key]) for key in inside]

    def keys(j: Job) -> list[str]:
        return [same_name_key(p) for p in j.outputs]

    # a photo with a sibling photo of the same name (a.jpg beside a.png) keeps its full name whether
    # or not the sibling is in this run: else `a.jpg` alone took out/a.png, and a later run of
    # `a.png` skipped that as its own output, done
    namesakes = {} if namesakes is None else namesakes
    for j in jobs:
        if j.error is None and j.given is None and _has_photo_sibling(j.src, namesakes):
            j.dst = j.dst.with_name(j.src.name + suffix)
    for j in jobs:
        j.sides = sides(j.dst)
    # an input written as a folder that names a file (`photo.jpg/ photo.jpg`) is never converted
    # under that name: it claims no output name (the photo given as it is keeps its own: it was
    # numbered photo-2.jpg.glb); the output its record names is numbered past the others' below
    named = [j for j in jobs if j.given is None]
    # outputs that two inputs would share (main or side files): keep the full input name ...
    owners: dict[str, set[int]] = {}
    for n, j in enumerate(named):
        for k in keys(j):
            owners.setdefault(k, set()).add(n)
    # ... and outputs named like a folder that holds other outputs (`x.jpg` and `x.glb/a.jpg`: the
    # file x.glb would stand where the folder x.glb must be, and a.jpg could never be converted)
    folders = {same_name_key(d) for j in named for o in j.outputs for d in o.parents}
    clashing = {n for group in owners.values() if len(group) > 1 for n in group}
    clashing |= {n for n, j in enumerate(named) if any(k in folders for k in keys(j))}
    for n in sorted(clashing):
        j = named[n]
        j.dst = j.dst.with_name(j.src.name + suffix)
        j.sides = sides(j.dst)
    # ... then number what still clashes, in the order of the inputs' paths, not the order given
    # (a re-run with `b/x.jpg a/x.jpg` must not take a/x.jpg's x.jpg.glb for b/x.jpg's)
    counts = Counter(k for j in named for k in keys(j))
    clash = [j for j in named if any(counts[k] > 1 or k in folders for k in keys(j))]
    taken = ({k for j in named for k in keys(j)} - {k for j in clash for k in keys(j)}) | folders
    for j in sorted(clash, key=lambda j: str(j.src)) + [j for j in jobs if j.given is not None]:
        # (a photo added beside them moves the numbers: o/x.jpg took x.jpg.glb, p/x.jpg's, and each was
        # "skipped (output exists)" on another's 3D photo, helper-112)
        j.numbered = True
        n = 2
        while any(k in taken for k in keys(j)):
            j.dst = j.dst.with_name(f"{j.src.stem}-{n}{j.src.suffix}{suffix}")
            j.sides = sides(j.dst)
            n += 1
        taken.update(keys(j))
    _refuse_overwriting_inputs(jobs)
    return jobs


def _has_photo_sibling(src: Path, namesakes: dict[Path, dict[str, list[str]]]) -> bool:
    """Whether ``src``'s folder holds another photo of the same name but for its suffix (photo3d's
    own maps and stills, which a walk skips, do not count).  ``namesakes`` caches, per folder, the
    photos that share a name with another (listed once; only those headers are read)."""
    folder = src.parent
    if folder not in namesakes:
        names: dict[str, list[str]] = {}
        with contextlib.suppress(OSError):
            for name in os.listdir(folder):
                if not _is_hidden(name) and is_image_path(Path(name)):
                    names.setdefault(same_name_key(Path(name).stem), []).append(name)
        namesakes[folder] = {k: [n for n in group if photo3d_kind(folder / n) is None]
                             for k, group in names.items() if len(group) > 1}
    own = same_name_key(src.name)  # (the photo itself, typed in another case or Unicode form)
    return any(same_name_key(name) != own for name in namesakes[folder].get(same_name_key(src.stem), ()))


def same_name_key(path: str | Path) -> str:
    """What two paths share when a filesystem may take them for one file: case (Windows, macOS) and
    Unicode normalization (macOS, SMB and ZFS shares: "café" typed, or as a camera wrote it, with a
    combining accent) left out (Unicode's canonical caseless match)."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", str(path)).casefold())


def _folder_bases(inputs: Sequence[Path], output: Path) -> dict[Path, Path]:
    """The output folder of each input folder: OUT itself for a single input, else
    ``OUT/<folder name>``; folders that share a name (``2019/DCIM``, ``2020/DCIM``) go into
    ``OUT/<their paths below where they part>`` (``OUT/2019/DCIM``, ``OUT/2020/DCIM``), whatever
    their order.  (They once shared ``OUT/DCIM``, with numbered names for photos of one name:
    given in the other order on a re-run, each folder's photos were skipped as done by the
    other's outputs.)"""
    folders = [p for p in inputs if os.path.isdir(p)]
    if len(inputs) == 1:
        return {p: output for p in folders}
    groups: dict[str, list[Path]] = {}
    for p in folders:
        groups.setdefault((p.resolve().name or "root").casefold(), []).append(p)
    bases = {}
    for group in groups.values():
        real = [p.resolve() for p in group]
        if len(set(real)) == 1:  # one folder (given twice): its name
            bases.update((p, output / (r.name or "root")) for p, r in zip(group, real))
            continue
        common = Path(os.path.commonpath(real))
        for p, r in zip(group, real):  # (a folder that holds the others: its own name)
            bases[p] = output / (r.relative_to(common) if r != common else (r.name or "root"))
    return bases


def plan_outputs(inputs: Sequence[Path], output: Path, suffixes: Sequence[str], globs: Sequence[str] = (),
                 outputs: Callable[[Path], Sequence[Path]] | None = None, notes: PlanNotes | None = None) -> list[Job]:
    """:func:`plan_jobs` for each of ``suffixes``, the outputs of each input next to each other
    (each input folder walked once for all of them)."""
    walks: dict = {}
    namesakes: dict = {}
    plans = [plan_jobs(inputs, output, s, globs, outputs, notes if n == 0 else None, walks, namesakes)
             for n, s in enumerate(dict.fromkeys(suffixes))]
    seen: set[str] = set()
    jobs = []
    for group in zip(*plans):
        for j in group:
            if str(j.dst) not in seen:  # one input file and -o FILE: the same job for every suffix
                seen.add(str(j.dst))
                jobs.append(j)
    _refuse_aliased_outputs(jobs)
    _refuse_names_too_long(jobs)
    return jobs


def real_key(path: Path, folders: dict[Path, str] | None = None) -> str:
    """:func:`same_name_key` of ``path`` with the links of its folder resolved (the folder need not
    exist yet: what does is resolved); ``folders`` caches the resolved folders (a million photos
    in a few thousand folders)."""
    folders = {} if folders is None else folders
    if (real := folders.get(path.parent)) is None:
        real = folders[path.parent] = os.path.realpath(path.parent)
    return same_name_key(os.path.join(real, path.name))


def _refuse_aliased_outputs(jobs: Sequence[Job]) -> None:
    """Fail the jobs with an output (or side file) that is the same file as another job's through a
    link inside OUT (``OUT/sub -> .``: ``in/y.jpg`` and ``in/sub/y.jpg`` both wrote ``OUT/y.glb``,
    both said ok, and the first photo's 3D photo was gone; helper-105).  The names were told apart,
    the folders they resolve to were not.  The first job in the order of the inputs' paths keeps it."""
    owner: dict[str, Path] = {}
    folders: dict[Path, str] = {}
    for j in sorted((j for j in jobs if not j.error), key=lambda j: (str(j.src), str(j.dst))):
        for o in j.outputs:
            key = real_key(o, folders)
            if (first := owner.get(key)) is not None and same_name_key(first) != same_name_key(o):
                also = "" if o == j.dst else f"; {printable(j.dst)} not written either"
                j.error = msg(o, f"cannot write (the same file as {printable(first)}, through a link in the output "
                                 f"folder; rename one of the photos, or remove the link){also}")
                break
        else:
            for o in j.outputs:
                owner.setdefault(real_key(o, folders), o)


def _refuse_names_too_long(jobs: Sequence[Job]) -> None:
    """Fail, before any work, the jobs with an output (or side file) whose name is longer than its
    folder's filesystem takes (NAME_MAX, 255 bytes on most: ``NAME.html`` of a 251-byte name, a
    clash's ``NAME.jpg.glb``), or whose path is longer than the system takes (PATH_MAX): it could
    never be written (a side file's name failed its input with an 'internal error' line, a path
    too long ended the command in a traceback)."""
    limits: dict[Path, int] = {}

    def limit(folder: Path) -> int:
        if folder not in limits:
            limits[folder] = name_max(existing_folder(folder))
        return limits[folder]

    for j in jobs:
        if j.error:
            continue
        for o in j.outputs:
            size, whole = len(os.fsencode(o.name)), len(os.fsencode(str(o)))
            if whole >= PATH_MAX:  # (a deep input tree mirrored under a long -o)
                reason = f"path too long: {whole} bytes, the most is {PATH_MAX - 1}"
            elif size > limit(o.parent):
                reason = f"file name too long: {size} bytes, the folder takes at most {limit(o.parent)}"
            else:
                continue
            also = "" if o == j.dst else f"; {printable(j.dst)} not written either"
            j.error = msg(o, f"cannot write ({reason}){also}")
            break


def _file_id(path: Path, follow_symlinks: bool = True) -> tuple[int, int] | None:
    try:
        st = os.stat(path, follow_symlinks=follow_symlinks)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _refuse_overwriting_inputs(jobs: Sequence[Job]) -> None:
    """Fail the jobs whose output (or side file) is an existing input of this run; an output that
    is its own job's input (``convert a.jpg -o a.jpg``) is a mistake of the command line: a
    :class:`UsageError`.  Only outputs that exist are checked, and the inputs are looked up only
    when one does."""
    inputs: dict[tuple[int, int], Path] | None = None
    for j in jobs:
        if j.error:
            continue
        for o in j.outputs:
            oid = _file_id(o)
            if oid is None:
                continue
            if inputs is None:
                inputs = {i: x.src for x in jobs if (i := _file_id(x.src)) is not None}
            if oid in inputs:
                src = inputs[oid]
                if _file_id(j.src) == oid:
                    raise UsageError(f"output {printable(o)} would overwrite the input; choose another -o", j.src)
                j.error = msg(j.src, f"output {o} would overwrite the input {printable(src)}; choose another -o")
                break


def check_reads(jobs: Sequence[Job], reads: Sequence[tuple[str, Path]]) -> None:
    """A usage error when an output (or side file) would replace a file the task reads besides the
    photos (``reads``: (what, path), e.g. the ``--depth`` map: ``-o d.png --stereo sbs --depth
    d.png`` wrote the stereo still over the map)."""
    ids = {i: (what, path) for what, path in reads if (i := _file_id(path)) is not None}
    if not ids:
        return
    for j in jobs:
        for o in j.outputs:
            if (oid := _file_id(o)) in ids:
                what, path = ids[oid]
                raise UsageError(f"output {printable(o)} would overwrite {what} {printable(path)}; choose another -o", j.src)


def _is_summary(path: Path) -> bool:
    """Whether ``path`` starts as the JSON of a photo3d ``--summary`` (``{"photo3d": VERSION, ...``)."""
    try:
        with open(path, "rb") as f:
            head = f.read(256).lstrip()
    except OSError:  # (unreadable: the write says why)
        return True
    return head.startswith(b"{") and head[1:].lstrip().startswith(b'"photo3d"')


def check_summary_path(summary: Path, jobs: Sequence[Job], reads: Sequence[tuple[str, Path]] = ()) -> None:
    """``--summary FILE`` must not be ``-`` (as ``-o -``), anything but a file (a folder, a device,
    a pipe, a symbolic link), an input (a photo, or a file the task reads: ``reads``), a planned
    output (the same guard as ``-o``), or a file that is there and is not an earlier summary (a
    photo, notes: it was replaced with JSON without a word)."""
    if str(summary) == "-":
        raise UsageError("--summary -: cannot write to standard output; give a file name")
    if os.path.islink(summary):  # (/dev/stdout is one: replaced, or written through onto an output)
        raise UsageError(f"--summary {printable(summary)}: is a symbolic link (to "
                         f"{printable(os.readlink(summary))}); give the file itself")
    if (state := output_state(summary)) not in OUTPUT_THERE:
        # a folder, or a device, pipe or socket (``--summary /dev/null``): the summary file replaces
        # what is at its name, so what is not a file is never written over
        raise UsageError(f"--summary {printable(summary)}: is {state}; give a file name")
    sid = _file_id(summary)
    if sid is not None and any(_file_id(j.src) == sid for j in jobs):
        raise UsageError(f"--summary {printable(summary)}: would overwrite an input; choose another file")
    if sid is not None and (what := next((w for w, p in reads if _file_id(p) == sid), None)):
        raise UsageError(f"--summary {printable(summary)}: would overwrite {what}; choose another file")
    target = os.path.abspath(summary).casefold()
    folders: dict[Path, str] = {}
    key = real_key(summary, folders)
    if any(real_key(o, folders) == key for j in jobs for o in j.outputs):  # (also through a link)
        raise UsageError(f"--summary {printable(summary)}: is one of the outputs; choose another file")
    # a folder the outputs go into, not made yet: the summary, written first, took its name, and
    # every output failed with "Not a directory" (its re-run then refused -o as not a folder)
    inside = target.rstrip(os.sep) + os.sep
    if any((d := os.path.abspath(o.parent).casefold()) == target or d.startswith(inside)
           for j in jobs if not j.error for o in j.outputs):
        raise UsageError(f"--summary {printable(summary)}: is the folder the outputs go into; choose another file")
    if state == "done" and not _is_summary(summary):
        raise UsageError(f"--summary {printable(summary)}: is a file that is not a photo3d summary; "
                         "choose another name (or remove that file)")


def check_writable(jobs: Sequence[Job], summary: Path | None = None, output: str | Path | None = None) -> list[Job]:
    """Fail once, before any work, when the output folders (or the summary's) cannot be written:
    a probe file is created and removed in the nearest existing folder above each of them (so a
    read-only or immutable folder is found even by root, for whom permission bits say yes).
    The message names the option (``-o OUTPUT``, ``--summary FILE``) and the true reason.  Where
    only some output folders cannot be written (a read-only subfolder of a mirrored tree), the
    batch goes on: the jobs that write there come back failed with that reason, the others as
    they were."""
    prefix = f"-o {printable(output)}: " if output is not None else ""
    folders = [(o.parent, prefix) for j in jobs if not j.error for o in j.outputs]  # (a failed job writes nothing)
    if summary is not None:
        folders.append((Path(summary).parent, f"--summary {printable(summary)}: "))
    probed: dict[Path, str | None] = {}  # nearest existing folder -> why it cannot be written (None: it can)
    failed: dict[Path, str] = {}  # output folder -> why it cannot be written
    escaped: set[Path] = set()  # output folders that a link leads out of OUT (also for outputs there already)
    in_way: set[Path] = set()  # output folders where a file is in the way
    for folder, option in sorted(dict.fromkeys(folders), key=lambda f: (f[1].startswith("--"), str(f[0]))):
        if output is not None and not option.startswith("--") and (link := link_out_of(folder, Path(output))):
            failed[folder] = f"{printable(link)} is a link to {printable(os.path.realpath(link))}, outside {printable(output)}"
            escaped.add(folder)
            continue
        d = _nearest_existing(folder)
        if d not in probed:
            probed[d] = _why_unwritable(d)
        if probed[d] is not None:
            why = _said_of(probed[d], d, folder)
            error = _unwritable_error(probed[d])
            if option.startswith("--"):  # the summary's folder
                raise error(f"{option}cannot write into {printable(folder)} ({why})")
            failed.setdefault(folder, why)
            if error is UsageError:
                in_way.add(folder)
    if not failed:
        return list(jobs)
    # (outputs already there are not written again by a resumed run: not in the way)
    blocked = [None if j.error else next((o for o in j.outputs if o.parent in escaped
                                          or o.parent in failed and output_state(o) != "done"), None) for j in jobs]
    if all(j.error or bad is not None for j, bad in zip(jobs, blocked)):
        folder, reason = next(iter(failed.items()))  # nothing could be written: one line, not one per file
        raise (UsageError if folder in in_way else OutputError)(f"{prefix}cannot write into {printable(folder)} ({reason})")
    return [j if bad is None else replace(j, error=msg(bad, f"cannot write ({failed[bad.parent]})"))
            for j, bad in zip(jobs, blocked)]


_IS_A_FILE, _NO_FILES = "is a file", "accepts no new files"
_NOT_A_FOLDER = "is not a folder"  # (a named pipe, a device: it said "is a file", helper-94)


def check_output_file(path: str | Path, option: str = "-o") -> None:
    """Before any work: the folder of the one file ``path`` can take it (as :func:`check_writable`
    for a batch; ``model import`` converted for seconds, then failed on ``-o notes.txt/t.pt``)."""
    folder = Path(os.path.abspath(path)).parent
    d = _nearest_existing(folder)
    if (why := _why_unwritable(d)) is not None:
        raise _unwritable_error(why)(f"{option} {printable(path)}: cannot write into {printable(folder)} "
                                     f"({_said_of(why, d, folder)})")


def _nearest_existing(folder: Path) -> Path:
    """The nearest existing folder above (or at) ``folder`` (where a probe file can be tried)."""
    d = Path(os.path.abspath(folder))
    while not os.path.lexists(d) and d.parent != d:  # (a link that leads nowhere is where the write fails)
        d = d.parent
    return d


def _unwritable_error(why: str) -> type[Photo3DError]:
    """A file where the path needs a folder (``-o notes.txt/x.glb``) is a mistake in the command
    line, as ``-o`` naming an existing file is (exit 2); a folder that refuses files fails the run (exit 1)."""
    return UsageError if why in (_IS_A_FILE, _NOT_A_FOLDER) else OutputError


def _why_unwritable(d: Path) -> str | None:
    """Why no file can be made in the existing ``d`` (a probe file created and removed), or None."""
    import errno
    import tempfile

    if os.path.islink(d) and not os.path.exists(d):  # (-o a broken link: each output failed after its work)
        try:
            os.stat(d)
        except OSError as e:
            if e.errno == errno.ELOOP:
                return "a loop of symbolic links"
        with contextlib.suppress(OSError):
            return f"a symbolic link to {printable(os.readlink(d))}, which does not exist"
        return "a symbolic link that leads nowhere"
    if not os.path.isdir(d):
        return _IS_A_FILE if os.path.isfile(d) else _NOT_A_FOLDER
    try:
        fd, name = tempfile.mkstemp(prefix=".photo3d-probe-", dir=d)
        try:  # (gone also when Ctrl-C comes meanwhile)
            os.close(fd)
        finally:
            os.unlink(name)
    except OSError as e:
        if e.errno == errno.ENOENT:  # the folder is there: its filesystem makes no files (/proc)
            return _NO_FILES
        return e.strerror or str(e)
    return None


def _said_of(why: str, d: Path, folder: Path) -> str:
    """:func:`_why_unwritable`'s ``why`` of ``d``, the nearest existing folder above (or at) ``folder``."""
    where = None if d == Path(os.path.abspath(folder)) else printable(d)
    if why in (_IS_A_FILE, _NOT_A_FOLDER, _NO_FILES):
        return f"{printable(d) if why != _NO_FILES else where or 'it'} {why}"
    return f"{where}: {why}" if where else why


def folder_hint(output: str | Path) -> str:
    """For a suffix error: ``-o v1.0`` may have been meant as a folder (a trailing / says so)."""
    return f"; to write into a folder of that name, end it with /: -o {printable(output)}/"


def remove_stale_temps(jobs: Sequence[Job], also: Sequence[Path] = ()) -> int:
    """Delete the hidden temp files that an interrupted run left in the folders of planned outputs
    and their side files, and of the files in ``also`` (the ``--summary`` file: one of millions of
    records takes seconds to write) (see :func:`photo3d.io.atomic_output`): of any output there,
    not only of those planned now (a killed run's MP4 temp stayed when the next run wrote GLBs into
    the same folder, helper-94).  Only provably stale ones: photo3d's, written on this machine by a
    process that is gone; the live temp files of a run still writing into the same folder are left
    alone.  Only touches the folders of those files."""
    folders: set[Path] = set()
    # (not the folders of failed jobs, which write nothing: one a link leads out of OUT to had its
    # temp-named files deleted there, the write itself refused: a security review, helper-77)
    for o in [o for j in jobs if not j.error for o in j.outputs] + [Path(p) for p in also]:
        folders.add(o.parent)
    removed = 0
    for parent in folders:
        try:
            entries = list(os.scandir(parent))
        except OSError:
            continue
        for e in entries:
            if not (e.name.startswith(".") and e.name.endswith(".tmp")):
                continue
            if stale_temp_target(e) is not None:
                with contextlib.suppress(OSError):
                    if e.is_file(follow_symlinks=False):
                        os.unlink(e.path)
                        removed += 1
    return removed

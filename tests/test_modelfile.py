"""What a model file is (photo3d/depth/modelfile.py): the bundled model as package data, its
manifest and checksum, and the operator allowlist that keeps a model file from touching files."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.cli import cli
from helpers.paths import REPO
from photo3d.depth import modelfile, runtime
from photo3d.errors import ModelError


def test_bundled_model_is_package_data():
    path = modelfile.bundled_model_path()
    assert path.parent == modelfile.MODELS_DIR and modelfile.MODELS_DIR.name == "models"
    assert modelfile.MODELS_DIR.parent.name == "photo3d" and (modelfile.MODELS_DIR / "README.md").is_file()
    modelfile.verify_bundled(path)


def test_bundled_checksum_is_checked(tmp_path, monkeypatch, tiny_depth_model):
    good = tmp_path / "good.pt"
    shutil.copy(tiny_depth_model, good)
    modelfile.write_manifest(good, tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"default": "good.pt",
                                                                    "sha256": modelfile.sha256_file(good)}
    monkeypatch.setattr(modelfile, "MODELS_DIR", tmp_path)
    runtime.clear_cache()
    assert modelfile.bundled_model_path(tmp_path) == good
    modelfile.verify_bundled(good, tmp_path)
    assert runtime.load_model().name == "tiny"

    runtime.clear_cache()
    good.write_bytes(good.read_bytes()[:-10] + b"corrupted!")
    for explicit in (None, good):  # the default, and the same file passed as --model
        with pytest.raises(ModelError) as e:
            runtime.load_model(explicit)
        msg = str(e.value)
        assert "good.pt" in msg and "sha256" in msg and "\n" not in msg
    # a file the manifest does not describe (a user's --model) is not checked
    other = tmp_path / "other.pt"
    other.write_bytes(b"x")
    modelfile.verify_bundled(other, tmp_path)
    runtime.clear_cache()


def test_missing_or_malformed_manifest(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="manifest.json is missing: a damaged install, reinstall photo3d"):
        modelfile.bundled_model_path(tmp_path)
    # the model file itself gone: the same advice, not "no bundled depth model yet" (helper-86)
    (tmp_path / "manifest.json").write_text('{"default": "gone.pt", "sha256": "00"}')
    monkeypatch.setattr(modelfile, "MODELS_DIR", tmp_path)
    with pytest.raises(ModelError, match="bundled depth model is missing .a damaged install: reinstall photo3d"):
        modelfile.default_model_path()
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="malformed"):
        modelfile.bundled_model_path(tmp_path)


# --- a model file is code: only the operators a depth network needs may run --------------------


def _script(module: torch.nn.Module, path, name: str = "evil"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(module)
        torch.jit.save(scripted, str(path), _extra_files={"photo3d.json": json.dumps({"name": name})})
    return scripted


class WritesFile(torch.nn.Module):
    """forward() creates (or overwrites) a file through a shared memory map."""

    def __init__(self, target: str):
        super().__init__()
        self.target = target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.from_file(self.target, True, 16, dtype=torch.uint8)
        t.copy_(torch.full([16], 65, dtype=torch.uint8))
        return x[:, :1] + t.sum().float() * 0.0


class ReadsFile(torch.nn.Module):
    """forward() reads any file (its bytes become the "depth")."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.from_file("/etc/passwd", False, 16, dtype=torch.uint8)
        return x[:, :1] + t.float().mean()


class WritesFileAtLoad(torch.nn.Module):
    """__setstate__ runs inside torch.jit.load, before any forward()."""

    def __init__(self, target: str):
        super().__init__()
        self.target = target
        self.n = 0

    @torch.jit.export
    def __getstate__(self) -> tuple[str, int, bool]:
        return (self.target, self.n, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, int, bool]) -> None:
        self.target = state[0]
        self.training = state[2]
        t = torch.from_file(self.target, True, 16, dtype=torch.uint8)
        t.fill_(65)
        self.n = int(t.sum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]


@pytest.mark.parametrize("make", ["writes", "reads", "writes_at_load"])
def test_model_touching_files_is_refused(tmp_path, make):
    from PIL import Image

    target = tmp_path / "created_by_model"
    module = {"writes": lambda: WritesFile(str(target)), "reads": ReadsFile,
              "writes_at_load": lambda: WritesFileAtLoad(str(target))}[make]()
    path = tmp_path / "evil.pt"
    scripted = _script(module, path)
    assert not target.exists()
    # the compiled graph itself is refused (the check that runs before the first inference) …
    with pytest.raises(ModelError, match="aten::from_file"):
        modelfile.check_graphs(scripted, path)
    # … and the file, before torch.jit.load could run any of it
    runtime.clear_cache()
    with pytest.raises(ModelError) as e:
        runtime.load_model(path)
    assert "aten::from_file" in str(e.value) and "evil.pt" in str(e.value) and "\n" not in str(e.value)
    assert not target.exists()

    Image.new("RGB", (64, 48), (90, 120, 150)).save(tmp_path / "a.png")
    res = cli("depth", tmp_path / "a.png", "-o", tmp_path / "a.depth.png", "--model", path)
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if "from_file" in ln]
    assert lines and "evil.pt" in lines[0]
    assert not target.exists() and not (tmp_path / "a.depth.png").exists()


def test_our_models_pass_the_operator_check(tiny_depth_model, tmp_path):
    from photo3d.depth.net import DepthNet

    for path in (modelfile.bundled_model_path(), tiny_depth_model):
        modelfile.check_archive(path)
        module, _ = modelfile.read_model(path)  # checks the graphs too
    # photo3d's own architecture, scripted in float (INT8 after QAT: tests/test_net.py, test_train_smoke.py)
    float_net = _script(DepthNet("p3d-tiny").eval(), tmp_path / "float.pt", "float")
    modelfile.check_graphs(float_net)
    modelfile.read_model(tmp_path / "float.pt")


def test_imported_tiefenrausch_passes_the_operator_check(tiefenrausch_dir, tiefenrausch_pt):
    from photo3d.depth.tiefenrausch import import_tiefenrausch

    modelfile.check_graphs(import_tiefenrausch(tiefenrausch_dir))
    modelfile.read_model(tiefenrausch_pt)


def test_copies_claiming_to_be_the_bundled_model_are_checked(tmp_path):
    bundled = modelfile.bundled_model_path()
    data = bytearray(bundled.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the middle (weights)
    runtime.clear_cache()
    (tmp_path / "models").mkdir()
    same_name = tmp_path / "models" / bundled.name
    same_name.write_bytes(bytes(data))
    renamed = tmp_path / "mine.pt"  # the name inside its metadata still says p3d-s
    renamed.write_bytes(bytes(data))
    for path in (same_name, renamed):
        with pytest.raises(ModelError, match="sha256") as e:
            runtime.load_model(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)
    intact = tmp_path / "intact" / bundled.name
    intact.parent.mkdir()
    shutil.copy(bundled, intact)
    assert runtime.load_model(intact).name == runtime.load_model(bundled).name
    runtime.clear_cache()


def test_a_wrong_model_file_says_what_it_is_and_a_model_of_another_kind_why_it_fails(tmp_path):
    """`--model` given a copy of the bundled model cut short, an empty file, an ONNX model or one of
    Tiefenrausch's Caffe2 files said `not a TorchScript archive`; a TorchScript model of another
    kind (here: one that takes a grey image) said `depth model failed to run (RuntimeError: The
    following operation failed in the TorchScript interpreter.)`. One line each, naming the file,
    exit 1 (README: a bad input), and why."""
    src = REPO / "examples" / "coffee.jpg"
    data = modelfile.bundled_model_path().read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "depth.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")  # an ONNX ModelProto's first fields
    (tmp_path / "tiefenrausch.pb").write_bytes(b"\n\x04name")
    _script(torch.nn.Conv2d(1, 1, 3, padding=1), tmp_path / "grey.pt", "grey")
    expected = {
        "cut.pt": f"not a TorchScript depth model (cut short: a zip archive that ends after {len(data) // 2:,} "
                  "bytes, before its directory; copy or download it again)",
        "empty.pt": "not a TorchScript depth model (empty file)",
        "depth.onnx": "not a TorchScript depth model (an ONNX model; photo3d runs TorchScript: save the model "
                      "with torch.jit.save)",
        "tiefenrausch.pb": "not a TorchScript depth model (a Caffe2 file; --model takes the folder holding "
                           "tiefenrausch.pb and tiefenrausch_init.pb, or convert it once: photo3d model import "
                           "FOLDER -o tiefenrausch.pt)",
        "grey.pt": "depth model failed to run on a (1, 3, 256, 384) RGB image (RuntimeError: Given groups=1, "
                   "weight of size [1, 1, 3, 3], expected input[1, 3, 256, 384] to have 1 channels, but got 3 "
                   "channels instead)",
    }
    for name, reason in expected.items():
        runtime.clear_cache()
        out = tmp_path / "d.png"
        r = cli("depth", src, "-o", out, "--model", tmp_path / name)
        assert r.exit_code == 1, r.output
        assert [ln for ln in r.output.splitlines() if ln.strip()] == [f"error: {tmp_path / name}: {reason}"], name
        assert not out.exists()
    runtime.clear_cache()


def test_model_code_made_to_exhaust_the_parser_is_refused_naming_the_model(tmp_path):
    """The code is parsed before the model loads: 360 bytes nested past the parser's depth were
    "coffee.jpg: out of memory" (the photo blamed), 16 KB of dense code took 5 GB (helper-63);
    loops that the TorchScript compiler unrolls are refused too."""
    import zipfile

    deep, dense = tmp_path / "deep.pt", tmp_path / "dense.pt"
    with zipfile.ZipFile(deep, "w") as z:
        z.writestr("deep/code/__torch__.py", "x = " + "-" * 100_000 + "1\n")
    with zipfile.ZipFile(dense, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("dense/code/__torch__.py", b"a=1\n" * (1 << 20))
    assert dense.stat().st_size < 50_000
    for path, reason in ((deep, "its code cannot be read"), (dense, "more than 256 KiB of code")):
        with pytest.raises(ModelError, match=f"not a TorchScript depth model \\({reason}\\)"):
            modelfile.check_archive(path)
    # TorchScript unrolls loops over literal tuples as it compiles: six nested in 1.5 KB of code
    # passed 8 minutes and 4 GB (helper-64)
    unroll = tmp_path / "unroll.pt"
    with zipfile.ZipFile(unroll, "w") as z:
        z.writestr("unroll/code/__torch__.py", "def f(x: int) -> int:\n    for a in (1, 2, 3):\n        x = x + a\n    return x\n")
    with pytest.raises(ModelError, match="model uses a loop over a literal tuple"):
        modelfile.check_archive(unroll)
    runtime.clear_cache()
    r = cli("depth", REPO / "examples" / "coffee.jpg", "-o", tmp_path / "d.png", "--model", deep)
    assert r.exit_code == 1 and r.output == f"error: {deep}: not a TorchScript depth model (its code cannot be read)\n", r.output
    runtime.clear_cache()


def test_a_model_archive_of_compressed_code_is_not_inflated(tmp_path):
    """The static check read every code file of a --model archive whole: a zip bomb (a few KB
    inflating to gigabytes) filled the memory, and an encrypted entry was an internal error.
    The code is counted as it inflates, at most 16 MiB (p3d-s: 42 KB of code), also when the
    archive's directory lies about its sizes."""
    import zipfile

    bomb, liar, locked = tmp_path / "bomb.pt", tmp_path / "liar.pt", tmp_path / "locked.pt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb/code/__torch__.py", b" " * (64 << 20))
    assert bomb.stat().st_size < 200_000
    data = bytearray(bomb.read_bytes())  # the same, its directory claiming 4 KB of code
    data[22:26] = struct.pack("<I", 4096)
    at = data.find(b"PK\x01\x02")
    data[at + 24:at + 28] = struct.pack("<I", 4096)
    liar.write_bytes(bytes(data))
    with zipfile.ZipFile(locked, "w") as z:
        z.writestr("locked/code/__torch__.py", b"x = 1\n")
    data = bytearray(locked.read_bytes())
    data[6] |= 1  # the local header's flag: encrypted
    at = data.find(b"PK\x01\x02")
    data[at + 8] |= 1  # ... and the central directory's
    locked.write_bytes(bytes(data))
    import tracemalloc

    for path, reason in ((bomb, "more than 256 KiB of code"), (liar, "a damaged entry: Bad CRC-32")):
        tracemalloc.start()
        try:
            with pytest.raises(ModelError, match=f"not a TorchScript depth model.*{reason}"):
                modelfile.check_archive(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 32e6, f"{path.name}: {peak / 1e6:.0f} MB"  # (64 MB of code inflated, and decoded, before: 128 MB)
    src = REPO / "examples" / "coffee.jpg"
    for path, reason in ((bomb, "more than 256 KiB of code"), (locked, "RuntimeError: File ")):
        runtime.clear_cache()
        r = cli("depth", src, "-o", tmp_path / "d.png", "--model", path)
        assert r.exit_code == 1, r.output
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"error: {path}: not a TorchScript depth model (") and reason in lines[0], r.output
    runtime.clear_cache()


def test_a_model_archive_whose_metadata_or_weights_inflate_hugely_is_refused(tmp_path):
    """The metadata file was read whole twice (the bundled-name check, then the loader), and the
    weights inflated by the loader: 1 GiB of spaces deflated into a 1 MB file took 14 s and 2.4 GB
    before any message; metadata nested 200,000 deep was an internal error blamed on the photo (a
    security review, helper-77).  Counted as they inflate: one line naming the model, little memory."""
    import tracemalloc
    import zipfile

    bundled = modelfile.bundled_model_path()
    src = zipfile.ZipFile(bundled)

    def variant(name: str, meta: bytes | None = None, extra: tuple[str, bytes] | None = None):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for info in src.infolist():
                meta_entry = info.filename.endswith(f"/extra/{modelfile.METADATA_FILE}")
                z.writestr(info.filename, meta if meta is not None and meta_entry else src.read(info))
            if extra:
                z.writestr(*extra)
        return path

    prefix = src.namelist()[0].split("/")[0]
    mine = json.dumps({**json.loads(src.read(f"{prefix}/extra/{modelfile.METADATA_FILE}")), "name": "mine"}).encode()
    cases = [(variant("meta.pt", b" " * (64 << 20) + b"{}"), "its photo3d.json metadata holds more than 64 KiB"),
             (variant("weights.pt", mine, extra=(f"{prefix}/data/999", bytes(600 << 20))), "it inflates to more than 512 MiB")]
    for path, reason in cases:
        assert path.stat().st_size < 2_000_000 + bundled.stat().st_size
        tracemalloc.start()
        try:
            with pytest.raises(ModelError, match=reason):
                modelfile.read_model(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 32e6, f"{path.name}: {peak / 1e6:.0f} MB"
    deep = variant("deep.pt", b"[" * 50_000)
    runtime.clear_cache()
    r = cli("depth", REPO / "examples" / "coffee.jpg", "-o", tmp_path / "d.png", "--model", deep)
    assert r.exit_code == 1 and r.output == f"error: {deep}: malformed photo3d.json metadata in the model\n", r.output
    runtime.clear_cache()
    assert modelfile.read_model(variant("copy.pt", mine))[1]["name"] == "mine"  # (the same entries, rewritten, load)


def _two_archives_in_one(evil: Path, benign: Path, out: Path) -> None:
    """One file that Python's zipfile reads as ``benign`` (it finds the central directory where it
    lies and shifts every entry by the bytes before it) and torch's reader as ``evil`` (it takes the
    directory's offset from the end record): helper-111's polyglot, entries stored."""
    import zipfile
    import zlib

    def entries(path):
        with zipfile.ZipFile(path) as z:
            return [(i.filename, z.read(i.filename)) for i in z.infolist()]

    def local(name, data):
        n = name.encode()
        return struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, zlib.crc32(data), len(data), len(data),
                           len(n), 0) + n + data

    def central(name, data, offset, comment=b""):
        n = name.encode()
        return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0x21, zlib.crc32(data), len(data),
                           len(data), len(n), 0, len(comment), 0, 0, 0, offset) + n + comment

    B, A = entries(evil), entries(benign)
    blob, boffs = b"", []
    for name, data in B:
        boffs.append(len(blob))
        blob += local(name, data)
    alocal, aoffs = b"", []
    for name, data in A:
        aoffs.append(len(alocal))
        alocal += local(name, data)
    blob += b"\0" * max(0, len(alocal) - len(blob) + 16)
    C = len(blob)
    bcd = [central(n, d, o) for (n, d), o in zip(B, boffs)]
    SB, SA = sum(map(len, bcd)), sum(len(central(n, d, 0)) for n, d in A)
    pad_b, pad_a = max(0, SA - SB), max(0, SB - SA)
    bcd[-1] = central(B[-1][0], B[-1][1], boffs[-1], b"x" * pad_b)
    S = SB + pad_b
    start_a = C + S
    concat = start_a + len(alocal) - C
    acd = [central(n, d, start_a + o - concat, b"x" * pad_a if k == len(A) - 1 else b"")
           for k, ((n, d), o) in enumerate(zip(A, aoffs))]
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(B), len(B), S, C, 0)
    out.write_bytes(blob + b"".join(bcd) + alocal + b"".join(acd) + eocd)


def test_a_file_holding_two_archives_is_refused_before_torch_reads_either(tmp_path, tiny_depth_model):
    """The check before loading read a model file with Python's zipfile, torch loads it with its own
    reader, and a crafted file read as two archives: a harmless one for the check, one whose load-time
    code wrote a file of its choosing for torch (helper-111: refused only after the write). A file
    whose zip directory is not where its end record says is now refused before either is read."""
    target = tmp_path / "created_by_model"
    evil = tmp_path / "evil.pt"
    _script(WritesFileAtLoad(str(target)), evil)
    poly = tmp_path / "poly.pt"
    _two_archives_in_one(evil, tiny_depth_model, poly)
    runtime.clear_cache()
    with pytest.raises(ModelError, match="zip directory is not where its end record says") as e:
        runtime.load_model(poly)
    assert "poly.pt" in str(e.value) and "\n" not in str(e.value)
    assert not target.exists()
    # bytes before an archive: the same (zipfile reads past them, torch does not)
    shifted = tmp_path / "shifted.pt"
    shifted.write_bytes(b"\0" * 64 + tiny_depth_model.read_bytes())
    with pytest.raises(ModelError, match="zip directory is not where its end record says"):
        runtime.load_model(shifted)
    runtime.load_model(tiny_depth_model)  # a plain archive loads as before


def test_model_code_of_very_many_lines_is_refused_before_torch_parses_it(tmp_path):
    """40,000 blank lines (55 KB, under the 256 KiB of code allowed) in a model's code crashed the
    process in torch's parser (a segfault, exit 139, no message; helper-111). Checked before loading:
    a code file of more than ``MAX_SOURCE_LINES`` lines is refused, naming the model."""
    import zipfile

    path = tmp_path / "blank.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("blank/code/__torch__.py", "\n" * 40_000 + "x = 1\n")
    with pytest.raises(ModelError, match="not a TorchScript depth model \\(a code file of more than 10,000 lines\\)") as e:
        modelfile.check_archive(path)
    assert "blank.pt" in str(e.value)


def _renamed(src: Path, dst: Path, rename) -> None:
    """``src``'s archive with every entry renamed by ``rename`` (None: left out)."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if (name := rename(info.filename)) is not None:
                zout.writestr(name, zin.read(info))


def test_model_code_under_a_name_of_another_case_is_checked_as_code(tmp_path):
    """torch finds an archive's entries whatever their case: code saved as ``code/__torch__.PY``
    was not read as code by the check, yet torch compiled it and ran its ``__setstate__`` while
    loading (a file created, or any file of the user's overwritten, before the model was refused;
    helper-120).  Now any case of ``.py`` is code, and names equal but for case are refused."""
    target = tmp_path / "created_by_model"
    _script(WritesFileAtLoad(str(target)), tmp_path / "plain.pt")
    _renamed(tmp_path / "plain.pt", tmp_path / "evil.pt",
             lambda n: None if n.endswith(".debug_pkl") else n[:-3] + ".PY" if n.endswith(".py") else n)
    runtime.clear_cache()
    with pytest.raises(ModelError, match="aten::from_file"):
        runtime.load_model(tmp_path / "evil.pt")
    assert not target.exists()
    _renamed(tmp_path / "plain.pt", tmp_path / "twice.pt", lambda n: n)
    import zipfile

    with zipfile.ZipFile(tmp_path / "twice.pt", "a") as z:
        z.writestr(next(n for n in z.namelist() if n.endswith("data.pkl")).upper(), b"")
    with pytest.raises(ModelError, match="duplicate entries"):
        modelfile.check_archive(tmp_path / "twice.pt")


class _CountAtLoad(torch.nn.Module):
    """A module whose state is a count and the training flag: subclasses do something in __setstate__."""

    def __init__(self):
        super().__init__()
        self.n = 0

    @torch.jit.export
    def __getstate__(self) -> tuple[int, bool]:
        return (self.n, self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]


class PrintsAtLoad(_CountAtLoad):
    """__setstate__ prints (terminal escapes and all); a parameter elsewhere is named ``print``."""

    @torch.jit.export
    def __setstate__(self, state: tuple[int, bool]) -> None:
        self.n = state[0]
        self.training = state[1]
        print("\033[31mmodel code ran at load\033[0m")

    @torch.jit.export
    def helper(self, print: int) -> int:  # noqa: A002 - the name is the point
        return print


class LoopsAtLoad(_CountAtLoad):
    """__setstate__ loops (here three times; an endless loop held the process past Ctrl-C and kill)."""

    @torch.jit.export
    def __setstate__(self, state: tuple[int, bool]) -> None:
        self.training = state[1]
        n = 0
        for i in range(3):
            n = n + i
        self.n = n


class AllocatesAtLoad(torch.nn.Module):
    """__setstate__ allocates a tensor the size it likes (3 GB for a file of 1.4 KB, helper-120)."""

    def __init__(self):
        super().__init__()
        self.w = torch.zeros(1)

    @torch.jit.export
    def __getstate__(self) -> tuple[int, bool]:
        return (1, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[int, bool]) -> None:
        self.training = state[1]
        self.w = torch.ones([state[0]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] + self.w


class LoopsWhile(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = 0
        while i < 3:
            i += 1
        return x[:, :1] * i


def _pre_hook(module: torch.nn.Module, inputs: tuple[torch.Tensor]) -> None:
    return None


class Hooked(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]


@pytest.mark.parametrize("make, said", [("prints", "the builtin print"), ("loops", "a loop while it loads (__setstate__)"),
                                        ("allocates", "aten::ones while it loads (__setstate__)"),
                                        ("while", "a while loop")])
def test_code_that_runs_while_a_model_loads_may_only_unpack_its_weights(tmp_path, capfd, make, said):
    """``torch.jit.load`` runs ``__setstate__`` (and what it calls) before any check of the compiled
    graphs: a print there wrote to stdout (a variable named ``print`` elsewhere let it pass), an
    endless loop held photo3d past Ctrl-C and SIGTERM, an allocation took 3 GB (helper-120).  That
    code may now only set attributes and pack weights; no ``while`` loop anywhere (TorchScript writes
    a network's loops over ``range()`` as ``for``)."""
    module = {"prints": PrintsAtLoad, "loops": LoopsAtLoad, "allocates": AllocatesAtLoad, "while": LoopsWhile}[make]()
    _script(module, tmp_path / "evil.pt")
    capfd.readouterr()
    runtime.clear_cache()
    with pytest.raises(ModelError) as e:
        runtime.load_model(tmp_path / "evil.pt")
    assert f"model uses {said}, which a depth model does not need; refused" in str(e.value), str(e.value)
    assert capfd.readouterr().out == ""


def test_a_model_with_forward_hooks_is_refused(tmp_path):
    """A forward (pre-)hook is not among a module's methods: the check of the compiled graphs never
    saw its code, which runs on every inference (helper-120).  A depth model needs none."""
    m = Hooked()
    m.register_forward_pre_hook(_pre_hook)
    scripted = _script(m, tmp_path / "hooked.pt")
    with pytest.raises(ModelError, match="model uses forward hooks"):
        modelfile.check_graphs(scripted, tmp_path / "hooked.pt")


class KeepsATensor(torch.nn.Module):
    """A harmless load-time ``__setstate__`` (a tensor and the training flag back in place)."""

    def __init__(self):
        super().__init__()
        self.w = torch.zeros(1)

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, bool]:
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
        self.w = state[0]
        self.training = state[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] + self.w


def _zip64_twins(harmless: Path, payload: str, out: Path, line: str = "    self.w = (state)[0]\n") -> None:
    """One file, two archives (helper-122): Python's ``zipfile`` reads the zip64 end record just
    before its locator, torch's reader (miniz) the one at the offset the locator gives; the first
    directory lists ``harmless``, the second the same with ``payload`` added after ``line`` of its
    ``__setstate__``."""
    import struct
    import zipfile
    import zlib

    src = zipfile.ZipFile(harmless)
    ents = [(i.filename, src.read(i)) for i in src.infolist() if not i.filename.endswith(".debug_pkl")]
    evil = [(n, d.decode().replace(line, line + payload).encode() if line.encode() in d else d) for n, d in ents]

    def written(entries, at):
        loc, cen = b"", b""
        for name, data in entries:
            crc, ofs = zlib.crc32(data), at + len(loc)
            loc += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, crc, len(data), len(data), len(name), 0)
            loc += name.encode() + data
            cen += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, crc, len(data), len(data),
                               len(name), 0, 0, 0, 0, 0, ofs) + name.encode()
        return loc, cen

    def z64(n, size, ofs):
        return struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, size, ofs)

    loc_e, cen_e = written(evil, 0)
    loc_b, cen_b = written(ents, len(loc_e))
    buf = loc_e + loc_b
    cen_e_at = len(buf)
    buf += cen_e
    torch_reads = len(buf)
    buf += z64(len(evil), len(cen_e), cen_e_at)
    cen_b_at = len(buf)
    buf += cen_b + z64(len(ents), len(cen_b), cen_b_at)  # what zipfile reads: just before the locator
    buf += struct.pack("<IIQI", 0x07064B50, 0, torch_reads, 1)  # the locator: miniz goes where it says
    buf += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    out.write_bytes(buf)


def test_a_file_whose_zip_readers_disagree_on_its_zip64_record_is_refused_before_torch_loads_it(tmp_path):
    """A zip64 end record where its locator does not point made one file two archives: the check
    read a harmless model, torch loaded the other, whose ``__setstate__`` wrote a file while it
    loaded (and, in a TorchScript class, was then accepted without a word; helper-122).  What
    torch's own reader finds must now be what was checked, and the file is loaded from the very
    bytes checked."""
    import zipfile

    target = tmp_path / "created_by_model"
    modelfile.set_qnnpack()
    _script(QuantizedConv(), tmp_path / "harmless.pt")
    modelfile.read_model(tmp_path / "harmless.pt")
    _zip64_twins(tmp_path / "harmless.pt", f'    torch.save((state)[0], "{target}")\n', tmp_path / "evil.pt",
                 "    self.in_channels = (state)[0]\n")
    assert not any(b"save" in zipfile.ZipFile(tmp_path / "evil.pt").read(n) for n in
                   zipfile.ZipFile(tmp_path / "evil.pt").namelist() if n.endswith(".py"))  # (what zipfile reads)
    runtime.clear_cache()
    with pytest.raises(ModelError, match="torch's zip reader finds other entries in it than Python's"):
        runtime.load_model(tmp_path / "evil.pt")
    assert not target.exists()


class BuildsAtLoad(AllocatesAtLoad):
    """__setstate__ allocates through a method of its own (written ``(self).grow()``; edited below
    into a call through a variable and a class built, which a check that followed names missed)."""

    @torch.jit.export
    def __setstate__(self, state: tuple[int, bool]) -> None:
        self.training = state[1]
        self.grow(state[0])

    @torch.jit.export
    def grow(self, n: int) -> None:
        self.w = torch.ones([n])


def test_a_call_at_load_that_is_not_a_method_of_self_is_refused(tmp_path):
    """Calls the load-time check could not follow by name (a method through a variable, a class
    built there: its ``__init__`` ran a loop or took gigabytes; helper-122) are refused.  (TorchScript
    writes ``s.grow()`` as ``(self).grow()``: the archive's text is edited as the helper's was.)"""
    _script(BuildsAtLoad(), tmp_path / "plain.pt")
    with pytest.raises(ModelError, match=r"model uses aten::ones while it loads \(grow\)"):
        modelfile.check_archive(tmp_path / "plain.pt")
    for said, old, new in (
            ("s.grow()", "    _1 = (self).grow((state)[0], )\n", "    s = self\n    _1 = s.grow((state)[0], )\n"),
            ("__torch__.Boom()", "    _1 = (self).grow((state)[0], )\n", "    _1 = __torch__.Boom((state)[0])\n")):
        _renamed(tmp_path / "plain.pt", tmp_path / "evil.pt", lambda n: None if n.endswith(".debug_pkl") else n)
        _edited(tmp_path / "evil.pt", old, new)
        runtime.clear_cache()
        with pytest.raises(ModelError, match=f"model uses {re.escape(said)} while it loads \\(__setstate__\\)"):
            runtime.load_model(tmp_path / "evil.pt")


def _edited(path: Path, old: str, new: str) -> None:
    """``path``'s archive with ``old`` replaced by ``new`` in its code."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        ents = [(i.filename, z.read(i)) for i in z.infolist()]
    assert any(old.encode() in d for n, d in ents if n.endswith(".py"))
    with zipfile.ZipFile(path, "w") as z:
        for n, d in ents:
            z.writestr(n, d.decode().replace(old, new).encode() if n.endswith(".py") else d)


@pytest.mark.parametrize("case", ["default", "alias"])
def test_default_values_and_builtins_bound_to_other_names_are_refused(tmp_path, capfd, case):
    """TorchScript evaluates a method's default values as it compiles it, while the file loads, even
    for a method nothing calls: ``n: int = torch.numel(torch.ones([500000000]))`` took 2 GB, one that
    called a looping function hung past Ctrl-C; and ``p = print`` then ``p(...)`` printed, since only
    a call by the name was refused (helper-123).  Defaults are constants; a builtin's name is used
    only where the function binds it itself."""
    _script(KeepsATensor(), tmp_path / "harmless.pt")
    _renamed(tmp_path / "harmless.pt", tmp_path / "evil.pt", lambda n: None if n.endswith(".debug_pkl") else n)
    anchor = "  def __getstate__("
    extra = {"default": ("  def extra(self: __torch__.test_modelfile.KeepsATensor,\n"
                         "    n: int=torch.numel(torch.ones([5]))) -> int:\n    return n\n"),
             "alias": ("  def extra(self: __torch__.test_modelfile.KeepsATensor,\n    n: int) -> int:\n"
                       "    p = print\n    p(\"model code ran at load\")\n    return n\n")}[case]
    _edited(tmp_path / "evil.pt", anchor, extra + anchor)
    runtime.clear_cache()
    said = {"default": "a default value that is not a constant", "alias": "the builtin print"}[case]
    with pytest.raises(ModelError, match=f"model uses {said}, which a depth model does not need"):
        runtime.load_model(tmp_path / "evil.pt")
    assert capfd.readouterr().out == ""


@pytest.mark.parametrize("what", ["deep", "wide"])
def test_a_pickle_nested_too_deep_or_too_long_is_refused_before_torch_reads_it(tmp_path, what):
    """A list nested a million deep in ``data.pkl`` (3 KB) crashed the process inside
    ``torch.jit.load`` (a segfault, no message); 20 million empty lists (40 KB) took 3 GB
    (helper-123).  The pickles' opcodes are counted and their depth followed before the load."""
    import zipfile

    _script(TwoTensors(), tmp_path / "harmless.pt")
    n = 100_000 if what == "deep" else 2_100_000
    bomb = (b"\x80\x02" + b"]" * n + b"a" * (n - 1) + b"." if what == "deep"
            else b"\x80\x02]" + b"(" + b"]" * n + b"e" + b".")
    with zipfile.ZipFile(tmp_path / "harmless.pt") as z:
        ents = [(i.filename, z.read(i)) for i in z.infolist()]
    with zipfile.ZipFile(tmp_path / "bomb.pt", "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in ents:
            z.writestr(name, bomb if name.endswith("/data.pkl") else data)
    with pytest.raises(ModelError, match="its data.pkl is too large or too deeply nested"):
        modelfile.check_archive(tmp_path / "bomb.pt")


def test_a_zip64_twin_whose_weights_differ_is_refused(tmp_path):
    """Two archives in one file that agree on names, sizes and code but not on a weight: every
    record torch reads must be the bytes checked (helper-123: a 3 GB tensor, compressed, behind a
    stored entry the check skipped)."""
    import zipfile

    _script(TwoTensors(), tmp_path / "harmless.pt")
    _zip64_twins(tmp_path / "harmless.pt", "", tmp_path / "twins.pt")  # (the same code in both)
    with zipfile.ZipFile(tmp_path / "twins.pt") as z:
        weight = next(n for n in z.namelist() if "/data/" in n)
    data = bytearray((tmp_path / "twins.pt").read_bytes())
    first = data.find(b"\x00\x00\x00\x00", data.find(weight.encode()))  # the first archive's copy (torch's)
    data[first:first + 4] = b"\x00\x00\x80\x7f"  # +inf
    (tmp_path / "twins.pt").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="torch's zip reader finds other entries in it than Python's"):
        modelfile.check_archive(tmp_path / "twins.pt")


def _with_record(src: Path, dst: Path, ending: str, edit) -> None:
    """``src``'s archive with the record whose name ends in ``ending`` replaced by ``edit(bytes)``."""
    import zipfile

    with zipfile.ZipFile(src) as z:
        ents = [(i.filename, z.read(i)) for i in z.infolist()]
    assert any(n.endswith(ending) for n, _ in ents), ending
    with zipfile.ZipFile(dst, "w") as z:
        for n, d in ents:
            z.writestr(n, edit(d) if n.endswith(ending) else d)


@pytest.mark.parametrize("case", ["storage", "global", "debug"])
def test_pickles_name_only_what_torch_saves_and_storages_are_their_records_size(tmp_path, case):
    """A storage declared larger than its record (4,096 floats over 4 bytes) let ``forward`` read the
    process's memory beyond it and write there (a leaked heap pointer, a segfault), with allowed
    operators only; a ``.debug_pkl`` (read to word an error) nested a million deep crashed the error
    path; and a pickle may name TorchScript's C++ classes, whose ``__setstate__`` no check reads
    (helper-124).  Storages must be their record's size, pickles may name only tensors, storages,
    list builders and the archive's own classes, and the debug pickles are walked too."""
    _script(TwoTensors(), tmp_path / "harmless.pt")
    modelfile.check_archive(tmp_path / "harmless.pt")
    edit, ending, said = {
        "storage": (lambda d: d.replace(b"cpuq\x08K\x01tQ", b"cpuq\x08M\x00\x10tQ"), "/data.pkl",
                    "a tensor's storage in its data.pkl is not the size of its record data/0"),
        "global": (lambda d: d.replace(b"c__torch__.test_modelfile\nTwoTensors\n",
                                       b"c__torch__.torch.classes.quantized\nConv2dPackedParamsBase\n"), "/data.pkl",
                   "its data.pkl names __torch__.torch.classes.quantized.Conv2dPackedParamsBase"),
        "debug": (lambda d: b"\x80\x02" + b"]" * 20_000 + b"a" * 19_999 + b".", ".debug_pkl",
                  "is too large or too deeply nested"),
    }[case]
    _with_record(tmp_path / "harmless.pt", tmp_path / "evil.pt", ending, edit)
    assert (tmp_path / "evil.pt").read_bytes() != (tmp_path / "harmless.pt").read_bytes()
    with pytest.raises(ModelError, match=re.escape(said)):
        modelfile.check_archive(tmp_path / "evil.pt")


class QuantizedConv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.ao.nn.quantized.Conv2d(2, 2, 1, groups=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.quantize_per_tensor(x, 0.1, 0, torch.quint8)).dequantize()


@pytest.mark.parametrize("case", ["groups 0", "stride 2**32 + 1", "kernel unlike its weight", "name in another case",
                                  "stride-0 weight", "per channel along axis 1"])
def test_a_quantized_convolution_that_packing_cannot_take_is_refused_before_the_load(tmp_path, case):
    """What torch's own quantized convolution packs while the file loads is checked before: ``groups``
    0 stopped the process on a division by zero inside ``torch.jit.load`` (SIGFPE, no message;
    helper-124), also with its module named in another case (torch found its code all the same); a
    stride of 2**32 + 1 (1 to QNNPACK's 32 bits, not to torch's sizes) overran the output on the first
    run; a weight unlike the state's kernel or channels crashed or returned unwritten memory; a
    stride-0 weight of 1.6 billion elements over a byte took 3.4 GB as it was packed (helper-126); a
    weight quantized per channel along its input channels had its scales read past (helper-129)."""
    modelfile.set_qnnpack()
    m = QuantizedConv()
    _script(m, tmp_path / "ok.pt")
    modelfile.check_archive(tmp_path / "ok.pt")
    if case in ("groups 0", "name in another case"):
        m.conv.groups = 0
    elif case == "stride 2**32 + 1":
        m.conv.stride = (2**32 + 1, 2**32 + 1)
    elif case == "kernel unlike its weight":
        m.conv.kernel_size = (3, 3)
    elif case == "per channel along axis 1":  # (packing reads a scale per output channel: helper-129)
        m.conv = torch.ao.nn.quantized.Conv2d(2, 2, 1)
        m.conv.set_weight_bias(torch.quantize_per_channel(torch.rand(2, 2, 1, 1), torch.full([2], 0.01, dtype=torch.double),
                                                          torch.zeros(2, dtype=torch.long), 1, torch.qint8), None)
    if case == "stride-0 weight":
        _script(TwoTensors(), tmp_path / "ok.pt")  # w: one float, made 1,000 of them over the one
        _with_record(tmp_path / "ok.pt", tmp_path / "evil.pt", "/data.pkl",
                     lambda d: d.replace(b"tQq\tK\x00(K\x01t(K\x01t", b"tQq\tK\x00(M\xe8\x03t(K\x00t", 1))
    else:
        _script(m, tmp_path / "evil.pt")
    if case == "name in another case":
        _with_record(tmp_path / "evil.pt", tmp_path / "evil2.pt", "/data.pkl",
                     lambda d: d.replace(b".nn.quantized.modules.conv", b".nn.QUANTIZED.modules.conv"))
        (tmp_path / "evil2.pt").replace(tmp_path / "evil.pt")
    assert (tmp_path / "evil.pt").read_bytes() != (tmp_path / "ok.pt").read_bytes()
    with pytest.raises(ModelError, match=re.escape("its data.pkl is not one torch.jit.save writes")):
        modelfile.check_archive(tmp_path / "evil.pt")


class TwoTensors(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.zeros(1)
        self.v = torch.zeros(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] + self.w + self.v


@pytest.mark.parametrize("case", ["operator", "class value", "memo", "record twice"])
def test_load_time_operators_class_values_and_pickle_tricks_are_refused(tmp_path, case):
    """What still ran or grew at load (helper-125): an operator written as Python (``a * 2.`` over
    2**50 stride-0 elements hung past Ctrl-C, 4.4 GB), a class-level value (evaluated as the class
    loads: a looping function hung), a pickle memo index of 200 million (3.4 GB from 3.7 KB), one
    weight record referenced 400 times (torch copies it each time: 3.5 GB)."""
    modelfile.set_qnnpack()
    module = QuantizedConv() if case == "operator" else TwoTensors()
    _script(module, tmp_path / "harmless.pt")
    modelfile.check_archive(tmp_path / "harmless.pt")
    _renamed(tmp_path / "harmless.pt", tmp_path / "evil.pt", lambda n: None if n.endswith(".debug_pkl") else n)
    if case == "operator":
        _edited(tmp_path / "evil.pt", "    self.scale = (state)[12]\n", "    self.scale = (state)[12] * 2.\n")
        said = "binop while it loads (__setstate__)"
    elif case == "class value":
        _edited(tmp_path / "evil.pt", "  def forward(", "  c : Final[int] = torch.numel(torch.ones([5]))\n  def forward(")
        said = "a class-level value that is not a constant"
    else:
        edit = ((lambda d: d.replace(b"q\x01", b"r\x00\xc2\xeb\x0b", 1)) if case == "memo"
                else (lambda d: d.replace(b"X\x01\x00\x00\x001", b"X\x01\x00\x00\x000")))
        _with_record(tmp_path / "evil.pt", tmp_path / "evil2.pt", "/data.pkl", edit)
        (tmp_path / "evil2.pt").replace(tmp_path / "evil.pt")
        said = "too large or too deeply nested" if case == "memo" else "reads the record data/0 twice"
    with pytest.raises(ModelError, match=re.escape(said)):
        modelfile.check_archive(tmp_path / "evil.pt")


class PacksItsOwn(torch.nn.Module):
    """A class of the archive's own that packs a convolution while it loads, ``groups`` from its state."""

    def __init__(self, groups: int):
        super().__init__()
        self.w = torch.quantize_per_tensor(torch.zeros(2, 2, 1, 1), 0.1, 0, torch.qint8)
        self.g = groups
        self.p = torch.ops.quantized.conv2d_prepack(self.w, None, [1, 1], [0, 0], [1, 1], 1)

    @torch.jit.export
    def __getstate__(self):
        return (self.w, self.g, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, int, bool]) -> None:
        self.w = state[0]
        self.g = state[1]
        self.training = state[2]
        self.p = torch.ops.quantized.conv2d_prepack(self.w, None, [1, 1], [0, 0], [1, 1], self.g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] * 0.0


class CountsAtLoad(_CountAtLoad):
    """__setstate__ counts through ``__int__`` (written ``(self).__int__()``; edited below to ``int(self)``,
    which TorchScript compiles to the same call)."""

    @torch.jit.export
    def __setstate__(self, state: tuple[int, bool]) -> None:
        self.n = self.__int__()
        self.training = state[1]

    @torch.jit.export
    def __int__(self) -> int:
        return torch.ones([5]).numel()


@pytest.mark.parametrize("case", ["own class", "torch's class edited", "int(self)", "torch's class in lower case",
                                  "a mangled name in a string"])
def test_the_code_that_runs_at_load_is_torchs_own(tmp_path, case):
    """A class of the archive's own packing a convolution with ``groups`` 0 while the file loaded
    stopped the process on a division by zero (SIGFPE, no message; helper-125's ``own_g0.pt``);
    ``int(self)`` in ``__setstate__`` ran ``__int__``, which no rule for load-time code read (a loop
    past Ctrl-C, 4 GB, packing with groups 0), and torch's own code under a class named ``conv2d``
    escaped the check of its state (helper-126).  Only torch's quantized convolutions' code runs at
    load, as this torch writes it, not a word changed (their state is checked)."""
    modelfile.set_qnnpack()
    if case == "own class":
        _script(PacksItsOwn(1), tmp_path / "evil.pt")
    elif case == "int(self)":
        _script(CountsAtLoad(), tmp_path / "evil.pt")
        _edited(tmp_path / "evil.pt", "self.n = (self).__int__()", "self.n = int(self)")
    else:
        m = QuantizedConv()
        _script(m, tmp_path / "ok.pt")
        modelfile.check_archive(tmp_path / "ok.pt")  # (torch's own code: passes)
        if case == "torch's class edited":
            shutil.copy(tmp_path / "ok.pt", tmp_path / "evil.pt")
            _edited(tmp_path / "evil.pt", "[_14, _15], groups)", "[_14, _15], 0)")
        elif case == "a mangled name in a string":  # (the mangling was taken out of the text, strings too: helper-129)
            shutil.copy(tmp_path / "ok.pt", tmp_path / "evil.pt")
            _edited(tmp_path / "evil.pt", 'torch.eq(padding_mode, "zeros")', 'torch.eq(padding_mode, "zeros.___torch_mangle_1")')
        else:
            m.conv.groups = 0
            _script(m, tmp_path / "g0.pt")
            _with_record(tmp_path / "g0.pt", tmp_path / "evil.pt", "/data.pkl",
                         lambda d: d.replace(b"modules.conv\nConv2d\n", b"modules.conv\nconv2d\n"))
            _edited(tmp_path / "evil.pt", "Conv2d", "conv2d")
    with pytest.raises(ModelError, match=re.escape("code of its own that runs while it loads")):
        modelfile.check_archive(tmp_path / "evil.pt")


class PacksInForward(torch.nn.Module):
    """forward packs a convolution of its own (values no state check sees)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.quantize_per_tensor(torch.ones([2, 3, 1, 1]), 1.0, 0, torch.qint8)
        p = torch.ops.quantized.conv2d_prepack(w, None, [1, 1], [0, 0], [1, 1], 1)
        y = torch.ops.quantized.conv2d(torch.quantize_per_tensor(x, 0.1, 0, torch.quint8), p, 0.1, 0)
        return y.dequantize()[:, :1]


class RepacksInForward(QuantizedConv):
    """forward sets ``groups`` 0 on torch's own convolution and calls its ``set_weight_bias``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.conv._weight_bias()
        self.conv.groups = 0
        self.conv.set_weight_bias(w, b)
        return self.conv(torch.quantize_per_tensor(x, 0.1, 0, torch.quint8)).dequantize()


@pytest.mark.parametrize("case", ["lone CR", "form feed", "comment", "type tag", "packs in forward", "repacks in forward",
                                  "module name with a slash", "scheme as an int"])
def test_what_torch_reads_otherwise_than_the_check_or_packs_outside_loading_is_refused(tmp_path, case):
    """helper-128: a lone CR ends a line for Python's parser, not for torch's (``# \\r  \"\"\"`` opened a
    string to the check that torch compiled as code: a class's ``__setstate__`` wrote a file while
    the model loaded, and photo3d exited 0); ``forward`` packed a weight of its own, or repacked
    torch's convolution with ``groups`` 0 (crashes on the first run); ``...modules/conv`` in
    ``data.pkl`` made torch compile the checked code as another class, whose state went unchecked;
    a quantization scheme written as the int torch reads skipped the per-channel check; a type tag
    of 30,000 "(" crashed torch's parser inside ``torch.jit.load`` (helper-129)."""
    modelfile.set_qnnpack()
    said = "its data.pkl is not one torch.jit.save writes"
    if case in ("packs in forward", "repacks in forward"):
        scripted = _script(PacksInForward() if case == "packs in forward" else RepacksInForward(), tmp_path / "evil.pt")
        said = "outside torch's unpacking of weights"
        with pytest.raises(ModelError, match=re.escape(said)):
            modelfile.check_graphs(scripted)  # (the second net, after loading)
    else:
        _script(QuantizedConv(), tmp_path / "ok.pt")
        if case in ("lone CR", "form feed", "comment"):
            shutil.copy(tmp_path / "ok.pt", tmp_path / "evil.pt")
            _edited(tmp_path / "evil.pt", "  def forward(", {"lone CR": "  \r", "form feed": "\f",
                                                             "comment": "  # a comment"}[case] + "\n  def forward(")
            said = "its code holds characters torch.jit.save does not write"
        else:
            tag = b"Dict[str, " + b"(" * 30_000 + b"]"  # (torch parsed it with no limit to its nesting: a crash)
            old, new = {"module name with a slash": (b"quantized.modules.conv\nConv2d", b"quantized.modules/conv\nConv2d"),
                        "scheme as an int": (b"ctorch\nper_tensor_affine\n", b"K\x00"),
                        "type tag": (b"trainingq\x01\x88", b"trainingq\x01ctorch.jit._pickle\nrestore_type_tag\n\x88X"
                                     + len(tag).to_bytes(4, "little") + tag + b"\x86R")}[case]
            _with_record(tmp_path / "ok.pt", tmp_path / "evil.pt", "/data.pkl", lambda d: d.replace(old, new))
        modelfile.check_archive(tmp_path / "ok.pt")
        assert (tmp_path / "evil.pt").read_bytes() != (tmp_path / "ok.pt").read_bytes()
    with pytest.raises(ModelError, match=re.escape(said)):
        modelfile.check_archive(tmp_path / "evil.pt")


class SmallState(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class BigState(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.f0, self.f1, self.f2, self.f3 = 1.0, 2.0, 3.0, 4.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.f3


class HoldsTwo(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.big = BigState()
        self.small = SmallState()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.small(self.big(x))[:, :1]


class FailsToRun(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(7)


@pytest.mark.parametrize("case", ["object of another class", "version", "debug table"])
def test_what_torch_trusts_in_a_file_is_checked_or_not_read(tmp_path, case):
    """helper-130: an attribute declared ``BigState`` holding an object of ``SmallState`` (renamed in
    ``data.pkl``; torch does not compare them) let ``forward`` read past the object's slots (a
    segfault); a ``version`` record of 20 digits escaped as an internal error naming the photo; a
    ``.debug_pkl`` index one past its table turned any error into a segfault (those records are
    left out of what torch loads)."""
    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(photo)
    _script(FailsToRun() if case == "debug table" else HoldsTwo(), tmp_path / "ok.pt")
    if case == "object of another class":
        edit, ending, said = (lambda d: d.replace(b"\nBigState\n", b"\nSmallState\n"), "/data.pkl",
                              "its data.pkl is not one torch.jit.save writes")
    elif case == "version":
        edit, ending, said = (lambda d: b"99999999999999999999\n", "/version",
                              "not a TorchScript depth model")
    else:
        edit, ending, said = (lambda d: d.replace(b"K\x01K\x02K\x00e", b"K\x01K\x05K\x00e"), ".py.debug_pkl",
                              "depth model failed to run")
    _with_record(tmp_path / "ok.pt", tmp_path / "evil.pt", ending, edit)
    assert (tmp_path / "evil.pt").read_bytes() != (tmp_path / "ok.pt").read_bytes()
    r = subprocess.run([sys.executable, "-m", "photo3d", "depth", str(photo), "-o", str(tmp_path / "o.png"),
                        "--model", str(tmp_path / "evil.pt")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and said in r.stderr and len(r.stderr.strip().splitlines()) == 1, (r.returncode, r.stderr)


def test_classes_holding_classes_too_deep_are_refused(tmp_path):
    """3,000 classes, each with an attribute of the next, overflowed the stack inside
    ``torch.jit.load`` (113 KB, within every size cap; helper-130): at most 64 deep (and no class
    holding itself)."""
    import ast

    def code(n: int, loop: bool = False) -> ast.Module:
        lines = [f"class C{i}(Module):\n  x : __torch__.C{i + 1 if i + 1 < n or not loop else 0}\n" for i in range(n)]
        return ast.parse("".join(lines) + f"class C{n}(Module):\n  training : bool\n")

    assert modelfile._declared_types(["__torch__"], [code(63)], tmp_path)  # (64 classes in a chain)
    with pytest.raises(ModelError, match="classes holding classes more than 64 deep"):
        modelfile._declared_types(["__torch__"], [code(3000)], tmp_path)
    with pytest.raises(ModelError, match="a class that holds itself"):
        modelfile._declared_types(["__torch__"], [code(3, loop=True)], tmp_path)


def test_objects_are_built_only_of_the_archives_classes_and_where_declared(tmp_path, monkeypatch):
    """helper-131: torch's unpickler reads a storage's or a scheme's name as an index into its
    table of classes, so a ``BUILD`` or ``NEWOBJ`` on one built an object of any class from a state
    no check read (a convolution with ``groups`` 0: SIGFPE at load); an attribute declared
    ``Tuple[Big, Small]`` held ``(Small, Small)`` and an object nine tuples deep went unchecked (the
    first run read past the object's slots).  Checked here on ``data.pkl`` as the stand-in reads it."""
    import ast
    import copyreg
    import pickle
    import types

    fake = types.ModuleType("__torch__")
    monkeypatch.setitem(sys.modules, "__torch__", fake)

    class Obj:
        def __init__(self, state):
            self.state = state

        def __reduce__(self):
            return copyreg.__newobj__, (type(self),), self.state

    for name in ("M", "Big", "Small"):
        setattr(fake, name, type(name, (Obj,), {"__module__": "__torch__", "__qualname__": name}))
    note = ast.parse("Tuple[__torch__.Big, __torch__.Small]", mode="eval").body
    declared = {"__torch__.M": {"t": note, "n": ast.parse("Tuple[int, int]", mode="eval").body}}

    def check(data: bytes) -> None:
        modelfile._check_pickled_objects(data, "data.pkl", {}, declared, tmp_path / "m.pt")

    check(pickle.dumps(fake.M({"t": (fake.Big({}), fake.Small({}))}), protocol=2))  # (as declared: passes)
    nested: object = fake.Big({})
    for _ in range(9):
        nested = (nested,)
    for bad in (pickle.dumps(fake.M({"t": (fake.Small({}), fake.Small({}))}), protocol=2),
                pickle.dumps(fake.M({"n": nested}), protocol=2),
                b"\x80\x02ctorch\nCharStorage\n}b.",  # (BUILD on a storage's name)
                b"\x80\x02ctorch\nper_channel_affine\n)\x81."):  # (NEWOBJ on a scheme's name)
        with pytest.raises(ModelError, match="its data.pkl is not one torch.jit.save writes"):
            check(bad)

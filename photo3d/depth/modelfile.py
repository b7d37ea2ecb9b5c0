"""What a depth model file is: the contract, its metadata, the bundled model and its manifest.

A model file is a TorchScript archive taking float32 (1, 3, H, W) RGB in [0, 1] (H, W multiples
of 32) and returning (1, 1, H, W) log-disparity, with an optional extra file ``photo3d.json``
holding metadata such as ``{"name": ..., "input_size": 384, "tta": "flip-small"}``.  INT8 models run on QNNPACK.
A file may hold a pair of networks (:func:`pair_models`, metadata ``"second_net": true``): its
``forward`` is the first's (``convert``'s one pass, the first of ``photo3d depth``'s two), its
``second_pass`` method the second's (the mirrored pass of ``"tta"``).

The bundled model ships inside the package, in ``photo3d/models/`` (package data, found with
:mod:`importlib.resources`): ``manifest.json`` = ``{"default": FILE, "sha256": HEX}`` names it
and holds its checksum, checked whenever that file is loaded.  ``python -m photo3d.train.qat``
writes a new model and manifest there (:func:`save_model`, :func:`write_manifest`).

A model file is code: TorchScript can call any operator, including ones that read or write
files (``torch.from_file``), and a module's ``__setstate__`` runs while it is loaded.  So before
a file is loaded, the TorchScript source in the archive is checked statically, and after
loading, before the first run, the compiled graphs of every method of every submodule (calls
inlined) are checked: only the operators a depth network needs (:data:`ALLOWED_OPS`) pass,
anything else is refused naming the first offending operator.  This is a safety net, not a
sandbox: ``--model`` files must still come from someone you trust.
"""

from __future__ import annotations

import ast
import builtins
import copy
import functools
import hashlib
import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Iterator

import torch

from ..defaults import MODELS_DIR
from ..errors import ModelError, UsageError, ignore_library_noise, printable, summarize

ignore_library_noise()  # (torch is here: its deprecation notes of TorchScript and quantized tensors)

METADATA_FILE = "photo3d.json"  # TorchScript extra file holding the model's metadata
DEFAULT_INPUT_SIZE = 384  # the network's input (longer side) when the metadata names none
MANIFEST = "manifest.json"

_warned = False


def set_qnnpack() -> None:
    """Select the QNNPACK engine (before packing or loading INT8 weights).

    Also consumes torch 2.13's once-per-process C++ deprecation warning about quantized tensor
    creation here, its note filtered (:data:`photo3d.errors.LIBRARY_NOISE`): raised later inside the TorchScript
    interpreter it would bypass Python's filters and print to stderr.
    """
    global _warned
    if "qnnpack" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "qnnpack"
    if not _warned:
        _warned = True
        torch.quantize_per_tensor(torch.zeros(1), 1.0, 0, torch.quint8)  # (its note filtered: LIBRARY_NOISE)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- what a model file may do ------------------------------------------------------------------

# Everything a depth network needs: quantized and float convolutions, adds, upsampling, concat,
# (de)quantization, elementwise float ops, and the structural ops TorchScript emits for module
# code (attributes, lists, tuples, control flow, shape arithmetic, error messages).
ALLOWED_OPS = frozenset(
    [f"quantized::{n}" for n in (
        "conv2d", "conv2d_relu", "conv2d_prepack", "conv2d_unpack", "add", "add_relu", "add_scalar",
        "add_scalar_relu", "mul", "mul_relu", "mul_scalar", "cat", "cat_relu", "relu6", "leaky_relu",
        "hardswish", "sigmoid", "linear", "linear_prepack", "linear_relu", "batch_norm2d", "batch_norm2d_relu",
        "upsample_nearest2d", "upsample_bilinear2d", "conv_transpose2d", "conv_transpose2d_prepack")]
    + [f"aten::{n}" for n in (
        # tensors: (de)quantization, convolution, normalization, activations, resampling, shape
        "quantize_per_tensor", "quantize_per_channel", "dequantize", "q_scale", "q_zero_point",
        "int_repr", "conv2d", "_convolution", "conv_transpose2d", "batch_norm", "instance_norm",
        "layer_norm", "group_norm", "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu",
        "leaky_relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "elu", "gelu", "silu", "hardswish",
        "hardsigmoid", "softplus", "clamp", "clamp_", "clamp_min", "clamp_max", "exp", "log", "sqrt",
        "rsqrt", "abs", "neg", "reciprocal", "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_",
        "pow", "mean", "sum", "amax", "amin", "max", "min", "maximum", "minimum", "where", "matmul", "linear",
        "softmax",
        "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact1d",
        "_upsample_nearest_exact2d", "_upsample_nearest_exact3d", "upsample_linear1d",
        "upsample_bilinear2d", "_upsample_bilinear2d_aa", "upsample_bicubic2d", "_upsample_bicubic2d_aa",
        "_upsample_lanczos2d_aa", "upsample_trilinear3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
        "adaptive_avg_pool3d", "avg_pool2d", "max_pool2d", "pixel_shuffle", "pixel_unshuffle", "pad",
        "constant_pad_nd", "reflection_pad2d", "replication_pad2d", "cat", "stack", "view", "reshape",
        "flatten", "permute", "transpose", "squeeze", "unsqueeze", "expand", "expand_as", "contiguous",
        "slice", "select", "narrow", "chunk", "split", "linspace", "arange", "zeros", "ones", "zeros_like",
        "ones_like", "full", "to", "type_as", "detach", "clone", "size", "dim", "numel",
        # scalars, lists, strings (shape arithmetic and error messages)
        "__getitem__", "_set_item", "append", "extend", "len", "Int", "Float", "Bool", "ScalarImplicit",
        "eq", "ne", "lt", "le", "gt", "ge", "__is__", "__isnot__", "__not__", "__and__", "__or__",
        "__contains__", "floor", "ceil", "floordiv", "remainder", "format", "list", "str",
        "dict", "keys", "values", "items", "__range_length", "__derive_index")]
    + [f"prim::{n}" for n in (
        "Constant", "GetAttr", "SetAttr", "If", "Loop", "ListConstruct", "ListUnpack", "TupleConstruct",
        "TupleIndex", "TupleUnpack", "TupleSlice", "DictConstruct", "Uninitialized", "unchecked_cast",
        "unchecked_unwrap_optional", "RaiseException", "device", "dtype", "layout", "is_quantized",
        "NumToTensor", "min", "max", "abs", "isinstance", "CallMethod", "shape")]
)
# methods of TorchScript's own C++ classes for packed quantized weights
_PACKED_PARAMS = "__torch__.torch.classes.quantized."
_PACKED_METHODS = frozenset({"unpack", "__getstate__", "__setstate__", "stride", "padding", "dilation",
                             "groups", "transpose", "output_padding"})
# plain-name calls TorchScript source may contain (each compiles to one of the ops above or to
# nothing: annotations, casts)
_BUILTIN_CALLS = frozenset({"annotate", "unchecked_cast", "uninitialized", "isinstance", "range", "len", "int",
                            "float", "bool", "str", "getattr", "hasattr", "min", "max", "abs", "enumerate",
                            "zip", "list", "tuple", "dict"})
# builtins no other name makes callable: a variable named ``print`` anywhere in the archive let
# ``print(...)`` pass, which ran at load and wrote to stdout, terminal escapes and all (helper-120)
_BUILTIN_NAMES = frozenset(dir(builtins)) | {"fork", "wait"}
# what the code that runs while the file loads (``__setstate__`` and the methods it calls) may use:
# it runs before :func:`check_graphs` can look at anything, so no loops (a loop that never ends held
# the process past Ctrl-C and SIGTERM) and no operator but packing the weights and comparing a string
_PACKING_OPS = frozenset({"quantized::conv2d_prepack", "quantized::linear_prepack", "quantized::conv_transpose2d_prepack"})
_LOAD_OPS = _PACKING_OPS | {"aten::eq", "aten::ne"}
# the methods of torch's quantized convolutions that pack weights (from their state while the file
# loads): no other code may call them or the packing operators (a ``forward`` that packed a weight
# of its own, or set ``groups`` 0 and called ``set_weight_bias``, crashed the first run; helper-128)
_PACKING_METHODS = frozenset({"__setstate__", "set_weight_bias"})


def _refuse(what: str, path: Path | None) -> None:
    raise ModelError(f"model uses {what}, which a depth model does not need; refused "
                     "(a model file is code: only run models from a source you trust)", path)


def _all_op_names() -> frozenset[str]:
    return frozenset(s.name.split("::", 1)[-1] for s in torch._C._jit_get_all_schemas())


def _load_error_reason(e: Exception) -> str:
    """torch.jit.load's error as a readable reason (its messages run on into C++ internals)."""
    text = str(e)
    if "constants.pkl" in text:
        return "a PyTorch file, but not TorchScript: save it with torch.jit.save"
    if 'hasRecord("version")' in text or "zip archive" in text:
        return "not a TorchScript archive"
    return summarize(e)


def _not_an_archive(path: Path) -> str:
    """Why ``path``, which zipfile cannot open, is no TorchScript archive, in the user's terms: an
    empty file, a zip cut short (a download or copy that stopped: its directory, at the end, is
    missing), another kind of model given by mistake, or simply not one."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        return f"unreadable: {e.strerror or e}"
    if size == 0:
        return "empty file"
    if head == b"PK\x03\x04":
        return f"cut short: a zip archive that ends after {size:,} bytes, before its directory; copy or download it again"
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "an ONNX model; photo3d runs TorchScript: save the model with torch.jit.save"
    if suffix in (".pb", ".pbtxt"):
        return ("a Caffe2 file; --model takes the folder holding tiefenrausch.pb and tiefenrausch_init.pb, "
                "or convert it once: photo3d model import FOLDER -o tiefenrausch.pt")
    return "not a TorchScript archive"


# a depth model's TorchScript code, all files (p3d-s: 44 KB, Tiefenrausch imported: 87 KB); parsed
# before the model loads, at ~650 MB and 9 s a MiB of the densest code (16 MiB took 10 GB; helper-63)
MAX_SOURCE_BYTES = 256 << 10
MAX_SOURCE_LINES = 10_000  # per code file: torch's parser recursed per line and crashed the process (segfault)
# on 40,000 blank lines, 55 KB (helper-111); the bundled model's largest file has 118, Tiefenrausch's 1,425
# the metadata file (the bundled model's: 1.4 KB), and everything else the archive holds once inflated
# (weights, constants: the bundled model 3.7 MB, Tiefenrausch imported ~10 MB): a deflate bomb's
# entries were inflated whole by the loader, 1 GiB from a 1 MB file (a security review, helper-77)
MAX_METADATA_BYTES = 64 << 10
MAX_ARCHIVE_BYTES = 512 << 20


def _inflate(z: zipfile.ZipFile, info: zipfile.ZipInfo, most: int, path: Path, keep: bool = True) -> tuple[int, bytes]:
    """(bytes inflated, the bytes if ``keep``) of one archive entry, stopping once past ``most`` (counted
    as it inflates: a bomb's directory may lie about its sizes); a damaged entry is a :class:`ModelError`."""
    parts, size = [], 0
    try:
        with z.open(info) as f:
            while size <= most and (chunk := f.read(min(1 << 20, most - size + 1))):
                size += len(chunk)
                if keep:
                    parts.append(chunk)
    except zipfile.BadZipFile as e:  # (the directory was read: an entry is damaged)
        raise ModelError(f"not a TorchScript depth model (a damaged entry: {e})", path) from None
    return size, b"".join(parts)


def _check_inflated_sizes(z: zipfile.ZipFile, infos: list[zipfile.ZipInfo], path: Path) -> None:
    """:class:`ModelError` when the metadata file inflates to more than :data:`MAX_METADATA_BYTES`
    or the compressed entries together to more than :data:`MAX_ARCHIVE_BYTES` (a stored entry, as
    every entry of the files torch.jit.save writes, is no larger than its bytes on disk: not read)."""
    budget = MAX_ARCHIVE_BYTES
    for info in infos:
        meta = info.filename.endswith(f"/extra/{METADATA_FILE}")
        if info.compress_type == zipfile.ZIP_STORED and not meta:
            continue
        most = MAX_METADATA_BYTES if meta else budget
        size, _ = _inflate(z, info, most, path, keep=False)
        if size > most:
            what = (f"its {METADATA_FILE} metadata holds more than {MAX_METADATA_BYTES >> 10} KiB" if meta
                    else f"it inflates to more than {MAX_ARCHIVE_BYTES >> 20} MiB")
            raise ModelError(f"not a TorchScript depth model ({what})", path)
        budget -= size


def _check_torch_reads_the_same(data: bytes, infos: list[zipfile.ZipInfo], code: dict[str, bytes],
                                declared: dict[str, dict[str, ast.expr]], path: Path) -> None:
    """Refuse an archive that torch's reader (miniz, as ``torch.jit.load`` reads it) sees otherwise
    than Python's ``zipfile`` did: the same records, of the same sizes, the code the same bytes.
    The two find a zip64 end record differently (``zipfile`` just before its locator, miniz where the
    locator says), so one file held two archives: a harmless one for the check and one whose
    load-time code wrote a file, then loaded without a word (helper-122)."""
    names = [i.filename for i in infos]
    prefix = names[0].split("/", 1)[0] + "/" if names else ""
    if not prefix or not all(n.startswith(prefix) for n in names):
        raise ModelError("not a TorchScript depth model (its entries are not in one folder)", path)
    ours = {n[len(prefix):]: i for n, i in zip(names, infos)}
    if "constants.pkl" not in ours:  # (torch.jit.save always writes one; torch.save never)
        raise ModelError("not a TorchScript depth model (a PyTorch file, but not TorchScript: save it with "
                         "torch.jit.save)", path)
    differ = ModelError("not a TorchScript depth model (torch's zip reader finds other entries in it than "
                        "Python's: two archives in one file)", path)
    if sum(i.file_size for i in infos) > MAX_ARCHIVE_BYTES or any(
            i.compress_type == zipfile.ZIP_STORED and i.compress_size != i.file_size for i in infos):
        raise ModelError(f"not a TorchScript depth model (its entries hold more than {MAX_ARCHIVE_BYTES >> 20} MiB)", path)
    sizes = {n: i.file_size for n, i in ours.items()}
    try:
        reader = torch._C.PyTorchFileReader(io.BytesIO(data))
        if set(reader.get_all_records()) != set(ours):
            raise differ
        if any(reader.get_record_size(name) != size for name, size in sizes.items()):
            raise differ
        with zipfile.ZipFile(io.BytesIO(data)) as z:  # every record, one at a time: the same bytes
            for name, info in ours.items():
                theirs = bytes(reader.get_record(name))
                if theirs != (code.get(info.filename) or z.read(info)):
                    raise differ
                if name.endswith((".pkl", "_pkl")):  # (a .debug_pkl too: torch reads it to word an error)
                    _check_pickle(theirs, name, path)
                    if name in ("data.pkl", "constants.pkl"):
                        _check_pickled_objects(theirs, name, sizes, declared, path)
                if name.endswith("version") and not re.fullmatch(rb"[1-9]\d?\n?", theirs):
                    raise ModelError(f"not a TorchScript depth model (its {name} record is not a version torch writes)", path)
    except (RuntimeError, ValueError, IndexError, OverflowError, zipfile.BadZipFile) as e:  # (what miniz cannot read, a damaged entry)
        raise ModelError(f"not a TorchScript depth model ({_load_error_reason(e)})", path) from None


MAX_PICKLE_OPS = 2_000_000  # opcodes of one .pkl record (the bundled model's data.pkl: 15,866)
MAX_PICKLE_DEPTH = 10_000  # objects held at once while it is read (the bundled model's: 113)


# what a TorchScript archive's pickles may name: its own classes (not TorchScript's C++ ones, whose
# ``__setstate__`` no check reads), tensors and their storages, and TorchScript's list builders
_PICKLE_GLOBALS = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_qtensor"),
                   ("collections", "OrderedDict"), ("torch", "per_tensor_affine"), ("torch", "per_channel_affine"),
                   ("torch", "per_channel_affine_float_qparams")} | {
    ("torch.jit._pickle", n) for n in ("build_intlist", "build_doublelist", "build_boollist", "build_tensorlist",
                                       "build_complexlist", "restore_type_tag")}
_STORAGE_BYTES = {"FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
                  "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
                  "QInt8Storage": 1, "QUInt8Storage": 1, "QInt32Storage": 4, "ComplexFloatStorage": 8,
                  "ComplexDoubleStorage": 16}
# what a quantized convolution's state may hold (torch's code keeps them as C++ ints and QNNPACK
# as 32-bit ones: a stride of 2**32 + 1 was 1 there, its output sized for the stride, and the first
# run wrote past it; helper-126)
MAX_CONV_CHANNELS = 1 << 14
MAX_CONV_WINDOW = 64  # kernel, stride, dilation and padding, each


def _check_pickled_objects(data: bytes, name: str, sizes: dict[str, int], declared: dict[str, dict[str, ast.expr]],
                           path: Path) -> None:
    """Read ``data.pkl`` / ``constants.pkl`` with nothing of it built but stand-ins: it may name only
    :data:`_PICKLE_GLOBALS`, storages of :data:`_STORAGE_BYTES` and the archive's own classes; each
    storage must be exactly as large as its record (a storage of 4,096 floats over a record of 12
    bytes let ``forward`` read the process's memory beyond it and write there, or crashed the load;
    helper-124) and each tensor lie within its storage, no larger (a stride-0 weight of 1.6 billion
    elements over one byte took 3.4 GB as it was packed; helper-126); a quantized convolution's
    state must be one its packing takes (:func:`_check_conv_state`)."""
    import pickle

    bad = ModelError(f"not a TorchScript depth model (its {name} is not one torch.jit.save writes)", path)
    folder = name.removesuffix(".pkl") + "/"

    class Storage:  # a storage type named by a persistent id; with its size, a storage
        def __init__(self, kind: str, numel: int = 0):
            self.kind, self.numel = kind, numel

    class Stub:  # any object of the archive's own classes or list: built of nothing
        conv: bool | None = None  # a quantized convolution of torch's (transposed or not)
        name = ""  # its class's (:func:`_class_name`)

        def __init__(self, *args, **kwargs):
            pass

        def __setstate__(self, state):
            if self.conv is not None:
                _check_conv_state(state, self.conv, bad)
            elif isinstance(state, dict):
                # each object is where its attribute's annotation puts its class: torch does not compare
                # them, and ``forward`` read past an object of a smaller class than declared (helper-130),
                # also one in a tuple declared of another class at that place (helper-131)
                notes = declared.get(self.name, {})
                for key, value in state.items():
                    if not _fits(value, notes.get(key) if isinstance(key, str) else None, 0):
                        raise bad
            else:
                raise bad

    def _fits(value, note: ast.expr | None, depth: int) -> bool:
        """Whether ``value`` holds the archive's objects only where ``note`` (an annotation; None:
        none) puts their classes."""
        if depth > 8:  # (deeper was skipped: an object 9 tuples deep went unchecked; helper-131)
            return False
        if isinstance(value, type):  # (a class as a value: torch's unpickler reads it as an index)
            return False
        if isinstance(note, ast.Subscript) and isinstance(note.value, ast.Name):
            kind = note.value.id
            args = list(note.slice.elts) if isinstance(note.slice, ast.Tuple) else [note.slice]
            if kind in ("Optional", "Union"):
                return value is None or any(_fits(value, a, depth + 1) for a in args)
            if kind == "Tuple" and isinstance(value, tuple):
                return len(value) == len(args) and all(_fits(v, a, depth + 1) for v, a in zip(value, args))
            if kind == "List" and isinstance(value, list) and len(args) == 1:
                return all(_fits(v, args[0], depth + 1) for v in value)
            if kind == "Dict" and isinstance(value, dict) and len(args) == 2:
                return all(_fits(k, args[0], depth + 1) and _fits(v, args[1], depth + 1) for k, v in value.items())
            note = None
        if isinstance(value, Stub) and value.name:
            return value.name == _named_class(note)
        if isinstance(value, (list, tuple)):
            return all(_fits(v, None, depth + 1) for v in value)
        if isinstance(value, dict):
            return all(_fits(k, None, depth + 1) and _fits(v, None, depth + 1) for k, v in value.items())
        return True

    class Tensor:
        def __init__(self, storage, offset, size, stride, quantized: bool = False):
            self.size = tuple(size) if isinstance(size, (tuple, list)) else None
            self.kind, self.quantized = getattr(storage, "kind", None), quantized
            self.axis: int | None = None  # a per-channel quantized tensor's channel axis
            dims = list(zip(self.size or (), stride if isinstance(stride, (tuple, list)) else ()))
            if not (isinstance(storage, Storage) and self.size is not None and len(dims) == len(self.size)
                    and all(type(n) is int and n >= 0 and type(st) is int and st >= 0 for n, st in dims)
                    and type(offset) is int and offset >= 0):
                raise bad
            numel = 1
            for n, _ in dims:
                numel *= n
            if numel and (numel > storage.numel or offset + sum((n - 1) * st for n, st in dims) >= storage.numel):
                raise bad

    def rebuild_tensor(storage, offset, size, stride, *rest):
        return Tensor(storage, offset, size, stride)

    def rebuild_qtensor(storage, offset, size, stride, qparams, *rest):
        # a per-channel weight with fewer scales or zero points than channels: packing read past them
        # (a segfault inside torch.jit.load with 2**24 channels and one scale; helper-125)
        # (the scheme as one of torch's names: written as the int torch reads it as, it skipped this check)
        t = Tensor(storage, offset, size, stride, quantized=True)
        scheme = getattr(qparams[0], "qualname", None) if isinstance(qparams, tuple) and qparams else None
        if scheme == "torch.per_tensor_affine":
            ok = len(qparams) == 3 and type(qparams[1]) is float and type(qparams[2]) is int
        elif scheme in ("torch.per_channel_affine", "torch.per_channel_affine_float_qparams"):
            ok = (len(qparams) == 4 and type(qparams[3]) is int and 0 <= qparams[3] < len(t.size)
                  and all(isinstance(q, Tensor) and q.size == (t.size[qparams[3]],) for q in qparams[1:3]))
            t.axis = qparams[3]
        else:
            ok = False
        if not ok:
            raise bad
        return t

    def restore_type_tag(value, tag):
        # torch parses the tag as a type with no limit to its nesting: 30,000 "(" crashed the load
        # (helper-129); torch.jit.save tags dicts and lists (``Dict[str, List[int]]``)
        if not (isinstance(tag, str) and len(tag) <= 200 and re.fullmatch(r"[\w.\[\], ]*", tag, re.ASCII)):
            raise bad
        depth = 0
        for c in tag:
            depth += (c == "[") - (c == "]")
            if not 0 <= depth <= 4:
                raise bad
        return value

    seen_keys: set[str] = set()

    def own(x) -> bool:
        return isinstance(x, type) and issubclass(x, Stub) and bool(x.name)

    class Reader(pickle._Unpickler):  # (Python's own: its steps can be checked one by one)
        # what torch's unpickler builds an object on must be a class of the archive's, which the
        # stand-in reads: a storage's or a scheme's name is an index into its table of classes to
        # torch, so an object of any class was built of a state no check read (helper-131)
        dispatch = dict(pickle._Unpickler.dispatch)

        def load_newobj(self):
            if not own(self.stack[-2]):
                raise bad
            pickle._Unpickler.load_newobj(self)

        def load_build(self):
            if not (isinstance(self.stack[-2], Stub) and type(self.stack[-2]).name):
                raise bad
            pickle._Unpickler.load_build(self)

        def load_reduce(self):
            if own(self.stack[-2]):
                raise bad
            pickle._Unpickler.load_reduce(self)

        dispatch[pickle.NEWOBJ[0]] = load_newobj
        dispatch[pickle.BUILD[0]] = load_build
        dispatch[pickle.REDUCE[0]] = load_reduce
        for _op in (pickle.NEWOBJ_EX, pickle.OBJ, pickle.INST):  # (torch.jit.save writes none of them)
            dispatch[_op[0]] = lambda self: (_ for _ in ()).throw(bad)

        def find_class(self, module: str, cls: str):
            # (``...quantized.modules/conv``: torch compiled the checked ``conv.py`` as another class, and
            # its state went unchecked; helper-128)
            if not (re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", module, re.ASCII) and cls.isidentifier() and cls.isascii()):
                raise bad
            if (module, cls) == ("torch._utils", "_rebuild_tensor_v2"):
                return rebuild_tensor
            if (module, cls) == ("torch._utils", "_rebuild_qtensor"):
                return rebuild_qtensor
            if module == "torch" and cls in _STORAGE_BYTES:
                return Storage(cls)
            if module == "collections" and cls == "OrderedDict":
                return dict
            if (module, cls) == ("torch.jit._pickle", "restore_type_tag"):
                return restore_type_tag
            own = module == "__torch__" or (module.startswith("__torch__.") and not module.startswith("__torch__.torch.classes"))
            if not ((module, cls) in _PICKLE_GLOBALS or own):
                raise ModelError(f"not a TorchScript depth model (its {name} names {module}.{cls})", path)
            # (the module in any case: torch found ``...nn.QUANTIZED.modules.conv``'s code all the
            # same, and groups 0 passed unchecked)
            return type(cls, (Stub,), {"qualname": f"{module}.{cls}", "name": _class_name(module, cls) if own else "",
                                       "conv": _packing_classes().get(_class_key(module, cls))})

        def persistent_load(self, pid):
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], Storage)
                    and isinstance(pid[2], str) and type(pid[4]) is int):
                raise bad
            kind = pid[1].kind
            if pid[2] in seen_keys:  # (torch copies a record for each reference: 400 of one took 3.5 GB; helper-125)
                raise ModelError(f"not a TorchScript depth model (its {name} reads the record {folder}{pid[2]} twice)", path)
            seen_keys.add(pid[2])
            if sizes.get(folder + pid[2]) != pid[4] * _STORAGE_BYTES[kind]:
                raise ModelError(f"not a TorchScript depth model (a tensor's storage in its {name} is not the size "
                                 f"of its record {folder}{pid[2]})", path)
            return Storage(kind, pid[4])

    try:
        Reader(io.BytesIO(data)).load()
    except ModelError:
        raise
    except Exception:  # noqa: BLE001 - whatever a malformed pickle raises while read into stand-ins
        raise bad from None


def _check_conv_state(state, transposed: bool, bad: ModelError) -> None:
    """A quantized convolution's state (torch's ``__getstate__``: in and out channels, kernel,
    stride, padding, dilation, transposed, output padding, groups, padding mode, weight, bias,
    ...) is one its packing takes: small positive numbers (groups 0 divided by zero while the file
    loaded, helper-124; a stride of 2**32 + 1 overran the output, helper-126), channels that
    groups divide, a qint8 weight of exactly the shape they give (a 0x0 kernel, or fewer output
    channels than groups, crashed or returned unwritten memory on the first run), quantized per
    tensor or per output channel (packing reads a scale per output channel: one along another axis
    was read past; helper-129), a float bias of one value per output channel."""
    try:
        cin, cout, kernel, stride, padding, dilation, _, out_pad, groups, _, w, b = state[:12]
        windows = (*kernel, *stride, *dilation, *padding, *out_pad)
        ok = (all(type(x) is int for x in (cin, cout, groups, *windows))
              and all(len(t) == 2 for t in (kernel, stride, padding, dilation, out_pad))
              and 1 <= groups and all(1 <= c <= MAX_CONV_CHANNELS and c % groups == 0 for c in (cin, cout))
              and all(1 <= x <= MAX_CONV_WINDOW for x in (*kernel, *stride, *dilation))
              and all(0 <= x <= MAX_CONV_WINDOW for x in padding)
              and all(0 <= o < max(st, d) for o, st, d in zip(out_pad, stride, dilation))
              and w.quantized and w.kind == "QInt8Storage"
              and w.size == ((cin, cout // groups) if transposed else (cout, cin // groups)) + tuple(kernel)
              and w.axis in ((None,) if transposed else (None, 0))
              and (b is None or (not b.quantized and b.kind == "FloatStorage" and b.size == (cout,))))
    except (TypeError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise bad


def _check_pickle(data: bytes, name: str, path: Path) -> None:
    """Refuse a pickle (``data.pkl``, ``constants.pkl``) that torch's unpickler would choke on: a
    list nested a million deep (3 KB) crashed the process inside ``torch.jit.load`` (a segfault, no
    message), 20 million empty lists (40 KB) took 3 GB (helper-123).  Its opcodes are counted and
    the depth of the unpickler's stack followed, without building anything."""
    import pickletools

    stack, marks, count = 0, [], 0
    try:
        for op, arg, _ in pickletools.genops(data):
            count += 1
            if pickletools.markobject in op.stack_before:
                stack = marks.pop() if marks else 0
            else:
                stack -= len(op.stack_before)
            if op.name == "MARK":
                marks.append(stack)
            else:
                stack += len(op.stack_after)
            # (torch's unpickler grows its memo to the index: 200 million in 3.7 KB took 3.4 GB; helper-125)
            memo = op.name in ("PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET") and int(arg) > count
            if memo or count > MAX_PICKLE_OPS or stack + len(marks) > MAX_PICKLE_DEPTH:
                raise ModelError(f"not a TorchScript depth model (its {name} is too large or too deeply nested)", path)
    except ValueError as e:  # (not a pickle, or cut short)
        raise ModelError(f"not a TorchScript depth model ({name}: {e})", path) from None


def _check_one_reading(z: zipfile.ZipFile, fp, path: Path) -> None:
    """Refuse an archive that two zip readers read differently: Python's ``zipfile`` finds the
    central directory where it lies (before the end record), and shifts every entry by any bytes
    before it; torch's reader (miniz) takes the offset the end record gives. A file whose directory
    is not at that offset held two archives, a harmless one this check read and another that torch
    loaded, whose load-time code wrote a file of its choosing (helper-111)."""
    end = zipfile._EndRecData(fp)  # (the record zipfile itself read: zip64 fields resolved)
    if end is None or z.start_dir != end[zipfile._ECD_OFFSET]:
        raise ModelError("not a TorchScript depth model (its zip directory is not where its end record says: "
                         "bytes before the archive, or two archives in one file)", path)


def archive_bytes(path: Path) -> bytes:
    """A model file's bytes, read once: what is checked is what torch loads (a file changed between
    the check and the load by path would be loaded unchecked)."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_ARCHIVE_BYTES:
                raise ModelError(f"not a TorchScript depth model (more than {MAX_ARCHIVE_BYTES >> 20} MiB)", path)
            return f.read()
    except OSError as e:
        raise ModelError(f"unreadable model file ({e.strerror or e})", path) from None


def check_archive(path: Path, data: bytes | None = None, bundled: bool = False) -> None:
    """Static check of the TorchScript source in the archive (``data``: the file's bytes, else
    read from ``path``), before anything of it runs.  ``bundled``: the file is the bundled model,
    its checksum checked: its load-time code is not compared with torch's (0.17 s to write that).

    ``torch.jit.load`` runs ``__setstate__`` methods while it loads, so the source is checked
    first: every reference to ``torch.X`` / ``ops.NS.X`` must be an allowed operator, every
    method call an allowed operator or a method the archive defines (and not the name of a
    forbidden operator), every plain call a TorchScript builtin or a name the archive binds.
    What torch's own reader finds in the archive must be what was checked
    (:func:`_check_torch_reads_the_same`).
    """
    data = archive_bytes(path) if data is None else data
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            _check_one_reading(z, io.BytesIO(data), path)
            infos = z.infolist()
            # torch finds an entry whatever its case: ``code/__torch__.PY`` was not read as code here,
            # yet torch compiled and ran it (helper-120)
            names = [i.filename.replace("\\", "/").lower() for i in infos]
            if len(set(names)) != len(names):
                raise ModelError("not a TorchScript depth model (archive holds duplicate entries)", path)
            code = [i for i, n in zip(infos, names) if n.endswith(".py")]
            _check_inflated_sizes(z, [i for i, n in zip(infos, names) if not n.endswith(".py")], path)
            budget = MAX_SOURCE_BYTES
            sources, code_bytes, modules = [], {}, []
            for info in code:
                size, text = _inflate(z, info, budget, path)
                budget -= size
                if budget < 0:
                    raise ModelError(f"not a TorchScript depth model (more than {MAX_SOURCE_BYTES >> 10} KiB of code)", path)
                code_bytes[info.filename] = text
                modules.append(_module_of(info.filename))
                sources.append(text.decode("utf-8"))
                # torch.jit.save writes printable ASCII and newlines, no comment, no string over
                # lines, no line joined to the next: where torch's lexer and Python's could part
                # (a lone CR ends a line for Python, not for torch: code torch compiled and ran at
                # load was a string constant to this check; helper-128)
                src = sources[-1]
                if (not src.isascii() or any(not (c.isprintable() or c == "\n") for c in src)
                        or any(t in src for t in ("#", ";", '"""', "'''", "\\\n"))):
                    raise ModelError("not a TorchScript depth model (its code holds characters torch.jit.save "
                                     "does not write)", path)
                if sources[-1].count("\n") > MAX_SOURCE_LINES:
                    raise ModelError(f"not a TorchScript depth model (a code file of more than {MAX_SOURCE_LINES:,} lines)", path)
    except zipfile.BadZipFile:
        raise ModelError(f"not a TorchScript depth model ({_not_an_archive(path)})", path) from None
    except (OSError, UnicodeDecodeError, EOFError, RuntimeError, NotImplementedError) as e:  # (encrypted, unknown compression)
        raise ModelError(f"not a TorchScript depth model ({type(e).__name__}: {summarize(e)})", path) from None
    try:
        trees = [ast.parse(src) for src in sources]
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # (nested past the parser's depth)
        raise ModelError("not a TorchScript depth model (its code cannot be read)", path) from None

    walks = [list(ast.walk(tree)) for tree in trees]
    defined: set[str] = set()  # functions, methods, classes and variables the archive defines
    methods: dict[str, list[ast.FunctionDef]] = {}
    for nodes in walks:
        for node in nodes:
            if isinstance(node, ast.While):  # (TorchScript writes a loop over range() as a for loop)
                _refuse("a while loop", path)
            if isinstance(node, ast.FunctionDef):
                methods.setdefault(node.name, []).append(node)
                _check_function_names(node, path)
            if isinstance(node, ast.ClassDef):
                _check_class_values(node, path)
            # TorchScript unrolls a loop over a literal tuple as it compiles: nested, a few lines
            # took minutes and gigabytes to load (helper-64); the code it writes loops over range()
            if isinstance(node, ast.For) and isinstance(node.iter, (ast.Tuple, ast.List)):
                _refuse("a loop over a literal tuple", path)
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
            elif isinstance(node, ast.arg):
                defined.add(node.arg)
    op_names: frozenset[str] | None = None  # every operator's name, computed when first needed

    for nodes in walks:
        inner = {id(n.value) for n in nodes if isinstance(n, ast.Attribute)}  # not the end of a chain
        for node in nodes:
            if isinstance(node, ast.Name) and node.id in ("torch", "ops") and id(node) not in inner:
                _refuse(f"{node.id} as a value", path)
            if isinstance(node, ast.Attribute) and id(node) not in inner:
                parts = _chain(node)
                if parts and parts[0] in ("torch", "ops") and (op := _op_name(parts)) not in ALLOWED_OPS:
                    _refuse(op, path)
            if isinstance(node, ast.Call):
                f = node.func
                if isinstance(f, ast.Attribute):
                    parts = _chain(f)
                    if parts and parts[0] in ("torch", "ops", "__torch__"):
                        continue  # an operator (checked above) or the archive's own code
                    name = f.attr
                    if f"aten::{name}" in ALLOWED_OPS or name in _PACKED_METHODS:
                        continue
                    op_names = op_names or _all_op_names()
                    if name not in defined or name in op_names:
                        _refuse(f"the method {name}()", path)
                elif isinstance(f, ast.Name):
                    if f.id not in _BUILTIN_CALLS and (f.id not in defined or f.id in _BUILTIN_NAMES):
                        _refuse(f"{f.id}()", path)
                else:
                    _refuse("a computed call", path)
    _check_load_code(methods, path)
    if not bundled:
        _check_load_classes(modules, trees, path)
    declared = _declared_types(modules, trees, path)
    _check_torch_reads_the_same(data, infos, code_bytes, declared, path)  # (a file of no archive at all said so above)


# what the code that runs at load is written of (TorchScript's unpacking of weights: assignments,
# attributes, calls, an ``if`` on a string, tuples and lists of names), annotations apart
_LOAD_NODES = (ast.FunctionDef, ast.arguments, ast.arg, ast.Assign, ast.Expr, ast.Return, ast.If, ast.Pass,
               ast.Name, ast.Load, ast.Store, ast.Constant, ast.Attribute, ast.Subscript, ast.Call, ast.keyword,
               ast.Tuple, ast.List)


def _check_class_values(cls: ast.ClassDef, path: Path) -> None:
    """A class body's values are constants, lists of them, or names of types (TorchScript evaluates
    them as it loads: ``c : Final[int] = __torch__.spin(3)`` hung past Ctrl-C; helper-125)."""
    for stmt in cls.body:
        value = stmt.value if isinstance(stmt, (ast.Assign, ast.AnnAssign)) else None
        if value is not None and not all(isinstance(n, (ast.Constant, ast.List, ast.Tuple, ast.Name, ast.Attribute,
                                                        ast.Load)) for n in ast.walk(value)):
            _refuse("a class-level value that is not a constant", path)


def _check_function_names(fn: ast.FunctionDef, path: Path) -> None:
    """A function's argument defaults are constants (TorchScript evaluates them as it compiles, so
    while the file loads, even for a method nothing calls: ``k: int = __torch__.spin(3)`` looped for
    ever, ``torch.ones`` there took 2 GB; helper-123), and a Python builtin's name is used only where
    the function binds it itself or as one of :data:`_BUILTIN_CALLS` (``p = print`` then ``p(...)``
    printed while it loaded)."""
    args = fn.args
    for d in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
        if not (isinstance(d, ast.Constant) or (isinstance(d, ast.UnaryOp) and isinstance(d.operand, ast.Constant))):
            _refuse("a default value that is not a constant", path)
    bound = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg) if a}
    bound |= {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    for n in ast.walk(fn):
        if (isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in _BUILTIN_NAMES
                and n.id not in _BUILTIN_CALLS and n.id not in bound):
            _refuse(f"the builtin {n.id}", path)


def _check_load_code(methods: dict[str, list[ast.FunctionDef]], path: Path) -> None:
    """The code ``torch.jit.load`` runs: every ``__setstate__`` and each method it calls on
    ``self`` (any class's of that name), and theirs.  Allowed there: no loop, no operator outside
    :data:`_LOAD_OPS`, and no call but of such a method, such an operator or a builtin of
    :data:`_BUILTIN_CALLS`.  A file that passed every other check could loop for ever or fill the
    memory while it loaded (``torch.ones([750000000])``: 3 GB for a file of 1.4 KB; helper-120),
    also through a class built there (its ``__init__`` runs) or a method called through a variable,
    which a check that followed names did not see (helper-122)."""
    todo, seen = ["__setstate__"], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for fn in methods.get(name, ()):
            inner = {id(n.value) for n in ast.walk(fn) if isinstance(n, ast.Attribute)}
            types = {id(n) for a in (*fn.args.args, *fn.args.kwonlyargs) if a.annotation is not None
                     for n in ast.walk(a.annotation)} | ({id(n) for n in ast.walk(fn.returns)} if fn.returns else set())
            tuples = {a.arg for a in fn.args.args if isinstance(a.annotation, ast.Subscript)
                      and isinstance(a.annotation.value, ast.Name) and a.annotation.value.id == "Tuple"}
            for node in ast.walk(fn):
                if id(node) in types:
                    continue
                if isinstance(node, (ast.For, ast.While)):
                    _refuse(f"a loop while it loads ({name})", path)
                if not isinstance(node, _LOAD_NODES):  # (an operator: ``a @ b`` over 2**50 elements, ``[0] * n``)
                    _refuse(f"{type(node).__name__.lower()} while it loads ({name})", path)
                if isinstance(node, ast.Subscript) and not (isinstance(node.value, ast.Name) and node.value.id in tuples):
                    _refuse(f"indexing other than of its state while it loads ({name})", path)  # (__getitem__ runs)
                if isinstance(node, ast.Attribute) and id(node) not in inner:
                    parts = _chain(node)
                    if parts and parts[0] in ("torch", "ops") and (op := _op_name(parts)) not in _LOAD_OPS:
                        _refuse(f"{op} while it loads ({name})", path)
                if isinstance(node, ast.Call):
                    f = node.func
                    parts = _chain(f) if isinstance(f, ast.Attribute) else None
                    if parts and parts[0] == "self" and len(parts) == 2:
                        todo.append(parts[1])
                    elif parts and parts[0] in ("torch", "ops"):
                        pass  # (an operator: checked above)
                    elif not (isinstance(f, ast.Name) and f.id in _BUILTIN_CALLS):
                        what = ".".join(parts) if parts else f.id if isinstance(f, ast.Name) else "a computed call"
                        _refuse(f"{what}() while it loads ({name})", path)


MAX_TYPE_DEPTH = 64  # classes holding classes (the bundled model's: 6)


def _declared_types(modules: list[str], trees: list[ast.Module], path: Path) -> dict[str, dict[str, ast.expr]]:
    """{class: {attribute: its annotation}} of the archive's classes (their :func:`_class_name`),
    for :func:`_check_pickled_objects`; refused where classes hold classes more than
    :data:`MAX_TYPE_DEPTH` deep (3,000 deep overflowed the stack inside ``torch.jit.load``;
    helper-130)."""
    declared: dict[str, dict[str, ast.expr]] = {}
    for module, tree in zip(modules, trees):
        for cls in tree.body:
            if not isinstance(cls, ast.ClassDef):
                continue
            notes = declared.setdefault(_class_name(module, cls.name), {})
            for stmt in cls.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    notes[stmt.target.id] = stmt.annotation
                elif (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(t := stmt.targets[0], ast.Subscript)
                      and isinstance(t.value, ast.Name) and t.value.id == "__annotations__" and isinstance(t.slice, ast.Constant)):
                    notes[str(t.slice.value)] = stmt.value
    holds = {c: {n for note in notes.values() for n in _named_classes(note) if n in declared}
             for c, notes in declared.items()}  # {class: the classes its attributes hold}
    depth: dict[str, int] = {}
    for top in holds:  # (longest chain of classes below each, without recursion)
        stack, on = [(top, iter(holds[top]))], {top}
        while stack:
            node, kids = stack[-1]
            kid = next(kids, None)
            if kid is None:
                stack.pop()
                on.discard(node)
                depth[node] = 1 + max((depth[c] for c in holds[node]), default=0)
                if depth[node] > MAX_TYPE_DEPTH:
                    raise ModelError(f"not a TorchScript depth model (classes holding classes more than {MAX_TYPE_DEPTH} deep)", path)
            elif kid in on:
                raise ModelError("not a TorchScript depth model (a class that holds itself)", path)
            elif kid not in depth:
                on.add(kid)
                stack.append((kid, iter(holds[kid])))
    return declared


def _named_classes(note: ast.expr) -> Iterator[str]:
    """The classes an annotation names anywhere in it (``Tuple[__torch__.a.B, int]``)."""
    inner = {id(n.value) for n in ast.walk(note) if isinstance(n, ast.Attribute)}  # (not the end of a chain)
    return (c for n in ast.walk(note) if id(n) not in inner and (c := _named_class(n)))


def _named_class(note: ast.AST) -> str | None:
    """The class (its :func:`_class_name`) an annotation's ``__torch__.a.B`` chain names, else None."""
    parts = _chain(note) if isinstance(note, ast.Attribute) else None
    return _class_name(".".join(parts[:-1]), parts[-1]) if parts and parts[0] == "__torch__" else None


def _class_name(module: str, cls: str) -> str:
    """A class's name as the check compares them: its module in lower case (torch finds code in
    any case), mangling and all."""
    return f"{module.lower()}.{cls}"


def _module_of(name: str) -> str:
    """The TorchScript module a code file of the archive holds: ``x/code/__torch__/a/b.py`` →
    ``__torch__.a.b`` (lower case, as torch finds it)."""
    name = name.replace("\\", "/").lower().split("/", 1)[-1].removeprefix("code/")
    return name.removesuffix(".py").replace("/", ".")


def _class_key(module: str, cls: str) -> str:
    """:func:`_class_name` with torch's mangling (``___torch_mangle_7``, one per variant) left out:
    the name of the code torch finds for the class."""
    return ".".join(part for part in _class_name(module, cls).split(".") if not _MANGLE.fullmatch(part))


def _load_methods(cls: ast.ClassDef) -> dict[str, list[ast.FunctionDef]]:
    """The methods of ``cls`` that run while the file loads: ``__setstate__`` and what it calls on
    ``self``, and theirs (every definition of each name)."""
    defs: dict[str, list[ast.FunctionDef]] = {}
    for fn in cls.body:
        if isinstance(fn, ast.FunctionDef):
            defs.setdefault(fn.name, []).append(fn)
    todo, found = ["__setstate__"], {}
    while todo:
        name = todo.pop()
        if name in found or name not in defs:
            continue
        found[name] = defs[name]
        todo += [parts[1] for fn in defs[name] for n in ast.walk(fn) if isinstance(n, ast.Call)
                 and (parts := _chain(n.func)) and parts[0] == "self" and len(parts) == 2]
    return found


def _source(fn: ast.FunctionDef) -> str:
    """``fn`` written out with its class's mangling left out and its local names numbered in order
    (torch numbers its temporaries ``_7`` in one file, ``_8`` in the next)."""
    fn = copy.deepcopy(fn)
    nodes = list(ast.walk(fn))
    bound = {n.arg for n in nodes if isinstance(n, ast.arg)} | {
        n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    names: dict[str, str] = {}
    for n in nodes:
        if isinstance(n, ast.arg):
            n.arg = names.setdefault(n.arg, f"v{len(names)}")
        elif isinstance(n, ast.Name) and n.id in bound:
            n.id = names.setdefault(n.id, f"v{len(names)}")
    for n in nodes:  # (in the names of types only: ``"zeros.___torch_mangle_1"`` passed for torch's "zeros")
        while isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute) and _MANGLE.fullmatch(n.value.attr):
            n.value = n.value.value
    return ast.unparse(fn)


_MANGLE = re.compile(r"___torch_mangle_\d+")


def _packing_layers() -> tuple[type, ...]:
    """torch's quantized convolutions: the only classes whose code runs while a model file loads
    (their ``__setstate__`` packs their weights)."""
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq

    return nnq.Conv2d, nnq.ConvTranspose2d, nniq.ConvReLU2d, nniq.ConvAdd2d, nniq.ConvAddReLU2d


@functools.cache
def _packing_classes() -> dict[str, bool]:
    """{class key: transposed} of :func:`_packing_layers`, named as in a file."""
    return {_class_key(f"__torch__.{c.__module__}", c.__name__): "Transpose" in c.__name__ for c in _packing_layers()}


@functools.cache
def _torch_load_code() -> dict[str, dict[str, list[str]]]:
    """The load-time methods of :func:`_packing_layers` as this torch writes them into a file:
    {class key: {method: [source]}}."""
    set_qnnpack()
    holder = torch.nn.Module()
    for i, layer in enumerate(_packing_layers()):
        holder.add_module(f"m{i}", layer(1, 1, 1))
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(holder), buf)
    code: dict[str, dict[str, list[str]]] = {}
    with zipfile.ZipFile(buf) as z:
        for name in z.namelist():
            if name.endswith(".py"):
                for cls in ast.walk(ast.parse(z.read(name).decode("utf-8"))):
                    if isinstance(cls, ast.ClassDef) and (load := _load_methods(cls)):
                        code[_class_key(_module_of(name), cls.name)] = {
                            k: [_source(fn) for fn in fns] for k, fns in load.items()}
    return code


def _check_load_classes(modules: list[str], trees: list[ast.Module], path: Path) -> None:
    """The code that runs while the file loads is torch's own quantized convolutions', word for
    word (whose state is checked: :func:`_check_conv_state`), and no other code packs weights.  A
    class of the archive's own packed a convolution with ``groups`` 0 and stopped the process on a
    division by zero (helper-125); one that passed every rule for load-time code ran a method no
    rule read through ``int(self)`` (TorchScript calls ``self.__int__()``): it looped past Ctrl-C or
    took 4 GB (helper-126); a ``forward`` that packed a weight of its own crashed the first run
    (helper-128)."""
    verified: set[int] = set()
    for module, tree in zip(modules, trees):
        for cls in ast.walk(tree):
            if isinstance(cls, ast.ClassDef) and (load := _load_methods(cls)):
                theirs = _torch_load_code().get(_class_key(module, cls.name))
                if theirs is None or any(theirs.get(k) != [_source(fn) for fn in fns] for k, fns in load.items()):
                    _refuse("code of its own that runs while it loads (not torch's quantized convolutions')", path)
                verified |= {id(fn) for fns in load.values() for fn in fns}
    for tree in trees:
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef) and id(fn) not in verified:
                for n in ast.walk(fn):
                    parts = _chain(n) if isinstance(n, ast.Attribute) else None
                    if parts and (_op_name(parts) in _PACKING_OPS or parts[-1] in _PACKING_METHODS):
                        _refuse(f"{'.'.join(parts[-2:])} outside torch's unpacking of weights", path)


def _op_name(parts: list[str]) -> str:
    """The operator a ``torch.X`` / ``ops.NS.X`` / ``torch.ops.NS.X`` chain names (``aten::X``,
    ``NS::X``), else the chain itself (no operator: refused wherever one is expected)."""
    if parts[0] == "torch" and len(parts) == 2:
        return f"aten::{parts[1]}"
    if parts[0] == "ops" and len(parts) == 3:
        return f"{parts[1]}::{parts[2]}"
    if parts[:2] == ["torch", "ops"] and len(parts) == 4:
        return f"{parts[2]}::{parts[3]}"
    return ".".join(parts)


def _chain(node: ast.AST) -> list[str] | None:
    """``a.b.c`` → ["a", "b", "c"]; None when the chain does not start at a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id] + parts[::-1] if isinstance(node, ast.Name) else None


def check_graphs(module: torch.jit.ScriptModule, path: Path | None = None) -> None:
    """Refuse a loaded model whose compiled code calls anything outside :data:`ALLOWED_OPS`.

    Every method of every submodule is checked.  A method that calls functions, or methods of
    objects that are not submodules, is checked with those calls inlined; what stays a call must
    be a submodule's method (checked in its own right) or a method of packed quantized weights."""
    types: dict[str, torch.jit.ScriptModule] = {}
    for _, sub in module.named_modules():
        if not isinstance(sub, torch.jit.ScriptModule):
            _refuse(f"a module that is not TorchScript ({type(sub).__name__})", path)
        if sub._c._get_forward_hooks() or sub._c._get_forward_pre_hooks():  # (not among its methods: unchecked)
            _refuse("forward hooks", path)
        types.setdefault(str(sub._c._type().qualified_name()), sub)

    def owner(node) -> str:
        return str(next(iter(node.inputs())).type())

    def calls_outside(block) -> bool:
        for node in block.nodes():
            kind = node.kind()
            if kind == "prim::CallFunction" or (kind == "prim::CallMethod" and owner(node) not in types):
                return True
            if any(calls_outside(sub) for sub in node.blocks()):
                return True
        return False

    def visit(block, name: str) -> None:
        for node in block.nodes():
            kind = node.kind()
            if kind not in ALLOWED_OPS:
                _refuse(kind, path)
            if kind in _PACKING_OPS and name not in _PACKING_METHODS:
                _refuse(f"{kind} outside torch's unpacking of weights", path)
            if kind == "prim::CallMethod":
                if node.s("name") in _PACKING_METHODS and name not in _PACKING_METHODS:
                    _refuse(f"a call of {node.s('name')} outside torch's unpacking of weights", path)
                cls = owner(node)
                if not (cls in types or (cls.startswith(_PACKED_PARAMS) and node.s("name") in _PACKED_METHODS)):
                    _refuse(f"a call of {cls}.{node.s('name')}", path)
            for sub in node.blocks():
                visit(sub, name)

    for sub in types.values():
        for name in sub._c._method_names():
            method = sub._c._get_method(name)
            graph = method.graph
            if calls_outside(graph.block()):
                graph = method.inlined_graph  # kept referenced while its nodes are visited
            visit(graph.block(), name)


# --- reading and writing model files ---------------------------------------------------------


class _Pair(torch.nn.Module):
    """Two networks of the same contract in one file: ``forward`` runs the first (the one pass of
    ``convert``, the first of ``photo3d depth``'s two), ``second_pass`` the second (the mirrored pass
    of "flip" / "flip-small"). Metadata ``"second_net": true`` says the file is one."""

    def __init__(self, first: torch.nn.Module, second: torch.nn.Module):
        super().__init__()
        self.first = first
        self.second = second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.first(x)

    @torch.jit.export
    def second_pass(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(x)


def pair_models(first: torch.jit.ScriptModule, second: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """One TorchScript module of two networks (:class:`_Pair`); save it with ``"second_net": true``."""
    return torch.jit.script(_Pair(first, second))


def is_pair(module) -> bool:
    """Whether ``module`` holds a pair of networks (:func:`pair_models`: a ``second_pass`` method)."""
    c = getattr(module, "_c", None)
    return bool(c is not None and c._has_method("second_pass")) or callable(getattr(module, "second_pass", None))


def first_network(module):
    """A pair's first network (the one its ``forward`` runs), else ``module`` itself."""
    return module.first if is_pair(module) and hasattr(module, "first") else module


def save_model(scripted: torch.jit.ScriptModule, path: str | Path, meta: dict) -> Path:
    """Write ``scripted`` with its ``photo3d.json`` metadata atomically."""
    from ..io import atomic_output

    path = Path(path)
    with atomic_output(path) as tmp:
        torch.jit.save(scripted, str(tmp), _extra_files={METADATA_FILE: json.dumps(meta)})
    return path


def read_model(path: Path) -> tuple[torch.jit.ScriptModule, dict]:
    """Load a TorchScript model file: (module in eval mode, metadata dict).

    The file's code is checked before it is loaded (:func:`check_archive`) and its compiled
    graphs after (:func:`check_graphs`); a file that claims to be the bundled model must match
    the manifest's checksum (:func:`verify_bundled`)."""
    try:
        data = archive_bytes(path)
    except ModelError:
        verify_bundled(path)  # (the bundled model gone: a damaged install, said so)
        raise
    check_archive(path, data, bundled=verify_bundled(path, data=data))
    set_qnnpack()
    extra = {METADATA_FILE: ""}
    try:
        module = torch.jit.load(io.BytesIO(_without_debug_records(data)), map_location="cpu", _extra_files=extra)
    except Exception as e:
        raise ModelError(f"not a TorchScript depth model ({_load_error_reason(e)})", path) from e
    check_graphs(module, path)
    meta: dict = {}
    text = extra.get(METADATA_FILE) or ""
    if text:
        try:
            meta = json.loads(text)
        except (ValueError, RecursionError):
            raise ModelError(f"malformed {METADATA_FILE} metadata in the model", path) from None
        if not isinstance(meta, dict):
            meta = {}
    module.eval()
    return module, meta


# --- the bundled model -----------------------------------------------------------------------


def _without_debug_records(data: bytes) -> bytes:
    """The archive ``data`` (checked) without its ``.debug_pkl`` records: torch reads them only to
    word an error, by indices into a table it does not bound (one past its end made any error, one
    at load too, a segfault; helper-130); an error still names the operator, not the source line."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as z, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as w:
        for info in z.infolist():
            if not info.filename.lower().endswith(".debug_pkl"):
                w.writestr(info.filename, z.read(info))
    return out.getvalue()


def bundled_model_path(models_dir: Path | None = None) -> Path:
    """The default model file named by ``manifest.json`` (``{"default": file, "sha256": hex}``)."""
    models_dir = MODELS_DIR if models_dir is None else models_dir
    manifest = models_dir / MANIFEST
    try:
        info = json.loads(manifest.read_text())
        return models_dir / info["default"]
    except FileNotFoundError:
        raise ModelError("no bundled depth model (photo3d/models/manifest.json is missing: a damaged install, "
                         "reinstall photo3d); pass --model FILE, or train one: python -m photo3d.train.qat",
                         manifest) from None
    except (ValueError, KeyError, TypeError):
        raise ModelError("photo3d/models/manifest.json is malformed (expected {\"default\": file, \"sha256\": hex})",
                         manifest) from None


def default_model_path() -> Path:
    """The bundled model; ModelError with a how-to when absent."""
    models_dir = MODELS_DIR  # looked up at call time (tests point it elsewhere)
    try:
        path = bundled_model_path(models_dir)
    except ModelError:
        if (models_dir / MANIFEST).exists():
            raise  # a malformed manifest says so itself
        path = None
    if path is None or not path.is_file():
        raise ModelError(
            "the bundled depth model is missing (a damaged install: reinstall photo3d), or pass --model "
            "/path/to/tiefenrausch (the folder holding tiefenrausch.pb and tiefenrausch_init.pb) or --model "
            "FILE.pt (a TorchScript model, e.g. from `photo3d model import`)",
            path or models_dir,
        )
    return path


def _archive_name(path: Path) -> str | None:
    """The ``name`` in a model file's metadata, read from the archive without loading it."""
    try:
        with zipfile.ZipFile(path) as z:
            entry = next((n for n in z.namelist() if n.endswith(f"/extra/{METADATA_FILE}")), None)
            if entry is None:
                return None
            # (at most what metadata may be: 1 GiB of spaces, deflated to 1 MB, was inflated whole)
            size, text = _inflate(z, z.getinfo(entry), MAX_METADATA_BYTES, path)
            meta = json.loads(text) if size <= MAX_METADATA_BYTES else None
    except (zipfile.BadZipFile, ModelError, OSError, ValueError, EOFError, RecursionError, RuntimeError, NotImplementedError):
        return None
    return str(meta.get("name")) if isinstance(meta, dict) else None


def verify_bundled(path: Path, models_dir: Path | None = None, data: bytes | None = None) -> bool:
    """Raise :class:`ModelError` unless a file that is or claims to be the bundled model (the
    manifest's file itself, a file of the same name, or one whose metadata carries its name) has
    the sha256 the manifest lists (of ``data``, the file's bytes where they are read already).  Other
    files (user models given with --model) are not checked.  True: the file is the manifest's own,
    its checksum right.
    """
    models_dir = MODELS_DIR if models_dir is None else models_dir
    path = Path(path)
    try:
        info = json.loads((models_dir / MANIFEST).read_text())
        bundled = models_dir / str(info["default"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return False
    if bundled.resolve() == path.resolve():
        claim = "bundled depth model"
        if not path.is_file():
            raise ModelError("bundled depth model is missing (reinstall photo3d or pass --model FILE)", path)
    elif path.name == bundled.name:
        claim = f"file named like the bundled model {bundled.name}"
    elif path.is_file() and _archive_name(path) == bundled.stem:
        claim = f"model named like the bundled model {bundled.stem!r}"
    else:
        return False
    digest = sha256_file(path) if data is None else hashlib.sha256(data).hexdigest()  # (data: the file's bytes, read)
    if digest != info.get("sha256"):
        hint = "" if claim == "bundled depth model" else "; a model of your own needs another name"
        raise ModelError(f"{claim} is corrupt or not the bundled model: sha256 {digest[:12]}… "
                         f"does not match photo3d/models/manifest.json ({str(info.get('sha256'))[:12]}…){hint}", path)
    return claim == "bundled depth model"


def check_output_name(path: str | Path, option: str = "-o", models_dir: Path | None = None) -> None:
    """Raise :class:`UsageError` unless ``path`` names a model file that ``--model`` will load: a
    TorchScript ``.pt`` (any other suffix is a mistake: ``-o DIR/tiefenrausch_init.pb`` would
    replace the very weights being read), not named like the bundled model (which
    :func:`verify_bundled` refuses unless it is that file)."""
    models_dir = MODELS_DIR if models_dir is None else models_dir
    path = Path(path)
    if path.suffix.lower() != ".pt":
        raise UsageError(f"{option} {printable(path)}: a depth model is a TorchScript .pt file, not "
                         f"{printable(path.suffix) or 'a name without suffix'} (e.g. -o {printable(path.with_suffix('.pt'))})")
    try:
        bundled = str(json.loads((models_dir / MANIFEST).read_text())["default"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return
    if path.name == bundled:
        raise UsageError(f"{option} {printable(path)}: {bundled} is the bundled model's name and --model refuses "
                         f"any other file by that name; choose another (e.g. -o {printable(path.with_name('tiefenrausch.pt'))})")


def write_manifest(model: Path, models_dir: Path | None = None) -> str:
    """Make ``model`` (a file in ``models_dir``) the default: write the manifest; return its sha256."""
    from ..io import write_bytes_atomic

    models_dir = MODELS_DIR if models_dir is None else models_dir
    digest = sha256_file(model)
    info = {"default": model.name, "sha256": digest}
    write_bytes_atomic(models_dir / MANIFEST, (json.dumps(info, indent=1) + "\n").encode())
    return digest

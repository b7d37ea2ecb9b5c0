"""Import Facebook's Tiefenrausch depth net (Caffe2 NetDef protobufs) into PyTorch.

The two files ``tiefenrausch.pb`` (predict net) and ``tiefenrausch_init.pb`` (init net: uint8
weights, int32 biases) are decoded with a small hand-written protobuf wire-format reader, so no
generated Caffe2 proto code is needed.  The graph is rebuilt op by op:

========================  =================================================================
Caffe2 op                 PyTorch
========================  =================================================================
NCHW2NHWC                 nothing (PyTorch quantized ops take NCHW tensors)
Int8Quantize              ``torch.quantize_per_tensor`` (quint8)
Int8Conv                  ``torch.ao.nn.quantized.Conv2d``: weights [out, kh, kw, in/group]
                          uint8 → NCHW qint8 (value − 128, zero point − 128); int32 bias ×
                          bias scale → float bias; output scale/zero point (zero point 0 is
                          the implicit ReLU: uint8 saturates at 0)
Int8Add                   ``torch.ops.quantized.add`` with the output scale/zero point
Int8ResizeNearest         nearest 2× upsampling (same quantization parameters)
Int8Dequantize            ``Tensor.dequantize``
========================  =================================================================

:func:`import_tiefenrausch` returns a TorchScript module following the photo3d model contract
(float32 (1, 3, H, W) RGB in [0, 1], H and W multiples of 32 → (1, 1, H, W) log-disparity);
The same network with dequantized float weights (for distillation) is built by
:mod:`photo3d.train.tiefenrausch_float`.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from . import modelfile

PREDICT_NET = "tiefenrausch.pb"
INIT_NET = "tiefenrausch_init.pb"

# --------------------------------------------------------------------------------------------
# Protobuf wire format (just what NetDef / OperatorDef / Argument need)
# NetDef: op=2, external_input=7, external_output=8
# OperatorDef: input=1, output=2, name=3, type=4, arg=5
# Argument: name=1, f=2, i=3, s=4, floats=5, ints=6, strings=7
# --------------------------------------------------------------------------------------------


MAX_NETDEF_BYTES = 8 << 20  # a NetDef file (Tiefenrausch's: 49 KB and 3.6 MB)
MAX_KERNEL, MAX_STRIDE = 15, 8  # conv geometry taken (Tiefenrausch's: kernels 1 and 3, strides 1 and 2, resize by 2)


class _WireError(ValueError):
    pass


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if i >= len(buf):
            raise _WireError("truncated varint")
        c = buf[i]
        i += 1
        result |= (c & 0x7F) << shift
        if c < 0x80:
            return result, i
        shift += 7
        if shift > 70:
            raise _WireError("varint too long")


def _fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """Yield (field number, wire type, value) for one message; value is int or bytes."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v, i = buf[i : i + 8], i + 8
        elif wt == 2:
            ln, i = _varint(buf, i)
            v, i = buf[i : i + ln], i + ln
        elif wt == 5:
            v, i = buf[i : i + 4], i + 4
        else:
            raise _WireError(f"unsupported wire type {wt}")
        if i > n:
            raise _WireError("truncated message")
        yield num, wt, v


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _packed_varints(buf: bytes) -> list[int]:
    out, i = [], 0
    while i < len(buf):
        v, i = _varint(buf, i)
        out.append(_signed64(v))
    return out


@dataclass
class Arg:
    name: str = ""
    f: float | None = None
    i: int | None = None
    s: bytes | None = None
    floats: list[float] = field(default_factory=list)
    ints: list[int] = field(default_factory=list)


@dataclass
class Op:
    type: str
    inputs: list[str]
    outputs: list[str]
    args: dict[str, Arg]

    def f(self, name: str) -> float:
        return float(self.args[name].f)  # type: ignore[arg-type]

    def i(self, name: str, default: int | None = None) -> int:
        a = self.args.get(name)
        if a is None or a.i is None:
            if default is None:
                raise KeyError(name)
            return default
        return int(a.i)

    def ints(self, name: str) -> list[int]:
        return list(self.args[name].ints)


def _parse_arg(buf: bytes) -> Arg:
    a = Arg()
    for num, wt, v in _fields(buf):
        if num == 1:
            a.name = bytes(v).decode()
        elif num == 2:
            a.f = struct.unpack("<f", v)[0] if wt == 5 else float(v)
        elif num == 3:
            a.i = _signed64(v) if wt == 0 else None
        elif num == 4:
            a.s = bytes(v)
        elif num == 5:
            if wt == 2:
                a.floats.extend(struct.unpack(f"<{len(v) // 4}f", v))
            else:
                a.floats.append(struct.unpack("<f", v)[0])
        elif num == 6:
            if wt == 2:
                a.ints.extend(_packed_varints(v))
            else:
                a.ints.append(_signed64(v))
    return a


def _parse_op(buf: bytes) -> Op:
    op = Op("", [], [], {})
    for num, _wt, v in _fields(buf):
        if num == 1:
            op.inputs.append(bytes(v).decode())
        elif num == 2:
            op.outputs.append(bytes(v).decode())
        elif num == 4:
            op.type = bytes(v).decode()
        elif num == 5:
            a = _parse_arg(v)
            op.args[a.name] = a
    return op


def parse_netdef(data: bytes) -> tuple[list[Op], list[str], list[str]]:
    """Decode a Caffe2 NetDef: (ops, external inputs, external outputs)."""
    ops, ext_in, ext_out = [], [], []
    for num, _wt, v in _fields(data):
        if num == 2:
            ops.append(_parse_op(v))
        elif num == 7:
            ext_in.append(bytes(v).decode())
        elif num == 8:
            ext_out.append(bytes(v).decode())
    return ops, ext_in, ext_out


# --------------------------------------------------------------------------------------------
# Graph: the decoded net as a list of steps with register slots
# --------------------------------------------------------------------------------------------


@dataclass
class Tensor8:
    """A quantized tensor from the init net (uint8 weights or int32 biases)."""

    values: np.ndarray
    scale: float
    zero_point: int


@dataclass
class Step:
    kind: str  # "quantize" | "conv" | "add" | "resize" | "dequantize"
    inputs: list[str]
    output: str
    scale: float = 1.0
    zero_point: int = 0
    weight: Tensor8 | None = None
    bias: Tensor8 | None = None
    stride: int = 1
    pad: int = 0
    groups: int = 1
    factor: int = 2


@dataclass
class Graph:
    input: str
    output: str
    steps: list[Step]
    in_scale: dict[str, float]


_FILLS = ("Int8GivenTensorFill", "Int8GivenIntTensorFill")


def _load_init(data: bytes) -> dict[str, Tensor8]:
    ops, _, _ = parse_netdef(data)
    blobs: dict[str, Tensor8] = {}
    for op in ops:
        if op.type not in _FILLS:
            raise _WireError(f"unexpected init op {op.type}")
        shape = op.ints("shape")
        vals = op.args["values"]
        if op.type == "Int8GivenTensorFill":
            arr = np.frombuffer(vals.s or b"", dtype=np.uint8)
        elif op.type == "Int8GivenIntTensorFill":
            arr = np.asarray(vals.ints, dtype=np.int64).astype(np.int32)
        else:
            raise _WireError(f"unexpected init op {op.type}")
        if arr.size != int(np.prod(shape)):
            raise _WireError(f"{op.outputs[0]}: {arr.size} values for shape {shape}")
        blobs[op.outputs[0]] = Tensor8(arr.reshape(shape).copy(), op.f("Y_scale"), op.i("Y_zero_point"))
    return blobs


def _quantization_problem(step: Step) -> str | None:
    """Why a step's quantization or weights cannot run, or None: the importer wrote models whose scale
    was 0, NaN or negative, whose zero point was 1000, whose weights had a dimension of 0, or whose
    weights were 200×200 under a declared kernel of 1 (past ``MAX_KERNEL``); each failed only when used
    (helper-111)."""

    def bad_scale(x: float) -> bool:
        return not (math.isfinite(x) and x > 0)

    if step.kind != "dequantize":
        if bad_scale(step.scale):
            return f"output scale {step.scale}"
        if not 0 <= step.zero_point <= 255:
            return f"output zero point {step.zero_point}, not 0-255"
    if step.kind != "conv":
        return None
    w, b = step.weight, step.bias
    if w.values.ndim != 4 or min(w.values.shape) < 1:
        return f"weights of shape {list(w.values.shape)}"
    out_c, kh, kw, _ = w.values.shape
    if kh != kw or not 1 <= kh <= MAX_KERNEL or step.pad >= kh:
        return f"weights of kernel {kh}x{kw}, pad {step.pad}"
    if out_c % step.groups:
        return f"{out_c} output channels in {step.groups} groups"
    if bad_scale(w.scale) or not 0 <= w.zero_point <= 255:
        return f"weight scale {w.scale}, zero point {w.zero_point}"
    if b.values.shape != (out_c,) or not (math.isfinite(b.scale) and b.scale >= 0):
        return f"bias of shape {list(b.values.shape)}, scale {b.scale}"
    return None


def _read_netdef(path: Path, parse):
    """``parse`` of the bytes of the NetDef file ``path``; a ModelError naming the file if unusable
    (an init net's first op that is not a weight is a predict net's: the two files swapped)."""
    try:
        if (size := path.stat().st_size) > MAX_NETDEF_BYTES:  # (read and decoded whole: 16 MB of empty
            # fields took 9 s and 339 MB, growing with the size, helper-111)
            raise ModelError(f"{size:,} bytes, more than a Tiefenrausch NetDef ({MAX_NETDEF_BYTES >> 20} MB at most)", path)
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"unreadable ({e.strerror or e})", path) from e
    if not data:
        raise ModelError("empty file (expected a Caffe2 NetDef)", path)
    try:
        return parse(data)
    except _WireError as e:
        if str(e).startswith("unexpected init op") and path.name == INIT_NET:
            raise ModelError(f"holds a network ({str(e).rsplit(' ', 1)[-1]} ops), not its weights: are "
                             f"{PREDICT_NET} and {INIT_NET} swapped?", path) from e
        raise ModelError(f"corrupt Caffe2 NetDef ({e})", path) from e
    except (struct.error, UnicodeDecodeError, KeyError, ValueError, TypeError, IndexError, OverflowError) as e:
        raise ModelError(f"corrupt Caffe2 NetDef ({type(e).__name__}: {e})", path) from e


MAX_OPS = 1000  # operators of a predict net the importer takes (Tiefenrausch: 193)


def read_graph(folder: str | Path) -> Graph:
    """Decode the two NetDef files in ``folder`` into a :class:`Graph`; ModelError if unusable."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError("not a folder with tiefenrausch.pb and tiefenrausch_init.pb", folder)
    for name in (PREDICT_NET, INIT_NET):
        if not (folder / name).is_file():
            raise ModelError(f"missing {name} (expected Tiefenrausch's Caffe2 files here)", folder)
    ops, ext_in, ext_out = _read_netdef(folder / PREDICT_NET, parse_netdef)
    if ops and all(op.type in _FILLS for op in ops):
        raise ModelError(f"holds weights (an init net), not the network: are {PREDICT_NET} and {INIT_NET} "
                         "swapped?", folder / PREDICT_NET)
    if not ops or not ext_out:
        raise ModelError("holds no network", folder / PREDICT_NET)
    if len(ops) > MAX_OPS:  # (scripting and saving grow faster than the graph: 20,000 ops ran for 15 minutes
        # deaf to Ctrl-C, and what 3,000 made no --model takes: more than 256 KiB of code; helper-105)
        raise ModelError(f"holds {len(ops):,} operators; photo3d imports networks of at most {MAX_OPS:,} "
                         "(Tiefenrausch has 193)", folder / PREDICT_NET)
    blobs = _read_netdef(folder / INIT_NET, _load_init)

    alias: dict[str, str] = {}  # layout-only ops
    qscale: dict[str, float] = {}
    steps: list[Step] = []

    def src(name: str) -> str:
        return alias.get(name, name)

    try:
        for op in ops:
            t = op.type
            if t in ("NCHW2NHWC", "NHWC2NCHW"):
                alias[op.outputs[0]] = src(op.inputs[0])
                continue
            out = op.outputs[0]
            if t == "Int8Quantize":
                s = Step("quantize", [src(op.inputs[0])], out, op.f("Y_scale"), op.i("Y_zero_point"))
            elif t == "Int8Conv":
                x, w, b = op.inputs
                k = op.ints("kernels") if "kernels" in op.args else [op.i("kernel")] * 2
                strides = op.ints("strides") if "strides" in op.args else [op.i("stride", 1)] * 2
                pads = op.ints("pads") if "pads" in op.args else [op.i("pad", 0)] * 4
                dil = op.ints("dilations") if "dilations" in op.args else [1, 1]
                if len(set(k)) != 1 or len(set(strides)) != 1 or len(set(pads)) != 1 or set(dil) != {1}:
                    raise _WireError(f"unsupported conv geometry in {out}")
                # (stride 0 killed the process with SIGFPE in the INT8 kernel, group 0 was a
                # ZeroDivisionError traceback: a security review, helper-77)
                if not (1 <= k[0] <= MAX_KERNEL and 1 <= strides[0] <= MAX_STRIDE and 0 <= pads[0] < k[0] and op.i("group", 1) >= 1):
                    raise _WireError(f"unsupported conv geometry in {out} (kernel {k[0]}, stride {strides[0]}, "
                                     f"pad {pads[0]}, group {op.i('group', 1)})")
                if op.args.get("order") and op.args["order"].s not in (b"NHWC",):
                    raise _WireError(f"unsupported order in {out}")
                s = Step(
                    "conv", [src(x)], out, op.f("Y_scale"), op.i("Y_zero_point"),
                    weight=blobs[w], bias=blobs[b], stride=strides[0], pad=pads[0], groups=op.i("group", 1),
                )
            elif t == "Int8Add":
                s = Step("add", [src(i) for i in op.inputs], out, op.f("Y_scale"), op.i("Y_zero_point"))
            elif t == "Int8ResizeNearest":
                ws, hs = op.f("width_scale"), op.f("height_scale")
                if ws != hs or ws != int(ws) or not 1 <= ws <= MAX_STRIDE:
                    raise _WireError(f"unsupported resize scale {ws}x{hs}")
                s = Step("resize", [src(op.inputs[0])], out, op.f("Y_scale"), op.i("Y_zero_point"), factor=int(ws))
            elif t == "Int8Dequantize":
                s = Step("dequantize", [src(op.inputs[0])], out)
            else:
                raise _WireError(f"unsupported op {t}")
            if s.kind not in ("dequantize",):
                qscale[out] = s.scale
            steps.append(s)
    except KeyError as e:
        raise ModelError(f"corrupt Caffe2 NetDef (missing blob or argument {e})", folder) from e
    except _WireError as e:
        raise ModelError(str(e), folder) from e
    except (ValueError, TypeError, IndexError, OverflowError) as e:  # an op with the wrong inputs, outputs or arguments
        raise ModelError(f"corrupt Caffe2 NetDef ({type(e).__name__}: {e})", folder / PREDICT_NET) from e
    if not steps:
        raise ModelError("holds no network (layout ops only)", folder / PREDICT_NET)
    for s in steps:
        if (why := _quantization_problem(s)) is not None:
            raise ModelError(f"unusable {s.kind} {s.output} ({why})", folder)
    net_in = ext_in[0] if ext_in else steps[0].inputs[0]
    return Graph(net_in, src(ext_out[0]), steps, qscale)


def _slots(graph: Graph) -> tuple[dict[str, int], int]:
    """Register allocation: map each blob to a slot, reusing slots of dead blobs."""
    last_use: dict[str, int] = {}
    for k, s in enumerate(graph.steps):
        for name in s.inputs:
            last_use[name] = k
    slot_of = {graph.input: 0}
    free: list[int] = []
    n = 1
    for k, s in enumerate(graph.steps):
        for name in set(s.inputs):
            if last_use.get(name) == k and name in slot_of:
                free.append(slot_of[name])
        if free:
            slot_of[s.output] = free.pop()
        else:
            slot_of[s.output] = n
            n += 1
    return slot_of, n


# --------------------------------------------------------------------------------------------
# PyTorch modules: one small module per step, all with the same (a, b) -> out signature
# --------------------------------------------------------------------------------------------


class _QOut(nn.Module):
    """A step that writes a new quantized tensor, with the step's scale and zero point."""

    def __init__(self, step: Step):
        super().__init__()
        self.scale = step.scale
        self.zero_point = step.zero_point


class _Quantize(_QOut):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.quantize_per_tensor(a, self.scale, self.zero_point, torch.quint8)


class _QAdd(_QOut):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.add(a, b, self.scale, self.zero_point)


class _Resize(nn.Module):
    def __init__(self, factor: int):
        super().__init__()
        self.factor = float(factor)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(a, scale_factor=self.factor, mode="nearest")


class _Dequantize(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a.dequantize()


def conv_params(step: Step) -> tuple[Any, torch.Tensor, dict[str, Any]]:
    """A conv step's uint8 weights (values OHWI, scale, zero point), its bias in float, and the
    conv module's arguments (the INT8 build here and the float build in ``train/`` share them)."""
    w8, b32 = step.weight, step.bias
    assert w8 is not None and b32 is not None
    out_c, kh, kw, in_g = w8.values.shape
    bias = torch.from_numpy(b32.values.astype(np.float64) * b32.scale).float()
    args = dict(in_channels=in_g * step.groups, out_channels=out_c, kernel_size=(kh, kw), stride=step.stride,
                padding=step.pad, groups=step.groups)
    return w8, bias, args


class _QConv(nn.Module):
    def __init__(self, step: Step):
        super().__init__()
        from torch.ao.nn.quantized import Conv2d as QConv2d

        w8, bias, args = conv_params(step)
        w = torch.from_numpy(w8.values.astype(np.int16) - 128).to(torch.int8).permute(0, 3, 1, 2).contiguous()
        qw = torch._make_per_tensor_quantized_tensor(w, w8.scale, w8.zero_point - 128)
        conv = QConv2d(**args)
        conv.set_weight_bias(qw, bias)
        conv.scale = float(step.scale)
        conv.zero_point = int(step.zero_point)
        self.conv = conv

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.conv(a)


class _Program(nn.Module):
    """Run the steps in order over a list of register slots (scriptable: the loop unrolls)."""

    def __init__(self, graph: Graph, modules: list[nn.Module]):
        super().__init__()
        slot_of, n = _slots(graph)
        self.n_slots = n
        self.steps = nn.ModuleList(modules)
        self.ins_a = [slot_of[s.inputs[0]] for s in graph.steps]
        self.ins_b = [slot_of[s.inputs[-1]] for s in graph.steps]
        self.outs = [slot_of[s.output] for s in graph.steps]
        self.result = slot_of[graph.output]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        regs = [x for _ in range(self.n_slots)]
        k = 0
        for step in self.steps:
            regs[self.outs[k]] = step(regs[self.ins_a[k]], regs[self.ins_b[k]])
            k += 1
        return regs[self.result]


# op kind -> module for the INT8 build (the float build for training: photo3d/train/tiefenrausch_float.py)
_INT8_OPS = {
    "quantize": _Quantize,
    "conv": _QConv,
    "add": _QAdd,
    "resize": lambda s: _Resize(s.factor),
}


def _modules(graph: Graph, ops: dict, other) -> list[nn.Module]:
    """One module per step; kinds not in ``ops`` (dequantize) become ``other()``."""
    return [ops[s.kind](s) if s.kind in ops else other() for s in graph.steps]


def build_int8_module(graph: Graph) -> nn.Module:
    """The quantized network as an eager nn.Module (QNNPACK packed weights)."""
    modelfile.set_qnnpack()
    mods = _modules(graph, _INT8_OPS, _Dequantize)
    return _Program(graph, mods).eval()


def metadata() -> dict:
    return {
        "name": "tiefenrausch",
        "input_size": modelfile.DEFAULT_INPUT_SIZE,  # the reference runtime's longer side
        "output": "log-disparity",
        "source": "Facebook Tiefenrausch (One Shot 3D Photography, Kopf et al. 2020), MIT licence",
    }


def import_tiefenrausch(folder: str | Path) -> torch.jit.ScriptModule:
    """Read the Caffe2 files in ``folder`` and return the INT8 network as TorchScript."""
    graph = read_graph(folder)
    try:  # a graph that decodes but does not fit together (unknown blobs, weights of the wrong shape)
        module = build_int8_module(graph)
        scripted = torch.jit.script(module)
    except (RuntimeError, ValueError, IndexError, KeyError, OverflowError) as e:  # (torch's shape errors, missing blobs)
        raise ModelError(f"corrupt Caffe2 NetDef: cannot rebuild the network ({type(e).__name__}: {e})", folder) from e
    return scripted


def import_tiefenrausch_file(folder: str | Path, out_path: str | Path) -> Path:
    """Convert ``folder`` and save the TorchScript model (with photo3d.json metadata) atomically."""
    return modelfile.save_model(import_tiefenrausch(folder), out_path, metadata())


def is_tiefenrausch_folder(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / PREDICT_NET).is_file() and (p / INIT_NET).is_file()

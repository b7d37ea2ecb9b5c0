"""Tiefenrausch with dequantized float weights: the same graph as the INT8 import
(:mod:`photo3d.depth.tiefenrausch`), differentiable, for distillation on a GPU.

Each INT8 step becomes its float counterpart: convolutions with dequantized weights, adds, and
(de)quantization as clamps to the int8 output range (zero point 0 = the implicit ReLU).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

# the INT8 import's graph reader and step machinery, shared so both builds run the same program
from photo3d.depth.tiefenrausch import Graph, Step, _modules, _Program, _Resize, conv_params, read_graph


class _FConv(nn.Module):
    """Float conv with dequantized weights; clamps to the int8 output range (zero point 0 = ReLU)."""

    def __init__(self, step: Step):
        super().__init__()
        w8, bias, args = conv_params(step)
        w = (w8.values.astype(np.float32) - w8.zero_point) * w8.scale
        self.conv = nn.Conv2d(**args)
        with torch.no_grad():
            self.conv.weight.copy_(torch.from_numpy(w).permute(0, 3, 1, 2))
            self.conv.bias.copy_(bias)
        self.lo = float(-step.zero_point * step.scale)
        self.hi = float((255 - step.zero_point) * step.scale)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.conv(a), self.lo, self.hi)


class _FQuantize(nn.Module):
    """Float stand-in for Int8Quantize: clamp to the range the int8 output can represent."""

    def __init__(self, scale: float, zero_point: int):
        super().__init__()
        self.lo = float(-zero_point * scale)
        self.hi = float((255 - zero_point) * scale)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.clamp(a, self.lo, self.hi)


class _FAdd(_FQuantize):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.clamp(a + b, self.lo, self.hi)


class _Identity(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a


# op kind -> module (the INT8 runtime build: photo3d.depth.tiefenrausch._INT8_OPS)
_FLOAT_OPS = {
    "quantize": lambda s: _FQuantize(s.scale, s.zero_point),
    "conv": _FConv,
    "add": lambda s: _FAdd(s.scale, s.zero_point),
    "resize": lambda s: _Resize(s.factor),
}


class TiefenrauschFloat(nn.Module):
    """Tiefenrausch with dequantized float weights: (N,3,H,W) RGB [0,1] → (N,1,H,W) log-disparity."""

    def __init__(self, graph: Graph):
        super().__init__()
        self.program = _Program(graph, _modules(graph, _FLOAT_OPS, _Identity))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)


def teacher_float_module(folder: str | Path) -> nn.Module:
    """The Tiefenrausch network with dequantized float weights, for distillation."""
    return TiefenrauschFloat(read_graph(folder)).eval()

"""Feature hints (FitNets, Romero et al. 2015): the student's encoder learns Tiefenrausch's features.

The two teachers give one channel per pixel; Tiefenrausch's encoder holds far more about the scene
(what is figure, what is ground) in its residual stream. With ``fit --w-hint``, the student's
encoder outputs at 1/16 and 1/32 each go through a 1x1 convolution (training only: not part of the
shipped network) that must predict the teacher's residual stream at the same scale, computed by the
INT8 teacher on the very batch the student sees (so every augmentation stays aligned). The
teacher's encoder up to 1/32 costs about 0.09 s per 384x288 photo on two threads.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# Tiefenrausch's residual stream at the end of its 1/16 stage (64 channels) and of its 1/32 stage (96)
TEACHER_BLOBS = ("333_int8", "379_int8")


class TeacherEncoder:
    """Tiefenrausch (INT8) run up to its 1/32 stage: (N,3,H,W) RGB [0,1] → [(N,64,H/16,W/16), (N,96,H/32,W/32)]."""

    def __init__(self, folder: str | Path):
        from photo3d.depth.tiefenrausch import build_int8_module, read_graph

        graph = read_graph(folder)
        self.program = build_int8_module(graph)
        outputs = [s.output for s in graph.steps]
        self.at = [outputs.index(b) for b in TEACHER_BLOBS]
        self.channels = [int(graph.steps[outputs.index(b) - 1].weight.values.shape[0]) for b in TEACHER_BLOBS]

    @torch.no_grad()
    def __call__(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        p = self.program
        regs = [rgb.contiguous().cpu() for _ in range(p.n_slots)]
        feats: dict[int, torch.Tensor] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized-tensor deprecation notices (torch 2.13)
            for k in range(max(self.at) + 1):
                regs[p.outs[k]] = p.steps[k](regs[p.ins_a[k]], regs[p.ins_b[k]])
                if k in self.at:
                    feats[k] = regs[p.outs[k]].dequantize()
        return [feats[k].to(rgb.device) for k in self.at]


class StudentHints(nn.Module):
    """Captures the student's encoder outputs at 1/16 and 1/32 and projects them to the teacher's channels."""

    LEVELS = (3, 4)  # DepthNet.encoder indices: outputs at 1/16 and 1/32

    def __init__(self, model: nn.Module, teacher_channels: list[int]):
        super().__init__()
        widths = [model.cfg.enc_widths[i] for i in self.LEVELS]
        self.proj = nn.ModuleList(nn.Conv2d(w, c, 1) for w, c in zip(widths, teacher_channels))
        self.captured: list[torch.Tensor | None] = [None] * len(self.LEVELS)
        for j, i in enumerate(self.LEVELS):
            model.encoder[i].register_forward_hook(self._keep(j))

    def _keep(self, j: int):
        def hook(module, inputs, output):
            self.captured[j] = output
        return hook

    def loss(self, teacher: list[torch.Tensor], detach_student: bool = False) -> torch.Tensor:
        """Mean squared error between the projected student features and the teacher's, each teacher
        map divided by its own RMS (so both scales weigh alike and the 1x1 projection learns the rest)."""
        total = 0.0
        for proj, s, t in zip(self.proj, self.captured, teacher):
            s = s.detach() if detach_student else s
            p = proj(s.float())
            if p.shape[-2:] != t.shape[-2:]:
                p = F.interpolate(p, size=t.shape[-2:], mode="bilinear", align_corners=False)
            t = t / t.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp(min=1e-6)
            total = total + (p - t).pow(2).mean()
        return total / len(self.proj)

"""Depth teachers for distillation, and how their labels are combined.

Every teacher maps an RGB uint8 image (H, W multiples of 32) to a log-disparity map (H, W) float32
(larger = nearer; arbitrary scale and shift).

- :class:`TiefenrauschTeacher` — Facebook's INT8 net (MIT), imported with ``photo3d model import``'s
  code: good global layout (streets, rooms, landscapes), soft object boundaries.
- :class:`FastDepthTeacher` — FastDepth (MIT, ONNX via onnxruntime, a training-only dependency):
  sharp, correctly ordered object boundaries, weak global layout. Run at ``FD_SIZE`` on the longer
  side with horizontal-flip averaging, resized to the caller's grid.
- :class:`PriorTeacher` — a stand-in ("lower rows nearer" + image structure) for tests.

:func:`combine` is the training label: both teachers' log-disparities, each normalised to zero
median and unit mean absolute deviation, split by frequency — the low band (layout) from
Tiefenrausch, the high band (object boundaries) the mean of both teachers. Chosen with
``benchmarks/teacher_combination.py`` on the dev scenes and on hold-out contact sheets.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

FD_SIZE = 320  # FastDepth's input (longer side): its dev-scene sweet spot between layout and edges
PRIOR_SCALE, PRIOR_ZERO = 0.0187, 128
LOW_SIGMA = 0.08  # the frequency split: Gaussian sigma as a share of the longer side


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


class PriorTeacher:
    """Stand-in teacher: lower rows nearer, plus blurred luminance (no real depth knowledge)."""

    name = "prior"
    scale, zero_point = PRIOR_SCALE, PRIOR_ZERO

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        ramp = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None].repeat(w, 1)
        lum = cv2.GaussianBlur(rgb.mean(2).astype(np.float32) / 255.0, (0, 0), 3)
        return ramp + 0.5 * (lum - lum.mean())


class TiefenrauschTeacher:
    name = "tiefenrausch-int8"

    def __init__(self, folder: Path):
        from photo3d.depth.tiefenrausch import import_tiefenrausch, read_graph

        graph = read_graph(folder)
        last = [s for s in graph.steps if s.kind == "conv"][-1]
        self.scale, self.zero_point = float(last.scale), int(last.zero_point)
        self.net = import_tiefenrausch(folder)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.net(to_tensor(rgb))[0, 0].numpy()


class FastDepthTeacher:
    """FastDepth ONNX (metric depth in metres) → log-disparity; input any multiple of 32."""

    name = "fastdepth"

    def __init__(self, onnx_file: Path, size: int = FD_SIZE, flip: bool = True, threads: int = 1):
        import onnx
        import onnxruntime as ort

        model = onnx.load(str(onnx_file))
        for v in list(model.graph.input[:1]) + list(model.graph.output):  # H and W symbolic
            dims = v.type.tensor_type.shape.dim
            dims[2].ClearField("dim_value")
            dims[2].dim_param = "H"
            dims[3].ClearField("dim_value")
            dims[3].dim_param = "W"
        del model.graph.value_info[:]
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self.sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        self.inp = model.graph.input[0].name
        self.size, self.flip = size, flip

    def raw(self, rgb: np.ndarray) -> np.ndarray:
        """Depth in metres at the input's own size (H, W multiples of 32)."""
        x = (rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        if self.flip:
            x = np.concatenate([x, x[..., ::-1]], 0)
            y = np.concatenate([self.sess.run(None, {self.inp: x[i:i + 1].copy()})[0] for i in range(2)], 0)
            return 0.5 * (y[0, 0] + y[1, 0, :, ::-1])
        return self.sess.run(None, {self.inp: x})[0][0, 0]

    def on_network_grid(self, rgb: np.ndarray, input_size: int) -> np.ndarray:
        """Log-disparity on the grid the runtime's network sees for a photo of any size."""
        from photo3d.depth.runtime import preprocess

        return self(preprocess(rgb, input_size)[0].permute(1, 2, 0).mul(255).round().byte().numpy())

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        s = self.size / max(h, w)
        nh, nw = max(32, round(h * s / 32) * 32), max(32, round(w * s / 32) * 32)
        small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
        logd = -np.log(np.maximum(self.raw(small), 1e-3))
        return cv2.resize(logd.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


def normalize(logd: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Zero median, unit mean absolute deviation (over ``mask`` when given)."""
    v = logd[mask] if mask is not None else logd.ravel()
    med = np.median(v)
    mad = np.mean(np.abs(v - med)) + 1e-6
    return ((logd - med) / mad).astype(np.float32)


def lowpass(x: np.ndarray, sigma_share: float = LOW_SIGMA) -> np.ndarray:
    sigma = sigma_share * max(x.shape[:2])
    return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def on_mirror(run, rgb: np.ndarray) -> np.ndarray:
    """``run``'s map (H, W) of the mirror image of ``rgb``, mirrored back onto the photo."""
    return np.ascontiguousarray(run(np.ascontiguousarray(rgb[:, ::-1]))[:, ::-1])


def mirror_average(tr: np.ndarray, tr_mirrored: np.ndarray) -> np.ndarray:
    """Tiefenrausch's log-disparity averaged with its output on the mirror image (mirrored back).

    The teacher is not symmetric: on the hold-out photos its map of the mirror image, mirrored back,
    agrees with its map of the photo at a median r of only 0.90. A student trained on mirrored
    photos cannot learn that part, so the label (since session 18) is the average of the two, as
    FastDepth's already was; on the dev scenes the label scores the same either way
    (``benchmarks/teacher_combination.py --tr-flip``)."""
    return 0.5 * (tr + tr_mirrored)


def combine(tr: np.ndarray, fd: np.ndarray, mode: str = "split", sigma: float = LOW_SIGMA) -> np.ndarray:
    """The training label from both teachers' log-disparities (same grid), in Tiefenrausch's
    log-disparity units (its median and mean absolute deviation), so disparity keeps its range.

    ``mean``: mean of the normalised maps; ``split``: low band from Tiefenrausch, high band the
    mean of both; ``split-fd``: high band from FastDepth alone; ``tr`` / ``fd``: one teacher."""
    a, b = normalize(tr), normalize(fd)
    if mode == "tr":
        z = a
    elif mode == "fd":
        z = b
    elif mode == "mean":
        z = 0.5 * (a + b)
    elif mode == "split":
        low = lowpass(a, sigma)
        z = low + 0.5 * ((a - low) + (b - lowpass(b, sigma)))
    elif mode == "split-fd":
        z = lowpass(a, sigma) + (b - lowpass(b, sigma))
    else:
        raise ValueError(f"unknown combination {mode!r}")
    med = np.median(tr)
    return (z * (np.mean(np.abs(tr - med)) + 1e-6) + med).astype(np.float32)

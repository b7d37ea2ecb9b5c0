"""Depth runtime: load a TorchScript depth model once per process and predict disparity.

What a model file is (the contract, its metadata, the bundled model and its checksum) is
:mod:`photo3d.depth.modelfile`; a Tiefenrausch folder is imported by
:mod:`photo3d.depth.tiefenrausch`.

:meth:`DepthModel.predict` returns normalized disparity in [0, 1] (LARGER = NEARER) at the
photo's full resolution, upsampled edge-aware with a colour guided filter
(:mod:`photo3d.depth.upsample`), or at the network's resolution with ``raw=True``.
"""

from __future__ import annotations

import contextlib
import json
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import ModelError, describe
from ..io import input_file
from . import modelfile, tiefenrausch
from .upsample import NETWORK_RADIUS, bilinear_upsample, guided_upsample

NORM_PERCENTILES = (0.1, 99.9)  # robust range for [0, 1] normalization

_cache: dict[str, "DepthModel"] = {}
_lock = threading.Lock()


@dataclass
class DepthResult:
    disparity: np.ndarray  # float32 H×W in [0, 1], larger = nearer
    disparity_min: float  # network disparity (exp of its output) mapped to 0 …
    disparity_max: float  # … and to 1
    network_size: tuple[int, int]  # (width, height) the network ran at

    def flat_warning(self, model_name: str) -> list[str]:
        """A warning line (in a list, empty if none) when the model gave one depth nearly everywhere:
        the normalized map is then all 0, and a 3D photo of it flat."""
        if self.disparity_max > self.disparity_min:
            return []
        return [f"the depth model {model_name} gave the same depth at nearly every pixel: the depth is flat "
                "(a photo of one even colour, or a broken model)"]


MIN_INPUT_SIZE, MAX_INPUT_SIZE = 32, 8192  # a model's input_size (metadata), pixels


def network_size(width: int, height: int, input_size: int) -> tuple[int, int]:
    """(w, h) for the network: longer side ``input_size``, each side floored to a multiple of 32.

    A panorama (more than 3:1) keeps its shorter side at a third of ``input_size`` (within the
    pixels of the 4:3 frame): at 384 px a 4000 x 600 photo went in at 384 x 32, a strip too thin
    for the network to see anything but texture, stamped into the depth by the guided upsampling."""
    s = input_size / max(width, height)
    if min(width, height) * s < input_size / 3:
        area = input_size * input_size * 3 / 4
        s = min(input_size / 3 / min(width, height), (area / (width * height)) ** 0.5)
    w = max(32, int(width * s) // 32 * 32)
    h = max(32, int(height * s) // 32 * 32)
    most = input_size * input_size  # a strip whose short side was rounded up to 32 (65000 x 2 went in at 59936 x 32)
    if w * h > most:
        if w > h:
            w = max(32, most // h // 32 * 32)
        else:
            h = max(32, most // w // 32 * 32)
    return w, h


TTA = ("none", "flip", "flip-small")  # a model's operating points (metadata "tta"; absent: "none")
SMALL_SHARE = 5 / 6  # "flip-small": the mirrored pass's input, as a share of the first's (384 → 320 px)


def small_pass_size(h: int, w: int, height: int | None = None, width: int | None = None,
                    input_size: int | None = None) -> tuple[int, int]:
    """(h, w) of "flip-small"'s second pass after a first pass of h×w: the photo (``height`` ×
    ``width``; absent: h×w) laid out as :func:`network_size` lays it out for ``SMALL_SHARE`` of the
    model's ``input_size`` (absent: the first pass's longer side), each side at most the first pass's.
    The photo's own aspect, not the first grid's scaled (a 448×298 photo at 384×224 → 320×192, not
    320×160): the point was chosen so (session 21), and the scaled grid lost 0.0013 of the hold-out
    agreement (sessions 22-24). A panorama's first pass is longer than ``input_size``: its second is
    laid out for 320 px as any photo's (4000×600: 704×96 after 832×128)."""
    w2, h2 = network_size(width or w, height or h, round((input_size or max(h, w)) * SMALL_SHARE))
    return min(h2, h), min(w2, w)


def with_tta(run, x: torch.Tensor, y: torch.Tensor, tta: str | None, rgb: np.ndarray | None = None,
             second=None, input_size: int | None = None) -> torch.Tensor:
    """The network's float output ``y = run(x)`` at the model's operating point: with ``tta``
    "flip", averaged with the output for the mirrored input (mirrored back); with "flip-small",
    the mirrored photo (``rgb``, the photo ``x`` was made from, else ``x``) at the size
    :func:`small_pass_size` gives for the model's ``input_size``, its output mirrored back and brought
    to ``y``'s grid (bilinear) before averaging: two views that differ in scale as well as in side
    agree with the teachers better than two mirror images, for 0.65 of the time of a second full pass.
    ``second``: the network that runs the second pass (a pair's ``second_pass``; None: ``run``)."""
    if tta is not None and tta not in TTA:
        raise ValueError(f"tta must be one of {', '.join(TTA)}, not {tta!r}")
    y = y.dequantize() if y.is_quantized else y
    if tta in ("flip", "flip-small"):
        x2 = x.flip(-1)
        if tta == "flip-small":
            h2, w2 = small_pass_size(*x.shape[2:], *(rgb.shape[:2] if rgb is not None else (None, None)), input_size)
            src, scale = (rgb[:, ::-1], 255.0) if rgb is not None else (x2[0].permute(1, 2, 0).numpy(), 1.0)
            x2 = _network_input(src, w2, h2, scale)
        y2 = (second or run)(x2)
        y2 = (y2.dequantize() if y2.is_quantized else y2).flip(-1)
        if y2.shape[2:] != y.shape[2:]:
            y2 = torch.nn.functional.interpolate(y2.float(), size=tuple(y.shape[2:]), mode="bilinear", align_corners=False)
        y = 0.5 * (y + y2)
    return y


def operating_point(module, meta: dict, rgb: np.ndarray, input_size: int) -> torch.Tensor:
    """``module``'s float output for the photo ``rgb`` at the operating point of its metadata ``meta``
    (a pair's second network running the second pass), as ``photo3d depth`` runs it, without
    :class:`DepthModel`'s contract checks: for the hold-out evaluation and the depth sheet."""
    x = preprocess(rgb, input_size)
    second = module.second_pass if meta.get("second_net") is True else None
    return with_tta(module, x, module(x), meta.get("tta"), rgb, second, input_size)


def preprocess(rgb: np.ndarray, input_size: int) -> torch.Tensor:
    """The reference preprocessing: INTER_AREA resize to the network size, /255, NCHW float32."""
    return _network_input(rgb, *network_size(rgb.shape[1], rgb.shape[0], input_size))


def _network_input(img: np.ndarray, w: int, h: int, scale: float = 255.0) -> torch.Tensor:
    """An H×W×3 image resized to w×h (INTER_AREA when shrinking), divided by ``scale``, as 1×3×h×w float32."""
    H, W = img.shape[:2]
    interp = cv2.INTER_AREA if w <= W and h <= H else cv2.INTER_LINEAR
    small = cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=interp)
    x = torch.from_numpy(small).permute(2, 0, 1).float().div_(scale)
    return x.unsqueeze(0).contiguous()


def normalize(disp: np.ndarray, lo: float | None = None, hi: float | None = None) -> tuple[np.ndarray, float, float]:
    """Map disparity to [0, 1] with robust percentiles (or the given lo/hi)."""
    if lo is None or hi is None:
        flat = disp.reshape(-1)
        step = max(1, flat.size // 2_000_000)  # percentiles of a regular subsample on huge maps
        lo, hi = (float(v) for v in np.percentile(flat[::step], NORM_PERCENTILES))
    if not hi > lo:
        return np.zeros_like(disp, dtype=np.float32), lo, hi
    out = disp.astype(np.float32, copy=True)
    out -= np.float32(lo)
    out *= np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    return out, lo, hi


class DepthModel:
    """A loaded depth network plus its metadata."""

    def __init__(self, module: torch.nn.Module, meta: dict | None = None, path: Path | None = None):
        self.module = module
        self.meta = dict(meta or {})
        self.path = path
        size = self.meta.get("input_size", modelfile.DEFAULT_INPUT_SIZE)
        if isinstance(size, bool) or not isinstance(size, int) or not MIN_INPUT_SIZE <= size <= MAX_INPUT_SIZE:
            raise ModelError(f"bad {modelfile.METADATA_FILE} metadata: input_size must be a whole number of "
                             f"pixels from {MIN_INPUT_SIZE} to {MAX_INPUT_SIZE}, not {json.dumps(size)[:40]}", path)
        self.input_size = size
        tta = self.meta.get("tta")
        if tta is not None and tta not in TTA:  # (a typo would change the operating point without a word)
            raise ModelError(f"bad {modelfile.METADATA_FILE} metadata: tta must be one of {', '.join(TTA)}, "
                             f"not {json.dumps(tta)[:40]}", path)
        self.name = str(self.meta.get("name", path.stem if path else "model"))
        pair = self.meta.get("second_net", False)
        why = None
        if not isinstance(pair, bool):
            why = f"second_net must be true or false, not {json.dumps(pair)[:40]}"
        elif pair and tta not in ("flip", "flip-small"):
            why = "second_net is true, but tta is not flip or flip-small (the second network runs the mirrored pass)"
        elif pair and not modelfile.is_pair(module):
            why = "second_net is true, but the file holds one network (no second_pass)"
        if why:
            raise ModelError(f"bad {modelfile.METADATA_FILE} metadata: {why}", path)
        self._second = pair
        self._run_lock = threading.Lock()  # one inference at a time (QNNPACK packs lazily)
        self._warm = False

    def _run(self, x: torch.Tensor, locked: bool = False, second: bool = False):
        modelfile.set_qnnpack()
        # no JIT graph optimization: the profiling executor instruments the first call and
        # re-optimizes on the second (~0.4 s of CPU each) for the same quantized kernels in the
        # end; a net run once or a few times per process never earns that back (thread-local)
        with contextlib.nullcontext() if locked else self._run_lock, torch.inference_mode(), \
                torch.jit.optimized_execution(False):
            y = self.module.second_pass(x) if second else self.module(x)
            self._warm = True
            return y

    def warmup(self) -> None:
        """Run the network once on a small input, on one thread.  The first call of a QNNPACK
        INT8 model packs its weights: measured on the 2-core dev box with Tiefenrausch, a first
        384 px inference costs 1.9 s of CPU on two threads, while this warm-up costs 0.04 s and
        the following inference its usual 0.65 s.  A caller with other work to do first
        (decoding the photo) runs it in a background thread."""
        if self._warm:
            return
        threads = torch.get_num_threads()
        gen = torch.Generator().manual_seed(0)
        with contextlib.suppress(Exception):  # a broken model says so on the real call
            with self._run_lock:  # nobody else may run (or change the thread count) meanwhile
                torch.set_num_threads(1)
                try:
                    for second in (False, True) if self._second else (False,):
                        self._run(torch.rand(1, 3, 64, 64, generator=gen), locked=True, second=second)
                finally:
                    torch.set_num_threads(threads)

    def _pass(self, x: torch.Tensor, second: bool = False) -> torch.Tensor:
        """One pass of the network (of a pair's ``second``), held to the contract: (1, 1, h, w) for (1, 3, h, w)."""
        which = "depth model" + ("'s second network" if second else "")
        try:
            y = self._run(x, second=second)
        except Exception as e:  # a model that does not follow the contract
            raise ModelError(f"{which} failed to run on a {tuple(x.shape)} RGB image ({describe(e)})", self.path) from e
        if not isinstance(y, torch.Tensor) or y.dim() != 4 or tuple(y.shape[:2]) != (1, 1) or tuple(y.shape[2:]) != tuple(x.shape[2:]):
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ModelError(f"{which} returned {shape}, expected (1, 1, {x.shape[2]}, {x.shape[3]}) log-disparity", self.path)
        return y

    def predict_log(self, rgb: np.ndarray, tta: str | None = None) -> np.ndarray:
        """The network's log-disparity at its own resolution (float32 h×w).  ``tta``: "none" (one
        pass), "flip" or "flip-small" (see :func:`with_tta`); None: the model's operating point (its metadata)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an H×W×3 uint8 image, got {rgb.dtype} {rgb.shape}")
        x = preprocess(rgb, self.input_size)
        y = with_tta(self._pass, x, self._pass(x), self.meta.get("tta") if tta is None else tta, rgb,
                     (lambda t: self._pass(t, second=True)) if self._second else None, self.input_size)
        y = y[0, 0].float().numpy().astype(np.float32, copy=False)
        if not np.isfinite(y).all():
            raise ModelError("depth model output holds NaN or infinite values (a broken model)", self.path)
        return y

    def predict_result(self, rgb: np.ndarray, raw: bool = False, upsample: str = "guided",
                       radius: int = NETWORK_RADIUS, tta: str | None = None) -> DepthResult:
        """``upsample``: "guided" (edge-aware, default; its window ``radius`` in network pixels) or
        "bilinear" (the plain baseline).  ``tta``: as :meth:`predict_log`."""
        log = self.predict_log(rgb, tta)
        size = (log.shape[1], log.shape[0])
        if not raw:
            if upsample == "guided":
                log = guided_upsample(log, rgb, radius=radius)
            elif upsample == "bilinear":
                log = bilinear_upsample(log, (rgb.shape[1], rgb.shape[0]))
            else:
                raise ValueError(f"unknown upsampling {upsample!r}")
        log = log.astype(np.float32, copy=False)
        if float(log.max()) > 80.0 or float(log.min()) < -80.0:  # exp() would over- or underflow float32
            raise ModelError("depth model output is out of range for log-disparity (|value| > 80)", self.path)
        disp = np.exp(log, out=log)  # in place: full-resolution maps can be large
        norm, lo, hi = normalize(disp)
        del disp, log
        return DepthResult(norm, lo, hi, size)

    def predict(self, rgb: np.ndarray, raw: bool = False) -> np.ndarray:
        """Normalized disparity in [0, 1] (larger = nearer), full resolution unless ``raw``."""
        return self.predict_result(rgb, raw).disparity


def _load_uncached(path: Path | None) -> DepthModel:
    if path is None:
        path = modelfile.default_model_path()
    path = Path(path)
    st = input_file(path, "a depth model", "no such model file or folder", ModelError, folder_ok=True)
    if stat.S_ISDIR(st.st_mode):
        if not tiefenrausch.is_tiefenrausch_folder(path):
            raise ModelError(
                "folder holds no tiefenrausch.pb + tiefenrausch_init.pb; pass a TorchScript .pt file or the Tiefenrausch folder",
                path,
            )
        module = tiefenrausch.import_tiefenrausch(path)
        modelfile.check_graphs(module, path)
        return DepthModel(module, tiefenrausch.metadata(), path)
    module, meta = modelfile.read_model(path)
    return DepthModel(module, meta, path)


def load_model(path: str | Path | None = None) -> DepthModel:
    """Load (once per process and path) a TorchScript file, a Tiefenrausch folder, or the default."""
    key = "<default>" if path is None else str(Path(path).resolve())
    with _lock:
        model = _cache.get(key)
        if model is None:
            model = _load_uncached(None if path is None else Path(path))
            _cache[key] = model
        return model


def clear_cache() -> None:
    with _lock:
        _cache.clear()

"""Training data: a packed bundle held in memory, and batched augmentation on tensors.

Geometry (multi-scale crops, flips, small rotations) is one affine sampling grid per sample
(``F.affine_grid`` / ``F.grid_sample``) applied to photo, teacher target and validity mask alike.
Photometry runs batched on the device: colour jitter, gamma, blur, noise, and old-photo looks
(grayscale, sepia, fading, film grain, scan borders). JPEG artefacts come from the data-prep
stage: a share of the photos is also held re-encoded at low JPEG quality (cv2).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def _decoded(code: np.ndarray, item: dict) -> np.ndarray:
    """A bundle entry's 8-bit teacher codes as log-disparity (value = (code − zero_point) × scale)."""
    return (code.astype(np.float32) - item["zero_point"]) * item["scale"]


def bundle_items(folder: Path) -> list[dict]:
    """The entries of a packed bundle (all its shards and zoomed views), by name."""
    folder = Path(folder)
    indexes = sorted(folder.glob("index.json")) + sorted(folder.glob("index.*.json"))  # shards, zoomed views
    return sorted((it for f in indexes for it in json.loads(f.read_text())["items"]), key=lambda it: it["name"])


def bundle_label(folder: Path, item: dict, label: str = "split", tr_flip: bool = False) -> np.ndarray | None:
    """A bundle entry's training label (log-disparity, H x W): its teachers combined as ``label``
    says (:func:`photo3d.train.teachers.combine`; a one-teacher entry: its teacher), Tiefenrausch's
    map mirror-averaged with ``tr_flip``; None where a file is missing or of another size."""
    from photo3d.train.teachers import combine, mirror_average

    folder = Path(folder)
    code = cv2.imread(str(folder / item["target"]), cv2.IMREAD_UNCHANGED)
    if code is None:
        return None
    logd = _decoded(code, item)
    if tr_flip:
        if "target_flip" not in item:
            raise ValueError(f"{folder}: {item['name']} has no mirrored label (pack the bundle again to add them)")
        code_f = cv2.imread(str(folder / item["target_flip"]), cv2.IMREAD_UNCHANGED)
        if code_f is None or code_f.shape != code.shape:
            return None
        logd = mirror_average(logd, _decoded(code_f, item))
    if "fd" in item and label != "tr":
        c16 = cv2.imread(str(folder / item["fd"]), cv2.IMREAD_UNCHANGED)
        if c16 is None or c16.shape != logd.shape:
            return None
        fd = item["fd_lo"] + c16.astype(np.float32) / 65535.0 * (item["fd_hi"] - item["fd_lo"])
        logd = combine(logd, fd, label)
    return logd


class Bundle:
    """All photos (uint8 3xHxW) and teacher log-disparities (float32 1xHxW) of a packed bundle."""

    def __init__(self, folder: Path, jpeg_share: float = 0.3, seed: int = 0, limit: int = 0, label: str = "split",
                 tr_flip: bool = False):
        """``label``: how the two teachers are combined where the bundle holds both
        (:func:`photo3d.train.teachers.combine`); a one-teacher bundle uses its teacher as is.
        ``tr_flip``: Tiefenrausch's map is averaged with its map of the mirror image
        (:func:`photo3d.train.teachers.mirror_average`; the bundle must hold those, ``target_flip``)."""
        folder = Path(folder)
        items = bundle_items(folder)
        items = items[:limit] if limit else items
        rng = np.random.default_rng(seed)
        self.names: list[str] = []
        self.images: list[torch.Tensor] = []
        self.degraded: list[torch.Tensor | None] = []
        self.targets: list[torch.Tensor] = []
        for it in items:
            bgr = cv2.imread(str(folder / it["image"]), cv2.IMREAD_COLOR)
            logd = bundle_label(folder, it, label, tr_flip)
            if bgr is None or logd is None or bgr.shape[:2] != logd.shape:
                continue
            self.names.append(it["name"])
            self.images.append(torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1).contiguous())
            self.targets.append(torch.from_numpy(logd)[None])
            deg = None
            if rng.random() < jpeg_share:
                q = int(rng.integers(15, 50))
                ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, q])
                if ok:
                    d = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
                    deg = torch.from_numpy(np.ascontiguousarray(d)).permute(2, 0, 1).contiguous()
            self.degraded.append(deg)
        if not self.images:
            raise ValueError(f"{folder}: bundle holds no usable photos")

    def __len__(self) -> int:
        return len(self.images)

    def to(self, device: torch.device) -> "Bundle":
        self.images = [t.to(device) for t in self.images]
        self.degraded = [None if t is None else t.to(device) for t in self.degraded]
        self.targets = [t.to(device) for t in self.targets]
        return self


@dataclass
class AugmentConfig:
    size: int = 160  # output pixels per side (square); other shapes keep about the same area
    min_crop: float = 0.45  # smallest crop side as a share of the photo's shorter side
    max_crop: float = 1.0  # largest
    p_rotate: float = 0.3
    max_degrees: float = 6.0
    p_flip: float = 0.5  # horizontal flip (the teachers are not flip-equivariant: r 0.94 median)
    aspect_jitter: float = 0.3  # crop aspect varies by exp(±jitter / 2)
    p_jpeg: float = 0.5  # use the low-quality JPEG copy where one exists
    p_gray: float = 0.12
    p_sepia: float = 0.08
    p_fade: float = 0.12
    p_blur: float = 0.2
    p_noise: float = 0.3
    p_grain: float = 0.1
    p_border: float = 0.05


def crop_theta(h: int, w: int, out_h: int, out_w: int, g: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    """A 2x3 affine (output → input normalized coords): random scale crop, position, h-flip, rotation."""
    r = lambda: float(torch.rand((), generator=g))  # noqa: E731
    aspect = out_w / out_h * math.exp((r() - 0.5) * cfg.aspect_jitter)  # crop aspect jitter
    side = (cfg.min_crop + (cfg.max_crop - cfg.min_crop) * r()) * min(h, w)
    cw, ch = side * math.sqrt(aspect), side / math.sqrt(aspect)
    s = min(1.0, w / cw, h / ch)  # a crop never exceeds the photo
    cw, ch = cw * s, ch * s
    angle = math.radians((2 * r() - 1) * cfg.max_degrees) if r() < cfg.p_rotate else 0.0
    if angle:  # shrink so the rotated crop stays inside
        c, sn = abs(math.cos(angle)), abs(math.sin(angle))
        k = min(1.0, w / (cw * c + ch * sn), h / (cw * sn + ch * c))
        cw, ch = cw * k, ch * k
        bw, bh = cw * c + ch * sn, cw * sn + ch * c
    else:
        bw, bh = cw, ch
    cx = bw / 2 + (w - bw) * r()
    cy = bh / 2 + (h - bh) * r()
    flip = -1.0 if r() < cfg.p_flip else 1.0
    ca, sa = math.cos(angle), math.sin(angle)
    return torch.tensor([
        [flip * ca * cw / w, -sa * ch / w, 2 * cx / w - 1],
        [flip * sa * cw / h, ca * ch / h, 2 * cy / h - 1],
    ], dtype=torch.float32)


def _gauss_kernel(sigma: float, device) -> torch.Tensor:
    rad = max(1, int(math.ceil(2.5 * sigma)))
    x = torch.arange(-rad, rad + 1, dtype=torch.float32, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N,C,H,W), same sigma for the batch."""
    k = _gauss_kernel(sigma, x.device)
    c, r = x.shape[1], k.numel() // 2
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def photometric(x: torch.Tensor, g: torch.Generator, cfg: AugmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour and old-photo augmentation of a batch (N,3,H,W) in [0,1]. Returns (x, border mask)."""
    n, dev = x.shape[0], x.device
    rand = lambda *s: torch.rand(*s, generator=g).to(dev)  # noqa: E731
    pick = lambda p: (rand(n, 1, 1, 1) < p).float()  # noqa: E731
    lum = lambda t: (0.299 * t[:, :1] + 0.587 * t[:, 1:2] + 0.114 * t[:, 2:3])  # noqa: E731

    # colour jitter: brightness, contrast, saturation, per-channel gains (white balance), gamma
    x = x * (0.75 + 0.5 * rand(n, 1, 1, 1))
    m = x.mean((1, 2, 3), keepdim=True)
    x = (x - m) * (0.7 + 0.6 * rand(n, 1, 1, 1)) + m
    y = lum(x)
    x = (x - y) * (0.6 + 0.8 * rand(n, 1, 1, 1)) + y
    x = x * (0.9 + 0.2 * rand(n, 3, 1, 1))
    x = x.clamp(0, 1) ** torch.exp((rand(n, 1, 1, 1) - 0.5) * 0.6)

    # old-photo looks
    gray = lum(x).expand(-1, 3, -1, -1)
    k = pick(cfg.p_gray)
    x = k * gray + (1 - k) * x
    sepia_tone = torch.tensor([1.07, 0.74, 0.43], device=dev).view(1, 3, 1, 1)
    k = pick(cfg.p_sepia)
    x = k * (lum(x) * sepia_tone + 0.05).clamp(0, 1) + (1 - k) * x
    k = pick(cfg.p_fade)  # faded print: lifted blacks, lower contrast, a warm/cream cast
    paper = torch.stack([0.95 + 0.05 * rand(n), 0.9 + 0.05 * rand(n), 0.75 + 0.15 * rand(n)], 1).view(n, 3, 1, 1)
    amount = 0.15 + 0.35 * rand(n, 1, 1, 1)
    x = k * (x * (1 - amount) + paper * amount) + (1 - k) * x

    # blur (one sigma per batch, applied to the chosen samples)
    if float(torch.rand((), generator=g)) < cfg.p_blur * 2:
        k = pick(0.5)
        x = k * blur(x, 0.5 + 1.5 * float(torch.rand((), generator=g))) + (1 - k) * x
    # sensor noise and film grain
    k = pick(cfg.p_noise)
    x = x + k * torch.randn(x.shape, generator=g).to(dev) * 0.04 * rand(n, 1, 1, 1)
    k = pick(cfg.p_grain)
    grain = blur(torch.randn((n, 1) + x.shape[2:], generator=g).to(dev), 0.8)
    x = x + k * grain * 0.08 * rand(n, 1, 1, 1)
    x = x.clamp(0, 1)

    # scan borders: a white, cream or black frame; the teacher target there is meaningless
    valid = torch.ones((n, 1) + x.shape[2:], device=dev)
    h, w = x.shape[2:]
    for i in range(n):
        if float(torch.rand((), generator=g)) < cfg.p_border:
            b = [int(float(torch.rand((), generator=g)) * 0.08 * s) for s in (h, w, h, w)]
            col = torch.tensor([1.0, 0.97, 0.9] if float(torch.rand((), generator=g)) < 0.7 else [0.03, 0.03, 0.03],
                               device=dev).view(3, 1, 1)
            frame = torch.zeros((1, h, w), device=dev)
            frame[:, :b[0]] = 1
            frame[:, h - b[2]:] = 1
            frame[:, :, :b[1]] = 1
            frame[:, :, w - b[3]:] = 1
            x[i] = frame * col + (1 - frame) * x[i]
            valid[i] = 1 - frame
    return x, valid


class Sampler:
    """Endless augmented batches (rgb (N,3,h,w) in [0,1], target log-disparity (N,1,h,w), mask (N,1,h,w))."""

    SHAPES = ((1.0, 1.0), (0.866, 1.155), (1.155, 0.866))  # (h, w) factors of cfg.size, ~equal area

    def __init__(self, bundle: Bundle, batch: int, cfg: AugmentConfig, seed: int = 0, device: str | torch.device = "cpu",
                 landscape: bool = False):
        """``landscape``: every batch 4:3 landscape (whole-image batches at the runtime's aspect)."""
        self.bundle, self.batch, self.cfg, self.landscape = bundle, batch, cfg, landscape
        self.device = torch.device(device)
        self.g = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict:
        return {"rng": self.g.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.g.set_state(state["rng"])

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg, g = self.cfg, self.g
        fh, fw = self.SHAPES[1 if self.landscape else int(torch.randint(len(self.SHAPES), (), generator=g))]
        oh, ow = int(round(cfg.size * fh / 32)) * 32, int(round(cfg.size * fw / 32)) * 32
        idx = torch.randint(len(self.bundle), (self.batch,), generator=g).tolist()
        rgbs, tgts, masks = [], [], []
        for i in idx:
            img = self.bundle.images[i]
            deg = self.bundle.degraded[i]
            if deg is not None and float(torch.rand((), generator=g)) < cfg.p_jpeg:
                img = deg
            tgt = self.bundle.targets[i]
            h, w = img.shape[1:]
            theta = crop_theta(h, w, oh, ow, g, cfg).to(self.device)[None]
            grid = F.affine_grid(theta, [1, 1, oh, ow], align_corners=False)
            src = torch.cat([img.to(self.device, torch.float32) / 255.0, tgt.to(self.device),
                             torch.ones_like(tgt, device=self.device)], 0)[None]
            out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
            rgbs.append(out[:3])
            tgts.append(out[3:4] / out[4:5].clamp(min=1e-3))
            masks.append((out[4:5] > 0.999).float())
        rgb, target, mask = torch.stack(rgbs), torch.stack(tgts), torch.stack(masks)
        rgb, valid = photometric(rgb, g, cfg)
        return rgb, target, mask * valid

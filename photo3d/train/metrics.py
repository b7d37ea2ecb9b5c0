"""Depth metrics of the benchmarks and the training code (definitions: the data README, ``../shared/README.md``).

- AbsRel and δ1: least-squares scale + shift of the predicted disparity to the ground-truth
  disparity on valid pixels; the aligned disparity is clipped below at half the smallest valid
  GT disparity; both are inverted to depth; AbsRel = mean(|d̂ − d| / d), δ1 = share of pixels
  with max(d̂/d, d/d̂) < 1.25.
- Edge-order accuracy: over all pixel pairs 6 px apart horizontally or vertically, both valid,
  whose GT disparities differ by more than 15 % of the smaller one, the share the prediction
  orders the same way (sign of the difference).
- Pearson r: correlation of two maps (e.g. student vs teacher log-disparity).

All functions take disparity-like maps (larger = nearer) of the same shape; ``valid`` defaults to
``gt > 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

EDGE_STEP = 6
EDGE_REL = 0.15
DELTA1 = 1.25


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps of the same size (0 when either is constant)."""
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def align_scale_shift(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Least-squares a, b minimising ||a·pred + b − gt||² over valid pixels; returns a·pred + b."""
    p = pred[valid].astype(np.float64)
    g = gt[valid].astype(np.float64)
    A = np.stack([p, np.ones_like(p)], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, g, rcond=None)
    return (a * pred.astype(np.float64) + b).astype(np.float64)


def abs_rel_delta1(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> tuple[float, float]:
    """AbsRel and δ1 in depth after scale + shift alignment in disparity."""
    valid = (gt > 0) if valid is None else valid
    aligned = align_scale_shift(pred, gt, valid)[valid]
    g = gt[valid].astype(np.float64)
    aligned = np.maximum(aligned, 0.5 * g.min())
    d_hat, d = 1.0 / aligned, 1.0 / g
    abs_rel = float(np.mean(np.abs(d_hat - d) / d))
    delta1 = float(np.mean(np.maximum(d_hat / d, d / d_hat) < DELTA1))
    return abs_rel, delta1


def edge_order_counts(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> tuple[int, int]:
    """(correctly ordered pairs, pairs) for the edge-order accuracy."""
    valid = (gt > 0) if valid is None else valid
    g = gt.astype(np.float64)
    p = pred.astype(np.float64)
    s = EDGE_STEP
    correct = total = 0
    for sl1, sl2 in (
        ((slice(None), slice(0, -s)), (slice(None), slice(s, None))),
        ((slice(0, -s), slice(None)), (slice(s, None), slice(None))),
    ):
        g1, g2 = g[sl1], g[sl2]
        both = valid[sl1] & valid[sl2]
        edge = both & (np.abs(g1 - g2) > EDGE_REL * np.minimum(g1, g2))
        sg = np.sign(g1 - g2)[edge]
        sp = np.sign(p[sl1] - p[sl2])[edge]
        correct += int(np.sum(sg == sp))
        total += int(edge.sum())
    return correct, total


def edge_order_accuracy(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> float:
    c, t = edge_order_counts(pred, gt, valid)
    return c / t if t else float("nan")


@dataclass
class Scores:
    abs_rel: float
    delta1: float
    edge_order: float
    edge_pairs: int = 0


def evaluate(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> Scores:
    """All three metrics for one disparity prediction (same shape as ``gt``)."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    valid = (gt > 0) if valid is None else valid
    valid = valid & np.isfinite(pred)
    ar, d1 = abs_rel_delta1(pred, gt, valid)
    c, t = edge_order_counts(pred, gt, valid)
    return Scores(ar, d1, c / t if t else float("nan"), t)


def mean_scores(scores: list[Scores]) -> Scores:
    """Mean over scenes (each scene weighs the same)."""
    return Scores(
        float(np.mean([s.abs_rel for s in scores])),
        float(np.mean([s.delta1 for s in scores])),
        float(np.nanmean([s.edge_order for s in scores])),
        int(sum(s.edge_pairs for s in scores)),
    )


def lower_rows_prior(shape: tuple[int, int]) -> np.ndarray:
    """The trivial "lower rows are nearer" disparity: row index, constant along each row."""
    h, w = shape
    return np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)


# --------------------------------------------------------------------------------------------
# Middlebury-style scenes: view1.png + disp1.png (disparity × 3, 0 = unknown)
# --------------------------------------------------------------------------------------------

MIDDLEBURY_DISP_SCALE = 3.0


@dataclass
class Scene:
    name: str
    image: Path
    rgb: np.ndarray  # uint8 H×W×3
    disparity: np.ndarray  # float32 H×W, pixels; 0 = unknown

    @property
    def valid(self) -> np.ndarray:
        return self.disparity > 0


def is_scene_folder(folder: Path) -> bool:
    return (folder / "view1.png").is_file() and (folder / "disp1.png").is_file()


def scene_folders(root: str | Path) -> list[Path]:
    """``root`` itself when it is a scene, else its scene sub-folders, sorted by name."""
    root = Path(root)
    if is_scene_folder(root):
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and is_scene_folder(p))


def load_scene(folder: str | Path, disp_scale: float = MIDDLEBURY_DISP_SCALE) -> Scene:
    from PIL import Image

    from photo3d.io import load_image

    folder = Path(folder)
    rgb = load_image(folder / "view1.png").rgb
    with Image.open(folder / "disp1.png") as im:
        d = np.asarray(im)
    if d.ndim == 3:
        d = d[..., 0]
    disp = d.astype(np.float32) / disp_scale
    if disp.shape != rgb.shape[:2]:
        raise ValueError(f"{folder}: view1.png {rgb.shape[:2]} and disp1.png {disp.shape} differ in size")
    return Scene(folder.name, folder / "view1.png", rgb, disp)


def load_scenes(root: str | Path) -> list[Scene]:
    return [load_scene(f) for f in scene_folders(root)]

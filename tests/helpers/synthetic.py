"""Synthetic inverse-depth scenes for the stage tests (larger value = nearer)."""

from __future__ import annotations

import numpy as np

H, W = 129, 161  # 1 + multiples of 32: the mesh's largest cells tile the grid exactly
SHIFT = 40.0  # working pixels of parallax per unit of inverse depth
FAR, NEAR = 0.2, 0.8


def step_edge(x0: int = 80) -> np.ndarray:
    inv = np.full((H, W), FAR, np.float32)
    inv[:, x0:] = NEAR
    return inv


def ramp() -> np.ndarray:
    return np.tile(np.linspace(FAR, NEAR, W, dtype=np.float32), (H, 1))


def sphere(cy: int = 64, cx: int = 80, r: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """A sphere (NEAR at its centre) in front of a plane; returns (inv, disk mask)."""
    yy, xx = np.mgrid[:H, :W]
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    disk = d2 <= r * r
    z = 1.0 / NEAR + (1 - np.sqrt(np.clip(1 - d2 / r**2, 0, 1))) * 0.2  # bulging toward the camera
    inv = np.full((H, W), FAR, np.float32)
    inv[disk] = (1.0 / z[disk]).astype(np.float32)
    return inv, disk


def constant(v: float = 0.5) -> np.ndarray:
    return np.full((H, W), v, np.float32)


def with_bad_values() -> np.ndarray:
    inv = step_edge()
    inv[10:20, 10:20] = np.nan
    inv[30, 30] = np.inf
    inv[40, 100] = -np.inf
    inv[50:52, 50:52] = 0.0
    return inv

"""Distillation losses on log-disparity predictions (MiDaS-style, Ranftl et al. 2020).

All take ``pred`` and ``target`` log-disparity (N,1,H,W) and a validity ``mask`` (N,1,H,W, 0/1)
and are invariant to what the runtime throws away anyway (the scale of disparity, and for
:func:`ssi_disparity` its shift too).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _masked_median(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample (lower) median of x over mask → (N,1,1,1): invalid pixels sort to the end."""
    n = x.shape[0]
    flat, m = x.reshape(n, -1), mask.reshape(n, -1) > 0.5
    vals = torch.where(m, flat, torch.full_like(flat, torch.finfo(x.dtype).max))
    idx = ((m.sum(1) - 1).clamp(min=0) // 2)[:, None]
    return vals.sort(1).values.gather(1, idx).reshape(n, 1, 1, 1)


def normalize_ssi(d: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """MiDaS normalization: (d − median) / mean |d − median| over valid pixels (per sample)."""
    med = _masked_median(d, mask)
    c = (d - med) * mask
    s = c.abs().sum((1, 2, 3), keepdim=True) / mask.sum((1, 2, 3), keepdim=True).clamp(min=1)
    return c / (s + eps)


def ssi_disparity(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale-and-shift-invariant L1 on disparity exp(log-disparity). Returns (loss, residual map)."""
    dp = torch.exp(pred.clamp(-12, 12))
    dt = torch.exp(target)
    r = (normalize_ssi(dp, mask) - normalize_ssi(dt, mask)) * mask
    return r.abs().sum() / mask.sum().clamp(min=1), r


def shift_invariant_log(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 of log-disparity after removing the per-sample mean offset (= scale-invariant on disparity)."""
    diff = (pred - target) * mask
    off = diff.sum((1, 2, 3), keepdim=True) / mask.sum((1, 2, 3), keepdim=True).clamp(min=1)
    r = (diff - off) * mask
    return r.abs().sum() / mask.sum().clamp(min=1), r


def gradient_matching(residual: torch.Tensor, mask: torch.Tensor, scales: int = 4,
                      weight: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-scale gradient matching on a residual map (MiDaS): penalises wrong or missing edges.

    ``weight`` (N,1,H,W) optionally up-weights pixels (the edge-aware term uses image edges).
    """
    total = residual.new_zeros(())
    r, m = residual, mask
    w = weight if weight is not None else torch.ones_like(mask)
    for k in range(scales):
        if k:
            r, m, w = r[:, :, ::2, ::2], m[:, :, ::2, ::2], w[:, :, ::2, ::2]
        mx = m[:, :, :, 1:] * m[:, :, :, :-1]
        my = m[:, :, 1:, :] * m[:, :, :-1, :]
        gx = (r[:, :, :, 1:] - r[:, :, :, :-1]).abs() * mx * w[:, :, :, 1:]
        gy = (r[:, :, 1:, :] - r[:, :, :-1, :]).abs() * my * w[:, :, 1:, :]
        total = total + (gx.sum() + gy.sum()) / (mx.sum() + my.sum()).clamp(min=1)
    return total / scales


def image_edge_weight(rgb: torch.Tensor, strength: float = 2.0) -> torch.Tensor:
    """1 + strength × normalised luminance gradient magnitude (N,1,H,W): weight for the edge-aware term."""
    lum = rgb.mean(1, keepdim=True)
    gx = F.pad((lum[:, :, :, 1:] - lum[:, :, :, :-1]).abs(), (0, 1, 0, 0))
    gy = F.pad((lum[:, :, 1:, :] - lum[:, :, :-1, :]).abs(), (0, 0, 0, 1))
    g = gx + gy
    g = g / (g.mean((2, 3), keepdim=True) * 4 + 1e-6)
    return 1.0 + strength * g.clamp(max=1.0)


def layout_correlation(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, factor: int = 8) -> torch.Tensor:
    """1 - Pearson r between prediction and target log-disparity averaged over ``factor`` x
    ``factor`` cells (the picture's coarse layout), per sample, over cells mostly inside ``mask``."""
    m = mask.float()
    w = F.avg_pool2d(m, factor, ceil_mode=True)
    p = F.avg_pool2d(pred * m, factor, ceil_mode=True) / w.clamp_min(1e-6)
    t = F.avg_pool2d(target * m, factor, ceil_mode=True) / w.clamp_min(1e-6)
    keep = (w > 0.5).float()
    n = keep.sum(dim=(1, 2, 3)).clamp_min(2.0)
    pm = (p * keep).sum(dim=(1, 2, 3), keepdim=True) / n.view(-1, 1, 1, 1)
    tm = (t * keep).sum(dim=(1, 2, 3), keepdim=True) / n.view(-1, 1, 1, 1)
    pc, tc = (p - pm) * keep, (t - tm) * keep
    r = (pc * tc).sum(dim=(1, 2, 3)) / ((pc.square().sum(dim=(1, 2, 3)) * tc.square().sum(dim=(1, 2, 3))).sqrt() + 1e-8)
    return (1.0 - r).mean()


def flat_curvature(pred: torch.Tensor, rgb: torch.Tensor, mask: torch.Tensor, sharpness: float = 20.0,
                   scales: int = 4) -> torch.Tensor:
    """Edge-aware second-order smoothness of log-disparity: its second differences, weighted by
    exp(-sharpness x the photo's colour difference) over the same pixels, at ``scales`` scales
    (halved each time: ripples a few pixels wide too).  A plain or dark surface (a dark room behind
    a table) keeps its slopes (a floor's ramp has none) but not the ripples a teacher's noise
    teaches there, which the 3D photo builder sharpens into short false cuts; a depth step at a
    colour edge costs nothing."""
    if scales > 1:
        out = flat_curvature(pred, rgb, mask, sharpness, 1)
        for _ in range(scales - 1):
            if min(pred.shape[2:]) < 6:
                break
            pred, rgb, mask = F.avg_pool2d(pred, 2), F.avg_pool2d(rgb, 2), (F.avg_pool2d(mask, 2) > 0.99).float()
            out = out + flat_curvature(pred, rgb, mask, sharpness, 1)
        return out / scales
    def second(x: torch.Tensor, dim: int) -> torch.Tensor:
        n = x.shape[dim]
        return x.narrow(dim, 2, n - 2) - 2 * x.narrow(dim, 1, n - 2) + x.narrow(dim, 0, n - 2)

    def span(x: torch.Tensor, dim: int) -> torch.Tensor:  # the photo's largest step over the same 3 pixels
        n = x.shape[dim]
        a = (x.narrow(dim, 1, n - 2) - x.narrow(dim, 0, n - 2)).abs().mean(1, keepdim=True)
        b = (x.narrow(dim, 2, n - 2) - x.narrow(dim, 1, n - 2)).abs().mean(1, keepdim=True)
        return torch.maximum(a, b)

    total, count = pred.new_zeros(()), pred.new_zeros(())
    for dim in (2, 3):
        n = mask.shape[dim]
        m = mask.narrow(dim, 0, n - 2) * mask.narrow(dim, 1, n - 2) * mask.narrow(dim, 2, n - 2)
        w = torch.exp(-sharpness * span(rgb, dim)) * m
        total = total + (second(pred, dim).abs() * w).sum()
        count = count + m.sum()
    return total / count.clamp(min=1)


def distill_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, rgb: torch.Tensor | None = None,
                 w_ssi: float = 1.0, w_log: float = 0.5, w_grad: float = 0.5, edge_aware: float = 0.0,
                 w_layout: float = 0.0, w_flat: float = 0.0, w_corr: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """SSI disparity + shift-invariant log + multi-scale gradient matching (on the log residual,
    optionally edge-weighted) + optionally the coarse layout's correlation (:func:`layout_correlation`)
    and the per-pixel one (``w_corr``: 1 - Pearson r of log-disparity, the hold-out's figure of merit).
    Returns (loss, parts for logging)."""
    l_ssi, _ = ssi_disparity(pred, target, mask)
    l_log, r_log = shift_invariant_log(pred, target, mask)
    weight = image_edge_weight(rgb, edge_aware) if (edge_aware > 0 and rgb is not None) else None
    l_grad = gradient_matching(r_log, mask, weight=weight)
    loss = w_ssi * l_ssi + w_log * l_log + w_grad * l_grad
    parts = {"ssi": l_ssi.item(), "log": l_log.item(), "grad": l_grad.item()}
    if w_layout > 0:
        l_layout = layout_correlation(pred, target, mask)
        loss = loss + w_layout * l_layout
        parts["layout"] = l_layout.item()
    if w_corr > 0:
        l_corr = layout_correlation(pred, target, mask, factor=1)
        loss = loss + w_corr * l_corr
        parts["corr"] = l_corr.item()
    if w_flat > 0 and rgb is not None:
        l_flat = flat_curvature(pred, rgb, mask)
        loss = loss + w_flat * l_flat
        parts["flat"] = l_flat.item()
    return loss, parts

"""Grow a trained network into a larger configuration without changing what it computes (Net2Net-style).

A larger config of :class:`photo3d.depth.net.DepthNet` may have wider FBNet blocks (a larger
expansion: more hidden channels), more blocks in a stage, or the whole-picture context. The smaller
network's weights go into the leading slices of the larger one's tensors, and every new part starts
neutral:

- new hidden channels of a block: the expand and depthwise convs keep their random initialisation,
  their batch norms get the running statistics of a calibration batch (so they are well scaled), and
  the projection's weights from them start at zero, so they add nothing until training moves them;
- a new residual block: its projection's batch-norm scale starts at zero, so the block is the identity;
- the context module already starts neutral (:class:`photo3d.depth.net.PyramidContext`).

So training continues from the small network's function with spare capacity to fill.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from photo3d.depth.net import DepthNet, FBBlock


def grow_into(model: DepthNet, small: DepthNet, calib: torch.Tensor, atol: float = 1e-4) -> list[str]:
    """Load ``small``'s weights into the (larger) ``model`` in place, keeping its function on ``calib``.

    Returns the names of the tensors that grew or are new. Raises ``ValueError`` when a tensor of
    ``small`` does not fit (a smaller or differently shaped layer in ``model``) or when the grown
    network's output differs from ``small``'s by more than ``atol`` on ``calib``."""
    big_sd, small_sd = model.state_dict(), small.state_dict()
    unknown = [k for k in small_sd if k not in big_sd]
    if unknown:
        raise ValueError(f"layers missing from the larger configuration: {unknown[:3]}")
    changed: list[str] = []
    grown_bn: dict[str, torch.Tensor] = {}  # batch norm name -> mask of its new channels
    with torch.no_grad():
        for k, v in big_sd.items():
            if k not in small_sd:
                changed.append(k)
                continue
            o = small_sd[k]
            if o.shape == v.shape:
                v.copy_(o)
                continue
            if o.dim() != v.dim() or any(a > b for a, b in zip(o.shape, v.shape)):
                raise ValueError(f"{k}: {tuple(o.shape)} does not fit into {tuple(v.shape)}")
            changed.append(k)
            if k.endswith("project.0.weight"):  # inputs from new hidden channels start at zero
                v.zero_()
            v[tuple(slice(0, s) for s in o.shape)] = o
        mods = dict(model.named_modules())
        for name, m in mods.items():
            if not isinstance(m, nn.BatchNorm2d):
                continue
            key = f"{name}.running_mean"
            n_old = small_sd[key].shape[0] if key in small_sd else 0
            if n_old < m.num_features:
                mask = torch.zeros(m.num_features, dtype=torch.bool)
                mask[n_old:] = True
                grown_bn[name] = mask
        # new residual blocks start as the identity
        for name, m in mods.items():
            if isinstance(m, FBBlock) and m.residual and f"{name}.project.1.weight" not in small_sd:
                m.project[1].weight.zero_()
                m.project[1].bias.zero_()

    # calibrate the new channels' batch norms in execution order (eval mode: each sees its inputs
    # normalised by the statistics set upstream)
    def calibrate(mask: torch.Tensor, bn: nn.BatchNorm2d, args) -> None:
        x = args[0]
        with torch.no_grad():
            mean = x.mean(dim=(0, 2, 3))
            var = x.var(dim=(0, 2, 3), unbiased=False)
            bn.running_mean[mask] = mean[mask]
            bn.running_var[mask] = var[mask] + bn.eps

    handles = [mods[name].register_forward_pre_hook(partial(calibrate, mask)) for name, mask in grown_bn.items()]
    was_training = model.training
    model.eval()
    small.eval()
    try:
        with torch.no_grad():
            model(calib)
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        diff = (model(calib) - small(calib)).abs().max().item()
    model.train(was_training)
    if diff > atol:
        raise ValueError(f"the grown network computes something else (max difference {diff:.2e})")
    return changed

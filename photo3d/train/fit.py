"""Time-boxed, resumable distillation training from a packed bundle.

    python -m photo3d.train.fit --bundle bundle/ --out runs/x --minutes 10 [--resume]

Runs on CUDA when available, else CPU (channels-last). SIGTERM or Ctrl-C stops after the current
step. Writes ``<out>/last.pt`` (model, its weight EMA — what ``qat`` ships —, optimizer, step,
sampler RNG, hyper-parameters) every ``--ckpt-minutes`` and at the end, atomically, and appends
to ``<out>/log.txt``. ``--resume`` continues from ``last.pt`` with the checkpoint's
hyper-parameters, except those given again on the command line, so several ~10-minute runs add
up to one schedule: cosine decay after a warm-up over ``--schedule-minutes`` of training time
(or ``--total-steps``); past its end the learning rate stays at the floor. A checkpoint of a
smaller architecture (missing layers) warm-starts the current one.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import signal
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch

from photo3d.depth.modelfile import first_network
from photo3d.depth.net import CONFIGS, DepthNet, NetConfig
from photo3d.errors import Photo3DError
from photo3d.train.data import AugmentConfig, Bundle, Sampler
from photo3d.train.grow import grow_into
from photo3d.io import atomic_output
from photo3d.train.losses import distill_loss


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_at(step: int, base: float, total: int, warmup: int, floor: float = 0.03, progress: float | None = None) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``floor × base`` at ``total`` steps
    (or at ``progress`` = 1 when given: the share of a time budget used)."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = progress if progress is not None else (step - warmup) / max(1, total - warmup)
    t = min(1.0, max(0.0, t))
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def save_checkpoint(path: Path, **state) -> None:
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """A checkpoint of :func:`save_checkpoint`: tensors, numbers, strings, lists and dicts only
    (``weights_only``: a file given as a checkpoint runs no pickled code). Any other file, a TorchScript
    model among them (the bundled one), raises: ``ValueError`` when torch reads it as something else."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (torch.load of a TorchScript archive says so, and loads it)
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not (isinstance(ckpt, dict) and "model" in ckpt and "config" in ckpt):
        raise ValueError(f"{path}: not a training checkpoint of photo3d.train.fit")
    return ckpt


def model_from_checkpoint(ckpt: dict, strict: bool = True, ema: bool = True) -> DepthNet:
    """The float network of a checkpoint: its EMA weights when it has them (``ema=True``), else the
    raw weights. ``strict=False`` warm-starts a grown architecture: layers the checkpoint lacks keep
    their (neutral) initialisation."""
    model = DepthNet(NetConfig.from_dict(ckpt["config"]))
    state = ckpt["ema"] if ema and ckpt.get("ema") is not None else ckpt["model"]
    missing, unexpected = model.load_state_dict(state, strict=strict)
    model.grown = bool(missing or unexpected)
    return model


def warm_start(model: DepthNet, scripted_path: Path, calib: torch.Tensor) -> None:
    """Initialise ``model`` (float, BN in training mode) from an INT8 TorchScript model of the same
    architecture (e.g. the bundled ``p3d-s.pt``): each quantized conv's weight and bias (BN folded in)
    are dequantized into the conv, and its BN is set so that, on the batch ``calib``, it passes the
    conv output through unchanged plus the folded bias (gamma = batch std, beta = batch mean + bias;
    running statistics alike). So training starts from the shipped network's function."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.jit.load(str(scripted_path), map_location="cpu")
    q = first_network(q)  # (of a pair, its first network)
    qmods = dict(q.named_modules())
    fmods = dict(model.named_modules())
    bias_of: dict[str, torch.Tensor] = {}
    n = 0
    for name, qm in qmods.items():
        if qm.original_name not in ("ConvReLU2d", "Conv2d") or name not in fmods:
            continue
        if qm._c._has_method("_weight_bias"):  # a quantized convolution
            w, b = qm._c._weight_bias()
            w = w.dequantize()
        else:  # one kept in float (the head of a model exported with --float-head)
            w, b = qm.weight, qm.bias
        fm = fmods[name]
        with torch.no_grad():
            fm.weight.copy_(w)
            parent = name.rsplit(".", 1)[0] if "." in name else ""
            bn = fmods.get(parent + ".1") if name.endswith(".0") else None
            if isinstance(bn, torch.nn.BatchNorm2d):
                bias_of[parent + ".1"] = b.detach().clone() if b is not None else torch.zeros(fm.out_channels)
            elif fm.bias is not None and b is not None:
                fm.bias.copy_(b)
        n += 1
    if n == 0:
        raise ValueError(f"{scripted_path}: no quantized convolution matches the architecture")

    def pre_hook(name):
        def hook(bn, inputs):
            x = inputs[0]
            with torch.no_grad():
                mu = x.mean((0, 2, 3))
                var = x.var((0, 2, 3), unbiased=False)
                bn.weight.copy_(torch.sqrt(var + bn.eps))
                bn.bias.copy_(mu + bias_of[name])
                bn.running_mean.copy_(mu)
                bn.running_var.copy_(var)
        return hook

    handles = [fmods[nm].register_forward_pre_hook(pre_hook(nm)) for nm in bias_of]
    model.train()
    with torch.no_grad():
        model(calib)
    for h in handles:
        h.remove()


def flip_small_average(model: DepthNet, rgb: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """``pred`` (``model(rgb)``, or a partner network's output for ``rgb``) averaged with the model's output for the mirrored batch at
    the second pass's size (:func:`~photo3d.depth.runtime.small_pass_size`), mirrored back and brought to ``pred``'s grid: the runtime's
    "flip-small" operating point (:func:`photo3d.depth.runtime.with_tta`), differentiable in the model."""
    from photo3d.depth.runtime import small_pass_size

    small = torch.nn.functional.interpolate(rgb.flip(-1), size=small_pass_size(*rgb.shape[2:]), mode="area")
    other = model(small.contiguous(memory_format=torch.channels_last)).flip(-1)
    other = torch.nn.functional.interpolate(other, size=tuple(pred.shape[2:]), mode="bilinear", align_corners=False)
    return 0.5 * (pred + other)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m photo3d.train.fit", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget of this run")
    ap.add_argument("--max-steps", type=int, default=0, help="also stop after this many steps in total (0: no limit)")
    ap.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    ap.add_argument("--config", default="p3d-s", choices=sorted(CONFIGS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=160, help="training crop side (pixels)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--encoder-lr-scale", type=float, default=1.0,
                    help="configs with a pretrained encoder (p3d-e): its learning rate as a share of --lr")
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--total-steps", type=int, default=20000, help="length of the LR schedule")
    ap.add_argument("--schedule-minutes", type=float, default=0.0,
                    help="decay the LR over this much training time instead of --total-steps (0: by steps)")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--edge-aware", type=float, default=1.0, help="weight of image edges in gradient matching")
    ap.add_argument("--w-ssi", type=float, default=1.0, help="weight of the scale-and-shift-invariant disparity loss")
    ap.add_argument("--w-log", type=float, default=1.0, help="weight of the shift-invariant log-disparity loss")
    ap.add_argument("--w-grad", type=float, default=0.5, help="weight of multi-scale gradient matching")
    ap.add_argument("--w-layout", type=float, default=0.0,
                    help="weight of the coarse layout's correlation (1 - r over 8x8 cells; 0: off)")
    ap.add_argument("--w-corr", type=float, default=0.0,
                    help="weight of 1 - Pearson r of log-disparity per sample (what evaluate's median measures)")
    ap.add_argument("--w-flat", type=float, default=0.0,
                    help="weight of the edge-aware second-order smoothness on plain surfaces (losses.flat_curvature; 0: off)")
    ap.add_argument("--w-hint", type=float, default=0.0,
                    help="weight of feature hints: the student's encoder at 1/16 and 1/32 predicts Tiefenrausch's (photo3d.train.hints; 0: off)")
    ap.add_argument("--hint-warmup", type=int, default=100,
                    help="first steps of a hinted run: only the hint projections learn from the hint loss")
    ap.add_argument("--teacher", type=Path, default=None,
                    help="Tiefenrausch's Caffe2 folder for --w-hint (default: ../shared/data/tiefenrausch)")
    ap.add_argument("--tta-train", type=float, default=0.0, metavar="W",
                    help="whole-photo batches: also fit the runtime's flip-small operating point (the output "
                         "averaged with the mirrored 5/6-size pass), with this weight (the single pass keeps 1 - W)")
    ap.add_argument("--partner", type=Path, default=None, metavar="MODEL",
                    help="with --tta-train: the first pass is this frozen model's (an INT8 TorchScript file, e.g. the "
                         "bundled one), the trained network is its second pass (qat --partner ships the pair)")
    ap.add_argument("--ema", type=float, default=0.998, help="decay of the weight moving average")
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N bundle photos")
    ap.add_argument("--label", default="split", help="how to combine two teachers (photo3d.train.teachers.combine)")
    ap.add_argument("--tr-flip", action=argparse.BooleanOptionalAction, default=None,
                    help="Tiefenrausch's label averaged with its map of the mirror image (teachers.mirror_average; "
                         "the default since session 18; a resumed run keeps its own)")
    ap.add_argument("--init-from", type=Path, default=None,
                    help="without a checkpoint: warm-start from this INT8 TorchScript model (e.g. the bundled one) or float checkpoint of ours (its EMA weights)")
    ap.add_argument("--whole-share", type=float, default=0.0,
                    help="share of steps on (nearly) whole photos at --whole-size, 4:3 landscape (layout)")
    ap.add_argument("--whole-size", type=int, default=277, help="whole-photo batches: output side factor (277: 320x240)")
    ap.add_argument("--whole-batch", type=int, default=6)
    ap.add_argument("--whole-exact", action="store_true",
                    help="whole-photo batches show each photo exactly as the teachers saw it (no flip, rotation, crop jitter)")
    ap.add_argument("--min-crop", type=float, default=0.45, help="crop batches: smallest crop (share of shorter side)")
    ap.add_argument("--max-crop", type=float, default=1.0, help="crop batches: largest crop")
    ap.add_argument("--freeze-bn", action="store_true",
                    help="batch norm in inference mode (running statistics fixed; affine terms still learn)")
    ap.add_argument("--snapshot-minutes", type=float, default=0.0, help="also keep snap-<step>.pt this often (learning curve)")
    return ap


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    tokens = [t.split("=", 1)[0] for t in (sys.argv[1:] if argv is None else argv)]
    given = {a.dest for a in parser._actions if any(o in tokens for o in a.option_strings)}
    t_start = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    out: Path = args.out
    ckpt_path = out / "last.pt"
    # (mistakes in one line, before anything is made: they were tracebacks, or a silent new run, helper-88)
    for flag, path in (("--init-from", args.init_from), ("--partner", args.partner)):
        if path is not None and not Path(path).is_file():
            raise SystemExit(f"{flag} {path}: no such file")
    if args.resume and not ckpt_path.is_file():
        if args.init_from is None:
            raise SystemExit(f"--resume: {ckpt_path} does not exist: nothing to resume (leave out --resume for a new "
                             "run, or give --init-from MODEL to warm-start one when the checkpoint is gone)")
        print(f"# --resume: no {ckpt_path}: a new run from {args.init_from}", flush=True)
    ckpt = load_checkpoint(ckpt_path) if args.resume and ckpt_path.is_file() else None

    if ckpt is not None:
        model = model_from_checkpoint(ckpt, strict=False, ema=False)
        # the schedule and data settings of the run being resumed, unless given again explicitly
        hp = ckpt["args"]
        for k in ("config", "batch", "size", "limit", "lr", "weight_decay", "total_steps", "schedule_minutes", "warmup",
                  "edge_aware", "w_ssi", "w_log", "w_grad", "w_layout", "w_flat", "w_corr", "w_hint", "hint_warmup", "seed", "label", "whole_share", "whole_size", "whole_batch", "whole_exact",
                  "min_crop", "max_crop", "freeze_bn", "tr_flip", "tta_train", "partner", "encoder_lr_scale"):
            if k not in given and k in hp:
                setattr(args, k, hp[k])
        if isinstance(args.partner, str):
            args.partner = Path(args.partner)
    else:
        torch.manual_seed(args.seed)
        model = DepthNet(args.config)
    if args.tr_flip is None:  # a new run: the mirror-averaged label; a run from before it existed: its own
        args.tr_flip = ckpt is None
    # channels-last is ~2x faster for depthwise convs on CPU, and fine on CUDA
    model.to(device).to(memory_format=torch.channels_last).train()

    # exponential moving average of the weights: what gets evaluated and shipped (smooths the noise
    # of small batches and a high learning rate)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    if ckpt is not None and ckpt.get("ema") is not None and not model.grown:
        ema.load_state_dict(ckpt["ema"])

    partner = None
    if args.partner is not None:  # (loaded before the bundle: a wrong file fails at once)
        if args.tta_train <= 0 or args.whole_share <= 0:
            raise SystemExit("--partner trains the second pass of the flip-small average on whole-photo batches: "
                             "give --tta-train and --whole-share too")
        from photo3d.depth.runtime import load_model

        args.partner = args.partner.resolve()  # (a resumed run finds it from any folder)
        try:
            partner = load_model(args.partner).module  # INT8: runs on the CPU
        except Photo3DError as e:
            raise SystemExit(f"--partner: {e}") from None
    try:
        bundle = Bundle(args.bundle, seed=args.seed, limit=args.limit, label=args.label, tr_flip=args.tr_flip).to(device)
    except (OSError, ValueError) as e:
        raise SystemExit(f"--bundle {args.bundle}: {e}") from None
    out.mkdir(parents=True, exist_ok=True)
    sampler = Sampler(bundle, args.batch, AugmentConfig(size=args.size, min_crop=args.min_crop, max_crop=args.max_crop),
                      seed=args.seed, device=device)
    # whole photos: nearly the frame the teachers saw; --whole-exact: exactly it (no flip, rotation or
    # crop jitter: the teacher's layout changes under those, r 0.93-0.94 median, so they blur the target)
    whole_aug = AugmentConfig(size=args.whole_size, min_crop=0.95, max_crop=1.16, p_rotate=0.1)
    if args.whole_exact:
        whole_aug = replace(whole_aug, min_crop=1.16, aspect_jitter=0.0, p_rotate=0.0, p_flip=0.0)
    whole = Sampler(bundle, args.whole_batch, whole_aug, seed=args.seed + 1, device=device, landscape=True)
    if ckpt is None and args.init_from is not None:
        try:  # a float training checkpoint of ours: continue from its EMA weights
            start = load_checkpoint(args.init_from)
        except Exception:  # an INT8 TorchScript model (e.g. the bundled one)
            start = None
        if start is not None:  # a larger architecture grows from it, same function
            calib = whole.next()[0] if args.whole_share > 0 else sampler.next()[0]
            try:
                grown = grow_into(model, model_from_checkpoint(start), calib)
            except ValueError as e:
                raise SystemExit(f"{args.init_from}: checkpoint does not fit config {args.config} ({e})") from None
            if grown:
                print(f"# grown from {args.init_from}: {len(grown)} tensors new or wider, output unchanged", flush=True)
        else:
            calib = whole.next()[0] if args.whole_share > 0 else sampler.next()[0]
            warm_start(model, args.init_from, calib.contiguous(memory_format=torch.channels_last))
        ema.load_state_dict(model.state_dict())
    hints = teacher_enc = None
    if args.w_hint > 0:
        from photo3d.train.evaluate import SHARED
        from photo3d.train.hints import StudentHints, TeacherEncoder

        teacher_enc = TeacherEncoder(args.teacher or SHARED / "data" / "tiefenrausch")
        hints = StudentHints(model, teacher_enc.channels).to(device)
        if ckpt is not None and ckpt.get("hints") is not None:
            hints.load_state_dict(ckpt["hints"])
    if model.cfg.backbone:  # a pretrained encoder learns slower than the new decoder (--encoder-lr-scale)
        enc = {id(p) for p in model.encoder.parameters()}
        groups = [{"params": [p for p in model.parameters() if id(p) in enc], "lr_scale": args.encoder_lr_scale},
                  {"params": [p for p in model.parameters() if id(p) not in enc], "lr_scale": 1.0}]
    else:
        groups = [{"params": list(model.parameters()), "lr_scale": 1.0}]
    if hints is not None:  # the fresh 1x1 projections learn 10x faster than the warm-started network
        groups.append({"params": list(hints.parameters()), "lr_scale": 10.0})
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=args.weight_decay)
    step, seconds = 0, 0.0
    rewarm_from = -1
    if ckpt is not None:
        step, seconds = ckpt["step"], ckpt.get("train_seconds", 0.0)
        if model.grown:  # new layers: fresh optimizer state, re-warm the learning rate
            rewarm_from = step
        elif (ckpt.get("hints") is not None) == (hints is not None):  # same parameter list as saved
            opt.load_state_dict(ckpt["optimizer"])
        sampler.load_state_dict(ckpt["sampler"])
        if "whole" in ckpt:
            whole.load_state_dict(ckpt["whole"])

    log = open(out / "log.txt", "a")

    def emit(msg: str) -> None:
        print(msg, flush=True)
        log.write(msg + "\n")
        log.flush()

    if rewarm_from >= 0:
        emit("# checkpoint lacks some layers of the current architecture: they start neutral, optimizer restarts")
    emit(f"# {'resume' if ckpt else 'start'} step {step} on {device}, {len(bundle)} photos, config {args.config}, "
         f"batch {args.batch}, size {args.size}, threads {torch.get_num_threads()}")

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, model=model.state_dict(), ema=ema.state_dict(), optimizer=opt.state_dict(),
                        sampler=sampler.state_dict(), whole=whole.state_dict(),
                        hints=hints.state_dict() if hints is not None else None,
                        step=step, train_seconds=seconds + (time.time() - t_run), config=model.metadata()["config"],
                        args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()})

    if args.freeze_bn:  # after any warm start, which calibrates in training mode
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
    stop = {"now": False}  # SIGTERM / Ctrl-C: finish the step, checkpoint, exit

    def on_signal(signum, frame):
        stop["now"] = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    weights = {k: getattr(args, k) for k in ("w_ssi", "w_log", "w_grad", "edge_aware", "w_layout", "w_flat", "w_corr")}
    t_run = t_last_ckpt = t_last_snap = time.time()
    deadline = t_start + args.minutes * 60
    acc: dict[str, float] = {}
    n_acc = 0
    while time.time() < deadline and not (args.max_steps and step >= args.max_steps) and not stop["now"]:
        trained = seconds + time.time() - t_run
        progress = trained / (args.schedule_minutes * 60) if args.schedule_minutes > 0 else None
        lr = lr_at(step, args.lr, args.total_steps, args.warmup, progress=progress)
        if rewarm_from >= 0:
            lr *= min(1.0, (step - rewarm_from + 1) / 50)
        for gr in opt.param_groups:
            gr["lr"] = lr * gr.get("lr_scale", 1.0)
        use_whole = int((step + 1) * args.whole_share) > int(step * args.whole_share)
        rgb, target, mask = (whole if use_whole else sampler).next()
        pred = model(rgb.contiguous(memory_format=torch.channels_last))
        loss, parts = distill_loss(pred, target, mask, rgb, **weights)
        if use_whole and args.tta_train > 0:  # what `photo3d depth` runs: this pass and the mirrored small one
            first = pred
            if partner is not None:  # the frozen first pass
                with torch.no_grad():  # (quantized kernels run on the CPU only)
                    first = partner(rgb.detach().cpu().contiguous())
                    first = (first.dequantize() if first.is_quantized else first).float().to(rgb.device)
            both = flip_small_average(model, rgb, first)
            l_tta, _ = distill_loss(both, target, mask, rgb, **weights)
            loss = (1 - args.tta_train) * loss + args.tta_train * l_tta
            parts["tta"] = l_tta.item()
        if hints is not None:
            l_hint = hints.loss(teacher_enc(rgb), detach_student=step < args.hint_warmup)
            loss = loss + args.w_hint * l_hint
            parts["hint"] = l_hint.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        with torch.no_grad():
            d = min(args.ema, (1 + step) / (10 + step))
            ep, mp = list(ema.parameters()), [p.detach() for p in model.parameters()]
            torch._foreach_mul_(ep, d)
            torch._foreach_add_(ep, mp, alpha=1 - d)
            for be, bm in zip(ema.buffers(), model.buffers()):
                be.copy_(bm)
        for k, v in parts.items():
            acc[k] = acc.get(k, 0.0) + v
        acc["loss"] = acc.get("loss", 0.0) + loss.item()
        n_acc += 1
        if step % args.log_every == 0:
            el = seconds + time.time() - t_run
            emit(f"step {step} lr {lr:.2e} " + " ".join(f"{k} {v / n_acc:.4f}" for k, v in acc.items())
                 + f" | {el / 60:.1f} min")
            acc, n_acc = {}, 0
        if time.time() - t_last_ckpt > args.ckpt_minutes * 60:
            checkpoint()
            t_last_ckpt = time.time()
        if args.snapshot_minutes and time.time() - t_last_snap > args.snapshot_minutes * 60:
            checkpoint()
            shutil.copyfile(ckpt_path, out / f"snap-{step:06d}.pt")
            t_last_snap = t_last_ckpt = time.time()
    checkpoint()
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    emit(f"# stop at step {step}, {(seconds + time.time() - t_run) / 60:.1f} min trained in total -> {ckpt_path}")
    (out / "args.json").write_text(json.dumps({k: str(v) for k, v in vars(args).items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

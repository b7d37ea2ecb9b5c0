"""Tiny CPU smoke run of the training recipe: pack → fit → resume → QAT → a loadable bundled model.

Uses the real Tiefenrausch teacher when ../shared is present, else the stand-in prior teacher.
Real training never runs in CI.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from helpers.paths import REPO, SHARED, needs_shared
from photo3d.depth import modelfile
from photo3d.train import fit, pack, qat
from photo3d.train.data import Bundle
from photo3d.train.losses import distill_loss, gradient_matching, shift_invariant_log, ssi_disparity


def _photos(folder, n=5):
    rng = np.random.default_rng(0)
    sets = folder / "osie"
    sets.mkdir(parents=True)
    for i in range(n):
        h, w = (90, 120) if i % 2 else (120, 90)
        img = np.zeros((h, w, 3), np.uint8)
        img[: h // 2] = rng.integers(120, 255, 3)  # "sky"
        img[h // 2:] = rng.integers(0, 120, 3)  # "ground"
        cv2.circle(img, (w // 2, int(h * 0.7)), h // 6, tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
        img = (img + rng.normal(0, 8, img.shape)).clip(0, 255).astype(np.uint8)
        cv2.imwrite(str(sets / f"osie_{i:04d}.jpg"), img)
    (folder / "holdout.txt").write_text("osie/osie_0004.jpg\n")


def test_losses_have_the_right_invariances():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(2, 1, 32, 32, generator=g) * 0.5
    mask = torch.ones_like(t)
    mask[:, :, :4] = 0
    # scale and shift of disparity: ssi is blind to both
    pred_disp = 3.0 * torch.exp(t) + 0.7
    assert ssi_disparity(torch.log(pred_disp), t, mask)[0] < 1e-4
    # scale of disparity = shift of log-disparity: the log term and gradient matching are blind to it
    l, r = shift_invariant_log(t + 1.3, t, mask)
    assert l < 1e-5 and gradient_matching(r, mask) < 1e-5
    # but a wrong layout is penalised, and masked pixels are ignored
    assert distill_loss(-t, t, mask)[0] > 0.5
    garbage = t.clone()
    garbage[:, :, :4] = 100.0
    assert distill_loss(garbage, t, mask)[0] < 1e-4
    # the coarse layout's correlation ignores scale and shift, and sees a flipped layout
    from photo3d.train.losses import layout_correlation

    lay = torch.randn(2, 1, 64, 96).cumsum(2)
    full = torch.ones_like(lay, dtype=torch.bool)
    assert layout_correlation(3 * lay + 1, lay, full).item() < 1e-5
    assert layout_correlation(-lay, lay, full).item() > 1.99
    # the per-pixel correlation term (--w-corr) is the hold-out's figure of merit: blind to an affine
    # change of log-disparity, and to masked pixels, not to a wrong map
    base = distill_loss(t + 1.3, t, mask)[0]
    assert distill_loss(2 * garbage + 1.3, t, mask, w_corr=1.0, w_ssi=0, w_log=0, w_grad=0)[1]["corr"] < 1e-5
    assert abs(distill_loss(t + 1.3, t, mask, w_corr=5.0)[0] - base) < 1e-4
    assert distill_loss(-t, t, mask, w_corr=1.0, w_ssi=0, w_log=0, w_grad=0)[0] > 1.99


@pytest.mark.slow
def test_flat_curvature_costs_ripples_on_plain_surfaces_only():
    """``--w-flat``: a ramp (a floor) costs nothing, ripples on a plain surface (a teacher's noise on a
    dark room) cost, the same ripples where the photo changes colour with them cost a tenth as much
    (measured at four scales: ripples a few pixels wide too)."""
    from photo3d.train.losses import flat_curvature

    h, w = 32, 48
    mask = torch.ones(1, 1, h, w)
    plain = torch.full((1, 3, h, w), 0.1)
    ramp = torch.linspace(0, 2, w).expand(1, 1, h, w).contiguous()
    ripples = 0.05 * torch.sin(torch.arange(w) * 1.7).expand(1, 1, h, w).contiguous()
    striped = plain + 0.5 * (ripples > 0).float()  # the photo's colour changes with the ripples
    assert flat_curvature(ramp, plain, mask) < 1e-6
    assert flat_curvature(ripples, plain, mask) > 0.02
    assert flat_curvature(ripples, striped, mask) < 0.15 * flat_curvature(ripples, plain, mask)


def test_pack_keeps_hold_out_photos_out_and_refuses_mistakes_in_one_line(tmp_path, capsys):
    """helper-88: ``--photos`` a set's folder packed that set's hold-out photos (holdout.txt was looked
    for in that folder only), under names a whole pack does not use; a missing --photos packed nothing
    and exited 0; a bad --shard or --teacher was a traceback; a re-run with another second teacher
    mixed one- and two-teacher labels."""
    photos = tmp_path / "photos"
    _photos(photos)
    base = ["--teacher", "prior", "--size", "96", "--fastdepth", "none"]
    sub = tmp_path / "sub"
    assert pack.main(["--out", str(sub), "--photos", str(photos / "osie"), *base]) == 0
    names = [it["name"] for it in json.loads((sub / "index.json").read_text())["items"]]
    assert sorted(names) == [f"osie__osie_{i:04d}" for i in range(4)]  # no osie_0004; a whole pack's names
    capsys.readouterr()
    for args, says in ((["--photos", str(tmp_path / "nope")], "no such folder"), (["--shard", "2"], "--shard must be"),
                       (["--shard", "0/0"], "--shard must be"), (["--teacher", str(tmp_path / "nope")], "--teacher")):
        with pytest.raises(SystemExit) as e:
            pack.main(["--out", str(tmp_path / "b"), "--photos", str(photos), *base, *args])
        err = capsys.readouterr().err
        assert e.value.code == 2 and says in err and "Traceback" not in err, err
    assert not (tmp_path / "b").exists()  # (refused before anything is made)
    index = json.loads((sub / "index.json").read_text())
    (sub / "index.json").write_text(json.dumps({**index, "second_teacher": "fastdepth"}))
    with pytest.raises(SystemExit):  # labels of one teacher added to a bundle of two
        pack.main(["--out", str(sub), "--photos", str(photos), *base])


def test_training_commands_refuse_mistakes_in_one_line(tmp_path, capsys):
    """helper-88: fit --resume with nothing to resume started a new run without a word; fit, qat and
    evaluate met a missing file, an empty bundle or a model given as a checkpoint with a traceback;
    qat --no-default with the bundled model's name replaced the bundled file (its manifest's sha256 left
    behind: the bundled model then failed to load)."""
    from photo3d.train import evaluate

    empty = tmp_path / "empty"
    empty.mkdir()
    bundled = REPO / "photo3d" / "models" / "p3d-s.pt"
    before = modelfile.sha256_file(bundled)
    cases = [
        (fit.main, ["--bundle", str(empty), "--out", str(tmp_path / "r"), "--resume"], "nothing to resume"),
        (fit.main, ["--bundle", str(empty), "--out", str(tmp_path / "r"), "--init-from", str(tmp_path / "no.pt")], "no such file"),
        (fit.main, ["--bundle", str(empty), "--out", str(tmp_path / "r")], "--bundle"),
        (qat.main, ["--ckpt", str(tmp_path / "no.pt"), "--bundle", str(empty), "--name", "x"], "no such file"),
        (qat.main, ["--ckpt", str(bundled), "--bundle", str(empty), "--name", "x"], "not a training checkpoint"),
        (qat.main, ["--ckpt", str(bundled), "--bundle", str(empty), "--no-default"], "bundled model's"),
        (qat.main, ["--ckpt", str(bundled), "--bundle", str(empty), "--models-dir", str(tmp_path / "m")], "bundled model's"),
        (evaluate.main, [str(tmp_path / "no.pt")], "no such file"),
        (evaluate.main, [str(REPO / "README.md"), "--photos", str(REPO / "examples")], "no holdout.txt"),
    ]
    for main, argv, says in cases:
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err + str(e.value.code)
        assert e.value.code not in (0, None) and says in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "r").exists()  # (refused before the run's folder is made)
    assert modelfile.sha256_file(bundled) == before


def test_the_hold_out_cache_is_made_again_for_another_teacher(tmp_path):
    """The hold-out teachers' cache was keyed by file name only: another --teacher or --photos read the
    first one's outputs as its own (helper-88). The cache names its source."""
    from photo3d.train.evaluate import _cached_outputs

    files = [tmp_path / "a.jpg"]
    cv2.imwrite(str(files[0]), np.zeros((8, 8, 3), np.uint8))
    cache = tmp_path / "c" / "cache.npz"
    one = _cached_outputs(files, cache, lambda rgb: np.ones((2, 2)), "teacher A on photos")
    same = _cached_outputs(files, cache, lambda rgb: np.zeros((2, 2)), "teacher A on photos")
    other = _cached_outputs(files, cache, lambda rgb: np.full((2, 2), 2.0), "teacher B on photos")
    assert one["a.jpg"][0, 0] == 1 and same["a.jpg"][0, 0] == 1 and other["a.jpg"][0, 0] == 2


def test_pack_fit_resume_qat(tmp_path):
    photos = tmp_path / "photos"
    _photos(photos)
    teacher = str(SHARED / "data" / "tiefenrausch") if (SHARED / "data" / "tiefenrausch").is_dir() else "prior"
    bundle = tmp_path / "bundle"
    assert pack.main(["--out", str(bundle), "--photos", str(photos), "--teacher", teacher, "--size", "96"]) == 0
    index = json.loads((bundle / "index.json").read_text())
    names = [it["name"] for it in index["items"]]
    assert len(names) == 4 and "osie__osie_0004" not in names  # the hold-out photo is never packed
    for it in index["items"]:
        img = cv2.imread(str(bundle / it["image"]))
        tgt = cv2.imread(str(bundle / it["target"]), cv2.IMREAD_UNCHANGED)
        assert img.shape[:2] == tgt.shape[:2] and img.shape[0] % 32 == 0 and img.shape[1] % 32 == 0
        assert tgt.dtype == np.uint8 and tgt.std() > 0
    if (SHARED / "data" / "fastdepth" / "fastdepth_7.onnx").is_file():  # the second teacher, 16-bit
        for it in index["items"]:
            fd = cv2.imread(str(bundle / it["fd"]), cv2.IMREAD_UNCHANGED)
            tgt = cv2.imread(str(bundle / it["target"]), cv2.IMREAD_UNCHANGED)
            assert fd.dtype == np.uint16 and fd.shape == tgt.shape and it["fd_hi"] > it["fd_lo"]
    # the teacher's map of the mirror image, mirrored back, beside it (the label averages the two)
    for it in index["items"]:
        tgt = cv2.imread(str(bundle / it["target"]), cv2.IMREAD_UNCHANGED)
        mir = cv2.imread(str(bundle / it["target_flip"]), cv2.IMREAD_UNCHANGED)
        assert mir.shape == tgt.shape and mir.dtype == np.uint8 and mir.std() > 0
    # resumable: a second run adds nothing; one with another size or teacher is refused (its labels
    # would mix with the bundle's)
    assert pack.main(["--out", str(bundle), "--photos", str(photos), "--teacher", teacher, "--size", "96"]) == 0
    assert len(json.loads((bundle / "index.json").read_text())["items"]) == 4
    others = [["--teacher", teacher, "--size", "128"]] + ([["--teacher", "prior", "--size", "96"]] if teacher != "prior" else [])
    for other in others:
        with pytest.raises(SystemExit):
            pack.main(["--out", str(bundle), "--photos", str(photos), *other])
    # a bundle packed before the mirrored maps existed gets them on the next run, and only them
    old = json.loads((bundle / "index.json").read_text())
    first = old["items"][0]
    kept = (bundle / first["target_flip"]).read_bytes()
    (bundle / first["target_flip"]).unlink()
    del first["target_flip"]
    (bundle / "index.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="no mirrored label"):
        Bundle(bundle, tr_flip=True)
    assert pack.main(["--out", str(bundle), "--photos", str(photos), "--teacher", teacher, "--size", "96"]) == 0
    again = json.loads((bundle / "index.json").read_text())["items"]
    assert len(again) == 4 and (bundle / again[0]["target_flip"]).read_bytes() == kept
    assert [it["target"] for it in again] == [it["target"] for it in old["items"]]
    plain, mirrored = Bundle(bundle), Bundle(bundle, tr_flip=True)
    assert all(torch.equal(a, b) for a, b in zip(plain.images, mirrored.images))
    if teacher != "prior":  # (the prior, a vertical ramp without ../shared, is its own mirror image)
        assert not all(torch.equal(a, b) for a, b in zip(plain.targets, mirrored.targets))
    # zoomed views: a crop of each photo, labelled by the teachers on that crop, in an index of its own
    zoom = ["--out", str(bundle), "--photos", str(photos), "--teacher", teacher, "--size", "96", "--zoom", "1"]
    assert pack.main(zoom) == 0
    views = json.loads((bundle / "index.z1.json").read_text())["items"]
    assert [it["name"] for it in views] == [f"{n}~z1" for n in names]
    for it, whole in zip(views, again):
        a, b = (cv2.imread(str(bundle / x["image"])) for x in (it, whole))
        assert a.shape[0] % 32 == 0 and a.shape[1] % 32 == 0 and (a.shape != b.shape or np.abs(a.astype(int) - b).mean() > 5)
        assert (bundle / it["target_flip"]).is_file()
    first_view = (bundle / views[0]["image"]).read_bytes()
    (bundle / "index.z1.json").unlink()
    assert pack.main(zoom) == 0  # the same views on every run
    assert (bundle / views[0]["image"]).read_bytes() == first_view
    assert len(Bundle(bundle, tr_flip=True)) == 8
    with pytest.raises(SystemExit):
        pack.main(zoom[:-1] + ["-1"])
    for f in (bundle / "index.z1.json", *(bundle / d / f"{it['name']}.{e}" for it in views
                                          for d, e in (("img", "jpg"), ("tgt", "png"), ("tgt_flip", "png"), ("fd", "png")))):
        f.unlink(missing_ok=True)  # the run below trains on the whole photos

    run = tmp_path / "run"
    common = ["--bundle", str(bundle), "--out", str(run), "--config", "p3d-tiny", "--batch", "2", "--size", "64",
              "--warmup", "2", "--log-every", "1", "--threads", "1"]
    assert fit.main(common + ["--max-steps", "2", "--tr-flip"]) == 0
    ck = fit.load_checkpoint(run / "last.pt")
    assert ck["step"] == 2 and ck["args"]["tr_flip"]
    assert fit.main(common + ["--max-steps", "4", "--resume"]) == 0
    ck2 = fit.load_checkpoint(run / "last.pt")
    assert ck2["step"] == 4
    assert any(not torch.equal(ck["model"][k], ck2["model"][k]) for k in ck["model"])
    log = (run / "log.txt").read_text()
    assert "# resume step 2" in log
    # --freeze-bn: batch-norm statistics stay as they are while the weights still learn
    assert fit.main(common + ["--max-steps", "5", "--resume", "--freeze-bn"]) == 0
    ck3 = fit.load_checkpoint(run / "last.pt")
    stats = [k for k in ck2["model"] if k.endswith("running_mean")]
    assert stats and all(torch.equal(ck2["model"][k], ck3["model"][k]) for k in stats)
    assert any(not torch.equal(ck2["model"][k], ck3["model"][k]) for k in ck3["model"] if k.endswith(".weight"))
    # --tta-train: whole-photo batches also fit the runtime's flip-small average (logged as "tta")
    assert fit.main(common + ["--max-steps", "6", "--resume", "--whole-share", "1", "--whole-size", "64",
                              "--whole-batch", "2", "--tta-train", "0.5"]) == 0
    assert " tta " in (run / "log.txt").read_text().splitlines()[-2] + " "
    # --partner: the first pass is a frozen model's (the bundled one), the network learns the second
    assert fit.main(common + ["--max-steps", "8", "--resume", "--whole-share", "1", "--whole-size", "64",
                              "--whole-batch", "2", "--tta-train", "0.5", "--partner", str(REPO / "photo3d" / "models" / "p3d-s.pt")]) == 0
    assert " tta " in (run / "log.txt").read_text().splitlines()[-2] + " "
    # a resumed run keeps its partner (and its --tta-train), found from any folder
    assert fit.main(common + ["--max-steps", "9", "--resume"]) == 0
    assert json.loads((run / "args.json").read_text())["partner"] == str(REPO / "photo3d" / "models" / "p3d-s.pt")
    assert " tta " in (run / "log.txt").read_text().splitlines()[-2] + " "
    # the shipped weights are the moving average, distinct from the raw ones
    assert set(ck2["ema"]) == set(ck2["model"])
    ema_model, raw_model = fit.model_from_checkpoint(ck2), fit.model_from_checkpoint(ck2, ema=False)
    assert not torch.equal(ema_model.head.weight, raw_model.head.weight)
    # a checkpoint of an older, smaller architecture warm-starts the current one
    old = {k: v for k, v in ck2["model"].items() if not k.startswith("pos.")}
    grown = fit.model_from_checkpoint({**ck2, "model": old, "ema": None}, strict=False)
    assert grown.grown and torch.count_nonzero(grown.pos.weight) == 0

    models = tmp_path / "models"
    assert qat.main(["--ckpt", str(run / "last.pt"), "--bundle", str(bundle), "--name", "smoke",
                     "--models-dir", str(models), "--steps", "2", "--calib", "1", "--batch", "2", "--size", "64",
                     "--check-photos", "2", "--min-agreement", "0", "--threads", "1"]) == 0
    path = models / "smoke.pt"
    manifest = json.loads((models / "manifest.json").read_text())
    assert manifest == {"default": "smoke.pt", "sha256": modelfile.sha256_file(path)}
    modelfile.verify_bundled(path, models)

    from photo3d.depth.runtime import load_model

    model = load_model(path)
    assert model.meta["name"] == "smoke" and model.meta["output"] == "log-disparity"
    rgb = cv2.imread(str(photos / "osie" / "osie_0000.jpg"))[:, :, ::-1].copy()
    d = model.predict(rgb)
    assert d.shape == rgb.shape[:2] and np.isfinite(d).all()
    # post-training quantization (--steps 0): per-channel weights, calibrated on whole photos
    assert qat.main(["--ckpt", str(run / "last.pt"), "--bundle", str(bundle), "--name", "smoke-ptq",
                     "--models-dir", str(models), "--no-default", "--steps", "0", "--calib", "2",
                     "--check-photos", "2", "--min-agreement", "0.9", "--threads", "1"]) == 0
    ptq = load_model(models / "smoke-ptq.pt")
    assert "per-channel" in ptq.meta["quantization"]
    assert np.corrcoef(ptq.predict(rgb).ravel(), d.ravel())[0, 1] > 0.9  # the same network, quantized twice
    # --float-head: the last convolution stays in float (no 256-level output); the runtime runs it,
    # and a warm start reads its float weights as it reads the quantized ones
    assert qat.main(["--ckpt", str(run / "last.pt"), "--bundle", str(bundle), "--name", "smoke-fh",
                     "--models-dir", str(models), "--no-default", "--steps", "0", "--calib", "2", "--float-head",
                     "--check-photos", "2", "--min-agreement", "0.9", "--threads", "1"]) == 0
    fh = load_model(models / "smoke-fh.pt")
    assert fh.meta["quantization"].endswith("float head") and fh.module.head.original_name == "Conv2d"
    assert np.corrcoef(fh.predict(rgb).ravel(), ptq.predict(rgb).ravel())[0, 1] > 0.9
    # --partner: a pair file, the bundled network's pass first (convert's one pass), this export the mirrored one
    bundled = REPO / "photo3d" / "models" / "p3d-s.pt"
    assert qat.main(["--ckpt", str(run / "last.pt"), "--bundle", str(bundle), "--name", "smoke-pair",
                     "--models-dir", str(models), "--no-default", "--steps", "0", "--calib", "2", "--float-head",
                     "--check-photos", "2", "--min-agreement", "0.9", "--threads", "1", "--tta", "flip-small",
                     "--partner", str(bundled)]) == 0
    pair, first = load_model(models / "smoke-pair.pt"), load_model(bundled)
    assert pair.meta["second_net"] is True and pair.meta["second"]["trained_steps"] == fh.meta["trained_steps"]
    np.testing.assert_array_equal(pair.predict_log(rgb, tta="none"), first.predict_log(rgb, tta="none"))
    mirrored = fh.predict_log(rgb[:, ::-1].copy(), tta="none")  # (at 384, not flip-small's 320: only correlated)
    second = 2 * pair.predict_log(rgb) - first.predict_log(rgb, tta="none")
    assert np.corrcoef(second.ravel(), mirrored[:, ::-1].ravel())[0, 1] > 0.8
    # a pair as the partner: its first network runs the first pass
    assert qat.main(["--ckpt", str(run / "last.pt"), "--bundle", str(bundle), "--name", "smoke-pair2",
                     "--models-dir", str(models), "--no-default", "--steps", "0", "--calib", "2",
                     "--check-photos", "2", "--min-agreement", "0.9", "--threads", "1", "--tta", "flip",
                     "--partner", str(models / "smoke-pair.pt")]) == 0
    pair2 = load_model(models / "smoke-pair2.pt")
    np.testing.assert_array_equal(pair2.predict_log(rgb, tta="none"), first.predict_log(rgb, tta="none"))
    warm = fit.model_from_checkpoint(ck2)
    fit.warm_start(warm, models / "smoke-fh.pt", torch.rand(2, 3, 64, 64))
    assert torch.allclose(warm.head.weight, fh.module.head.weight)


@pytest.mark.slow
def test_warm_start_reproduces_the_bundled_model():
    """Training without a checkpoint starts from the shipped INT8 network's function (on the README's
    photo at the runtime's input; at a quarter of that size 8-bit activations alone move it more)."""
    import warnings

    from PIL import Image

    from photo3d.depth.net import DepthNet, NetConfig

    path = modelfile.default_model_path()
    _, meta = modelfile.read_model(path)
    model = DepthNet(NetConfig.from_dict(meta["config"]))
    with Image.open(REPO / "examples" / "coffee.jpg") as im:
        x = torch.from_numpy(np.array(im.convert("RGB").resize((384, 288)))).permute(2, 0, 1)[None].float() / 255
    x = torch.cat([x, x.flip(-1)])
    fit.warm_start(model, path, x)
    model.eval()
    torch.backends.quantized.engine = "qnnpack"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.jit.load(str(path))
        a, b = model(x[:1]).flatten(), q(x[:1]).flatten()
    r = torch.corrcoef(torch.stack([a, b]))[0, 1]
    assert r > 0.95, r


def test_exact_whole_photo_batches_show_the_photo_as_the_teacher_saw_it():
    """fit --whole-exact: no flip, rotation or crop jitter, so a 4:3 photo and its label come back
    pixel for pixel at the runtime's 384x288 (colour augmentation apart); the default jitters them."""
    from photo3d.train.data import AugmentConfig, crop_theta

    g = torch.Generator().manual_seed(0)
    exact = AugmentConfig(size=332, min_crop=1.16, max_crop=1.16, aspect_jitter=0.0, p_rotate=0.0, p_flip=0.0)
    for _ in range(20):
        theta = crop_theta(288, 384, 288, 384, g, exact)
        assert torch.allclose(theta, torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), atol=1e-6)
    jittered = [crop_theta(288, 384, 288, 384, g, AugmentConfig(size=332, min_crop=0.95, max_crop=1.16, p_rotate=0.1))
                for _ in range(20)]
    assert any(t[0, 0] < 0 for t in jittered)  # some flipped
    assert any(not torch.allclose(t.abs(), torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), atol=1e-3) for t in jittered)


@needs_shared
def test_feature_hints_learn_the_teachers_encoder(tmp_path):
    """fit --w-hint: Tiefenrausch's encoder features at 1/16 and 1/32 on the very batch the student sees;
    the 1x1 projections learn them (the hint loss falls below the zero predictor's 1.0), they live only in
    the checkpoint (the shipped network's tensors are those of a run without hints), and a hinted run resumes."""
    from photo3d.depth.net import DepthNet
    from photo3d.train.hints import StudentHints, TeacherEncoder

    teacher = TeacherEncoder(SHARED / "data" / "tiefenrausch")
    assert teacher.channels == [64, 96]
    rgb = cv2.imread(str(SHARED / "data" / "tiefenrausch" / "pumpkin.jpg"))[:, :, ::-1]
    x = torch.from_numpy(cv2.resize(rgb, (384, 288), interpolation=cv2.INTER_AREA).copy()).permute(2, 0, 1)[None] / 255.0
    feats = teacher(x)
    assert [tuple(f.shape) for f in feats] == [(1, 64, 18, 24), (1, 96, 9, 12)]
    assert all(torch.isfinite(f).all() and f.std() > 0 for f in feats)

    torch.manual_seed(0)
    model = DepthNet("p3d-tiny").eval()
    hints = StudentHints(model, teacher.channels)
    opt = torch.optim.Adam(hints.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        with torch.no_grad():
            model(x)
        loss = hints.loss(feats, detach_student=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 < losses[0]

    photos, bundle, run = tmp_path / "photos", tmp_path / "bundle", tmp_path / "run"
    _photos(photos)
    assert pack.main(["--out", str(bundle), "--photos", str(photos), "--teacher", "prior", "--size", "96"]) == 0
    common = ["--bundle", str(bundle), "--out", str(run), "--config", "p3d-tiny", "--batch", "2", "--size", "64",
              "--warmup", "2", "--log-every", "1", "--threads", "1", "--w-hint", "1", "--hint-warmup", "1"]
    assert fit.main(common + ["--max-steps", "2"]) == 0
    ck = fit.load_checkpoint(run / "last.pt")
    assert set(ck["model"]) == set(DepthNet("p3d-tiny").state_dict()) and ck["hints"]
    assert fit.main(common + ["--max-steps", "3", "--resume"]) == 0
    ck2 = fit.load_checkpoint(run / "last.pt")
    assert ck2["step"] == 3 and any(not torch.equal(ck["hints"][k], ck2["hints"][k]) for k in ck["hints"])
    assert " hint " in (run / "log.txt").read_text()


class _Planted:
    """Unpickling this creates the file ``path`` (a stand-in for any code a pickle may run)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_given_as_a_model_or_checkpoint_runs_nothing(tmp_path):
    """``python -m photo3d.train.evaluate MODEL`` tried every file as a checkpoint with
    ``torch.load(weights_only=False)`` before the model checks: a pickle given as a model ran its
    code (a security review, helper-77).  Checkpoints load as weights only."""
    import pickle

    from photo3d.errors import ModelError
    from photo3d.train.evaluate import load_student
    from photo3d.train.fit import load_checkpoint

    planted = tmp_path / "planted"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Planted(planted), "config": "p3d-s"}, evil)
    with pytest.raises(ModelError, match="not TorchScript"):
        load_student(evil)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(evil)
    assert not planted.exists()

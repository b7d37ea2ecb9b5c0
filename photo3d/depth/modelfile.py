"""What a depth model file is: the contract, its metadata, the bundled model and its manifest.

A model file is a TorchScript archive taking float32 (1, 3, H, W) RGB in [0, 1] (H, W multiples
of 32) and returning (1, 1, H, W) log-disparity, with an optional extra file ``photo3d.json``
holding metadata such as ``{"name": ..., "input_size": 384}``.  INT8 models run on QNNPACK.

The bundled model ships inside the package, in ``photo3d/models/`` (package data, found with
:mod:`importlib.resources`): ``manifest.json`` = ``{"default": FILE, "sha256": HEX}`` names it
and holds its checksum, checked whenever that file is loaded.  ``python -m photo3d.train.qat``
writes a new model and manifest there (:func:`save_model`, :func:`write_manifest`).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from importlib import resources
from pathlib import Path

import torch

from ..errors import ModelError

METADATA_FILE = "photo3d.json"  # TorchScript extra file holding the model's metadata
DEFAULT_INPUT_SIZE = 384  # the network's input (longer side) when the metadata names none
MANIFEST = "manifest.json"
MODELS_DIR = Path(str(resources.files("photo3d").joinpath("models")))  # the bundled models

_warned = False


def set_qnnpack() -> None:
    """Select the QNNPACK engine (before packing or loading INT8 weights).

    Also consumes torch 2.13's once-per-process C++ deprecation warning about quantized tensor
    creation here, under a local warnings filter: raised later inside the TorchScript
    interpreter it would bypass Python's filters and print to stderr.
    """
    global _warned
    if "qnnpack" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "qnnpack"
    if not _warned:
        _warned = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.quantize_per_tensor(torch.zeros(1), 1.0, 0, torch.quint8)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- reading and writing model files ---------------------------------------------------------


def save_model(scripted: torch.jit.ScriptModule, path: str | Path, meta: dict) -> Path:
    """Write ``scripted`` with its ``photo3d.json`` metadata atomically."""
    from ..io import atomic_output

    path = Path(path)
    with atomic_output(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(scripted, str(tmp), _extra_files={METADATA_FILE: json.dumps(meta)})
    return path


def read_model(path: Path) -> tuple[torch.jit.ScriptModule, dict]:
    """Load a TorchScript model file: (module in eval mode, metadata dict)."""
    set_qnnpack()
    extra = {METADATA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"not a TorchScript depth model ({msg[:200]})", path) from e
    meta: dict = {}
    text = extra.get(METADATA_FILE) or ""
    if text:
        try:
            meta = json.loads(text)
        except ValueError:
            raise ModelError(f"malformed {METADATA_FILE} metadata in the model", path) from None
        if not isinstance(meta, dict):
            meta = {}
    module.eval()
    return module, meta


# --- the bundled model -----------------------------------------------------------------------


def bundled_model_path(models_dir: Path | None = None) -> Path:
    """The default model file named by ``manifest.json`` (``{"default": file, "sha256": hex}``)."""
    models_dir = MODELS_DIR if models_dir is None else models_dir
    manifest = models_dir / MANIFEST
    try:
        info = json.loads(manifest.read_text())
        return models_dir / info["default"]
    except FileNotFoundError:
        raise ModelError("no bundled depth model (photo3d/models/manifest.json is missing); pass --model FILE "
                         "or train one: python -m photo3d.train.qat", manifest) from None
    except (ValueError, KeyError, TypeError):
        raise ModelError("photo3d/models/manifest.json is malformed (expected {\"default\": file, \"sha256\": hex})",
                         manifest) from None


def default_model_path() -> Path:
    """The bundled model; ModelError with a how-to when absent."""
    models_dir = MODELS_DIR  # looked up at call time (tests point it elsewhere)
    try:
        path = bundled_model_path(models_dir)
    except ModelError:
        if (models_dir / MANIFEST).exists():
            raise  # a malformed manifest says so itself
        path = None
    if path is None or not path.is_file():
        raise ModelError(
            "no bundled depth model yet; pass --model /path/to/tiefenrausch (the folder holding "
            "tiefenrausch.pb and tiefenrausch_init.pb) or --model FILE.pt (a TorchScript model, "
            "e.g. from `photo3d model import`)",
            path or models_dir,
        )
    return path


def verify_bundled(path: Path, models_dir: Path | None = None) -> None:
    """Raise :class:`ModelError` unless ``path``'s sha256 is the one the manifest lists for it.

    Files the manifest does not describe (user models given with --model) are not checked.
    """
    models_dir = MODELS_DIR if models_dir is None else models_dir
    path = Path(path)
    try:
        info = json.loads((models_dir / MANIFEST).read_text())
    except (FileNotFoundError, ValueError):
        return
    if not isinstance(info, dict) or (models_dir / str(info.get("default", ""))).resolve() != path.resolve():
        return
    if not path.is_file():
        raise ModelError("bundled depth model is missing (reinstall photo3d or pass --model FILE)", path)
    digest = sha256_file(path)
    if digest != info.get("sha256"):
        raise ModelError(f"bundled depth model is corrupt or the wrong file: sha256 {digest[:12]}… "
                         f"does not match photo3d/models/manifest.json ({str(info.get('sha256'))[:12]}…)", path)


def write_manifest(model: Path, models_dir: Path | None = None) -> str:
    """Make ``model`` (a file in ``models_dir``) the default: write the manifest; return its sha256."""
    from ..io import write_bytes_atomic

    models_dir = MODELS_DIR if models_dir is None else models_dir
    digest = sha256_file(model)
    info = {"default": model.name, "sha256": digest}
    write_bytes_atomic(models_dir / MANIFEST, (json.dumps(info, indent=1) + "\n").encode())
    return digest

"""What a model file is (photo3d/depth/modelfile.py): the bundled model as package data, its
manifest and checksum."""

from __future__ import annotations

import json
import shutil

import pytest

from photo3d.depth import modelfile, runtime
from photo3d.errors import ModelError


def test_bundled_model_is_package_data():
    path = modelfile.bundled_model_path()
    assert path.parent == modelfile.MODELS_DIR and modelfile.MODELS_DIR.name == "models"
    assert modelfile.MODELS_DIR.parent.name == "photo3d" and (modelfile.MODELS_DIR / "README.md").is_file()
    modelfile.verify_bundled(path)


def test_bundled_checksum_is_checked(tmp_path, monkeypatch, tiny_depth_model):
    good = tmp_path / "good.pt"
    shutil.copy(tiny_depth_model, good)
    modelfile.write_manifest(good, tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"default": "good.pt",
                                                                    "sha256": modelfile.sha256_file(good)}
    monkeypatch.setattr(modelfile, "MODELS_DIR", tmp_path)
    runtime.clear_cache()
    assert modelfile.bundled_model_path(tmp_path) == good
    modelfile.verify_bundled(good, tmp_path)
    assert runtime.load_model().name == "tiny"

    runtime.clear_cache()
    good.write_bytes(good.read_bytes()[:-10] + b"corrupted!")
    for explicit in (None, good):  # the default, and the same file passed as --model
        with pytest.raises(ModelError) as e:
            runtime.load_model(explicit)
        msg = str(e.value)
        assert "good.pt" in msg and "sha256" in msg and "\n" not in msg
    # a file the manifest does not describe (a user's --model) is not checked
    other = tmp_path / "other.pt"
    other.write_bytes(b"x")
    modelfile.verify_bundled(other, tmp_path)
    runtime.clear_cache()


def test_missing_or_malformed_manifest(tmp_path):
    with pytest.raises(ModelError, match="manifest.json is missing"):
        modelfile.bundled_model_path(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="malformed"):
        modelfile.bundled_model_path(tmp_path)

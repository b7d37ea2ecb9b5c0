"""Fixtures.  Plain helpers (paths, CLI runners, test photos, tools) live in ``tests/helpers/``."""

import signal
from pathlib import Path

import pytest

from helpers.paths import SHARED

# A shell that starts the suite in the background (`cmd &` without job control) hands it SIGINT
# ignored, and the CLI subprocesses the Ctrl-C tests interrupt would inherit that. Catch it here:
# a caught signal is reset to the default at exec, so every child gets Python's own Ctrl-C.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_configure(config):
    """pytest gives each test fresh warning filters: photo3d's process-wide filter of torch's
    deprecation notes (``photo3d.errors.LIBRARY_NOISE``, set where torch is imported) as its own."""
    from photo3d.errors import LIBRARY_NOISE

    for message, category in LIBRARY_NOISE:
        config.addinivalue_line("filterwarnings", f"ignore:{message}:{category.__name__}")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip("../shared is absent")
    return SHARED


# --- depth models (helper DEPTH) ------------------------------------------------------------


@pytest.fixture(scope="session")
def tiefenrausch_dir(shared_dir: Path) -> Path:
    """../shared/data/tiefenrausch (Caffe2 .pb files, golden images); skips when absent."""
    d = shared_dir / "data" / "tiefenrausch"
    if not (d / "tiefenrausch.pb").is_file():
        pytest.skip("../shared/data/tiefenrausch is absent")
    return d


@pytest.fixture(scope="session")
def tiefenrausch_pt(tiefenrausch_dir: Path, tmp_path_factory) -> Path:
    """Tiefenrausch converted once per session to a TorchScript file in a temp folder."""
    from photo3d.depth.tiefenrausch import import_tiefenrausch_file

    out = tmp_path_factory.mktemp("models") / "tiefenrausch.pt"
    import_tiefenrausch_file(tiefenrausch_dir, out)
    return out


@pytest.fixture(scope="session")
def tiny_depth_model(tmp_path_factory) -> Path:
    """A trivial TorchScript model that follows the model contract (no ../shared needed):
    log-disparity = 2 × (row position) + brightness, so lower rows are nearer."""
    import json
    import warnings

    import torch

    class Tiny(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = x.shape[2]
            rows = torch.linspace(0.0, 1.0, h).view(1, 1, h, 1)
            return 2.0 * rows + x.mean(dim=1, keepdim=True)

    out = tmp_path_factory.mktemp("models") / "tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(Tiny()), str(out),
                       _extra_files={"photo3d.json": json.dumps({"name": "tiny", "input_size": 128})})
    return out

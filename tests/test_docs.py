"""The README, the model card and ``--help`` say what the code does: every option is documented
with its default and range, the exit codes are complete, the CI command is the README's, and the
bundled model's facts (name, sha256, size) agree everywhere."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
import typer

from helpers.cli import cli
from helpers.paths import REPO
from photo3d import defaults
from photo3d.cli import app
from photo3d.errors import ExitCode

README = (REPO / "README.md").read_text()
CARD = (REPO / "photo3d" / "models" / "README.md").read_text()


def _commands() -> dict:
    """Every command of ``photo3d`` by its path (``""`` for the top level, ``"model import"``)."""
    top = typer.main.get_command(app)
    out = {"": top}
    todo = [("", top)]
    while todo:
        path, cmd = todo.pop()
        for name, sub in getattr(cmd, "commands", {}).items():
            out[f"{path} {name}".strip()] = sub
            todo.append((f"{path} {name}".strip(), sub))
    return out


def _options(cmd) -> dict:
    return {max(p.opts, key=len): p for p in cmd.params if p.param_type_name == "option" and p.name != "help"}


def _context(name: str):
    cmd = _commands()[name]
    return cmd.context_class(cmd, info_name=name)


def _table_row(option: str) -> list[str]:
    """The cells of the README's options table row for ``option`` ("Share it")."""
    rows = [ln for ln in README.splitlines() if ln.startswith("| `") and f"`{option}`" in ln.split("|")[1]]
    assert len(rows) == 1, (option, rows)
    return [c.strip() for c in rows[0].strip("|").split("|")]


def test_the_readme_test_command_is_what_ci_runs():
    block = README.split("Run the tests", 1)[1].split("```bash", 1)[1].split("```", 1)[0].strip()
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1].strip()
    assert block == ci


def test_every_option_of_every_command_is_in_the_readme():
    missing = [f"photo3d {path} {opt}".replace("  ", " ") for path, cmd in _commands().items()
               for opt, p in _options(cmd).items()
               if not any(re.search(rf"(?<![\w-]){name}(?![\w-])", README) for name in p.opts)]
    assert not missing, f"options --help lists but the README does not: {missing}"


def test_every_option_the_readme_names_exists():
    """A ``--name`` in the README is an option of photo3d, or of the benchmark or script its sentence runs."""
    ours = {opt for cmd in _commands().values() for p in _options(cmd).values() for opt in p.opts} | {"--help"}
    scripts = "".join(p.read_text() for d in ("benchmarks", "scripts") for p in (REPO / d).glob("*.py"))
    theirs = set(re.findall(r"""["'](--[a-z][a-z0-9-]*)["']""", scripts))
    ffmpeg = {"--enable-gpl", "--enable-version3"}  # (how imageio-ffmpeg's binary is built)
    pip = {"--index-url"}  # (the quick start's CPU build of torch)
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", "\n".join(re.findall(r"`([^`]+)`", README))))
    assert not named - ours - theirs - ffmpeg - pip


def test_the_options_table_gives_the_codes_defaults_and_ranges():
    opts = _options(_commands()["convert"])
    for option, default in (("--path", defaults.VIDEO_PATH), ("--parallax", defaults.PARALLAX)):
        assert opts[option].default == default
        assert _table_row(option)[1] == (f"`{default}`" if isinstance(default, str) else f"{default:g}")
    assert _table_row("--seconds`, `--fps")[1] == f"{defaults.VIDEO_SECONDS:g}, {defaults.VIDEO_FPS:g}"
    assert _table_row("--format")[1] == "`glb`"
    ranges = {"--parallax": defaults.PARALLAX_RANGE, "--fps": (opts["--fps"].min, opts["--fps"].max),
              "--size": defaults.VIDEO_SIZE_RANGE}
    for option, (lo, hi) in ranges.items():
        row = " ".join(_table_row(option if option != "--fps" else "--seconds`, `--fps"))
        assert re.search(rf"\b{lo:g}\s*[-–]\s*{hi:g}\b", row), (option, lo, hi)
    assert f"≥ {opts['--seconds'].min:g}" in " ".join(_table_row("--seconds`, `--fps"))


def test_size_outside_its_range_is_refused_as_help_and_readme_say(tmp_path):
    lo, hi = defaults.VIDEO_SIZE_RANGE
    r = cli("convert", "--help", width=200)
    assert f"{lo}-{hi}" in r.output
    for size in (lo - 1, hi + 1):
        r = cli("convert", REPO / "examples" / "coffee.jpg", "-o", tmp_path / "x.mp4", "--size", size)
        assert r.exit_code == 2 and f"--size must be a whole number from {lo} to {hi} (pixels), not" in r.output, r.output


def test_numeric_options_show_what_they_accept():
    """Each number option's ``--help`` shows its range: click's ``[x>=…]`` or the help text's own words."""
    for name in ("convert", "depth"):
        for opt, p in _options(_commands()[name]).items():
            if (isinstance(p.default, (int, float)) and not isinstance(p.default, bool)) or opt == "--size":
                record = " ".join(p.get_help_record(_context(name))[1].split())
                assert "x>=" in record or "<=x" in record or re.search(r"\d\s*-\s*\d|> 0|0 = ", record), (name, opt, record)


@pytest.mark.parametrize("marker", ["exit code 0", "Exit code 0", "Exit codes:"])
def test_every_list_of_exit_codes_is_complete(marker):
    """Wherever the README lists exit codes, it lists all of ``errors.ExitCode``."""
    assert marker in README
    for part in README.split(marker)[1:]:
        listed = (marker + part).split("\n\n")[0][:400]
        for code in ExitCode:
            assert re.search(rf"\b{int(code)}\b", listed), (marker, code, listed)


def test_the_bundled_models_facts_agree():
    manifest = json.loads((REPO / "photo3d" / "models" / "manifest.json").read_text())
    model = REPO / "photo3d" / "models" / manifest["default"]
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    assert manifest["sha256"] == digest
    assert f"`{digest}`" in CARD
    size = f"{model.stat().st_size / 1e6:.2f} MB"
    assert CARD.startswith(f"# Bundled depth model: `{manifest['default']}`")
    assert f"`{manifest['default']}` — INT8 TorchScript (QNNPACK), {size}" in CARD
    assert f"`photo3d/models/{manifest['default']}` ({size} INT8 TorchScript" in README


def test_the_default_field_of_view_is_the_cameras():
    """The README's "~N° horizontal on 4:3" for the default 28 mm is what the exported camera has."""
    import math

    from photo3d.export import DEFAULT_FOCAL_35MM, camera_for

    said = re.search(rf"{DEFAULT_FOCAL_35MM:g} mm equivalent \(a phone's main camera, ~(\d+)° horizontal on 4:3\)", README)
    assert said, "the README no longer says the default focal length and its field of view"
    assert int(said.group(1)) == round(math.degrees(camera_for(4000, 3000, None).xfov))


def test_the_commands_table_names_every_output_convert_writes():
    from photo3d.cli import FORMATS
    from photo3d.video import STILL_SUFFIXES

    row = next(ln for ln in README.splitlines() if ln.startswith("| `photo3d convert INPUT... -o OUT` |"))
    missing = [s for s in (*FORMATS, *STILL_SUFFIXES) if s != ".jpeg" and f"`{s}`" not in row]
    assert not missing, missing


def test_the_command_list_says_convert_makes_videos_too():
    """``photo3d --help`` is where a new user looks first: convert's line names its videos, whole
    (click cuts a long line with "..." in an 80-column terminal)."""
    line = next(ln for ln in cli("--help", width=80).output.splitlines() if ln.strip().startswith("convert"))
    assert all(s in line for s in (".glb", ".html", ".mp4", ".gif", ".webp")), line
    assert len(line) <= 78 and "..." not in line, line


def test_h_is_help_everywhere():
    """``-h`` is ``--help`` for photo3d and each command (it said "Error: No such option: -h")."""
    for command in ((), ("convert",), ("depth",), ("model",), ("model", "import")):
        r, long = cli(*command, "-h", width=120), cli(*command, "--help", width=120)
        assert r.exit_code == 0 and r.output == long.output and r.output.startswith("Usage: photo3d"), (command, r.output)


def test_ray_jobs_default_is_what_help_and_readme_say():
    """``--engine ray`` without ``--jobs`` asks for 1 actor (the option's default), ``--jobs 0`` for
    one per cluster CPU: the README said "default one per cluster CPU"."""
    pytest.importorskip("ray")
    from photo3d.batch.run import make_executor

    jobs = _options(_commands()["convert"])["--jobs"]
    assert jobs.default == 1 and "Ray actors" in jobs.help
    assert make_executor("ray", jobs.default)._requested == 1 and make_executor("ray", 0)._requested is None
    assert "`--jobs` = actors: 1 by default, as locally; `--jobs 0` = one per cluster CPU" in README


def test_architecture_names_every_module():
    arch = (REPO / "ARCHITECTURE.md").read_text()
    pkg = REPO / "photo3d"
    modules = [p for d in (pkg, pkg / "depth", pkg / "batch") for p in d.glob("*.py") if not p.name.startswith("__")]
    missing = [str(p.relative_to(REPO)) for p in modules if not re.search(rf"\b{p.stem}(\.py)?\b", arch)]
    assert not missing, missing


def test_the_glb_budget_is_described_in_the_codes_order():
    """The README said "the texture shrinks first, then the mesh coarsens"; the code gives the photo's
    texture a share of the budget, fits the meshes to the rest, then the grid, then the texture."""
    from photo3d.pipeline import MIN_TEXTURE_SIDE, ConvertOptions, fit_to_budget, texture_budget

    share = texture_budget(ConvertOptions()) / defaults.GLB_MAX_BYTES
    said = " ".join(README.split("The GLB's size is budgeted", 1)[1].split("\n\n")[0].split())
    assert f"at most {share:.0%}".replace("%", " %") in said, said
    assert said.index("meshes coarsen") < said.index("geometry grid") < said.index("texture give up more")
    order = fit_to_budget.__doc__
    assert order.index("mesh detail") < order.index("grid resolution") < order.index("texture resolution")
    assert f"never below {MIN_TEXTURE_SIDE} px" in README


def test_model_import_help_says_which_names_it_refuses(tmp_path):
    help_text = " ".join(cli("model", "import", "--help", width=200).output.split())
    assert "(.pt; not named like the bundled model)" in help_text
    manifest = json.loads((REPO / "photo3d" / "models" / "manifest.json").read_text())
    for name in (manifest["default"], "tiefenrausch.onnx"):
        r = cli("model", "import", tmp_path, "-o", tmp_path / name)
        assert r.exit_code == 2 and not (tmp_path / name).exists(), r.output
    # and what the README says --model does with such a file: refused, exit 1 (a model error)
    fake = tmp_path / "fake" / manifest["default"]
    fake.parent.mkdir()
    fake.write_bytes(b"not the bundled model")
    r = cli("depth", REPO / "examples" / "coffee.jpg", "-o", tmp_path / "d.png", "--model", fake)
    assert r.exit_code == 1 and "does not match" in r.output and not (tmp_path / "d.png").exists(), r.output
    assert "which `--model` would refuse (exit 1); either mistake in `-o` is a usage error, exit 2" in README


def test_both_format_options_read_alike():
    """``depth --format`` and ``convert --format`` say the same thing the same way, with the
    depth map's kinds as the README names them (16-bit PNG, float32 npy)."""
    helps = {name: _options(_commands()[name])["--format"].help for name in ("depth", "convert")}
    assert all(h.startswith("Folder outputs: ") for h in helps.values()), helps
    assert "png (16-bit" in helps["depth"] and "npy (float32)" in helps["depth"]
    assert "`.png` 16-bit or `.npy` float32" in README


def test_depth_raw_help_says_what_raw_does_to_a_photos_own_depth():
    """``depth --raw`` writes any depth at its own size (the network's output, or a photo's own depth
    or stereo map: tests/test_embedded.py::test_raw_writes_the_map_at_its_own_size); its help said
    "the network's own output" only, as if a phone's depth map were replaced by the network's."""
    help_text = _options(_commands()["depth"])["--raw"].help
    assert "the network's output, or a photo's own depth or stereo map" in help_text, help_text
    assert "(`--raw`: at the map's own size)" in README


def test_every_test_the_docs_cite_exists():
    """``tests/x.py::test_y`` (or ``::test_y`` after it) in the README names a test that exists."""
    tests = {p.name: p.read_text() for p in (REPO / "tests").glob("test_*.py")}
    cited = re.findall(r"(?:tests/(test_\w+\.py))?::(test_\w+)", README)
    assert cited
    missing = [(f, t) for f, t in cited
               if not (re.search(rf"def {t}\(", tests.get(f, "")) if f else any(f"def {t}(" in s for s in tests.values()))]
    assert not missing, missing

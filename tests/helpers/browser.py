"""Headless Chromium for the viewer tests: ``chromium()`` finds it, ``screenshot()`` renders a page."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
from PIL import Image

from .paths import missing_tool

CHROMIUM_MISSING = "chromium is not installed (installing it with apt-get needs root: sudo apt-get install chromium)"


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        missing_tool(CHROMIUM_MISSING)
    return exe


def screenshot(exe, html, offset, out, profile, size=(480, 360)):
    url = f"file://{html}#offset={offset[0]},{offset[1]}&clear=ff00ff"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--use-gl=angle", "--use-angle=swiftshader",
           "--enable-unsafe-swiftshader", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
           f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=20000", f"--screenshot={out}", url]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert out.is_file(), "chromium wrote no screenshot"
    return np.asarray(Image.open(out).convert("RGB")).astype(int)

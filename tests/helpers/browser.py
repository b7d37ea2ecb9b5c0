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


# The viewer page driven by a test script: requestAnimationFrame becomes a 50-ms timer, or one of
# ``frame_ms`` (headless Chromium's virtual time runs timers, not animation frames); the script runs
# once the viewer has laid out its canvas (``ms(t, fn)``: fn at t ms after that), and ``measure()`` reads the
# canvas' pixels: where the red pixels' centroid is (x right, y up, as shares of the canvas).
_RAF = ("<script>window.requestAnimationFrame = (cb) => "
        "window.photo3dStop ? 0 : setTimeout(() => cb(performance.now()), %s);</script>")
_DRIVER = """<script>
function measure(label) {
  const c = document.querySelector("canvas"), gl = c.getContext("webgl2") || c.getContext("webgl");
  const w = gl.drawingBufferWidth, h = gl.drawingBufferHeight, px = new Uint8Array(w * h * 4);
  gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, px);
  let n = 0, sx = 0, sy = 0;
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const i = 4 * (y * w + x);
    if (px[i] > 170 && px[i + 1] < 80 && px[i + 2] < 80) { n++; sx += x + 0.5; sy += y + 0.5; }
  }
  const r = document.createElement("pre");
  r.className = "photo3d-test";
  r.textContent = JSON.stringify({ label, n, x: sx / n / w, y: sy / n / h });
  document.body.appendChild(r);
}
function done() { window.photo3dStop = true; }
function ms(t, fn) { setTimeout(fn, t); }
(function whenShown() {
  const c = document.querySelector("canvas");
  if (c && c.width !== 300) { %s }  // 300: a canvas' default width, before the viewer's layout
  else setTimeout(whenShown, 50);
})();
</script>"""


def drive(exe, page_html, script, path, profile, flags=(), size=(480, 400), fragment="", frame_ms=50):
    """Open ``page_html`` (a viewer page) with ``script`` run in it (see ``_DRIVER``); the
    ``measure(label)`` results, in order.  (In this mode Chromium's viewport is ``size`` less 143 px
    of height.)"""
    import html
    import json
    import re

    page = page_html.replace("</head>", (_RAF % frame_ms) + "</head>", 1)
    page = page.replace("</body>", (_DRIVER % script) + "</body>", 1)
    path.write_text(page, encoding="utf-8")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--use-gl=angle", "--use-angle=swiftshader",
           "--enable-unsafe-swiftshader", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *flags,
           f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=300000", "--dump-dom",
           f"file://{path}{fragment}"]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False).stdout
    return [json.loads(html.unescape(m)) for m in re.findall(r'<pre class="photo3d-test">(.*?)</pre>', dom)]

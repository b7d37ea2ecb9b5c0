// photo3d offline viewer: loads the inlined GLB and moves the camera for parallax.
// Built into viewer.bundle.js with esbuild (see README.md in this folder).
// The page shows the photo's whole frame (its aspect ratio, up to 21:9 or 9:21 like the videos:
// of a wider panorama the centre), as large as the window allows, centred on black; the view is
// zoomed in just enough that the parallax never shows past the photo's border.
// Controls: the mouse over the page (the view stays where the mouse leaves it; the idle motion
// resumes when the mouse leaves the page), a finger dragged across it (from where the view is:
// a drag moves it, a touch does not throw it to the finger's place), the phone's tilt
// (deviceorientation, in portrait and landscape, 20 degrees from where it rests to the end of the
// range; tilted further, the rest position follows), the arrow keys (a quarter of the range a press;
// 0 or Home re-centres). Without input for a few seconds the view drifts gently (blending into the
// drift from where it was, over IDLE_BLEND_MS), unless the system asks for reduced motion
// (prefers-reduced-motion): then it moves only with input.
// URL hash options (for tests and embedding):
//   #offset=X,Y   fix the camera offset (unit disc, 1 = the file's full parallax); no motion
//   #clear=RRGGBB  clear colour (default 000000)
// Without WebGL the page shows a message instead of staying black; so does a page whose 3D photo
// cannot be read (damaged, cut short: the page's own "opening" line stays, see photo3d/viewer.py),
// or shows only in part (a texture that does not load); otherwise a one-line hint
// ("move the mouse / tilt the phone") fades out after a few seconds (not with #offset). While the
// browser has taken the WebGL context away a message says so; the view comes back with the context.
// The parallax range is the file's (extras.photo3d.parallax.max_offset, set by --parallax).
import { WebGLRenderer, Scene, PerspectiveCamera, Color, Vector3, MathUtils } from "three";
import { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";

const MAX_ASPECT = 21 / 9; // the videos' frames (photo3d/defaults.py MAX_ASPECT)
const IDLE_MS = 2500; // no input this long (and no mouse over the page): the idle motion
const IDLE_BLEND_MS = 3000; // ... takes over this gradually (it lurched: 0.98 -> 0.51 of the range in 0.14 s)
const KEY_STEP = 0.25; // one arrow-key press, in the unit disc
const TILT_DEG = 20; // tilting the phone this far from where it rests: the end of the range
// The view eases toward where the controls send it: each frame it closes 1 - exp(-dt / EASE_MS) of
// the gap, dt the time since the last frame, so the pace is the same at any refresh rate (8 % a
// frame at 60 Hz, as it was tuned; a fixed 8 % a frame ran twice as fast at 120 Hz). A longer gap
// (a hidden tab, a stall) counts as MAX_STEP_MS: the view eases on instead of jumping.
const EASE_MS = 200;
const MAX_STEP_MS = 100;

function decodeBase64(text) {
  const bin = atob(text.replace(/\s+/g, ""));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

// CRC-32 (as zlib's) of the page's 3D photo: base64 that still decodes after an edit or a bad copy
// (a few characters changed) gave a torn picture with no word (helper-101); photo3d/viewer.py writes
// the GLB's CRC-32 beside it
function crc32(buffer) {
  const table = crc32.table || (crc32.table = Int32Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c;
  }));
  const bytes = new Uint8Array(buffer);
  let c = -1;
  for (let i = 0; i < bytes.length; i++) c = table[(c ^ bytes[i]) & 255] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

function hashOptions() {
  const p = new URLSearchParams(location.hash.replace(/^#/, ""));
  const opts = { fixed: null, clear: "000000" };
  if (p.has("offset")) {
    const [x, y] = p.get("offset").split(",").map(Number);
    opts.fixed = { x: x || 0, y: y || 0 };
  }
  if (/^[0-9a-fA-F]{6}$/.test(p.get("clear") || "")) opts.clear = p.get("clear");
  return opts;
}

const NOTE_STYLE = "position:fixed;left:5%;right:5%;margin:0 auto;width:fit-content;padding:.5em 1em;" +
  "border-radius:1em;background:rgba(0,0,0,.55);color:#fff;font:15px/1.4 system-ui,sans-serif;text-align:center;";

const MINE = new WeakSet(); // the canvas and notes of this run (not of the run a saved copy holds)

function note(text, css) {
  const el = document.createElement("div");
  MINE.add(el);
  el.setAttribute("role", "status");
  el.style.cssText = NOTE_STYLE + css;
  el.textContent = text;
  document.body.appendChild(el);
  return el;
}

const DAMAGED = "This 3D photo cannot be shown: the page is damaged or incomplete. Make it again with photo3d.";

// the page's static "opening" line (photo3d/viewer.py) goes once the 3D photo is read, or a note replaces it
function opened() {
  const el = document.getElementById("photo3d-opening");
  if (el) el.remove();
}

// what went wrong, in the page's data-error (for tests) and in a note with this id
function failed(error, id, text, css) {
  document.body.dataset.error = error;
  opened();
  note(text, css).id = id;
}

function damaged(reason, partly) {
  failed("damaged: " + reason, "photo3d-damaged", partly ?
    "Part of this 3D photo could not be read: the page is damaged. Make it again with photo3d." : DAMAGED,
    partly ? "top:1.5em;" : "top:40%;font-size:17px;");
  console.error("photo3d: " + reason);
}

function hasWebGL() {
  try {
    const c = document.createElement("canvas");
    return !!(window.WebGL2RenderingContext && c.getContext("webgl2")); // (three.js draws with WebGL 2 only)
  } catch (e) {
    return false;
  }
}

function noWebGL(reason) {
  failed("webgl: " + reason, "photo3d-no-webgl", "This 3D photo needs WebGL 2, which this browser does not offer. " +
    "Try a current Chrome, Firefox, Safari or Edge, or turn on hardware acceleration.", "top:40%;font-size:17px;");
}

function inDisc(o) {
  const r = Math.hypot(o.x, o.y);
  return r > 1 ? { x: o.x / r, y: o.y / r } : o;
}

// the screen's rotation from the device's natural orientation, in degrees (0, 90, 180, 270)
// The device's orientation as a rotation (device frame to the earth's): W3C's Rz(alpha) Rx(beta) Ry(gamma)
function deviceRotation(alpha, beta, gamma) {
  const r = MathUtils.DEG2RAD;
  const ca = Math.cos(alpha * r), sa = Math.sin(alpha * r), cb = Math.cos(beta * r), sb = Math.sin(beta * r);
  const cg = Math.cos(gamma * r), sg = Math.sin(gamma * r);
  return [[ca * cg - sa * sb * sg, -sa * cb, ca * sg + sa * sb * cg],
    [sa * cg + ca * sb * sg, ca * cb, sa * sg - ca * sb * cg],
    [-cb * sg, sb, cb * cg]];
}

const transpose = (m) => m[0].map((_, j) => m.map((row) => row[j]));
const mul = (a, b) => a.map((row) => b[0].map((_, j) => row[0] * b[0][j] + row[1] * b[1][j] + row[2] * b[2][j]));

// the rotation vector (axis times angle, radians) of a rotation matrix, and back (Rodrigues)
function rotationVector(m) {
  const c = MathUtils.clamp((m[0][0] + m[1][1] + m[2][2] - 1) / 2, -1, 1), t = Math.acos(c);
  const k = t < 1e-6 ? 0.5 : t / (2 * Math.sin(t));
  return [(m[2][1] - m[1][2]) * k, (m[0][2] - m[2][0]) * k, (m[1][0] - m[0][1]) * k];
}

function rotationMatrix(v) {
  const t = Math.hypot(v[0], v[1], v[2]);
  if (t < 1e-9) return [[1, 0, 0], [0, 1, 0], [0, 0, 1]];
  const [x, y, z] = v.map((c) => c / t), c = Math.cos(t), s = Math.sin(t), C = 1 - c;
  return [[c + x * x * C, x * y * C - z * s, x * z * C + y * s],
    [y * x * C + z * s, c + y * y * C, y * z * C - x * s],
    [z * x * C - y * s, z * y * C + x * s, c + z * z * C]];
}

function screenAngle() {
  const a = screen.orientation && typeof screen.orientation.angle === "number" ? screen.orientation.angle : window.orientation;
  return ((Number(a) || 0) % 360 + 360) % 360;
}

// A copy of the page saved as the browser shows it ("Save Page As", complete) holds the canvas and
// notes of the run that drew it: without these, the copy had two canvases side by side, the photo
// half off the window (helper-92)
// (they follow the page's script, so they are parsed only after it ran: removed once the page is)
function clearEarlierRun() {
  const clear = () => {
    for (const el of document.querySelectorAll('canvas[aria-label^="3D photo"], div[id^="photo3d-"]:not(#photo3d-opening)')) {
      if (!MINE.has(el)) el.remove();
    }
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", clear, { once: true });
  else clear();
}

export function start(base64, container = document.body, crc = null) {
  const opts = hashOptions();
  if (!hasWebGL()) return noWebGL("no WebGL context");
  let renderer;
  try {
    renderer = new WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
  } catch (e) {
    return noWebGL(String(e && e.message || e));
  }
  renderer.setClearColor(new Color("#" + opts.clear), 1);
  const canvas = renderer.domElement;
  canvas.setAttribute("role", "img"); // for screen readers: what the canvas shows
  canvas.setAttribute("aria-label", "3D photo" + (document.title ? ": " + document.title : ""));
  container.appendChild(canvas);
  MINE.add(canvas);
  clearEarlierRun();
  const scene = new Scene();
  const camera = new PerspectiveCamera(50, 1, 0.05, 1000);
  const reduceMotion = matchMedia("(prefers-reduced-motion: reduce)");
  // target = base (where the mouse, a finger or the keys put the view) + tilt (the phone's, on top:
  // a drag on a phone that reports its tilt 60 times a second was undone by every reading)
  const state = { meta: null, target: { x: 0, y: 0 }, cur: { x: 0, y: 0 }, base: { x: 0, y: 0 }, tilt: { x: 0, y: 0 },
    lastInput: -1e9, gyro0: null, held: false, lastFrame: null, idleSince: null, drag: null };

  function layout() {
    const W = window.innerWidth, H = window.innerHeight;
    const m = state.meta;
    let w = W, h = H;
    if (m) {
      // the photo's frame, as large as the window allows
      const tx = Math.tan(MathUtils.degToRad(m.fov_x_deg) / 2), ty = Math.tan(MathUtils.degToRad(m.fov_y_deg) / 2);
      const a = MathUtils.clamp(tx / ty, 1 / MAX_ASPECT, MAX_ASPECT);
      if (W / H > a) w = Math.max(1, Math.round(H * a));
      else h = Math.max(1, Math.round(W / a));
      // "cover" that frame with the photo, zoomed in just enough that the parallax never
      // shows what lies beyond the photo's border: the file says how much (photo3d/export.py
      // edge_cover_zoom); a file made before it did gets the old estimate (export.cover_zoom)
      const [lo, hi] = m.parallax.inverse_depth_range;
      const margin = m.parallax.max_offset * (hi - lo) / 2 * 1.15;
      const cz = m.parallax.cover_zoom; // (1 to 20 as photo3d writes it: export.py MAX_COVER_ZOOM)
      const k = typeof cz === "number" && cz >= 1 && cz <= 20 ? cz :
        Math.max(tx / Math.max(tx - margin, 1e-3), ty / Math.max(ty - margin, 1e-3)) * 1.02;
      let halfY = ty / k;
      if (w / h > tx / ty) halfY = tx / k / (w / h);
      camera.fov = MathUtils.radToDeg(2 * Math.atan(halfY));
    }
    // (each time: a browser zoom or a move to another screen changes the pixel ratio, and the
    // picture was drawn at the old one, blurred)
    renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
    renderer.setSize(w, h);
    camera.aspect = w / h;
    camera.updateProjectionMatrix();
  }

  function place(o) {
    const m = state.meta;
    const { x, y } = inDisc(o);
    const t = m.parallax.max_offset;
    camera.position.set(x * t, y * t, 0);
    camera.lookAt(new Vector3(0, 0, -m.parallax.focus_depth));
  }

  function frame(now) {
    // (a move to a screen of another pixel ratio need not fire "resize": checked each frame)
    if (renderer.getPixelRatio() !== Math.min(window.devicePixelRatio || 1, 2)) layout();
    if (opts.fixed) {
      place(opts.fixed);
    } else {
      if (now - state.lastInput > IDLE_MS && !state.held) {
        if (reduceMotion.matches) {
          state.target = { x: state.cur.x, y: state.cur.y }; // no motion without input
        } else {
          if (state.idleSince === null) state.idleSince = { t: now, x: state.cur.x, y: state.cur.y };
          const s = now / 1000, i = state.idleSince;
          const r = MathUtils.clamp((now - i.t) / IDLE_BLEND_MS, 0, 1), w = r * r * (3 - 2 * r);
          state.target = { x: i.x + (0.35 * Math.sin(s * 0.6) - i.x) * w, y: i.y + (0.15 * Math.sin(s * 0.9) - i.y) * w };
        }
      } else {
        state.idleSince = null;
      }
      const dt = state.lastFrame === null ? 1000 / 60 : MathUtils.clamp(now - state.lastFrame, 0, MAX_STEP_MS);
      state.lastFrame = now;
      const k = 1 - Math.exp(-dt / EASE_MS);
      state.cur.x += (state.target.x - state.cur.x) * k;
      state.cur.y += (state.target.y - state.cur.y) * k;
      place(state.cur);
      // settled and not drifting (a mouse resting on the page holds the view; reduced motion): no
      // more frames until something moves (it drew 60 a second of the same view, helper-101); the
      // idle drift is woken when it is due
      const settled = Math.abs(state.target.x - state.cur.x) < 1e-4 && Math.abs(state.target.y - state.cur.y) < 1e-4;
      if (settled && (state.held || reduceMotion.matches || now - state.lastInput <= IDLE_MS)) {
        sleeping = true;
        if (!state.held && !reduceMotion.matches) wakeTimer = setTimeout(wake, state.lastInput + IDLE_MS - now + 20);
      } else {
        requestAnimationFrame(frame);
      }
    }
    renderer.render(scene, camera);
    if (opts.fixed) document.body.dataset.rendered = "1";
  }

  let sleeping = false, wakeTimer = null; // (see frame: no frames while nothing moves)
  function wake() {
    clearTimeout(wakeTimer);
    wakeTimer = null;
    if (!sleeping || opts.fixed || !state.meta) return;
    sleeping = false;
    state.lastFrame = null; // (the pause is no step of the easing)
    requestAnimationFrame(frame);
  }
  reduceMotion.addEventListener("change", wake);

  function aim() {
    state.target = inDisc({ x: state.base.x + state.tilt.x, y: state.base.y + state.tilt.y });
    state.lastInput = performance.now();
    wake();
  }

  function input(base, hold) {
    state.base = inDisc(base);
    aim();
    if (hold !== undefined) state.held = hold;
  }

  // where the view is now, less the tilt: a drag or a key press goes on from there
  const here = () => ({ x: state.cur.x - state.tilt.x, y: state.cur.y - state.tilt.y });

  // The browser may take the WebGL context away (a GPU reset or driver update, too many pages
  // with WebGL) and give it back later. three.js claims it back (preventDefault on the loss) and
  // rebuilds its GPU state on the restore; the page says what happened meanwhile (the canvas is
  // blank), and draws again once the context is back (the animation loop does; a fixed offset,
  // drawn once, is drawn here).
  let lostNote = null;
  canvas.addEventListener("webglcontextlost", (e) => {
    e.preventDefault();
    canvas.style.visibility = "hidden"; // (the browser draws a lost context white, a broken-image icon on it; helper-121)
    if (!lostNote) {
      lostNote = note("The 3D view was interrupted by the browser's graphics. " +
        "It comes back by itself; if it does not, reload the page.", "top:40%;font-size:17px;");
      lostNote.id = "photo3d-context-lost";
    }
  });
  canvas.addEventListener("webglcontextrestored", () => {
    canvas.style.visibility = "";
    if (lostNote) lostNote.remove();
    lostNote = null;
    if (state.meta) { layout(); if (opts.fixed) frame(0); else wake(); }
  });

  // a resize before the GLB is parsed only lays out: there is nothing to place or draw yet
  window.addEventListener("resize", () => { layout(); if (opts.fixed && state.meta) frame(0); else wake(); });
  // a fixed offset, or a settled view, draws no frames of its own: a new pixel ratio (which need not
  // fire "resize") is looked for four times a second (it stayed blurred, helper-92)
  setInterval(() => {
    if (state.meta && renderer.getPixelRatio() !== Math.min(window.devicePixelRatio || 1, 2)) {
      if (opts.fixed) frame(0);
      else wake();
    }
  }, 250);
  window.addEventListener("pointermove", (e) => {
    // a mouse holds the view where it is (its place in the window is the view's); a finger (or pen)
    // moves the view by how far it is dragged, and lets go when it lifts
    if (e.pointerType === "mouse") {
      input({ x: (e.clientX / window.innerWidth) * 2 - 1, y: 1 - (e.clientY / window.innerHeight) * 2 }, true);
    } else if (state.drag && state.drag.id === e.pointerId) {  // (the first finger's: a second one, a pinch, is not a drag)
      const d = state.drag;
      input({ x: d.x + (e.clientX - d.cx) / window.innerWidth * 2, y: d.y - (e.clientY - d.cy) / window.innerHeight * 2 }, false);
    }
  });
  window.addEventListener("pointerdown", (e) => {
    if (e.pointerType !== "mouse" && !state.drag) state.drag = { id: e.pointerId, cx: e.clientX, cy: e.clientY, ...here() };
  });
  for (const ev of ["pointerup", "pointercancel"]) {
    window.addEventListener(ev, (e) => { if (state.drag && state.drag.id === e.pointerId) state.drag = null; });
  }
  document.addEventListener("mouseout", (e) => { if (!e.relatedTarget) { state.held = false; state.lastInput = performance.now(); wake(); } });
  window.addEventListener("blur", () => { state.held = false; wake(); });
  window.addEventListener("keydown", (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const step = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] }[e.key];
    const from = state.held ? state.base : here(); // (not where the idle motion is heading)
    if (step) input({ x: from.x + step[0] * KEY_STEP, y: from.y + step[1] * KEY_STEP }, true);
    else if (e.key === "0" || e.key === "Home") input({ x: 0, y: 0 }, true);
    else return;
    e.preventDefault();
  });
  window.addEventListener("deviceorientation", (e) => {
    if (e.beta == null || e.gamma == null) return;
    const angle = screenAngle();
    // the turn since the rest position, from the whole orientation (alpha too: a phone held upright in
    // landscape and turned sideways turns mostly in alpha, and beta and gamma alone saw a fifth of it)
    const R = deviceRotation(e.alpha || 0, e.beta, e.gamma);
    if (!state.gyro0 || state.gyro0.angle !== angle) state.gyro0 = { R, angle };
    const w = rotationVector(mul(transpose(state.gyro0.R), R)); // about the device's x, y, z axes at rest
    // the rest position follows a turn beyond the range (a phone picked up from a table, held
    // another way): the view stays at the range's end and comes back with the first turn back
    const lim = TILT_DEG * MathUtils.DEG2RAD;
    const held = [MathUtils.clamp(w[0], -lim, lim), MathUtils.clamp(w[1], -lim, lim), w[2]];
    if (held[0] !== w[0] || held[1] !== w[1]) state.gyro0.R = mul(R, transpose(rotationMatrix(held)));
    const db = held[0] * MathUtils.RAD2DEG, dg = held[1] * MathUtils.RAD2DEG;
    // a turn about the screen's up axis moves the view sideways, about its right axis up and down;
    // the device's x axis (beta) and y axis (gamma) are the screen's as the screen is rotated
    const [sx, sy] = { 0: [dg, -db], 90: [db, dg], 180: [-dg, db], 270: [-db, -dg] }[Math.round(angle / 90) % 4 * 90];
    const tilt = { x: sx / TILT_DEG, y: sy / TILT_DEG };
    if (Math.abs(tilt.x - state.tilt.x) < 1e-6 && Math.abs(tilt.y - state.tilt.y) < 1e-6) {
      // the same reading again (Safari sends them many times a second): still input, which holds
      // the view, but nothing moved, so no frame (it drew one a reading; helper-121)
      state.lastInput = performance.now();
      return;
    }
    state.tilt = tilt;
    aim();
  });
  window.addEventListener("click", () => {
    const D = window.DeviceOrientationEvent;
    if (D && typeof D.requestPermission === "function") D.requestPermission().catch(() => {});
  }, { once: true });

  let changed = false; // the 3D photo's bytes differ from what photo3d wrote (see crc32)
  const loaded = (gltf) => {
    const extras = (gltf.parser.json.extras || {}).photo3d;
    if (!extras || !extras.parallax) return damaged("no photo3d metadata in the 3D photo");
    // a texture that did not decode (a page cut near its end) leaves its layer white: said
    const want = (gltf.parser.json.materials || []).filter((m) => (m.pbrMetallicRoughness || {}).baseColorTexture).length;
    const have = new Set();
    gltf.scene.traverse((o) => { if (o.material && o.material.map && o.material.map.image) have.add(o.material); });
    // (none at all: the photo cannot be shown, not "part of" it; a white frame said "Part of", helper-92)
    if (want && !have.size) return damaged(`none of its ${want} textures loaded`);
    // (the photo's own texture, on the first layer, gone: a white frame said "Part of", helper-101)
    let first = null;
    gltf.scene.traverse((o) => { if (!first && o.isMesh) first = o; });
    if (first && !have.has(first.material)) return damaged("the photo's texture did not load");
    if (have.size < want) damaged(`${want - have.size} of ${want} textures did not load`, true);
    else if (changed) damaged("its data do not match their checksum", true);
    state.meta = extras;
    scene.add(gltf.scene);
    opened();
    layout();
    requestAnimationFrame(frame);
    if (!opts.fixed) {
      const touch = matchMedia("(pointer: coarse)").matches;
      const show = (tap) => {
        const hint = note(touch ? (tap ? "Tap, then tilt the phone, or drag a finger to look around" :
          "Tilt the phone or drag a finger to look around") : "Move the mouse or press the arrow keys to look around",
          "bottom:1.5em;transition:opacity 1.5s;opacity:1;pointer-events:none;");
        hint.id = "photo3d-hint";
        setTimeout(() => { hint.style.opacity = "0"; }, 3500);
        setTimeout(() => hint.remove(), 5500);
      };
      // Safari on iOS reports the tilt only once the page has asked, on a tap (the click above): its
      // request without a tap is refused. Chromium offers the same request and grants it at once: no
      // tap to ask for there (its hint said "Tap, then tilt")
      const D = window.DeviceOrientationEvent;
      if (touch && D && typeof D.requestPermission === "function") {
        Promise.resolve().then(() => D.requestPermission()).then((s) => show(s !== "granted"), () => show(true));
      } else {
        show(false);
      }
    }
  };
  const broken = (e) => damaged(String(e && e.message || e));
  try {  // (base64 that does not decode, a JSON chunk that does not parse: thrown here, not through the callback)
    const glb = decodeBase64(base64);
    changed = crc !== null && crc32(glb) !== crc;  // (said once drawn, unless a worse note came first)
    new GLTFLoader().parse(glb, "", (gltf) => { try { loaded(gltf); } catch (e) { broken(e); } }, broken);
  } catch (e) {
    broken(e);
  }
}

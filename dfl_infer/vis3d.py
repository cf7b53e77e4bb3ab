"""The 3D view (``dfl-infer ... --vis3d view.html``): one self-contained HTML page showing the
hands' 3D joints in the camera frame (millimetres), rotatable with the mouse, with a frame slider
when there are several frames (a folder of images, the frames of a clip).

The page needs no network: its script is inline (a canvas and a perspective projection written
here, no library) and the joints are inline JSON. :class:`View3D` collects the frames one by
one (a clip's predictions as they come; a frame costs a few kilobytes), :func:`write_view3d`
writes a whole sequence at once.

Page parameters, after ``#`` in its address (``view.html#frame=3&yaw=90``): ``frame`` (0-based),
``yaw`` and ``pitch`` (degrees; 0, 0 is the camera's own view, yaw 90 looks from the side with
depth growing to the right, as the overlays' inset does).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dfl_infer._atomic import atomic_path
from dfl_infer.joints import HAND_BONES
from dfl_infer.results import Prediction
from dfl_infer.vis import CONFIDENCE_RAMP, HAND_COLOURS

# In every page's head: a file without it is not ours to replace (files.check_outputs).
GENERATOR = "dfl-infer 3D view"


def is_view3d(path: str | Path) -> bool:
    """Whether ``path`` is a 3D view page that dfl-infer wrote (its generator tag says so)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2048)
    except OSError:
        return False
    return f'<meta name="generator" content="{GENERATOR}">'.encode() in head


def _hex(rgb: Sequence[int]) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in rgb)


def frame_record(prediction: Prediction | None, label: str = "") -> dict[str, Any]:
    """One frame of the page's data: its label and, per hand whose 3D joints are all finite,
    handedness, score, joints (21, 3) mm (camera frame, rounded to 0.1 mm) and per-joint
    confidence (or null). A frame without a prediction (a failed image) has no hands."""
    hands = []
    for hand in prediction.hands if prediction is not None else ():
        if not np.isfinite(hand.joints_3d).all():
            continue
        conf = hand.joint_confidence
        hands.append(
            {
                "handedness": hand.handedness,
                "score": round(float(hand.score), 3) if np.isfinite(hand.score) else None,
                "joints": np.round(np.asarray(hand.joints_3d, np.float64), 1).tolist(),
                "confidence": (
                    np.round(np.asarray(conf, np.float64), 3).tolist()
                    if conf is not None and np.isfinite(conf).all()
                    else None
                ),
            }
        )
    return {"label": label, "hands": hands}


class View3D:
    """The frames of one 3D view page, added one at a time; :meth:`html` gives the page and
    :meth:`write` writes it (atomically). ``title``: the page's title; ``fps``: the frame rate
    the play button uses (default 10)."""

    def __init__(self, title: str = "dfl-infer 3D view", fps: float | None = None) -> None:
        self.title = title
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 10.0
        self.frames: list[dict[str, Any]] = []

    def add(self, prediction: Prediction | None, label: str = "") -> None:
        """Append one frame (None: a frame that produced nothing)."""
        self.frames.append(frame_record(prediction, label))

    def html(self) -> str:
        data = {
            "frames": self.frames,
            "fps": self.fps,
            "bones": [list(b) for b in HAND_BONES],
            "colours": {k: _hex(v) for k, v in HAND_COLOURS.items()},
            "ramp": [_hex(c) for c in CONFIDENCE_RAMP],
        }
        payload = json.dumps(data, allow_nan=False, separators=(",", ":"))
        # Inside <script>, "</script>" in a label would end the element: escape what HTML sees.
        payload = payload.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        return (
            _PAGE.replace("__TITLE__", html.escape(self.title))
            .replace("__DATA__", payload)
            .replace("__GENERATOR__", GENERATOR)
            .replace("__SCRIPT__", _SCRIPT)
        )

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        text = self.html()
        with atomic_path(path, suffix=".html") as tmp:
            tmp.write_text(text, encoding="utf-8")
        return path


def write_view3d(
    path: str | Path,
    predictions: Iterable[Prediction | None],
    labels: Sequence[str] | None = None,
    title: str = "dfl-infer 3D view",
    fps: float | None = None,
) -> Path:
    """Write the 3D view of ``predictions`` (one frame each, in order; None for a frame that
    produced nothing) to ``path``; ``labels``: one per frame (an image's path, a frame's time)."""
    view = View3D(title, fps)
    predictions = list(predictions)
    if labels is not None and len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels for {len(predictions)} frames")
    for k, prediction in enumerate(predictions):
        view.add(prediction, labels[k] if labels is not None else f"frame {k}")
    return view.write(path)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="__GENERATOR__">
<title>__TITLE__</title>
<style>
html, body { margin: 0; height: 100%; background: #151515; color: #ddd;
  font: 14px system-ui, sans-serif; overflow: hidden; }
#bar { position: fixed; left: 0; right: 0; bottom: 0; padding: 6px 10px; background: #222;
  display: flex; gap: 10px; align-items: center; }
#slider { flex: 1; accent-color: #999; }  /* never a hand's colour */
#info { position: fixed; left: 10px; top: 8px; pointer-events: none; }
#help { position: fixed; right: 10px; top: 8px; color: #999; pointer-events: none; }
canvas { display: block; cursor: grab; }
button { background: #333; color: #ddd; border: 1px solid #555; border-radius: 3px; }
</style>
</head>
<body>
<canvas id="view"></canvas>
<div id="info"></div>
<div id="help">drag: rotate &middot; wheel: zoom &middot; double-click: camera view</div>
<div id="bar"><button id="play">play</button><input id="slider" type="range" min="0" value="0">
<span id="frame"></span></div>
<script type="application/json" id="data">__DATA__</script>
<script>
__SCRIPT__
</script>
</body>
</html>
"""

# The viewer. Camera frame: x right, y down, z forward (mm). The view orbits the centre of all
# joints of all frames (so motion between frames shows), yaw about the vertical axis and pitch
# about the horizontal one; yaw 0, pitch 0 looks along +z like the camera.
_SCRIPT = r"""
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const canvas = document.getElementById("view"), ctx = canvas.getContext("2d");
const slider = document.getElementById("slider"), bar = document.getElementById("bar");
const info = document.getElementById("info"), frameText = document.getElementById("frame");
const params = new URLSearchParams(location.hash.slice(1));
const deg = Math.PI / 180;
let yaw = (parseFloat(params.get("yaw")) || 0) * deg;
let pitch = (parseFloat(params.get("pitch")) || 0) * deg;
let zoom = 1;
let frame = Math.max(0, Math.min(D.frames.length - 1, parseInt(params.get("frame")) || 0));
let timer = null;

// The centre and size of the scene, over every frame.
let lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
for (const f of D.frames) for (const h of f.hands) for (const p of h.joints)
  for (let k = 0; k < 3; k++) { lo[k] = Math.min(lo[k], p[k]); hi[k] = Math.max(hi[k], p[k]); }
const empty = !(lo[0] <= hi[0]);
const centre = empty ? [0, 0, 500] : lo.map((v, k) => (v + hi[k]) / 2);
const radius = empty ? 150
  : Math.max(75, 0.5 * Math.hypot(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]));
const floorY = empty ? centre[1] + radius : hi[1] + 0.1 * radius;

function rotate(p) {  // camera-frame mm -> view coordinates around the centre
  const x = p[0] - centre[0], y = p[1] - centre[1], z = p[2] - centre[2];
  const cy = Math.cos(yaw), sy = Math.sin(yaw), cp = Math.cos(pitch), sp = Math.sin(pitch);
  const x1 = cy * x + sy * z, z1 = cy * z - sy * x;  // yaw 90: depth to the right
  return [x1, cp * y - sp * z1, sp * y + cp * z1];
}
function project(p) {  // view coordinates -> [screen x, screen y, depth]
  const dist = 4 * radius, w = canvas.width, h = canvas.height;
  const f = zoom * 0.42 * Math.min(w, h) * (dist - radius) / radius;
  const q = rotate(p), s = f / Math.max(1e-3, q[2] + dist);
  return [w / 2 + q[0] * s, h / 2 + q[1] * s, q[2]];
}
function mix(a, b, t) {
  const pa = parseInt(a.slice(1), 16), pb = parseInt(b.slice(1), 16), out = [];
  for (const shift of [16, 8, 0])
    out.push(Math.round(((pa >> shift) & 255) * (1 - t) + ((pb >> shift) & 255) * t));
  return "rgb(" + out.join(",") + ")";
}
function confColour(c) {  // the overlays' ramp: red (0), yellow (0.5), white (1)
  if (c === null || c === undefined) return D.ramp[2];
  c = Math.max(0, Math.min(1, c));
  return c < 0.5 ? mix(D.ramp[0], D.ramp[1], c * 2) : mix(D.ramp[1], D.ramp[2], c * 2 - 1);
}
function line(a, b, colour, width) {
  ctx.strokeStyle = colour; ctx.lineWidth = width;
  ctx.beginPath(); ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.stroke();
}
function text(s, p, colour) { ctx.fillStyle = colour; ctx.fillText(s, p[0] + 4, p[1] - 4); }

function drawGrid() {  // a floor under the hands, 5 cm squares
  const step = 50, n = Math.ceil(radius / step) + 1;
  const cx = Math.round(centre[0] / step) * step, cz = Math.round(centre[2] / step) * step;
  const at = (x, z) => project([cx + x * step, floorY, cz + z * step]);
  for (let k = -n; k <= n; k++) {
    line(at(k, -n), at(k, n), "#2c2c2c", 1);
    line(at(-n, k), at(n, k), "#2c2c2c", 1);
  }
  const o = project([centre[0], floorY, centre[2]]), len = 0.6 * radius;
  const axes = [[[len, 0, 0], "x"], [[0, -len, 0], "-y (up)"], [[0, 0, -len], "to camera"]];
  ctx.font = "12px system-ui, sans-serif";
  for (const [d, name] of axes) {
    const e = project([centre[0] + d[0], floorY + d[1], centre[2] + d[2]]);
    line(o, e, "#777", 1.5); text(name, e, "#999");
  }
}

function draw() {
  const w = window.innerWidth, h = window.innerHeight - bar.offsetHeight;
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  ctx.fillStyle = "#151515"; ctx.fillRect(0, 0, w, h);
  drawGrid();
  const f = D.frames[frame] || {label: "", hands: []};
  const items = [];  // bones and joints of every hand, drawn far to near
  for (const hand of f.hands) {
    const colour = D.colours[hand.handedness] || "#ccc";
    const p = hand.joints.map(project);
    for (const [a, b] of D.bones)
      items.push({z: (p[a][2] + p[b][2]) / 2, bone: [p[a], p[b]], colour});
    p.forEach((q, j) => items.push({z: q[2] - 1, joint: q, colour,
      fill: confColour(hand.confidence ? hand.confidence[j] : null)}));
    const wrist = p[p.length - 1];
    items.push({z: -Infinity, label: (hand.handedness[0] || "?").toUpperCase() + " " +
      (hand.score === null ? "" : hand.score.toFixed(2)), at: wrist, colour});
  }
  items.sort((a, b) => b.z - a.z);
  const size = Math.max(3, Math.min(w, h) / 160);
  ctx.font = "bold 14px system-ui, sans-serif";
  for (const it of items) {
    if (it.bone) line(it.bone[0], it.bone[1], it.colour, size);
    else if (it.joint) {
      ctx.beginPath(); ctx.arc(it.joint[0], it.joint[1], size * 1.1, 0, 2 * Math.PI);
      ctx.fillStyle = it.fill; ctx.fill();
      ctx.lineWidth = 1.5; ctx.strokeStyle = it.colour; ctx.stroke();
    } else text(it.label, it.at, it.colour);
  }
  const n = D.frames.length;
  info.textContent = (f.label || "") + (f.hands.length ? "" : "  (no hands)");
  frameText.textContent = n > 1 ? "frame " + (frame + 1) + " / " + n : "";
}

bar.style.display = D.frames.length > 1 ? "flex" : "none";
slider.max = String(Math.max(0, D.frames.length - 1));
slider.value = String(frame);
slider.addEventListener("input", () => { frame = parseInt(slider.value); draw(); });
document.getElementById("play").addEventListener("click", (e) => {
  if (timer) { clearInterval(timer); timer = null; e.target.textContent = "play"; return; }
  e.target.textContent = "pause";
  timer = setInterval(() => {
    frame = (frame + 1) % D.frames.length; slider.value = String(frame); draw();
  }, 1000 / D.fps);
});
let drag = null;
canvas.addEventListener("pointerdown", (e) => {
  drag = [e.clientX, e.clientY]; canvas.setPointerCapture(e.pointerId);
});
canvas.addEventListener("pointerup", () => { drag = null; });
canvas.addEventListener("pointermove", (e) => {
  if (!drag) return;
  yaw += (e.clientX - drag[0]) * 0.01;
  pitch = Math.max(-1.5, Math.min(1.5, pitch - (e.clientY - drag[1]) * 0.01));
  drag = [e.clientX, e.clientY]; draw();
});
canvas.addEventListener("wheel", (e) => {
  e.preventDefault(); zoom *= Math.exp(-e.deltaY * 0.001); draw();
}, {passive: false});
canvas.addEventListener("dblclick", () => { yaw = 0; pitch = 0; zoom = 1; draw(); });
window.addEventListener("keydown", (e) => {
  const n = D.frames.length;
  if (e.key === "ArrowRight") frame = Math.min(n - 1, frame + 1);
  else if (e.key === "ArrowLeft") frame = Math.max(0, frame - 1);
  else return;
  slider.value = String(frame); draw();
});
window.addEventListener("resize", draw);
draw();
"""

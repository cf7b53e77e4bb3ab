"""Start-up: how long a cold ``dfl-infer one.jpg --out j.json`` takes, and where the time goes.

Each run is a fresh Python process (the detector bundle already cached, files in the OS page
cache after the first run). Three rows, interleaved run by run so that machine load hits them
alike, median (min) over ``--repeats`` runs:

- ``dfl-infer CLI``: the whole command, wall time from process start to the written file;
- ``dfl-infer, by stage`` (a child script): ``import dfl_infer``, ``DFLPredictor()`` (weights
  loaded), the detector loaded (MediaPipe's task file), the first image predicted and its JSON
  written; whether PyTorch was imported by then;
- ``MediaPipe alone``: ``import mediapipe``, ``HandLandmarker`` created from the same bundle, the
  same image detected (the reference: what a user of MediaPipe alone waits for).

Both dfl-infer rows are measured for each of ``--backends`` (default ``auto,torch``: the
default, which runs the weights' shipped ``model.onnx`` in onnxruntime without importing PyTorch,
and PyTorch itself).

    python benchmarks/startup.py [--image examples/real_96_pic00002.jpg] [--weights DIR]
        [--backends auto,torch] [--repeats 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

_STAGES = r"""
import json, sys, time
t0 = time.perf_counter()
import dfl_infer
from dfl_infer import DFLPredictor
t1 = time.perf_counter()
p = DFLPredictor(sys.argv[3] or None, device="cpu", backend=sys.argv[4])
t2 = time.perf_counter()
p.detector.load()
t3 = time.perf_counter()
pred = p.predict(sys.argv[1])
with open(sys.argv[2], "w") as f:
    json.dump(pred.to_dict(), f)
t4 = time.perf_counter()
times = {"import": t1 - t0, "weights": t2 - t1, "detector": t3 - t2, "first image": t4 - t3}
times["backend"] = p.backend
times["torch"] = "torch" in sys.modules
print(json.dumps(times))
"""

_MEDIAPIPE = r"""
import json, sys, time
t0 = time.perf_counter()
import mediapipe as mp
from mediapipe.tasks.python import BaseOptions, vision
t1 = time.perf_counter()
options = vision.HandLandmarkerOptions(
    base_options=BaseOptions(model_asset_path=sys.argv[2]), num_hands=2
)
landmarker = vision.HandLandmarker.create_from_options(options)
t2 = time.perf_counter()
landmarker.detect(mp.Image.create_from_file(sys.argv[1]))
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "detector": t2 - t1, "first image": t3 - t2}))
"""


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", default=str(ROOT / "examples" / "real_96_pic00002.jpg"))
    parser.add_argument("--weights", default="", help="default: the package's default model")
    parser.add_argument("--backends", default="auto,torch", help="DFLPredictor backends")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from dfl_infer.bundle import resolve_bundle

    bundle = str(resolve_bundle(allow_download=False))
    cli = [sys.executable, "-m", "dfl_infer.cli"]
    backends = args.backends.split(",")
    labels = {}
    for backend in backends:
        labels[f"cli/{backend}"] = f"dfl-infer CLI, --backend {backend}"
        labels[f"stages/{backend}"] = f"dfl-infer by stage, backend={backend}"
    labels["mediapipe"] = "MediaPipe alone"
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in labels}
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "j.json")
        weights = ["--weights", args.weights] if args.weights else []
        for _ in range(args.repeats + 1):  # the first round warms the page cache, not counted
            for backend in backends:
                cmd = [*cli, args.image, "--out", out, "--force", "-q", "--backend", backend]
                wall, _ = timed([*cmd, *weights])
                rows[f"cli/{backend}"].append({"total": wall})
                cmd = [sys.executable, "-c", _STAGES, args.image, out, args.weights, backend]
                wall, stdout = timed(cmd)
                rows[f"stages/{backend}"].append({**json.loads(stdout), "total": wall})
            wall, stdout = timed([sys.executable, "-c", _MEDIAPIPE, args.image, bundle])
            rows["mediapipe"].append({**json.loads(stdout), "total": wall})
    runs = {name: r[1:] for name, r in rows.items()}

    print(
        f"{Path(args.image).name}, {args.repeats} cold runs each (interleaved); "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at the end"
    )
    print("\nSeconds, median (min); total = wall time of the whole process.\n")
    stages = ["import", "weights", "detector", "first image", "total"]
    print("| row | " + " | ".join(stages) + " | ran | PyTorch imported |")
    print("| --- |" + " ---: |" * len(stages) + " --- | --- |")
    summary: dict[str, dict[str, Any]] = {}
    for name, label in labels.items():
        cells = []
        summary[name] = {}
        for stage in stages:
            values = [r[stage] for r in runs[name] if stage in r]
            if values:
                summary[name][stage] = [statistics.median(values), min(values)]
                cells.append(f"{statistics.median(values):.2f} ({min(values):.2f})")
            else:
                cells.append("-")
        ran = {str(r["backend"]) for r in runs[name] if "backend" in r}
        torch_seen = {bool(r["torch"]) for r in runs[name] if "torch" in r}
        summary[name]["ran"] = sorted(ran)
        extra = [
            ", ".join(sorted(ran)) or "-",
            {True: "yes", False: "no"}.get(torch_seen.pop(), "-") if len(torch_seen) == 1 else "-",
        ]
        print(f"| {label} | " + " | ".join(cells + extra) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()

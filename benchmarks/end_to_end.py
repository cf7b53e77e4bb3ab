"""Per-image time of the whole ``DFLPredictor`` pipeline on CPU, stage by stage, and its peak RSS.

Stages, each timed per image (median over the images, after a warm-up image):
- decode: ``load_image`` of a JPEG file (Pillow + EXIF);
- detect: MediaPipe ``HandLandmarker`` (the detector's own time, reported beside the rest);
- crop: the affine warps to 256x256, tensor conversion and normalization (inside the network
  batches, minus the network itself);
- model: the network's forward passes (one or two per image: a lone or missed hand gets a second,
  tighter crop): the ``DFLModel`` call inside the torch runner, or the ``session.run`` calls (one
  per crop) inside the onnxruntime runner;
- lift+other: planning, 2.5D -> 3D lifting, deduplication, building the result.

Random weights (speed does not depend on them), saved to a temp folder and loaded like real ones;
``--configs default`` loads the shipped default weights instead (``weights/``): with the detector
on, the number of network passes depends on what the network finds, so the default model's
figures need its real weights.
Each preset and backend runs in a fresh child process so that its peak RSS (``VmHWM``, see
_memory.py) is its own. ``--backends auto,torch,onnxruntime`` measures each preset with each
``DFLPredictor(backend=...)`` (onnxruntime needs ``pip install 'dfl-infer[onnx]'``;
``--compile`` applies to torch only). ``auto`` is the predictor's default: with the default
weights it runs their shipped ``model.onnx`` in onnxruntime without importing PyTorch (the
table says which backend ran and whether PyTorch was loaded); ``onnxruntime`` exports the
PyTorch model instead: the graph is exported beforehand by this script into a temporary cache
folder (``DFL_CACHE_DIR``; the user's cache is untouched), so the export counts in neither the
timings nor the child's peak RSS.

    python benchmarks/end_to_end.py [--configs r18,r50] [--backends auto,torch,onnxruntime]
        [--images N | --dir DIR] [--box] [--hand-pass on,off] [--flip-test off,on]
        [--detection-confidence 0.3,0.05] [--json PATH]

Generated images: 640x480 JPEGs of noise and drawn shapes (no hands: MediaPipe finds none and
the predictor takes its whole-image path). ``--dir shared/data/wild`` uses real photos instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _memory import peak_rss_mib  # the sibling module (scripts run from benchmarks/)

# Targets of tracker issue 6 for CPU (2 cores), then default model (r18).
CPU_TARGET_MS_PER_IMAGE = 200.0
CPU_TARGET_PEAK_RSS_GIB = 1.5
# Targets of tracker issue 16 for the default weights (mphand), CPU (2 cores), detector on.
DEFAULT_TARGET_MS_PER_IMAGE = 150.0
DEFAULT_TARGET_X_DETECTOR = 2.0  # end to end / MediaPipe's own time, same images, same run
DEFAULT_TARGET_PEAK_RSS_MIB = 600.0
STAGES = ("decode", "detect", "crop", "model", "lift+other", "total")
BACKENDS = ("auto", "torch", "onnxruntime")


def make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` 640x480 JPEGs: smooth noise plus random filled ellipses and rectangles."""
    import cv2

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        img = cv2.resize(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8), (640, 480))
        for _ in range(8):
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            c = (int(rng.integers(0, 640)), int(rng.integers(0, 480)))
            if rng.random() < 0.5:
                axes = (int(rng.integers(10, 120)), int(rng.integers(10, 120)))
                cv2.ellipse(img, c, axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
            else:
                d = (c[0] + int(rng.integers(10, 200)), c[1] + int(rng.integers(10, 200)))
                cv2.rectangle(img, c, d, color, -1)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        path = folder / f"synth_{i:04d}.jpg"
        cv2.imwrite(str(path), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


class _Timer:
    """Accumulates the time spent inside a wrapped callable."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.fn(*a, **k)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


def random_model(name: str) -> Any:
    """Preset ``name`` with the random weights every run uses (seed 0), so that the graph this
    script exports is the one the child's predictor finds in the cache; ``default``: the shipped
    default weights."""
    import torch

    from dfl_infer.model import DFLConfig, DFLModel

    if name == "default":
        from dfl_infer.predictor import default_weights

        return DFLModel.from_pretrained(default_weights()).eval()
    torch.manual_seed(0)
    return DFLModel(getattr(DFLConfig, name)()).eval()


def run_child(args: argparse.Namespace) -> dict[str, Any]:
    """One preset and backend, in this process: load, warm up, time every stage per image."""
    from dfl_infer.backends import OnnxRuntimeRunner, TorchRunner, default_threads
    from dfl_infer.cache import default_cache_dir
    from dfl_infer.image import load_image
    from dfl_infer.predictor import DFLPredictor

    backend = args.child_backend
    onnx_dir = default_cache_dir() / "onnx"  # a temporary folder: main() sets DFL_CACHE_DIR
    onnx_before = set(os.listdir(onnx_dir)) if onnx_dir.is_dir() else set()
    with tempfile.TemporaryDirectory() as tmp:
        weights: Path | str = Path(tmp) / "weights"
        if args.config == "default":
            from dfl_infer.predictor import default_weights

            weights = default_weights()
        else:
            random_model(args.config).save_pretrained(weights)
        rss_before = peak_rss_mib()
        predictor = DFLPredictor(
            weights=weights,
            device="cpu",
            compile=args.compile,
            backend=backend,
            hand_pass=args.child_hand_pass == "on",
            flip_test=args.child_flip_test == "on",
        )
        onnx_exported = onnx_dir.is_dir() and set(os.listdir(onnx_dir)) != onnx_before
        if args.channels_last and predictor.backend == "torch":
            import torch

            predictor.model.to(memory_format=torch.channels_last)
        paths = sorted(Path(args.dir).iterdir()) if args.dir else []
        if not args.dir:
            paths = make_images(Path(tmp), args.images)
        paths = [p for p in paths if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
        if args.limit:
            paths = paths[: args.limit]
        box = (100.0, 60.0, 420.0, 380.0) if args.box else None
        if box is None and args.child_detection_confidence:
            from dfl_infer.detect import HandDetector

            predictor._detector = HandDetector(
                min_detection_confidence=float(args.child_detection_confidence)
            )
        if box is None:
            predictor.detector.load()
            predictor._detector = _TimedDetector(predictor.detector)
        # predictor._net is the backend's runner: it normalizes the crops, runs the network and
        # converts the outputs. "model" times the network alone, inside the runner; the runner's
        # own work counts in "crop", as it did when the predictor normalized the crops itself.
        runner = predictor._net
        if isinstance(runner, TorchRunner):
            net = runner._net = _Timer(runner._net)
        elif isinstance(runner, OnnxRuntimeRunner):
            net = runner.session.run = _Timer(runner.session.run)
        else:
            raise TypeError(f"unknown runner {type(runner).__name__}")
        batches = predictor._net = _Timer(runner)  # its calls: the network passes per image
        run = predictor._run = _Timer(predictor._run)
        per_image: list[dict[str, float]] = []
        for k, path in enumerate([paths[0], *paths]):  # the first image warms everything up
            net.seconds = run.seconds = 0.0
            batches.calls = 0
            det_seconds = 0.0
            t0 = time.perf_counter()
            rgb = load_image(path)
            t1 = time.perf_counter()
            pred = predictor.predict(rgb, box=box)
            t2 = time.perf_counter()
            if box is None:
                det_seconds = predictor._detector.pop_seconds()
            stages = {
                "decode": t1 - t0,
                "detect": det_seconds,
                "crop": run.seconds - net.seconds,
                "model": net.seconds,
                "lift+other": (t2 - t1) - det_seconds - run.seconds,
                "total": t2 - t0,
                "passes": float(batches.calls),
                "hands": float(len(pred.hands)),
            }
            if k > 0:
                per_image.append(stages)
        rss = peak_rss_mib()
        predictor.close()
    med = {s: 1e3 * statistics.median(im[s] for im in per_image) for s in STAGES}
    mean = {s: 1e3 * statistics.fmean(im[s] for im in per_image) for s in STAGES}
    return {
        "config": args.config,
        "backend": backend,
        "ran": predictor.backend,
        "torch_imported": "torch" in sys.modules,
        "mode": "box" if args.box else "detector",
        "images": len(per_image),
        "source": args.dir or "generated 640x480",
        "median_ms": med,
        "mean_ms": mean,
        "passes_per_image": statistics.fmean(im["passes"] for im in per_image),
        "hands_per_image": statistics.fmean(im["hands"] for im in per_image),
        "peak_rss_mib": rss,
        "rss_before_predictor_mib": rss_before,
        "threads": (
            sys.modules["torch"].get_num_threads() if "torch" in sys.modules else default_threads()
        ),
        "channels_last": bool(args.channels_last),
        "compile": bool(args.compile),
        "onnx_exported_in_run": onnx_exported,
    }


def _probability_text(text: str) -> bool:
    """Whether ``text`` is a number in [0, 1]."""
    try:
        return 0.0 <= float(text) <= 1.0
    except ValueError:
        return False


class _TimedDetector:
    def __init__(self, detector: Any) -> None:
        self.detector, self.seconds = detector, 0.0

    def detect(self, rgb: np.ndarray) -> Any:
        t0 = time.perf_counter()
        try:
            return self.detector.detect(rgb)
        finally:
            self.seconds += time.perf_counter() - t0

    def pop_seconds(self) -> float:
        s, self.seconds = self.seconds, 0.0
        return s

    def close(self) -> None:
        self.detector.close()


def loadavg() -> list[str]:
    try:
        return open("/proc/loadavg").read().split()[:3]
    except OSError:
        return []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="r18,r50", help="comma-separated presets")
    p.add_argument(
        "--backends",
        default="torch",
        help="comma-separated DFLPredictor backends: auto, torch and/or onnxruntime (default: "
        "torch)",
    )
    p.add_argument("--images", type=int, default=8, help="generated images to time")
    p.add_argument("--dir", help="time these photos instead of generated ones")
    p.add_argument("--limit", type=int, default=0, help="at most this many images of --dir")
    p.add_argument("--box", action="store_true", help="give a box: skip the detector")
    p.add_argument("--compile", action="store_true", help="DFLPredictor(compile=True), torch only")
    p.add_argument("--channels-last", action="store_true", help="force channels_last weights")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument(
        "--hand-pass",
        default="on",
        help="DFLPredictor(hand_pass=...): on (default), off, or on,off for both side by side",
    )
    p.add_argument(
        "--flip-test",
        default="off",
        help="DFLPredictor(flip_test=...): off (default), on, or off,on for both side by side",
    )
    p.add_argument(
        "--detection-confidence",
        default="",
        metavar="C[,C...]",
        help="MediaPipe's min_detection_confidence, one run per value side by side (default: "
        "HandDetector's)",
    )
    # Child mode: one preset and backend, JSON on stdout.
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--child-backend", default="torch", help=argparse.SUPPRESS)
    p.add_argument("--child-hand-pass", default="on", help=argparse.SUPPRESS)
    p.add_argument("--child-flip-test", default="off", help=argparse.SUPPRESS)
    p.add_argument("--child-detection-confidence", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.config:
        print(json.dumps(run_child(args)))
        return 0
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        print(
            f"end_to_end: --backends takes {' and/or '.join(BACKENDS)}, got {args.backends!r}",
            file=sys.stderr,
        )
        return 2
    if "onnxruntime" in backends:
        missing = [m for m in ("onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
        if missing:
            print(
                f"end_to_end: backend onnxruntime needs {' and '.join(missing)}: "
                "pip install 'dfl-infer[onnx]'",
                file=sys.stderr,
            )
            return 2
    switches = {}
    for option in ("hand_pass", "flip_test"):
        given = getattr(args, option)
        switches[option] = [h.strip() for h in given.split(",") if h.strip()]
        if not switches[option] or any(h not in ("on", "off") for h in switches[option]):
            flag = "--" + option.replace("_", "-")
            print(f"end_to_end: {flag} takes on and/or off, got {given!r}", file=sys.stderr)
            return 2
    confidences = [c.strip() for c in args.detection_confidence.split(",") if c.strip()] or [""]
    bad = [c for c in confidences if c and not _probability_text(c)]
    if bad:
        print(
            f"end_to_end: --detection-confidence takes values in [0, 1], got {bad}",
            file=sys.stderr,
        )
        return 2
    results = []
    load_start = loadavg()
    print(f"load average at start: {load_start}; {os.cpu_count()} CPUs")
    header = f"{'config':7} {'backend (ran)':25} {'mode':8} {'hand pass':9} {'flip test':9} "
    header += f"{'detect >=':9} "
    header += " ".join(f"{s:>10}" for s in STAGES) + f" {'passes':>6} {'peak RSS MiB':>12} torch"
    print(header)
    # The children export and load ONNX graphs in a temporary cache folder (the user's cache is
    # untouched) and find the detector bundle where it is now.
    from dfl_infer.backends import exported_model
    from dfl_infer.bundle import ENV_BUNDLE, resolve_bundle
    from dfl_infer.cache import ENV_CACHE_DIR

    if not args.box:
        os.environ[ENV_BUNDLE] = str(resolve_bundle())
    with tempfile.TemporaryDirectory(prefix="dfl-e2e-cache-") as cache:
        os.environ[ENV_CACHE_DIR] = cache
        runs = [
            (n, b, h, f, c)
            for n in args.configs.split(",")
            for b in backends
            for h in switches["hand_pass"]
            for f in switches["flip_test"]
            for c in confidences
        ]
        for name, backend, hand_pass, flip_test, confidence in runs:
            cmd = [sys.executable, __file__, "--config", name.strip()]
            cmd += ["--images", str(args.images), "--child-backend", backend]
            cmd += ["--child-hand-pass", hand_pass, "--child-flip-test", flip_test]
            cmd += ["--child-detection-confidence", confidence]
            flags = ["box", "channels_last"] + (["compile"] if backend == "torch" else [])
            for flag in flags:
                if getattr(args, flag):
                    cmd.append("--" + flag.replace("_", "-"))
            if args.dir:
                cmd += ["--dir", args.dir, "--limit", str(args.limit)]
            if backend == "onnxruntime":  # export here: neither timed nor in the child's RSS
                exported_model(random_model(name.strip()), Path(cache) / "onnx")
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(out.stderr[-3000:], file=sys.stderr)
                return 1
            res = json.loads(out.stdout.strip().splitlines()[-1])
            res["loadavg_after"] = loadavg()
            res["hand_pass"] = hand_pass
            res["flip_test"] = flip_test
            res["detection_confidence"] = confidence or "default"
            results.append(res)
            ran = f"{res['backend']} ({res['ran']})"
            print(
                f"{res['config']:7} {ran:25} {res['mode']:8} {hand_pass:9} {flip_test:9} "
                f"{confidence or 'default':9} "
                + " ".join(f"{res['median_ms'][s]:10.1f}" for s in STAGES)
                + f" {res['passes_per_image']:6.2f} {res['peak_rss_mib']:12.0f} "
                + ("yes" if res["torch_imported"] else "no"),
                flush=True,
            )
    print("(median ms per image over", results[0]["images"], "images;", results[0]["source"], ")")
    for res in results:
        if res["config"] == "r18":
            tot, rss = res["median_ms"]["total"], res["peak_rss_mib"] / 1024
            print(
                f"target r18 CPU ({res['backend']}) <= {CPU_TARGET_MS_PER_IMAGE:.0f} ms/image: "
                f"{tot:.0f} ms "
                f"({'met' if tot <= CPU_TARGET_MS_PER_IMAGE else 'MISSED'}); peak RSS <= "
                f"{CPU_TARGET_PEAK_RSS_GIB} GiB: {rss:.2f} GiB "
                f"({'met' if rss <= CPU_TARGET_PEAK_RSS_GIB else 'MISSED'})"
            )
        if res["config"] == "default" and res["mode"] == "detector":
            tot, det = res["median_ms"]["total"], res["median_ms"]["detect"]
            rss = res["peak_rss_mib"]
            ok = {
                "ms": tot <= DEFAULT_TARGET_MS_PER_IMAGE,
                "x": tot <= DEFAULT_TARGET_X_DETECTOR * det,
                "rss": rss <= DEFAULT_TARGET_PEAK_RSS_MIB,
            }
            verdict = {k: "met" if v else "MISSED" for k, v in ok.items()}
            print(
                f"target default CPU ({res['backend']} -> {res['ran']}, hand pass "
                f"{res['hand_pass']}, flip test {res['flip_test']}): "
                f"<= {DEFAULT_TARGET_MS_PER_IMAGE:.0f} ms/image: {tot:.0f} ms ({verdict['ms']}); "
                f"<= {DEFAULT_TARGET_X_DETECTOR:.0f}x "
                f"MediaPipe alone ({det:.0f} ms): {tot / det:.2f}x ({verdict['x']}); "
                f"peak RSS <= {DEFAULT_TARGET_PEAK_RSS_MIB:.0f} MiB: {rss:.0f} MiB "
                f"({verdict['rss']})"
            )
    print(f"load average at end: {loadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"loadavg_start": load_start, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

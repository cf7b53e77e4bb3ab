"""Tracking and smoothing on a synthetic clip with ground truth: MPJPE, jitter and how many
frames keep both hands, per frame (no tracking) against tracked, each without smoothing, with
the causal One-Euro filter and with the offline smoother.

    python benchmarks/video.py [--clip clip.mp4] [--mesh DIR] [--frames N] [--weights W]
        [--max-missed N] [--flip-test] [--detection-confidence C] [--json PATH]

Without ``--clip`` the clip is made first (``dfl-train synth-clip``, seed 0, 150 frames, 512x512;
the WebXR hand of ``../shared`` when present, else ``--mesh``, else procedural hands) into a
temporary folder. The predictor runs twice over the clip (``predict_video(track=False)`` and
``track=True`` with ``--max-missed``, no smoothing); the smoothers then run on those results,
as ``--smooth`` would.

Columns, per configuration:
- both hands: frames where a right and a left hand are reported / where both are also on the
  right hand of the truth (mean 2D joint error under 30% of that hand's 2D size);
- hands: reported hands matched to the truth by side (the highest-scoring hand of each side,
  a hand the network found before a tracked one it did not); coasting: how many of them a
  track reported while the network did not find its hand (``Hand.coasting``);
- MPJPE: root-relative 3D joint error (``joints_3d_rel`` against the truth, mm), InterHand2.6M's
  protocol, over the reported hands; 2D: mean joint error in pixels;
- jitter: mean joint acceleration |x[t+1] - 2 x[t] + x[t-1]| of the root-relative 3D joints
  (mm/frame^2) and of the 2D joints (px/frame^2), over triples of consecutive frames that all
  have the hand; the truth's own row shows what the motion itself contributes.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dfl_infer.joints import HANDS
from dfl_infer.lift import relative_to_wrist
from dfl_infer.results import Prediction
from dfl_infer.smooth import CausalSmoother, SmoothParams, smooth_offline

REPO = Path(__file__).resolve().parent.parent
SHARED_MESH = REPO.parent / "shared" / "assets" / "hand-mesh" / "webxr-generic-hand"
CORRECT_2D = 0.3  # a reported hand is "on" the true hand below this 2D error / hand size


def _hand(pred: Prediction | None, side: str) -> Any:
    if pred is None:
        return None
    found = [h for h in pred.hands if h.handedness == side and np.isfinite(h.joints_3d).all()]
    rank = lambda h: (h.coasting == 0, h.score if np.isfinite(h.score) else -np.inf)  # noqa: E731
    return max(found, key=rank) if found else None


def _series(preds: list[Prediction | None], side: str) -> tuple[np.ndarray, np.ndarray]:
    """(T, 21, 3) root-relative 3D and (T, 21, 2) 2D joints of ``side``, NaN where absent."""
    j3 = np.full((len(preds), 21, 3), np.nan)
    j2 = np.full((len(preds), 21, 2), np.nan)
    for t, pred in enumerate(preds):
        hand = _hand(pred, side)
        if hand is not None:
            j3[t], j2[t] = hand.joints_3d_rel, hand.joints_2d
    return j3, j2


def _jitter(series: np.ndarray) -> float:
    acc = np.linalg.norm(series[2:] - 2 * series[1:-1] + series[:-2], axis=-1)  # NaN if absent
    acc = acc[np.isfinite(acc).all(axis=1)]
    return float(acc.mean()) if len(acc) else float("nan")


def evaluate(preds: list[Prediction | None], gt: dict[str, Any]) -> dict[str, Any]:
    frames = gt["frames"][: len(preds)]
    both = both_ok = hands = coasting = 0
    err3: list[float] = []
    err2: list[float] = []
    jit3: list[float] = []
    jit2: list[float] = []
    for h, side in enumerate(HANDS):
        truth2 = np.array([f["hands"][h]["joints_2d"] for f in frames])
        truth3 = relative_to_wrist(np.array([f["hands"][h]["joints_3d"] for f in frames]))
        j3, j2 = _series(preds, side)
        have = np.isfinite(j3).all(axis=(1, 2))
        hands += int(have.sum())
        coasting += sum(bool(getattr(_hand(p, side), "coasting", 0)) for p in preds)
        err3.extend(np.linalg.norm(j3[have] - truth3[have], axis=-1).mean(1).tolist())
        err2.extend(np.linalg.norm(j2[have] - truth2[have], axis=-1).mean(1).tolist())
        jit3.append(_jitter(j3))
        jit2.append(_jitter(j2))
    for t, pred in enumerate(preds):
        found = [_hand(pred, side) for side in HANDS]
        if all(f is not None for f in found):
            both += 1
            ok = True
            for h, f in enumerate(found):
                truth = np.array(frames[t]["hands"][h]["joints_2d"])
                size = float(np.ptp(truth, axis=0).max())
                ok &= float(np.linalg.norm(f.joints_2d - truth, axis=-1).mean()) < CORRECT_2D * size
            both_ok += ok
    return {
        "frames": len(preds),
        "both_hands": both,
        "both_hands_correct": both_ok,
        "hands": hands,
        "coasting_hands": coasting,
        "mpjpe_mm": float(np.mean(err3)) if err3 else float("nan"),
        "error_2d_px": float(np.mean(err2)) if err2 else float("nan"),
        "jitter_mm": float(np.nanmean(jit3)),
        "jitter_px": float(np.nanmean(jit2)),
    }


def truth_row(gt: dict[str, Any], n: int) -> dict[str, Any]:
    frames = gt["frames"][:n]
    jit3, jit2 = [], []
    for h in range(2):
        j3 = relative_to_wrist(np.array([f["hands"][h]["joints_3d"] for f in frames]))
        jit3.append(_jitter(j3))
        jit2.append(_jitter(np.array([f["hands"][h]["joints_2d"] for f in frames])))
    return {"jitter_mm": float(np.mean(jit3)), "jitter_px": float(np.mean(jit2))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, help="a clip made by dfl-train synth-clip")
    parser.add_argument("--mesh", type=Path, help="hand mesh for making the clip")
    parser.add_argument("--frames", type=int, default=150, help="frames to make / to use")
    parser.add_argument("--size", type=int, default=512, help="frame side when making the clip")
    parser.add_argument("--weights", help="weights folder or Hub id (default: the package's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--max-missed", type=int, default=5, help="the tracker's max_missed (dfl-infer's default 5)"
    )
    parser.add_argument("--flip-test", action="store_true", help="DFLPredictor(flip_test=True)")
    parser.add_argument(
        "--detection-confidence",
        type=float,
        default=None,
        metavar="C",
        help="MediaPipe's min_detection_confidence (default: HandDetector's)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.max_missed < 0:
        parser.error(f"--max-missed must be 0 or more, got {args.max_missed}")

    from dfl_infer import DFLPredictor

    tmp = tempfile.TemporaryDirectory(prefix="dfl-video-bench-")
    clip = args.clip
    if clip is None:
        from dfl_infer.training.synth.clip import make_clip

        mesh = args.mesh or (SHARED_MESH if SHARED_MESH.is_dir() else None)
        print(f"making the clip (mesh: {mesh or 'procedural'}) ...", file=sys.stderr)
        clip, _ = make_clip(Path(tmp.name) / "clip.mp4", args.frames, args.size, mesh=mesh)
    gt = json.loads(clip.with_name(clip.stem + ".gt.json").read_text())
    detector = None
    if args.detection_confidence is not None:
        from dfl_infer.detect import HandDetector

        detector = HandDetector(min_detection_confidence=args.detection_confidence)
    predictor = DFLPredictor(
        weights=args.weights, device=args.device, flip_test=args.flip_test, detector=detector
    )
    runs: dict[str, list[Prediction | None]] = {}
    seconds: dict[str, float] = {}
    for name, track in (("per frame", False), ("tracked", True)):
        start = time.perf_counter()
        preds = []
        for result in predictor.predict_video(clip, track=track, max_missed=args.max_missed):
            preds.append(result.prediction)
            if len(preds) >= args.frames:
                break
        seconds[name] = time.perf_counter() - start
        runs[name] = preds
        print(f"{name}: {len(preds)} frames in {seconds[name]:.0f} s", file=sys.stderr)
    fps = float(gt["fps"])
    params = SmoothParams()
    rows = []
    for name, preds in runs.items():
        causal = CausalSmoother(params, fps)
        variants = {
            "none": preds,
            "causal": [None if p is None else causal(p, t / fps) for t, p in enumerate(preds)],
            "offline": smooth_offline(preds, params)[0],
        }
        for smooth, smoothed in variants.items():
            rows.append({"detection": name, "smooth": smooth, **evaluate(smoothed, gt)})
    truth = truth_row(gt, len(runs["tracked"]))

    n = rows[0]["frames"]
    print(
        f"\nclip: {clip.name}, {n} frames, seed {gt.get('seed')}; max_missed {args.max_missed};"
        f" min_detection_confidence {predictor.detector.min_detection_confidence:g};"
        f" params {params.to_dict()}"
    )
    head = "| detection | smoothing | both hands (on the truth) | hands | coasting | MPJPE mm |"
    print(head + " 2D px | jitter mm/frame² | jitter px/frame² |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['detection']} | {r['smooth']} | {r['both_hands']} ({r['both_hands_correct']})"
            f" of {n} | {r['hands']} of {2 * n} | {r['coasting_hands']} | {r['mpjpe_mm']:.1f} |"
            f" {r['error_2d_px']:.1f} | {r['jitter_mm']:.2f} | {r['jitter_px']:.2f} |"
        )
    print(
        f"| ground truth | | {n} of {n} | {2 * n} of {2 * n} | | 0 | 0 |"
        f" {truth['jitter_mm']:.2f} | {truth['jitter_px']:.2f} |"
    )
    machine = f"{platform.machine()} {platform.processor()}, python {platform.python_version()}"
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": rows,
                    "truth": truth,
                    "max_missed": args.max_missed,
                    "min_detection_confidence": predictor.detector.min_detection_confidence,
                    "seconds": seconds,
                    "machine": machine,
                },
                indent=1,
            )
        )
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

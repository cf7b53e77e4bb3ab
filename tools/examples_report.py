"""What the whole pipeline reports on ``examples/``: one row per photo, checked against the
ground truth where an ``<name>.gt.json`` exists (the synthetic examples).

For each photo: MediaPipe's detections (before the predictor's own checks), the hands reported
(side, presence score, handedness score) and, for each ground truth hand, the 2D error of the
reported hand *of the same side* (mean over the 21 joints, in % of the true hand's box: a hand
reported on the wrong side, or not at all, shows as missing). With ``--overlays DIR`` it also
writes each photo's overlay there, for looking at.

    python tools/examples_report.py [--images examples] [--weights weights/] [--overlays DIR]
        [--flip-test] [--detection-confidence C]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dfl_infer import DFLPredictor
from dfl_infer.detect import HandDetector, detect_hands
from dfl_infer.image import IMAGE_SUFFIXES, load_image


def gt_hands(path: Path) -> dict[str, np.ndarray]:
    """side -> (21, 2) true 2D joints, from ``<name>.gt.json`` beside the photo ({} if none)."""
    gt_path = path.with_suffix(".gt.json")
    if not gt_path.is_file():
        return {}
    doc = json.loads(gt_path.read_text())
    return {h["handedness"]: np.asarray(h["joints_2d"], dtype=np.float64) for h in doc["hands"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, default=Path("examples"))
    parser.add_argument("--weights", default=None, help="default: the shipped model")
    parser.add_argument("--overlays", type=Path, default=None)
    parser.add_argument("--flip-test", action="store_true", help="DFLPredictor(flip_test=True)")
    parser.add_argument(
        "--detection-confidence",
        type=float,
        default=None,
        metavar="C",
        help="MediaPipe's min_detection_confidence (default: HandDetector's)",
    )
    args = parser.parse_args()
    detector = None
    if args.detection_confidence is not None:
        detector = HandDetector(min_detection_confidence=args.detection_confidence)
    predictor = DFLPredictor(
        weights=args.weights, device="cpu", flip_test=args.flip_test, detector=detector
    )
    print(
        "| photo | MediaPipe's detections (side, handedness score) "
        "| hands reported (side, score, side score) | 2D error vs truth, same side |"
    )
    print("|---|---|---|---|")
    for path in sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        rgb = load_image(path)
        detections = detect_hands(predictor.detector, rgb)
        (pred,) = predictor.predict_batch([rgb], detections=[detections])  # detected once
        detected = ", ".join(f"{d.handedness} {d.score:.2f}" for d in detections)
        reported = ", ".join(
            f"{h.handedness} {h.score:.2f} "
            f"{'-' if h.handedness_score is None else f'{h.handedness_score:.2f}'}"
            for h in pred.hands
        )
        errors = []
        for side, truth in gt_hands(path).items():
            same = [h for h in pred.hands if h.handedness == side]
            size = float(np.ptp(truth, axis=0).max())
            if not same:
                errors.append(f"{side}: missing")
                continue
            err = min(np.linalg.norm(h.joints_2d - truth, axis=1).mean() for h in same)
            errors.append(f"{side}: {100 * err / size:.1f}%")
        print(
            f"| {path.name} | {detected or 'none'} | {reported or 'none'} "
            f"| {', '.join(errors) or '-'} |"
        )
        if args.overlays is not None:
            from PIL import Image

            from dfl_infer.vis import draw_prediction

            args.overlays.mkdir(parents=True, exist_ok=True)
            Image.fromarray(draw_prediction(rgb, pred)).save(args.overlays / f"{path.stem}.png")


if __name__ == "__main__":
    main()

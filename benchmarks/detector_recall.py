"""Recall of the MediaPipe hand detector (dfl_infer.detect) on labelled real photos.

Runs :class:`dfl_infer.detect.HandDetector` over ``real-hands/images`` and matches its boxes to
the labelled ones in ``real-hands/boxes.csv`` (columns filename,x0,y0,x1,y1,fingers_up), one to
one and greedily by IoU. Prints recall at IoU >= 0.5 and >= 0.3, the share of labelled boxes whose
centre lies inside some detection box, detections per image, detections matched to no label at
IoU >= 0.3 (false-positive candidates: the labels miss some hands, e.g. bystanders') and the time
per image of ``detect()`` alone (decoding excluded, the one-off graph build excluded).

    python benchmarks/detector_recall.py [DATA_DIR] [--limit N] [--flip-every N] [--json PATH]

Our detection boxes are tight around the 21 landmark centres, while the labels are drawn around
the hand's outline, so IoU is biased low; the centre-inside column is the bias-free one.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dfl_infer.crop import points_box

logger = logging.getLogger("detector_recall")

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real-hands"
IOU_THRESHOLDS: tuple[float, ...] = (0.5, 0.3)


@dataclass(frozen=True)
class RecallReport:
    """Totals and rates of one benchmark run; rates are fractions in [0, 1]."""

    images: int
    labelled_boxes: int
    detections: int
    recall_iou50: float
    recall_iou30: float
    recall_centre_inside: float
    detections_per_image: float
    unmatched_detections: int
    images_with_no_detection: int
    ms_per_image_mean: float
    ms_per_image_median: float
    flip_checked_hands: int  # hands found in both an image and its mirror (IoU >= 0.5)
    flip_swapped_hands: int  # of those, how many changed handedness (all should)
    data_dir: str
    bundle: str
    min_detection_confidence: float
    # The whole DFLPredictor on the same detections (``--predictor``), scored the same way by
    # the box of each reported hand's 2D joints; None when not run.
    predictor_recall_iou30: float | None = None
    predictor_recall_centre_inside: float | None = None
    predictor_hands: int | None = None
    predictor_unmatched_hands: int | None = None


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between boxes ``a`` (N, 4) and ``b`` (M, 4), xyxy; returns (N, M)."""
    a = a.reshape(-1, 4)[:, None, :]
    b = b.reshape(-1, 4)[None, :, :]
    ix = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    iy = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = ix * iy
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """One-to-one (row, column) pairs with IoU >= threshold, highest IoU first."""
    pairs: list[tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    for flat in np.argsort(-iou, axis=None):
        r, c = np.unravel_index(flat, iou.shape)
        if iou[r, c] < threshold:
            break
        if r in used_rows or c in used_cols:
            continue
        pairs.append((int(r), int(c)))
        used_rows.add(int(r))
        used_cols.add(int(c))
    return pairs


def centres_inside(labels: np.ndarray, boxes: np.ndarray) -> int:
    """How many of the labelled boxes (K, 4) have their centre inside one of ``boxes``."""
    centres = (labels[:, :2] + labels[:, 2:]) / 2
    inside = (
        (centres[:, None, 0] >= boxes[None, :, 0])
        & (centres[:, None, 0] <= boxes[None, :, 2])
        & (centres[:, None, 1] >= boxes[None, :, 1])
        & (centres[:, None, 1] <= boxes[None, :, 3])
    )
    return int(inside.any(axis=1).sum())


def load_labels(csv_path: Path) -> dict[str, np.ndarray]:
    """filename -> (K, 4) labelled boxes, xyxy pixels."""
    boxes: dict[str, list[list[float]]] = defaultdict(list)
    with csv_path.open(newline="") as f:
        for row in csv.DictReader(f):
            boxes[row["filename"]].append([float(row[k]) for k in ("x0", "y0", "x1", "y1")])
    return {name: np.array(b, dtype=np.float64) for name, b in boxes.items()}


def mirrored_handedness(detector: object, image: np.ndarray, det: list) -> tuple[int, int]:
    """(hands matched between ``image`` and its horizontal mirror, how many swapped labels).
    MediaPipe reports true handedness, so a mirrored hand must come back with the other label."""
    flipped = detector.detect(np.ascontiguousarray(image[:, ::-1]))  # type: ignore[attr-defined]
    if not det or not flipped:
        return 0, 0
    w = image.shape[1]
    back = np.array([[w - 1 - d.box[2], d.box[1], w - 1 - d.box[0], d.box[3]] for d in flipped])
    pairs = greedy_match(iou_matrix(np.stack([d.box for d in det]), back), 0.5)
    swapped = sum(det[i].handedness != flipped[j].handedness for i, j in pairs)
    return len(pairs), swapped


def run(
    data_dir: Path,
    limit: int | None,
    bundle: Path | None,
    flip_every: int = 10,
    detection_confidence: float | None = None,
    predictor: bool = False,
) -> RecallReport:
    """Detect hands in every image of ``data_dir/images`` and score them against the labels;
    every ``flip_every``-th image is also checked for handedness under mirroring (0: never).
    ``detection_confidence``: the detector's ``min_detection_confidence`` (None: its default).
    ``predictor``: also run the whole default DFLPredictor on the same detections."""
    from PIL import Image

    from dfl_infer.detect import HandDetector

    labels = load_labels(data_dir / "boxes.csv")
    names = sorted(p.name for p in (data_dir / "images").iterdir() if p.is_file())
    if limit is not None:
        names = names[:limit]

    hits = {t: 0 for t in IOU_THRESHOLDS}
    centre_hits = n_labels = n_dets = unmatched = empty = flip_checked = flip_swapped = 0
    times_ms: list[float] = []
    options = (
        {} if detection_confidence is None else {"min_detection_confidence": detection_confidence}
    )
    with HandDetector(bundle=bundle, allow_download=False, **options) as detector:
        bundle_path = detector.load()
        model = None
        if predictor:
            from dfl_infer import DFLPredictor

            model = DFLPredictor(device="cpu", detector=detector)
        whole = {"iou30": 0, "centre": 0, "hands": 0, "unmatched": 0}
        for i, name in enumerate(names):
            image = np.asarray(Image.open(data_dir / "images" / name).convert("RGB"))
            start = time.perf_counter()
            detections = detector.detect(image)
            times_ms.append((time.perf_counter() - start) * 1e3)
            if flip_every and i % flip_every == 0:
                checked, swapped = mirrored_handedness(detector, image, detections)
                flip_checked += checked
                flip_swapped += swapped

            gt = labels.get(name, np.zeros((0, 4)))
            det = np.array([d.box for d in detections], dtype=np.float64).reshape(-1, 4)
            iou = iou_matrix(gt, det)
            for t in IOU_THRESHOLDS:
                hits[t] += len(greedy_match(iou, t))
            unmatched += len(det) - len(greedy_match(iou, min(IOU_THRESHOLDS)))
            centre_hits += centres_inside(gt, det)
            if model is not None:
                (pred,) = model.predict_batch([image], detections=[detections])
                hands = np.array([points_box(h.joints_2d) for h in pred.hands]).reshape(-1, 4)
                iou = iou_matrix(gt, hands)
                whole["iou30"] += len(greedy_match(iou, 0.3))
                whole["unmatched"] += len(hands) - len(greedy_match(iou, 0.3))
                whole["centre"] += centres_inside(gt, hands)
                whole["hands"] += len(hands)
            n_labels += len(gt)
            n_dets += len(det)
            empty += int(len(det) == 0)
            if (i + 1) % 100 == 0:
                logger.info("%d / %d images", i + 1, len(names))

    n_images = len(names)
    return RecallReport(
        images=n_images,
        labelled_boxes=n_labels,
        detections=n_dets,
        recall_iou50=hits[0.5] / max(n_labels, 1),
        recall_iou30=hits[0.3] / max(n_labels, 1),
        recall_centre_inside=centre_hits / max(n_labels, 1),
        detections_per_image=n_dets / max(n_images, 1),
        unmatched_detections=unmatched,
        images_with_no_detection=empty,
        ms_per_image_mean=float(np.mean(times_ms)) if times_ms else float("nan"),
        ms_per_image_median=float(np.median(times_ms)) if times_ms else float("nan"),
        flip_checked_hands=flip_checked,
        flip_swapped_hands=flip_swapped,
        data_dir=str(data_dir),
        bundle=str(bundle_path),
        min_detection_confidence=detector.min_detection_confidence,
        **(
            {
                "predictor_recall_iou30": whole["iou30"] / max(n_labels, 1),
                "predictor_recall_centre_inside": whole["centre"] / max(n_labels, 1),
                "predictor_hands": whole["hands"],
                "predictor_unmatched_hands": whole["unmatched"],
            }
            if model is not None
            else {}
        ),
    )


def format_table(r: RecallReport) -> str:
    """Markdown table of a report."""
    rows = [
        ("images", f"{r.images}"),
        ("detector's min_detection_confidence", f"{r.min_detection_confidence:g}"),
        ("labelled boxes", f"{r.labelled_boxes}"),
        ("recall, IoU >= 0.5", f"{r.recall_iou50:.1%}"),
        ("recall, IoU >= 0.3", f"{r.recall_iou30:.1%}"),
        ("recall, label centre inside a detection", f"{r.recall_centre_inside:.1%}"),
        ("detections per image", f"{r.detections_per_image:.2f}"),
        ("unmatched detections (IoU < 0.3 to every free label)", f"{r.unmatched_detections}"),
        ("images with no detection", f"{r.images_with_no_detection}"),
        ("ms per image, mean / median", f"{r.ms_per_image_mean:.1f} / {r.ms_per_image_median:.1f}"),
        (
            "handedness swapped on the mirrored image (hands seen in both)",
            f"{r.flip_swapped_hands} of {r.flip_checked_hands}",
        ),
    ]
    if r.predictor_hands is not None:
        rows += [
            ("whole predictor: recall, IoU >= 0.3", f"{r.predictor_recall_iou30:.1%}"),
            (
                "whole predictor: recall, label centre inside a hand",
                f"{r.predictor_recall_centre_inside:.1%}",
            ),
            ("whole predictor: hands reported", f"{r.predictor_hands}"),
            (
                "whole predictor: hands matching no label (IoU < 0.3)",
                f"{r.predictor_unmatched_hands}",
            ),
        ]
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'metric':<{width}} | value |", f"| {'-' * width} | ----- |"]
    lines += [f"| {k:<{width}} | {v} |" for k, v in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "data_dir",
        nargs="?",
        type=Path,
        default=DEFAULT_DATA,
        help="folder with images/ and boxes.csv (default: ../shared/data/real-hands)",
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument("--bundle", type=Path, default=None, help="hand_landmarker.task to use")
    parser.add_argument(
        "--flip-every",
        type=int,
        default=10,
        metavar="N",
        help="also check handedness on the mirror of every N-th image (0: off; default 10)",
    )
    parser.add_argument(
        "--detection-confidence",
        type=float,
        default=None,
        metavar="C",
        help="the detector's min_detection_confidence (default: HandDetector's)",
    )
    parser.add_argument(
        "--predictor",
        action="store_true",
        help="also run the whole default DFLPredictor on the same detections (its hands' 2D "
        "joint boxes scored as the detections; the time column stays detect() only)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    data_dir = args.data_dir.resolve()
    if not (data_dir / "boxes.csv").is_file() or not (data_dir / "images").is_dir():
        logger.error(
            "%s has no boxes.csv and images/ folder: pass the real-hands data folder "
            "(default ../shared/data/real-hands relative to the repository root)",
            data_dir,
        )
        return 2
    from dfl_infer.detect import DetectorUnavailableError

    try:
        report = run(
            data_dir,
            args.limit,
            args.bundle,
            args.flip_every,
            args.detection_confidence,
            args.predictor,
        )
    except DetectorUnavailableError as err:
        logger.error("%s", err)
        return 2
    # The table is this script's output, so it goes to stdout rather than the log.
    sys.stdout.write(format_table(report) + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
        logger.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

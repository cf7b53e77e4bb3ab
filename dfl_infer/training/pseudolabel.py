"""``dfl-train pseudolabel``: label a folder of real photos with MediaPipe, in InterHand's layout.

For each photo the package's :class:`~dfl_infer.detect.HandDetector` gives 21 landmarks per hand
(pixels, used as u, v) and MediaPipe's metric world landmarks (metres, origin near the hand, camera
axes), whose z differences give the joints' depths relative to the wrist (x1000 -> mm). The
camera is unknown: intrinsics are ``lift.Intrinsics.default`` (focal = longer image side, centred
principal point), and each hand's wrist depth is the one that makes the world landmarks' x, y
spread match the landmarks' pixel spread (least squares), so the written 3D joints reproject
exactly onto MediaPipe's 2D landmarks.

Hands that touch (and differ in handedness) share one annotation, as in InterHand2.6M; every other
hand gets its own. What MediaPipe cannot know is marked with extension fields of the annotation
(read by ``training.data``; see ``docs/training.md``):

- ``depth_confidence`` (float, default of the command 0.5): weight of the depth loss; MediaPipe's
  world z is itself a network's guess;
- ``depth_valid`` (42): 1 for joints of a hand with world landmarks;
- ``root_depth_valid``: 0 for two-hand annotations (the two wrist depths come from two
  independent scale fits, so their difference is not a label);
- ``hand_missing``: 1 when a box list (``boxes.csv``: ``filename,x0,y0,x1,y1,...``, one row per
  hand) counts more hands in the photo than MediaPipe found;
- ``hand_type_valid``: 0 when MediaPipe may have missed a hand in the crop: ``hand_missing``, or,
  for photos without a box list entry, a lone hand (MediaPipe misses the second of two tightly
  interacting hands most often); the presence loss is masked there;
- ``source``: "mediapipe", and ``scores``: MediaPipe's handedness scores (right, left; 0 absent).

``subset`` labels only the training or the held-out photos of :mod:`dfl_infer.training.holdout`'s
fixed rule (``"all"``: every photo). The rule is applied to the whole folder listing before
``limit``. ``data.json`` records it under ``info`` (``subset``, ``holdout_size``).

``min_presence`` (default 0.9 for ``"holdout"``, else off) keeps only confident hands, by two
MediaPipe scores: the landmark model's *hand presence* score, which MediaPipe's Tasks API does not
return but thresholds inside its graph (the detector's ``min_presence_confidence`` is set to it),
and the *handedness* classifier's score, the one ``HandDetection.score`` exposes, filtered here.
On every 20th ``real-hands`` photo (78), raising the in-graph presence gate from 0.3 to 0.9
removed no hand (82 both ways) while 0.9999 removed all of them (the gate is live), and 3 of the
82 hands had a handedness score below 0.9. A photo whose hands are all dropped is skipped.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dfl_infer.crop import group_hands, points_box
from dfl_infer.image import IMAGE_SUFFIXES
from dfl_infer.joints import NUM_HAND_JOINTS, NUM_JOINTS, WRIST
from dfl_infer.lift import MAX_ROOT_DEPTH_MM, MIN_ROOT_DEPTH_MM, Intrinsics
from dfl_infer.training.holdout import HOLDOUT_SIZE, SUBSETS, photo_names, select_subset
from dfl_infer.training.interhand import AnnotationWriter, camera_fields, images_dir

logger = logging.getLogger(__name__)

DEFAULT_DEPTH_CONFIDENCE = 0.5
HOLDOUT_MIN_PRESENCE = 0.9  # default min_presence of the held-out subset (the reported metrics)
# MediaPipe's palm-detection threshold for labels (HandDetector's default is lower: it serves the
# predictor, whose network re-checks every detection).
LABEL_DETECTION_CONFIDENCE = 0.3


class _Detector(Protocol):
    def detect(self, image: np.ndarray) -> list[Any]: ...


def read_box_counts(path: str | Path) -> Counter[str]:
    """Hands per file name in a ``boxes.csv`` (one row per hand, column ``filename``)."""
    with open(path, newline="") as f:
        return Counter(row["filename"] for row in csv.DictReader(f))


def hand_camera_joints(
    landmarks: np.ndarray, world: np.ndarray | None, intr: Intrinsics
) -> tuple[np.ndarray, bool]:
    """(21, 3) camera-frame mm joints of one hand reprojecting onto ``landmarks`` (21, 2) pixels,
    and whether the depths are MediaPipe's (False: a flat hand at a canonical distance)."""
    uv = np.asarray(landmarks, dtype=np.float64)
    du = uv - uv.mean(0)
    if world is not None:
        w = np.asarray(world, dtype=np.float64) * 1000.0
        dxy = w[:, :2] - w[:, :2].mean(0)
        # Pixels ~ (f / Z) * metric offsets: least-squares f / Z, hence Z.
        ratio = float((du * dxy).sum() / max((dxy * dxy).sum(), 1e-9))
        z_wrist = intr.fx / ratio if ratio > 0 else 1000.0
        rel = w[:, 2] - w[WRIST, 2]
    else:
        z_wrist, rel = 1000.0, np.zeros(len(uv))
    z_wrist = float(np.clip(z_wrist, MIN_ROOT_DEPTH_MM, MAX_ROOT_DEPTH_MM))
    z = z_wrist + rel
    return intr.unproject(uv, z), world is not None


def pseudolabel_folder(
    images: str | Path,
    out: str | Path,
    split: str = "train",
    detector: _Detector | None = None,
    boxes: str | Path | None = None,
    copy: bool = False,
    depth_confidence: float = DEFAULT_DEPTH_CONFIDENCE,
    limit: int | None = None,
    subset: str = "all",
    min_presence: float | None = None,
    holdout_size: int = HOLDOUT_SIZE,
) -> dict[str, int]:
    """Label the photos of ``subset`` of ``images`` into ``out`` (InterHand layout); returns
    counts. ``subset``, ``min_presence``: see the module docstring; ``holdout_size``: the rule's
    ``n`` (tests only: a different ``n`` gives a different split)."""
    import cv2

    src = Path(images)
    names = photo_names(src)
    if not names:
        raise ValueError(f"{src} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    files = [src / name for name in select_subset(names, subset, holdout_size)][:limit]
    if min_presence is None and subset == "holdout":
        min_presence = HOLDOUT_MIN_PRESENCE
    if min_presence is not None and not 0.0 <= min_presence <= 1.0:
        raise ValueError(f"min_presence must be in [0, 1], got {min_presence}")
    counts = read_box_counts(boxes) if boxes else None
    if detector is None:
        from dfl_infer.detect import DEFAULT_PRESENCE_CONFIDENCE, HandDetector

        # Labels want MediaPipe's confident detections: the palm threshold stays at 0.3 (the
        # value every shipped training set was made with), above the predictor's default.
        detector = HandDetector(
            max_hands=4,
            min_detection_confidence=LABEL_DETECTION_CONFIDENCE,
            # MediaPipe's in-graph hand presence gate (None: the detector's default)
            min_presence_confidence=(
                DEFAULT_PRESENCE_CONFIDENCE if min_presence is None else min_presence
            ),
        )
    img_dir = images_dir(out, split)
    img_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "source": "dfl-train pseudolabel",
        "subset": subset,
        "holdout_size": holdout_size,
        "min_presence": min_presence,
    }
    writer = AnnotationWriter()
    stats = Counter(images=len(files), folder_images=len(names))
    for path in files:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            logger.warning("skipping unreadable %s", path)
            stats["unreadable"] += 1
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        dets = detector.detect(rgb)
        if min_presence is not None:
            kept = [d for d in dets if d.score >= min_presence]
            stats["low_score_hands"] += len(dets) - len(kept)
            if dets and not kept:
                stats["only_low_score"] += 1
                continue
            dets = kept
        if not dets:
            stats["no_hand"] += 1
            continue
        expected = counts.get(path.name) if counts is not None else None
        missing = expected is not None and expected > len(dets)
        stats["hand_missing"] += int(missing)
        dst = img_dir / path.name
        if not dst.exists():
            if copy:
                shutil.copy2(path, dst)
            else:
                os.symlink(path.resolve(), dst)
        intr = Intrinsics.default(w, h)
        for group in group_hands(np.stack([d.box for d in dets]), [d.handedness for d in dets]):
            cam_xyz = np.zeros((NUM_JOINTS, 3))
            valid = np.zeros(NUM_JOINTS)
            depth_valid = np.zeros(NUM_JOINTS)
            scores = [0.0, 0.0]
            sides = []
            for k in group:
                d = dets[k]
                h_idx = 0 if d.handedness == "right" else 1
                if h_idx in sides:  # two hands of one side in a group: keep the first (best)
                    continue
                sides.append(h_idx)
                sl = slice(h_idx * NUM_HAND_JOINTS, (h_idx + 1) * NUM_HAND_JOINTS)
                cam_xyz[sl], has_depth = hand_camera_joints(d.landmarks, d.landmarks_3d, intr)
                valid[sl] = 1
                depth_valid[sl] = float(has_depth)
                scores[h_idx] = float(d.score)
            hand_type = "interacting" if len(sides) == 2 else ("right" if sides[0] == 0 else "left")
            # A lone hand may hide an undetected partner unless a box list vouches for the count.
            type_valid = not missing and (len(sides) == 2 or expected is not None)
            box = points_box(np.concatenate([dets[k].landmarks for k in group]))
            writer.add(
                file_name=path.name,
                width=w,
                height=h,
                capture=0,
                camera_name=str(writer.next_id),  # one camera per annotation: its own intrinsics
                camera=camera_fields(intr),
                world_coord=cam_xyz.round(3).tolist(),
                joint_valid=valid.tolist(),
                hand_type=hand_type,
                hand_type_valid=int(type_valid),
                bbox=[box[0], box[1], box[2] - box[0], box[3] - box[1]],
                extra={
                    "depth_confidence": depth_confidence,
                    "depth_valid": depth_valid.tolist(),
                    "root_depth_valid": 0,
                    "hand_missing": int(missing),
                    "source": "mediapipe",
                    "scores": scores,
                },
            )
            stats["annotations"] += 1
            stats[hand_type] += 1
    writer.write(out, split, info=info)
    logger.info("pseudo-labels: %s", dict(stats))
    return dict(stats)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "pseudolabel",
        help="label real photos with MediaPipe (InterHand layout)",
        description="Detect hands with MediaPipe and write InterHand2.6M-layout pseudo-labels.",
    )
    p.add_argument("--images", required=True, help="folder of photos")
    p.add_argument("--out", required=True, help="output root (images/, annotations/)")
    p.add_argument("--split", default="train")
    p.add_argument(
        "--boxes",
        default=None,
        help="CSV with one row per hand (column filename); default IMAGES/../boxes.csv "
        "when it exists",
    )
    p.add_argument("--copy", action="store_true", help="copy photos instead of symlinking them")
    p.add_argument("--depth-confidence", type=float, default=DEFAULT_DEPTH_CONFIDENCE)
    p.add_argument("--limit", type=int, default=None, help="only the first N photos (sorted)")
    p.add_argument(
        "--subset",
        choices=SUBSETS,
        default="all",
        help="photos of the fixed hold-out rule (dfl_infer/training/holdout.py) to "
        "label: all, train (never the held-out ones) or holdout",
    )
    p.add_argument(
        "--min-presence",
        type=float,
        default=None,
        help="keep only hands with MediaPipe hand presence and handedness score >= "
        f"this (default {HOLDOUT_MIN_PRESENCE} for --subset holdout, "
        "else off)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    boxes = args.boxes
    if boxes is None:
        guess = Path(args.images).resolve().parent / "boxes.csv"
        boxes = guess if guess.is_file() else None
    pseudolabel_folder(
        args.images,
        args.out,
        args.split,
        boxes=boxes,
        copy=args.copy,
        depth_confidence=args.depth_confidence,
        limit=args.limit,
        subset=args.subset,
        min_presence=args.min_presence,
    )
    return 0

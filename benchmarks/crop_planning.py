"""What the crop plan for a lone detected hand costs and what it finds, plan by plan.

Runs the whole ``DFLPredictor`` (MediaPipe, crops, network, lift) over the photos of an
InterHand-layout folder (e.g. the held-out real photos pseudo-labelled by ``dfl-train
pseudolabel --subset holdout``) once per plan (``PLANS``): a crop twice as wide as the hand's
with a second pass only when the network finds a second hand there (``lone_hand_widen=2``), the
same crop always followed by a re-crop pass (``recrop_lone_hands=True``, the plan before
2026-12-01), a 1.5x crop, and one pass on the hand's own box (``lone_hand_widen=1``, the default
since then) with a re-crop pass when the network's second hand there reaches a presence of 0.5
(the default until 2026-12-06), 0.25 (the default since) or 0.1 (``recrop_presence``). Prints
one table: network passes per image, labelled hands found
(a reported hand of the same handedness), of them those on the hand (mean joint error under
``ON_HAND`` of its box: a hand of the right side elsewhere in the photo counts as found, not
as on the hand), every hand reported, the extra hands (reported hands that are no labelled
hand's match: a copied second hand on a lone hand, or a real hand the labels lack) with the
range of their presence scores (each one, by image, in ``--json``), PCK at 10% of the hand's box
and the mean 2D error in % of it (found hands), and the median time per image (the plans
alternate image by image, so machine load hits them alike). ``--detection-confidence`` runs every
plan once per value of MediaPipe's ``min_detection_confidence`` (the palm detector's threshold: a
hand it misses gets a crop of its own only if the network finds it in another hand's crop).

    python benchmarks/crop_planning.py --data REAL_HO [--split test] [--weights weights]
        [--limit N] [--plans 1,default] [--flip-test] [--detection-confidence 0.3,0.05]
        [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from end_to_end import _Timer  # the sibling script (run from benchmarks/)

from dfl_infer import DFLPredictor
from dfl_infer.detect import HandDetector
from dfl_infer.predictor import LONE_HAND_WIDEN, RECROP_PRESENCE
from dfl_infer.training.data import InterHandDataset
from dfl_infer.training.evaluate import ON_HAND, PCK2D_THRESHOLD, hands_by_image, mean_box_error

# name: (lone_hand_widen, recrop_lone_hands, recrop_presence)
PLANS = {
    "2x crop, one pass": (2.0, False, 0.5),
    "2x crop, then re-crop": (2.0, True, 0.5),
    "1.5x crop, one pass": (1.5, False, 0.5),
    "1x crop, re-crop at second-hand presence >= 0.5": (1.0, False, 0.5),
    "1x crop, re-crop at second-hand presence >= 0.25": (1.0, False, 0.25),
    "1x crop, re-crop at second-hand presence >= 0.1": (1.0, False, 0.1),
}
# The predictor's own plan, found by its values (shown with "(default)" in the table).
DEFAULT_PLAN = next(
    name for name, plan in PLANS.items() if plan == (LONE_HAND_WIDEN, False, RECROP_PRESENCE)
)


def match(pred: Any, labels: list[tuple[str, np.ndarray]]) -> list[tuple[int, float] | None]:
    """Per labelled hand: (index in ``pred.hands``, 2D mean error / box size) of the predicted
    hand of the same handedness nearest to it, or None when the prediction has no hand of that
    handedness."""
    out: list[tuple[int, float] | None] = []
    for side, gt in labels:
        errs = [
            (i, mean_box_error(h.joints_2d, gt))
            for i, h in enumerate(pred.hands)
            if h.handedness == side
        ]
        out.append(min(errs, key=lambda e: e[1]) if errs else None)
    return out


def _extra(found: list[tuple[str, float]]) -> str:
    """``n (min-max)`` of the extra hands' presence scores."""
    scores = [score for _, score in found]
    return f"{len(scores)} ({min(scores):.2f}-{max(scores):.2f})" if scores else "0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="InterHand-layout folder (2D labels)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--weights", default=None, help="default: the package's default model")
    parser.add_argument("--limit", type=int, default=0, help="first N photos only (0: all)")
    parser.add_argument(
        "--plans",
        default="",
        help="comma-separated PLANS rows (1-based numbers, or 'default' for the predictor's own)",
    )
    parser.add_argument("--flip-test", action="store_true", help="every plan with flip_test=True")
    parser.add_argument(
        "--detection-confidence",
        default="",
        metavar="C[,C...]",
        help="MediaPipe's min_detection_confidence: every plan runs once per value, side by "
        "side (default: HandDetector's)",
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    labels = hands_by_image(InterHandDataset(args.data, args.split, 256, 1.25, augment=None))
    paths = sorted(labels)[: args.limit or None]

    names = list(PLANS)
    if args.plans:
        names = [
            DEFAULT_PLAN if i == "default" else names[int(i) - 1] for i in args.plans.split(",")
        ]
    confidences = [float(c) for c in args.detection_confidence.split(",") if c.strip()]
    predictors = {}
    for plan in names:
        widen, recrop, recrop_presence = PLANS[plan]
        for confidence in confidences or [None]:
            detector = None
            name = plan + (" (default)" if plan == DEFAULT_PLAN else "")
            if confidence is not None:
                detector = HandDetector(min_detection_confidence=confidence)
                name = f"{name}, detection >= {confidence:g}"
            p = DFLPredictor(
                args.weights,
                device="cpu",
                detector=detector,
                lone_hand_widen=widen,
                recrop_lone_hands=recrop,
                recrop_presence=recrop_presence,
                flip_test=args.flip_test,
            )
            p._net = _Timer(p._net)  # type: ignore[assignment]  # counts the network passes
            p.predict(paths[0])  # warm-up (loads MediaPipe too)
            predictors[name] = p
    names = list(predictors)
    passes: dict[str, list[int]] = {name: [] for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    errors: dict[str, list[float | None]] = {name: [] for name in names}
    extra: dict[str, list[tuple[str, float]]] = {name: [] for name in names}
    reported: dict[str, int] = {name: 0 for name in names}
    for path in paths:
        for name, p in predictors.items():
            net = p._net
            assert isinstance(net, _Timer)
            calls = net.calls
            t0 = time.perf_counter()
            pred = p.predict(path)
            times[name].append(time.perf_counter() - t0)
            passes[name].append(net.calls - calls)
            reported[name] += len(pred.hands)
            matched = match(pred, labels[path])
            errors[name].extend(None if m is None else m[1] for m in matched)
            taken = {m[0] for m in matched if m is not None}
            extra[name].extend(
                (path.name, h.score) for k, h in enumerate(pred.hands) if k not in taken
            )

    n_hands = sum(len(labels[p]) for p in paths)
    print(
        f"{len(paths)} photos, {n_hands} labelled hands ({args.data}:{args.split}); "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at the end\n"
    )
    print(
        "| plan | passes/image | hands found | on the hand | hands reported | extra hands (scores) "
        "| PCK@10% box | mean 2D % box | median ms/image |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for name in names:
        found = [e for e in errors[name] if e is not None]
        row = {
            "plan": name,
            "passes_per_image": float(np.mean(passes[name])),
            "found": len(found),
            "on_hand": sum(e < ON_HAND for e in found),
            "labelled": n_hands,
            "reported": reported[name],
            "extra_hands": [{"image": i, "score": round(c, 3)} for i, c in extra[name]],
            "pck2d_10": float(np.mean([e <= PCK2D_THRESHOLD for e in found])),
            "mean_2d_box_pct": 100.0 * float(np.mean(found)),
            "median_ms": 1000.0 * statistics.median(times[name]),
        }
        rows.append(row)
        print(
            f"| {name} | {row['passes_per_image']:.2f} | {len(found)}/{n_hands} | "
            f"{row['on_hand']}/{n_hands} | "
            f"{reported[name]} | {_extra(extra[name])} | "
            f"{row['pck2d_10']:.3f} | {row['mean_2d_box_pct']:.2f} | {row['median_ms']:.0f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

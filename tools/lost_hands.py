"""Which labelled hands the whole predictor loses, and whether MediaPipe saw them.

Runs ``DFLPredictor`` (MediaPipe detecting, the default crop plan) over the photos of an
InterHand-layout folder with 2D labels (e.g. the held-out composites COMP2_HO) and sorts every
labelled hand by what the predictor reported on it: a hand of its side on it ("on": mean joint
error under ``ON_HAND`` of its box, as ``benchmarks/crop_planning.py`` counts it), only a hand
of the other side on it ("other side"), or nothing ("lost"); and by whether one of MediaPipe's
detections lies on it (its landmarks within the same error) and with which side. Also the share
of each group with joints outside the photo (a hand cut by its edge).

    python tools/lost_hands.py --data COMP2_HO [--split test] [--limit N] [--flip-test]
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict

from dfl_infer import DFLPredictor
from dfl_infer.detect import detect_hands
from dfl_infer.image import load_image
from dfl_infer.training.data import InterHandDataset
from dfl_infer.training.evaluate import ON_HAND, hands_by_image, mean_box_error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="InterHand-layout folder (2D labels)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=0, help="first N photos only (0: all)")
    parser.add_argument("--flip-test", action="store_true", help="DFLPredictor(flip_test=True)")
    args = parser.parse_args()

    labels = hands_by_image(InterHandDataset(args.data, args.split, 256, 1.25, augment=None))
    paths = sorted(labels)[: args.limit or None]
    predictor = DFLPredictor(device="cpu", flip_test=args.flip_test)
    groups: Counter[tuple[str, str]] = Counter()
    cut: dict[tuple[str, str], int] = defaultdict(int)
    for path in paths:
        rgb = load_image(path)
        height, width = rgb.shape[:2]
        detections = detect_hands(predictor.detector, rgb)
        (pred,) = predictor.predict_batch([rgb], detections=[detections])  # detected once
        for side, label in labels[path]:
            reported = [(mean_box_error(h.joints_2d, label), h.handedness) for h in pred.hands]
            mine = [e for e, s in reported if s == side and e < ON_HAND]
            other = [e for e, s in reported if s != side and e < ON_HAND]
            found = "on" if mine else "other side" if other else "lost"
            seen = [
                d.handedness for d in detections if mean_box_error(d.landmarks, label) < ON_HAND
            ]
            detector = (
                "no detection on it"
                if not seen
                else "detected, same side"
                if side in seen
                else "detected, other side"
            )
            groups[(found, detector)] += 1
            outside = (label[:, 0] < -0.5) | (label[:, 0] > width - 0.5)
            outside |= (label[:, 1] < -0.5) | (label[:, 1] > height - 0.5)
            cut[(found, detector)] += int(outside.any())
    total = sum(groups.values())
    print(f"{len(paths)} photos, {total} labelled hands ({args.data}:{args.split})\n")
    print("| reported on the hand | MediaPipe | hands | share | with joints outside the photo |")
    print("| --- | --- | ---: | ---: | ---: |")
    for key, n in sorted(groups.items(), key=lambda kv: (kv[0][0] != "on", -kv[1])):
        print(f"| {key[0]} | {key[1]} | {n} | {n / total:.3f} | {cut[key] / n:.2f} |")
    for found in ("on", "other side", "lost"):
        n = sum(v for k, v in groups.items() if k[0] == found)
        if n:
            out = sum(v for k, v in cut.items() if k[0] == found) / n
            print(f"\n{found}: {n} hands, {out:.2f} of them with joints outside the photo", end="")
    print()


if __name__ == "__main__":
    main()

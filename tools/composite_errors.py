"""Where the 2D error on composites comes from: the covering hand, the covered hand's joints that
lie in the open, and those hidden under the other hand.

A composite (``dfl-train composite``) pastes a donor hand over or beside a base photo's hand; one
of the two ends up on top (``donor_behind`` in its annotation), and the covered hand keeps labels
for the joints it hides (as InterHand2.6M does). The PCK target on held-out composites counts
those hidden joints too. This splits each hand's sided 2D errors (the measure of ``dfl-train
evaluate``: distance over the hand's box size) into:

- the covering hand's joints;
- the covered hand's joints outside the covering hand's outline;
- the covered hand's joints inside it: hidden, unless the paste left them in a gap between
  fingers. The outline is the convex hull of the covering hand's 21 joints, widened by
  ``--widen`` times its box size (an approximation: no masks are stored for composites);

and also by how far apart the two hands' centres are (in hand sizes), with and without the
predictor's per-hand pass.

    python tools/composite_errors.py --composites ROOT:SPLIT --sources ROOT:SPLIT \
        [--weights weights] [--widen 0.05] [--flip-test]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dfl_infer.joints import NUM_HAND_JOINTS
from dfl_infer.lift import Intrinsics
from dfl_infer.training.data import read_annotations
from dfl_infer.training.evaluate import (
    PCK2D_THRESHOLD,
    hand_box_errors,
    hand_pass_dataset,
    predict_dataset,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from composite_check import base_hand, photo_hands  # noqa: E402

GAP_BINS = (0.45, 0.65)  # centre distance / hand size: heavy overlap | partial | side by side
GROUPS = (
    "covering hand",
    "covered hand, joints in the open",
    "covered hand, joints under the other",
    f"both hands, centres < {GAP_BINS[0]} hand sizes apart",
    f"both hands, centres {GAP_BINS[0]}-{GAP_BINS[1]} hand sizes apart",
    f"both hands, centres >= {GAP_BINS[1]} hand sizes apart",
)


def hidden_joints(covered: np.ndarray, covering: np.ndarray, widen: float) -> np.ndarray:
    """(21,) bool: which of the covered hand's (21, 2) joints lie inside the convex hull of the
    covering hand's (21, 2) joints widened by ``widen`` times that hand's box size."""
    import cv2

    hull = cv2.convexHull(covering.astype(np.float32))
    margin = widen * float(np.ptp(covering, axis=0).max())
    return np.array(
        [cv2.pointPolygonTest(hull, (float(u), float(v)), True) >= -margin for u, v in covered]
    )


def predictions(comp_root: Path, comp_split: str, weights: str, flip_test: bool = False):
    """The composites' dataset and the model's (N, 42, 3) crop outputs, one pass and with the
    per-hand pass, as ``dfl-train evaluate [--flip-test]`` makes them."""
    from dfl_infer.model import DFLModel
    from dfl_infer.training.data import AugmentConfig, InterHandDataset

    model = DFLModel.from_pretrained(weights, map_location="cpu")
    cfg = model.config
    ds = InterHandDataset(
        comp_root,
        comp_split,
        cfg.input_size,
        cfg.box_scale,
        AugmentConfig.none(),
        upright=cfg.upright,
    )
    pred = predict_dataset(model, ds, flip_test=flip_test)
    with_pass = hand_pass_dataset(model, ds, pred, flip_test=flip_test)
    return ds, {"one pass": pred.joints_25d, "per-hand pass": with_pass}


def split_errors(ds, uvd: np.ndarray, records, by_photo, widen: float) -> dict[str, list]:
    """Sided 2D errors / box size, per group (see the module docstring), over the composites
    whose base hand is found among the source photos' hands ``by_photo``."""
    from dfl_infer.decode import decode

    groups: dict[str, list[np.ndarray]] = {k: [] for k in GROUPS}
    for i, (record, s) in enumerate(zip(records, ds.samples)):
        found = base_hand(s, by_photo.get(str(record.annotation["sources"][0]), []))
        if found is None or not s.hand_valid.all():
            continue
        base_slot = found[1]
        top = base_slot if record.annotation.get("donor_behind") else 1 - base_slot
        uv_img, _ = decode(
            uvd[i],
            ds.make_crop(i),
            Intrinsics.from_array(s.intrinsics),
            s.hand_valid,
            0.0,
            root_depth=float(s.joints_cam[0, 2]),
        )
        gt = [s.joints_img[h * NUM_HAND_JOINTS : (h + 1) * NUM_HAND_JOINTS] for h in (0, 1)]
        sizes = [float(np.ptp(g, axis=0).max()) for g in gt]
        err = hand_box_errors(uv_img, s)  # right then left: every composite joint is labelled
        hidden = hidden_joints(gt[1 - top], gt[top], widen)
        groups[GROUPS[0]].append(err[top])
        groups[GROUPS[1]].append(err[1 - top][~hidden])
        groups[GROUPS[2]].append(err[1 - top][hidden])
        gap = float(np.linalg.norm(gt[0].mean(0) - gt[1].mean(0))) / float(np.mean(sizes))
        groups[GROUPS[3 + int(np.searchsorted(GAP_BINS, gap, side="right"))]].extend(err)
    return groups


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--composites", required=True, help="ROOT:SPLIT of the composites")
    p.add_argument("--sources", required=True, help="ROOT:SPLIT they were made from")
    p.add_argument("--weights", default="weights")
    p.add_argument("--widen", type=float, default=0.05, help="outline margin / box size")
    p.add_argument("--flip-test", action="store_true", help="every crop also run mirrored")
    args = p.parse_args()
    c_root, _, c_split = args.composites.partition(":")
    s_root, _, s_split = args.sources.partition(":")
    comp_root, comp_split = Path(c_root), c_split or "test"
    ds, outputs = predictions(comp_root, comp_split, args.weights, args.flip_test)
    records = read_annotations(comp_root, comp_split)
    by_photo = photo_hands(Path(s_root), s_split or "test")
    rows: dict[str, list[str]] = {}
    for uvd in outputs.values():
        groups = split_errors(ds, uvd, records, by_photo, args.widen)
        every = {"all joints": groups[GROUPS[0]] + groups[GROUPS[1]] + groups[GROUPS[2]]}
        for name, parts in {**every, **groups}.items():
            e = np.concatenate(parts) if parts else np.zeros(0)
            cell = f"{(e <= PCK2D_THRESHOLD).mean():.3f} / {100 * e.mean():.2f}" if e.size else "-"
            rows.setdefault(name, [str(e.size)]).append(cell)
    flip = ", flip test" if args.flip_test else ""
    print(
        f"{args.weights} on {args.composites}{flip}; outline widened by {args.widen:g} of the box\n"
    )
    print("| joints | count | PCK@10 % / mean 2D %, one pass | with the per-hand pass |")
    print("| --- | ---: | --- | --- |")
    for name, cells in rows.items():
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()

"""How much of the other hand a training crop around one hand of a pair shows.

For two-hand annotations of an InterHand-layout folder, each image is cropped as ``fit
--hand-crops 1`` crops it (around one of its hands, with the usual jitter, upright or not) and the
share of the *other* hand's labelled joints inside the crop is counted: none, under a quarter,
under ``--partial-share``. Those are the hands that ``fit --partial-share`` labels absent or
leaves without a presence label (docs/training.md, "Crops of one hand of a pair").

    python tools/crop_presence_stats.py --data ROOT[:SPLIT] [--data ...] [--n 300] [--no-upright]
"""

from __future__ import annotations

import argparse

import numpy as np

from dfl_infer.joints import NUM_HAND_JOINTS
from dfl_infer.training.data import AugmentConfig, InterHandDataset


def other_hand_shares(
    root: str, split: str, n: int, upright: bool, seed: int = 0
) -> tuple[np.ndarray, int]:
    """Share of the other hand's labelled joints inside a one-hand crop, for up to ``n``
    two-hand annotations spread over the folder; and the number of two-hand annotations."""
    ds = InterHandDataset(
        root, split, 256, 1.25, AugmentConfig(hand_crop_prob=1.0), upright=upright
    )
    pairs = [i for i, s in enumerate(ds.samples) if s.hand_valid.all()]
    picked = pairs[:: max(1, len(pairs) // n)][:n]
    shares = []
    for k, i in enumerate(picked):
        s = ds.samples[i]
        crop = ds.make_crop(i, np.random.default_rng(seed + k))
        uv = crop.to_crop(s.joints_img)
        inside = (uv >= -0.5).all(1) & (uv <= 255.5).all(1)
        share = []
        for h in (0, 1):
            sl = slice(h * NUM_HAND_JOINTS, (h + 1) * NUM_HAND_JOINTS)
            share.append(float(inside[sl][s.joint_valid[sl]].mean()))
        shares.append(min(share))  # the hand the crop is not framed on
    return np.array(shares), len(pairs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", action="append", required=True, help="ROOT[:SPLIT] (default train)")
    p.add_argument("--n", type=int, default=300, help="annotations per folder (default 300)")
    p.add_argument("--partial-share", type=float, default=0.5)
    p.add_argument("--no-upright", action="store_true", help="crops not turned upright")
    args = p.parse_args()
    print(
        f"| folder | pairs cropped | other hand: none inside | < 25 % | < {args.partial_share:g} |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for spec in args.data:
        root, _, split = spec.partition(":")
        shares, _ = other_hand_shares(root, split or "train", args.n, not args.no_upright)
        if not len(shares):
            print(f"| {spec} | 0 | - | - | - |")
            continue
        none, quarter = (shares == 0).mean(), (shares < 0.25).mean()
        partial = (shares < args.partial_share).mean()
        print(f"| {spec} | {len(shares)} | {none:.1%} | {quarter:.1%} | {partial:.1%} |")


if __name__ == "__main__":
    main()

"""Count composites whose pair crop shows a third, unlabelled hand.

A composite (``dfl-train composite``) pastes a donor hand beside the labelled hand of a base
photo. When the base photo holds another labelled hand (a second annotation: two hands that do
not touch), that hand is in the image but not in the composite's labels. For a composite folder
and the folder it was made from, this counts the composites in which such a hand's box overlaps
the square of ``--margin`` times the pair's box side around the pair's centre (1.25: the
evaluation crop, not turned; ``dfl-train composite`` keeps them out of 1.8, the crop turned to
any angle).

    python tools/composite_check.py --composites ROOT:SPLIT --sources ROOT:SPLIT [--margin 1.25]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dfl_infer.crop import points_box
from dfl_infer.joints import NUM_HAND_JOINTS
from dfl_infer.training.composite import Hand, single_hands
from dfl_infer.training.data import Sample, load_samples, read_annotations


def photo_hands(src_root: Path, src_split: str) -> dict[str, list[Hand]]:
    """The labelled single hands of the source folder, by photo file name."""
    out: dict[str, list[Hand]] = {}
    for hand in single_hands(load_samples(src_root, src_split), 0.0):
        out.setdefault(hand.image_path.name, []).append(hand)
    return out


def base_hand(s: Sample, hands: list[Hand]) -> tuple[Hand, int] | None:
    """The composite's base hand (it keeps its own 2D labels) among ``hands``, the labelled
    hands of its base photo, and the slot (0 right, 1 left) it holds; None if none matches."""
    for hand in hands:
        for slot in (0, 1):
            uv = s.joints_img[slot * NUM_HAND_JOINTS : (slot + 1) * NUM_HAND_JOINTS]
            if float(np.abs(uv - hand.uv).max()) < 0.5:
                return hand, slot
    return None


def third_hands(
    comp_root: Path, comp_split: str, src_root: Path, src_split: str, margin: float
) -> tuple[int, int, int]:
    """(composites, those whose base photo holds another labelled hand, those of them in which
    such a hand's box overlaps the pair's crop square)."""
    by_photo = photo_hands(src_root, src_split)
    records = read_annotations(comp_root, comp_split)
    samples = load_samples(comp_root, comp_split)
    with_other = shown = 0
    for record, s in zip(records, samples):
        name = str(record.annotation.get("sources", [""])[0])
        found = base_hand(s, by_photo.get(name, []))
        base = found[0] if found else None
        if base is None or not len(base.others):
            continue
        with_other += 1
        box = points_box(s.joints_img[s.joint_valid])
        centre = np.array([box[0] + box[2], box[1] + box[3]]) / 2
        half = margin * max(box[2] - box[0], box[3] - box[1]) / 2
        lo, hi = centre - half, centre + half
        o = base.others
        overlap = (o[:, 0] < hi[0]) & (o[:, 2] > lo[0]) & (o[:, 1] < hi[1]) & (o[:, 3] > lo[1])
        shown += int(overlap.any())
    return len(samples), with_other, shown


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--composites", required=True, help="ROOT:SPLIT of the composites")
    p.add_argument("--sources", required=True, help="ROOT:SPLIT they were made from")
    p.add_argument("--margin", type=float, default=1.25, help="square side / pair box side")
    args = p.parse_args()
    c_root, _, c_split = args.composites.partition(":")
    s_root, _, s_split = args.sources.partition(":")
    total, with_other, shown = third_hands(
        Path(c_root), c_split or "train", Path(s_root), s_split or "train", args.margin
    )
    print(
        f"{total} composites; {with_other} on a base photo with another labelled hand; "
        f"{shown} with that hand inside {args.margin:g} x the pair's box"
    )


if __name__ == "__main__":
    main()

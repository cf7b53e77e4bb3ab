"""The fixed hold-out rule for real photos and the background folder written without them."""

from __future__ import annotations

import csv
import hashlib
import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfl_infer.training.holdout import (
    HOLDOUT_SIZE,
    group_key,
    photo_names,
    select_subset,
    split_names,
    write_background_folder,
)

# sha256 of the held-out real-hands file names, sorted, one per line: pins the rule.
REAL_HANDS_HOLDOUT_SHA256 = "e978e36806953996fb99b0bda50377f35d18465649e02841bfa5beb35483993c"


def _names() -> list[str]:
    """Recordings of 30, 12, 7 (no prefix) and 5 frames, and 40 single photos."""
    names = [f"a_pic{i:05d}.jpg" for i in range(30)]
    names += [f"b_pic{i:05d}.jpg" for i in range(12)]
    names += [f"pic{i:05d}.jpg" for i in range(7)]
    names += [f"3_1528505750.77_pic{i:05d}.png" for i in range(5)]
    names += [f"Hand_{i:07d}.jpg" for i in range(40)]
    return names


def test_group_key():
    assert group_key("2_pic00038.jpg") == "recording:2"
    assert group_key("3_1528505750.77_pic00012.jpg") == "recording:3_1528505750.77"
    assert group_key("pic00107.jpg") == "recording:"
    assert group_key("images/Hand_0000002.jpg") == "photo:Hand_0000002.jpg"


@pytest.mark.parametrize("n", [0, 1, 20, 37, 93])
def test_split_is_exact_disjoint_and_order_independent(n):
    names = _names()
    split = split_names(names, n)
    held, train, excluded = map(set, (split.held_out, split.train, split.excluded))
    assert len(split.held_out) == n
    assert not held & train and not held & excluded and not train & excluded
    assert held | train | excluded == set(names)
    # No recording is on both sides; excluded photos share their recording with held-out ones.
    assert not {group_key(x) for x in held} & {group_key(x) for x in train}
    assert {group_key(x) for x in excluded} <= {group_key(x) for x in held}
    shuffled = names[::-1] + names[:5]  # another order, duplicates
    random.Random(0).shuffle(shuffled)
    assert split_names(shuffled, n) == split
    assert select_subset(shuffled, "holdout", n) == list(split.held_out)
    assert select_subset(shuffled, "train", n) == list(split.train)
    assert select_subset(shuffled, "all", n) == sorted(set(names))


def test_split_refuses_too_few_photos():
    with pytest.raises(ValueError, match="cannot hold out"):
        split_names(["a.jpg", "b.jpg"], 2)


def test_real_hands_holdout_is_fixed(shared_dir):
    images = shared_dir / "data" / "real-hands" / "images"
    if not images.is_dir():
        pytest.skip(f"{images} is absent")
    split = split_names(photo_names(images))
    assert (len(split.held_out), len(split.train), len(split.excluded)) == (HOLDOUT_SIZE, 1394, 13)
    digest = hashlib.sha256("".join(f"{x}\n" for x in split.held_out).encode()).hexdigest()
    assert digest == REAL_HANDS_HOLDOUT_SHA256


def _photo_folder(root: Path, names: list[str]) -> tuple[Path, Path]:
    images = root / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with open(root / "boxes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "x0", "y0", "x1", "y1", "fingers_up"])
        for name in names:
            cv2.imwrite(str(images / name), rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
            w.writerow([name, 10, 10, 90, 90, "5-hand"])
    return images, root / "boxes.csv"


def test_background_folder_holds_no_held_out_photo(tmp_path):
    names = [f"r_pic{i:05d}.jpg" for i in range(4)] + [f"Hand_{i}.jpg" for i in range(6)]
    images, boxes = _photo_folder(tmp_path / "photos", names)
    split = split_names(names, 3)
    out = tmp_path / "bg"
    stats = write_background_folder(images, boxes, out, n=3)
    assert stats == {"photos": len(split.train), "boxes": len(split.train)}
    assert sorted(p.name for p in (out / "images").iterdir()) == list(split.train)
    with open(out / "boxes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["filename"] for r in rows) == list(split.train)
    assert rows[0]["fingers_up"] == "5-hand"
    # The synthetic engine reads it as a photo folder with hand boxes.
    from dfl_infer.training.synth.appearance import PhotoPool

    pool = PhotoPool.from_folder(out, size=32, max_patches=4)
    assert len(pool.backgrounds) == 4 and len(pool.skin) == 4
    with pytest.raises(ValueError, match="not empty"):
        write_background_folder(images, boxes, out, n=3)


def test_cli_holdout_lists_and_writes_backgrounds(tmp_path):
    from dfl_infer.training.cli import main

    images = tmp_path / "photos" / "images"
    images.mkdir(parents=True)
    names = [f"Hand_{i:04d}.jpg" for i in range(HOLDOUT_SIZE + 10)]
    for name in names:  # the rule and the folder need names only, not pixels
        (images / name).touch()
    (images.parent / "boxes.csv").write_text(
        "filename,x0,y0,x1,y1\n" + "".join(f"{name},1,1,5,5\n" for name in names)
    )
    listing, out = tmp_path / "held.txt", tmp_path / "bg"
    rc = main(
        [
            "holdout",
            "--images",
            str(images),
            "--list-out",
            str(listing),
            "--backgrounds-out",
            str(out),
        ]
    )
    assert rc == 0
    held = listing.read_text().split()
    assert held == list(split_names(names).held_out) and len(held) == HOLDOUT_SIZE
    assert sorted(p.name for p in (out / "images").iterdir()) == list(split_names(names).train)
    assert not set((out / "boxes.csv").read_text().split()) & {f"{x},1,1,5,5" for x in held}
    # Without a box list a folder of hand photos would pass for hand-free: refused.
    (images.parent / "boxes.csv").unlink()
    assert main(["holdout", "--images", str(images), "--backgrounds-out", str(tmp_path / "x")]) == 2

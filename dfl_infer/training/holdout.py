"""The fixed rule that keeps some real photos out of every training run, and ``dfl-train holdout``.

Rule (no MediaPipe, no image content, only file names):

1. Each photo belongs to a *group*. Frames of one recording, named ``[PREFIX_]picNNNNN.ext`` as
   in ``real-hands/`` (``2_pic00038.jpg``, ``3_1528505750.77_pic00012.jpg``, ``pic00107.jpg``),
   form one group per PREFIX (possibly empty): consecutive frames are near duplicates of one
   scene, so holding out single frames would leave their neighbours in training. Any other photo
   (``Hand_0000002.jpg``) is a group of its own.
2. Groups are ranked by the sha256 of their key (``recording:PREFIX`` or ``photo:NAME``, UTF-8).
3. Walking that ranking, a group is held out whole when it fits into the places left of ``n``
   (``HOLDOUT_SIZE`` = 150), and skipped otherwise.
4. If places are left at the end, the smallest skipped group (ties: first in the ranking) fills
   them with its photos of lowest sha256(file name); its other photos are *excluded*: neither
   held out nor trained on, since they show the same scene as held-out ones.

Every other photo is a training photo. Exactly ``n`` photos are held out whenever the folder has
more than ``n``. The split depends on the set of names only, not on their order. A photo added
later moves no group in the ranking. It changes the split only when it makes its group (or its
new group) start or stop fitting, and then only for that group, the groups ranked after it and
the filling group of step 4, or when it changes which skipped group is the smallest.

On the 1,557 ``real-hands`` photos: recordings ``""`` (``picNNNNN``, 84 frames), ``16`` (46) and
``96`` (7), the 12 ``Hand_*`` photos, and 1 frame of recording ``25``, whose other 13 frames are
excluded; 1,394 photos remain for training.

``dfl-train holdout`` lists the held-out photos and writes a background folder for the synthetic
engine (``images/`` of symlinked training photos + their rows of ``boxes.csv``) that holds no
held-out or excluded photo.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath

from dfl_infer.image import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

HOLDOUT_SIZE = 150  # photos held out of real-hands/ (about 10% of 1,557)
SUBSETS = ("all", "train", "holdout")
# A frame of a recording: [PREFIX_]pic + frame number (the file stem, extension removed).
RECORDING_PATTERN = re.compile(r"^(?P<recording>.*?)_?pic\d+$")


def group_key(name: str) -> str:
    """The group of one photo file name (only its base name counts)."""
    stem = PurePath(name).stem
    m = RECORDING_PATTERN.match(stem)
    return f"recording:{m['recording']}" if m else f"photo:{PurePath(name).name}"


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class HoldoutSplit:
    """Photo file names by role, each tuple sorted; together they are the input names."""

    held_out: tuple[str, ...]  # never trained on; the 2D agreement with MediaPipe is scored here
    train: tuple[str, ...]  # training crops and synthetic backgrounds come only from these
    excluded: tuple[str, ...]  # same recording as a held-out photo: used by neither side


def split_names(names: Iterable[str], n: int = HOLDOUT_SIZE) -> HoldoutSplit:
    """The rule of this module applied to photo file names (duplicates count once).

    Raises ValueError when there are not more than ``n`` photos.
    """
    groups: dict[str, list[str]] = {}
    for name in set(names):
        groups.setdefault(group_key(name), []).append(name)
    total = sum(len(g) for g in groups.values())
    if not 0 <= n < total:
        raise ValueError(f"cannot hold out {n} of {total} photos and keep some for training")
    held: list[str] = []
    skipped: list[str] = []
    for key in sorted(groups, key=lambda k: (_hash(k), k)):
        if len(held) + len(groups[key]) <= n:
            held.extend(groups[key])
        else:
            skipped.append(key)
    excluded: list[str] = []
    if len(held) < n:
        # min() keeps the first of equal sizes, i.e. the first in the ranking.
        smallest = min(skipped, key=lambda k: len(groups[k]))
        part = sorted(groups[smallest], key=lambda x: (_hash(x), x))
        k = n - len(held)
        held.extend(part[:k])
        excluded = part[k:]
    used = set(held) | set(excluded)
    train = [x for g in groups.values() for x in g if x not in used]
    return HoldoutSplit(tuple(sorted(held)), tuple(sorted(train)), tuple(sorted(excluded)))


def select_subset(names: Iterable[str], subset: str, n: int = HOLDOUT_SIZE) -> list[str]:
    """The sorted names of ``subset`` ("all", "train" or "holdout") of ``names``."""
    names = list(names)
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
    if subset == "all":
        return sorted(set(names))
    split = split_names(names, n)
    return list(split.held_out if subset == "holdout" else split.train)


def photo_names(images: str | Path) -> list[str]:
    """Sorted file names of the photos (``IMAGE_SUFFIXES``) directly in ``images``."""
    src = Path(images)
    if not src.is_dir():
        raise NotADirectoryError(f"{src} is not a folder of images")
    return sorted(p.name for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def write_background_folder(
    images: str | Path,
    boxes: str | Path,
    out: str | Path,
    n: int = HOLDOUT_SIZE,
    copy: bool = False,
) -> dict[str, int]:
    """Write ``out/images/`` (training photos, symlinked or copied) and ``out/boxes.csv`` (their
    rows of ``boxes``, all columns kept), the layout ``SynthEngine(backgrounds=...)`` reads.

    Held-out and excluded photos get neither a file nor a row. ``out`` must not exist or be
    empty, so that no photo of an earlier run stays behind. Returns counts.
    """
    src = Path(images)
    train = split_names(photo_names(src), n).train
    keep = set(train)
    root = Path(out)
    if root.exists() and any(root.iterdir()):
        raise ValueError(f"{root} is not empty; give a new or empty folder")
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    with open(boxes, newline="") as fin:
        reader = csv.DictReader(fin)
        fields = list(reader.fieldnames or [])
        if "filename" not in fields:
            raise ValueError(f"{boxes} has no filename column")
        rows = [row for row in reader if row["filename"] in keep]
    with open(root / "boxes.csv", "w", newline="") as fout:
        writer = csv.DictWriter(fout, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    for name in train:
        if copy:
            shutil.copy2(src / name, img_dir / name)
        else:
            os.symlink((src / name).resolve(), img_dir / name)
    stats = {"photos": len(train), "boxes": len(rows)}
    logger.info("background folder %s: %s", root, stats)
    return stats


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "holdout",
        help="list the held-out real photos; write a background folder without them",
        description=f"Apply the fixed hold-out rule ({HOLDOUT_SIZE} photos, whole recordings, by "
        "sha256 of the group name; see dfl_infer/training/holdout.py) to a folder of photos.",
    )
    p.add_argument("--images", required=True, help="folder of photos")
    p.add_argument(
        "--boxes",
        default=None,
        help="CSV with one row per hand (column filename); default IMAGES/../boxes.csv",
    )
    p.add_argument(
        "--list-out", default=None, help="write the held-out file names here, one a line"
    )
    p.add_argument(
        "--backgrounds-out",
        default=None,
        help="write images/ (training photos) + boxes.csv here, for "
        "`dfl-train synth --backgrounds` / `fit --synth-backgrounds`",
    )
    p.add_argument("--copy", action="store_true", help="copy photos instead of symlinking them")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    split = split_names(photo_names(args.images))
    logger.info(
        "%d held out, %d for training, %d excluded (recording of a held-out photo)",
        len(split.held_out),
        len(split.train),
        len(split.excluded),
    )
    if args.list_out:
        Path(args.list_out).write_text("".join(f"{name}\n" for name in split.held_out))
    if args.backgrounds_out:
        boxes = Path(args.boxes) if args.boxes else Path(args.images).resolve().parent / "boxes.csv"
        if not boxes.is_file():
            # Without hand boxes the engine would take every photo for hand-free.
            raise FileNotFoundError(f"hand box list {boxes} not found (pass --boxes)")
        write_background_folder(args.images, boxes, args.backgrounds_out, copy=args.copy)
    return 0

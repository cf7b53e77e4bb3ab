"""Pack what a GPU training run needs into one folder small enough to travel with it.

A lent GPU machine sees only the repository plus folders named in ``carry`` (64 MiB in all), and
cannot reach ``../shared`` or the package registries. This writes, into ``--out``:

- ``mesh/``: the WebXR generic hand (``right.glb``, ``left.glb``; MIT) for ``--synth-mesh``;
- ``real/``: pseudo-labelled real photos (the output of ``dfl-train pseudolabel``) in the same
  InterHand2.6M layout, every image downscaled by one common factor and re-encoded, with the
  cameras, boxes and annotations rescaled to match (world coordinates do not change), for
  ``--data folder:OUT/real``;
- ``real/boxes.csv`` (with ``--boxes``): the labelled hand boxes of those photos, rescaled, so that
  ``--synth-backgrounds OUT/real`` cuts background patches clear of every labelled hand;
- ``real-ho/`` (with ``--holdout``): the 150 held-out photos' labels (``dfl-train pseudolabel
  --subset holdout``) with the photos as they are (full size, links resolved), for validation
  only: ``fit --val OUT/real-ho:test`` and the held-out composites made from them on the device
  are then the very sets of the model card (REAL_HO, COMP2_HO), so its guards keep their meaning.

    dfl-train pseudolabel --images ../shared/data/real-hands/images --out /tmp/pl --subset train
    python tools/pack_gpu_carry.py --pseudolabels /tmp/pl \\
        --mesh ../shared/assets/hand-mesh/webxr-generic-hand \\
        --boxes ../shared/data/real-hands/boxes.csv [--holdout runs/data/real-ho] --out .carry

The pack is for training: a split pseudo-labelled with ``--subset holdout`` or ``--subset all``
(``info.subset`` of its ``data.json``) is refused, so that the held-out photos of
``dfl_infer/training/holdout.py`` reach neither the training crops nor the synthetic backgrounds
(``boxes.csv`` keeps only the rows of packed photos).

Put the output folder in ``.git/info/exclude`` (``.carry/`` already is in ``.gitignore``): the
photos and the mesh are never committed. See docs/training.md, "Training the default weights".
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

from PIL import Image

from dfl_infer.image import load_image


def _scale_px(value: float, s: float) -> float:
    """Pixel coordinate under a resize by ``s`` (pixel centres at integers: OpenCV's rule)."""
    return s * (value + 0.5) - 0.5


def pack_real(
    src: Path, dst: Path, max_side: int, quality: int, boxes: Path | None = None
) -> dict[str, float]:
    """Downscaled copy of an InterHand-layout folder (every split found), plus its photos' hand
    boxes rescaled into ``dst/boxes.csv`` when a ``boxes`` CSV (filename,x0,y0,x1,y1) is given."""
    splits = sorted(p.name for p in (src / "annotations").iterdir() if p.is_dir())
    stats: dict[str, float] = {}
    packed: dict[str, tuple[str, float]] = {}  # original file name -> (packed path, scale)
    for split in splits:
        ann = src / "annotations" / split
        data = json.loads((ann / f"InterHand2.6M_{split}_data.json").read_text())
        subset = data.get("info", {}).get("subset")
        if subset in ("holdout", "all"):
            raise SystemExit(
                f"{ann}: pseudo-labelled with --subset {subset}, which includes held-out photos; "
                "pack only the output of `dfl-train pseudolabel --subset train`"
            )
        cams = json.loads((ann / f"InterHand2.6M_{split}_camera.json").read_text())
        joints = (ann / f"InterHand2.6M_{split}_joint_3d.json").read_text()
        longest = max(max(im["width"], im["height"]) for im in data["images"])
        s = min(1.0, max_side / longest)  # one factor, so every shared camera scales once
        for im in data["images"]:
            rgb = load_image(src / "images" / split / im["file_name"])
            w, h = round(rgb.shape[1] * s), round(rgb.shape[0] * s)
            out = dst / "images" / split / im["file_name"]
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).resize((w, h), Image.Resampling.BOX).save(
                out.with_suffix(".jpg"), quality=quality
            )
            new_name = str(Path(im["file_name"]).with_suffix(".jpg"))
            packed.setdefault(Path(im["file_name"]).name, (f"{split}/{new_name}", s))
            im["file_name"] = new_name
            im["width"], im["height"] = w, h
        for a in data["annotations"]:
            x, y, bw, bh = a["bbox"]
            a["bbox"] = [_scale_px(x, s), _scale_px(y, s), bw * s, bh * s]
        for capture in cams.values():
            for cam, (fx, fy) in capture["focal"].items():
                capture["focal"][cam] = [fx * s, fy * s]
            for cam, (cx, cy) in capture["princpt"].items():
                capture["princpt"][cam] = [_scale_px(cx, s), _scale_px(cy, s)]
        out_ann = dst / "annotations" / split
        out_ann.mkdir(parents=True, exist_ok=True)
        (out_ann / f"InterHand2.6M_{split}_data.json").write_text(json.dumps(data))
        (out_ann / f"InterHand2.6M_{split}_camera.json").write_text(json.dumps(cams))
        (out_ann / f"InterHand2.6M_{split}_joint_3d.json").write_text(joints)
        stats[f"{split}_images"] = len(data["images"])
        stats[f"{split}_scale"] = s
    if boxes is not None:
        with open(boxes, newline="") as fin, open(dst / "boxes.csv", "w", newline="") as fout:
            out = csv.writer(fout)
            out.writerow(["filename", "x0", "y0", "x1", "y1"])
            rows = 0
            for row in csv.DictReader(fin):
                if row["filename"] in packed:
                    name, s = packed[row["filename"]]
                    corners = (float(row[k]) for k in ("x0", "y0", "x1", "y1"))
                    out.writerow([name, *(round(_scale_px(v, s), 2) for v in corners)])
                    rows += 1
        stats["boxes"] = rows
    return stats


def pack_holdout(src: Path, dst: Path) -> int:
    """Copy of the held-out labels (``src``: pseudo-labelled with ``--subset holdout``) with
    their photos' bytes, links resolved; returns the number of photos."""
    photos: set[Path] = set()
    for ann in sorted(p for p in (src / "annotations").iterdir() if p.is_dir()):
        data = json.loads((ann / f"InterHand2.6M_{ann.name}_data.json").read_text())
        subset = data.get("info", {}).get("subset")
        if subset != "holdout":
            raise SystemExit(
                f"{ann}: --holdout takes `dfl-train pseudolabel --subset holdout` output"
            )
        shutil.copytree(ann, dst / "annotations" / ann.name)
        for im in data["images"]:
            out = dst / "images" / ann.name / im["file_name"]
            if out in photos:  # a photo with two hands has an entry per hand
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / "images" / ann.name / im["file_name"], out)  # follows links
            photos.add(out)
    return len(photos)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pseudolabels", required=True, help="output of dfl-train pseudolabel")
    parser.add_argument("--mesh", required=True, help="folder with right.glb and left.glb")
    parser.add_argument("--boxes", help="CSV of labelled hand boxes of the photos (boxes.csv)")
    parser.add_argument("--holdout", help="held-out labels (pseudolabel --subset holdout)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-side", type=int, default=384, help="longest side after packing")
    parser.add_argument("--quality", type=int, default=85, help="JPEG quality")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    (out / "mesh").mkdir(parents=True)
    for name in ("right.glb", "left.glb"):
        shutil.copy(Path(args.mesh) / name, out / "mesh" / name)
    boxes = Path(args.boxes) if args.boxes else None
    stats = pack_real(Path(args.pseudolabels), out / "real", args.max_side, args.quality, boxes)
    if args.holdout:
        stats["holdout_images"] = pack_holdout(Path(args.holdout), out / "real-ho")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(json.dumps({**stats, "bytes": size, "mib": round(size / 2**20, 1)}))
    if size > 60 * 2**20:
        raise SystemExit(f"{out}: {size / 2**20:.1f} MiB, over the 60 MiB budget; lower --max-side")


if __name__ == "__main__":
    main()

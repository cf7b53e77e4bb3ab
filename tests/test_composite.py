"""``dfl-train composite``: the pasted hand's labels land on its pixels, the base hand keeps its
own, the pair is a right and a left hand, depths survive and the output is reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dfl_infer.joints import HAND_BONES, NUM_HAND_JOINTS, WRIST
from dfl_infer.lift import Intrinsics
from dfl_infer.training.composite import PALM, CompositeConfig, make_composites
from dfl_infer.training.data import load_samples
from dfl_infer.training.interhand import AnnotationWriter, images_dir
from dfl_infer.training.pseudolabel import hand_camera_joints

COLOURS = [(220, 30, 30), (30, 30, 220), (30, 200, 30), (200, 200, 30)]


def _hand(rng: np.random.Generator, centre: np.ndarray, size: float) -> np.ndarray:
    """A plausible upright 2D hand: wrist at the bottom, five fingers fanning up."""
    pts = np.zeros((NUM_HAND_JOINTS, 2))
    pts[WRIST] = centre + [0, size * 0.45]
    for finger in range(5):
        angle = np.deg2rad(-150 + 30 * finger + rng.normal(0, 3))
        d = np.array([np.cos(angle), np.sin(angle)])
        base = centre + [(finger - 2) * size * 0.12, size * 0.05]
        for k in range(4):  # tip (0) .. base (3) of each finger
            pts[4 * finger + k] = base + d * size * (0.45 - 0.1 * k)
    return pts


def _fixture(root: Path, second_hand: bool = False) -> None:
    """Four 320x240 grey photos, each with one hand drawn in its own colour (sides r, l, r, l);
    ``second_hand``: photo 0 also holds a labelled left hand of its own annotation beside its
    right one (a photo of two hands that do not touch), drawn in grey (it only has to be
    labelled)."""
    import cv2

    rng = np.random.default_rng(0)
    writer = AnnotationWriter()
    img_dir = images_dir(root, "train")
    img_dir.mkdir(parents=True)
    for k, colour in enumerate(COLOURS):
        uv = _hand(rng, np.array([160.0, 120.0]) + rng.uniform(-20, 20, 2), 110.0)
        img = np.full((240, 320, 3), 128, np.uint8)
        pts = np.round(uv).astype(np.int32)
        for child, parent in HAND_BONES:
            cv2.line(img, tuple(map(int, pts[child])), tuple(map(int, pts[parent])), colour, 9)
        cv2.fillPoly(img, [pts[list(PALM)]], colour)
        name = f"photo_{k}.png"
        cv2.imwrite(str(img_dir / name), img[:, :, ::-1])
        intr = Intrinsics.default(320, 240)
        world = np.column_stack([uv - uv.mean(0), rng.normal(0, 5, 21)]) * 0.8 / 1000
        xyz, _ = hand_camera_joints(uv, world, intr)
        hands = [(k % 2, xyz)]
        if second_hand and k == 0:
            hands.append((1, hand_camera_joints(uv + [120.0, 0.0], world, intr)[0]))
        for side, hand_xyz in hands:
            joints = np.zeros((42, 3))
            valid = np.zeros(42)
            joints[side * 21 : (side + 1) * 21], valid[side * 21 : (side + 1) * 21] = hand_xyz, 1
            writer.add(
                file_name=name,
                width=320,
                height=240,
                capture=0,
                camera_name=str(writer.next_id),
                camera={
                    "campos": [0.0, 0.0, 0.0],
                    "camrot": np.eye(3).tolist(),
                    "focal": [intr.fx, intr.fy],
                    "princpt": [intr.cx, intr.cy],
                },
                world_coord=joints.tolist(),
                joint_valid=valid.tolist(),
                hand_type="right" if side == 0 else "left",
                hand_type_valid=1,
                bbox=[0, 0, 1, 1],
                extra={"depth_confidence": 0.5},
            )
    writer.write(root, "train")


@pytest.fixture(scope="module")
def composites(tmp_path_factory) -> tuple[Path, Path]:
    src = tmp_path_factory.mktemp("singles")
    _fixture(src)
    out = tmp_path_factory.mktemp("composites")
    cfg = CompositeConfig(behind_prob=0.0)
    counts = make_composites(src, "train", out, n=8, seed=3, config=cfg)
    assert counts["composites"] == 8
    return src, out


def _colour_at(image: np.ndarray, uv: np.ndarray) -> list[int]:
    """Index into COLOURS of the nearest colour at each point (-1 for grey background)."""
    out = []
    for u, v in np.round(uv).astype(int):
        px = image[v, u].astype(float)
        dists = [np.abs(px - c).sum() for c in COLOURS] + [np.abs(px - 128).sum()]
        best = int(np.argmin(dists))
        out.append(best if best < len(COLOURS) else -1)
    return out


def test_labels_land_on_their_hands_pixels(composites) -> None:
    import cv2

    src, out = composites
    singles = {s.image_path.name: s for s in load_samples(src, "train")}
    data = json.loads((out / "annotations/train/InterHand2.6M_train_data.json").read_text())
    samples = load_samples(out, "train")
    assert len(samples) == 8
    flagged: list[bool] = []  # per flagged joint: whether it shows the donor's colour
    for ann, s in zip(data["annotations"], samples):
        base_name, donor_name = ann["sources"]
        base, donor = singles[base_name], singles[donor_name]
        assert base_name != donor_name
        assert s.hand_type == "interacting" and s.joint_valid.all()
        assert not s.root_depth_valid
        base_side = 0 if base.hand_type == "right" else 1
        donor_side = 1 - base_side  # the donor becomes the other side, mirrored if needed
        b_sl = slice(base_side * 21, base_side * 21 + 21)
        d_sl = slice(donor_side * 21, donor_side * 21 + 21)
        # The base hand's labels are its own, in its own photo (3 decimals of mm written).
        np.testing.assert_allclose(s.joints_img[b_sl], base.joints_img[b_sl], atol=0.05)
        img = cv2.imread(str(s.image_path))[:, :, ::-1]
        donor_colour = int(donor_name.split("_")[1].split(".")[0])
        base_colour = int(base_name.split("_")[1].split(".")[0])
        # The pasted hand is on top: its palm joints show its own photo's colour (JPEG allowed).
        palm = s.joints_img[d_sl][list(PALM)]
        inside = [(0 <= u < 320 and 0 <= v < 240) for u, v in palm]
        hits = [c for c, ok in zip(_colour_at(img, palm[inside]), inside) if ok]
        assert hits and np.mean(np.array(hits) == donor_colour) >= 0.8, hits
        # The base hand is partly covered at most: some of its joints still show its colour.
        base_hits = _colour_at(img, s.joints_img[b_sl])
        assert base_colour in base_hits
        # joint_occluded: only the covered (base) hand's joints, and those show the donor.
        assert s.occluded is not None and not s.occluded[d_sl].any()
        under = s.joints_img[b_sl][s.occluded[b_sl]]
        flagged += [c == donor_colour for c in _colour_at(img, under)]
        # Depths relative to the wrist survive the mirror and turn (z is kept).
        rel = s.joints_cam[d_sl, 2] - s.joints_cam[d_sl][WRIST, 2]
        own = 0 if donor.hand_type == "right" else 1  # its side in its own photo
        src_sl = slice(own * 21, own * 21 + 21)
        want = donor.joints_cam[src_sl, 2] - donor.joints_cam[src_sl][WRIST, 2]
        np.testing.assert_allclose(rel, want, atol=0.01)
    # Overlaps of 0.25-0.9 hand sizes cover some joints in 8 composites; a flagged joint may sit
    # on the feathered edge of the mask, where the colours mix.
    assert len(flagged) >= 3 and np.mean(flagged) >= 0.75, flagged


def test_composites_are_reproducible(composites, tmp_path) -> None:
    src, out = composites
    again = tmp_path / "again"
    make_composites(src, "train", again, n=8, seed=3, config=CompositeConfig(behind_prob=0.0))
    a = (out / "annotations/train/InterHand2.6M_train_joint_3d.json").read_text()
    b = (again / "annotations/train/InterHand2.6M_train_joint_3d.json").read_text()
    assert a == b


def test_workers_write_the_same_files_for_any_count(composites, tmp_path) -> None:
    """``workers`` > 1: the composites are drawn in one process and composed in several, with
    OpenCV's generator seeded per composite, so 2 and 3 workers write identical files; the
    labels' joints (which no cut-out changes) are those of one process."""
    src, one = composites
    cfg = CompositeConfig()
    outs = {}
    for w in (2, 3):
        outs[w] = tmp_path / f"w{w}"
        make_composites(src, "train", outs[w], n=8, seed=3, config=cfg, workers=w)
    files = sorted(p.relative_to(outs[2]) for p in outs[2].rglob("*") if p.is_file())
    assert len(files) == 8 + 3  # the images and the three annotation files
    for rel in files:
        assert (outs[2] / rel).read_bytes() == (outs[3] / rel).read_bytes(), rel
    joints = "annotations/train/InterHand2.6M_train_joint_3d.json"
    same_draws = tmp_path / "one"
    make_composites(src, "train", same_draws, n=8, seed=3, config=cfg)
    assert (outs[2] / joints).read_text() == (same_draws / joints).read_text()


def test_needs_two_photos(tmp_path) -> None:
    src = tmp_path / "one"
    _fixture(src)
    data_path = src / "annotations/train/InterHand2.6M_train_data.json"
    data = json.loads(data_path.read_text())
    keep = {a["image_id"] for a in data["annotations"][:1]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    data["images"] = [i for i in data["images"] if i["id"] in keep]
    data_path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="two photos"):
        make_composites(src, "train", tmp_path / "out", n=1)


def test_base_photos_other_hands_stay_out_of_the_crop(tmp_path) -> None:
    """Photo 0 holds two hands that do not touch (two annotations): pasting beside either one
    would leave the other, unlabelled, in the pair's crop, so neither is ever a base; both can
    still be donors (the donor is cut out by its mask)."""
    src = tmp_path / "two"
    _fixture(src, second_hand=True)
    out = tmp_path / "out"
    counts = make_composites(src, "train", out, n=12, seed=3, config=CompositeConfig())
    data = json.loads((out / "annotations/train/InterHand2.6M_train_data.json").read_text())
    bases = [a["sources"][0] for a in data["annotations"]]
    donors = [a["sources"][1] for a in data["annotations"]]
    assert "photo_0.png" not in bases
    assert counts["redrawn"] > 0 and counts["composites"] == 12
    assert set(bases) == {"photo_1.png", "photo_2.png", "photo_3.png"}
    assert "photo_0.png" in donors

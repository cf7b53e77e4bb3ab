"""Training code on CPU: InterHand-layout data round trip, the fit loop (overfit, resume, DDP),
evaluation with injected predictions, pseudo-labels, and the dfl-train CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dfl_infer.crop import apply_affine, make_crop, turned_box, upright_rotation
from dfl_infer.joints import FLIP_PERMUTATION, NUM_HAND_JOINTS, ROOT_INDICES, seg_class
from dfl_infer.model import DFLConfig
from dfl_infer.training.data import (
    AugmentConfig,
    InterHandDataset,
    StepBatchSampler,
    crop_presence,
)
from dfl_infer.training.evaluate import evaluate_predictions
from dfl_infer.training.fit import FitConfig, fit, lr_factor, parse_data
from dfl_infer.training.holdout import split_names

# Joint colours drawn into the fixture images: right hand red, left hand blue.
COLOURS = ((255, 40, 40), (40, 40, 255))


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def make_fixture(root: Path, split: str, n: int = 6, seed: int = 0, masks: bool = True) -> Path:
    """An InterHand2.6M-layout folder: hands drawn as coloured discs at their joints' projections.

    String JSON keys (captures, cameras, frames) as in the real files; hand types cycle through
    interacting / right / left; the left pinky tip of image 0 is invalid.
    """
    rng = np.random.default_rng(seed)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
    if masks:
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
    w, h, f = 320, 240, 400.0
    data: dict = {"images": [], "annotations": []}
    cams: dict = {"7": {"campos": {}, "camrot": {}, "focal": {}, "princpt": {}}}
    joints: dict = {"7": {}}
    types = ("interacting", "right", "left")
    for i in range(n):
        cam_xyz = np.zeros((42, 3))
        for hand, x0 in ((0, -45.0), (1, 45.0)):
            base = np.array([x0 + rng.uniform(-5, 5), rng.uniform(-10, 10), 600.0])
            sl = slice(hand * NUM_HAND_JOINTS, (hand + 1) * NUM_HAND_JOINTS)
            cam_xyz[sl] = base + rng.uniform([-25, -40, -20], [25, 20, 20], size=(21, 3))
            cam_xyz[hand * NUM_HAND_JOINTS + 20] = base + np.array([0, 30, 0])  # wrist below
        camrot = _rotation(rng)
        campos = rng.uniform(-500, 500, 3)
        world = (camrot.T @ cam_xyz.T).T + campos
        princpt = np.array([w / 2 + rng.uniform(-5, 5), h / 2 + rng.uniform(-5, 5)])
        uv = cam_xyz[:, :2] / cam_xyz[:, 2:] * f + princpt
        hand_type = types[i % 3]
        present = {"interacting": (0, 1), "right": (0,), "left": (1,)}[hand_type]
        img = np.full((h, w, 3), 90, np.uint8)
        seg = np.zeros((h, w), np.uint8)
        for hand in present:
            for j in range(NUM_HAND_JOINTS):
                p = tuple(int(round(c)) for c in uv[hand * NUM_HAND_JOINTS + j])
                cv2.circle(img, p, 4, COLOURS[hand], -1)
                part = 0 if j == 20 else 1 + 3 * (j // 4)
                cv2.circle(seg, p, 4, seg_class(hand, part), -1)
        name = f"cap7/img{i:03d}.jpg"
        (root / "images" / split / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(
            str(root / "images" / split / name),
            cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, 98],
        )
        if masks:
            mpath = root / "masks" / split / f"cap7/img{i:03d}.png"
            mpath.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(mpath), seg)
        valid = np.ones(42)
        if i == 0:
            valid[21] = 0
        cam = str(400 + i)
        cams["7"]["campos"][cam] = campos.tolist()
        cams["7"]["camrot"][cam] = camrot.tolist()
        cams["7"]["focal"][cam] = [f, f]
        cams["7"]["princpt"][cam] = princpt.tolist()
        joints["7"][str(100 + i)] = {
            "world_coord": world.tolist(),
            "joint_valid": valid.tolist(),
            "hand_type": hand_type,
            "hand_type_valid": 1,
        }
        data["images"].append(
            {
                "id": i,
                "file_name": name,
                "width": w,
                "height": h,
                "capture": 7,
                "camera": cam,
                "frame_idx": 100 + i,
            }
        )
        data["annotations"].append(
            {
                "id": i,
                "image_id": i,
                "bbox": [0, 0, w, h],
                "joint_valid": [[v] for v in valid],
                "hand_type": hand_type,
                "hand_type_valid": 1,
            }
        )
    prefix = root / "annotations" / split / f"InterHand2.6M_{split}"
    Path(f"{prefix}_data.json").write_text(json.dumps(data))
    Path(f"{prefix}_camera.json").write_text(json.dumps(cams))
    Path(f"{prefix}_joint_3d.json").write_text(json.dumps(joints))
    return root


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("interhand")
    make_fixture(root, "train", n=6, seed=0)
    make_fixture(root, "test", n=6, seed=1)
    return root


# ----------------------------------------------------------------------------- data


def _colour_hits(item: dict, hand: int) -> np.ndarray:
    """For each valid joint of ``hand`` inside the crop, the colour index (0 red, 1 blue) at it."""
    img = item["image"].numpy().transpose(1, 2, 0)
    s = img.shape[0]
    out = []
    for j in range(hand * NUM_HAND_JOINTS, (hand + 1) * NUM_HAND_JOINTS):
        if item["visibility"][j] < 1:
            continue
        u, v = (int(round(float(c))) for c in item["joints_uvd"][j, :2])
        if not (0 <= u < s and 0 <= v < s):
            continue
        px = img[v, u]
        out.append(0 if px[0] > px[2] else 1)
    return np.array(out)


def test_dataset_labels_and_projections(fixture_root):
    ds = InterHandDataset(fixture_root, "train", size=256)
    assert len(ds) == 6
    item = ds[0]
    s = ds.samples[0]
    crop = ds.make_crop(0)
    # u, v are the GT camera joints projected with the GT intrinsics, through the crop affine.
    proj = s.joints_cam[:, :2] / s.joints_cam[:, 2:] * s.intrinsics[:2] + s.intrinsics[2:]
    assert np.allclose(item["joints_uvd"][:, :2].numpy(), crop.to_crop(proj), atol=1e-3)
    # Depths are relative to each hand's wrist; rel_root_depth is left wrist minus right wrist.
    r, l_ = ROOT_INDICES
    assert abs(float(item["joints_uvd"][r, 2])) < 1e-4
    assert float(item["rel_root_depth"]) == pytest.approx(
        s.joints_cam[l_, 2] - s.joints_cam[r, 2], abs=1e-3
    )
    assert item["joint_valid"][21] == 0 and item["joint_valid"].sum() == 41
    assert item["hand_valid"].tolist() == [1.0, 1.0]
    # Crop intrinsics project the camera joints straight to crop pixels (no rotation).
    fx, fy, cx, cy = item["intrinsics"].tolist()
    cam = item["joints_cam"].numpy()
    uv_k = np.stack([cam[:, 0] / cam[:, 2] * fx + cx, cam[:, 1] / cam[:, 2] * fy + cy], 1)
    assert np.allclose(uv_k, item["joints_uvd"][:, :2].numpy(), atol=1e-2)
    # The image agrees with the labels: right joints sit on red discs, left joints on blue.
    assert (_colour_hits(item, 0) == 0).mean() > 0.9
    assert (_colour_hits(item, 1) == 1).mean() > 0.9
    assert item["seg_valid"] == 1 and item["seg"].shape == (256, 256)
    # A single-hand annotation never supervises the other hand.
    right_only = ds[1]
    assert right_only["hand_valid"].tolist() == [1.0, 0.0]
    assert right_only["joint_valid"][NUM_HAND_JOINTS:].sum() == 0


def _seed_with(ds: InterHandDataset, index: int, flip: bool) -> int:
    for seed in range(100):
        if ds.make_crop(index, np.random.default_rng(seed)).flip == flip:
            return seed
    raise AssertionError("no seed")


@pytest.mark.parametrize("flip", [False, True])
def test_augmentation_keeps_labels_consistent(fixture_root, flip):
    ds = InterHandDataset(fixture_root, "train", size=256, augment=AugmentConfig())
    seed = _seed_with(ds, 0, flip)
    item = ds[(0, seed)]
    crop = ds.make_crop(0, np.random.default_rng(seed))
    s = ds.samples[0]
    uv = crop.to_crop(s.joints_img)
    perm = list(FLIP_PERMUTATION) if flip else list(range(42))
    valid = item["joint_valid"].numpy() > 0
    assert np.allclose(item["joints_uvd"][:, :2].numpy()[valid], uv[perm][valid], atol=1e-3)
    # Under a flip the right-hand labels are the mirrored left hand: they sit on blue discs, and
    # the part labels under them are right-hand classes (the mask was mirrored and swapped).
    right_colour = 1 if flip else 0
    assert (_colour_hits(item, 0) == right_colour).mean() > 0.9
    r, l_ = ROOT_INDICES
    u, v = (int(round(float(c))) for c in item["joints_uvd"][r, :2])
    if 0 <= u < 256 and 0 <= v < 256:
        assert 1 <= int(item["seg"][v, u]) <= 16
    assert item["joint_valid"][0 if flip else 21] == 0  # the invalid left pinky tip moved along
    depth_gt = s.joints_cam[:, 2] - np.repeat(s.joints_cam[list(ROOT_INDICES), 2], 21)
    assert np.allclose(item["joints_uvd"][:, 2].numpy()[valid], depth_gt[perm][valid], atol=1e-3)
    sign = -1 if flip else 1
    assert float(item["rel_root_depth"]) == pytest.approx(
        sign * (s.joints_cam[l_, 2] - s.joints_cam[r, 2]), abs=1e-3
    )
    # The same (index, seed) gives the same item: augmentation is a function of the seed.
    assert torch.equal(ds[(0, seed)]["image"], item["image"])
    # Composites' joints under another hand (joint_occluded) move with their joints; none known
    # (this folder has no such field) gives zeros.
    assert item["occluded"].sum() == 0
    occluded = np.zeros(42, bool)
    occluded[[3, 4, 21, 30]] = True  # joint 21 is not valid here: never flagged
    ds.samples[0] = dataclasses.replace(s, occluded=occluded)
    moved = ds[(0, seed)]["occluded"].numpy() > 0
    assert np.array_equal(moved, occluded[perm] & valid)


@pytest.mark.parametrize("upright", [False, True])
def test_hand_crops_frame_one_of_two_hands_and_keep_both_labelled(fixture_root, upright):
    """AugmentConfig.hand_crop_prob: a two-hand image is cropped around one hand (as the
    predictor's per-hand pass crops it), either hand over the seeds, both hands' labels kept
    (with partial_share 0); single-hand images are cropped as before."""
    still = dataclasses.replace(
        AugmentConfig.none(), hand_crop_prob=1.0, upright_jitter_deg=0.0, partial_share=0.0
    )
    ds = InterHandDataset(fixture_root, "train", size=256, augment=still, upright=upright)
    s = ds.samples[0]
    assert s.hand_type == "interacting"
    plain = InterHandDataset(fixture_root, "train", size=256, upright=upright)
    seen = set()
    for seed in range(12):
        crop = ds.make_crop(0, np.random.default_rng(seed))
        own = [
            make_crop(
                turned_box(s.box_points(h), crop.rotation) if upright else s.box(h),
                256,
                1.25,
                rotation=crop.rotation,
            )
            for h in (0, 1)
        ]
        match = [h for h in (0, 1) if np.allclose(crop.matrix, own[h].matrix, atol=1e-6)]
        assert len(match) == 1
        seen.add(match[0])
        if upright:  # turned by that hand's own direction
            want = upright_rotation(s.upright_joints(match[0]))
            assert crop.rotation == pytest.approx(want)
        assert crop.box[2] - crop.box[0] < plain.make_crop(0).box[2] - plain.make_crop(0).box[0]
        item = ds[(0, seed)]
        assert (item["hand_valid"].numpy() == 1).all()
        valid = item["joint_valid"].numpy() > 0
        uv = crop.to_crop(s.joints_img)
        assert np.allclose(item["joints_uvd"][:, :2].numpy()[valid], uv[valid], atol=1e-3)
    assert seen == {0, 1}
    single = next(i for i, x in enumerate(ds.samples) if x.hand_type != "interacting")
    np.testing.assert_allclose(
        ds.make_crop(single, np.random.default_rng(0)).matrix, plain.make_crop(single).matrix
    )


@pytest.mark.parametrize("upright", [False, True])
def test_presence_labels_follow_what_the_crop_shows(fixture_root, upright):
    """AugmentConfig.partial_share: in a crop around one hand of a pair, the other hand is
    absent when none of its joints are inside (no joints to learn), has no presence label when
    fewer than the share are, and is present otherwise; a crop of both hands keeps both."""
    still = dataclasses.replace(
        AugmentConfig.none(), hand_crop_prob=1.0, upright_jitter_deg=0.0, translation=0.3
    )
    ds = InterHandDataset(fixture_root, "train", size=256, augment=still, upright=upright)
    s = ds.samples[0]
    kinds = set()
    for seed in range(40):
        crop = ds.make_crop(0, np.random.default_rng(seed))
        item = ds[(0, seed)]
        uv = crop.to_crop(s.joints_img)
        inside = (uv >= -0.5).all(1) & (uv <= 255.5).all(1)
        for h in (0, 1):
            sl = slice(21 * h, 21 * h + 21)
            share = inside[sl][s.joint_valid[sl]].mean()
            present = item["hand_valid"][h].item() == 1
            labelled = item["presence_valid"][h].item() == 1
            assert present == (share > 0)
            assert labelled == (share == 0 or share >= 0.5)
            assert (item["joint_valid"][sl].numpy() > 0).any() == present
            kinds.add("absent" if share == 0 else ("partial" if share < 0.5 else "present"))
    assert {"absent", "present"} <= kinds
    # A few fingers at the crop's edge: joints kept, no presence label (crop_presence directly).
    inside = np.zeros(42, bool)
    inside[:21] = True
    inside[21:25] = True  # 4 of the left hand's 21 joints
    hv, jv, pv = crop_presence(np.ones(2, bool), np.ones(42, bool), inside, np.ones(2), 0.5)
    assert hv.all() and jv.all() and list(pv) == [1.0, 0.0]
    hv, jv, pv = crop_presence(np.ones(2, bool), np.ones(42, bool), inside, np.ones(2), 0.15)
    assert list(pv) == [1.0, 1.0]
    both = InterHandDataset(
        fixture_root, "train", size=256, augment=AugmentConfig(), upright=upright
    )
    assert (both[(0, 1)]["hand_valid"].numpy() == 1).all()


def test_step_sampler_is_a_function_of_step():
    a = StepBatchSampler(10, 3, seed=1, start_step=0)
    b = StepBatchSampler(10, 3, seed=1, start_step=5)
    first = [next(it) for it in [iter(a)] for _ in range(8)]
    assert next(iter(b)) == first[5]


def test_parse_data_and_schedule():
    specs = parse_data("synth@3,interhand:/data/ih,folder:/x@0.5")
    assert [(s.kind, s.root, s.weight) for s in specs] == [
        ("synth", None, 3.0),
        ("interhand", "/data/ih", 1.0),
        ("folder", "/x", 0.5),
    ]
    with pytest.raises(ValueError):
        parse_data("coco:/x")
    # 50 "epochs" = 100 steps: x0.1 from step 48, x0.01 from step 70.
    assert [lr_factor(s, 100) for s in (0, 47, 48, 69, 70, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )


# ----------------------------------------------------------------------------- evaluation


def test_evaluate_ground_truth_gives_zero(fixture_root):
    ds = InterHandDataset(fixture_root, "test", size=256)
    items = [ds[i] for i in range(len(ds))]
    uvd = np.stack([it["joints_uvd"].numpy() for it in items]).astype(np.float64)
    pres = np.stack([np.where(it["hand_valid"].numpy() > 0, 10.0, -10.0) for it in items])
    rel = np.array([float(it["rel_root_depth"]) for it in items])
    m = evaluate_predictions(ds, uvd, pres, rel)
    assert m["n_images"] == 6
    for key in ("mpjpe_all", "mpjpe_single", "mpjpe_interacting", "mrrpe"):
        assert m[key] == pytest.approx(0.0, abs=0.05), key
    # Float round-off (~1e-5 mm) fails only the 0 mm threshold: 50 of 51 points.
    assert m["pck_auc_0_50"] >= 50 / 51 - 1e-9
    assert m["handedness_acc"] == 1.0
    assert m["hand_separation"] == pytest.approx(1.0, abs=1e-3)
    # Both hands predicted on the left hand's joints: collapsed, separation 0.
    collapsed = uvd.copy()
    collapsed[:, :NUM_HAND_JOINTS] = collapsed[:, NUM_HAND_JOINTS:]
    assert evaluate_predictions(ds, collapsed, pres, rel)["hand_separation"] == pytest.approx(0.0)
    # A 10 mm error in the relative root depth moves the left wrist ~10 mm (MRRPE); MPJPE is
    # wrist-aligned and only sees the small perspective change of the left hand's x, y.
    m2 = evaluate_predictions(ds, uvd, -pres, rel + 10.0)
    assert m2["mpjpe_all"] < 0.5
    assert m2["mrrpe"] == pytest.approx(10.0, abs=1.0)
    assert m2["handedness_acc"] == 0.0


def _shifted_uvd(ds: InterHandDataset, shift: tuple[float, float]) -> np.ndarray:
    """(N, 42, 3) predictions in crop pixels whose image-pixel u is the label's plus
    ``shift[h]`` x the box size of hand h (longer side of its valid joints' tight box)."""
    uvd = np.zeros((len(ds), 42, 3))
    for i, s in enumerate(ds.samples):
        img = s.joints_img.copy()
        for h in (0, 1):
            sl = slice(h * NUM_HAND_JOINTS, (h + 1) * NUM_HAND_JOINTS)
            pts = s.joints_img[sl][s.joint_valid[sl]]
            if len(pts):
                img[sl, 0] += shift[h] * (pts.max(0) - pts.min(0)).max()
        uvd[i, :, :2] = apply_affine(ds.make_crop(i).matrix, img)
    return uvd


def test_hand_pass_dataset_reruns_only_pairs(fixture_root):
    """evaluate --hand-pass: samples without two predicted hands keep their joints; the others
    go through hand_pass (their crops' joints change, in the evaluation crop's pixels)."""
    from dfl_infer.decode import CropOutputs
    from dfl_infer.model.dfl import DFLModel
    from dfl_infer.training.evaluate import hand_pass_dataset

    torch.manual_seed(0)
    model = DFLModel(DFLConfig.tiny(input_size=64))
    ds = InterHandDataset(fixture_root, "test", size=64)
    n = len(ds)
    uvd = np.stack(
        [
            np.concatenate([ds.make_crop(i).to_crop(s.joints_img), np.zeros((42, 1))], 1)
            for i, s in enumerate(ds.samples)
        ]
    ).astype(np.float32)
    presence = np.where(np.arange(n)[:, None] == 0, 5.0, -5.0).repeat(2, 1).astype(np.float32)
    first = CropOutputs(
        uvd,
        presence,
        np.zeros(n, np.float32),
        uvd[:, None, :, :2],
        np.tile(np.float32([[1.0, -1.0]]), (n, 1)),
    )
    out = hand_pass_dataset(model, ds, first, batch_size=4)
    assert out.shape == uvd.shape
    np.testing.assert_array_equal(out[1:], uvd[1:])
    assert np.isfinite(out[0]).all()


def test_evaluate_2d_box_metrics(fixture_root):
    ds = InterHandDataset(fixture_root, "test", size=64)
    zeros2, zeros = np.zeros((len(ds), 2)), np.zeros(len(ds))
    m = evaluate_predictions(ds, _shifted_uvd(ds, (0.0, 0.0)), zeros2, zeros)
    assert m["pck2d_10"] == 1.0 and m["mean_2d_box_pct"] == pytest.approx(0.0, abs=1e-9)
    # Test split: interacting, right, left, interacting, right, left; image 0 lacks one left joint.
    # Right hands: 4 x 21 = 84 joints 5% of their box off; left: 20 + 3 x 21 = 83 joints 20% off.
    m = evaluate_predictions(ds, _shifted_uvd(ds, (0.05, 0.20)), zeros2, zeros)
    assert m["n_hands_2d"] == 8
    assert m["pck2d_10"] == pytest.approx(84 / 167)
    assert m["mean_2d_box_pct"] == pytest.approx((84 * 5.0 + 83 * 20.0) / 167)
    m = evaluate_predictions(ds, _shifted_uvd(ds, (0.5, 0.5)), zeros2, zeros)
    assert m["pck2d_10"] == 0.0 and m["mean_2d_box_pct"] == pytest.approx(50.0)


def test_evaluate_2d_box_metrics_on_synthetic_test_split(tmp_path):
    from dfl_infer.training.synth import SynthEngine, write_dataset

    write_dataset(SynthEngine("cpu"), tmp_path, 2, "test", seed=7, batch_size=2)
    ds = InterHandDataset(tmp_path, "test", size=64)
    zeros2, zeros = np.zeros((len(ds), 2)), np.zeros(len(ds))
    m = evaluate_predictions(ds, _shifted_uvd(ds, (0.0, 0.0)), zeros2, zeros)
    assert m["n_hands_2d"] >= 2 and m["pck2d_10"] == 1.0
    assert m["mean_2d_box_pct"] == pytest.approx(0.0, abs=1e-9)
    m = evaluate_predictions(ds, _shifted_uvd(ds, (0.3, 0.3)), zeros2, zeros)
    assert m["pck2d_10"] == 0.0 and m["mean_2d_box_pct"] == pytest.approx(30.0)


# ----------------------------------------------------------------------------- fit


def _fit_cfg(root: Path, out: Path, **kw) -> FitConfig:
    base = dict(
        out=str(out),
        data=f"interhand:{root}",
        config="tiny",
        input_size=64,
        steps=6,
        batch_size=2,
        num_workers=0,
        log_every=1,
        device="cpu",
        progress=False,
        augment=False,
    )
    base.update(kw)
    return FitConfig(**base)


def _records(out: Path) -> list[dict]:
    return [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in _records(out) if "loss" in r]


def test_split_batch_and_loss_batch_defaults():
    from dfl_infer.training.fit import loss_batch, split_batch

    assert split_batch(8, [1, 1]) == [4, 4]
    assert split_batch(8, [3, 1]) == [6, 2]
    assert split_batch(3, [100, 1, 1]) == [1, 1, 1]  # every source keeps one item
    with pytest.raises(ValueError, match="batch-size"):
        split_batch(1, [1, 1])
    synth_like = {
        "image": torch.zeros(2, 3, 8, 8),
        "joints_uvd": torch.zeros(2, 42, 3),
        "joint_valid": torch.ones(2, 42),
        "seg": torch.zeros(2, 8, 8, dtype=torch.long),
        "hand_valid": torch.ones(2, 2),
        "rel_root_depth": torch.zeros(2),
        "depth": torch.zeros(2, 8, 8),  # a key the loss does not read is dropped
    }
    b = loss_batch(synth_like)
    assert "depth" not in b and torch.equal(b["depth_weight"], synth_like["joint_valid"])
    assert b["presence_valid"].shape == (2, 2) and b["root_valid"].shape == (2,)


@pytest.mark.slow
def test_fit_mixed_batches_frozen_trunk_and_best_on_val(fixture_root, tmp_path):
    """mphand with the early trunk frozen, two sources in every batch, scored at every save; the
    best weights land in OUT/best and the frozen layers do not move."""
    from dfl_infer.model import DFLModel

    torch.set_num_threads(2)
    out = tmp_path / "mix"
    cfg = _fit_cfg(
        fixture_root,
        out,
        config="mphand",
        steps=2,
        batch_size=3,
        save_every=1,
        lr=1e-3,
        data=f"interhand:{fixture_root}@2,interhand:{fixture_root}@1",
        mix_batches=True,
        freeze_trunk="early",
        val=(f"{fixture_root}:test",),
    )
    torch.manual_seed(cfg.seed)
    start = DFLModel(DFLConfig.mphand(input_size=64)).state_dict()
    fit(cfg)
    records = _records(out)
    assert [r["source"] for r in records if "loss" in r] == ["mix", "mix"]
    vals = [r for r in records if "val" in r]
    assert [r["step"] for r in vals] == [1, 2]
    metrics = vals[0]["val"][f"{fixture_root.name}:test"]
    assert 0.0 <= metrics["pck2d_10"] <= 1.0 and metrics["mean_2d_box_pct"] > 0
    assert vals[0]["best"]
    best = DFLModel.from_pretrained(out / "best")
    end = DFLModel.from_pretrained(out).state_dict()
    assert torch.equal(
        end["encoder.trunk.stage1.0.expand.conv.weight"],
        start["encoder.trunk.stage1.0.expand.conv.weight"],
    )
    assert not torch.equal(
        end["encoder.trunk.stage5.0.expand.conv.weight"],
        start["encoder.trunk.stage5.0.expand.conv.weight"],
    )
    assert best.config.backbone == "mediapipe_hand"
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["best"] is not None


def test_best_guard_keeps_best_only_within_the_limit(fixture_root, tmp_path):
    """--best-guard N:METRIC:MAX (or N:METRIC:>=MIN): a save that improves the first folder's
    metric is kept as OUT/best only while folder N stays within the bound; malformed guards are
    one clear ValueError."""
    from dfl_infer.model import DFLModel
    from dfl_infer.training.fit import Validator, parse_guard

    assert parse_guard("2:mean_2d_box_pct:4", 2) == (1, "mean_2d_box_pct", 4.0, False)
    assert parse_guard("1:both_found:>=0.95", 2) == (0, "both_found", 0.95, True)
    for bad in ("2:mean_2d_box_pct", "x:m:1", "3:m:1", "0:m:1", "1:m:nan", "1::1"):
        with pytest.raises(ValueError, match="--best-guard"):
            parse_guard(bad, 2)
    model = DFLModel(DFLConfig.tiny(input_size=64))
    other = make_fixture(tmp_path / "other", "test", n=2, seed=3)
    val = (f"{fixture_root}:test", f"{other}:test")
    with pytest.raises(ValueError, match="already a --val folder"):
        Validator(_fit_cfg(fixture_root, tmp_path, val=(val[0], val[0])), model.config)
    for n, (bound, kept) in enumerate(((1e9, True), (0.0, False), (">=0", True), (">=1e9", False))):
        out = tmp_path / f"guard{n}"
        out.mkdir()
        cfg = _fit_cfg(fixture_root, out, val=val, best_guard=(f"2:mean_2d_box_pct:{bound}",))
        validator = Validator(cfg, model.config)
        validator(model, 1, out)
        assert (out / "best").is_dir() == kept
        assert json.loads((out / "metrics.jsonl").read_text())["best"] == kept
    cfg = _fit_cfg(fixture_root, tmp_path, val=val, best_guard=("2:no_such_metric:1",))
    with pytest.raises(ValueError, match="no_such_metric"):
        Validator(cfg, model.config)(model, 1, tmp_path)


def test_fit_rejects_bad_settings_before_training(fixture_root, tmp_path):
    """fit() itself (not only the command line) refuses settings no run can use, with one clear
    ValueError and nothing written."""
    from dfl_infer.training.fit import fit

    bad = (
        ({"hand_crops": 1.5}, "--hand-crops"),
        ({"hand_crops": float("nan")}, "--hand-crops"),
        ({"steps": 0}, "--steps"),
        ({"best_guard": ("3:mean_2d_box_pct:4",)}, "--best-guard"),
    )
    for n, (kw, match) in enumerate(bad):
        out = tmp_path / f"bad{n}"
        with pytest.raises(ValueError, match=match):
            fit(_fit_cfg(fixture_root, out, **kw))
        assert not out.exists()


@pytest.mark.slow
def test_tiny_overfits(tmp_path):
    """tiny memorizes one sample: the loss falls more than 5x in 80 steps at lr 1e-3 (about 15 s
    on 2 cores). --stop-after keeps the schedule from decaying inside the run."""
    torch.set_num_threads(2)
    root = make_fixture(tmp_path / "one", "train", n=1, seed=0)
    out = tmp_path / "overfit"
    fit(_fit_cfg(root, out, steps=1000, stop_after=80, batch_size=1, lr=1e-3, save_every=1000))
    losses = _losses(out)
    assert len(losses) == 80
    assert np.mean(losses[-10:]) < losses[0] / 5, losses
    # The result loads like any weights folder.
    from dfl_infer import DFLPredictor

    pred = DFLPredictor(weights=out, device="cpu")
    assert pred.model.config.metadata["trained_steps"] == 80


@pytest.mark.slow
def test_resume_reproduces_trajectory(fixture_root, tmp_path):
    torch.set_num_threads(2)
    full, part = tmp_path / "full", tmp_path / "part"
    kw = dict(steps=4, batch_size=1, ema_decay=0.9)
    fit(_fit_cfg(fixture_root, full, **kw))
    fit(_fit_cfg(fixture_root, part, stop_after=2, **kw))
    assert len(_losses(part)) == 2
    fit(_fit_cfg(fixture_root, part, resume=True, **kw))
    a, b = _losses(full), _losses(part)
    assert len(b) == 4
    assert np.allclose(a, b, rtol=1e-5, atol=1e-6), (a, b)
    state = torch.load(part / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4


def test_stop_after_minutes_saves_and_resumes(fixture_root, tmp_path):
    """A time limit already spent at the first step: the run stops there with a checkpoint (the
    schedule keeps the full horizon), and --resume carries on to the end."""
    out = tmp_path / "timed"
    fit(_fit_cfg(fixture_root, out, steps=3, batch_size=1, stop_after_minutes=1e-9))
    assert len(_losses(out)) == 1
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 1
    fit(_fit_cfg(fixture_root, out, steps=3, batch_size=1, resume=True))
    assert len(_losses(out)) == 3
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="--stop-after-minutes"):
            fit(_fit_cfg(fixture_root, tmp_path / "bad", stop_after_minutes=bad))
    with pytest.raises(ValueError, match="--occluded-weight"):
        fit(_fit_cfg(fixture_root, tmp_path / "bad", occluded_weight=0.0))
    assert not (tmp_path / "bad").exists()  # refused before anything was written


@pytest.mark.slow
def test_ddp_two_cpu_processes(fixture_root, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "dfl_infer.training.cli", "fit", "--config", "tiny", "--input-size", "64"]
    cmd += ["--data", f"interhand:{fixture_root}", "--out", str(out)]
    cmd += "--steps 2 --batch-size 1 --num-workers 0 --device cpu --log-every 1".split()
    cmd += ["--no-progress"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert len(_losses(out)) == 2
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 2
    # A time limit: both ranks agree to stop at the same step (the first).
    timed = tmp_path / "timed"
    cmd[cmd.index(str(out))] = str(timed)
    res = subprocess.run(
        [*cmd, "--stop-after-minutes", "1e-9"], env=env, capture_output=True, text=True, timeout=240
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert torch.load(timed / "checkpoint.pt", weights_only=True)["step"] == 1


def test_cli_evaluate_writes_json_and_table(fixture_root, tmp_path):
    from dfl_infer.model import DFLConfig, DFLModel
    from dfl_infer.training.cli import main

    torch.manual_seed(0)
    weights = tmp_path / "w"
    DFLModel(DFLConfig.tiny(input_size=64)).save_pretrained(weights)
    out = tmp_path / "eval" / "metrics.json"
    data = f"interhand:{fixture_root}"
    args = ["--weights", str(weights), "--data", data, "--split", "test", "--out", str(out)]
    rc = main(["evaluate", *args, "--device", "cpu"])
    assert rc == 0
    m = json.loads(out.read_text())
    assert m["n_images"] == 6 and np.isfinite(m["mpjpe_all"])
    assert "mpjpe_interacting" in (out.parent / "metrics.md").read_text()


# ----------------------------------------------------------------------------- pseudo-labels


class _FakeDetector:
    """Two touching hands at fixed landmarks with MediaPipe-like world coordinates and the given
    handedness scores (right, left); counts its calls."""

    def __init__(self, scores: tuple[float, float] = (0.9, 0.9)) -> None:
        self.scores, self.calls = scores, 0

    def detect(self, image):
        from dfl_infer.detect import HandDetection

        self.calls += 1
        rng = np.random.default_rng(0)
        hands = []
        for side, x, score in (("right", 120.0, self.scores[0]), ("left", 175.0, self.scores[1])):
            world = rng.uniform(-0.04, 0.04, (21, 3))
            lm = world[:, :2] * 1000 + np.array([x, 120.0])  # 1 px per mm
            hands.append(HandDetection(np.r_[lm.min(0), lm.max(0)], side, score, lm, world))
        return hands


def test_pseudolabel_writes_loadable_layout(tmp_path):
    from dfl_infer.training.pseudolabel import pseudolabel_folder

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(photos / name), np.full((240, 320, 3), 128, np.uint8))
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("filename,x0,y0,x1,y1\na.jpg,0,0,1,1\na.jpg,0,0,1,1\na.jpg,0,0,1,1\n")
    stats = pseudolabel_folder(photos, tmp_path / "out", detector=_FakeDetector(), boxes=boxes)
    assert stats["annotations"] == 2 and stats["interacting"] == 2 and stats["hand_missing"] == 1
    ds = InterHandDataset(tmp_path / "out", "train", size=128)
    s = ds.samples[0]
    # 3 boxes listed for a.jpg, 2 found: a hand may be missing -> presence not supervised.
    assert not s.hand_type_valid and ds.samples[1].hand_type_valid
    assert not s.root_depth_valid
    assert np.allclose(s.depth_weight[s.joint_valid], 0.5)
    # Written 3D joints reproject onto the detector's landmarks (scale = 1 px per mm here).
    lm = _FakeDetector().detect(None)[0].landmarks
    assert np.allclose(s.joints_img[:21], lm, atol=1e-2)
    item = ds[0]
    assert item["presence_valid"].sum() == 0 and item["root_valid"] == 0
    # Relative depths are MediaPipe's world z differences in mm.
    world = _FakeDetector().detect(None)[0].landmarks_3d
    assert np.allclose(
        item["joints_uvd"][:21, 2].numpy(), (world[:, 2] - world[20, 2]) * 1000, atol=0.01
    )


def test_pseudolabel_subsets_and_min_presence(tmp_path):
    from dfl_infer.training.cli import build_parser
    from dfl_infer.training.pseudolabel import pseudolabel_folder

    photos = tmp_path / "photos"
    photos.mkdir()
    names = [f"s_pic{i:05d}.jpg" for i in range(3)] + [f"Hand_{i}.jpg" for i in range(5)]
    for name in names:
        cv2.imwrite(str(photos / name), np.full((240, 320, 3), 128, np.uint8))
    split = split_names(names, 3)
    for subset, want in (("train", split.train), ("holdout", split.held_out)):
        det = _FakeDetector(scores=(0.95, 0.5))
        out = tmp_path / subset
        stats = pseudolabel_folder(photos, out, "test", detector=det, subset=subset, holdout_size=3)
        assert det.calls == stats["images"] == len(want)
        assert sorted(p.name for p in (out / "images" / "test").iterdir()) == list(want)
        data = json.loads((out / "annotations/test/InterHand2.6M_test_data.json").read_text())
        assert data["info"]["subset"] == subset
        assert sorted(im["file_name"] for im in data["images"]) == list(want)
        # The held-out subset keeps hands whose handedness score is >= 0.9: the right one.
        types = {a["hand_type"] for a in data["annotations"]}
        assert types == ({"right"} if subset == "holdout" else {"interacting"})
        assert stats.get("low_score_hands", 0) == (len(want) if subset == "holdout" else 0)
    # 2D metrics on the pseudo-labelled held-out photos: the labels score 1.0.
    ds = InterHandDataset(tmp_path / "holdout", "test", size=64)
    m = evaluate_predictions(ds, _shifted_uvd(ds, (0.0, 0.0)), np.zeros((3, 2)), np.zeros(3))
    assert m["n_hands_2d"] == 3 and m["pck2d_10"] == 1.0
    args = build_parser().parse_args(["pseudolabel", "--images", "i", "--out", "o"])
    assert args.subset == "all" and args.min_presence is None


def test_pseudolabel_keeps_confident_detections(tmp_path, monkeypatch):
    """Labels come from MediaPipe's confident detections: the palm threshold stays at the 0.3 the
    shipped training sets were made with, whatever the predictor's detector default is."""
    import dfl_infer.detect
    from dfl_infer.training.pseudolabel import LABEL_DETECTION_CONFIDENCE, pseudolabel_folder

    made = []

    class Recorder:
        def __init__(self, **options):
            made.append(options)

        def detect(self, rgb):
            return []

    monkeypatch.setattr(dfl_infer.detect, "HandDetector", Recorder)
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.jpg"), np.full((64, 64, 3), 128, np.uint8))
    pseudolabel_folder(photos, tmp_path / "a")
    pseudolabel_folder(photos, tmp_path / "b", min_presence=0.9)
    assert LABEL_DETECTION_CONFIDENCE == 0.3
    assert [m["min_detection_confidence"] for m in made] == [0.3, 0.3]
    assert made[1]["min_presence_confidence"] == 0.9


def test_pseudolabel_real_photos(tmp_path, shared_dir):
    photos = shared_dir / "data" / "real-hands" / "images"
    if not photos.is_dir():
        pytest.skip(f"{photos} is absent (real-hands photos live only on developer machines)")
    from dfl_infer.detect import DetectorUnavailableError, HandDetector
    from dfl_infer.training.pseudolabel import pseudolabel_folder

    try:
        HandDetector(allow_download=False).load()
    except DetectorUnavailableError as exc:
        pytest.skip(f"MediaPipe hand landmarker bundle not available: {exc}")
    stats = pseudolabel_folder(photos, tmp_path / "pl", limit=3, boxes=photos.parent / "boxes.csv")
    assert stats["images"] == 3
    if stats.get("annotations", 0):
        ds = InterHandDataset(tmp_path / "pl", "train", size=128)
        item = ds[0]
        assert torch.isfinite(item["joints_uvd"]).all()


@pytest.mark.slow
def test_fit_on_synth_stream_mixed(fixture_root, tmp_path):
    """The synthetic engine plugs into fit as a source, mixed with an InterHand-layout folder."""
    out = tmp_path / "mixed"
    cfg = _fit_cfg(fixture_root, out, steps=2, batch_size=1, data=f"synth,interhand:{fixture_root}")
    fit(cfg)
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(np.isfinite(r["loss"]) for r in records)


def test_fit_hand_types_filter(fixture_root, tmp_path):
    """--hand-types keeps only images of those types in the training sources (a bad name or an
    empty result is a one-line ValueError); fit runs on what is left."""
    from dfl_infer.training.fit import _hand_types, keep_hand_types

    ds = InterHandDataset(fixture_root, "test", size=64)
    types = {s.hand_type for s in ds.samples}
    assert types == {"right", "left", "interacting"}
    keep_hand_types(ds, ("right", "left"))
    assert ds.samples and {s.hand_type for s in ds.samples} == {"right", "left"}
    keep_hand_types(ds, ())  # empty: no filter
    assert {s.hand_type for s in ds.samples} == {"right", "left"}
    with pytest.raises(ValueError, match="no interacting images"):
        keep_hand_types(ds, ("interacting",))
    assert _hand_types("right, left") == ("right", "left") and _hand_types("") == ()
    with pytest.raises(ValueError, match="--hand-types"):
        _hand_types("right,both")
    out = tmp_path / "singles"
    fit(_fit_cfg(fixture_root, out, split="test", steps=2, hand_types=("right", "left")))
    assert len(_losses(out)) == 2

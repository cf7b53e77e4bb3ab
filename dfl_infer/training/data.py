"""InterHand2.6M-layout datasets: GT-box crops, the paper's augmentations, labels moved exactly.

The layout (files, JSON fields, camera convention) is ``training.interhand``'s; it is also what
``dfl-train synth`` and ``dfl-train pseudolabel`` write.

Extension fields (optional, per annotation; written by ``dfl-train pseudolabel``, defaults in
brackets, see ``docs/training.md``): ``depth_confidence`` [1.0] weight of the depth term for that
annotation; ``depth_valid`` (42) [joint_valid] which joints have a usable relative depth;
``root_depth_valid`` [1] whether the left-minus-right wrist depth is known; ``hand_missing`` [0]
an external label says the image holds a hand the labeller did not find; ``joint_occluded`` (42)
[0] the joint lies under another hand (composites).

Each item is a dict with the synthetic stream's keys (one loss serves both): ``image`` (3, S, S)
float32 RGB in [0, 1]; ``joints_uvd`` (42, 3) u, v crop pixels and depth in mm relative to each
hand's own wrist; ``joints_cam`` (42, 3) mm camera frame (x negated under a horizontal flip, so
it stays consistent with the mirrored image); ``joint_valid`` (42,); ``hand_valid`` (2,) right,
left; ``seg`` (S, S) int64 part classes (``SEG_IGNORE`` where unknown); ``intrinsics`` (4,) fx,
fy, cx, cy of the crop (exact when the crop is not rotated); ``visibility`` (42,) valid and inside
the crop; ``rel_root_depth`` () left wrist depth minus right wrist depth, mm. Extras used by the
loss and evaluation: ``depth_weight`` (42,), ``occluded`` (42,) valid joints under another hand,
``presence_valid`` (2,), ``root_valid`` (),
``seg_valid`` (), ``crop_matrix`` (2, 3) image -> crop affine, ``index`` ().
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from dfl_infer.crop import UP_JOINT, Crop, make_crop, points_box, turned_box, upright_rotation
from dfl_infer.joints import (
    FLIP_PERMUTATION,
    NUM_HAND_JOINTS,
    NUM_JOINTS,
    ROOT_INDICES,
    WRIST,
    flip_seg_classes,
)
from dfl_infer.training.interhand import (
    HAND_TYPES,
    image_path,
    mask_path,
    read_annotations,
)
from dfl_infer.training.losses import SEG_IGNORE

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentation of §4.2 (flip, rotation, scale, translation) plus colour jitter.

    Ranges follow InterNet's training code, which the paper's crops follow ([19]).
    """

    flip_prob: float = 0.5  # horizontal flip; swaps the hands (FLIP_PERMUTATION)
    rotation_deg: float = 45.0  # uniform in +-rotation_deg, applied with rotation_prob
    rotation_prob: float = 0.6
    # Upright datasets (``upright=True``): every crop turned upright, then by a jitter uniform in
    # +-upright_jitter_deg (instead of the rotation above), so the network learns the crops that
    # inference gives it and a little around them.
    upright_jitter_deg: float = 20.0
    scale: float = 0.25  # box side multiplied by a factor uniform in [1 - scale, 1 + scale]
    translation: float = 0.15  # box centre shifted by up to this fraction of its side, per axis
    color: float = 0.2  # brightness, contrast and saturation factors in [1 - color, 1 + color]
    # With this probability an image with both hands annotated is cropped around one of them
    # (either, at random) instead of both, as the predictor's per-hand pass crops it
    # (dfl_infer.hand_pass); both hands stay labelled. 0: off (the paper's crops).
    hand_crop_prob: float = 0.0
    # Presence labels follow what the crop shows: a hand none of whose valid joints lie inside
    # the crop is absent there (no presence, joints or side to learn), and one with fewer than
    # this share of them inside gets no presence label either way (a few fingers at the edge).
    # 0: off (every annotated hand present, wherever the crop went).
    partial_share: float = 0.5

    @classmethod
    def none(cls) -> AugmentConfig:
        """No augmentation (evaluation)."""
        return cls(flip_prob=0.0, rotation_prob=0.0, scale=0.0, translation=0.0, color=0.0)


@dataclass(frozen=True)
class Sample:
    """Ground truth of one annotation in the original image (before cropping).

    ``joints_cam`` (42, 3) mm; ``joints_img`` (42, 2) pixels; ``joint_valid`` (42,) bool;
    ``depth_weight`` (42,) in [0, 1]; ``hand_type`` one of HAND_TYPES; ``intrinsics`` (4,).
    """

    image_path: Path
    mask_path: Path | None
    joints_cam: np.ndarray
    joints_img: np.ndarray
    joint_valid: np.ndarray
    depth_weight: np.ndarray
    hand_type: str
    hand_type_valid: bool
    root_depth_valid: bool
    intrinsics: np.ndarray
    # (42,) bool: joints under another hand (composites' ``joint_occluded``); None: none known.
    occluded: np.ndarray | None = None

    @property
    def hand_valid(self) -> np.ndarray:
        """(2,) bool: which hands (right, left) the annotation has, with a valid wrist."""
        present = {"right": (True, False), "left": (False, True), "interacting": (True, True)}[
            self.hand_type
        ]
        return np.array([present[h] and bool(self.joint_valid[ROOT_INDICES[h]]) for h in (0, 1)])

    def _hands(self, only: int | None) -> np.ndarray:
        """(2,) bool: the annotated hands, or of them only hand ``only`` (0 right, 1 left)."""
        hands = self.hand_valid
        if only is not None:
            hands = hands & (np.arange(2) == only)
        return hands

    def upright_joints(self, only: int | None = None) -> list[np.ndarray]:
        """The (21, 2) image joints of each annotated hand (or only of hand ``only``) whose wrist
        and middle MCP are valid: what ``crop.upright_rotation`` turns upright (the detector's
        landmarks at inference)."""
        out = []
        for h in np.flatnonzero(self._hands(only)):
            sl = slice(h * NUM_HAND_JOINTS, (h + 1) * NUM_HAND_JOINTS)
            if self.joint_valid[sl][[WRIST, UP_JOINT]].all():
                out.append(self.joints_img[sl])
        return out

    def box_points(self, only: int | None = None) -> np.ndarray:
        """(N, 2) image pixels of the joints the GT box holds: the valid joints of the annotated
        hands, or of hand ``only`` (of any valid joint when no such hand has a valid wrist)."""
        valid = self.joint_valid & np.repeat(self._hands(only), NUM_HAND_JOINTS)
        pts: np.ndarray = self.joints_img[valid if valid.any() else self.joint_valid]
        return pts

    def box(self, only: int | None = None) -> np.ndarray:
        """GT box (xyxy): the tight box of the valid joints' projections (InterNet-style), of
        hand ``only`` when given."""
        box = points_box(self.box_points(only))
        # A degenerate box (one valid joint) still needs an area for make_crop.
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            c = (box[:2] + box[2:]) / 2
            box = np.array([c[0] - 8, c[1] - 8, c[0] + 8, c[1] + 8])
        return box


def _flat(value: Any, n: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size != n:
        raise ValueError(f"{name}: expected {n} values, got {arr.size}")
    return arr


def load_samples(root: str | Path, split: str) -> list[Sample]:
    """Parse an InterHand2.6M-layout folder into samples (one per annotation)."""
    samples = []
    for record in read_annotations(root, split):
        ann, j3 = record.annotation, record.joint_3d
        cam_xyz = record.joints_cam()
        valid = _flat(ann.get("joint_valid", j3["joint_valid"]), NUM_JOINTS, "joint_valid") > 0
        valid &= _flat(j3["joint_valid"], NUM_JOINTS, "joint_valid") > 0
        valid &= cam_xyz[:, 2] > 1.0  # behind or on the camera: no projection
        z = np.where(cam_xyz[:, 2] > 1.0, cam_xyz[:, 2], 1.0)
        intrinsics = record.camera.intrinsics
        uv = intrinsics.project(np.column_stack([cam_xyz[:, :2], z]))
        hand_type = str(ann.get("hand_type", j3.get("hand_type", "interacting")))
        if hand_type not in HAND_TYPES:
            raise ValueError(f"annotation {ann.get('id')}: unknown hand_type {hand_type!r}")
        # Joints of a hand the annotation says is absent are never supervised (InterNet does the
        # same: single-hand frames carry the other hand's stale or empty coordinates).
        present = {"right": [1, 0], "left": [0, 1], "interacting": [1, 1]}[hand_type]
        valid &= np.repeat(np.array(present, dtype=bool), NUM_HAND_JOINTS)
        depth_valid = np.asarray(ann.get("depth_valid", valid), dtype=np.float64).reshape(-1) > 0
        depth_w = float(ann.get("depth_confidence", 1.0)) * (valid & depth_valid)
        mask = mask_path(root, split, record.file_name)
        samples.append(
            Sample(
                image_path=image_path(root, split, record.file_name),
                mask_path=mask if mask.is_file() else None,
                joints_cam=cam_xyz,
                joints_img=uv,
                joint_valid=valid,
                depth_weight=depth_w,
                hand_type=hand_type,
                hand_type_valid=bool(ann.get("hand_type_valid", 1))
                and not bool(ann.get("hand_missing", 0)),
                root_depth_valid=bool(ann.get("root_depth_valid", 1)),
                intrinsics=np.array([*record.camera.focal, *record.camera.princpt]),
                occluded=(
                    _flat(ann["joint_occluded"], NUM_JOINTS, "joint_occluded") > 0
                    if "joint_occluded" in ann
                    else None
                ),
            )
        )
    logger.info(
        "%s/%s: %d annotations, %d with masks",
        root,
        split,
        len(samples),
        sum(s.mask_path is not None for s in samples),
    )
    return samples


def read_rgb(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _jitter(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Brightness, contrast, saturation jitter of a float RGB image in [0, 1]."""
    lo, hi = 1 - strength, 1 + strength
    image = image * rng.uniform(lo, hi)
    mean = image.mean()
    image = (image - mean) * rng.uniform(lo, hi) + mean
    gray = image.mean(axis=2, keepdims=True)
    image = (image - gray) * rng.uniform(lo, hi) + gray
    clipped: np.ndarray = np.clip(image, 0.0, 1.0)
    return clipped


def crop_intrinsics(intrinsics: np.ndarray, crop: Crop) -> np.ndarray:
    """(fx, fy, cx, cy) of the camera seen through ``crop`` (exact without rotation; under a flip
    fx keeps its sign because the 3D labels are mirrored too)."""
    fx, fy, cx, cy = intrinsics
    pp = crop.to_crop(np.array([cx, cy]))
    return np.array([fx * crop.scale, fy * crop.scale, pp[0], pp[1]])


class InterHandDataset(Dataset[dict[str, torch.Tensor]]):
    """Crops of an InterHand2.6M-layout folder around the GT box, with optional augmentation.

    Items are addressed by index, or by ``(index, seed)`` so that augmentation is a pure function
    of the seed (reproducible across workers and after resuming; see :class:`StepBatchSampler`).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        size: int = 256,
        box_scale: float = 1.25,
        augment: AugmentConfig | None = None,
        upright: bool = False,
    ) -> None:
        self.root = Path(root)
        self.upright = upright
        self.split = split
        self.size = size
        self.box_scale = box_scale
        self.augment = augment
        self.samples = load_samples(self.root, split)
        if not self.samples:
            raise ValueError(f"{self.root}/{split} has no annotations")

    def __len__(self) -> int:
        return len(self.samples)

    def make_crop(self, index: int, rng: np.random.Generator | None = None) -> Crop:
        """The crop of sample ``index``: the GT box x box_scale, randomly moved when ``rng``
        (and then, with ``hand_crop_prob``, around one of two annotated hands)."""
        sample = self.samples[index]
        aug = self.augment
        only = None
        if rng is not None and aug is not None and aug.hand_crop_prob > 0:
            if sample.hand_valid.all() and rng.uniform() < aug.hand_crop_prob:
                only = int(rng.integers(2))
        box, upright = sample.box(only), 0.0
        if self.upright:
            hands = sample.upright_joints(only)
            upright = upright_rotation(hands)
            if hands and len(pts := sample.box_points(only)) > 1:
                box = turned_box(pts, upright)
        if rng is None or aug is None:
            return make_crop(box, self.size, self.box_scale, rotation=upright)
        c = (box[:2] + box[2:]) / 2
        side = max(box[2] - box[0], box[3] - box[1])
        c = c + rng.uniform(-aug.translation, aug.translation, 2) * side
        half = side * (1 + rng.uniform(-aug.scale, aug.scale)) / 2
        if self.upright:
            rot = upright + rng.uniform(-aug.upright_jitter_deg, aug.upright_jitter_deg)
        else:
            rot = rng.uniform(-aug.rotation_deg, aug.rotation_deg)
            rot = rot if rng.uniform() < aug.rotation_prob else 0.0
        flip = bool(rng.uniform() < aug.flip_prob)
        moved = np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])
        return make_crop(moved, self.size, self.box_scale, rotation=rot, flip=flip)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        import cv2

        index, seed = (item, None) if isinstance(item, (int, np.integer)) else item
        index = int(index)
        rng = None if seed is None or self.augment is None else np.random.default_rng(seed)
        s = self.samples[index]
        crop = self.make_crop(index, rng)
        rgb = read_rgb(s.image_path)
        image = crop.warp(rgb).astype(np.float32) / 255.0
        if rng is not None and self.augment is not None and self.augment.color > 0:
            image = _jitter(image, rng, self.augment.color).astype(np.float32)
        if s.mask_path is not None:
            mask = cv2.imread(str(s.mask_path), cv2.IMREAD_UNCHANGED)
            if mask is None:
                raise FileNotFoundError(f"cannot read mask {s.mask_path}")
            if mask.ndim == 3:
                mask = mask[..., 0]
            seg = cv2.warpAffine(
                mask,
                crop.matrix,
                (self.size, self.size),
                flags=cv2.INTER_NEAREST,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            ).astype(np.int64)
            seg_valid = 1.0
        else:
            seg = np.full((self.size, self.size), SEG_IGNORE, dtype=np.int64)
            seg_valid = 0.0

        uv = crop.to_crop(s.joints_img)
        cam = s.joints_cam.copy()
        valid = s.joint_valid.copy()
        depth_w = s.depth_weight.copy()
        hand_valid = s.hand_valid.copy()
        occluded = np.zeros(NUM_JOINTS, bool) if s.occluded is None else s.occluded.copy()
        wrist_z = cam[list(ROOT_INDICES), 2]
        depth = cam[:, 2] - np.repeat(wrist_z, NUM_HAND_JOINTS)
        if crop.flip:
            # The mirrored image shows a right hand as a left one: swap the hands' labels, mirror
            # the 3D labels and the part classes. Depths do not change under a mirror.
            perm = list(FLIP_PERMUTATION)
            uv, depth, cam = uv[perm], depth[perm], cam[perm]
            valid, depth_w, hand_valid = valid[perm], depth_w[perm], hand_valid[::-1].copy()
            occluded = occluded[perm]
            cam[:, 0] = -cam[:, 0]
            seg = np.where(seg == SEG_IGNORE, SEG_IGNORE, flip_seg_classes()[np.minimum(seg, 32)])
        inside = np.asarray((uv >= -0.5).all(1) & (uv <= self.size - 0.5).all(1))
        presence_valid = np.full(2, float(s.hand_type_valid))
        if self.augment is not None and self.augment.partial_share > 0:
            hand_valid, valid, presence_valid = crop_presence(
                hand_valid, valid, inside, presence_valid, self.augment.partial_share
            )
        # A hand's depths are relative to its own wrist: without a valid wrist they mean nothing.
        depth_w = depth_w * np.repeat(hand_valid, NUM_HAND_JOINTS)
        r, l_ = ROOT_INDICES
        rel_root = cam[l_, 2] - cam[r, 2] if hand_valid.all() else 0.0
        intr = crop_intrinsics(s.intrinsics, crop)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "joints_uvd": torch.from_numpy(np.concatenate([uv, depth[:, None]], 1)).float(),
            "joints_cam": torch.from_numpy(cam).float(),
            "joint_valid": torch.from_numpy(valid.astype(np.float32)),
            "hand_valid": torch.from_numpy(hand_valid.astype(np.float32)),
            "seg": torch.from_numpy(seg),
            "intrinsics": torch.from_numpy(intr).float(),
            "visibility": torch.from_numpy((valid & inside).astype(np.float32)),
            "rel_root_depth": torch.tensor(float(rel_root)),
            "depth_weight": torch.from_numpy(depth_w.astype(np.float32)),
            "occluded": torch.from_numpy((occluded & valid).astype(np.float32)),
            "presence_valid": torch.from_numpy(presence_valid.astype(np.float32)),
            "root_valid": torch.tensor(float(s.root_depth_valid and hand_valid.all())),
            "seg_valid": torch.tensor(seg_valid),
            "crop_matrix": torch.from_numpy(crop.matrix).float(),
            "index": torch.tensor(index),
        }


def crop_presence(
    hand_valid: np.ndarray,
    joint_valid: np.ndarray,
    inside: np.ndarray,
    presence_valid: np.ndarray,
    partial_share: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The presence labels of one augmented crop (``AugmentConfig.partial_share``): an annotated
    hand with none of its valid joints ``inside`` the crop becomes absent (``hand_valid`` and its
    ``joint_valid`` 0); one with fewer than ``partial_share`` of them inside keeps its joints but
    loses its presence label (``presence_valid`` 0). Returns new (hand_valid, joint_valid,
    presence_valid)."""
    hand_valid, joint_valid = hand_valid.copy(), joint_valid.copy()
    presence_valid = presence_valid.copy()
    for h in np.flatnonzero(hand_valid):
        sl = slice(h * NUM_HAND_JOINTS, (h + 1) * NUM_HAND_JOINTS)
        labelled = joint_valid[sl]
        share = float(inside[sl][labelled].mean()) if labelled.any() else 0.0
        if share == 0.0:
            hand_valid[h] = False
            joint_valid[sl] = False
        elif share < partial_share:
            presence_valid[h] = 0.0
    return hand_valid, joint_valid, presence_valid


def item_seed(seed: int, rank: int, step: int, slot: int) -> int:
    """A 63-bit seed for one item of one step, independent of workers and restarts."""
    return int(np.random.default_rng([seed, rank, step, slot]).integers(2**63 - 1))


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Endless batches of ``(index, augmentation seed)`` whose content is a function of
    (seed, rank, step) only, so resuming at step k reproduces the batches of an uninterrupted run.

    ``steps`` optionally restricts the sampler to the steps this source serves when several
    sources are mixed (an iterable of step numbers, ascending).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        steps: Iterator[int] | None = None,
        start_step: int = 0,
    ) -> None:
        self.n, self.batch_size, self.seed, self.rank = n, batch_size, seed, rank
        self.steps = steps
        self.start_step = start_step

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        steps = self.steps if self.steps is not None else itertools.count(self.start_step)
        for step in steps:
            rng = np.random.default_rng([self.seed, self.rank, step])
            idx = rng.integers(0, self.n, self.batch_size)
            yield [(int(i), item_seed(self.seed, self.rank, step, k)) for k, i in enumerate(idx)]

    def __len__(self) -> int:
        return 2**31 - 1  # endless; DataLoader only needs a number

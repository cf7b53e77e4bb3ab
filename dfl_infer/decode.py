"""From the network's raw outputs to image pixels and millimetres: the one decode step shared by
the predictor (either backend) and the evaluator.

``CropOutputs`` is what a backend returns for a batch of crops (numpy, whatever ran the
network); :func:`decode` maps one crop's 2.5D joints back into the image through the crop's
inverse affine and lifts them to the camera frame (``lift.lift_to_3d``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dfl_infer.crop import Crop
from dfl_infer.joints import FIXED_SIDE_LOGIT, FLIP_PERMUTATION
from dfl_infer.lift import Intrinsics, lift_to_3d

if TYPE_CHECKING:
    from dfl_infer.model.outputs import DFLOutput


@dataclass(frozen=True, eq=False)
class CropOutputs:
    """The network's inference outputs for B crops, as float32 numpy arrays (meanings as in
    :class:`~dfl_infer.model.outputs.DFLOutput`): ``joints_25d`` (B, 42, 3) crop pixels and mm
    relative to each wrist, ``hand_presence`` (B, 2) logits, ``rel_root_depth`` (B,) mm,
    ``joints_2d_iter`` (B, T, 42, 2) crop pixels after each of the decoder's T iterations (read
    only for :meth:`confidence`; after :meth:`flip_averaged`, both passes' guesses),
    ``handedness`` (B, 2) logits that each slot holds a right hand.

    The network's two hand slots may hold either hand; :meth:`sided` puts the right hand first,
    as ``JOINT_NAMES`` says, and the runners (``backends.py``) and the evaluator only hand out
    sided outputs."""

    joints_25d: np.ndarray
    hand_presence: np.ndarray
    rel_root_depth: np.ndarray
    joints_2d_iter: np.ndarray
    handedness: np.ndarray

    # The names of these fields, in the order the exported ONNX graph returns them.
    NAMES = ("joints_25d", "hand_presence", "rel_root_depth", "joints_2d_iter", "handedness")

    @classmethod
    def from_model(cls, out: DFLOutput) -> CropOutputs:
        """From ``DFLModel``'s output on any device and dtype, sided (:meth:`sided`)."""
        import torch

        iters = torch.stack(out.joints_2d_iter, dim=1)  # as the exported graph returns them
        tensors = (out.joints_25d, out.hand_presence, out.rel_root_depth, iters, out.handedness)
        return cls(*(t.float().cpu().numpy() for t in tensors)).sided()

    def swapped(self) -> np.ndarray:
        """(B,) whether each crop's slots hold (left, right) rather than (right, left).

        The side assignment maximises the presence-weighted agreement with the handedness
        logits h: slots (0, 1) are (left, right) when ``p1 * h1 > p0 * h0`` (p: presence
        probabilities). With both hands present that is ``h1 > h0``: the two slots never report
        the same side, and the more confident slot decides. A lone hand keeps its own logit's
        sign (the empty slot's weight is near 0)."""
        p = presence_probability(self.hand_presence)
        h = np.clip(self.handedness, -FIXED_SIDE_LOGIT, FIXED_SIDE_LOGIT)
        return np.asarray(p[:, 1] * h[:, 1] > p[:, 0] * h[:, 0])

    def sided(self) -> CropOutputs:
        """The same outputs with each crop's right hand in joints 0-20 and the left in 21-41:
        slots swapped where :meth:`swapped` says so (joints, iterations, presence, handedness),
        and the relative root depth negated there, since it is slot 1's wrist minus slot 0's."""
        swap = self.swapped()
        if not swap.any():
            return self
        perm = list(FLIP_PERMUTATION)

        def pick(a: np.ndarray, swapped_a: np.ndarray) -> np.ndarray:
            mask = swap.reshape((-1,) + (1,) * (a.ndim - 1))
            return np.where(mask, swapped_a, a).astype(np.float32)

        return CropOutputs(
            pick(self.joints_25d, self.joints_25d[:, perm]),
            pick(self.hand_presence, self.hand_presence[:, ::-1]),
            pick(self.rel_root_depth, -self.rel_root_depth),
            pick(self.joints_2d_iter, self.joints_2d_iter[:, :, perm]),
            pick(self.handedness, self.handedness[:, ::-1]),
        )

    def side_probability(self) -> np.ndarray:
        """(B, 2) probability that the sided right / left hand is the side it is reported as."""
        right = presence_probability(self.handedness)
        return np.stack([right[:, 0], 1.0 - right[:, 1]], axis=1)

    def unmirrored(self, crop_size: int) -> CropOutputs:
        """Outputs of horizontally mirrored crops, mapped back onto the crops themselves: every
        u becomes ``crop_size - 1 - u`` (pixel centres, ``crop.make_crop``'s ``flip``) and the
        handedness logits change sign (a mirrored right hand looks like a left one). Depths,
        presence and the slots' order stay; the result is not sided (:meth:`sided`)."""
        joints, iters = self.joints_25d.copy(), self.joints_2d_iter.copy()
        joints[..., 0] = crop_size - 1 - joints[..., 0]
        iters[..., 0] = crop_size - 1 - iters[..., 0]
        return CropOutputs(joints, self.hand_presence, self.rel_root_depth, iters, -self.handedness)

    def flip_averaged(self, mirrored: CropOutputs, crop_size: int) -> CropOutputs:
        """The flip test: these outputs averaged with ``mirrored``, the same network's outputs
        on the horizontally mirrored crops, then sided by the averaged handedness.

        ``mirrored`` is mapped back (:meth:`unmirrored`); per crop its two slots are paired
        with these by position: of the two pairings, the one with the lower cost, where a pair
        of slots costs the product of their presence probabilities times their mean 2D joint
        distance (crop pixels), plus ``crop_size`` times the difference of their presence
        probabilities (a found hand is not averaged with an empty slot's joints). Paired slots
        average their 2.5D joints, presence and handedness logits; the relative root depth is
        averaged in the pairing's order (negated where the pairing swaps). ``joints_2d_iter``
        becomes both passes' 2D guesses, (B, 2T + 2, 42, 2): each pass's T iterations and its
        final joints, so that :meth:`confidence` measures the spread of all of them about the
        averaged joints, the two passes' disagreement included."""
        b = mirrored.unmirrored(crop_size)
        pa, pb = self.presence(), b.presence()
        j = self.joints_25d.shape[1] // 2

        def dist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return np.asarray(np.linalg.norm(x[..., :2] - y[..., :2], axis=-1).mean(-1))

        def cost(k0: int, k1: int) -> np.ndarray:
            total = np.zeros(len(pa))
            for k, m in ((0, k0), (1, k1)):
                d = dist(
                    self.joints_25d[:, k * j : (k + 1) * j], b.joints_25d[:, m * j : (m + 1) * j]
                )
                total += pa[:, k] * pb[:, m] * d + crop_size * np.abs(pa[:, k] - pb[:, m])
            return total

        swap = cost(1, 0) < cost(0, 1)
        perm = list(range(j, 2 * j)) + list(range(j))

        def paired(x: np.ndarray, swapped_x: np.ndarray) -> np.ndarray:
            mask = swap.reshape((-1,) + (1,) * (x.ndim - 1))
            return np.where(mask, swapped_x, x)

        joints = paired(b.joints_25d, b.joints_25d[:, perm])
        guesses = [
            self.joints_2d_iter,
            self.joints_25d[:, None, :, :2],
            paired(b.joints_2d_iter, b.joints_2d_iter[:, :, perm]),
            joints[:, None, :, :2],
        ]

        def mean(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return np.asarray((x + y) / 2, dtype=np.float32)

        return CropOutputs(
            mean(self.joints_25d, joints),
            mean(self.hand_presence, paired(b.hand_presence, b.hand_presence[:, ::-1])),
            mean(self.rel_root_depth, paired(b.rel_root_depth, -b.rel_root_depth)),
            np.concatenate(guesses, axis=1).astype(np.float32),
            mean(self.handedness, paired(b.handedness, b.handedness[:, ::-1])),
        ).sided()

    def take(self, index: slice | np.ndarray) -> CropOutputs:
        """The outputs of some of the crops (``index`` into the batch)."""
        return CropOutputs(*(getattr(self, name)[index] for name in self.NAMES))

    @classmethod
    def concatenate(cls, parts: Sequence[CropOutputs]) -> CropOutputs:
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in cls.NAMES))

    def __len__(self) -> int:
        return len(self.joints_25d)

    def presence(self) -> np.ndarray:
        """(B, 2) probabilities that the right / left hand is in each crop."""
        return presence_probability(self.hand_presence)

    def confidence(self, crop_size: int) -> np.ndarray:
        """(B, 42) per-joint confidence in (0, 1]: see :func:`joint_confidence`."""
        return joint_confidence(self.joints_2d_iter, self.joints_25d[..., :2], crop_size)


# The iterations' spread (RMS distance from their mean) at which a joint's confidence is 1/e, as
# a share of the crop's side: 4 pixels of a 256-pixel crop. On 150 held-out real photos the
# median spread was 1.6 pixels (confidence 0.67) and the 90th percentile 3 pixels (0.47).
CONFIDENCE_SPREAD = 4.0 / 256


def joint_confidence(
    joints_2d_iter: np.ndarray, joints_uv: np.ndarray, crop_size: int
) -> np.ndarray:
    """Per-joint confidence from the decoder's own iterations: (..., T, J, 2) per-iteration and
    (..., J, 2) final crop pixels -> (..., J) in (0, 1].

    The decoder predicts every joint's 2D position after each of its T iterations and once more
    from the final 2.5D head; where those T + 1 guesses agree, the image pinned the joint down,
    where they wander, it did not. The confidence is ``exp(-spread / (CONFIDENCE_SPREAD *
    crop_size))`` with ``spread`` the RMS distance of the T + 1 guesses from their mean (crop
    pixels). Why these and not the segmentation: docs/architecture.md, "Per-joint confidence".
    A joint whose guesses are not finite gets 0."""
    guesses = np.concatenate([joints_2d_iter, np.asarray(joints_uv)[..., None, :, :]], axis=-3)
    deviation = guesses - guesses.mean(axis=-3, keepdims=True)
    spread = np.sqrt((deviation**2).sum(-1).mean(-2))
    with np.errstate(invalid="ignore", over="ignore"):
        conf = np.exp(-spread / (CONFIDENCE_SPREAD * crop_size))
    return np.where(np.isfinite(conf), conf, 0.0)


def presence_probability(logits: np.ndarray) -> np.ndarray:
    """The logistic sigmoid, written with tanh so that large logits cannot overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * logits))


def decode(
    joints_25d: np.ndarray,
    crop: Crop,
    intrinsics: Intrinsics,
    present: Sequence[bool] | np.ndarray,
    rel_root_depth: float,
    root_depth: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One crop's 2.5D joints (42, 3) -> (image pixels (42, 2), camera frame mm (42, 3)).

    ``present`` (right, left): the hands to lift (rows of the others are NaN);
    ``rel_root_depth``: left wrist minus right wrist depth, mm; ``root_depth``: the reference
    wrist's depth (mm) when known (evaluation with ground truth), else solved from the canonical
    hand size. See ``lift.lift_to_3d``.
    """
    uvd = np.asarray(joints_25d)
    uv = crop.to_image(uvd[:, :2])
    joints_3d = lift_to_3d(
        uv,
        uvd[:, 2],
        intrinsics,
        present=tuple(bool(p) for p in present),
        rel_root_depth=float(rel_root_depth),
        root_depth=root_depth,
    )
    return uv, joints_3d

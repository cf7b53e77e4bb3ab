"""From the network's raw outputs to image pixels and millimetres: the one decode step shared by
the predictor (either backend) and the evaluator.

``CropOutputs`` is what a backend returns for a batch of crops (numpy, whatever ran the
network); :func:`decode` maps one crop's 2.5D joints back into the image through the crop's
inverse affine and lifts them to the camera frame (``lift.lift_to_3d``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dfl_infer.crop import Crop
from dfl_infer.lift import Intrinsics, lift_to_3d
from dfl_infer.model.outputs import DFLOutput


@dataclass(frozen=True, eq=False)
class CropOutputs:
    """The network's inference outputs for B crops, as float32 numpy arrays (meanings as in
    :class:`~dfl_infer.model.outputs.DFLOutput`): ``joints_25d`` (B, 42, 3) crop pixels and mm
    relative to each wrist, ``hand_presence`` (B, 2) logits, ``rel_root_depth`` (B,) mm."""

    joints_25d: np.ndarray
    hand_presence: np.ndarray
    rel_root_depth: np.ndarray

    # The names of these fields, in the order the exported ONNX graph returns them.
    NAMES = ("joints_25d", "hand_presence", "rel_root_depth")

    @classmethod
    def from_model(cls, out: DFLOutput) -> CropOutputs:
        """From ``DFLModel``'s output on any device and dtype."""
        return cls(*(getattr(out, name).float().cpu().numpy() for name in cls.NAMES))

    @classmethod
    def concatenate(cls, parts: Sequence[CropOutputs]) -> CropOutputs:
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in cls.NAMES))

    def __len__(self) -> int:
        return len(self.joints_25d)

    def presence(self) -> np.ndarray:
        """(B, 2) probabilities that the right / left hand is in each crop."""
        return presence_probability(self.hand_presence)


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

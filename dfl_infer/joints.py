"""The joint order, hand skeleton and part classes shared by every stage of dfl-infer.

Joint order is InterHand2.6M's: the right hand is joints 0-20 and the left hand 21-41. Within a hand
the order is thumb tip -> CMC, index tip -> MCP, middle, ring, pinky (each tip -> MCP), then the
wrist. ``JOINT_NAMES`` is the single source of that order; everything else here derives from it.
"""

from __future__ import annotations

import numpy as np

HANDS: tuple[str, str] = ("right", "left")
FINGERS: tuple[str, ...] = ("thumb", "index", "middle", "ring", "pinky")
# Per finger, the joints from the tip towards the palm (InterHand2.6M's "4, 3, 2, 1").
_THUMB_JOINTS = ("tip", "ip", "mcp", "cmc")
_FINGER_JOINTS = ("tip", "dip", "pip", "mcp")

NUM_HAND_JOINTS = 21
NUM_JOINTS = 2 * NUM_HAND_JOINTS
WRIST = 20  # index of the wrist inside one hand
ROOT_INDICES: tuple[int, int] = (WRIST, NUM_HAND_JOINTS + WRIST)


def _hand_joint_names() -> tuple[str, ...]:
    names: list[str] = []
    for finger in FINGERS:
        parts = _THUMB_JOINTS if finger == "thumb" else _FINGER_JOINTS
        names.extend(f"{finger}_{part}" for part in parts)
    names.append("wrist")
    return tuple(names)


HAND_JOINT_NAMES: tuple[str, ...] = _hand_joint_names()
JOINT_NAMES: tuple[str, ...] = tuple(
    f"{hand}_{name}" for hand in HANDS for name in HAND_JOINT_NAMES
)

# Parent of each joint inside one hand (-1 for the wrist): each finger chains tip -> ... -> base,
# and the base joint of every finger hangs from the wrist.
HAND_PARENTS: tuple[int, ...] = tuple([WRIST if i % 4 == 3 else i + 1 for i in range(20)] + [-1])
# Bones of one hand as (child, parent) pairs, 20 of them.
HAND_BONES: tuple[tuple[int, int], ...] = tuple(
    (child, parent) for child, parent in enumerate(HAND_PARENTS) if parent >= 0
)

# Bone lengths (mm) of a canonical adult hand, hand length (wrist to middle tip) about 180 mm,
# in the order of HAND_BONES. Used to fix the absolute scale when the camera distance is unknown
# (the scale-normalised 2.5D idea of Iqbal et al., 2018) and as the mean of the synthetic hands.
_CANONICAL_LENGTHS_BY_CHILD: dict[str, float] = {
    "thumb_tip": 27.0, "thumb_ip": 32.0, "thumb_mcp": 45.0, "thumb_cmc": 32.0,
    "index_tip": 22.0, "index_dip": 24.0, "index_pip": 40.0, "index_mcp": 84.0,
    "middle_tip": 23.0, "middle_dip": 28.0, "middle_pip": 45.0, "middle_mcp": 82.0,
    "ring_tip": 23.0, "ring_dip": 27.0, "ring_pip": 42.0, "ring_mcp": 78.0,
    "pinky_tip": 21.0, "pinky_dip": 19.0, "pinky_pip": 33.0, "pinky_mcp": 72.0,
}  # fmt: skip
CANONICAL_BONE_LENGTHS_MM: np.ndarray = np.array(
    [_CANONICAL_LENGTHS_BY_CHILD[HAND_JOINT_NAMES[c]] for c, _ in HAND_BONES], dtype=np.float64
)

# Part segmentation: 16 parts per hand (palm + 3 phalanx segments for each of 5 fingers) and a
# background class, 33 in all: class 0 is background, 1-16 the right hand, 17-32 the left hand.
# For the thumb the three segments are metacarpal, proximal and distal; for the other fingers
# proximal, middle and distal phalanx.
HAND_PART_NAMES: tuple[str, ...] = ("palm",) + tuple(
    f"{finger}_{k}" for finger in FINGERS for k in (1, 2, 3)
)
NUM_HAND_PARTS = len(HAND_PART_NAMES)  # 16
SEG_CLASS_NAMES: tuple[str, ...] = ("background",) + tuple(
    f"{hand}_{part}" for hand in HANDS for part in HAND_PART_NAMES
)
NUM_SEG_CLASSES = len(SEG_CLASS_NAMES)  # 33


def _bone_parts() -> tuple[int, ...]:
    """Hand-local part index (0 = palm) of each bone in HAND_BONES."""
    parts = []
    for child, parent in HAND_BONES:
        if parent == WRIST:
            parts.append(0)  # wrist -> finger base lies in the palm
            continue
        finger = child // 4
        # Distance of the bone's child joint from the tip: 0 for the distal segment.
        from_tip = child % 4
        parts.append(1 + 3 * finger + (2 - from_tip))
    return tuple(parts)


# Hand-local part (0..15) that each bone of HAND_BONES belongs to; add 1 (right) or 17 (left) for
# the segmentation class.
HAND_BONE_PARTS: tuple[int, ...] = _bone_parts()


def seg_class(hand: int, part: int) -> int:
    """Segmentation class of hand-local ``part`` (0..15) of hand 0 (right) or 1 (left)."""
    return 1 + hand * NUM_HAND_PARTS + part


# MediaPipe's 21 hand landmarks (wrist, thumb CMC..tip, index MCP..tip, ...) in InterHand2.6M's
# per-hand order: ``ih = mp[MEDIAPIPE_TO_INTERHAND]``. MediaPipe numbers each finger from its
# base to its tip (1-4 the thumb, 5-8 the index, ...) and the wrist 0; InterHand2.6M runs from
# the tip to the base, wrist last: (4, 3, 2, 1, 8, 7, 6, 5, ..., 0).
MEDIAPIPE_TO_INTERHAND: tuple[int, ...] = tuple(
    4 * finger + 4 - k for finger in range(5) for k in range(4)
) + (0,)

# The handedness logit (``DFLOutput.handedness``) of a model with fixed slots, whose slot 0 is
# always the right hand and slot 1 the left: sigmoid(20) = 1 - 2e-9, a certain side.
FIXED_SIDE_LOGIT = 20.0

# Left/right swap of the 42 joints (used by horizontal-flip augmentation).
FLIP_PERMUTATION: tuple[int, ...] = tuple(
    list(range(NUM_HAND_JOINTS, NUM_JOINTS)) + list(range(NUM_HAND_JOINTS))
)


def flip_seg_classes() -> np.ndarray:
    """Lookup table mapping each segmentation class to its mirror (right <-> left)."""
    table = np.arange(NUM_SEG_CLASSES)
    table[1 : 1 + NUM_HAND_PARTS] += NUM_HAND_PARTS
    table[1 + NUM_HAND_PARTS :] -= NUM_HAND_PARTS
    return table

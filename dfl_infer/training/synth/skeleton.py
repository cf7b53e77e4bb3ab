"""Kinematic hand skeleton for the synthetic engine: rest templates, joint-angle limits, forward
kinematics (batched, torch) and the skinning transforms it hands to the surface.

Frames. A *template* is one hand's 21 rest joints (InterHand2.6M order, ``dfl_infer.joints``) in a
canonical hand frame, in mm: the wrist at the origin, the fingers along +y (wrist -> middle MCP),
the palm facing +z, and the thumb on the +x side for a right hand (-x for a left one, so a left
template is the mirror image of a right one through x = 0).

Pose. Each of the 20 bones (indexed by its child joint, as in ``HAND_BONES``) rotates about its
parent joint by ``flex`` (curling towards the palm), ``abd`` (sideways, positive towards the
thumb) and ``twist`` (about the bone), radians, each clipped to ``ANGLE_LIMITS_DEG``. The axes come
from the template's geometry (bone direction x palm normal), so the same angles give the same
shape on a mirrored or differently proportioned hand. The thumb's CMC is a saddle: flexion moves the
metacarpal across the palm, abduction lifts it out of the palm plane, a little twist opposes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dfl_infer.joints import (
    CANONICAL_BONE_LENGTHS_MM,
    HAND_BONES,
    HAND_PARENTS,
    NUM_HAND_JOINTS,
    WRIST,
)

NUM_BONES = len(HAND_BONES)  # 20, bone b has child joint b (HAND_BONES[b] == (b, parent))
ROOT_FRAME = 20  # skinning frame of the palm (rigid with the wrist)
FOREARM_FRAME = 21  # skinning frame of the forearm
NUM_FRAMES = 22

# The finger chains from the palm outwards: level k holds the k-th bone of every finger, so forward
# kinematics takes 4 vectorised steps instead of 20.
_LEVELS: tuple[tuple[int, ...], ...] = tuple(
    tuple(4 * f + 3 - k for f in range(5)) for k in range(4)
)
_THUMB_CMC, _THUMB_MCP, _THUMB_IP, _THUMB_TIP = 3, 2, 1, 0


def _limits_table() -> np.ndarray:
    """(20, 3, 2) degrees: [bone, (flex, abd, twist), (lo, hi)] about the bone's parent joint."""
    lim = np.zeros((NUM_BONES, 3, 2))
    # Palm bones (wrist -> finger base) are rigid except the ring/pinky metacarpal "cupping".
    lim[11, 0] = (0, 8)
    lim[15, 0] = (0, 15)
    # Thumb: CMC saddle (flex across the palm, palmar abduction, opposition twist), MCP, IP hinges.
    lim[_THUMB_MCP] = ((-15, 45), (-15, 45), (-10, 25))
    lim[_THUMB_IP, 0] = (-10, 60)
    lim[_THUMB_TIP, 0] = (-15, 80)
    # Index..pinky: MCP flexion and abduction (positive towards the thumb), PIP and DIP hinges.
    abd = {1: (-10, 20), 2: (-12, 12), 3: (-15, 10), 4: (-25, 10)}
    for f in range(1, 5):
        lim[4 * f + 2, 0] = (-25, 90)
        lim[4 * f + 2, 1] = abd[f]
        lim[4 * f + 2, 2] = (-5, 5)
        lim[4 * f + 1, 0] = (-5, 110)
        lim[4 * f + 0, 0] = (-10, 85)
    return lim


ANGLE_LIMITS_DEG: np.ndarray = _limits_table()
# Wrist flexion/extension and radial/ulnar deviation of the hand relative to the forearm (degrees).
WRIST_LIMITS_DEG: np.ndarray = np.array([[-60.0, 60.0], [-20.0, 30.0]])

# Surface radius (mm) of a canonical hand around each joint, used by the procedural surface, the
# collision capsules and the visibility tolerance. Order: HAND_JOINT_NAMES.
JOINT_RADII_MM: np.ndarray = np.array(
    [8.0, 9.5, 11.5, 14.0,  # thumb tip, ip, mcp, cmc
     7.0, 7.5, 8.5, 10.0,  # index
     7.5, 8.0, 9.0, 10.5,  # middle
     7.0, 7.5, 8.5, 10.0,  # ring
     6.0, 6.5, 7.5, 9.0,  # pinky
     16.0]  # wrist
)  # fmt: skip
PALM_RADIUS_MM = 13.0  # half thickness of the palm for collision capsules
FOREARM_RADIUS_MM = 30.0
FOREARM_LENGTH_MM = 260.0


def _canonical_right_joints() -> np.ndarray:
    """Rest joints (21, 3) mm of a flat, relaxed right hand in the canonical frame."""
    lengths = {c: float(CANONICAL_BONE_LENGTHS_MM[i]) for i, (c, _) in enumerate(HAND_BONES)}
    joints = np.zeros((NUM_HAND_JOINTS, 3))
    # Finger base directions fan out from the wrist; fingers continue a little further out.
    base_angle = {1: 12.0, 2: 1.0, 3: -9.0, 4: -19.0}
    finger_angle = {1: 6.0, 2: 0.0, 3: -5.0, 4: -11.0}
    for f in range(1, 5):
        a = math.radians(base_angle[f])
        mcp = 4 * f + 3
        joints[mcp] = lengths[mcp] * np.array([math.sin(a), math.cos(a), 0.0])
        b = math.radians(finger_angle[f])
        d = np.array([math.sin(b), math.cos(b), 0.0])
        for j in (mcp - 1, mcp - 2, mcp - 3):
            joints[j] = joints[j + 1] + lengths[j] * d
    # Thumb: CMC near the radial wrist, then pointing radially, forwards and a little palmar.
    joints[_THUMB_CMC] = lengths[_THUMB_CMC] * _unit(0.55, 0.8, 0.25)
    d = _unit(0.75, 0.6, 0.3)
    for j in (_THUMB_MCP, _THUMB_IP, _THUMB_TIP):
        joints[j] = joints[j + 1] + lengths[j] * d
        d = _unit(*(d + np.array([-0.12, 0.1, 0.0])))
    return joints


def _unit(*v: float) -> np.ndarray:
    a = np.array(v, dtype=np.float64)
    unit: np.ndarray = a / np.linalg.norm(a)
    return unit


def canonical_frame(joints: np.ndarray, side: int) -> np.ndarray:
    """4x4 rigid transform taking raw joints (21, 3) of hand ``side`` (0 right, 1 left) to the
    canonical frame (wrist at origin, fingers +y, palm +z)."""
    wrist = joints[WRIST]
    y = joints[11] - wrist  # middle MCP
    y /= np.linalg.norm(y)
    radial = joints[7] - joints[19]  # index MCP - pinky MCP
    radial -= radial.dot(y) * y
    radial /= np.linalg.norm(radial)
    x = radial if side == 0 else -radial
    z = np.cross(x, y)
    rot = np.stack([x, y, z])
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = -rot @ wrist
    return m


@dataclass(frozen=True)
class HandTemplate:
    """Rest skeleton of one hand side plus the joint axes derived from it (all canonical frame).

    ``joints`` (21, 3) mm; ``flex_axis``/``abd_axis``/``twist_axis`` (20, 3) unit vectors per bone;
    ``side`` 0 right / 1 left.
    """

    joints: np.ndarray
    flex_axis: np.ndarray
    abd_axis: np.ndarray
    twist_axis: np.ndarray
    side: int

    @classmethod
    def from_joints(cls, joints: np.ndarray, side: int) -> HandTemplate:
        """Template from canonical-frame rest joints (21, 3) mm of hand ``side``."""
        j = np.asarray(joints, dtype=np.float64)
        palm = np.array([0.0, 0.0, 1.0])
        radial = np.array([1.0 if side == 0 else -1.0, 0.0, 0.0])
        flex = np.zeros((NUM_BONES, 3))
        abd = np.zeros((NUM_BONES, 3))
        twist = np.zeros((NUM_BONES, 3))
        for b, (c, p) in enumerate(HAND_BONES):
            d = j[c] - j[p]
            d /= np.linalg.norm(d)
            if c in (_THUMB_MCP, _THUMB_IP, _THUMB_TIP):
                # The thumb curls towards the palm's ulnar side; its CMC lifts out of the palm.
                flex_target = palm - 0.9 * radial if c != _THUMB_MCP else -radial + 0.3 * palm
                abd_target = palm if c == _THUMB_MCP else radial
            else:
                flex_target, abd_target = palm, radial
            flex[b] = _axis_towards(d, flex_target)
            abd[b] = _axis_towards(d, abd_target)
            twist[b] = d
        return cls(j, flex, abd, twist, side)

    def mirrored(self) -> HandTemplate:
        """The same template for the other hand (mirror through x = 0)."""
        m = self.joints * np.array([-1.0, 1.0, 1.0])
        return HandTemplate.from_joints(m, 1 - self.side)

    @property
    def bone_lengths(self) -> np.ndarray:
        """(20,) mm in HAND_BONES order."""
        return np.array([np.linalg.norm(self.joints[c] - self.joints[p]) for c, p in HAND_BONES])

    @property
    def hand_length(self) -> float:
        """Wrist -> middle fingertip along the bones (mm)."""
        return float(self.bone_lengths[8:12].sum())


def _axis_towards(d: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Unit axis a with a x d pointing towards ``target`` (so +angle turns d towards it)."""
    t = target - target.dot(d) * d
    a = np.cross(d, t)
    axis: np.ndarray = a / np.linalg.norm(a)
    return axis


def canonical_template(side: int = 0) -> HandTemplate:
    """The canonical hand (CANONICAL_BONE_LENGTHS_MM, flat relaxed rest) of ``side``."""
    right = HandTemplate.from_joints(_canonical_right_joints(), 0)
    return right if side == 0 else right.mirrored()


def axis_angle_to_matrix(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues: unit ``axis`` (..., 3) and ``angle`` (...) radians -> rotation (..., 3, 3)."""
    x, y, z = axis.unbind(-1)
    c, s = torch.cos(angle), torch.sin(angle)
    t = 1 - c
    return torch.stack(
        [
            torch.stack([t * x * x + c, t * x * y - s * z, t * x * z + s * y], -1),
            torch.stack([t * x * y + s * z, t * y * y + c, t * y * z - s * x], -1),
            torch.stack([t * x * z - s * y, t * y * z + s * x, t * z * z + c], -1),
        ],
        -2,
    )


@dataclass(frozen=True)
class Posed:
    """Forward-kinematics result for N hands.

    ``joints`` (N, 21, 3) mm; ``frames`` (N, 22, 3, 4) affine skinning transforms taking template
    points (canonical frame, mm) to posed ones: 20 bones, the palm (ROOT_FRAME), the forearm
    (FOREARM_FRAME).
    """

    joints: torch.Tensor
    frames: torch.Tensor


def forward_kinematics(
    rest: torch.Tensor,
    flex_axis: torch.Tensor,
    abd_axis: torch.Tensor,
    twist_axis: torch.Tensor,
    angles: torch.Tensor,
    length_scale: torch.Tensor,
    size: torch.Tensor,
    root_rot: torch.Tensor,
    root_pos: torch.Tensor,
    wrist_angles: torch.Tensor,
) -> Posed:
    """Pose N hands.

    ``rest`` (N, 21, 3) template joints and the (N, 20, 3) axes (per hand, so right and left
    templates mix in one batch); ``angles`` (N, 20, 3) radians (flex, abd, twist); ``length_scale``
    (N, 20) posed/rest bone length; ``size`` (N,) the overall scale of the hand's thickness;
    ``root_rot`` (N, 3, 3) and ``root_pos`` (N, 3) place the canonical frame (the wrist) in the
    scene; ``wrist_angles`` (N, 2) radians (flexion, deviation) of the hand against the forearm.
    """
    n = rest.shape[0]
    dev, dt = rest.device, rest.dtype
    local = (
        axis_angle_to_matrix(abd_axis, angles[..., 1])
        @ axis_angle_to_matrix(flex_axis, angles[..., 0])
        @ axis_angle_to_matrix(twist_axis, angles[..., 2])
    )  # (N, 20, 3, 3) in template coordinates
    parents = torch.tensor(HAND_PARENTS[:NUM_BONES], device=dev)
    offsets = rest[:, :NUM_BONES] - rest[:, parents]  # (N, 20, 3)
    glob_rot = torch.zeros(n, NUM_BONES, 3, 3, device=dev, dtype=dt)
    joints = torch.zeros(n, NUM_HAND_JOINTS, 3, device=dev, dtype=dt)
    joints[:, WRIST] = root_pos
    for level in _LEVELS:
        idx = torch.tensor(level, device=dev)
        par = parents[idx]
        if par[0] == WRIST:
            parent_rot = root_rot[:, None].expand(n, len(level), 3, 3)
        else:
            parent_rot = glob_rot[:, par]
        rot = parent_rot @ local[:, idx]
        glob_rot[:, idx] = rot
        step = (rot @ (offsets[:, idx] * length_scale[:, idx, None])[..., None])[..., 0]
        joints[:, idx] = joints[:, par] + step
    # Skinning frames: rotate about the rest parent joint, stretch along the bone by the length
    # ratio beyond the overall size, so each segment's surface ends exactly at its posed joints.
    d = offsets / offsets.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    s = size[:, None, None, None]
    stretch = torch.eye(3, device=dev, dtype=dt) + (length_scale / size[:, None] - 1)[
        ..., None, None
    ] * (d[..., :, None] * d[..., None, :])
    lin = glob_rot @ (s * stretch)
    trans = joints[:, parents] - (lin @ rest[:, parents][..., None])[..., 0]
    frames = torch.zeros(n, NUM_FRAMES, 3, 4, device=dev, dtype=dt)
    frames[:, :NUM_BONES, :, :3] = lin
    frames[:, :NUM_BONES, :, 3] = trans
    root_lin = root_rot * size[:, None, None]
    frames[:, ROOT_FRAME, :, :3] = root_lin
    frames[:, ROOT_FRAME, :, 3] = root_pos - (root_lin @ rest[:, WRIST, :, None])[..., 0]
    # The forearm hangs from the wrist: undo the wrist's flexion (about x) and deviation (about z).
    ex = torch.tensor([1.0, 0.0, 0.0], device=dev, dtype=dt).expand(n, 3)
    ez = torch.tensor([0.0, 0.0, 1.0], device=dev, dtype=dt).expand(n, 3)
    wrist_rot = axis_angle_to_matrix(ez, wrist_angles[:, 1]) @ axis_angle_to_matrix(
        ex, wrist_angles[:, 0]
    )
    fore_lin = root_rot @ wrist_rot.transpose(1, 2) * size[:, None, None]
    frames[:, FOREARM_FRAME, :, :3] = fore_lin
    frames[:, FOREARM_FRAME, :, 3] = root_pos - (fore_lin @ rest[:, WRIST, :, None])[..., 0]
    return Posed(joints, frames)


def bone_angles(joints: torch.Tensor) -> torch.Tensor:
    """Unsigned angle (N, 20) radians between each bone and its parent bone (0 for palm bones):
    a pose-independent check of the hinge limits."""
    parents = torch.tensor(HAND_PARENTS[:NUM_BONES], device=joints.device)
    vec = joints[:, :NUM_BONES] - joints[:, parents]
    out = torch.zeros(joints.shape[0], NUM_BONES, device=joints.device, dtype=joints.dtype)
    has_parent_bone = parents != WRIST
    child = torch.arange(NUM_BONES, device=joints.device)[has_parent_bone]
    pv = vec[:, parents[has_parent_bone]]
    cv = vec[:, child]
    cos = (pv * cv).sum(-1) / (pv.norm(dim=-1) * cv.norm(dim=-1)).clamp_min(1e-9)
    out[:, child] = torch.arccos(cos.clamp(-1, 1))
    return out

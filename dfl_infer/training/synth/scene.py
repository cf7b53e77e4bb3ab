"""Scene sampling for the synthetic engine: hand shapes, poses, two-hand contacts and the camera.

Everything is batched torch on one device with one ``torch.Generator``, so a seed fixes a batch
(on a given device). A scene holds one or two hands of one person (shared size and proportions):
single right or left hands and interacting pairs, mixed like InterHand2.6M's SH and IH subsets.
Interactions (``INTERACTIONS``): two hands touching at random points, forearms crossed over the
wrists, hands clasped palm to palm, fingers interlaced, and one hand hovering in front of the
other. Placement then pushes the second hand along a chosen direction until the two hands'
collision capsules (bones, palm, forearm) clear each other, so they touch or overlap in the image
without interpenetrating by more than ``penetration_tol_mm``. The camera is perspective with a
random distance; the focal length and principal point make the joints' box fill the image like
InterHand2.6M's 1.25x crop, so the rendered image *is* the 256x256 crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dfl_infer.joints import HAND_BONES, WRIST

from .skeleton import (
    ANGLE_LIMITS_DEG,
    FOREARM_FRAME,
    FOREARM_LENGTH_MM,
    FOREARM_RADIUS_MM,
    JOINT_RADII_MM,
    NUM_BONES,
    PALM_RADIUS_MM,
    WRIST_LIMITS_DEG,
    HandTemplate,
    forward_kinematics,
)

POSE_SHAPES: tuple[str, ...] = ("open", "fist", "pinch", "point", "count", "grasp", "random")
INTERACTIONS: tuple[str, ...] = ("touch", "cross", "clasp", "interlace", "occlude")


@dataclass(frozen=True)
class SceneConfig:
    """Distributions of the scene sampler (lengths mm, angles degrees)."""

    image_size: int = 256
    interacting_prob: float = 0.5  # share of two-hand samples (InterHand2.6M is about half)
    crop_scale: tuple[float, float] = (1.15, 1.35)  # image side / longer side of the joints' box
    crop_shift: float = 0.04  # random offset of the box centre, in image sides
    distance_mm: tuple[float, float] = (250.0, 1500.0)  # camera to hands, log-uniform
    off_axis_deg: float = 20.0  # how far off the optical axis the hands may sit
    hand_length_mm: tuple[float, float, float, float] = (180.0, 12.0, 150.0, 215.0)  # mean sd lo hi
    bone_jitter: float = 0.035  # relative sd of each bone's length around the scaled template
    penetration_tol_mm: float = 2.0
    # Sampling weights of POSE_SHAPES and INTERACTIONS.
    shape_weights: tuple[float, ...] = (0.2, 0.15, 0.12, 0.1, 0.15, 0.13, 0.15)
    interaction_weights: tuple[float, ...] = (0.35, 0.15, 0.15, 0.15, 0.2)


@dataclass(frozen=True)
class Scene:
    """A batch of B scenes in the camera frame (x right, y down, z forward; mm).

    ``joints`` (B, 2, 21, 3) both hands (right, left) even when absent; ``frames`` (B, 2, 22, 3, 4)
    skinning transforms; ``present`` (B, 2) bool; ``hand_type`` (B,) index into
    ``interhand.HAND_TYPES``; ``interaction`` (B,) index into INTERACTIONS or -1; ``intrinsics``
    (B, 4) fx, fy, cx, cy in image pixels; ``size`` (B,) hand scale against the template;
    ``angles`` (B, 2, 20, 3) radians.
    """

    joints: torch.Tensor
    frames: torch.Tensor
    present: torch.Tensor
    hand_type: torch.Tensor
    interaction: torch.Tensor
    intrinsics: torch.Tensor
    size: torch.Tensor
    angles: torch.Tensor


def _u(
    g: torch.Generator,
    shape: tuple[int, ...],
    lo: float | torch.Tensor,
    hi: float | torch.Tensor,
    device: torch.device,
) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g, device=device)


def _normal(g: torch.Generator, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=g, device=device)


def _choice(
    g: torch.Generator, n: int, weights: tuple[float, ...], device: torch.device
) -> torch.Tensor:
    w = torch.tensor(weights, device=device, dtype=torch.float32)
    return torch.multinomial(w.expand(n, -1), 1, generator=g)[:, 0]


def random_rotation(g: torch.Generator, n: int, device: torch.device) -> torch.Tensor:
    """Uniform random rotations (n, 3, 3) from normalised Gaussian quaternions."""
    q = _normal(g, (n, 4), device)
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def _rotation_about(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    from .skeleton import axis_angle_to_matrix

    return axis_angle_to_matrix(axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-9), angle)


# ----------------------------------------------------------------------------- pose prior
def sample_angles(
    g: torch.Generator,
    n: int,
    device: torch.device,
    shape: torch.Tensor | None = None,
    weights: tuple[float, ...] = SceneConfig.shape_weights,
) -> torch.Tensor:
    """Joint angles (n, 20, 3) radians from the pose prior (a mixture over POSE_SHAPES, drawn
    with ``weights``), within ANGLE_LIMITS_DEG. ``shape`` (n,) forces the mixture component."""
    if shape is None:
        shape = _choice(g, n, weights, device)
    # Per shape: ranges of [thumb curl, thumb opposition, index..pinky curl (4), spread].
    lo = torch.tensor(
        [
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2],
            [0.5, 0.3, 0.8, 0.8, 0.8, 0.8, 0.0],
            [0.25, 0.7, 0.3, 0.0, 0.0, 0.0, 0.0],
            [0.4, 0.3, 0.0, 0.8, 0.8, 0.8, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.2, 0.5, 0.3, 0.3, 0.3, 0.3, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ],
        device=device,
    )
    hi = torch.tensor(
        [
            [0.25, 0.4, 0.15, 0.15, 0.15, 0.15, 1.0],
            [0.9, 0.6, 1.0, 1.0, 1.0, 1.0, 0.2],
            [0.5, 1.0, 0.55, 1.0, 1.0, 1.0, 0.5],
            [0.9, 0.6, 0.1, 1.0, 1.0, 1.0, 0.3],
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            [0.5, 0.9, 0.65, 0.65, 0.65, 0.65, 0.4],
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        ],
        device=device,
    )
    p = _u(g, (n, 7), lo[shape], hi[shape], device)
    # Counting: each finger is either up or folded.
    up = torch.rand((n, 5), generator=g, device=device) < 0.5
    count_curl = torch.where(up, _u(g, (n, 5), 0.0, 0.12, device), _u(g, (n, 5), 0.8, 1.0, device))
    is_count = (shape == POSE_SHAPES.index("count"))[:, None]
    p[:, [0, 2, 3, 4, 5]] = torch.where(is_count, count_curl, p[:, [0, 2, 3, 4, 5]])
    deg = torch.zeros(n, NUM_BONES, 3, device=device)
    curl, spread = p[:, 2:6], p[:, 6:7]
    mcp_idx, pip_idx, dip_idx = (
        [4 * f + 2 for f in range(1, 5)],
        [4 * f + 1 for f in range(1, 5)],
        [4 * f for f in range(1, 5)],
    )
    deg[:, mcp_idx, 0] = curl * 85
    deg[:, pip_idx, 0] = curl * 100
    deg[:, dip_idx, 0] = curl * 70
    spread_dir = torch.tensor([15.0, 3.0, -8.0, -18.0], device=device)
    deg[:, mcp_idx, 1] = spread * spread_dir * (1 - 0.7 * curl)
    deg[:, 11, 0] = curl[:, 2] * 6
    deg[:, 15, 0] = curl[:, 3] * 12
    t_curl, t_opp = p[:, 0], p[:, 1]
    deg[:, 2, 0] = -10 + 40 * t_opp + 10 * t_curl
    deg[:, 2, 1] = 5 + 30 * t_opp
    deg[:, 2, 2] = 20 * t_opp
    deg[:, 1, 0] = 55 * t_curl
    deg[:, 0, 0] = 70 * t_curl - 5
    deg = deg + 5.0 * _normal(g, (n, NUM_BONES, 3), device)
    lim = torch.as_tensor(ANGLE_LIMITS_DEG, device=device, dtype=torch.float32)
    # "random": anywhere within the limits, the DIP following the PIP as tendons couple them.
    rand = _u(g, (n, NUM_BONES, 3), lim[..., 0], lim[..., 1], device)
    rand[:, dip_idx, 0] = rand[:, pip_idx, 0] * 0.7 + 10 * _normal(g, (n, 4), device)
    is_rand = (shape == POSE_SHAPES.index("random"))[:, None, None]
    deg = torch.where(is_rand, rand, deg)
    deg = torch.maximum(torch.minimum(deg, lim[..., 1]), lim[..., 0])
    return torch.deg2rad(deg)


# ----------------------------------------------------------------------------- collision
def hand_capsules(
    joints: torch.Tensor, frames: torch.Tensor, size: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Collision capsules of N hands: starts, ends (N, K, 3) and radii (N, K) mm: the 20 bones,
    the knuckle line, the wrist and the forearm."""
    parents = torch.tensor([p for _, p in HAND_BONES], device=joints.device)
    radii = torch.as_tensor(JOINT_RADII_MM, device=joints.device, dtype=joints.dtype)
    bone_r = torch.minimum(radii[:NUM_BONES], radii[parents]) * 0.95
    bone_r = torch.where(parents == WRIST, torch.full_like(bone_r, PALM_RADIUS_MM), bone_r)
    starts = [joints[:, parents], joints[:, [7, 3]]]
    ends = [joints[:, :NUM_BONES], joints[:, [19, 19]]]
    fore = frames[:, FOREARM_FRAME, :, :3]
    down = -fore[..., 1] / size[:, None]  # canonical -y: from the wrist towards the elbow
    w = joints[:, WRIST]
    starts.append((w + down * 25 * size[:, None])[:, None])
    ends.append((w + down * (FOREARM_LENGTH_MM - 20) * size[:, None])[:, None])
    r = (
        torch.cat(
            [
                bone_r.expand(joints.shape[0], -1),
                torch.full((joints.shape[0], 2), PALM_RADIUS_MM, device=joints.device),
                torch.full((joints.shape[0], 1), FOREARM_RADIUS_MM, device=joints.device),
            ],
            1,
        )
        * size[:, None]
    )
    return torch.cat(starts, 1), torch.cat(ends, 1), r


def capsule_distance(
    a0: torch.Tensor,
    a1: torch.Tensor,
    ar: torch.Tensor,
    b0: torch.Tensor,
    b1: torch.Tensor,
    br: torch.Tensor,
) -> torch.Tensor:
    """Smallest surface distance (N,) mm between two capsule sets (negative: interpenetration).

    Closest points of segment pairs (Ericson, Real-Time Collision Detection 5.1.9), vectorised.
    """
    p1, q1 = a0[:, :, None], a1[:, :, None]
    p2, q2 = b0[:, None], b1[:, None]
    d1, d2, r = q1 - p1, q2 - p2, p1 - p2
    a = (d1 * d1).sum(-1).clamp_min(1e-9)
    e = (d2 * d2).sum(-1).clamp_min(1e-9)
    f = (d2 * r).sum(-1)
    c = (d1 * r).sum(-1)
    b = (d1 * d2).sum(-1)
    denom = a * e - b * b
    s = torch.where(
        denom > 1e-6, ((b * f - c * e) / denom.clamp_min(1e-6)).clamp(0, 1), torch.zeros_like(a)
    )
    t = (b * s + f) / e
    s = torch.where(t < 0, (-c / a).clamp(0, 1), torch.where(t > 1, ((b - c) / a).clamp(0, 1), s))
    t = t.clamp(0, 1)
    gap = ((p1 + d1 * s[..., None]) - (p2 + d2 * t[..., None])).norm(dim=-1)
    gap = gap - ar[:, :, None] - br[:, None]
    smallest: torch.Tensor = gap.flatten(1).amin(1)
    return smallest


# ----------------------------------------------------------------------------- scene sampler
def _stack_templates(
    templates: tuple[HandTemplate, HandTemplate], device: torch.device
) -> list[torch.Tensor]:
    return [
        torch.stack([torch.as_tensor(getattr(t, k), dtype=torch.float32) for t in templates]).to(
            device
        )
        for k in ("joints", "flex_axis", "abd_axis", "twist_axis")
    ]


def _frame_from(d: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Rotation whose canonical +y maps to ``d`` and +z to (``n`` made orthogonal to d)."""
    y = d / d.norm(dim=-1, keepdim=True)
    z = n - (n * y).sum(-1, keepdim=True) * y
    z = z / z.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    x = torch.cross(y, z, dim=-1)
    return torch.stack([x, y, z], -1)


def sample_scene(
    g: torch.Generator,
    n: int,
    templates: tuple[HandTemplate, HandTemplate],
    device: torch.device,
    config: SceneConfig = SceneConfig(),
) -> Scene:
    """Sample ``n`` scenes (see :class:`Scene`) for the (right, left) ``templates``."""
    cfg = config
    rest, flex_ax, abd_ax, twist_ax = _stack_templates(templates, device)
    hand_len = torch.tensor([templates[0].hand_length, templates[1].hand_length], device=device)
    # Who is in the picture.
    inter = torch.rand(n, generator=g, device=device) < cfg.interacting_prob
    single_left = torch.rand(n, generator=g, device=device) < 0.5
    hand_type = torch.where(inter, 2, torch.where(single_left, 1, 0))
    present = torch.stack([inter | ~single_left, inter | single_left], 1)
    kind = torch.where(inter, _choice(g, n, cfg.interaction_weights, device), -1)
    # One person: shared size and proportions for both hands.
    mean, sd, lo, hi = cfg.hand_length_mm
    length = (mean + sd * _normal(g, (n,), device)).clamp(lo, hi)
    size = length[:, None] / hand_len[None]  # (n, 2)
    finger = 1 + cfg.bone_jitter * _normal(g, (n, 5), device)
    bone = 1 + cfg.bone_jitter * 0.6 * _normal(g, (n, NUM_BONES), device)
    jitter = (finger.repeat_interleave(4, 1) * bone).clamp(0.85, 1.15)
    palm_bones = torch.tensor([p == WRIST for _, p in HAND_BONES], device=device)
    jitter = torch.where(palm_bones, 1 + (jitter - 1) * 0.3, jitter)  # palms vary less
    length_scale = size[..., None] * jitter[:, None]
    # Poses: interactions override the shapes where the contact asks for it.
    angles = sample_angles(g, 2 * n, device, weights=cfg.shape_weights).view(n, 2, NUM_BONES, 3)
    clasp = kind == INTERACTIONS.index("clasp")
    interlace = kind == INTERACTIONS.index("interlace")
    if bool((clasp | interlace).any()):
        grip = sample_angles(g, 2 * n, device, torch.full((2 * n,), 5, device=device))
        grip = grip.view(n, 2, NUM_BONES, 3)
        spread = grip.clone()
        fingers = [4 * f + k for f in range(1, 5) for k in (0, 1, 2)]
        spread[:, :, fingers, 0] *= 0.5
        mcps = [4 * f + 2 for f in range(1, 5)]
        lim = torch.deg2rad(torch.as_tensor(ANGLE_LIMITS_DEG, device=device, dtype=torch.float32))
        # Fingers spread apart to interleave.
        spread[:, :, mcps, 1] = torch.where(
            lim[mcps, 1, 1] > 0.15, lim[mcps, 1, 1], lim[mcps, 1, 0]
        )
        angles = torch.where(clasp[:, None, None, None], grip, angles)
        angles = torch.where(interlace[:, None, None, None], spread, angles)
    wlim = torch.deg2rad(torch.as_tensor(WRIST_LIMITS_DEG, device=device, dtype=torch.float32))
    wrist = _u(g, (n, 2, 2), wlim[:, 0], wlim[:, 1], device)
    # Hand orientations: uniform, but a forearm never points at the camera (it would be the arm
    # of someone standing between the camera and the hand).
    cand = random_rotation(g, n * 2 * 8, device).view(n, 2, 8, 3, 3)
    fore_dir = -cand[..., :, 1]  # canonical -y in the camera frame (wrist not bent)
    ok = fore_dir[..., 2] > -0.3
    first = torch.where(
        ok.any(-1), ok.float().argmax(-1), torch.zeros_like(ok[..., 0], dtype=torch.long)
    )
    rot = torch.gather(cand, 2, first[..., None, None, None].expand(n, 2, 1, 3, 3))[:, :, 0]
    # Palm-to-palm interactions: the left hand faces the right one.
    d_r, n_r, x_r = rot[:, 0, :, 1], rot[:, 0, :, 2], rot[:, 0, :, 0]
    alpha = torch.where(
        clasp,
        _u(g, (n,), 1.2, 2.6, device) * torch.sign(_u(g, (n,), -1, 1, device)),
        _u(g, (n,), -0.35, 0.35, device),
    )
    d_l = (_rotation_about(n_r, alpha) @ d_r[..., None])[..., 0]
    facing = _frame_from(d_l, -n_r)
    rot = rot.clone()
    rot[:, 1] = torch.where((clasp | interlace)[:, None, None], facing, rot[:, 1])

    def pose(root_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = rest.shape[0]
        side = torch.arange(2, device=device).repeat(n)
        posed = forward_kinematics(
            rest[side],
            flex_ax[side],
            abd_ax[side],
            twist_ax[side],
            angles.reshape(n * k, NUM_BONES, 3),
            length_scale.reshape(n * k, NUM_BONES),
            size.reshape(-1),
            rot.reshape(-1, 3, 3),
            root_pos.reshape(-1, 3),
            wrist.reshape(-1, 2),
        )
        return posed.joints.view(n, 2, -1, 3), posed.frames.view(n, 2, *posed.frames.shape[1:])

    zero = torch.zeros(n, 2, 3, device=device)
    joints, frames = pose(zero)
    # Place the left hand against the right one, then push it out along `push` until clear.
    pick = torch.randint(0, 21, (n, 2), generator=g, device=device)
    cross = kind == INTERACTIONS.index("cross")
    pick = torch.where(cross[:, None], torch.full_like(pick, WRIST), pick)
    ar = torch.arange(n, device=device)
    contact = joints[ar, 0, pick[:, 0]] - joints[ar, 1, pick[:, 1]]
    palm_c = torch.tensor([0.0, 45.0, 0.0], device=device) * size[:, :1]
    pr = (rot[:, 0] @ palm_c[..., None])[..., 0]
    pl = (rot[:, 1] @ palm_c[..., None])[..., 0]
    side_shift = torch.where(
        interlace, _u(g, (n,), 6.0, 11.0, device), torch.zeros(n, device=device)
    )
    side_shift = side_shift * torch.sign(_u(g, (n,), -1, 1, device)) * size[:, 0]
    facing_pos = pr - pl + x_r * side_shift[:, None]
    offset = torch.where((clasp | interlace)[:, None], facing_pos, contact)
    # Touching hands separate outwards from the right hand's contact point, not through it.
    outward = joints[ar, 0, pick[:, 0]] - joints[:, 0].mean(1)
    outward = outward / outward.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    push = outward + 0.6 * _normal(g, (n, 3), device) * torch.tensor([1.0, 1.0, 0.5], device=device)
    toward = torch.where(_u(g, (n,), -1, 1, device) > 0, 1.0, -1.0)
    z_push = torch.stack(
        [0.3 * _normal(g, (n,), device), 0.3 * _normal(g, (n,), device), toward], -1
    )
    occ = (kind == INTERACTIONS.index("occlude")) | cross
    push = torch.where(occ[:, None], z_push, push)
    push = torch.where((clasp | interlace)[:, None], -n_r, push)
    push = push / push.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    gap = torch.where(
        kind == INTERACTIONS.index("occlude"),
        _u(g, (n,), 5.0, 60.0, device),
        _u(g, (n,), 0.0, 6.0, device),
    )
    root = torch.zeros(n, 2, 3, device=device)
    root[:, 1] = torch.where(inter[:, None], offset, root[:, 1])
    joints, frames = pose(root)
    caps_r = hand_capsules(joints[:, 0], frames[:, 0], size[:, 0])
    active = inter.nonzero()[:, 0]
    for step in range(40):
        if active.numel() == 0:
            break
        caps_l = hand_capsules(joints[active, 1], frames[active, 1], size[active, 1])
        r0, r1, rr = (c[active] for c in caps_r)
        dist = capsule_distance(r0, r1, rr, *caps_l)
        need = (gap[active] - dist).clamp(min=0)
        keep = need > 0.05
        active, need = active[keep], need[keep]
        # Overshoot a little more as iterations go, for pairs that separate sideways to `push`.
        move = push[active] * (need * (1.0 + step / 10.0) + 0.5)[:, None]
        delta = torch.zeros_like(frames[active, 1])
        delta[..., 3] = move[:, None]
        joints = joints.clone()
        joints[active, 1] += move[:, None]
        frames = frames.clone()
        frames[active, 1] += delta
    # Camera: hands at a random distance, somewhat off the optical axis.
    pres = present[:, :, None, None].float()
    centre = (joints * pres).sum((1, 2)) / (pres.sum((1, 2)) * joints.shape[2])
    dist_cam = torch.exp(
        _u(g, (n,), math.log(cfg.distance_mm[0]), math.log(cfg.distance_mm[1]), device)
    )
    off = torch.tan(torch.deg2rad(_u(g, (n, 2), -cfg.off_axis_deg, cfg.off_axis_deg, device)))
    target = torch.stack([off[:, 0] * dist_cam, off[:, 1] * dist_cam, dist_cam], -1)
    shift = target - centre
    joints = joints + shift[:, None, None]
    frames = frames.clone()
    frames[..., 3] = frames[..., 3] + shift[:, None, None]
    # Intrinsics: the present joints' box, widened by the crop scale, fills the image.
    xy = joints[..., :2] / joints[..., 2:3]
    big = torch.finfo(xy.dtype).max
    mask = present[:, :, None, None]
    lo_xy = torch.where(mask, xy, torch.full_like(xy, big)).amin((1, 2))
    hi_xy = torch.where(mask, xy, torch.full_like(xy, -big)).amax((1, 2))
    side_n = (hi_xy - lo_xy).amax(-1) * _u(g, (n,), *cfg.crop_scale, device)
    focal = cfg.image_size / side_n
    c = (cfg.image_size - 1) / 2
    jitter_c = _u(g, (n, 2), -cfg.crop_shift, cfg.crop_shift, device) * cfg.image_size
    princ = c + jitter_c - focal[:, None] * (lo_xy + hi_xy) / 2
    intrinsics = torch.stack([focal, focal, princ[:, 0], princ[:, 1]], -1)
    return Scene(joints, frames, present, hand_type, kind, intrinsics, size[:, 0], angles)


def interpenetration(scene: Scene) -> torch.Tensor:
    """Smallest capsule surface distance (B,) mm between the two hands (+inf if not both)."""
    caps_r = hand_capsules(scene.joints[:, 0], scene.frames[:, 0], scene.size)
    caps_l = hand_capsules(scene.joints[:, 1], scene.frames[:, 1], scene.size)
    d = capsule_distance(*caps_r, *caps_l)
    both = scene.present.all(1)
    return torch.where(both, d, torch.full_like(d, float("inf")))

"""``dfl-train synth-clip``: a synthetic video with ground truth, for measuring tracking and
smoothing (``benchmarks/video.py``, docs/video.md).

A person faces the camera with both hands up, palms forward; the hands sweep sideways and cross
twice (the right hand passes in front of the left one, 90 mm nearer the camera), bobbing up and
down, while their finger poses, wrist angles and orientations move between key poses drawn with a
fixed seed (cosine-eased interpolation, so the motion is smooth). Appearance (skin, background,
camera effects) is drawn once with the seed and kept for every frame. The camera is fixed and has
the intrinsics ``dfl-infer`` assumes for the frame size (principal point at the centre, focal
length = the side), so lifted 3D joints can be compared with the truth as they are.

Writes ``OUT.mp4`` (mp4v) and ``OUT.gt.json`` beside it: the fps, the intrinsics, the joint names
and per frame both hands' ``joints_2d`` (pixels) and ``joints_3d`` (camera-frame mm).
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfl_infer._atomic import atomic_path, write_json
from dfl_infer.joints import HAND_JOINT_NAMES, HANDS

from .engine import EngineConfig, SynthEngine
from .scene import (
    INTERACTIONS,
    POSE_SHAPES,
    Scene,
    SceneConfig,
    _frame_from,
    _stack_templates,
    sample_angles,
)
from .skeleton import NUM_BONES, WRIST_LIMITS_DEG, axis_angle_to_matrix, forward_kinematics

logger = logging.getLogger(__name__)

HAND_LENGTH_MM = 180.0  # the canonical hand size the lift assumes
DISTANCE_MM = 550.0  # camera to the right wrist
DEPTH_GAP_MM = 90.0  # the left hand is this much further away, so the crossing hands never touch
SWEEP_MM = 100.0  # each wrist's sideways amplitude
KEY_EVERY = 30  # frames between key poses
# Finger poses of the key poses (POSE_SHAPES names): ones that stay clear of the other hand.
KEY_SHAPES = ("open", "pinch", "point", "count", "grasp")


def _eased_keys(keys: torch.Tensor, frames: int) -> torch.Tensor:
    """(K, ...) key values -> (frames, ...) with cosine easing between consecutive keys."""
    t = torch.arange(frames, dtype=torch.float32) / KEY_EVERY
    k0 = t.floor().long().clamp(max=len(keys) - 2)
    w = (t - k0).clamp(0, 1)
    w = (0.5 - 0.5 * torch.cos(math.pi * w)).view(-1, *([1] * (keys.dim() - 1)))
    out: torch.Tensor = keys[k0] * (1 - w) + keys[k0 + 1] * w
    return out


def clip_scenes(engine: SynthEngine, frames: int, size: int, seed: int) -> Scene:
    """The clip's ``frames`` scenes (see the module docstring), posed for ``engine``'s hands."""
    g = torch.Generator().manual_seed(seed)
    n_keys = frames // KEY_EVERY + 2
    shapes = torch.tensor([POSE_SHAPES.index(s) for s in KEY_SHAPES])
    pick = shapes[torch.randint(0, len(shapes), (n_keys * 2,), generator=g)]
    angles = sample_angles(g, n_keys * 2, torch.device("cpu"), shape=pick)
    angles = _eased_keys(angles.view(n_keys, 2, NUM_BONES, 3), frames)
    lim = torch.deg2rad(torch.as_tensor(WRIST_LIMITS_DEG, dtype=torch.float32)) * 0.4
    wrist = lim[:, 0] + (lim[:, 1] - lim[:, 0]) * torch.rand((n_keys, 2, 2), generator=g)
    wrist = _eased_keys(wrist, frames)
    # Orientation: palms to the camera, fingers up, turned by eased (roll, yaw, pitch).
    turn = torch.deg2rad(torch.tensor([25.0, 30.0, 20.0])) * (
        2 * torch.rand((n_keys, 2, 3), generator=g) - 1
    )
    turn = _eased_keys(turn, frames)
    base = _frame_from(torch.tensor([[0.0, -1.0, 0.0]]), torch.tensor([[0.0, 0.0, -1.0]]))[0]
    axes = torch.eye(3)
    rot = (
        axis_angle_to_matrix(axes[2].expand(frames, 2, 3), turn[..., 0])
        @ axis_angle_to_matrix(axes[1].expand(frames, 2, 3), turn[..., 1])
        @ axis_angle_to_matrix(axes[0].expand(frames, 2, 3), turn[..., 2])
        @ base
    )
    # Wrists: sideways sweeps in opposite directions (crossing at a quarter and three quarters
    # of the clip), a gentle bob, the left hand behind the right one.
    phase = 2 * math.pi * torch.arange(frames, dtype=torch.float32) / frames
    x = SWEEP_MM * torch.cos(phase)
    y = 75.0 + 20.0 * torch.sin(2 * phase)
    root = torch.stack(
        [
            torch.stack([-x, y, torch.full_like(x, DISTANCE_MM)], -1),
            torch.stack([x, y + 10.0, torch.full_like(x, DISTANCE_MM + DEPTH_GAP_MM)], -1),
        ],
        1,
    )
    rest, flex_ax, abd_ax, twist_ax = _stack_templates(engine.templates, torch.device("cpu"))
    side = torch.arange(2).repeat(frames)
    hand_len = torch.tensor([t.hand_length for t in engine.templates])
    scale = (HAND_LENGTH_MM / hand_len)[side]
    posed = forward_kinematics(
        rest[side],
        flex_ax[side],
        abd_ax[side],
        twist_ax[side],
        angles.reshape(-1, NUM_BONES, 3),
        scale[:, None].expand(-1, NUM_BONES),
        scale,
        rot.reshape(-1, 3, 3),
        root.reshape(-1, 3),
        wrist.reshape(-1, 2),
    )
    c = (size - 1) / 2
    return Scene(
        joints=posed.joints.view(frames, 2, -1, 3),
        frames=posed.frames.view(frames, 2, *posed.frames.shape[1:]),
        present=torch.ones(frames, 2, dtype=torch.bool),
        hand_type=torch.full((frames,), 2),
        interaction=torch.full((frames,), INTERACTIONS.index("cross")),
        intrinsics=torch.tensor([[float(size), float(size), c, c]]).expand(frames, 4),
        size=scale.view(frames, 2)[:, 0],
        angles=angles,
    )


def make_clip(
    out: str | Path,
    frames: int = 150,
    size: int = 512,
    fps: float = 30.0,
    seed: int = 0,
    mesh: str | Path | None = None,
) -> tuple[Path, Path]:
    """Render the clip to ``out`` (an .mp4) and its ground truth to ``<out stem>.gt.json``."""
    import cv2

    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"the clip is written as an .mp4 file, got {out}")
    if frames < 2:
        raise ValueError(f"frames must be >= 2, got {frames}")
    config = EngineConfig(scene=SceneConfig(image_size=size))
    engine = SynthEngine("cpu", mesh=mesh, config=config, seed=seed)
    scenes = clip_scenes(engine, frames, size, seed)
    k = scenes.intrinsics[0].tolist()
    records: list[dict[str, Any]] = []
    with atomic_path(out, suffix=".mp4") as tmp:
        fourcc = cv2.VideoWriter_fourcc(*"mp4v")  # type: ignore[attr-defined]
        writer = cv2.VideoWriter(str(tmp), fourcc, fps, (size, size))
        try:
            for t in range(frames):
                one = Scene(*(getattr(scenes, f)[t : t + 1] for f in Scene.__dataclass_fields__))
                # The same appearance in every frame: the generator starts afresh each time.
                with torch.no_grad():
                    batch = engine.render(one, torch.Generator().manual_seed(seed))
                rgb = (batch["image"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
                joints = one.joints[0].double().numpy()
                uv = joints[..., :2] / joints[..., 2:] * k[0] + np.array(k[2:])
                hands = [
                    {
                        "handedness": side,
                        "joints_2d": np.round(uv[h], 3).tolist(),
                        "joints_3d": np.round(joints[h], 3).tolist(),
                    }
                    for h, side in enumerate(HANDS)
                ]
                records.append({"frame": t, "time": t / fps, "hands": hands})
        finally:
            writer.release()
    gt = out.with_name(out.stem + ".gt.json")
    write_json(
        gt,
        {
            "fps": fps,
            "width": size,
            "height": size,
            "intrinsics": dict(zip(("fx", "fy", "cx", "cy"), k)),
            "joint_names": list(HAND_JOINT_NAMES),
            "seed": seed,
            "frames": records,
        },
        indent=0,
    )
    return out, gt


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``synth-clip`` subcommand."""
    p = subparsers.add_parser(
        "synth-clip",
        help="render a synthetic two-hand video with ground truth",
        description="Render a clip of two hands moving and crossing (OUT.mp4) with its ground "
        "truth (OUT.gt.json), for benchmarks/video.py.",
    )
    p.add_argument("--out", type=Path, required=True, help="output .mp4 file")
    p.add_argument("--frames", type=int, default=150, help="number of frames (default 150)")
    p.add_argument("--size", type=int, default=512, help="frame side in pixels (default 512)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate (default 30)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--mesh", type=Path, default=None, help="hand mesh, as for `dfl-train synth`")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    video, gt = make_clip(args.out, args.frames, args.size, args.fps, args.seed, args.mesh)
    logger.info("wrote %s and %s", video, gt)
    return 0

"""Skinned hand surfaces for the synthetic engine: the rigged WebXR mesh or a procedural one.

A :class:`Surface` is one hand side's triangle mesh in the canonical template frame (mm, see
``skeleton.py``) with dense linear-blend-skinning weights over the 22 skinning frames (20 bones,
palm, forearm), a part label per face (``joints.HAND_PART_NAMES`` index, -1 for the forearm, which
renders as background class 0) and per-vertex material hints (nail, palmar side, forearm length).

Real training uses a rigged mesh (``--mesh``): the WebXR generic hand (MIT) from the npm package
``@webxr-input-profiles/assets``, files ``dist/profiles/generic-hand/{right,left}.glb``. Its 25
joints map onto our 21: the index..pinky ``metacarpal`` joints lie inside the palm and drive the
palm near each knuckle; ``phalanx-proximal`` is our MCP, ``intermediate`` PIP, ``distal`` DIP. For
the thumb ``metacarpal`` is the CMC, ``phalanx-proximal`` the MCP, ``distal`` the IP. Joints are
matched by name, so the left file's reversed joint order does not matter.
Tests and CI use :func:`procedural_surface` (tapered capsules, a palm slab, a forearm): no asset.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfl_infer.joints import HAND_BONE_PARTS, HAND_BONES, NUM_HAND_JOINTS, WRIST

from .glb import SkinnedMesh, read_glb
from .skeleton import (
    FOREARM_FRAME,
    FOREARM_LENGTH_MM,
    JOINT_RADII_MM,
    NUM_BONES,
    NUM_FRAMES,
    ROOT_FRAME,
    HandTemplate,
    canonical_frame,
    canonical_template,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Surface:
    """One hand side's skinned surface in the canonical frame (mm).

    ``vertices`` (V, 3); ``faces`` (F, 3) int64; ``weights`` (V, 22) rows summing to 1;
    ``face_part`` (F,) int64 hand-local part 0..15 or -1 (forearm); ``nail`` (V,) 0..1;
    ``palmar`` (V,) 0..1 how much the vertex faces the palm side; ``forearm`` (V,) mm from the
    wrist along the forearm (0 on the hand); ``weld`` (V,) index of the first vertex at the same
    position (UV seams split vertices; normals are averaged over welded copies).
    """

    template: HandTemplate
    vertices: np.ndarray
    faces: np.ndarray
    weights: np.ndarray
    face_part: np.ndarray
    nail: np.ndarray
    palmar: np.ndarray
    forearm: np.ndarray
    weld: np.ndarray

    def mirrored(self) -> Surface:
        """The same surface for the other hand side (mirror through x = 0, winding flipped)."""
        flip = np.array([-1.0, 1.0, 1.0])
        return Surface(
            self.template.mirrored(),
            self.vertices * flip,
            self.faces[:, ::-1].copy(),
            self.weights,
            self.face_part,
            self.nail,
            self.palmar,
            self.forearm,
            self.weld,
        )


# ----------------------------------------------------------------------------- mesh building
class _MeshBuilder:
    def __init__(self) -> None:
        self.verts: list[np.ndarray] = []
        self.faces: list[np.ndarray] = []
        self.weights: list[np.ndarray] = []
        self.parts: list[np.ndarray] = []
        self.count = 0

    def add(self, verts: np.ndarray, faces: np.ndarray, weights: np.ndarray, part: int) -> None:
        self.verts.append(verts)
        self.faces.append(faces + self.count)
        self.weights.append(weights)
        self.parts.append(np.full(len(faces), part, dtype=np.int64))
        self.count += len(verts)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.concatenate(self.verts),
            np.concatenate(self.faces).astype(np.int64),
            np.concatenate(self.weights),
            np.concatenate(self.parts),
        )


def _ring_faces(rings: int, around: int, offset: int = 0) -> np.ndarray:
    """Quads (as 2 triangles) joining consecutive rings of ``around`` vertices."""
    i, k = np.meshgrid(np.arange(rings - 1), np.arange(around), indexing="ij")
    a = offset + i * around + k
    b = offset + i * around + (k + 1) % around
    c, d = a + around, b + around
    return np.concatenate([np.stack([a, b, d], -1), np.stack([a, d, c], -1)]).reshape(-1, 3)


def _basis(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(d, helper)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(d, e1)


def _capsule(
    p: np.ndarray, c: np.ndarray, rp: float, rc: float, around: int = 12, cap: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Closed tapered capsule from ``p`` (radius rp) to ``c`` (radius rc): vertices, faces."""
    d = c - p
    d = d / np.linalg.norm(d)
    e1, e2 = _basis(d)
    theta = 2 * math.pi * np.arange(around) / around
    circle = np.cos(theta)[:, None] * e1 + np.sin(theta)[:, None] * e2
    rings = []
    for phi in np.linspace(-math.pi / 2, 0, cap + 1)[1:]:
        rings.append(p + d * rp * math.sin(phi) + rp * math.cos(phi) * circle)
    for phi in np.linspace(0, math.pi / 2, cap + 1)[:-1]:
        rings.append(c + d * rc * math.sin(phi) + rc * math.cos(phi) * circle)
    body = np.concatenate(rings)
    n = len(body)
    verts = np.concatenate([body, [p - d * rp], [c + d * rc]])
    faces = [_ring_faces(len(rings), around)]
    k = np.arange(around)
    faces.append(np.stack([np.full(around, n), (k + 1) % around, k], -1))
    last = (len(rings) - 1) * around
    faces.append(np.stack([np.full(around, n + 1), last + k, last + (k + 1) % around], -1))
    return verts, np.concatenate(faces)


def _forearm(builder: _MeshBuilder, scale: float) -> np.ndarray:
    """Append a tapered elliptic forearm (canonical frame, from inside the palm along -y);
    returns each new vertex's distance from the wrist (mm)."""
    around, rings = 20, 16
    ys = np.linspace(12.0, -FOREARM_LENGTH_MM, rings)
    t = np.clip(-ys / FOREARM_LENGTH_MM, 0, 1)
    half_w = scale * (27 + 12 * t)
    half_t = scale * (17 + 14 * t)
    theta = 2 * math.pi * np.arange(around) / around
    v = np.stack(
        [
            half_w[:, None] * np.cos(theta)[None],
            np.repeat(ys[:, None], around, 1),
            half_t[:, None] * np.sin(theta)[None],
        ],
        -1,
    ).reshape(-1, 3)
    w = np.zeros((len(v), NUM_FRAMES))
    # The first ring is half palm so the wrist bends smoothly instead of creasing.
    blend = np.repeat(np.clip(ys / 12.0, 0, 1) * 0.5, around)
    w[:, FOREARM_FRAME] = 1 - blend
    w[:, ROOT_FRAME] = blend
    # Close the elbow end so back-face culling never shows the inside of the tube.
    end = len(v)
    v = np.concatenate([v, [[0.0, ys[-1], 0.0]]])
    w = np.concatenate([w, w[-1:]])
    k = np.arange(around)
    last = (rings - 1) * around
    cap = np.stack([np.full(around, end), last + k, last + (k + 1) % around], -1)
    builder.add(v, np.concatenate([_ring_faces(rings, around), cap]), w, -1)
    return np.concatenate([np.repeat(np.maximum(-ys, 0.0), around), [-ys[-1]]])


def _palm_slab(builder: _MeshBuilder, j: np.ndarray, scale: float) -> None:
    """A rounded slab from the wrist to the knuckles, skinned to the palm and metacarpals."""
    mcps = j[[7, 11, 15, 19]]
    y_end = mcps[:, 1].mean()
    x_lo, x_hi = mcps[:, 0].min(), mcps[:, 0].max()
    around, rings = 24, 9
    ys = np.concatenate([np.linspace(-4.0, y_end - 2, rings - 2), [y_end + 4, y_end + 7]])
    shrink = np.concatenate([np.ones(rings - 2), [0.8, 0.45]])
    t = np.clip(ys / y_end, 0, 1)
    centre_x = (x_lo + x_hi) / 2 * t
    half_w = ((1 - t) * 27 * scale + t * ((x_hi - x_lo) / 2 + 9 * scale)) * shrink
    half_t = (15 - 3 * t) * scale * shrink
    theta = 2 * math.pi * np.arange(around) / around
    c, s = np.cos(theta), np.sin(theta)
    e = 0.6  # superellipse exponent < 1 squares the cross-section off
    sx = np.sign(c) * np.abs(c) ** e
    sz = np.sign(s) * np.abs(s) ** e
    v = np.stack(
        [
            centre_x[:, None] + half_w[:, None] * sx[None],
            np.repeat(ys[:, None], around, 1),
            half_t[:, None] * sz[None] - 2.0 * scale,
        ],
        -1,
    ).reshape(-1, 3)
    n = len(v)
    verts = np.concatenate([v, [[centre_x[0], ys[0], 0.0]], [[centre_x[-1], ys[-1], 0.0]]])
    k = np.arange(around)
    last = (rings - 1) * around
    faces = np.concatenate(
        [
            _ring_faces(rings, around)[:, ::-1],
            np.stack([np.full(around, n), k, (k + 1) % around], -1),
            np.stack([np.full(around, n + 1), last + (k + 1) % around, last + k], -1),
        ]
    )
    # Near the knuckles each vertex follows the nearest metacarpal, so palm cupping bends it.
    tv = np.clip(verts[:, 1] / y_end, 0, 1) ** 2
    near = np.exp(-np.abs(verts[:, :1] - mcps[None, :, 0]) / 8.0)
    near /= near.sum(1, keepdims=True)
    w = np.zeros((len(verts), NUM_FRAMES))
    w[:, ROOT_FRAME] = 1 - tv
    for i, b in enumerate((7, 11, 15, 19)):
        w[:, b] = tv * near[:, i]
    builder.add(verts, faces, w, 0)


def procedural_surface(template: HandTemplate | None = None, side: int = 0) -> Surface:
    """Tapered capsules around the bones, a palm slab and a forearm around ``template``."""
    tpl = template if template is not None else canonical_template(side)
    j = tpl.joints
    scale = tpl.hand_length / 178.0
    radii = JOINT_RADII_MM * scale
    b = _MeshBuilder()
    _palm_slab(b, j, scale)
    for bone, (c, p) in enumerate(HAND_BONES):
        if p == WRIST and c != 3:
            continue  # index..pinky metacarpals are inside the palm slab
        end = j[c]
        if c % 4 == 0:  # fingertip: the joint is the end of the finger, not a sphere centre
            d = j[c] - j[p]
            end = j[c] - d / np.linalg.norm(d) * radii[c] * 0.8
        rp = radii[p] if p != WRIST else radii[c] * 1.1
        v, f = _capsule(j[p], end, rp, radii[c])
        w = np.zeros((len(v), NUM_FRAMES))
        w[:, bone if p != WRIST else ROOT_FRAME] = 1.0
        b.add(v, f, w, HAND_BONE_PARTS[bone])
    hand_count = b.count
    forearm_dist = _forearm(b, scale)
    verts, faces, weights, parts = b.arrays()
    forearm = np.concatenate([np.zeros(hand_count), forearm_dist])
    return _finish(tpl, verts, faces, weights, parts, forearm)


# ----------------------------------------------------------------------------- rigged mesh
def _webxr_frames() -> dict[str, tuple[int, int]]:
    """WebXR joint name -> (our skinning frame, our joint index or -1)."""
    table: dict[str, tuple[int, int]] = {"wrist": (ROOT_FRAME, WRIST)}
    table["thumb-metacarpal"] = (2, 3)  # bone CMC -> MCP, joint CMC
    table["thumb-phalanx-proximal"] = (1, 2)
    table["thumb-phalanx-distal"] = (0, 1)
    table["thumb-tip"] = (0, 0)
    for f, name in enumerate(("index", "middle", "ring", "pinky"), start=1):
        table[f"{name}-finger-metacarpal"] = (4 * f + 3, -1)
        table[f"{name}-finger-phalanx-proximal"] = (4 * f + 2, 4 * f + 3)
        table[f"{name}-finger-phalanx-intermediate"] = (4 * f + 1, 4 * f + 2)
        table[f"{name}-finger-phalanx-distal"] = (4 * f, 4 * f + 1)
        table[f"{name}-finger-tip"] = (4 * f, 4 * f)
    return table


def mesh_surface(mesh: SkinnedMesh, side: int) -> Surface:
    """Surface from a WebXR-style rigged hand (25 named joints, metres) of hand ``side``."""
    table = _webxr_frames()
    missing = sorted(set(table) - set(mesh.joint_names))
    if missing:
        raise ValueError(f"rigged hand lacks the WebXR joints {missing}")
    joints = np.zeros((NUM_HAND_JOINTS, 3))
    frame_of = np.zeros(len(mesh.joint_names), dtype=np.int64)
    for k, name in enumerate(mesh.joint_names):
        frame, joint = table.get(name, (ROOT_FRAME, -1))
        frame_of[k] = frame
        if joint >= 0:
            joints[joint] = mesh.joint_positions[k] * 1000.0
    canon = canonical_frame(joints, side)
    joints_c = joints @ canon[:3, :3].T + canon[:3, 3]
    verts = (mesh.vertices * 1000.0) @ canon[:3, :3].T + canon[:3, 3]
    w = np.zeros((len(verts), NUM_FRAMES))
    np.add.at(w, (np.arange(len(verts))[:, None].repeat(4, 1), frame_of[mesh.joints]), mesh.weights)
    # WebXR's "tip" sits inside the finger pad, InterHand2.6M's fingertip is the end of the finger:
    # move each tip out along the distal bone to just inside the farthest surface point.
    dominant = w.argmax(1)
    for tip in (0, 4, 8, 12, 16):
        d = joints_c[tip] - joints_c[tip + 1]
        d /= np.linalg.norm(d)
        reach = ((verts[dominant == tip] - joints_c[tip]) @ d).max()
        joints_c[tip] += d * max(reach - 1.5, 0.0)
    tpl = HandTemplate.from_joints(joints_c, side)
    # Part of each face: the part of the bone carrying most of its vertices' weight.
    frame_part = np.zeros(NUM_FRAMES, dtype=np.int64)
    frame_part[:NUM_BONES] = HAND_BONE_PARTS
    face_w = w[mesh.faces].sum(1)
    parts = frame_part[face_w.argmax(1)]
    b = _MeshBuilder()
    b.add(verts, mesh.faces, w, 0)
    b.parts[0] = parts
    forearm_dist = _forearm(b, tpl.hand_length / 178.0)
    v, f, wt, pt = b.arrays()
    forearm = np.concatenate([np.zeros(len(verts)), forearm_dist])
    return _finish(tpl, v, f, wt, pt, forearm)


def _vertex_normals(verts: np.ndarray, faces: np.ndarray, weld: np.ndarray) -> np.ndarray:
    fn = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    acc = np.zeros_like(verts)
    for k in range(3):
        np.add.at(acc, weld[faces[:, k]], fn)
    n = acc[weld]
    normals: np.ndarray = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return normals


def _finish(
    tpl: HandTemplate,
    verts: np.ndarray,
    faces: np.ndarray,
    weights: np.ndarray,
    parts: np.ndarray,
    forearm: np.ndarray,
) -> Surface:
    _, first, inverse = np.unique(
        np.round(verts, 3), axis=0, return_index=True, return_inverse=True
    )
    weld = first[inverse.reshape(-1)]
    normals = _vertex_normals(verts, faces, weld)
    dominant = weights.argmax(1)
    j = tpl.joints
    palm_dir = np.tile(np.array([0.0, 0.0, 1.0]), (len(verts), 1))
    nail = np.zeros(len(verts))
    for bone, (c, p) in enumerate(HAND_BONES):
        sel = dominant == bone
        if not sel.any():
            continue
        d = j[c] - j[p]
        length = np.linalg.norm(d)
        d /= length
        towards_palm = np.cross(tpl.flex_axis[bone], d)
        palm_dir[sel] = towards_palm
        if c % 4 == 0:  # distal segment: the nail covers the back of its outer half
            rel = verts[sel] - j[p]
            along = rel @ d / length
            radial = rel - np.outer(rel @ d, d)
            r = np.maximum(np.linalg.norm(radial, axis=1), 1e-6)
            back = -(radial @ towards_palm) / r
            nail[sel] = np.clip((along - 0.35) / 0.15, 0, 1) * np.clip((back - 0.35) / 0.2, 0, 1)
    palmar = np.clip((normals * palm_dir).sum(1), 0, 1) * (forearm == 0)
    weights = weights / weights.sum(1, keepdims=True)
    return Surface(tpl, verts, faces, weights, parts, nail, palmar, forearm, weld)


def load_surfaces(mesh: str | Path | None = None) -> tuple[Surface, Surface]:
    """(right, left) surfaces. ``mesh`` None: procedural. A folder: its right.glb and left.glb.
    A .glb file: that hand (a left one if its name contains "left"), and its sibling
    right.glb/left.glb for the other side when present, else its mirror image."""
    if mesh is None:
        right = procedural_surface(side=0)
        return right, right.mirrored()
    path = Path(mesh)
    if path.is_dir():
        files = {0: path / "right.glb", 1: path / "left.glb"}
        if not files[0].is_file() and not files[1].is_file():
            raise FileNotFoundError(f"no right.glb or left.glb in {path}")
    elif path.is_file():
        side = 1 if "left" in path.name.lower() else 0
        files = {side: path, 1 - side: path.with_name(("left", "right")[side] + ".glb")}
    else:
        raise FileNotFoundError(f"mesh not found: {path}")
    surfaces: dict[int, Surface] = {}
    for side, f in files.items():
        if f.is_file():
            surfaces[side] = mesh_surface(read_glb(f), side)
            logger.info("loaded %s hand mesh %s", ("right", "left")[side], f)
    if 0 not in surfaces:
        surfaces[0] = surfaces[1].mirrored()
    if 1 not in surfaces:
        surfaces[1] = surfaces[0].mirrored()
    return surfaces[0], surfaces[1]

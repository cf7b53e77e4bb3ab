"""The synthetic two-hand data engine: scenes -> skinned meshes -> rendered, labelled images.

:class:`SynthEngine` renders batches on any torch device; :class:`SynthStream` is the infinite
iterator the trainer consumes. Each batch is a dict of tensors on the engine's device (B samples,
S = image size, 256 by default; joints in InterHand2.6M order, right 0-20, left 21-41):

=================  ==============  =====================================================
key                shape / dtype    meaning
=================  ==============  =====================================================
image              (B,3,S,S) f32   RGB in [0, 1]; the image *is* the 1.25x hand crop
joints_uvd         (B,42,3) f32    u, v crop pixels (pixel centres at integers, OpenCV),
                                   depth in mm relative to that hand's own wrist,
                                   positive away from the camera; 0 for an absent hand
joints_cam         (B,42,3) f32    camera frame mm (x right, y down, z forward); 0 if absent
joint_valid        (B,42) f32      1 for the joints of a present hand
visibility         (B,42) f32      1 where the joint is seen: the first surface hit along
                                   its pixel's ray lies at most the local finger radius + 6
                                   mm in front of it (self- and inter-hand occlusion)
hand_valid         (B,2) f32       right, left present
seg                (B,S,S) int64   33 part classes, joints.SEG_CLASS_NAMES (0 background,
                                   also forearm and sleeve; 1-16 right, 17-32 left)
intrinsics         (B,4) f32       fx, fy, cx, cy in image pixels
rel_root_depth     (B,) f32        left wrist z - right wrist z (mm), 0 unless both present
hand_type          (B,) int64      0 right, 1 left, 2 interacting (interhand.HAND_TYPES)
interaction        (B,) int64      index into scene.INTERACTIONS, -1 for a single hand
depth              (B,S,S) f32     z-buffer in mm (inf on background)
=================  ==============  =====================================================
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from dfl_infer.joints import NUM_HAND_JOINTS, WRIST, seg_class

from . import appearance as look
from .render import interpolate, rasterize, splat
from .scene import Scene, SceneConfig, sample_scene
from .skeleton import JOINT_RADII_MM, NUM_FRAMES
from .surface import Surface, load_surfaces

logger = logging.getLogger(__name__)

VISIBILITY_MARGIN_MM = 6.0


def project(
    points: torch.Tensor, intrinsics: torch.Tensor, z: torch.Tensor | None = None
) -> torch.Tensor:
    """Camera-frame points (B, ..., 3) mm -> pixels (B, ..., 2), each sample with its own
    intrinsics (B, 4) fx, fy, cx, cy; ``z`` (B, ...) divides instead of the points' depth (the
    renderer clamps it). The batched torch twin of ``lift.Intrinsics.project``, which is one
    numpy camera; the product comes before the division here, as the engine always computed it,
    so that rendered datasets stay bit for bit the same."""
    k = intrinsics.view(intrinsics.shape[0], *([1] * (points.dim() - 2)), 4)
    fx, fy, cx, cy = k.unbind(-1)
    depth = points[..., 2] if z is None else z
    return torch.stack([fx * points[..., 0] / depth + cx, fy * points[..., 1] / depth + cy], -1)


@dataclass(frozen=True)
class EngineConfig:
    """Rendering choices of :class:`SynthEngine`."""

    scene: SceneConfig = field(default_factory=SceneConfig)
    renderer: str = "raster"  # "raster" (default) or "splat" (measured alternative, has holes)
    photo_prob: float = 0.6  # share of photo backgrounds when a photo folder is given
    max_photo_patches: int = 400  # photo patches cut at start-up (memory: 196 KB each)
    effects: bool = True  # blur, noise, colour jitter, JPEG


class SynthEngine:
    """Renders labelled synthetic hand images on ``device``.

    ``mesh``: None for the procedural surface, else a WebXR-style rigged .glb (or a folder holding
    right.glb and left.glb); ``backgrounds``: an optional photo folder (see ``appearance.py``).
    """

    def __init__(
        self,
        device: str | torch.device = "cpu",
        mesh: str | Path | None = None,
        backgrounds: str | Path | None = None,
        config: EngineConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.device = torch.device(device)
        self.config = config or EngineConfig()
        if self.config.renderer not in ("raster", "splat"):
            raise ValueError(f"renderer must be 'raster' or 'splat', got {self.config.renderer!r}")
        right, left = load_surfaces(mesh)
        self.templates = (right.template, left.template)
        self._build(right, left)
        self.pool = None
        if backgrounds is not None:
            self.pool = look.PhotoPool.from_folder(
                backgrounds, self.config.scene.image_size, self.config.max_photo_patches, seed
            ).to(self.device)

    def _build(self, right: Surface, left: Surface) -> None:
        dev = self.device

        def t(a: object, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.as_tensor(a, dtype=dtype).to(dev)

        nv = len(right.vertices)
        self.rest = torch.cat([t(right.vertices), t(left.vertices)])
        self.faces = torch.cat([t(right.faces, torch.long), t(left.faces, torch.long) + nv])
        w = torch.zeros(len(self.rest), 2 * NUM_FRAMES, device=dev)
        w[:nv, :NUM_FRAMES] = t(right.weights)
        w[nv:, NUM_FRAMES:] = t(left.weights)
        self.weights = w
        self.weld = torch.cat([t(right.weld, torch.long), t(left.weld, torch.long) + nv])
        self.face_hand = torch.cat(
            [
                torch.zeros(len(right.faces), dtype=torch.long),
                torch.ones(len(left.faces), dtype=torch.long),
            ]
        ).to(dev)
        classes = []
        for hand, s in enumerate((right, left)):
            part = torch.as_tensor(s.face_part)
            classes.append(torch.where(part >= 0, seg_class(hand, 0) + part, 0))
        self.face_class = torch.cat(classes).to(dev)
        self.nail = torch.cat([t(right.nail), t(left.nail)])
        self.palmar = torch.cat([t(right.palmar), t(left.palmar)])
        self.forearm = torch.cat([t(right.forearm), t(left.forearm)])
        self.radii = t(JOINT_RADII_MM)

    # ------------------------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Render ``n`` samples with ``generator`` (on the engine's device); keys: module doc."""
        scene = sample_scene(generator, n, self.templates, self.device, self.config.scene)
        return self.render(scene, generator)

    def render(self, scene: Scene, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Render the given scenes (appearance drawn from ``generator``); keys: module doc. The
        clip maker (``clip.py``) poses its own scenes and renders them here."""
        g, dev = generator, self.device
        cfg = self.config
        size = cfg.scene.image_size
        n = scene.joints.shape[0]
        # Linear blend skinning: blend the 44 affine frames per vertex, then apply.
        frames = scene.frames.reshape(n, 2 * NUM_FRAMES, 12)
        blend = (self.weights @ frames).view(n, -1, 3, 4)
        verts = (blend[..., :3] @ self.rest[None, :, :, None])[..., 0] + blend[..., 3]
        normals = self._normals(verts)
        uv = project(verts, scene.intrinsics, z=verts[..., 2].clamp_min(1e-3))
        screen = torch.cat([uv, verts[..., 2:3]], -1)
        face_mask = scene.present[:, self.face_hand]
        draw = rasterize if cfg.renderer == "raster" else splat
        frag = draw(screen, self.faces, (size, size), face_mask, cull_back=True)
        # Appearance: one person, so one skin for both hands.
        skin = look.skin_tones(g, n, dev)
        use_photo = torch.zeros(n, dtype=torch.bool, device=dev)
        if self.pool is not None:
            use_photo = torch.rand(n, generator=g, device=dev) < cfg.photo_prob
            if len(self.pool.skin):
                pick = torch.randint(0, len(self.pool.skin), (n,), generator=g, device=dev)
                real = self.pool.skin[pick].float().mean((2, 3)) / 255.0
                take = (torch.rand(n, generator=g, device=dev) < 0.5)[:, None]
                skin = torch.where(take & use_photo[:, None], real.clamp(0.05, 1), skin)
        albedo = look.vertex_albedo(g, skin, self.rest, self.nail, self.palmar, self.forearm)
        colour = look.shade(g, albedo, normals, verts)
        fg = interpolate(frag, self.faces, colour).permute(0, 3, 1, 2)
        fg = fg * self._skin_detail(g, n, size, use_photo)
        bg = look.procedural_backgrounds(g, n, size, dev)
        if self.pool is not None:
            photo = look.photo_backgrounds(g, self.pool, n, size)
            bg = torch.where(use_photo[:, None, None, None], photo, bg)
        covered = (frag.face >= 0)[:, None]
        image = torch.where(covered, fg, bg).clamp(0, 1)
        if cfg.effects:
            image = look.camera_effects(g, image)
        face_class = self.face_class.index_select(0, frag.face.clamp(min=0).view(-1))
        seg = torch.where(frag.face >= 0, face_class.view_as(frag.face), 0)
        labels = self._labels(scene, frag.depth, size)
        return {"image": image, "seg": seg, "depth": frag.depth, **labels}

    def _normals(self, verts: torch.Tensor) -> torch.Tensor:
        f = self.faces
        a, b, c = verts[:, f[:, 0]], verts[:, f[:, 1]], verts[:, f[:, 2]]
        fn = torch.cross(b - a, c - a, dim=-1)
        acc = torch.zeros_like(verts)
        for k in range(3):
            acc.index_add_(1, self.weld[f[:, k]], fn)
        n = acc[:, self.weld]
        normals: torch.Tensor = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        return normals

    def _skin_detail(
        self, g: torch.Generator, n: int, size: int, use_photo: torch.Tensor
    ) -> torch.Tensor:
        """(n, 1, S, S) multiplicative fine texture: real skin patches' high frequencies when
        photos are given, else procedural mottling."""
        dev = self.device
        fine = torch.rand((n, 1, size // 4, size // 4), generator=g, device=dev)
        fine = F.interpolate(fine, size=(size, size), mode="bilinear", align_corners=False)
        detail = 1 + 0.06 * (fine - 0.5)
        if self.pool is not None and len(self.pool.skin):
            pick = torch.randint(0, len(self.pool.skin), (n,), generator=g, device=dev)
            patch = self.pool.skin[pick].float().mean(1, keepdim=True)
            hp = patch / F.avg_pool2d(patch, 9, 1, 4, count_include_pad=False).clamp_min(1)
            hp = F.interpolate(hp.clamp(0.85, 1.15), scale_factor=2, mode="bilinear")
            reps = -(-size // hp.shape[-1])
            tiled = hp.repeat(1, 1, reps, reps)[..., :size, :size]
            detail = torch.where(use_photo[:, None, None, None], tiled, detail)
        return detail

    def _labels(self, scene: object, depth: torch.Tensor, size: int) -> dict[str, torch.Tensor]:
        from .scene import Scene

        assert isinstance(scene, Scene)
        n = depth.shape[0]
        present = scene.present
        joints = scene.joints  # (n, 2, 21, 3)
        u, v = project(joints, scene.intrinsics).unbind(-1)
        d = joints[..., 2] - joints[..., WRIST : WRIST + 1, 2]
        valid = present[:, :, None].expand(-1, -1, NUM_HAND_JOINTS)
        ui, vi = torch.round(u).long(), torch.round(v).long()
        inside = (ui >= 0) & (ui < size) & (vi >= 0) & (vi < size)
        flat = depth.view(n, -1)
        idx = (vi.clamp(0, size - 1) * size + ui.clamp(0, size - 1)).view(n, -1)
        hit = torch.gather(flat, 1, idx).view_as(u)
        tol = self.radii * scene.size[:, None, None] + VISIBILITY_MARGIN_MM
        visible = inside & valid & (hit >= joints[..., 2] - tol)
        vf = valid.float()
        uvd = torch.stack([u, v, d], -1) * vf[..., None]
        cam = joints * vf[..., None]
        both = present.all(1)
        rel = torch.where(
            both,
            joints[:, 1, WRIST, 2] - joints[:, 0, WRIST, 2],
            torch.zeros(n, device=depth.device),
        )
        return {
            "joints_uvd": uvd.reshape(n, -1, 3),
            "joints_cam": cam.reshape(n, -1, 3),
            "joint_valid": vf.reshape(n, -1),
            "visibility": visible.float().reshape(n, -1),
            "hand_valid": present.float(),
            "intrinsics": scene.intrinsics,
            "rel_root_depth": rel,
            "hand_type": scene.hand_type,
            "interaction": scene.interaction,
        }


class SynthStream:
    """Endless (or ``num_batches``-long) iterator of ready batches for on-the-fly training.

    Same seed and device -> same batches. Keys, shapes and units: the module docstring.
    """

    def __init__(
        self,
        batch_size: int,
        device: str | torch.device = "cpu",
        seed: int = 0,
        mesh: str | Path | None = None,
        backgrounds: str | Path | None = None,
        config: EngineConfig | None = None,
        num_batches: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.seed = seed
        self.num_batches = num_batches
        self.engine = SynthEngine(device, mesh, backgrounds, config, seed)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        g = torch.Generator(device=self.engine.device)
        g.manual_seed(self.seed)
        k = 0
        while self.num_batches is None or k < self.num_batches:
            with torch.no_grad():
                yield self.engine.sample(self.batch_size, g)
            k += 1

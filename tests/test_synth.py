"""Tests of the synthetic two-hand engine (CPU, procedural surface; the real mesh when present)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dfl_infer.joints import NUM_SEG_CLASSES, SEG_CLASS_NAMES
from dfl_infer.training.synth import SynthEngine, SynthStream, read_sample, write_dataset
from dfl_infer.training.synth.engine import VISIBILITY_MARGIN_MM
from dfl_infer.training.synth.glb import read_glb
from dfl_infer.training.synth.render import rasterize
from dfl_infer.training.synth.scene import interpenetration, sample_angles, sample_scene
from dfl_infer.training.synth.skeleton import ANGLE_LIMITS_DEG, JOINT_RADII_MM, bone_angles

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WEBXR = SHARED / "assets" / "hand-mesh" / "webxr-generic-hand"
N = 8


@pytest.fixture(scope="module")
def engine() -> SynthEngine:
    return SynthEngine("cpu")


@pytest.fixture(scope="module")
def batch(engine: SynthEngine) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return engine.sample(N, g)


def test_batch_shapes_and_types(batch: dict[str, torch.Tensor]) -> None:
    assert batch["image"].shape == (N, 3, 256, 256) and batch["image"].dtype == torch.float32
    assert 0 <= batch["image"].min() and batch["image"].max() <= 1
    for key, shape in [
        ("joints_uvd", (N, 42, 3)),
        ("joints_cam", (N, 42, 3)),
        ("joint_valid", (N, 42)),
        ("visibility", (N, 42)),
        ("hand_valid", (N, 2)),
        ("intrinsics", (N, 4)),
        ("rel_root_depth", (N,)),
    ]:
        assert batch[key].shape == shape, key
        assert torch.isfinite(batch[key]).all(), key
    assert batch["seg"].shape == (N, 256, 256) and batch["seg"].dtype == torch.int64
    assert 0 <= batch["seg"].min() and batch["seg"].max() < NUM_SEG_CLASSES == len(SEG_CLASS_NAMES)


def test_projection_matches_uvd(batch: dict[str, torch.Tensor]) -> None:
    cam, uvd, valid = batch["joints_cam"], batch["joints_uvd"], batch["joint_valid"] > 0
    fx, fy, cx, cy = (v[:, None] for v in batch["intrinsics"].unbind(-1))
    u = fx * cam[..., 0] / cam[..., 2].clamp_min(1e-6) + cx
    v = fy * cam[..., 1] / cam[..., 2].clamp_min(1e-6) + cy
    err = torch.stack([u - uvd[..., 0], v - uvd[..., 1]], -1).norm(dim=-1)
    assert err[valid].max() < 0.5
    # Depth is relative to each hand's own wrist; absent hands are all zero.
    for h in range(2):
        sl = slice(21 * h, 21 * h + 21)
        d = cam[:, sl, 2] - cam[:, sl][:, 20:21, 2]
        ok = batch["hand_valid"][:, h] > 0
        assert torch.allclose(uvd[ok, sl, 2], d[ok], atol=1e-3)
        assert (cam[~ok, sl] == 0).all() and (uvd[~ok, sl] == 0).all()
    both = batch["hand_valid"].all(1)
    rel = cam[:, 41, 2] - cam[:, 20, 2]
    assert torch.allclose(batch["rel_root_depth"][both], rel[both], atol=1e-3)
    assert (batch["rel_root_depth"][~both] == 0).all()
    # Joints fill the image like a 1.25x crop: inside it, spanning a good part of it.
    assert uvd[..., :2][valid].min() > -0.5 and uvd[..., :2][valid].max() < 255.5


def test_visibility_agrees_with_depth_buffer(batch: dict[str, torch.Tensor]) -> None:
    cam, uvd, depth = batch["joints_cam"], batch["joints_uvd"], batch["depth"]
    vis = batch["visibility"] > 0
    valid = batch["joint_valid"] > 0
    ui = uvd[..., 0].round().long().clamp(0, 255)
    vi = uvd[..., 1].round().long().clamp(0, 255)
    hit = depth[torch.arange(N)[:, None], vi, ui]
    assert not vis[~valid].any()
    # A visible joint has nothing in front of it beyond the finger's own thickness ...
    tol = float(JOINT_RADII_MM.max()) * 1.2 + VISIBILITY_MARGIN_MM
    assert (hit[vis] >= cam[..., 2][vis] - tol).all()
    # ... and an occluded one has a surface clearly in front.
    occluded = valid & ~vis
    assert (hit[occluded] < cam[..., 2][occluded]).all()
    assert vis[valid].float().mean() > 0.3 and occluded.any()


def test_segmentation_covers_every_valid_hand(batch: dict[str, torch.Tensor]) -> None:
    seg = batch["seg"]
    for i in range(N):
        for h in range(2):
            classes = seg[i][(seg[i] >= 1 + 16 * h) & (seg[i] <= 16 + 16 * h)]
            if batch["hand_valid"][i, h] > 0:
                assert classes.numel() > 50, (i, h)
            else:
                assert classes.numel() == 0, (i, h)


def test_same_seed_same_batch(engine: SynthEngine) -> None:
    a = engine.sample(3, torch.Generator().manual_seed(11))
    b = engine.sample(3, torch.Generator().manual_seed(11))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    c = engine.sample(3, torch.Generator().manual_seed(12))
    assert not torch.equal(a["joints_cam"], c["joints_cam"])


def test_stream_yields_batches() -> None:
    stream = SynthStream(2, "cpu", seed=5, num_batches=2)
    batches = list(stream)
    assert len(batches) == 2 and batches[0]["image"].shape == (2, 3, 256, 256)
    again = next(iter(SynthStream(2, "cpu", seed=5, num_batches=1)))
    assert torch.equal(batches[0]["joints_uvd"], again["joints_uvd"])


def test_anatomical_limits(engine: SynthEngine) -> None:
    g = torch.Generator().manual_seed(0)
    angles = sample_angles(g, 2000, torch.device("cpu"))
    lim = torch.deg2rad(torch.as_tensor(ANGLE_LIMITS_DEG, dtype=torch.float32))
    assert (angles >= lim[..., 0] - 1e-5).all() and (angles <= lim[..., 1] + 1e-5).all()
    # Geometric check on posed joints: PIP/DIP bend at most their flexion limit beyond the rest.
    scene = sample_scene(g, 64, engine.templates, torch.device("cpu"))
    rest = bone_angles(torch.as_tensor(engine.templates[0].joints, dtype=torch.float32)[None])
    bent = bone_angles(scene.joints[:, 0])
    for f in range(1, 5):
        for bone in (4 * f, 4 * f + 1):
            assert (bent[:, bone] <= rest[0, bone] + lim[bone, 0, 1] + 1e-3).all()


def test_no_interpenetration(engine: SynthEngine) -> None:
    g = torch.Generator().manual_seed(1)
    scene = sample_scene(g, 128, engine.templates, torch.device("cpu"))
    d = interpenetration(scene)
    both = scene.present.all(1)
    assert both.sum() > 30
    assert (d[both] >= -2.0).all()
    # Interacting hands are close: most touch (within 1 cm), occluders hover within ~6 cm.
    assert (d[both] < 10.0).float().mean() > 0.5


def test_rasterizer_depth_test() -> None:
    # A far square (two triangles) and a near triangle in front of part of it.
    v = torch.tensor(
        [
            [
                [10, 10, 100],
                [20, 10, 100],
                [20, 20, 100],
                [10, 20, 100],
                [12, 12, 50],
                [18, 12, 50],
                [15, 18, 50],
            ]
        ],
        dtype=torch.float32,
    )
    f = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6]])
    frag = rasterize(v, f, (32, 32))
    assert ((frag.face == 0) | (frag.face == 1)).sum() + (frag.face == 2).sum() == 121
    assert frag.depth[0, 14, 15] == pytest.approx(50.0)
    assert frag.depth[0, 11, 11] == pytest.approx(100.0)
    assert math.isinf(frag.depth[0, 0, 0].item())


def test_written_dataset_loads_back(tmp_path: Path, engine: SynthEngine) -> None:
    counts = write_dataset(engine, tmp_path, 3, "test", seed=7, batch_size=2)
    assert counts == {"images": 3, "annotations": 3}
    ann = tmp_path / "annotations" / "test"
    data = json.loads((ann / "InterHand2.6M_test_data.json").read_text())
    cams = json.loads((ann / "InterHand2.6M_test_camera.json").read_text())
    j3d = json.loads((ann / "InterHand2.6M_test_joint_3d.json").read_text())
    assert len(data["images"]) == len(data["annotations"]) == 3
    assert sum(len(c["campos"]) for c in cams.values()) == 3
    assert sum(len(frames) for frames in j3d.values()) == 3
    a = data["annotations"][0]
    assert len(a["joint_valid"]) == 42 and a["hand_type"] in ("right", "left", "interacting")
    for img in data["images"]:
        assert (tmp_path / "images" / "test" / img["file_name"]).is_file()
    # Labels round-trip through world coordinates and the camera: same numbers as the engine.
    g = torch.Generator().manual_seed(7)
    ref = engine.sample(2, g)
    s = read_sample(tmp_path, "test", 1)
    valid = s["joint_valid"] > 0
    assert np.allclose(s["joints_cam"][valid], ref["joints_cam"][1].numpy()[valid], atol=0.01)
    assert np.allclose(s["joints_uv"][valid], ref["joints_uvd"][1, :, :2].numpy()[valid], atol=0.01)
    assert s["image"].shape == (256, 256, 3) and s["seg"].shape == (256, 256)
    assert np.array_equal(s["seg"], ref["seg"][1].numpy())
    # The test split is fixed by its seed: labels are byte-identical on a second run.
    again = tmp_path / "again"
    write_dataset(engine, again, 3, "test", seed=7, batch_size=2)
    for name in ("data", "camera", "joint_3d"):
        f = f"InterHand2.6M_test_{name}.json"
        assert (ann / f).read_bytes() == (again / "annotations" / "test" / f).read_bytes()


def test_cli_registers_synth(tmp_path: Path) -> None:
    from dfl_infer.training.cli import main

    assert main(["synth", "--out", str(tmp_path), "--n", "1", "--split", "val"]) == 0
    assert (tmp_path / "annotations" / "val" / "InterHand2.6M_val_data.json").is_file()


@pytest.mark.skipif(not WEBXR.is_dir(), reason=f"rigged hand mesh not available at {WEBXR}")
def test_webxr_mesh() -> None:
    mesh = read_glb(WEBXR / "right.glb")
    assert mesh.vertices.shape == (1360, 3) and len(mesh.joint_names) == 25
    left = read_glb(WEBXR / "left.glb")
    assert left.joint_names[0] != mesh.joint_names[0]  # reversed order, matched by name
    engine = SynthEngine("cpu", WEBXR)
    b = engine.sample(2, torch.Generator().manual_seed(2))
    for i in range(2):
        for h in range(2):
            hand = (b["seg"][i] >= 1 + 16 * h) & (b["seg"][i] <= 16 + 16 * h)
            assert bool(hand.any()) == bool(b["hand_valid"][i, h] > 0)

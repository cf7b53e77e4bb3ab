"""The InterHand2.6M layout module: what AnnotationWriter writes, read_annotations reads back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dfl_infer.training import interhand


def test_writer_reader_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    camera = interhand.Camera(rng.uniform(-500, 500, 3), q, np.array([500.0, 510.0]), np.ones(2))
    cam_xyz = rng.uniform([-50, -50, 400], [50, 50, 600], size=(42, 3))
    writer = interhand.AnnotationWriter()
    for k, hand_type in enumerate(("right", "interacting")):
        idx = writer.add(
            file_name=f"cap/img{k}.jpg",
            width=320,
            height=240,
            capture=3,
            camera_name=f"cam{k}",
            camera={f: getattr(camera, f).tolist() for f in interhand.CAMERA_FIELDS},
            world_coord=camera.to_world(cam_xyz).tolist(),
            joint_valid=[1] * 42,
            hand_type=hand_type,
            hand_type_valid=1,
            bbox=[0, 0, 10, 10],
            extra={"depth_confidence": 0.5},
        )
        assert idx == k
    writer.write(tmp_path, "val", info={"source": "test"})
    data = json.loads(interhand.annotation_path(tmp_path, "val", "data").read_text())
    assert data["info"] == {"source": "test"} and len(data["images"]) == 2
    records = interhand.read_annotations(tmp_path, "val")
    assert [r.annotation["hand_type"] for r in records] == ["right", "interacting"]
    assert records[1].annotation["depth_confidence"] == 0.5
    assert records[0].file_name == "cap/img0.jpg"
    np.testing.assert_allclose(records[0].joints_cam(), cam_xyz, atol=1e-9)
    assert records[0].camera.intrinsics.fy == 510.0
    assert interhand.mask_path(tmp_path, "val", "cap/img0.jpg") == (
        tmp_path / "masks" / "val" / "cap" / "img0.png"
    )
    with pytest.raises(ValueError, match="hand_type"):
        writer.add(**{**_minimal(), "hand_type": "both"})
    with pytest.raises(NotADirectoryError, match="InterHand2.6M"):
        interhand.read_annotations(tmp_path, "train")


def _minimal() -> dict:
    return dict(
        file_name="x.jpg",
        width=1,
        height=1,
        capture=0,
        camera_name="0",
        camera={f: [] for f in interhand.CAMERA_FIELDS},
        world_coord=[],
        joint_valid=[0] * 42,
        hand_type="right",
        hand_type_valid=1,
        bbox=[],
    )

"""Write synthetic samples to disk in InterHand2.6M's layout (``training.interhand`` owns it).

Files under ``out``::

    images/{split}/Capture{c}/synth_{hand_type}_{kind}/cam{k}/image{frame}.jpg    256x256, q95
    masks/{split}/<the same path>.png            part labels (uint8 ``joints.SEG_CLASS_NAMES``)
    annotations/{split}/InterHand2.6M_{split}_{data,camera,joint_3d}.json

Every image has its own random camera pose (camera frame = camrot . (world - campos), as in
InterHand2.6M), one annotation, ``seq_name`` ``synth_{hand_type}_{interaction}`` and a ``bbox``
tight around its valid joints.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from dfl_infer.training.interhand import (
    HAND_TYPES,
    AnnotationWriter,
    Camera,
    image_path,
    mask_path,
    read_annotations,
)

from .engine import SynthEngine
from .scene import INTERACTIONS, random_rotation

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
FRAMES_PER_CAPTURE = 1000
# Default seeds: the test split is fixed by its seed; train uses another stream.
DEFAULT_SEEDS = {"train": 0, "val": 1, "test": 20240}


def _r(x: ArrayLike, nd: int = 4) -> list[Any]:
    """Rounded nested lists: stable, compact JSON."""
    rounded: list[Any] = np.round(np.asarray(x, dtype=np.float64), nd).tolist()
    return rounded


def write_dataset(
    engine: SynthEngine,
    out: str | Path,
    n: int,
    split: str = "train",
    seed: int | None = None,
    batch_size: int = 32,
) -> dict[str, int]:
    """Render ``n`` samples with ``engine`` into ``out`` (layout: module docstring).

    Same engine settings, device and seed -> byte-identical annotations. Returns counts.
    """
    import cv2

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    seed = DEFAULT_SEEDS[split] if seed is None else seed
    out = Path(out)
    g = torch.Generator(device=engine.device)
    g.manual_seed(seed)
    writer = AnnotationWriter()
    done = 0
    while done < n:
        b = min(batch_size, n - done)
        with torch.no_grad():
            batch = engine.sample(b, g)
            # A random camera pose per image exercises camrot . (world - campos).
            camrot = random_rotation(g, b, engine.device).double().cpu().numpy()
            pos = torch.rand((b, 3), generator=g, device=engine.device) * 4000 - 2000
            campos = pos.double().cpu().numpy()
        img = (batch["image"].permute(0, 2, 3, 1).clamp(0, 1) * 255 + 0.5).byte().cpu().numpy()
        seg = batch["seg"].to(torch.uint8).cpu().numpy()
        cam = batch["joints_cam"].double().cpu().numpy()
        valid = batch["joint_valid"].cpu().numpy().astype(int)
        uvd = batch["joints_uvd"].double().cpu().numpy()
        intr = batch["intrinsics"].double().cpu().numpy()
        htype = batch["hand_type"].cpu().numpy()
        inter = batch["interaction"].cpu().numpy()
        for i in range(b):
            idx = done + i
            capture, cam_name = idx // FRAMES_PER_CAPTURE, str(400000 + idx)
            hand_type = HAND_TYPES[int(htype[i])]
            kind = INTERACTIONS[int(inter[i])] if inter[i] >= 0 else "single"
            seq = f"synth_{hand_type}_{kind}"
            file_name = f"Capture{capture}/{seq}/cam{cam_name}/image{idx:06d}.jpg"
            for path, data in (
                (image_path(out, split, file_name), img[i][..., ::-1]),
                (mask_path(out, split, file_name), seg[i]),
            ):
                path.parent.mkdir(parents=True, exist_ok=True)
                params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix == ".jpg" else []
                if not cv2.imwrite(str(path), np.ascontiguousarray(data), params):
                    raise OSError(f"could not write {path}")
            camera = Camera(campos[i], camrot[i], intr[i, :2], intr[i, 2:])
            world = camera.to_world(cam[i]) * valid[i][:, None]
            vis_uv = uvd[i][valid[i] > 0, :2]
            x0, y0 = vis_uv.min(0)
            x1, y1 = vis_uv.max(0)
            writer.add(
                file_name=file_name,
                width=img.shape[2],
                height=img.shape[1],
                capture=capture,
                camera_name=cam_name,
                camera={
                    "campos": _r(camera.campos),
                    "camrot": _r(camera.camrot, 8),
                    "focal": _r(camera.focal),
                    "princpt": _r(camera.princpt),
                },
                world_coord=_r(world),
                joint_valid=[int(v) for v in valid[i]],
                hand_type=hand_type,
                hand_type_valid=1,
                bbox=_r([x0, y0, x1 - x0, y1 - y0], 2),
                seq_name=seq,
            )
        done += b
        logger.info("%s: %d / %d images", split, done, n)
    writer.write(out, split)
    return {"images": len(writer.images), "annotations": len(writer.annotations)}


def read_sample(root: str | Path, split: str, index: int) -> dict[str, np.ndarray]:
    """Read one written sample back: image (H, W, 3) uint8 RGB, seg (H, W) uint8, joints_cam
    (42, 3) mm (from world_coord and the camera), joints_uv (42, 2) px, joint_valid (42,)."""
    import cv2

    # One annotation per image in what write_dataset writes: annotation i is image i.
    record = read_annotations(root, split)[index]
    cam = record.joints_cam()
    z = np.maximum(cam[:, 2], 1e-9)
    uv = record.camera.intrinsics.project(np.column_stack([cam[:, :2], z]))
    image_file = image_path(root, split, record.file_name)
    mask_file = mask_path(root, split, record.file_name)
    bgr = cv2.imread(str(image_file))
    seg = cv2.imread(str(mask_file), cv2.IMREAD_UNCHANGED)
    if bgr is None or seg is None:
        raise FileNotFoundError(f"cannot read {image_file if bgr is None else mask_file}")
    image = bgr[..., ::-1]
    return {
        "image": image,
        "seg": seg,
        "joints_cam": cam,
        "joints_uv": uv,
        "joint_valid": np.array(record.joint_3d["joint_valid"]),
    }

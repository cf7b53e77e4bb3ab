"""Write synthetic samples to disk in InterHand2.6M's official layout.

Layout under ``out``::

    images/{split}/Capture{c}/synth_{hand_type}/cam{k}/image{frame}.jpg    256x256 RGB, JPEG q95
    masks/{split}/Capture{c}/synth_{hand_type}/cam{k}/image{frame}.png     part labels (extension)
    annotations/{split}/InterHand2.6M_{split}_data.json
    annotations/{split}/InterHand2.6M_{split}_camera.json
    annotations/{split}/InterHand2.6M_{split}_joint_3d.json

The JSON files follow InterHand2.6M: ``data`` is COCO-style (images with capture, camera,
frame_idx, seq_name; annotations with bbox [x, y, w, h] of the joints, joint_valid as 42 lists of
[0/1], hand_type "right"/"left"/"interacting", hand_type_valid); ``camera`` maps capture -> campos
(mm), camrot (3x3), focal [fx, fy], princpt [cx, cy] per camera; ``joint_3d`` maps capture ->
frame_idx -> world_coord (42x3 mm), joint_valid (42), hand_type, hand_type_valid. Every image has
its own random camera pose and camera frame = camrot . (world - campos), as in InterHand2.6M.
The *extension*: ``masks/`` holds a PNG per image (uint8, class ids of joints.SEG_CLASS_NAMES,
0 = background) at the image's path with ``images`` -> ``masks`` and ``.jpg`` -> ``.png``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from dfl_infer.lift import Intrinsics

from .engine import SynthEngine
from .scene import HAND_TYPES, INTERACTIONS, random_rotation

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
FRAMES_PER_CAPTURE = 1000
# Default seeds: the test split is fixed by its seed; train uses another stream.
DEFAULT_SEEDS = {"train": 0, "val": 1, "test": 20240}


def _r(x: np.ndarray, nd: int = 4) -> list:
    """Rounded nested lists: stable, compact JSON."""
    return np.round(np.asarray(x, dtype=np.float64), nd).tolist()


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
    ann_dir = out / "annotations" / split
    ann_dir.mkdir(parents=True, exist_ok=True)
    g = torch.Generator(device=engine.device)
    g.manual_seed(seed)
    images, annotations = [], []
    cameras: dict[str, dict[str, dict[str, list]]] = {}
    joint_3d: dict[str, dict[str, dict]] = {}
    done = 0
    while done < n:
        b = min(batch_size, n - done)
        with torch.no_grad():
            batch = engine.sample(b, g)
            # A random camera pose per image exercises camrot . (world - campos).
            camrot = random_rotation(g, b, engine.device).double().cpu().numpy()
            campos = torch.rand((b, 3), generator=g, device=engine.device) * 4000 - 2000
            campos = campos.double().cpu().numpy()
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
            capture, cam_name = str(idx // FRAMES_PER_CAPTURE), str(400000 + idx)
            hand_type = HAND_TYPES[int(htype[i])]
            kind = INTERACTIONS[int(inter[i])] if inter[i] >= 0 else "single"
            seq = f"synth_{hand_type}_{kind}"
            rel = f"Capture{capture}/{seq}/cam{cam_name}/image{idx:06d}"
            for root, ext, data in (
                ("images", ".jpg", img[i][..., ::-1]),
                ("masks", ".png", seg[i]),
            ):
                path = out / root / split / (rel + ext)
                path.parent.mkdir(parents=True, exist_ok=True)
                params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == ".jpg" else []
                if not cv2.imwrite(str(path), np.ascontiguousarray(data), params):
                    raise OSError(f"could not write {path}")
            world = cam[i] @ camrot[i] + campos[i]  # camrot^T . cam + campos, row vectors
            world = world * valid[i][:, None]
            vis_uv = uvd[i][valid[i] > 0, :2]
            x0, y0 = vis_uv.min(0)
            x1, y1 = vis_uv.max(0)
            images.append(
                {
                    "id": idx,
                    "file_name": rel + ".jpg",
                    "width": img.shape[2],
                    "height": img.shape[1],
                    "capture": int(capture),
                    "camera": cam_name,
                    "frame_idx": idx,
                    "seq_name": seq,
                }
            )
            annotations.append(
                {
                    "id": idx,
                    "image_id": idx,
                    "bbox": _r([x0, y0, x1 - x0, y1 - y0], 2),
                    "joint_valid": [[int(v)] for v in valid[i]],
                    "hand_type": hand_type,
                    "hand_type_valid": 1,
                }
            )
            cams = cameras.setdefault(
                capture, {"campos": {}, "camrot": {}, "focal": {}, "princpt": {}}
            )
            cams["campos"][cam_name] = _r(campos[i])
            cams["camrot"][cam_name] = _r(camrot[i], 8)
            cams["focal"][cam_name] = _r(intr[i, :2])
            cams["princpt"][cam_name] = _r(intr[i, 2:])
            joint_3d.setdefault(capture, {})[str(idx)] = {
                "world_coord": _r(world),
                "joint_valid": [int(v) for v in valid[i]],
                "hand_type": hand_type,
                "hand_type_valid": 1,
            }
        done += b
        logger.info("%s: %d / %d images", split, done, n)
    files = {
        "data": {"images": images, "annotations": annotations},
        "camera": cameras,
        "joint_3d": joint_3d,
    }
    for name, content in files.items():
        with open(ann_dir / f"InterHand2.6M_{split}_{name}.json", "w") as fh:
            json.dump(content, fh, separators=(",", ":"))
    return {"images": len(images), "annotations": len(annotations)}


def read_sample(root: str | Path, split: str, index: int) -> dict[str, np.ndarray]:
    """Read one written sample back: image (H, W, 3) uint8 RGB, seg (H, W) uint8, joints_cam
    (42, 3) mm (from world_coord and the camera), joints_uv (42, 2) px, joint_valid (42,)."""
    import cv2

    root = Path(root)
    ann = root / "annotations" / split

    def load(name: str) -> dict:
        with open(ann / f"InterHand2.6M_{split}_{name}.json") as fh:
            return json.load(fh)

    data, cams, j3d = load("data"), load("camera"), load("joint_3d")
    info = data["images"][index]
    c, k = str(info["capture"]), info["camera"]
    entry = j3d[c][str(info["frame_idx"])]
    world = np.array(entry["world_coord"])
    rot, pos = np.array(cams[c]["camrot"][k]), np.array(cams[c]["campos"][k])
    cam = (rot @ (world - pos).T).T
    intr = Intrinsics.from_array([*cams[c]["focal"][k], *cams[c]["princpt"][k]])
    uv = intr.project(np.column_stack([cam[:, :2], np.maximum(cam[:, 2], 1e-9)]))
    image = cv2.imread(str(root / "images" / split / info["file_name"]))[..., ::-1]
    mask_path = root / "masks" / split / info["file_name"].replace(".jpg", ".png")
    seg = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    return {
        "image": image,
        "seg": seg,
        "joints_cam": cam,
        "joints_uv": uv,
        "joint_valid": np.array(entry["joint_valid"]),
    }

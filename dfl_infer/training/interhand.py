"""InterHand2.6M's on-disk layout, the one format every dataset of this project is stored in:
where the files are, the JSON fields of the three annotation files, and the camera convention.

The InterHand loader (``training.data``) and the synthetic reader read through
:func:`read_annotations`; ``dfl-train synth`` and ``dfl-train pseudolabel`` write through
:class:`AnnotationWriter`; the evaluator reads through the loader. Layout::

    ROOT/images/{split}/<file_name>
    ROOT/annotations/{split}/InterHand2.6M_{split}_data.json       COCO-style images + annotations
    ROOT/annotations/{split}/InterHand2.6M_{split}_camera.json     {capture: {campos, camrot,
                                                                    focal, princpt: {camera: ..}}}
    ROOT/annotations/{split}/InterHand2.6M_{split}_joint_3d.json   {capture: {frame_idx: {
                                                                    world_coord (42x3 mm),
                                                                    joint_valid (42), hand_type,
                                                                    hand_type_valid}}}
    ROOT/masks/{split}/<file_name with .png>                       optional part segmentation

``data``: ``images`` entries hold ``id``, ``file_name``, ``width``, ``height``, ``capture``,
``camera``, ``frame_idx`` (and optionally ``seq_name``); ``annotations`` entries hold ``id``,
``image_id``, ``bbox`` [x, y, w, h], ``joint_valid`` (42 lists of one 0/1), ``hand_type`` (one of
:data:`HAND_TYPES`), ``hand_type_valid`` and this project's optional extension fields (see
``training.data``). Joints follow ``joints.JOINT_NAMES`` (right hand 0-20, left 21-41). Camera
coordinates are ``camrot @ (world - campos)`` (mm, OpenCV axes); pixels are
``focal * xy / z + princpt``. JSON object keys are strings in the real files (captures, cameras,
frame indices), so every lookup goes through ``str()``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dfl_infer.joints import NUM_JOINTS
from dfl_infer.lift import Intrinsics

HAND_TYPES: tuple[str, ...] = ("right", "left", "interacting")
ANNOTATION_KINDS: tuple[str, ...] = ("data", "camera", "joint_3d")
CAMERA_FIELDS: tuple[str, ...] = ("campos", "camrot", "focal", "princpt")


def annotation_path(root: str | Path, split: str, kind: str) -> Path:
    """``ROOT/annotations/{split}/InterHand2.6M_{split}_{kind}.json``, ``kind`` in
    :data:`ANNOTATION_KINDS`."""
    if kind not in ANNOTATION_KINDS:
        raise ValueError(f"kind must be one of {ANNOTATION_KINDS}, got {kind!r}")
    return Path(root) / "annotations" / split / f"InterHand2.6M_{split}_{kind}.json"


def images_dir(root: str | Path, split: str) -> Path:
    return Path(root) / "images" / split


def image_path(root: str | Path, split: str, file_name: str) -> Path:
    return images_dir(root, split) / file_name


def mask_path(root: str | Path, split: str, file_name: str) -> Path:
    """The part-segmentation PNG of an image (this project's extension of the layout)."""
    return Path(root) / "masks" / split / Path(file_name).with_suffix(".png")


@dataclass(frozen=True, eq=False)
class Camera:
    """One camera: ``campos`` (3,) mm, ``camrot`` (3, 3), ``focal`` (2,) and ``princpt`` (2,)
    pixels."""

    campos: np.ndarray
    camrot: np.ndarray
    focal: np.ndarray
    princpt: np.ndarray

    @property
    def intrinsics(self) -> Intrinsics:
        return Intrinsics.from_array([*self.focal, *self.princpt])

    def to_camera(self, world: np.ndarray) -> np.ndarray:
        """World points (N, 3) mm -> camera frame (N, 3) mm."""
        cam: np.ndarray = (self.camrot @ (world - self.campos).T).T
        return cam

    def to_world(self, cam: np.ndarray) -> np.ndarray:
        """Camera-frame points (N, 3) mm -> world (N, 3) mm (camrot^T cam + campos)."""
        world: np.ndarray = cam @ self.camrot + self.campos
        return world


@dataclass(frozen=True, eq=False)
class Record:
    """One annotation with what it refers to: its ``image`` entry, its ``camera`` and its
    ``joint_3d`` entry (the raw JSON dicts, for the optional fields)."""

    annotation: dict[str, Any]
    image: dict[str, Any]
    camera: Camera
    joint_3d: dict[str, Any]

    @property
    def file_name(self) -> str:
        return str(self.image["file_name"])

    def world_coord(self) -> np.ndarray:
        """(42, 3) mm."""
        return np.asarray(self.joint_3d["world_coord"], dtype=np.float64).reshape(NUM_JOINTS, 3)

    def joints_cam(self) -> np.ndarray:
        """(42, 3) mm in the camera frame."""
        return self.camera.to_camera(self.world_coord())


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation file not found: {path}") from None


def read_annotations(root: str | Path, split: str) -> list[Record]:
    """Every annotation of ``ROOT``'s ``split``, in file order."""
    ann_dir = Path(root) / "annotations" / split
    if not ann_dir.is_dir():
        raise NotADirectoryError(f"{ann_dir} does not exist: expected InterHand2.6M's layout")
    data = _load_json(annotation_path(root, split, "data"))
    cameras = _load_json(annotation_path(root, split, "camera"))
    joints3d = _load_json(annotation_path(root, split, "joint_3d"))
    images = {img["id"]: img for img in data["images"]}
    records = []
    for ann in data["annotations"]:
        img = images[ann["image_id"]]
        capture, cam = str(img["capture"]), str(img["camera"])
        c = cameras[capture]
        camera = Camera(
            campos=np.asarray(c["campos"][cam], dtype=np.float64).reshape(3),
            camrot=np.asarray(c["camrot"][cam], dtype=np.float64).reshape(3, 3),
            focal=np.asarray(c["focal"][cam], dtype=np.float64).reshape(2),
            princpt=np.asarray(c["princpt"][cam], dtype=np.float64).reshape(2),
        )
        records.append(Record(ann, img, camera, joints3d[capture][str(img["frame_idx"])]))
    return records


def camera_fields(intr: Intrinsics) -> dict[str, Any]:
    """The ``camera`` argument of :meth:`AnnotationWriter.add` for a camera at the world origin,
    axes aligned (world = camera frame), with intrinsics ``intr``: the pseudo-labels' and the
    composites' camera."""
    return {
        "campos": [0.0, 0.0, 0.0],
        "camrot": np.eye(3).tolist(),
        "focal": [intr.fx, intr.fy],
        "princpt": [intr.cx, intr.cy],
    }


@dataclass
class AnnotationWriter:
    """Collects images with their annotation, camera and 3D joints, then writes the three
    annotation files. Values are written as given (callers round them); the image and the
    annotation share the next free id."""

    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    cameras: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    joints_3d: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @property
    def next_id(self) -> int:
        """The id the next :meth:`add` gives its image and annotation."""
        return len(self.images)

    def add(
        self,
        *,
        file_name: str,
        width: int,
        height: int,
        capture: int,
        camera_name: str,
        camera: dict[str, Any],
        world_coord: list[Any],
        joint_valid: list[Any],
        hand_type: str,
        hand_type_valid: int,
        bbox: list[Any],
        seq_name: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> int:
        """Add one image with one annotation; returns its id (also its ``frame_idx``).
        ``camera``: ``campos``, ``camrot``, ``focal``, ``princpt`` values; ``joint_valid``: 42
        flags; ``extra``: extension fields appended to the annotation."""
        if hand_type not in HAND_TYPES:
            raise ValueError(f"hand_type must be one of {HAND_TYPES}, got {hand_type!r}")
        if len(joint_valid) != NUM_JOINTS:
            raise ValueError(f"joint_valid needs {NUM_JOINTS} flags, got {len(joint_valid)}")
        idx = len(self.images)
        image: dict[str, Any] = {
            "id": idx,
            "file_name": file_name,
            "width": width,
            "height": height,
            "capture": capture,
            "camera": camera_name,
            "frame_idx": idx,
        }
        if seq_name is not None:
            image["seq_name"] = seq_name
        self.images.append(image)
        self.annotations.append(
            {
                "id": idx,
                "image_id": idx,
                "bbox": bbox,
                "joint_valid": [[v] for v in joint_valid],
                "hand_type": hand_type,
                "hand_type_valid": hand_type_valid,
                **(extra or {}),
            }
        )
        cams = self.cameras.setdefault(str(capture), {name: {} for name in CAMERA_FIELDS})
        for name in CAMERA_FIELDS:
            cams[name][camera_name] = camera[name]
        self.joints_3d.setdefault(str(capture), {})[str(idx)] = {
            "world_coord": world_coord,
            "joint_valid": list(joint_valid),
            "hand_type": hand_type,
            "hand_type_valid": hand_type_valid,
        }
        return idx

    def write(self, root: str | Path, split: str, info: dict[str, Any] | None = None) -> None:
        """Write the three annotation files of ``split`` under ``root``; ``info``: provenance,
        stored as ``data.json``'s ``info``."""
        data: dict[str, Any] = {} if info is None else {"info": info}
        data.update(images=self.images, annotations=self.annotations)
        contents = {"data": data, "camera": self.cameras, "joint_3d": self.joints_3d}
        for kind, content in contents.items():
            path = annotation_path(root, split, kind)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w") as fh:
                json.dump(content, fh, separators=(",", ":"))

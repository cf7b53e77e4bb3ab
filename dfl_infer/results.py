"""Result types and the output schema: ``Hand`` and ``Prediction`` (frozen, with documented
shapes, units and frames) and the JSON document that ``dfl-infer`` writes (README, "Output
JSON"). A change of the schema's meaning bumps ``SCHEMA_VERSION``."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dfl_infer.joints import HAND_JOINT_NAMES
from dfl_infer.lift import Intrinsics

SCHEMA_VERSION = 1
UNITS: dict[str, str] = {
    "joints_2d": "pixels",
    "joints_3d": "millimetres, camera frame",
    "joints_3d_rel": "millimetres, relative to the wrist",
    "joint_confidence": "0 to 1, agreement of the decoder's iterations on the 2D joint",
}


def _round(a: np.ndarray, digits: int) -> list[Any]:
    rounded: list[Any] = np.round(np.asarray(a, dtype=np.float64), digits).tolist()
    return rounded


@dataclass(frozen=True)
class Hand:
    """One hand. Joints follow ``HAND_JOINT_NAMES`` (thumb tip -> CMC, index tip -> MCP, middle,
    ring, pinky, wrist last).

    - ``handedness``: "right" or "left" (the person's own hand, for an unmirrored photo).
    - ``score``: probability in [0, 1] that this hand is present (the network's presence head).
    - ``joints_2d`` (21, 2): image pixels, (0, 0) = centre of the top-left pixel.
    - ``joints_3d`` (21, 3): camera frame (x right, y down, z forward), millimetres. The absolute
      depth rests on the intrinsics and on a canonical hand size unless given (see ``lift``).
    - ``joints_3d_rel`` (21, 3): ``joints_3d`` minus the wrist, millimetres.
    - ``joint_confidence`` (21,): per joint, in (0, 1]: how well the decoder's iterations agree
      on its 2D position (``decode.joint_confidence``); None when not known.
    - ``coasting``: 0 for a hand the network found. In a video with tracking, n in 1..max_missed
      for a tracked hand the network has not found for n frames in a row (presence below the
      threshold) and that is still reported (``track.HandTracker``): its joints are the track's
      last ones moved on by the track's motion, ``score`` is the network's presence for its side
      in the crop it was given (NaN when not known), ``joint_confidence`` is None.
    - ``handedness_score``: probability in [0, 1] that ``handedness`` is the right side, from
      the network's handedness output (1 for a model with fixed right/left slots); None when not
      known (written only when known).
    """

    handedness: str
    score: float
    joints_2d: np.ndarray
    joints_3d: np.ndarray
    joints_3d_rel: np.ndarray
    joint_confidence: np.ndarray | None = None
    coasting: int = 0
    handedness_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready and strict: a value that is not finite is never written as NaN or
        Infinity; the joints become null and ``joints_3d_error`` says why. ``coasting`` is
        written only when it is not 0."""
        record: dict[str, Any] = {
            "handedness": self.handedness,
            "score": round(float(self.score), 4) if np.isfinite(self.score) else None,
            "joints_2d": None,
            "joints_3d": None,
            "joints_3d_rel": None,
            "joints_3d_error": None,
            "joint_confidence": None,
        }
        if self.coasting:
            record["coasting"] = int(self.coasting)
        if self.handedness_score is not None and np.isfinite(self.handedness_score):
            record["handedness_score"] = round(float(self.handedness_score), 4)
        conf = self.joint_confidence
        if conf is not None and np.isfinite(conf).all():
            record["joint_confidence"] = _round(conf, 3)
        if not np.isfinite(self.joints_2d).all():
            record["joints_3d_error"] = "the network's 2D joints are not finite numbers"
            return record
        record["joints_2d"] = _round(self.joints_2d, 2)
        if not (np.isfinite(self.joints_3d).all() and np.isfinite(self.joints_3d_rel).all()):
            record["joints_3d_error"] = "3D could not be lifted (not finite numbers)"
            return record
        record["joints_3d"] = _round(self.joints_3d, 2)
        record["joints_3d_rel"] = _round(self.joints_3d_rel, 2)
        return record


@dataclass(frozen=True)
class Prediction:
    """All hands found in one image.

    - ``hands``: right hands first, then left hands.
    - ``width``, ``height``: of the image after EXIF orientation, pixels.
    - ``intrinsics``: the camera used for lifting; ``intrinsics.assumed`` says it was guessed.
    - ``box``: (4,) xyxy pixels, the union of the square regions the network saw (None if none).
    - ``crops``: every square region (xyxy) the network's final pass saw.
    - ``presence``: per crop in ``crops``, (2,) the network's presence probabilities (right,
      left) in it, found or not; empty when not known.
    """

    hands: tuple[Hand, ...]
    width: int
    height: int
    intrinsics: Intrinsics
    box: np.ndarray | None
    crops: tuple[np.ndarray, ...] = ()
    presence: tuple[np.ndarray, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "intrinsics": self.intrinsics.to_dict(),
            "box": None if self.box is None else _round(self.box, 2),
            "hands": [h.to_dict() for h in self.hands],
        }


@dataclass(frozen=True)
class PredictionError:
    """What ``DFLPredictor.predict_batch(..., return_errors=True)`` returns in place of the
    :class:`Prediction` of an image that failed: ``message`` says why (one line, for the user);
    ``exception`` is what was raised."""

    message: str
    exception: Exception


class BatchItemError(ValueError):
    """What ``DFLPredictor.predict_batch`` (without ``return_errors``) raises when one image of a
    batch of several fails: ``index`` is its position in the list given (from 0), so a caller
    knows which one to drop; ``exception`` is what it raised (also the ``__cause__``)."""

    def __init__(self, index: int, size: int, exception: Exception) -> None:
        super().__init__(f"images[{index}] (of {size}): {exception}")
        self.index = index
        self.size = size
        self.exception = exception


def image_entry(
    shape: Sequence[int] | None, prediction: Prediction | None, error: str | None
) -> dict[str, Any]:
    """One image's (or video frame's) fields of the output JSON: ``width`` and ``height`` (from
    ``shape``, (H, W, ...), when the image could be read), then the prediction's ``intrinsics``,
    ``box`` and ``hands``, and ``error``; null or empty where there is nothing."""
    record: dict[str, Any] = {
        "width": None,
        "height": None,
        "intrinsics": None,
        "box": None,
        "hands": [],
        "error": error,
    }
    if shape is not None:
        record["width"], record["height"] = int(shape[1]), int(shape[0])
    if prediction is not None:
        record.update(prediction.to_dict())
    return record


def document_header(model: dict[str, Any]) -> dict[str, Any]:
    """Everything of the output JSON but its ``images``: what ran, the joint order, the units."""
    return {
        "schema_version": SCHEMA_VERSION,
        "model": model,
        "joint_names": list(HAND_JOINT_NAMES),
        "units": dict(UNITS),
    }


def results_document(model: dict[str, Any], images: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The whole output JSON: ``model`` says what ran (``files.model_info``), ``images`` holds one
    entry per input file (``files.FileResult.to_dict``: path, size, intrinsics, box, hands and
    error)."""
    return {**document_header(model), "images": list(images)}


class JsonLinesWriter:
    """The output as JSON Lines, written while images finish (``dfl-infer --out x.jsonl``): the
    first line is :func:`document_header`, then one line per image (as in ``images``), and a
    last line ``{"summary": {"images": N, "succeeded": K}}`` once the run is complete, so a
    reader can tell a finished file from one a failure or Ctrl-C cut short. Every line is
    written whole and flushed; when a write fails, the file is cut back to its last whole line
    and the OSError propagates. Strict JSON: NaN or infinity is a ValueError."""

    def __init__(self, path: str | Path, header: dict[str, Any]) -> None:
        self.path = Path(path)
        self._file = self.path.open("w")
        self._good = 0  # bytes of whole lines on disk
        self.write(header)

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, allow_nan=False) + "\n"
        try:
            self._file.write(line)
            self._file.flush()
        except OSError:
            with contextlib.suppress(OSError):
                self._file.truncate(self._good)
            raise
        self._good += len(line.encode())

    def close(self, summary: dict[str, Any] | None = None) -> None:
        """Write ``summary`` (when the run completed) and close."""
        try:
            if summary is not None:
                self.write({"summary": summary})
                os.fsync(self._file.fileno())
        finally:
            with contextlib.suppress(OSError):
                self._file.close()

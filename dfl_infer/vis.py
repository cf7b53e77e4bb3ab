"""Overlays: the 2D skeleton of every predicted hand drawn on the image (right hands orange,
left hands blue), plus the crop boxes the network saw; ``OverlayFolder`` writes them as JPEGs,
marked as ours (a JPEG comment) so that a later run knows which files it may replace."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dfl_infer._atomic import atomic_path
from dfl_infer.joints import HAND_BONES
from dfl_infer.results import Prediction

# RGB colours, chosen to stay distinct for colour-blind viewers (orange / blue).
HAND_COLOURS = {"right": (255, 140, 0), "left": (30, 120, 255)}
BOX_COLOUR = (200, 200, 200)
# Written into every overlay's JPEG comment: a file without it is not ours to overwrite.
OVERLAY_COMMENT = b"dfl-infer overlay"


def is_overlay(path: str | Path) -> bool:
    """Whether ``path`` is an overlay that dfl-infer wrote (its JPEG comment says so)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return bool(im.info.get("comment") == OVERLAY_COMMENT)
    except Exception:  # noqa: BLE001 - unreadable, not an image: not ours
        return False


def draw_prediction(rgb: np.ndarray, prediction: Prediction, draw_boxes: bool = True) -> np.ndarray:
    """Copy of ``rgb`` (H, W, 3) uint8 with the skeletons (and crop boxes) drawn on it."""
    import cv2

    out = np.ascontiguousarray(rgb.copy())
    scale = max(out.shape[:2]) / 640.0
    thick = max(1, int(round(2 * scale)))
    radius = max(2, int(round(3 * scale)))
    if draw_boxes:
        for box in prediction.crops:
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            cv2.rectangle(out, (x0, y0), (x1, y1), BOX_COLOUR, max(1, thick // 2), cv2.LINE_AA)
    for hand in prediction.hands:
        colour = HAND_COLOURS[hand.handedness]
        pts = np.round(hand.joints_2d).astype(np.int64)
        for child, parent in HAND_BONES:
            cv2.line(
                out,
                tuple(int(v) for v in pts[child]),
                tuple(int(v) for v in pts[parent]),
                colour,
                thick,
                cv2.LINE_AA,
            )
        for p in pts:
            cv2.circle(out, (int(p[0]), int(p[1])), radius, (255, 255, 255), -1, cv2.LINE_AA)
            cv2.circle(out, (int(p[0]), int(p[1])), radius, colour, max(1, thick // 2), cv2.LINE_AA)
        wrist = pts[-1]
        cv2.putText(
            out,
            f"{hand.handedness[0].upper()} {hand.score:.2f}",
            (int(wrist[0]) + radius, int(wrist[1]) + 4 * radius),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5 * scale,
            colour,
            thick,
            cv2.LINE_AA,
        )
    return out


class OverlayFolder:
    """Writes one overlay JPEG per image into ``folder`` (created on the first write), named
    after the image's stem; a later image with the same stem gets ``_2``, ``_3``, ... rather than
    overwriting it. :meth:`plan` fixes every image's overlay name before any work, so that the
    caller can check them (``files.check_outputs``)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"{self.folder} exists and is not a folder")
        self._used: set[str] = set()
        self._planned: dict[Path, Path] = {}

    def _next_name(self, image_path: str | Path) -> Path:
        stem = Path(image_path).stem
        name, k = f"{stem}.jpg", 1
        while name in self._used:
            k += 1
            name = f"{stem}_{k}.jpg"
        self._used.add(name)
        return self.folder / name

    def plan(self, image_paths: Sequence[str | Path]) -> dict[Path, Path]:
        """The overlay each image will get, in input order (an image given twice, one overlay)."""
        for p in image_paths:
            if Path(p) not in self._planned:
                self._planned[Path(p)] = self._next_name(p)
        return dict(self._planned)

    def write(self, image_path: str | Path, rgb: np.ndarray, prediction: Prediction) -> Path:
        from PIL import Image

        out = self._planned.get(Path(image_path)) or self._next_name(image_path)
        with atomic_path(out) as tmp:
            Image.fromarray(draw_prediction(rgb, prediction)).save(
                tmp, format="JPEG", quality=92, comment=OVERLAY_COMMENT
            )
        return out

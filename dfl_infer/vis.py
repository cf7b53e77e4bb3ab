"""Overlays: the 2D skeleton of every predicted hand drawn on the image (right hands orange,
left hands blue), plus the crop boxes the network saw; ``OverlayFolder`` writes them as JPEGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfl_infer._atomic import atomic_path
from dfl_infer.joints import HAND_BONES
from dfl_infer.results import Prediction

# RGB colours, chosen to stay distinct for colour-blind viewers (orange / blue).
HAND_COLOURS = {"right": (255, 140, 0), "left": (30, 120, 255)}
BOX_COLOUR = (200, 200, 200)


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
    """Writes one overlay JPEG per image into ``folder`` (created), named after the image's stem;
    a later image with the same stem gets ``_2``, ``_3``, ... rather than overwriting it."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"{self.folder} exists and is not a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._used: set[str] = set()

    def write(self, image_path: str | Path, rgb: np.ndarray, prediction: Prediction) -> Path:
        from PIL import Image

        stem = Path(image_path).stem
        name, k = f"{stem}.jpg", 1
        while name in self._used:
            k += 1
            name = f"{stem}_{k}.jpg"
        self._used.add(name)
        out = self.folder / name
        with atomic_path(out) as tmp:
            Image.fromarray(draw_prediction(rgb, prediction)).save(tmp, format="JPEG", quality=92)
        return out

"""Overlays: the 2D skeleton of every predicted hand drawn on the image (right hands orange,
left hands blue, joint dots filled by their confidence; a tracked hand the network did not find,
``Hand.coasting``, in thin dimmed lines with hollow dots), the crop boxes the network saw, and a
side view of the 3D joints in a corner (depth); ``OverlayFolder`` writes them as JPEGs,
marked as ours (a JPEG comment) so that a later run knows which files it may replace."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dfl_infer._atomic import atomic_path
from dfl_infer.image import LargeImage
from dfl_infer.joints import HAND_BONES
from dfl_infer.results import Hand, Prediction

# RGB colours, chosen to stay distinct for colour-blind viewers (orange / blue).
HAND_COLOURS = {"right": (255, 140, 0), "left": (30, 120, 255)}
BOX_COLOUR = (200, 200, 200)
# A coasting hand's colour: its side's colour mixed with grey by this much.
COASTING_DIM = 0.5
# Written into every overlay's JPEG comment: a file without it is not ours to overwrite.
OVERLAY_COMMENT = b"dfl-infer overlay"
# Joint dots are filled by confidence along this ramp: red (0), yellow (0.5), white (1).
CONFIDENCE_RAMP = ((220, 30, 30), (255, 215, 0), (255, 255, 255))
# The side-view inset (depth): its side as a share of the image's shorter side; none below this
# many pixels; the least it spans (mm); its padding (share of its side); colours.
INSET_FRACTION = 0.3
INSET_MIN_SIDE = 60
INSET_MIN_EXTENT_MM = 150.0
INSET_PAD = 0.12
INSET_BACKGROUND = (25, 25, 25)
INSET_TEXT = (220, 220, 220)


def is_overlay(path: str | Path) -> bool:
    """Whether ``path`` is an overlay that dfl-infer wrote (its JPEG comment says so)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return bool(im.info.get("comment") == OVERLAY_COMMENT)
    except Exception:  # noqa: BLE001 - unreadable, not an image: not ours
        return False


def draw_prediction(
    rgb: np.ndarray | LargeImage,
    prediction: Prediction,
    draw_boxes: bool = True,
    depth_inset: bool = True,
) -> np.ndarray:
    """Copy of ``rgb`` (H, W, 3) uint8 with the skeletons (and crop boxes) drawn on it. A
    LargeImage is drawn on its preview (a full-size copy of a 100 MP photo would take 300 MB),
    so that overlay has the preview's size (at most ``image.PREVIEW_PIXELS`` pixels)."""
    import cv2

    to_px: Callable[[np.ndarray], np.ndarray] = lambda p: np.asarray(p, dtype=np.float64)
    if isinstance(rgb, LargeImage):
        out: np.ndarray = rgb.preview.copy()
        to_px = rgb.to_preview
    else:
        out = np.ascontiguousarray(rgb.copy())
    scale = max(out.shape[:2]) / 640.0
    thick = max(1, int(round(2 * scale)))
    radius = max(2, int(round(3 * scale)))
    if draw_boxes:
        for box in prediction.crops:
            x0, y0, x1, y1 = (int(round(v)) for v in to_px(np.reshape(box, (2, 2))).reshape(4))
            cv2.rectangle(out, (x0, y0), (x1, y1), BOX_COLOUR, max(1, thick // 2), cv2.LINE_AA)
    drawn: list[np.ndarray] = []  # each hand's joints as drawn, kept clear of the inset
    for hand in prediction.hands:
        colour: tuple[int, ...] = HAND_COLOURS[hand.handedness]
        width = thick
        if hand.coasting:
            colour = tuple(int(round(c + (128 - c) * COASTING_DIM)) for c in colour)
            width = max(1, thick // 2)
        pts = np.round(to_px(hand.joints_2d)).astype(np.int64)
        for child, parent in HAND_BONES:
            cv2.line(
                out,
                tuple(int(v) for v in pts[child]),
                tuple(int(v) for v in pts[parent]),
                colour,
                width,
                cv2.LINE_AA,
            )
        drawn.append(pts)
        for p, fill in zip(pts, confidence_colours(hand.joint_confidence, len(pts))):
            if not hand.coasting:
                cv2.circle(out, (int(p[0]), int(p[1])), radius, fill, -1, cv2.LINE_AA)
            cv2.circle(out, (int(p[0]), int(p[1])), radius, colour, max(1, thick // 2), cv2.LINE_AA)
        wrist = pts[-1]
        score = f"{hand.score:.2f}" if np.isfinite(hand.score) else "?"
        cv2.putText(
            out,
            f"{hand.handedness[0].upper()} {score}" + (" (tracked)" if hand.coasting else ""),
            (int(wrist[0]) + radius, int(wrist[1]) + 4 * radius),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5 * scale,
            colour,
            thick,
            cv2.LINE_AA,
        )
    if depth_inset:
        draw_depth_inset(out, prediction.hands, drawn)
    return out


def confidence_colours(confidence: np.ndarray | None, n: int) -> list[tuple[int, int, int]]:
    """RGB fill of each of ``n`` joint dots: red at confidence 0, yellow at 0.5, white at 1
    (brighter is surer, readable without telling red from green); all white when unknown."""
    if confidence is None:
        return [CONFIDENCE_RAMP[-1]] * n
    c = np.nan_to_num(np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0), nan=0.0)
    ramp = np.asarray(CONFIDENCE_RAMP, dtype=np.float64)
    stops = np.linspace(0.0, 1.0, len(ramp))
    rgb = np.stack([np.interp(c, stops, ramp[:, k]) for k in range(3)], axis=-1)
    return [(int(r), int(g), int(b)) for r, g, b in np.round(rgb)]


def depth_inset_view(
    hands: Sequence[Hand], side: int
) -> tuple[list[tuple[Hand, np.ndarray]], float]:
    """The side view of the hands with finite 3D joints, fitted into a ``side`` x ``side``
    square: each such hand with its joints in the square's pixels (21, 2), camera depth z left
    (near) to right (far) and camera y down, and the view's scale (pixels per millimetre, one for
    all hands; the view spans at least ``INSET_MIN_EXTENT_MM``, so that one hand is not blown up
    to fill it)."""
    finite = [h for h in hands if np.isfinite(h.joints_3d).all()]
    if not finite:
        return [], 0.0
    zy = np.concatenate([h.joints_3d[:, [2, 1]] for h in finite])
    lo, hi = zy.min(0), zy.max(0)
    extent = max(float((hi - lo).max()), INSET_MIN_EXTENT_MM)
    px_per_mm = side * (1 - 2 * INSET_PAD) / extent
    centre = (lo + hi) / 2
    return [
        (h, (h.joints_3d[:, [2, 1]] - centre) * px_per_mm + side / 2) for h in finite
    ], px_per_mm


def inset_corner(
    width: int, height: int, side: int, margin: int, avoid: Sequence[np.ndarray]
) -> tuple[int, int]:
    """Top-left pixel of the ``side`` square in the image corner that hides least of the boxes
    around the point sets ``avoid`` (each (N, 2) pixels); bottom-right first on a tie."""
    corners = [
        (width - side - margin, height - side - margin),
        (margin, height - side - margin),
        (width - side - margin, margin),
        (margin, margin),
    ]

    def hidden(corner: tuple[int, int]) -> float:
        x0, y0 = corner
        total = 0.0
        for pts in avoid:
            lo, hi = np.min(pts, axis=0), np.max(pts, axis=0)
            dx = min(hi[0], x0 + side) - max(lo[0], x0)
            dy = min(hi[1], y0 + side) - max(lo[1], y0)
            total += max(0.0, float(dx)) * max(0.0, float(dy))
        return total

    return min(corners, key=hidden)


def draw_depth_inset(
    out: np.ndarray, hands: Sequence[Hand], avoid: Sequence[np.ndarray] = ()
) -> None:
    """Draw, in place, the hands' 3D joints seen from the side (:func:`depth_inset_view`) in a
    dark square in a corner of ``out`` (the one that hides least of the 2D hands ``avoid``, each
    (21, 2) pixels), with a 5 cm scale bar, so that a picture alone shows which hand is nearer.
    Nothing is drawn for an image too small for it or without a hand whose 3D joints are known."""
    import cv2

    h, w = out.shape[:2]
    side = int(INSET_FRACTION * min(h, w))
    view, px_per_mm = depth_inset_view(hands, side)
    if side < INSET_MIN_SIDE or not view:
        return
    margin = max(2, side // 20)
    x0, y0 = inset_corner(w, h, side, margin, [a for a in avoid if np.isfinite(a).all()])
    panel = out[y0 : y0 + side, x0 : x0 + side]
    panel[:] = (0.3 * panel + 0.7 * np.array(INSET_BACKGROUND)).astype(np.uint8)
    thick = max(1, side // 100)
    font = side / 500
    for hand, pts in view:
        colour = HAND_COLOURS[hand.handedness]
        p = np.round(pts).astype(np.int64) + (x0, y0)
        for child, parent in HAND_BONES:
            a, b = tuple(int(v) for v in p[child]), tuple(int(v) for v in p[parent])
            cv2.line(out, a, b, colour, thick, cv2.LINE_AA)
        for q in p:  # in the hand's colour: here, which hand is where matters most
            cv2.circle(out, (int(q[0]), int(q[1])), thick + 1, colour, -1, cv2.LINE_AA)
    bx, by = x0 + margin, y0 + side - margin
    cv2.line(out, (bx, by), (bx + int(round(50 * px_per_mm)), by), INSET_TEXT, thick, cv2.LINE_AA)
    for text, (tx, ty) in (
        ("5 cm", (bx, by - 3 * thick)),
        ("side view: near -> far", (x0 + margin, y0 + margin + int(20 * font))),
    ):
        cv2.putText(out, text, (tx, ty), cv2.FONT_HERSHEY_SIMPLEX, font, INSET_TEXT, 1, cv2.LINE_AA)
    cv2.rectangle(out, (x0, y0), (x0 + side - 1, y0 + side - 1), INSET_TEXT, 1, cv2.LINE_AA)


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

    def write(
        self, image_path: str | Path, rgb: np.ndarray | LargeImage, prediction: Prediction
    ) -> Path:
        from PIL import Image

        out = self._planned.get(Path(image_path)) or self._next_name(image_path)
        with atomic_path(out) as tmp:
            Image.fromarray(draw_prediction(rgb, prediction)).save(
                tmp, format="JPEG", quality=92, comment=OVERLAY_COMMENT
            )
        return out

"""Video: frames in (a video file decoded by OpenCV, or a folder of images), one result per frame
out, and the overlay as an mp4. :func:`predict_frames` is the loop behind
``DFLPredictor.predict_video``: detector (MediaPipe's VIDEO mode) -> ``track.HandTracker`` ->
the predictor -> ``smooth``; frames are decoded one at a time, so memory stays flat on long
clips (offline smoothing keeps every frame's joints, not its pixels, and decodes the clip twice).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dfl_infer._atomic import atomic_path
from dfl_infer.bundle import DetectorUnavailableError
from dfl_infer.image import IMAGE_SUFFIXES, ImageError, load_image
from dfl_infer.results import Prediction, image_entry
from dfl_infer.smooth import SMOOTH_MODES, CausalSmoother, SmoothParams, smooth_offline
from dfl_infer.track import HandTracker
from dfl_infer.vis import draw_prediction

logger = logging.getLogger(__name__)

# File name endings read as videos (OpenCV's FFmpeg backend decodes them).
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg")
# Frame rate assumed for a folder of frames (and a video file that does not say).
DEFAULT_FPS = 30.0
# Appended to every overlay mp4 as a top-level "free" box (players skip it): a file without it
# is not ours to overwrite.
OVERLAY_MARK = b"dfl-infer overlay"


class VideoError(ValueError):
    """A video or frame folder that cannot be read (missing, not a video, frames of mixed size)."""


def _quiet_ffmpeg() -> None:
    """FFmpeg (inside OpenCV) writes a line to stderr for every damaged macroblock of a broken
    clip; its frames still decode as well as they can, so keep it silent unless the user set a
    level (OpenCV reads ``OPENCV_FFMPEG_LOGLEVEL`` when it first opens a video; -8 is quiet)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def is_video(path: str | Path) -> bool:
    """Whether ``path`` names a video file (by its ending)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame: ``index`` from 0, ``time`` in seconds (index / fps), ``image``
    (H, W, 3) uint8 RGB, or None with ``error`` when a frame file could not be read."""

    index: int
    time: float
    image: np.ndarray | None
    error: str | None = None


class FrameSource:
    """The frames of a video file, or of a folder of images (sorted by name), decoded one at a
    time; iterating again decodes again. ``fps``: frames per second for the timestamps (default:
    the file's own rate, else ``DEFAULT_FPS``). Raises :class:`VideoError` when the source
    cannot be opened."""

    def __init__(self, source: str | Path, fps: float | None = None) -> None:
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise VideoError(f"fps must be a positive number, got {fps!r}")
        self.path = Path(source)
        self.files: list[Path] = []
        if self.path.is_dir():
            self.files = sorted(
                p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not self.files:
                raise VideoError(f"{self.path}: no image files in this folder")
            self.fps = fps or DEFAULT_FPS
            self.count: int | None = len(self.files)
            return
        if not self.path.is_file():
            raise VideoError(f"{self.path}: no such file or folder")
        import cv2

        _quiet_ffmpeg()
        capture = cv2.VideoCapture(str(self.path))
        try:
            ok, _ = capture.read() if capture.isOpened() else (False, None)
            if not ok:
                raise VideoError(f"{self.path}: cannot decode it as a video")
            rate = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        finally:
            capture.release()
        self.fps = fps or (rate if math.isfinite(rate) and rate > 0 else DEFAULT_FPS)
        self.count = count if count > 0 else None  # containers may not say, or say wrong

    @property
    def inputs(self) -> list[Path]:
        """The files read: the frame images, or the video file."""
        return list(self.files) or [self.path]

    def __iter__(self) -> Iterator[Frame]:
        size: tuple[int, ...] | None = None
        for index, rgb, error in self._decode():
            if rgb is not None:
                if size is None:
                    size = rgb.shape
                elif rgb.shape != size:
                    raise VideoError(
                        f"{self.path}: frame {index} is {rgb.shape[1]}x{rgb.shape[0]}, the first "
                        f"was {size[1]}x{size[0]}; a clip's frames must share one size"
                    )
            yield Frame(index, index / self.fps, rgb, error)

    def _decode(self) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
        if self.files:
            for index, path in enumerate(self.files):
                try:
                    yield index, load_image(path), None
                except ImageError as exc:
                    yield index, None, str(exc)
            return
        import cv2

        _quiet_ffmpeg()
        capture = cv2.VideoCapture(str(self.path))
        try:
            index = 0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    return
                yield index, np.ascontiguousarray(bgr[:, :, ::-1]), None
                index += 1
        finally:
            capture.release()


@dataclass(frozen=True, eq=False)
class FrameResult:
    """What one frame gave: ``prediction`` (None when the frame failed, with ``error``),
    ``image`` the frame (H, W, 3) uint8 RGB when it could be read, ``filled`` the sides
    ("right", "left") whose hand offline smoothing filled in across a short gap."""

    index: int
    time: float
    image: np.ndarray | None
    prediction: Prediction | None
    error: str | None = None
    filled: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        """The frame's JSON Lines record (README, "Video"): the image entry's fields, with
        ``frame`` and ``time`` (seconds) in place of ``path``; a filled-in hand has
        ``"filled": true``, a tracked hand the network did not find ``"coasting": n``
        (``Hand.coasting``)."""
        shape = None if self.image is None else self.image.shape
        record = {
            "frame": self.index,
            "time": round(self.time, 6),
            **image_entry(shape, self.prediction, self.error),
        }
        if self.prediction is not None:
            for hand, entry in zip(self.prediction.hands, record["hands"]):
                if hand.handedness in self.filled:
                    entry["filled"] = True
        return record


def is_video_overlay(path: str | Path) -> bool:
    """Whether ``path`` is an overlay video that dfl-infer wrote (it ends with our mark)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - len(OVERLAY_MARK)))
            return f.read() == OVERLAY_MARK
    except OSError:
        return False


class OverlayVideo:
    """Writes the overlay mp4 (``vis.draw_prediction`` on every frame), atomically: frames go
    into a temporary file beside ``path``, which replaces it on :meth:`close` (with
    ``complete=True``) and is removed otherwise."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        self.fps = fps
        self._stack = contextlib.ExitStack()
        self._tmp: Path | None = None
        self._writer: Any = None

    def write(self, rgb: np.ndarray, prediction: Prediction | None) -> None:
        import cv2

        if self._writer is None:
            self._tmp = self._stack.enter_context(atomic_path(self.path, suffix=".mp4"))
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")  # type: ignore[attr-defined]
            size = (rgb.shape[1], rgb.shape[0])
            self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, size)
            if not self._writer.isOpened():
                raise OSError(f"OpenCV cannot write an mp4 video at {self._tmp}")
        drawn = rgb if prediction is None else draw_prediction(rgb, prediction)
        self._writer.write(np.ascontiguousarray(drawn[:, :, ::-1]))

    def close(self, complete: bool = True) -> None:
        """Finish the file (``complete``) or throw the partial one away."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if complete and self._tmp is not None:
            with open(self._tmp, "ab") as f:  # an ISO BMFF "free" box: size, type, payload
                f.write((8 + len(OVERLAY_MARK)).to_bytes(4, "big") + b"free" + OVERLAY_MARK)
            self._stack.close()
        else:
            with contextlib.suppress(OSError):
                self._stack.__exit__(RuntimeError, RuntimeError("incomplete"), None)


def predict_frames(
    predictor: Any,
    frames: FrameSource,
    detector: Any,
    track: bool = True,
    smooth: str = "none",
    params: SmoothParams | None = None,
    max_missed: int = 5,
    intrinsics: Any = None,
    focal: float | None = None,
    progress: Callable[[], object] | None = None,
) -> Iterator[FrameResult]:
    """One :class:`FrameResult` per frame of ``frames``, in order (``DFLPredictor.predict_video``
    documents the arguments). ``predictor``: a ``DFLPredictor``; ``detector``: what finds the
    hands, ``detect(rgb, timestamp_ms)`` when it has ``video = True`` (MediaPipe's VIDEO mode),
    else ``detect(rgb)``; ``progress``: called once per frame predicted."""
    if smooth not in SMOOTH_MODES:
        raise ValueError(f"smooth must be one of {SMOOTH_MODES}, got {smooth!r}")
    params = params or SmoothParams()
    if smooth != "offline":
        live = LiveVideo(predictor, detector, track, smooth, params, max_missed, frames.fps)
        for frame in frames:
            result = live.add(frame, intrinsics, focal)
            if progress is not None:
                progress()
            yield result
        return
    # Offline: a first pass keeps the results without their pixels, then the frames are
    # decoded again to go with the smoothed joints.
    args = (predictor, frames, detector, track, max_missed, intrinsics, focal, progress)
    first = [dataclasses.replace(r, image=None) for r in _predict_pass(*args)]
    smoothed, filled = smooth_offline([r.prediction for r in first], params)
    for frame, result, pred, sides in zip(frames, first, smoothed, filled):
        yield dataclasses.replace(
            result, image=frame.image, prediction=pred, filled=frozenset(sides)
        )


def _predict_pass(
    predictor: Any,
    frames: FrameSource,
    detector: Any,
    track: bool,
    max_missed: int,
    intrinsics: Any,
    focal: float | None,
    progress: Callable[[], object] | None,
) -> Iterator[FrameResult]:
    live = LiveVideo(predictor, detector, track, "none", None, max_missed, frames.fps)
    for frame in frames:
        result = live.add(frame, intrinsics, focal)
        if progress is not None:
            progress()
        yield result


class LiveVideo:
    """:func:`predict_frames` for frames that come one at a time from a live source (the demo's
    webcam): :meth:`add` runs one frame through the detector (``detect(rgb, timestamp_ms)``
    when it has ``video = True``, MediaPipe's VIDEO mode), the ``track.HandTracker`` (unless
    ``track`` is False) and the causal smoother (``smooth``: "causal" or "none"; offline
    smoothing needs the whole clip), exactly as ``predict_frames`` does, and returns the frame's
    :class:`FrameResult`. ``fps``: the rate the smoother expects (a hand missing for longer than
    ``params.max_gap`` frames of it starts afresh). Frame times must increase."""

    def __init__(
        self,
        predictor: Any,
        detector: Any,
        track: bool = True,
        smooth: str = "causal",
        params: SmoothParams | None = None,
        max_missed: int = 5,
        fps: float = DEFAULT_FPS,
    ) -> None:
        if smooth not in ("causal", "none"):
            raise ValueError(f"a live stream is smoothed 'causal' or 'none', got {smooth!r}")
        self.predictor = predictor
        self.detector = detector
        self.tracker = HandTracker(max_missed) if track else None
        self.smoother = CausalSmoother(params, fps) if smooth == "causal" else None
        self._last_ms = -1

    def add(self, frame: Frame, intrinsics: Any = None, focal: float | None = None) -> FrameResult:
        """The result of one frame (``Frame``: index, time in seconds, RGB image); a frame that
        fails gets an ``error``, as in a clip."""
        result = _predict_frame(
            self.predictor, frame, self.detector, self.tracker, intrinsics, focal, self._last_ms
        )
        self._last_ms = max(self._last_ms + 1, int(round(frame.time * 1000)))
        if self.smoother is not None and result.prediction is not None:
            result = dataclasses.replace(
                result, prediction=self.smoother(result.prediction, result.time)
            )
        return result


def _predict_frame(
    predictor: Any,
    frame: Frame,
    detector: Any,
    tracker: HandTracker | None,
    intrinsics: Any,
    focal: float | None,
    last_ms: int,
) -> FrameResult:
    if frame.image is None:
        logger.warning("skipping frame %d: %s", frame.index, frame.error)
        return FrameResult(frame.index, frame.time, None, None, frame.error)
    try:
        if getattr(detector, "video", False):
            # MediaPipe's VIDEO mode wants strictly increasing timestamps.
            dets = detector.detect(frame.image, max(last_ms + 1, int(round(frame.time * 1000))))
        else:
            dets = detector.detect(frame.image)
        if tracker is not None:
            dets = tracker.plan(dets)
        pred = predictor.predict_batch(
            [frame.image], intrinsics=[intrinsics], focal=focal, detections=[dets]
        )[0]
    except DetectorUnavailableError:  # concerns every frame
        raise
    except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the clip
        logger.warning("frame %d: %s", frame.index, exc)
        return FrameResult(frame.index, frame.time, frame.image, None, str(exc))
    if tracker is not None:
        pred = tracker.update(pred)
    return FrameResult(frame.index, frame.time, frame.image, pred)


__all__ = [
    "DEFAULT_FPS",
    "VIDEO_SUFFIXES",
    "Frame",
    "FrameResult",
    "FrameSource",
    "LiveVideo",
    "OverlayVideo",
    "VideoError",
    "is_video",
    "is_video_overlay",
    "predict_frames",
]

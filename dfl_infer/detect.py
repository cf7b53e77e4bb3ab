"""Hand detection: MediaPipe's HandLandmarker turned into hand boxes, handedness and 21 landmarks.

mediapipe >= 0.10.30 (and 1.x) dropped ``mp.solutions`` and ships no hand model, so this module
drives the Tasks API ``HandLandmarker`` (IMAGE running mode; VIDEO with ``video=True``) with a
``hand_landmarker.task`` bundle, which ``bundle.py`` finds, checks and fetches. Nothing is
resolved or downloaded at import or construction: that happens on the first
:meth:`HandDetector.detect` (or :meth:`HandDetector.load`).

Coordinates follow :mod:`dfl_infer.crop`: (0, 0) is the centre of the top-left pixel. MediaPipe's
normalized ``x * W`` is 0 at the image's left *edge*, hence ``x * W - 0.5``.

Handedness was checked empirically with mediapipe 1.2.2 and the assembled bundle (float32 models
of the 0.10.21 wheel), on ordinary photos whose true handedness was read off the image by eye
(which side of the body the arm comes from, and the thumb side given palm or back to the camera):

- ``wild/hamer_test1.jpg``: a woman facing the camera makes an OK sign with her right hand (arm on
  the image left, palm to the camera, thumb towards the image right). MediaPipe: "Right" (0.98).
- ``wild/intaghand_demo_1.jpg``: a person facing the camera crosses both index fingers, backs of
  the hands to the camera. The hand on the image right (the person's left; thumb on its
  image-left side) is "Left", the other "Right" (both 1.00).
- ``real-hands/images/26_pic00032.jpg``: a man shows both palms; the hand on the image left (his
  right, thumb towards the image right) is "Right" (0.99), the other "Left" (0.96).
- ``real-hands/images/2_pic00038.jpg``: a right palm from the person's right side: "Right" (0.97).

On the horizontally flipped images every one of these labels swapped, and so did all 164 hands
found in both an image and its mirror over every 10th real-hands photo
(``benchmarks/detector_recall.py``, which reruns this check). Conclusion: the Tasks API in 1.2.2
reports the *true* handedness for unmirrored photos (the old "assumes a mirrored selfie image"
note of ``mp.solutions`` does not apply), so MediaPipe's label is returned as is, lower-cased.
``tests/test_detect.py`` re-checks the flip on ``wild/intaghand_demo_1.jpg``.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import dataclasses
import functools
import logging
import os
import re
import sys
import tempfile
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from dfl_infer.bundle import FETCH_HINT, DetectorUnavailableError, resolve_bundle, validate_bundle
from dfl_infer.crop import points_box
from dfl_infer.image import LargeImage
from dfl_infer.joints import MEDIAPIPE_TO_INTERHAND, NUM_HAND_JOINTS

logger = logging.getLogger(__name__)

# MediaPipe's Tasks label -> the true handedness in an unmirrored photo (see the module docstring
# for how this was checked).
_HANDEDNESS_FROM_MEDIAPIPE: dict[str, str] = {"Right": "right", "Left": "left"}

# MediaPipe's palm-detector score threshold. Below MediaPipe's usual 0.5 (and the 0.3 used here
# until 2026-12-06): a hand half hidden by the other hand scores low, and every detection is
# checked again by the network's presence output (docs/detector.md, "Why the low threshold"):
# with the predictor's other changes of that day, 536 instead of 517 of the 600 hands of the
# held-out two-hand composites found, and on the 1,557 real photos 35 reported hands that match
# no labelled box instead of 34.
DEFAULT_DETECTION_CONFIDENCE = 0.05
# MediaPipe's hand-presence threshold of its landmark stage.
DEFAULT_PRESENCE_CONFIDENCE = 0.3


# eq=False: the generated __eq__ would compare numpy arrays and raise; identity is what is meant.
@dataclass(frozen=True, eq=False)
class HandDetection:
    """One detected hand in image pixels (centre of the top-left pixel is (0, 0)).

    ``box`` (4,) float64 xyxy, tight around the 21 landmarks (not clipped to the image).
    ``handedness`` "right" or "left": the person's true hand for an ordinary, unmirrored photo.
    ``score`` MediaPipe's handedness score in [0, 1].
    ``landmarks`` (21, 2) float64 pixels in InterHand2.6M per-hand order (``HAND_JOINT_NAMES``).
    ``landmarks_3d`` (21, 3) float64 metres, MediaPipe's world landmarks (origin near the hand's
    centre, camera-aligned axes), same order, or None when MediaPipe gives none.
    """

    box: np.ndarray
    handedness: str
    score: float
    landmarks: np.ndarray
    landmarks_3d: np.ndarray | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists of floats)."""
        return {
            "box": self.box.tolist(),
            "handedness": self.handedness,
            "score": self.score,
            "landmarks": self.landmarks.tolist(),
            "landmarks_3d": None if self.landmarks_3d is None else self.landmarks_3d.tolist(),
        }


# How the native libraries under MediaPipe start a line on stderr: glog ("W0000 00:00:...
# file.cc:12] ...", severity letter then the month and day) and TFLite's own "INFO: ..." lines.
_NATIVE_LINE = re.compile(r"^(?:[IWEF]\d{4} |(?:INFO|WARNING|ERROR): )")


@contextlib.contextmanager
def _native_stderr_to_log() -> Iterator[None]:
    """Route what C++ code writes to file descriptor 2 (TFLite and glog notices, which ignore
    Python's logging) into this module's logger: debug level, or warning for error lines.

    File descriptor 2 is the process's, so a line some other thread wrote meanwhile is caught
    too: a line that does not look like a native notice (``_NATIVE_LINE``) is written back to
    the real stderr, unchanged, when the block ends."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (e.g. some notebook kernels): leave it alone
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()  # Python-level writes of this block, into the capture
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            # Split at newlines only: a progress line redrawn with carriage returns stays whole.
            for line in text.split("\n"):
                if not line.strip():
                    continue
                if not _NATIVE_LINE.match(line):
                    with contextlib.suppress(OSError, ValueError):
                        sys.stderr.write(line + "\n")
                        sys.stderr.flush()
                    continue
                is_error = line.startswith(("E", "F")) or "error" in line.lower()
                logger.log(logging.WARNING if is_error else logging.DEBUG, "mediapipe: %s", line)


def _close_at_exit(ref: weakref.ref[HandDetector]) -> None:
    detector = ref()
    if detector is None:
        return
    try:
        detector.close()
    except Exception:  # noqa: BLE001 - at exit, never print a traceback for a closing graph
        landmarker, detector._landmarker = detector._landmarker, None
        if landmarker is not None:
            landmarker._handle = None  # its __del__ would try (and fail) to close again


def _close_before_exit(detector: HandDetector) -> None:
    """Close ``detector`` before the interpreter tears down. MediaPipe's ``close()`` runs through
    a ``concurrent.futures`` thread pool, which shuts down in threading's exit hooks, before any
    ``atexit`` callback; a landmarker still open after that prints a traceback from its
    ``__del__``. threading's hooks run in reverse order of registration, so one registered now
    runs before the pool's. ``threading._register_atexit`` is private (concurrent.futures itself
    uses it); where it is missing, ``atexit`` is the fallback."""
    register = getattr(threading, "_register_atexit", atexit.register)
    register(_close_at_exit, weakref.ref(detector))


def _quiet_mediapipe() -> None:
    """MediaPipe's C++ side logs TFLite/glog chatter to stderr; keep only errors unless the user
    asked otherwise (read when MediaPipe is imported)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# The thread of preload_mediapipe, while it may still be importing.
_PRELOAD: threading.Thread | None = None


def preload_mediapipe() -> None:
    """Start importing MediaPipe's Tasks API in a daemon thread: it takes most of a second, which
    then overlaps the network's loading (the command line calls this when the detector will
    run in its own process). ``HandDetector`` imports it as usual and waits for the thread's
    import if it is not done; the thread is joined at exit, so an early exit never tears down a
    half import. Call :func:`wait_for_preload` before forking: a child forked while another
    thread holds an import lock inherits the lock and hangs."""
    global _PRELOAD
    if "mediapipe.tasks.python" in sys.modules or _PRELOAD is not None:
        return
    _quiet_mediapipe()

    def run() -> None:
        with contextlib.suppress(Exception):  # a broken install fails later, with its message
            import mediapipe.tasks.python.vision  # noqa: F401

    _PRELOAD = threading.Thread(target=run, name="dfl-import-mediapipe", daemon=True)
    _PRELOAD.start()
    atexit.register(wait_for_preload)


def wait_for_preload(timeout: float = 60.0) -> None:
    """Wait until a :func:`preload_mediapipe` import has finished (no-op without one)."""
    if _PRELOAD is not None:
        _PRELOAD.join(timeout)


class HandDetector:
    """MediaPipe HandLandmarker on single RGB images; lazy, so construction never touches disk
    or network. Use as a context manager or call :meth:`close` to free MediaPipe's graph.
    """

    def __init__(
        self,
        bundle: str | Path | None = None,
        max_hands: int = 4,
        min_detection_confidence: float = DEFAULT_DETECTION_CONFIDENCE,
        min_presence_confidence: float = DEFAULT_PRESENCE_CONFIDENCE,
        allow_download: bool = True,
        video: bool = False,
    ) -> None:
        if max_hands < 1:
            raise ValueError(f"max_hands must be >= 1, got {max_hands}")
        for name, value in (
            ("min_detection_confidence", min_detection_confidence),
            ("min_presence_confidence", min_presence_confidence),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.bundle = bundle
        self.max_hands = max_hands
        self.min_detection_confidence = min_detection_confidence
        self.min_presence_confidence = min_presence_confidence
        self.allow_download = allow_download
        # VIDEO running mode: MediaPipe tracks landmarks from the previous frame instead of
        # running its palm detector on every frame; each detect() then needs a timestamp.
        self.video = video
        self.bundle_path: Path | None = None
        self._landmarker: Any = None

    def load(self) -> Path:
        """Resolve the bundle (downloading it if allowed) and build MediaPipe's graph."""
        if self._landmarker is not None and self.bundle_path is not None:
            return self.bundle_path
        path = resolve_bundle(self.bundle, allow_download=self.allow_download)
        try:
            validate_bundle(path)  # a clear message beats MediaPipe's on a broken file
        except DetectorUnavailableError as err:
            raise DetectorUnavailableError(f"{err}; {FETCH_HINT}") from err

        _quiet_mediapipe()
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.HandLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.VIDEO if self.video else vision.RunningMode.IMAGE,
            num_hands=self.max_hands,
            min_hand_detection_confidence=self.min_detection_confidence,
            min_hand_presence_confidence=self.min_presence_confidence,
        )
        with _native_stderr_to_log():
            self._landmarker = vision.HandLandmarker.create_from_options(options)
        _close_before_exit(self)
        self.bundle_path = path
        logger.info("hand landmarker loaded from %s", path)
        return path

    def detect(self, image: np.ndarray, timestamp_ms: int | None = None) -> list[HandDetection]:
        """Hands in ``image`` (H, W, 3) uint8 RGB, highest score first. A detector made with
        ``video=True`` needs ``timestamp_ms``, the frame's time, increasing from call to call."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        if self.video and timestamp_ms is None:
            raise ValueError("a video detector needs each frame's timestamp_ms")
        self.load()
        import mediapipe as mp

        height, width = image.shape[:2]
        mp_image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        run = self._landmarker.detect
        if self.video:
            run = functools.partial(self._landmarker.detect_for_video, timestamp_ms=timestamp_ms)
        # The first call logs TFLite delegate and calculator notices from C++, and any call may
        # warn (LiteRT: "Input tensor memory is not aligned", on some frames): into the log.
        with _native_stderr_to_log():
            result = run(mp_image)
        order = list(MEDIAPIPE_TO_INTERHAND)
        detections = []
        for i, normalized in enumerate(result.hand_landmarks):
            xy = np.array([(p.x, p.y) for p in normalized], dtype=np.float64)
            if xy.shape != (NUM_HAND_JOINTS, 2):
                logger.warning("skipping a hand with %d landmarks", len(xy))
                continue
            # Normalized 0 is the image's left/top edge; our pixel 0 is the first pixel's centre.
            pixels = xy * np.array([width, height]) - 0.5
            category = result.handedness[i][0]
            world = None
            if i < len(result.hand_world_landmarks) and result.hand_world_landmarks[i]:
                world = np.array(
                    [(p.x, p.y, p.z) for p in result.hand_world_landmarks[i]], dtype=np.float64
                )[order]
            landmarks = pixels[order]
            detections.append(
                HandDetection(
                    box=points_box(landmarks),
                    handedness=_HANDEDNESS_FROM_MEDIAPIPE[category.category_name],
                    score=float(category.score),
                    landmarks=landmarks,
                    landmarks_3d=world,
                )
            )
        detections.sort(key=lambda d: -d.score)
        return detections

    def close(self) -> None:
        """Release MediaPipe's graph; a later :meth:`detect` rebuilds it."""
        if self._landmarker is not None:
            # Closing logs "DestroyAccelerator" notices from C++ (at exit too): to the log.
            with _native_stderr_to_log():
                self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> HandDetector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def detect_hands(detector: Any, image: np.ndarray | LargeImage) -> list[Any]:
    """``detector.detect`` (a :class:`HandDetector` or an object like it) on a decoded image, or
    on a LargeImage's preview: its hands' ``box`` and ``landmarks`` (pixels) are then mapped
    back to full-image pixels (``landmarks_3d``, metres, stay as they are)."""
    if not isinstance(image, LargeImage):
        return list(detector.detect(image))
    hands = []
    for hand in detector.detect(image.preview):
        corners = image.to_full(np.asarray(hand.box, dtype=np.float64).reshape(2, 2))
        moved: dict[str, Any] = {"box": corners.reshape(4)}
        if getattr(hand, "landmarks", None) is not None:
            moved["landmarks"] = image.to_full(hand.landmarks)
        if dataclasses.is_dataclass(hand) and not isinstance(hand, type):
            hand = dataclasses.replace(hand, **moved)
        else:
            hand = copy.copy(hand)
            for name, value in moved.items():
                setattr(hand, name, value)
        hands.append(hand)
    return hands


__all__ = [
    "DetectorUnavailableError",
    "HandDetection",
    "HandDetector",
    "detect_hands",
]

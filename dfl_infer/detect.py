"""Hand detection: MediaPipe's HandLandmarker turned into hand boxes, handedness and 21 landmarks.

mediapipe >= 0.10.30 (and 1.x) dropped ``mp.solutions`` and ships no hand model, so this module
drives the Tasks API ``HandLandmarker`` (IMAGE running mode) with a ``hand_landmarker.task``
bundle: an uncompressed zip holding ``hand_detector.tflite`` (palm detector) and
``hand_landmarks_detector.tflite`` (21-landmark regressor). The bundle is looked up, in order, at

1. the path given to :class:`HandDetector` / :func:`resolve_bundle`,
2. ``$DFL_HAND_LANDMARKER``,
3. the cache folder (``$DFL_CACHE_DIR``, else ``$XDG_CACHE_HOME/dfl-infer``, else
   ``~/.cache/dfl-infer``), file ``hand_landmarker.task``,
4. a download from Google's model storage, checked against a pinned sha256.

Nothing is resolved or downloaded at import or construction: that happens on the first
:meth:`HandDetector.detect` (or :meth:`HandDetector.load`). Where Google's storage is unreachable,
:func:`fetch_detector` (the ``dfl-infer fetch-detector`` command) can assemble the same kind of
bundle from the mediapipe 0.10.21 wheel on PyPI, which still carries the float32 "full" models.

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
import hashlib
import http.client
import logging
import os
import subprocess
import sys
import tempfile
import threading
import urllib.request
import weakref
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from dfl_infer._atomic import atomic_path
from dfl_infer.crop import points_box
from dfl_infer.joints import MEDIAPIPE_TO_INTERHAND, NUM_HAND_JOINTS

logger = logging.getLogger(__name__)

BUNDLE_FILENAME = "hand_landmarker.task"
ENV_BUNDLE = "DFL_HAND_LANDMARKER"
ENV_CACHE_DIR = "DFL_CACHE_DIR"

# Version 1 of the float16 bundle: a versioned path, so its bytes are not expected to change and a
# pinned hash is safe. The hash is the one that several unrelated public projects pin for this exact
# URL; Google's storage is unreachable from the machine this was written on, so it was not
# recomputed here (the structure check runs as well).
HAND_LANDMARKER_URL = (
    "https://storage.googleapis.com/mediapipe-models/"
    "hand_landmarker/hand_landmarker/float16/1/hand_landmarker.task"
)
HAND_LANDMARKER_SHA256 = "fbc2a30080c3c557093b5ddfc334698132eb341044ccee322ccf8bcf3607cde1"
DOWNLOAD_TIMEOUT_S = 60.0

# The last mediapipe release whose wheel still carries the legacy hand models.
MEDIAPIPE_WHEEL_VERSION = "0.10.21"
# Member of the bundle -> member of the wheel it comes from.
WHEEL_MEMBERS: dict[str, str] = {
    "hand_detector.tflite": "mediapipe/modules/palm_detection/palm_detection_full.tflite",
    "hand_landmarks_detector.tflite": "mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
}
# sha256 of those members in the 0.10.21 wheels (manylinux_2_28_x86_64 and win_amd64 checked).
# Another wheel may legitimately differ, so a mismatch only warns; the structure is always checked.
WHEEL_MEMBER_SHA256: dict[str, str] = {
    "hand_detector.tflite": "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54",
    "hand_landmarks_detector.tflite": (
        "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3"
    ),
}
# pip must find a binary wheel whatever Python runs us: the tflite files are the same in every
# platform's wheel, so ask for one fixed, existing target (0.10.21 has no manylinux_2_17 wheels).
PIP_PLATFORM_ARGS: tuple[str, ...] = (
    "--platform",
    "manylinux_2_28_x86_64",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
)
PIP_TIMEOUT_S = 600.0

# MediaPipe's Tasks label -> the true handedness in an unmirrored photo (see the module docstring
# for how this was checked).
_HANDEDNESS_FROM_MEDIAPIPE: dict[str, str] = {"Right": "right", "Left": "left"}

_FETCH_HINT = (
    "run `dfl-infer fetch-detector` (it downloads the bundle from Google or assembles it from the "
    f"mediapipe=={MEDIAPIPE_WHEEL_VERSION} wheel on PyPI) or set {ENV_BUNDLE} to the path of a "
    f"{BUNDLE_FILENAME} file"
)


class DetectorUnavailableError(RuntimeError):
    """The hand landmarker bundle cannot be found, fetched or assembled."""


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


# ----------------------------------------------------------------------------- bundle lookup


def default_cache_dir() -> Path:
    """``$DFL_CACHE_DIR``, else ``$XDG_CACHE_HOME/dfl-infer``, else ``~/.cache/dfl-infer``."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "dfl-infer"
    return Path.home() / ".cache" / "dfl-infer"


def default_bundle_path() -> Path:
    """Where the bundle lives in the cache folder."""
    return default_cache_dir() / BUNDLE_FILENAME


def resolve_bundle(bundle: str | Path | None = None, allow_download: bool = True) -> Path:
    """Path of a usable ``hand_landmarker.task``: explicit path, env var, cache, then download.

    An explicit path or ``$DFL_HAND_LANDMARKER`` that names a missing file is an error rather
    than a fall-through, so a typo is not silently replaced by another model.
    """
    if bundle is not None:
        path = Path(bundle).expanduser()
        if not path.is_file():
            raise DetectorUnavailableError(f"hand landmarker bundle {path} does not exist")
        return path
    env = os.environ.get(ENV_BUNDLE)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise DetectorUnavailableError(
                f"{ENV_BUNDLE}={env} does not name an existing file; {_FETCH_HINT}"
            )
        return path
    cached = default_bundle_path()
    if cached.is_file():
        return cached
    if not allow_download:
        raise DetectorUnavailableError(
            f"no hand landmarker bundle at {cached} and downloads are disabled; {_FETCH_HINT}"
        )
    try:
        return download_bundle(cached)
    except DetectorUnavailableError as err:
        raise DetectorUnavailableError(
            f"no hand landmarker bundle at {cached} and the download failed ({err}); {_FETCH_HINT}"
        ) from err


def validate_bundle(path: Path) -> None:
    """Check that ``path`` is a bundle MediaPipe can load, raising DetectorUnavailableError.

    MediaPipe memory-maps the members, so the zip must be stored (uncompressed), and each member
    must be a TFLite flatbuffer (file identifier ``TFL3`` at bytes 4-8).
    """
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {info.filename: info for info in zf.infolist()}
            for name in WHEEL_MEMBERS:
                info = infos.get(name)
                if info is None:
                    raise DetectorUnavailableError(f"{path} has no member {name}")
                if info.compress_type != zipfile.ZIP_STORED:
                    raise DetectorUnavailableError(
                        f"{path}: member {name} is compressed; MediaPipe needs a stored zip"
                    )
                with zf.open(info) as member:
                    head = member.read(8)
                if len(head) < 8 or head[4:8] != b"TFL3":
                    raise DetectorUnavailableError(f"{path}: member {name} is not a TFLite model")
    except (zipfile.BadZipFile, OSError) as err:
        raise DetectorUnavailableError(f"{path} is not a readable zip: {err}") from err


def download_bundle(
    dest: Path,
    url: str = HAND_LANDMARKER_URL,
    sha256: str | None = HAND_LANDMARKER_SHA256,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Download the bundle from ``url`` into ``dest`` atomically, checking hash and structure."""
    logger.info("downloading the hand landmarker bundle from %s", url)
    try:
        with atomic_path(dest, suffix=".part") as tmp:
            _download_into(tmp, url, sha256, timeout)
    # URLError and timeouts are OSErrors; a connection cut mid-body is an HTTPException.
    except (OSError, http.client.HTTPException) as err:
        raise DetectorUnavailableError(f"download of {url} failed: {err}") from err
    logger.info("saved the hand landmarker bundle to %s", dest)
    return dest


def _download_into(tmp: Path, url: str, sha256: str | None, timeout: float) -> None:
    """Fetch ``url`` into ``tmp``, checking its hash and its structure as a bundle."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as response, tmp.open("wb") as out:
        for chunk in iter(lambda: response.read(1 << 20), b""):
            digest.update(chunk)
            out.write(chunk)
    if sha256 is not None and digest.hexdigest() != sha256:
        raise DetectorUnavailableError(f"{url} has sha256 {digest.hexdigest()}, expected {sha256}")
    validate_bundle(tmp)


def _wheel_member(src: zipfile.ZipFile, wheel: Path, bundle_name: str, wheel_name: str) -> bytes:
    """The bytes of one model file of a mediapipe wheel (a hash mismatch only warns)."""
    if wheel_name not in src.namelist():
        raise DetectorUnavailableError(
            f"{wheel} has no {wheel_name}; use a mediapipe<=0.10.21 wheel, e.g. "
            f"mediapipe=={MEDIAPIPE_WHEEL_VERSION}"
        )
    data = src.read(wheel_name)
    digest = hashlib.sha256(data).hexdigest()
    if digest != WHEEL_MEMBER_SHA256[bundle_name]:
        logger.warning(
            "%s in %s has sha256 %s, not the known %s one; using it anyway",
            wheel_name,
            wheel.name,
            digest,
            MEDIAPIPE_WHEEL_VERSION,
        )
    return data


def assemble_bundle(wheel: Path, dest: Path) -> Path:
    """Build a stored-zip bundle at ``dest`` (atomically) from a mediapipe wheel's tflite files."""
    wheel = Path(wheel)
    try:
        with atomic_path(dest, suffix=".part") as tmp, zipfile.ZipFile(wheel) as src:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as dst:
                for bundle_name, wheel_name in WHEEL_MEMBERS.items():
                    dst.writestr(
                        zipfile.ZipInfo(bundle_name, date_time=(2025, 1, 1, 0, 0, 0)),
                        _wheel_member(src, wheel, bundle_name, wheel_name),
                    )
            validate_bundle(tmp)
    except (zipfile.BadZipFile, OSError) as err:
        raise DetectorUnavailableError(f"cannot assemble a bundle from {wheel}: {err}") from err
    logger.info("assembled %s from %s", dest, wheel.name)
    return dest


def _pip_download_wheel(folder: Path) -> Path:
    """``pip download`` the mediapipe wheel that still carries the hand models into ``folder``."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        f"mediapipe=={MEDIAPIPE_WHEEL_VERSION}",
        "--no-deps",
        "--only-binary=:all:",
        *PIP_PLATFORM_ARGS,
        "-d",
        str(folder),
    ]
    logger.info("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DetectorUnavailableError(f"pip download failed: {err}") from err
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise DetectorUnavailableError(f"pip download failed (exit {proc.returncode}): {tail}")
    wheels = sorted(folder.glob("mediapipe-*.whl"))
    if not wheels:
        raise DetectorUnavailableError(f"pip download left no mediapipe wheel in {folder}")
    return wheels[0]


def fetch_detector(
    dest: Path | None = None, source: str = "auto", wheel: Path | None = None, force: bool = False
) -> Path:
    """Put a ``hand_landmarker.task`` at ``dest`` (default: the cache folder) and return its path.

    ``dest`` is the file to write; an existing folder gets ``hand_landmarker.task`` inside it.
    ``source``: "google" downloads the official bundle, "pip" assembles one from the
    mediapipe==0.10.21 wheel fetched with pip, "auto" tries google then pip. ``wheel``: assemble
    from a mediapipe wheel already on disk (no network; ``source`` must then be "auto" or "pip").
    A valid bundle already at the target is kept unless ``force``.
    Raises DetectorUnavailableError when every allowed source fails.
    """
    if source not in ("auto", "google", "pip"):
        raise ValueError(f"source must be 'auto', 'google' or 'pip', got {source!r}")
    if wheel is not None and source == "google":
        raise ValueError("wheel= assembles locally; it cannot be combined with source='google'")
    target = default_bundle_path() if dest is None else Path(dest).expanduser()
    if target.is_dir():
        target = target / BUNDLE_FILENAME
    if target.is_file() and not force:
        try:
            validate_bundle(target)
        except DetectorUnavailableError as err:
            logger.warning("replacing the broken bundle at %s (%s)", target, err)
        else:
            logger.info(
                "hand detector bundle already present: %s (--force fetches it again)", target
            )
            return target

    if wheel is not None:
        return assemble_bundle(Path(wheel), target)

    errors: list[str] = []
    if source in ("auto", "google"):
        try:
            return download_bundle(target)
        except DetectorUnavailableError as err:
            if source == "google":
                raise
            logger.warning("%s; falling back to the mediapipe wheel on PyPI", err)
            errors.append(str(err))
    with tempfile.TemporaryDirectory(prefix="dfl-mediapipe-wheel-") as tmp:
        try:
            return assemble_bundle(_pip_download_wheel(Path(tmp)), target)
        except DetectorUnavailableError as err:
            errors.append(str(err))
    raise DetectorUnavailableError("could not fetch the hand detector: " + "; ".join(errors))


# ----------------------------------------------------------------------------- detector


@contextlib.contextmanager
def _native_stderr_to_log() -> Iterator[None]:
    """Route what C++ code writes to file descriptor 2 (TFLite and glog notices, which ignore
    Python's logging) into this module's logger: debug level, or warning for error lines."""
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
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode("utf-8", "replace").splitlines():
                if line.strip():
                    is_error = line.startswith(("E0", "F0", "ERROR")) or "error" in line.lower()
                    logger.log(
                        logging.WARNING if is_error else logging.DEBUG, "mediapipe: %s", line
                    )


def _close_at_exit(ref: weakref.ref) -> None:
    detector = ref()
    if detector is None:
        return
    try:
        detector.close()
    except Exception:  # noqa: BLE001 - at exit, never print a traceback for a closing graph
        landmarker, detector._landmarker = detector._landmarker, None
        if landmarker is not None:
            landmarker._handle = None  # its __del__ would try (and fail) to close again


class HandDetector:
    """MediaPipe HandLandmarker on single RGB images; lazy, so construction never touches disk
    or network. Use as a context manager or call :meth:`close` to free MediaPipe's graph.
    """

    def __init__(
        self,
        bundle: str | Path | None = None,
        max_hands: int = 4,
        min_detection_confidence: float = 0.3,
        min_presence_confidence: float = 0.3,
        allow_download: bool = True,
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
        self.bundle_path: Path | None = None
        self._landmarker: Any = None
        self._first_detect = True

    def load(self) -> Path:
        """Resolve the bundle (downloading it if allowed) and build MediaPipe's graph."""
        if self._landmarker is not None and self.bundle_path is not None:
            return self.bundle_path
        path = resolve_bundle(self.bundle, allow_download=self.allow_download)
        try:
            validate_bundle(path)  # a clear message beats MediaPipe's on a broken file
        except DetectorUnavailableError as err:
            raise DetectorUnavailableError(f"{err}; {_FETCH_HINT}") from err

        # MediaPipe's C++ side logs TFLite/glog chatter to stderr; keep only errors unless the
        # user asked otherwise.
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.HandLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE,
            num_hands=self.max_hands,
            min_hand_detection_confidence=self.min_detection_confidence,
            min_hand_presence_confidence=self.min_presence_confidence,
        )
        with _native_stderr_to_log():
            self._landmarker = vision.HandLandmarker.create_from_options(options)
        # Close before interpreter teardown: MediaPipe dispatches close() through a thread pool
        # that concurrent.futures shuts down at exit, after which its __del__ prints a traceback.
        # threading's exit hooks run before that pool's (they are called in reverse order).
        register = getattr(threading, "_register_atexit", atexit.register)
        register(_close_at_exit, weakref.ref(self))
        self.bundle_path = path
        logger.info("hand landmarker loaded from %s", path)
        return path

    def detect(self, image: np.ndarray) -> list[HandDetection]:
        """Hands in ``image`` (H, W, 3) uint8 RGB, highest score first."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        self.load()
        import mediapipe as mp

        height, width = image.shape[:2]
        mp_image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        if self._first_detect:
            # The first call logs TFLite delegate and calculator notices from C++.
            with _native_stderr_to_log():
                result = self._landmarker.detect(mp_image)
            self._first_detect = False
        else:
            result = self._landmarker.detect(mp_image)
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


__all__ = [
    "BUNDLE_FILENAME",
    "DetectorUnavailableError",
    "HandDetection",
    "HandDetector",
    "assemble_bundle",
    "default_bundle_path",
    "default_cache_dir",
    "download_bundle",
    "fetch_detector",
    "resolve_bundle",
    "validate_bundle",
]

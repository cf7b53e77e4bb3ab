"""The hand detector's model bundle: where ``hand_landmarker.task`` is found, how it is checked,
and how it is fetched (Google's model storage, or assembled from the mediapipe 0.10.21 wheel on
PyPI with pip). ``detect.py`` only asks :func:`resolve_bundle` for a path.

mediapipe >= 0.10.30 (and 1.x) ships no hand model, so the Tasks API ``HandLandmarker`` needs a
bundle: an uncompressed zip holding ``hand_detector.tflite`` (palm detector) and
``hand_landmarks_detector.tflite`` (21-landmark regressor). It is looked up, in order, at

1. the path given to :func:`resolve_bundle` (``HandDetector(bundle=...)``),
2. ``$DFL_HAND_LANDMARKER``,
3. the cache folder (``cache.default_cache_dir()``), file ``hand_landmarker.task``,
4. a download from Google's model storage (``torch.hub.download_url_to_file``: progress bar,
   pinned sha256), unless downloads are disallowed.

Nothing is resolved or downloaded at import. Where Google's storage is unreachable,
:func:`fetch_detector` (the ``dfl-infer fetch-detector`` command) assembles the same kind of
bundle from the mediapipe 0.10.21 wheel, which still carries the float32 "full" models.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import socket
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from dfl_infer._atomic import atomic_path
from dfl_infer.cache import default_cache_dir

logger = logging.getLogger(__name__)

BUNDLE_FILENAME = "hand_landmarker.task"
ENV_BUNDLE = "DFL_HAND_LANDMARKER"

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

FETCH_HINT = (
    "run `dfl-infer fetch-detector` (it downloads the bundle from Google or assembles it from the "
    f"mediapipe=={MEDIAPIPE_WHEEL_VERSION} wheel on PyPI) or set {ENV_BUNDLE} to the path of a "
    f"{BUNDLE_FILENAME} file"
)


class DetectorUnavailableError(RuntimeError):
    """The hand landmarker bundle cannot be found, fetched or assembled."""


def default_bundle_path() -> Path:
    """Where the bundle lives in the cache folder."""
    return default_cache_dir() / BUNDLE_FILENAME


def resolve_bundle(bundle: str | Path | None = None, allow_download: bool = True) -> Path:
    """Path of a usable ``hand_landmarker.task``: explicit path, env var, cache, then fetched
    into the cache on first use as ``fetch_detector`` does (Google's storage, else assembled from
    the mediapipe 0.10.21 wheel on PyPI), with a message saying so.

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
                f"{ENV_BUNDLE}={env} does not name an existing file; {FETCH_HINT}"
            )
        return path
    cached = default_bundle_path()
    if cached.is_file():
        return cached
    if not allow_download:
        raise DetectorUnavailableError(
            f"no hand landmarker bundle at {cached} and downloads are disabled; {FETCH_HINT}"
        )
    logger.info("first use: fetching MediaPipe's hand landmarker model into %s", cached)
    try:
        return fetch_detector(cached)
    except DetectorUnavailableError as err:
        raise DetectorUnavailableError(
            f"no hand landmarker bundle at {cached} and fetching it failed ({err}); {FETCH_HINT}"
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
    progress: bool = True,
) -> Path:
    """Download the bundle from ``url`` into ``dest`` atomically, checking its sha256 and its
    structure; ``progress``: a progress bar on stderr."""
    logger.info("downloading the hand landmarker bundle from %s", url)
    try:
        with atomic_path(dest, suffix=".part") as tmp:
            _download_into(tmp, url, sha256, timeout, progress)
    # URLError and timeouts are OSErrors; a connection cut mid-body is an HTTPException;
    # torch.hub reports a hash mismatch as a RuntimeError.
    except (OSError, http.client.HTTPException, RuntimeError) as err:
        raise DetectorUnavailableError(f"download of {url} failed: {err}") from err
    logger.info("saved the hand landmarker bundle to %s", dest)
    return dest


def _download_into(tmp: Path, url: str, sha256: str | None, timeout: float, progress: bool) -> None:
    """Fetch ``url`` into ``tmp`` with torch.hub's downloader (progress bar, sha256 check), then
    check its structure as a bundle."""
    from torch.hub import download_url_to_file

    # download_url_to_file takes no timeout: bound a stalled connection with the socket default,
    # restored right after (nothing else opens sockets while the bundle is fetched).
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        download_url_to_file(url, str(tmp), hash_prefix=sha256, progress=progress)
    finally:
        socket.setdefaulttimeout(previous)
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


__all__ = [
    "BUNDLE_FILENAME",
    "ENV_BUNDLE",
    "DetectorUnavailableError",
    "assemble_bundle",
    "default_bundle_path",
    "download_bundle",
    "fetch_detector",
    "resolve_bundle",
    "validate_bundle",
]

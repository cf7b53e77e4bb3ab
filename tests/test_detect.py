"""Tests of the hand detector and its model bundle (dfl_infer.bundle): lookup order, offline
download and assembly and their checks, and the detector on a real photo (skipped when the bundle
or the shared photos are absent). No network is used.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from dfl_infer.bundle import (
    BUNDLE_FILENAME,
    ENV_BUNDLE,
    WHEEL_MEMBERS,
    DetectorUnavailableError,
    assemble_bundle,
    default_bundle_path,
    download_bundle,
    fetch_detector,
    resolve_bundle,
    validate_bundle,
)
from dfl_infer.cache import ENV_CACHE_DIR, default_cache_dir
from dfl_infer.detect import HandDetector

WILD_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "wild"
# Two hands, backs to the camera, fingers crossed: the person's right hand on the image left.
PHOTO = WILD_DIR / "intaghand_demo_1.jpg"

# Enough of a TFLite flatbuffer for the structure check: root offset, then the "TFL3" identifier.
FAKE_TFLITE = b"\x1c\x00\x00\x00TFL3" + bytes(56)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No env var, an empty cache folder; returns the cache folder."""
    cache = tmp_path / "cache"
    monkeypatch.delenv(ENV_BUNDLE, raising=False)
    monkeypatch.setenv(ENV_CACHE_DIR, str(cache))
    return cache


def _fake_bundle(path: Path, compression: int = zipfile.ZIP_STORED) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name in WHEEL_MEMBERS:
            zf.writestr(name, FAKE_TFLITE)
    return path


def _fake_wheel(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for wheel_name in WHEEL_MEMBERS.values():
            zf.writestr(wheel_name, FAKE_TFLITE)
        zf.writestr("mediapipe/__init__.py", "")
    return path


# ----------------------------------------------------------------------------- resolution order


def test_resolution_order(clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = _fake_bundle(tmp_path / "explicit" / "a.task")
    from_env = _fake_bundle(tmp_path / "env" / "b.task")
    cached = _fake_bundle(clean_env / BUNDLE_FILENAME)

    assert resolve_bundle(allow_download=False) == cached
    monkeypatch.setenv(ENV_BUNDLE, str(from_env))
    assert resolve_bundle(allow_download=False) == from_env
    assert resolve_bundle(explicit, allow_download=False) == explicit


def test_cache_dir_fallbacks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_CACHE_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_bundle_path() == tmp_path / "xdg" / "dfl-infer" / BUNDLE_FILENAME
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "dfl-infer"


def test_missing_explicit_path_is_an_error_not_a_fallthrough(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_bundle(clean_env / BUNDLE_FILENAME)
    with pytest.raises(DetectorUnavailableError, match="does not exist"):
        resolve_bundle(tmp_path / "typo.task", allow_download=False)
    monkeypatch.setenv(ENV_BUNDLE, str(tmp_path / "typo.task"))
    with pytest.raises(DetectorUnavailableError, match=ENV_BUNDLE):
        resolve_bundle(allow_download=False)


def test_nothing_available_without_download(clean_env: Path) -> None:
    with pytest.raises(DetectorUnavailableError) as info:
        resolve_bundle(allow_download=False)
    message = str(info.value)
    assert "dfl-infer fetch-detector" in message and ENV_BUNDLE in message


def test_first_use_falls_back_to_the_mediapipe_wheel(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Google's storage unreachable, the first use assembles the bundle from the mediapipe
    wheel (pip's download replaced by a local fake wheel) and says so, as fetch-detector does."""
    import dfl_infer.bundle as bundle_mod

    def unreachable(*args: object, **kwargs: object) -> Path:
        raise DetectorUnavailableError("storage.googleapis.com unreachable")

    monkeypatch.setattr(bundle_mod, "download_bundle", unreachable)
    wheel = _fake_wheel(tmp_path / "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl")
    monkeypatch.setattr(bundle_mod, "_pip_download_wheel", lambda folder: wheel)
    monkeypatch.setattr(bundle_mod, "validate_bundle", lambda path: None)
    path = resolve_bundle()
    assert path == clean_env / BUNDLE_FILENAME and zipfile.is_zipfile(path)
    assert resolve_bundle(allow_download=False) == path  # cached from now on


def test_construction_is_lazy(clean_env: Path) -> None:
    detector = HandDetector(allow_download=False)  # nothing to find, yet construction works
    with pytest.raises(DetectorUnavailableError, match="fetch-detector"):
        detector.detect(np.zeros((32, 32, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector.detect(np.zeros((32, 32), dtype=np.uint8))


# ----------------------------------------------------------------------------- fetching offline


def test_assemble_from_wheel_makes_a_stored_zip(
    clean_env: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wheel = _fake_wheel(tmp_path / "mediapipe-0.10.21-py3-none-any.whl")
    with caplog.at_level(logging.INFO, logger="dfl_infer.bundle"):
        out = fetch_detector(wheel=wheel)
    assert out == clean_env / BUNDLE_FILENAME
    with zipfile.ZipFile(out) as zf:
        infos = zf.infolist()
        assert sorted(i.filename for i in infos) == sorted(WHEEL_MEMBERS)
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        assert all(zf.read(i) == FAKE_TFLITE for i in infos)
    assert "assembled" in caplog.text and "sha256" in caplog.text  # fake bytes: hash warning
    assert list(clean_env.glob("*.part")) == []  # the temp file was renamed away
    assert resolve_bundle(allow_download=False) == out


def test_fetch_into_explicit_folder(tmp_path: Path) -> None:
    wheel = _fake_wheel(tmp_path / "w.whl")
    folder = tmp_path / "dest"
    folder.mkdir()
    assert fetch_detector(dest=folder, source="pip", wheel=wheel) == folder / BUNDLE_FILENAME
    with pytest.raises(ValueError):
        fetch_detector(dest=folder, source="google", wheel=wheel)
    with pytest.raises(ValueError):
        fetch_detector(dest=folder, source="ftp")


def test_existing_bundle_is_kept_unless_forced(tmp_path: Path) -> None:
    wheel = _fake_wheel(tmp_path / "w.whl")
    target = tmp_path / "hand_landmarker.task"
    fetch_detector(dest=target, wheel=wheel)
    before = target.stat().st_mtime_ns
    # No wheel and no network needed: the valid bundle already there is returned as is.
    assert fetch_detector(dest=target, source="google") == target
    assert target.stat().st_mtime_ns == before
    target.write_bytes(b"broken")  # an invalid file is replaced
    fetch_detector(dest=target, wheel=wheel)
    validate_bundle(target)
    fetch_detector(dest=target, wheel=wheel, force=True)
    validate_bundle(target)


def test_wheel_without_models_is_refused(tmp_path: Path) -> None:
    wheel = tmp_path / "mediapipe-1.2.2.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("mediapipe/__init__.py", "")
    with pytest.raises(DetectorUnavailableError, match="0.10.21"):
        assemble_bundle(wheel, tmp_path / "out.task")
    assert not (tmp_path / "out.task").exists()


def test_validate_rejects_compressed_and_non_tflite(tmp_path: Path) -> None:
    validate_bundle(_fake_bundle(tmp_path / "ok.task"))
    with pytest.raises(DetectorUnavailableError, match="compressed"):
        validate_bundle(_fake_bundle(tmp_path / "deflated.task", zipfile.ZIP_DEFLATED))
    with zipfile.ZipFile(tmp_path / "junk.task", "w") as zf:
        for name in WHEEL_MEMBERS:
            zf.writestr(name, b"<html>not a model</html>")
    with pytest.raises(DetectorUnavailableError, match="not a TFLite"):
        validate_bundle(tmp_path / "junk.task")
    (tmp_path / "text.task").write_text("hello")
    with pytest.raises(DetectorUnavailableError, match="not a readable zip"):
        validate_bundle(tmp_path / "text.task")


def test_download_checks_hash_and_writes_atomically(tmp_path: Path) -> None:
    # A file:// URL exercises the real urllib code path without a network.
    source = _fake_bundle(tmp_path / "served.task")
    good = hashlib.sha256(source.read_bytes()).hexdigest()
    dest = tmp_path / "cache" / BUNDLE_FILENAME
    assert download_bundle(dest, url=source.as_uri(), sha256=good, progress=False) == dest
    assert dest.read_bytes() == source.read_bytes()
    assert socket.getdefaulttimeout() is None  # the download's timeout was scoped to it

    other = tmp_path / "cache2" / BUNDLE_FILENAME
    with pytest.raises(DetectorUnavailableError, match="expected"):
        download_bundle(other, url=source.as_uri(), sha256="0" * 64)
    assert not other.exists() and list(other.parent.iterdir()) == []
    with pytest.raises(DetectorUnavailableError, match="failed"):
        download_bundle(other, url=(tmp_path / "absent.task").as_uri(), sha256=good)


# ----------------------------------------------------------------------------- real detector


@pytest.fixture(scope="module")
def detector() -> Iterator[HandDetector]:
    try:
        bundle = resolve_bundle(allow_download=False)
    except DetectorUnavailableError as err:
        pytest.skip(f"no hand landmarker bundle ({err})")
    if not PHOTO.is_file():
        pytest.skip(f"shared photo {PHOTO} is absent")
    det = HandDetector(bundle=bundle, allow_download=False)
    yield det
    det.close()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _photo() -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(PHOTO).convert("RGB"))


def test_detector_on_real_photo(detector: HandDetector) -> None:
    image = _photo()
    height, width = image.shape[:2]
    hands = detector.detect(image)
    assert len(hands) >= 1
    for hand in hands:
        assert hand.handedness in ("right", "left")
        assert 0.0 <= hand.score <= 1.0
        assert hand.landmarks.shape == (21, 2) and hand.landmarks.dtype == np.float64
        assert np.isfinite(hand.landmarks).all()
        x0, y0, x1, y1 = hand.box
        assert 0 < x1 - x0 < width and 0 < y1 - y0 < height
        assert -0.1 * width < x0 and x1 < 1.1 * width and -0.1 * height < y0 and y1 < 1.1 * height
        np.testing.assert_allclose(hand.box[:2], hand.landmarks.min(axis=0))
        np.testing.assert_allclose(hand.box[2:], hand.landmarks.max(axis=0))
        assert hand.landmarks_3d is not None and hand.landmarks_3d.shape == (21, 3)
        assert np.abs(hand.landmarks_3d).max() < 0.3  # metres, around the hand's centre
        assert set(hand.to_dict()) == {"box", "handedness", "score", "landmarks", "landmarks_3d"}
    # In this photo the person's right hand is on the image left, the left hand on the right.
    by_side = sorted(hands, key=lambda h: h.box[0] + h.box[2])
    assert [h.handedness for h in by_side] == ["right", "left"]


def test_handedness_flips_with_the_image(detector: HandDetector) -> None:
    image = _photo()
    width = image.shape[1]
    original = detector.detect(image)
    mirrored = detector.detect(np.ascontiguousarray(image[:, ::-1]))
    assert len(original) == len(mirrored) >= 1
    # Pixel centres mirror as x -> W - 1 - x in our convention.
    back = [
        np.array([width - 1 - m.box[2], m.box[1], width - 1 - m.box[0], m.box[3]]) for m in mirrored
    ]
    for hand in original:
        ious = [_iou(b, hand.box) for b in back]
        k = int(np.argmax(ious))
        # MediaPipe is not exactly mirror-equivariant (the crossed fingers hide each other).
        assert ious[k] >= 0.5
        assert mirrored[k].handedness != hand.handedness


def test_native_stderr_goes_to_the_log_and_other_lines_stay_on_stderr(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Every detect call routes file descriptor 2 into the log; a native notice (glog or TFLite
    form) becomes a log record, anything else written meanwhile (another thread's line) is
    put back on stderr."""
    import os

    from dfl_infer.detect import _native_stderr_to_log

    caplog.set_level(logging.DEBUG, logger="dfl_infer.detect")
    with _native_stderr_to_log():
        os.write(2, b"W0000 00:00:1.5 inference_runner_litert.cc:1433] Input tensor not aligned\n")
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"E0000 00:00:1.6 graph.cc:1] a native failure\n")
        os.write(2, b"a line from another thread\n")
    err = capfd.readouterr().err
    assert err == "a line from another thread\n"
    records = {r.getMessage(): r.levelno for r in caplog.records}
    assert records == {
        "mediapipe: W0000 00:00:1.5 inference_runner_litert.cc:1433] Input tensor not aligned": (
            logging.DEBUG
        ),
        "mediapipe: INFO: Created TensorFlow Lite XNNPACK delegate for CPU.": logging.DEBUG,
        "mediapipe: E0000 00:00:1.6 graph.cc:1] a native failure": logging.WARNING,
    }

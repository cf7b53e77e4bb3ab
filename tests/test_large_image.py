"""Very large photos (issue 14, item 8): a file over ``LARGE_IMAGE_PIXELS`` is opened as a
``LargeImage``. The detector sees a bounded preview and its hands come back in full-image pixels;
the network's crops, cut from reduced decodes around them, equal crops of the whole decoded image
(EXIF orientation included); overlays are drawn on the preview. Small files stand in for 100 MP
ones by lowering the thresholds (``max_pixels``, ``preview_pixels``, or the module constants)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

import dfl_infer.image as image_module
from dfl_infer.crop import make_crop
from dfl_infer.detect import HandDetection, detect_hands
from dfl_infer.files import predict_files
from dfl_infer.image import LargeImage, load_image, open_image
from dfl_infer.predictor import DFLPredictor
from dfl_infer.preprocess import crop_batch
from dfl_infer.vis import OverlayFolder, draw_prediction


def _photo(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """Smooth content with edges (upscaled noise plus rectangles): resampling differences stay
    small, misplaced pixels do not."""
    rng = np.random.default_rng(seed)
    rgb = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (width, height))
    for _ in range(6):
        x, y = int(rng.integers(0, width - 60)), int(rng.integers(0, height - 60))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.rectangle(rgb, (x, y), (x + 50, y + 40), colour, -1)
    return rgb


def _save(path: Path, rgb: np.ndarray, orientation: int = 1) -> Path:
    img = Image.fromarray(rgb)
    exif = img.getexif()
    if orientation != 1:
        exif[0x0112] = orientation
    if path.suffix == ".png":
        img.save(path, exif=exif.tobytes())
    else:
        img.save(path, quality=95, exif=exif.tobytes())
    return path


class Recorder:
    """A detector that records the shape it was given and finds one hand whose landmarks lie on
    a line across the middle of whatever image it sees."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, rgb: np.ndarray) -> list[HandDetection]:
        self.shapes.append(rgb.shape)
        h, w = rgb.shape[:2]
        t = np.linspace(0.3, 0.6, 21)[:, None]
        landmarks = np.concatenate([t * w, t * h], axis=1)
        box = np.array([*landmarks.min(axis=0), *landmarks.max(axis=0)])
        return [HandDetection(box, "right", 0.9, landmarks, None)]


def test_ordinary_files_decode_whole(tmp_path) -> None:
    path = _save(tmp_path / "a.jpg", _photo())
    out = open_image(path)
    assert isinstance(out, np.ndarray) and np.array_equal(out, load_image(path))


def test_detector_sees_a_bounded_preview_and_hands_map_back(tmp_path) -> None:
    path = _save(tmp_path / "big.jpg", _photo(900, 1200))
    large = open_image(path, max_pixels=0, preview_pixels=300 * 225)
    assert isinstance(large, LargeImage)
    assert large.shape == (900, 1200, 3) and large.preview.shape == (225, 300, 3)
    detector = Recorder()
    (hand,) = detect_hands(detector, large)
    assert detector.shapes == [(225, 300, 3)]
    # Preview pixel centre x -> full-image pixel centre (x + 0.5) * 4 - 0.5, exactly.
    (seen,) = Recorder().detect(large.preview)
    expected = (seen.landmarks + 0.5) * 4.0 - 0.5
    np.testing.assert_allclose(hand.landmarks, expected, atol=1e-9)
    np.testing.assert_allclose(hand.box, [*expected.min(axis=0), *expected.max(axis=0)], atol=1e-9)
    np.testing.assert_allclose(large.to_preview(large.to_full(seen.landmarks)), seen.landmarks)
    # The preview is the whole image, reduced.
    full = load_image(path)
    reduced = cv2.resize(full, (300, 225), interpolation=cv2.INTER_AREA)
    assert np.abs(large.preview.astype(int) - reduced).mean() < 3


def test_predictor_on_a_large_file(tiny_weights, tmp_path, monkeypatch) -> None:
    """Through the predictor: the detector is fed the bounded preview, never the whole image,
    and the result is in full-image pixels."""
    monkeypatch.setattr(image_module, "LARGE_IMAGE_PIXELS", 100_000)
    monkeypatch.setattr(image_module, "PREVIEW_PIXELS", 200 * 150)
    path = _save(tmp_path / "big.jpg", _photo(600, 800))
    detector = Recorder()
    p = DFLPredictor(tiny_weights, device="cpu", detector=detector, presence_threshold=0.0)
    pred = p.predict(path)
    assert detector.shapes == [(150, 200, 3)]
    assert (pred.width, pred.height) == (800, 600)
    # The first crop is planned around the detector's box, mapped to full-image pixels.
    large = open_image(path)
    assert isinstance(large, LargeImage)
    seen = Recorder().detect(large.preview)[0].box.reshape(2, 2)
    (task,) = p._plan(0, large, None)
    crop_centre = task.crop.box.reshape(2, 2).mean(axis=0)
    np.testing.assert_allclose(crop_centre, large.to_full(seen).mean(axis=0), atol=1e-9)
    # The same numbers as from the whole decoded image, up to resampling.
    same = DFLPredictor(tiny_weights, device="cpu", detector=detector, presence_threshold=0.0)
    whole = same.predict(load_image(path))
    assert len(whole.hands) == len(pred.hands)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_lazy_crops_equal_crops_of_the_whole_image(tmp_path, orientation, suffix) -> None:
    path = _save(tmp_path / f"o{orientation}{suffix}", _photo(), orientation)
    full = load_image(path)
    large = open_image(path, max_pixels=0, preview_pixels=40 * 30)
    assert isinstance(large, LargeImage) and large.shape == full.shape
    h, w = full.shape[:2]
    crops = [
        make_crop([w * 0.3, h * 0.2, w * 0.3 + 150, h * 0.2 + 170], 128),  # full resolution
        make_crop([-40, -30, 60, 90], 128),  # partly outside the image
        make_crop([w + 50, 10, w + 150, 110], 128),  # wholly outside it: black
        make_crop([w * 0.5, h * 0.5, w * 0.5 + 80, h * 0.5 + 60], 128, rotation=30),
    ]
    lazy = crop_batch([large] * len(crops), crops)
    whole = crop_batch([full] * len(crops), crops)
    diff = np.abs(lazy.astype(int) - whole)
    # Bilinear weights rounded to 1/32 pixel may differ where the offset moved them.
    assert diff.max() <= 2 and diff.mean() < 0.01
    assert (lazy[2] == 0).all()


def test_coarse_crops_come_from_reduced_decodes(tmp_path, monkeypatch) -> None:
    """A crop that needs 1/4 of the resolution is cut from a JPEG decoded at 1/2 (at most twice
    what it needs) and still matches the whole image's crop up to resampling."""
    path = _save(tmp_path / "big.jpg", _photo(960, 1280), 6)
    full = load_image(path)
    large = open_image(path, max_pixels=0, preview_pixels=40 * 30)
    assert isinstance(large, LargeImage)
    decoded_sizes = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = draft(self, mode, size)
        decoded_sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    crop = make_crop([200, 300, 680, 780], 128, scale=1.0)  # 128 / 480: needs 0.27
    (lazy,) = crop_batch([large], [crop])
    assert decoded_sizes == [(640, 480)]  # the stored 1280 x 960, halved
    (whole,) = crop_batch([full], [crop])
    assert np.abs(lazy.astype(int) - whole).mean() < 4


def test_overlay_of_a_large_image(tiny_weights, tmp_path) -> None:
    """Drawn on the preview, at the joints' preview positions: no full-size copy."""
    path = _save(tmp_path / "big.jpg", _photo(600, 800))
    large = open_image(path, max_pixels=0, preview_pixels=200 * 150)
    assert isinstance(large, LargeImage)
    p = DFLPredictor(tiny_weights, device="cpu", detector=Recorder(), presence_threshold=0.0)
    pred = p.predict(large)
    drawn = draw_prediction(large, pred)
    assert drawn.shape == large.preview.shape and (drawn != large.preview).any()
    # The same picture as the prediction moved to preview pixels drawn on the preview array.
    moved = replace(
        pred,
        hands=tuple(replace(h, joints_2d=large.to_preview(h.joints_2d)) for h in pred.hands),
        crops=tuple(large.to_preview(c.reshape(2, 2)).reshape(4) for c in pred.crops),
    )
    assert np.array_equal(drawn, draw_prediction(large.preview, moved))
    written = OverlayFolder(tmp_path / "vis").write(path, large, pred)
    assert Image.open(written).size == (200, 150)


def test_predict_files_keeps_the_full_size(tiny_weights, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(image_module, "LARGE_IMAGE_PIXELS", 400_000)  # 800 x 600 is over it
    paths = [_save(tmp_path / "big.jpg", _photo(600, 800)), _save(tmp_path / "s.jpg", _photo())]
    p = DFLPredictor(tiny_weights, device="cpu", detector=Recorder(), presence_threshold=0.0)
    big, small = predict_files(p, paths)
    assert isinstance(big.image, LargeImage) and isinstance(small.image, np.ndarray)
    assert big.error is None and (big.to_dict()["width"], big.to_dict()["height"]) == (800, 600)
    assert small.to_dict()["width"] == 640

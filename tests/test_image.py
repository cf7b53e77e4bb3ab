"""Image inputs: paths, PIL, numpy; grayscale, RGBA, 16-bit, EXIF orientation; clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dfl_infer.image import ImageError, load_image


def test_numpy_variants() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    assert np.array_equal(load_image(rgb), rgb)
    gray = rgb[:, :, 0]
    assert np.array_equal(load_image(gray), np.repeat(gray[:, :, None], 3, axis=2))
    assert np.array_equal(load_image(rgb.astype(np.uint16) * 257), rgb)
    assert np.array_equal(load_image(rgb / 255.0), rgb)
    rgba = np.concatenate([rgb, np.full((4, 5, 1), 255, np.uint8)], axis=2)
    assert np.array_equal(load_image(rgba), rgb)
    rgba[:, :, 3] = 0
    assert (load_image(rgba) == 255).all()  # fully transparent -> white


def test_files(tmp_path) -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert np.array_equal(load_image(tmp_path / "a.png"), rgb)
    assert np.array_equal(load_image(str(tmp_path / "a.png")), rgb)
    g16 = (rng.integers(0, 256, (6, 8)) * 257).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    out = load_image(tmp_path / "g16.png")
    assert out.shape == (6, 8, 3) and np.array_equal(out[:, :, 0], (g16 // 257).astype(np.uint8))
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(load_image(tmp_path / "rgba.png"), rgb)


def test_exif_orientation(tmp_path) -> None:
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[:, :5] = 255  # white on the left
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    out = load_image(tmp_path / "rot.jpg")
    assert out.shape == (20, 10, 3)
    assert out[:5].mean() > 200 and out[-5:].mean() < 50  # the left side is now on top


def test_errors(tmp_path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ImageError, match="not an image file"):
        load_image(tmp_path / "notes.txt")
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(good)
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:60])
    with pytest.raises(ImageError, match="cut.png"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)
    with pytest.raises(ImageError, match="got int"):
        load_image(3)
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((4, 4, 2)))
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.full((4, 4, 3), np.nan))

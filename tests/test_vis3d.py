"""The 3D view page: self-contained, its data strict and escaped, written by ``--vis3d`` behind the
output checks, and drawn by a real browser (headless Chromium) where one is installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfl_infer.cli import main
from dfl_infer.lift import Intrinsics
from dfl_infer.results import Hand, Prediction
from dfl_infer.vis import HAND_COLOURS
from dfl_infer.vis3d import View3D, is_view3d, write_view3d


def _hand(handedness: str, centre: tuple[float, float, float]) -> Hand:
    """A hand-sized chain of 21 joints (about 10 cm) around ``centre`` (mm, camera frame)."""
    t = np.linspace(0.0, 1.0, 21)
    offsets = np.stack([25 * np.sin(7 * t), -50 + 100 * t, 10 * t], axis=1)
    joints = np.asarray(centre) + offsets
    joints_2d = 320 + joints[:, :2] / joints[:, 2:] * 640
    return Hand(handedness, 0.9, joints_2d, joints, joints - joints[-1])


def _prediction(hands: list[Hand]) -> Prediction:
    return Prediction(tuple(hands), 640, 480, Intrinsics.default(640, 480), None)


# The right hand near and on the camera's right, the left hand 30 cm farther and on its left.
NEAR_RIGHT = _hand("right", (100.0, 0.0, 400.0))
FAR_LEFT = _hand("left", (-100.0, 0.0, 700.0))


def _data(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    assert found is not None
    return json.loads(found.group(1))


def test_page_is_self_contained_and_its_data_strict(tmp_path) -> None:
    nan_hand = Hand("left", 0.5, np.zeros((21, 2)), np.full((21, 3), np.nan), np.zeros((21, 3)))
    frames = [_prediction([NEAR_RIGHT, nan_hand]), None, _prediction([])]
    labels = ["a </script><script>alert(1)</script> & b", "failed", "empty"]
    path = write_view3d(tmp_path / "sub" / "view.html", frames, labels)
    page = path.read_text()
    # Nothing fetched from anywhere: no external script, style, font or image.
    assert not re.search(r"https?://|<link|\bsrc=|@import|url\(", page)
    assert page.count("</script>") == 2  # the data's and the viewer's: the label did not end one
    data = _data(page)
    assert [f["label"] for f in data["frames"]] == labels
    (hand,) = data["frames"][0]["hands"]  # the hand without finite 3D joints is left out
    assert hand["handedness"] == "right" and hand["confidence"] is None
    np.testing.assert_allclose(hand["joints"], NEAR_RIGHT.joints_3d, atol=0.051)  # 0.1 mm
    assert data["frames"][1]["hands"] == [] and data["frames"][2]["hands"] == []
    assert data["colours"] == {"right": "#ff8c00", "left": "#1e78ff"}
    assert is_view3d(path) and not is_view3d(tmp_path / "missing.html")
    assert [p.name for p in path.parent.iterdir()] == ["view.html"]  # no temporary file left
    with pytest.raises(ValueError, match="2 labels for 3 frames"):
        write_view3d(tmp_path / "x.html", frames, labels[:2])
    view = View3D()
    view.add(_prediction([FAR_LEFT]))
    assert len(_data(view.html())["frames"]) == 1


def test_cli_vis3d_writes_one_frame_per_image(tiny_weights, tmp_path, capsys) -> None:
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.png"):
        Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(d / name)
    page = tmp_path / "out" / "view.html"
    args = [str(d), "--weights", str(tiny_weights), "--box", "10,10,100,100", "--device", "cpu"]
    code = main(
        [*args, "--threshold", "0", "--out", str(tmp_path / "j.json"), "--vis3d", str(page)]
    )
    assert code == 0
    data = _data(page.read_text())
    assert [Path(f["label"]).name for f in data["frames"]] == ["a.jpg", "b.png"]
    assert all(len(f["hands"]) == 2 for f in data["frames"])
    conf = data["frames"][0]["hands"][0]["confidence"]
    assert len(conf) == 21 and all(0 < c <= 1 for c in conf)
    # Refused before any work (exit 2, one line): an input image, --out itself, a folder, a
    # name that is not .html, a file that is not ours (unless --force).
    (tmp_path / "foreign.html").write_text("<html>someone else's page</html>")
    for target, message in [
        (d / "a.jpg", "give an HTML file name"),
        (tmp_path / "j.json", "give an HTML file name"),
        (tmp_path, "give an HTML file name"),
        (tmp_path / "foreign.html", "is not a dfl-infer 3D view"),
    ]:
        code = main([*args, "--out", str(tmp_path / "k.json"), "--vis3d", str(target), "-q"])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "foreign.html").read_text() == "<html>someone else's page</html>"
    same = tmp_path / "same.html"
    code = main([*args, "--out", str(same), "--vis3d", str(same), "-q"])
    assert code == 2 and "also where --out" in capsys.readouterr().err
    code = main([*args, "--out", str(tmp_path / "k.json"), "--vis3d", str(page), "-q"])
    assert code == 0  # our own page is replaced


def _chromium() -> str:
    for name in (os.environ.get("DFL_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name) if name else None
        if found:
            return found
    pytest.skip(
        "no Chromium on this machine (apt-get install chromium, or set DFL_CHROMIUM): the 3D "
        "view is not checked in a browser here"
    )


def _screenshot(page: Path, fragment: str, tmp_path: Path) -> np.ndarray:
    shot = tmp_path / f"shot-{len(list(tmp_path.glob('shot-*')))}.png"
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",  # tests may run as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=800,600",
        f"--screenshot={shot}",
        page.resolve().as_uri() + fragment,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    return np.asarray(Image.open(shot).convert("RGB"))


def _pixels(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """(N, 2) x, y of the pixels within a few levels of ``colour`` (line cores are exact)."""
    near = np.abs(image.astype(int) - np.array(colour)).max(-1) <= 12
    return np.argwhere(near)[:, ::-1]


def test_browser_draws_the_skeletons_in_3d(tmp_path) -> None:
    _chromium()
    page = write_view3d(tmp_path / "view.html", [None, _prediction([NEAR_RIGHT, FAR_LEFT])])
    # The camera's view of frame 2: the right hand on the right, the left on the left.
    camera = _screenshot(page, "#frame=1", tmp_path)
    orange, blue = _pixels(camera, HAND_COLOURS["right"]), _pixels(camera, HAND_COLOURS["left"])
    assert len(orange) > 300 and len(blue) > 300, (len(orange), len(blue))
    assert orange[:, 0].mean() > blue[:, 0].mean() + 50
    # Turned 90 degrees (a side view, depth to the right): the near right hand is now left of the
    # far left hand. The page projects the joints itself: this is its 3D.
    side = _screenshot(page, "#frame=1&yaw=90", tmp_path)
    orange, blue = _pixels(side, HAND_COLOURS["right"]), _pixels(side, HAND_COLOURS["left"])
    assert len(orange) > 300 and len(blue) > 300, (len(orange), len(blue))
    assert orange[:, 0].mean() + 100 < blue[:, 0].mean()
    # Frame 1 has no hand, nor has a page without hands: none of the hands' colours anywhere.
    empty = write_view3d(tmp_path / "empty.html", [_prediction([])])
    for image in (_screenshot(page, "#frame=0", tmp_path), _screenshot(empty, "", tmp_path)):
        for colour in HAND_COLOURS.values():
            assert len(_pixels(image, colour)) == 0
        assert image.std() > 0  # the page did draw (its floor grid and text)

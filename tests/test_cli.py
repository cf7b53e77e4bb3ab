"""The dfl-infer CLI end to end on a temp folder: schema, bad inputs, exit codes, atomic output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfl_infer.cli import main


@pytest.fixture
def folder(tmp_path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.png"):
        Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)).save(d / name)
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (d / "notes.txt").write_text("not an image and not picked up from a folder")
    return d


def _run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dfl_infer.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    ("options", "hand_pass", "flip_test"),
    [([], True, False), (["--flip-test"], True, True), (["--no-hand-pass"], False, False)],
)
def test_the_model_entry_says_how_it_ran(
    tiny_weights, folder, tmp_path, options, hand_pass, flip_test
) -> None:
    """``--flip-test`` and ``--no-hand-pass`` reach the predictor, and the JSON says so."""
    out = tmp_path / "j.json"
    args = [str(folder / "a.jpg"), "--weights", str(tiny_weights), "--box", "40,30,200,190"]
    code = main([*args, "--out", str(out), "--device", "cpu", "-q", *options])
    assert code == 0
    model = json.loads(out.read_text())["model"]
    assert (model["hand_pass"], model["flip_test"]) == (hand_pass, flip_test)


def test_folder_with_bad_files(tiny_weights, folder, tmp_path) -> None:
    out = tmp_path / "res" / "joints.json"
    vis = tmp_path / "vis"
    code = main(
        [
            str(folder),
            str(folder / "missing.jpg"),
            str(folder / "notes.txt"),
            "--weights",
            str(tiny_weights),
            "--box",
            "40,30,200,190",
            "--out",
            str(out),
            "--vis",
            str(vis),
            "--device",
            "cpu",
            "--batch-size",
            "2",
            "--threshold",
            "0",
            "--focal",
            "700",
            "-q",
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert data["schema_version"] == 1 and len(data["joint_names"]) == 21
    assert data["joint_names"][-1] == "wrist"
    assert data["model"]["backbone"] == "resnet10"
    by_name = {Path(r["path"]).name: r for r in data["images"]}
    assert list(by_name) == ["a.jpg", "b.png", "broken.jpg", "missing.jpg", "notes.txt"]
    for name in ("a.jpg", "b.png"):
        rec = by_name[name]
        assert rec["error"] is None and (rec["width"], rec["height"]) == (320, 240)
        assert rec["intrinsics"] == {
            "fx": 700.0,
            "fy": 700.0,
            "cx": 159.5,
            "cy": 119.5,
            "assumed": False,
        }
        assert len(rec["hands"]) == 2
        for hand in rec["hands"]:
            assert hand["handedness"] in ("right", "left")
            assert np.asarray(hand["joints_2d"]).shape == (21, 2)
            assert np.asarray(hand["joints_3d"]).shape == (21, 3)
            assert np.asarray(hand["joints_3d_rel"]).shape == (21, 3)
    for name, msg in (
        ("broken.jpg", "cannot read image"),
        ("missing.jpg", "no such file"),
        ("notes.txt", "not an image file"),
    ):
        assert msg in by_name[name]["error"] and by_name[name]["hands"] == []
    assert sorted(p.name for p in vis.iterdir()) == ["a.jpg", "b.jpg"]
    assert [p.name for p in out.parent.iterdir()] == ["joints.json"]  # no temp files left


def test_nothing_succeeds_exit_1(tiny_weights, tmp_path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    out = tmp_path / "j.json"
    res = _run_cli(
        str(bad), "--weights", str(tiny_weights), "--box", "0,0,10,10", "--out", str(out), "-q"
    )
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert json.loads(out.read_text())["images"][0]["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x.jpg", "--box", "1,2,3"], "box must be"),
        (["x.jpg", "--focal", "-3"], "positive"),
        (["x.jpg", "--batch-size", "0"], "positive integer"),
        (["x.jpg", "--weights", "/no/such/folder"], "weights folder not found"),
    ],
)
def test_invalid_arguments_exit_2_without_traceback(tmp_path, args, message) -> None:
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.jpg")
    res = _run_cli(*args, cwd=tmp_path)
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr


def test_failed_run_leaves_existing_output_untouched(tmp_path, folder) -> None:
    out = tmp_path / "joints.json"
    out.write_text('{"previous": true}')
    res = _run_cli(str(folder), "--weights", str(tmp_path / "none"), "--out", str(out))
    assert res.returncode == 2
    assert json.loads(out.read_text()) == {"previous": True}
    assert sorted(os.listdir(tmp_path)) == ["imgs", "joints.json"]


def test_stdout_output(tiny_weights, folder) -> None:
    res = _run_cli(
        str(folder / "a.jpg"),
        "--weights",
        str(tiny_weights),
        "--box",
        "0,0,100,100",
        "--device",
        "cpu",
        "-q",
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["images"][0]["error"] is None


def test_examples_with_real_detector(tiny_weights, tmp_path) -> None:
    """The examples through MediaPipe and the crop planning (random weights: no accuracy)."""
    from dfl_infer.bundle import DetectorUnavailableError, resolve_bundle

    try:
        resolve_bundle(allow_download=False)
    except DetectorUnavailableError as exc:
        pytest.skip(f"no hand_landmarker.task bundle here ({exc}); run `dfl-infer fetch-detector`")
    examples = Path(__file__).resolve().parent.parent / "examples"
    out = tmp_path / "joints.json"
    options = ["--weights", str(tiny_weights), "--device", "cpu", "--threshold", "0", "-q"]
    code = main([str(examples), *options, "--out", str(out), "--workers", "0"])
    assert code == 0
    images = json.loads(out.read_text())["images"]
    assert len(images) == 6 and all(r["error"] is None for r in images)
    # With lone_hand_widen=2 the first pass sees every true hand, also the one MediaPipe misses
    # in two_hands.jpg (the second pass re-crops on the network's joints, which random weights
    # make meaningless). The default crop (widen 1) overlaps it, for the presence head to see.
    from dfl_infer import DFLPredictor
    from dfl_infer.image import load_image

    predictor = DFLPredictor(tiny_weights, device="cpu", lone_hand_widen=2.0)
    for rec in images:
        gt_path = examples / Path(rec["path"]).name.replace(".jpg", ".gt.json")
        if not gt_path.is_file():
            continue  # the real photos have no ground truth
        gt = json.loads(gt_path.read_text())
        tasks = predictor._plan(0, load_image(rec["path"]), None)
        for hand in gt["hands"]:
            joints = np.asarray(hand["joints_2d"])
            inside = [
                bool(((joints >= t.crop.box[:2]) & (joints <= t.crop.box[2:])).all()) for t in tasks
            ]
            assert any(inside), (rec["path"], hand["handedness"])
    predictor.close()
    # Detection in the decoding worker processes gives the same result as in the main process.
    out2 = tmp_path / "joints_workers.json"
    code = main([str(examples), *options, "--out", str(out2), "--workers", "2"])
    assert code == 0
    assert json.loads(out2.read_text())["images"] == images


def test_worker_dataset_detects_and_falls_back(folder) -> None:
    """In a worker, each image is decoded and its hands detected; a detector failure leaves the
    image to the main process (detections None) and a bad file becomes an error entry."""
    from dfl_infer.files import _DecodeDataset

    class FailsOnce:
        calls = 0

        def detect(self, rgb):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("MediaPipe fell over")
            return ["a hand"]

    paths = [folder / "a.jpg", folder / "b.png", folder / "broken.jpg"]
    ds = _DecodeDataset(paths, bundle=Path("unused.task"))
    ds._detector = FailsOnce()
    rgb, dets, err = ds[0]
    assert rgb.shape == (240, 320, 3) and dets is None and err is None  # left to the main process
    assert ds[1][1:] == (["a hand"], None)
    rgb, dets, err = ds[2]
    assert rgb is None and dets is None and "cannot read image" in err
    assert ds._detector.calls == 2
    # Without a bundle the worker only decodes.
    assert _DecodeDataset(paths[:1])[0][1] is None


_FORK_AFTER_PRELOAD = r"""
import sys
from pathlib import Path
from dfl_infer.detect import preload_mediapipe
from dfl_infer.files import _decoded_chunks
preload_mediapipe()  # MediaPipe importing in a thread while the workers are forked
paths = sorted(Path(sys.argv[1]).glob("*.jpg"))[:4]
chunks = list(_decoded_chunks(paths, 2, 2))
print(sum(len(c) for _, c in chunks), all(rgb is not None for _, c in chunks for rgb, _, _ in c))
"""


def test_workers_fork_safely_during_the_mediapipe_preload() -> None:
    """Decoding workers forked while MediaPipe is being imported in a background thread must not
    inherit its import lock (they hung before the pool waited for the import)."""
    import subprocess
    import sys
    from pathlib import Path

    examples = Path(__file__).resolve().parent.parent / "examples"
    res = subprocess.run(
        [sys.executable, "-c", _FORK_AFTER_PRELOAD, str(examples)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["4", "True"]


def test_a_hung_decoding_worker_is_an_error_not_a_hang(monkeypatch, tmp_path) -> None:
    """A worker that never answers ends the run with a one-line error after WORKER_TIMEOUT_S,
    and is terminated (else the interpreter's exit would wait for it)."""
    import sys
    import time

    import pytest

    from dfl_infer import files

    if not sys.platform.startswith("linux"):
        pytest.skip("the forked worker inherits the patched dataset only with fork (Linux)")
    monkeypatch.setattr(files, "WORKER_TIMEOUT_S", 1.0)
    monkeypatch.setattr(files._DecodeDataset, "__getitem__", lambda self, i: time.sleep(60))
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="gave no answer in 1 s .images 0-0.; run again"):
        list(files._decoded_chunks([tmp_path / "a.jpg"], 1, 1))
    assert time.monotonic() - t0 < 30

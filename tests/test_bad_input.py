"""Bad inputs, bad arguments and faults against ``dfl-infer`` and the Python API (issue 14): each
case must end in one clear line, the conventional exit status, strict JSON, inputs untouched and
no partial files. ``CASES`` is the table; ``tools/`` is not involved."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dfl_infer.cli import main


def _snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _strict_json(text: str) -> object:
    def reject(name: str) -> object:
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=reject)


@pytest.fixture
def photos(tmp_path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.png"):
        Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(d / name)
    return d


def _run(capsys, *args: str) -> tuple[int, str]:
    """main(args) in this process: (exit status, stderr), argparse's exits included."""
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


# (name, arguments with {photos} and {tmp} filled in, extra setup, expected message)
OUTPUT_CONFLICTS = [
    ("vis is the input folder", ["{photos}", "--vis", "{photos}"], "would replace the input image"),
    ("out is an input image", ["{photos}", "--out", "{photos}/a.jpg"], "one of the input images"),
    (
        "vis holds a foreign file",
        ["{photos}/a.jpg", "--vis", "{tmp}/vis"],
        "is not a dfl-infer overlay",
    ),
    ("out is an overlay", ["{photos}", "--vis", "{tmp}/v", "--out", "{tmp}/v/a.jpg"], "overlay"),
]


@pytest.mark.parametrize(
    ("args", "message"), [c[1:] for c in OUTPUT_CONFLICTS], ids=[c[0] for c in OUTPUT_CONFLICTS]
)
def test_outputs_never_replace_inputs(capsys, tmp_path, photos, args, message) -> None:
    """Refused before any work (no weights are even loaded: --weights names nothing), exit 2."""
    (tmp_path / "vis").mkdir()
    (tmp_path / "vis" / "a.jpg").write_bytes(b"someone else's file")
    before = _snapshot(tmp_path)
    args = [a.format(photos=photos, tmp=tmp_path) for a in args]
    code, err = _run(capsys, *args, "--weights", str(tmp_path / "no-weights"), "-q")
    assert code == 2 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _snapshot(tmp_path) == before
    assert not (tmp_path / "v").exists()


def test_force_replaces_foreign_file_and_reruns_replace_own_overlays(
    capsys, tmp_path, photos, tiny_weights
) -> None:
    vis = tmp_path / "vis"
    vis.mkdir()
    (vis / "a.jpg").write_bytes(b"someone else's file")
    before = _snapshot(photos)
    common = [str(photos), "--weights", str(tiny_weights), "--box", "0,0,40,40"]
    common += ["--device", "cpu", "--threshold", "0", "--vis", str(vis), "-q"]
    out = tmp_path / "j.json"
    assert _run(capsys, *common, "--out", str(out))[0] == 2
    assert _run(capsys, *common, "--out", str(out), "--force")[0] == 0
    assert sorted(p.name for p in vis.iterdir()) == ["a.jpg", "b.jpg"]
    # Our own overlays are replaced on a second run without --force.
    assert _run(capsys, *common, "--out", str(out))[0] == 0
    assert _snapshot(photos) == before
    _strict_json(out.read_text())


# (name, arguments, expected exit status, expected message); {photos} and {weights} filled in.
ARGUMENT_CASES = [
    ("device bogus", ["--device", "bogus"], 2, "unknown device 'bogus'"),
    ("device mps absent", ["--device", "mps"], 2, "MPS is not available"),
    ("device cuda:99", ["--device", "cuda:99"], 2, "cuda:99"),
    ("threshold 2", ["--threshold", "2"], 2, "probability in [0, 1]"),
    ("threshold nan", ["--threshold", "nan"], 2, "probability in [0, 1]"),
    ("threshold text", ["--threshold", "high"], 2, "expected a number"),
    ("batch size 0", ["--batch-size", "0"], 2, "positive integer"),
    ("workers -1", ["--workers", "-1"], 2, "0 or a positive integer"),
    ("box of 3", ["--box", "1,2,3"], 2, "box must be"),
    ("box of words", ["--box", "a,b,c,d"], 2, "box must be"),
    ("box infinite", ["--box", "0,0,inf,5"], 2, "finite"),
    ("box reversed", ["--box", "5,5,1,1"], 2, "x1 > x0"),
    ("focal infinite", ["--focal", "inf"], 2, "positive finite"),
    ("focal zero", ["--focal", "0"], 2, "positive finite"),
]


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [c[1:] for c in ARGUMENT_CASES],
    ids=[c[0] for c in ARGUMENT_CASES],
)
def test_bad_arguments_one_line(capsys, tmp_path, photos, tiny_weights, args, status, message):
    before = _snapshot(tmp_path)
    code, err = _run(capsys, str(photos / "a.jpg"), "--weights", str(tiny_weights), *args)
    assert code == status and message in err, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(
        ("dfl-infer: error:", "dfl-infer predict: error:")
    )
    assert _snapshot(tmp_path) == before


def test_special_files_do_not_hang(tmp_path, photos, tiny_weights) -> None:
    """A FIFO given as an image: an error entry, the rest runs (no hang). A folder named like an
    image is a folder (its images are taken); the API calls it an error."""
    from dfl_infer.image import ImageError, load_image

    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "dir.jpg").mkdir()
    out = tmp_path / "j.json"
    args = [str(tmp_path / "pipe.jpg"), str(tmp_path / "dir.jpg"), str(photos / "a.jpg")]
    args += ["--weights", str(tiny_weights), "--box", "0,0,40,40", "--device", "cpu"]
    res = subprocess.run(
        [sys.executable, "-m", "dfl_infer.cli", *args, "--out", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    errors = [r["error"] for r in _strict_json(out.read_text())["images"]]  # type: ignore[index]
    assert "not a regular file" in errors[0] and errors[1:] == [None]
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path / "dir.jpg")
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(tmp_path / "pipe.jpg")


def test_closed_stdout_exits_141_without_traceback(photos, tiny_weights) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        res = subprocess.run(
            [sys.executable, "-m", "dfl_infer.cli", str(photos / "a.jpg"), "--weights"]
            + [str(tiny_weights), "--box", "0,0,40,40", "--device", "cpu", "-q"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(write_end)
    assert res.returncode == 141, res.stderr
    assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr


@pytest.mark.parametrize(
    ("raised", "status", "message"),
    [
        (KeyboardInterrupt(), 130, "interrupted"),
        (RuntimeError("boom"), 1, "RuntimeError: boom (--debug shows the traceback)"),
    ],
)
def test_interrupt_and_unexpected_errors_one_line(
    capsys, monkeypatch, photos, tiny_weights, raised, status, message
) -> None:
    import dfl_infer.files

    def fail(*args: object, **kwargs: object) -> None:
        raise raised

    monkeypatch.setattr(dfl_infer.files, "predict_files", fail)
    args = [str(photos), "--weights", str(tiny_weights), "--device", "cpu", "-q"]
    code, err = _run(capsys, *args)
    assert code == status and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    if status == 1:
        with pytest.raises(RuntimeError):
            main([*args, "--debug"])


def test_api_rejects_bad_threshold_and_device(tiny_weights) -> None:
    from dfl_infer import DFLPredictor

    for bad in (2.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="presence_threshold"):
            DFLPredictor(weights=tiny_weights, device="cpu", presence_threshold=bad)
    with pytest.raises(ValueError, match="unknown device"):
        DFLPredictor(weights=tiny_weights, device="bogus")


@pytest.fixture(scope="module")
def predictor(tiny_weights):
    from dfl_infer import DFLPredictor

    # Its own model, loaded from disk: the predictor converts the model it is given to
    # channels_last, which would change the session's shared tiny_model for other tests.
    return DFLPredictor(weights=tiny_weights, device="cpu", presence_threshold=0.0)


BAD_INTRINSICS = [
    ("focal 0", (0.0, 0.0, 40.0, 32.0), "focal lengths must be finite and positive"),
    ("focal negative", (-500.0, 500.0, 40.0, 32.0), "focal lengths"),
    ("focal NaN", {"fx": float("nan"), "fy": 500, "cx": 40, "cy": 32}, "focal lengths"),
    ("focal infinite", (float("inf"), 500.0, 40.0, 32.0), "focal lengths"),
    ("principal point NaN", (500.0, 500.0, float("nan"), 32.0), "principal point"),
    ("principal point far outside", (500.0, 500.0, 4000.0, 32.0), "far outside"),
    ("matrix with zero focal", np.diag([0.0, 0.0, 1.0]), "focal lengths"),
    ("dict missing cy", {"fx": 500, "fy": 500, "cx": 40}, "missing 'cy'"),
    ("text", ("a", "b", "c", "d"), "must be numbers"),
    ("wrong shape", (500.0, 500.0, 40.0), "got shape (3,)"),
]


@pytest.mark.parametrize(
    ("intrinsics", "message"),
    [c[1:] for c in BAD_INTRINSICS],
    ids=[c[0] for c in BAD_INTRINSICS],
)
def test_bad_intrinsics_rejected(predictor, photos, intrinsics, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        predictor.predict(photos / "a.jpg", box=(0, 0, 40, 40), intrinsics=intrinsics)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    k=st.tuples(*[st.floats(allow_nan=True, allow_infinity=True, width=64)] * 4),
    box=st.tuples(*[st.floats(-100, 200)] * 4),
)
def test_any_intrinsics_and_box_give_strict_json_or_a_clear_error(predictor, k, box) -> None:
    image = np.full((64, 80, 3), 128, np.uint8)
    x0, y0, x1, y1 = box
    box = (min(x0, x1), min(y0, y1), max(x0, x1) + 1, max(y0, y1) + 1)
    try:
        pred = predictor.predict(image, box=box, intrinsics=k)
    except ValueError as exc:
        assert "intrinsics" in str(exc), exc
        return
    _strict_json(json.dumps(pred.to_dict(), allow_nan=False))


def test_hand_with_non_finite_joints_says_why() -> None:
    from dfl_infer.results import Hand

    nan = np.full((21, 3), np.nan)
    hand = Hand("right", 0.9, np.zeros((21, 2)), nan, nan).to_dict()
    assert hand["joints_3d"] is None and "could not be lifted" in hand["joints_3d_error"]
    _strict_json(json.dumps(hand, allow_nan=False))
    hand = Hand("left", float("nan"), np.full((21, 2), np.inf), nan, nan).to_dict()
    assert hand["score"] is None and hand["joints_2d"] is None
    _strict_json(json.dumps(hand, allow_nan=False))


# (name, change to config.json, expected message)
BAD_CONFIGS = [
    ("num_heads 0", {"num_heads": 0}, "num_heads: must be >= 1"),
    ("channels as text", {"fpn_channels": "128"}, "fpn_channels: expected an integer"),
    ("unknown key", {"hidden_size": 12}, "unknown config keys ['hidden_size']"),
    ("missing key", {"attn_dim": None}, "config keys missing: ['attn_dim']"),
    ("dropout 1", {"dropout": 1}, "dropout: must be < 1"),
    ("std zero", {"std": [0, 1, 1]}, "std: must be positive"),
    ("mean of 2", {"mean": [0.5, 0.5]}, "mean: expected 3 finite numbers"),
    ("box_scale negative", {"box_scale": -1}, "box_scale: must be > 0"),
    ("position_xy as 1", {"position_xy": 1}, "position_xy: expected true or false"),
]


def _copy_weights(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.mark.parametrize(
    ("change", "message"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_config_named_clearly(capsys, tmp_path, photos, tiny_weights, change, message):
    from dfl_infer import DFLPredictor

    weights = _copy_weights(tiny_weights, tmp_path / "w")
    data = json.loads((weights / "config.json").read_text())
    for key, value in change.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    (weights / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=re.escape(message)):
        DFLPredictor(weights=weights, device="cpu")
    code, err = _run(capsys, str(photos), "--weights", str(weights), "--device", "cpu", "-q")
    assert code == 2 and message in err and "Traceback" not in err


def _corrupt_tensor(weights: Path, how: str) -> None:
    from safetensors.torch import load_file, save_file

    path = weights / "model.safetensors"
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
        return
    state = load_file(str(path))
    key = sorted(k for k, v in state.items() if v.is_floating_point())[0]
    if how == "nan":
        state[key] = state[key].clone()
        state[key].view(-1)[0] = float("nan")
    elif how == "int dtype":
        state[key] = state[key].to(torch.int32)
    elif how == "renamed":
        state[key + "_old"] = state.pop(key)
    save_file(state, str(path))


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncated", "probably truncated or corrupt"),
        ("nan", "NaN or infinite values in"),
        ("int dtype", "dtype mismatches"),
        ("renamed", "unexpected keys"),
    ],
)
def test_bad_tensors_named_clearly(capsys, tmp_path, photos, tiny_weights, how, message):
    weights = _copy_weights(tiny_weights, tmp_path / "w")
    _corrupt_tensor(weights, how)
    code, err = _run(capsys, str(photos), "--weights", str(weights), "--device", "cpu", "-q")
    assert code == 2 and message in err and "Traceback" not in err, err
    assert "model.safetensors" in err


@pytest.mark.parametrize("option", ["--out", "--vis"])
def test_unwritable_output_fails_before_the_first_image(capsys, tmp_path, photos, option):
    """An output under a regular file cannot be created: refused (exit 2) before the weights are
    even looked for."""
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / ("j.json" if option == "--out" else "vis")
    before = _snapshot(tmp_path)
    code, err = _run(capsys, str(photos), option, str(target), "--weights", "/no/w", "-q")
    assert code == 2 and f"{option}: cannot write into" in err, err
    assert _snapshot(tmp_path) == before


def _predict_args(photos: Path, weights: Path) -> list[str]:
    return [str(photos), "--weights", str(weights), "--box", "0,0,40,40", "--device", "cpu", "-q"]


def test_late_write_failure_keeps_the_results(
    capsys, caplog, monkeypatch, tmp_path, photos, tiny_weights
):
    import tempfile

    import dfl_infer._atomic

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dfl_infer._atomic, "write_json", disk_full)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    out = tmp_path / "out" / "j.json"
    code, err = _run(capsys, *_predict_args(photos, tiny_weights), "--out", str(out))
    err += caplog.text  # the message is logged (in a process of its own: one line on stderr)
    assert code == 1 and "No space left on device" in err and "Traceback" not in err
    assert not out.exists() and list(out.parent.iterdir()) == []
    (saved,) = tmp_path.glob("dfl-infer-recovered-*.json")
    assert str(saved) in err
    images = _strict_json(saved.read_text())["images"]  # type: ignore[index]
    assert [Path(r["path"]).name for r in images] == ["a.jpg", "b.png"]


def test_json_lines_streamed(capsys, tmp_path, photos, tiny_weights) -> None:
    out = tmp_path / "j.jsonl"
    code, _ = _run(capsys, *_predict_args(photos, tiny_weights), "--out", str(out))
    assert code == 0
    lines = [_strict_json(ln) for ln in out.read_text().splitlines()]
    assert lines[0]["schema_version"] == 1 and len(lines) == 4  # type: ignore[index]
    assert [Path(r["path"]).name for r in lines[1:3]] == ["a.jpg", "b.png"]  # type: ignore[index]
    assert lines[3] == {"summary": {"images": 2, "succeeded": 2}}


def test_json_lines_failed_write_leaves_whole_lines(tmp_path) -> None:
    from dfl_infer.results import JsonLinesWriter

    out = tmp_path / "j.jsonl"
    writer = JsonLinesWriter(out, {"schema_version": 1})
    writer.write({"path": "a.jpg"})
    real = writer._file

    class HalfThenFull:
        def write(self, text: str) -> None:
            real.write(text[:5])
            real.flush()
            raise OSError(28, "No space left on device")

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    writer._file = HalfThenFull()  # type: ignore[assignment]
    with pytest.raises(OSError):
        writer.write({"path": "b.jpg"})
    writer.close()
    assert out.read_text().splitlines() == ['{"schema_version": 1}', '{"path": "a.jpg"}']


def test_overlay_write_failure_keeps_the_json(
    capsys, caplog, monkeypatch, tmp_path, photos, tiny_weights
):
    from dfl_infer.vis import OverlayFolder

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(OverlayFolder, "write", disk_full)
    out = tmp_path / "j.json"
    args = [*_predict_args(photos, tiny_weights), "--out", str(out), "--vis", str(tmp_path / "v")]
    code, err = _run(capsys, *args)
    assert code == 1 and "2 overlays could not be written" in err + caplog.text
    assert len(_strict_json(out.read_text())["images"]) == 2  # type: ignore[index]
    assert list((tmp_path / "v").iterdir()) == []


def test_predict_batch_returns_per_item_errors(predictor, photos) -> None:
    from dfl_infer import PredictionError
    from dfl_infer.image import ImageError
    from dfl_infer.results import BatchItemError, Prediction

    good = np.zeros((64, 80, 3), np.uint8)
    images = [good, photos / "missing.jpg", good, np.zeros((4,), np.uint8)]
    boxes = [(0, 0, 40, 40)] * 4
    with pytest.raises(BatchItemError, match=r"^images\[1\] \(of 4\): .*no such file") as info:
        predictor.predict_batch(images, boxes=boxes)
    assert info.value.index == 1 and isinstance(info.value.exception, ImageError)
    assert isinstance(info.value, ValueError)  # what callers caught before
    bad_box = [(0, 0, 40, 40), (0, 0, 40, 40), (9, 9, 1, 1)]  # a failure after decoding
    with pytest.raises(BatchItemError, match=r"^images\[2\] .*x1 > x0") as info:
        predictor.predict_batch([good, good, good], boxes=bad_box)
    assert info.value.index == 2
    with pytest.raises(ImageError, match="no such file"):  # one image: its own error, as before
        predictor.predict_batch([photos / "missing.jpg"], boxes=boxes[:1])
    out = predictor.predict_batch(images, boxes=boxes, return_errors=True)
    assert [type(r) for r in out] == [Prediction, PredictionError, Prediction, PredictionError]
    assert "no such file" in out[1].message  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((8, 8, 3), 200.0), "float image values must lie in [0, 1]"),
        (np.full((8, 8, 3), -0.5, np.float32), "float image values must lie in [0, 1]"),
        (np.full((8, 8, 3), -3, np.int32), "integer image values must lie in"),
        (np.full((8, 8, 3), 70000, np.int64), "integer image values must lie in"),
    ],
)
def test_out_of_range_arrays_refused(array, message) -> None:
    from dfl_infer.image import ImageError, load_image

    with pytest.raises(ImageError, match=re.escape(message)):
        load_image(array)


def test_dark_16_bit_png_is_scaled_not_taken_for_8_bit(tmp_path) -> None:
    from dfl_infer.image import load_image

    path = tmp_path / "dark16.png"
    Image.fromarray(np.full((8, 8), 200, np.uint16)).save(path)  # 200 of 65535: nearly black
    assert load_image(path).max() <= 1


@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_]),
    shape=st.sampled_from([(5, 7), (5, 7, 1), (5, 7, 3), (5, 7, 4), (0, 7, 3), (5, 7, 2), (3,)]),
    scale=st.sampled_from([1.0, 255.0, 65535.0, -1.0]),
)
def test_any_array_loads_to_uint8_or_fails_clearly(dtype, shape, scale) -> None:
    from dfl_infer.image import ImageError, load_image

    a = (np.linspace(0, 1, int(np.prod(shape))).reshape(shape) * scale).astype(dtype)
    try:
        rgb = load_image(a)
    except ImageError as exc:
        assert str(exc)
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3


def _children(pid: int) -> set[int]:
    """Live child processes of ``pid`` (Linux /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_parent(tmp_path, tiny_weights) -> None:
    import signal
    import time

    d = tmp_path / "many"
    d.mkdir()
    rng = np.random.default_rng(0)
    for k in range(60):
        Image.fromarray(rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)).save(d / f"{k}.png")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dfl_infer.cli", str(d), "--weights", str(tiny_weights)]
        + ["--box", "0,0,40,40", "--device", "cpu", "--workers", "2", "--batch-size", "2", "-q"]
        + ["--out", str(tmp_path / "j.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        workers: set[int] = set()
        while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            workers = _children(proc.pid)
            time.sleep(0.05)
        assert len(workers) >= 2, "the workers never started"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 5
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], "workers outlived their parent"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)  # EOF on the pipes: nobody holds them any more


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_with_workers_exits_130_quietly(tmp_path, tiny_weights) -> None:
    """Ctrl-C reaches the whole process group, workers included: exit 130, one line."""
    import shutil
    import signal
    import time

    d = tmp_path / "many"
    d.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)).save(d / "0.png")
    # Enough work that the run is still going when the signal comes (60 images were done in
    # under a second on an idle machine).
    for k in range(1, 400):
        shutil.copyfile(d / "0.png", d / f"{k}.png")
    out = tmp_path / "j.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dfl_infer.cli", str(d), "--weights", str(tiny_weights)]
        + ["--box", "0,0,40,40", "--device", "cpu", "--workers", "2", "--batch-size", "2", "-q"]
        + ["--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # A shell's background job (e.g. `bash .ci/run &`) starts with SIGINT ignored, which a
        # child inherits and Python then keeps: give the CLI the default disposition back.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        workers: set[int] = set()
        while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            workers = _children(proc.pid)
            time.sleep(0.05)
        assert len(workers) >= 2, "the workers never started"
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines() == ["dfl-infer: interrupted"]
    assert not [w for w in workers if _alive(w)]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["many"]


def test_unreachable_hub_fails_within_seconds(tmp_path) -> None:
    """No network: a Hub id not in the cache fails in seconds, saying what was looked for."""
    code = (
        "import time\n"
        "from dfl_infer.model import DFLModel\n"
        "t = time.monotonic()\n"
        "try:\n"
        "    DFLModel.from_pretrained('dfl-test/not-cached')\n"
        "except FileNotFoundError as exc:\n"
        "    print(round(time.monotonic() - t, 1)); print(exc)\n"
    )
    import socket

    # A host that never answers: a listening socket whose accept queue is full drops new
    # connection attempts, so they hang as they do offline behind a firewall.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(server.getsockname())
        fillers.append(c)
    endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_ENDPOINT": endpoint}
    env.pop("HF_HUB_OFFLINE", None)
    try:
        res = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
        )
    finally:
        for c in fillers:
            c.close()
        server.close()
    seconds, message = res.stdout.split("\n", 1)
    assert float(seconds) < 8, res.stdout
    assert "unreachable" in message and "local weights folder" in message
    assert "not in the local Hub cache" in message


def test_quiet_prints_nothing_with_the_real_detector_and_a_damaged_video(
    tmp_path, tiny_weights
) -> None:
    """``-q`` on a successful run: not a byte on stderr, also none of MediaPipe's native lines
    when its graph closes at exit ("DestroyAccelerator") nor FFmpeg's on a damaged clip."""
    import cv2

    from dfl_infer.bundle import DetectorUnavailableError, resolve_bundle

    try:
        resolve_bundle(allow_download=False)
    except DetectorUnavailableError as exc:
        pytest.skip(f"no hand_landmarker.task bundle here ({exc}); run `dfl-infer fetch-detector`")
    rng = np.random.default_rng(0)
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (128, 128))
    for _ in range(30):
        writer.write(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    writer.release()
    data = bytearray(clip.read_bytes())
    for k in range(2000, len(data) - 2000, 997):  # zeroed runs inside the frames' data
        data[k : k + 40] = bytes(40)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    example = Path(__file__).resolve().parent.parent / "examples" / "one_hand.jpg"
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    for source, out in ((example, "j.json"), (damaged, "j.jsonl")):
        res = subprocess.run(
            [sys.executable, "-m", "dfl_infer.cli", str(source), "--out", str(tmp_path / out)]
            + ["--weights", str(tiny_weights), "--device", "cpu", "--workers", "0", "-q"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert res.returncode == 0 and res.stderr == "", (source.name, res.stderr[-2000:])
    assert len((tmp_path / "j.jsonl").read_text().splitlines()) >= 3  # header, frames, summary

"""ONNX export: a tiny random model exported and run in onnxruntime matches PyTorch."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from dfl_infer.cli import main

onnx = pytest.importorskip("onnx", reason="onnx not installed (pip install 'dfl-infer[onnx]')")
ort = pytest.importorskip(
    "onnxruntime", reason="onnxruntime not installed (pip install 'dfl-infer[onnx]')"
)


def _run_ort(path, x: np.ndarray) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"images": x})))


def test_export_matches_pytorch_with_dynamic_batch(tiny_model, tmp_path) -> None:
    from dfl_infer.export import OUTPUT_NAMES, export_onnx

    path = export_onnx(tiny_model, tmp_path / "tiny.onnx")
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["input_size"] == "256" and "dfl_config" in meta
    s = tiny_model.config.input_size
    for batch in (1, 3):  # exported with batch 2: the batch axis must really be dynamic
        x = torch.randn(batch, 3, s, s, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            ref = tiny_model(x)
        got = _run_ort(path, x.numpy())
        assert list(got) == list(OUTPUT_NAMES)
        for name in OUTPUT_NAMES:
            value = getattr(ref, name)
            # The graph stacks the per-iteration 2D joints into one (B, T, 42, 2) output.
            expected = (torch.stack(value, 1) if isinstance(value, list) else value).numpy()
            assert got[name].shape == expected.shape, name
            # Crop pixels and millimetres: agreement to a few thousandths is float32 rounding.
            np.testing.assert_allclose(got[name], expected, rtol=1e-3, atol=2e-3, err_msg=name)


def test_cli_export_fixed_batch(tiny_weights, tmp_path) -> None:
    out = tmp_path / "sub" / "model.onnx"
    args = ["export-onnx", "--weights", str(tiny_weights), "--out", str(out)]
    code = main([*args, "--batch", "1", "--opset", "17"])
    assert code == 0 and out.is_file()
    x = np.zeros((1, 3, 256, 256), np.float32)
    got = _run_ort(out, x)
    assert got["joints_25d"].shape == (1, 42, 3) and np.isfinite(got["joints_25d"]).all()


def test_predictor_onnxruntime_backend(tiny_model, tmp_path, monkeypatch, caplog) -> None:
    """backend="onnxruntime" gives PyTorch's joints, exports once into the cache and re-exports a
    damaged cache entry."""
    from dfl_infer import DFLPredictor

    monkeypatch.setenv("DFL_CACHE_DIR", str(tmp_path / "cache"))
    # The predictor moves a given model to channels_last in place: keep the shared fixture as is.
    tiny_model = copy.deepcopy(tiny_model)
    image = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    boxes = [(60, 40, 220, 200), (150, 90, 390, 290)]
    ref = DFLPredictor(tiny_model, device="cpu", presence_threshold=0.0, batch_size=2)
    fast = DFLPredictor(tiny_model, backend="onnxruntime", presence_threshold=0.0, batch_size=2)
    assert fast.device.type == "cpu" and fast.backend == "onnxruntime"
    cached = sorted((tmp_path / "cache" / "onnx").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".onnx"
    want = ref.predict_batch([image, image], boxes=boxes)
    got = fast.predict_batch([image, image], boxes=boxes)
    for w, g in zip(want, got):
        assert len(w.hands) == len(g.hands) == 2
        for a, b in zip(w.hands, g.hands):
            assert a.handedness == b.handedness
            np.testing.assert_allclose(b.joints_2d, a.joints_2d, atol=2e-3)  # pixels
            np.testing.assert_allclose(b.joints_3d, a.joints_3d, atol=0.05)  # millimetres
            assert b.score == pytest.approx(a.score, abs=1e-4)
            assert a.joint_confidence is not None and b.joint_confidence is not None
            np.testing.assert_allclose(b.joint_confidence, a.joint_confidence, atol=1e-3)
    # A second predictor reuses the cached graph; a damaged one is exported again.
    mtime = cached[0].stat().st_mtime_ns
    DFLPredictor(tiny_model, backend="onnxruntime")
    assert cached[0].stat().st_mtime_ns == mtime
    cached[0].write_bytes(b"not an onnx graph")
    again = DFLPredictor(tiny_model, backend="onnxruntime", presence_threshold=0.0)
    assert "exporting it again" in caplog.text
    assert cached[0].stat().st_size > 1000
    for a, b in zip(want[0].hands, again.predict(image, box=boxes[0]).hands):
        np.testing.assert_allclose(b.joints_2d, a.joints_2d, atol=2e-3)
    # Other weights get their own graph.
    other = copy.deepcopy(tiny_model)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    DFLPredictor(other, backend="onnxruntime")
    assert len(list((tmp_path / "cache" / "onnx").iterdir())) == 2


_WITHOUT_TORCH = r"""
import json, sys
import numpy as np
from dfl_infer import DFLPredictor
p = DFLPredictor(sys.argv[1], device="cpu", presence_threshold=0.0)
image = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
pred = p.predict(image, box=(60, 40, 220, 200))
print(json.dumps({"backend": p.backend, "torch": "torch" in sys.modules,
                  "parameters": p.num_parameters(),
                  "joints_2d": [h.joints_2d.tolist() for h in pred.hands]}))
"""


@pytest.fixture()
def fp16_weights(tiny_model, tmp_path):
    """A tiny weights folder stored in fp16 (as the default model is), with its model.onnx."""
    from dfl_infer.export import export_into_weights

    folder = tmp_path / "weights"
    tiny_model.save_pretrained(folder, dtype=torch.float16)
    assert main(["export-onnx", "--weights", str(folder), "--into-weights"]) == 0
    return folder, export_into_weights


def test_shipped_onnx_runs_without_torch(fp16_weights) -> None:
    """A weights folder with its own model.onnx runs under backend "auto" in onnxruntime, with
    PyTorch never imported, and gives the PyTorch model's joints; fp16 weights are stored as
    fp16 in the graph (half the file)."""
    import subprocess
    import sys

    from dfl_infer import DFLPredictor
    from dfl_infer.model import DFLModel

    folder, _ = fp16_weights
    proto = onnx.load(str(folder / "model.onnx"))
    sizes = {}
    for init in proto.graph.initializer:
        sizes[init.data_type] = sizes.get(init.data_type, 0) + len(init.raw_data)
    # fp16-exact weights are stored as fp16; constants computed at export (batch norm folded
    # into the tiny ResNet's convolutions) are not fp16-exact and stay float32.
    assert sizes[onnx.TensorProto.FLOAT16] > 0, sizes
    res = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH, str(folder)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    got = __import__("json").loads(res.stdout.splitlines()[-1])
    assert got["backend"] == "onnxruntime" and got["torch"] is False
    model = DFLModel.from_pretrained(folder)
    assert got["parameters"] == model.num_parameters()
    ref = DFLPredictor(folder, device="cpu", backend="torch", presence_threshold=0.0)
    image = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    want = ref.predict(image, box=(60, 40, 220, 200))
    assert len(want.hands) == len(got["joints_2d"]) > 0
    for hand, joints in zip(want.hands, got["joints_2d"]):
        np.testing.assert_allclose(np.array(joints), hand.joints_2d, atol=2e-3)  # pixels


def test_stale_shipped_onnx_is_ignored(fp16_weights, tmp_path, monkeypatch, caplog) -> None:
    """A model.onnx exported from other weights is never run: "auto" falls back to PyTorch,
    "onnxruntime" exports the folder's own weights, both with a warning naming the fix."""
    from dfl_infer import DFLPredictor
    from dfl_infer.model import DFLModel

    monkeypatch.setenv("DFL_CACHE_DIR", str(tmp_path / "cache"))
    folder, export_into_weights = fp16_weights
    model = DFLModel.from_pretrained(folder)
    with torch.no_grad():
        next(model.parameters()).add_(0.5)
    model.save_pretrained(folder, dtype=torch.float16)  # new weights, old model.onnx
    auto = DFLPredictor(folder, device="cpu")
    assert auto.backend == "torch"
    assert (
        "was not exported from model.safetensors" in caplog.text and "--into-weights" in caplog.text
    )
    forced = DFLPredictor(folder, backend="onnxruntime")
    assert forced.backend == "onnxruntime"
    assert len(list((tmp_path / "cache" / "onnx").iterdir())) == 1  # exported from the weights
    image = np.random.default_rng(2).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    a = DFLPredictor(folder, device="cpu", backend="torch", presence_threshold=0.0)
    b = DFLPredictor(folder, backend="onnxruntime", presence_threshold=0.0)
    for x, y in zip(
        a.predict(image, box=(20, 20, 180, 180)).hands,
        b.predict(image, box=(20, 20, 180, 180)).hands,
    ):
        np.testing.assert_allclose(y.joints_2d, x.joints_2d, atol=2e-3)
    # Re-exported, the folder's graph is used again.
    export_into_weights(folder)
    assert DFLPredictor(folder, device="cpu").backend == "onnxruntime"


def test_cli_export_into_weights_checks_its_arguments(tiny_weights, tmp_path, capsys) -> None:
    code = main(["export-onnx", "--weights", str(tiny_weights), "--into-weights", "--batch", "2"])
    assert code == 2 and "leave out --batch" in capsys.readouterr().err
    missing = tmp_path / "nothing"
    code = main(["export-onnx", "--weights", str(missing), "--into-weights"])
    assert code == 2 and "not a local weights folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --out and --into-weights exclude each other
        main(["export-onnx", "--weights", str(tiny_weights), "--into-weights", "--out", "x.onnx"])

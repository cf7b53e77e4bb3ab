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

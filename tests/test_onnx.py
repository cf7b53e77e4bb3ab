"""ONNX export: a tiny random model exported and run in onnxruntime matches PyTorch."""

from __future__ import annotations

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
            expected = ref[name].numpy()
            assert got[name].shape == expected.shape, name
            # Crop pixels and millimetres: agreement to a few thousandths is float32 rounding.
            np.testing.assert_allclose(got[name], expected, rtol=1e-3, atol=2e-3, err_msg=name)


def test_cli_export_fixed_batch(tiny_weights, tmp_path) -> None:
    out = tmp_path / "sub" / "model.onnx"
    code = main(["export-onnx", "--weights", str(tiny_weights), "--out", str(out),
                 "--batch", "1", "--opset", "17"])  # fmt: skip
    assert code == 0 and out.is_file()
    x = np.zeros((1, 3, 256, 256), np.float32)
    got = _run_ort(out, x)
    assert got["joints_25d"].shape == (1, 42, 3) and np.isfinite(got["joints_25d"]).all()

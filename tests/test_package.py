"""Package-level contracts: public exports, and the inference path never importing training code
or the detector's heavy dependencies at import time."""

from __future__ import annotations

import subprocess
import sys

import dfl_infer


def test_public_exports() -> None:
    for name in ("DFLPredictor", "Prediction", "Hand", "DFLConfig", "DFLModel", "JOINT_NAMES"):
        assert name in dfl_infer.__all__ and hasattr(dfl_infer, name)


def test_inference_never_imports_training_or_mediapipe_at_import() -> None:
    code = (
        "import sys, dfl_infer, dfl_infer.cli, dfl_infer.predictor, dfl_infer.detect;"
        "bad = sorted(m for m in sys.modules if m.startswith(('dfl_infer.training', 'mediapipe')));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr

"""Write the stored reference input/output pair of the shipped default model.

``tests/test_reference.py`` runs the default weights (``weights/``) on the same inputs and
compares with ``tests/data/reference_outputs.json`` within a tolerance, so that a change to the
code (cropping, preprocessing, the network, lifting) cannot alter the shipped model's outputs
silently. The file records the sha256 of ``weights/model.safetensors``: when the weights are
retrained on purpose, run this again and commit both. It also re-exports ``weights/model.onnx``
(``dfl-infer export-onnx --into-weights``) when that no longer matches the weights, since the
default backend runs it and the test checks it too.

    python tools/make_reference.py

Inputs: the repository's example photos (``examples/*.jpg``), each with a fixed box (so the hand
detector is not involved) and the default intrinsics. Outputs: every hand's handedness, score,
2D joints (pixels) and 3D joints (mm), at full float precision.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "data" / "reference_outputs.json"
# Example photos with ground truth (examples/*.gt.json), whose joints give the fixed boxes.
INPUTS = ("one_hand.jpg", "two_hands.jpg", "hands_crossed.jpg")


def weights_sha256(folder: Path) -> str:
    from dfl_infer.model.files import WEIGHTS_NAME, file_sha256

    return file_sha256(folder / WEIGHTS_NAME)


def reference_boxes() -> dict[str, list[float]]:
    """Per example: the box of its ground-truth joints (examples/*.gt.json), widened by 10%."""
    import numpy as np

    boxes = {}
    for name in INPUTS:
        gt = json.loads((REPO / "examples" / name).with_suffix(".gt.json").read_text())
        pts = np.concatenate([np.asarray(h["joints_2d"], dtype=float) for h in gt["hands"]])
        lo, hi = pts.min(0), pts.max(0)
        pad = 0.1 * (hi - lo)
        boxes[name] = [round(float(v), 1) for v in (*(lo - pad), *(hi + pad))]
    return boxes


def predict_all(weights: Path, backend: str = "torch") -> dict[str, object]:
    """The stored outputs, from the PyTorch model (``backend="torch"``, what the reference
    holds) or another ``DFLPredictor`` backend (the test checks ``auto`` too)."""
    from dfl_infer import DFLPredictor

    predictor = DFLPredictor(weights=weights, device="cpu", backend=backend)
    if backend == "auto" and predictor.backend != "onnxruntime":
        raise AssertionError(
            f"{weights}/model.onnx is missing or does not match model.safetensors: run "
            f"`dfl-infer export-onnx --weights {weights} --into-weights`"
        )
    results = {}
    for name, box in reference_boxes().items():
        pred = predictor.predict(REPO / "examples" / name, box=box)
        results[name] = {
            "box": box,
            "hands": [
                {
                    "handedness": h.handedness,
                    "score": float(h.score),
                    "joints_2d": h.joints_2d.astype(float).tolist(),
                    "joints_3d": h.joints_3d.astype(float).tolist(),
                }
                for h in pred.hands
            ],
        }
    return results


def main() -> None:
    from dfl_infer.backends import onnx_runner_for_weights
    from dfl_infer.export import export_into_weights

    weights = REPO / "weights"
    if onnx_runner_for_weights(weights) is None:
        print(f"wrote {export_into_weights(weights)}")
    data = {"weights_sha256": weights_sha256(weights), "outputs": predict_all(weights)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

"""dfl-infer: 3D joints of one or two interacting hands from one RGB photo (DFL, ACM MM 2024)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dfl_infer._version import __version__
from dfl_infer.joints import JOINT_NAMES
from dfl_infer.lift import Intrinsics
from dfl_infer.model import DFLConfig
from dfl_infer.predictor import DFLPredictor
from dfl_infer.results import BatchItemError, Hand, Prediction, PredictionError

if TYPE_CHECKING:
    from dfl_infer.model import DFLModel

__all__ = [
    "BatchItemError",
    "DFLConfig",
    "DFLModel",
    "DFLPredictor",
    "Hand",
    "Intrinsics",
    "JOINT_NAMES",
    "Prediction",
    "PredictionError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # DFLModel imports PyTorch: only when asked for (the onnxruntime path runs without it).
    if name == "DFLModel":
        from dfl_infer.model.dfl import DFLModel

        return DFLModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

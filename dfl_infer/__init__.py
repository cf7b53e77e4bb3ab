"""dfl-infer: 3D joints of one or two interacting hands from one RGB photo (DFL, ACM MM 2024)."""

from dfl_infer._version import __version__
from dfl_infer.joints import JOINT_NAMES
from dfl_infer.lift import Intrinsics
from dfl_infer.model import DFLConfig, DFLModel
from dfl_infer.predictor import DFLPredictor
from dfl_infer.results import Hand, Prediction, PredictionError

__all__ = [
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

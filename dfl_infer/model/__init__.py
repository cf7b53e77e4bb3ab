"""The DFL network: configuration, encoder, decoupled decoder, weights I/O."""

from dfl_infer.model.config import DFLConfig
from dfl_infer.model.dfl import DFLModel
from dfl_infer.model.weights import WeightsError

__all__ = ["DFLConfig", "DFLModel", "WeightsError"]

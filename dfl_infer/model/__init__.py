"""The DFL network: configuration, encoder, decoupled decoder, typed outputs, weights I/O."""

from dfl_infer.model.config import DFLConfig
from dfl_infer.model.dfl import DFLModel
from dfl_infer.model.outputs import DFLOutput
from dfl_infer.model.weights import WeightsError

__all__ = ["DFLConfig", "DFLModel", "DFLOutput", "WeightsError"]

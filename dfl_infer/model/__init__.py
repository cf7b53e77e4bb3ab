"""The DFL network: configuration, encoder, decoupled decoder, typed outputs, weights I/O.

``DFLConfig`` and ``WeightsError`` come without PyTorch; ``DFLModel`` and ``DFLOutput`` import it
on first access (PEP 562), so the onnxruntime path never loads torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dfl_infer.model.config import DFLConfig
from dfl_infer.model.files import WeightsError

if TYPE_CHECKING:
    from dfl_infer.model.dfl import DFLModel
    from dfl_infer.model.outputs import DFLOutput

__all__ = ["DFLConfig", "DFLModel", "DFLOutput", "WeightsError"]


def __getattr__(name: str) -> Any:
    if name == "DFLModel":
        from dfl_infer.model.dfl import DFLModel

        return DFLModel
    if name == "DFLOutput":
        from dfl_infer.model.outputs import DFLOutput

        return DFLOutput
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

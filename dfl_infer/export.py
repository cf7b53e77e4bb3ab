"""ONNX export of the DFL network (``dfl-infer export-onnx``).

Exported: the network alone, as ``DFLModel`` defines it: input ``images`` (B, 3, S, S) float32,
normalized with the config's mean/std (RGB, [0, 1] then (x - mean) / std), S = ``input_size``;
outputs ``joints_25d`` (B, 42, 3), ``hand_presence`` (B, 2) logits, ``rel_root_depth`` (B,) mm,
``segmentation`` (B, 33, S/4, S/4) logits, ``handedness`` (B, 2) logits that each hand slot holds
a right hand (meanings as documented on ``DFLOutput``: the graph returns the slots unsided) and
``joints_2d_iter`` (B, T, 42, 2), the crop-pixel 2D joints after each of the decoder's T
iterations, stacked (they give the per-joint confidence, ``decode.joint_confidence``). Detection,
cropping and lifting stay in Python (``DFLPredictor``); the preprocessing contract (input size,
mean, std, box scale) and the full config are stored in the model's metadata properties.

Uses the TorchScript-based exporter (``dynamo=False``), so only ``onnx`` is needed, not
``onnxscript``; ``onnxruntime`` is only needed to run or check the file (extra ``onnx``).
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dfl_infer.model import DFLModel, DFLOutput
from dfl_infer.model.files import PARAMETERS_KEY

logger = logging.getLogger(__name__)

OUTPUT_NAMES = (
    "joints_25d",
    "hand_presence",
    "rel_root_depth",
    "segmentation",
    "handedness",
    "joints_2d_iter",
)
# Changes whenever the exported graph's outputs change, so that graphs cached by an older
# version (backends.exported_model) are exported again. 2: joints_2d_iter added. 3: handedness.
GRAPH_VERSION = 3
DEFAULT_OPSET = 17


class _ExportWrapper(nn.Module):
    """Tuple-returning view of ``DFLModel`` (ONNX outputs are positional)."""

    def __init__(self, model: DFLModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out: DFLOutput = self.model(images)
        iters = torch.stack(out.joints_2d_iter, dim=1)
        return (*(getattr(out, name) for name in OUTPUT_NAMES[:-1]), iters)


def export_onnx(
    model: DFLModel,
    path: str | Path,
    opset: int = DEFAULT_OPSET,
    batch: int | None = None,
    metadata: dict[str, str] | None = None,
    fp16_weights: bool = False,
) -> Path:
    """Write ``model`` as ONNX to ``path``. ``batch``: a fixed batch size, or None for a dynamic
    batch axis (named ``batch``). ``metadata``: extra metadata properties. ``fp16_weights``:
    store every float weight that fp16 holds exactly (all of them for fp16-shipped weights) as
    fp16 followed by a Cast to float32: half the file, the same numbers. Returns the path.
    Needs the ``onnx`` package."""
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(
            "ONNX export needs the onnx package: pip install 'dfl-infer[onnx]'"
        ) from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    # A copy: with torch 2.14 the TorchScript exporter changed the exported module's weights in
    # place (its outputs differed after export), which would silently corrupt the caller's model.
    model = copy.deepcopy(model).cpu().float().eval()
    s = cfg.input_size
    example = torch.randn(batch or 2, 3, s, s)
    dynamic_axes = None
    if batch is None:
        dynamic_axes = {name: {0: "batch"} for name in ("images", *OUTPUT_NAMES)}
    with warnings.catch_warnings():
        # The input-shape check in forward() becomes a constant in the trace: expected, harmless.
        # torch.jit re-exports TracerWarning at run time; its stub does not list it.
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)  # type: ignore[attr-defined]
        warnings.simplefilter("ignore", category=DeprecationWarning)  # the TorchScript exporter
        torch.onnx.export(
            _ExportWrapper(model),
            (example,),
            str(path),
            input_names=["images"],
            output_names=list(OUTPUT_NAMES),
            opset_version=opset,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    meta = {
        "dfl_config": json.dumps(cfg.to_dict()),
        "input_size": str(s),
        "mean": json.dumps(list(cfg.mean)),
        "std": json.dumps(list(cfg.std)),
        "box_scale": str(cfg.box_scale),
        "input_contract": "images (B,3,S,S) float32 RGB: (pixel/255 - mean) / std",
        PARAMETERS_KEY: str(model.num_parameters()),
        **(metadata or {}),
    }
    if fp16_weights:
        _fp16_initializers(proto)
    for key, value in meta.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    logger.info("wrote %s (opset %d, batch %s)", path, opset, batch or "dynamic")
    return path


def _fp16_initializers(proto: Any) -> None:
    """Store float32 initializers that fp16 represents exactly as fp16 + a Cast node (in place).
    onnxruntime folds the casts when it loads the graph, so the numbers it runs are unchanged."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        array = numpy_helper.to_array(init)
        half = array.astype(np.float16)
        if array.size < 16 or not np.array_equal(half.astype(np.float32), array):
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, name=f"{name}__fp16"))
        casts.append(
            onnx.helper.make_node(
                "Cast", [f"{name}__fp16"], [name], to=onnx.TensorProto.FLOAT, name=f"{name}__cast"
            )
        )
    # Casts first: every consumer comes after them in topological order.
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)


def export_into_weights(folder: str | Path, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``FOLDER/model.onnx``: the weights folder's network as a batch-1 graph with fp16
    weights, tagged with the sha256 of its ``model.safetensors`` so that the onnxruntime backend
    uses it (without PyTorch) only while it matches (``backends.onnx_runner_for_weights``)."""
    from dfl_infer._atomic import atomic_path
    from dfl_infer.model.files import (
        CONFIG_NAME,
        ONNX_NAME,
        WEIGHTS_NAME,
        WEIGHTS_SHA_KEY,
        file_sha256,
    )

    folder = Path(folder)
    if not (folder / WEIGHTS_NAME).is_file() or not (folder / CONFIG_NAME).is_file():
        raise FileNotFoundError(
            f"{folder} is not a local weights folder ({CONFIG_NAME} + {WEIGHTS_NAME})"
        )
    model = DFLModel.from_pretrained(folder)
    sha = file_sha256(folder / WEIGHTS_NAME)
    with atomic_path(folder / ONNX_NAME, suffix=".onnx") as tmp:
        export_onnx(model, tmp, opset, batch=1, metadata={WEIGHTS_SHA_KEY: sha}, fp16_weights=True)
    return folder / ONNX_NAME

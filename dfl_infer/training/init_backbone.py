"""Pretrained starting points for the DFL encoder (``dfl-train fit --init-backbone``).

- ``mediapipe``: MediaPipe's hand-landmark network (trained on real hands; Apache-2.0), read from
  ``hand_landmarks_detector.tflite`` inside a ``hand_landmarker.task`` bundle (found as the
  detector finds it: ``dfl_infer.bundle.resolve_bundle``), from the mediapipe 0.10.21 wheel's
  ``hand_landmark_full.tflite``, or from a path. The tflite graph is read with the ``tflite``
  package (a pure-Python flatbuffers schema, imported lazily), its fp16 weights expanded and
  mapped onto :class:`~dfl_infer.model.mediapipe_hand.MediaPipeHandLandmarker` by walking the
  graph's convolutions in execution order, checking every shape.
- ``imagenet``: torchvision's ImageNet weights of the ResNet (``torchvision.models`` weights API,
  so a machine with internet downloads them into torch's hub cache), or a local state-dict file.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfl_infer.model import DFLModel
from dfl_infer.model.mediapipe_hand import MediaPipeHandLandmarker

logger = logging.getLogger(__name__)

BUNDLE_MEMBER = "hand_landmarks_detector.tflite"
BACKBONE_INITS = ("mediapipe", "imagenet")

# Fully connected layers of the landmark graph, by the name of their weight tensor.
_FC_LAYERS = {
    "conv_handedness": "handedness",
    "conv_handflag": "presence",
    "conv_landmarks": "landmarks",
    "conv_world_landmarks": "world_landmarks",
}


def read_tflite_bytes(source: str | Path | None = None) -> bytes:
    """The landmark model's tflite bytes: a ``.tflite`` file, a ``.task`` bundle, a mediapipe
    wheel, or (None) the bundle the detector uses."""
    if source is None:
        from dfl_infer.bundle import resolve_bundle

        source = resolve_bundle()
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"MediaPipe model not found: {path}")
    if path.suffix == ".tflite":
        return path.read_bytes()
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is neither a .tflite file nor a .task bundle / mediapipe wheel")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        for member in (BUNDLE_MEMBER, "mediapipe/modules/hand_landmark/hand_landmark_full.tflite"):
            if member in names:
                return zf.read(member)
    raise ValueError(f"{path} holds no {BUNDLE_MEMBER} (nor a mediapipe hand_landmark_full.tflite)")


def _builtin_names() -> dict[int, str]:
    import tflite

    return {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


def tflite_layers(data: bytes) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The graph's convolutions in execution order and its fully connected layers by role.

    Each layer is ``{"op", "weight" (np.float32), "bias", "stride", "name"}``; weights are as
    stored (conv OHWI, depthwise 1HWC, fully connected (out, in))."""
    try:
        import tflite
    except ImportError as exc:
        raise ImportError(
            "reading MediaPipe's tflite model needs the 'tflite' package: pip install tflite"
        ) from exc
    model = tflite.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    names = _builtin_names()

    def opname(op: Any) -> str:
        code = model.OperatorCodes(op.OpcodeIndex())
        return names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]

    dequantized: dict[int, int] = {}  # fp32 tensor -> the fp16 tensor it expands
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        if opname(op) == "DEQUANTIZE":
            dequantized[op.Outputs(0)] = op.Inputs(0)

    def array(index: int) -> np.ndarray:
        index = dequantized.get(index, index)
        tensor = graph.Tensors(index)
        raw = model.Buffers(tensor.Buffer()).DataAsNumpy()
        dtype = {tflite.TensorType.FLOAT16: np.float16, tflite.TensorType.FLOAT32: np.float32}
        if tensor.Type() not in dtype or not isinstance(raw, np.ndarray):
            raise ValueError(f"unexpected constant tensor {tensor.Name()!r} in the tflite graph")
        shape = tuple(int(s) for s in tensor.ShapeAsNumpy())
        return (
            np.frombuffer(raw.tobytes(), dtype=dtype[tensor.Type()])
            .reshape(shape)
            .astype(np.float32)
        )

    convs, fcs = [], {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        kind = opname(op)
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            opts = tflite.Conv2DOptions() if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions()
            table = op.BuiltinOptions()
            opts.Init(table.Bytes, table.Pos)
            if opts.Padding() != tflite.Padding.SAME or opts.StrideH() != opts.StrideW():
                raise ValueError(f"operator {i}: only square strides with SAME padding are ported")
            convs.append(
                {
                    "op": kind,
                    "weight": array(op.Inputs(1)),
                    "bias": array(op.Inputs(2)),
                    "stride": opts.StrideH(),
                    "relu6": opts.FusedActivationFunction() == 3,
                }
            )
        elif kind == "FULLY_CONNECTED":
            wname = graph.Tensors(op.Inputs(1)).Name().decode()
            role = next((r for key, r in _FC_LAYERS.items() if f"/{key}/" in wname), None)
            if role is None:
                raise ValueError(f"unexpected fully connected layer {wname!r}")
            fcs[role] = {"weight": array(op.Inputs(1)), "bias": array(op.Inputs(2))}
    return convs, fcs


def mediapipe_landmarker_state_dict(source: str | Path | None = None) -> dict[str, torch.Tensor]:
    """State dict of :class:`MediaPipeHandLandmarker` converted from MediaPipe's tflite model."""
    convs, fcs = tflite_layers(read_tflite_bytes(source))
    target = MediaPipeHandLandmarker()
    modules = [(n, m) for n, m in target.named_modules() if isinstance(m, torch.nn.Conv2d)]
    if len(modules) != len(convs):
        raise ValueError(
            f"the tflite graph has {len(convs)} convolutions, the port {len(modules)}: "
            "not MediaPipe's hand-landmark (full) model"
        )
    state: dict[str, torch.Tensor] = {}
    for (name, module), layer in zip(modules, convs):
        w = layer["weight"]
        # OHWI -> OIHW; depthwise weights are 1HWC -> C1HW.
        w = (
            w.transpose(3, 0, 1, 2)
            if layer["op"] == "DEPTHWISE_CONV_2D"
            else w.transpose(0, 3, 1, 2)
        )
        depthwise = module.groups > 1
        if (
            tuple(w.shape) != tuple(module.weight.shape)
            or depthwise != (layer["op"] == "DEPTHWISE_CONV_2D")
            or module.stride[0] != layer["stride"]
        ):
            raise ValueError(
                f"{name}: the tflite layer ({layer['op']}, {w.shape}, stride {layer['stride']}) "
                f"does not match the port ({tuple(module.weight.shape)}, stride {module.stride[0]})"
            )
        state[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(w))
        state[f"{name}.bias"] = torch.from_numpy(layer["bias"].copy())
    for role in _FC_LAYERS.values():
        if role not in fcs:
            raise ValueError(f"the tflite graph has no {role} layer")
        state[f"{role}.weight"] = torch.from_numpy(fcs[role]["weight"].copy())
        state[f"{role}.bias"] = torch.from_numpy(fcs[role]["bias"].copy())
    missing = set(target.state_dict()) ^ set(state)
    if missing:
        raise ValueError(f"conversion left keys unmatched: {sorted(missing)[:5]}")
    return state


def load_mediapipe_landmarker(source: str | Path | None = None) -> MediaPipeHandLandmarker:
    """MediaPipe's whole landmark network (trunk + its own heads) in PyTorch, in eval mode."""
    model = MediaPipeHandLandmarker()
    model.load_state_dict(mediapipe_landmarker_state_dict(source))
    return model.eval()


def _imagenet_state_dict(backbone: str, source: str | Path | None) -> dict[str, torch.Tensor]:
    if source is not None:
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"ImageNet state dict not found: {path}")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state: dict[str, torch.Tensor] = torch.load(path, map_location="cpu", weights_only=True)
        return state
    try:
        from torchvision.models import get_model_weights
    except ImportError as exc:
        raise ImportError("--init-backbone imagenet needs torchvision") from exc
    # torchvision's own weights API: downloads once into $TORCH_HOME/hub/checkpoints (a
    # pre-filled cache there is used as is), loaded without unpickling arbitrary objects.
    weights = get_model_weights(backbone).DEFAULT
    logger.info("ImageNet weights for %s: %s", backbone, weights.url)
    downloaded: dict[str, torch.Tensor] = weights.get_state_dict(progress=True, weights_only=True)
    return downloaded


def init_backbone(model: DFLModel, kind: str, source: str | Path | None = None) -> DFLModel:
    """Load pretrained weights into ``model``'s encoder trunk in place (the FPN, segmentation
    head and decoder keep their random initialisation); returns ``model``."""
    backbone = model.config.backbone
    if kind == "mediapipe":
        if model.encoder.trunk is None:
            raise ValueError(f"--init-backbone mediapipe needs the mphand preset, not {backbone}")
        full = mediapipe_landmarker_state_dict(source)
        prefix = "trunk."
        state = {k[len(prefix) :]: v for k, v in full.items() if k.startswith(prefix)}
        model.encoder.trunk.load_state_dict(state, strict=True)
    elif kind == "imagenet":
        if not backbone.startswith("resnet"):
            raise ValueError(f"--init-backbone imagenet needs a ResNet backbone, not {backbone}")
        state = {
            _encoder_key(k): v
            for k, v in _imagenet_state_dict(backbone, source).items()
            if not k.startswith("fc.")
        }
        expected = {k for k in model.encoder.state_dict() if k.startswith(("stem.", "layers."))}
        if set(state) != expected:
            raise ValueError(
                f"the ImageNet state dict does not fit {backbone}: missing "
                f"{sorted(expected - set(state))[:5]}, "
                f"unexpected {sorted(set(state) - expected)[:5]}"
            )
        model.encoder.load_state_dict(state, strict=False)  # only the trunk's keys, all checked
    else:
        raise ValueError(f"unknown backbone init {kind!r}; expected one of {BACKBONE_INITS}")
    logger.info("encoder trunk initialised from %s (%d tensors)", kind, len(state))
    return model


def _encoder_key(key: str) -> str:
    """torchvision ResNet key -> the DFL encoder's (``conv1``/``bn1`` in ``stem``, ``layerN`` in
    ``layers.N-1``)."""
    head, _, rest = key.partition(".")
    if head == "conv1":
        return f"stem.0.{rest}"
    if head == "bn1":
        return f"stem.1.{rest}"
    if head.startswith("layer"):
        return f"layers.{int(head[5:]) - 1}.{rest}"
    return key

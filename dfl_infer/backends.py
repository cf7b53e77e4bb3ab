"""What runs the DFL network on normalized crops inside ``DFLPredictor``.

- ``"torch"`` (default): the ``DFLModel`` itself, on any device (bf16 autocast on CUDA).
- ``"onnxruntime"``: the same network exported to ONNX and run by onnxruntime's CPU provider,
  one crop at a time through a graph exported with batch 1. On our 2-core CPU it runs r18 in
  0.75-0.8x of PyTorch's time (docs/performance.md, ``benchmarks/model_speed.py --onnxruntime``).
  The exported file is cached under ``$DFL_CACHE_DIR/onnx/`` keyed by a hash of the weights, the
  config and the exporter's versions, so only the first start pays for the export (a few
  seconds). Needs the ``onnx`` extra: ``pip install 'dfl-infer[onnx]'``.

Both take the crops as uint8 RGB (B, S, S, 3) (``preprocess.crop_batch``), normalize them with
``preprocess.normalize`` and return the same :class:`~dfl_infer.decode.CropOutputs` (numpy
``joints_25d``, ``hand_presence`` logits, ``rel_root_depth``, ``joints_2d_iter``), which
``decode.py`` maps to pixels, millimetres and per-joint confidences whichever backend ran.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfl_infer.decode import CropOutputs
from dfl_infer.device import autocast
from dfl_infer.model import DFLModel
from dfl_infer.preprocess import normalize

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime")


class TorchRunner:
    """The PyTorch model (optionally ``torch.compile``d), channels_last, bf16 autocast on CUDA."""

    def __init__(self, model: DFLModel, device: torch.device, compile: bool = False) -> None:
        self.device = device
        self.config = model.config
        self._net: Any = torch.compile(model) if compile else model

    @torch.inference_mode()
    def __call__(self, crops: np.ndarray) -> CropOutputs:
        # uint8 to the device (a quarter of float32's bytes), normalized there.
        x = normalize(torch.from_numpy(crops).to(self.device), self.config, channels_last=True)
        with autocast(self.device):
            out = self._net(x)
        return CropOutputs.from_model(out)


class OnnxRuntimeRunner:
    """The network as a batch-1 ONNX graph in an onnxruntime CPU session.

    ``threads``: onnxruntime's intra-op threads (default: torch's thread count, so both backends
    use the same cores). ``cache_dir``: where exported graphs are kept (default
    ``$DFL_CACHE_DIR/onnx``)."""

    def __init__(
        self, model: DFLModel, threads: int | None = None, cache_dir: str | Path | None = None
    ) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise ImportError(
                "backend 'onnxruntime' needs the onnx extra: pip install 'dfl-infer[onnx]'"
            ) from exc
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its graph notices are not the user's concern
        path = exported_model(model, cache_dir)
        try:
            session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - a damaged cache entry: export it again
            logger.warning("cached ONNX graph %s is unusable (%s); exporting it again", path, exc)
            path = exported_model(model, cache_dir, force=True)
            session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        self.session, self.path = session, path
        self.config = model.config

    def __call__(self, crops: np.ndarray) -> CropOutputs:
        x = normalize(torch.from_numpy(crops), self.config).numpy()
        # One crop per call: the fixed-shape graph was 8% faster than a dynamic batch axis at
        # batch 1, and batching bought nothing on CPU (docs/performance.md).
        names = list(CropOutputs.NAMES)
        parts = [
            CropOutputs(*self.session.run(names, {"images": crop[None]}))
            for crop in np.ascontiguousarray(x)
        ]
        return CropOutputs.concatenate(parts)


def model_fingerprint(model: DFLModel) -> str:
    """sha256 of the config, every weight and the versions that shape the exported graph."""
    from dfl_infer._version import __version__
    from dfl_infer.export import GRAPH_VERSION

    h = hashlib.sha256()
    meta = {
        "config": model.config.to_dict(),
        "torch": torch.__version__,
        "dfl": __version__,
        "graph": GRAPH_VERSION,
    }
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def exported_model(
    model: DFLModel, cache_dir: str | Path | None = None, force: bool = False
) -> Path:
    """The model as a batch-1 ONNX file in the cache, exporting it on first use (or ``force``)."""
    from dfl_infer._atomic import atomic_path
    from dfl_infer.cache import default_cache_dir
    from dfl_infer.export import export_onnx

    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "onnx"
    path = folder / f"dfl-{model_fingerprint(model)[:24]}-b1.onnx"
    if path.is_file() and not force:
        logger.debug("using the cached ONNX graph %s", path)
        return path
    logger.info("exporting the network to ONNX for onnxruntime (first use only): %s", path)
    with atomic_path(path, suffix=".onnx") as tmp:
        export_onnx(model, tmp, batch=1)
    return path

"""What runs the DFL network on normalized crops inside ``DFLPredictor``.

- ``"torch"``: the ``DFLModel`` itself, on any device (bf16 autocast on CUDA).
- ``"onnxruntime"``: the same network as a batch-1 ONNX graph run by onnxruntime's CPU provider,
  one crop at a time. On our 2-core CPU it ran the default network in 0.70x of PyTorch's time
  (docs/performance.md). The graph comes from the weights folder's ``model.onnx`` when it was
  exported from exactly that folder's ``model.safetensors`` (``dfl-infer export-onnx
  --into-weights``; its sha256 is in the graph's metadata): then neither PyTorch nor the model is
  loaded at all, which is what makes a CPU start fast and small. Otherwise the model is exported
  on first use and cached under ``$DFL_CACHE_DIR/onnx/`` keyed by a hash of the weights, the
  config and the exporter's versions (a few seconds, once; needs the ``onnx`` extra).
- ``"auto"`` (the predictor's default): onnxruntime on the CPU when the weights ship a matching
  ``model.onnx`` and onnxruntime is installed, else torch (:func:`choose_backend`).

Both take the crops as uint8 RGB (B, S, S, 3) (``preprocess.crop_batch``), normalize them
(``preprocess.normalize`` / ``normalize_numpy``) and return the same
:class:`~dfl_infer.decode.CropOutputs` (numpy ``joints_25d``, ``hand_presence`` logits,
``rel_root_depth``, ``joints_2d_iter``, ``handedness``), sided (the right hand first), which
``decode.py`` maps to pixels, millimetres and per-joint confidences whichever backend ran.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dfl_infer.decode import CropOutputs
from dfl_infer.joints import FIXED_SIDE_LOGIT
from dfl_infer.model.config import DFLConfig
from dfl_infer.model.files import (
    PARAMETERS_KEY,
    WEIGHTS_SHA_KEY,
    file_sha256,
    resolve_files,
    resolve_onnx,
)
from dfl_infer.preprocess import normalize_numpy

if TYPE_CHECKING:
    import torch

    from dfl_infer.model import DFLModel

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime")
# The handedness output of a graph exported before it existed (GRAPH_VERSION < 3): fixed slots.
FIXED_SIDES = np.array([[FIXED_SIDE_LOGIT, -FIXED_SIDE_LOGIT]], np.float32)


class TorchRunner:
    """The PyTorch model (optionally ``torch.compile``d), channels_last, bf16 autocast on CUDA."""

    def __init__(self, model: DFLModel, device: torch.device, compile: bool = False) -> None:
        import torch

        self.device = device
        self.config = model.config
        self._net: Any = torch.compile(model) if compile else model

    def __call__(self, crops: np.ndarray) -> CropOutputs:
        import torch

        from dfl_infer.device import autocast
        from dfl_infer.preprocess import normalize

        with torch.inference_mode():
            # uint8 to the device (a quarter of float32's bytes), normalized there.
            x = normalize(torch.from_numpy(crops).to(self.device), self.config, channels_last=True)
            with autocast(self.device):
                out = self._net(x)
            return CropOutputs.from_model(out)


def run_flip_test(runner: Callable[[np.ndarray], CropOutputs], crops: np.ndarray) -> CropOutputs:
    """The flip test (``DFLPredictor(flip_test=True)``): ``runner`` on the uint8 crops (B, S, S,
    3) and on their horizontal mirror images, in one batch, averaged
    (:meth:`CropOutputs.flip_averaged`). Twice the network's work for these crops."""
    n = len(crops)
    both = runner(np.concatenate([crops, crops[:, :, ::-1]]))
    plain, mirrored = both.take(slice(0, n)), both.take(slice(n, None))
    return plain.flip_averaged(mirrored, crops.shape[1])


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError(
            "backend 'onnxruntime' needs onnxruntime: pip install onnxruntime (or "
            "'dfl-infer[onnx]', which also exports models)"
        ) from exc
    return onnxruntime


def default_threads() -> int:
    """Intra-op threads for onnxruntime: ``OMP_NUM_THREADS`` when set, else the CPUs this process
    may run on (what torch uses too, so both backends take the same cores)."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class OnnxRuntimeRunner:
    """The network as a batch-1 ONNX graph (``path``) in an onnxruntime CPU session; ``config``:
    its DFLConfig (input size, normalisation). ``threads``: onnxruntime's intra-op threads
    (default :func:`default_threads`). :meth:`from_model` exports a ``DFLModel`` (cached)."""

    def __init__(self, path: str | Path, config: DFLConfig, threads: int | None = None) -> None:
        ort = _import_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or default_threads())
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its graph notices are not the user's concern
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = Path(path)
        self.config = config
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self._outputs = {o.name for o in self.session.get_outputs()}

    @classmethod
    def from_model(
        cls, model: DFLModel, threads: int | None = None, cache_dir: str | Path | None = None
    ) -> OnnxRuntimeRunner:
        """Run ``model`` through its exported graph (``$DFL_CACHE_DIR/onnx``, or ``cache_dir``)."""
        path = exported_model(model, cache_dir)
        try:
            return cls(path, model.config, threads)
        except Exception as exc:  # noqa: BLE001 - a damaged cache entry: export it again
            logger.warning("cached ONNX graph %s is unusable (%s); exporting it again", path, exc)
            return cls(exported_model(model, cache_dir, force=True), model.config, threads)

    def num_parameters(self) -> int | None:
        """The network's parameter count as recorded at export (None if not recorded)."""
        value = self.metadata.get(PARAMETERS_KEY, "")
        return int(value) if value.isdigit() else None

    def __call__(self, crops: np.ndarray) -> CropOutputs:
        x = normalize_numpy(crops, self.config)
        # One crop per call: the fixed-shape graph was 8% faster than a dynamic batch axis at
        # batch 1, and batching bought nothing on CPU (docs/performance.md).
        names = [n for n in CropOutputs.NAMES if n in self._outputs]
        parts = []
        for crop in x:
            values = dict(zip(names, self.session.run(names, {"images": crop[None]})))
            values.setdefault("handedness", FIXED_SIDES)
            parts.append(CropOutputs(**values))
        return CropOutputs.concatenate(parts).sided()


def onnx_runner_for_weights(
    name_or_path: str | Path, threads: int | None = None, revision: str | None = None
) -> OnnxRuntimeRunner | None:
    """An onnxruntime runner on the weights folder's (or Hub repo's) own ``model.onnx``, loaded
    without PyTorch; None when there is none, or when it was not exported from exactly this
    ``model.safetensors`` and ``config.json`` (then it is ignored, with a warning)."""
    config_path, weights_path = resolve_files(name_or_path, revision)
    onnx = resolve_onnx(name_or_path, revision)
    if onnx is None:
        return None
    config = DFLConfig.load(config_path)
    try:
        runner = OnnxRuntimeRunner(onnx, config, threads)
    except ImportError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged file: the model is exported instead
        logger.warning("%s is unusable (%s); using model.safetensors instead", onnx, exc)
        return None
    sha = runner.metadata.get(WEIGHTS_SHA_KEY)
    stored = runner.metadata.get("dfl_config")
    same_config = stored is not None and _stored_config(stored) == config
    if sha != file_sha256(weights_path) or not same_config:
        logger.warning(
            "%s was not exported from %s and its config.json; ignoring it (re-export it with "
            "`dfl-infer export-onnx --weights %s --into-weights`)",
            onnx,
            weights_path.name,
            name_or_path,
        )
        return None
    count = runner.num_parameters()
    logger.info(
        "loaded DFL network from %s (onnxruntime%s)",
        onnx,
        f", {count:,} parameters" if count is not None else "",
    )
    return runner


def _stored_config(text: str) -> DFLConfig | None:
    """The config an ONNX graph was exported with (its metadata), None if unreadable. Compared as
    configs, not as JSON, so that a key added later with its old meaning as default (a graph
    exported before the key existed) still matches, and the free-form metadata does not count."""
    try:
        return DFLConfig.from_dict(json.loads(text))
    except (ValueError, TypeError):
        return None


def onnxruntime_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def choose_backend(backend: str, device: Any) -> str:
    """``"auto"`` -> ``"onnxruntime"`` when the network is to run on the CPU (``device`` "cpu", or
    "auto" on a machine without an NVIDIA driver) and onnxruntime is installed, else
    ``"torch"``; other names are returned as they are (validated by the caller). Whether the
    weights ship a ``model.onnx`` is checked later (without one, auto falls back to torch)."""
    if backend != "auto":
        return backend
    from dfl_infer.device import cuda_driver_present

    name = str(device)
    on_cpu = name == "cpu" or (name == "auto" and not cuda_driver_present())
    return "onnxruntime" if on_cpu and onnxruntime_available() else "torch"


def model_fingerprint(model: DFLModel) -> str:
    """sha256 of the config, every weight and the versions that shape the exported graph."""
    import torch

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

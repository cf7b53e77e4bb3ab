"""Saving and loading DFL weights: ``model.safetensors`` + ``config.json``, from a local folder or
the Hugging Face Hub, always strictly (no pickle, no silently missing or unexpected keys).

Works on any module and its config, so that ``model/dfl.py`` imports this file and not the
other way round.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch
from torch import nn

from dfl_infer._atomic import atomic_path
from dfl_infer.model.config import DFLConfig
from dfl_infer.model.files import CONFIG_NAME as CONFIG_NAME  # re-exported: older imports
from dfl_infer.model.files import HUB_PROBE_TIMEOUT_S as HUB_PROBE_TIMEOUT_S
from dfl_infer.model.files import WEIGHTS_NAME as WEIGHTS_NAME
from dfl_infer.model.files import WeightsError as WeightsError
from dfl_infer.model.files import hub_reachable as hub_reachable
from dfl_infer.model.files import resolve_files as resolve_files

logger = logging.getLogger(__name__)


def save_pretrained(
    model: nn.Module, config: DFLConfig, directory: str | Path, dtype: torch.dtype | None = None
) -> Path:
    """Write ``model``'s state as ``model.safetensors`` and ``config`` as ``config.json``."""
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {}
    for key, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        state[key] = t.contiguous()
    with atomic_path(out / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    with atomic_path(out / CONFIG_NAME) as tmp:
        config.save(tmp)
    logger.info("saved %s and %s to %s", WEIGHTS_NAME, CONFIG_NAME, out)
    return out


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning every failure into a WeightsError naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"weights file not found: {path}") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(
            f"{path} is not a readable safetensors file ({exc}); it is probably truncated or "
            "corrupt: download or copy it again"
        ) from None


def check_state_dict(
    expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], source: str
) -> None:
    """Raise WeightsError naming missing, unexpected, mis-shaped and mis-typed keys (a float
    parameter stored as integers or booleans, or the reverse) and keys holding NaN or
    infinite values."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(
        f"{k}: file {tuple(found[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(found)
        if tuple(found[k].shape) != tuple(expected[k].shape)
    )
    common = sorted(set(expected) & set(found))
    dtypes = [
        f"{k}: file {found[k].dtype} vs model {expected[k].dtype}"
        for k in common
        if found[k].is_floating_point() != expected[k].is_floating_point()
        or found[k].dtype == torch.bool
    ]
    not_finite = [
        k for k in common if found[k].is_floating_point() and not torch.isfinite(found[k]).all()
    ]
    problems = []
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", shapes),
        ("dtype mismatches", dtypes),
        ("NaN or infinite values in", not_finite),
    ):
        if items:
            shown = ", ".join(items[:8]) + (
                f", ... ({len(items)} in all)" if len(items) > 8 else ""
            )
            problems.append(f"{label}: {shown}")
    if problems:
        raise WeightsError(f"{source} does not match its config.json: " + "; ".join(problems))


def load_weights(model: nn.Module, path: Path) -> None:
    """Load the safetensors file ``path`` into ``model`` strictly (WeightsError naming the keys)."""
    found = load_state_dict(path)
    expected = model.state_dict()
    check_state_dict(expected, found, str(path))
    # Shipped weights may be fp16/bf16; the module keeps its own dtype (fp32), as do integer
    # buffers such as BatchNorm's num_batches_tracked.
    state = {k: v.to(expected[k].dtype) for k, v in found.items()}
    model.load_state_dict(state, strict=True)


def push_to_hub(
    model: nn.Module,
    config: DFLConfig,
    repo_id: str,
    private: bool = False,
    commit_message: str = "Upload DFL model",
    dtype: torch.dtype | None = None,
    token: str | None = None,
) -> str:
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, config, tmp, dtype=dtype)
        readme = Path(tmp) / "README.md"
        readme.write_text(
            f"---\nlibrary_name: dfl-infer\ntags: [hand-pose, 3d, dfl]\n---\n# {repo_id}\n\n"
            'DFL weights for dfl-infer: `DFLPredictor(weights="' + repo_id + '")`.\n'
        )
        info = api.upload_folder(
            repo_id=repo_id, folder_path=tmp, commit_message=commit_message, repo_type="model"
        )
    return str(getattr(info, "commit_url", info))

"""Shared fixtures: a tiny random-weights model saved to a temp folder, and the shared data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def tiny_model():
    from dfl_infer.model import DFLConfig, DFLModel

    torch.manual_seed(0)
    return DFLModel(DFLConfig.tiny()).eval()


@pytest.fixture(scope="session")
def tiny_weights(tiny_model, tmp_path_factory) -> Path:
    """A folder with config.json + model.safetensors of a tiny random model (not trained)."""
    out = tmp_path_factory.mktemp("tiny_weights")
    tiny_model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(
            f"shared data folder {SHARED} is absent (it is only on the developers' machines)"
        )
    return SHARED

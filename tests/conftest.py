"""Shared fixtures: a tiny random-weights model saved to a temp folder, and the shared data."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

# Started in the background by a non-interactive shell (`bash .ci/run &`, nohup), the tests
# inherit SIGINT ignored, and so would every process they start: the tests that stop the demo or a
# Ray driver with Ctrl+C (SIGINT) would see it ignored. A Python handler is not inherited across
# exec, so the processes started from here get SIGINT's default back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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

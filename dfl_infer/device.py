"""Where the network runs: the device choice and the mixed precision used on it (inference and
training share both)."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` or None: CUDA when torch sees a GPU, else the CPU; otherwise
    ``torch.device(device)``. Asking for CUDA where there is none is a ValueError naming it."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for but CUDA is not available")
    return dev


def autocast(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """bf16 autocast on CUDA, off elsewhere: on CPUs without native bf16 it was 5-30x slower than
    fp32 (docs/performance.md)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

"""Where the network runs: the device choice and the mixed precision used on it (inference and
training share both)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` or None: CUDA when torch sees a GPU, else the CPU; otherwise
    ``torch.device(device)``. An unknown device name, or one this machine lacks (CUDA, a GPU
    index beyond those present, MPS), is a ValueError naming it."""
    import torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"unknown device {str(device)!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} was asked for but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {str(device)!r} was asked for but torch sees "
                f"{torch.cuda.device_count()} GPU(s)"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {str(device)!r} was asked for but MPS is not available")
    elif dev.type != "cpu":
        raise ValueError(f"device {str(device)!r} is not supported: use auto, cpu, cuda or cuda:N")
    return dev


def autocast(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """bf16 autocast on CUDA, off elsewhere: on CPUs without native bf16 it was 5-30x slower than
    fp32 (docs/performance.md)."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def cuda_driver_present() -> bool:
    """Whether an NVIDIA driver with at least one GPU answers, asked through ``libcuda`` itself
    (``cuInit`` + ``cuDeviceGetCount``), without importing PyTorch (seconds on a CPU-only
    machine). False means torch would not see a GPU either; True means it may."""
    import ctypes

    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll", "libcuda.dylib"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            count = ctypes.c_int(0)
            if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
                return False
            return count.value > 0
        except AttributeError:  # not the driver library
            return False
    return False

"""The folder where dfl-infer keeps what it fetches or builds once: the hand detector's bundle
and the ONNX graphs of the onnxruntime backend."""

from __future__ import annotations

import os
from pathlib import Path

ENV_CACHE_DIR = "DFL_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$DFL_CACHE_DIR``, else ``$XDG_CACHE_HOME/dfl-infer``, else ``~/.cache/dfl-infer``."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "dfl-infer"
    return Path.home() / ".cache" / "dfl-infer"

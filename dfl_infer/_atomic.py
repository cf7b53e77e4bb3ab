"""Atomic file writes: write to a temporary file beside the target, then rename it into place, so
a reader never sees half a file and a failed write leaves the old file untouched."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(dest: str | Path, suffix: str = ".tmp", mode: int = 0o644) -> Iterator[Path]:
    """Yield a fresh temporary path in ``dest``'s folder; when the block succeeds it replaces
    ``dest``, and in every case the temporary file is gone afterwards. ``mode``: the file's
    permissions (mkstemp's own 0600 would make outputs and caches private to their writer)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, mode)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(dest: str | Path, data: Any, indent: int = 1) -> None:
    """``data`` as strict JSON (a NaN or an infinity is a ValueError, never written) at
    ``dest``, atomically and flushed to disk before the rename."""
    text = json.dumps(data, indent=indent, allow_nan=False)
    with atomic_path(dest) as tmp, tmp.open("w") as f:
        f.write(text)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())

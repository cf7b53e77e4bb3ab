"""Peak memory of a process, for the benchmark scripts.

``ru_maxrss`` is not used on Linux: a child started by a large parent reports the parent's
resident size as its own peak (the high-water mark survives fork + exec: a trivial child of an
800 MiB Python process reports 825 MiB). ``VmHWM`` in /proc is the peak of the current program
only.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def peak_rss_mib(pid: int | str = "self") -> float:
    """Peak resident set size of process ``pid`` since it started its program (MiB): ``VmHWM``
    on Linux; elsewhere this process's ``ru_maxrss`` (``pid`` must then be "self")."""
    status = Path(f"/proc/{pid}/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024
    if pid != "self":
        raise OSError(f"no /proc/{pid}/status: peak memory of other processes needs Linux")
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


def tree_pss_mib(pid: int) -> float:
    """Summed proportional set size (shared pages split between their sharers, so forked
    workers' copy-on-write pages count once) of ``pid`` and its descendants, MiB (Linux)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += float(line.split()[1]) / 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue  # the process ended meanwhile
    return total

"""Ray on one machine against the local command (tracker issue 22): the same photos through
``dfl-infer DIR --workers 0`` / ``--workers 2`` and ``dfl-infer ray DIR`` with 1 and 2 network
actors, each as a fresh child process (a new local Ray for each Ray row, its start included).

Takes the first ``--n`` (default 200) photos of ``--dir`` (sorted by name; default
``../shared/data/real-hands/images`` when present, else ``examples/``), links them into a
temporary folder and runs one after another (the photos read once beforehand, so every row finds
them in the page cache):

- ``local --workers W``: ``dfl-infer DIR --out j.jsonl -q --workers W``;
- ``ray, A actors``: ``dfl-infer ray DIR --out OUT -q --actors A --cpus-per-actor C
  --cpus-per-task T --batch-size 8 --shard-rows 8`` (``--cpus-per-actor``, default 0.5, and
  ``--cpus-per-task``, default 0.5: on a 2-core machine whole CPUs for 2 actors would leave none
  to the decoding tasks).

Per row: images/s = images / wall (the whole child process, start-up included); "after first" =
the images written after the first result over the time after it (the steady rate); time to first
result = from the start to the first image's line in j.jsonl (local) or to the first shard of
8 rows (Ray: a shard is the first thing it writes, so this is later than one image); peak
memory = the largest summed PSS of the child and all its descendants (Ray's GCS, raylet and
worker processes are children of the driver here), sampled every 0.5 s. Ray's target: 2 actors
within 15% of ``--workers 2`` in images/s.

    python benchmarks/ray_scale.py [--dir DIR] [--n 200] [--cpus-per-actor 0.5]
        [--cpus-per-task 0.5] [--repeats 1] [--json PATH]

``--repeats R`` runs every row R times, interleaved, and keeps each row's run of median wall
time (on a shared machine single runs vary by tens of percent).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts only
from _memory import tree_pss_mib  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL_PHOTOS = REPO.parent / "shared" / "data" / "real-hands" / "images"
SUFFIXES = (".jpg", ".jpeg", ".png")
SHARD_ROWS = 8  # the Ray rows' --shard-rows: their first result is a shard of this many
TARGET_RAY_OVERHEAD = 0.15  # Ray with 2 actors at most 15% below local --workers 2


def _first_result_at(kind: str, out: Path) -> bool:
    if kind == "local":
        try:
            return len(out.read_text().splitlines()) >= 2  # the header, then the first image
        except OSError:
            return False
    return out.is_dir() and any(out.glob("part-*.jsonl"))


def run_row(name: str, kind: str, command: list[str], out: Path, n: int) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    peak = 0.0
    first: float | None = None
    while proc.poll() is None:
        peak = max(peak, tree_pss_mib(proc.pid))
        if first is None and _first_result_at(kind, out):
            first = time.perf_counter() - start
        time.sleep(0.5)
    wall = time.perf_counter() - start
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}): {err[-2000:]}")
    if first is None:
        first = wall
    done = 1 if kind == "local" else min(n, SHARD_ROWS)  # images written at the first result
    after = (n - done) / (wall - first) if wall > first else float("nan")
    return {"row": name, "images": n, "wall_s": wall, "images_per_s": n / wall,
            "after_first_images_per_s": after, "first_result_s": first,
            "peak_pss_mib": peak}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_dir = REAL_PHOTOS if REAL_PHOTOS.is_dir() else REPO / "examples"
    parser.add_argument("--dir", type=Path, default=default_dir)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--cpus-per-actor", default="0.5")
    parser.add_argument("--cpus-per-task", default="0.5")
    parser.add_argument("--repeats", type=int, default=1, help="runs per row, interleaved")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    photos = sorted(p for p in args.dir.iterdir() if p.suffix.lower() in SUFFIXES)[: args.n]
    if not photos:
        raise SystemExit(f"no photos in {args.dir}")
    n = len(photos)
    tmp = Path(tempfile.mkdtemp(prefix="dfl-ray-scale-"))
    try:
        folder = tmp / "photos"
        folder.mkdir()
        for p in photos:
            (folder / p.name).symlink_to(p.resolve())
            p.read_bytes()  # into the page cache
        cli = [sys.executable, "-m", "dfl_infer.cli"]
        runs: dict[str, list[dict[str, Any]]] = {}
        for repeat in range(args.repeats):  # interleaved: a change of load hits every row alike
            for workers in (0, 2):
                out = tmp / f"local{workers}-{repeat}.jsonl"
                command = [*cli, str(folder), "--out", str(out), "-q", "--workers", str(workers)]
                name = f"local --workers {workers}"
                runs.setdefault(name, []).append(run_row(name, "local", command, out, n))
            for actors in (1, 2):
                out = tmp / f"ray{actors}-{repeat}"
                command = [*cli, "ray", str(folder), "--out", str(out), "-q", "--actors",
                           str(actors), "--cpus-per-actor", args.cpus_per_actor,
                           "--cpus-per-task", args.cpus_per_task, "--batch-size", "8",
                           "--shard-rows", str(SHARD_ROWS)]  # fmt: skip
                name = f"ray, {actors} actor{'s' * (actors > 1)}"
                runs.setdefault(name, []).append(run_row(name, "ray", command, out, n))
                written = sum(len(s.read_text().splitlines()) for s in out.glob("part-*.jsonl"))
                if written != n:
                    raise RuntimeError(f"ray with {actors} actors wrote {written} rows, not {n}")
        # Each row: its run of median wall time (the lower middle one for an even count).
        rows = [sorted(r, key=lambda x: x["wall_s"])[(len(r) - 1) // 2] for r in runs.values()]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{n} photos of {args.dir}; {os.cpu_count()} CPUs; median of {args.repeats} runs; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset: 1 here)')}")  # fmt: skip
    print()
    print("| run | images/s (start-up incl.) | images/s after the first result | "
          "time to first result | peak memory (PSS, all processes) |")  # fmt: skip
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['row']} | {r['images_per_s']:.2f} | {r['after_first_images_per_s']:.2f} | "
              f"{r['first_result_s']:.1f} s | {r['peak_pss_mib']:.0f} MiB |")  # fmt: skip
    local2, ray2 = rows[1]["images_per_s"], rows[3]["images_per_s"]
    steady_local2, steady_ray2 = (rows[k]["after_first_images_per_s"] for k in (1, 3))
    print()
    for what, a, b in (("start-up incl.", local2, ray2), ("after the first result",
                                                          steady_local2, steady_ray2)):  # fmt: skip
        verdict = "met" if b / a >= 1 - TARGET_RAY_OVERHEAD else "missed"
        print(f"Ray with 2 actors vs local --workers 2, {what}: {b / a:.0%} of its images/s "
              f"(target >= 85%: {verdict})")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

"""Throughput of the ``dfl-infer`` command over a folder of generated images.

Makes ``--n`` (default 200) synthetic 640x480 JPEGs (noise and drawn shapes, as in
``end_to_end.py``), saves a random-weights model, then runs the CLI as a child process once per
mode and reports images per second (wall clock of the whole command, model loading included) and
the child's peak RSS (``os.wait4`` rusage). Modes: ``box`` (``--box``, no detector) and
``detector`` (MediaPipe; on these hand-free images it finds nothing and the predictor takes its
whole-image path), each with the given ``--workers`` values.

    python benchmarks/cli_throughput.py [--config r18] [--n 200] [--modes box,detector]
        [--workers 0,2] [--batch-size 8] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark script only
from end_to_end import loadavg, make_images  # noqa: E402


def run_cli(cmd: list[str]) -> tuple[float, float, int, str]:
    """Wall seconds, peak RSS (MiB) and exit status of one CLI run."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    rss = usage.ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else usage.ru_maxrss / 1024
    return wall, rss, proc.returncode, err


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="r18", help="model preset (random weights)")
    p.add_argument("--n", type=int, default=200, help="number of generated images")
    p.add_argument("--modes", default="box,detector", help="box and/or detector")
    p.add_argument("--workers", default="0,2", help="comma-separated --workers values")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--compile", action="store_true", help="pass --compile to the CLI")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = p.parse_args(argv)

    import torch

    from dfl_infer.model import DFLConfig, DFLModel

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        make_images(folder, args.n)
        torch.manual_seed(0)
        weights = Path(tmp) / "weights"
        DFLModel(getattr(DFLConfig, args.config)()).save_pretrained(weights)
        print(f"{args.n} images 640x480, {args.config} random weights, {os.cpu_count()} CPUs")
        print(f"{'mode':9} {'workers':>7} {'wall s':>8} {'images/s':>9} {'ms/image':>9} "
              f"{'peak RSS MiB':>12} {'load avg (1,5,15 min) after':>28}")  # fmt: skip
        for mode in args.modes.split(","):
            for workers in (int(w) for w in args.workers.split(",")):
                out = Path(tmp) / f"{mode}_{workers}.json"
                cmd = [sys.executable, "-m", "dfl_infer.cli", str(folder), "--weights",
                       str(weights), "--device", "cpu", "--out", str(out), "-q",
                       "--batch-size", str(args.batch_size), "--workers", str(workers)]  # fmt: skip
                if mode == "box":
                    cmd += ["--box", "100,60,420,380"]
                if args.compile:
                    cmd.append("--compile")
                load_before = loadavg()
                wall, rss, code, err = run_cli(cmd)
                if code != 0:
                    print(err[-3000:], file=sys.stderr)
                    return 1
                images = json.loads(out.read_text())["images"]
                errors = sum(1 for r in images if r["error"])
                res = {
                    "mode": mode, "workers": workers, "config": args.config, "images": args.n,
                    "errors": errors, "wall_s": wall, "images_per_s": args.n / wall,
                    "ms_per_image": 1e3 * wall / args.n, "peak_rss_mib": rss,
                    "batch_size": args.batch_size, "loadavg_before": load_before,
                    "loadavg_after": loadavg(),
                }  # fmt: skip
                results.append(res)
                load = " ".join(res["loadavg_after"])
                print(f"{mode:9} {workers:7d} {wall:8.1f} {res['images_per_s']:9.2f} "
                      f"{res['ms_per_image']:9.0f} {rss:12.0f} {load:>28}", flush=True)  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu_count": os.cpu_count(), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

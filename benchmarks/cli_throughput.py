"""Throughput of the ``dfl-infer`` command over a folder of generated images.

Makes ``--n`` (default 200) synthetic 640x480 JPEGs (noise and drawn shapes, as in
``end_to_end.py``), saves a random-weights model, then runs the CLI as a child process once per
mode and reports images per second (wall clock of the whole command, model loading included) and
memory sampled from /proc every 0.1 s (Linux only): the CLI process's peak RSS (its ``VmHWM``;
``ru_maxrss`` would report this script's own size, see _memory.py) and the peak of the summed
proportional set size of the CLI and its worker processes (PSS splits shared pages between their
sharers, so the forked workers' copy-on-write pages count once). Modes: ``box`` (``--box``, no
detector) and ``detector`` (MediaPipe, which runs in the worker processes when ``--workers`` > 0;
on these hand-free images it finds nothing and the predictor takes its whole-image path), each
with the given ``--workers`` values and ``--backends``.

    python benchmarks/cli_throughput.py [--config r18] [--n 200] [--modes box,detector]
        [--workers 0,2] [--backends torch,onnxruntime] [--batch-size 8] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark script only
from _memory import peak_rss_mib, tree_pss_mib  # noqa: E402
from end_to_end import loadavg, make_images, random_model  # noqa: E402


def run_cli(cmd: list[str]) -> tuple[float, float | None, float | None, int, str]:
    """Wall seconds, the CLI process's peak RSS, the peak summed PSS of it and its workers (MiB;
    both None off Linux) and the exit status of one CLI run. Memory is sampled from /proc every
    0.1 s (the RSS high-water mark is exact; the PSS sum may miss a peak shorter than that)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    peaks: list[float | None] = [None, None]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            try:
                rss, pss = peak_rss_mib(proc.pid), tree_pss_mib(proc.pid)
            except OSError:
                continue
            peaks[0] = max(peaks[0] or 0.0, rss)
            peaks[1] = max(peaks[1] or 0.0, pss)

    sampler = threading.Thread(target=sample, daemon=True)
    if Path("/proc/self/smaps_rollup").is_file():
        sampler.start()
    err = proc.stderr.read()  # until the CLI closes it at exit; the sampler ran meanwhile
    done.set()
    proc.wait()
    return time.perf_counter() - t0, peaks[0], peaks[1], proc.returncode, err


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="r18", help="model preset (random weights)")
    p.add_argument("--n", type=int, default=200, help="number of generated images")
    p.add_argument("--modes", default="box,detector", help="box and/or detector")
    p.add_argument("--workers", default="0,2", help="comma-separated --workers values")
    p.add_argument("--backends", default="torch", help="torch and/or onnxruntime")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--compile", action="store_true", help="pass --compile to the CLI")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = p.parse_args(argv)

    from dfl_infer.bundle import ENV_BUNDLE, resolve_bundle
    from dfl_infer.cache import ENV_CACHE_DIR

    bundle = resolve_bundle() if "detector" in args.modes.split(",") else None

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        make_images(folder, args.n)
        weights = Path(tmp) / "weights"
        random_model(args.config).save_pretrained(weights)
        print(f"{args.n} images 640x480, {args.config} random weights, {os.cpu_count()} CPUs")
        # The children cache their ONNX graph in a temporary folder, exported here beforehand
        # (the timings are of a warm cache); they find the detector bundle where it is now.
        if "onnxruntime" in args.backends.split(","):
            from dfl_infer.backends import exported_model

            exported_model(random_model(args.config), Path(tmp) / "cache" / "onnx")
        os.environ[ENV_CACHE_DIR] = str(Path(tmp) / "cache")
        if "detector" in args.modes.split(","):
            os.environ[ENV_BUNDLE] = str(bundle)
        print(
            f"{'mode':9} {'backend':11} {'workers':>7} {'wall s':>7} {'images/s':>8} "
            f"{'ms/image':>8} {'RSS MiB':>7} {'PSS+wrk':>8} {'load avg after':>16}"
        )
        for mode in args.modes.split(","):
            for backend in args.backends.split(","):
                for workers in (int(w) for w in args.workers.split(",")):
                    out = Path(tmp) / f"{mode}_{backend}_{workers}.json"
                    cmd = [sys.executable, "-m", "dfl_infer.cli", str(folder), "-q"]
                    cmd += ["--weights", str(weights), "--device", "cpu", "--out", str(out)]
                    cmd += ["--batch-size", str(args.batch_size), "--workers", str(workers)]
                    cmd += ["--backend", backend]
                    if mode == "box":
                        cmd += ["--box", "100,60,420,380"]
                    if args.compile:
                        cmd.append("--compile")
                    load_before = loadavg()
                    wall, rss, tree, code, err = run_cli(cmd)
                    if code != 0:
                        print(err[-3000:], file=sys.stderr)
                        return 1
                    images = json.loads(out.read_text())["images"]
                    errors = sum(1 for r in images if r["error"])
                    res = {
                        "mode": mode,
                        "backend": backend,
                        "workers": workers,
                        "config": args.config,
                        "images": args.n,
                        "errors": errors,
                        "wall_s": wall,
                        "images_per_s": args.n / wall,
                        "ms_per_image": 1e3 * wall / args.n,
                        "peak_rss_mib": rss,
                        "peak_pss_with_workers_mib": tree,
                        "batch_size": args.batch_size,
                        "loadavg_before": load_before,
                        "loadavg_after": loadavg(),
                    }
                    results.append(res)
                    load = " ".join(res["loadavg_after"])
                    rss_s, tree_s = (f"{v:.0f}" if v is not None else "-" for v in (rss, tree))
                    print(
                        f"{mode:9} {backend:11} {workers:7d} {wall:7.1f} "
                        f"{res['images_per_s']:8.2f} {res['ms_per_image']:8.0f} {rss_s:>7} "
                        f"{tree_s:>8} {load:>16}",
                        flush=True,
                    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu_count": os.cpu_count(), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

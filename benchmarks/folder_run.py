"""Folder runs on real photos (tracker issue 16): ``dfl-infer DIR`` next to the predictor loop
and MediaPipe alone, and the predictor's memory over a long folder.

Takes the first ``--n`` (default 200) photos of ``--dir`` (sorted by name; default
``../shared/data/real-hands/images``), links them into a temporary folder and runs, each as a
fresh child process, one after another (the photos read once beforehand, so every row finds
them in the page cache):

- ``dfl-infer DIR --out j.json -q --workers W`` for each of ``--workers`` (default 0,2), with
  the default weights and backend (``auto``: the shipped ``model.onnx`` in onnxruntime);
- ``predictor loop``: ``DFLPredictor()`` (same weights, same backend), its detector loaded,
  then ``predict(path)`` per photo: the reference of the CLI's overhead;
- ``MediaPipe alone``: MediaPipe's ``HandLandmarker`` from the same bundle, IMAGE mode,
  ``num_hands=2`` and its default confidences (as benchmarks/startup.py), ``detect`` of
  ``mp.Image.create_from_file(path)`` per photo;
- ``predictor loop, long``: the loop over ``--n-long`` (default 1000) photos, the first ones of
  ``--dir`` (cycled when it has fewer: the run says so), recording the process's current RSS
  (``VmRSS``) after every image: the mean over the first and the last 100 images (half the run
  each when it is shorter than 200) and their difference, against issue 16's "flat over 1,000
  images" (growth <= 5%) and its peak RSS against "<= 600 MiB".

Every row's wall time is the whole child process, from its start to its exit (Python start-up,
imports, model and detector loading included), taken with the peak RSS of its main process
(``VmHWM``, see _memory.py) and the peak summed PSS of it and its workers by
``cli_throughput.run_cli``; images/s = images / wall. The CLI's overhead over the predictor
loop = CLI wall / loop wall - 1 (both start from nothing, so what differs is the CLI's own work:
argparse, the folder listing, batching, worker processes, writing the JSON); the issue's target
is under 10%. The in-process rows also give "loop images/s": the images over the loop alone,
start-up excluded. "torch" says whether PyTorch was imported by the process's end (the CLI runs
under a two-line wrapper that reports it at exit). ``--repeats R`` runs the first four rows R
times, interleaved (so that a change of machine load hits them alike), and keeps each row's run
of median wall time (the lower middle one for an even R); the memory run runs once.

    python benchmarks/folder_run.py [--dir DIR] [--n 200] [--n-long 1000] [--workers 0,2]
        [--repeats 1] [--weights DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts only
from _memory import peak_rss_mib  # noqa: E402

REAL_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-hands" / "images"
# Targets of tracker issue 16 (CPU, default weights).
TARGET_PEAK_RSS_MIB = 600.0
TARGET_GROWTH = 0.05  # mean RSS of the last 100 images over the first 100, minus 1
TARGET_CLI_OVERHEAD = 0.10  # CLI wall / predictor-loop wall, minus 1
WINDOW = 100  # images at each end of the long run
# The CLI as `dfl-infer` runs it, plus a line on stderr at exit saying whether PyTorch was
# imported (a DataLoader of --workers > 0 imports it; the predictor's "auto" backend does not).
TORCH_MARK = "folder_run: torch imported:"
CLI_CHILD = (
    "import atexit, sys; "
    f"atexit.register(lambda: print({TORCH_MARK!r}, 'torch' in sys.modules, file=sys.stderr)); "
    "from dfl_infer.cli import main; sys.exit(main(sys.argv[1:]))"
)


def current_rss_mib() -> float:
    """This process's resident set size now (``VmRSS``, MiB; Linux, else NaN)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return float(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def loop_child(files: list[str], weights: str | None) -> dict[str, Any]:
    """The predictor loop, in this (fresh) process: ``DFLPredictor`` and its detector, then
    ``predict`` per file, the RSS after each."""
    t0 = time.perf_counter()
    from dfl_infer import DFLPredictor

    rss_imports = current_rss_mib()
    predictor = DFLPredictor(weights)
    predictor.detector.load()  # loaded before the loop, so the loop times the images only
    t1 = time.perf_counter()
    rss: list[float] = []
    hands = 0
    with predictor:
        for path in files:
            hands += len(predictor.predict(path).hands)
            rss.append(current_rss_mib())
        t2 = time.perf_counter()
        backend = predictor.backend
    return {
        "setup_s": t1 - t0,
        "loop_s": t2 - t1,
        "hands": hands,
        "backend": backend,
        "torch_imported": "torch" in sys.modules,
        "rss_after_imports_mib": rss_imports,
        "rss_mib": rss,
        "peak_rss_mib": peak_rss_mib(),
    }


def mediapipe_child(files: list[str], bundle: str) -> dict[str, Any]:
    """MediaPipe's HandLandmarker alone, in this (fresh) process, over the files."""
    t0 = time.perf_counter()
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.HandLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=bundle),
        running_mode=vision.RunningMode.IMAGE,
        num_hands=2,
    )
    landmarker = vision.HandLandmarker.create_from_options(options)
    t1 = time.perf_counter()
    hands = 0
    for path in files:
        hands += len(landmarker.detect(mp.Image.create_from_file(path)).hand_landmarks)
    t2 = time.perf_counter()
    landmarker.close()
    return {
        "setup_s": t1 - t0,
        "loop_s": t2 - t1,
        "hands": hands,
        "torch_imported": "torch" in sys.modules,
        "peak_rss_mib": peak_rss_mib(),
    }


def link_photos(sources: list[Path], folder: Path, numbered: bool) -> list[Path]:
    """Symbolic links to ``sources`` in ``folder`` (copies where links cannot be made), named
    as the photos (``numbered``: prefixed with their index, so a photo may come back)."""
    folder.mkdir()
    paths = []
    for i, src in enumerate(sources):
        dest = folder / (f"{i:05d}_{src.name}" if numbered else src.name)
        try:
            dest.symlink_to(src.resolve())
        except OSError:
            shutil.copyfile(src, dest)
        paths.append(dest)
    return paths


def window_means(rss: list[float]) -> tuple[int, float, float]:
    """(window, mean RSS over the first ``window`` images, over the last ``window``): 100
    images, or half the run when it is shorter than 200."""
    w = max(1, min(WINDOW, len(rss) // 2))
    return w, statistics.fmean(rss[:w]), statistics.fmean(rss[-w:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default=str(REAL_PHOTOS), help="folder of photos")
    p.add_argument("--n", type=int, default=200, help="photos timed (the first, by name)")
    p.add_argument("--n-long", type=int, default=1000, help="images of the memory run")
    p.add_argument("--workers", default="0,2", help="comma-separated --workers values")
    p.add_argument("--repeats", type=int, default=1, help="runs of each row but the memory run")
    p.add_argument("--weights", help="weights folder (default: the package's model)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    # Child mode: one in-process row, its JSON written to --result.
    p.add_argument("--child", choices=("loop", "mediapipe"), help=argparse.SUPPRESS)
    p.add_argument("--files", help=argparse.SUPPRESS)
    p.add_argument("--bundle", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        files = json.loads(Path(args.files).read_text())
        if args.child == "loop":
            res = loop_child(files, args.weights)
        else:
            res = mediapipe_child(files, args.bundle)
        Path(args.result).write_text(json.dumps(res))
        return 0

    photo_dir = Path(args.dir)
    if not photo_dir.is_dir():
        print(f"folder_run: --dir {photo_dir} is missing or not a folder", file=sys.stderr)
        return 2
    if args.n < 1 or args.n_long < 2 or args.repeats < 1:
        print("folder_run: --n and --repeats must be >= 1, --n-long >= 2", file=sys.stderr)
        return 2
    from cli_throughput import run_cli
    from end_to_end import loadavg
    from memory_large import machine

    from dfl_infer.bundle import ENV_BUNDLE, resolve_bundle
    from dfl_infer.image import IMAGE_SUFFIXES

    photos = sorted(
        f for f in photo_dir.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
    )
    if not photos:
        print(f"folder_run: no photos in {photo_dir}", file=sys.stderr)
        return 2
    bundle = resolve_bundle()
    os.environ[ENV_BUNDLE] = str(bundle)  # the children find the detector where it is now
    info = machine()
    info["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS")
    ram = f"{info['ram_gib']:.0f} GiB RAM" if info["ram_gib"] else "RAM unknown"
    print(
        f"{info['cpu']}, {info['cpu_count']} CPUs, {ram}, OMP_NUM_THREADS="
        f"{info['omp_num_threads'] or 'unset'}; load average at start {' '.join(info['loadavg'])}"
    )
    short_sources = photos[: args.n]
    long_sources = [photos[i % len(photos)] for i in range(args.n_long)]
    cycled = args.n_long > len(photos)
    what = (
        f"{len(short_sources)} photos of {photo_dir} (first by name)"
        + ("" if len(short_sources) == args.n else f", all there are (--n {args.n})")
        + f"; memory run over {args.n_long} images: "
        + (
            f"its {len(photos)} photos cycled {args.n_long / len(photos):.1f} times"
            if cycled
            else f"its first {args.n_long} photos"
        )
        + "; weights "
        + (args.weights or "default")
    )
    print(what)
    rows: list[dict[str, Any]] = []
    memory: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dfl-folder-run-") as tmp:
        folder = Path(tmp) / "photos"
        short = link_photos(short_sources, folder, numbered=False)
        long = link_photos(long_sources, Path(tmp) / "long", numbered=True)
        for src in set(long_sources) | set(short_sources):  # into the page cache for every row
            src.read_bytes()
        lists = {}
        for name, paths in (("short", short), ("long", long)):
            lists[name] = Path(tmp) / f"{name}.json"
            lists[name].write_text(json.dumps([str(q) for q in paths]))
        weights = ["--weights", args.weights] if args.weights else []

        def child(kind: str, files: str) -> dict[str, Any] | None:
            result = Path(tmp) / f"{kind}_{files}.json"
            cmd = [sys.executable, __file__, "--child", kind, "--files", str(lists[files])]
            cmd += ["--bundle", str(bundle), "--result", str(result), *weights]
            wall, rss, tree, code, err = run_cli(cmd)
            if code != 0:
                print(err[-3000:], file=sys.stderr)
                return None
            res: dict[str, Any] = json.loads(result.read_text())
            n = len(json.loads(lists[files].read_text()))
            res.update(images=n, wall_s=wall, images_per_s=n / wall)
            res.update(loop_images_per_s=n / res["loop_s"], peak_pss_with_workers_mib=tree)
            res["loadavg_after"] = loadavg()
            return res

        def cli(workers: int) -> dict[str, Any] | None:
            out = Path(tmp) / f"cli_{workers}.json"
            cmd = [sys.executable, "-c", CLI_CHILD, str(folder), "--out", str(out), "-q"]
            cmd += ["--workers", str(workers), *weights]
            wall, rss, tree, code, err = run_cli(cmd)
            if code != 0:
                print(err[-3000:], file=sys.stderr)
                return None
            doc = json.loads(out.read_text())
            marks = [ln for ln in err.splitlines() if ln.startswith(TORCH_MARK)]
            return {
                "workers": workers,
                "images": len(doc["images"]),
                "errors": sum(1 for r in doc["images"] if r["error"]),
                "hands": sum(len(r["hands"]) for r in doc["images"]),
                "backend": doc["model"]["backend"],
                "torch_imported": marks[-1].split()[-1] == "True" if marks else None,
                "wall_s": wall,
                "images_per_s": len(doc["images"]) / wall,
                "peak_rss_mib": rss,
                "peak_pss_with_workers_mib": tree,
                "loadavg_after": loadavg(),
            }

        plan: list[tuple[str, Any]] = [
            (f"dfl-infer --workers {w}", functools.partial(cli, int(w)))
            for w in args.workers.split(",")
        ]
        plan += [
            ("predictor loop", functools.partial(child, "loop", "short")),
            ("MediaPipe alone", functools.partial(child, "mediapipe", "short")),
        ]
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in plan}
        for _ in range(args.repeats):  # interleaved, so that a change of load hits every row
            for name, run in plan:
                res = run()
                if res is None:
                    return 1
                runs[name].append(res)
        for name, results in runs.items():
            kept = sorted(results, key=lambda r: r["wall_s"])[(len(results) - 1) // 2]
            kept = {k: v for k, v in kept.items() if k != "rss_mib"}
            rows.append({"row": name, **kept, "walls_s": [r["wall_s"] for r in results]})
        by_name = {r["row"]: r for r in rows}
        loop, mp_alone = by_name["predictor loop"], by_name["MediaPipe alone"]
        long_run = child("loop", "long")
        if long_run is None:
            return 1
        w, first, last = window_means(long_run["rss_mib"])
        memory = {
            **long_run,
            "cycled": cycled,
            "window": w,
            "mean_rss_first_mib": first,
            "mean_rss_last_mib": last,
            "growth": last / first - 1,
        }

    def f(v: float | None, fmt: str = ".0f") -> str:
        return "-" if v is None else format(v, fmt)

    print(
        f"\n{'row':24} {'images':>6} {'wall s':>7} {'images/s':>8} {'loop im/s':>9} "
        f"{'RSS MiB':>7} {'PSS+wrk':>7} {'backend':11} {'torch':5} {'hands':>5} "
        f"{'load avg after':>16}"
    )
    for r in rows:
        torch_s = {True: "yes", False: "no"}.get(r["torch_imported"], "-")
        print(
            f"{r['row']:24} {r['images']:6d} {r['wall_s']:7.1f} {r['images_per_s']:8.2f} "
            f"{f(r.get('loop_images_per_s'), '.2f'):>9} {f(r['peak_rss_mib']):>7} "
            f"{f(r['peak_pss_with_workers_mib']):>7} {r.get('backend', '-'):11} {torch_s:5} "
            f"{r['hands']:5d} {' '.join(r['loadavg_after']):>16}"
        )
    print(
        "(wall: the whole process, start-up included; images/s = images / wall; loop im/s: the "
        "loop alone; RSS: the main process's peak; PSS+wrk: peak summed PSS with workers)"
    )
    overheads = {}
    for r in rows:
        if "workers" in r:
            over = r["wall_s"] / loop["wall_s"] - 1
            overheads[r["workers"]] = over
            r["overhead_vs_loop"] = over
            ok = "met" if over < TARGET_CLI_OVERHEAD else "MISSED"
            print(
                f"CLI overhead over the predictor loop, --workers {r['workers']}: "
                f"{100 * over:+.1f}% (target < {100 * TARGET_CLI_OVERHEAD:.0f}%: {ok}); "
                f"{r['images_per_s']:.2f} images/s vs MediaPipe alone "
                f"{mp_alone['images_per_s']:.2f} "
                f"({r['images_per_s'] / mp_alone['images_per_s']:.2f}x)"
            )
    growth, peak = memory["growth"], memory["peak_rss_mib"]
    print(
        f"\nmemory, predictor loop over {memory['images']} images"
        + (" (cycled photos)" if cycled else "")
        + f": RSS after imports {memory['rss_after_imports_mib']:.0f} MiB; mean RSS over the "
        f"first {w} images {memory['mean_rss_first_mib']:.1f} MiB, last {w} "
        f"{memory['mean_rss_last_mib']:.1f} MiB: growth {100 * growth:+.2f}% (target <= "
        f"{100 * TARGET_GROWTH:.0f}%: {'met' if growth <= TARGET_GROWTH else 'MISSED'}); "
        f"peak RSS {peak:.0f} MiB (target <= {TARGET_PEAK_RSS_MIB:.0f} MiB: "
        f"{'met' if peak <= TARGET_PEAK_RSS_MIB else 'MISSED'}); {memory['wall_s']:.0f} s"
    )
    load_end = loadavg()
    print(f"load average at end: {' '.join(load_end)}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "machine": info,
                    "loadavg_end": load_end,
                    "images": what,
                    "weights": args.weights or "default",
                    "rows": rows,
                    "cli_overhead_vs_loop": {str(k): v for k, v in overheads.items()},
                    "memory": memory,
                    "targets": {
                        "peak_rss_mib": TARGET_PEAK_RSS_MIB,
                        "growth": TARGET_GROWTH,
                        "cli_overhead": TARGET_CLI_OVERHEAD,
                    },
                },
                fh,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

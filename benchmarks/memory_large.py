"""Peak memory of ``dfl-infer FOLDER --out ...`` on a folder of very large photos (issue 14, 8).

Makes ``--n`` (default 8) JPEGs of ``--megapixels`` (default 100) in a temporary folder: real
photos from ``../shared/data/real-hands/images`` upscaled (hand-free generated images when that
folder is absent), so the detector has hands to find. Then runs the CLI as a child process, one
row per mode, twice side by side:

- ``reference``: every image decoded whole, as before issue 14 item 8 (the child sets
  ``dfl_infer.image.LARGE_IMAGE_PIXELS`` out of reach);
- ``lazy``: the default, a file over ``LARGE_IMAGE_PIXELS`` opened as a ``LargeImage``: the
  detector sees a reduced preview (a JPEG decoded at 1/2..1/8 of its size), the network's crops
  are cut from a decode only as fine as they need, and overlays are drawn on the preview.

Modes: ``out`` (``--out J``), ``vis`` (``--out J --vis DIR``) and ``box`` (``--box``, a 400 px
box in the middle: its crop needs the full resolution, the lazy path's worst case). Peak RSS is
the CLI process's ``VmHWM`` (``_memory.py``), sampled with its workers' summed PSS every 0.1 s
(``cli_throughput.run_cli``); the reference is run with ``--workers 0`` only (with workers it
would hold several batches of 300 MB images at once). The lazy outputs are compared with the
reference's: same hands, and the mean joint distance relative to the hand's size.

    python benchmarks/memory_large.py [--n 8] [--megapixels 100] [--modes out,vis,box]
        [--workers 0] [--weights DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts only
from cli_throughput import run_cli  # noqa: E402
from end_to_end import loadavg, make_images  # noqa: E402

REAL_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-hands" / "images"
MODES = ("out", "vis", "box")
# The child process: the CLI itself, with the large-image path switched off for the reference.
CHILD = "import sys; from dfl_infer.cli import main; sys.exit(main(sys.argv[1:]))"
REFERENCE_CHILD = (
    "import sys, dfl_infer.image as m; m.LARGE_IMAGE_PIXELS = 1 << 62; "
    "from dfl_infer.cli import main; sys.exit(main(sys.argv[1:]))"
)
GIB = 1024.0


def make_large_images(folder: Path, n: int, megapixels: float) -> tuple[list[Path], str]:
    """``n`` 4:3 JPEGs (quality 90) of about ``megapixels``; says where their content came from."""
    import cv2

    width = round(math.sqrt(megapixels * 1e6 * 4 / 3))
    height = round(width * 3 / 4)
    real = sorted(REAL_PHOTOS.glob("*.jpg")) if REAL_PHOTOS.is_dir() else []
    if real:
        sources, what = real[:: max(1, len(real) // n)][:n], f"real photos from {REAL_PHOTOS}"
    else:
        sources, what = make_images(folder, n), "generated hand-free images"
    paths = []
    for i, src in enumerate(sources):
        small = cv2.imread(str(src))
        big = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
        path = folder / f"large_{i:02d}.jpg"
        cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
        del big
    for src in sources:
        if src.parent == folder:
            src.unlink()  # the generated small ones
    return paths, f"{n} JPEGs of {width} x {height} ({width * height / 1e6:.0f} MP), {what}"


def compare(reference: dict[str, Any], lazy: dict[str, Any]) -> dict[str, Any]:
    """How far the lazy outputs are from the reference's: images whose hands (count and sides)
    differ, and over the others the mean and largest per-hand mean joint distance divided by the
    hand's size (its 2D joints' larger extent)."""
    changed, rel = 0, []
    for a, b in zip(reference["images"], lazy["images"]):
        sides_a = [h["handedness"] for h in a["hands"]]
        if sides_a != [h["handedness"] for h in b["hands"]]:
            changed += 1
            continue
        for ha, hb in zip(a["hands"], b["hands"]):
            ja, jb = np.array(ha["joints_2d"], float), np.array(hb["joints_2d"], float)
            size = float(np.ptp(ja, axis=0).max()) + 1e-9
            rel.append(float(np.linalg.norm(ja - jb, axis=1).mean()) / size)
    return {
        "images_with_other_hands": changed,
        "hands_compared": len(rel),
        "mean_rel_joint_diff": float(np.mean(rel)) if rel else None,
        "max_rel_joint_diff": float(np.max(rel)) if rel else None,
    }


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    ram = None
    try:
        with open("/proc/meminfo") as f:
            ram = int(next(line.split()[1] for line in f if line.startswith("MemTotal"))) / 2**20
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "ram_gib": ram, "loadavg": loadavg()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=8, help="number of large images")
    p.add_argument("--megapixels", type=float, default=100.0, help="size of each image")
    p.add_argument("--modes", default=",".join(MODES), help="out, vis and/or box")
    p.add_argument("--workers", default="0", help="comma-separated --workers values (lazy)")
    p.add_argument("--weights", help="weights folder (default: the package's model)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = p.parse_args(argv)
    modes = args.modes.split(",")
    if not set(modes) <= set(MODES):
        modes_help = ", ".join(MODES)
        print(f"memory_large: --modes takes {modes_help}, got {args.modes!r}", file=sys.stderr)
        return 2
    from dfl_infer.image import LARGE_IMAGE_PIXELS, PREVIEW_PIXELS

    info = machine()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dfl-memory-large-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        paths, what = make_large_images(folder, args.n, args.megapixels)
        ram = f"{info['ram_gib']:.0f} GiB RAM" if info["ram_gib"] else "RAM unknown"
        print(f"{info['cpu']}, {info['cpu_count']} CPUs, {ram}, load average {info['loadavg']}")
        print(
            f"{what}; lazy above {LARGE_IMAGE_PIXELS / 1e6:.1f} MP, preview "
            f"{PREVIEW_PIXELS / 1e6:.1f} MP"
        )
        print(
            f"{'mode':5} {'workers':>7} {'reference RSS MiB':>17} {'lazy RSS MiB':>12} "
            f"{'lazy PSS+wrk':>12} {'reference s':>11} {'lazy s':>7}  lazy vs reference"
        )
        width = round(math.sqrt(args.megapixels * 1e6 * 4 / 3))
        height = round(width * 3 / 4)
        for mode in modes:
            for workers in (int(w) for w in args.workers.split(",")):
                row: dict[str, Any] = {"mode": mode, "workers": workers}
                outputs = {}
                for kind in ("reference", "lazy") if workers == 0 else ("lazy",):
                    out = Path(tmp) / f"{mode}_{workers}_{kind}.json"
                    cmd = [sys.executable, "-c", REFERENCE_CHILD if kind == "reference" else CHILD]
                    cmd += [str(folder), "-q", "--out", str(out), "--workers", str(workers)]
                    if args.weights:
                        cmd += ["--weights", args.weights]
                    if mode == "vis":
                        cmd += ["--vis", str(Path(tmp) / f"vis_{kind}")]
                    if mode == "box":
                        cx, cy = width // 2, height // 2
                        cmd += ["--box", f"{cx - 200},{cy - 200},{cx + 200},{cy + 200}"]
                    wall, rss, tree, code, err = run_cli(cmd)
                    if code != 0:
                        print(err[-3000:], file=sys.stderr)
                        return 1
                    outputs[kind] = json.loads(out.read_text())
                    row[kind] = {"wall_s": wall, "peak_rss_mib": rss, "peak_pss_tree_mib": tree}
                if "reference" in outputs:
                    row["difference"] = compare(outputs["reference"], outputs["lazy"])
                rows.append(row)
                ref, lazy, diff = row.get("reference", {}), row["lazy"], row.get("difference")
                note = "-"
                if diff is not None:
                    mean = diff["mean_rel_joint_diff"]
                    note = (
                        f"{diff['images_with_other_hands']} of {len(paths)} images other hands; "
                        f"joints {100 * mean:.2f}% of hand size apart"
                        if mean is not None
                        else f"{diff['images_with_other_hands']} of {len(paths)} images other "
                        "hands; no hands found to compare"
                    )

                def f(v: float | None, fmt: str = ".0f") -> str:
                    return "-" if v is None else format(v, fmt)

                print(
                    f"{mode:5} {workers:7d} {f(ref.get('peak_rss_mib')):>17} "
                    f"{f(lazy['peak_rss_mib']):>12} {f(lazy['peak_pss_tree_mib']):>12} "
                    f"{f(ref.get('wall_s'), '.1f'):>11} {f(lazy['wall_s'], '.1f'):>7}  {note}",
                    flush=True,
                )
    worst = max((r["lazy"]["peak_rss_mib"] or 0.0) for r in rows) / GIB
    print(f"largest lazy peak: {worst:.2f} GiB (issue 14 target: under 1.5 GiB)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "images": what, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

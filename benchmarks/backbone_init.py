"""Does starting the encoder from MediaPipe's hand-landmark network pay? Same CPU budget, two runs.

Trains the ``mphand`` preset once per ``--inits`` entry with identical data, seed, schedule and
steps, then prints one table: the final weights' MPJPE on the synthetic test split and their 2D
agreement with MediaPipe's landmarks on the held-out real photos (PCK at 10% of the hand's box
and the mean 2D error in % of it), plus the wall time of each run. Entries:

- ``random``: every weight random, the whole network trained;
- ``mediapipe``: the encoder trunk converted from MediaPipe (``--init-backbone mediapipe``), the
  whole network trained (so the comparison with ``random`` is only about the starting point);
- ``mediapipe-frozen``: the same start with the trunk kept fixed (``--freeze-trunk all``), as the
  default weights were first trained (a frozen *random* trunk would mean nothing, so there is
  no ``random-frozen``).

``--reuse`` takes a run whose folder already holds its final validation instead of training it
again (its wall time is then not known and shows as "-").

    python benchmarks/backbone_init.py --data interhand:SYNTH@1,folder:REAL@1 \\
        --synth-test SYNTH_TEST --real-holdout REAL_HO [--steps 1500] [--lr 5e-4] \\
        [--out runs/backbone_init] [--inits mediapipe-frozen,mediapipe,random] [--reuse]

``SYNTH_TEST`` is ``dfl-train synth --split test`` output (split ``test``); ``REAL_HO`` is
``dfl-train pseudolabel --subset holdout --split test`` output. docs/training.md gives the exact
commands that made its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

INITS = {
    "random": [],
    "mediapipe": ["--init-backbone", "mediapipe"],
    "mediapipe-frozen": ["--init-backbone", "mediapipe", "--freeze-trunk", "all"],
}


def run(init: str, args: argparse.Namespace) -> dict[str, object]:
    out = Path(args.out) / init
    cmd = [sys.executable, "-m", "dfl_infer.training.cli", "fit", "--config", "mphand"]
    cmd += ["--data", args.data, "--mix-batches", "--steps", str(args.steps)]
    cmd += ["--batch-size", str(args.batch_size), "--save-every", str(args.steps)]
    cmd += ["--lr", str(args.lr)]
    cmd += ["--seed", str(args.seed), "--num-workers", "1", "--no-progress", "--out", str(out)]
    cmd += ["--val", f"{args.real_holdout}:test", "--val", f"{args.synth_test}:test"]
    if init not in INITS:
        raise SystemExit(f"--inits: {init!r} is not one of {', '.join(INITS)}")
    cmd += INITS[init]

    def final_val() -> dict[str, dict[str, float]] | None:
        path = out / "metrics.jsonl"
        if not path.is_file():
            return None
        records = [json.loads(line) for line in path.read_text().splitlines()]
        vals = [r for r in records if "val" in r and r["step"] == args.steps]
        return vals[-1]["val"] if vals else None

    wall: float | None = None
    val = final_val() if args.reuse else None
    if val is None:
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
        val = final_val()
        assert val is not None, f"{out}: no validation at step {args.steps}"
    real, synth = (val[k] for k in val)  # in --val order: real first, then synthetic
    return {"init": init, "wall_s": wall, "real": real, "synth": synth}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="fit's --data (mixed in every batch)")
    parser.add_argument("--synth-test", required=True)
    parser.add_argument("--real-holdout", required=True)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4, help="as the default weights' run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--inits", default="mediapipe-frozen,mediapipe,random")
    parser.add_argument("--reuse", action="store_true", help="keep finished runs in --out")
    parser.add_argument("--out", default="runs/backbone_init")
    args = parser.parse_args()
    rows = [run(init, args) for init in args.inits.split(",")]
    print(
        f"\nmphand, {args.steps} steps x batch {args.batch_size}, lr {args.lr}, seed {args.seed}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    print(
        "| encoder init | synthetic test MPJPE (mm) | interacting (mm) | real held-out "
        "PCK@10% box | real mean 2D (% box) | held-out annotations | train wall (min) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        real, synth = r["real"], r["synth"]
        assert isinstance(real, dict) and isinstance(synth, dict)
        wall = "-" if r["wall_s"] is None else f"{float(r['wall_s']) / 60:.1f}"  # type: ignore[arg-type]
        print(
            f"| {r['init']} | {synth['mpjpe_all']:.1f} | {synth['mpjpe_interacting']:.1f} | "
            f"{real['pck2d_10']:.3f} | {real['mean_2d_box_pct']:.1f} | {real['n_images']} | "
            f"{wall} |"
        )


if __name__ == "__main__":
    main()

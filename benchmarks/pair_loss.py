"""Fixed slots or matched pairs, with or without the attention loss: the same run three ways.

Each arm is one ``dfl-train fit`` from the same weights, data, seed and schedule, trained on the
interacting images only (``--hand-types interacting``, the collapse is about them) with the trunk
frozen, and validated every ``--val-every`` steps on ``--val`` with ``dfl-train evaluate``'s
metrics (``fit --val``). The table prints, per arm and validation step: the sided mean 2D error
(each predicted hand scored as the side its handedness output says), the same with each image's
predicted hands matched to the nearer labels, the hand separation, the handedness accuracy and
the interacting MPJPE; then, per arm, the first step at which the nearer-label 2D error reached
``--target`` (% of the hand's box), the convergence figure of tracker issue 21.

Arms (``--arms``): ``fixed`` (the paper's slots), ``matched`` (the cheaper slot assignment per
image, with a handedness head), ``matched+attn`` (plus ``--attn-loss W``, ``--attn-weight W``,
default 1).

    python benchmarks/pair_loss.py --init weights --data interhand:SYNTH --val SYNTH_VAL:val \\
        [--steps 300] [--val-every 100] [--target 30,35] [--out runs/pair_loss] [--reuse]

Without ``--init`` every arm starts from a new network on MediaPipe's trunk (``--config mphand
--init-backbone mediapipe``): the decoder learns from nothing, which is where a dense loss such
as the attention loss should shorten training most. ``--target`` takes several thresholds.

``SYNTH`` and ``SYNTH_VAL``: ``dfl-train synth --split train`` and ``--split val`` output
(docs/training.md). ``--reuse`` reads an arm's finished folder instead of training it again.
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

ARMS = {
    "fixed": ["--pair-loss", "fixed"],
    "matched": ["--pair-loss", "matched"],
    "matched+attn": ["--pair-loss", "matched"],  # + --attn-loss (--attn-weight, default 1)
}
COLUMNS = (
    ("mean_2d_box_pct", "2D % box (sided)", "{:.1f}"),
    ("mean_2d_box_pct_nearest", "2D % box (nearer label)", "{:.1f}"),
    ("hand_separation", "hand separation", "{:.2f}"),
    ("handedness_acc", "handedness", "{:.2f}"),
    ("mpjpe_interacting", "MPJPE interacting (mm)", "{:.1f}"),
)


def validations(out: Path) -> list[tuple[int, dict[str, float]]]:
    """(step, metrics of the first --val folder) for every validation logged in ``out``."""
    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if "val" in record:
            rows.append((int(record["step"]), next(iter(record["val"].values()))))
    return rows


def train(arm: str, args: argparse.Namespace) -> float | None:
    """Train one arm (unless --reuse finds it done); returns its wall time in seconds."""
    out = Path(args.out) / arm
    done = validations(out)
    if args.reuse and done and done[-1][0] >= args.steps:
        return None
    cmd = [sys.executable, "-m", "dfl_infer.training.cli", "fit"]
    if args.init:
        cmd += ["--init", args.init]
    else:
        cmd += ["--config", "mphand", "--init-backbone", "mediapipe"]
    cmd += ["--data", args.data, "--hand-types", "interacting", "--freeze-trunk", "all"]
    cmd += ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr)]
    cmd += ["--save-every", str(args.val_every), "--val", args.val, "--seed", str(args.seed)]
    cmd += ["--num-workers", "1", "--no-progress", "--out", str(out), *ARMS[arm]]
    if arm == "matched+attn":
        cmd += ["--attn-loss", str(args.attn_weight)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--init", help="weights every arm starts from (default: a new network, MediaPipe's trunk)"
    )
    p.add_argument("--data", required=True, help="fit --data (interacting images are kept)")
    p.add_argument("--val", required=True, help="ROOT:SPLIT scored every --val-every steps")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--attn-weight", type=float, default=1.0, help="--attn-loss of matched+attn")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--val-every", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--target", default="30", help="nearer-label 2D errors, % of box (comma-separated)"
    )
    p.add_argument("--out", default="runs/pair_loss")
    p.add_argument("--reuse", action="store_true")
    args = p.parse_args()
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise SystemExit(f"--arms: {', '.join(unknown)} not in {', '.join(ARMS)}")
    walls = {arm: train(arm, args) for arm in arms}

    init = args.init or "a new network (mphand, MediaPipe's trunk)"
    print(
        f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}; {args.steps} steps x "
        f"{args.batch_size}, lr {args.lr}, init {init}, val {args.val}, attention loss weight "
        f"{args.attn_weight:g}\n"
    )
    print("| arm | step | " + " | ".join(c[1] for c in COLUMNS) + " |")
    print("|---|---:|" + "---:|" * len(COLUMNS))
    targets = [float(t) for t in args.target.split(",") if t.strip()]
    reached: dict[tuple[str, float], int] = {}
    for arm in arms:
        for step, m in validations(Path(args.out) / arm):
            cells = [fmt.format(m[key]) for key, _, fmt in COLUMNS]
            print(f"| {arm} | {step} | " + " | ".join(cells) + " |")
            for t in targets:
                if (arm, t) not in reached and m["mean_2d_box_pct_nearest"] <= t:
                    reached[(arm, t)] = step
    heads = " | ".join(f"first step with nearer-label 2D <= {t:g}%" for t in targets)
    print(f"\n| arm | {heads} | train wall (min) |")
    print("|---|" + "---:|" * (len(targets) + 1))
    for arm in arms:
        wall = walls[arm]
        cells = " | ".join(str(reached.get((arm, t), f"not in {args.steps}")) for t in targets)
        print(f"| {arm} | {cells} | {'-' if wall is None else f'{wall / 60:.1f}'} |")


if __name__ == "__main__":
    main()

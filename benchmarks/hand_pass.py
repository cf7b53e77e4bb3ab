"""What the per-hand pass buys, and what it costs, by how much a hand's own crop enlarges it.

The predictor re-runs each hand of a two-hand crop in a crop of its own
(``dfl_infer.hand_pass``). A hand that already fills much of the pair crop gains few pixels
from that; ``hand_crops(min_gain=G)`` skips a hand whose own crop enlarges it by less than G
(its crop pixels per image pixel over the pair crop's). For each InterHand-layout folder and
each G this prints the hand crops run per image (the extra network passes) and the metrics of
``dfl-train evaluate --hand-pass`` (GT crops, each hand scored as the side its handedness output
says). ``G = off`` is the first pass alone; ``G = 0`` re-runs every hand the other guards let
through (the predictor before the gain rule).

    python benchmarks/hand_pass.py --weights weights --data COMP_HO:test --data SYNTH_TEST:test
        [--gains off,0,1.2,1.4,1.6] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from dfl_infer.hand_pass import MIN_GAIN
from dfl_infer.model import DFLModel
from dfl_infer.training.data import AugmentConfig, InterHandDataset
from dfl_infer.training.evaluate import (
    evaluate_predictions,
    hand_pass_dataset,
    predict_dataset,
)

COLUMNS = (
    ("pck2d_10", "PCK@10%", "{:.3f}"),
    ("mean_2d_box_pct", "mean 2D %", "{:.2f}"),
    ("hand_separation", "separation", "{:.2f}"),
    ("handedness_acc", "hand-set acc", "{:.3f}"),
    ("mpjpe_interacting", "MPJPE int mm", "{:.1f}"),
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="weights", help="weights folder or Hub id")
    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="ROOT:SPLIT",
        help="InterHand-layout folder and split (repeatable)",
    )
    p.add_argument("--gains", default="off,0,1.2,1.4,1.6", help="comma-separated min_gain values")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--json", metavar="PATH", help="write the rows as JSON")
    args = p.parse_args(argv)
    try:
        gains = [None if g == "off" else float(g) for g in args.gains.split(",")]
    except ValueError:
        p.error(f"--gains {args.gains!r}: not a comma list of numbers and 'off'")
    model = DFLModel.from_pretrained(args.weights, map_location="cpu").eval()
    cfg = model.config
    print(
        f"{args.weights}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}; the predictor's MIN_GAIN = {MIN_GAIN}"
    )
    rows = []
    for spec in args.data:
        root, _, split = spec.rpartition(":")
        if not root:
            p.error(f"--data {spec!r}: not ROOT:SPLIT")
        ds = InterHandDataset(
            Path(root), split, cfg.input_size, cfg.box_scale, AugmentConfig.none(), cfg.upright
        )
        first = predict_dataset(model, ds, args.batch_size)
        header = f"{'min_gain':>8} {'crops/img':>9} {'s':>6} " + " ".join(
            f"{title:>12}" for _, title, _ in COLUMNS
        )
        print(f"\n{root} ({split}, {len(ds)} images)\n{header}")
        for gain in gains:
            start = time.perf_counter()
            if gain is None:
                uvd, per_image = first.joints_25d, 0.0
            else:
                stats: dict[str, int] = {}
                uvd = hand_pass_dataset(
                    model, ds, first, args.batch_size, min_gain=gain, stats=stats
                )
                per_image = stats.get("hand_crops", 0) / max(1, len(ds))
            seconds = time.perf_counter() - start
            metrics = evaluate_predictions(ds, uvd, first.hand_presence, first.rel_root_depth)
            label = "off" if gain is None else f"{gain:g}"
            cells = " ".join(f"{fmt.format(metrics[key]):>12}" for key, _, fmt in COLUMNS)
            print(f"{label:>8} {per_image:>9.2f} {seconds:>6.1f} {cells}", flush=True)
            rows.append({"data": spec, "min_gain": gain, "crops_per_image": per_image, **metrics})
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

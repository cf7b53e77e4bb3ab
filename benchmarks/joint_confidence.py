"""Which of the network's outputs tells how good a joint is: the per-joint signals the DFL
network gives for free, ranked by how well they predict each joint's 2D error.

For every valid joint of every annotated hand of an InterHand-layout folder (the evaluation crop
around the label box, as ``dfl-train evaluate`` cuts it), the 2D error in % of the hand's box
(as ``evaluate``'s ``mean_2d_box_pct``) is compared with:

- ``iteration_spread``: RMS distance of the decoder's T per-iteration 2D joints and the final
  head's from their mean (what ``decode.joint_confidence`` uses);
- ``last_vs_final``: the last iteration's 2D joint against the final head's;
- ``first_vs_final``: the first iteration's against the final head's;
- ``seg_hand_prob``: the segmentation's probability of the joint's own hand (its 16 part
  classes) at the joint's predicted pixel;
- ``seg_foreground_prob``: 1 - the background probability there;
- ``presence``: the hand's presence probability (the same for its 21 joints).

Printed per signal: Spearman's rank correlation of the uncertainty (the signal, negated for the
probabilities) with the error, and the AUROC of the uncertainty for "error above a threshold"
(10% of the box by default: a clearly misplaced joint).

    python benchmarks/joint_confidence.py ROOT [--split test] [--n 200] [--weights DIR]
        [--bad 0.10] [--flip-test] [--json PATH]

``--flip-test`` adds a table of the ``joint_confidence`` the predictor reports (sided outputs),
one pass against the flip test (``DFLPredictor(flip_test=True)``), where it is the spread of both
passes' guesses.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger("joint_confidence")

SIGNALS = (
    ("iteration_spread", +1),
    ("last_vs_final", +1),
    ("first_vs_final", +1),
    ("seg_hand_prob", -1),
    ("seg_foreground_prob", -1),
    ("presence", -1),
)


def _rank(a: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(np.float64)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(_rank(a), _rank(b))[0, 1])


def auroc(positive: np.ndarray, score: np.ndarray) -> float:
    """Probability that a positive scores above a negative (Mann-Whitney)."""
    n_pos, n = int(positive.sum()), len(positive)
    if n_pos in (0, n):
        return float("nan")
    ranks = _rank(score)
    return float((ranks[positive].sum() - n_pos * (n_pos - 1) / 2) / (n_pos * (n - n_pos)))


def _batches(weights: str, root: Path, split: str, n: int) -> Iterator[tuple[Any, list, Any]]:
    """(model, dataset items, normalized crops) for up to ``n`` images of the folder, spread
    evenly, 16 at a time: the evaluation crops (turned upright for an upright model)."""
    from dfl_infer.model import DFLModel
    from dfl_infer.preprocess import normalize
    from dfl_infer.training.data import InterHandDataset

    model = DFLModel.from_pretrained(weights).eval()
    cfg = model.config
    ds = InterHandDataset(root, split, cfg.input_size, cfg.box_scale, upright=cfg.upright)
    picked = np.unique(np.linspace(0, len(ds) - 1, min(n, len(ds))).astype(int))
    for start in range(0, len(picked), 16):
        items = [ds[int(i)] for i in picked[start : start + 16]]
        yield model, items, normalize(torch.stack([it["image"] for it in items]), cfg)


def _labelled_hands(items: list) -> Iterator[tuple[int, int, slice, np.ndarray, np.ndarray, float]]:
    """(item, hand, its joints' slice, (42, 2) labels in crop pixels, (21,) valid, box size) of
    each labelled hand with two valid joints or more and a box of non-zero size."""
    for b, item in enumerate(items):
        gt = item["joints_uvd"][:, :2].numpy()
        valid = item["joint_valid"].numpy() > 0
        for h in np.flatnonzero(item["hand_valid"].numpy() > 0):
            sl = slice(21 * h, 21 * h + 21)
            v = valid[sl]
            box = float(np.ptp(gt[sl][v], axis=0).max()) if v.sum() >= 2 else 0.0
            if box > 0:
                yield b, int(h), sl, gt, v, box


def joint_rows(weights: str, root: Path, split: str, n: int) -> dict[str, np.ndarray]:
    """Per valid joint: its error (share of the box) and each signal."""
    from dfl_infer.decode import CropOutputs

    cols: dict[str, list[float]] = {k: [] for k in ("error", *(name for name, _ in SIGNALS))}
    for model, items, x in _batches(weights, root, split, n):
        s = model.config.input_size
        with torch.inference_mode():
            out = model(x)
        # Sided as the predictor and the evaluator side them (each slot may hold either hand;
        # the handedness output decides), so that hand h of the labels is hand h here. The
        # segmentation's part classes follow the slots: hand h's are slot h ^ swapped's.
        iters = torch.stack(out.joints_2d_iter, 1)  # (B, T, 42, 2)
        tensors = (out.joints_25d, out.hand_presence, out.rel_root_depth, iters, out.handedness)
        raw = CropOutputs(*(t.float().numpy() for t in tensors))
        swapped = raw.swapped()
        sided = raw.sided()
        uv = sided.joints_25d[..., :2]
        iters_np = sided.joints_2d_iter
        seg = out.segmentation.float().softmax(1).numpy()  # (B, 33, S/4, S/4)
        presence = sided.presence()
        guesses = np.concatenate([iters_np, uv[:, None]], axis=1)
        spread = np.sqrt(((guesses - guesses.mean(1, keepdims=True)) ** 2).sum(-1).mean(1))
        grid = seg.shape[-1]
        cell = np.clip(np.round((uv + 0.5) * grid / s - 0.5).astype(int), 0, grid - 1)
        for b, h, sl, gt, v, box in _labelled_hands(items):
            cx, cy = cell[b, sl, 0], cell[b, sl, 1]
            slot = h ^ int(swapped[b])
            hand_prob = seg[b, 1 + 16 * slot : 17 + 16 * slot].sum(0)[cy, cx]
            signals = {
                "error": np.linalg.norm(uv[b, sl] - gt[sl], axis=1) / box,
                "iteration_spread": spread[b, sl] / s,
                "last_vs_final": np.linalg.norm(iters_np[b, -1, sl] - uv[b, sl], axis=1) / s,
                "first_vs_final": np.linalg.norm(iters_np[b, 0, sl] - uv[b, sl], axis=1) / s,
                "seg_hand_prob": hand_prob,
                "seg_foreground_prob": 1 - seg[b, 0][cy, cx],
                "presence": np.full(21, presence[b, h]),
            }
            for name, values in signals.items():
                cols[name].extend(np.asarray(values)[v].tolist())
    return {k: np.asarray(v) for k, v in cols.items()}


def confidence_rows(
    weights: str, root: Path, split: str, n: int, flip_test: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per valid joint: the 2D error (share of the box) and ``joint_confidence`` as the
    predictor reports them, one pass or with the flip test (sided outputs, GT crops)."""
    from dfl_infer.training.evaluate import model_outputs

    errors: list[np.ndarray] = []
    confidences: list[np.ndarray] = []
    for model, items, x in _batches(weights, root, split, n):
        with torch.inference_mode():
            out = model_outputs(model, x, flip_test)
        conf = out.confidence(model.config.input_size)
        for b, _, sl, gt, v, box in _labelled_hands(items):
            err = np.linalg.norm(out.joints_25d[b, sl, :2] - gt[sl], axis=1) / box
            errors.append(err[v])
            confidences.append(conf[b, sl][v])
    return np.concatenate(errors), np.concatenate(confidences)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="an InterHand-layout folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--n", type=int, default=200, help="images, spread evenly (default 200)")
    parser.add_argument("--weights", default=None, help="default: the package's own model")
    parser.add_argument("--bad", type=float, default=0.10, help="error threshold, share of box")
    parser.add_argument(
        "--flip-test",
        action="store_true",
        help="also compare the reported confidence, one pass against the flip test",
    )
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    from dfl_infer.predictor import default_weights

    weights = args.weights or str(default_weights())
    rows = joint_rows(weights, args.root, args.split, args.n)
    error = rows["error"]
    bad = error > args.bad
    table = {
        "root": str(args.root),
        "joints": len(error),
        "mean_error_box_pct": round(100 * float(error.mean()), 2),
        "bad_share": round(float(bad.mean()), 4),
        "signals": {},
    }
    print(
        f"{args.root}: {len(error)} joints, mean 2D error {100 * error.mean():.1f}% of the box, "
        f"{100 * bad.mean():.1f}% above {100 * args.bad:.0f}%"
    )
    print("| signal | Spearman (uncertainty, error) | AUROC (error > threshold) |")
    print("| --- | --- | --- |")
    for name, sign in SIGNALS:
        uncertainty = sign * rows[name]
        rho, auc = spearman(uncertainty, error), auroc(bad, uncertainty)
        table["signals"][name] = {"spearman": round(rho, 3), "auroc": round(auc, 3)}  # type: ignore[index]
        print(f"| {name} | {rho:+.3f} | {auc:.3f} |")
    # How the error grows across the quintiles of the spread (the signal dfl-infer uses).
    spread = rows["iteration_spread"]
    edges = np.quantile(spread, np.linspace(0, 1, 6))
    quintiles = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (spread >= lo) & (spread <= hi)
        quintiles.append(round(100 * float(error[m].mean()), 2))
    table["error_pct_by_spread_quintile"] = quintiles
    print("mean error (% of box) by quintile of the iteration spread, low to high:", quintiles)
    if args.flip_test:
        print(
            "\n| reported joint_confidence | joints | mean 2D error % | mean confidence "
            "| Spearman (1 - confidence, error) | AUROC (error > threshold) |"
        )
        print("| --- | ---: | ---: | ---: | --- | --- |")
        table["reported"] = {}
        for name, flip in (("one pass", False), ("flip test", True)):
            err, conf = confidence_rows(weights, args.root, args.split, args.n, flip)
            rho, auc = spearman(1 - conf, err), auroc(err > args.bad, 1 - conf)
            table["reported"][name] = {  # type: ignore[index]
                "mean_confidence": round(float(conf.mean()), 3),
                "spearman": round(rho, 3),
                "auroc": round(auc, 3),
            }
            print(
                f"| {name} | {len(err)} | {100 * err.mean():.2f} | {conf.mean():.3f} | "
                f"{rho:+.3f} | {auc:.3f} |"
            )
    if args.json:
        args.json.write_text(json.dumps(table, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

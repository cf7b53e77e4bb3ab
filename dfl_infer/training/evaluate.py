"""``dfl-train evaluate``: InterHand2.6M's protocol on an InterHand-layout folder.

Protocol (as InterNet and the DFL paper): the crop is cut around the GT box (valid joints'
projections, x1.25), 2.5D predictions are mapped back to image pixels and lifted to 3D with the GT
intrinsics and the GT root depth (``lift_to_3d(root_depth=...)``), then each hand is aligned at
its own wrist (``decode.decode``, the predictor's own decoding). Metrics:

- ``mpjpe_all`` / ``mpjpe_single`` / ``mpjpe_interacting`` (mm): mean Euclidean error over all
  valid joints (of all, single-hand, interacting images), each hand wrist-aligned;
- ``mrrpe`` (mm): error of the vector from the right wrist to the left wrist, on interacting images
  with both wrists valid (the predicted left wrist depth is the right one + predicted relative
  root depth);
- ``pck_auc_0_50``: area under the PCK curve of the wrist-aligned errors, thresholds 0..50 mm
  (51 points, normalized to [0, 1]);
- ``pck2d_10``: share of valid joints whose predicted 2D position (image pixels, after the crop's
  inverse affine) lies within 10% of its hand's box size of the label; the box size of a hand is
  the longer side of the tight box of its valid GT joints' 2D positions (image pixels);
- ``mean_2d_box_pct``: mean 2D error of those joints in % of their hand's box size;
- ``handedness_acc``: share of images (with ``hand_type_valid``) whose set of hands predicted
  present (presence logit > 0) equals the annotated hand_type;
- ``hand_separation``: on interacting images with both hands annotated, the median of (mean 2D
  distance between the predicted right and left hand's corresponding joints) / (the same between
  the labels): 1 when the two predicted hands lie as far apart as the real ones, near 0 when the
  network puts both of its hands on the same place (the collapse that ``mpjpe_interacting`` alone
  does not tell from a merely inaccurate pair);
- ``both_found``: share of the interacting images with both hands annotated on which both
  hands are predicted present;
- ``mean_2d_box_pct_nearest``, ``pck2d_10_nearest``: the 2D metrics with each image's predicted
  hands matched to the labels in the cheaper of the two orders (a side error costs nothing
  there; printed beside the sided figures, never instead of them);
- ``n_images``, and ``n_hands_2d``: hands scored by the two 2D metrics.

Predictions are scored as the side the network's handedness output says (``CropOutputs.sided``:
the right hand's joints first): a hand on the wrong side counts as an error in every metric but
the ``_nearest`` ones.

The 2D metrics need no camera, so on a pseudo-labelled folder (``dfl-train pseudolabel``) they
measure the agreement with MediaPipe's landmarks; hands are those of ``Sample.hand_valid`` (the
annotated hands with a valid wrist) with a box of non-zero size.

``--hand-pass`` adds the predictor's per-hand pass (``dfl_infer.hand_pass``, on by default in
``DFLPredictor``): each hand of a crop in which both hands are predicted present is re-run in a
crop of its own around its first-pass joints, and the nearer slot replaces it. Without it the
figures are the protocol's single pass on the GT crop. ``--flip-test`` runs every crop (GT
crops and hand crops) also mirrored and averages the two, as ``DFLPredictor(flip_test=True)``.

:func:`evaluate_predictions` takes predictions as arrays, so ground truth (or any other method's
output) can be scored without a network.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

from dfl_infer.backends import TorchRunner, run_flip_test
from dfl_infer.crop import Crop
from dfl_infer.decode import CropOutputs, decode
from dfl_infer.device import autocast, resolve_device
from dfl_infer.hand_pass import MIN_GAIN, hand_pass
from dfl_infer.joints import FLIP_PERMUTATION, HANDS, NUM_HAND_JOINTS, ROOT_INDICES
from dfl_infer.lift import Intrinsics, relative_to_wrist
from dfl_infer.model import DFLModel
from dfl_infer.preprocess import crop_batch, normalize
from dfl_infer.training.data import AugmentConfig, InterHandDataset, Sample, read_rgb

logger = logging.getLogger(__name__)

PCK_THRESHOLDS_MM = np.linspace(0.0, 50.0, 51)
PCK2D_THRESHOLD = 0.10  # of the hand's box size (pck2d_10)
# The whole predictor's benchmarks count a reported hand as lying on a labelled one when its
# mean_box_error is under this (benchmarks/crop_planning.py, tools/lost_hands.py).
ON_HAND = 0.30


def hand_box_errors(uv_img: np.ndarray, sample: Sample) -> list[np.ndarray]:
    """Per hand of ``sample.hand_valid``: the 2D errors of its valid joints divided by its box
    size (longer side of the tight box of those joints' GT pixels). ``uv_img`` (42, 2) predicted
    image pixels. A hand whose box has zero size (one valid joint) is left out."""
    out = []
    for h in np.flatnonzero(sample.hand_valid):
        sl = slice(h * NUM_HAND_JOINTS, (h + 1) * NUM_HAND_JOINTS)
        valid = sample.joint_valid[sl]
        gt = sample.joints_img[sl][valid]
        size = float(np.ptp(gt, axis=0).max()) if len(gt) else 0.0
        if size > 0:
            out.append(np.linalg.norm(uv_img[sl][valid] - gt, axis=1) / size)
    return out


def mean_box_error(points: np.ndarray, label: np.ndarray) -> float:
    """Mean distance of (21, 2) ``points`` from a labelled hand's (21, 2) 2D joints, over the
    label's box size (the longer side of their tight box)."""
    size = float(np.ptp(label, axis=0).max()) + 1e-9
    return float(np.linalg.norm(points - label, axis=1).mean()) / size


def hands_by_image(dataset: InterHandDataset) -> dict[Path, list[tuple[str, np.ndarray]]]:
    """Each image's labelled hands (``Sample.hand_valid``): (side, (21, 2) image pixels)."""
    labels: dict[Path, list[tuple[str, np.ndarray]]] = {}
    for s in dataset.samples:
        for h in np.flatnonzero(s.hand_valid):
            sl = slice(h * NUM_HAND_JOINTS, (h + 1) * NUM_HAND_JOINTS)
            labels.setdefault(s.image_path, []).append((HANDS[h], s.joints_img[sl]))
    return labels


def _total(errors: list[np.ndarray]) -> float:
    return float(sum(e.sum() for e in errors))


def evaluate_predictions(
    dataset: InterHandDataset,
    uvd: np.ndarray,
    presence_logits: np.ndarray,
    rel_root_depth: np.ndarray,
) -> dict[str, float]:
    """Score predictions for every sample of ``dataset`` (evaluation crops, no augmentation).

    ``uvd`` (N, 42, 3): u, v in the crop pixels of ``dataset.make_crop(i)`` and depth (mm)
    relative to each wrist; ``presence_logits`` (N, 2); ``rel_root_depth`` (N,) mm.
    """
    n = len(dataset)
    if uvd.shape != (n, 2 * NUM_HAND_JOINTS, 3):
        raise ValueError(f"uvd must be ({n}, 42, 3), got {uvd.shape}")
    errors: dict[str, list[np.ndarray]] = {"single": [], "interacting": []}
    rrpe, hand_ok, separation, both_found = [], [], [], []
    box_err: list[np.ndarray] = []  # per hand: 2D errors / box size
    nearest_err: list[np.ndarray] = []  # the same, predicted hands in the cheaper order
    r, l_ = ROOT_INDICES
    for i, s in enumerate(dataset.samples):
        present = s.hand_valid
        if s.hand_type_valid:
            pred_present = presence_logits[i] > 0
            want = np.array(
                [s.hand_type in ("right", "interacting"), s.hand_type in ("left", "interacting")]
            )
            hand_ok.append(bool((pred_present == want).all()))
        if not present.any():
            continue
        # The annotated hands, lifted with the GT intrinsics and the GT depth of the first
        # present wrist (the protocol's root), through the same decode as inference.
        first = r if present[0] else l_
        uv_img, pred = decode(
            uvd[i],
            dataset.make_crop(i),
            Intrinsics.from_array(s.intrinsics),
            present,
            float(rel_root_depth[i]),
            root_depth=float(s.joints_cam[first, 2]),
        )
        sided = hand_box_errors(uv_img, s)
        box_err.extend(sided)
        other = hand_box_errors(uv_img[list(FLIP_PERMUTATION)], s)
        nearest_err.extend(other if _total(other) < _total(sided) else sided)
        if s.hand_type == "interacting" and present.all():
            both_found.append(bool((presence_logits[i] > 0).all()))
        gt = s.joints_cam
        err = np.linalg.norm(relative_to_wrist(pred) - relative_to_wrist(gt), axis=1)
        valid = s.joint_valid & np.repeat(present, NUM_HAND_JOINTS)
        key = "interacting" if s.hand_type == "interacting" else "single"
        errors[key].append(err[valid])
        if s.hand_type == "interacting" and present.all():
            rrpe.append(float(np.linalg.norm((pred[l_] - pred[r]) - (gt[l_] - gt[r]))))
            both = s.joint_valid[:NUM_HAND_JOINTS] & s.joint_valid[NUM_HAND_JOINTS:]
            true_gap = (
                np.linalg.norm(
                    s.joints_img[:NUM_HAND_JOINTS] - s.joints_img[NUM_HAND_JOINTS:], axis=1
                )[both].mean()
                if both.any()
                else 0.0
            )
            if true_gap > 0:
                pred_gap = np.linalg.norm(
                    uv_img[:NUM_HAND_JOINTS] - uv_img[NUM_HAND_JOINTS:], axis=1
                )[both].mean()
                separation.append(float(pred_gap / true_gap))

    def mean(parts: list[np.ndarray]) -> float:
        cat = np.concatenate(parts) if parts else np.zeros(0)
        return float(cat.mean()) if cat.size else float("nan")

    every = errors["single"] + errors["interacting"]
    all_err = np.concatenate(every) if every else np.zeros(0)
    pck = [(all_err <= t).mean() if all_err.size else np.nan for t in PCK_THRESHOLDS_MM]
    rel2d = np.concatenate(box_err) if box_err else np.zeros(0)
    near = np.concatenate(nearest_err) if nearest_err else np.zeros(0)
    return {
        "mpjpe_all": mean(every),
        "mpjpe_single": mean(errors["single"]),
        "mpjpe_interacting": mean(errors["interacting"]),
        "mrrpe": float(np.mean(rrpe)) if rrpe else float("nan"),
        "pck_auc_0_50": float(np.mean(pck)),
        "pck2d_10": float((rel2d <= PCK2D_THRESHOLD).mean()) if rel2d.size else float("nan"),
        "mean_2d_box_pct": float(100.0 * rel2d.mean()) if rel2d.size else float("nan"),
        "handedness_acc": float(np.mean(hand_ok)) if hand_ok else float("nan"),
        "hand_separation": float(np.median(separation)) if separation else float("nan"),
        "both_found": float(np.mean(both_found)) if both_found else float("nan"),
        "pck2d_10_nearest": float((near <= PCK2D_THRESHOLD).mean()) if near.size else float("nan"),
        "mean_2d_box_pct_nearest": float(100.0 * near.mean()) if near.size else float("nan"),
        "n_images": n,
        "n_hands_2d": len(box_err),
    }


def model_outputs(model: DFLModel, x: torch.Tensor, flip_test: bool = False) -> CropOutputs:
    """``model`` on the normalized crops ``x`` (B, 3, S, S), sided; ``flip_test``: also on
    their mirror images, the two averaged (``CropOutputs.flip_averaged``, as the predictor's
    ``flip_test``). Call under ``torch.inference_mode()``."""
    out = CropOutputs.from_model(model(x))
    if not flip_test:
        return out
    mirrored = CropOutputs.from_model(model(torch.flip(x, dims=[-1])))
    return out.flip_averaged(mirrored, model.config.input_size)


@torch.inference_mode()
def predict_dataset(
    model: DFLModel,
    dataset: InterHandDataset,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    flip_test: bool = False,
) -> CropOutputs:
    """Run ``model`` on the evaluation crops, in dataset order (``joints_25d`` (N, 42, 3),
    presence logits (N, 2), relative root depth (N,)), sided by the handedness output.
    ``flip_test``: each crop also mirrored, the two averaged (the predictor's ``flip_test``)."""
    from torch.utils.data import DataLoader

    dev = torch.device(device)
    model.eval().to(dev)
    parts = []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    for batch in loader:
        x = normalize(batch["image"].to(dev), model.config)
        with autocast(dev):
            parts.append(model_outputs(model, x, flip_test))
    return CropOutputs.concatenate(parts)


def hand_pass_dataset(
    model: DFLModel,
    dataset: InterHandDataset,
    first: CropOutputs,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    min_gain: float = MIN_GAIN,
    stats: dict[str, int] | None = None,
    flip_test: bool = False,
) -> np.ndarray:
    """``first.joints_25d`` (N, 42, 3, in the crops of ``dataset.make_crop``) after the
    predictor's per-hand pass on every sample whose two hands ``first`` found (presence logit >
    0): :func:`dfl_infer.hand_pass.hand_pass` with the predictor's ``TorchRunner`` on
    ``crop_batch``'s uint8 crops. Each image is read once per batch. ``stats``, when given, gets
    ``hand_crops``: the network passes the hand crops took. ``flip_test``: each hand crop also
    mirrored, the two averaged (``backends.run_flip_test``)."""
    cfg = model.config
    dev = torch.device(device)
    runner = TorchRunner(model.eval().to(dev), dev)
    uvd: np.ndarray = first.joints_25d.copy()
    pairs = [int(i) for i in np.flatnonzero((first.hand_presence > 0).all(axis=1))]
    per_batch = max(1, batch_size // 2)  # up to two hand crops per sample
    if stats is not None:
        stats.setdefault("hand_crops", 0)
    for start in range(0, len(pairs), per_batch):
        chunk = pairs[start : start + per_batch]

        def run(jobs: list[tuple[int, Crop]], chunk: list[int] = chunk) -> list[np.ndarray]:
            rgb: dict[int, np.ndarray] = {}  # each image read once
            for k, _ in jobs:
                if k not in rgb:
                    rgb[k] = read_rgb(dataset.samples[chunk[k]].image_path)
            if stats is not None:
                stats["hand_crops"] += len(jobs)
            crops = crop_batch([rgb[k] for k, _ in jobs], [c for _, c in jobs])
            out = run_flip_test(runner, crops) if flip_test else runner(crops)
            return list(out.joints_25d)

        crops = [(dataset.make_crop(i), uvd[i]) for i in chunk]
        size, scale = cfg.input_size, cfg.box_scale
        for i, (joints, _, _) in zip(
            chunk, hand_pass(crops, run, size, scale, cfg.upright, min_gain)
        ):
            uvd[i] = joints
    return uvd


def metrics_markdown(metrics: dict[str, float], title: str = "") -> str:
    """A two-column Markdown table of the metrics."""
    units = {
        "mpjpe_all": "mm",
        "mpjpe_single": "mm",
        "mpjpe_interacting": "mm",
        "mrrpe": "mm",
        "mean_2d_box_pct": "% of box",
        "mean_2d_box_pct_nearest": "% of box",
    }
    lines = [f"# {title}\n" if title else "", "| metric | value |", "|---|---|"]
    for k, v in metrics.items():
        val = (
            f"{v:.2f} {units[k]}"
            if k in units
            else (f"{v:.4f}" if isinstance(v, float) else str(v))
        )
        lines.append(f"| {k} | {val} |")
    return "\n".join(line for line in lines if line) + "\n"


def parse_eval_data(spec: str) -> Path:
    kind, _, root = spec.partition(":")
    if kind not in ("interhand", "synth", "folder") or not root:
        raise ValueError(f"--data must be interhand:ROOT, synth:ROOT or folder:ROOT, got {spec!r}")
    return Path(root)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="InterHand2.6M protocol metrics of a model",
        description="MPJPE, MRRPE, PCK-AUC, 2D PCK, handedness of a model on an InterHand-layout "
        "folder.",
    )
    p.add_argument("--weights", required=True, help="weights folder or Hugging Face Hub id")
    p.add_argument("--data", required=True, help="interhand:ROOT, synth:ROOT or folder:ROOT")
    p.add_argument("--split", default="test")
    p.add_argument("--out", required=True, help="metrics JSON path (metrics.md is written beside)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument(
        "--hand-pass",
        action="store_true",
        help="add the predictor's per-hand pass (each hand of a two-hand crop re-run in a crop "
        "of its own); without it, the protocol's single pass",
    )
    p.add_argument(
        "--flip-test",
        action="store_true",
        help="run each crop also mirrored and average the two, as the predictor's --flip-test",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    root = parse_eval_data(args.data)
    device = resolve_device(args.device)
    model = DFLModel.from_pretrained(args.weights, map_location="cpu")
    cfg = model.config
    ds = InterHandDataset(
        root, args.split, cfg.input_size, cfg.box_scale, AugmentConfig.none(), upright=cfg.upright
    )
    flip = args.flip_test
    pred = predict_dataset(model, ds, args.batch_size, device, args.num_workers, flip_test=flip)
    uvd = pred.joints_25d
    if args.hand_pass:
        uvd = hand_pass_dataset(model, ds, pred, args.batch_size, device, flip_test=flip)
    metrics = evaluate_predictions(ds, uvd, pred.hand_presence, pred.rel_root_depth)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2) + "\n")
    md = out.with_name("metrics.md") if out.name != "metrics.md" else out.with_suffix(".table.md")
    md.write_text(metrics_markdown(metrics, f"{args.weights} on {args.data} ({args.split})"))
    logger.info(
        "wrote %s and %s: MPJPE %.2f mm, 2D PCK@0.1 box %.4f",
        out,
        md,
        metrics["mpjpe_all"],
        metrics["pck2d_10"],
    )
    return 0

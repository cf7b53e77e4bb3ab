"""``dfl-train synth``: render a synthetic two-hand dataset in InterHand2.6M's layout."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``synth`` subcommand."""
    p = subparsers.add_parser(
        "synth",
        help="render a synthetic hand dataset (InterHand2.6M layout)",
        description="Render synthetic one- and two-hand images with exact 3D joints, part masks "
        "and cameras, written as images/, masks/ and annotations/ in InterHand2.6M's layout.",
    )
    p.add_argument("--out", type=Path, required=True, help="dataset root folder")
    p.add_argument("--n", type=int, required=True, help="number of images")
    p.add_argument("--split", choices=("train", "val", "test"), default="train")
    p.add_argument(
        "--seed", type=int, default=None, help="random seed (default: 0 train, 1 val, 20240 test)"
    )
    p.add_argument(
        "--mesh",
        type=Path,
        default=None,
        help="rigged hand .glb or a folder with right.glb/left.glb (WebXR generic hand, "
        "npm @webxr-input-profiles/assets); default: procedural hands",
    )
    p.add_argument(
        "--backgrounds",
        type=Path,
        default=None,
        help="photo folder (images/ + boxes.csv of hand boxes, or hand-free photos)",
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--batch-size", type=int, default=32, help="images rendered at once")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .dataset import write_dataset
    from .engine import SynthEngine

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    engine = SynthEngine(args.device, args.mesh, args.backgrounds, seed=args.seed or 0)
    counts = write_dataset(engine, args.out, args.n, args.split, args.seed, args.batch_size)
    logger.info("wrote %d %s images to %s", counts["images"], args.split, args.out)
    return 0

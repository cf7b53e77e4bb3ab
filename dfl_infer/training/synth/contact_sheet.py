"""Contact sheet of synthetic samples with their joints drawn on, for looking at the engine.

    python -m dfl_infer.training.synth.contact_sheet --out docs/synth_samples.png \
        --mesh /path/to/webxr/generic-hand

Skeleton colours: right hand red, left hand blue; a filled dot is a visible joint, a ring an
occluded one.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dfl_infer.joints import HAND_BONES, NUM_HAND_JOINTS

from .engine import SynthEngine

logger = logging.getLogger(__name__)

_COLOURS_BGR = ((40, 40, 230), (230, 120, 30))  # right red, left blue


def draw_sheet(batch: dict[str, torch.Tensor], columns: int = 8, tile: int = 256) -> np.ndarray:
    """Grid image (H, W, 3) uint8 BGR of a batch with skeletons drawn."""
    import cv2

    imgs = (batch["image"].permute(0, 2, 3, 1).clamp(0, 1) * 255).byte().cpu().numpy()
    uvd = batch["joints_uvd"].cpu().numpy()
    vis = batch["visibility"].cpu().numpy()
    valid = batch["hand_valid"].cpu().numpy()
    tiles = []
    for i in range(len(imgs)):
        im = np.ascontiguousarray(imgs[i][..., ::-1])
        scale = tile / im.shape[0]
        im = cv2.resize(im, (tile, tile), interpolation=cv2.INTER_AREA) if scale != 1 else im
        for h in range(2):
            if valid[i, h] == 0:
                continue
            pts = uvd[i, h * NUM_HAND_JOINTS : (h + 1) * NUM_HAND_JOINTS, :2] * scale
            col = _COLOURS_BGR[h]
            for c, p in HAND_BONES:
                a = tuple(int(round(v)) for v in pts[c])
                b = tuple(int(round(v)) for v in pts[p])
                cv2.line(im, a, b, col, 1, cv2.LINE_AA)
            for j in range(NUM_HAND_JOINTS):
                centre = tuple(int(round(v)) for v in pts[j])
                filled = vis[i, h * NUM_HAND_JOINTS + j] > 0
                cv2.circle(im, centre, 2, col, -1 if filled else 1, cv2.LINE_AA)
        tiles.append(im)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[r : r + columns], 1) for r in range(0, len(tiles), columns)]
    return np.concatenate(rows, 0)


def main(argv: list[str] | None = None) -> int:
    import cv2

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mesh", type=Path, default=None, help="rigged hand (default: procedural)")
    p.add_argument("--backgrounds", type=Path, default=None, help="photo folder")
    p.add_argument("--device", default="cpu")
    p.add_argument("--tile", type=int, default=160, help="tile side in the sheet (pixels)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    engine = SynthEngine(args.device, args.mesh, args.backgrounds, seed=args.seed)
    g = torch.Generator(device=engine.device)
    g.manual_seed(args.seed)
    with torch.no_grad():
        batches = [engine.sample(min(16, args.n - k), g) for k in range(0, args.n, 16)]
    batch = {
        k: torch.cat([b[k] for b in batches])
        for k in ("image", "joints_uvd", "visibility", "hand_valid")
    }
    sheet = draw_sheet(batch, tile=args.tile)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # A 256-colour palette: the noisy backgrounds make a true-colour PNG of the sheet ~3 MB, and
    # the sheet is for looking at, not for pixel-exact reuse.
    rgb = Image.fromarray(cv2.cvtColor(sheet, cv2.COLOR_BGR2RGB))
    rgb.quantize(256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    logger.info("wrote %s (%d samples)", args.out, args.n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Make the example photos in this folder with the project's own synthetic engine.

    python examples/make_examples.py --mesh ../shared/assets/hand-mesh/webxr-generic-hand

The hands are the WebXR generic hand (MIT, see README.md here), posed and rendered by
``dfl_infer.training.synth``; backgrounds are procedural. The ground-truth joints of each image
are written beside it (``<name>.gt.json``: joints_2d in pixels, joints_3d in camera-frame mm,
the intrinsics), so the pipeline's output on the examples can be compared with the truth.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dfl_infer.joints import HAND_JOINT_NAMES, HANDS, NUM_HAND_JOINTS
from dfl_infer.training.synth import EngineConfig, SceneConfig, SynthEngine

# (file stem, hand type to keep: "interacting" or "single", seed) - seeds picked by looking at the
# renders: hands fully in view, a variety of poses and skin tones.
EXAMPLES = (("two_hands", "interacting"), ("one_hand", "single"), ("hands_crossed", "interacting"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mesh", required=True, help="WebXR generic-hand folder (right/left.glb)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    scene = dataclasses.replace(SceneConfig(), image_size=args.size, crop_scale=(2.0, 2.4))
    engine = SynthEngine("cpu", mesh=args.mesh, config=EngineConfig(scene=scene), seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    wanted = list(EXAMPLES)
    out = Path(args.out)
    while wanted:
        batch = engine.sample(8, gen)
        for i in range(len(batch["image"])):
            if not wanted:
                break
            kind = "interacting" if int(batch["hand_type"][i]) == 2 else "single"
            if kind != wanted[0][1]:
                continue
            stem, _ = wanted.pop(0)
            rgb = (batch["image"][i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(rgb).save(out / f"{stem}.jpg", quality=92)
            fx, fy, cx, cy = (float(v) for v in batch["intrinsics"][i])
            k = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
            cam = batch["joints_cam"][i].numpy().astype(np.float64)
            hands = []
            for h, side in enumerate(HANDS):
                if not bool(batch["hand_valid"][i, h]):
                    continue
                j3 = cam[h * NUM_HAND_JOINTS : (h + 1) * NUM_HAND_JOINTS]
                uv = (j3 @ k.T)[:, :2] / j3[:, 2:]
                hands.append(
                    {
                        "handedness": side,
                        "joints_2d": np.round(uv, 2).tolist(),
                        "joints_3d": np.round(j3, 2).tolist(),
                    }
                )
            gt = {
                "joint_names": list(HAND_JOINT_NAMES),
                "intrinsics": {"fx": fx, "fy": fy, "cx": cx, "cy": cy},
                "hands": hands,
            }
            (out / f"{stem}.gt.json").write_text(json.dumps(gt, indent=1) + "\n")
            print(out / f"{stem}.jpg")


if __name__ == "__main__":
    main()

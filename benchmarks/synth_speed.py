"""Images per second of the synthetic engine at 256x256, on CPU or CUDA, plus the rasterizer vs
dense-splatting comparison (time and hole rate against the rasterizer's coverage).

    python benchmarks/synth_speed.py --device cpu --mesh /path/to/generic-hand --out speed.json

Prints a table and writes JSON with the machine, load average and every measurement.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import torch

from dfl_infer.training.synth.engine import EngineConfig, SynthEngine
from dfl_infer.training.synth.render import rasterize, splat

logger = logging.getLogger("synth_speed")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_engine(engine: SynthEngine, batch: int, iters: int) -> float:
    """Images per second of ``engine.sample`` (after one warm-up batch)."""
    g = torch.Generator(device=engine.device)
    g.manual_seed(0)
    with torch.no_grad():
        engine.sample(batch, g)
        _sync(engine.device)
        t = time.perf_counter()
        for _ in range(iters):
            engine.sample(batch, g)
        _sync(engine.device)
    return batch * iters / (time.perf_counter() - t)


def compare_renderers(engine: SynthEngine, batch: int, iters: int) -> list[dict]:
    """Time the rasterizer and splatting (several densities) on the same posed meshes."""
    captured: dict = {}
    import dfl_infer.training.synth.engine as eng

    original = eng.rasterize

    def spy(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        captured["args"], captured["kwargs"] = args, kwargs
        return original(*args, **kwargs)  # type: ignore[arg-type]

    eng.rasterize = spy  # type: ignore[assignment]
    try:
        with torch.no_grad():
            engine.sample(batch, torch.Generator(device=engine.device).manual_seed(1))
    finally:
        eng.rasterize = original  # type: ignore[assignment]
    args, kwargs = captured["args"], captured["kwargs"]
    ref = rasterize(*args, **kwargs)
    covered = ref.face >= 0
    rows = []
    candidates = [("raster", lambda: rasterize(*args, **kwargs))]
    for s in (6, 15, 45):
        candidates.append((f"splat{s}", lambda s=s: splat(*args, samples=s, **kwargs)))
    for name, fn in candidates:
        fn()
        _sync(engine.device)
        t = time.perf_counter()
        for _ in range(iters):
            out = fn()
        _sync(engine.device)
        ms = (time.perf_counter() - t) / iters / batch * 1000
        holes = ((out.face < 0) & covered).sum().item() / max(covered.sum().item(), 1)
        rows.append({"renderer": name, "ms_per_image": ms, "hole_rate": holes})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--mesh", type=Path, default=None, help="rigged hand (default: procedural)")
    p.add_argument("--backgrounds", type=Path, default=None)
    p.add_argument("--batch", type=int, default=None, help="default: 32 on CPU, 1024 on CUDA")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("synth_speed.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = torch.device(args.device)
    batch = args.batch or (1024 if device.type == "cuda" else 32)
    results = []
    meshes = [("procedural", None)] + ([("mesh", args.mesh)] if args.mesh else [])
    for label, mesh in meshes:
        for effects in (True, False):
            engine = SynthEngine(device, mesh, args.backgrounds, EngineConfig(effects=effects))
            ips = time_engine(engine, batch, args.iters)
            results.append(
                {"surface": label, "effects": effects, "batch": batch, "images_per_s": ips}
            )
    engine = SynthEngine(device, args.mesh)
    renderers = compare_renderers(engine, min(batch, 32), args.iters)
    machine = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    print(f"device {device}  threads {machine['torch_threads']}  load {machine['load_average_1m']}")
    print(f"{'surface':<12}{'effects':<9}{'batch':>6}{'img/s':>10}")
    for r in results:
        print(f"{r['surface']:<12}{r['effects']!s:<9}{r['batch']:>6}{r['images_per_s']:>10.1f}")
    print(f"{'renderer':<12}{'ms/img':>10}{'holes':>10}")
    for r in renderers:
        print(f"{r['renderer']:<12}{r['ms_per_image']:>10.2f}{r['hole_rate']:>10.3f}")
    args.out.write_text(
        json.dumps({"machine": machine, "engine": results, "renderers": renderers}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""int8 for the CPU: onnxruntime static QDQ quantisation of the default network, calibrated on
real crops, against float32 in the same run: speed per crop and the accuracy it costs.

What runs (one process; onnxruntime on ``--threads`` intra-op threads):
1. The weights (default: the shipped ``weights/``) exported as a batch-1 float32 graph
   (``export.export_onnx``), run through onnxruntime's ``quant_pre_process``, then
   ``quantize_static`` (QDQ format, per-channel int8 weights, ``--activations`` uint8 or int8
   activations, ``--method`` MinMax / Percentile / Entropy calibration) on ``--calib-n`` crops
   of the ``--calib`` folder (an InterHand-layout folder such as ``dfl-train pseudolabel
   --subset train`` writes: real photos that no evaluation uses). ``--scope encoder`` leaves the
   decoder (attention, regression heads) in float32 and quantises the encoder only.
2. Speed: median ms per 256x256 crop at batch 1, onnxruntime float32 and int8, in alternating
   blocks of calls (PyTorch's own figure is ``benchmarks/model_speed.py``'s).
3. Accuracy: ``dfl-train evaluate``'s metrics (``evaluate_predictions``: the same crops, decode
   and protocol) for onnxruntime float32 and int8 on every ``--eval ROOT:SPLIT`` folder (e.g.
   the synthetic test split and the held-out real photos of docs/training.md).

    python benchmarks/int8.py --calib REAL_TRAIN --eval SYNTH_TEST:test --eval REAL_HO:test
        [--weights DIR] [--calib-n 200] [--method minmax] [--activations uint8]
        [--scope all|encoder] [--threads 2] [--repeats 50] [--json PATH]

Needs the ``onnx`` extra (onnx, onnxruntime) and the training modules (``dfl_infer.training``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

METRICS = ("mpjpe_all", "mpjpe_interacting", "mean_2d_box_pct", "pck2d_10", "handedness_acc")


def _crops(dataset: Any, indices: list[int], config: Any) -> list[np.ndarray]:
    """Normalized (1, 3, S, S) float32 crops of ``dataset`` (evaluation crops, no augmentation),
    through the network's own input contract (``preprocess.normalize``)."""
    from dfl_infer.preprocess import normalize

    return [
        np.ascontiguousarray(normalize(dataset[i]["image"][None], config).numpy()) for i in indices
    ]


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a list of crops."""

    def __init__(self, crops: list[np.ndarray]) -> None:
        self._it = iter(crops)

    def get_next(self) -> dict[str, np.ndarray] | None:
        crop = next(self._it, None)
        return None if crop is None else {"images": crop}


def quantize(
    fp32: Path, out: Path, calib: list[np.ndarray], method: str, activations: str, scope: str
) -> Path:
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = out.with_name("pre.onnx")
    # The symbolic shape pass fails on a Reshape of this graph; ONNX shape inference suffices
    # at a fixed batch size.
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    nodes = None
    if scope == "encoder":  # the TorchScript exporter names nodes after the module path
        nodes = [n.name for n in onnx.load(str(pre)).graph.node if "/encoder/" in n.name]
    quantize_static(
        str(pre),
        str(out),
        _Reader(calib),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method={
            "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy,
        }[method],
        nodes_to_quantize=nodes,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None, help="weights folder (default: the shipped ones)")
    p.add_argument("--calib", required=True, help="InterHand-layout folder of real crops")
    p.add_argument("--calib-split", default="train")
    p.add_argument("--calib-n", type=int, default=200)
    p.add_argument("--eval", action="append", default=[], metavar="ROOT:SPLIT")
    p.add_argument("--method", choices=("minmax", "percentile", "entropy"), default="minmax")
    p.add_argument("--activations", choices=("uint8", "int8"), default="uint8")
    p.add_argument("--scope", choices=("all", "encoder"), default="all")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    for root in [args.calib, *(e.rpartition(":")[0] or e for e in args.eval)]:
        if not Path(root).is_dir():
            print(f"int8: folder not found: {root}", file=sys.stderr)
            return 2

    import onnxruntime as ort
    import torch

    from dfl_infer.decode import CropOutputs
    from dfl_infer.export import export_onnx
    from dfl_infer.model import DFLModel
    from dfl_infer.predictor import default_weights
    from dfl_infer.training.data import InterHandDataset
    from dfl_infer.training.evaluate import evaluate_predictions

    torch.set_num_threads(args.threads)
    weights = args.weights or default_weights()
    model = DFLModel.from_pretrained(weights).eval()
    config = model.config
    calib_set = InterHandDataset(args.calib, args.calib_split, config.input_size, config.box_scale)
    step = max(1, len(calib_set) // args.calib_n)
    calib = _crops(calib_set, list(range(0, len(calib_set), step))[: args.calib_n], config)

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    options.log_severity_level = 3
    names = list(CropOutputs.NAMES)
    with tempfile.TemporaryDirectory(prefix="dfl-int8-") as tmp:
        fp32_path = export_onnx(model, Path(tmp) / "fp32.onnx", batch=1)
        t0 = time.perf_counter()
        int8_path = quantize(
            fp32_path, Path(tmp) / "int8.onnx", calib, args.method, args.activations, args.scope
        )
        quant_s = time.perf_counter() - t0
        sessions = {
            name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for name, path in (("onnxruntime fp32", fp32_path), ("onnxruntime int8", int8_path))
        }
        sizes = {
            "onnxruntime fp32": fp32_path.stat().st_size,
            "onnxruntime int8": int8_path.stat().st_size,
        }
        runners = {
            name: (lambda x, s=sess: s.run(names, {"images": x})) for name, sess in sessions.items()
        }
        # Speed: blocks of --repeats calls per model over a few real crops, after a warm-up,
        # the models alternating block by block (twice) so that drift hits them alike. Not
        # interleaved call by call: one runtime's threads still spinning after its call slowed
        # the other's next call on 2 cores.
        probe = calib[: min(8, len(calib))]
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(2):
            for name, fn in runners.items():
                for x in probe[:2]:
                    fn(x)
                for r in range(args.repeats):
                    t = time.perf_counter()
                    fn(probe[r % len(probe)])
                    times[name].append(time.perf_counter() - t)

        # Accuracy on every evaluation folder.
        accuracy: dict[str, dict[str, dict[str, float]]] = {}
        for spec in args.eval:
            root, _, split = spec.rpartition(":")
            root, split = (root, split) if root else (spec, "test")
            dataset = InterHandDataset(root, split, config.input_size, config.box_scale)
            crops = _crops(dataset, list(range(len(dataset))), config)
            accuracy[spec] = {}
            for name, sess in sessions.items():
                out = CropOutputs.concatenate(
                    [CropOutputs(*sess.run(names, {"images": x})) for x in crops]
                )
                metrics = evaluate_predictions(
                    dataset, out.joints_25d, out.hand_presence, out.rel_root_depth
                )
                accuracy[spec][name] = {k: float(metrics[k]) for k in METRICS}

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{args.threads} threads, onnxruntime {ort.__version__}, "
        f"load average {os.getloadavg()[0]:.2f} at the end"
    )
    print(
        f"int8: QDQ, per-channel int8 weights, {args.activations} activations, "
        f"{args.method} calibration on {len(calib)} crops of {args.calib} "
        f"({args.calib_split}), scope {args.scope}; quantised in {quant_s:.1f} s\n"
    )
    print("| model | ms per crop, median (min) | file MiB |")
    print("| --- | ---: | ---: |")
    speed = {}
    for name, values in times.items():
        med, low = 1e3 * statistics.median(values), 1e3 * min(values)
        speed[name] = {"median_ms": med, "min_ms": low}
        size = f"{sizes[name] / 2**20:.1f}" if name in sizes else "-"
        print(f"| {name} | {med:.1f} ({low:.1f}) | {size} |")
    for spec, rows in accuracy.items():
        print(f"\n{spec}: " + ", ".join(METRICS))
        print("| model | " + " | ".join(METRICS) + " |")
        print("| --- |" + " ---: |" * len(METRICS))
        for name, metrics in rows.items():
            print(f"| {name} | " + " | ".join(f"{metrics[k]:.4g}" for k in METRICS) + " |")
    if args.json:
        result = {
            "args": vars(args),
            "speed": speed,
            "accuracy": accuracy,
            "sizes": sizes,
            "quantize_s": quant_s,
        }
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Speed and memory of the DFL network alone (no detector, no cropping, no lifting).

For each preset (r50, r18), precision (fp32, bf16 autocast), execution mode (eager, channels_last,
torch.compile, CUDA graphs) and batch size it reports the median latency of one forward pass and
the crops per second, plus FLOPs per crop (``torch.utils.flop_counter.FlopCounterMode``) and peak
memory. On CUDA it also measures a large bf16 matmul in the same run and reports each bf16 row as
a fraction of that rate. Random weights: speed does not depend on their values.

    python benchmarks/model_speed.py [--configs r18,r50[,r18@seg_channels=128]]
        [--batches 1,8,64,256] [--dtypes fp32,bf16] [--device auto|cpu|cuda] [--compile]
        [--onnxruntime] [--json PATH]

``--onnxruntime`` (CPU only, needs ``pip install 'dfl-infer[onnx]'``) adds rows with mode
"onnxruntime" (fp32) for each preset and batch, timed after all the PyTorch rows: the network
exported as the predictor's backend "onnxruntime" exports it (batch-1 graph, into a temporary
folder, so the user's cache is untouched) and run by onnxruntime's CPU provider with PyTorch's
thread count on normalized float32 crops. Batch B is B successive batch-1 ``session.run`` calls,
as ``DFLPredictor(backend="onnxruntime")`` does; warm-ups, repeats and FLOPs are the PyTorch
rows'. Rows with mode "ort-dynamic" time the alternative: a graph with a dynamic batch axis, fed
the whole batch in one call.

CPU notes: batch 256 of r50 takes minutes on 2 cores (``--batches 1,8`` is the CPU default);
torch.compile runs only with ``--compile`` (minutes of compilation); CUDA graphs are skipped.
Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` per row; on CPU the process's peak
resident set size (``VmHWM``, see _memory.py), which only grows, so it is the peak so far.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from _memory import peak_rss_mib  # the sibling module (scripts run from benchmarks/)

from dfl_infer.model import DFLConfig, DFLModel
from dfl_infer.model.config import PRESET_NAMES

logger = logging.getLogger("model_speed")

# Targets of tracker issue 6 (GPU: H100, bf16, r50).
GPU_TARGET_CROPS_PER_S = 3000.0
GPU_TARGET_LATENCY_B1_MS = 5.0
GPU_TARGET_MATMUL_FRACTION = 0.25


@dataclass
class Row:
    config: str
    dtype: str
    mode: str  # eager | channels_last | compile | cuda_graph | onnxruntime
    batch: int
    latency_ms: float | None  # median of the timed repeats
    latency_min_ms: float | None
    crops_per_s: float | None
    gflops_per_crop: float
    matmul_fraction: float | None  # achieved FLOP rate / measured bf16 matmul rate (CUDA, bf16)
    peak_mem_mib: float | None
    repeats: int
    note: str = ""


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(
    fn: Callable[[], object],
    device: torch.device,
    warmup: int,
    repeats: int,
    max_seconds: float,
) -> list[float]:
    """Seconds per call of ``fn``: ``warmup`` untimed calls, then up to ``repeats`` timed ones
    (at least 3, stopping early once ``max_seconds`` have been spent timing)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times: list[float] = []
    start_all = time.perf_counter()
    while len(times) < repeats:
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
        if len(times) >= 3 and time.perf_counter() - start_all > max_seconds:
            break
    return times


def flops_per_crop(model: DFLModel, device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    s = model.config.input_size
    x = torch.randn(2, 3, s, s, device=device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return counter.get_total_flops() / 2


def bf16_matmul_tflops(device: torch.device, n: int = 8192) -> float:
    """Measured dense bf16 matmul rate (TFLOP/s) on this GPU, the denominator of the
    fraction-of-peak column."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    times = time_fn(lambda: a @ b, device, warmup=5, repeats=20, max_seconds=10.0)
    return 2 * n**3 / statistics.median(times) / 1e12


def make_runner(
    model: torch.nn.Module,
    x: torch.Tensor,
    dtype: str,
    mode: str,
    device: torch.device,
) -> Callable[[], object]:
    amp = dtype == "bf16"

    def forward() -> object:
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=amp):
            return model(x)

    if mode != "cuda_graph":
        return forward
    # Capture once on a side stream after a warm-up, then replay with the same static input.
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(3):
            forward()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        forward()
    return graph.replay


def make_config(spec: str) -> DFLConfig:
    """A preset, optionally with overrides: ``r18`` or ``r18@seg_channels=128+fpn_channels=96``
    (values parsed as JSON, else kept as strings)."""
    name, _, rest = spec.partition("@")
    overrides: dict[str, Any] = {}
    for item in filter(None, rest.split("+")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"model_speed: override {item!r} in {spec!r} is not key=value")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    if name not in PRESET_NAMES:
        raise SystemExit(f"model_speed: unknown preset {name!r} {PRESET_NAMES}")
    try:
        return getattr(DFLConfig, name)(**overrides)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"model_speed: {spec}: {exc}") from None


def bench_config(
    name: str,
    args: argparse.Namespace,
    device: torch.device,
    matmul_tflops: float | None,
) -> list[Row]:
    torch.manual_seed(0)
    config = make_config(name)
    base = DFLModel(config).to(device).eval()
    gflops = flops_per_crop(base, device) / 1e9
    logger.info(
        "%s: %.2f GFLOPs per crop, %.1f M parameters", name, gflops, base.num_parameters() / 1e6
    )
    modes = ["eager", "channels_last"]
    if args.compile or (device.type == "cuda" and not args.no_compile):
        modes.append("compile")
    if device.type == "cuda":
        modes.append("cuda_graph")
    rows: list[Row] = []
    s = config.input_size
    for dtype in args.dtypes:
        for mode in modes:
            cl = mode in ("channels_last", "compile", "cuda_graph")
            model = base.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
            if mode == "compile":
                model = torch.compile(model)
            for batch in args.batches:
                if device.type == "cpu" and dtype == "bf16" and batch > args.cpu_bf16_max_batch:
                    continue  # emulated bf16 without AVX512-BF16/AMX: slow, batch 1 tells enough
                x = torch.randn(batch, 3, s, s, device=device)
                if cl:
                    x = x.contiguous(memory_format=torch.channels_last)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                note = ""
                try:
                    fn = make_runner(model, x, dtype, mode, device)
                    warm = args.warmup + (2 if mode == "compile" else 0)
                    if device.type == "cpu" and dtype == "bf16":
                        warm = 1  # seconds per call: one untimed call is enough
                    times = time_fn(fn, device, warm, args.repeats, args.max_seconds)
                except Exception as exc:  # noqa: BLE001 - report the failure in the table
                    if device.type == "cuda" and isinstance(exc, torch.cuda.OutOfMemoryError):
                        torch.cuda.empty_cache()
                    note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
                    logger.warning("%s %s %s b%d %s", name, dtype, mode, batch, note)
                    times = []
                med = statistics.median(times) if times else None
                cps = batch / med if med else None
                frac = None
                if cps and matmul_tflops and dtype == "bf16":
                    frac = cps * gflops * 1e9 / (matmul_tflops * 1e12)
                if device.type == "cuda":
                    mem = torch.cuda.max_memory_allocated(device) / 2**20
                else:
                    mem = peak_rss_mib()
                row = Row(
                    config=name,
                    dtype=dtype,
                    mode=mode,
                    batch=batch,
                    latency_ms=med * 1e3 if med else None,
                    latency_min_ms=min(times) * 1e3 if times else None,
                    crops_per_s=cps,
                    gflops_per_crop=gflops,
                    matmul_fraction=frac,
                    peak_mem_mib=mem,
                    repeats=len(times),
                    note=note,
                )
                rows.append(row)
                print(format_row(row), flush=True)
    return rows


def bench_onnxruntime(name: str, args: argparse.Namespace, cache_dir: str) -> list[Row]:
    """Rows for one preset: mode "onnxruntime", the predictor's ORT runner (a batch-1 graph,
    exported into ``cache_dir``) fed normalized float32 crops one at a time; and mode
    "ort-dynamic", a graph with a dynamic batch axis fed the whole batch in one call (the
    alternative the predictor does not take)."""
    import numpy as np
    import onnxruntime

    from dfl_infer.backends import OnnxRuntimeRunner
    from dfl_infer.decode import CropOutputs
    from dfl_infer.export import export_onnx

    cpu = torch.device("cpu")
    torch.manual_seed(0)
    config = make_config(name)
    # channels_last like the model DFLPredictor hands to OnnxRuntimeRunner.
    model = DFLModel(config).eval().to(memory_format=torch.channels_last)
    gflops = flops_per_crop(model, cpu) / 1e9
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    runner = OnnxRuntimeRunner.from_model(model, threads=threads, cache_dir=cache_dir)
    logger.info(
        "%s: exported to ONNX and loaded in %.1f s (onnxruntime, %d threads)",
        name,
        time.perf_counter() - t0,
        threads,
    )
    dynamic_path = export_onnx(model, Path(cache_dir) / f"{name}-dynamic.onnx", batch=None)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    dynamic = onnxruntime.InferenceSession(
        str(dynamic_path), options, providers=["CPUExecutionProvider"]
    )
    del model
    outputs, s = list(CropOutputs.NAMES), config.input_size
    rng = np.random.default_rng(0)
    rows: list[Row] = []
    for mode in ("onnxruntime", "ort-dynamic"):
        for batch in args.batches:
            crops = rng.standard_normal((batch, 3, s, s), dtype=np.float32)

            def fn(crops: np.ndarray = crops, mode: str = mode) -> object:
                if mode == "ort-dynamic":
                    return dynamic.run(outputs, {"images": crops})
                return [runner.session.run(outputs, {"images": c[None]}) for c in crops]

            note = ""
            try:
                times = time_fn(fn, cpu, args.warmup, args.repeats, args.max_seconds)
            except Exception as exc:  # noqa: BLE001 - report the failure in the table
                note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
                logger.warning("%s fp32 %s b%d %s", name, mode, batch, note)
                times = []
            med = statistics.median(times) if times else None
            row = Row(
                config=name,
                dtype="fp32",
                mode=mode,
                batch=batch,
                latency_ms=med * 1e3 if med else None,
                latency_min_ms=min(times) * 1e3 if times else None,
                crops_per_s=batch / med if med else None,
                gflops_per_crop=gflops,
                matmul_fraction=None,
                peak_mem_mib=peak_rss_mib(),
                repeats=len(times),
                note=note,
            )
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


HEADER = (
    f"{'config':6} {'dtype':5} {'mode':13} {'batch':>5} {'lat ms':>9} {'min ms':>9} "
    f"{'crops/s':>9} {'GFLOP/crop':>10} {'%matmul':>7} {'peak MiB':>9} {'n':>3}  note"
)


def _f(v: float | None, fmt: str) -> str:
    return format(v, fmt) if v is not None else "-"


def format_row(r: Row) -> str:
    frac = f"{100 * r.matmul_fraction:.1f}" if r.matmul_fraction is not None else "-"
    return (
        f"{r.config:6} {r.dtype:5} {r.mode:13} {r.batch:5d} {_f(r.latency_ms, '9.2f')} "
        f"{_f(r.latency_min_ms, '9.2f')} {_f(r.crops_per_s, '9.1f')} {r.gflops_per_crop:10.2f} "
        f"{frac:>7} {_f(r.peak_mem_mib, '9.0f')} {r.repeats:3d}  {r.note}"
    )


def machine_info(device: torch.device) -> dict[str, object]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    info: dict[str, object] = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        info["loadavg_start"] = open("/proc/loadavg").read().split()[:3]
    except OSError:
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--configs",
        default="r18,r50",
        help="comma-separated presets (r18,r50,tiny), each optionally with overrides: "
        "r18@seg_channels=128+fpn_channels=96",
    )
    p.add_argument(
        "--batches",
        default=None,
        help="comma-separated batch sizes (default: 1,8,64,256 on CUDA, 1,8 on CPU)",
    )
    p.add_argument("--dtypes", default="fp32,bf16", help="fp32 and/or bf16 (autocast)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--compile", action="store_true", help="also time torch.compile on CPU")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile on CUDA")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls (CPU 2, CUDA 10)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls (CPU 5, CUDA 30)")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=20.0,
        help="stop timing a row after this long (at least 3 calls)",
    )
    p.add_argument(
        "--cpu-bf16-max-batch",
        type=int,
        default=1,
        help="largest batch timed for bf16 on CPU (emulated bf16 is slow)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument(
        "--onnxruntime",
        action="store_true",
        help="also time the onnxruntime backend (CPU only, fp32; needs the onnx extra)",
    )
    p.add_argument("--json", metavar="PATH", help="write rows and machine info as JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="model_speed: %(message)s")

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if args.onnxruntime:
        if device.type != "cpu":
            print(
                "model_speed: --onnxruntime runs on the CPU only; add --device cpu", file=sys.stderr
            )
            return 2
        missing = [m for m in ("onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
        if missing:
            print(
                f"model_speed: --onnxruntime needs {' and '.join(missing)}: "
                "pip install 'dfl-infer[onnx]'",
                file=sys.stderr,
            )
            return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = device.type == "cuda"
    args.batches = [int(b) for b in (args.batches or ("1,8,64,256" if gpu else "1,8")).split(",")]
    args.dtypes = [d.strip() for d in args.dtypes.split(",")]
    args.warmup = args.warmup if args.warmup is not None else (10 if gpu else 2)
    args.repeats = args.repeats if args.repeats is not None else (30 if gpu else 5)
    info = machine_info(device)
    if args.onnxruntime:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    print(json.dumps(info))
    matmul = None
    if gpu:
        matmul = bf16_matmul_tflops(device)
        info["bf16_matmul_tflops"] = matmul
        print(f"measured bf16 matmul (8192^3): {matmul:.1f} TFLOP/s")
    else:
        print(
            "CPU run: CUDA graphs, GPU bf16 and the fraction-of-matmul column are skipped "
            "(the GPU targets cannot be measured here)"
        )
    print(HEADER)
    rows: list[Row] = []
    for name in args.configs.split(","):
        rows += bench_config(name.strip(), args, device, matmul)
    if args.onnxruntime:
        # After every PyTorch row: the export's memory would otherwise raise their peak RSS.
        with tempfile.TemporaryDirectory(prefix="dfl-onnx-") as cache_dir:
            for name in args.configs.split(","):
                rows += bench_onnxruntime(name.strip(), args, cache_dir)
    try:
        info["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    except OSError:
        pass
    print(f"load average at end: {info.get('loadavg_end')}")
    if gpu:
        _print_gpu_targets(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "rows": [asdict(r) for r in rows]}, f, indent=1)
    return 0


def _print_gpu_targets(rows: list[Row]) -> None:
    r50 = [r for r in rows if r.config == "r50" and r.dtype == "bf16" and r.crops_per_s]
    if not r50:
        return
    best = max(r50, key=lambda r: r.crops_per_s or 0)
    b1 = [r for r in r50 if r.batch == 1]
    fast1 = min(b1, key=lambda r: r.latency_ms or 1e9) if b1 else None
    print(
        f"target r50 bf16 >= {GPU_TARGET_CROPS_PER_S:.0f} crops/s: best {best.crops_per_s:.0f}"
        f" ({best.mode}, batch {best.batch})"
    )
    if fast1 is not None and fast1.latency_ms is not None:
        print(
            f"target r50 bf16 batch 1 <= {GPU_TARGET_LATENCY_B1_MS} ms: {fast1.latency_ms:.2f} ms"
            f" ({fast1.mode})"
        )
    if best.matmul_fraction is not None:
        print(
            f"target >= {100 * GPU_TARGET_MATMUL_FRACTION:.0f}% of bf16 matmul rate: "
            f"{100 * best.matmul_fraction:.1f}%"
        )


if __name__ == "__main__":
    sys.exit(main())

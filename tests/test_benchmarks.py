"""The benchmark scripts still run against the current package (smallest settings; nothing here
is timed or compared with a target: the figures come from full runs, docs/performance.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"

pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install '.[test]')")


def _run(script: str, *args: str, tmp_path: Path) -> dict:
    out = tmp_path / f"{script}.json"
    res = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(out.read_text())


def test_model_speed(tmp_path) -> None:
    args = "--configs tiny --batches 1 --dtypes fp32 --device cpu --warmup 1 --repeats 1"
    data = _run("model_speed.py", *args.split(), "--onnxruntime", tmp_path=tmp_path)
    modes = {row["mode"] for row in data["rows"]}
    assert {"eager", "channels_last", "onnxruntime", "ort-dynamic"} <= modes
    for row in data["rows"]:
        assert row["latency_ms"] > 0 and row["gflops_per_crop"] > 0 and row["peak_mem_mib"] > 0


def test_end_to_end_both_backends(tmp_path) -> None:
    args = "--configs tiny --backends torch,onnxruntime --images 1 --box"
    data = _run("end_to_end.py", *args.split(), tmp_path=tmp_path)
    rows = data["results"]
    assert [r["backend"] for r in rows] == ["torch", "onnxruntime"]
    for r in rows:
        assert r["median_ms"]["model"] > 0 and r["passes_per_image"] == 1.0
        assert r["median_ms"]["total"] >= r["median_ms"]["model"]
    assert rows[1]["onnx_exported_in_run"] is False  # exported beforehand, outside the timings


def test_cli_throughput(tmp_path) -> None:
    args = "--config tiny --n 2 --modes box --workers 0 --backends onnxruntime"
    data = _run("cli_throughput.py", *args.split(), tmp_path=tmp_path)
    (row,) = data["results"]
    assert row["errors"] == 0 and row["images"] == 2 and row["images_per_s"] > 0


def test_memory_large(tmp_path, tiny_weights) -> None:
    args = f"--n 1 --megapixels 17 --modes box --weights {tiny_weights}"
    data = _run("memory_large.py", *args.split(), tmp_path=tmp_path)
    (row,) = data["rows"]
    assert row["lazy"]["wall_s"] > 0 and row["reference"]["wall_s"] > 0
    assert row["difference"]["images_with_other_hands"] == 0

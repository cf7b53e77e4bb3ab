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


def test_folder_run(tmp_path) -> None:
    """The CLI, the predictor loop, MediaPipe alone and the memory run on a few examples with
    the default weights; 8 images from the 6 examples: the memory run cycles them."""
    from dfl_infer.bundle import DetectorUnavailableError, resolve_bundle

    try:
        resolve_bundle(allow_download=False)
    except DetectorUnavailableError as exc:
        pytest.skip(f"no hand_landmarker.task bundle here ({exc}); run `dfl-infer fetch-detector`")
    examples = BENCH.parent / "examples"
    args = f"--dir {examples} --n 2 --n-long 8 --workers 0,2"
    data = _run("folder_run.py", *args.split(), tmp_path=tmp_path)
    rows = {r["row"]: r for r in data["rows"]}
    assert list(rows) == [
        "dfl-infer --workers 0",
        "dfl-infer --workers 2",
        "predictor loop",
        "MediaPipe alone",
    ]
    for r in rows.values():
        assert r["images"] == 2 and r["wall_s"] > 0 and r["images_per_s"] > 0
        assert r["peak_rss_mib"] > 0 and len(r["walls_s"]) == 1
    for name in ("dfl-infer --workers 0", "dfl-infer --workers 2"):
        assert rows[name]["errors"] == 0 and rows[name]["backend"] == "onnxruntime"
        assert rows[name]["torch_imported"] in (True, False)
    # The CLI and the loop predict the same images with the same predictor: the same hands.
    assert rows["dfl-infer --workers 0"]["hands"] == rows["predictor loop"]["hands"]
    assert rows["predictor loop"]["backend"] == "onnxruntime"
    assert rows["predictor loop"]["torch_imported"] is False
    assert set(data["cli_overhead_vs_loop"]) == {"0", "2"}
    mem = data["memory"]
    assert mem["images"] == 8 and len(mem["rss_mib"]) == 8 and mem["cycled"] is True
    assert mem["window"] == 4 and mem["peak_rss_mib"] >= max(mem["rss_mib"]) - 1
    assert mem["growth"] == pytest.approx(mem["mean_rss_last_mib"] / mem["mean_rss_first_mib"] - 1)


def test_ray_scale(tmp_path) -> None:
    """The four rows of benchmarks/ray_scale.py on the 6 examples (two local Ray starts)."""
    pytest.importorskip("ray.data", reason='Ray is not installed: pip install "dfl-infer[ray]"')
    from dfl_infer.bundle import DetectorUnavailableError, resolve_bundle

    try:
        resolve_bundle(allow_download=False)
    except DetectorUnavailableError as exc:
        pytest.skip(f"no hand_landmarker.task bundle here ({exc}); run `dfl-infer fetch-detector`")
    examples = BENCH.parent / "examples"
    rows = _run("ray_scale.py", "--dir", str(examples), "--n", "6", tmp_path=tmp_path)
    names = ["local --workers 0", "local --workers 2", "ray, 1 actor", "ray, 2 actors"]
    assert [r["row"] for r in rows] == names
    for r in rows:
        assert r["images"] == 6 and r["images_per_s"] > 0 and r["peak_pss_mib"] > 0
        assert 0 < r["first_result_s"] <= r["wall_s"]

"""Small tools under tools/ that the training notes rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_val_table_prints_every_save_and_the_kept_ones(tmp_path) -> None:
    nan = float("nan")
    lines = [
        {"step": 10, "loss": 3.0},  # a training line: not a row
        {
            "step": 200,
            "val": {
                "runs/data/real-ho:test": {"pck2d_10": 0.9671, "both_found": nan},
                "runs/data/comp2-ho:test": {"pck2d_10": 0.748, "both_found": 0.943},
            },
            "best": False,
        },
        {
            "step": 400,
            "val": {
                "runs/data/real-ho:test": {"pck2d_10": 0.975, "both_found": nan},
                "runs/data/comp2-ho:test": {"pck2d_10": 0.751, "both_found": 0.96},
            },
            "best": True,
        },
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    res = subprocess.run(
        [sys.executable, str(REPO / "tools" / "val_table.py"), str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = res.stdout.strip().splitlines()
    # The single-hand folder has no both_found column: its values are all NaN.
    assert rows[0] == (
        "| step | real-ho pck2d_10 | comp2-ho pck2d_10 | comp2-ho both_found | best |"
    )
    assert rows[2:] == [
        "| 200 | 0.967 | 0.748 | 0.943 |  |",
        "| 400 | 0.975 | 0.751 | 0.960 | yes |",
    ]
    missing = subprocess.run(
        [sys.executable, str(REPO / "tools" / "val_table.py"), str(tmp_path / "nope.jsonl")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1


def test_gpu_train_script_runs_two_steps_on_cpu(tmp_path) -> None:
    """``tools/gpu_train.sh``, the lent GPU's training call, end to end on the CPU with tiny
    sizes (docs/training.md's check): its composites, held-out composites, renders, two `fit`
    steps from the shipped weights with the guards, and the fp16 export and table."""
    import importlib.util
    import shutil

    mesh = REPO.parent / "shared" / "assets" / "hand-mesh" / "webxr-generic-hand"
    if not (mesh / "right.glb").is_file():
        pytest.skip(f"no hand mesh at {mesh} (../shared is absent)")
    spec = importlib.util.spec_from_file_location(
        "composite_tests", REPO / "tests" / "test_composite.py"
    )
    assert spec is not None and spec.loader is not None
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    carry = tmp_path / "carry"
    fixtures._fixture(carry / "real")  # four labelled single hands, split train
    # Their hand boxes, as pack_gpu_carry.py writes them: the renders' backgrounds avoid them.
    rows = ["filename,x0,y0,x1,y1"] + [f"train/photo_{k}.png,90,40,230,200" for k in range(4)]
    (carry / "real" / "boxes.csv").write_text("\n".join(rows) + "\n")
    fixtures._fixture(carry / "real-ho")
    for kind in ("annotations", "images"):  # the held-out labels are split test
        (carry / "real-ho" / kind / "train").rename(carry / "real-ho" / kind / "test")
    for f in (carry / "real-ho" / "annotations" / "test").iterdir():
        f.rename(f.with_name(f.name.replace("_train_", "_test_")))
    shutil.copytree(mesh, carry / "mesh")
    out = tmp_path / "out"
    sizes = {
        "STEPS": "2", "MINUTES": "5", "BATCH": "4", "SAVE_EVERY": "2", "WORKERS": "0",
        "COMPOSITES": "6", "COMPOSITE_WORKERS": "2", "HO_COMPOSITES": "4", "VAL_RENDERS": "2",
    }  # fmt: skip
    env = {**os.environ, **sizes, "OUT": str(out), "CARRY": str(carry), "DEVICE": "cpu"}
    env.update(WORK=str(tmp_path / "work"), OMP_NUM_THREADS="1")
    res = subprocess.run(
        ["bash", str(REPO / "tools" / "gpu_train.sh")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert (out / "fp16" / "model.safetensors").is_file() and (
        out / "fp16" / "config.json"
    ).is_file()
    table = (out / "val_table.md").read_text()
    assert "real-ho" in table and "comp2-ho" in table and "synth-val" in table
    assert len([json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]) >= 2

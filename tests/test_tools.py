"""Small tools under tools/ that the training notes rely on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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

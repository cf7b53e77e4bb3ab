"""Print a `dfl-train fit` run's validation saves as a Markdown table (one row per save).

    python tools/val_table.py runs/r12/metrics.jsonl [--metrics pck2d_10,mean_2d_box_pct,...]

`fit --val ROOT[:SPLIT]` (repeatable) logs ``{"step", "val": {folder: metrics}, "best"}`` at every
save; this prints, per save, the chosen metrics of every validation folder, and whether the save
went to ``OUT/best`` (its metric improved and every ``--best-guard`` held).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

DEFAULT_METRICS = (
    "pck2d_10",
    "mean_2d_box_pct",
    "handedness_acc",
    "both_found",
    "mpjpe_interacting",
    "mpjpe_single",
)


def saves(path: Path) -> list[dict[str, object]]:
    """The validation lines of a metrics.jsonl (the training-loss lines skipped)."""
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if "val" in record:
            rows.append(record)
    return rows


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return "-" if value is None else str(value)


def table(rows: list[dict[str, object]], metrics: tuple[str, ...]) -> str:
    if not rows:
        return "(no validation saves)"
    first: dict[str, dict[str, object]] = rows[0]["val"]  # type: ignore[assignment]

    # Per folder, the asked metrics it has a number for (a photo folder has no MPJPE; a folder
    # of single hands no both_found).
    def has_number(folder: str, metric: str) -> bool:
        for row in rows:
            value = row["val"].get(folder, {}).get(metric)  # type: ignore[attr-defined]
            if isinstance(value, (int, float)) and math.isfinite(value):
                return True
        return False

    columns = [(folder, [m for m in metrics if has_number(folder, m)]) for folder in first]
    header = ["step"]
    for folder, names in columns:
        short = Path(folder.split(":")[0]).name or folder
        header += [f"{short} {m}" for m in names]
    header.append("best")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        val: dict[str, dict[str, object]] = row["val"]  # type: ignore[assignment]
        cells = [str(row["step"])]
        for folder, names in columns:
            cells += [_cell(val.get(folder, {}).get(m)) for m in names]
        cells.append("yes" if row.get("best") else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics_jsonl", type=Path)
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS))
    args = parser.parse_args(argv)
    if not args.metrics_jsonl.is_file():
        print(f"val_table: {args.metrics_jsonl}: no such file", file=sys.stderr)
        return 2
    print(table(saves(args.metrics_jsonl), tuple(args.metrics.split(","))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

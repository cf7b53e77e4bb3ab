"""Writes docs/reliability.md: what a user sees for each bad input, bad argument and fault of
issue 14, by running every case now (``dfl-infer`` in a subprocess, the Python API in this one)
against a tiny random-weights model, in a fresh temporary folder per case.

    python benchmarks/reliability.py --out docs/reliability.md

Each row records the exit status (or the exception), the last line on standard error, whether
the input photos are byte for byte unchanged, and which files the case left behind. The tests
that hold these behaviours are in tests/test_bad_input.py; this script only reports them.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# (case, arguments after `dfl-infer`; {photos}, {tmp} and {w} are filled in; a setup step)
CLI_CASES: list[tuple[str, list[str], str]] = [
    ("a good run", ["{photos}", "--out", "{tmp}/j.json"], ""),
    ("--vis is the input folder", ["{photos}", "--vis", "{photos}"], ""),
    ("--out is an input image", ["{photos}", "--out", "{photos}/a.jpg"], ""),
    ("--vis holds a file that is not an overlay", ["{photos}", "--vis", "{tmp}/vis"], "foreign"),
    ("... the same with --force", ["{photos}", "--vis", "{tmp}/vis", "--force"], "foreign"),
    ("--out is a folder", ["{photos}", "--out", "{tmp}"], ""),
    ("--out under a regular file", ["{photos}", "--out", "{tmp}/file/j.json"], "file"),
    ("--out x.jsonl (streamed)", ["{photos}", "--out", "{tmp}/j.jsonl"], ""),
    ("a FIFO given as an image", ["{tmp}/pipe.jpg", "{photos}/a.jpg"], "fifo"),
    ("only unreadable files", ["{tmp}/broken.jpg"], "broken"),
    ("--device bogus", ["{photos}", "--device", "bogus"], ""),
    ("--device mps (absent)", ["{photos}", "--device", "mps"], ""),
    ("--device cuda:99", ["{photos}", "--device", "cuda:99"], ""),
    ("--threshold 2", ["{photos}", "--threshold", "2"], ""),
    ("--batch-size 0", ["{photos}", "--batch-size", "0"], ""),
    ("--box 1,2,3", ["{photos}", "--box", "1,2,3"], ""),
    ("--box 0,0,inf,5", ["{photos}", "--box", "0,0,inf,5"], ""),
    ("--focal 0", ["{photos}", "--focal", "0"], ""),
    ("--weights with num_heads 0", ["{photos}", "--weights", "{tmp}/badcfg"], "badcfg"),
    ("--weights with a truncated file", ["{photos}", "--weights", "{tmp}/trunc"], "trunc"),
    ("--weights folder missing", ["{photos}", "--weights", "{tmp}/none"], ""),
]

DEFAULTS = ["--weights", "{w}", "--box", "0,0,40,40", "--device", "cpu", "-q"]


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _setup(kind: str, tmp: Path, weights: Path) -> None:
    if kind == "foreign":
        (tmp / "vis").mkdir()
        (tmp / "vis" / "a.jpg").write_bytes(b"someone else's file")
    elif kind == "file":
        (tmp / "file").write_text("x")
    elif kind == "fifo":
        os.mkfifo(tmp / "pipe.jpg")
    elif kind == "broken":
        (tmp / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    elif kind in ("badcfg", "trunc"):
        dst = tmp / kind
        shutil.copytree(weights, dst)
        if kind == "badcfg":
            cfg = dst / "config.json"
            cfg.write_text(cfg.read_text().replace('"num_heads": 2', '"num_heads": 0'))
        else:
            st = dst / "model.safetensors"
            st.write_bytes(st.read_bytes()[:1000])


def _cli_row(name: str, args: list[str], kind: str, root: Path, weights: Path) -> list[str]:
    tmp = Path(tempfile.mkdtemp(dir=root))
    photos = tmp / "photos"
    shutil.copytree(root / "photos", photos)
    _setup(kind, tmp, weights)
    before = _hashes(photos)
    # The defaults, less any option the case sets itself.
    defaults = [
        a
        for opt, val in zip(DEFAULTS[0:-1:2], DEFAULTS[1:-1:2])
        if opt not in args
        for a in (opt, val)
    ] + ["-q"]
    existing = {p for p in tmp.rglob("*") if p.is_file()}
    argv = [a.format(photos=photos, tmp=tmp, w=weights) for a in (*args, *defaults)]
    res = subprocess.run(
        [sys.executable, "-m", "dfl_infer.cli", *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = res.stderr.strip().splitlines()
    seen = lines[-1] if lines else "(nothing)"
    seen = seen.replace(str(tmp), "TMP").replace(str(weights), "W")
    untouched = "yes" if _hashes(photos) == before else "**NO**"
    left = sorted(
        str(p.relative_to(tmp))
        for p in tmp.rglob("*")
        if p.is_file() and p not in existing and "photos" not in p.parts
    )
    shown = " ".join(a.format(photos="TMP/photos", tmp="TMP", w="W") for a in args)
    return [name, f"`dfl-infer {shown}`", str(res.returncode), f"`{seen}`", untouched,
            ", ".join(left) or "none"]  # fmt: skip


def _api_cases(weights: Path, root: Path) -> list[tuple[str, Callable[[], Any]]]:
    from dfl_infer import DFLPredictor

    predictor = DFLPredictor(weights=weights, device="cpu", presence_threshold=0.0)
    img = np.zeros((64, 80, 3), np.uint8)
    box = (0, 0, 40, 40)
    return [
        ("intrinsics with focal 0", lambda: predictor.predict(img, box, intrinsics=(0, 0, 40, 32))),
        ("intrinsics with NaN", lambda: predictor.predict(img, box, (float("nan"), 1, 40, 32))),
        ("principal point far outside", lambda: predictor.predict(img, box, (500, 500, 4e3, 32))),
        ("float array in 0..255", lambda: predictor.predict(np.full((64, 80, 3), 200.0), box)),
        ("presence_threshold=2", lambda: DFLPredictor(weights, device="cpu", presence_threshold=2)),
        ("device='bogus'", lambda: DFLPredictor(weights, device="bogus")),
        (
            "predict_batch, the second of 2 images missing",
            lambda: predictor.predict_batch([img, root / "missing.jpg"], [box, box]),
        ),
        (
            "predict_batch, one missing file, return_errors=True",
            lambda: [
                type(r).__name__
                for r in predictor.predict_batch(
                    [img, root / "missing.jpg"], [box, box], return_errors=True
                )
            ],
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/reliability.md")
    args = parser.parse_args()
    import torch

    from dfl_infer.model import DFLConfig, DFLModel

    root = Path(tempfile.mkdtemp(prefix="dfl-reliability-"))
    try:
        torch.manual_seed(0)
        weights = root / "w"
        DFLModel(DFLConfig.tiny()).save_pretrained(weights)
        (root / "photos").mkdir()
        rng = np.random.default_rng(0)
        for name in ("a.jpg", "b.png"):
            arr = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / "photos" / name)
        rows = [_cli_row(n, a, k, root, weights) for n, a, k in CLI_CASES]
        api_rows = []
        for name, call in _api_cases(weights, root):
            try:
                outcome = f"returns `{call()!r}`"
            except Exception as exc:  # noqa: BLE001 - what the user sees is the point
                outcome = f"`{type(exc).__name__}: {exc}`".replace(str(root), "TMP")
            api_rows.append([name, outcome])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text = [
        "# Reliability: what a user sees",
        "",
        "Generated by `python benchmarks/reliability.py --out docs/reliability.md` (do not edit by",
        "hand): every case below was run against a tiny random-weights model, each in a fresh",
        "temporary folder (TMP) holding two photos (`photos/a.jpg`, `photos/b.png`). Unless the",
        "case sets them, the command also gets `--weights W --box 0,0,40,40 --device cpu -q`.",
        "The tests that hold these behaviours are in `tests/test_bad_input.py` (issue 14).",
        "",
        "Exit statuses: 0 at least one image succeeded; 1 none did, an output could not be",
        "written, or an unexpected error; 2 invalid arguments; 130 Ctrl-C; 141 standard output",
        "closed early.",
        "",
        "## Command line",
        "",
        "| case | command | exit | last line on stderr | photos untouched | new files |",
        "| --- | --- | --- | --- | --- | --- |",
        *("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows),
        "",
        "## Python API",
        "",
        "| case | outcome |",
        "| --- | --- |",
        *("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in api_rows),
        "",
    ]
    Path(args.out).write_text("\n".join(text))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

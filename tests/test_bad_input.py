"""Bad inputs, bad arguments and faults against ``dfl-infer`` and the Python API (issue 14): each
case must end in one clear line, the conventional exit status, strict JSON, inputs untouched and
no partial files. ``CASES`` is the table; ``tools/`` is not involved."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfl_infer.cli import main


def _snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _strict_json(text: str) -> object:
    def reject(name: str) -> object:
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=reject)


@pytest.fixture
def photos(tmp_path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.png"):
        Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(d / name)
    return d


def _run(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err
    return code, err


# (name, arguments with {photos} and {tmp} filled in, extra setup, expected message)
OUTPUT_CONFLICTS = [
    ("vis is the input folder", ["{photos}", "--vis", "{photos}"], "would replace the input image"),
    ("out is an input image", ["{photos}", "--out", "{photos}/a.jpg"], "one of the input images"),
    (
        "vis holds a foreign file",
        ["{photos}/a.jpg", "--vis", "{tmp}/vis"],
        "is not a dfl-infer overlay",
    ),
    ("out is an overlay", ["{photos}", "--vis", "{tmp}/v", "--out", "{tmp}/v/a.jpg"], "overlay"),
]


@pytest.mark.parametrize(
    ("args", "message"), [c[1:] for c in OUTPUT_CONFLICTS], ids=[c[0] for c in OUTPUT_CONFLICTS]
)
def test_outputs_never_replace_inputs(capsys, tmp_path, photos, args, message) -> None:
    """Refused before any work (no weights are even loaded: --weights names nothing), exit 2."""
    (tmp_path / "vis").mkdir()
    (tmp_path / "vis" / "a.jpg").write_bytes(b"someone else's file")
    before = _snapshot(tmp_path)
    args = [a.format(photos=photos, tmp=tmp_path) for a in args]
    code, err = _run(capsys, *args, "--weights", str(tmp_path / "no-weights"), "-q")
    assert code == 2 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _snapshot(tmp_path) == before
    assert not (tmp_path / "v").exists()


def test_force_replaces_foreign_file_and_reruns_replace_own_overlays(
    capsys, tmp_path, photos, tiny_weights
) -> None:
    vis = tmp_path / "vis"
    vis.mkdir()
    (vis / "a.jpg").write_bytes(b"someone else's file")
    before = _snapshot(photos)
    common = [str(photos), "--weights", str(tiny_weights), "--box", "0,0,40,40"]
    common += ["--device", "cpu", "--threshold", "0", "--vis", str(vis), "-q"]
    out = tmp_path / "j.json"
    assert _run(capsys, *common, "--out", str(out))[0] == 2
    assert _run(capsys, *common, "--out", str(out), "--force")[0] == 0
    assert sorted(p.name for p in vis.iterdir()) == ["a.jpg", "b.jpg"]
    # Our own overlays are replaced on a second run without --force.
    assert _run(capsys, *common, "--out", str(out))[0] == 0
    assert _snapshot(photos) == before
    _strict_json(out.read_text())

"""atomic_path: the target appears whole or not at all, with ordinary permissions."""

from __future__ import annotations

import stat

import pytest

from dfl_infer._atomic import atomic_path


def test_success_replaces_and_failure_keeps_the_old_file(tmp_path) -> None:
    target = tmp_path / "sub" / "out.json"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not mkstemp's private 0600
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("write failed")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]

"""Batch inference on Ray (dfl_infer.ray_batch, ``dfl-infer ray``; issue 22).

The writer's guarantees (whole shards, exactly once across restarts, Ctrl-C and a full disk) are
tested without Ray. The rest runs on a real local cluster that the tests start and stop: ``ray
start --head`` on 127.0.0.1 plus a second node joined to it (two raylets on one machine, one CPU
each), over 43 inputs (copies of examples/ under other names, one by a file:// URI, a very large
one, bad files, a missing path): results equal to the local ``dfl-infer`` within float
tolerance, a network actor's process killed mid-run and Ctrl-C on the driver with every input
still written exactly once. Skipped when Ray is not installed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from dfl_infer import ray_batch

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _row(path: str, ok: bool = True) -> dict[str, object]:
    record = {"path": path, "width": 4, "height": 4, "hands": [], "error": None if ok else "bad"}
    return {"path": path, "ok": ok, "record": json.dumps(record), "model": '{"weights": "w"}'}


def _shard_paths(out: Path) -> Counter[str]:
    return Counter(ray_batch.written_paths(out))


# --- the writer, without Ray ------------------------------------------------------------------
def test_writer_shards_manifest_and_restart(tmp_path) -> None:
    out = tmp_path / "out"
    paths = [f"/data/{k}.jpg" for k in range(10)]
    s = ray_batch.write_results(
        (_row(p, ok=k != 3) for k, p in enumerate(paths[:6])), out, expected=paths, shard_rows=4
    )
    assert (s.written, s.succeeded, s.shards, s.missing) == (6, 5, 2, 4)
    manifest = ray_batch.read_manifest(out)
    assert manifest is not None and manifest["rows"] == 6
    assert manifest["last_run"]["complete"] is False and manifest["model"] == {"weights": "w"}
    # Started again with everything: rows already written (and a row seen twice) are dropped.
    rows = [_row(p) for p in paths] + [_row(paths[9])]
    s = ray_batch.write_results(rows, out, expected=paths[6:], shard_rows=4)
    assert (s.written, s.missing) == (4, 0)
    assert _shard_paths(out) == Counter(paths)  # each exactly once
    manifest = ray_batch.read_manifest(out)
    assert manifest is not None and manifest["rows"] == 10 and manifest["last_run"]["complete"]
    assert sum(s["rows"] for s in manifest["shards"]) == 10
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_writer_ctrl_c_and_full_disk_leave_whole_shards(tmp_path, monkeypatch) -> None:
    out = tmp_path / "out"
    paths = [f"/data/{k}.jpg" for k in range(9)]

    def interrupted():
        for p in paths[:5]:
            yield _row(p)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ray_batch.write_results(interrupted(), out, expected=paths, shard_rows=2)
    assert _shard_paths(out) == Counter(paths[:5])  # the rows in memory went into a last shard
    manifest = ray_batch.read_manifest(out)
    assert manifest is not None and manifest["last_run"]["complete"] is False

    import dfl_infer.ray_batch as module

    real = module.atomic_path
    calls = {"n": 0}

    def full_disk(dest, *a, **k):
        calls["n"] += 1
        if calls["n"] >= 2 and "part-" in str(dest):
            raise OSError(28, "No space left on device")
        return real(dest, *a, **k)

    monkeypatch.setattr(module, "atomic_path", full_disk)
    with pytest.raises(OSError, match="No space"):
        ray_batch.write_results((_row(p) for p in paths), out, expected=paths[5:], shard_rows=2)
    monkeypatch.setattr(module, "atomic_path", real)
    assert _shard_paths(out) == Counter(paths[:7])  # one more whole shard, nothing partial
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    ray_batch.write_results((_row(p) for p in paths), out, expected=paths[7:], shard_rows=2)
    assert _shard_paths(out) == Counter(paths)


def test_out_checks_and_inputs(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ray_batch.MANIFEST).write_text('{"something": "else"}')
    with pytest.raises(ray_batch.RayOutputError, match="not a dfl-infer manifest"):
        ray_batch.check_out(out, [], None)
    (out / ray_batch.MANIFEST).unlink()
    ray_batch.write_results([_row("/a.jpg")], out, weights="w1")
    with pytest.raises(ray_batch.RayOutputError, match="weights 'w1'"):
        ray_batch.check_out(out, [], "w2")
    (out / "part-x-00009.jsonl").write_text('{"path": "/b.jpg"}\n{"pa')
    with pytest.raises(ray_batch.RayOutputError, match="part-x-00009.jsonl: not a whole"):
        ray_batch.written_paths(out)
    # Inputs: folders (image files directly inside, sorted), list files, each path once.
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("b.jpg", "a.png", "notes.md"):
        (photos / name).write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("# inputs\nphotos/b.jpg\n\nmissing.jpg\n")
    got = ray_batch.list_inputs([photos, listing, f"file://{photos}"])
    assert got[:3] == [str(photos / "a.png"), str(photos / "b.jpg"), str(tmp_path / "missing.jpg")]
    assert got[3:] == [f"file://{photos}/a.png", f"file://{photos}/b.jpg"]


# --- a real cluster ---------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``ray start --block ARGS`` in its own process group (so that stopping it ends only its
    processes); returns once the node says it runs."""
    ray_cli = Path(sys.executable).parent / "ray"
    command = [str(ray_cli) if ray_cli.exists() else "ray", "start", "--block"]
    command += ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    command += ["--object-store-memory=300000000", *args]
    with log.open("wb") as f:
        proc = subprocess.Popen(command, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop_node(proc)
            raise RuntimeError(f"ray start failed: {log.read_text(errors='replace')[-1500:]}")
        time.sleep(0.5)
    return proc


def _session(sid: int) -> list[int]:
    """The processes of session ``sid``: a node started with ``start_new_session`` and all it
    started (Ray gives its workers process groups of their own, in the same session)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _stop_node(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``ray start --block`` (it stops its node's processes), then kill what is left of its
    session: only this node's processes, never another Ray on the machine."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)
    for pid in _session(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[dict[str, object]]:
    pytest.importorskip("ray.data", reason='Ray is not installed: pip install "dfl-infer[ray]"')
    from dfl_infer.bundle import DetectorUnavailableError, resolve_bundle

    try:
        resolve_bundle(allow_download=False)
    except DetectorUnavailableError as exc:
        pytest.skip(f"no hand_landmarker.task bundle here ({exc}); run `dfl-infer fetch-detector`")
    logs = tmp_path_factory.mktemp("ray_logs")
    # A short root: Ray's socket paths must stay under the OS's limit of about 107 characters.
    temp = tempfile.mkdtemp(prefix="dfl-ray-", dir="/tmp")
    env = dict(os.environ, OMP_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0")
    env["RAY_AUTH_MODE"] = "disabled"  # a throwaway cluster on 127.0.0.1
    port = _free_port()
    nodes = [
        _start_node(
            ["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}"],
            env,
            logs / "head.log",
        )
    ]
    try:
        nodes.append(_start_node([f"--address=127.0.0.1:{port}"], env, logs / "worker.log"))
        yield {"address": f"127.0.0.1:{port}", "env": env, "sessions": [p.pid for p in nodes]}
    finally:
        for proc in reversed(nodes):
            _stop_node(proc)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, object]:
    """43 inputs: 36 copies of the 6 examples under other names, one more read by a file:// URI,
    one enlarged to 4300 x 4100 (a LargeImage), 4 bad files and 1 missing path."""
    root = tmp_path_factory.mktemp("ray_inputs")
    photos = root / "photos"
    photos.mkdir()
    source: dict[str, str] = {}
    examples = sorted(EXAMPLES.glob("*.jpg"))
    for k in range(36):
        example = examples[k % len(examples)]
        copy = photos / f"img_{k:02d}{example.suffix}"
        shutil.copy(example, copy)
        source[str(copy)] = example.name
    (photos / "text.jpg").write_text("not an image")
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "truncated.jpg").write_bytes(examples[0].read_bytes()[:300])
    (photos / "noise.png").write_bytes(np.random.default_rng(0).bytes(500))
    uri_folder = root / "by_uri"  # read through pyarrow.fs, as s3:// or gs:// would be
    uri_folder.mkdir()
    shutil.copy(examples[1], uri_folder / "u.jpg")
    source[f"file://{uri_folder}/u.jpg"] = examples[1].name
    from PIL import Image

    large = root / "large.jpg"  # over LARGE_IMAGE_PIXELS: the actor opens it again, lazily
    with Image.open(examples[0]) as img:
        img.convert("RGB").resize((4300, 4100)).save(large, quality=80)
    source[str(large)] = large.name
    listing = root / "inputs.txt"
    listing.write_text(f"photos\nmissing.jpg\nfile://{uri_folder}\n{large}\n")
    bad = [str(photos / n) for n in ("text.jpg", "empty.jpg", "truncated.jpg", "noise.png")]
    return {"list": listing, "source": source, "bad": [*bad, str(root / "missing.jpg")],
            "large": large}  # fmt: skip


def _ray_cli(cluster: dict[str, object], out: Path, listing: object, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dfl_infer.cli", "ray", str(listing), "--out", str(out),
            "--address", str(cluster["address"]), "--actors", "2", "--cpus-per-actor", "0.5",
            "--cpus-per-task", "0.5", *extra]  # fmt: skip


def _records(out: Path) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for shard in sorted(out.glob("part-*.jsonl"))
        for line in shard.read_text().splitlines()
    ]


def test_cluster_run_matches_local_and_restarts(cluster, inputs, tmp_path) -> None:
    from dfl_infer.cli import main

    out = tmp_path / "out"
    command = _ray_cli(cluster, out, inputs["list"], "--batch-size", "4", "--shard-rows", "8")
    res = subprocess.run([*command, "-q"], env=cluster["env"], capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    records = _records(out)
    source: dict[str, str] = inputs["source"]  # type: ignore[assignment]
    bad: list[str] = inputs["bad"]  # type: ignore[assignment]
    counts = Counter(str(r["path"]) for r in records)
    assert counts == Counter([*source, *bad])  # every input exactly once
    by_path = {str(r["path"]): r for r in records}
    assert all(by_path[p]["error"] and not by_path[p]["hands"] for p in bad)
    assert "no such file" in str(by_path[bad[-1]]["error"])
    manifest = ray_batch.read_manifest(out)
    assert manifest is not None and manifest["rows"] == 43 and manifest["last_run"]["complete"]
    # The local path, over the originals: the same entries within float tolerance.
    local = tmp_path / "local.json"
    args = [str(EXAMPLES), str(inputs["large"]), "--out", str(local), "--workers", "0", "-q"]
    assert main(args) == 0
    expected = {Path(str(r["path"])).name: r for r in json.loads(local.read_text())["images"]}
    for path, name in source.items():
        got, want = by_path[path], expected[name]
        assert got["error"] is None and (got["width"], got["height"]) == (
            want["width"],
            want["height"],
        )
        assert len(got["hands"]) == len(want["hands"]) > 0, path  # type: ignore[arg-type]
        for hand, ref in zip(got["hands"], want["hands"]):  # type: ignore[call-overload]
            assert hand["handedness"] == ref["handedness"]
            for key in ("joints_2d", "joints_3d", "joint_confidence"):
                np.testing.assert_allclose(hand[key], ref[key], atol=0.05, rtol=1e-4)
    # Started again with the same --out: nothing is missing, nothing is written twice.
    before = sorted(p.name for p in out.glob("part-*.jsonl"))
    res = subprocess.run(command, env=cluster["env"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "43 inputs were there already" in res.stderr
    assert sorted(p.name for p in out.glob("part-*.jsonl")) == before


def _actor_pids(sessions: list[int]) -> list[int]:
    """Processes of the network's actors on our cluster's nodes (Ray titles them after the op)."""
    found = []
    for pid in (p for sid in sessions for p in _session(sid)):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cmdline.startswith("ray::MapWorker(MapBatches(NetworkActor))"):
            found.append(pid)
    return found


def test_actor_killed_mid_run_every_input_once(cluster, inputs, tmp_path) -> None:
    out = tmp_path / "out"
    command = _ray_cli(cluster, out, inputs["list"], "--batch-size", "2", "--shard-rows", "2")
    proc = subprocess.Popen([*command, "-q"], env=cluster["env"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    killed = None
    rows_at_kill = 0
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None and killed is None and time.monotonic() < deadline:
            rows_at_kill = sum(_shard_paths(out).values()) if out.is_dir() else 0
            pids = _actor_pids(cluster["sessions"])  # type: ignore[arg-type]
            if rows_at_kill >= 2 and pids:
                killed = pids[0]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.2)
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed is not None, "the run ended before an actor could be killed"
    assert rows_at_kill < 43, "the kill came after the last row"
    assert proc.returncode == 0, err[-3000:]
    source: dict[str, str] = inputs["source"]  # type: ignore[assignment]
    bad: list[str] = inputs["bad"]  # type: ignore[assignment]
    assert Counter(str(r["path"]) for r in _records(out)) == Counter([*source, *bad])


def test_ctrl_c_on_the_driver_then_restart(cluster, inputs, tmp_path) -> None:
    out = tmp_path / "out"
    command = _ray_cli(cluster, out, inputs["list"], "--batch-size", "2", "--shard-rows", "2")
    proc = subprocess.Popen([*command, "-q"], env=cluster["env"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if out.is_dir() and sum(_shard_paths(out).values()) >= 2:
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(0.2)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "run again to continue" in err and "Traceback" not in err
    partial = _shard_paths(out)
    assert max(partial.values()) == 1 and 2 <= sum(partial.values()) < 43
    res = subprocess.run(command, env=cluster["env"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    source: dict[str, str] = inputs["source"]  # type: ignore[assignment]
    bad: list[str] = inputs["bad"]  # type: ignore[assignment]
    assert Counter(str(r["path"]) for r in _records(out)) == Counter([*source, *bad])


def test_cli_without_ray_says_how_to_install(monkeypatch, tmp_path, capsys) -> None:
    from dfl_infer.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code = main(["ray", str(EXAMPLES), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and 'pip install "dfl-infer[ray]"' in err and err.count("\n") == 1


def test_predict_dataset_from_ray_data_reader(cluster, tmp_path) -> None:
    """The Python API on any Ray Data source: ``read_binary_files(..., include_paths=True)``
    (``path`` and ``bytes`` columns) -> predict_dataset -> write_results; with the flip test,
    which the manifest's model entry records."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for example in sorted(EXAMPLES.glob("*.jpg"))[:3]:
        shutil.copy(example, photos / example.name)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    out = tmp_path / "out"
    script = f"""
import json, ray
from dfl_infer import ray_batch
ray.init(address={cluster["address"]!r}, log_to_driver=False)
ds = ray.data.read_binary_files({str(photos)!r}, include_paths=True)
rows = ray_batch.predict_dataset(ds, cpus_per_actor=0.5, cpus_per_task=0.5, batch_size=2,
                                 flip_test=True, hand_pass=False)
s = ray_batch.write_results(rows, {str(out)!r})
print(json.dumps([s.written, s.succeeded]))
"""
    res = subprocess.run([sys.executable, "-c", script], env=cluster["env"], capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == [4, 3]
    records = {Path(str(r["path"])).name: r for r in _records(out)}
    assert sorted(records) == ["broken.jpg", *sorted(p.name for p in EXAMPLES.glob("*.jpg"))[:3]]
    assert records["broken.jpg"]["error"] and all(
        r["hands"] and r["error"] is None for n, r in records.items() if n != "broken.jpg"
    )
    manifest = ray_batch.read_manifest(out)
    assert manifest is not None and manifest["model"]["flip_test"] is True
    assert manifest["model"]["hand_pass"] is False

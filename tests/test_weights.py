"""Strict safetensors save/load, the corrupt/mismatched-file errors, and the offline Hub cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dfl_infer.model import DFLConfig, DFLModel, WeightsError


def _same_outputs(a: DFLModel, b: DFLModel, atol: float = 0.0) -> None:
    torch.manual_seed(1)
    x = torch.randn(1, 3, 256, 256)
    with torch.inference_mode():
        oa, ob = a.eval()(x), b.eval()(x)
    torch.testing.assert_close(
        ob.joints_25d, oa.joints_25d, atol=atol, rtol=0 if atol == 0 else 1e-3
    )


def test_round_trip(tiny_model, tmp_path) -> None:
    tiny_model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = DFLModel.from_pretrained(tmp_path)
    assert loaded.config == tiny_model.config
    _same_outputs(tiny_model, loaded)


def test_fp16_round_trip(tiny_model, tmp_path) -> None:
    tiny_model.save_pretrained(tmp_path, dtype=torch.float16)
    loaded = DFLModel.from_pretrained(tmp_path)
    assert next(loaded.parameters()).dtype == torch.float32
    _same_outputs(tiny_model, loaded, atol=0.5)  # crop pixels


def test_missing_files(tiny_weights, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="weights folder not found"):
        DFLModel.from_pretrained(tmp_path / "nope")
    shutil.copy(tiny_weights / "config.json", tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="has no model.safetensors"):
        DFLModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_weights(tiny_weights, tmp_path, damage: str) -> None:
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_weights / name, tmp_path / name)
    f = tmp_path / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00garbage" * 100)
    with pytest.raises(WeightsError, match="model.safetensors.*truncated or corrupt"):
        DFLModel.from_pretrained(tmp_path)


def test_mismatched_keys_and_shapes(tiny_model, tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    tiny_model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["decoder.queries"]
    state["decoder.extra_head.weight"] = torch.zeros(3)
    state["decoder.head_25d.bias"] = torch.zeros(5)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(WeightsError) as info:
        DFLModel.from_pretrained(tmp_path)
    msg = str(info.value)
    assert "missing keys: decoder.queries" in msg
    assert "unexpected keys: decoder.extra_head.weight" in msg
    assert "decoder.head_25d.bias: file (5,) vs model (3,)" in msg


def test_config_of_other_architecture(tiny_weights, tmp_path) -> None:
    shutil.copy(tiny_weights / "model.safetensors", tmp_path / "model.safetensors")
    DFLConfig.r18().save(tmp_path / "config.json")
    with pytest.raises(WeightsError, match="does not match its config.json"):
        DFLModel.from_pretrained(tmp_path)


def test_unknown_config_key(tiny_weights, tmp_path) -> None:
    shutil.copy(tiny_weights / "model.safetensors", tmp_path / "model.safetensors")
    cfg = json.loads((tiny_weights / "config.json").read_text())
    cfg["mystery"] = 1
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="unknown config keys"):
        DFLModel.from_pretrained(tmp_path)


def _prefill_hub_cache(cache: Path, repo_id: str, weights: Path, commit: str = "a" * 40) -> None:
    """Lay out huggingface_hub's cache as a download would: refs/main -> snapshots/<commit>."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "model.onnx"):
        if (weights / name).is_file():
            shutil.copy(weights / name, snap / name)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)


_HUB_SCRIPT = """
import sys, torch
from dfl_infer.model import DFLModel
try:
    m = DFLModel.from_pretrained(sys.argv[1], revision=sys.argv[2] if len(sys.argv) > 2 else None)
except FileNotFoundError as exc:
    print("ERROR", exc)
    sys.exit(3)
print("OK", m.num_parameters())
"""


def _run_hub(cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(cache.parent))
    return subprocess.run(
        [sys.executable, "-c", _HUB_SCRIPT, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_hub_id_from_offline_cache(tiny_model, tiny_weights, tmp_path) -> None:
    cache = tmp_path / "hub"
    _prefill_hub_cache(cache, "dfl-test/tiny", tiny_weights)
    res = _run_hub(cache, "dfl-test/tiny")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.split()[-1] == str(tiny_model.num_parameters())
    res = _run_hub(cache, "dfl-test/not-cached")
    assert res.returncode == 3, res.stdout + res.stderr
    assert "HF_HUB_OFFLINE" in res.stdout and "not in the local Hub cache" in res.stdout
    assert "Traceback" not in res.stderr


_HUB_PREDICTOR = """
import sys
from dfl_infer import DFLPredictor
p = DFLPredictor(sys.argv[1], device="cpu")
print("OK", p.backend, "torch" in sys.modules)
"""


def test_hub_id_with_model_onnx_runs_without_torch(tiny_model, tmp_path) -> None:
    """A Hub repo whose cached snapshot holds a matching model.onnx runs under the default
    backend in onnxruntime, offline, without PyTorch; without the file it runs PyTorch."""
    import torch

    from dfl_infer.export import export_into_weights

    pytest.importorskip("onnx", reason="exporting needs onnx (pip install 'dfl-infer[onnx]')")
    weights = tmp_path / "w"
    tiny_model.save_pretrained(weights, dtype=torch.float16)
    export_into_weights(weights)
    cache = tmp_path / "hub"
    _prefill_hub_cache(cache, "dfl-test/tiny-onnx", weights)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(cache.parent))
    run = [sys.executable, "-c", _HUB_PREDICTOR]
    res = subprocess.run([*run, "dfl-test/tiny-onnx"], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[-3:] == ["OK", "onnxruntime", "False"]
    (weights / "model.onnx").unlink()
    _prefill_hub_cache(cache, "dfl-test/tiny-plain", weights)
    res = subprocess.run([*run, "dfl-test/tiny-plain"], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[-3:] == ["OK", "torch", "True"]


def test_push_to_hub_uploads_loadable_folder(tiny_model, tmp_path, monkeypatch) -> None:
    """push_to_hub hands huggingface_hub a folder that from_pretrained can load back."""
    import huggingface_hub

    calls: dict = {}

    class RecordingApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, **kw):
            calls["repo"] = (repo_id, kw)

        def upload_folder(self, repo_id, folder_path, **kw):
            shutil.copytree(folder_path, tmp_path / "uploaded")
            return "https://huggingface.co/" + repo_id + "/commit/x"

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    url = tiny_model.push_to_hub("org/name", dtype=torch.float16)
    assert url.endswith("/commit/x") and calls["repo"][0] == "org/name"
    up = tmp_path / "uploaded"
    assert {p.name for p in up.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    DFLModel.from_pretrained(up)


def test_hub_probe_is_asked_once_per_ttl(monkeypatch) -> None:
    """One load asks the Hub's reachability once: the files of a model (and the backend's look
    for model.onnx) reuse the answer for HUB_PROBE_TTL_S instead of waiting again offline."""
    from huggingface_hub import constants

    import dfl_infer.model.files as files

    calls: list[str] = []
    monkeypatch.setattr(files, "hub_reachable", lambda endpoint: calls.append(endpoint) or False)
    monkeypatch.setattr(files, "_probes", {})
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert files.hub_offline() and files.hub_offline()
    assert len(calls) == 1
    monkeypatch.setattr(files, "HUB_PROBE_TTL_S", -1.0)  # expired: asked again
    assert files.hub_offline() and len(calls) == 2
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # offline mode: never asked
    assert files.hub_offline() and len(calls) == 2

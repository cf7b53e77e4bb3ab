"""The default model travels with the package: setup.cfg maps the top-level ``weights/`` folder to
``dfl_infer/weights/``, so a wheel (or an sdist) carries it, and ``default_weights()`` finds it
inside an installed package, in a source checkout, or falls back to the Hub id."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

import dfl_infer.predictor as predictor
from dfl_infer.model import DFLConfig, DFLModel

REPO = Path(__file__).resolve().parent.parent
WEIGHT_FILES = ("model.safetensors", "model.onnx", "config.json", "README.md")


def _setup_cfg() -> configparser.ConfigParser:
    if not (REPO / "setup.cfg").is_file():
        pytest.skip(f"no setup.cfg in {REPO} (not a source checkout)")
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return cfg


def test_setup_cfg_lists_every_subpackage() -> None:
    """setup.cfg names its packages by hand (find: cannot map weights/): a new subpackage that is
    not added there would be missing from the wheel."""
    cfg = _setup_cfg()
    listed = cfg["options"]["packages"].split()
    on_disk = sorted(
        ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "dfl_infer").rglob("__init__.py")
    )
    assert sorted(listed) == sorted([*on_disk, "dfl_infer.weights"])
    package_dir = {
        name.strip(): folder.strip()
        for name, _, folder in (
            line.partition("=") for line in cfg["options"]["package_dir"].strip().splitlines()
        )
    }
    assert package_dir == {"dfl_infer.weights": "weights"}
    data = [s.strip() for s in cfg["options.package_data"]["dfl_infer.weights"].split(",")]
    assert sorted(data) == sorted(WEIGHT_FILES)


def test_default_weights_order(tmp_path, monkeypatch) -> None:
    """Installed package data first, then the checkout's weights/, then the Hub id."""
    code = tmp_path / "checkout" / "dfl_infer" / "predictor.py"
    code.parent.mkdir(parents=True)
    monkeypatch.setattr(predictor, "__file__", str(code))
    assert predictor.default_weights() == predictor.DEFAULT_HUB_ID

    checkout = tmp_path / "checkout" / "weights"
    checkout.mkdir()
    (checkout / "README.md").write_text("a model card without a model")
    assert predictor.default_weights() == predictor.DEFAULT_HUB_ID
    (checkout / "model.safetensors").write_bytes(b"")
    assert predictor.default_weights() == checkout.resolve()

    installed = code.parent / "weights"
    installed.mkdir()
    (installed / "model.safetensors").write_bytes(b"")
    assert predictor.default_weights() == installed.resolve()


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory) -> tuple[Path, DFLModel]:
    """The repository's files as a commit would hold them (tracked, plus new files git does not
    ignore) with a tiny fp16 model (and its model.onnx) saved into the copy's weights/."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip(f"{REPO} is not a git checkout")
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    copy = tmp_path_factory.mktemp("project") / "dfl-infer"
    for name in filter(None, listing.split("\0")):
        src = REPO / name
        if src.is_file():  # a tracked file deleted in the working tree is skipped
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, copy / name)
    for name in ("model.safetensors", "model.onnx", "config.json"):
        (copy / "weights" / name).unlink(missing_ok=True)
    torch.manual_seed(0)
    model = DFLModel(DFLConfig.tiny(input_size=64)).eval()
    model.save_pretrained(copy / "weights", dtype=torch.float16)
    pytest.importorskip("onnx", reason="exporting model.onnx needs onnx (the test extra has it)")
    from dfl_infer.export import export_into_weights

    export_into_weights(copy / "weights")  # the tiny model's own graph, as a release ships
    return copy, model


def _build_env() -> dict[str, str]:
    # --no-build-isolation: use this environment's setuptools, so that no index is needed.
    pytest.importorskip("setuptools", minversion="70.1", reason="the test extra installs it")
    return dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")


_LOAD_DEFAULT = """
import json, sys, dfl_infer, dfl_infer.predictor
predictor = dfl_infer.DFLPredictor(device="cpu")
fast = {"backend": predictor.backend, "torch": "torch" in sys.modules}
from dfl_infer.model import DFLModel
weights = dfl_infer.predictor.default_weights()
model = DFLModel.from_pretrained(weights)
print(json.dumps({"package": dfl_infer.__file__, "weights": str(weights), **fast,
                  "config": model.config.to_dict(), "parameters": model.num_parameters()}))
"""


@pytest.mark.slow
def test_wheel_carries_default_weights(project_copy, tmp_path) -> None:
    copy, model = project_copy
    out = tmp_path / "wheelhouse"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    res = subprocess.run(
        [*cmd, "-q", "-w", str(out), str(copy)],
        env=_build_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    (wheel,) = out.glob("dfl_infer-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name in WEIGHT_FILES:
            member = f"dfl_infer/weights/{name}"
            assert member in names, sorted(names)
            assert zf.read(member) == (copy / "weights" / name).read_bytes()
        site = tmp_path / "site"
        zf.extractall(site)

    # The unpacked wheel first on sys.path, run from elsewhere: no checkout to fall back on.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), HF_HUB_OFFLINE="1")
    res = subprocess.run(
        [sys.executable, "-c", _LOAD_DEFAULT],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    got = json.loads(res.stdout.splitlines()[-1])
    assert Path(got["package"]).resolve().is_relative_to(site.resolve())
    assert Path(got["weights"]).resolve() == (site / "dfl_infer" / "weights").resolve()
    assert got["config"] == json.loads(json.dumps(model.config.to_dict()))
    assert got["parameters"] == model.num_parameters()
    # The shipped model.onnx matches the shipped weights: the default runs without PyTorch.
    assert got["backend"] == "onnxruntime" and got["torch"] is False


@pytest.mark.slow
def test_sdist_carries_default_weights(project_copy, tmp_path) -> None:
    copy, _ = project_copy
    out = tmp_path / "dist"
    build = f"from setuptools import build_meta; build_meta.build_sdist({str(out)!r})"
    res = subprocess.run(
        [sys.executable, "-c", build],
        cwd=copy,
        env=_build_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    (sdist,) = out.glob("dfl_infer-*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for name in WEIGHT_FILES:
        assert f"weights/{name}" in names, sorted(names)

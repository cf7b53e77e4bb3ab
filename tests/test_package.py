"""Package-level contracts: public exports, and the inference path never importing training code
or the detector's heavy dependencies at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import dfl_infer


def test_public_exports() -> None:
    for name in ("DFLPredictor", "Prediction", "Hand", "DFLConfig", "DFLModel", "JOINT_NAMES"):
        assert name in dfl_infer.__all__ and hasattr(dfl_infer, name)


def _imported_at_import(modules: str, bad: str) -> None:
    """Import ``modules`` in a fresh interpreter; fail if any module matching the expression
    ``bad`` (over a module name ``m``) got imported."""
    code = (
        f"import sys, {modules};"
        f"bad = sorted(m for m in sys.modules if {bad});"
        "print(bad[:5]); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


def test_inference_never_imports_training_or_mediapipe_at_import() -> None:
    _imported_at_import(
        "dfl_infer, dfl_infer.cli, dfl_infer.predictor, dfl_infer.detect",
        "m.startswith(('dfl_infer.training', 'mediapipe'))",
    )


def test_inference_path_imports_no_torch() -> None:
    """The CLI, the predictor and everything they import at the top stay free of PyTorch: the
    default backend runs the shipped model.onnx without it (a 2 s start, docs/performance.md)."""
    _imported_at_import(
        "dfl_infer, dfl_infer.cli, dfl_infer.predictor, dfl_infer.files, dfl_infer.video, "
        "dfl_infer.vis, dfl_infer.vis3d, dfl_infer.backends, dfl_infer.model",
        "m == 'torch' or m.startswith('torch.')",
    )


def test_normal_paths_never_import_ray() -> None:
    """Ray is an extra (``dfl-infer[ray]``): only dfl_infer.ray_batch uses it, inside functions."""
    _imported_at_import(
        "dfl_infer, dfl_infer.cli, dfl_infer.predictor, dfl_infer.files, dfl_infer.video, "
        "dfl_infer.ray_batch",
        "m == 'ray' or m.startswith('ray.')",
    )


def test_demo_is_never_imported_on_the_normal_paths() -> None:
    """The web page (``dfl-infer demo``) and Gradio stay out of the CLI, the predictor and the
    video path: the CLI imports ``dfl_infer.demo`` only when ``demo`` runs."""
    _imported_at_import(
        "dfl_infer, dfl_infer.cli, dfl_infer.predictor, dfl_infer.files, dfl_infer.video, "
        "dfl_infer.vis, dfl_infer.vis3d",
        "m == 'dfl_infer.demo' or m == 'gradio' or m.startswith('gradio.')",
    )


# Every inference module, each after everything it may import (docs/architecture.md): stages
# below, the predictor, the files pipeline and the CLI above. A module may import only modules
# listed before it, at the top or inside a function, so imports run one way and cannot cycle.
LAYERS = (
    "dfl_infer._version",
    "dfl_infer._atomic",
    "dfl_infer.cache",
    "dfl_infer.device",
    "dfl_infer.joints",
    "dfl_infer.image",
    "dfl_infer.crop",
    "dfl_infer.lift",
    "dfl_infer.model.config",
    "dfl_infer.model.files",
    "dfl_infer.model.outputs",
    "dfl_infer.model.backbone",
    "dfl_infer.model.mediapipe_hand",
    "dfl_infer.model.weights",
    "dfl_infer.model.encoder",
    "dfl_infer.model.decoder",
    "dfl_infer.model.dfl",
    "dfl_infer.model",
    "dfl_infer.results",
    "dfl_infer.preprocess",
    "dfl_infer.decode",
    "dfl_infer.hand_pass",
    "dfl_infer.bundle",
    "dfl_infer.detect",
    "dfl_infer.export",
    "dfl_infer.vis",
    "dfl_infer.vis3d",
    "dfl_infer.track",
    "dfl_infer.smooth",
    "dfl_infer.video",
    "dfl_infer.backends",
    "dfl_infer.predictor",
    "dfl_infer.files",
    "dfl_infer.ray_batch",
    "dfl_infer.demo",
    "dfl_infer.cli",
    "dfl_infer",
)


def _is_module(name: str) -> bool:
    path = Path(dfl_infer.__file__).parent.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imported_modules(path: Path, module: str) -> set[str]:
    """dfl_infer modules that ``path`` imports anywhere in it (``from pkg import sub`` counts as
    importing ``pkg.sub`` when that is a module, else ``pkg``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            subs = [f"{base}.{a.name}" for a in node.names]
            found.update([s for s in subs if _is_module(s)] or [base])
    return {m for m in found if m == "dfl_infer" or m.startswith("dfl_infer.")} - {module}


def test_imports_run_one_way() -> None:
    root = Path(dfl_infer.__file__).parent
    inference = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if not module.startswith(("dfl_infer.training", "dfl_infer.weights")):
            inference[module] = path
    assert sorted(inference) == sorted(LAYERS), "place every inference module in LAYERS"
    rank = {m: k for k, m in enumerate(LAYERS)}
    wrong = [
        f"{module} imports {dep}"
        for module, path in inference.items()
        for dep in sorted(_imported_modules(path, module))
        if dep.startswith("dfl_infer.training") or rank.get(dep, len(LAYERS)) >= rank[module]
    ]
    assert not wrong, wrong

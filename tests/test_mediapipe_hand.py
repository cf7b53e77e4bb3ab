"""MediaPipe's hand-landmark network ported to PyTorch: parity with MediaPipe's own runtime, the
``mphand`` preset built on it, and ``--init-backbone`` (mediapipe / imagenet) loading."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dfl_infer.model import DFLConfig, DFLModel
from dfl_infer.model.mediapipe_hand import OUT_CHANNELS, MediaPipeHandTrunk, same_padding

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.jpg"))


def _bundle() -> Path:
    from dfl_infer.bundle import DetectorUnavailableError, resolve_bundle

    try:
        return resolve_bundle(allow_download=False)
    except DetectorUnavailableError as exc:
        pytest.skip(f"no hand landmarker bundle here ({exc}); run `dfl-infer fetch-detector`")


def test_same_padding_matches_tensorflow() -> None:
    # TF "SAME" with stride 2 on an even side puts the extra pixel after (bottom/right).
    assert same_padding(3, 2) == (0, 1)
    assert same_padding(5, 2) == (1, 2)
    assert same_padding(5, 1) == (2, 2)
    assert same_padding(1, 1) == (0, 0)


def test_trunk_shapes_at_256() -> None:
    feats = MediaPipeHandTrunk().eval()(torch.rand(2, 3, 256, 256))
    assert [f.shape[1] for f in feats] == OUT_CHANNELS
    assert [f.shape[-1] for f in feats] == [64, 32, 16, 8]


def test_mphand_preset_forward() -> None:
    torch.manual_seed(0)
    model = DFLModel(DFLConfig.mphand()).eval()
    assert model.config.mean == (0.0, 0.0, 0.0) and model.config.std == (1.0, 1.0, 1.0)
    with torch.inference_mode():
        out = model(torch.rand(1, 3, 256, 256))
    assert out.joints_25d.shape == (1, 42, 3) and torch.isfinite(out.joints_25d).all()
    # The budget: the whole network under 2 GFLOP (2 x multiply-adds) at 256 x 256.
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, 256, 256))
    assert counter.get_total_flops() < 2e9


def _crops() -> list[np.ndarray]:
    """Three real-looking 224 x 224 RGB crops in [0, 1]: the repository's example photos,
    centre-cropped around their hands and resized as MediaPipe's landmark stage sees them."""
    from PIL import Image

    crops = []
    for path in EXAMPLES[:3]:
        img = Image.open(path).convert("RGB")
        w, h = img.size
        side = min(w, h)
        box = ((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2)
        crops.append(np.asarray(img.crop(box).resize((224, 224)), dtype=np.float32) / 255.0)
    assert len(crops) == 3
    return crops


def test_port_matches_mediapipe_runtime() -> None:
    """The PyTorch trunk + MediaPipe's landmark head against LiteRT running the tflite model."""
    litert = pytest.importorskip(
        "ai_edge_litert.interpreter", reason="ai-edge-litert (MediaPipe's runtime) is a test extra"
    )
    pytest.importorskip("tflite", reason="the tflite reader is needed for the conversion")
    from dfl_infer.training.init_backbone import load_mediapipe_landmarker, read_tflite_bytes

    bundle = _bundle()
    model = load_mediapipe_landmarker(bundle)
    interp = litert.Interpreter(model_content=read_tflite_bytes(bundle))
    interp.allocate_tensors()
    out = {d["name"]: d["index"] for d in interp.get_output_details()}
    for crop in _crops():
        interp.set_tensor(interp.get_input_details()[0]["index"], crop[None])
        interp.invoke()
        with torch.inference_mode():
            ours = model(torch.from_numpy(crop).permute(2, 0, 1)[None])
        # Graph outputs by name: Identity landmarks, _1 presence, _2 handedness, _3 world.
        ref_lm = interp.get_tensor(out["Identity"]).reshape(21, 3)
        assert np.abs(ours["landmarks"][0].numpy() - ref_lm).max() < 0.01  # pixels
        presence = interp.get_tensor(out["Identity_1"]).item()
        handedness = interp.get_tensor(out["Identity_2"]).item()
        assert abs(ours["presence"].item() - presence) < 1e-4
        assert abs(ours["handedness"].item() - handedness) < 1e-4
        ref_world = interp.get_tensor(out["Identity_3"]).reshape(21, 3)
        assert np.abs(ours["world_landmarks"][0].numpy() - ref_world).max() < 1e-4  # metres
        assert ref_lm[:, :2].std() > 5  # a real hand-shaped answer, not a degenerate one


def test_init_backbone_mediapipe_loads_the_trunk() -> None:
    pytest.importorskip("tflite", reason="the tflite reader is needed for the conversion")
    from dfl_infer.training.init_backbone import init_backbone, load_mediapipe_landmarker

    bundle = _bundle()
    torch.manual_seed(0)
    model = DFLModel(DFLConfig.mphand())
    fpn_before = {k: v.clone() for k, v in model.encoder.fpn.state_dict().items()}
    init_backbone(model, "mediapipe", bundle)
    ref = load_mediapipe_landmarker(bundle).trunk.state_dict()
    for key, value in model.encoder.trunk.state_dict().items():
        assert torch.equal(value, ref[key]), key
    for key, value in model.encoder.fpn.state_dict().items():
        assert torch.equal(value, fpn_before[key]), key  # the head keeps its random init
    with pytest.raises(ValueError, match="mphand"):
        init_backbone(DFLModel(DFLConfig.tiny()), "mediapipe", bundle)


def test_init_backbone_imagenet_through_torchvision_cache(tmp_path, monkeypatch) -> None:
    """The download path is torchvision's own weights API; here its cache is pre-filled, so the
    test runs offline and still goes through that code."""
    torchvision = pytest.importorskip("torchvision", reason="torchvision is only a test extra")
    from dfl_infer.training.init_backbone import init_backbone

    weights = torchvision.models.get_model_weights("resnet18").DEFAULT
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None).state_dict()
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference, cache / Path(weights.url).name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)

    torch.manual_seed(0)
    model = DFLModel(DFLConfig.r18())
    init_backbone(model, "imagenet")
    assert torch.equal(model.encoder.stem[0].weight, reference["conv1.weight"])
    assert torch.equal(
        model.encoder.layers[3][1].bn2.running_var, reference["layer4.1.bn2.running_var"]
    )

    # A local state-dict file works the same way, with no torchvision download at all.
    torch.manual_seed(2)
    other = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(other, tmp_path / "r18.pth")
    init_backbone(model, "imagenet", tmp_path / "r18.pth")
    assert torch.equal(model.encoder.layers[0][0].conv1.weight, other["layer1.0.conv1.weight"])


def test_predicting_with_mphand_imports_no_converter(tmp_path) -> None:
    """The inference path runs the ported trunk without tflite, torchvision or training code."""
    torch.manual_seed(0)
    DFLModel(DFLConfig.mphand()).save_pretrained(tmp_path / "w")
    code = (
        "import sys, numpy as np;"
        "from dfl_infer import DFLPredictor;"
        f"p = DFLPredictor(weights={str(tmp_path / 'w')!r});"
        "p.predict(np.zeros((300, 300, 3), np.uint8), box=[50, 50, 250, 250]);"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tflite', 'torchvision',"
        " 'ai_edge_litert') or m.startswith('dfl_infer.training'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr

"""Shapes, parameter counts and config handling of the DFL network."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from dfl_infer.joints import JOINT_NAMES, NUM_SEG_CLASSES, SEG_CLASS_NAMES
from dfl_infer.model import DFLConfig, DFLModel, DFLOutput


def _check_outputs(out: DFLOutput, batch: int, size: int) -> None:
    assert isinstance(out, DFLOutput)
    assert out.joints_25d.shape == (batch, 42, 3)
    assert len(out.joints_2d_iter) == 3
    for uv in out.joints_2d_iter:
        assert uv.shape == (batch, 42, 2)
    assert out.segmentation.shape == (batch, 33, size // 4, size // 4)
    assert out.hand_presence.shape == (batch, 2)
    assert out.rel_root_depth.shape == (batch,)
    for key in ("joints_25d", "segmentation", "hand_presence", "rel_root_depth"):
        assert torch.isfinite(getattr(out, key)).all(), key


@pytest.mark.parametrize(
    ("preset", "low", "high"), [("r50", 35e6, 50e6), ("r18", 10e6, 20e6), ("tiny", 1e6, 8e6)]
)
def test_presets_forward_and_size(preset: str, low: float, high: float) -> None:
    torch.manual_seed(0)
    model = DFLModel(getattr(DFLConfig, preset)()).eval()
    n = model.num_parameters()
    assert low <= n <= high, f"{preset}: {n:,} parameters"
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 256, 256))
    _check_outputs(out, 2, 256)


def test_r50_matches_paper_scale() -> None:
    # The paper reports 42 M parameters for its ResNet-50 model; the issue asks for 35-50 M.
    n = DFLModel(DFLConfig.r50()).num_parameters()
    assert 35e6 <= n <= 50e6


def test_joint_and_class_names() -> None:
    assert len(JOINT_NAMES) == 42 and len(set(JOINT_NAMES)) == 42
    assert JOINT_NAMES[0] == "right_thumb_tip" and JOINT_NAMES[20] == "right_wrist"
    assert JOINT_NAMES[21] == "left_thumb_tip" and JOINT_NAMES[41] == "left_wrist"
    assert JOINT_NAMES[7] == "right_index_mcp" and JOINT_NAMES[3] == "right_thumb_cmc"
    assert len(SEG_CLASS_NAMES) == NUM_SEG_CLASSES == 33


def test_forward_rejects_wrong_input(tiny_model) -> None:
    with pytest.raises(ValueError, match="expected images of shape"):
        tiny_model(torch.randn(1, 3, 128, 128))


@pytest.mark.parametrize("handedness_head", [False, True])
def test_gradients_reach_every_parameter(tiny_model, handedness_head) -> None:
    config = dataclasses.replace(tiny_model.config, handedness_head=handedness_head)
    model = DFLModel(config).train()
    out = model(torch.randn(2, 3, 256, 256))
    loss = (
        out.joints_25d.mean()
        + sum(u.mean() for u in out.joints_2d_iter)
        + out.segmentation.mean()
        + out.hand_presence.mean()
        + out.rel_root_depth.mean()
        + out.handedness.mean()
    )
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


def test_config_round_trip_and_strictness(tmp_path) -> None:
    cfg = DFLConfig.r18(metadata={"note": "x"})
    path = tmp_path / "config.json"
    cfg.save(path)
    assert DFLConfig.load(path) == cfg
    data = json.loads(path.read_text())
    data["hidden_size"] = 12
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="unknown config keys \\['hidden_size'\\]"):
        DFLConfig.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        DFLConfig.load(path)
    with pytest.raises(ValueError, match="divisible"):
        DFLConfig(attn_dim=100, num_heads=3)
    data = json.loads(json.dumps(cfg.to_dict()))
    data["format"] = 99
    with pytest.raises(ValueError, match="newer"):
        DFLConfig.from_dict(data)


@pytest.mark.parametrize("name", ["resnet10", "resnet18", "resnet50"])
def test_backbone_is_torchvisions(name: str) -> None:
    """Our ResNet + FPN (no torchvision import at run time) equal torchvision's: the same
    parameter names and shapes, the same initial weights from the same seed, the same outputs."""
    torchvision = pytest.importorskip("torchvision", reason="torchvision is only a test extra")
    from collections import OrderedDict

    from dfl_infer.model.backbone import FeaturePyramid, ResNet

    def reference():
        if name == "resnet10":
            blocks = torchvision.models.resnet.BasicBlock
            net = torchvision.models.resnet.ResNet(blocks, [1, 1, 1, 1])
        else:
            net = getattr(torchvision.models, name)(weights=None)
        chans = [64, 128, 256, 512] if name != "resnet50" else [256, 512, 1024, 2048]
        return net, torchvision.ops.FeaturePyramidNetwork(chans, 32)

    torch.manual_seed(3)
    ref_net, ref_fpn = reference()
    torch.manual_seed(3)
    net = ResNet(name)
    fpn = FeaturePyramid(net.out_channels, 32)
    ref_sd = {k: v for k, v in ref_net.state_dict().items() if not k.startswith("fc.")}
    assert list(net.state_dict()) == list(ref_sd)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, ref_sd[key], rtol=0, atol=0, msg=key)
    for key, value in fpn.state_dict().items():
        torch.testing.assert_close(value, ref_fpn.state_dict()[key], rtol=0, atol=0, msg=key)
    # Outputs, in training mode (batch statistics) so that BatchNorm is exercised too.
    x = torch.randn(2, 3, 128, 128)
    feats, ref_feats = [], OrderedDict()
    y = ry = x
    for i in range(1, 5):
        if i == 1:
            y = net.maxpool(net.relu(net.bn1(net.conv1(y))))
            ry = ref_net.maxpool(ref_net.relu(ref_net.bn1(ref_net.conv1(ry))))
        y, ry = getattr(net, f"layer{i}")(y), getattr(ref_net, f"layer{i}")(ry)
        feats.append(y)
        ref_feats[str(i)] = ry
    for ours, theirs in zip(fpn(feats), ref_fpn(ref_feats).values()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)

"""DFL losses (paper §3.4) against values computed by hand, and their masking."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dfl_infer.model import DFLOutput
from dfl_infer.training.losses import (
    SEG_IGNORE,
    DFLLoss,
    LossConfig,
    attention_loss,
    attention_target,
    dice_loss,
    downsample_labels,
    focal_loss,
    joint_loss,
    smooth_l1_tau,
    swap_targets,
)


def test_smooth_l1_tau_is_eq7():
    x = torch.tensor([0.5, 2.0, -4.0, 0.0])
    # tau = 1: x^2 / 2 below 1, |x| - 0.5 above.
    assert torch.allclose(smooth_l1_tau(x, 1.0), torch.tensor([0.125, 1.5, 3.5, 0.0]))
    # tau = 3: x^2 / 6 below 3, |x| - 1.5 above.
    assert torch.allclose(smooth_l1_tau(x, 3.0), torch.tensor([0.25 / 6, 4 / 6, 2.5, 0.0]))
    # Continuous at |x| = tau.
    t = torch.tensor([3.0 - 1e-6, 3.0])
    v = smooth_l1_tau(t, 3.0)
    assert abs(float(v[0] - v[1])) < 1e-5


def test_joint_loss_masked_mean():
    pred = torch.zeros(1, 3, 3)
    target = torch.zeros(1, 3, 3)
    target[0, 0] = torch.tensor([2.0, 0.0, 6.0])
    target[0, 1] = torch.tensor([0.5, 0.0, 1.0])
    target[0, 2] = torch.tensor([100.0, 100.0, 100.0])  # invalid: must not count
    w = torch.tensor([[1.0, 1.0, 0.0]])
    uv, d = joint_loss(pred, target, w, w, alpha=0.5, beta=1.0, tau_uv=1.0, tau_depth=3.0)
    # uv: (1.5 + 0 + 0.125 + 0) / 4 valid coordinates, x alpha 0.5.
    assert float(uv) == pytest.approx(0.5 * 1.625 / 4)
    # depth: (6 - 1.5, 1 / 6) averaged over the 2 valid joints.
    assert float(d) == pytest.approx((4.5 + 1 / 6) / 2)
    # uv_scale multiplies the pixel error before tau (input size 128 -> x2).
    uv2, _ = joint_loss(pred, target, w, w, 1.0, 1.0, 1.0, 3.0, uv_scale=2.0)
    assert float(uv2) == pytest.approx((3.5 + 0 + 0.5 + 0) / 4)


def test_downsample_labels_mode_and_ignore():
    seg = torch.zeros(1, 8, 8, dtype=torch.long)
    seg[0, :4, :4] = 3
    seg[0, :2, :3] = 0  # 6 of 16 background: class 3 still has the majority
    seg[0, 4:, 4:] = SEG_IGNORE
    out = downsample_labels(seg, 2, 33)
    assert out.tolist() == [[[3, 0], [0, SEG_IGNORE]]]


def test_focal_gamma0_is_cross_entropy_and_uniform_value():
    torch.manual_seed(0)
    logits = torch.randn(2, 33, 4, 4)
    labels = torch.randint(0, 33, (2, 4, 4))
    ones = torch.ones(2, 4, 4)
    assert torch.allclose(focal_loss(logits, labels, 0.0, ones), F.cross_entropy(logits, labels))
    # Uniform logits: p_t = 1/33 -> (1 - 1/33)^2 * ln 33 everywhere.
    val = focal_loss(
        torch.zeros(1, 33, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), 2.0, torch.ones(1, 2, 2)
    )
    assert float(val) == pytest.approx((32 / 33) ** 2 * math.log(33), rel=1e-5)


def _dice_uniform(labels: list[int], eps: float = 1.0, c: int = 33) -> float:
    """Eq. 9 by hand for uniform probabilities 1/c over len(labels) pixels."""
    n = len(labels)
    terms = []
    for j in range(c):
        count = labels.count(j)
        terms.append((2 * count / c + eps) / (count + n / c + eps))
    return 1 - sum(terms) / c


def test_dice_matches_hand_value():
    labels = torch.tensor([[[0, 0], [1, 17]]])
    val = dice_loss(torch.zeros(1, 33, 2, 2), labels, 1.0, torch.ones(1, 2, 2))
    assert float(val) == pytest.approx(_dice_uniform([0, 0, 1, 17]), rel=1e-6)
    # A perfect one-hot prediction with eps -> 0 gives 0 for present classes only.
    logits = F.one_hot(labels, 33).permute(0, 3, 1, 2).float() * 100
    val = dice_loss(logits, labels, 1e-9, torch.ones(1, 2, 2))
    # Absent classes: (0 + eps) / (0 + ~0 + eps) = 1; present: 1. So the loss is ~0.
    assert float(val) == pytest.approx(0.0, abs=1e-4)


def _outputs(b: int = 1, seg_size: int = 2) -> DFLOutput:
    return DFLOutput(
        joints_25d=torch.zeros(b, 42, 3, requires_grad=True),
        joints_2d_iter=[torch.ones(b, 42, 2, requires_grad=True) for _ in range(2)],
        segmentation=torch.zeros(b, 33, seg_size, seg_size, requires_grad=True),
        hand_presence=torch.zeros(b, 2, requires_grad=True),
        rel_root_depth=torch.zeros(b, requires_grad=True),
        handedness=torch.zeros(b, 2, requires_grad=True),
        init_attention=torch.full((b, 42, 2, 2), 0.25, requires_grad=True),
    )


def _batch() -> dict[str, torch.Tensor]:
    uvd = torch.zeros(1, 42, 3)
    uvd[0, 0] = torch.tensor([2.0, 0.0, 6.0])
    uvd[0, 1] = torch.tensor([0.5, 0.0, 1.0])
    uvd[0, 5] = 1000.0  # invalid joint, huge error
    valid = torch.zeros(1, 42)
    valid[0, :2] = 1
    seg = torch.zeros(1, 8, 8, dtype=torch.long)
    seg[0, 4:, :4] = 1
    seg[0, 4:, 4:] = 17
    return {
        "joints_uvd": uvd,
        "joint_valid": valid,
        "hand_valid": torch.ones(1, 2),
        "seg": seg,
        "rel_root_depth": torch.tensor([30.0]),
    }


def test_total_loss_hand_computed():
    loss = DFLLoss(LossConfig(pair_loss="fixed"), input_size=256)
    out = {k: v.detach() for k, v in loss(_outputs(), _batch()).items()}
    l25d_uv = 0.5 * (1.5 + 0.125) / 4
    l25d_d = (4.5 + 1 / 6) / 2
    # Every iteration predicts (1, 1): errors (1, 1) and (0.5, 1) on the valid joints 0, 1:
    # tau = 1 -> (0.5 + 0.5 + 0.125 + 0.5) / 4 per iteration, 2 iterations.
    l2d = 2 * (0.5 + 0.5 + 0.125 + 0.5) / 4
    focal = (32 / 33) ** 2 * math.log(33)
    dice = _dice_uniform([0, 0, 1, 17])
    presence = math.log(2)
    root = 30.0
    expected = l2d + 3 * (l25d_uv + l25d_d) + (focal + dice) + presence + root
    assert float(out["l25d_uv"]) == pytest.approx(l25d_uv)
    assert float(out["l25d_depth"]) == pytest.approx(l25d_d)
    assert float(out["l2d"]) == pytest.approx(l2d)
    assert float(out["focal"]) == pytest.approx(focal, rel=1e-5)
    assert float(out["dice"]) == pytest.approx(dice, rel=1e-5)
    assert float(out["presence"]) == pytest.approx(presence, rel=1e-6)
    assert float(out["root"]) == pytest.approx(root)
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)


def test_masking_of_seg_root_presence_and_depth():
    loss = DFLLoss(LossConfig(pair_loss="fixed"))
    batch = _batch()
    batch["seg_valid"] = torch.zeros(1)
    batch["hand_valid"] = torch.tensor([[1.0, 0.0]])  # one hand: no relative root depth
    batch["presence_valid"] = torch.zeros(1, 2)
    batch["depth_weight"] = torch.zeros(1, 42)
    outputs = _outputs()
    out = loss(outputs, batch)
    for key in ("seg", "root", "presence", "l25d_depth"):
        assert float(out[key].detach()) == 0.0, key
    # Masked terms still reach every output, so DDP sees a gradient for every parameter.
    out["loss"].backward()
    for key in ("segmentation", "rel_root_depth", "hand_presence"):
        grad = getattr(outputs, key).grad
        assert grad is not None and float(grad.abs().sum()) == 0.0
    # A pseudo-label depth weight of 0.5 halves nothing: it is a weighted mean, so with uniform
    # weights the value equals the unweighted one.
    batch["depth_weight"] = torch.full((1, 42), 0.5)
    out = loss(_outputs(), batch)
    assert float(out["l25d_depth"].detach()) == pytest.approx((4.5 + 1 / 6) / 2)


def test_uv_scaled_to_reference_crop():
    # At input size 128 a 1-pixel error is 2 pixels of the paper's 256 crop.
    batch = _batch()
    a = DFLLoss(input_size=128)(_outputs(), batch)
    assert float(a["l25d_uv"].detach()) == pytest.approx(0.5 * (3.5 + 0.5) / 4)


def _two_hands(b: int = 1) -> dict[str, torch.Tensor]:
    """Right hand's joints at u = 40 + j, left hand's at u = 200 + j (v = j), all valid; part
    classes 1 (right palm) on the left image half, 17 (left palm) on the right half."""
    uvd = torch.zeros(b, 42, 3)
    j = torch.arange(21, dtype=torch.float32)
    uvd[:, :21, 0], uvd[:, 21:, 0] = 40 + j, 200 + j
    uvd[:, :21, 1] = uvd[:, 21:, 1] = j
    uvd[:, :21, 2], uvd[:, 21:, 2] = 5.0, -5.0
    seg = torch.zeros(b, 8, 8, dtype=torch.long)
    seg[:, :, :4], seg[:, :, 4:] = 1, 17
    seg[:, 0, 0] = SEG_IGNORE
    return {
        "joints_uvd": uvd,
        "joint_valid": torch.ones(b, 42),
        "hand_valid": torch.ones(b, 2),
        "presence_valid": torch.tensor([[1.0, 0.0]]).expand(b, 2),
        "seg": seg,
        "rel_root_depth": torch.full((b,), 30.0),
    }


def _predict(uvd: torch.Tensor, side: tuple[float, float]) -> DFLOutput:
    b = uvd.shape[0]
    return DFLOutput(
        joints_25d=uvd.clone().requires_grad_(True),
        joints_2d_iter=[uvd[..., :2].clone().requires_grad_(True)],
        segmentation=torch.zeros(b, 33, 2, 2, requires_grad=True),
        hand_presence=torch.zeros(b, 2, requires_grad=True),
        rel_root_depth=torch.zeros(b, requires_grad=True),
        handedness=torch.tensor([side]).expand(b, 2).clone().requires_grad_(True),
        init_attention=torch.full((b, 42, 8, 8), 1 / 64, requires_grad=True),
    )


def test_swap_targets_moves_every_per_hand_target_and_is_an_involution():
    batch = _two_hands(2)
    swap = torch.tensor([True, False])
    out = swap_targets(batch, swap)
    assert torch.equal(out["joints_uvd"][0, :21], batch["joints_uvd"][0, 21:])
    assert torch.equal(out["joints_uvd"][0, 21:], batch["joints_uvd"][0, :21])
    assert torch.equal(out["joints_uvd"][1], batch["joints_uvd"][1])
    assert out["presence_valid"][0].tolist() == [0.0, 1.0]
    assert out["presence_valid"][1].tolist() == [1.0, 0.0]
    assert out["rel_root_depth"].tolist() == [-30.0, 30.0]
    # Right palm (1) <-> left palm (17) in the swapped image only; ignored pixels stay ignored.
    assert out["seg"][0, 1, 0] == 17 and out["seg"][0, 1, 7] == 1
    assert out["seg"][0, 0, 0] == SEG_IGNORE
    assert torch.equal(out["seg"][1], batch["seg"][1])
    assert out["side"].tolist() == [[0.0, 1.0], [1.0, 0.0]]
    back = swap_targets(out, swap)
    for key in ("joints_uvd", "joint_valid", "hand_valid", "presence_valid", "seg"):
        assert torch.equal(back[key], batch[key]), key
    assert torch.equal(back["rel_root_depth"], batch["rel_root_depth"])


def test_matched_loss_scores_the_cheaper_assignment():
    batch = _two_hands()
    exact = batch["joints_uvd"]
    # The network put the right hand in slot 1 and the left in slot 0, and says so.
    flipped = exact[:, list(range(21, 42)) + list(range(21))]
    flipped[..., 2] = exact[..., 2]  # depths relative to each wrist: the same per hand here
    fixed = DFLLoss(LossConfig(pair_loss="fixed"))(_predict(flipped, (-8.0, 8.0)), batch)
    matched = DFLLoss(LossConfig(pair_loss="matched"))(_predict(flipped, (-8.0, 8.0)), batch)
    assert float(fixed["l25d_uv"].detach()) > 10  # 160 px off under the fixed slots
    assert float(matched["l25d_uv"].detach()) == pytest.approx(0.0, abs=1e-6)
    assert float(matched["l2d"].detach()) == pytest.approx(0.0, abs=1e-6)
    assert float(matched["swapped"].detach()) == 1.0
    assert float(matched["side"].detach()) < 1e-3  # slot 0 says left, slot 1 right: both right
    # The same sides reported the other way round cost the side BCE, and only that.
    wrong = DFLLoss(LossConfig(pair_loss="matched"))(_predict(flipped, (8.0, -8.0)), batch)
    assert float(wrong["side"].detach()) == pytest.approx(8.0, abs=1e-3)
    assert float(wrong["l25d_uv"].detach()) == pytest.approx(0.0, abs=1e-6)


def test_matched_loss_leaves_a_collapsed_pair_no_cheaper_way_out():
    # Both slots on the midpoint: both assignments cost the same, and the uv loss equals the
    # fixed one (the collapse is a minimum of neither loss once the pair separates).
    batch = _two_hands()
    mid = batch["joints_uvd"].clone()
    mid[..., 0] = 120 + torch.arange(42) % 21
    fixed = DFLLoss(LossConfig(pair_loss="fixed"))(_predict(mid, (0.0, 0.0)), batch)
    matched = DFLLoss(LossConfig(pair_loss="matched"))(_predict(mid, (0.0, 0.0)), batch)
    assert float(matched["l25d_uv"].detach()) == pytest.approx(float(fixed["l25d_uv"].detach()))
    assert float(matched["swapped"].detach()) == 0.0


def test_single_hand_goes_to_the_nearer_slot():
    batch = _two_hands()
    batch["hand_valid"] = torch.tensor([[0.0, 1.0]])  # only the left hand is labelled
    batch["joint_valid"][:, :21] = 0
    pred = batch["joints_uvd"].clone()
    pred[:, :21] = batch["joints_uvd"][:, 21:]  # slot 0 sits on the left hand
    pred[:, 21:, 0] = 0.0  # slot 1 somewhere else
    out = DFLLoss(LossConfig(pair_loss="matched"))(_predict(pred, (-8.0, 3.0)), batch)
    assert float(out["swapped"].detach()) == 1.0
    assert float(out["l25d_uv"].detach()) == pytest.approx(0.0, abs=1e-6)
    # Only the labelled hand's slot (0, saying left) is scored for its side.
    assert float(out["side"].detach()) < 1e-3


def test_pair_loss_name_is_checked():
    with pytest.raises(ValueError, match="pair_loss"):
        LossConfig(pair_loss="hungarian")


def test_attention_target_peaks_at_the_joint_and_is_a_distribution():
    # 256-pixel crop over an 8 x 8 map: the centre of cell (2, 5) is crop pixel (32*5+15.5, ...).
    uv = torch.tensor([[[5 * 32 + 15.5, 2 * 32 + 15.5], [-40.0, 10.0]]])
    target, weight = attention_target(uv, torch.ones(1, 2), (8, 8), 256, 1.0)
    grid = target.view(1, 2, 8, 8)
    assert int(grid[0, 0].argmax()) == 2 * 8 + 5
    assert float(target[0, 0].sum()) == pytest.approx(1.0)
    assert weight.tolist() == [[1.0, 0.0]]  # outside the crop: no target


def test_attention_loss_is_lowest_on_the_target_and_weighted():
    uv = torch.tensor([[[100.0, 60.0]]])
    target, _ = attention_target(uv, torch.ones(1, 1), (8, 8), 256, 1.0)
    on = attention_loss(target.view(1, 1, 8, 8), uv, torch.ones(1, 1), 256, 1.0)
    flat = attention_loss(torch.full((1, 1, 8, 8), 1 / 64), uv, torch.ones(1, 1), 256, 1.0)
    assert float(on) < float(flat)
    assert float(flat) == pytest.approx(math.log(64), rel=1e-5)
    # Through DFLLoss: off by default, weighted when on.
    batch = _two_hands()
    off = DFLLoss(LossConfig(pair_loss="fixed"))(_predict(batch["joints_uvd"], (8.0, -8.0)), batch)
    on_ = DFLLoss(LossConfig(pair_loss="fixed", w_attn=2.0))(
        _predict(batch["joints_uvd"], (8.0, -8.0)), batch
    )
    assert float(off["attn"].detach()) == 0.0
    assert float(on_["attn"].detach()) == pytest.approx(math.log(64), rel=1e-5)
    assert float((on_["loss"] - off["loss"]).detach()) == pytest.approx(2 * math.log(64), rel=1e-4)


def test_occluded_joints_weigh_more_in_the_2d_terms_only() -> None:
    """LossConfig.occluded_weight: the joints flagged ``occluded`` count W times in the 2D (and
    2.5D uv) terms; 1 (the default) is the loss without the flags; swap_targets moves them."""
    batch = _two_hands()
    occluded = torch.zeros(1, 42)
    occluded[0, 21:26] = 1  # five of the left hand's joints are under the right hand
    wrong = batch["joints_uvd"].clone()
    wrong[0, 21:26, :2] += 30.0  # ... and only they are predicted wrong
    cfg = LossConfig(pair_loss="fixed")
    plain = DFLLoss(cfg, input_size=256)(_predict(wrong, (5.0, -5.0)), batch)
    flagged = {**batch, "occluded": occluded}
    same = DFLLoss(cfg, input_size=256)(_predict(wrong, (5.0, -5.0)), flagged)
    assert torch.allclose(same["l2d"], plain["l2d"]) and torch.allclose(same["loss"], plain["loss"])
    w3 = DFLLoss(LossConfig(pair_loss="fixed", occluded_weight=3.0), input_size=256)
    heavy = w3(_predict(wrong, (5.0, -5.0)), flagged)
    # 5 wrong joints of 42: a mean over weights 42 + 2 * 5 instead of 42.
    ratio = (3 * 5 / (42 + 2 * 5)) / (5 / 42)
    assert heavy["l2d"].item() == pytest.approx(ratio * plain["l2d"].item(), rel=1e-5)
    assert torch.allclose(heavy["l25d_depth"], plain["l25d_depth"])
    out = swap_targets(flagged, torch.tensor([True]))
    assert out["occluded"][0, :21].sum() == 5 and out["occluded"][0, 21:].sum() == 0

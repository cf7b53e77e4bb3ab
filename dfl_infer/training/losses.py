"""DFL's training losses (paper §3.4), as a module separate from the network.

``L_total = L_2D + 3 L_2.5D + 1 L_seg + w_presence L_presence + w_root L_root`` where

- ``L_2.5D = 0.5 L_tau=1(uv) + 1 L_tau=3(depth)`` on the final 2.5D joints (eq. 6),
- ``L_2D = sum over iterations of L_tau=1(uv)`` on every iteration's 2D joints (eq. 6 with
  alpha = 1, beta = 0, tau = 1),
- ``L_seg = focal (gamma = 2) + soft dice`` over the 33 part classes (eq. 8-10) at the
  segmentation head's resolution,
- ``L_presence``: binary cross-entropy of the hand-presence logits (not in the paper: the package's
  presence head needs it), ``L_root``: L1 of the left-minus-right wrist depth where both hands
  are valid (the paper's relative root depth, supervised as in InterNet).

Pair loss (not in the paper). ``pair_loss="fixed"`` is the paper's: slot 0 (joints 0-20) is always
scored against the right hand's labels and slot 1 against the left's. While the network cannot
yet tell left from right in one crop, both slots on the midpoint of the two hands is the minimum
of that loss, and training stays there (both hands of every two-hand image collapse onto one
place). ``"matched"`` (the default) scores each image under the cheaper of its two slot
assignments (2D joint cost, no gradient through the choice) and swaps every per-hand target
with it: joints, their validity and depth weights, presence, the sign of the relative root
depth, and the right/left part classes of the segmentation (``joints.flip_seg_classes``). The
side then becomes an output of its own: ``L_side``, the BCE of each slot's handedness logit
against the side of the hand assigned to it, for every labelled hand.

``L_tau`` is eq. 7: ``x^2 / (2 tau)`` for ``|x| < tau``, else ``|x| - tau / 2``.

Normalization: each term is a *mean over valid elements* (valid joints x coordinates, valid
pixels, valid images) instead of eq. 7's sum, so the weights do not depend on the batch size,
the number of visible joints or the crop size. u, v are in pixels of a 256-pixel crop (the
paper's crop, for which tau = 1 px was chosen): for another input size S they are multiplied by
256 / S before the loss, so tau keeps its meaning. Depths are in mm (tau = 3 mm). Masked terms
with nothing valid return a zero that still depends on the outputs, so every parameter gets a
gradient (DistributedDataParallel requires that).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dfl_infer.joints import FLIP_PERMUTATION, NUM_HAND_JOINTS, flip_seg_classes
from dfl_infer.model.outputs import DFLOutput

# Pixels of the paper's crop: the unit in which tau_uv = 1 was chosen.
REFERENCE_CROP = 256
# Label of pixels without ground truth (no mask file); excluded from the segmentation loss.
SEG_IGNORE = 255
PAIR_LOSSES = ("matched", "fixed")


@dataclass(frozen=True)
class LossConfig:
    """Weights and parameters of :class:`DFLLoss` (paper values unless noted)."""

    alpha: float = 0.5  # weight of uv inside L_2.5D
    beta: float = 1.0  # weight of depth inside L_2.5D
    tau_uv: float = 1.0  # pixels of a 256 crop
    tau_depth: float = 3.0  # mm
    lambda_25d: float = 3.0
    lambda_seg: float = 1.0
    gamma: float = 2.0  # focal loss
    dice_eps: float = 1.0  # soft dice smoothing
    # Not in the paper: presence BCE and relative root depth L1 (mm), see the module docstring.
    # One mm of root error costs as much as one mm of a single joint's depth would under beta.
    w_presence: float = 1.0
    w_root: float = 1.0
    # "matched": each image under the cheaper slot assignment; "fixed": the paper's slots.
    pair_loss: str = "matched"
    w_side: float = 1.0  # handedness BCE of each labelled hand's slot (matched only)
    # Not in the paper: weight of the 2D/2.5D joint terms for joints under another hand
    # (``occluded``: composites' ``joint_occluded``); 1 treats them as any other joint.
    occluded_weight: float = 1.0
    # Cross-entropy of each joint query's initial attention (DFL's appearance relationship,
    # eq. 1-2) against a Gaussian of attn_sigma cells at the joint's labelled position on the
    # coarsest map; 0: off (the paper's loss).
    w_attn: float = 0.0
    attn_sigma: float = 1.0

    def __post_init__(self) -> None:
        if self.pair_loss not in PAIR_LOSSES:
            raise ValueError(f"pair_loss must be one of {PAIR_LOSSES}, got {self.pair_loss!r}")


def smooth_l1_tau(x: torch.Tensor, tau: float) -> torch.Tensor:
    """Elementwise eq. 7: ``x^2 / (2 tau)`` where ``|x| < tau``, else ``|x| - tau / 2``."""
    ax = x.abs()
    return torch.where(ax < tau, x * x / (2 * tau), ax - tau / 2)


def masked_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean of ``values`` (weights broadcast); 0 (still in the graph) when all are 0."""
    weight = weight.to(values.dtype).expand_as(values)
    total = weight.sum()
    return (values * weight).sum() / total.clamp_min(1e-8)


def joint_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    uv_weight: torch.Tensor,
    depth_weight: torch.Tensor | None,
    alpha: float,
    beta: float,
    tau_uv: float,
    tau_depth: float,
    uv_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 6 parts: (alpha * L_tau_uv(uv), beta * L_tau_depth(d)), each a masked mean.

    pred/target (B, J, 2 or 3); uv_weight/depth_weight (B, J). Returns two scalars.
    """
    luv = smooth_l1_tau((pred[..., :2] - target[..., :2]) * uv_scale, tau_uv)
    uv = alpha * masked_mean(luv, uv_weight[..., None])
    if depth_weight is None or beta == 0:
        return uv, pred.sum() * 0
    ld = smooth_l1_tau(pred[..., 2] - target[..., 2], tau_depth)
    return uv, beta * masked_mean(ld, depth_weight)


def downsample_labels(seg: torch.Tensor, size: int, num_classes: int) -> torch.Tensor:
    """(B, H, W) int labels -> (B, size, size) by the mode of each block (one-hot area average,
    then argmax; ties go to the lower class). Blocks whose majority is ``SEG_IGNORE`` stay
    ignored. Mode rather than nearest so one stray pixel does not decide a whole block."""
    b, h, w = seg.shape
    if (h, w) == (size, size):
        return seg
    if h % size or w % size:
        raise ValueError(f"label map {h}x{w} is not a multiple of {size}")
    ignore = seg == SEG_IGNORE
    onehot = F.one_hot(torch.where(ignore, num_classes, seg), num_classes + 1)
    area = F.avg_pool2d(onehot.permute(0, 3, 1, 2).float(), kernel_size=(h // size, w // size))
    mode = area.argmax(dim=1)
    return torch.where(mode == num_classes, SEG_IGNORE, mode)


def focal_loss(
    logits: torch.Tensor, labels: torch.Tensor, gamma: float, weight: torch.Tensor
) -> torch.Tensor:
    """Eq. 8 as a mean over valid pixels: ``-(1 - p_t)^gamma log p_t`` with p = softmax(logits).

    The paper prints ``(1 - sigma^gamma)``; the focal loss of [31] it cites is ``(1 - p)^gamma``,
    which is what is used. logits (B, C, H, W); labels (B, H, W); weight (B, H, W) 0/1.
    """
    logp = F.log_softmax(logits.float(), dim=1)
    safe = torch.where(labels == SEG_IGNORE, 0, labels)
    logp_t = logp.gather(1, safe[:, None]).squeeze(1)
    per_pixel = -((1 - logp_t.exp()) ** gamma) * logp_t
    return masked_mean(per_pixel, weight)


def dice_loss(
    logits: torch.Tensor, labels: torch.Tensor, eps: float, weight: torch.Tensor
) -> torch.Tensor:
    """Eq. 9 per image, averaged over images with any valid pixel:
    ``1 - mean_j (2 sum T p + eps) / (sum T + sum p + eps)`` over valid pixels."""
    c = logits.shape[1]
    prob = F.softmax(logits.float(), dim=1)
    safe = torch.where(labels == SEG_IGNORE, 0, labels)
    onehot = F.one_hot(safe, c).permute(0, 3, 1, 2).float()
    w = weight[:, None].float()
    inter = (onehot * prob * w).sum(dim=(2, 3))
    denom = (onehot * w).sum(dim=(2, 3)) + (prob * w).sum(dim=(2, 3))
    per_image = 1 - ((2 * inter + eps) / (denom + eps)).mean(dim=1)
    image_valid = (weight.flatten(1).sum(1) > 0).float()
    return masked_mean(per_image, image_valid)


def _slot_cost(uv: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, slot, hand): summed 2D distance of each slot's 21 joints to each hand's labels (hand 0
    the right, 1 the left), over the valid joints."""
    n = NUM_HAND_JOINTS
    b = uv.shape[0]
    pred = uv.view(b, 2, 1, n, 2)
    lab = target[..., :2].reshape(b, 1, 2, n, 2)
    w = valid.view(b, 1, 2, n)
    cost: torch.Tensor = ((pred - lab).norm(dim=-1) * w).sum(-1)
    return cost


def match_slots(outputs: DFLOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B,) bool: images whose slots are cheaper swapped (slot 0 on the left hand's labels, slot
    1 on the right's), by the summed 2D distance of every valid joint, over the final joints and
    every iteration's. Single-hand images pick the slot nearer their hand. No gradient."""
    with torch.no_grad():
        target = batch["joints_uvd"].float()
        valid = batch["joint_valid"].float()
        cost = torch.zeros(target.shape[0], 2, 2, device=target.device)
        for uv in [outputs.joints_25d[..., :2], *outputs.joints_2d_iter]:
            cost = cost + _slot_cost(uv.float(), target, valid)
        keep = cost[:, 0, 0] + cost[:, 1, 1]
        swap = cost[:, 0, 1] + cost[:, 1, 0]
        return swap < keep


def swap_targets(batch: dict[str, torch.Tensor], swap: torch.Tensor) -> dict[str, torch.Tensor]:
    """``batch`` with every per-hand target of the images in ``swap`` (B,) moved to the other
    slot: joints (B, 42, ...) halves exchanged, (B, 2) per-hand flags reversed, the relative
    root depth negated, right/left part classes mirrored. Adds ``side`` (B, 2): 1 where the
    slot's label is a right hand."""
    out = dict(batch)
    b = swap.shape[0]
    side = torch.tensor([1.0, 0.0], device=swap.device).expand(b, 2)
    out["side"] = torch.where(swap[:, None], side.flip(1), side)
    if not bool(swap.any()):
        return out
    perm = torch.tensor(FLIP_PERMUTATION, device=swap.device)
    for key in ("joints_uvd", "joint_valid", "depth_weight", "occluded"):
        if key in batch:
            v = batch[key]
            mask = swap.view((-1,) + (1,) * (v.ndim - 1))
            out[key] = torch.where(mask, v[:, perm], v)
    for key in ("hand_valid", "presence_valid"):
        if key in batch:
            v = batch[key]
            out[key] = torch.where(swap[:, None], v.flip(1), v)
    out["rel_root_depth"] = torch.where(swap, -batch["rel_root_depth"], batch["rel_root_depth"])
    seg = batch["seg"].long()
    table = torch.from_numpy(flip_seg_classes()).to(seg.device)
    mirrored = torch.where(seg == SEG_IGNORE, seg, table[seg.clamp(max=len(table) - 1)])
    out["seg"] = torch.where(swap.view(-1, 1, 1), mirrored, seg)
    return out


def attention_target(
    uv: torch.Tensor, valid: torch.Tensor, grid: tuple[int, int], crop: int, sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per joint, a Gaussian of ``sigma`` cells at its crop-pixel position ``uv`` (B, J, 2) on a
    ``grid`` (h, w) feature map over a ``crop``-pixel crop, normalised to sum 1: (B, J, h*w);
    and the weight (B, J): ``valid`` and inside the crop."""
    h, w = grid
    # Pixel centres: crop pixel u lies at cell (u + 0.5) * w / crop - 0.5.
    cu = (uv[..., 0] + 0.5) * (w / crop) - 0.5
    cv = (uv[..., 1] + 0.5) * (h / crop) - 0.5
    ys = torch.arange(h, device=uv.device, dtype=uv.dtype)
    xs = torch.arange(w, device=uv.device, dtype=uv.dtype)
    gy = torch.exp(-((ys - cv[..., None]) ** 2) / (2 * sigma**2))  # (B, J, h)
    gx = torch.exp(-((xs - cu[..., None]) ** 2) / (2 * sigma**2))  # (B, J, w)
    target = (gy[..., :, None] * gx[..., None, :]).flatten(-2)
    target = target / target.sum(-1, keepdim=True).clamp_min(1e-12)
    inside = (uv > -0.5).all(-1) & (uv < crop - 0.5).all(-1)
    return target, valid * inside.to(valid.dtype)


def attention_loss(
    attention: torch.Tensor, uv: torch.Tensor, valid: torch.Tensor, crop: int, sigma: float
) -> torch.Tensor:
    """Masked mean over joints of ``-sum target * log attention``; ``attention`` (B, J, h, w)
    rows summing to 1 (``DFLOutput.init_attention``)."""
    b, j, h, w = attention.shape
    target, weight = attention_target(uv.float(), valid.float(), (h, w), crop, sigma)
    logp = attention.float().flatten(-2).clamp_min(1e-12).log()
    return masked_mean(-(target * logp).sum(-1), weight)


class DFLLoss(nn.Module):
    """The total training loss. ``forward(outputs, batch)`` -> dict of scalar tensors: ``loss``
    (the total to minimize) and its components ``l2d``, ``l25d_uv``, ``l25d_depth``, ``l25d``,
    ``focal``, ``dice``, ``seg``, ``presence``, ``root``.

    With ``pair_loss="matched"`` the targets are first assigned to the slots (:func:`match_slots`,
    :func:`swap_targets`) and the dict also holds ``side`` (handedness BCE) and ``swapped``
    (the share of images scored under the swapped assignment; not part of the loss).

    ``outputs`` is DFLModel's :class:`DFLOutput`; ``batch`` holds ``joints_uvd`` (B, 42, 3),
    ``joint_valid`` (B, 42), ``hand_valid`` (B, 2), ``seg`` (B, S, S), ``rel_root_depth`` (B,), and
    optionally
    ``depth_weight`` (B, 42) [joint_valid], ``presence_valid`` (B, 2) [1], ``root_valid`` (B,) [1],
    ``seg_valid`` (B,) [1].
    """

    def __init__(self, config: LossConfig | None = None, input_size: int = REFERENCE_CROP) -> None:
        super().__init__()
        self.config = config or LossConfig()
        self.uv_scale = REFERENCE_CROP / input_size
        self.input_size = input_size

    def forward(
        self, outputs: DFLOutput, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        cfg = self.config
        side = outputs.joints_25d.sum() * 0
        swapped = side.detach()
        if cfg.pair_loss == "matched":
            swap = match_slots(outputs, batch)
            batch = swap_targets(batch, swap)
            swapped = swap.float().mean()
            # Every labelled hand's slot learns its side; the other slot's handedness is moot.
            side_bce = F.binary_cross_entropy_with_logits(
                outputs.handedness.float(), batch["side"], reduction="none"
            )
            side = masked_mean(side_bce, batch["hand_valid"].float())
        pred = outputs.joints_25d.float()
        target = batch["joints_uvd"].float()
        valid = batch["joint_valid"].float()
        dw = batch.get("depth_weight", valid).float() * valid
        uv_w = valid
        if cfg.occluded_weight != 1.0 and "occluded" in batch:
            # Joints under another hand weigh more in the 2D terms (not in the depth term, nor
            # in the attention term: there is nothing of them to look at).
            uv_w = valid * (1.0 + (cfg.occluded_weight - 1.0) * batch["occluded"].float())
        uv, depth = joint_loss(
            pred, target, uv_w, dw, cfg.alpha, cfg.beta, cfg.tau_uv, cfg.tau_depth, self.uv_scale
        )
        l2d = pred.sum() * 0
        for uv_t in outputs.joints_2d_iter:
            # Eq. 6 with alpha = 1, beta = 0: the 2D term of every iteration.
            uv_t_loss, _ = joint_loss(
                uv_t.float(),
                target,
                uv_w,
                None,
                1.0,
                0.0,
                cfg.tau_uv,
                cfg.tau_depth,
                self.uv_scale,
            )
            l2d = l2d + uv_t_loss

        logits = outputs.segmentation
        labels = downsample_labels(batch["seg"].long(), logits.shape[-1], logits.shape[1])
        b = labels.shape[0]
        seg_valid = batch.get("seg_valid", torch.ones(b, device=labels.device)).float()
        pix_w = (labels != SEG_IGNORE).float() * seg_valid[:, None, None]
        focal = focal_loss(logits, labels, cfg.gamma, pix_w)
        dice = dice_loss(logits, labels, cfg.dice_eps, pix_w)

        hand_valid = batch["hand_valid"].float()
        pres_w = batch.get("presence_valid", torch.ones_like(hand_valid)).float()
        bce = F.binary_cross_entropy_with_logits(
            outputs.hand_presence.float(), hand_valid, reduction="none"
        )
        presence = masked_mean(bce, pres_w)

        root_w = hand_valid[:, 0] * hand_valid[:, 1]
        root_w = root_w * batch.get("root_valid", torch.ones_like(root_w)).float()
        rel = outputs.rel_root_depth.float()
        root = masked_mean((rel - batch["rel_root_depth"].float()).abs(), root_w)

        attn = pred.sum() * 0
        if cfg.w_attn > 0:
            attn = attention_loss(
                outputs.init_attention, target[..., :2], valid, self.input_size, cfg.attn_sigma
            )

        l25d = uv + depth
        seg = focal + dice
        total = (
            l2d
            + cfg.lambda_25d * l25d
            + cfg.lambda_seg * seg
            + cfg.w_presence * presence
            + cfg.w_root * root
            + cfg.w_side * side
            + cfg.w_attn * attn
        )
        return {
            "loss": total,
            "l2d": l2d,
            "l25d": l25d,
            "l25d_uv": uv,
            "l25d_depth": depth,
            "seg": seg,
            "focal": focal,
            "dice": dice,
            "presence": presence,
            "root": root,
            "side": side,
            "attn": attn,
            "swapped": swapped,
        }

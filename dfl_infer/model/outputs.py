"""What the parts of the DFL network return: typed tuples of tensors with documented shapes.

NamedTuples rather than dataclasses: ``torch.onnx.export``, ``torch.compile`` and
``DistributedDataParallel`` flatten tuples natively (a dataclass would need registering with
``torch.utils._pytree``), and the fields are still read by name.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class EncoderOutput(NamedTuple):
    """The encoder's features for B crops of side S, FPN levels at strides 32, 16, 8, 4 (coarsest
    first, the order the decoder consumes them)."""

    appearance: list[torch.Tensor]  # per level (B, C_F + C_S, H_n, W_n)
    position: list[torch.Tensor]  # per level (1, C_P, H_n, W_n), broadcast over the batch
    segmentation: torch.Tensor  # (B, 33, S/4, S/4) part logits of the finest level


class DecoderOutput(NamedTuple):
    """The decoder's predictions; meanings as in :class:`DFLOutput`."""

    joints_25d: torch.Tensor
    joints_2d_iter: list[torch.Tensor]
    hand_presence: torch.Tensor
    rel_root_depth: torch.Tensor
    handedness: torch.Tensor
    init_attention: torch.Tensor


class DFLOutput(NamedTuple):
    """Raw predictions of ``DFLModel`` for B crops of side S (float32, also under autocast).

    - ``joints_25d`` (B, 42, 3): u, v in crop pixels (OpenCV pixel-centre convention) and depth in
      mm relative to each hand's own wrist (positive = farther from the camera); joints 0-20 are
      hand slot 0, 21-41 slot 1 (``JOINT_NAMES`` names them right and left: what the slots hold
      once ordered by ``handedness``, ``decode.CropOutputs.sided``).
    - ``hand_presence`` (B, 2): logits that slot 0 / slot 1 holds a hand in the crop.
    - ``rel_root_depth`` (B,): depth of slot 1's wrist minus that of slot 0's wrist, mm.
    - ``init_attention`` (B, 42, S/32, S/32): each joint query's initial attention over the
      coarsest feature map (eq. 1-2; rows sum to 1), a training signal (``losses.py``); not
      exported.
    - ``handedness`` (B, 2): logits that the hand in slot 0 / slot 1 is a right hand. A model
      without a handedness head (fixed slots, ``DFLConfig.handedness_head`` false) returns
      constant logits +-``joints.FIXED_SIDE_LOGIT``: slot 0 right, slot 1 left.
    - ``segmentation`` (B, 33, S/4, S/4): part-segmentation logits (``SEG_CLASS_NAMES``).
    - ``joints_2d_iter``: T tensors (B, 42, 2), the crop-pixel prediction after each decoder
      iteration (a training signal; at inference, their agreement is the per-joint confidence,
      ``decode.joint_confidence``).

    All but ``init_attention``, in this order, are the outputs of the exported ONNX graph
    (``export.py``), which stacks ``joints_2d_iter`` into one (B, T, 42, 2) tensor.
    """

    joints_25d: torch.Tensor
    hand_presence: torch.Tensor
    rel_root_depth: torch.Tensor
    segmentation: torch.Tensor
    joints_2d_iter: list[torch.Tensor]
    handedness: torch.Tensor
    init_attention: torch.Tensor

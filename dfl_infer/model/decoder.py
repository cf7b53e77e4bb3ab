"""Decoupling heterogeneous feature decoder (paper section 3.3).

Joints carry two feature streams: appearance J^a (C_F + C_S channels) and position J^p (C_P).
- Initialization (eq. 1-2): learnable joint queries Q^a attend to the coarsest image appearance
  features only; the resulting weights gather both J^a and J^p.
- Joints-joints (J-J, 3.3.2): self-attention whose weights come from position features only, applied
  to the values of both streams.
- Joints-image (J-I, 3.3.3, eq. 3-4): cross-attention whose logits are the SUM of the
  appearance.appearance and position.position dot products; the weights gather each stream's own
  image values. Concatenating the per-head (q_a, q_p) and (k_a, k_p) makes one scaled dot product
  compute exactly that sum.
- Spatial position refinement (SPR) in the last iteration: a light graph convolution over the hand
  skeleton plus self-attention on J^p (GraFormer-style, the paper's ref. [52]).
- 2.5D regression from J^p only; a 2D prediction after every iteration for the training loss.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dfl_infer.joints import FIXED_SIDE_LOGIT, HAND_BONES, NUM_HAND_JOINTS, ROOT_INDICES, WRIST
from dfl_infer.model.config import DFLConfig
from dfl_infer.model.outputs import DecoderOutput


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)  # (B, h, N, c/h)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, n, c = x.shape
    return x.transpose(1, 2).reshape(b, n, h * c)


class FeedForward(nn.Module):
    def __init__(self, dim: int, ratio: float, dropout: float) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.net(x)
        return x + y


class JointsJointsAttention(nn.Module):
    """J-J: attention weights from position features only, applied to both streams."""

    def __init__(self, a_dim: int, p_dim: int, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dim, self.dropout = heads, dim, dropout
        self.norm_a, self.norm_p = nn.LayerNorm(a_dim), nn.LayerNorm(p_dim)
        self.qk_p = nn.Linear(p_dim, 2 * dim)
        self.v_a, self.v_p = nn.Linear(a_dim, dim), nn.Linear(p_dim, dim)
        self.out_a, self.out_p = nn.Linear(dim, a_dim), nn.Linear(dim, p_dim)

    def forward(self, ja: torch.Tensor, jp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        na, np_ = self.norm_a(ja), self.norm_p(jp)
        q, k = self.qk_p(np_).chunk(2, dim=-1)
        v = torch.cat([self.v_a(na), self.v_p(np_)], dim=-1)
        # Values of both streams share the heads' weights: (B, h, J, 2 * dim / h).
        h = self.heads
        v = torch.cat([_split_heads(part, h) for part in v.chunk(2, dim=-1)], dim=-1)
        out = F.scaled_dot_product_attention(
            _split_heads(q, h),
            _split_heads(k, h),
            v,
            dropout_p=self.dropout if self.training else 0.0,
        )
        out_a, out_p = out.chunk(2, dim=-1)
        return ja + self.out_a(_merge_heads(out_a)), jp + self.out_p(_merge_heads(out_p))


class JointsImageAttention(nn.Module):
    """J-I: logits = q_a.k_a + q_p.k_p; each stream gathers its own image values."""

    def __init__(self, a_dim: int, p_dim: int, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm_ja, self.norm_jp = nn.LayerNorm(a_dim), nn.LayerNorm(p_dim)
        self.norm_fa = nn.LayerNorm(a_dim)
        self.q_a, self.q_p = nn.Linear(a_dim, dim), nn.Linear(p_dim, dim)
        self.kv_a, self.kv_p = nn.Linear(a_dim, 2 * dim), nn.Linear(p_dim, 2 * dim)
        self.out_a, self.out_p = nn.Linear(dim, a_dim), nn.Linear(dim, p_dim)

    def forward(
        self, ja: torch.Tensor, jp: torch.Tensor, fa: torch.Tensor, fp: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ja (B, J, A), jp (B, J, P), fa (B, HW, A), fp (1 or B, HW, P)."""
        h = self.heads
        k_a, v_a = self.kv_a(self.norm_fa(fa)).chunk(2, dim=-1)
        k_p, v_p = self.kv_p(fp).chunk(2, dim=-1)
        b = ja.shape[0]
        k_p, v_p = k_p.expand(b, -1, -1), v_p.expand(b, -1, -1)
        q = torch.cat(
            [
                _split_heads(self.q_a(self.norm_ja(ja)), h),
                _split_heads(self.q_p(self.norm_jp(jp)), h),
            ],
            dim=-1,
        )
        k = torch.cat([_split_heads(k_a, h), _split_heads(k_p, h)], dim=-1)
        v = torch.cat([_split_heads(v_a, h), _split_heads(v_p, h)], dim=-1)
        # Default scale 1/sqrt(2 * d_head): the summed logits have twice the terms of one stream.
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )
        out_a, out_p = out.chunk(2, dim=-1)
        return ja + self.out_a(_merge_heads(out_a)), jp + self.out_p(_merge_heads(out_p))


def skeleton_adjacency(num_hand_joints: int = NUM_HAND_JOINTS) -> torch.Tensor:
    """(2J, 2J) 0/1 adjacency of both hands' skeletons with self-loops; the two wrists are linked
    so that the refinement can relate the hands."""
    n = 2 * num_hand_joints
    adj = np.eye(n, dtype=np.float32)
    for offset in (0, num_hand_joints):
        for child, parent in HAND_BONES:
            adj[offset + child, offset + parent] = adj[offset + parent, offset + child] = 1
    r, l_ = ROOT_INDICES
    adj[r, l_] = adj[l_, r] = 1
    return torch.from_numpy(adj)


class SkeletonGraphConv(nn.Module):
    """Graph convolution with learnable, softmax-normalized edge weights on the skeleton
    (semantic graph convolution): each joint mixes its own and its neighbours' features."""

    mask: torch.Tensor

    def __init__(self, dim: int, adjacency: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", adjacency > 0, persistent=False)
        self.edge_logits = nn.Parameter(torch.zeros_like(adjacency))
        self.self_proj, self.neigh_proj = nn.Linear(dim, dim), nn.Linear(dim, dim, bias=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.edge_logits.masked_fill(~self.mask, float("-inf"))
        weights = logits.softmax(dim=-1).to(x.dtype)  # (J, J), rows sum to 1 over neighbours
        y = self.norm(x)
        return x + F.gelu(self.self_proj(y) + weights @ self.neigh_proj(y))


class SpatialPositionRefinement(nn.Module):
    """SPR: alternating self-attention and skeleton graph convolution on position features."""

    def __init__(self, dim: int, heads: int, layers: int, ffn_ratio: float) -> None:
        super().__init__()
        adj = skeleton_adjacency()
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            self.blocks.append(
                nn.ModuleDict(
                    {
                        "norm": nn.LayerNorm(dim),
                        "attn": nn.MultiheadAttention(
                            dim, heads, batch_first=True, kdim=dim, vdim=dim
                        ),
                        "gcn": SkeletonGraphConv(dim, adj),
                        "ffn": FeedForward(dim, ffn_ratio, 0.0),
                    }
                )
            )

    def forward(self, jp: torch.Tensor) -> torch.Tensor:
        for module in self.blocks:
            block = cast(nn.ModuleDict, module)
            y = block["norm"](jp)
            jp = jp + block["attn"](y, y, y, need_weights=False)[0]
            jp = block["gcn"](jp)
            jp = block["ffn"](jp)
        return jp


class Decoder(nn.Module):
    """Joint queries -> iterative decoupled refinement -> 2.5D joints, presence, root depth."""

    def __init__(self, config: DFLConfig, appearance_channels: int) -> None:
        super().__init__()
        a_dim, p_dim = appearance_channels, config.pos_channels
        j = config.num_joints
        self.config = config
        # Q^a. Unit-scale entries against layer-normed image features give each joint its own
        # initial attention map; tiny ones would make all 42 joints gather the same mean feature
        # and start training from a symmetric state that takes many steps to break.
        self.queries = nn.Parameter(torch.randn(j, a_dim))
        self.init_norm = nn.LayerNorm(a_dim)
        dim, heads, drop = config.attn_dim, config.num_heads, config.dropout
        self.jj = nn.ModuleList(
            [
                JointsJointsAttention(a_dim, p_dim, dim, heads, drop)
                for _ in range(config.num_iterations)
            ]
        )
        self.ji = nn.ModuleList(
            [
                JointsImageAttention(a_dim, p_dim, dim, heads, drop)
                for _ in range(config.num_iterations)
            ]
        )
        self.ffn_a = nn.ModuleList(
            [FeedForward(a_dim, config.ffn_ratio, drop) for _ in range(config.num_iterations)]
        )
        self.ffn_p = nn.ModuleList(
            [FeedForward(p_dim, config.ffn_ratio, drop) for _ in range(config.num_iterations)]
        )
        self.uv_iter = nn.ModuleList(
            [
                nn.Sequential(nn.LayerNorm(p_dim), nn.Linear(p_dim, 2))
                for _ in range(config.num_iterations)
            ]
        )
        # SPR's attention works at the width of the position stream, not at attn_dim.
        self.spr = SpatialPositionRefinement(p_dim, heads, config.gcn_layers, config.ffn_ratio)
        self.head_norm = nn.LayerNorm(p_dim)
        self.head_25d = nn.Linear(p_dim, 3)
        # Per-joint offsets of every coordinate head: each joint starts from its own learned mean
        # position (the shared linear bias alone would start all joints at one point).
        self.joint_bias_25d = nn.Parameter(torch.zeros(j, 3))
        self.joint_bias_iter = nn.Parameter(torch.zeros(config.num_iterations, j, 2))
        # Not in the paper, needed for real photos (InterNet-style): which hands are present, and
        # the left wrist's depth relative to the right wrist.
        self.presence = nn.Sequential(
            nn.LayerNorm(2 * a_dim), nn.Linear(2 * a_dim, 256), nn.GELU(), nn.Linear(256, 1)
        )
        self.root_depth = nn.Sequential(
            nn.LayerNorm(2 * p_dim + 2 * a_dim),
            nn.Linear(2 * p_dim + 2 * a_dim, 256),
            nn.GELU(),
            nn.Linear(256, 1),
        )
        # Which side each slot's hand is (config.handedness_head): from the slot's mean
        # appearance and position features, the image's mean appearance, and the shape of the
        # slot's own 2.5D skeleton relative to its wrist (with depth, a skeleton's chirality is
        # geometry). The skeleton enters detached: the side loss must not bend the joints.
        self.handedness: nn.Sequential | None = None
        if config.handedness_head:
            n_in = 2 * a_dim + p_dim + 3 * config.num_hand_joints
            self.handedness = nn.Sequential(
                nn.LayerNorm(n_in), nn.Linear(n_in, 128), nn.GELU(), nn.Linear(128, 1)
            )
        self._reset_heads()

    def _reset_heads(self) -> None:
        # Start every coordinate head at the crop centre with small slopes, so the first
        # iterations refine from a sane guess instead of from arbitrary corners.
        heads = [cast(nn.Linear, cast(nn.Sequential, m)[1]) for m in self.uv_iter] + [self.head_25d]
        for head in heads:
            nn.init.normal_(head.weight, std=1e-3)
            nn.init.zeros_(head.bias)

    def _uv(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw head output (0 = centre, +-0.5 = edges) -> crop pixels."""
        s = self.config.input_size
        return (raw.float() + 0.5) * s - 0.5

    def forward(
        self, appearance: list[torch.Tensor], position: list[torch.Tensor]
    ) -> DecoderOutput:
        cfg = self.config
        fa0 = appearance[0].flatten(2).transpose(1, 2)  # (B, HW, A)
        fp0 = position[0].flatten(2).transpose(1, 2)  # (1, HW, P)
        b = fa0.shape[0]
        # Eq. 1-2: appearance-only relationship between queries and the coarsest map.
        logits = torch.einsum("jc,bnc->bjn", self.queries.to(fa0.dtype), self.init_norm(fa0))
        attn = (logits / fa0.shape[-1] ** 0.5).softmax(dim=-1)
        ja = attn @ fa0
        jp = attn @ fp0.expand(b, -1, -1)
        uv_iter = []
        for t in range(cfg.num_iterations):
            fa = appearance[t + 1].flatten(2).transpose(1, 2)
            fp = position[t + 1].flatten(2).transpose(1, 2)
            ja, jp = self.jj[t](ja, jp)
            ja, jp = self.ji[t](ja, jp, fa, fp)
            ja, jp = self.ffn_a[t](ja), self.ffn_p[t](jp)
            if t == cfg.num_iterations - 1:
                jp = self.spr(jp)
            uv_iter.append(self._uv(self.uv_iter[t](jp) + self.joint_bias_iter[t]))
        out = (self.head_25d(self.head_norm(jp)) + self.joint_bias_25d).float()
        uvd = torch.cat([self._uv(out[..., :2]), out[..., 2:] * (cfg.depth_range_mm / 2)], dim=-1)
        n = cfg.num_hand_joints
        hand_a = torch.stack([ja[:, :n].mean(1), ja[:, n:].mean(1)], dim=1)  # (B, 2, A)
        global_a = fa0.mean(1, keepdim=True).expand(-1, 2, -1)
        presence = self.presence(torch.cat([hand_a, global_a], dim=-1)).squeeze(-1).float()
        r, l_ = ROOT_INDICES
        root_in = torch.cat([jp[:, r], jp[:, l_], ja[:, :n].mean(1), ja[:, n:].mean(1)], dim=-1)
        rel_root = self.root_depth(root_in).squeeze(-1).float() * (cfg.root_depth_range_mm / 2)
        side = self._sides(uvd, hand_a, jp, global_a)
        init_attn = attn.view(b, -1, *appearance[0].shape[-2:])
        return DecoderOutput(uvd, uv_iter, presence, rel_root, side, init_attn)

    def _sides(
        self, uvd: torch.Tensor, slot_a: torch.Tensor, jp: torch.Tensor, global_a: torch.Tensor
    ) -> torch.Tensor:
        """(B, 2) logits that slot 0 / slot 1 holds a right hand; ``slot_a`` (B, 2, A): each
        slot's mean appearance feature (the presence head's)."""
        b, n = uvd.shape[0], self.config.num_hand_joints
        if self.handedness is None:
            side = torch.tensor([FIXED_SIDE_LOGIT, -FIXED_SIDE_LOGIT], device=uvd.device)
            return side.expand(b, 2)
        s = float(self.config.input_size)
        skel = uvd.detach().view(b, 2, n, 3)
        # Relative to the wrist, u, v in crop sides, depth in the regression range: numbers of
        # order 1.
        rel = skel - skel[:, :, WRIST : WRIST + 1]
        scale = torch.tensor([s, s, self.config.depth_range_mm / 2], device=uvd.device)
        rel = (rel / scale).flatten(2)
        slot_p = torch.stack([jp[:, :n].mean(1), jp[:, n:].mean(1)], dim=1)
        x = torch.cat([slot_a, global_a, slot_p.to(slot_a.dtype), rel.to(slot_a.dtype)], dim=-1)
        logits: torch.Tensor = self.handedness(x).squeeze(-1).float()
        return logits

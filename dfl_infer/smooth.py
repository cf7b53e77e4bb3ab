"""Temporal smoothing of the joints of a video, per hand (the right and the left hand are
followed by their handedness): a causal One-Euro filter for streams, and an offline two-pass
smoother for recorded files (short gaps filled by linear interpolation, then a zero-lag
Savitzky-Golay filter per coordinate). Both smooth ``joints_2d`` and ``joints_3d``;
``joints_3d_rel`` is recomputed from the smoothed ``joints_3d``.

The One-Euro filter (Casiez et al., CHI 2012) is a low-pass filter whose cut-off frequency rises
with speed: ``cutoff = min_cutoff + beta * speed``, so a still hand is smoothed hard and a fast
one follows with little lag. Here the speed is each joint's 2D speed in hand sizes per second
(the hand's 2D extent), so one setting suits any image size and distance, and the same cut-off
is applied to that joint's 2D and 3D coordinates (depth noise does not open the filter).

When there are several hands of one side in a frame (two people), only the highest-scoring
one is smoothed (a hand the network found before a tracked hand it did not: ``Hand.coasting``);
the others pass through unchanged. A coasting hand is otherwise smoothed like any other.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dfl_infer.joints import NUM_HAND_JOINTS
from dfl_infer.lift import relative_to_wrist
from dfl_infer.results import Hand, Prediction
from dfl_infer.track import hand_order

SMOOTH_MODES = ("none", "causal", "offline")


@dataclass(frozen=True)
class SmoothParams:
    """Smoothing parameters. The defaults were chosen on a synthetic clip (seed 1) other than
    the one docs/video.md reports (seed 0): the One-Euro setting that lowered jitter most without
    raising the 3D error, with and without tracking; a small beta, because the network's
    frame-to-frame noise itself reads as speed and would open the filter."""

    # One-Euro (causal): cut-off in Hz for a still joint, and how much it rises per hand size
    # per second of speed; the speed itself is low-passed at d_cutoff Hz.
    min_cutoff: float = 2.0
    beta: float = 0.2
    d_cutoff: float = 1.0
    # Offline: gaps of at most max_gap frames between two frames with the hand are filled by
    # linear interpolation; the Savitzky-Golay window (frames, odd) and polynomial order.
    max_gap: int = 5
    window: int = 9
    order: int = 2

    def __post_init__(self) -> None:
        for name in ("min_cutoff", "d_cutoff"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta must be 0 or positive, got {self.beta!r}")
        if self.max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, got {self.max_gap}")
        if self.window < 3 or self.window % 2 == 0:
            raise ValueError(f"window must be an odd number >= 3, got {self.window}")
        if not 0 <= self.order < self.window:
            raise ValueError(f"order must be in [0, window), got {self.order}")

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray:
    tau = 1.0 / (2 * math.pi * np.asarray(cutoff, dtype=np.float64))
    out: np.ndarray = 1.0 / (1.0 + tau / dt)
    return out


def _hand_size(joints_2d: np.ndarray) -> float:
    return max(float(np.ptp(joints_2d, axis=0).max()), 1.0)


def _usable(hand: Hand) -> bool:
    return bool(np.isfinite(hand.joints_2d).all() and np.isfinite(hand.joints_3d).all())


def _with_joints(hand: Hand, joints_2d: np.ndarray, joints_3d: np.ndarray) -> Hand:
    return dataclasses.replace(
        hand, joints_2d=joints_2d, joints_3d=joints_3d, joints_3d_rel=relative_to_wrist(joints_3d)
    )


def _rank(hand: Hand) -> tuple[bool, float]:
    """Which of two hands of one side to follow: one the network found, then the higher score
    (a coasting hand's score may be NaN)."""
    return hand.coasting == 0, hand.score if math.isfinite(hand.score) else -math.inf


def _main_hands(prediction: Prediction) -> dict[str, int]:
    """Handedness -> index in ``prediction.hands`` of the usable hand to follow (``_rank``)."""
    best: dict[str, int] = {}
    for i, hand in enumerate(prediction.hands):
        if not _usable(hand):
            continue
        j = best.get(hand.handedness)
        if j is None or _rank(hand) > _rank(prediction.hands[j]):
            best[hand.handedness] = i
    return best


class OneEuro:
    """One-Euro filter state for one hand: (21, 5) values per step, the 2D joints (pixels) then
    the 3D joints (mm)."""

    def __init__(self, params: SmoothParams) -> None:
        self.params = params
        self.value: np.ndarray | None = None
        self.speed = np.zeros(NUM_HAND_JOINTS)
        self.time = 0.0

    def __call__(self, joints_2d: np.ndarray, joints_3d: np.ndarray, time: float) -> np.ndarray:
        x = np.concatenate([joints_2d, joints_3d], axis=1)
        dt = time - self.time
        if self.value is None or not dt > 0:
            self.value, self.time = x, time
            self.speed = np.zeros(NUM_HAND_JOINTS)
            return x
        p = self.params
        raw = np.linalg.norm(x[:, :2] - self.value[:, :2], axis=1) / dt / _hand_size(joints_2d)
        a_d = _alpha(p.d_cutoff, dt)
        self.speed = a_d * raw + (1 - a_d) * self.speed
        a = _alpha(p.min_cutoff + p.beta * self.speed, dt)[:, None]
        self.value = a * x + (1 - a) * self.value
        self.time = time
        return self.value


class CausalSmoother:
    """One-Euro filter over a stream of predictions, one filter per handedness; a hand absent
    for more than ``params.max_gap`` frames (of ``fps``) starts afresh."""

    def __init__(self, params: SmoothParams | None = None, fps: float = 30.0) -> None:
        self.params = params or SmoothParams()
        self.reset_after = (self.params.max_gap + 1) / fps
        self._filters: dict[str, OneEuro] = {}

    def __call__(self, prediction: Prediction, time: float) -> Prediction:
        hands = list(prediction.hands)
        for side, i in _main_hands(prediction).items():
            f = self._filters.get(side)
            if f is None or time - f.time > self.reset_after:
                f = self._filters[side] = OneEuro(self.params)
            hand = hands[i]
            out = f(hand.joints_2d, hand.joints_3d, time)
            hands[i] = _with_joints(hand, out[:, :2], out[:, 2:])
        return dataclasses.replace(prediction, hands=tuple(hands))


def savgol(values: np.ndarray, window: int, order: int) -> np.ndarray:
    """Savitzky-Golay smoothing of ``values`` (T, ...) along axis 0: a polynomial of ``order``
    fitted by least squares to each ``window`` frames (odd), evaluated at the centre; at the
    ends, the fit to the first / last window is evaluated (no padding, so no lag and no pull
    towards a made-up value). A series shorter than the window uses the longest odd window
    that fits; one too short for the order is returned as is."""
    v: np.ndarray = np.asarray(values, dtype=np.float64)
    n = len(v)
    window = min(window, n if n % 2 else n - 1)
    if window <= order or window < 3:
        return np.array(v)
    m = window // 2
    pos = np.arange(-m, m + 1, dtype=np.float64)
    vander = np.vander(pos, order + 1, increasing=True)
    proj = vander @ np.linalg.pinv(vander)  # (window, window): window values -> fitted values
    flat = v.reshape(n, -1)
    out = np.empty_like(flat)
    centre = proj[m]
    for t in range(m, n - m):
        out[t] = centre @ flat[t - m : t + m + 1]
    out[:m] = proj[:m] @ flat[:window]
    out[n - m :] = proj[m + 1 :] @ flat[n - window :]
    return out.reshape(v.shape)


def _runs(present: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in a 1D bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], present.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def smooth_offline(
    predictions: Sequence[Prediction | None], params: SmoothParams | None = None
) -> tuple[list[Prediction | None], list[set[str]]]:
    """Two-pass smoothing of a whole clip (``None`` for a frame that failed). Returns the
    smoothed predictions and, per frame, the sides whose hand was filled in by interpolation
    (a hand missing for at most ``max_gap`` frames between two frames that have it: a copy of
    the hand before the gap with interpolated joints and score)."""
    p = params or SmoothParams()
    n = len(predictions)
    out: list[Prediction | None] = list(predictions)
    filled: list[set[str]] = [set() for _ in range(n)]
    sides = {h.handedness for pr in predictions if pr is not None for h in pr.hands}
    for side in sorted(sides):
        index = np.full(n, -1)
        values = np.full((n, NUM_HAND_JOINTS, 5), np.nan)
        scores = np.full(n, np.nan)
        for t, pr in enumerate(predictions):
            if pr is None:
                continue
            i = _main_hands(pr).get(side)
            if i is not None:
                hand = pr.hands[i]
                index[t] = i
                values[t] = np.concatenate([hand.joints_2d, hand.joints_3d], axis=1)
                scores[t] = hand.score
        have = index >= 0
        # Pass 1: fill short gaps between two frames with the hand.
        gaps = [(a, b) for a, b in _runs(~have) if a > 0 and b < n and b - a <= p.max_gap]
        for a, b in gaps:
            w = (np.arange(a, b) - (a - 1))[:, None] / (b - (a - 1))
            values[a:b] = values[a - 1][None] * (1 - w[..., None]) + values[b][None] * w[..., None]
            scores[a:b] = scores[a - 1] * (1 - w[:, 0]) + scores[b] * w[:, 0]
        span = have.copy()
        for a, b in gaps:
            span[a:b] = True
        # Pass 2: zero-lag filter over each run of frames with the hand.
        for a, b in _runs(span):
            values[a:b] = savgol(values[a:b], p.window, p.order)
        last: Hand | None = None
        for t in range(n):
            pr = out[t]
            if not span[t] or pr is None:
                continue
            hands = list(pr.hands)
            if have[t]:
                last = hands[index[t]]
                hands[index[t]] = _with_joints(last, values[t, :, :2], values[t, :, 2:])
            else:
                assert last is not None  # a gap always follows a frame with the hand
                hand = _with_joints(last, values[t, :, :2], values[t, :, 2:])
                hands.append(dataclasses.replace(hand, score=float(scores[t]), coasting=0))
                hands.sort(key=hand_order)
                filled[t].add(side)
            out[t] = dataclasses.replace(pr, hands=tuple(hands))
    return out, filled


__all__ = ["SMOOTH_MODES", "CausalSmoother", "OneEuro", "SmoothParams", "savgol", "smooth_offline"]

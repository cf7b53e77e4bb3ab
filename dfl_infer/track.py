"""Hand tracking across video frames: each hand's box is carried from frame to frame, so a hand
the detector misses for a few frames (the usual case when two hands interlace) keeps its crop,
and the right and left hands keep their identities.

One track per side (right, left), as the pipeline handles one person's two hands. Per frame:

1. :meth:`HandTracker.plan` turns the detector's hands into the hands the predictor crops: where
   the detector labels two hands with the same side, the labels are settled by the tracks'
   positions; a track that no detection covers is added as a detection of its own (its box moved
   on by its recent motion, ``score`` 0), so the network still looks there.
2. After the network, :meth:`HandTracker.update` gives each track one of the network's hands:
   the cheapest assignment by distance from the track, the network's right/left label counting
   as a prior (so a pair the network labelled the wrong way round is put back), never the same
   hand twice. A followed hand takes its track's side; another hand on the same place (the
   network's two slots collapsed onto one hand) is dropped. Each track takes its hand's joints'
   box; a track whose hand is not found (presence below the predictor's threshold, or too far)
   coasts on its last motion, and is dropped after ``max_missed`` such frames in a row. Hands
   of other people (a second right hand elsewhere) pass through unfollowed.
3. While a track coasts, its hand is still reported, marked ``Hand.coasting`` (frames in a row
   unfound, 1..max_missed): the track's last joints moved on by its motion (2D; the 3D joints
   shifted to match at the wrist's depth, the pose kept), with the network's presence for that
   side in the crop the track was given as its score (``Prediction.presence``; NaN when the
   prediction does not carry it). The network's own joints for that side, below the threshold,
   were the other choice: on the benchmark clips (docs/video.md, seeds 0 and 1) that slot lay on
   the other, already reported hand (the network's two slots collapsed) in most coasting frames,
   and where it lay apart it was no closer to the truth than the track's held pose.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dfl_infer.crop import box_intersection, box_iou, points_box
from dfl_infer.detect import HandDetection
from dfl_infer.hand_pass import same_place
from dfl_infer.joints import HANDS
from dfl_infer.lift import relative_to_wrist
from dfl_infer.results import Hand, Prediction

# A detection may cover a track (stand for it) when their boxes overlap by at least this IoU.
COVER_IOU = 0.2
# Hand-to-track costs (HandTracker._assign): the farthest a track's hand may be from where it
# was expected, in track box sizes; the price of following a hand the network labelled the other
# side; the price of leaving a side unfollowed.
GATE = 1.0
LABEL_COST = 0.3
MISS_COST = 1.0
# A new joints' box smaller than this share of the track's box (a collapsed prediction) keeps the
# track's size, centred on the new box.
MIN_SIZE_RATIO = 0.5
# How much of the box's last motion carries on per frame while the hand is not found.
COAST_DAMPING = 0.7


def hand_order(hand: Hand) -> tuple[int, float]:
    """Sort key of a frame's hands, as the predictor orders them: right first, then left to
    right in the image."""
    return HANDS.index(hand.handedness), float(hand.joints_2d[:, 0].mean())


def _same_place(a: Hand, b: Hand) -> bool:
    """One hand predicted twice (the network's two slots collapsed onto one hand):
    ``hand_pass.same_place``."""
    return same_place(a.joints_2d, b.joints_2d)


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _side(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], box[3] - box[1], 1.0))


@dataclass
class Track:
    """One hand followed through the frames: ``box`` (xyxy pixels) where it is expected next,
    ``velocity`` (2,) its centre's motion per frame, ``joints`` (21, 2) its last 2D joints
    (moved on by its motion while it coasts), ``missed`` frames in a row without it, ``hand``
    the last hand the network found for it (None for a track made by hand)."""

    handedness: str
    box: np.ndarray
    joints: np.ndarray
    velocity: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(2))
    missed: int = 0
    hand: Hand | None = None

    def distance(self, joints_2d: np.ndarray) -> float:
        """Distance from this track's box centre to the centre of ``joints_2d``'s box, in the
        track's box sizes."""
        return float(
            np.linalg.norm(_centre(points_box(joints_2d)) - _centre(self.box)) / _side(self.box)
        )


class HandTracker:
    """Follows one right and one left hand through a video (module docstring); ``max_missed``:
    frames in a row a hand may go unfound before its track is dropped."""

    def __init__(self, max_missed: int = 5) -> None:
        if max_missed < 0:
            raise ValueError(f"max_missed must be >= 0, got {max_missed}")
        self.max_missed = max_missed
        self.tracks: dict[str, Track] = {}

    def plan(self, detections: Sequence[Any]) -> list[Any]:
        """The hands for the predictor to crop this frame: the detector's ``detections``
        (``HandDetection``-like: ``box``, ``handedness``), relabelled where two share a side, plus
        the tracks they do not cover (a detection covers at most one track)."""
        dets = list(detections)
        sides = [d.handedness for d in dets]
        if len(dets) >= 2 and len(set(sides)) < len(sides) and len(self.tracks) == 2:
            # Same-side labels from the detector (it often guesses when hands cross): the tracks
            # decide, for the two detections that overlap them best.
            right, left = self.tracks["right"], self.tracks["left"]
            pairs = [
                (box_iou(d.box, right.box) + box_iou(e.box, left.box), i, j)
                for i, d in enumerate(dets)
                for j, e in enumerate(dets)
                if i != j
            ]
            score, i, j = max(pairs)
            if score > 0:
                dets[i] = dataclasses.replace(dets[i], handedness="right")
                dets[j] = dataclasses.replace(dets[j], handedness="left")
        # Which detection covers which track: one to one, the best overlap first (a detection of
        # the track's side preferred), so that one box around two crossing hands covers one of
        # them and the other still gets its crop.
        ranked = sorted(
            (
                (iou + (LABEL_COST if d.handedness == side else 0.0), iou, i, side)
                for i, d in enumerate(dets)
                for side, track in self.tracks.items()
                if (iou := box_iou(d.box, track.box)) >= COVER_IOU
            ),
            reverse=True,
        )
        used: set[int] = set()
        covered: set[str] = set()
        for _, _, i, side in ranked:
            if i not in used and side not in covered:
                used.add(i)
                covered.add(side)
        for side in HANDS:
            track = self.tracks.get(side)
            if track is None or side in covered:
                continue
            dets.append(
                HandDetection(
                    box=track.box.copy(),
                    handedness=side,
                    score=0.0,
                    landmarks=track.joints.copy(),
                    landmarks_3d=None,
                )
            )
        return dets

    def update(self, prediction: Prediction) -> Prediction:
        """Follow this frame's hands (see the module docstring); returns ``prediction`` with the
        followed hands labelled by their tracks, the copies of a followed hand dropped, and the
        hand of each coasting track added (``Hand.coasting`` > 0)."""
        hands = list(prediction.hands)
        chosen = self._assign(hands)
        for side, i in chosen.items():
            if hands[i].handedness != side:
                hands[i] = dataclasses.replace(hands[i], handedness=side)
        kept = [
            hand
            for i, hand in enumerate(hands)
            if i in chosen.values() or not any(_same_place(hand, hands[j]) for j in chosen.values())
        ]
        for side in HANDS:
            if side in chosen:
                self._follow(side, hands[chosen[side]])
            elif (coasting := self._coast(side, prediction)) is not None:
                kept.append(coasting)
        if len(kept) == len(prediction.hands) and all(
            a is b for a, b in zip(kept, prediction.hands)
        ):
            return prediction
        return dataclasses.replace(prediction, hands=tuple(sorted(kept, key=hand_order)))

    def _assign(self, hands: list[Hand]) -> dict[str, int]:
        """Side -> index of the hand that side's track follows this frame: the cheapest choice
        over every (right, left) pair of hands (or none), where a hand costs its distance from the
        track (in track box sizes; beyond ``GATE`` it cannot be that track's) plus
        ``LABEL_COST`` when the network labelled it the other side; a side without a track takes
        a hand of its own label (cost 1 - score); an unfollowed side costs ``MISS_COST``; the
        two hands must not be one hand predicted twice (the same place)."""
        usable = [i for i, h in enumerate(hands) if np.isfinite(h.joints_2d).all()]
        options: list[int | None] = [None, *usable]
        best: dict[str, int] = {}
        best_cost = math.inf
        for r in options:
            for lf in options:
                if (
                    r is not None
                    and lf is not None
                    and (r == lf or _same_place(hands[r], hands[lf]))
                ):
                    continue
                pick = {"right": r, "left": lf}
                cost = sum(
                    self._cost(side, None if i is None else hands[i]) for side, i in pick.items()
                )
                if cost < best_cost:
                    best_cost = cost
                    best = {side: i for side, i in pick.items() if i is not None}
        return best

    def _cost(self, side: str, hand: Hand | None) -> float:
        if hand is None:
            return MISS_COST
        track = self.tracks.get(side)
        if track is None:
            return 1.0 - hand.score if hand.handedness == side else math.inf
        d = track.distance(hand.joints_2d)
        if d > GATE:
            return math.inf
        return d + (0.0 if hand.handedness == side else LABEL_COST)

    def _follow(self, side: str, hand: Hand) -> None:
        box = points_box(hand.joints_2d)
        track = self.tracks.get(side)
        if track is None:
            self.tracks[side] = Track(side, box, hand.joints_2d.copy(), hand=hand)
            return
        if _side(box) < MIN_SIZE_RATIO * _side(track.box):
            half = _side(track.box) / 2
            c = _centre(box)
            box = np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])
        motion = _centre(box) - (_centre(track.box) - track.velocity)
        track.velocity = 0.5 * track.velocity + 0.5 * motion
        track.box = box + np.tile(track.velocity, 2)
        track.joints = hand.joints_2d.copy()
        track.missed = 0
        track.hand = hand

    def _coast(self, side: str, prediction: Prediction) -> Hand | None:
        """Move an unfound track on; its hand for this frame (None once it is dropped)."""
        track = self.tracks.get(side)
        if track is None:
            return None
        track.missed += 1
        if track.missed > self.max_missed:
            del self.tracks[side]
            return None
        score = _crop_presence(prediction, track.box, side)  # the box it was given this frame
        track.velocity = track.velocity * COAST_DAMPING
        track.box = track.box + np.tile(track.velocity, 2)
        track.joints = track.joints + track.velocity
        return _coasting_hand(track, prediction, score)


def _crop_presence(prediction: Prediction, box: np.ndarray, side: str) -> float:
    """The network's presence for ``side`` in the crop that holds most of ``box`` (NaN when
    ``prediction`` has no presences or no crop overlaps it)."""
    best, score = 0.0, math.nan
    for crop, presence in zip(prediction.crops, prediction.presence):
        inside = box_intersection(box, np.asarray(crop))
        if inside > best:
            best, score = inside, float(presence[HANDS.index(side)])
    return score


def _coasting_hand(track: Track, prediction: Prediction, score: float) -> Hand:
    """The hand a coasting track reports: its last found hand with the 2D joints moved where
    the track is, the 3D joints shifted by the same amount at the wrist's depth."""
    last = track.hand
    joints_2d = track.joints.copy()
    if last is None:
        joints_3d = np.full((len(joints_2d), 3), np.nan)
    else:
        shift = joints_2d[-1] - last.joints_2d[-1]  # every joint moved alike
        z = last.joints_3d[-1, 2]
        k = prediction.intrinsics
        joints_3d = last.joints_3d + np.array([shift[0] * z / k.fx, shift[1] * z / k.fy, 0.0])
    return Hand(
        handedness=track.handedness,
        score=score,
        joints_2d=joints_2d,
        joints_3d=joints_3d,
        joints_3d_rel=relative_to_wrist(joints_3d),
        joint_confidence=None,
        coasting=track.missed,
    )


__all__ = ["COVER_IOU", "HandTracker", "Track", "box_iou", "hand_order"]

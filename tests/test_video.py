"""Video: frame reading, the tracker, the smoothers, ``predict_video`` and ``dfl-infer CLIP`` end to
end (tiny random weights and a stand-in detector where MediaPipe is not the point), and the
synthetic clip maker."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfl_infer.cli import main
from dfl_infer.detect import HandDetection
from dfl_infer.lift import Intrinsics, relative_to_wrist
from dfl_infer.results import Hand, Prediction
from dfl_infer.smooth import CausalSmoother, SmoothParams, savgol, smooth_offline
from dfl_infer.track import HandTracker
from dfl_infer.video import FrameSource, OverlayVideo, VideoError, is_video_overlay
from dfl_infer.vis3d import is_view3d

SIZE = 96


def _write_clip(path: Path, frames: int = 6, size: int = SIZE) -> Path:
    import cv2

    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (size, size))
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    writer.release()
    return path


def _hand(side: str, centre: tuple[float, float], score: float = 0.9, size: float = 40.0) -> Hand:
    """A hand whose 21 joints spread over a ``size`` box around ``centre`` (pixels), depth 500."""
    grid = np.linspace(-0.5, 0.5, 21)
    j2 = np.stack([centre[0] + size * grid, centre[1] + size * grid[::-1] ** 2], 1)
    j3 = np.concatenate([(j2 - 48.0) * 5.0, np.full((21, 1), 500.0)], 1)
    return Hand(side, score, j2, j3, relative_to_wrist(j3))


def _pred(*hands: Hand) -> Prediction:
    return Prediction(tuple(hands), SIZE, SIZE, Intrinsics.default(SIZE, SIZE), None)


# --- frames in, overlay out -------------------------------------------------------------------
def test_frame_source_video_and_folder(tmp_path) -> None:
    clip = _write_clip(tmp_path / "c.mp4", frames=5)
    source = FrameSource(clip)
    frames = list(source)
    assert source.fps == pytest.approx(25.0) and source.count == 5
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert frames[2].time == pytest.approx(2 / 25.0)
    assert frames[0].image is not None and frames[0].image.shape == (SIZE, SIZE, 3)
    assert len(list(source)) == 5  # iterating again decodes again
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in (2, 0, 1):
        Image.fromarray(np.full((20, 30, 3), k * 50, np.uint8)).save(folder / f"f{k:03d}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    frames = list(FrameSource(folder, fps=10))
    assert [f.time for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert frames[0].error is not None and frames[0].image is None  # broken.jpg sorts first
    assert [int(f.image[0, 0, 0]) for f in frames[1:]] == [0, 50, 100]


def test_frame_source_errors(tmp_path) -> None:
    with pytest.raises(VideoError, match="no such file"):
        FrameSource(tmp_path / "missing.mp4")
    (tmp_path / "fake.mp4").write_bytes(b"not a video")
    with pytest.raises(VideoError, match="cannot decode"):
        FrameSource(tmp_path / "fake.mp4")
    with pytest.raises(VideoError, match="fps"):
        FrameSource(_write_clip(tmp_path / "c.mp4"), fps=0.0)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(mixed / "a.png")
    Image.fromarray(np.zeros((22, 30, 3), np.uint8)).save(mixed / "b.png")
    with pytest.raises(VideoError, match="share one size"):
        list(FrameSource(mixed))


def test_overlay_video_is_atomic_and_marked(tmp_path) -> None:
    out = tmp_path / "o.mp4"
    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    failed = OverlayVideo(out, 25.0)
    failed.write(rgb, _pred(_hand("right", (40, 40))))
    failed.close(complete=False)
    assert list(tmp_path.iterdir()) == []  # nothing left behind
    overlay = OverlayVideo(out, 25.0)
    for _ in range(3):
        overlay.write(rgb, _pred(_hand("right", (40, 40))))
    overlay.close()
    assert [p.name for p in tmp_path.iterdir()] == ["o.mp4"] and is_video_overlay(out)
    assert len(list(FrameSource(out))) == 3  # still a valid mp4 with our mark appended
    frame = next(iter(FrameSource(out))).image
    assert frame is not None and frame.max() > 100  # the skeleton is drawn
    assert not is_video_overlay(_write_clip(tmp_path / "plain.mp4"))


def test_overlay_dims_coasting_hands() -> None:
    from dfl_infer.vis import HAND_COLOURS, draw_prediction

    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    found = _hand("right", (48, 48))
    drawn = [
        draw_prediction(rgb, _pred(hand), draw_boxes=False, depth_inset=False)
        for hand in (found, dataclasses.replace(found, score=float("nan"), coasting=2))
    ]
    orange = [(img == HAND_COLOURS["right"]).all(-1).sum() for img in drawn]
    assert orange[0] > 0 and orange[1] == 0  # drawn, but not in the found hand's colour
    assert 0 < drawn[1].sum() < drawn[0].sum()


# --- smoothing --------------------------------------------------------------------------------
def test_savgol_keeps_polynomials_and_lowers_noise() -> None:
    t = np.arange(30, dtype=np.float64)
    quad = 0.5 * t**2 - 3 * t + 2
    np.testing.assert_allclose(savgol(quad, 9, 2), quad, atol=1e-8)  # no lag, also at the ends
    noisy = quad + np.random.default_rng(0).normal(0, 1, 30)
    assert np.abs(savgol(noisy, 9, 2) - quad).mean() < 0.75 * np.abs(noisy - quad).mean()
    assert savgol(quad[:2], 9, 2).tolist() == quad[:2].tolist()  # too short: as is
    np.testing.assert_allclose(savgol(quad[:5], 9, 2), quad[:5], atol=1e-8)  # shorter window


def test_params_validated() -> None:
    for bad in ({"window": 4}, {"order": 9}, {"min_cutoff": 0.0}, {"beta": -1.0}):
        with pytest.raises(ValueError):
            SmoothParams(**bad)  # type: ignore[arg-type]


def _noisy_track(n: int, seed: int = 0) -> tuple[list[Prediction], np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.stack([30 + np.arange(n) * 0.5, np.full(n, 48.0)], 1)
    preds = []
    for c in centres:
        hand = _hand("right", tuple(c))
        j2 = hand.joints_2d + rng.normal(0, 1.0, (21, 2))
        j3 = hand.joints_3d + rng.normal(0, 5.0, (21, 3))
        preds.append(_pred(Hand("right", 0.9, j2, j3, relative_to_wrist(j3))))
    truth = np.stack([_hand("right", tuple(c)).joints_2d for c in centres])
    return preds, truth


def _acc(series: np.ndarray) -> float:
    return float(np.linalg.norm(series[2:] - 2 * series[1:-1] + series[:-2], axis=-1).mean())


def test_causal_filter_lowers_jitter_and_keeps_rel_consistent() -> None:
    preds, truth = _noisy_track(60)
    smoother = CausalSmoother(SmoothParams(), fps=30.0)
    out = [smoother(p, t / 30.0) for t, p in enumerate(preds)]
    raw = np.stack([p.hands[0].joints_2d for p in preds])
    smooth = np.stack([p.hands[0].joints_2d for p in out])
    assert _acc(smooth) < 0.5 * _acc(raw)
    assert np.abs(smooth - truth)[10:].mean() < np.abs(raw - truth)[10:].mean()
    hand = out[-1].hands[0]
    np.testing.assert_allclose(hand.joints_3d_rel, relative_to_wrist(hand.joints_3d))
    assert (
        out[0].hands[0].joints_2d.tolist() == preds[0].hands[0].joints_2d.tolist()
    )  # starts as is


def test_offline_fills_short_gaps_only() -> None:
    preds: list[Prediction | None] = list(_noisy_track(40)[0])
    for t in (10, 11):  # a short gap: filled
        preds[t] = _pred()
    for t in range(20, 27):  # longer than max_gap (5): left empty
        preds[t] = _pred()
    preds[30] = None  # a failed frame stays failed
    out, filled = smooth_offline(preds, SmoothParams(max_gap=5))
    assert [t for t, sides in enumerate(filled) if sides] == [10, 11]
    assert filled[10] == {"right"} and len(out[10].hands) == 1  # type: ignore[union-attr]
    assert all(len(out[t].hands) == 0 for t in range(20, 27))  # type: ignore[union-attr]
    assert out[30] is None
    gap_hand = out[10].hands[0]  # type: ignore[union-attr]
    before, after = out[9].hands[0], out[12].hands[0]  # type: ignore[union-attr]
    assert before.joints_2d[:, 0].mean() < gap_hand.joints_2d[:, 0].mean()
    assert gap_hand.joints_2d[:, 0].mean() < after.joints_2d[:, 0].mean()
    raw = np.stack([p.hands[0].joints_3d for p in preds[:10]])  # type: ignore[union-attr]
    smooth = np.stack([p.hands[0].joints_3d for p in out[:10]])  # type: ignore[union-attr]
    assert _acc(smooth) < 0.5 * _acc(raw)


# --- tracking ---------------------------------------------------------------------------------
def _det(side: str, box: tuple[float, ...]) -> HandDetection:
    return HandDetection(np.array(box, float), side, 0.9, np.zeros((21, 2)), None)


def test_tracker_carries_a_missed_hand_and_drops_it_later() -> None:
    tracker = HandTracker(max_missed=2)
    tracker.update(_pred(_hand("right", (30, 48)), _hand("left", (70, 48))))
    # The detector finds only the right hand: the left track's box is added for the predictor.
    planned = tracker.plan([_det("right", (10, 28, 50, 68))])
    assert [d.handedness for d in planned] == ["right", "left"]
    assert planned[1].score == 0.0 and planned[1].box[0] == pytest.approx(50, abs=1)
    for _ in range(2):  # the network does not find the left hand either: it coasts ...
        tracker.update(_pred(_hand("right", (30, 48))))
        assert "left" in tracker.tracks
    tracker.update(_pred(_hand("right", (30, 48))))  # ... and is dropped after max_missed
    assert set(tracker.tracks) == {"right"}
    assert [d.handedness for d in tracker.plan([])] == ["right"]


def test_tracker_reports_a_coasting_hand_until_it_is_dropped() -> None:
    tracker = HandTracker(max_missed=3)
    for x in (60, 62, 64):  # the left hand moves 2 px a frame
        tracker.update(_pred(_hand("right", (20, 48)), _hand("left", (x, 48), score=0.8)))
    last = _hand("left", (64, 48))
    crops = (np.array([0.0, 20, 40, 76]), np.array([40.0, 20, 96, 76]))  # right's, left's
    presence = (np.array([0.9, 0.1]), np.array([0.2, 0.3]))
    xs = []
    for missed in (1, 2, 3):  # unfound: still reported, marked, for max_missed frames
        found = _pred(_hand("right", (20, 48)))
        found = dataclasses.replace(found, crops=crops, presence=presence)
        out = tracker.update(found)
        assert [(h.handedness, h.coasting) for h in out.hands] == [("right", 0), ("left", missed)]
        left = out.hands[1]
        assert left.score == pytest.approx(0.3)  # the network's presence in its crop, as it is
        assert left.joint_confidence is None
        record = left.to_dict()
        assert record["coasting"] == missed and record["score"] == pytest.approx(0.3)
        assert "coasting" not in out.hands[0].to_dict()
        # Moved on by the track's motion, the pose kept; 3D moved to match the 2D at its depth.
        shift = left.joints_2d - last.joints_2d
        np.testing.assert_allclose(shift, shift[:1].repeat(21, 0))
        np.testing.assert_allclose(left.joints_3d_rel, last.joints_3d_rel, atol=1e-9)
        k = out.intrinsics
        np.testing.assert_allclose(
            (left.joints_3d - last.joints_3d)[:, :2], shift * 500.0 / np.array([k.fx, k.fy])
        )
        xs.append(float(left.joints_2d[:, 0].mean()))
    assert 64 < xs[0] < xs[1] < xs[2] < 64 + 3 * 2  # onwards, slowing down
    out = tracker.update(_pred(_hand("right", (20, 48))))  # max_missed + 1: dropped, not reported
    assert [h.handedness for h in out.hands] == ["right"] and "left" not in tracker.tracks
    # Without the crops' presences the score is not known: NaN, null in the JSON.
    tracker.update(_pred(_hand("right", (20, 48)), _hand("left", (64, 48))))
    (coasting,) = [h for h in tracker.update(_pred(_hand("right", (20, 48)))).hands if h.coasting]
    assert np.isnan(coasting.score) and coasting.to_dict()["score"] is None
    # max_missed=0: an unfound hand is dropped at once, never reported.
    strict = HandTracker(max_missed=0)
    strict.update(_pred(_hand("right", (20, 48)), _hand("left", (64, 48))))
    assert [h.handedness for h in strict.update(_pred(_hand("right", (20, 48)))).hands] == ["right"]


def test_smoothers_take_coasting_hands_like_others() -> None:
    preds, _ = _noisy_track(12)
    tracked = list(preds[:6])
    for t in range(6, 9):  # the network loses the hand: the tracker reports it, coasting
        hand = dataclasses.replace(preds[5].hands[0], score=float("nan"), coasting=t - 5)
        tracked.append(_pred(hand))
    tracked += preds[9:]
    causal = CausalSmoother(SmoothParams(), fps=30.0)
    out = [causal(p, t / 30.0) for t, p in enumerate(tracked)]
    assert [h.coasting for p in out for h in p.hands][6:9] == [1, 2, 3]
    assert not np.allclose(out[6].hands[0].joints_2d, tracked[6].hands[0].joints_2d)  # filtered
    smoothed, filled = smooth_offline(tracked, SmoothParams())
    assert not any(filled) and [len(p.hands) for p in smoothed] == [1] * 12  # type: ignore[union-attr]
    assert smoothed[7].hands[0].coasting == 2  # type: ignore[union-attr]
    # A found hand of the same side is followed before a coasting one, whatever the scores.
    other = _hand("right", (80, 20), score=0.6)
    both = causal(_pred(dataclasses.replace(tracked[6].hands[0], score=0.9), other), 12 / 30.0)
    assert both.hands[0].joints_2d.tolist() == tracked[6].hands[0].joints_2d.tolist()  # as is
    assert both.hands[1].joints_2d.tolist() != other.joints_2d.tolist()  # filtered
    # An offline gap filled next to a coasting hand is filled, not coasting.
    gappy = [*tracked[:8], _pred(), *tracked[9:]]
    smoothed, filled = smooth_offline(gappy, SmoothParams())
    assert filled[8] == {"right"} and smoothed[8].hands[0].coasting == 0  # type: ignore[union-attr]


def test_tracker_fixes_swapped_labels_and_collapsed_copies() -> None:
    tracker = HandTracker()
    tracker.update(_pred(_hand("right", (30, 48)), _hand("left", (70, 48))))
    swapped = tracker.update(_pred(_hand("left", (31, 48)), _hand("right", (71, 48))))
    assert [(h.handedness, round(float(h.joints_2d[:, 0].mean()))) for h in swapped.hands] == [
        ("right", 31),
        ("left", 71),
    ]
    # Both of the network's slots on the left hand: one left hand, the right one unfound (and
    # reported from its track, coasting).
    collapsed = tracker.update(_pred(_hand("right", (72, 48), 0.6), _hand("left", (72, 48), 0.7)))
    assert [(h.handedness, h.coasting) for h in collapsed.hands] == [("right", 1), ("left", 0)]
    assert collapsed.hands[0].joints_2d[:, 0].mean() == pytest.approx(31, abs=1)
    assert tracker.tracks["right"].missed == 1
    # One detector box around both crossing hands stands for one of them: the other keeps its crop.
    crossing = HandTracker()
    crossing.update(_pred(_hand("right", (50, 48)), _hand("left", (60, 48))))
    planned = crossing.plan([_det("right", (25, 28, 85, 68))])
    assert [d.handedness for d in planned] == ["right", "left"] and planned[1].score == 0.0
    # Same-side labels from the detector are settled by the tracks.
    planned = tracker.plan([_det("right", (52, 28, 92, 68)), _det("right", (10, 28, 50, 68))])
    assert [d.handedness for d in planned] == ["left", "right"]


# --- predict_video and the CLI ----------------------------------------------------------------
class _Detector:
    """Stands in for MediaPipe: one hand in the middle of every frame, but none in frame 2."""

    def __init__(self, video: bool) -> None:
        self.video = video
        self.calls: list[int | None] = []

    def detect(self, rgb, timestamp_ms=None):
        self.calls.append(timestamp_ms)
        if len(self.calls) == 3:
            return []
        return [_det("right", (20, 20, 76, 76))]


@pytest.mark.parametrize(
    ("track", "smooth"), [(True, "offline"), (False, "causal"), (True, "none")]
)
def test_predict_video(tiny_model, tmp_path, track, smooth) -> None:
    from dfl_infer import DFLPredictor

    clip = _write_clip(tmp_path / "c.mp4", frames=5)
    detector = _Detector(video=track)
    # A copy: the predictor turns its model channels_last in place, and test_weights needs the
    # session's tiny_model as it was made.
    model = copy.deepcopy(tiny_model)
    predictor = DFLPredictor(model, device="cpu", detector=detector, presence_threshold=0.0)
    results = list(predictor.predict_video(clip, track=track, smooth=smooth))
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert all(r.prediction is not None and r.image is not None for r in results)
    if track:  # timestamps in ms, increasing
        assert detector.calls == [0, 40, 80, 120, 160]
    for r in results:
        record = json.loads(json.dumps(r.to_dict(), allow_nan=False))
        assert record["frame"] == r.index and record["width"] == SIZE


def test_live_video_is_predict_frames_one_frame_at_a_time(tiny_model, tmp_path) -> None:
    """``LiveVideo`` (the demo's webcam) gives what ``predict_video`` gives for the same frames:
    the same detector calls, tracker and causal smoother."""
    from dfl_infer import DFLPredictor
    from dfl_infer.video import LiveVideo

    clip = _write_clip(tmp_path / "c.mp4", frames=5)
    model = copy.deepcopy(tiny_model)
    clip_detector, live_detector = _Detector(video=True), _Detector(video=True)
    predictor = DFLPredictor(model, device="cpu", detector=clip_detector, presence_threshold=0.0)
    whole = list(predictor.predict_video(clip, smooth="causal"))
    live = LiveVideo(predictor, live_detector, fps=FrameSource(clip).fps)
    one_by_one = [live.add(frame) for frame in FrameSource(clip)]
    assert live_detector.calls == clip_detector.calls == [0, 40, 80, 120, 160]
    assert [r.to_dict() for r in one_by_one] == [r.to_dict() for r in whole]
    assert all(r.prediction is not None and r.prediction.hands for r in one_by_one)
    raw = LiveVideo(predictor, _Detector(video=True), smooth="none", fps=25.0)
    unsmoothed = [raw.add(frame) for frame in FrameSource(clip)]
    assert [r.to_dict() for r in unsmoothed] != [r.to_dict() for r in whole]  # it did smooth
    with pytest.raises(ValueError, match="'causal' or 'none'"):
        LiveVideo(predictor, live_detector, smooth="offline")


def test_cli_video_end_to_end(tiny_weights, tmp_path) -> None:
    clip = _write_clip(tmp_path / "c.mp4", frames=4)
    out, vis = tmp_path / "res" / "joints.jsonl", tmp_path / "res" / "overlay.mp4"
    args = [str(clip), "--weights", str(tiny_weights), "--device", "cpu", "-q"]
    view = tmp_path / "res" / "view.html"
    code = main(
        [*args, "--out", str(out), "--vis", str(vis), "--smooth", "offline", "--vis3d", str(view)]
    )
    assert code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    header, frames, summary = lines[0], lines[1:-1], lines[-1]
    assert header["video"]["fps"] == pytest.approx(25.0) and header["video"]["tracking"] is True
    assert header["video"]["smoothing"] == "offline" and "joint_names" in header
    assert [f["frame"] for f in frames] == [0, 1, 2, 3]
    assert [f["time"] for f in frames] == pytest.approx([0, 0.04, 0.08, 0.12])
    assert set(frames[0]) >= {"frame", "time", "width", "intrinsics", "hands", "error"}
    assert summary == {"summary": {"frames": 4, "succeeded": 4}}
    assert is_video_overlay(vis) and len(list(FrameSource(vis))) == 4
    assert is_view3d(view) and "frame 3, 0.12 s" in view.read_text()  # one page, a frame slider
    assert main([*args, "--out", str(out), "--vis", str(vis)]) == 0  # our overlay: replaced


def test_cli_video_refusals(tiny_weights, tmp_path, capsys) -> None:
    clip = _write_clip(tmp_path / "c.mp4", frames=2)
    foreign = _write_clip(tmp_path / "mine.mp4", frames=2)
    before = foreign.read_bytes()
    base = [str(clip), "--weights", str(tiny_weights), "--device", "cpu", "-q"]
    cases = [
        (["--vis", str(clip)], "replace the input"),
        (["--vis", str(foreign)], "not a dfl-infer overlay"),
        (["--out", str(tmp_path / "j.json")], "JSON Lines"),
        (["--vis", str(tmp_path / "o.avi")], "mp4"),
        (["--box", "1,1,20,20"], "--box applies to images"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert foreign.read_bytes() == before and clip.exists()
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(img)
    assert main([str(img), "--smooth", "causal", "--weights", str(tiny_weights)]) == 2
    assert "apply to a video" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.mp4"), "--weights", str(tiny_weights)]) == 2


# --- the synthetic clip -----------------------------------------------------------------------
def test_synthetic_clip(tmp_path) -> None:
    from dfl_infer.training.synth import SynthEngine
    from dfl_infer.training.synth.clip import clip_scenes, make_clip

    video, gt_path = make_clip(tmp_path / "clip.mp4", frames=3, size=96, seed=3)
    gt = json.loads(gt_path.read_text())
    frames = list(FrameSource(video))
    assert len(frames) == len(gt["frames"]) == 3 and gt["fps"] == 30.0
    k = gt["intrinsics"]
    assert (k["fx"], k["cx"]) == (96.0, 47.5)  # what dfl-infer assumes for a 96x96 frame
    j2 = np.array([[h["joints_2d"] for h in f["hands"]] for f in gt["frames"]])  # (T, 2, 21, 2)
    j3 = np.array([[h["joints_3d"] for h in f["hands"]] for f in gt["frames"]])
    np.testing.assert_allclose(j3[..., :2] / j3[..., 2:] * 96 + 47.5, j2, atol=1e-2)
    again, _ = make_clip(tmp_path / "again.mp4", frames=3, size=96, seed=3)
    assert json.loads((tmp_path / "again.gt.json").read_text()) == gt  # fixed by the seed
    # The whole clip's motion (posed, not rendered): in view, smooth, and the hands cross.
    scenes = clip_scenes(SynthEngine("cpu"), 150, 512, seed=0)
    joints = scenes.joints.double().numpy()  # (T, 2, 21, 3)
    uv = joints[..., :2] / joints[..., 2:] * 512 + 255.5
    assert ((uv > 0) & (uv < 511)).all()
    steps = np.linalg.norm(np.diff(joints, axis=0), axis=-1)
    assert 0 < steps.max() < 25  # mm per frame (a fingertip curling is the fastest)
    side = np.sign(uv[:, 0, -1, 0] - uv[:, 1, -1, 0])  # right wrist left of the left one: -1
    assert side[0] == -1 and (side == 1).any() and side[-1] == -1  # crossed, and back


def test_video_benchmark_runs(tmp_path) -> None:
    """benchmarks/video.py end to end at its smallest (a 3-frame clip it makes itself)."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "video.py"
    out = tmp_path / "video.json"
    cmd = [sys.executable, str(script), "--frames", "3", "--size", "96", "--json", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.read_text())
    assert [(r["detection"], r["smooth"]) for r in data["rows"]] == [
        (d, s) for d in ("per frame", "tracked") for s in ("none", "causal", "offline")
    ]
    assert all(r["frames"] == 3 and 0 <= r["both_hands"] <= 3 for r in data["rows"])
    assert "| tracked | offline |" in res.stdout

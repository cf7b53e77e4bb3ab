"""``DFLPredictor``: detector -> square crops -> DFL network -> 3D joints. Composition only; each
stage lives in its own module (detect, crop, model, lift).

How crops are chosen (MediaPipe often misses one of two tightly interacting hands, so the region
given to the network does not trust the detector alone):
- MediaPipe runs with a low palm threshold (``detect.DEFAULT_DETECTION_CONFIDENCE``); two of its
  detections on one place are one hand (:func:`distinct_detections`);
- two detected hands whose boxes touch share one crop (their union box);
- a lone detected hand is seen in its own crop (``lone_hand_widen`` times wider, 1 by default):
  one network pass. Only when the presence head finds a second hand there, or maybe finds one
  (``recrop_presence``: a hand interlaced with it that the detector missed overlaps that crop),
  does a second pass re-crop on the network's own 2D joints of both hands, united with the
  detector's box (so the detected hand is never cropped away, and collapsed joints never shrink
  the crop to a speck), and only if that crop differs from the first (IoU < ``SAME_CROP_IOU``;
  when both of the network's hands lie on the detected one, the re-crop is the first crop
  again). A wider first crop
  (``lone_hand_widen=2``) also catches a missed hand *beside* the detected one, at a cost
  measured by benchmarks/crop_planning.py on held-out real photos: the network then saw a second
  hand in 57% of them (1.57 passes per image instead of 1.00) and single hands at half the
  resolution; ``recrop_lone_hands=True`` always adds the re-crop pass (the plan before
  2026-12-01: a 2x crop, then a re-crop);
- hands far apart, or belonging to different people, are cropped one by one;
- when the detector finds nothing, the whole image is tried the same way (widened pass, presence
  gate, re-crop); a box given by the user is used as is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from dfl_infer.backends import (
    BACKENDS,
    OnnxRuntimeRunner,
    TorchRunner,
    choose_backend,
    onnx_runner_for_weights,
    run_flip_test,
)
from dfl_infer.bundle import DetectorUnavailableError
from dfl_infer.crop import (
    SAME_CROP_IOU,
    Crop,
    box_iou,
    crop_around,
    group_hands,
    make_crop,
    points_box,
    union_box,
    upright_rotation,
)
from dfl_infer.decode import decode
from dfl_infer.detect import HandDetector, detect_hands
from dfl_infer.hand_pass import hand_pass, same_place
from dfl_infer.image import ImageInput, LargeImage, open_image
from dfl_infer.joints import HANDS, NUM_HAND_JOINTS
from dfl_infer.lift import Intrinsics, relative_to_wrist
from dfl_infer.model import DFLConfig
from dfl_infer.preprocess import crop_batch
from dfl_infer.results import BatchItemError, Hand, Prediction, PredictionError
from dfl_infer.smooth import SmoothParams
from dfl_infer.video import FrameResult, FrameSource, predict_frames

if TYPE_CHECKING:
    import torch

    from dfl_infer.model import DFLModel

logger = logging.getLogger(__name__)

# Hub repo of the default model, used when no weights/ folder beside the code holds one. Until
# trained weights are published there, loading it fails with a clear error.
DEFAULT_HUB_ID = "dfl-infer/dfl-r18"
# A lone hand's first crop is this many times its own size by default (before the config's
# box_scale): DFLPredictor's lone_hand_widen (see the module docstring).
LONE_HAND_WIDEN = 1.0
# A lone hand's crop is re-cropped around both of the network's hands when its second hand's
# presence reaches this, even under presence_threshold: a hand half outside the detected hand's
# crop (clasped or overlapping hands) is scored again in a crop that holds it (DFLPredictor's
# recrop_presence; measured in docs/performance.md, "Finding both hands of a pair").
RECROP_PRESENCE = 0.25
# A re-crop on the network's joints smaller than this share of the first pass's crop is refused.
MIN_RECROP_FRACTION = 0.15
# A crop's second hand is dropped when it is less than SMALL_PARTNER_RATIO times the size (2D
# extent) of the crop's other hand and its presence is under SMALL_PARTNER_SCORE: a person's two
# hands in one crop are of a size, and such small, weak second hands were phantoms on a strap or a
# sleeve beside a lone hand (benchmarks/crop_planning.py on the held-out photos: 9 extra hands
# -> 3, no labelled hand lost; 1 of 600 composite hands lost). Not applied with a presence
# threshold of 0, which asks for every slot of every crop.
SMALL_PARTNER_RATIO = 0.5
SMALL_PARTNER_SCORE = 0.9


class NoWeightsError(FileNotFoundError):
    """No weights were given and no default weights could be found."""


def default_weights() -> str | Path:
    """Where the default model is, looked up in this order:

    1. ``dfl_infer/weights/`` inside the installed package (a wheel or sdist install: setup.cfg
       maps the repository's top-level ``weights/`` folder there);
    2. the top-level ``weights/`` folder of a source checkout (an editable install, or the
       repository on ``PYTHONPATH``);
    3. else the Hub id ``DEFAULT_HUB_ID``.

    A folder counts only when it holds ``model.safetensors``.
    """
    package = Path(__file__).resolve().parent
    for folder in (package / "weights", package.parent / "weights"):
        if (folder / "model.safetensors").is_file():
            return folder
    return DEFAULT_HUB_ID


@dataclass
class _Task:
    """One crop to run through the network."""

    image: int  # index of the image in the batch
    crop: Crop
    # "pair" | "single" | "box": final; "widened" | "full": need a re-crop pass; "lone": final
    # unless the network finds a second hand in it (or recrop_lone_hands)
    kind: str
    fallback_box: np.ndarray | None = None  # detector box to fall back on if nothing is found
    # The network's outputs for this crop, set by DFLPredictor._run (see decode.CropOutputs).
    joints_25d: np.ndarray | None = None  # (42, 3) crop pixels, mm relative to each wrist
    presence: np.ndarray | None = None  # (2,) probabilities, right / left
    confidence: np.ndarray | None = None  # (42,) per-joint confidence (decode.joint_confidence)
    rel_root_depth: float = 0.0  # mm, left wrist minus right wrist
    side: np.ndarray | None = None  # (2,) probability that each hand is the side it is reported as

    def present(self, threshold: float) -> np.ndarray:
        """(2,) bool: which hands (right, left) the network found in this crop."""
        assert self.presence is not None, "the task has not run through the network"
        return self.presence >= threshold


class DFLPredictor:
    """Estimate the 3D joints of the hands in photos.

    ``weights``: a folder with config.json + model.safetensors, a Hugging Face Hub id, a loaded
    ``DFLModel`` (moved to the device, eval mode and channels_last in place), or None for the
    default model. ``device``: "auto" (CUDA when available), "cpu",
    "cuda", "cuda:1", ... ``detector``: a ``HandDetector``-like object with ``detect(rgb)``, or None
    to create MediaPipe's on first use. ``presence_threshold``: minimum presence probability.
    ``compile``: run the network through ``torch.compile`` (the first batch of each new size
    compiles for tens of seconds; worth it for long GPU runs, see docs/performance.md).
    ``backend``: "auto" (default: on the CPU, the weights' own ``model.onnx`` in onnxruntime,
    PyTorch never imported; else PyTorch), "torch", or "onnxruntime" (CPU only; exports other
    weights on first use, which needs ``pip install 'dfl-infer[onnx]'``); see
    ``dfl_infer.backends``. ``predictor.backend`` says which ran.
    ``lone_hand_widen`` (>= 1) and ``recrop_lone_hands``: how a lone detected hand is cropped
    (module docstring): by default one pass on the hand's own crop, and a second pass only when
    the network finds a second hand there; ``lone_hand_widen=2`` also finds a missed hand beside
    it, ``recrop_lone_hands=True`` always adds the second pass, and ``recrop_presence`` (<=
    ``presence_threshold`` to matter) is the second hand's presence in the first crop that earns
    that pass (a maybe-hand half outside the crop is scored again in one that holds it).
    ``hand_pass``: each hand of a crop that holds two is seen once more in a crop of its own
    (``dfl_infer.hand_pass``; one more network pass per hand of a pair). ``flip_test``: every
    crop is also run mirrored and the two results averaged (``CropOutputs.flip_averaged``): more
    accurate joints and fewer phantom hands for twice the network's time
    (docs/architecture.md, "The flip test").
    """

    def __init__(
        self,
        weights: str | Path | DFLModel | None = None,
        device: str | torch.device = "auto",
        detector: Any = None,
        presence_threshold: float = 0.5,
        batch_size: int = 16,
        full_image_fallback: bool = True,
        compile: bool = False,
        backend: str = "auto",
        lone_hand_widen: float = LONE_HAND_WIDEN,
        recrop_lone_hands: bool = False,
        hand_pass: bool = True,
        flip_test: bool = False,
        recrop_presence: float = RECROP_PRESENCE,
    ) -> None:
        if not 0.0 <= float(presence_threshold) <= 1.0:  # also rejects NaN
            raise ValueError(
                f"presence_threshold must be a probability in [0, 1], got {presence_threshold!r}"
            )
        if not 0.0 <= float(recrop_presence) <= 1.0:  # also rejects NaN
            raise ValueError(f"recrop_presence must be in [0, 1], got {recrop_presence!r}")
        if not float(lone_hand_widen) >= 1.0:  # also rejects NaN
            raise ValueError(f"lone_hand_widen must be >= 1, got {lone_hand_widen!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        source = weights if weights is None or isinstance(weights, (str, Path)) else None
        given_model = weights is not None and source is None
        # "auto": onnxruntime on the CPU when the weights ship a matching model.onnx (then
        # PyTorch is never imported), else torch; a DFLModel given as such runs in torch.
        chosen = "torch" if backend == "auto" and given_model else choose_backend(backend, device)
        self._source = source
        self._model: DFLModel | None = None
        self._device: torch.device | None = None  # set by _prepare, else made on first access
        self._net: TorchRunner | OnnxRuntimeRunner
        if chosen == "onnxruntime":
            # onnxruntime runs on the CPU here: "auto" means the CPU for it.
            if str(device) not in ("auto", "cpu"):
                raise ValueError(
                    f"backend 'onnxruntime' runs on the CPU only; use device='cpu' (got {device!r})"
                    " or backend='torch'"
                )
            if compile:
                raise ValueError("compile=True applies to backend 'torch' only")
            shipped = None if given_model else self._shipped_onnx(source)
            if shipped is not None:
                self._net = shipped
            elif backend == "auto":
                chosen = "torch"  # no ready graph: exporting one costs seconds and needs onnx
            else:
                self._net = OnnxRuntimeRunner.from_model(self._prepare(weights, "cpu"))
        if chosen == "torch":
            model = self._prepare(weights, device)
            self._net = TorchRunner(model, self.device, compile=compile)
        self.device_name = "cpu" if chosen == "onnxruntime" else str(self.device)
        self.config: DFLConfig = self._net.config
        self.backend = chosen
        self._detector = detector
        self.presence_threshold = float(presence_threshold)
        self.batch_size = int(batch_size)
        self.full_image_fallback = full_image_fallback
        self.lone_hand_widen = float(lone_hand_widen)
        self.recrop_lone_hands = bool(recrop_lone_hands)
        self.recrop_presence = float(recrop_presence)
        self.hand_pass = bool(hand_pass)
        self.flip_test = bool(flip_test)

    def _prepare(self, weights: Any, device: Any) -> DFLModel:
        """The PyTorch model (``weights`` itself, or loaded), on its device, in eval mode and
        channels_last; sets ``self.device``."""
        import torch

        from dfl_infer.device import resolve_device

        self.device = resolve_device(device)
        model = (
            weights if weights is not None and self._source is None else self._load(self._source)
        )
        # channels_last (NHWC) on every device: the convolutions are faster in it on CUDA and, as
        # measured in docs/performance.md, 6-18% faster on CPU (oneDNN) too.
        self._model = model.to(self.device).eval().to(memory_format=torch.channels_last)
        return self._model

    @staticmethod
    def _shipped_onnx(weights: str | Path | None) -> OnnxRuntimeRunner | None:
        try:
            return onnx_runner_for_weights(weights if weights is not None else default_weights())
        except (FileNotFoundError, ValueError) as exc:
            if weights is not None:
                raise
            raise _no_default_weights(exc) from None

    @staticmethod
    def _load(weights: str | Path | None) -> DFLModel:
        from dfl_infer.model.dfl import DFLModel

        if weights is not None:
            return DFLModel.from_pretrained(weights)
        source = default_weights()
        try:
            return DFLModel.from_pretrained(source)
        except (FileNotFoundError, ValueError) as exc:
            raise _no_default_weights(exc) from None

    @property
    def model(self) -> DFLModel:
        """The PyTorch ``DFLModel``. On the onnxruntime path that ran from a shipped
        ``model.onnx`` it is loaded (with PyTorch) on first access, on the CPU."""
        if self._model is None:
            import torch

            model = self._load(self._source).eval()
            self._model = model.to(memory_format=torch.channels_last)
        return self._model

    @property
    def device(self) -> torch.device:
        """Where the network runs, as a ``torch.device`` (``device_name`` is the same as text,
        without importing PyTorch)."""
        if self._device is None:
            import torch

            self._device = torch.device(self.device_name)
        return self._device

    @device.setter
    def device(self, value: torch.device) -> None:
        self._device = value

    def num_parameters(self) -> int:
        """The network's parameter count (from the ONNX graph's metadata when it has it)."""
        if isinstance(self._net, OnnxRuntimeRunner) and self._model is None:
            count = self._net.num_parameters()
            if count is not None:
                return count
        return self.model.num_parameters()

    @property
    def detector(self) -> Any:
        if self._detector is None:
            self._detector = HandDetector()
        return self._detector

    def close(self) -> None:
        """Release the detector's MediaPipe graph (the predictor stays usable)."""
        if self._detector is not None and hasattr(self._detector, "close"):
            self._detector.close()

    def __enter__(self) -> DFLPredictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- public API ------------------------------------------------------------------------
    def predict(
        self,
        image: ImageInput,
        box: Sequence[float] | None = None,
        intrinsics: Any = None,
        focal: float | None = None,
    ) -> Prediction:
        """Hands in one image. ``box``: optional (x0, y0, x1, y1) pixels around the hands (skips
        the detector). ``intrinsics``: (fx, fy, cx, cy), a 3x3 matrix, a dict or an
        ``Intrinsics``; when None they are assumed (``Intrinsics.default``), with ``focal`` in
        pixels if given."""
        try:
            return self._predict_batch([image], [box], [intrinsics], focal, None)[0]
        except BatchItemError as err:  # one image: what it raised, as it raised it
            raise err.exception from None

    def predict_video(
        self,
        source: str | Path | FrameSource,
        fps: float | None = None,
        track: bool = True,
        smooth: str = "none",
        smooth_params: SmoothParams | None = None,
        max_missed: int = 5,
        intrinsics: Any = None,
        focal: float | None = None,
        progress: Callable[[], object] | None = None,
    ) -> Iterator[FrameResult]:
        """Hands in every frame of a video file or a folder of frames (sorted by name), yielded
        as :class:`~dfl_infer.video.FrameResult` (frame index, time in seconds, the frame, its
        ``Prediction``) while the frames are decoded one at a time. ``fps``: for the
        timestamps (default: the video's own rate, 30 for a folder). ``track``: MediaPipe in
        VIDEO mode plus ``track.HandTracker`` (boxes carried over frames the detector misses,
        stable right/left; a hand dropped after ``max_missed`` frames unfound); False: each
        frame on its own, like :meth:`predict`. ``smooth``: "none", "causal" (One-Euro) or
        "offline" (gap filling + Savitzky-Golay; the clip is decoded twice and the first frame
        comes once every frame is predicted); ``smooth_params``: ``smooth.SmoothParams``. A
        frame that fails gets an ``error`` and the clip goes on."""
        frames = source if isinstance(source, FrameSource) else FrameSource(source, fps)
        detector = self.detector
        own = None
        if track and isinstance(detector, HandDetector):  # MediaPipe: its VIDEO mode tracks
            detector = own = HandDetector(
                detector.bundle, detector.max_hands, detector.min_detection_confidence,
                detector.min_presence_confidence, detector.allow_download, video=True,
            )  # fmt: skip
        try:
            yield from predict_frames(
                self, frames, detector, track, smooth, smooth_params, max_missed, intrinsics,
                focal, progress,
            )  # fmt: skip
        finally:
            if own is not None:
                own.close()

    @overload
    def predict_batch(
        self,
        images: Sequence[ImageInput],
        boxes: Sequence[Sequence[float] | None] | None = ...,
        intrinsics: Sequence[Any] | None = ...,
        focal: float | None = ...,
        detections: Sequence[Sequence[Any] | None] | None = ...,
        return_errors: Literal[False] = ...,
    ) -> list[Prediction]: ...

    @overload
    def predict_batch(
        self,
        images: Sequence[ImageInput],
        boxes: Sequence[Sequence[float] | None] | None = ...,
        intrinsics: Sequence[Any] | None = ...,
        focal: float | None = ...,
        detections: Sequence[Sequence[Any] | None] | None = ...,
        *,
        return_errors: Literal[True],
    ) -> list[Prediction | PredictionError]: ...

    def predict_batch(
        self,
        images: Sequence[ImageInput],
        boxes: Sequence[Sequence[float] | None] | None = None,
        intrinsics: Sequence[Any] | None = None,
        focal: float | None = None,
        detections: Sequence[Sequence[Any] | None] | None = None,
        return_errors: bool = False,
    ) -> list[Prediction] | list[Prediction | PredictionError]:
        """Hands in several images; the network runs on all their crops in batches.
        ``detections``: per image, the detector's hands if already found (e.g. by
        ``HandDetector.detect`` in another process), or None to run the detector here.
        ``return_errors``: False (default): the first bad image (unreadable, bad intrinsics,
        bad box, ...) raises and nothing is returned: with several images a
        :class:`~dfl_infer.results.BatchItemError` (a ValueError) whose ``index`` says which one
        and whose ``exception`` is what it raised; with one image, that exception itself.
        True: a bad image gets a :class:`~dfl_infer.results.PredictionError` in its place and
        the others their predictions (a missing detector model still raises: it concerns every
        image)."""
        if not return_errors:
            try:
                return self._predict_batch(images, boxes, intrinsics, focal, detections)
            except BatchItemError as err:
                if len(images) > 1:
                    raise
                raise err.exception from None
        n = len(images)
        per_image = [
            list(v) if v is not None else [None] * n for v in (boxes, intrinsics, detections)
        ]
        if any(len(v) != n for v in per_image):
            raise ValueError("boxes, intrinsics and detections must have one entry per image")
        try:
            return list(self._predict_batch(images, boxes, intrinsics, focal, detections))
        except DetectorUnavailableError:
            raise
        except Exception:  # noqa: BLE001 - find the image(s) that broke the batch
            pass
        out: list[Prediction | PredictionError] = []
        for i, image in enumerate(images):
            b, k, d = (v[i] for v in per_image)
            try:
                out.append(self._predict_batch([image], [b], [k], focal, [d])[0])
            except DetectorUnavailableError:
                raise
            except BatchItemError as err:
                out.append(PredictionError(str(err.exception), err.exception))
            except Exception as exc:  # noqa: BLE001 - one bad image must not lose the others
                out.append(PredictionError(str(exc), exc))
        return out

    def _predict_batch(
        self,
        images: Sequence[ImageInput],
        boxes: Sequence[Sequence[float] | None] | None,
        intrinsics: Sequence[Any] | None,
        focal: float | None,
        detections: Sequence[Sequence[Any] | None] | None,
    ) -> list[Prediction]:
        n = len(images)
        boxes = list(boxes) if boxes is not None else [None] * n
        intr_in = list(intrinsics) if intrinsics is not None else [None] * n
        dets_in = list(detections) if detections is not None else [None] * n
        if len(boxes) != n or len(intr_in) != n or len(dets_in) != n:
            raise ValueError("boxes, intrinsics and detections must have one entry per image")
        rgbs: list[np.ndarray | LargeImage] = []
        intr: list[Intrinsics] = []
        tasks: list[_Task] = []
        for i, image in enumerate(images):
            try:
                # Files over LARGE_IMAGE_PIXELS stay LargeImages: preview for the detector, crops
                # decoded around their boxes only (preprocess.crop_batch).
                rgb = open_image(image)
                intr.append(Intrinsics.resolve(intr_in[i], rgb.shape[1], rgb.shape[0], focal))
                tasks.extend(self._plan(i, rgb, boxes[i], dets_in[i]))
            except DetectorUnavailableError:  # concerns every image, not this one
                raise
            except Exception as exc:  # noqa: BLE001 - say which image (predict_batch)
                raise BatchItemError(i, n, exc) from exc
            rgbs.append(rgb)
        self._run(tasks, rgbs)
        tasks = self._refine(tasks, rgbs)
        if self.hand_pass:
            self._hand_pass(tasks, rgbs)
        return [
            self._collect(i, rgbs[i], intr[i], [t for t in tasks if t.image == i]) for i in range(n)
        ]

    # --- stages ----------------------------------------------------------------------------
    def _crop(
        self, box: np.ndarray, scale: float | None = None, hands: Sequence[np.ndarray] = ()
    ) -> Crop:
        """The crop of ``box``; for an upright model with the hands' joints known (``hands``:
        (21, 2) image pixels each), turned upright around those joints (``crop.crop_around``)."""
        scale = self.config.box_scale if scale is None else scale
        if self.config.upright and len(hands):
            pts = np.concatenate([np.asarray(h, dtype=np.float64) for h in hands])
            if np.isfinite(pts).all():
                rotation = upright_rotation(hands)
                return crop_around(pts, self.config.input_size, scale, rotation)
        return make_crop(box, self.config.input_size, scale)

    def _crop_found(self, box: np.ndarray, found: list[np.ndarray]) -> Crop:
        """The re-crop on the hands the network found (``found``: their (21, 2) joints, plus
        the detected hand's box corners as a (4, 2) array that only widens the crop)."""
        if not self.config.upright:
            return self._crop(box)
        hands = [f for f in found if len(f) == NUM_HAND_JOINTS]
        pts = np.concatenate(found)
        rotation = upright_rotation(hands)
        return crop_around(pts, self.config.input_size, self.config.box_scale, rotation)

    def _plan(
        self,
        index: int,
        rgb: np.ndarray | LargeImage,
        box: Sequence[float] | None,
        detections: Sequence[Any] | None = None,
    ) -> list[_Task]:
        h, w = rgb.shape[:2]
        if box is not None:
            b = np.asarray(box, dtype=np.float64).reshape(-1)
            if b.shape != (4,) or not np.isfinite(b).all() or not (b[2] > b[0] and b[3] > b[1]):
                raise ValueError(
                    f"box must be (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {box}"
                )
            return [_Task(index, self._crop(b), "box")]
        if detections is None:
            detections = detect_hands(self.detector, rgb)
        if not detections:
            if not self.full_image_fallback:
                return []
            full = np.array([-0.5, -0.5, w - 0.5, h - 0.5])
            return [_Task(index, self._crop(full, scale=1.0), "full")]
        detections = distinct_detections(detections)
        det_boxes = np.stack([d.box for d in detections])
        groups = group_hands(det_boxes, [d.handedness for d in detections])
        tasks = []
        for group in groups:
            gbox = union_box(det_boxes[group])
            # A tracker's coasting detections may carry no landmarks: then the crop is not turned.
            marks = [getattr(detections[k], "landmarks", None) for k in group]
            hands = [m for m in marks if m is not None] if all(m is not None for m in marks) else []
            if len(group) == 2:
                tasks.append(_Task(index, self._crop(gbox, hands=hands), "pair"))
            elif len(groups) == 1:
                scale = self.config.box_scale * self.lone_hand_widen
                wide = self._crop(gbox, scale=scale, hands=hands)
                tasks.append(_Task(index, wide, "lone", fallback_box=gbox))
            else:
                tasks.append(_Task(index, self._crop(gbox, hands=hands), "single"))
        return tasks

    def _refine(self, tasks: list[_Task], rgbs: list[np.ndarray | LargeImage]) -> list[_Task]:
        """Second pass for whole-image crops, and for lone-hand crops in which the network found
        two hands (or all of them with recrop_lone_hands): re-crop on the hands it found."""
        final, second = [], []
        for task in tasks:
            present = task.present(self.presence_threshold)
            if task.kind == "lone":
                # A maybe-second hand (recrop_presence) earns the re-crop too; the re-crop's
                # own presence then decides whether it is reported.
                present = task.present(min(self.presence_threshold, self.recrop_presence))
                if present.all() or self.recrop_lone_hands:
                    task.kind = "widened"
            if task.kind not in ("widened", "full"):
                final.append(task)
                continue
            assert task.joints_25d is not None
            uv = task.crop.to_image(task.joints_25d[:, :2])
            if present.any():
                found = [
                    uv[h * NUM_HAND_JOINTS : (h + 1) * NUM_HAND_JOINTS]
                    for h in (0, 1)
                    if present[h]
                ]
                box = points_box(np.concatenate(found))
                if task.fallback_box is not None:
                    # The detected hand stays in the crop even if the network's joints miss it.
                    box = union_box(np.stack([box, task.fallback_box]))
                    b = task.fallback_box
                    corners = np.array([[b[0], b[1]], [b[2], b[1]], [b[0], b[3]], [b[2], b[3]]])
                    found = [*found, corners]  # only their extent counts, not their direction
                side = max(box[2] - box[0], box[3] - box[1]) * self.config.box_scale
                # Joints collapsed to a speck (a failed first pass) would give a useless crop.
                if side >= MIN_RECROP_FRACTION * (task.crop.box[2] - task.crop.box[0]):
                    crop = self._crop_found(box, found)
                    if box_iou(np.asarray(crop.box), np.asarray(task.crop.box)) >= SAME_CROP_IOU:
                        final.append(task)  # the first pass already saw this crop
                        continue
                    kind = "pair" if present.all() else "single"
                    second.append(_Task(task.image, crop, kind))
                    continue
            if task.fallback_box is not None:
                second.append(_Task(task.image, self._crop(task.fallback_box), "single"))
            else:
                final.append(task)  # nothing found on the whole image: keep the (empty) result
        self._run(second, rgbs)
        return final + second

    def _hand_pass(self, tasks: list[_Task], rgbs: list[np.ndarray | LargeImage]) -> None:
        """Each hand of every crop with two hands present, re-run in its own crop; the nearer
        slot replaces the hand's joints and per-joint confidence (``dfl_infer.hand_pass``)."""
        cfg = self.config
        pairs = [
            t
            for t in tasks
            if t.joints_25d is not None and t.present(self.presence_threshold).all()
        ]
        own: list[_Task] = []

        def run(jobs: list[tuple[int, Crop]]) -> list[np.ndarray]:
            own.extend(_Task(pairs[i].image, crop, "hand") for i, crop in jobs)
            self._run(own, rgbs)
            return [np.asarray(t.joints_25d) for t in own]

        first = [(t.crop, np.asarray(t.joints_25d)) for t in pairs]
        results = hand_pass(first, run, cfg.input_size, cfg.box_scale, cfg.upright)
        for task, (joints, taken, index) in zip(pairs, results):
            task.joints_25d = joints
            for h, (k, j) in enumerate(zip(taken, index)):
                hand_conf = None if k is None or j is None else own[j].confidence
                if k is None or hand_conf is None or task.confidence is None:
                    continue
                task.confidence = task.confidence.copy()
                slot = slice(k * NUM_HAND_JOINTS, (k + 1) * NUM_HAND_JOINTS)
                task.confidence[h * NUM_HAND_JOINTS : (h + 1) * NUM_HAND_JOINTS] = hand_conf[slot]

    def _run(self, tasks: list[_Task], rgbs: list[np.ndarray | LargeImage]) -> None:
        """Run the network on every task's crop, in batches; fills the tasks' outputs."""
        for start in range(0, len(tasks), self.batch_size):
            chunk = tasks[start : start + self.batch_size]
            crops = crop_batch([rgbs[t.image] for t in chunk], [t.crop for t in chunk])
            out = run_flip_test(self._net, crops) if self.flip_test else self._net(crops)
            presence, confidence = out.presence(), out.confidence(self.config.input_size)
            side = out.side_probability()
            for k, task in enumerate(chunk):
                task.joints_25d = out.joints_25d[k]
                task.presence = presence[k]
                task.confidence = confidence[k]
                task.rel_root_depth = float(out.rel_root_depth[k])
                task.side = side[k]

    def _collect(
        self, index: int, rgb: np.ndarray | LargeImage, intr: Intrinsics, tasks: list[_Task]
    ) -> Prediction:
        candidates: list[tuple[int, Hand]] = []  # (task number, hand)
        for number, task in enumerate(tasks):
            present = task.present(self.presence_threshold)
            if not present.any():
                continue
            assert task.joints_25d is not None and task.presence is not None
            uv, joints_3d = decode(task.joints_25d, task.crop, intr, present, task.rel_root_depth)
            if self.presence_threshold > 0:  # threshold 0: every slot of every crop, as asked
                present = drop_small_partner(uv, task.presence, present)
            for h in (0, 1):
                if not present[h]:
                    continue
                sl = slice(h * NUM_HAND_JOINTS, (h + 1) * NUM_HAND_JOINTS)
                hand = Hand(
                    handedness=HANDS[h],
                    score=float(task.presence[h]),
                    joints_2d=uv[sl],
                    joints_3d=joints_3d[sl],
                    joints_3d_rel=relative_to_wrist(joints_3d[sl]),
                    joint_confidence=None if task.confidence is None else task.confidence[sl],
                    handedness_score=None if task.side is None else float(task.side[h]),
                )
                candidates.append((number, hand))
        hands = _deduplicate(candidates)
        hands.sort(key=lambda hd: (HANDS.index(hd.handedness), float(hd.joints_2d[:, 0].mean())))
        crops = tuple(t.crop.box for t in tasks)
        box = union_box(np.stack(crops)) if crops else None
        return Prediction(
            hands=tuple(hands),
            width=rgb.shape[1],
            height=rgb.shape[0],
            intrinsics=intr,
            box=box,
            crops=crops,
            presence=tuple(np.asarray(t.presence, dtype=np.float64) for t in tasks),
        )


def drop_small_partner(
    uv: np.ndarray,
    presence: np.ndarray,
    present: np.ndarray,
    ratio: float = SMALL_PARTNER_RATIO,
    score: float = SMALL_PARTNER_SCORE,
) -> np.ndarray:
    """``present`` (2,) of one crop without its smaller hand when both are present, that hand's
    2D extent (``uv`` (42, 2) image pixels) is under ``ratio`` times the other's and its
    ``presence`` under ``score``."""
    if not present.all():
        return present
    extent = [
        float(np.ptp(uv[h * NUM_HAND_JOINTS : (h + 1) * NUM_HAND_JOINTS], axis=0).max())
        for h in (0, 1)
    ]
    small = int(np.argmin(extent))
    if extent[small] < ratio * extent[1 - small] and float(presence[small]) < score:
        present = present.copy()
        present[small] = False
    return present


def distinct_detections(detections: Sequence[Any]) -> list[Any]:
    """``detections``, in their order, without those on the same place as a higher-scored one
    (their landmarks' mean distance under ``hand_pass.DUPLICATE_DISTANCE`` of the hand's size,
    ``same_place``; the earlier one of equal scores stays): at a low palm threshold MediaPipe
    may find one hand twice, and the two would share a pair crop in which the network then
    reports two hands on one. Detections without landmarks (a tracker's coasting boxes) stay."""
    marks = [getattr(d, "landmarks", None) for d in detections]
    scores = [float(getattr(d, "score", 0.0)) for d in detections]

    def outranked(i: int) -> bool:
        mine = marks[i]
        if mine is None:
            return False
        for j, other in enumerate(marks):
            if j != i and other is not None and (scores[j], -j) > (scores[i], -i):
                if same_place(other, mine):
                    return True
        return False

    return [d for i, d in enumerate(detections) if not outranked(i)]


def _no_default_weights(exc: Exception) -> NoWeightsError:
    return NoWeightsError(
        "no trained default weights are available: the package's weights/ folder holds no "
        f"model.safetensors and the default Hub model {DEFAULT_HUB_ID!r} could not be "
        f"loaded ({exc}). Pass weights explicitly: DFLPredictor(weights='DIR_OR_HUB_ID') "
        "or `dfl-infer IMAGE --weights DIR_OR_HUB_ID`, where DIR holds config.json and "
        "model.safetensors (as written by `dfl-train fit` or DFLModel.save_pretrained)."
    )


def _deduplicate(candidates: list[tuple[int, Hand]]) -> list[Hand]:
    """Drop hands that another crop already found (same place, lower score)."""
    kept: list[tuple[int, Hand]] = []
    for number, hand in sorted(candidates, key=lambda c: -c[1].score):
        duplicate = any(
            other_number != number and same_place(hand.joints_2d, other.joints_2d)
            for other_number, other in kept
        )
        if not duplicate:
            kept.append((number, hand))
    return [hand for _, hand in kept]

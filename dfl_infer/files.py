"""Predicting image files, as ``dfl-infer IMAGE_OR_DIR...`` does: the library side of the command.

:func:`collect_images` turns files and folders into a list of paths; :func:`predict_files` decodes
them (optionally in worker processes that also run the hand detector, while the network runs in
this one), predicts them in batches and yields one :class:`FileResult` per path, in order. A
missing, corrupt or non-image file, or an image whose prediction fails, becomes a result with an
``error`` while the others go on; only a missing detector model stops the run
(``DetectorUnavailableError``). :func:`results_document` is the JSON the command writes.
:func:`check_outputs` refuses, before any work, outputs that would replace an input image or a
file that is not ours.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dfl_infer.bundle import DetectorUnavailableError
from dfl_infer.detect import HandDetector, detect_hands, wait_for_preload
from dfl_infer.image import IMAGE_SUFFIXES, ImageError, LargeImage, open_image
from dfl_infer.predictor import DFLPredictor
from dfl_infer.results import Prediction, image_entry, results_document
from dfl_infer.vis import is_overlay
from dfl_infer.vis3d import is_view3d

logger = logging.getLogger(__name__)

# One decoded item: (image or None, the detector's hands or None, error message or None).
_Decoded = tuple[np.ndarray | LargeImage | None, list[Any] | None, str | None]


def collect_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given, plus the image files (``IMAGE_SUFFIXES``) directly inside each folder,
    sorted. A missing or non-image file is kept: it becomes an error result."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                logger.warning("%s: no image files in this folder", path)
            paths.extend(found)
        else:
            paths.append(path)
    return paths


class OutputConflictError(ValueError):
    """An output would replace an input image, or a file that dfl-infer did not write."""


class OutputNotWritableError(ValueError):
    """An output folder cannot be created or written to."""


def check_writable(folder: Path, option: str) -> None:
    """Create ``folder`` (with its parents) and write and remove a probe file in it, so that a
    read-only or missing place fails before the first image (``option`` names it for the user:
    "--out", "--vis"). Raises :class:`OutputNotWritableError`."""
    import tempfile

    for above in (folder, *folder.parents):
        if above.exists():
            if not above.is_dir():
                raise OutputNotWritableError(
                    f"{option}: cannot write into {folder}: {above} is a file"
                )
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".dfl-infer-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputNotWritableError(
            f"{option}: cannot write into {folder}: {exc.strerror or exc}"
        ) from None


def recover(document: dict[str, Any]) -> Path | None:
    """Save ``document`` under a new name in the temporary folder (when the real output could not
    be written) and return its path, or None when that fails too."""
    import tempfile

    try:
        fd, name = tempfile.mkstemp(prefix="dfl-infer-recovered-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(document, f, indent=1, allow_nan=False)
        return Path(name)
    except (OSError, ValueError):
        return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def check_outputs(
    inputs: Sequence[Path],
    out: Path | None = None,
    overlays: dict[Path, Path] | None = None,
    force: bool = False,
    view3d: Path | None = None,
) -> None:
    """Raise :class:`OutputConflictError` when the JSON ``out`` or an overlay (``overlays``: image
    -> overlay path, ``OverlayFolder.plan``) would replace one of the ``inputs``, when ``out`` is
    also an overlay, or, unless ``force``, when an overlay would replace an existing file that is
    not a dfl-infer overlay. An input is never replaced, ``force`` or not. ``view3d``, the
    ``--vis3d`` page, may be none of the inputs, ``out`` or the overlays, nor, unless ``force``,
    an existing file that is not a dfl-infer 3D view."""
    targets = list((overlays or {}).values())
    if out is not None:
        for p in inputs:
            if _same_file(out, p):
                raise OutputConflictError(f"--out {out} is one of the input images")
        for t in targets:
            if _same_file(out, t):
                raise OutputConflictError(f"--out {out} is also where an overlay would go")
    for image, target in (overlays or {}).items():
        for p in inputs:
            if _same_file(target, p):
                raise OutputConflictError(
                    f"--vis: the overlay of {image} would replace the input image {p}; "
                    "choose another --vis folder"
                )
        if not force and target.exists() and not is_overlay(target):
            raise OutputConflictError(
                f"--vis: {target} exists and is not a dfl-infer overlay; "
                "choose another --vis folder, or pass --force to replace it"
            )
    if view3d is not None:
        for p in inputs:
            if _same_file(view3d, p):
                raise OutputConflictError(f"--vis3d {view3d} is one of the input images")
        for other in (out, *targets):
            if other is not None and _same_file(view3d, other):
                raise OutputConflictError(f"--vis3d {view3d} is also where --out or --vis write")
        if not force and view3d.exists() and not is_view3d(view3d):
            raise OutputConflictError(
                f"--vis3d: {view3d} exists and is not a dfl-infer 3D view; "
                "choose another name, or pass --force to replace it"
            )


@dataclass(frozen=True, eq=False)
class FileResult:
    """What one input file gave: ``image`` (H, W, 3) uint8 RGB when it could be read (a
    ``LargeImage``, its size and a preview, for a file over ``LARGE_IMAGE_PIXELS``),
    ``prediction`` when it succeeded, else ``error`` (one line, for the user)."""

    path: Path
    image: np.ndarray | LargeImage | None
    prediction: Prediction | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        """The file's entry of the output JSON (README, "Output JSON")."""
        shape = None if self.image is None else self.image.shape
        return {"path": str(self.path), **image_entry(shape, self.prediction, self.error)}


def predict_files(
    predictor: DFLPredictor,
    paths: Sequence[Path],
    box: Sequence[float] | None = None,
    focal: float | None = None,
    batch_size: int = 8,
    workers: int = 0,
) -> Iterator[FileResult]:
    """One :class:`FileResult` per path, in order. ``box``: the same region (x0, y0, x1, y1) for
    every image, skipping the detector; ``focal``: focal length in pixels (else assumed);
    ``workers``: processes that decode the next images, and run MediaPipe on them unless a
    ``box`` is given, while the network runs here (0: all in this process)."""
    bundle = None
    if workers > 0 and box is None:
        # The workers run MediaPipe too; find (or fetch) its bundle once, here, so a missing
        # bundle is one clear error instead of one per worker.
        from dfl_infer.bundle import resolve_bundle

        bundle = resolve_bundle()
    for start, decoded in _decoded_chunks(paths, batch_size, max(0, workers), bundle):
        chunk = paths[start : start + len(decoded)]
        for _, _, error in decoded:
            if error is not None:
                logger.warning("skipping %s", error)
        loaded = [(p, rgb, dets) for p, (rgb, dets, _) in zip(chunk, decoded) if rgb is not None]
        outcomes = iter(_predict_chunk(predictor, loaded, box, focal))
        for path, (rgb, _, error) in zip(chunk, decoded):
            if rgb is None:
                yield FileResult(path, None, None, error)
            else:
                prediction, failure = next(outcomes)
                yield FileResult(path, rgb, prediction, failure)


def _predict_chunk(
    predictor: DFLPredictor,
    loaded: list[tuple[Path, np.ndarray | LargeImage, list[Any] | None]],
    box: Sequence[float] | None,
    focal: float | None,
) -> list[tuple[Prediction | None, str | None]]:
    """(prediction, error) per loaded image: the whole chunk in one batch, or, when that fails,
    image by image so that the one that breaks it fails alone."""
    if not loaded:
        return []
    arrays = [rgb for _, rgb, _ in loaded]
    dets = [d for _, _, d in loaded]
    boxes = [box] * len(arrays)
    try:
        preds = predictor.predict_batch(arrays, boxes=boxes, focal=focal, detections=dets)
        return [(pred, None) for pred in preds]
    except DetectorUnavailableError:  # concerns every image, not one of them
        raise
    except Exception:  # noqa: BLE001 - isolate the image that breaks the batch
        pass
    outcomes: list[tuple[Prediction | None, str | None]] = []
    for path, rgb, det in loaded:
        try:
            one = predictor.predict_batch([rgb], [box], focal=focal, detections=[det])
            outcomes.append((one[0], None))
        except DetectorUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad image must not stop the others
            logger.warning("%s: %s", path, exc)
            outcomes.append((None, f"prediction failed: {exc}"))
    return outcomes


class _DecodeDataset:
    """Item i is (rgb, detections, None) or (None, None, error message) for ``paths[i]``, so a
    bad file never stops a worker. ``bundle``: when given, MediaPipe runs here too (one detector
    per worker process) and ``detections`` are its hands; else they are None and the predictor
    detects."""

    def __init__(self, paths: Sequence[Path], bundle: Path | None = None) -> None:
        self.paths = list(paths)
        self.bundle = bundle
        self._detector: Any = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> _Decoded:
        try:
            rgb = open_image(self.paths[i])
        except ImageError as exc:
            return None, None, str(exc)
        except Exception as exc:  # noqa: BLE001 - e.g. a decoder bug: this image only
            return None, None, f"{self.paths[i]}: cannot read image: {exc}"
        if self.bundle is None:
            return rgb, None, None
        if self._detector is None:  # created in the worker process, after the fork
            self._detector = HandDetector(self.bundle, allow_download=False)
        try:
            return rgb, detect_hands(self._detector, rgb), None
        except Exception as exc:  # noqa: BLE001 - one image's failure must not stop the others
            # The main process detects this image again (and reports its error if it fails).
            logger.debug("%s: detection in a worker failed (%s)", self.paths[i], exc)
            return rgb, None, None


# The dataset of a decoding worker process (set by _init_worker, read by _decode_chunk).
_WORKER_DATASET: _DecodeDataset | None = None


def _init_worker(parent: int, dataset: _DecodeDataset) -> None:
    """In each decoding worker: keep the dataset, let the parent alone handle Ctrl-C, and have
    Linux kill the worker when the parent process dies, even by SIGKILL (a worker busy in
    MediaPipe would otherwise outlive the parent and keep its pipes open, so a caller waiting
    for EOF hangs)."""
    import signal

    global _WORKER_DATASET
    _WORKER_DATASET = dataset
    # Ctrl-C reaches the whole process group: the parent stops the pool; a worker that raised
    # KeyboardInterrupt itself would only add tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _decode_chunk(start: int, stop: int) -> list[_Decoded]:
    assert _WORKER_DATASET is not None, "_init_worker did not run"
    return [_WORKER_DATASET[i] for i in range(start, stop)]


# Chunks decoded ahead per worker (as a DataLoader's prefetch_factor): bounds the decoded images
# held in memory while the network is slower than the workers.
PREFETCH_PER_WORKER = 2
# A chunk a worker has not decoded in this time is taken for a hung worker: an error, not a
# command that never ends (a chunk of 16 photos takes seconds, a 100-megapixel one about 1 s).
WORKER_TIMEOUT_S = 600.0


def _decoded_chunks(
    paths: Sequence[Path], batch_size: int, workers: int, bundle: Path | None = None
) -> Iterator[tuple[int, list[_Decoded]]]:
    """Yield (start index, [(rgb, detections, error), ...]) per chunk of ``batch_size`` paths,
    in order; with ``workers`` > 0 the next chunks are decoded (and, given a detector
    ``bundle``, their hands detected) in worker processes while the current one runs through
    the network (a process pool of the standard library: no PyTorch needed)."""
    import multiprocessing
    from collections import deque
    from concurrent.futures import Future, ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    dataset = _DecodeDataset(paths, bundle)
    starts = range(0, len(paths), batch_size)
    if workers == 0:
        for start in starts:
            yield start, [dataset[i] for i in range(start, min(start + batch_size, len(paths)))]
        return
    # fork on Linux (the workers start at once, sharing the parent's imported modules); spawn
    # elsewhere, where forking a process that holds MediaPipe or onnxruntime threads is unsafe.
    # No fork while a background import runs: the child could inherit a held lock and hang.
    wait_for_preload()
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(os.getpid(), dataset)
    )
    pending: deque[tuple[int, Future[list[_Decoded]]]] = deque()
    todo = iter(starts)
    try:
        while True:
            while len(pending) < workers * PREFETCH_PER_WORKER:
                first = next(todo, None)
                if first is None:
                    break
                stop = min(first + batch_size, len(paths))
                pending.append((first, pool.submit(_decode_chunk, first, stop)))
            if not pending:
                return
            start, future = pending.popleft()
            try:
                chunk = future.result(timeout=WORKER_TIMEOUT_S)
            except BrokenProcessPool:
                raise RuntimeError(
                    "a decoding worker process died (out of memory?); run again with --workers 0"
                ) from None
            except TimeoutError:
                # A hung worker would also hang the interpreter's exit (it joins the pool).
                processes = getattr(pool, "_processes", None) or {}
                for process in list(processes.values()):
                    process.terminate()
                last = min(start + batch_size, len(paths)) - 1
                raise RuntimeError(
                    f"a decoding worker gave no answer in {WORKER_TIMEOUT_S:.0f} s (images "
                    f"{start}-{last}); run again with --workers 0"
                ) from None
            yield start, chunk
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def model_info(predictor: DFLPredictor, weights: str | Path | None) -> dict[str, Any]:
    """The output JSON's ``model`` entry: what ran, on what, how (``weights`` as the user named
    it; ``hand_pass`` and ``flip_test`` as the predictor was made)."""
    from dfl_infer._version import __version__

    return {
        "weights": str(weights) if weights else "default",
        "backbone": predictor.config.backbone,
        "input_size": predictor.config.input_size,
        "parameters": predictor.num_parameters(),
        "device": predictor.device_name,
        "backend": predictor.backend,
        "hand_pass": predictor.hand_pass,
        "flip_test": predictor.flip_test,
        "dfl_infer_version": __version__,
    }


__all__ = [
    "FileResult",
    "OutputConflictError",
    "OutputNotWritableError",
    "check_outputs",
    "check_writable",
    "recover",
    "collect_images",
    "model_info",
    "predict_files",
    "results_document",
]

"""Batch inference on a Ray cluster (``pip install "dfl-infer[ray]"``; ``dfl-infer ray``).

Built on Ray Data, with no scheduler, queue or retry logic of its own:

- :func:`list_inputs` turns files, folders, list files (``.txt``: one path per line) and URIs
  that ``pyarrow.fs`` opens (``s3://``, ``gs://``, ``file://``, ...) into the inputs, on the
  driver, so that a run started again knows which are already written;
- :func:`predict_dataset` maps them (or any ``ray.data.Dataset`` with a ``path`` column, and
  optionally ``bytes``, as ``ray.data.read_binary_files(..., include_paths=True)`` gives) to a
  Dataset of result rows: decoding and MediaPipe in Ray tasks, the network in an actor pool (one
  ``DFLPredictor`` per actor, crops batched; CUDA with bf16 on GPU actors, as the predictor does);
- :func:`write_results` writes the rows as JSON Lines shards (each written atomically, so a
  shard on disk is always whole) plus ``manifest.json``; :func:`run` does all three and skips
  the inputs that the shards under ``out`` already hold, so each input is written exactly once
  across restarts.

A row: ``path`` (str), ``ok`` (bool), ``error`` (str, "" when none), ``record`` (the image's
entry of the output JSON, README "Output JSON", as a JSON string; a bad input's entry carries its
``error``) and ``model`` (the output JSON's ``model`` entry, a JSON string). Ray is imported only
inside these functions; nothing on the normal paths imports this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dfl_infer._atomic import atomic_path, write_json
from dfl_infer.image import IMAGE_SUFFIXES, ImageError, LargeImage, open_image
from dfl_infer.results import SCHEMA_VERSION, UNITS, image_entry

if TYPE_CHECKING:
    import ray.data

    from dfl_infer.predictor import DFLPredictor

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
# What marks a manifest as ours (a manifest.json without it is never replaced).
MANIFEST_KIND = "dfl-infer ray results"
SHARD_PATTERN = re.compile(r"^part-[0-9a-z]+-\d{5}\.jsonl$")
# Files listing inputs, one path or URI per line (blank lines and lines starting with # skipped).
LIST_SUFFIXES = (".txt", ".lst")
# A shard is written when it holds this many rows, or when its first row waited this long.
SHARD_ROWS = 256
SHARD_SECONDS = 30.0
# Memory reserved by each decoding + MediaPipe task (an image, MediaPipe's graph, its buffers).
TASK_MEMORY = 256 * 1024 * 1024
# The decoded rows are (H, W, 3) uint8; a row that failed before decoding carries this instead.
_NO_IMAGE = np.zeros((0, 0, 3), np.uint8)


class RayOutputError(ValueError):
    """``out`` cannot take these results: a manifest not ours, other weights, a broken shard."""


def require_ray() -> Any:
    """The ``ray`` module (with Ray Data), or an ImportError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError('dfl-infer on Ray needs Ray Data: pip install "dfl-infer[ray]"') from None
    return ray


def _is_uri(path: str) -> bool:
    return "://" in path


# --- inputs ---------------------------------------------------------------------------------
def list_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[str]:
    """The inputs, in order, each once: a file as given (local ones as absolute paths; a missing
    one is kept and becomes an error row), the image files (``IMAGE_SUFFIXES``) directly inside a
    folder, sorted, and each line of a ``.txt`` / ``.lst`` list file taken the same way (relative
    paths from the list's folder). A URI (``s3://bucket/photos/``, ``file:///data/x.jpg``) is
    listed with ``pyarrow.fs``."""
    out: list[str] = []
    seen: set[str] = set()
    for item in inputs:
        for path in _expand(str(item), from_list=None):
            if path not in seen:
                seen.add(path)
                out.append(path)
    return out


def _expand(item: str, from_list: Path | None) -> list[str]:
    if _is_uri(item):
        return _expand_uri(item)
    path = Path(item)
    if from_list is not None and not path.is_absolute():
        path = from_list.parent / path
    path = Path(os.path.abspath(path))
    if path.is_dir():
        found = sorted(
            str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not found:
            logger.warning("%s: no image files in this folder", path)
        return found
    if from_list is None and path.suffix.lower() in LIST_SUFFIXES and path.is_file():
        lines = [s.strip() for s in path.read_text().splitlines()]
        return [p for s in lines if s and not s.startswith("#") for p in _expand(s, path)]
    return [str(path)]


def _expand_uri(uri: str) -> list[str]:
    import pyarrow.fs

    fs, root = pyarrow.fs.FileSystem.from_uri(uri)
    scheme = uri.split("://", 1)[0]
    info = fs.get_file_info(root)
    if info.type != pyarrow.fs.FileType.Directory:
        return [uri]
    entries = fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=False))
    found = sorted(
        e.path
        for e in entries
        if e.type == pyarrow.fs.FileType.File and Path(e.path).suffix.lower() in IMAGE_SUFFIXES
    )
    prefix = f"{scheme}://" + ("/" if scheme == "file" and not root.startswith("/") else "")
    return [prefix + p for p in found]


# --- the two stages -------------------------------------------------------------------------
# Per worker process: the detector (MediaPipe's graph costs about a second to build), and the
# files shipped from the driver, written once into this node's cache.
_DETECTOR: Any = None
_SHIPPED: dict[str, Path] = {}


def _shipped_folder(files: Mapping[str, Any], key: str) -> Path:
    """``files`` (name -> bytes or an ObjectRef of them) written into this node's cache folder
    ``ray/KEY`` once (atomically), for the files the workers need but may not have: MediaPipe's
    bundle, a weights folder that exists on the driver only."""
    if key in _SHIPPED:
        return _SHIPPED[key]
    from dfl_infer.cache import default_cache_dir

    folder = default_cache_dir() / "ray" / key
    for name, blob in files.items():
        target = folder / name
        if not target.is_file():
            if not isinstance(blob, bytes):
                import ray

                blob = ray.get(blob)
            with atomic_path(target) as tmp:
                tmp.write_bytes(blob)
    _SHIPPED[key] = folder
    return folder


def _read_local(path: str, data: bytes | None) -> tuple[np.ndarray | LargeImage, str | None]:
    """The image at ``path`` (or in ``data``, its bytes already read); for a URI the file is
    fetched into a temporary file first. Returns (image, the temporary file or None)."""
    if data is None and not _is_uri(path):
        return open_image(path), None
    suffix = Path(path).suffix if Path(path).suffix.lower() in IMAGE_SUFFIXES else ".img"
    fd, tmp = tempfile.mkstemp(prefix="dfl-ray-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            if data is None:
                import pyarrow.fs

                fs, root = pyarrow.fs.FileSystem.from_uri(path)
                try:
                    with fs.open_input_file(root) as src:
                        data = src.read()
                except (OSError, FileNotFoundError) as exc:
                    raise ImageError(f"{path}: cannot read: {exc}") from None
            f.write(data)
        try:
            return open_image(tmp), tmp
        except ImageError as exc:
            raise ImageError(str(exc).replace(tmp, path)) from None
    except BaseException:
        os.unlink(tmp)
        raise


def decode_and_detect(batch: dict[str, np.ndarray], bundle: Mapping[str, Any]) -> dict[str, Any]:
    """The first stage (Ray tasks): decode each ``path`` (or its ``bytes``) and run MediaPipe on
    it. A row that fails keeps its ``error`` and an empty image; the network stage passes it on."""
    from dfl_infer.detect import HandDetector, detect_hands

    global _DETECTOR
    paths = [str(p) for p in batch["path"]]
    blobs = list(batch["bytes"]) if "bytes" in batch else [None] * len(paths)
    images: list[np.ndarray] = []
    detections: list[str] = []
    errors: list[str] = []
    large: list[bool] = []
    for path, blob in zip(paths, blobs):
        image: np.ndarray | LargeImage = _NO_IMAGE
        dets = ""
        error = ""
        tmp = None
        try:
            image, tmp = _read_local(path, None if blob is None else bytes(blob))
            if _DETECTOR is None:
                folder = _shipped_folder(bundle["files"], bundle["key"])
                _DETECTOR = HandDetector(folder / bundle["name"], allow_download=False)
            dets = json.dumps([d.to_dict() for d in detect_hands(_DETECTOR, image)])
        except ImageError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - this input fails, the others go on
            error = f"{path}: {type(exc).__name__}: {exc}"
        finally:
            if tmp is not None:
                os.unlink(tmp)
        # A LargeImage is opened again by the network stage (from the file): its crops are
        # decoded around their boxes, never the whole image.
        is_large = isinstance(image, LargeImage)
        images.append(_NO_IMAGE if is_large or error else np.asarray(image))
        large.append(is_large and not error)
        detections.append(dets)
        errors.append(error)
    column = np.empty(len(images), dtype=object)
    column[:] = images
    return {
        "path": np.array(paths, dtype=object),
        "image": column,
        "large": np.array(large, dtype=bool),
        "detections": np.array(detections, dtype=object),
        "error": np.array(errors, dtype=object),
    }


def _detections(text: str) -> list[Any]:
    from dfl_infer.detect import HandDetection

    hands = []
    for d in json.loads(text):
        world = d["landmarks_3d"]
        hands.append(
            HandDetection(
                box=np.asarray(d["box"], dtype=np.float64),
                handedness=d["handedness"],
                score=float(d["score"]),
                landmarks=np.asarray(d["landmarks"], dtype=np.float64),
                landmarks_3d=None if world is None else np.asarray(world, dtype=np.float64),
            )
        )
    return hands


class NetworkActor:
    """The second stage (an actor pool): one ``DFLPredictor`` per actor; each batch of decoded
    rows goes through ``predict_batch`` at once (its crops batched through the network)."""

    def __init__(
        self,
        weights: str | None,
        shipped: Mapping[str, Any] | None,
        device: str,
        threshold: float,
        focal: float | None,
        backend: str,
        flip_test: bool = False,
        hand_pass: bool = True,
    ) -> None:
        from dfl_infer.files import model_info
        from dfl_infer.predictor import DFLPredictor

        source: str | Path | None = weights
        if shipped is not None:
            source = _shipped_folder(shipped["files"], shipped["key"])
        self.predictor: DFLPredictor = DFLPredictor(
            weights=source,
            device=device,
            presence_threshold=threshold,
            backend=backend,
            flip_test=flip_test,
            hand_pass=hand_pass,
        )
        self.focal = focal
        self.model = json.dumps(model_info(self.predictor, weights))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        errors = [str(e) for e in batch["error"]]
        images: dict[int, Any] = {}
        temporary: list[str] = []
        try:
            for i, error in enumerate(errors):
                if error:
                    continue
                if not batch["large"][i]:
                    images[i] = batch["image"][i]
                    continue
                try:  # a LargeImage: opened again here, its crops decoded from the file
                    images[i], tmp = _read_local(paths[i], None)
                except ImageError as exc:
                    errors[i] = str(exc)
                    continue
                if tmp is not None:
                    temporary.append(tmp)
            todo = list(images)
            dets = [_detections(str(batch["detections"][i])) for i in todo]
            outcomes = self.predictor.predict_batch(
                [images[i] for i in todo], focal=self.focal, detections=dets, return_errors=True
            )
        finally:
            for tmp in temporary:
                os.unlink(tmp)
        records: list[str] = [""] * len(paths)
        for i in range(len(paths)):
            if errors[i]:
                records[i] = json.dumps({"path": paths[i], **image_entry(None, None, errors[i])})
        from dfl_infer.results import Prediction

        for i, outcome in zip(todo, outcomes):
            image = images[i]
            if isinstance(outcome, Prediction):
                entry = image_entry(image.shape, outcome, None)
            else:
                errors[i] = f"prediction failed: {outcome.message}"
                entry = image_entry(image.shape, None, errors[i])
            records[i] = json.dumps({"path": paths[i], **entry}, allow_nan=False)
        return {
            "path": np.array(paths, dtype=object),
            "ok": np.array([not e for e in errors], dtype=bool),
            "error": np.array(errors, dtype=object),
            "record": np.array(records, dtype=object),
            "model": np.array([self.model] * len(paths), dtype=object),
        }


def _bundle_spec() -> dict[str, Any]:
    """MediaPipe's bundle, found (or fetched) on the driver, put into Ray's object store: a worker
    node needs no network and no cache of its own."""
    import ray

    from dfl_infer.bundle import resolve_bundle

    path = resolve_bundle()
    data = path.read_bytes()
    key = "bundle-" + hashlib.sha256(data).hexdigest()[:16]
    return {"files": {path.name: ray.put(data)}, "key": key, "name": path.name}


def _weights_spec(weights: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """A weights folder on the driver's disk, put into the object store for the actors (they may
    run on nodes without it); None for the default weights (in the package) and Hub ids."""
    import ray

    if weights is None or not Path(weights).is_dir():
        return None
    folder = Path(weights)
    names = ("config.json", "model.safetensors", "model.onnx")
    blobs = {n: (folder / n).read_bytes() for n in names if (folder / n).is_file()}
    digest = hashlib.sha256()
    for name in sorted(blobs):
        digest.update(name.encode() + hashlib.sha256(blobs[name]).digest())
    return {
        "files": {n: ray.put(b) for n, b in blobs.items()},
        "key": "weights-" + digest.hexdigest()[:16],
    }


def predict_dataset(
    inputs: ray.data.Dataset | Sequence[str | os.PathLike[str]],
    *,
    weights: str | os.PathLike[str] | None = None,
    actors: int = 1,
    cpus_per_actor: float = 1.0,
    gpus_per_actor: float = 0.0,
    cpus_per_task: float = 1.0,
    batch_size: int = 8,
    threshold: float = 0.5,
    focal: float | None = None,
    backend: str = "auto",
    flip_test: bool = False,
    hand_pass: bool = True,
) -> ray.data.Dataset:
    """A Dataset of result rows (module docstring), lazily: nothing runs until it is consumed.
    ``inputs``: paths or URIs (files as :func:`list_inputs` gives them), or a Dataset with a
    ``path`` column (and optionally ``bytes``). ``actors``: the network's actor pool size, each
    with ``cpus_per_actor`` CPUs and ``gpus_per_actor`` GPUs (> 0: the predictor runs on CUDA,
    bf16); ``cpus_per_task``: CPUs of each decoding + MediaPipe task; ``batch_size``: images per
    ``predict_batch`` call; ``flip_test`` and ``hand_pass``: the actors' ``DFLPredictor``'s.
    Needs ``ray.init()`` first (or starts a local Ray)."""
    rt = require_ray()
    if actors < 1 or batch_size < 1:
        raise ValueError("actors and batch_size must be at least 1")
    if not (cpus_per_actor >= 0 and gpus_per_actor >= 0 and cpus_per_task > 0):
        raise ValueError("CPUs and GPUs per actor must be >= 0, CPUs per task > 0")
    if rt.is_initialized():
        free = float(rt.cluster_resources().get("CPU", 0.0)) - actors * cpus_per_actor
        if free < cpus_per_task:
            logger.warning(
                "the %d actors reserve %.3g of the cluster's %.3g CPUs, leaving less than the "
                "%.3g a decoding task needs: the run waits for more CPUs (lower --actors or "
                "--cpus-per-actor / --cpus-per-task)",
                actors,
                actors * cpus_per_actor,
                free + actors * cpus_per_actor,
                cpus_per_task,
            )
    if isinstance(inputs, rt.data.Dataset):
        ds = inputs
        if "path" not in (ds.columns() or []):
            raise ValueError("the Dataset needs a 'path' column (and optionally 'bytes')")
    else:
        paths = [str(p) for p in inputs]
        if not paths:
            raise ValueError("no inputs")
        # Small blocks: the decoding tasks spread over the cluster from the first images on.
        blocks = max(1, min(len(paths), -(-len(paths) // batch_size)))
        ds = rt.data.from_items([{"path": p} for p in paths], override_num_blocks=blocks)
    decoded = ds.map_batches(
        decode_and_detect,
        batch_size=batch_size,
        batch_format="numpy",
        fn_kwargs={"bundle": _bundle_spec()},
        num_cpus=cpus_per_task,
        # A memory reservation the actors do not ask for: besides keeping a node from taking more
        # decoding tasks than it can hold, it keeps Ray Data from fusing this stage into the
        # actors (it fuses only maps with equal remote arguments), so MediaPipe runs in tasks
        # over the whole cluster, not serially inside the network's (GPU) actors.
        memory=TASK_MEMORY,
    )
    results: ray.data.Dataset = decoded.map_batches(
        NetworkActor,
        batch_size=batch_size,
        batch_format="numpy",
        fn_constructor_kwargs={
            "weights": None if weights is None else str(weights),
            "shipped": _weights_spec(weights),
            "device": "cuda" if gpus_per_actor > 0 else "cpu",
            "threshold": threshold,
            "focal": focal,
            "backend": "torch" if gpus_per_actor > 0 else backend,
            "flip_test": flip_test,
            "hand_pass": hand_pass,
        },
        compute=rt.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor,
    )
    return results


# --- writing --------------------------------------------------------------------------------
@dataclass(frozen=True)
class WriteSummary:
    """What :func:`write_results` (and :func:`run`) did: ``written`` rows in this run
    (``succeeded`` of them without an error) in ``shards`` new shard files; ``skipped``: inputs
    already in ``out`` from earlier runs; ``missing``: inputs expected and still without a row
    (0 when the run completed)."""

    out: Path
    written: int
    succeeded: int
    shards: int
    skipped: int = 0
    missing: int = 0


def _shards(out: Path) -> list[Path]:
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if SHARD_PATTERN.match(p.name))


def read_manifest(out: str | Path) -> dict[str, Any] | None:
    """``out``'s manifest, or None when there is none; one that is not ours is an error."""
    path = Path(out) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RayOutputError(f"{path}: not a dfl-infer manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != MANIFEST_KIND:
        raise RayOutputError(f"{path} exists and is not a dfl-infer manifest; choose another --out")
    return manifest


def written_paths(out: str | Path) -> dict[str, int]:
    """The inputs the shards under ``out`` hold, and how many times each (1 unless a shard was
    copied in by hand). A shard that is not whole JSON Lines is an error naming it."""
    counts: dict[str, int] = {}
    for shard in _shards(Path(out)):
        try:
            for line in shard.read_text().splitlines():
                path = json.loads(line)["path"]
                counts[path] = counts.get(path, 0) + 1
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RayOutputError(
                f"{shard}: not a whole results shard ({exc}); move it away and run again"
            ) from None
    return counts


class _Writer:
    """Rows -> shard files ``part-RUN-NNNNN.jsonl`` (RUN: this run's id, so a restart never
    reuses a name), each written atomically, and the manifest updated after each."""

    def __init__(self, out: Path, weights: str | None, inputs: int, skipped: int) -> None:
        self.out = out
        self.run = time.strftime("%Y%m%d%H%M%S").lower() + uuid.uuid4().hex[:6]
        self.rows: list[str] = []
        self.first_at = 0.0
        self.count = 0
        self.written = self.succeeded = self.shards = 0
        self.weights = weights
        self.inputs = inputs
        self.skipped = skipped
        self.model: dict[str, Any] | None = None
        previous = read_manifest(out)
        self.previous_shards: list[dict[str, Any]] = list((previous or {}).get("shards", []))
        if previous is not None and previous.get("model") is not None:
            self.model = previous["model"]

    def add(self, record: str, ok: bool, model: str | None) -> None:
        if not self.rows:
            self.first_at = time.monotonic()
        self.rows.append(record)
        self.succeeded += ok
        if self.model is None and model:
            self.model = json.loads(model)

    def due(self, shard_rows: int, shard_seconds: float) -> bool:
        waited = time.monotonic() - self.first_at
        return len(self.rows) >= shard_rows or (bool(self.rows) and waited >= shard_seconds)

    def flush(self, complete: bool = False) -> None:
        if self.rows:
            name = f"part-{self.run}-{self.shards:05d}.jsonl"
            target = self.out / name
            if target.exists():  # never replace a file (a clash of run ids)
                raise RayOutputError(f"{target} exists already")
            text = "".join(r + "\n" for r in self.rows)
            with atomic_path(target) as tmp, tmp.open("w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            self.previous_shards.append({"file": name, "rows": len(self.rows)})
            self.written += len(self.rows)
            self.shards += 1
            logger.info("wrote %s (%d rows; %d this run)", name, len(self.rows), self.written)
            self.rows = []
        self.write_manifest(complete)

    def write_manifest(self, complete: bool) -> None:
        from dfl_infer.joints import HAND_JOINT_NAMES

        write_json(
            self.out / MANIFEST,
            {
                "kind": MANIFEST_KIND,
                "schema_version": SCHEMA_VERSION,
                "weights": self.weights or "default",
                "model": self.model,
                "joint_names": list(HAND_JOINT_NAMES),
                "units": dict(UNITS),
                "format": "jsonl: one line per input, an entry of the output JSON's images",
                "shards": self.previous_shards,
                "rows": sum(int(s["rows"]) for s in self.previous_shards),
                "last_run": {
                    "inputs": self.inputs,
                    "skipped": self.skipped,
                    "written": self.written + len(self.rows),
                    "succeeded": self.succeeded,
                    "complete": complete,
                },
            },
        )


def _rows(results: ray.data.Dataset | Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    if hasattr(results, "iter_rows"):
        yield from results.iter_rows()
    else:
        yield from results


def write_results(
    results: ray.data.Dataset | Iterable[Mapping[str, Any]],
    out: str | Path,
    *,
    weights: str | os.PathLike[str] | None = None,
    expected: Sequence[str] | None = None,
    skipped: int = 0,
    shard_rows: int = SHARD_ROWS,
    shard_seconds: float = SHARD_SECONDS,
) -> WriteSummary:
    """Write result rows (a :func:`predict_dataset` Dataset, streamed as its rows finish, or any
    iterable of rows with ``path``, ``ok``, ``record`` and ``model``) as shards under ``out``,
    plus its manifest. A path already in ``out``, or seen twice, is written once. On an error
    (a full disk) or Ctrl-C, the rows still in memory go into a last shard when they can, the
    manifest says the run is incomplete, and the exception propagates: every shard on disk is
    whole, and :func:`run` with the same ``out`` continues where this one stopped."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = set(written_paths(out))
    writer = _Writer(out, None if weights is None else str(weights), len(expected or ()), skipped)
    writer.write_manifest(complete=False)
    duplicates = 0
    try:
        for row in _rows(results):
            path = str(row["path"])
            if path in done:
                duplicates += 1
                continue
            done.add(path)
            writer.add(str(row["record"]), bool(row["ok"]), str(row.get("model") or ""))
            if writer.due(shard_rows, shard_seconds):
                writer.flush()
    except BaseException:
        with contextlib.suppress(Exception):  # keep what is whole; the first error is the one
            writer.flush(complete=False)
        raise
    missing = len(set(expected or ()) - done)
    writer.flush(complete=missing == 0)
    if duplicates:
        logger.info("%d rows for inputs already written were dropped", duplicates)
    return WriteSummary(out, writer.written, writer.succeeded, writer.shards, skipped, missing)


def check_out(out: str | Path, inputs: Sequence[str], weights: str | None) -> None:
    """Before any work: ``out`` must be a folder we can write whose manifest, if any, is ours and
    for the same weights, and no input may lie where a shard or the manifest goes."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RayOutputError(f"--out {out} is a file; give a folder")
    manifest = read_manifest(out)
    wanted = weights or "default"
    if manifest is not None and manifest.get("weights") != wanted:
        raise RayOutputError(
            f"{out} holds results of weights {manifest.get('weights')!r}, not {wanted!r}; "
            "choose another --out"
        )
    resolved = Path(os.path.abspath(out))
    for path in inputs:
        if not _is_uri(path) and Path(path).parent == resolved:
            name = Path(path).name
            if name == MANIFEST or SHARD_PATTERN.match(name):
                raise RayOutputError(f"the input {path} is where dfl-infer writes its results")


def run(
    inputs: Iterable[str | os.PathLike[str]],
    out: str | Path,
    *,
    weights: str | os.PathLike[str] | None = None,
    shard_rows: int = SHARD_ROWS,
    shard_seconds: float = SHARD_SECONDS,
    **options: Any,
) -> WriteSummary:
    """:func:`list_inputs` -> skip those already under ``out`` -> :func:`predict_dataset`
    (``options``: its keyword arguments) -> :func:`write_results`. Connect first with
    ``ray.init(address=...)``, else a local Ray is started."""
    paths = list_inputs(inputs)
    if not paths:
        raise ValueError("no inputs")
    check_out(out, paths, None if weights is None else str(weights))
    done = written_paths(out)
    todo = [p for p in paths if p not in done]
    skipped = len(paths) - len(todo)
    if skipped:
        logger.info("%d of %d inputs are already in %s: skipped", skipped, len(paths), out)
    results: Iterable[Mapping[str, Any]] = []
    if todo:
        results = predict_dataset(todo, weights=weights, **options)
    return write_results(
        results,
        out,
        weights=weights,
        expected=todo,
        skipped=skipped,
        shard_rows=shard_rows,
        shard_seconds=shard_seconds,
    )


__all__ = [
    "NetworkActor",
    "RayOutputError",
    "WriteSummary",
    "check_out",
    "decode_and_detect",
    "list_inputs",
    "predict_dataset",
    "read_manifest",
    "require_ray",
    "run",
    "write_results",
    "written_paths",
]

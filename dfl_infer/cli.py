"""The ``dfl-infer`` console script: a thin argparse layer over ``DFLPredictor``.

    dfl-infer IMAGE_OR_DIR... [--out joints.json] [--vis DIR] [--weights DIR_OR_HUB_ID]
              [--box x0,y0,x1,y1] [--focal F] [--device D] [--batch-size N] [--workers N]
              [--compile] [--backend torch|onnxruntime]
    dfl-infer fetch-detector [--dest PATH] [--source auto|google|pip] [--wheel WHEEL]
    dfl-infer export-onnx --weights DIR_OR_HUB_ID --out model.onnx [--opset N] [--batch dynamic|N]

Bad images get an ``"error"`` entry and a warning while the others still run; the exit status is
non-zero only for invalid arguments (2) or when no image succeeded (1). The JSON is written
atomically (temporary file + rename), so a reader never sees half a file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dfl_infer._atomic import atomic_path
from dfl_infer.detect import DetectorUnavailableError
from dfl_infer.image import IMAGE_SUFFIXES

logger = logging.getLogger("dfl_infer")

SCHEMA_VERSION = 1


class UsageError(Exception):
    """A user mistake: printed as one line, exit status 2."""


def _box(text: str) -> tuple[float, float, float, float]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"box must be x0,y0,x1,y1 numbers, got {text!r}") from None
    if len(vals) != 4 or not (vals[2] > vals[0] and vals[3] > vals[1]):
        raise argparse.ArgumentTypeError(
            f"box must be x0,y0,x1,y1 with x1 > x0 and y1 > y0, got {text!r}"
        )
    return vals  # type: ignore[return-value]


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _default_workers() -> int:
    # Decoding and detection overlap with the network only when there are cores to spare: on 2
    # cores, 2 workers made the CLI 0-12% slower (docs/performance.md), so they start at 3.
    cpus = os.cpu_count() or 1
    return 0 if cpus <= 2 else min(4, cpus)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dfl-infer",
        description="3D joints of the hands in photos (DFL). Also: `dfl-infer fetch-detector`, "
        "`dfl-infer export-onnx`.",
        epilog="Output units: joints_2d in image pixels, joints_3d (camera frame, x right, y down, "
        "z forward) and joints_3d_rel (minus the wrist) in millimetres. See the README.",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders of images"
    )
    p.add_argument("--out", metavar="JSON", help="output JSON file (default: standard output)")
    p.add_argument("--vis", metavar="DIR", help="write overlays of the 2D skeletons into DIR")
    p.add_argument(
        "--weights",
        metavar="DIR_OR_HUB_ID",
        help="weights folder (config.json + model.safetensors) or Hugging Face Hub id; "
        "default: the package's own model",
    )
    p.add_argument(
        "--box",
        type=_box,
        metavar="x0,y0,x1,y1",
        help="region around the hands in pixels (skips the detector; same for every image)",
    )
    p.add_argument(
        "--focal",
        type=_positive_float,
        metavar="F",
        help="focal length in pixels (default: assumed, the image's longer side)",
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=8,
        metavar="N",
        help="images per batch (default 8)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=_default_workers(),
        metavar="N",
        help="processes decoding images and running the hand detector on them while the "
        "network runs (default: min(4, CPU count); 0, all in the main process, on 1-2 cores)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the network (slow first batch; pays off on large GPU runs)",
    )
    p.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="what runs the network: torch (default) or onnxruntime (CPU only, faster there; "
        "needs pip install 'dfl-infer[onnx]')",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        metavar="P",
        help="minimum hand-presence probability (default 0.5)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or info messages")
    return p


def build_fetch_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dfl-infer fetch-detector",
        description="Download MediaPipe's hand_landmarker.task bundle, or assemble it from the "
        "mediapipe==0.10.21 wheel on PyPI when Google's model storage is unreachable.",
    )
    p.add_argument(
        "--dest", metavar="PATH", help="where to write the bundle (default: the cache folder)"
    )
    p.add_argument(
        "--source",
        choices=("auto", "google", "pip"),
        default="auto",
        help="auto (default): Google's model storage, then PyPI",
    )
    p.add_argument(
        "--wheel", metavar="WHEEL", help="assemble from this mediapipe 0.10.21 wheel file"
    )
    p.add_argument("--force", action="store_true", help="fetch again even if a valid bundle exists")
    return p


def build_export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dfl-infer export-onnx",
        description="Export the DFL network to ONNX: normalized (B, 3, S, S) crops in; joints_25d, "
        "hand_presence, rel_root_depth, segmentation out (see dfl_infer/export.py).",
    )
    p.add_argument(
        "--weights", required=True, metavar="DIR_OR_HUB_ID", help="weights folder or Hub id"
    )
    p.add_argument("--out", required=True, metavar="ONNX", help="output .onnx file")
    p.add_argument(
        "--opset", type=_positive_int, default=17, metavar="N", help="ONNX opset (default 17)"
    )
    p.add_argument(
        "--batch",
        default="dynamic",
        metavar="dynamic|N",
        help="'dynamic' (default): any batch size; or a fixed batch size N",
    )
    return p


def collect_images(inputs: Sequence[str]) -> list[Path]:
    """Files as given, plus the image files directly inside each folder (sorted)."""
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
            paths.append(path)  # a missing or non-image file gets an error entry later
    return paths


def write_json_atomic(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp, tmp.open("w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def _vis_name(path: Path, used: set[str]) -> str:
    name, k = f"{path.stem}.jpg", 1
    while name in used:
        k += 1
        name = f"{path.stem}_{k}.jpg"
    used.add(name)
    return name


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from dfl_infer import __version__
    from dfl_infer.joints import HAND_JOINT_NAMES
    from dfl_infer.predictor import DFLPredictor

    out_path = Path(args.out) if args.out else None
    if out_path is not None and out_path.is_dir():
        raise UsageError(f"--out {out_path} is a folder; give a file name such as joints.json")
    vis_dir = Path(args.vis) if args.vis else None
    if vis_dir is not None:
        if vis_dir.exists() and not vis_dir.is_dir():
            raise UsageError(f"--vis {vis_dir} exists and is not a folder")
        vis_dir.mkdir(parents=True, exist_ok=True)
    paths = collect_images(args.inputs)
    if not paths:
        raise UsageError("no images to process")
    try:
        predictor = DFLPredictor(
            weights=args.weights,
            device=args.device,
            presence_threshold=args.threshold,
            compile=args.compile,
            backend=args.backend,
        )
    except (FileNotFoundError, ValueError, ImportError) as exc:
        raise UsageError(str(exc)) from None
    model_info = {
        "weights": str(args.weights) if args.weights else "default",
        "backbone": predictor.config.backbone,
        "input_size": predictor.config.input_size,
        "parameters": predictor.model.num_parameters(),
        "device": str(predictor.device),
        "backend": predictor.backend,
        "dfl_infer_version": __version__,
    }
    records: list[dict[str, Any]] = []
    used_names: set[str] = set()
    n_ok = 0
    workers = max(0, args.workers)
    bundle = None
    if workers > 0 and args.box is None:
        # The workers run MediaPipe too; find (or fetch) its bundle once, here, so a missing
        # bundle is one clear error instead of one per worker.
        from dfl_infer.bundle import resolve_bundle

        bundle = resolve_bundle()
    bar = tqdm(total=len(paths), unit="img", disable=True if args.quiet else None, file=sys.stderr)
    for start, decoded in _decoded_chunks(paths, args.batch_size, workers, bundle):
        chunk = paths[start : start + len(decoded)]
        loaded: list[tuple[int, np.ndarray, Any]] = []
        chunk_records: list[dict[str, Any]] = []
        for k, (path, (rgb, dets, error)) in enumerate(zip(chunk, decoded)):
            rec: dict[str, Any] = {
                "path": str(path),
                "width": None,
                "height": None,
                "intrinsics": None,
                "box": None,
                "hands": [],
                "error": None,
            }
            if rgb is not None:
                rec["width"], rec["height"] = int(rgb.shape[1]), int(rgb.shape[0])
                loaded.append((k, rgb, dets))
            else:
                rec["error"] = error
                logger.warning("skipping %s", error)
            chunk_records.append(rec)
        preds = _predict_chunk(predictor, loaded, chunk_records, args)
        for (k, rgb, _), pred in zip(loaded, preds):
            if pred is None:
                continue
            rec = chunk_records[k]
            rec.update(pred.to_dict())
            n_ok += 1
            if vis_dir is not None:
                _write_vis(vis_dir / _vis_name(chunk[k], used_names), rgb, pred)
        records.extend(chunk_records)
        bar.update(len(chunk))
    bar.close()
    predictor.close()
    result = {
        "schema_version": SCHEMA_VERSION,
        "model": model_info,
        "joint_names": list(HAND_JOINT_NAMES),
        "units": {
            "joints_2d": "pixels",
            "joints_3d": "millimetres, camera frame",
            "joints_3d_rel": "millimetres, relative to the wrist",
        },
        "images": records,
    }
    if out_path is None:
        json.dump(result, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        write_json_atomic(out_path, result)
        logger.info("wrote %s (%d of %d images succeeded)", out_path, n_ok, len(paths))
    if n_ok == 0:
        logger.error("no image succeeded")
        return 1
    return 0


class _DecodeDataset:
    """Map-style dataset for ``torch.utils.data.DataLoader``: item i is (rgb, detections, None)
    or (None, None, error message) for ``paths[i]``, so a bad file never stops a worker.
    ``bundle``: when given, MediaPipe runs here too (one detector per worker process) and
    ``detections`` are its hands; else they are None and the predictor detects."""

    def __init__(self, paths: Sequence[Path], bundle: Path | None = None) -> None:
        self.paths = list(paths)
        self.bundle = bundle
        self._detector: Any = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Any, Any, str | None]:
        from dfl_infer.image import ImageError, load_image

        try:
            rgb = load_image(self.paths[i])
        except ImageError as exc:
            return None, None, str(exc)
        except Exception as exc:  # noqa: BLE001 - e.g. a decoder bug: this image only
            return None, None, f"{self.paths[i]}: cannot read image: {exc}"
        if self.bundle is None:
            return rgb, None, None
        if self._detector is None:  # created in the worker process, after the fork
            from dfl_infer.detect import HandDetector

            self._detector = HandDetector(self.bundle, allow_download=False)
        try:
            return rgb, self._detector.detect(rgb), None
        except Exception as exc:  # noqa: BLE001 - one image's failure must not stop the others
            # The main process detects this image again (and reports its error if it fails).
            logger.debug("%s: detection in a worker failed (%s)", self.paths[i], exc)
            return rgb, None, None


def _decoded_chunks(
    paths: Sequence[Path], batch_size: int, workers: int, bundle: Path | None = None
) -> Any:
    """Yield (start index, [(rgb, detections, error), ...]) per chunk of ``batch_size`` paths,
    in order; with ``workers`` > 0 the next chunks are decoded (and, given a detector
    ``bundle``, their hands detected) in worker processes while the current one runs through
    the network."""
    dataset = _DecodeDataset(paths, bundle)
    if workers == 0:
        for start in range(0, len(paths), batch_size):
            yield start, [dataset[i] for i in range(start, min(start + batch_size, len(paths)))]
        return
    from torch.utils.data import DataLoader

    loader: DataLoader[Any] = DataLoader(
        dataset,  # type: ignore[arg-type]  # a map-style dataset without the Dataset base class
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=list,
        prefetch_factor=2,
    )
    for n, chunk in enumerate(loader):
        yield n * batch_size, chunk


def _predict_chunk(predictor: Any, loaded: list, records: list, args: argparse.Namespace) -> list:
    """Predictions for the loaded images of a chunk; an image that fails alone gets an error."""
    if not loaded:
        return []
    arrays = [rgb for _, rgb, _ in loaded]
    dets = [d for _, _, d in loaded]
    boxes = [args.box] * len(arrays)
    try:
        return predictor.predict_batch(arrays, boxes=boxes, focal=args.focal, detections=dets)
    except DetectorUnavailableError:  # concerns every image, not one of them
        raise
    except Exception:  # noqa: BLE001 - isolate the image that breaks the batch
        preds = []
        for (k, rgb, det), box in zip(loaded, boxes):
            try:
                one = predictor.predict_batch([rgb], [box], focal=args.focal, detections=[det])
                preds.append(one[0])
            except DetectorUnavailableError:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad image must not stop the others
                logger.warning("%s: %s", records[k]["path"], exc)
                records[k]["error"] = f"prediction failed: {exc}"
                preds.append(None)
        return preds


def _write_vis(path: Path, rgb: Any, pred: Any) -> None:
    from PIL import Image

    from dfl_infer.vis import draw_prediction

    with atomic_path(path) as tmp:
        Image.fromarray(draw_prediction(rgb, pred)).save(tmp, format="JPEG", quality=92)


def fetch(argv: Sequence[str]) -> int:
    args = build_fetch_parser().parse_args(argv)
    from dfl_infer.bundle import fetch_detector

    path = fetch_detector(
        dest=Path(args.dest) if args.dest else None,
        source=args.source,
        wheel=Path(args.wheel) if args.wheel else None,
        force=args.force,
    )
    print(path)
    return 0


def export(argv: Sequence[str]) -> int:
    args = build_export_parser().parse_args(argv)
    if args.batch == "dynamic":
        batch = None
    else:
        try:
            batch = _positive_int(args.batch)
        except argparse.ArgumentTypeError:
            raise UsageError(
                f"--batch must be 'dynamic' or a positive integer, got {args.batch!r}"
            ) from None
    from dfl_infer.model import DFLModel

    try:
        from dfl_infer.export import export_onnx

        model = DFLModel.from_pretrained(args.weights)
        path = export_onnx(model, args.out, opset=args.opset, batch=batch)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        raise UsageError(str(exc)) from None
    print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet = "-q" in argv or "--quiet" in argv
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="dfl-infer: %(levelname)s: %(message)s",
    )
    try:
        if argv and argv[0] == "fetch-detector":
            return fetch(argv[1:])
        if argv and argv[0] == "export-onnx":
            return export(argv[1:])
        return run(build_parser().parse_args(argv))
    except UsageError as exc:
        print(f"dfl-infer: error: {exc}", file=sys.stderr)
        return 2
    except DetectorUnavailableError as exc:  # no hand model: nothing can run; not a usage error
        print(f"dfl-infer: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""The ``dfl-infer`` console script: argparse subcommands over the library, and the messages.

    dfl-infer [predict] IMAGE_OR_DIR... [--out joints.json] [--vis DIR] [--weights DIR_OR_HUB_ID]
              [--box x0,y0,x1,y1] [--focal F] [--device D] [--batch-size N] [--workers N]
              [--compile] [--backend auto|torch|onnxruntime] [--threshold P] [--no-hand-pass]
              [--flip-test] [--force] [-q]
    dfl-infer CLIP.mp4 | FRAMES_DIR --video [--out joints.jsonl] [--vis overlay.mp4]
              [--smooth causal|offline|none] [--no-track] [--max-missed N] [--fps F] [...]
    dfl-infer fetch-detector [--dest PATH] [--source auto|google|pip] [--wheel WHEEL] [--force]
    dfl-infer export-onnx --weights DIR_OR_HUB_ID --out model.onnx [--opset N] [--batch dynamic|N]
    dfl-infer export-onnx --weights DIR --into-weights   (DIR/model.onnx, used by --backend auto)
    dfl-infer ray INPUT... --out DIR [--address ADDR] [--actors N] [--cpus-per-actor C]
              [--gpus-per-actor G] [--batch-size B]   (a Ray cluster: dfl_infer.ray_batch)
    dfl-infer demo [--port P] [--host 127.0.0.1] [--weights DIR_OR_HUB_ID] [--share] [--flip-test]

``predict`` is the default subcommand, so ``dfl-infer photo.jpg`` predicts. The work is done by
``files.predict_files`` (predicting), ``bundle.fetch_detector`` and ``export.export_onnx``; this
file maps arguments onto them and outcomes onto messages and exit statuses: bad images get an
``"error"`` entry and a warning while the others still run; the exit status is 2 for invalid
arguments (one line, no traceback), 1 when no image succeeded or the detector's model is
missing or an unexpected error occurred (one line; ``--debug`` shows the traceback), 130 on
Ctrl-C, 141 when standard output is closed early, else 0. The JSON is written atomically
(temporary file + rename).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dfl_infer.bundle import DetectorUnavailableError

if TYPE_CHECKING:  # imported when used: `dfl-infer --help` stays quick
    from dfl_infer.predictor import DFLPredictor

logger = logging.getLogger("dfl_infer")

_T = TypeVar("_T")

SUBCOMMANDS = ("predict", "fetch-detector", "export-onnx", "ray", "demo")


class UsageError(Exception):
    """A user mistake: printed as one line, exit status 2."""


def _box(text: str) -> tuple[float, float, float, float]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"box must be x0,y0,x1,y1 numbers, got {text!r}") from None
    if len(vals) == 4 and not all(math.isfinite(v) for v in vals):
        raise argparse.ArgumentTypeError(f"box must be finite numbers, got {text!r}")
    if len(vals) != 4 or not (vals[2] > vals[0] and vals[3] > vals[1]):
        raise argparse.ArgumentTypeError(
            f"box must be x0,y0,x1,y1 with x1 > x0 and y1 > y0, got {text!r}"
        )
    return vals


def _checked(
    convert: Callable[[str], _T], ok: Callable[[_T], bool], kind: str, expected: str
) -> Callable[[str], _T]:
    """An argparse ``type=``: ``convert`` the text, then accept it only where ``ok`` holds; the
    two messages say ``expected KIND`` (not convertible) and ``expected EXPECTED``."""

    def parse(text: str) -> _T:
        try:
            v = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return v

    return parse


_positive_float = _checked(
    float, lambda v: v > 0 and math.isfinite(v), "a number", "a positive finite number"
)
_non_negative_float = _checked(
    float, lambda v: v >= 0 and math.isfinite(v), "a number", "0 or a positive number"
)
_probability = _checked(float, lambda v: 0.0 <= v <= 1.0, "a number", "a probability in [0, 1]")
_positive_int = _checked(int, lambda v: v >= 1, "an integer", "a positive integer")
_non_negative_int = _checked(int, lambda v: v >= 0, "an integer", "0 or a positive integer")
_port = _checked(int, lambda v: 1 <= v <= 65535, "a port number", "a port number in 1..65535")


def _default_workers() -> int:
    # Decoding and detection overlap with the network only when there are cores to spare: on 2
    # cores, 2 workers made the CLI 0-12% slower (docs/performance.md), so they start at 3.
    cpus = os.cpu_count() or 1
    return 0 if cpus <= 2 else min(4, cpus)


def _onnx_batch(text: str) -> int | None:
    if text == "dynamic":
        return None
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be 'dynamic' or a positive integer, got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dfl-infer",
        description="3D joints of the hands in photos (DFL). `dfl-infer IMAGE_OR_DIR...` is "
        "`dfl-infer predict IMAGE_OR_DIR...`; `dfl-infer COMMAND --help` shows a command's "
        "options.",
    )
    # --debug on every subcommand: show the traceback of an unexpected error.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", help="show the traceback of an unexpected error"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "predict",
        parents=[common],
        help="3D joints of the hands in photos (the default command)",
        description="3D joints of the hands in photos (DFL).",
        epilog="Output units: joints_2d in image pixels, joints_3d (camera frame, x right, y down, "
        "z forward) and joints_3d_rel (minus the wrist) in millimetres. See the README.",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders of images"
    )
    p.add_argument("--out", metavar="JSON", help="output JSON file (default: standard output)")
    p.add_argument("--vis", metavar="DIR", help="write overlays of the 2D skeletons into DIR")
    p.add_argument(
        "--vis3d",
        metavar="HTML",
        help="write the 3D joints as one self-contained, rotatable HTML page (one frame per image)",
    )
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
        type=_non_negative_int,
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
        choices=("auto", "torch", "onnxruntime"),
        default="auto",
        help="what runs the network: auto (default: onnxruntime on the CPU when the weights "
        "ship a matching model.onnx, without loading PyTorch; else torch), torch, or "
        "onnxruntime (CPU only; exports the model on first use, needs pip install "
        "'dfl-infer[onnx]')",
    )
    p.add_argument(
        "--threshold",
        type=_probability,
        default=0.5,
        metavar="P",
        help="minimum hand-presence probability (default 0.5; 0 reports both hand slots of "
        "every crop, unfiltered)",
    )
    p.add_argument(
        "--no-hand-pass",
        action="store_true",
        help="do not re-run each hand of a two-hand crop in a crop of its own (one network "
        "pass fewer per hand of a pair; looser joints on hands close together)",
    )
    p.add_argument(
        "--flip-test",
        action="store_true",
        help="also run every crop mirrored and average the two (twice the network's time; "
        "more accurate joints, fewer phantom hands)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="let --vis replace existing files that are not dfl-infer overlays (input images "
        "are never replaced)",
    )
    video = p.add_argument_group(
        "video",
        "a video file (.mp4, .mov, .avi, ...), or a folder of frames with --video: "
        "one JSON Lines record per frame (--out NAME.jsonl), the overlay as --vis NAME.mp4",
    )
    video.add_argument(
        "--video", action="store_true", help="read the folder given as the frames of one clip"
    )
    video.add_argument(
        "--fps",
        type=_positive_float,
        metavar="F",
        help="frame rate for the timestamps (default: the video's own, 30 for frames)",
    )
    video.add_argument(
        "--smooth",
        choices=("causal", "offline", "none"),
        help="causal (default): One-Euro filter as frames come; offline: fill short gaps, then "
        "a zero-lag Savitzky-Golay filter (the whole clip first); none",
    )
    video.add_argument(
        "--no-track",
        action="store_true",
        help="detect the hands in each frame on its own (no boxes carried between frames)",
    )
    video.add_argument(
        "--max-missed",
        type=_non_negative_int,
        default=5,
        metavar="N",
        help="frames a tracked hand may go unfound before it is dropped (default 5)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or info messages")
    p.set_defaults(func=predict)
    p = sub.add_parser(
        "fetch-detector",
        parents=[common],
        help="download or assemble MediaPipe's hand model",
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
    p.set_defaults(func=fetch)
    p = sub.add_parser(
        "export-onnx",
        parents=[common],
        help="export the network to ONNX",
        description="Export the DFL network to ONNX: normalized (B, 3, S, S) crops in; joints_25d, "
        "hand_presence, rel_root_depth, segmentation, joints_2d_iter out (see "
        "dfl_infer/export.py).",
    )
    p.add_argument(
        "--weights", required=True, metavar="DIR_OR_HUB_ID", help="weights folder or Hub id"
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="ONNX", help="output .onnx file")
    target.add_argument(
        "--into-weights",
        action="store_true",
        help="write WEIGHTS/model.onnx (batch 1, fp16 weights, tagged with the sha256 of "
        "model.safetensors): the graph --backend auto runs without loading PyTorch",
    )
    p.add_argument(
        "--opset", type=_positive_int, default=17, metavar="N", help="ONNX opset (default 17)"
    )
    p.add_argument(
        "--batch",
        type=_onnx_batch,
        default=None,
        metavar="dynamic|N",
        help="'dynamic' (default): any batch size; or a fixed batch size N",
    )
    p.set_defaults(func=export)
    _add_ray_parser(sub, common)
    p = sub.add_parser(
        "demo",
        parents=[common],
        help="a local web page to try the model on a photo or a webcam",
        description="Start a web page (Gradio) to try the model on a photo or a webcam; needs "
        'pip install "dfl-infer[demo]". See docs/demo.md.',
    )
    p.add_argument(
        "--port", type=_port, default=7860, metavar="P", help="port to listen on (default 7860)"
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 lets any "
        "machine that reaches this one use the page)",
    )
    p.add_argument(
        "--weights",
        metavar="DIR_OR_HUB_ID",
        help="weights folder or Hub id (default: the package's own model)",
    )
    p.add_argument(
        "--share",
        action="store_true",
        help="also give the page a public address (Gradio's share servers; needs the internet)",
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument(
        "--backend",
        choices=("auto", "torch", "onnxruntime"),
        default="auto",
        help="what runs the network (as for predict)",
    )
    p.add_argument(
        "--flip-test",
        action="store_true",
        help="tick the page's flip-test box by default: every crop also run mirrored and the "
        "two averaged (as for predict: twice the network's time per photo or webcam frame)",
    )
    p.set_defaults(func=demo, threshold=0.5, compile=False)
    return parser


def _add_ray_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "ray",
        parents=[common],
        help="batch inference on a Ray cluster (pip install 'dfl-infer[ray]')",
        description="Predict many images on a Ray cluster (Ray Data): decoding and MediaPipe in "
        "tasks, the network in an actor pool. Writes JSON Lines shards and manifest.json into "
        "--out; run again with the same --out to continue: inputs already written are skipped. "
        "See docs/scale.md.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files, folders, .txt files listing paths, or URIs (s3://, gs://, file://)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the shards")
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="the cluster, as ray.init(address=...) takes it (default: $RAY_ADDRESS, else a "
        "cluster started on this machine with `ray start`, else a new local Ray)",
    )
    p.add_argument(
        "--actors", type=_positive_int, default=1, metavar="N", help="network actors (default 1)"
    )
    p.add_argument(
        "--cpus-per-actor",
        type=_non_negative_float,
        default=1.0,
        metavar="C",
        help="CPUs reserved by each network actor (default 1)",
    )
    p.add_argument(
        "--gpus-per-actor",
        type=_non_negative_float,
        default=0.0,
        metavar="G",
        help="GPUs of each network actor (default 0; > 0 runs PyTorch on CUDA, bf16)",
    )
    p.add_argument(
        "--cpus-per-task",
        type=_positive_float,
        default=1.0,
        metavar="C",
        help="CPUs of each decoding + hand-detection task (default 1)",
    )
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=8,
        metavar="B",
        help="images per task and per network call (default 8)",
    )
    p.add_argument("--weights", metavar="DIR_OR_HUB_ID", help="as for predict")
    p.add_argument("--backend", choices=("auto", "torch", "onnxruntime"), default="auto")
    p.add_argument(
        "--flip-test",
        action="store_true",
        help="also run every crop mirrored and average the two (as for predict)",
    )
    p.add_argument(
        "--no-hand-pass",
        action="store_true",
        help="do not re-run each hand of a two-hand crop in a crop of its own (as for predict)",
    )
    p.add_argument("--threshold", type=_probability, default=0.5, metavar="P")
    p.add_argument("--focal", type=_positive_float, metavar="F")
    p.add_argument(
        "--shard-rows",
        type=_positive_int,
        default=256,
        metavar="N",
        help="rows per shard (a shard is also written after 30 s; default 256)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or info messages")
    p.set_defaults(func=ray_predict)


def _predictor(args: argparse.Namespace) -> DFLPredictor:
    """The ``DFLPredictor`` that ``predict``'s arguments ask for; bad ones are a UsageError."""
    from dfl_infer.predictor import DFLPredictor

    # MediaPipe will run in this process (no box; with --workers it runs in the workers): import
    # it while the network loads.
    if getattr(args, "box", None) is None and not getattr(args, "workers", 0):
        from dfl_infer.detect import preload_mediapipe

        preload_mediapipe()
    try:
        return DFLPredictor(
            weights=args.weights,
            device=args.device,
            presence_threshold=args.threshold,
            compile=args.compile,
            backend=args.backend,
            hand_pass=not getattr(args, "no_hand_pass", False),
            flip_test=getattr(args, "flip_test", False),
        )
    except (FileNotFoundError, ValueError, ImportError) as exc:
        raise UsageError(str(exc)) from None


def _view3d_path(args: argparse.Namespace) -> Path | None:
    """``--vis3d`` as a path, or None; anything but an HTML file name is a UsageError."""
    view3d_path = Path(args.vis3d) if args.vis3d else None
    if view3d_path is not None and (
        view3d_path.is_dir() or view3d_path.suffix.lower() not in (".html", ".htm")
    ):
        raise UsageError(f"--vis3d {view3d_path}: give an HTML file name such as view.html")
    return view3d_path


def predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dfl_infer._atomic import write_json
    from dfl_infer.files import (
        OutputConflictError,
        OutputNotWritableError,
        check_outputs,
        check_writable,
        collect_images,
        model_info,
        predict_files,
        recover,
    )
    from dfl_infer.results import JsonLinesWriter, document_header
    from dfl_infer.video import is_video
    from dfl_infer.vis import OverlayFolder
    from dfl_infer.vis3d import View3D

    if args.video or (len(args.inputs) == 1 and is_video(args.inputs[0])):
        return predict_video(args)
    if args.smooth or args.fps or args.no_track:
        raise UsageError("--smooth, --fps and --no-track apply to a video (or --video frames)")
    out_path = Path(args.out) if args.out else None
    if out_path is not None and out_path.is_dir():
        raise UsageError(f"--out {out_path} is a folder; give a file name such as joints.json")
    try:
        overlays = OverlayFolder(args.vis) if args.vis else None
    except NotADirectoryError:
        raise UsageError(f"--vis {args.vis} exists and is not a folder") from None
    view3d_path = _view3d_path(args)
    paths = collect_images(args.inputs)
    if not paths:
        raise UsageError("no images to process")
    try:  # before any work: an output must never replace an input or a file not ours
        plan = overlays.plan(paths) if overlays else None
        check_outputs(paths, out_path, plan, args.force, view3d=view3d_path)
    except OutputConflictError as exc:
        raise UsageError(str(exc)) from None
    try:  # before the first image: a place that cannot be written fails now, not at the end
        if out_path is not None:
            check_writable(out_path.parent, "--out")
        if overlays is not None:
            check_writable(overlays.folder, "--vis")
        if view3d_path is not None:
            check_writable(view3d_path.parent, "--vis3d")
    except OutputNotWritableError as exc:
        raise UsageError(str(exc)) from None
    predictor = _predictor(args)
    records: list[dict[str, Any]] = []
    n_ok = n_vis_failed = 0
    view3d = View3D() if view3d_path is not None else None
    header = document_header(model_info(predictor, args.weights))
    stream = None
    if out_path is not None and out_path.suffix == ".jsonl":
        try:
            stream = JsonLinesWriter(out_path, header)
        except OSError as exc:
            raise UsageError(f"--out: cannot write {out_path}: {exc.strerror or exc}") from None
    bar = tqdm(total=len(paths), unit="img", disable=True if args.quiet else None, file=sys.stderr)
    try:
        with predictor:
            results = predict_files(
                predictor, paths, args.box, args.focal, args.batch_size, args.workers
            )
            for result in results:
                if result.prediction is not None:
                    n_ok += 1
                    if overlays is not None and result.image is not None:
                        try:
                            overlays.write(result.path, result.image, result.prediction)
                        except OSError as exc:  # the results matter more than the pictures
                            n_vis_failed += 1
                            logger.warning("cannot write the overlay of %s: %s", result.path, exc)
                records.append(result.to_dict())
                if view3d is not None:
                    view3d.add(result.prediction, str(result.path))
                if stream is not None:
                    stream.write(records[-1])
                bar.update(1)
        bar.close()
        if stream is not None:
            stream.close({"images": len(paths), "succeeded": n_ok})
        elif out_path is not None:
            write_json(out_path, {**header, "images": records})
    except OSError as exc:
        if stream is not None:
            stream.close()
        if out_path is None:
            raise
        saved = recover({**header, "images": records})
        where = f"the {len(records)} results so far are in {saved}" if saved else "results lost"
        logger.error("cannot write %s (%s); %s", out_path, exc.strerror or exc, where)
        return 1
    if out_path is None:
        json.dump({**header, "images": records}, sys.stdout, indent=1, allow_nan=False)
        sys.stdout.write("\n")
    else:
        logger.info("wrote %s (%d of %d images succeeded)", out_path, n_ok, len(paths))
    if view3d is not None and view3d_path is not None:
        try:
            view3d.write(view3d_path)
        except OSError as exc:  # the JSON is whole: say so, but do not call it a success
            logger.error("cannot write the 3D view %s: %s", view3d_path, exc.strerror or exc)
            return 1
    if n_ok == 0:
        logger.error("no image succeeded")
        return 1
    if n_vis_failed:  # asked for and not delivered: not a success, though the JSON is whole
        logger.error("%d overlays could not be written", n_vis_failed)
        return 1
    return 0


def predict_video(args: argparse.Namespace) -> int:
    """``dfl-infer CLIP`` (README, "Video"): JSON Lines as frames finish, an mp4 overlay."""
    from tqdm import tqdm

    from dfl_infer.files import (
        OutputConflictError,
        OutputNotWritableError,
        check_outputs,
        check_writable,
        model_info,
    )
    from dfl_infer.results import JsonLinesWriter, document_header
    from dfl_infer.smooth import SmoothParams
    from dfl_infer.video import FrameSource, OverlayVideo, VideoError, is_video_overlay
    from dfl_infer.vis3d import View3D

    if len(args.inputs) != 1:
        raise UsageError("give one video file or one folder of frames")
    if args.box is not None:
        raise UsageError("--box applies to images, not to a video")
    out_path = Path(args.out) if args.out else None
    vis_path = Path(args.vis) if args.vis else None
    if out_path is not None and out_path.suffix != ".jsonl":
        raise UsageError(f"a video's results are JSON Lines: give --out NAME.jsonl, not {out_path}")
    if vis_path is not None and vis_path.suffix.lower() != ".mp4":
        raise UsageError(f"a video's overlay is an mp4 file: give --vis NAME.mp4, not {vis_path}")
    try:
        source = FrameSource(args.inputs[0], args.fps)
    except VideoError as exc:
        raise UsageError(str(exc)) from None
    view3d_path = _view3d_path(args)
    try:  # before any work: an output must never replace an input or a file not ours
        check_outputs(source.inputs, out_path, None, args.force, view3d=view3d_path)
        if vis_path is not None:  # never an input; a foreign mp4 only with --force
            check_outputs(source.inputs, None, {source.path: vis_path}, force=True)
            if vis_path.exists() and not args.force and not is_video_overlay(vis_path):
                raise OutputConflictError(
                    f"--vis: {vis_path} exists and is not a dfl-infer overlay; choose another "
                    "name, or pass --force to replace it"
                )
        for path, option in ((out_path, "--out"), (vis_path, "--vis"), (view3d_path, "--vis3d")):
            if path is not None:
                check_writable(path.parent, option)
    except (OutputConflictError, OutputNotWritableError) as exc:
        raise UsageError(str(exc)) from None
    predictor = _predictor(args)
    params = SmoothParams()
    smooth = args.smooth or "causal"
    header = document_header(model_info(predictor, args.weights))
    header["video"] = {
        "source": str(source.path),
        "fps": source.fps,
        "tracking": not args.no_track,
        "max_missed": args.max_missed,
        "smoothing": smooth,
        "smoothing_params": params.to_dict() if smooth != "none" else None,
    }
    if out_path is not None:
        try:
            stream = JsonLinesWriter(out_path, header)
        except OSError as exc:
            raise UsageError(f"--out: cannot write {out_path}: {exc.strerror or exc}") from None
    else:
        stream = None
        print(json.dumps(header, allow_nan=False), flush=True)
    overlay = OverlayVideo(vis_path, source.fps) if vis_path is not None else None
    view3d = View3D(fps=source.fps) if view3d_path is not None else None
    bar = tqdm(
        total=source.count, unit="frame", disable=True if args.quiet else None, file=sys.stderr
    )
    n = n_ok = 0
    complete = False
    try:
        with predictor:
            for result in predictor.predict_video(
                source,
                track=not args.no_track,
                smooth=smooth,
                smooth_params=params,
                max_missed=args.max_missed,
                focal=args.focal,
                progress=lambda: bar.update(1),
            ):
                n += 1
                n_ok += result.prediction is not None
                record = result.to_dict()
                if stream is not None:
                    stream.write(record)
                else:
                    print(json.dumps(record, allow_nan=False), flush=True)
                if overlay is not None and result.image is not None:
                    overlay.write(result.image, result.prediction)
                if view3d is not None:
                    view3d.add(result.prediction, f"frame {result.index}, {result.time:.2f} s")
        bar.close()
        if overlay is not None:
            overlay.close()
        if view3d is not None and view3d_path is not None:
            view3d.write(view3d_path)
        complete = True
        summary = {"frames": n, "succeeded": n_ok}
        if stream is not None:
            stream.close(summary)
        else:
            print(json.dumps({"summary": summary}), flush=True)
    except VideoError as exc:
        logger.error("%s", exc)
        return 1
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):  # standard output closed: main() says so
            raise
        logger.error("cannot write the results: %s", exc)
        return 1
    finally:
        if not complete:
            if stream is not None:
                stream.close()
            if overlay is not None:
                overlay.close(complete=False)
    if out_path is not None:
        logger.info("wrote %s (%d of %d frames succeeded)", out_path, n_ok, n)
    for written in (vis_path, view3d_path):
        if written is not None:
            logger.info("wrote %s", written)
    if n_ok == 0:
        logger.error("no frame succeeded")
        return 1
    return 0


def fetch(args: argparse.Namespace) -> int:
    from dfl_infer.bundle import fetch_detector

    path = fetch_detector(
        dest=Path(args.dest) if args.dest else None,
        source=args.source,
        wheel=Path(args.wheel) if args.wheel else None,
        force=args.force,
    )
    print(path)
    return 0


def export(args: argparse.Namespace) -> int:
    from dfl_infer.model import DFLModel

    try:
        from dfl_infer.export import export_into_weights, export_onnx

        if args.into_weights:
            if args.batch is not None:
                raise ValueError("--into-weights writes a batch-1 graph: leave out --batch")
            path = export_into_weights(args.weights, opset=args.opset)
        else:
            model = DFLModel.from_pretrained(args.weights)
            path = export_onnx(model, args.out, opset=args.opset, batch=args.batch)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        raise UsageError(str(exc)) from None
    print(path)
    return 0


def ray_predict(args: argparse.Namespace) -> int:
    """``dfl-infer ray``: :func:`dfl_infer.ray_batch.run` on a cluster, and its messages."""
    from dfl_infer import ray_batch
    from dfl_infer.files import check_writable

    try:
        ray = ray_batch.require_ray()
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    paths = ray_batch.list_inputs(args.inputs)
    if not paths:
        raise UsageError("no images to process")
    out = Path(args.out)
    try:
        ray_batch.check_out(out, paths, args.weights)
        check_writable(out, "--out")
    except (ray_batch.RayOutputError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if args.quiet:
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.WARNING)
    ray.init(
        address=args.address,
        logging_level=logging.WARNING if args.quiet else logging.INFO,
        log_to_driver=not args.quiet,
    )
    ray.data.DataContext.get_current().enable_progress_bars = not args.quiet
    try:
        summary = ray_batch.run(
            paths,
            out,
            weights=args.weights,
            shard_rows=args.shard_rows,
            actors=args.actors,
            cpus_per_actor=args.cpus_per_actor,
            gpus_per_actor=args.gpus_per_actor,
            cpus_per_task=args.cpus_per_task,
            batch_size=args.batch_size,
            threshold=args.threshold,
            focal=args.focal,
            backend=args.backend,
            flip_test=args.flip_test,
            hand_pass=not args.no_hand_pass,
        )
    except KeyboardInterrupt:
        logger.error("stopped; the rows written so far are in %s: run again to continue", out)
        raise
    except OSError as exc:
        logger.error(
            "cannot write into %s (%s); the shards written are whole: run again to continue",
            out,
            exc.strerror or exc,
        )
        return 1
    except ray.exceptions.RayError as exc:
        first = str(exc).strip().splitlines()
        logger.error("the Ray job failed: %s", first[0] if first else type(exc).__name__)
        return 1
    finally:
        ray.shutdown()
    logger.info(
        "wrote %d rows (%d succeeded) in %d shards into %s; %d inputs were there already",
        summary.written,
        summary.succeeded,
        summary.shards,
        out,
        summary.skipped,
    )
    if summary.missing:
        logger.error("%d inputs got no row; run again to continue", summary.missing)
        return 1
    if summary.written and not summary.succeeded:
        logger.error("no image succeeded")
        return 1
    return 0


def demo(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise UsageError('the demo needs Gradio: pip install "dfl-infer[demo]"')
    from dfl_infer.demo import PortInUseError, serve

    try:
        serve(_predictor(args), args.weights, args.host, args.port, args.share)
    except PortInUseError as exc:
        raise UsageError(str(exc)) from None
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*SUBCOMMANDS, "-h", "--help"):
        argv = ["predict", *argv]  # the default command
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
        format="dfl-infer: %(levelname)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"dfl-infer: error: {exc}", file=sys.stderr)
        return 2
    except DetectorUnavailableError as exc:  # no hand model: nothing can run; not a usage error
        print(f"dfl-infer: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dfl-infer: interrupted", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports it
    except BrokenPipeError:
        # The reader went away (`dfl-infer ... | head -c1`): nothing more can be said on stdout,
        # and Python's own flush at exit must not fail again on it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"dfl-infer: error: {type(exc).__name__}: {exc} (--debug shows the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())

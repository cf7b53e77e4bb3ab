"""``dfl-infer demo``: a local web page (Gradio) to try the model on a photo or a webcam.

The page's work is done here, without Gradio, so that it can be tested and timed on its own:
:class:`DemoModel` turns one uploaded file into everything the Photo tab shows (the overlay, the
3D view, the hands' table, the JSON document, a message) and one webcam frame into the Webcam
tab's live overlay (:class:`LiveSession`: the video path's tracker and causal smoother,
``video.LiveVideo``). :func:`build_page` lays the page out with Gradio and :func:`serve` starts
it. Nothing here is imported on the normal paths (the CLI imports it for ``demo`` only), and
Gradio is an extra: ``pip install "dfl-infer[demo]"``.

Every bad input (a file that is not an image, a 900-megapixel PNG, an empty file) ends as a
message on the page; the handlers never raise, so the server goes on serving. The page binds to
127.0.0.1 unless told otherwise (docs/demo.md).
"""

from __future__ import annotations

import base64
import binascii
import collections
import html
import ipaddress
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dfl_infer._atomic import write_json
from dfl_infer.files import FileResult, model_info
from dfl_infer.image import ImageError, open_image
from dfl_infer.joints import HAND_JOINT_NAMES
from dfl_infer.results import Prediction, results_document
from dfl_infer.video import Frame, LiveVideo
from dfl_infer.vis import confidence_colours, draw_prediction
from dfl_infer.vis3d import View3D

if TYPE_CHECKING:
    from dfl_infer.predictor import DFLPredictor

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
# Uploads above this many bytes are refused by the page before they reach the server's disk (a
# 12 MP phone JPEG is 3-8 MB; a 900 MP PNG of one colour is under 1 MB and is refused by
# image.open_image's pixel limit instead).
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
# The overlay shown on the page is reduced to at most this many pixels on its longer side (the
# page shows it smaller anyway) and sent as a JPEG of this quality: a PNG, Gradio's way with an
# array, took 20-40 ms more to encode for a 512 x 512 photo (docs/demo.md, "Latency").
DISPLAY_SIDE = 1600
OVERLAY_QUALITY = 92
# The files of this many past requests are kept in the page's work folder (Gradio serves its
# own copies; its cache of uploads and answers is emptied of files over an hour old, hourly).
KEEP_REQUESTS = 100
# The webcam: a gap between two frames longer than this starts the tracker and the smoother
# afresh (the stream was stopped, or the tab left); the frame rate shown is over this window.
LIVE_RESTART_S = 2.0
FPS_WINDOW_S = 2.0
# The frame rate the webcam's smoother expects (it restarts a hand missing for longer than
# SmoothParams.max_gap frames of it): what the page answered here, 7-9 frames/s on 2 cores.
LIVE_FPS = 10.0
# Frames per second the page asks the webcam for (the server answers as fast as it can).
STREAM_EVERY_S = 0.05
# The examples of a source checkout (a wheel has none: the page then shows no examples).
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png")
EMPTY_MESSAGE = "Upload a photo, paste one (Ctrl+V), or pick an example below."


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_warning(host: str, port: int) -> str | None:
    """What to say when the page listens on more than this machine (None when it does not)."""
    if is_loopback(host):
        return None
    where = "all interfaces" if host in ("0.0.0.0", "::", "") else host
    return (
        f"listening on {where} ({host}:{port}): anyone who can reach this machine on port {port} "
        "can use the page and upload files to it"
    )


@dataclass(frozen=True)
class PhotoResult:
    """What the Photo tab shows for one upload: ``overlay`` (H, W, 3) uint8 RGB (at most
    ``DISPLAY_SIDE`` on its longer side) and ``overlay_path`` the JPEG of it that the page
    shows, ``view3d`` the 3D view page's HTML, ``table`` one row per joint (name, then each
    hand's confidence), ``columns`` its header, ``json_path`` the results JSON (schema of
    ``dfl-infer --out``; ``document`` its content), ``message`` a line for the user (Markdown),
    ``seconds`` the time from reading the file to the JSON written. On failure only ``message``
    is set."""

    message: str
    overlay: np.ndarray | None = None
    overlay_path: Path | None = None
    view3d: str | None = None
    table: list[list[Any]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    json_path: Path | None = None
    document: dict[str, Any] | None = None
    seconds: float = 0.0


class LiveSession:
    """One browser's webcam stream: its own MediaPipe detector in VIDEO mode, the tracker and
    the causal smoother (``video.LiveVideo``), restarted after a gap of ``LIVE_RESTART_S``; and
    the frame rate over the last ``FPS_WINDOW_S``. :meth:`close` frees MediaPipe's graph."""

    def __init__(self) -> None:
        self.detector: Any = None
        self.owns_detector = False
        self.live: LiveVideo | None = None
        self.start = time.monotonic()
        self.last = -math.inf
        self.index = 0
        self.times: collections.deque[float] = collections.deque()

    def clock(self) -> float:
        """Seconds since the session started; restarts the tracking after a long gap."""
        now = time.monotonic() - self.start
        if now - self.last > LIVE_RESTART_S:
            self.live = None
            self.times.clear()
        self.last = now
        self.times.append(now)
        while self.times and now - self.times[0] > FPS_WINDOW_S:
            self.times.popleft()
        return now

    def fps(self) -> float | None:
        """Frames per second handled over the last ``FPS_WINDOW_S`` (None before two frames)."""
        if len(self.times) < 2 or self.times[-1] <= self.times[0]:
            return None
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])

    def close(self) -> None:
        if self.owns_detector and hasattr(self.detector, "close"):
            self.detector.close()
        self.detector = None
        self.owns_detector = False


class DemoModel:
    """The predictor behind the page, shared by every request, one at a time (a lock: MediaPipe,
    the threshold and the flip test are per predictor). ``weights``: as the user named them (for
    the JSON's ``model``); ``workdir``: where the JSON downloads are written (a temporary folder
    by default). The predictor's own ``flip_test`` is the page's default (``dfl-infer demo
    --flip-test``); a request may ask for either."""

    def __init__(
        self,
        predictor: DFLPredictor,
        weights: str | Path | None = None,
        workdir: str | Path | None = None,
    ) -> None:
        self.predictor = predictor
        self.flip_test = predictor.flip_test
        self.model = model_info(predictor, weights)
        self.lock = threading.Lock()
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="dfl-infer-demo-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self._count = 0
        self._count_lock = threading.Lock()

    def _flip(self, flip_test: bool | None) -> bool:
        """A request's flip test: its own, or the page's default for None."""
        return self.flip_test if flip_test is None else bool(flip_test)

    # --- the Photo tab ----------------------------------------------------------------------
    def photo(
        self,
        upload: Any,
        threshold: float = 0.5,
        focal: float | None = None,
        flip_test: bool | None = None,
    ) -> PhotoResult:
        """Everything the Photo tab shows for ``upload``: a path, Gradio's file record (a dict
        with ``path`` and ``orig_name``, or a ``data:`` ``url``), or None. ``flip_test``: None
        for the page's default. Never raises: every failure is a ``PhotoResult`` with only its
        ``message``."""
        try:
            return self._photo(upload, threshold, focal, flip_test)
        except _BadControl as exc:
            return PhotoResult(f"**Check the controls:** {exc}")
        except _Refused as exc:
            return PhotoResult(f"**Cannot use this file:** {exc}")
        except Exception as exc:  # noqa: BLE001 - the page must say it and go on serving
            logger.exception("the demo failed on an upload")
            return PhotoResult(f"**Something went wrong:** {type(exc).__name__}: {exc}")

    def _photo(
        self, upload: Any, threshold: float, focal: float | None, flip_test: bool | None
    ) -> PhotoResult:
        path, name = self._upload_path(upload)
        if path is None:
            return PhotoResult(EMPTY_MESSAGE)
        if not path.is_file():
            raise _Refused(f"{name}: the upload is missing on the server; upload it again")
        if path.stat().st_size == 0:
            raise _Refused(f"{name} is empty (0 bytes)")
        threshold, focal = _controls(threshold, focal)
        start = time.perf_counter()
        try:
            rgb = open_image(path)
        except ImageError as exc:
            raise _Refused(str(exc).replace(str(path), name)) from None
        flip = self._flip(flip_test)
        with self.lock:
            self.predictor.presence_threshold = threshold
            self.predictor.flip_test = flip
            prediction = self.predictor.predict_batch([rgb], focal=focal)[0]
        overlay = _display(draw_prediction(rgb, prediction))
        entry = FileResult(Path(name), rgb, prediction, None).to_dict()
        document = results_document({**self.model, "flip_test": flip}, [entry])
        folder = self._next_folder()
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).stem)
        json_path = folder / f"{stem or 'photo'}.joints.json"
        write_json(json_path, document)
        overlay_path = _write_jpeg(folder / f"{stem or 'photo'}.overlay.jpg", overlay)
        seconds = time.perf_counter() - start
        columns, table = joint_table(prediction)
        view = View3D(title=f"{name}: 3D joints")
        view.add(prediction, name)
        n = len(prediction.hands)
        found = f"{n} hand{'s' if n != 1 else ''}" if n else "no hand"
        summary = "; ".join(
            f"{h.handedness} (score {h.score:.2f})" for h in prediction.hands if h.score == h.score
        )
        message = f"**{name}**: {found}" + (f": {summary}" if summary else "")
        message += f" ({rgb.shape[1]} x {rgb.shape[0]} pixels, {seconds * 1000:.0f} ms"
        message += ", flip test)" if flip else ")"
        if not n:
            message += f". Nothing above the threshold {threshold:g}: try a lower one."
        return PhotoResult(
            message,
            overlay,
            overlay_path,
            view.html(),
            table,
            columns,
            json_path,
            document,
            seconds,
        )

    def _upload_path(self, upload: Any) -> tuple[Path | None, str]:
        """(the uploaded file on this machine, the name the user gave it)."""
        if upload is None:
            return None, ""
        if isinstance(upload, (str, Path)):
            return Path(upload), Path(upload).name
        if not isinstance(upload, dict):
            raise _Refused(f"unexpected upload of type {type(upload).__name__}")
        name = Path(str(upload.get("orig_name") or "")).name
        url = upload.get("url") or ""
        if upload.get("path"):
            path = Path(upload["path"])
            return path, name or path.name
        if isinstance(url, str) and url.startswith("data:"):
            return self._from_data_url(url), name or "pasted image"
        return None, ""

    def _from_data_url(self, url: str) -> Path:
        """A pasted image sent inline (``data:image/png;base64,...``) written to a file."""
        head, _, body = url.partition(",")
        if not head.endswith(";base64"):
            raise _Refused("the pasted data is not base64-encoded")
        if len(body) > MAX_UPLOAD_BYTES * 4 // 3 + 4:
            raise _Refused(f"the pasted image is over {MAX_UPLOAD_BYTES // 2**20} MB")
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise _Refused("the pasted data is not valid base64") from None
        path = self._next_folder() / "pasted.img"
        path.write_bytes(data)
        return path

    def _next_folder(self) -> Path:
        """A new folder for one request's files (the names the user sees stay theirs); the
        folder of ``KEEP_REQUESTS`` requests ago is removed (Gradio has copied what it serves
        into its own cache by then)."""
        with self._count_lock:
            self._count += 1
            count = self._count
        shutil.rmtree(self.workdir / f"{count - KEEP_REQUESTS:06d}", ignore_errors=True)
        folder = self.workdir / f"{count:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # --- the Webcam tab ---------------------------------------------------------------------
    def frame(
        self,
        session: LiveSession,
        rgb: np.ndarray | None,
        threshold: float = 0.5,
        focal: float | None = None,
        flip_test: bool | None = None,
    ) -> tuple[np.ndarray | None, str]:
        """One webcam frame through the video path's tracker and smoother: (the overlay, a
        status line with the frame rate). ``flip_test``: None for the page's default. Never
        raises."""
        if rgb is None:
            return None, "Start the webcam (allow the browser to use it)."
        try:
            threshold, focal = _controls(threshold, focal)
            image = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[:, :, :3])
            now = session.clock()
            start = time.perf_counter()
            with self.lock:
                if session.detector is None:
                    session.detector = _video_detector(self.predictor)
                    session.owns_detector = session.detector is not self.predictor.detector
                if session.live is None:
                    session.live = LiveVideo(self.predictor, session.detector, fps=LIVE_FPS)
                self.predictor.presence_threshold = threshold
                self.predictor.flip_test = self._flip(flip_test)
                result = session.live.add(Frame(session.index, now, image), focal=focal)
            session.index += 1
            ms = (time.perf_counter() - start) * 1000
            fps = session.fps()
            rate = f"{fps:.1f} frames/s" if fps is not None else "starting"
            if result.prediction is None:
                return image, f"{rate}; this frame failed: {result.error}"
            hands = ", ".join(
                h.handedness + (" (tracked)" if h.coasting else "") for h in result.prediction.hands
            )
            overlay = draw_prediction(image, result.prediction)
            return overlay, f"{rate}, {ms:.0f} ms per frame; hands: {hands or 'none'}"
        except _Refused as exc:
            return None, f"Check the controls: {exc}"
        except Exception as exc:  # noqa: BLE001 - the stream must go on
            logger.exception("the demo failed on a webcam frame")
            return None, f"Something went wrong: {type(exc).__name__}: {exc}"


class PortInUseError(OSError):
    """The page's port cannot be listened on."""


class _Refused(Exception):
    """An upload the page cannot use: its message is shown to the user."""


class _BadControl(_Refused):
    """A threshold or focal length the predictor cannot take: its message is shown."""


def _controls(threshold: Any, focal: Any) -> tuple[float, float | None]:
    """The page's threshold and focal length as the predictor takes them (a focal length of 0
    or none: assumed from the image's size)."""
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise _BadControl(f"the threshold must be a number, got {threshold!r}") from None
    if not 0.0 <= t <= 1.0:
        raise _BadControl(f"the threshold must lie in [0, 1], got {t:g}")
    if focal in (None, ""):
        return t, None
    try:
        f = float(focal)
    except (TypeError, ValueError):
        raise _BadControl(f"the focal length must be a number, got {focal!r}") from None
    if f == 0:
        return t, None
    if not (math.isfinite(f) and f > 0):
        raise _BadControl(
            f"the focal length must be positive (pixels), or 0 for assumed; got {f:g}"
        )
    return t, f


def _video_detector(predictor: DFLPredictor) -> Any:
    """A MediaPipe detector in VIDEO mode with the predictor's detector's settings."""
    from dfl_infer.detect import HandDetector

    base = predictor.detector
    if not isinstance(base, HandDetector):  # a stand-in detector (tests): used as it is
        return base
    return HandDetector(
        base.bundle,
        base.max_hands,
        base.min_detection_confidence,
        base.min_presence_confidence,
        base.allow_download,
        video=True,
    )


def _write_jpeg(path: Path, rgb: np.ndarray) -> Path:
    import cv2

    ok, data = cv2.imencode(
        ".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, OVERLAY_QUALITY]
    )
    if not ok:
        raise OSError(f"cannot encode the overlay as a JPEG ({rgb.shape})")
    path.write_bytes(data.tobytes())
    return path


def _display(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` reduced to at most ``DISPLAY_SIDE`` pixels on its longer side."""
    import cv2

    h, w = rgb.shape[:2]
    scale = DISPLAY_SIDE / max(h, w)
    if scale >= 1:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out: np.ndarray = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return out


def joint_table(prediction: Prediction) -> tuple[list[str], list[list[Any]]]:
    """The per-joint confidence table: header (``joint``, then one column per hand, named by
    its side, the side's probability where known, and score) and one row per joint
    (``HAND_JOINT_NAMES`` order, confidence rounded to 0.01, None where unknown), then a
    ``mean`` row."""
    columns = ["joint"]
    values: list[np.ndarray] = []
    for k, hand in enumerate(prediction.hands, 1):
        score = f"{hand.score:.2f}" if np.isfinite(hand.score) else "?"
        side = hand.handedness
        if hand.handedness_score is not None:
            side += f" ({hand.handedness_score:.2f})"  # how sure the network is of the side
        columns.append(f"hand {k}: {side}, score {score}")
        conf = hand.joint_confidence
        values.append(
            np.full(len(HAND_JOINT_NAMES), np.nan) if conf is None else np.asarray(conf, float)
        )
    rows: list[list[Any]] = []
    for j, name in enumerate(HAND_JOINT_NAMES):
        rows.append([name, *(_cell(v[j]) for v in values)])
    rows.append(["mean", *(_cell(float(np.mean(v))) for v in values)])
    return columns, rows


def _cell(value: float) -> float | None:
    return round(float(value), 2) if np.isfinite(value) else None


def table_html(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The per-joint confidence table as HTML, each value's cell filled with its colour on the
    overlays' ramp (red 0, yellow 0.5, white 1)."""
    if len(columns) < 2:
        return '<div id="hands-empty" style="color:#888">No hand.</div>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for name, *values in rows:
        cells = [f"<td>{html.escape(str(name))}</td>"]
        for v in values:
            if v is None:
                cells.append("<td>?</td>")
                continue
            r, g, b = confidence_colours(np.array([v]), 1)[0]
            cells.append(f'<td style="background:rgb({r},{g},{b});color:#111">{v:.2f}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<div style="max-height:420px;overflow:auto"><table class="joint-table" '
        'style="width:100%;border-collapse:collapse;font-size:13px">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def view3d_frame(page: str | None, height: int = 420) -> str:
    """The 3D view page inside the page: an iframe holding it (scripts allowed, nothing else:
    the view needs no network and cannot reach the demo page)."""
    if page is None:
        return (
            f'<div id="view3d-empty" style="height:{height}px;display:flex;align-items:center;'
            'justify-content:center;color:#888">The 3D joints appear here.</div>'
        )
    return (
        f'<iframe id="view3d-frame" title="3D joints" sandbox="allow-scripts" '
        f'style="width:100%;height:{height}px;border:0" srcdoc="{html.escape(page)}"></iframe>'
    )


def example_files(folder: Path = EXAMPLES) -> list[str]:
    """The example photos offered on the page (those of a source checkout's examples/)."""
    if not folder.is_dir():
        return []
    return [str(p) for p in sorted(folder.iterdir()) if p.suffix.lower() in EXAMPLE_SUFFIXES]


def _intro(model: dict[str, Any]) -> str:
    return (
        "# dfl-infer: 3D hand joints from a photo\n"
        "Upload or paste a photo, or pick an example: the page shows both hands' joints on the "
        "photo (right hands orange, left hands blue, each joint's dot from red, unsure, to "
        "white, sure), their 3D joints (drag to turn them), each hand's side, score and per-joint "
        "confidence, and the JSON that `dfl-infer --out` writes. The **Webcam** tab runs the "
        "video tracker and smoother on your camera. "
        f"Model: `{model['weights']}` ({model['backbone']}, {model['backend']} on "
        f"{model['device']}). Runs on this machine; nothing is sent elsewhere."
    )


def build_page(model: DemoModel, examples: Sequence[str] | None = None) -> Any:
    """The page: a ``gradio.Blocks`` (not launched). ``examples``: photos to offer (default:
    :func:`example_files`)."""
    import gradio as gr

    examples = example_files() if examples is None else list(examples)
    with gr.Blocks(
        title="dfl-infer demo", analytics_enabled=False, delete_cache=(3600, 3600)
    ) as page:
        gr.Markdown(_intro(model.model))
        with gr.Row():
            threshold = gr.Slider(
                0.0,
                1.0,
                value=0.5,
                step=0.01,
                label="Presence threshold",
                info="a hand is reported when the network's presence is at least this",
                elem_id="threshold",
            )
            focal = gr.Number(
                value=0,
                minimum=0,
                label="Focal length (pixels)",
                info="0: assumed (the image's longer side); sets the 3D depth",
                elem_id="focal",
            )
            flip = gr.Checkbox(
                value=model.flip_test,
                label="Flip test",
                info="also run each crop mirrored and average the two: more accurate joints, "
                "about twice the network's time",
                elem_id="flip-test",
            )
        with gr.Tab("Photo", id="photo-tab"):
            with gr.Row():
                with gr.Column(scale=1):
                    photo = gr.Image(
                        label="Photo",
                        sources=["upload", "clipboard"],
                        type="filepath",
                        elem_id="photo",
                        height=420,
                    )
                    if examples:
                        gr.Examples(examples, inputs=[photo], label="Examples")
                with gr.Column(scale=1):
                    overlay = gr.Image(
                        label="Joints",
                        type="filepath",
                        interactive=False,
                        buttons=["download", "fullscreen"],
                        elem_id="overlay",
                        height=420,
                    )
                    message = gr.Markdown(EMPTY_MESSAGE, elem_id="message")
                    download = gr.DownloadButton(
                        "Download the JSON", visible=False, elem_id="download"
                    )
            with gr.Row():
                with gr.Column(scale=1):
                    view3d = gr.HTML(view3d_frame(None), label="3D joints", elem_id="view3d")
                with gr.Column(scale=1):
                    gr.Markdown("Per-joint confidence (0 to 1), per hand: side and score")
                    table = gr.HTML(table_html([], []), elem_id="hands")

            details = gr.State(None)

            def on_photo(upload: Any, t: Any, f: Any, flipped: Any) -> tuple[Any, ...]:
                r = model.photo(upload, t, f, flipped)
                return (
                    str(r.overlay_path) if r.overlay_path else None,
                    r.message,
                    gr.DownloadButton(
                        value=str(r.json_path) if r.json_path else None,
                        visible=r.json_path is not None,
                    ),
                    (r.view3d, r.columns, r.table),
                )

            def on_details(d: tuple[Any, ...] | None) -> tuple[str, str]:
                view, columns, rows = d or (None, [], [])
                return view3d_frame(view), table_html(columns, rows)

            # The overlay first, then the 3D view and the table: the page shows the photo's
            # joints as soon as they are drawn (docs/demo.md, "Latency").
            outputs = [overlay, message, download, details]
            photo.clear(
                lambda: on_photo(None, 0.5, 0, None), outputs=outputs, show_progress="hidden"
            ).then(on_details, inputs=[details], outputs=[view3d, table], show_progress="hidden")
            triggers = (photo.change, threshold.release, focal.submit, focal.blur, flip.input)
            for trigger in triggers:
                trigger(
                    on_photo,
                    inputs=[photo, threshold, focal, flip],
                    outputs=outputs,
                    preprocess=False,  # the file as uploaded: image.open_image reads it
                    trigger_mode="always_last",
                    show_progress="minimal",
                    show_progress_on=overlay,
                ).then(
                    on_details,
                    inputs=[details],
                    outputs=[view3d, table],
                    show_progress="hidden",
                )
        with gr.Tab("Webcam", id="webcam-tab"):
            gr.Markdown(
                "Shown as the camera sees it (not mirrored), so that right and left are the "
                "person's own. Frames go through the video path: MediaPipe's VIDEO mode, the "
                "hand tracker and the causal (One-Euro) smoother."
            )
            with gr.Row():
                camera = gr.Image(
                    label="Webcam",
                    sources=["webcam"],
                    streaming=True,
                    type="numpy",
                    webcam_options=gr.WebcamOptions(mirror=False),
                    elem_id="camera",
                )
                live = gr.Image(
                    label="Live joints",
                    format="jpeg",
                    interactive=False,
                    buttons=["fullscreen"],
                    elem_id="live",
                )
            status = gr.Markdown("", elem_id="live-status")
            session = gr.State(None, delete_callback=lambda s: s.close() if s else None)

            def on_frame(
                rgb: Any, t: Any, f: Any, flipped: Any, s: LiveSession | None
            ) -> tuple[Any, ...]:
                s = s or LiveSession()
                drawn, line = model.frame(s, rgb, t, f, flipped)
                return drawn, line, s

            camera.stream(
                on_frame,
                inputs=[camera, threshold, focal, flip, session],
                outputs=[live, status, session],
                stream_every=STREAM_EVERY_S,
                concurrency_limit=1,
                show_progress="hidden",
            )
    return page


def serve(
    predictor: DFLPredictor,
    weights: str | Path | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    share: bool = False,
) -> None:
    """Serve the page for ``predictor`` (``weights``: as the user named them) until interrupted
    (Ctrl+C). Needs Gradio (``pip install "dfl-infer[demo]"``)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing sent anywhere
    import gradio as gr

    # Gradio checks its own server with httpx: one INFO line per request otherwise.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    model = DemoModel(predictor, weights)
    page = build_page(model)
    warning = listen_warning(host, port)
    if warning:
        logger.warning("%s", warning)
    if share:
        logger.warning("--share: the page gets a public address on Gradio's share servers")
    # System fonts: the default theme's web fonts would be fetched from the internet.
    theme = gr.themes.Default(
        font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    page.queue(default_concurrency_limit=1)
    try:
        try:
            page.launch(
                prevent_thread_lock=True,  # started here; served below until Ctrl+C
                server_name=host,
                server_port=port,
                share=share,
                max_file_size=MAX_UPLOAD_BYTES,
                allowed_paths=[str(EXAMPLES)] if EXAMPLES.is_dir() else None,
                theme=theme,
                ssr_mode=False,
                quiet=True,
                footer_links=["settings"],
            )
        except OSError as exc:
            if "empty port" in str(exc):  # Gradio's words for a port it cannot bind
                raise PortInUseError(
                    f"cannot listen on {host}:{port} (in use, or not allowed): choose another "
                    "--port"
                ) from None
            raise
        logger.info("the demo is at http://%s:%d (Ctrl+C stops it)", _url_host(host), port)
        page.block_thread()
    finally:
        predictor.close()


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DemoModel",
    "LiveSession",
    "PhotoResult",
    "PortInUseError",
    "build_page",
    "example_files",
    "is_loopback",
    "joint_table",
    "listen_warning",
    "serve",
]

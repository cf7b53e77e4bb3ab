"""Headless Chromium driven over the Chrome DevTools Protocol, for the demo page's tests and its
latency benchmark (tests/test_demo.py, benchmarks/demo_latency.py).

No driver package: Chromium (Debian's ``chromium``) is started with ``--remote-debugging-pipe``
and spoken to as it expects, JSON messages ended by a NUL byte on its file descriptors 3 (in) and
4 (out), with the standard library only. :class:`Browser` opens one page; :meth:`Browser.eval`
runs JavaScript in it, :meth:`Browser.upload` sets the files of an ``<input type=file>`` as a
user's choice does (with its change event), :meth:`Browser.screenshot` returns its pixels.
:func:`demo_server` runs ``dfl-infer demo`` on a free port for as long as a ``with`` lasts.
"""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def demo_server(
    log: Path, start_timeout: float = 180.0
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``dfl-infer demo --port P`` (this checkout) in a process of its own, output to ``log``:
    yields (its address, the process) once the page answers; stopped with Ctrl+C (SIGINT) at the
    end. RuntimeError if it exits or does not answer within ``start_timeout`` seconds, or does not
    stop on Ctrl+C within 30 s (then it is killed)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    # Run from a background shell, this process has SIGINT ignored and the demo would inherit
    # that (a Python handler is not inherited across exec, so setting one gives it the default).
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRADIO_ANALYTICS_ENABLED": "False"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dfl_infer.cli", "demo", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
    try:
        end = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the demo exited: {log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as page:
                    if page.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > end:
                raise RuntimeError(
                    f"the demo did not start in {start_timeout:g} s: {log.read_text()}"
                )
            time.sleep(0.5)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError("the demo did not stop on Ctrl+C (SIGINT) within 30 s") from None


def find_chromium() -> str | None:
    """Chromium's executable: ``$DFL_CHROMIUM``, else chromium / chromium-browser /
    google-chrome on the PATH (as tests/test_vis3d.py looks for it); None when there is none."""
    for name in (os.environ.get("DFL_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


def write_y4m(path: str | Path, rgb: np.ndarray, frames: int = 1, fps: int = 30) -> Path:
    """A Y4M video of ``frames`` copies of ``rgb`` (H, W, 3) uint8 (even sides), for
    ``camera``: what Chromium's fake webcam shows."""
    import cv2

    h, w = rgb.shape[:2]
    yuv = cv2.cvtColor(
        np.ascontiguousarray(rgb[: h // 2 * 2, : w // 2 * 2]), cv2.COLOR_RGB2YUV_I420
    )
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w // 2 * 2} H{h // 2 * 2} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + yuv.tobytes())
    return Path(path)


class BrowserError(RuntimeError):
    """Chromium said no, or did not answer in time."""


class Browser:
    """One headless Chromium with one page (``width`` x ``height`` CSS pixels), its profile and
    downloads in ``workdir``; ``camera``: a .y4m or .mjpeg file that its (fake) webcam plays in a
    loop (else Chromium's test pattern). Use as a context manager; :meth:`close` ends it."""

    def __init__(
        self,
        workdir: str | Path,
        width: int = 1280,
        height: int = 1000,
        camera: str | Path | None = None,
        executable: str = "",
    ) -> None:
        exe = executable or find_chromium()
        if not exe:
            raise BrowserError("no Chromium (apt-get install chromium, or set DFL_CHROMIUM)")
        self.workdir = Path(workdir)
        self.downloads = self.workdir / "downloads"
        self.downloads.mkdir(parents=True, exist_ok=True)
        args = [
            exe,
            "--headless",
            "--no-sandbox",  # tests run as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--disable-dev-shm-usage",  # containers often have a small /dev/shm
            "--hide-scrollbars",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--remote-debugging-pipe",
            # A camera that needs no hardware and no permission prompt (the Webcam tab).
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            *([f"--use-file-for-fake-video-capture={camera}"] if camera else []),
            f"--user-data-dir={self.workdir / 'profile'}",
            f"--window-size={width},{height}",
        ]
        self.log = (self.workdir / "chromium.log").open("wb")
        # The shell hands our pipes to Chromium as its descriptors 3 and 4.
        self.proc = subprocess.Popen(
            ["sh", "-c", 'exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2', *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self._next = 0
        self._lock = threading.Lock()
        self._replies: dict[int, queue.Queue[dict[str, Any]]] = {}
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        self.call(
            "Browser.setDownloadBehavior",
            {"behavior": "allow", "downloadPath": str(self.downloads), "eventsEnabled": True},
        )
        for domain in ("Page", "Runtime", "DOM"):
            self.call(f"{domain}.enable", page=True)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            page=True,
        )

    def _read(self) -> None:
        assert self.proc.stdout is not None
        buffer = b""
        while True:
            chunk = self.proc.stdout.read1(65536)
            if not chunk:
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        box = self._replies.get(message["id"])
                    if box is not None:
                        box.put(message)
                else:
                    self.events.put(message)

    def call(
        self, method: str, params: dict[str, Any] | None = None, page: bool = False, timeout=60.0
    ) -> dict[str, Any]:
        """Send one command (to the page when ``page``, else to the browser); its result."""
        with self._lock:
            self._next += 1
            ident = self._next
            box: queue.Queue[dict[str, Any]] = queue.Queue()
            self._replies[ident] = box
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if page:
            message["sessionId"] = self.session
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\0")
        self.proc.stdin.flush()
        try:
            reply = box.get(timeout=timeout)
        except queue.Empty:
            raise BrowserError(f"{method}: no answer in {timeout:g} s") from None
        finally:
            with self._lock:
                self._replies.pop(ident, None)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def goto(self, url: str, timeout: float = 60.0) -> None:
        """Open ``url`` and wait until its document has loaded."""
        self.call("Page.navigate", {"url": url}, page=True)
        self.wait("document.readyState === 'complete'", timeout)

    def eval(self, expression: str, timeout: float = 60.0) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            page=True,
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(
        self, expression: str, timeout: float = 60.0, every: float = 0.05, what: str = ""
    ) -> Any:
        """Poll ``expression`` until it is truthy; its value. BrowserError after ``timeout``."""
        end = time.monotonic() + timeout
        while True:
            value = self.eval(expression)
            if value:
                return value
            if time.monotonic() > end:
                raise BrowserError(f"waited {timeout:g} s for {what or expression}")
            time.sleep(every)

    def upload(self, selector: str, path: str | Path) -> None:
        """Choose ``path`` in the file input ``selector`` (fires its input and change events)."""
        root = self.call("DOM.getDocument", {"depth": 0}, page=True)["root"]["nodeId"]
        node = self.call("DOM.querySelector", {"nodeId": root, "selector": selector}, page=True)
        if not node.get("nodeId"):
            raise BrowserError(f"no element {selector!r} on the page")
        self.call(
            "DOM.setFileInputFiles",
            {"files": [str(Path(path).resolve())], "nodeId": node["nodeId"]},
            page=True,
        )

    def screenshot(self, selector: str | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB of the page's viewport, or of the element ``selector`` only."""
        from PIL import Image

        params: dict[str, Any] = {"format": "png"}
        if selector is not None:
            box = self.eval(
                f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                " if (!e) return null; e.scrollIntoView({block: 'center'});"
                " const r = e.getBoundingClientRect();"
                " return [r.x + scrollX, r.y + scrollY, r.width, r.height]; })()"
            )
            if not box:
                raise BrowserError(f"no element {selector!r} on the page")
            x, y, w, h = box
            params["clip"] = {"x": x, "y": y, "width": w, "height": h, "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", params, page=True)["data"]
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            return np.asarray(im.convert("RGB"))

    def wait_download(self, timeout: float = 30.0) -> Path:
        """The next file Chromium finished downloading (into ``self.downloads``)."""
        end = time.monotonic() + timeout
        names: dict[str, str] = {}
        while time.monotonic() < end:
            try:
                event = self.events.get(timeout=0.1)
            except queue.Empty:
                continue
            params = event.get("params", {})
            if event.get("method") == "Browser.downloadWillBegin":
                names[params["guid"]] = params["suggestedFilename"]
            elif event.get("method") == "Browser.downloadProgress":
                if params.get("state") == "completed":
                    return self.downloads / names.get(params["guid"], params["guid"])
                if params.get("state") == "canceled":
                    raise BrowserError("the download was cancelled")
        raise BrowserError(f"no download finished in {timeout:g} s")

    def drain_events(self, keep: Callable[[dict[str, Any]], bool] = lambda e: False) -> None:
        """Forget the events so far (except those ``keep`` wants, put back)."""
        kept = []
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            if keep(event):
                kept.append(event)
        for event in kept:
            self.events.put(event)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("Browser.close", timeout=5)
            except (BrowserError, OSError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

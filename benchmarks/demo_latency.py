"""Latency of the demo page: the time from choosing a photo on the page to its overlay shown,
next to the command line's time for the same photo (issue 23: the page should add at most
150 ms).

    python benchmarks/demo_latency.py [--photo examples/two_hands.jpg] [--repeats 10]
        [--cli-repeats 3] [--json out.json]

Three figures, medians over the repeats:

- ``page``: in headless Chromium (benchmarks/_browser.py) on ``dfl-infer demo`` started here,
  from the file input's change event (the user's choice) to the load event of the overlay image
  that answers it, both on the page's own clock (``performance.now``): the upload, Gradio's
  queue and its messages, reading and predicting, drawing, the PNG and its download (the
  browser's cache off). Each repeat clears the page and uploads a copy of the photo with another
  name;
- ``cli_image``: what ``dfl-infer PHOTO --out x.json`` spends on the photo once its model is
  loaded, timed in this process (``--repeats`` times): ``files.predict_files`` (read, detect,
  predict), the JSON document and its atomic write, the first run left out (MediaPipe's start);
- ``cli_command``: the whole command's wall time (a new process each time: imports, model
  loading, MediaPipe's start and the photo).

``page - cli_image`` is what the page adds to the work the command does for the photo; the
server's own time for each upload (open, predict, draw, JSON) is in the page's message and
printed as ``server``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling helper module only

from _browser import Browser, demo_server  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# Installed in the page: the time of the last choice in the photo's file input, and of the load
# of the first overlay image after it.
HOOK = """
window.__lat = {start: null, end: null};
document.addEventListener('change', (e) => {
  if (e.target.matches && e.target.matches('#photo input[type=file]')) {
    window.__lat = {start: performance.now(), end: null};
  }
}, true);
document.addEventListener('load', (e) => {
  if (e.target.matches && e.target.matches('#overlay img') && window.__lat.start !== null
      && window.__lat.end === null) {
    window.__lat.end = performance.now();
  }
}, true);
true
"""


def cli_times(
    photo: Path, commands: int, repeats: int, work: Path
) -> tuple[list[float], list[float]]:
    """(the command's wall times, ``commands`` runs; the in-process per-photo times, ``repeats``
    runs after a first one), seconds."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = []
    for k in range(commands):
        out = work / f"cli-{k}.json"
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "dfl_infer.cli", str(photo), "--out", str(out), "-q"],
            check=True,
            env=env,
            capture_output=True,
        )
        command.append(time.perf_counter() - start)
    from dfl_infer._atomic import write_json
    from dfl_infer.files import model_info, predict_files
    from dfl_infer.predictor import DFLPredictor
    from dfl_infer.results import results_document

    predictor = DFLPredictor()
    info = model_info(predictor, None)
    per_photo = []
    for k in range(repeats + 1):
        start = time.perf_counter()
        records = [r.to_dict() for r in predict_files(predictor, [photo])]
        write_json(work / f"warm-{k}.json", results_document(info, records))
        if k:  # the first: MediaPipe's graph is built
            per_photo.append(time.perf_counter() - start)
    predictor.close()
    return command, per_photo


def page_times(photo: Path, repeats: int, work: Path) -> tuple[list[float], list[float]]:
    """(the page's choice-to-overlay times, the server's own times from its message), s."""
    with demo_server(work / "server.log") as (url, _):
        copies = []
        for k in range(repeats + 1):
            copy = work / f"{photo.stem}-{k}{photo.suffix}"
            shutil.copyfile(photo, copy)
            copies.append(copy)
        page, server_s = [], []
        with Browser(work / "browser") as b:
            b.goto(url)
            b.wait("!!document.querySelector('#photo input[type=file]')", what="the page")
            b.eval(HOOK)
            # Every overlay fetched from the server: the same photo gives the same overlay,
            # which Gradio serves at the same address.
            b.call("Network.enable", page=True)
            b.call("Network.setCacheDisabled", {"cacheDisabled": True}, page=True)
            for k, copy in enumerate(copies):
                # Cleared first (the photo's remove button), so that the answer is a new image.
                b.eval(
                    "document.querySelector('#photo button[aria-label=\"Remove Image\"]')"
                    "?.click(); true"
                )
                b.wait("!document.querySelector('#overlay img')", what="the cleared page")
                b.upload("#photo input[type=file]", copy)
                lat = b.wait(
                    "window.__lat.end !== null && window.__lat", timeout=120, what="overlay"
                )
                message = b.wait(
                    "(() => { const m = document.querySelector('#message').innerText;"
                    f" return m.includes({json.dumps(copy.name)}) ? m : ''; }})()",
                    what="the message",
                )
                if k:  # the first: MediaPipe's graph is built in the server
                    page.append((lat["end"] - lat["start"]) / 1000)
                    server_s.append(float(message.rsplit(", ", 1)[1].split(" ms")[0]) / 1000)
        return page, server_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", type=Path, default=REPO / "examples" / "two_hands.jpg")
    parser.add_argument(
        "--repeats", type=int, default=10, help="uploads and in-process photos timed (default 10)"
    )
    parser.add_argument("--cli-repeats", type=int, default=3, help="commands timed (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        command, per_photo = cli_times(args.photo.resolve(), args.cli_repeats, args.repeats, work)
        page, server_s = page_times(args.photo.resolve(), args.repeats, work)
    ms = {
        "page": statistics.median(page) * 1000,
        "server": statistics.median(server_s) * 1000,
        "cli_image": statistics.median(per_photo) * 1000,
        "cli_command": statistics.median(command) * 1000,
    }
    ms["page_adds"] = ms["page"] - ms["cli_image"]
    ms["page_minus_server"] = ms["page"] - ms["server"]
    result = {
        "photo": str(args.photo),
        "repeats": args.repeats,
        "cli_repeats": args.cli_repeats,
        "median_ms": {k: round(v, 1) for k, v in ms.items()},
        "page_ms": [round(v * 1000, 1) for v in page],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "load_average": os.getloadavg(),
        "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
    }
    print(f"photo: {args.photo} ({args.repeats} uploads, {args.cli_repeats} commands)")
    print(f"  page, choice to overlay:      {ms['page']:7.1f} ms (median)")
    print(f"    of which the server's work: {ms['server']:7.1f} ms")
    print(f"  CLI, the photo (model loaded): {ms['cli_image']:6.1f} ms")
    print(f"  CLI, the whole command:       {ms['cli_command']:7.1f} ms")
    print(f"  the page adds:                {ms['page_adds']:7.1f} ms (target: at most 150)")
    print(f"  page minus the server's work: {ms['page_minus_server']:7.1f} ms")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

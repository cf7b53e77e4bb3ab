"""Where a weights folder's files are, without PyTorch: a local folder or a Hugging Face Hub repo
(through huggingface_hub's cache, so ``HF_HUB_OFFLINE=1`` uses what is cached), plus the optional
pre-exported ``model.onnx`` that lets the onnxruntime backend run without importing torch
(``dfl_infer.backends``). ``weights.py`` re-exports these names.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
# Optional: the network pre-exported for onnxruntime, tied to WEIGHTS_NAME by its sha256
# (``dfl-infer export-onnx --into-weights``; dfl_infer.backends.onnx_for_weights checks it).
ONNX_NAME = "model.onnx"
# Metadata keys of such a model.onnx: the sha256 of the model.safetensors it was exported from,
# and the network's parameter count.
WEIGHTS_SHA_KEY = "weights_sha256"
PARAMETERS_KEY = "num_parameters"


class WeightsError(ValueError):
    """Weights that cannot be used: missing, truncated, corrupt, or not matching the config."""


def _looks_local(name: str) -> bool:
    """A path the user meant as a folder rather than a Hub id ``org/name``."""
    return (
        name.startswith((".", "/", "~"))
        or "\\" in name
        or name.count("/") != 1
        or Path(name).exists()
    )


def resolve_files(name_or_path: str | Path, revision: str | None = None) -> tuple[Path, Path]:
    """Local paths of (config.json, model.safetensors) for a folder or a Hub repo id.

    Hub files go through huggingface_hub's cache, so ``HF_HUB_OFFLINE=1`` uses what is cached.
    """
    name = str(name_or_path)
    folder = Path(name).expanduser()
    if folder.is_dir():
        files = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(
                    f"{folder} has no {f.name}: a DFL weights folder holds {CONFIG_NAME} and "
                    f"{WEIGHTS_NAME} (written by DFLModel.save_pretrained)"
                )
        return files
    if _looks_local(name):
        raise FileNotFoundError(f"weights folder not found: {folder}")
    return _download(name, revision)


# Seconds to wait for the Hub to accept a connection before taking it for unreachable: without
# this, huggingface_hub's own timeouts and retries took about 40 s to give up offline.
HUB_PROBE_TIMEOUT_S = 3.0


# A probe's answer is reused for this long, so the several files of one load (and a second load
# right after, as DFLPredictor's backend choice does) wait for one probe, not one each.
HUB_PROBE_TTL_S = 60.0
_probes: dict[str, tuple[float, bool]] = {}  # endpoint -> (monotonic time, reachable)


def hub_offline() -> bool:
    """Whether to use only the local Hub cache: ``HF_HUB_OFFLINE`` is set, or the endpoint did not
    accept a connection (:func:`hub_reachable`, asked at most once per ``HUB_PROBE_TTL_S``)."""
    import time

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return True
    now = time.monotonic()
    cached = _probes.get(constants.ENDPOINT)
    if cached is None or now - cached[0] > HUB_PROBE_TTL_S:
        cached = (now, hub_reachable(constants.ENDPOINT))
        _probes[constants.ENDPOINT] = cached
    return not cached[1]


def hub_reachable(endpoint: str, timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``endpoint``'s host opens within ``timeout`` seconds (name
    resolution included: it runs in a thread, so a resolver that hangs cannot stall us)."""
    import socket
    import threading
    from urllib.parse import urlsplit

    url = urlsplit(endpoint)
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _download(repo_id: str, revision: str | None) -> tuple[Path, Path]:
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = hub_offline()
    paths = []
    for filename in (CONFIG_NAME, WEIGHTS_NAME):
        try:
            paths.append(
                Path(
                    hf_hub_download(repo_id, filename, revision=revision, local_files_only=offline)
                )
            )
        except RepositoryNotFoundError:
            raise FileNotFoundError(
                f"{repo_id!r} is neither a local folder nor a Hugging Face Hub model repo "
                "you can access"
            ) from None
        except RevisionNotFoundError:
            raise FileNotFoundError(f"Hub repo {repo_id!r} has no revision {revision!r}") from None
        # LocalEntryNotFoundError subclasses EntryNotFoundError: test it first.
        except LocalEntryNotFoundError:
            raise FileNotFoundError(
                f"weights {repo_id!r}: no local folder ./{repo_id}, {filename} not in the local "
                f"Hub cache ({constants.HF_HUB_CACHE}), and the Hugging Face Hub "
                f"({constants.ENDPOINT}) is unreachable (or HF_HUB_OFFLINE=1). To work offline, "
                "pass a local weights folder (config.json + model.safetensors), or fetch the "
                "model once while online; HF_HUB_OFFLINE=1 then skips the network"
            ) from None
        except EntryNotFoundError:
            raise FileNotFoundError(f"Hub repo {repo_id!r} has no {filename}") from None
        except HfHubHTTPError as exc:
            raise FileNotFoundError(f"cannot fetch {filename} of {repo_id!r}: {exc}") from None
    return paths[0], paths[1]


def resolve_onnx(name_or_path: str | Path, revision: str | None = None) -> Path | None:
    """The local path of a weights folder's optional ``model.onnx`` (a Hub repo's from the cache,
    or downloaded when the Hub is reachable), or None when there is none."""
    folder = Path(str(name_or_path)).expanduser()
    if folder.is_dir():
        path = folder / ONNX_NAME
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download

    offline = hub_offline()
    try:
        return Path(
            hf_hub_download(
                str(name_or_path), ONNX_NAME, revision=revision, local_files_only=offline
            )
        )
    except Exception as exc:  # noqa: BLE001 - optional file: any failure means "not there"
        logger.debug("no %s for %s: %s", ONNX_NAME, name_or_path, exc)
        return None


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

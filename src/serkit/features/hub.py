"""Where encoder weights come from: a local folder, the Hugging Face cache, or the Hub when allowed.

Shared by every encoder family (`serkit.features.ssl`, `serkit.features.whisper`). Loading tries
the local folder or cache first and goes to the network only when allowed: with
``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1``, or when the Hub cannot be reached within a few
seconds, a missing model fails at once with `ModelNotAvailableError`, which says how to fetch it.
`resolve_revision` names the exact weights for cache fingerprints without any network: the
commit of a cached snapshot, or a digest of a local folder's config and weight files.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "ModelNotAvailableError",
    "folder_digest",
    "from_pretrained",
    "is_final_revision",
    "offline_mode",
    "resolve_revision",
]

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_HUB_PROBE_TIMEOUT_S = 3.0
#: Files whose bytes identify a model's weights (transformers, PyTorch, CTranslate2's model.bin).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


class ModelNotAvailableError(OSError):
    """An encoder that is neither cached nor local and cannot be downloaded now.

    The message names the model and says how to fetch it on a connected machine.
    """

    def __init__(self, model: str, revision: str, reason: str, hint: str | None = None) -> None:
        """`hint` replaces the default advice (fetching from the Hub) when another fix applies."""
        advice = hint or (
            f"On a machine with internet run `hf download {model} --revision {revision}` "
            f"(older clients: `huggingface-cli download {model} --revision {revision}`), then copy "
            "the Hugging Face cache (~/.cache/huggingface/hub, or $HF_HUB_CACHE) to this machine, "
            "or save the model folder there and pass its path as `model`."
        )
        super().__init__(f"model {model!r} (revision {revision!r}) is not available: {reason}. {advice}")
        self.model = model
        self.revision = revision
        self.reason = reason


def offline_mode() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, read now (the libraries read them at import)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    return False


def _hub_address() -> tuple[str, int]:
    """Host and port a download would connect to first: the proxy if one is set, else the Hub."""
    from huggingface_hub import constants

    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    url = urllib.parse.urlparse(endpoint)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        url = urllib.parse.urlparse(proxy)
    return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)


def _hub_reachable(timeout: float = _HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Hub (or proxy) opens within `timeout` seconds.

    Without this check, huggingface_hub retries an unreachable host for about 25 s.
    """
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection(_hub_address(), timeout=timeout):
                result.append(True)
        except (OSError, ValueError):
            result.append(False)

    # A thread bounds the DNS lookup too, which the socket timeout does not cover.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or os.sep != "/" and os.sep in model


def from_pretrained(load: Callable[..., Any], model: str, revision: str, **kwargs: Any) -> Any:
    """Load from a local folder or the cache first, then from the Hub when that is allowed.

    Raises:
        ModelNotAvailableError: Not local or cached, and offline, unreachable or refused.
    """
    if Path(model).expanduser().is_dir():
        try:
            return load(str(Path(model).expanduser()), local_files_only=True, **kwargs)
        except (OSError, ValueError) as exc:  # missing files, or a config.json that is not a model's
            raise ModelNotAvailableError(model, revision, f"the folder is not a complete model ({exc})") from None
    if _looks_like_path(model):
        raise ModelNotAvailableError(
            model, revision, "no such folder", hint="Check the path: it must name a folder that holds the model's files."
        )
    try:
        return load(model, revision=revision, local_files_only=True, **kwargs)
    except OSError:
        pass  # not cached: try the network below
    if offline_mode():
        reason = "not in the local cache and offline mode is on (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE)"
        raise ModelNotAvailableError(model, revision, reason)
    if not _hub_reachable():
        host, port = _hub_address()
        raise ModelNotAvailableError(model, revision, f"not in the local cache and {host}:{port} cannot be reached")
    try:
        return load(model, revision=revision, **kwargs)
    except OSError as exc:
        raise ModelNotAvailableError(model, revision, f"download failed ({exc})") from exc


def folder_digest(folder: Path) -> str:
    """Hash of a model folder: config.json plus name, size and head/tail bytes of weight files.

    Cheap (no full read of a 1 GB checkpoint) yet changes when the weights are replaced.
    """
    digest = hashlib.sha256()
    config = folder / "config.json"
    digest.update(config.read_bytes() if config.is_file() else b"")
    for path in sorted(folder.iterdir()):
        if path.suffix not in _WEIGHT_SUFFIXES or not path.is_file():
            continue
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as handle:
            digest.update(handle.read(65536))
            handle.seek(max(0, size - 65536))
            digest.update(handle.read(65536))
    return digest.hexdigest()[:16]


def _cached_commit(model: str, revision: str) -> str | None:
    """Commit hash of the cached snapshot `revision` points to, without network."""
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        path = try_to_load_from_cache(model, "config.json", cache_dir=constants.HF_HUB_CACHE, revision=revision)
    except ValueError:  # not a valid repo id
        return None
    if not isinstance(path, str):
        return None
    match = re.search(r"snapshots/([0-9a-f]{40})/", Path(path).as_posix())
    return match.group(1) if match else None


def resolve_revision(model: str, revision: str) -> str:
    """The revision recorded in the fingerprint, found without network.

    Args:
        model: Hub id or local folder.
        revision: The configured revision.

    Returns:
        ``local:<digest>`` for a folder, the commit hash of the cached snapshot for a Hub id,
        else `revision` itself (the model is not cached yet).
    """
    folder = Path(model).expanduser()
    if folder.is_dir():
        return f"local:{folder_digest(folder)}"
    if _COMMIT.match(revision):
        return revision
    return _cached_commit(model, revision) or revision


def is_final_revision(revision: str) -> bool:
    """Whether `revision` names fixed weights (a commit or a local digest), not a branch."""
    return revision.startswith("local:") or bool(_COMMIT.match(revision))

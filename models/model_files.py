"""Model files on disk and downloads, for the registry and the model manager (no tkinter).

- :func:`download_snapshot`: a Hugging Face / ModelScope download with byte progress and cancel;
  failures become one :class:`PullError` whose ``reason`` the app words in the UI language.
- :func:`disk_size`, :func:`model_on_disk`: what a folder or a cached hub id takes / whether it is here.

Threads: everything here runs on worker threads; ``cancel`` is a ``threading.Event``.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from models.backend import BackendError

#: Files fetched by a pull: weights (safetensors only), configs, tokenizer files.
PULL_PATTERNS = ["*.safetensors", "*.json", "*.txt", "*.model", "*.tiktoken", "merges.txt", "vocab.*"]

Progress = Callable[[float, float, str], None]


class ModelFileError(BackendError):
    """A folder or file that cannot be imported as a model.

    Attributes:
        reason: missing | not_model | no_safetensors | no_tokenizer | name_taken |
            gguf_unsupported | not_embedder (the app words it in the UI language).
        subject: the path or model name it is about.
    """

    def __init__(self, message: str, reason: str, subject: str = ""):
        super().__init__(message)
        self.reason, self.subject = reason, str(subject)


class PullError(BackendError):
    """A download that did not complete.

    Attributes:
        reason: offline | not_found | missing_package | cancelled | failed (the app words it
            in the UI language; the message is for the CLI and logs).
    """

    def __init__(self, message: str, reason: str = "failed"):
        super().__init__(message)
        self.reason = reason


def _hub_snapshot(repo_id: str) -> Path | None:
    """The Hugging Face cache folder of ``repo_id`` (None when it is not cached)."""
    if not re.fullmatch(r"[\w.\-]+/[\w.\-]+", repo_id):
        return None
    from huggingface_hub import try_to_load_from_cache

    for f in ("config.json", "modules.json"):
        hit = try_to_load_from_cache(repo_id, f)
        if isinstance(hit, str):
            return Path(hit).parent
    return None


def model_on_disk(name_or_path: str) -> bool:
    """Is a model (folder or hub id) on this machine? Files only, nothing is loaded."""
    p = Path(str(name_or_path)).expanduser()
    if p.is_dir():
        return (p / "config.json").is_file() or (p / "modules.json").is_file()
    return _hub_snapshot(str(name_or_path)) is not None


def disk_size(path_or_id: str) -> int | None:
    """Bytes on disk of a model folder (or of a hub id's cached snapshot, links followed);
    None when it is not on this machine."""
    p = Path(path_or_id).expanduser()
    if p.is_file():
        return p.stat().st_size
    if not p.is_dir():
        p = _hub_snapshot(path_or_id)
        if p is None:
            return None
    total = 0
    for f in p.rglob("*"):
        try:
            total += f.stat().st_size if f.is_file() else 0
        except OSError:
            pass
    return total


def _pull_reason(e: BaseException) -> str:
    """offline | not_found | failed for an exception from a hub download (cause chain included)."""
    seen = 0
    while e is not None and seen < 8:
        names = {t.__name__ for t in type(e).__mro__}
        if names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError", "ConnectError",
                    "ConnectTimeout", "TimeoutException", "Timeout", "ProxyError", "NetworkError",
                    "gaierror", "ConnectionRefusedError"}:
            return "offline"
        if names & {"RepositoryNotFoundError", "RevisionNotFoundError", "GatedRepoError", "EntryNotFoundError"}:
            return "not_found"
        e, seen = e.__cause__ or e.__context__, seen + 1
    return "failed"


def _progress_tqdm(on_progress: Progress | None, cancel):
    """A tqdm class for ``snapshot_download``: reports byte progress to ``on_progress`` and
    raises PullError("cancelled") at the next chunk once ``cancel`` is set."""
    import io

    from tqdm import tqdm

    class _Bar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            kwargs.update(file=io.StringIO(), disable=False)
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            if cancel is not None and cancel.is_set():
                raise PullError("download cancelled", "cancelled")
            out = super().update(n)
            if on_progress and self.unit == "B" and not str(self.desc).startswith("Downloading bytes"):
                on_progress(float(self.n), float(self.total or 0), "")
            return out

    return _Bar


def download_snapshot(repo_id: str, dest: Path, source: str = "hf", on_progress: Progress | None = None,
                      cancel=None, tqdm_class=None) -> Path:
    """Download ``repo_id``'s weights (safetensors), configs and tokenizer into ``dest``.

    A folder this call created is removed when the download fails or is cancelled.

    Raises:
        PullError: with ``reason`` offline / not_found / missing_package / cancelled / failed.
    """
    created = not dest.exists()
    where = "ModelScope" if source == "modelscope" else "Hugging Face"
    try:
        if cancel is not None and cancel.is_set():
            raise PullError("download cancelled", "cancelled")
        if source == "modelscope":
            _modelscope_download(repo_id, dest)
        else:
            from huggingface_hub import snapshot_download

            snapshot_download(repo_id, local_dir=dest, allow_patterns=PULL_PATTERNS,
                              tqdm_class=tqdm_class or _progress_tqdm(on_progress, cancel))
        if cancel is not None and cancel.is_set():
            raise PullError("download cancelled", "cancelled")
        if not (dest / "modules.json").is_file():
            from models.registry import check_hf_folder

            check_hf_folder(dest)
    except BaseException as e:
        if created:
            import shutil

            shutil.rmtree(dest, ignore_errors=True)
        if isinstance(e, PullError) or not isinstance(e, Exception):
            raise
        if isinstance(e, BackendError):
            raise PullError(str(e), "failed") from None
        reason = _pull_reason(e)
        raise PullError(
            f"could not download {repo_id!r} from {where} ({type(e).__name__}: {str(e)[:200]}). "
            "Check the network connection (and HF_HUB_OFFLINE), or import a model you already have: "
            "`python main.py models import FOLDER_OR_GGUF`", reason) from None
    return dest


def _modelscope_download(repo_id: str, dest: Path) -> None:
    try:
        from modelscope import snapshot_download
    except ImportError:
        raise PullError("ModelScope support needs the modelscope package: `pip install modelscope`, "
                        "or use --source hf, or import a folder / GGUF", "missing_package") from None
    snapshot_download(repo_id, local_dir=str(dest), allow_patterns=PULL_PATTERNS)

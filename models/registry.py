"""Model registry: answering models the user has (base, imported, pulled, trained), which is active.

Stored as ``<data dir>/models/registry.json`` (written atomically). Choices:

- An imported **HF folder is referenced, not copied** (models are GBs; the entry keeps its
  absolute path — moving the folder means importing it again). A **.gguf is converted once**
  into ``models/<name>/`` (safetensors, see :mod:`models.gguf`).
- A pulled model is downloaded into ``models/<name>/`` (safetensors/json/txt/tokenizer files only).
- A trained LoRA adapter is an entry whose ``path`` is its base model folder and ``adapter`` the
  adapter folder; a full trained checkpoint is an entry whose ``path`` is that folder.
- The default base model, :data:`DEFAULT_MODEL`, is always listed.

Threads: methods may be called from worker threads; a lock guards the JSON file.
"""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from models.backend import BackendError, ChatBackend

DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
#: Files fetched by ``pull``: weights (safetensors only), configs, tokenizer files.
PULL_PATTERNS = ["*.safetensors", "*.json", "*.txt", "*.model", "*.tiktoken", "merges.txt", "vocab.*"]

Progress = Callable[[float, float, str], None]


@dataclass
class ModelEntry:
    """One registered model (see module docstring for what ``path``/``adapter`` hold)."""

    name: str
    kind: str                      # base | imported | pulled | trained
    path: str                      # HF folder or hub id
    adapter: str = ""              # LoRA adapter folder ("" = none)
    base: str = ""                 # the model a trained entry started from
    created: str = ""              # ISO 8601 UTC
    metrics: dict = field(default_factory=dict)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def slug(text: str) -> str:
    """A registry/folder-safe name: letters (any script), digits, ``.-_``; others become ``-``."""
    s = re.sub(r"[^\w.\-]+", "-", text.strip()).strip("-.")
    return s or "model"


def is_adapter(folder: str | Path) -> bool:
    return (Path(folder) / "adapter_config.json").is_file()


def check_hf_folder(folder: Path) -> None:
    """Raise BackendError unless ``folder`` holds config.json, safetensors weights and a tokenizer."""
    if not (folder / "config.json").is_file():
        raise BackendError(f"{folder} has no config.json: pick a Hugging Face model folder or a .gguf file")
    if not any(folder.glob("*.safetensors")):
        hint = " (it has only .bin weights; re-save with save_pretrained(safe_serialization=True))" \
            if any(folder.glob("*.bin")) else ""
        raise BackendError(f"{folder} has no *.safetensors weights{hint}; TQT-s loads safetensors only")
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise BackendError(f"{folder} has no tokenizer files (tokenizer.json / tokenizer_config.json)")


class ModelRegistry:
    """Registered answering models; see the module docstring.

    Args:
        settings: TQT-s settings (``models_dir``, ``model``, ``adapter``, ``backend``).
    """

    def __init__(self, settings):
        self.settings = settings
        self.file = settings.models_dir / "registry.json"
        self._lock = threading.RLock()

    # -- storage -----------------------------------------------------------------------
    def _read(self) -> list[ModelEntry]:
        if not self.file.exists():
            return []
        try:
            rows = json.loads(self.file.read_text(encoding="utf-8")).get("models", [])
            return [ModelEntry(**r) for r in rows]
        except (ValueError, TypeError) as e:
            raise BackendError(f"{self.file} is damaged ({e}); fix or delete it and import again") from None

    def _write(self, entries: list[ModelEntry]) -> None:
        tmp = self.file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"models": [asdict(e) for e in entries]}, ensure_ascii=False, indent=2),
                       encoding="utf-8")
        tmp.replace(self.file)

    def _add(self, entry: ModelEntry) -> ModelEntry:
        with self._lock:
            entries = [e for e in self._read() if e.name != entry.name]
            self._write(entries + [entry])
        return entry

    def _free_name(self, name: str) -> str:
        taken = {e.name for e in self.list()}
        if name not in taken:
            return name
        i = 2
        while f"{name}-{i}" in taken:
            i += 1
        return f"{name}-{i}"

    # -- queries -----------------------------------------------------------------------
    def list(self) -> list[ModelEntry]:
        """All entries; the default base model first when it is not registered otherwise."""
        entries = self._read()
        if not any(e.name == DEFAULT_MODEL for e in entries):
            entries.insert(0, ModelEntry(DEFAULT_MODEL, "base", DEFAULT_MODEL))
        return entries

    def get(self, name: str) -> ModelEntry:
        """The entry called ``name``.

        Raises:
            KeyError: no such entry (the message lists the names there are).
        """
        for e in self.list():
            if e.name == name:
                return e
        names = ", ".join(e.name for e in self.list())
        raise KeyError(f"no model named {name!r}; registered: {names}. "
                       "Use `python main.py models import PATH` to add one")

    def active(self) -> ModelEntry | None:
        """The answering model from settings (registry entry, or an ad-hoc folder / hub id)."""
        name = self.settings.model
        if not name:
            return None
        try:
            entry = self.get(name)
        except KeyError:
            entry = ModelEntry(name, "imported" if Path(name).is_dir() else "base", name)
        if self.settings.adapter:
            entry = ModelEntry(**{**asdict(entry), "adapter": self.settings.adapter})
        return entry

    def resolve(self, name_or_path: str | None = None) -> tuple[str, str]:
        """``(model folder or hub id, adapter folder or "")`` for a name, folder or hub id.

        None means the active model (with ``settings.adapter``). An adapter folder resolves to
        its base model (``base_model_name_or_path`` in adapter_config.json) plus itself.

        Raises:
            BackendError: a .gguf file that was not imported yet.
        """
        if not name_or_path:
            entry = self.active()
            if entry is None:
                raise BackendError("no answering model is set: run `python main.py models use NAME`")
            return entry.path, entry.adapter
        try:
            entry = self.get(name_or_path)
            return entry.path, entry.adapter
        except KeyError:
            pass
        p = Path(name_or_path).expanduser()
        if p.suffix == ".gguf":
            raise BackendError(f"{p} is a GGUF file: run `python main.py models import {p}` first")
        if p.is_dir() and is_adapter(p):
            base = json.loads((p / "adapter_config.json").read_text(encoding="utf-8")).get(
                "base_model_name_or_path") or DEFAULT_MODEL
            return self.resolve(base)[0], str(p.resolve())
        if p.is_dir():
            return str(p.resolve()), ""
        return name_or_path, ""

    def available(self) -> bool:
        """Is there a loadable answering model? Local files only; for ``backend: ollama`` the
        configured server is asked whether it has ``ollama_model``."""
        if self.settings.backend == "ollama":
            from models.ollama_backend import OllamaBackend

            try:
                OllamaBackend(self.settings).check()
            except BackendError:
                return False
            return True
        try:
            path, _ = self.resolve(None)
        except BackendError:
            return False
        if Path(path).is_dir():
            return (Path(path) / "config.json").is_file()
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(path, "config.json"), str)

    # -- changes -----------------------------------------------------------------------
    def import_path(self, path: str | Path, name: str | None = None,
                    on_progress: Progress | None = None) -> ModelEntry:
        """Register an HF folder (referenced) or convert a .gguf into ``models/<name>/``.

        Raises:
            BackendError: not a model folder / GGUF, or the name is taken by another model.
        """
        p = Path(path).expanduser().resolve()
        if not p.exists():
            raise BackendError(f"{p} does not exist: give an HF model folder or a .gguf file")
        name = slug(name or (p.stem if p.is_file() else p.name))
        with self._lock:
            for e in self._read():
                if e.name == name and e.kind in ("imported", "pulled", "trained"):
                    raise BackendError(f"a model named {name!r} exists ({e.path}); pick another --name")
            if p.is_file() and p.suffix.lower() == ".gguf":
                return self._adopt_if_none(self._import_gguf(p, name, on_progress))
            if p.is_dir():
                check_hf_folder(p)
                return self._adopt_if_none(self._add(ModelEntry(name, "imported", str(p), created=_now())))
        raise BackendError(f"{p} is neither a model folder nor a .gguf file")

    def _adopt_if_none(self, entry: ModelEntry) -> ModelEntry:
        """Make ``entry`` the answering model when the active one is not on this machine."""
        if self.settings.backend in ("auto", "transformers") and not self.available():
            self.use(entry.name)
        return entry

    def _import_gguf(self, p: Path, name: str, on_progress: Progress | None) -> ModelEntry:
        from models.gguf import convert_gguf

        dest = self.settings.models_dir / name
        partial = self.settings.models_dir / f".{name}.partial"
        if dest.exists():
            raise BackendError(f"{dest} already exists; pick another --name or delete that folder")
        import shutil

        shutil.rmtree(partial, ignore_errors=True)
        try:
            convert_gguf(p, partial, on_progress)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        partial.rename(dest)
        return self._add(ModelEntry(name, "imported", str(dest), base=str(p), created=_now()))

    def pull(self, repo_id: str, source: str = "hf", name: str | None = None,
             on_progress: Progress | None = None, tqdm_class=None) -> ModelEntry:
        """Download a model into ``models/<name>/`` from Hugging Face or ModelScope.

        Raises:
            BackendError: offline / unknown repo / modelscope not installed (says what to do).
        """
        name = slug(name or repo_id.split("/")[-1])
        dest = self.settings.models_dir / name
        (on_progress or (lambda *_: None))(0, 1, f"downloading {repo_id} from {source} into {dest}")
        try:
            if source == "modelscope":
                _modelscope_download(repo_id, dest)
            else:
                from huggingface_hub import snapshot_download

                snapshot_download(repo_id, local_dir=dest, allow_patterns=PULL_PATTERNS, tqdm_class=tqdm_class)
            check_hf_folder(dest)
        except BackendError:
            raise
        except Exception as e:  # noqa: BLE001 - network/hub errors of many types
            where = "ModelScope" if source == "modelscope" else "Hugging Face"
            raise BackendError(
                f"could not download {repo_id!r} from {where} ({type(e).__name__}: {str(e)[:200]}). "
                "Check the network connection (and HF_HUB_OFFLINE), or import a model you already have: "
                "`python main.py models import FOLDER_OR_GGUF`") from None
        (on_progress or (lambda *_: None))(1, 1, "done")
        return self._adopt_if_none(self._add(ModelEntry(name, "pulled", str(dest), base=repo_id, created=_now())))

    def use(self, name: str, adapter: str | None = None) -> ModelEntry:
        """Make ``name`` (registry name, folder or hub id) the answering model; persist it.

        Raises:
            BackendError: ``adapter`` is not a LoRA adapter folder.
            KeyError: ``name`` is neither registered, a folder nor a hub id (``org/model``).
        """
        if adapter and not is_adapter(adapter):
            raise BackendError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
        try:
            entry = self.get(name)
        except KeyError:
            if Path(name).is_dir():
                entry = self.register_trained(name) if is_adapter(name) else self.import_path(name)
            elif re.fullmatch(r"[\w.\-]+/[\w.\-]+", name):
                entry = ModelEntry(name, "base", name)
            else:
                raise
        adapter_path = str(Path(adapter).resolve()) if adapter else entry.adapter
        self.settings.update({"model": entry.name, "adapter": adapter_path})
        return ModelEntry(**{**asdict(entry), "adapter": adapter_path})

    def register_trained(self, path: str | Path, name: str | None = None, base: str | None = None,
                         metrics: dict | None = None) -> ModelEntry:
        """Register a trainer output: a LoRA adapter folder or a full HF folder.

        Args:
            path: e.g. ``runs/<run>/final``.
            name: registry name (default ``<run>-<folder>``, made unique).
            base: base model of an adapter (default: its adapter_config.json).
            metrics: e.g. eval accuracy, shown by ``models list``.
        """
        p = Path(path).expanduser().resolve()
        name = self._free_name(slug(name or f"{p.parent.name}-{p.name}"))
        if is_adapter(p):
            base = base or json.loads((p / "adapter_config.json").read_text(encoding="utf-8")).get(
                "base_model_name_or_path", DEFAULT_MODEL)
            entry = ModelEntry(name, "trained", self.resolve(base)[0], adapter=str(p), base=base,
                               created=_now(), metrics=dict(metrics or {}))
        else:
            check_hf_folder(p)
            entry = ModelEntry(name, "trained", str(p), base=base or "", created=_now(),
                               metrics=dict(metrics or {}))
        return self._add(entry)

    # -- backends ----------------------------------------------------------------------
    def load_backend(self, name: str | None = None) -> ChatBackend:
        """Load the chat backend for ``name`` (default: active model) per ``settings.backend``.

        Raises:
            BackendError: unknown backend, or the model cannot be loaded (says what to do).
        """
        kind = self.settings.backend
        if kind == "auto":
            kind = pick_chat_backend(self.settings, *self.resolve(name))
        if kind == "ollama":
            from models.ollama_backend import OllamaBackend

            return OllamaBackend(self.settings, model=name if name and ":" in name else None)
        path, adapter = self.resolve(name)
        label = name or self.settings.model
        if kind == "llamacpp":
            from models.gguf import GGUF_NAME
            from models.llamacpp_backend import LlamaCppBackend

            gguf = Path(path) / GGUF_NAME if Path(path).is_dir() else Path(path)
            if not gguf.is_file():
                raise BackendError(f"{label} has no {GGUF_NAME}: import a .gguf for backend llamacpp")
            return LlamaCppBackend(str(gguf), self.settings)
        if kind != "transformers":
            raise BackendError(f"backend {kind!r} is unknown; set backend to auto, transformers, ollama or llamacpp")
        from models.transformers_backend import TransformersBackend

        return TransformersBackend(path, self.settings, adapter=adapter, name=label)


def pick_chat_backend(settings, path: str, adapter: str) -> str:
    """Resolve ``backend: auto`` for a model: "llamacpp" when it is a GGUF (a ``.gguf`` path or a
    folder with ``model.gguf``), no LoRA adapter is applied, it would run on the CPU and
    xllamacpp is installed (measured faster to first token and per token on CPUs, README
    "Performance"); else "transformers" (HF folders, adapters, GPUs, training)."""
    from models.gguf import GGUF_NAME
    from models.llamacpp_backend import available

    p = Path(path)
    has_gguf = (p / GGUF_NAME).is_file() if p.is_dir() else p.suffix.lower() == ".gguf" and p.is_file()
    if adapter or not has_gguf or not available():
        return "transformers"
    if settings.device not in ("auto", "cpu"):
        return "transformers"
    if settings.device == "auto":
        from models.device import pick_device

        if pick_device("auto") != "cpu":
            return "transformers"
    return "llamacpp"


def _modelscope_download(repo_id: str, dest: Path) -> None:
    try:
        from modelscope import snapshot_download
    except ImportError:
        raise BackendError("ModelScope support needs the modelscope package: `pip install modelscope`, "
                           "or use --source hf, or import a folder / GGUF") from None
    snapshot_download(repo_id, local_dir=str(dest), allow_patterns=PULL_PATTERNS)

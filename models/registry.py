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
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from kb.types import Message
from models.backend import BackendError, ChatBackend
from models.model_files import (
    PULL_PATTERNS,
    ModelFileError,
    PullError,
    disk_size,
    download_snapshot,
    model_on_disk,
)

__all__ = ["DEFAULT_MODEL", "PULL_PATTERNS", "ModelEntry", "ModelFileError", "ModelInfo", "ModelRegistry",
           "PullError"]

DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"

log = logging.getLogger(__name__)

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


@dataclass
class ModelInfo:
    """One row of the model manager (:meth:`ModelRegistry.inventory`)."""

    name: str
    kind: str                      # hf (HF folder or hub id) | gguf (imported .gguf) | ollama | adapter
    size_bytes: int | None         # bytes on disk; None = not on this machine
    active: bool                   # the answering model now
    deletable: bool                # False for the active model and the built-in default
    path: str                      # folder, hub id, or the Ollama host
    owned: bool = False            # files live in models/ and go with delete


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
        raise ModelFileError(f"{folder} has no config.json: pick a Hugging Face model folder or a .gguf file",
                             "not_model", folder)
    if not any(folder.glob("*.safetensors")):
        hint = " (it has only .bin weights; re-save with save_pretrained(safe_serialization=True))" \
            if any(folder.glob("*.bin")) else ""
        raise ModelFileError(f"{folder} has no *.safetensors weights{hint}; TQT-s loads safetensors only",
                             "no_safetensors", folder)
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise ModelFileError(f"{folder} has no tokenizer files (tokenizer.json / tokenizer_config.json)",
                             "no_tokenizer", folder)


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
                raise BackendError(Message("no_model", "no answering model is set: run `python main.py models use NAME`"))
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
            raise ModelFileError(f"{p} does not exist: give an HF model folder or a .gguf file", "missing", p)
        name = slug(name or (p.stem if p.is_file() else p.name))
        with self._lock:
            for e in self._read():
                if e.name == name and e.kind in ("imported", "pulled", "trained"):
                    raise ModelFileError(f"a model named {name!r} exists ({e.path}); pick another --name",
                                         "name_taken", name)
            if p.is_file() and p.suffix.lower() == ".gguf":
                return self._adopt_if_none(self._import_gguf(p, name, on_progress))
            if p.is_dir():
                check_hf_folder(p)
                return self._adopt_if_none(self._add(ModelEntry(name, "imported", str(p), created=_now())))
        raise ModelFileError(f"{p} is neither a model folder nor a .gguf file", "not_model", p)

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
            raise ModelFileError(f"{dest} already exists; pick another --name or delete that folder", "name_taken", name)
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
             on_progress: Progress | None = None, tqdm_class=None, cancel=None) -> ModelEntry:
        """Download a model into ``models/<name>/`` from Hugging Face or ModelScope.

        Args:
            on_progress: ``(bytes done, bytes total, message)`` as the download goes (Hugging Face).
            cancel: a ``threading.Event``; set it to stop the download (a new folder is removed).

        Raises:
            PullError: offline / unknown repo / modelscope not installed / cancelled (``reason``
                says which; the message says what to do).
        """
        name = slug(name or repo_id.split("/")[-1])
        dest = self.settings.models_dir / name
        (on_progress or (lambda *_: None))(0, 1, f"downloading {repo_id} from {source} into {dest}")
        download_snapshot(repo_id, dest, source, on_progress, cancel, tqdm_class)
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

    # -- model manager (app/model_manager.py) --------------------------------------------
    def inventory(self) -> list[ModelInfo]:
        """Every model with its kind, size on disk and whether it is active (walks folders:
        call from a worker thread). With ``backend: ollama`` the Ollama model is listed first."""
        active = self.active()
        ollama = self.settings.backend == "ollama"
        rows = []
        if ollama:
            rows.append(ModelInfo(self.settings.ollama_model, "ollama", None, True, False,
                                  self.settings.ollama_host, False))
        for e in self.list():
            is_active = not ollama and active is not None and e.name == active.name
            owned = _inside(e.path, self.settings.models_dir)
            rows.append(ModelInfo(e.name, model_kind(e), disk_size(e.adapter or e.path), is_active,
                                  not is_active and e.kind != "base", e.path, owned))
        if not ollama and active is not None and active.name not in {r.name for r in rows}:
            rows.append(ModelInfo(active.name, model_kind(active), disk_size(active.adapter or active.path),
                                  True, False, active.path, False))
        return rows

    def switch_to(self, name: str) -> ModelEntry | None:
        """The manager's *Use*: make ``name`` the answering model (Ollama rows switch the backend
        to Ollama; any other row switches an Ollama setup back to the default backend).

        Returns:
            the entry now active (None for an Ollama model).

        Raises:
            KeyError / BackendError: as :meth:`use`.
        """
        if name == self.settings.ollama_model and self.settings.backend == "ollama":
            return None
        entry = self.use(name, adapter=None)
        if self.settings.backend == "ollama":
            from settings import DEFAULTS

            self.settings.update({"backend": DEFAULTS["backend"]})
        return entry

    def delete(self, name: str) -> ModelInfo:
        """Unregister ``name``; delete its files when they live in ``models/`` (pulled models,
        converted GGUFs). A referenced folder (imported HF folder, trained run) stays on disk.

        Raises:
            BackendError: ``name`` is the active model or the built-in default (cannot be deleted).
            KeyError: no such model.
        """
        import shutil

        with self._lock:
            info = next((r for r in self.inventory() if r.name == name), None)
            if info is None:
                raise KeyError(f"no model named {name!r}")
            if info.active:
                raise BackendError(f"{name} is the answering model: use another model first, then delete it")
            if not info.deletable:
                raise BackendError(f"{name} is the built-in default and is not stored by TQT-s")
            self._write([e for e in self._read() if e.name != name])
            if info.owned:
                shutil.rmtree(info.path, ignore_errors=True)
        return info

    def export_ollama(self, name: str, out: str | Path | None = None) -> tuple[str, bool, Path]:
        """Export ``name`` (adapter merged) as safetensors + Modelfile and create it in Ollama.

        Returns:
            (Ollama model name, created in a running Ollama?, output folder).

        Raises:
            BackendError: the model cannot be loaded (says why).
        """
        from models.ollama_backend import export_model

        path, adapter = self.resolve(name)
        out = Path(out) if out else self.settings.home / "exports" / slug(Path(name).name)
        tag, created = export_model(path, adapter, out, self.settings, name=Path(name).name)
        return tag, created, out

    def embedder_available(self) -> bool:
        """Is ``settings.embedding_model`` on this machine (a folder, or in the Hugging Face cache)?
        Checks files only; loading may still fail (the app reports that separately)."""
        return model_on_disk(self.settings.embedding_model)

    def pull_embedder(self, repo_id: str, source: str = "hf", on_progress: Progress | None = None,
                      cancel=None) -> Path:
        """Download an embedding model into ``<data dir>/embedders/<name>/`` and set
        ``embedding_model`` to that folder.

        Raises:
            PullError: as :meth:`pull`.
        """
        dest = self.settings.subdir("embedders") / slug(repo_id.split("/")[-1])
        download_snapshot(repo_id, dest, source, on_progress, cancel)
        self.settings.update({"embedding_model": str(dest)})
        return dest

    def use_embedder(self, folder: str | Path) -> Path:
        """Set ``embedding_model`` to a local sentence-transformers / HF folder.

        Raises:
            BackendError: the folder holds no model (no config.json / modules.json).
        """
        p = Path(folder).expanduser().resolve()
        if not ((p / "config.json").is_file() or (p / "modules.json").is_file()):
            raise ModelFileError(f"{p} holds no embedding model (no config.json or modules.json): "
                                 "pick a sentence-transformers folder such as multilingual-e5-small", "not_embedder", p)
        self.settings.update({"embedding_model": str(p)})
        return p

    # -- backends ----------------------------------------------------------------------
    def convert_adapter(self, name: str | None = None) -> Path | None:
        """Write the GGUF LoRA adapter llama.cpp serves for ``name`` (default: the active model),
        on adopt, so the first answer does not wait for it (:meth:`load_backend` would convert
        it lazily). Call from a worker thread (about a second for a 0.5B model's adapter).

        Returns:
            the adapter GGUF, or None when llama.cpp would not serve this model anyway (no
            adapter, no ``model.gguf`` beside the base, or backend not auto / llamacpp).

        Raises:
            LoraConversionError: the adapter cannot run on llama.cpp (transformers answers).
        """
        from models.gguf import GGUF_NAME

        path, adapter = self.resolve(name)
        base = Path(path) / GGUF_NAME if Path(path).is_dir() else Path(path)
        if not adapter or self.settings.backend not in ("auto", "llamacpp") or \
                base.suffix.lower() != ".gguf" or not base.is_file():
            return None
        from models.lora_gguf import ensure_lora_gguf

        return ensure_lora_gguf(adapter, base)

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
            from models.lora_gguf import LoraConversionError

            gguf = Path(path) / GGUF_NAME if Path(path).is_dir() else Path(path)
            if not gguf.is_file():
                raise BackendError(f"{label} has no {GGUF_NAME}: import a .gguf for backend llamacpp")
            try:
                return LlamaCppBackend(str(gguf), self.settings, adapter=adapter, name=label if adapter else None)
            except LoraConversionError as e:
                if self.settings.backend != "auto":
                    raise
                log.warning("%s", e)       # says why and that transformers answers instead
                kind = "transformers"
        if kind != "transformers":
            raise BackendError(f"backend {kind!r} is unknown; set backend to auto, transformers, ollama or llamacpp")
        from models.transformers_backend import TransformersBackend

        return TransformersBackend(path, self.settings, adapter=adapter, name=label)


def pick_chat_backend(settings, path: str, adapter: str) -> str:
    """Resolve ``backend: auto`` for a model: "llamacpp" when it is a GGUF (a ``.gguf`` path or a
    folder with ``model.gguf``), its LoRA adapter (if any) is or can be made a GGUF LoRA
    (:func:`models.lora_gguf.convertible`), it would run on the CPU and xllamacpp is installed
    (measured faster to first token and per token on CPUs, README "Performance"); else
    "transformers" (HF folders, GPUs, training). An adapter left to transformers is logged."""
    from models.gguf import GGUF_NAME
    from models.llamacpp_backend import available
    from models.lora_gguf import convertible

    p = Path(path)
    has_gguf = (p / GGUF_NAME).is_file() if p.is_dir() else p.suffix.lower() == ".gguf" and p.is_file()
    if not has_gguf or not available() or (adapter and not convertible(adapter)):
        if adapter:
            why = "it is not a PEFT adapter folder" if has_gguf and available() else \
                f"its base {path} has no {GGUF_NAME}" if not has_gguf else "xllamacpp is not installed"
            log.info("LoRA adapter %s runs on the transformers backend (slower): %s", adapter, why)
        return "transformers"
    if settings.device not in ("auto", "cpu"):
        return "transformers"
    if settings.device == "auto":
        from models.device import pick_device

        if pick_device("auto") != "cpu":
            return "transformers"
    return "llamacpp"


def model_kind(entry: ModelEntry) -> str:
    """The manager's kind of an entry: adapter (trained LoRA), gguf (imported from a .gguf) or hf."""
    if entry.adapter:
        return "adapter"
    if entry.base.lower().endswith(".gguf"):
        return "gguf"
    return "hf"


def _inside(path: str, folder: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(folder.resolve()) and Path(path).resolve() != folder.resolve()
    except (OSError, ValueError):
        return False

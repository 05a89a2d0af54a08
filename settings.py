"""TQT-s settings: one YAML file in the data dir, every key overridable by ``TQTS_<KEY>``.

The data dir is ``$TQTS_HOME`` when set, else ``~/.tqts``. It holds::

    settings.yaml   this file's knobs (only keys that differ from the defaults need be there)
    store/          chromadb persistent store (one collection per knowledge base)
    models/         imported / pulled models, registry.json
    runs/           trainer runs (checkpoints, progress.jsonl)
    history/        chat history, one JSONL per knowledge base

Precedence (highest first): environment ``TQTS_<KEY>`` > settings.yaml > DEFAULTS.
Environment values are parsed to the default's type (int, float, bool: 1/0/true/false/yes/no).

This module imports nothing heavy and never imports tkinter, so kb/, models/, trainer/
and app/ can all use it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: Every knob, with its default. Units are in the comments; see README "Settings".
DEFAULTS: dict[str, Any] = {
    # knowledge base
    "default_kb": "default",           # knowledge base used when --kb is not given
    "embedding_model": "intfloat/multilingual-e5-small",  # hub id or local sentence-transformers folder (see README kb)
    "embedding_batch_size": 32,        # chunks per encode() call
    "embedding_dtype": "auto",         # auto (bfloat16 on CUDA / CPUs with native bf16, else float32) | float32 | bfloat16
    "embedding_backend": "auto",       # auto (float32 ONNX on CPUs without native bf16, else torch) | torch | onnx (int8 ONNX) | onnx-fp32 | openvino
    "query_instruction": "auto",       # "auto": the model's known instruction (bge-*-zh), "" for none
    "chunk_size": 500,                 # characters (not tokens) per chunk
    "chunk_overlap": 80,               # characters shared by consecutive chunks
    "chunk_headers": True,             # index each chunk with its document title + section (not shown as its text)
    "top_k": 5,                        # hits returned by search / used by answers
    "relevance_floor": 0.30,           # `search` only: cosine marking weak hits (answers use kb/relevance.py's calibrated gate)
    "ocr_engine": "auto",              # auto | rapidocr | tesseract | none
    "ocr_languages": "chi_sim+eng",    # tesseract language string
    "reranker_model": "",              # optional cross-encoder folder / hub id ("" = off)
    "ingest_workers": 1,               # 1: parse files in a worker process during ingest; 0: in the ingest thread
    "kb_lock_timeout_s": 600.0,        # seconds a write waits while another TQT-s process writes to the same KB
    "chroma_url": "",                  # "" = embedded store in the data dir; http://HOST:PORT = a shared `chroma run` server
    "watched_folders": {},             # knowledge base -> [folders the app keeps in sync, resumed on start]
    "watch_quiet_s": 2.0,              # seconds a watched file must stay unchanged before it is ingested
    "max_file_mb": 512,                # files larger than this (MB on disk) are refused before reading
    "max_uncompressed_mb": 512,        # a .docx whose zip unpacks to more (MB) is refused unopened (zip bomb)
    "file_time_budget_s": 900.0,       # seconds one file may parse in the worker; then it is abandoned, the worker restarted
    "follow_symlinks": False,          # folder ingest: follow links to files outside the folder
    # answering model
    "backend": "auto",                 # auto (llamacpp for GGUF models on the CPU without an adapter, else transformers) | transformers | ollama | llamacpp
    "model": "Qwen/Qwen2.5-0.5B-Instruct",  # registry name, hub id or local folder
    "adapter": "",                     # LoRA adapter folder applied on top of `model`
    "ollama_host": "http://127.0.0.1:11434",
    "ollama_model": "qwen2.5:0.5b",
    "device": "auto",                  # auto | cpu | cuda | mps
    "max_new_tokens": 512,             # tokens
    "temperature": 0.0,                # 0 = greedy (measured best for cited answers, README "Answer quality")
    "top_p": 0.9,
    "repetition_penalty": 1.05,
    "context_tokens": 4096,            # prompt + answer budget, in the model's own tokens
    "think": False,                    # ask the model for <think> reasoning before <answer> (off: measured better and ~3x faster)
    "refusal": "",                     # text when nothing is relevant ({kb}: its name); "" = built-in, in ui_language
    "history_turns": 4,                # earlier turns offered to the model for follow-ups
    "passage_sentences": 0,            # 0: the model sees whole chunks; N: best-matching sentence +- N sentences
    "source_order": "best_first",      # best_first | best_last (best passage next to the question)
    "extractive_fallback": True,       # answer unsupported by every passage -> the best passage sentence, quoted
    # app
    "ui_language": "zh",               # zh | en
    "theme": "auto",                   # auto (follow the system where it can be read, else light) | light | dark
    # voice
    "stt_engine": "vosk",              # vosk | whisper
    "stt_model": "",                   # folder of the vosk / faster-whisper model
    "stt_auto_send": False,
    "tts_enabled": False,
    "tts_rate": 180,                   # words per minute
}

ENV_PREFIX = "TQTS_"


def default_home() -> Path:
    """Return the data dir: ``$TQTS_HOME`` if set, else ``~/.tqts`` (not created here)."""
    env = os.environ.get("TQTS_HOME")
    return Path(env).expanduser() if env else Path.home() / ".tqts"


def _coerce(raw: str, like: Any, key: str) -> Any:
    """Parse an environment string to the type of the default ``like``.

    Raises:
        ValueError: when the string does not parse, naming the variable and the expected type.
    """
    try:
        if isinstance(like, bool):
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if isinstance(like, int):
            return int(raw)
        if isinstance(like, float):
            return float(raw)
    except ValueError:
        raise ValueError(
            f"{ENV_PREFIX}{key.upper()}={raw!r} is not a valid {type(like).__name__}; "
            f"unset it or give e.g. {like!r}") from None
    return raw


@dataclass
class Settings:
    """All knobs plus the data dir. Read values as attributes: ``settings.top_k``.

    Attributes:
        home: the data dir (see module docstring).
        values: the merged key -> value mapping (DEFAULTS < file < environment).
        file_values: what the settings file holds (saved back by :meth:`save`).
    """

    home: Path
    values: dict[str, Any] = field(default_factory=dict)
    file_values: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, key: str) -> Any:
        values = self.__dict__.get("values", {})
        if key in values:
            return values[key]
        raise AttributeError(f"unknown setting {key!r}; known: {', '.join(sorted(DEFAULTS))}")

    # -- paths -------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self.home / "settings.yaml"

    def subdir(self, name: str) -> Path:
        """Return ``home/name``, created if missing (store, models, runs, history)."""
        d = self.home / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    @property
    def store_dir(self) -> Path:
        return self.subdir("store")

    @property
    def models_dir(self) -> Path:
        return self.subdir("models")

    @property
    def runs_dir(self) -> Path:
        return self.subdir("runs")

    @property
    def history_dir(self) -> Path:
        return self.subdir("history")

    # -- changes -----------------------------------------------------------------------
    def set(self, key: str, value: Any, *, persist: bool = True) -> None:
        """Change one knob (and write settings.yaml when ``persist``).

        Raises:
            KeyError: for a key not in DEFAULTS.
        """
        if key not in DEFAULTS:
            raise KeyError(f"unknown setting {key!r}; known: {', '.join(sorted(DEFAULTS))}")
        self.values[key] = value
        if persist:
            self.file_values[key] = value
            self.save()

    def update(self, changes: dict[str, Any]) -> None:
        """Set several knobs and save once."""
        for k, v in changes.items():
            self.set(k, v, persist=False)
            self.file_values[k] = v
        self.save()

    def save(self) -> None:
        """Write the file's keys to ``home/settings.yaml`` atomically (temp file + rename)."""
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".yaml.tmp")
        tmp.write_text(yaml.safe_dump(self.file_values, allow_unicode=True, sort_keys=True),
                       encoding="utf-8")
        tmp.replace(self.path)

    def overridden_by_env(self, key: str) -> bool:
        return f"{ENV_PREFIX}{key.upper()}" in os.environ


def load(home: str | Path | None = None) -> Settings:
    """Load settings: DEFAULTS, then ``home/settings.yaml`` if present, then ``TQTS_<KEY>``.

    Args:
        home: data dir; default :func:`default_home`.

    Raises:
        ValueError: settings.yaml is not a YAML mapping, or an env value does not parse.
    """
    home = Path(home).expanduser() if home else default_home()
    values = dict(DEFAULTS)
    file_values: dict[str, Any] = {}
    path = home / "settings.yaml"
    if path.exists():
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path} must be a YAML mapping of key: value; fix or delete it")
        file_values = {k: v for k, v in loaded.items() if k in DEFAULTS}
        values.update(file_values)
    for key, default in DEFAULTS.items():
        raw = os.environ.get(f"{ENV_PREFIX}{key.upper()}")
        if raw is not None:
            values[key] = _coerce(raw, default, key)
    return Settings(home=home, values=values, file_values=file_values)

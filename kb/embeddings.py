"""Sentence embeddings (sentence-transformers) and the chromadb embedding-function wrapper.

The model is a hub id or a local sentence-transformers folder (settings ``embedding_model``);
vectors are L2-normalised so cosine similarity = dot product. Queries get the model's
instruction prefix when it needs one (settings ``query_instruction``: "auto" looks it up in
:data:`QUERY_INSTRUCTIONS`, "" means none, any other string is used as is). E5 models
(intfloat/*e5*; Wang et al. 2022, "Text Embeddings by Weakly-Supervised Contrastive
Pre-training", model card) are trained with ``query: `` / ``passage: `` prefixes: with
``query_instruction: auto`` queries get ``query: `` and passages ``passage: ``.
"""
from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

from kb.onnx_embedder import ONNX_BACKENDS  # numpy only: no torch, no onnxruntime

#: name fragment -> query instruction (from each model card: BAAI/bge-*-v1.5, intfloat/e5).
QUERY_INSTRUCTIONS = {
    "bge-": {"zh": "为这个句子生成表示以用于检索相关文章：",
             "en": "Represent this sentence for searching relevant passages: "},
}


class EmbedderError(RuntimeError):
    """The embedding model cannot be loaded; the message says what to set or fetch."""


def query_instruction_for(model: str, setting: str = "auto") -> str:
    """Return the query prefix for ``model`` (see module docstring).

    >>> query_instruction_for("BAAI/bge-small-zh-v1.5")
    '为这个句子生成表示以用于检索相关文章：'
    >>> query_instruction_for("/models/all-MiniLM-L6-v2")
    ''
    """
    if setting != "auto":
        return setting or ""
    name = model.replace("\\", "/").rstrip("/").split("/")[-1].lower()
    if _is_e5(name):
        return "query: "
    if name.startswith("bge-") and "m3" not in name and "v1.5" in name:
        return QUERY_INSTRUCTIONS["bge-"]["zh" if "-zh" in name else "en"]
    return ""


def _is_e5(name: str) -> bool:
    return bool(re.search(r"(^|[-_/])e5([-_]|$)", name.lower()))


def passage_prefix_for(model: str, setting: str = "auto") -> str:
    """Return the passage prefix for ``model``: ``"passage: "`` for E5 models under
    ``query_instruction: auto``, else "" (see module docstring).

    >>> passage_prefix_for("intfloat/multilingual-e5-small")
    'passage: '
    >>> passage_prefix_for("/models/all-MiniLM-L6-v2")
    ''
    """
    name = model.replace("\\", "/").rstrip("/").split("/")[-1]
    return "passage: " if setting == "auto" and _is_e5(name) else ""


_THREADS_LOCK = threading.Lock()


class _one_torch_thread:
    """Context manager: torch.set_num_threads(1) inside, the previous value restored after."""

    def __enter__(self):
        import torch

        _THREADS_LOCK.acquire()
        self.before = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.before)
        _THREADS_LOCK.release()


def _unit_rows(vecs: np.ndarray) -> np.ndarray:
    """Re-normalise rows (N, D) in float32: a bfloat16 model normalises to only ~3 digits."""
    norms = np.linalg.norm(vecs, axis=-1, keepdims=True)
    return vecs / np.maximum(norms, 1e-12)


class Embedder:
    """A sentence-transformers model, loaded on first use (thread-safe).

    Args:
        model: hub id or local folder.
        batch_size: texts per ``encode`` call (settings ``embedding_batch_size``).
        query_instruction: settings ``query_instruction``.
        device: "auto" | "cpu" | "cuda" | "mps".
        dtype: "auto" (bfloat16 where the device computes it natively — CUDA, or a CPU with
            AVX512-BF16/AMX, see :func:`models.device.pick_dtype` — else float32)
            | "float32" | "bfloat16". Vectors are returned as float32 either way. Torch only.
        backend: "auto" | "torch" | "onnx" | "onnx-fp32" | "openvino" (settings
            ``embedding_backend``; see :mod:`kb.onnx_embedder`: auto = float32 ONNX on CPUs
            without native bf16, else torch; onnx = int8 ONNX).
        cache_dir: where ONNX exports are cached (default ``<data dir>/embeddings``).
    """

    def __init__(self, model: str, batch_size: int = 32, query_instruction: str = "auto",
                 device: str = "auto", dtype: str = "auto", backend: str = "torch",
                 cache_dir: str | Path | None = None):
        self.model_name = str(model)
        self.batch_size = int(batch_size)
        self.instruction = query_instruction_for(self.model_name, query_instruction)
        self.passage_prefix = passage_prefix_for(self.model_name, query_instruction)
        self.device = device
        self.dtype = dtype
        self.backend_setting = backend
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.backend: str | None = None  # resolved on load: "torch", "onnx", "onnx-fp32" or "openvino"
        self._model = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings) -> Embedder:
        """Build from settings (embedding_model, embedding_batch_size, query_instruction, device,
        embedding_dtype, embedding_backend; exports cached in ``<data dir>/embeddings``)."""
        return cls(settings.embedding_model, settings.embedding_batch_size,
                   settings.query_instruction, settings.device, settings.embedding_dtype,
                   settings.embedding_backend, Path(settings.home) / "embeddings")

    def torch_dtype(self, device: str):
        """The torch dtype to load the model in (see the class docstring).

        Raises:
            ValueError: ``dtype`` is not auto, float32 or bfloat16.
        """
        import torch

        if self.dtype == "auto":
            from models.device import pick_dtype

            return pick_dtype(device)
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"embedding_dtype={self.dtype!r}: use auto, float32 or bfloat16")
        return getattr(torch, self.dtype)

    @property
    def model(self):
        with self._lock:
            if self._model is None:
                from models.backend import BackendError
                from models.device import pick_device

                folder = Path(self.model_name).expanduser()
                if (folder.is_absolute() or self.model_name.startswith((".", "~"))) and not folder.exists():
                    raise EmbedderError(
                        f"the embedding model folder {self.model_name} is gone; put it back, or set "
                        "embedding_model (TQTS_EMBEDDING_MODEL) to another model and re-embed the "
                        "knowledge base with `python main.py kb reembed --kb NAME`")
                try:
                    device = pick_device(self.device)
                except BackendError as e:
                    raise EmbedderError(f"embedder: {e}") from None
                self._model = self._load_onnx(device)
                if self._model is not None:
                    return self._model
                self.backend = "torch"
                from sentence_transformers import SentenceTransformer  # imports torch: only here

                try:
                    self._model = SentenceTransformer(self.model_name, device=device, trust_remote_code=False,
                                                      model_kwargs={"dtype": self.torch_dtype(device)})
                except Exception as e:
                    raise EmbedderError(
                        f"cannot load the embedding model {self.model_name!r} ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); set embedding_model "
                        "(TQTS_EMBEDDING_MODEL) to a local sentence-transformers folder, or connect "
                        "once so the hub id can download") from None
            return self._model

    def _load_onnx(self, device: str):
        """The :class:`kb.onnx_embedder.OnnxEncoder` when the backend resolves to onnx/openvino,
        else None (torch). ``auto`` falls back to torch, with a log line, when the model cannot be
        exported; an explicit onnx/openvino setting raises EmbedderError instead."""
        from kb.onnx_embedder import OnnxEncoder, UnsupportedModel, pick_backend

        try:
            self.backend = pick_backend(self.backend_setting, device)
        except ValueError as e:
            raise EmbedderError(str(e)) from None
        if self.backend == "torch":
            return None
        cache = self.cache_dir or (Path.home() / ".tqts" / "embeddings")
        try:
            return OnnxEncoder(self.model_name, cache, runtime="openvino" if self.backend == "openvino" else "onnx",
                               precision=ONNX_BACKENDS[self.backend])
        except (UnsupportedModel, ImportError, OSError) as e:
            if self.backend_setting != "auto":
                raise EmbedderError(f"embedding_backend: {self.backend_setting}: {e}; "
                                    "set embedding_backend: torch (or auto)") from None
            logging.getLogger(__name__).warning("embedder: %s; using torch", e)
            return None

    @property
    def dimension(self) -> int:
        """Length of one embedding vector."""
        m = self.model
        if self.backend in ONNX_BACKENDS:
            return m.dimension
        return int(m.get_embedding_dimension() if hasattr(m, "get_embedding_dimension")
                   else m.get_sentence_embedding_dimension())

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        """Embed passages. Returns float32 array (len(texts), dimension), rows L2-normalised."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._encode([self.passage_prefix + t for t in texts])

    def _encode(self, texts: list[str]) -> np.ndarray:
        model = self.model
        if self.backend in ONNX_BACKENDS:
            return model.encode(list(texts))  # one text per run (see OnnxEncoder.encode)
        vecs = model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)
        return _unit_rows(np.asarray(vecs, dtype=np.float32))

    def encode_query(self, query: str) -> np.ndarray:
        """Embed one query (instruction prefixed when the model needs one). Returns (dimension,).

        Runs torch on one thread: for one short text, several threads only wait on each
        other, and when another core is busy a 2-thread encode of all-MiniLM-L6-v2 took
        ~450 ms here against ~8 ms on one thread. (The ONNX backends run without torch.)
        """
        self.model  # noqa: B018 - load first: self.backend is known after
        if self.backend in ONNX_BACKENDS:
            return self._encode([self.instruction + query])[0]
        with _one_torch_thread():
            return self._encode([self.instruction + query])[0]


@register_embedding_function
class TqtsEmbeddingFunction(EmbeddingFunction[Documents]):
    """chromadb wrapper around :class:`Embedder`; registered so a reopened store rebuilds it
    from the collection's stored config (model name, instruction) without loading chromadb's
    default (downloading) embedding function. The model loads only when first called."""

    def __init__(self, model: str = "", query_instruction: str = "auto", embedder: Embedder | None = None):
        self.embedder = embedder or Embedder(model, query_instruction=query_instruction)
        self._instruction_setting = query_instruction

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embedder.encode_documents(list(input)))

    def embed_query(self, input: Documents) -> Embeddings:
        return [self.embedder.encode_query(q) for q in input]

    @staticmethod
    def name() -> str:
        return "tqts_sentence_transformers"

    def default_space(self):
        return "cosine"

    def supported_spaces(self):
        return ["cosine"]

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> TqtsEmbeddingFunction:
        return TqtsEmbeddingFunction(config.get("model", ""), config.get("query_instruction", "auto"))

    def get_config(self) -> dict[str, Any]:
        return {"model": self.embedder.model_name, "query_instruction": self._instruction_setting}

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        return

"""models/llamacpp_backend.py: clear errors without llama-cpp-python or a GGUF; real GGUF
chat, streaming and cancel under the `real` marker."""
from __future__ import annotations

import sys
import threading

import pytest

from models.backend import BackendError, GenerationSettings
from models.llamacpp_backend import LlamaCppBackend, find_gguf
from tests.conftest import OFFLINE

SMOLLM = OFFLINE / "smollm2-135m-instruct-q4_1.gguf"


def test_find_gguf_accepts_file_folder_and_explains_misses(tmp_path):
    f = tmp_path / "m" / "model.gguf"
    f.parent.mkdir()
    f.write_bytes(b"GGUF")
    assert find_gguf(f) == f and find_gguf(f.parent) == f
    (tmp_path / "two").mkdir()
    for n in ("a.gguf", "b.gguf"):
        (tmp_path / "two" / n).write_bytes(b"GGUF")
    with pytest.raises(BackendError, match="several .gguf"):
        find_gguf(tmp_path / "two")
    with pytest.raises(BackendError, match="not found"):
        find_gguf(tmp_path / "missing.gguf")


def test_missing_package_says_how_to_install(tmp_path, monkeypatch):
    f = tmp_path / "model.gguf"
    f.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp -> ImportError
    with pytest.raises(BackendError, match="pip install llama-cpp-python"):
        LlamaCppBackend(f)


def test_adapter_is_refused_with_the_fix(tmp_path):
    with pytest.raises(BackendError, match="transformers"):
        LlamaCppBackend(tmp_path, adapter="/some/lora")


def test_corrupt_file_is_a_backend_error(tmp_path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (optional)")
    f = tmp_path / "model.gguf"
    f.write_bytes(b"not a gguf at all")
    with pytest.raises(BackendError, match="could not load"):
        LlamaCppBackend(f)


@pytest.fixture(scope="module")
def smollm():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (optional)")
    if not SMOLLM.exists():
        pytest.skip(f"{SMOLLM} not found (../shared/tools/offline-models)")
    return LlamaCppBackend(SMOLLM, context_tokens=512)


@pytest.mark.real
def test_streams_a_greedy_answer_and_counts_tokens(smollm):
    gen = GenerationSettings(max_new_tokens=12, temperature=0.0)
    msgs = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    deltas = list(smollm.stream(msgs, gen=gen))
    text = "".join(deltas)
    assert len(deltas) > 1 and "Paris" in text
    assert smollm.complete(msgs, gen=gen) == text  # greedy is deterministic
    assert 0 < smollm.count_tokens(text) <= 12


@pytest.mark.real
def test_cancel_stops_at_the_next_token_and_overflow_is_explained(smollm):
    cancel = threading.Event()
    got = []
    for d in smollm.stream([{"role": "user", "content": "Count from 1 to 100."}],
                           gen=GenerationSettings(max_new_tokens=200, temperature=0.0), cancel=cancel):
        got.append(d)
        cancel.set()
    assert len(got) == 1
    with pytest.raises(BackendError, match="context_tokens"):
        list(smollm.stream([{"role": "user", "content": "word " * 2000}], gen=GenerationSettings(max_new_tokens=4)))

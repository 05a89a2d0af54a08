"""models/llamacpp_backend.py on xllamacpp (a plain pip install, so these run in CI): a tiny
random Qwen2 GGUF built in the test streams, cancels at the next token, reports context
overflow, and the registry picks the backend for GGUF models on the CPU. The real Qwen GGUF
answers under the `real` marker."""
from __future__ import annotations

import sys
import threading

import pytest

from models.backend import BackendError, GenerationSettings
from models.llamacpp_backend import LlamaCppBackend, find_gguf
from tests.conftest import OFFLINE

pytest.importorskip("xllamacpp", reason="xllamacpp is in requirements.txt; pip install -r requirements.txt")

GREEDY = GenerationSettings(max_new_tokens=24, temperature=0.0, repetition_penalty=1.0)
QWEN = OFFLINE / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    from tests.tiny_gguf import build_tiny_qwen_gguf

    return build_tiny_qwen_gguf(tmp_path_factory.mktemp("tiny-gguf") / "model.gguf")


@pytest.fixture(scope="module")
def tiny(tiny_gguf):
    backend = LlamaCppBackend(tiny_gguf, context_tokens=256, threads=1)
    yield backend
    backend.close()


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
    monkeypatch.setitem(sys.modules, "xllamacpp", None)  # import xllamacpp -> ImportError
    with pytest.raises(BackendError, match="pip install xllamacpp"):
        LlamaCppBackend(f)


def test_a_folder_that_is_no_adapter_is_refused_with_the_fix(tiny_gguf, tmp_path):
    from models.lora_gguf import LoraConversionError

    with pytest.raises(LoraConversionError, match="nor a PEFT adapter folder.*backend: transformers"):
        LlamaCppBackend(tiny_gguf, adapter=str(tmp_path / "some-lora"), threads=1)


def test_corrupt_file_is_a_backend_error(tmp_path):
    f = tmp_path / "model.gguf"
    f.write_bytes(b"not a gguf at all")
    with pytest.raises(BackendError, match="could not load"):
        LlamaCppBackend(f, threads=1)


def test_streams_deltas_and_greedy_is_deterministic(tiny):
    msgs = [{"role": "user", "content": "the cat sat"}]
    deltas = list(tiny.stream(msgs, gen=GREEDY))
    assert len(deltas) > 3 and all(isinstance(d, str) and d for d in deltas)
    assert tiny.complete(msgs, gen=GREEDY) == "".join(deltas)


def test_cancel_stops_at_the_next_token(tiny):
    msgs = [{"role": "user", "content": "the cat sat"}]
    full = list(tiny.stream(msgs, gen=GREEDY))
    cancel = threading.Event()
    got = []
    for d in tiny.stream(msgs, gen=GREEDY, cancel=cancel):
        got.append(d)
        cancel.set()
    assert len(got) == 1 < len(full)
    assert tiny.complete(msgs, gen=GREEDY) == "".join(full)  # the server serves the next request


def test_context_overflow_is_explained_and_the_backend_keeps_working(tiny):
    with pytest.raises(BackendError, match="context_tokens"):
        list(tiny.stream([{"role": "user", "content": "the " * 600}], gen=GREEDY))
    assert tiny.complete([{"role": "user", "content": "the"}], gen=GREEDY)


def test_two_threads_stream_at_once(tiny):
    msgs = [{"role": "user", "content": "in the"}]
    want = tiny.complete(msgs, gen=GREEDY)
    out: dict[int, str] = {}
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, tiny.complete(msgs, gen=GREEDY)))
               for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert out == {0: want, 1: want}


def test_registry_auto_uses_llamacpp_for_an_imported_gguf(home, tiny_gguf, monkeypatch):
    import settings as settings_mod
    from models.registry import ModelRegistry

    folder = home / "models" / "tiny"
    folder.mkdir(parents=True)
    (folder / "model.gguf").write_bytes(tiny_gguf.read_bytes())
    (folder / "config.json").write_text("{}")
    s = settings_mod.load()
    s.set("model", str(folder), persist=False)
    assert s.backend == "auto"
    backend = ModelRegistry(s).load_backend()
    try:
        assert isinstance(backend, LlamaCppBackend) and backend.path == folder / "model.gguf"
    finally:
        backend.close()
    s.set("adapter", str(home / "lora"), persist=False)  # no adapter there: transformers reports it
    from models.registry import pick_chat_backend

    assert pick_chat_backend(s, str(folder), str(home / "lora")) == "transformers"
    assert pick_chat_backend(s, str(folder), "") == "llamacpp"


@pytest.mark.real
def test_real_qwen_gguf_answers(tmp_path):
    if not QWEN.exists():
        pytest.skip(f"{QWEN} not found")
    b = LlamaCppBackend(QWEN, context_tokens=1024, threads=1)
    try:
        text = b.complete([{"role": "user", "content": "What is 2+3? Answer with the number only."}],
                          gen=GenerationSettings(max_new_tokens=8, temperature=0.0))
        assert "5" in text
    finally:
        b.close()


# -- prompt cache: prefix reuse, warm, threads (README "Performance", time to first token) ------
SYSTEM = {"role": "system", "content": "You answer from the numbered sources. " * 4}


def rag(question: str, doc: str) -> list[dict]:
    """A RAG prompt: system, 25 numbered sources of document ``doc`` (each test its own: the
    cache of an earlier test's sources must not help), the question last (models/prompts.py)."""
    sources = "\n\n".join(f"[{i}] {doc}.pdf, p. {i}\nthe cat sat on the mat {i} times and the dog ran"
                          for i in range(1, 26))
    return [SYSTEM, {"role": "user", "content": f"Sources:\n\n{sources}\n\nQuestion: {question}"}]


class CancelAfter:
    """A cancel flag that turns on at its ``n``-th check (the backend checks once per chunk)."""

    def __init__(self, n: int) -> None:
        self.n, self.checks = n, 0

    def is_set(self) -> bool:
        self.checks += 1
        return self.checks >= self.n


@pytest.fixture(scope="module")
def tiny_long(tiny_gguf):
    backend = LlamaCppBackend(tiny_gguf, context_tokens=2048, threads=1)
    yield backend
    backend.close()


def test_a_shared_prefix_is_evaluated_once(tiny_long):
    tiny_long.complete(rag("what did the cat do?", "a"), gen=GREEDY)
    first = tiny_long.last_timings
    tiny_long.complete(rag("where did the dog run?", "a"), gen=GREEDY)
    second = tiny_long.last_timings
    assert first["prompt_n"] > 1000 and first["cache_n"] == 0, first   # cold: the whole prompt
    assert second["cache_n"] > 1000 and second["prompt_n"] < 40, second  # only the new question


def test_warm_prefills_the_prompt_and_the_question_evaluates_only_its_tail(tiny_long):
    info = tiny_long.warm(rag("how many times did the", "b"))
    assert not info["cancelled"] and info["evaluated"] > 1000, info
    assert info["evaluated"] + info["cached"] == info["prompt_tokens"]
    tiny_long.complete(rag("how many times did the cat sit?", "b"), gen=GREEDY)
    t = tiny_long.last_timings
    assert t["cache_n"] >= info["prompt_tokens"] - 20 and t["prompt_n"] < 40, t


def test_warm_is_cancelled_between_prompt_batches_and_keeps_what_it_evaluated(tiny_long):
    from models.llamacpp_backend import BATCH_TOKENS

    info = tiny_long.warm(rag("which page is the", "c"), cancel=CancelAfter(3))   # after the first batch
    assert info["cancelled"] and 0 < info["evaluated"] < info["prompt_tokens"] - BATCH_TOKENS // 2, info
    tiny_long.complete(rag("which page is the cat on?", "c"), gen=GREEDY)
    t = tiny_long.last_timings
    assert t["cache_n"] >= info["cached"] + info["evaluated"] - 1, t   # the cancelled warm's work is reused
    set_before = threading.Event()
    set_before.set()
    assert tiny_long.warm(rag("anything", "d"), cancel=set_before)["evaluated"] == 0


def test_stream_cancel_works_during_prompt_processing(tiny_long):
    cancel = CancelAfter(3)
    assert list(tiny_long.stream(rag("stop while reading", "e"), gen=GREEDY, cancel=cancel)) == []  # no token
    assert tiny_long.complete(rag("stop while reading", "e"), gen=GREEDY)   # the server serves the next one
    from models.llamacpp_backend import BATCH_TOKENS

    assert tiny_long.last_timings["cache_n"] >= BATCH_TOKENS   # at least the first batch read was kept


def test_default_threads_leave_a_core_free(monkeypatch):
    import psutil

    from models import llamacpp_backend as lb

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert lb.default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(lb.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    for physical, want in ((1, 1), (2, 1), (4, 3), (16, 7)):
        monkeypatch.setattr(psutil, "cpu_count", lambda logical=True, n=physical: n if not logical else 2 * n)
        assert lb.default_threads() == want, physical


@pytest.mark.real
def test_real_qwen_gguf_reuses_a_warmed_prompt(tmp_path):
    if not QWEN.exists():
        pytest.skip(f"{QWEN} not found")
    b = LlamaCppBackend(QWEN, context_tokens=2048, threads=1)
    try:
        info = b.warm(rag("how many times did the", "real"))
        assert info["evaluated"] > 300 and not info["cancelled"], info
        b.complete(rag("how many times did the cat sit?", "real"), gen=GREEDY)
        t = b.last_timings
        assert t["cache_n"] >= info["prompt_tokens"] - 10 and t["prompt_n"] < 20, t
    finally:
        b.close()

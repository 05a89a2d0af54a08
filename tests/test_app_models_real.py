"""The model manager on real weights (``pytest -m real``): the app starts answering with a tiny
model, the manager imports the offline Qwen2.5 GGUF (converted to safetensors on a worker while
the window stays live), *Use* switches to it, and the next answer comes from the new model:
no restart. Prints the import, switch and answer times.

Needs ~/.cache/offline-models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf and multilingual-e5-small
(tests/conftest.py ``OFFLINE``). One thread: ``OMP_NUM_THREADS=1``.
"""
from __future__ import annotations

import gc
import time

import pytest

from tests.conftest import OFFLINE, need
from tests.fakes import pump

pytestmark = [pytest.mark.gui, pytest.mark.real]


def make_pdf(path, pages):
    import pymupdf

    doc = pymupdf.open()
    for text in pages:
        doc.new_page().insert_text((72, 72), text, fontsize=12)
    doc.save(path)
    return path


@pytest.mark.timeout(3600)
def test_manager_imports_the_gguf_and_switches_without_restart(display, home, qwen_gguf, tiny_qwen_dir,
                                                               monkeypatch, tmp_path):
    import settings as settings_mod
    from app.main import App
    from app.services import build_services

    e5 = need(OFFLINE / "multilingual-e5-small", "multilingual-e5-small")
    monkeypatch.setenv("TQTS_EMBEDDING_MODEL", str(e5))
    monkeypatch.setenv("TQTS_MAX_NEW_TOKENS", "24")
    settings = settings_mod.load()
    services = build_services(settings)
    services.registry.import_path(tiny_qwen_dir, name="tiny")       # answering with it at start
    services.kb.ingest([str(make_pdf(tmp_path / "capital.pdf",
                                     ["The capital of France is Paris. Paris has 2.1 million inhabitants."]))])
    app = App(settings, services)
    try:
        assert pump(app.root, lambda: app.model_ok is True and not app.dispatcher.jobs, timeout=900)
        first = services.answers.backend()
        assert first.name == "tiny" and app.first_run is None

        app.open_model_manager()
        m = app.model_manager
        t0 = time.monotonic()
        m.import_path(str(qwen_gguf))
        steps = set()
        assert pump(app.root, lambda: steps.add(float(m.progress["value"])) or m.job is None, timeout=3000)
        import_s = time.monotonic() - t0
        name = qwen_gguf.stem
        assert pump(app.root, lambda: m.tree.exists(name), timeout=120), m.status["text"]
        kind, size, active = m.tree.item(name)["values"]
        assert kind == "GGUF" and size.endswith(("GB", "MB"))
        assert active == "" and settings.model == "tiny"             # imported, not yet used
        assert len(steps) >= 3                                       # the bar moved through the steps

        t0 = time.monotonic()
        m.use(name)
        assert pump(app.root, lambda: settings.model == name and not app.dispatcher.jobs
                    and m.tree.exists(name) and m.tree.item(name)["values"][2] == "✓", timeout=900)
        switch_s = time.monotonic() - t0
        backend = services.answers.backend()
        assert backend is not first and backend.name == name
        assert backend.model_dir == str(settings.models_dir / name)

        t0 = time.monotonic()
        app.chat.set_question("What is the capital of France?")
        turn = app.chat.ask()
        assert pump(app.root, lambda: not app.chat.busy, timeout=900)
        answer_s = time.monotonic() - t0
        result = app.chat.last_result
        answer = app.chat.transcript.answers.get(turn, "")
        print(f"\nimport {import_s:.1f} s, switch (backend reload) {switch_s:.1f} s, answer {answer_s:.1f} s; "
              f"model {result.model!r}; size {size}; answer: {answer[:120]!r}")
        assert result.model == name and (answer.strip() or result.refused)
    finally:
        app.close(timeout=120)
        gc.collect()

"""Warm while typing (app/warm.py) under Xvfb: a pause after typing sends the draft to the
answering service's ``warm`` through a worker; keys typed in a row give one warm; one warm
runs at a time, a newer draft cancels the running one; sending the question cancels it. The
last test runs the real AnswerService on a tiny llama.cpp GGUF: the question's request reuses
the warmed prompt (llama.cpp's own ``cache_n`` / ``prompt_n``)."""
from __future__ import annotations

import threading

import pytest

from tests.fakes import make_pdf, pump

pytestmark = pytest.mark.gui


def type_text(app, text: str) -> None:
    """Replace the question box's text and send the ``<KeyRelease>`` a key press ends with."""
    box = app.chat.input
    box.delete("1.0", "end")
    box.insert("1.0", text)
    box.event_generate("<KeyRelease>", keysym="a")


def ready(make_app, tmp_path, **kw):
    app = make_app(**kw)
    assert pump(app.root, lambda: app.model_ok is not None and not app.dispatcher.jobs)
    app.services.kb.ingest([str(make_pdf(tmp_path / "宪法.pdf", ["第一条 宪法 国家", "第二条 公民"]))])
    app.root.focus_force()                       # key events go to the focused widget
    app.chat.input.focus_set()
    app.root.update()
    return app


def test_a_pause_after_typing_warms_the_last_draft_once(make_app, tmp_path):
    app = ready(make_app, tmp_path)
    answers, warmer = app.services.answers, app.chat.warmer
    for draft in ("宪", "宪法", "宪法 国家"):   # keys in a row: each restarts the debounce timer
        type_text(app, draft)
    assert pump(app.root, lambda: warmer.results)
    assert answers.warmed == ["宪法 国家"]
    assert warmer.results == [("宪法 国家", "finished", {"sources": 1, "cancelled": False})]
    type_text(app, "宪法 国家")                 # a key that does not change the text (an arrow key)
    warmer._fire()                               # the debounce timer's callback, now: no second warm
    assert warmer.job is None and answers.warmed == ["宪法 国家"]
    type_text(app, "宪法 公民")
    assert pump(app.root, lambda: len(warmer.results) == 2)
    assert answers.warmed == ["宪法 国家", "宪法 公民"] and answers.most_warming == 1


def test_one_warm_at_a_time_and_sending_the_question_cancels_it(make_app, tmp_path):
    app = ready(make_app, tmp_path)
    answers, warmer = app.services.answers, app.chat.warmer
    answers.warm_gate = threading.Event()        # each warm holds its worker, like a long prefill
    type_text(app, "宪法")
    assert pump(app.root, lambda: answers.warmed == ["宪法"])
    type_text(app, "宪法 国家")                  # a newer draft: the running warm is cancelled first
    assert pump(app.root, lambda: answers.warmed == ["宪法", "宪法 国家"])
    assert warmer.results[0] == ("宪法", "finished", {"sources": 1, "cancelled": True})
    assert answers.most_warming == 1
    t = app.chat.ask()                           # Send: the running warm is cancelled too
    assert pump(app.root, lambda: not app.chat.busy and len(warmer.results) == 2)
    assert warmer.results[1] == ("宪法 国家", "finished", {"sources": 1, "cancelled": True})
    assert app.chat.transcript.answers[t].startswith("答案见第一条")
    type_text(app, "")                           # an empty box warms nothing
    app.chat.warmer._fire()
    assert warmer.job is None and len(answers.warmed) == 2


def test_no_warm_without_a_model(make_app, tmp_path):
    app = ready(make_app, tmp_path, available=False)
    type_text(app, "宪法")
    app.chat.warmer._fire()                      # the debounce timer's callback, now
    assert app.chat.warmer.job is None and app.services.answers.warmed == []


def test_typing_warms_the_real_service_and_the_question_reuses_the_prefill(make_app, tmp_path):
    pytest.importorskip("xllamacpp")
    from models.answer import AnswerService
    from models.llamacpp_backend import LlamaCppBackend
    from tests.tiny_gguf import build_tiny_qwen_gguf

    app = ready(make_app, tmp_path)
    kb = app.services.kb
    backend = LlamaCppBackend(build_tiny_qwen_gguf(tmp_path / "tiny" / "model.gguf"), context_tokens=2048,
                              threads=1)
    try:
        app.settings.set("max_new_tokens", 8, persist=False)
        app.services.answers = AnswerService(app.settings, kb, backend=backend)
        type_text(app, "宪法 国家 是什么")
        warmer = app.chat.warmer
        assert pump(app.root, lambda: warmer.results)
        draft, kind, info = warmer.results[0]
        assert kind == "finished" and info["skipped"] == "" and info["sources"] == 1, info
        assert info["evaluated"] > 50 and not info["cancelled"]
        app.chat.ask("宪法 国家 是什么意思")          # same sources, the question typed further
        assert pump(app.root, lambda: not app.chat.busy)
        t = backend.last_timings
        assert t["cache_n"] >= info["prompt_tokens"] - 20, t   # all but the question's tail reused
        assert t["prompt_n"] < 30, t
    finally:
        backend.close()

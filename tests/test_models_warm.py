"""AnswerService.warm and the backends' warm(): the prompt puts the question last, so a draft
prefills what the final question's prompt starts with; a backend that cannot warm (transformers)
does nothing and the service says so; bad drafts and cancels are reported, never raised; the
system prompt is warmed once when a model loads. The llama.cpp side (prefix reuse measured by
llama.cpp's own timings) is in tests/test_bench_llamacpp_backend.py and tests/test_app_warm.py."""
from __future__ import annotations

import threading

import pytest

from models import prompts
from models.answer import AnswerService
from models.backend import ChatBackend
from tests.test_answer_service import FakeKB, hits


class WarmRecorder(ChatBackend):
    """A backend that records what it is asked to warm (``warmed``) and signals it (``event``)."""

    name = "warm-recorder"

    def __init__(self) -> None:
        self.warmed: list[list[dict]] = []
        self.calls: list[list[dict]] = []
        self.event = threading.Event()

    def stream(self, messages, *, gen=None, cancel=None):
        self.calls.append(messages)
        yield "<answer>民主集中制 [1]</answer>"

    def warm(self, messages, *, cancel=None):
        self.warmed.append(messages)
        self.event.set()
        return {"prompt_tokens": 9, "cached": 0, "evaluated": 9, "cancelled": False}


class Registry:
    """The registry contract the service uses: ``load_backend()``; counts loads."""

    def __init__(self, backend) -> None:
        self.backend, self.loads = backend, 0

    def load_backend(self, name=None):
        self.loads += 1
        return self.backend


def test_the_question_comes_last_so_a_draft_prefills_the_final_prompt():
    sources = [{"source": "/d/宪法.pdf", "page": 4, "text": "国家机构实行民主集中制的原则。"},
               {"source": "/d/其他.pdf", "page": 9, "text": "国家加强武装力量的建设。"}]
    history = [{"role": "user", "content": "上一个问题"}, {"role": "assistant", "content": "上一个回答"}]
    draft = prompts.grounded_messages("国家机构实行", sources, False, history)
    final = prompts.grounded_messages("国家机构实行什么原则？", sources, False, history)
    assert draft[:-1] == final[:-1]                                 # system + history: identical
    assert final[-1]["content"].startswith(draft[-1]["content"])   # sources, then the question


def test_warm_sends_the_prompt_ask_sends_and_a_draft_its_beginning(settings):
    backend = WarmRecorder()
    svc = AnswerService(settings, FakeKB(hits()), backend=backend)
    info = svc.warm("国家机构实行什么原则？")
    assert info == {"sources": 3, "skipped": "", "prompt_tokens": 9, "cached": 0, "evaluated": 9, "cancelled": False}
    svc.answer("国家机构实行什么原则？", use_history=False)
    assert backend.warmed == backend.calls                     # the very prompt the question sends
    svc.warm("宪法规定", use_history=False)                       # a draft of the next question
    svc.answer("宪法规定了什么？", use_history=False)
    (*head, user), (*head2, user2) = backend.warmed[-1], backend.calls[-1]
    assert head == head2 and user2["content"].startswith(user["content"])


def test_a_backend_that_cannot_warm_is_left_alone(settings, tiny_qwen_dir):
    from models.transformers_backend import TransformersBackend

    backend = TransformersBackend(tiny_qwen_dir, settings)
    assert backend.warm([{"role": "user", "content": "你好"}]) is None   # the interface's no-op
    svc = AnswerService(settings, FakeKB(hits()), backend=backend)
    assert svc.warm("国家机构实行什么原则") == {"sources": 3, "skipped": "backend cannot warm"}


def test_bad_drafts_nothing_relevant_and_cancel_are_reported_not_raised(settings):
    registry = Registry(WarmRecorder())
    svc = AnswerService(settings, FakeKB(hits()), registry=registry)
    empty = svc.warm("   ")
    assert empty["sources"] == 0 and "empty" in empty["skipped"]
    assert svc.warm("국가 기관은 어떤 원칙을 따릅니까")["sources"] == 0          # a third language
    assert AnswerService(settings, FakeKB(hits(sim=0.1)), registry=registry).warm("国家机构") == \
        {"sources": 0, "skipped": "nothing relevant"}
    cancel = threading.Event()
    cancel.set()
    assert svc.warm("国家机构实行什么原则", cancel=cancel) == {"sources": 3, "skipped": "cancelled"}
    assert registry.loads == 0   # none of these loaded the model


def test_loading_the_model_warms_the_system_prompt_once(settings):
    backend = WarmRecorder()
    registry = Registry(backend)
    svc = AnswerService(settings, FakeKB(hits()), registry=registry)
    assert svc.backend() is backend and svc.backend() is backend
    assert backend.event.wait(timeout=120)          # the warm runs on its own thread
    lang = "zh" if settings.ui_language == "zh" else "en"
    assert backend.warmed == [[{"role": "system", "content": prompts.SYSTEM[(lang, bool(settings.think))]}]]
    assert registry.loads == 1


@pytest.mark.parametrize("ui_language", ["zh", "en"])
def test_the_system_prompt_warmed_is_the_ui_language_one(settings, ui_language):
    settings.set("ui_language", ui_language, persist=False)
    backend = WarmRecorder()
    AnswerService(settings, FakeKB(hits()), registry=Registry(backend)).backend()
    assert backend.event.wait(timeout=120)
    assert backend.warmed[0][0]["content"] == prompts.SYSTEM[(ui_language, bool(settings.think))]

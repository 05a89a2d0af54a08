"""AnswerService: tag parsing, citations, refusal, prompt budget, history, events (fakes + tiny Qwen)."""
from __future__ import annotations

import json
import threading

import pytest

from kb.types import Hit
from models.answer import AnswerService, history_file
from models.backend import BackendError, ChatBackend
from models.prompts import TagStreamParser, cited_numbers, detect_language


@pytest.fixture(autouse=True)
def _model_text_kept(settings):
    """These tests check the model's own text: the extractive fallback (tests/test_answer_passages.py) off."""
    settings.set("extractive_fallback", False, persist=False)


class FakeKB:
    """Implements the KnowledgeBaseService search/is_relevant contract over fixed hits."""

    def __init__(self, hits, floor=0.3):
        self.hits, self.floor, self.queries = hits, floor, []

    def search(self, query, kb=None, k=None):
        self.queries.append((query, kb, k))
        return self.hits[: k or 5]

    def is_relevant(self, hits):
        return bool(hits) and max(h.similarity or 0 for h in hits) >= self.floor


class ScriptedBackend(ChatBackend):
    """Yields a fixed completion in given deltas; records the messages it was sent."""

    name = "scripted"

    def __init__(self, deltas, context_tokens=4096):
        self.deltas, self.context_tokens, self.calls = list(deltas), context_tokens, []

    def stream(self, messages, *, gen=None, cancel=None):
        self.calls.append(messages)
        for d in self.deltas:
            if cancel is not None and cancel.is_set():
                return
            yield d


def hits(n=3, sim=0.8):
    return [Hit(rank=i, score=1.0 / (60 + i), source=f"/docs/宪法-{i}.pdf", page=10 + i,
                text=f"第{i}段：国家机构实行民主集中制的原则。" * 3, similarity=sim) for i in range(1, n + 1)]


# -- pure parts ---------------------------------------------------------------------------
@pytest.mark.parametrize("deltas", [
    ["<think>先看资料</think><answer>民主集中制 [1]</answer>"],
    ["<", "th", "ink>先看", "资料</th", "ink>", "<ans", "wer>民主集中", "制 [1]</", "answer>"],
    list("<think>先看资料</think>\n<answer>民主集中制 [1]</answer>"),
])
def test_parser_handles_tags_split_across_deltas(deltas):
    p = TagStreamParser()
    pieces = [x for d in deltas for x in p.feed(d)] + p.close()
    assert "".join(t for k, t in pieces if k == "reasoning") == "先看资料"
    assert "".join(t for k, t in pieces if k == "answer") == "民主集中制 [1]"
    assert all(k in ("reasoning", "answer") for k, _ in pieces)


def test_parser_without_tags_is_all_answer_and_keeps_lone_angle_brackets():
    p = TagStreamParser()
    out = p.feed("a < b and <b>bold</b") + p.feed("> [2]") + p.close()
    assert out and all(k == "answer" for k, _ in out)
    assert p.answer == "a < b and <b>bold</b> [2]" and p.reasoning == ""


def test_parser_ignores_text_after_answer_close():
    p = TagStreamParser()
    p.feed("<answer>42</answer><|im_end|> junk")
    p.close()
    assert p.answer == "42"


def test_cited_numbers_and_language():
    assert cited_numbers("见 [2]，另见 [1, 3] 和 [7]", 3) == [2, 1, 3]
    assert cited_numbers("no citations", 3) == []
    assert detect_language("国家机构?") == "zh" and detect_language("What is X?") == "en"


# -- service with fakes -----------------------------------------------------------------------
def test_events_order_sources_citations_and_prompt(settings):
    backend = ScriptedBackend(["<think>资料[2]说", "了</think><answer>实行民主", "集中制的原则 [2]。</answer>"])
    svc = AnswerService(settings, FakeKB(hits()), backend=backend)
    events = list(svc.ask("国家机构实行什么原则？", kb="宪法", think=True))
    kinds = [e.kind for e in events]
    assert kinds[0] == "sources" and kinds[-1] == "done" and "reasoning" in kinds and "answer" in kinds
    assert kinds.index("reasoning") < kinds.index("answer")
    r = events[-1].data
    assert r.answer == "实行民主集中制的原则 [2]。" and r.reasoning == "资料[2]说了"
    assert r.cited == [2] and r.sources[1].page == 12 and not r.refused
    assert r.timings["tokens"] > 0 and r.timings["ttft_ms"] is not None and r.timings["retrieve_ms"] >= 0
    system, user = backend.calls[0][0]["content"], backend.calls[0][-1]["content"]
    assert "<think>" in system and "中文" in system and "[2]" in system  # language, R1 tags, citation form
    assert "资料中没有" in system and "土地" not in system  # a refusal phrase; no fact to copy as an example
    assert "[1] 宪法-1.pdf, p. 11" in user and "[3] 宪法-3.pdf, p. 13" in user and user.endswith("问题：国家机构实行什么原则？")


def test_no_think_asks_for_the_answer_directly(settings):
    backend = ScriptedBackend(["The answer is X [1]."])
    svc = AnswerService(settings, FakeKB(hits()), backend=backend)
    r = svc.answer("What principle applies?", think=False)
    assert "<think>" not in backend.calls[0][0]["content"] and "English" in backend.calls[0][0]["content"]
    assert r.answer == "The answer is X [1]." and r.reasoning == "" and r.cited == [1]


def test_refusal_without_calling_the_model(settings):
    settings.set("refusal", "「{kb}」里没有。", persist=False)

    class Exploding(ScriptedBackend):
        def stream(self, *a, **k):
            raise AssertionError("the model must not be called")

    svc = AnswerService(settings, FakeKB(hits(sim=0.1)), backend=Exploding([]))
    events = list(svc.ask("天气如何？", kb="宪法"))
    assert [e.kind for e in events] == ["sources", "refusal", "done"]
    assert events[0].data == [] and events[1].text == "「宪法」里没有。" and events[-1].data.refused


def test_backend_error_becomes_one_error_event(settings):
    class Down(ScriptedBackend):
        def stream(self, *a, **k):
            raise BackendError("the Ollama server is not reachable: start it with `ollama serve`")
            yield  # pragma: no cover

    events = list(AnswerService(settings, FakeKB(hits()), backend=Down([])).ask("问？"))
    assert [e.kind for e in events] == ["sources", "error", "done"]
    assert "ollama serve" in events[1].text and events[-1].data.error


def test_cancel_stops_the_stream(settings):
    cancel = threading.Event()
    backend = ScriptedBackend(["<answer>a", "b", "c", "d</answer>"])
    answers = []
    for ev in AnswerService(settings, FakeKB(hits()), backend=backend).ask("问？", cancel=cancel):
        if ev.kind == "answer":
            answers.append(ev.text)
            cancel.set()
    assert "".join(answers) == "a"


def test_history_per_kb_used_for_follow_ups(settings):
    backend = ScriptedBackend(["<answer>民主集中制 [1]</answer>"])
    svc = AnswerService(settings, FakeKB(hits()), backend=backend)
    svc.answer("国家机构实行什么原则？", kb="宪法 知识库/一")
    svc.answer("为什么？", kb="宪法 知识库/一")
    second = backend.calls[1]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[1]["content"] == "国家机构实行什么原则？" and second[2]["content"] == "民主集中制 [1]"
    path = history_file(settings.history_dir, "宪法 知识库/一")
    assert path.parent == settings.history_dir and "宪法" in path.name and "/" not in path.name[:-6]
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert [r["question"] for r in rows] == ["国家机构实行什么原则？", "为什么？"]
    assert svc.history("other") == []
    md = svc.export_markdown("宪法 知识库/一", settings.home / "chat.md").read_text(encoding="utf-8")
    assert "## 为什么？" in md and "[1] 宪法-1.pdf, p. 11" in md
    svc.answer("再问", kb="宪法 知识库/一", use_history=False)
    assert len(backend.calls[2]) == 2
    svc.clear_history("宪法 知识库/一")
    assert svc.history("宪法 知识库/一") == []


# -- prompt budget with the tiny Qwen tokenizer ------------------------------------------
@pytest.fixture(scope="module")
def tiny_backend(tiny_qwen_dir, tmp_path_factory):
    import settings as settings_mod
    from models.transformers_backend import TransformersBackend

    s = settings_mod.load(tmp_path_factory.mktemp("home"))
    s.set("device", "cpu", persist=False)
    return TransformersBackend(tiny_qwen_dir, s)


def test_budget_drops_lowest_ranked_sources_first(settings, tiny_backend):
    svc = AnswerService(settings, FakeKB(hits(5)), backend=tiny_backend)
    many = hits(5)
    full, kept_all = svc.build_messages("国家机构实行什么原则？", many, tiny_backend, think=True, max_new_tokens=64)
    assert len(kept_all) == 5
    tokens_for_3 = tiny_backend.count_messages(
        svc.build_messages("国家机构实行什么原则？", many[:3], tiny_backend, think=True)[0])
    tiny_backend.context_tokens = tokens_for_3 + 64
    try:
        msgs, kept = svc.build_messages("国家机构实行什么原则？", many, tiny_backend, think=True, max_new_tokens=64)
    finally:
        tiny_backend.context_tokens = 4096
    assert [s.source for s in kept] == [h.source for h in many[:3]]      # ranks 4, 5 dropped
    assert tiny_backend.count_messages(msgs) <= tokens_for_3 and "[4]" not in msgs[-1]["content"]


def test_answer_with_the_tiny_model_end_to_end(settings, tiny_backend):
    settings.set("max_new_tokens", 8, persist=False)
    r = AnswerService(settings, FakeKB(hits()), backend=tiny_backend).answer("国家机构实行什么原则？")
    assert r.model == tiny_backend.name and not r.refused and not r.error and len(r.sources) == 3
    assert 1 <= r.timings["tokens"] <= 8  # exact count of generated ids


def test_uncited_answer_gets_the_overlapping_source(settings):
    """A model that writes no [n]: the source sharing the answer's words is cited, marked inferred."""
    many = hits(3)
    many[1].text = "第三条 中华人民共和国的国家机构实行民主集中制的原则。"
    many[0].text = many[2].text = "第五条 中华人民共和国实行依法治国。"
    backend = ScriptedBackend(["国家机构实行民主", "集中制的原则。"])
    events = list(AnswerService(settings, FakeKB(many), backend=backend).ask("国家机构实行什么原则？"))
    r = events[-1].data
    assert r.cited == [2] and r.cited_inferred and r.answer.endswith("[2]")
    assert "".join(e.text for e in events if e.kind == "answer") == r.answer
    plain = AnswerService(settings, FakeKB(many), backend=ScriptedBackend(["见 [1]。"])).answer("问？")
    assert plain.cited == [1] and not plain.cited_inferred


def test_backend_reloads_after_models_use(settings, tiny_qwen_dir, tmp_path):
    import shutil

    from models.registry import ModelRegistry

    other = tmp_path / "other"
    shutil.copytree(tiny_qwen_dir, other)
    reg = ModelRegistry(settings)
    reg.import_path(tiny_qwen_dir, name="a")
    reg.import_path(other, name="b")
    svc = AnswerService(settings, FakeKB(hits()), registry=reg)
    first = svc.backend()
    assert first.name == "a" and svc.backend() is first and svc.backend_name == "a"
    reg.use("b")
    assert svc.backend().name == "b"
    svc.set_backend(ScriptedBackend([]))
    reg.use("a")
    assert svc.backend().name == "scripted"  # an injected backend is kept

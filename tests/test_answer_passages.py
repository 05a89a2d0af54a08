"""What the model is shown (sentence windows, source order) and the extractive fallback, on
real passages of the shared constitution PDF and through AnswerService with a scripted model."""
from __future__ import annotations

import pytest

from kb.types import Hit
from models import extractive, passages
from models.answer import AnswerService, Source
from tests.test_answer_service import FakeKB, ScriptedBackend

QUESTION = "宪法规定中华人民共和国的国家机构实行什么原则？"


@pytest.fixture(scope="module")
def page4(shared_data) -> str:
    """Page 4 of the constitution PDF (第一条..第五条), as the PDF loader reads it."""
    from kb.loaders import load

    pdf = shared_data / "documents" / "zh_prc_constitution_2018.pdf"
    if not pdf.exists():
        pytest.skip(f"{pdf} not found")
    return "\n".join(b.text for b in load(pdf, ocr_engine="none").blocks if b.page == 4)


def test_window_keeps_the_sentence_that_answers_and_its_neighbours(page4):
    w = passages.window(QUESTION, page4, 1)
    assert "实行民主集中制的原则" in w and len(w) < len(page4) / 3
    assert passages.window(QUESTION, page4, 0) == page4


def test_shape_orders_best_last_and_renumbers():
    src = [Source(i, f"/d/{i}.pdf", i, f"第{i}句。", 1.0 / i) for i in (1, 2, 3)]
    out = passages.shape("问题", src, order="best_last")
    assert [s.source for s in out] == ["/d/3.pdf", "/d/2.pdf", "/d/1.pdf"] and [s.n for s in out] == [1, 2, 3]
    with pytest.raises(ValueError, match="best_first or best_last"):
        passages.shape("问题", src, order="middle")


def test_support_check_on_a_real_passage(page4):
    assert extractive.supported("国家机构实行民主集中制的原则[1]。", QUESTION, [page4])
    assert not extractive.supported("国家机构实行三权分立的原则[1]。", QUESTION, [page4])
    assert not extractive.supported("2022年世界杯冠军是法国[1]。", QUESTION, [page4])  # the leak
    n, sentence = extractive.best_quote(QUESTION, ["国旗是五星红旗。", page4])
    assert n == 2 and "民主集中制" in sentence


def _hits(text: str) -> list[Hit]:
    return [Hit(rank=1, score=0.1, source="/docs/宪法.pdf", page=4, text=text, similarity=0.8),
            Hit(rank=2, score=0.05, source="/docs/其他.pdf", page=9, text="国家加强武装力量的建设。", similarity=0.7)]


@pytest.mark.parametrize("model_says, shown", [
    ("<answer>国家机构实行三权分立的原则[2]。</answer>", "资料原文：“"),    # in no passage -> quote
    ("<answer>实行民主集中制的原则[1]。</answer>", "实行民主集中制的原则[1]。"),  # supported -> kept
    ("<answer>资料中没有。</answer>", "资料中没有。"),                     # the model's refusal -> kept
])
def test_extractive_fallback_in_the_service(settings, page4, model_says, shown):
    settings.set("extractive_fallback", True, persist=False)
    svc = AnswerService(settings, FakeKB(_hits(page4)), backend=ScriptedBackend([model_says]))
    r = svc.answer(QUESTION, think=False)
    assert r.answer.startswith(shown)
    if shown.startswith("资料原文"):
        assert "民主集中制" in r.answer and r.cited == [1] and r.model_answer.startswith("国家机构实行三权")


def test_fallback_off_by_setting_keeps_the_model_answer(settings, page4):
    settings.set("extractive_fallback", False, persist=False)
    svc = AnswerService(settings, FakeKB(_hits(page4)),
                        backend=ScriptedBackend(["<answer>国家机构实行三权分立的原则[2]。</answer>"]))
    assert svc.answer(QUESTION, think=False).answer.startswith("国家机构实行三权")


def test_service_shows_windows_best_last(settings, page4):
    settings.update({"passage_sentences": 1, "source_order": "best_last"})
    backend = ScriptedBackend(["<answer>民主集中制[2]</answer>"])
    r = AnswerService(settings, FakeKB(_hits(page4)), backend=backend).answer(QUESTION, think=False)
    user = backend.calls[0][-1]["content"]
    assert user.index("[1] 其他.pdf") < user.index("[2] 宪法.pdf, p. 4")     # best passage last
    assert "实行民主集中制的原则" in user and "第五条" not in user           # window, not the page
    assert r.cited == [2] and r.sources[1].source == "/docs/宪法.pdf"


def test_fallback_says_not_in_sources_when_no_sentence_matches_the_question(settings, page4):
    settings.set("extractive_fallback", True, persist=False)
    svc = AnswerService(settings, FakeKB(_hits(page4)),
                        backend=ScriptedBackend(["<answer>珠穆朗玛峰的海拔是1000米[1]。</answer>"]))
    r = svc.answer("珠穆朗玛峰的海拔是多少米？", think=False)
    assert r.answer == "资料中没有。" and r.model_answer.startswith("珠穆朗玛峰")

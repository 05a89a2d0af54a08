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
    ("<answer>资料中没有。</answer>", "资料原文：“"),    # a refusal, but page 4 restates the question -> quote
])
def test_extractive_fallback_in_the_service(settings, page4, model_says, shown):
    settings.set("extractive_fallback", True, persist=False)
    svc = AnswerService(settings, FakeKB(_hits(page4)), backend=ScriptedBackend([model_says]))
    r = svc.answer(QUESTION, think=False)
    assert r.answer.startswith(shown)
    if shown.startswith("资料原文"):
        assert "民主集中制" in r.answer and r.cited == [1] and not r.refused
        assert r.model_answer == model_says.removeprefix("<answer>").removesuffix("</answer>")


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


# -- questions that ask for a number (models/extractive.py: asks_number, number_mismatch) -------
@pytest.fixture(scope="module")
def covid(shared_data):
    """page -> text of the shared COVID-19 treatment plan PDF, as the PDF loader reads it."""
    from kb.loaders import load

    pdf = shared_data / "documents" / "zh_covid19_diagnosis_treatment_plan_v10.pdf"
    if not pdf.exists():
        pytest.skip(f"{pdf} not found")
    blocks = load(pdf, ocr_engine="none").blocks
    return {p: "\n".join(b.text for b in blocks if b.page == p) for p in {b.page for b in blocks}}


def test_number_question_quotes_the_sentence_with_the_number_not_the_topic_sentence(covid):
    # page 29's rehabilitation sentence repeats "新型冠状病毒感染" (7 shared bigrams) but says no
    # number; rare words ("潜伏期") pick page 4's sentence
    n, quote = extractive.best_quote("新型冠状病毒感染的潜伏期多为几天？", [covid[29], covid[4]])
    assert n == 2 and "潜伏期多为2～4" in quote.replace(" ", "")


def test_a_heading_is_quoted_with_the_next_sentence_that_states_the_number(covid):
    q = "奈玛特韦片/利托那韦片组合包装适用于发病几天以内的患者？"
    n, quote = extractive.best_quote(q, [covid[11]])
    assert n == 1 and "5天以内" in quote.replace(" ", "")


def test_follow_up_dose_of_another_drug_is_a_number_mismatch(covid):
    # "它" = 阿兹夫定片 (the earlier question); the 100ml of a decoction is another sentence's number
    q, context = "它每次服用多少？", "阿兹夫定片用于治疗什么患者？"
    texts = [covid[12], covid[20]]
    assert extractive.supported("它每次服用100ml。[1]", q, texts)           # some passage has "100ml"...
    assert extractive.number_mismatch("它每次服用100ml。[2]", q, texts, context)  # ...but not for this drug
    assert not extractive.number_mismatch("每次5mg[1]", q, texts, context)
    assert "每次5mg" in extractive.best_quote(q, texts, context)[1].replace(" ", "")


def test_number_rules_leave_other_questions_and_table_cells_alone():
    assert not extractive.number_mismatch("实行民主集中制的原则[1]。", QUESTION, ["实行民主集中制的原则。"])
    table = ["| 检测项目 | 检测周期 |\n| 遗传病检测 | 15个工作日 |", "项目表的检测周期在 2023 年改为 10 个工作日以内，检测周期不变。"]
    assert not extractive.number_mismatch("检测周期是15个工作日[1]。", "遗传病检测项目表中的检测周期是多少？", table)


def test_a_sentence_sharing_only_the_questions_year_is_no_quote():
    assert extractive.best_quote("What was Apple's revenue in 2023?",
                                 ["Dense retrieval methods (Zhang et al., 2023) exist."]) == (0, "")


def test_the_models_refusal_gives_way_to_a_sentence_that_restates_the_question(settings, shared_data):
    from kb.loaders import load

    pdf = shared_data / "documents" / "zh_prc_constitution_2018.pdf"
    page11 = "\n".join(b.text for b in load(pdf, ocr_engine="none").blocks if b.page == 11)
    settings.set("extractive_fallback", True, persist=False)
    q = "遇到不能进行选举的非常情况，推迟全国人大选举需要常委会全体组成人员多少以上的多数通过？"
    svc = AnswerService(settings, FakeKB(_hits(page11)), backend=ScriptedBackend(["<answer>资料中没有。</answer>"]))
    r = svc.answer(q, think=False)
    assert not r.refused and "三分之二" in r.answer and r.answer.startswith("资料原文") and r.cited == [1]
    # a question the passages do not restate keeps the model's refusal
    svc = AnswerService(settings, FakeKB(_hits(page11)), backend=ScriptedBackend(["<answer>资料中没有。</answer>"]))
    r = svc.answer("2022年世界杯冠军是哪个国家？", think=False)
    assert r.refused and r.answer == "资料中没有。"


def test_a_page_number_run_into_a_list_heading_is_no_stated_number(covid):
    # page 12 starts "12\n2.阿兹夫定片。": the page number and the list number are no dose
    text = covid[11] + "\n" + covid[12]
    assert not extractive.states_number("中度肾功能损伤者应将奈玛特韦减半服用。 12 2.阿兹夫定片。")
    assert "每次5mg" in extractive.best_quote("阿兹夫定片每次服用多少？", [text])[1].replace(" ", "")


def test_a_number_question_whose_matching_sentences_state_no_number_is_not_in_the_sources(covid):
    # the plan talks about vaccines (page 3) but names no price; page 12's numbers are doses of drugs
    vaccine = next(s for s in passages.sentences(covid[3]) if "疫苗后可获得" in s)
    assert extractive.best_quote("新冠病毒疫苗一剂的价格是多少元？", [vaccine, covid[12]]) == (0, "")
    # the same page answers a number question it does state
    assert "3天" in extractive.best_quote("新冠病毒感染者发病后几天内传染性最强？", [covid[3]])[1].replace(" ", "")

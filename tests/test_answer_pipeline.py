"""The answer pipeline on real documents (real chromadb + BM25, tiny embedder, scripted model):
follow-ups, the refusal gate, the model's own refusals, citation checks, the page of a cited
sentence, bad input."""
from __future__ import annotations

import shutil

import pytest

from kb.service import KnowledgeBaseService
from models.answer import AnswerService, history_file
from models.backend import ChatBackend
from models.citations import verify
from models.conversation import is_follow_up, retrieval_query

CONSTITUTION, WEKNORA, BGE = "zh_prc_constitution_2018.pdf", "zh_weknora_intro.pdf", "en_bge_m3_paper.pdf"


class ScriptedBackend(ChatBackend):
    """Answers every question with the next scripted completion; records the prompts."""

    name = "scripted"
    context_tokens = 4096

    def __init__(self, *completions):
        self.completions, self.calls = list(completions), []

    def stream(self, messages, *, gen=None, cancel=None):
        self.calls.append(messages)
        yield self.completions[min(len(self.calls), len(self.completions)) - 1]


def page_text(shared_data, name: str, page: int) -> str:
    import pymupdf

    with pymupdf.open(shared_data / "documents" / name) as doc:
        return doc[page - 1].get_text()


@pytest.fixture(scope="module")
def kb_home(tmp_path_factory, tiny_embedder_dir, shared_data):
    """One data dir with a KB of three real documents, built once for the module."""
    import settings as settings_mod

    home = tmp_path_factory.mktemp("pipeline-home")
    s = settings_mod.load(home)
    s.set("embedding_model", str(tiny_embedder_dir), persist=True)
    docs = shared_data / "documents"
    results = KnowledgeBaseService(s).ingest([docs / CONSTITUTION, docs / WEKNORA, docs / BGE], kb="docs")
    assert all(r.status == "added" for r in results), [r.message for r in results]
    return home


@pytest.fixture
def svc(kb_home, monkeypatch, tmp_path):
    """A fresh KnowledgeBaseService on the shared KB, with its own history folder."""
    import settings as settings_mod

    for k in [k for k in __import__("os").environ if k.startswith("TQTS_")]:
        monkeypatch.delenv(k)
    s = settings_mod.load(kb_home)
    monkeypatch.setattr(type(s), "history_dir", property(lambda self: tmp_path / "history"))
    (tmp_path / "history").mkdir()
    return KnowledgeBaseService(s)


# -- follow-ups -------------------------------------------------------------------------------
def test_follow_up_rule():
    assert is_follow_up("How does the last of these three work?")
    assert is_follow_up("那第五条呢？") and is_follow_up("它的作用是什么？") and is_follow_up("Why?")
    assert not is_follow_up("Which three retrieval functionalities does M3-Embedding unify?")
    assert not is_follow_up("宪法规定中华人民共和国的国家机构实行什么原则？")
    assert retrieval_query("2022年世界杯冠军是哪个国家？", "国家机构实行什么原则？") == "2022年世界杯冠军是哪个国家？"


def test_follow_up_searches_with_the_previous_question_and_gets_the_history(svc):
    backend = ScriptedBackend("<answer>Dense, multi-vector and sparse retrieval [1].</answer>",
                              "<answer>Sparse retrieval weighs the terms of the text [1].</answer>",
                              "<answer>民主集中制的原则[1]。</answer>")
    answers = AnswerService(svc.settings, svc, backend=backend)
    first = answers.answer("What are the three retrieval functionalities of M3-Embedding?", kb="docs")
    assert not first.refused and first.query == first.question

    follow = answers.answer("How does the last of these three work?", kb="docs")
    assert follow.query.startswith("What are the three retrieval functionalities") and follow.query.endswith("work?")
    assert not follow.refused and follow.relevance["coverage"] >= 0.6
    assert any("functionalities of M3-Embedding" in m["content"] for m in backend.calls[1] if m["role"] == "user")
    assert any("bge_m3" in s.source for s in follow.sources)

    new = answers.answer("宪法规定中华人民共和国的国家机构实行什么原则？", kb="docs")   # unrelated: no history
    assert new.query == new.question and len(backend.calls[2]) == 2   # system + this question only
    assert answers.history("docs")[-1]["query"] == new.question


# -- refusal gate -----------------------------------------------------------------------------
@pytest.mark.parametrize("question", ["宪法规定中华人民共和国的国家机构实行什么原则？", "中华人民共和国的首都是哪里？",
                                      "问题改写使用了哪个本地大语言模型？",
                                      "Which embedding is used for dense retrieval in M3-Embedding?"])
def test_gate_passes_answerable_questions(svc, question):
    hits = svc.search(question, kb="docs", k=5)
    assert svc.relevance(question, hits, kb="docs").relevant


@pytest.mark.parametrize("question", ["2022年世界杯冠军是哪个国家？", "如何做红烧肉？", "比特币的发明者是谁？",
                                      "What is the capital of Australia?", "Who is the CEO of Tencent?"])
def test_gate_refuses_out_of_scope_questions(svc, question):
    hits = svc.search(question, kb="docs", k=5)
    assert hits  # search always finds something: the gate must say no
    r = svc.relevance(question, hits, kb="docs")
    assert not r.relevant and r.coverage < 0.6


@pytest.mark.parametrize("ui,question,expect,absent", [
    ("zh", "2022年世界杯冠军是哪个国家？", "在知识库「docs」中没有找到", "Nothing"),
    ("en", "What is the capital of Australia?", "Nothing relevant was found", "没有"),
    ("zh", "What is the capital of Australia?", "Nothing relevant was found", "没有"),   # question's language wins
    ("en", "2022年世界杯冠军是哪个国家？", "在知识库「docs」中没有找到", "Nothing"),
])
def test_refusal_is_in_the_questions_language(svc, ui, question, expect, absent):
    svc.settings.set("ui_language", ui, persist=False)
    r = AnswerService(svc.settings, svc, backend=ScriptedBackend("unused")).answer(question, kb="docs")
    assert r.refused and expect in r.answer and absent not in r.answer


def test_model_saying_not_in_the_sources_is_a_refusal(svc):
    # the extractive fallback would quote "首都是北京" (it restates the question: see
    # tests/test_answer_passages.py); here the model's own refusal is what is checked
    svc.settings.set("extractive_fallback", False, persist=False)
    backend = ScriptedBackend("<answer>资料中没有提到首都是哪里。</answer>")
    r = AnswerService(svc.settings, svc, backend=backend).answer("中华人民共和国的首都是哪里？", kb="docs")
    assert backend.calls and r.sources   # the gate let it through; the model refused
    assert r.refused and r.cited == [] and r.citations == []


# -- citations --------------------------------------------------------------------------------
def test_citation_to_the_wrong_passage_is_moved_to_the_right_one(shared_data):
    p4, p8 = page_text(shared_data, CONSTITUTION, 4), page_text(shared_data, CONSTITUTION, 8)
    army = next(s for s in p8.split("。") if "武装力量的革命化" in s)      # the passage the model copied
    article3 = p4[p4.index("第三条"):]
    answer, cits = verify("国家机构实行民主集中制的原则[1]。", "宪法规定中华人民共和国的国家机构实行什么原则？",
                          [army, article3])
    assert answer == "国家机构实行民主集中制的原则[2]。"
    assert [(c.n, c.verified, c.moved_from) for c in cits] == [(2, True, 1)]
    assert "民主集中制" in cits[0].quote and cits[0].quote.startswith("第三条")


def test_numbers_must_occur_in_the_cited_passage(shared_data):
    p4 = page_text(shared_data, WEKNORA, 4)
    q = "系统检索了当前会话最近多少条历史消息？"
    _, ok = verify("系统检索了最近的20条历史消息[1]。", q, [p4])
    _, wrong = verify("系统检索了最近的30条历史消息[1]。", q, [p4])
    _, world_cup = verify("2022年世界杯冠军是法国。[1]", "2022年世界杯冠军是哪个国家？", [p4])
    assert ok[0].verified and "20条历史消息" in ok[0].quote
    assert not wrong[0].verified and wrong[0].quote == ""
    assert not world_cup[0].verified


def test_answer_json_citations_carry_the_page_of_the_cited_sentence(svc, shared_data):
    """A WeKnora chunk spanning pages 1-2: the sentence cited is on page 2, so is the citation."""
    from kb.pages import page_of

    path = str(shared_data / "documents" / WEKNORA)
    sentence = "WeKora 是一个可立即在生产环境投入的企业级RAG框架，实现智能文档理解和检索功能。"
    assert page_of(path, sentence, 1, 2) == 2 and page_of(path, sentence, 2, 2) == 2
    backend = ScriptedBackend("<answer>WeKnora 是一个企业级RAG框架[1]。</answer>")
    r = AnswerService(svc.settings, svc, backend=backend).answer("WeKnora 是什么样的框架？", kb="docs")
    [c] = r.citations
    assert c.verified and "企业级RAG框架" in c.quote and c.source.endswith(WEKNORA)
    assert c.page == 2, (c.page, [(s.page, s.page_end) for s in r.sources])
    from models.cli import _result_json

    out = _result_json(r, None)
    assert out["citations"][0]["verified"] is True and out["citations"][0]["page"] == 2
    assert out["query"] == r.question and out["relevance"]["relevant"] is True


# -- bad input --------------------------------------------------------------------------------
def _store_state(svc):
    kb = svc.store.find("docs")
    return kb.manifest(), kb.collection.count()


@pytest.mark.parametrize("question,message", [
    ("   ", "the question is empty"),
    ("国家机构实行什么原则？" * 500, "characters long"),
    ("대한민국의 수도는 어디입니까?", "looks like Korean"),
])
def test_bad_questions_get_one_message_and_store_nothing(svc, question, message):
    before = _store_state(svc)
    answers = AnswerService(svc.settings, svc, backend=ScriptedBackend("unused"))
    events = list(answers.ask(question, kb="docs"))
    assert [e.kind for e in events] == ["error", "done"] and message in events[0].text
    assert "Traceback" not in events[0].text
    assert _store_state(svc) == before
    assert not history_file(svc.settings.history_dir, "docs").exists()


def test_knowledge_base_without_documents_says_so(svc):
    svc.create_kb("空的")
    events = list(AnswerService(svc.settings, svc, backend=ScriptedBackend("unused")).ask("国家？", kb="空的"))
    assert [e.kind for e in events] == ["error", "done"] and "has no documents yet" in events[0].text
    svc.delete_kb("空的")


def test_embedder_folder_gone_is_one_message(tmp_path, tiny_embedder_dir, shared_data, monkeypatch, capsys):
    import main

    for k in [k for k in __import__("os").environ if k.startswith("TQTS_")]:
        monkeypatch.delenv(k)
    folder = tmp_path / "my-embedder"
    shutil.copytree(tiny_embedder_dir, folder)
    monkeypatch.setenv("TQTS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TQTS_EMBEDDING_MODEL", str(folder))
    assert main.main(["ingest", str(shared_data / "documents" / "en_zylon_mission_values.docx")]) == 0
    shutil.rmtree(folder)
    capsys.readouterr()
    assert main.main(["search", "customer"]) == 2
    assert main.main(["ask", "What are Zylon's values?"]) == 1
    err = capsys.readouterr().err
    assert err.count("embedding model folder") == 2 and "Traceback" not in err


# -- look-alike documents ---------------------------------------------------------------------
def test_look_alike_documents_are_told_apart_by_header_and_name(settings, tmp_path):
    """Three city reports whose passages differ only in the numbers: the city is in the file
    name alone. The contextual header lets BM25 find the right one; the answer prefers the
    document the question names; the prompt's source block names the document."""
    figures = {"深圳市": ("34606", "6.0"), "广州市": ("30355", "4.6"), "杭州市": ("20059", "5.6")}
    for city, (gdp, growth) in figures.items():
        (tmp_path / f"{city}2023年国民经济和社会发展统计公报.txt").write_text(
            f"一、综合\n初步核算，全年地区生产总值{gdp}亿元，比上年增长{growth}%。\n"
            "二、农业\n全年农林牧渔业总产值稳步增长。", encoding="utf-8")
    svc = KnowledgeBaseService(settings)
    assert all(r.status == "added" for r in svc.ingest([tmp_path], kb="cities"))
    top = svc.search("广州市2023年地区生产总值是多少？", kb="cities", k=3, mode="bm25")[0]
    assert "广州市" in top.source and "30355" in top.text and "广州市" not in top.text

    backend = ScriptedBackend("<answer>全年地区生产总值30355亿元[1]。</answer>")
    r = AnswerService(settings, svc, backend=backend).answer("广州市2023年地区生产总值是多少？", kb="cities")
    assert "广州市" in r.sources[0].source and r.citations[0].verified
    user = backend.calls[0][-1]["content"]
    assert "[1] 广州市2023年国民经济和社会发展统计公报.txt" in user

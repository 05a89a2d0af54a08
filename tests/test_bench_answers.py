"""The answer benchmark's scoring (hand-made cases) and the QA sets' gold strings (checked
against the real shared documents)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import answer_scoring as sc
from bench.answers import read_qa, sample_rows

DATA = Path(__file__).resolve().parents[1] / "bench" / "data"


# -- lenient match -----------------------------------------------------------------------
@pytest.mark.parametrize("answer, expect", [
    ("国家机构实行民主集中制的原则[1]。", "民主集中制"),
    ("The total is 295891.", "295,891"),               # thousands comma in the gold
    ("总数为２９５，８９１。", "295,891"),                 # fullwidth digits and comma in the answer
    ("全长约 29.9 kb", "29.9kb"),                        # spaces
    ("潜伏期多为2~4天", ["2～4天", "2-4天"]),             # fullwidth tilde, any listed string
    ("It follows COLBERT.", "ColBert"),                 # case
    ("第一条　中华人民共和国", "第一条 中华人民共和国"),   # U+3000 vs ASCII space
])
def test_lenient_match_accepts(answer, expect):
    assert sc.contains_gold(answer, expect)


@pytest.mark.parametrize("answer, expect", [
    ("全国人民代表大会每届任期四年。", ["五年", "5年"]),
    ("The total is 295,89.", "295,891"),
    ("12.5", "125"),                                    # a decimal point is not a thousands comma
    ("anything", None),                                 # unanswerable rows have no gold
])
def test_lenient_match_rejects(answer, expect):
    assert not sc.contains_gold(answer, expect)


def test_normalize_keeps_decimal_and_non_thousands_commas():
    assert sc.normalize("September 21, 2020; 1,234,567.5") == "september21,2020;1234567.5"


# -- refusal detection -------------------------------------------------------------------
@pytest.mark.parametrize("answer", [
    "资料中没有提到2022年世界杯的冠军。",
    "资料中没有。",
    "抱歉，所给资料未提及这个问题。",
    "在知识库「default」中没有找到相关内容。/ Nothing relevant was found in the knowledge base \"default\".",
    "根据提供的资料，无法回答这个问题。",
    "The sources do not contain the answer.",
    "This is not mentioned in the sources.",
    "The provided documents don't mention Tokyo's population.",
    "I don't know.",
])
def test_model_refusals_are_recognised(answer):
    assert sc.is_refusal(answer)


@pytest.mark.parametrize("answer", [
    "中华人民共和国的首都是北京[1]。",
    "The FAA must receive comments by September 21, 2020 [2].",
    "国家资料库由国家建设。",
    "",
])
def test_answers_are_not_refusals(answer):
    assert not sc.is_refusal(answer)


def test_the_service_refusal_flag_counts_whatever_the_text():
    assert sc.is_refusal("", refused=True)


# -- citation check ----------------------------------------------------------------------
CONSTITUTION = "/d/zh_prc_constitution_2018.pdf"


def test_citation_right_when_the_cited_text_holds_the_gold():
    cited = [{"source": "/d/other.pdf", "page": 9, "text": "第三条　中华人民共和国的国家机构实行民主集中制的原则。"}]
    assert sc.citation_right(cited, "民主集中制")


def test_citation_right_by_file_and_page_when_the_text_words_it_differently():
    cited = [{"source": CONSTITUTION, "page": 4, "text": "第六十条……"}]
    assert sc.citation_right(cited, "五年", "constitution", 4)
    assert not sc.citation_right(cited, "五年", "constitution", 11)     # wrong page
    assert not sc.citation_right(cited, "五年", "covid19", 4)          # wrong file


def test_a_chunk_spanning_pages_counts_for_each_page():
    cited = [{"source": CONSTITUTION, "page": 10, "page_end": 12, "text": "x"}]
    assert sc.citation_right(cited, "gold", "constitution", 11)


def test_no_citation_is_never_right():
    assert not sc.citation_right([], "民主集中制", "constitution", 4)


def test_page_none_docx_matches_by_file():
    cited = [{"source": "/d/en_zylon_mission_values.docx", "page": None, "text": "Customer at Core"}]
    assert sc.citation_right(cited, "incrementally", "zylon", None)


# -- rows and summary --------------------------------------------------------------------
def test_score_row_refused_answerable_is_neither_correct_nor_a_hit_of_the_answer():
    row = {"question": "q", "expect": "北京", "source_contains": "constitution", "page": 24}
    hits = [{"source": CONSTITUTION, "page": 24, "text": "首都是北京。"}]
    s = sc.score_row(row, "资料中没有提到北京以外的首都。", False, hits, hits)
    assert s["refused"] and not s["correct"] and s["cited_right"] and s["hit"]


def test_summary_counts_followups_and_unanswerables_apart():
    rows = [
        {**sc.score_row({"expect": "北京"}, "北京[1]", False, [{"text": "北京"}], []), "ttft_ms": 100.0, "tok_per_s": 4.0},
        {**sc.score_row({"expect": "五年"}, "资料中没有", False, [], []), "ttft_ms": 300.0},
        {**sc.score_row({"expect": None}, "2022年世界杯冠军是法国[4]", False, [], [])},
        {**sc.score_row({"expect": None}, "", True, [], [])},
        {**sc.score_row({"expect": "5mg"}, "每次5mg[2]", False, [{"text": "5 mg"}], []), "followup": True},
        {**sc.score_row({"expect": None}, "", True, [], []), "tok_per_s": 9999.0, "tokens": 2},  # too short to time
    ]
    s = sc.summarize(rows)
    assert (s["answerable"], s["unanswerable"], s["followups"]) == (2, 3, 1)
    assert s["correct_and_cited"] == 0.5 and s["false_refusal"] == 0.5
    assert s["refusal_recall"] == round(2 / 3, 3) and s["followup_correct"] == 1.0
    assert s["median_ttft_ms"] == 200.0 and s["median_tok_per_s"] == 4.0


def test_read_qa_names_the_bad_line(tmp_path):
    f = tmp_path / "qa.jsonl"
    f.write_text('{"question": "a", "expect": "b"}\n{"expect": "c"}\n', encoding="utf-8")
    with pytest.raises(SystemExit, match="qa.jsonl:2"):
        read_qa(f)


def test_sample_keeps_every_kind_share():
    rows = [{"question": str(i), "kind": "a" if i < 50 else "b"} for i in range(100)]
    picked = sample_rows(rows, 10)
    assert len(picked) == 10 and sum(r["kind"] == "b" for r in picked) == 5


# -- the shipped QA sets -----------------------------------------------------------------
def test_documents_set_has_the_promised_shape():
    rows = read_qa(DATA / "documents.jsonl")
    answerable = [r for r in rows if r["expect"] is not None and not r.get("history")]
    unanswerable = [r for r in rows if r["expect"] is None]
    followups = [r for r in rows if r.get("history")]
    assert len(answerable) >= 60 and len(unanswerable) >= 15 and len(followups) >= 10
    langs = {"zh" if any("\u4e00" <= ch <= "\u9fff" for ch in r["question"]) else "en" for r in answerable}
    assert langs == {"zh", "en"}
    assert any(r["source_contains"].endswith(".docx") for r in answerable)


def test_documents_gold_strings_are_on_the_stated_pages(shared_data):
    from bench.verify_qa import problems

    rows = read_qa(DATA / "documents.jsonl")
    assert problems(rows, shared_data / "documents") == []


def test_verify_flags_a_gold_string_on_the_wrong_page(shared_data):
    from bench.verify_qa import problems

    row = {"question": "国歌？", "expect": "义勇军进行曲", "source_contains": "zh_prc_constitution_2018.pdf", "page": 4}
    assert problems([row], shared_data / "documents") == [
        "row 1 (国歌？): none of ['义勇军进行曲'] on zh_prc_constitution_2018.pdf p. 4"]
    absent = {"question": "首都？", "expect": None, "absent": ["北京"], "source_contains": None}
    assert "北京" in problems([row | {"page": 24}, absent], shared_data / "documents")[0]


def test_lookalike_set_gold_matches_its_documents(tmp_path):
    from bench.data.lookalike.make_docs import write_documents
    from bench.verify_qa import problems

    write_documents(tmp_path)
    rows = read_qa(DATA / "lookalike" / "questions.jsonl")
    assert len(rows) >= 15 and len(list(tmp_path.iterdir())) >= 8
    assert problems(rows, tmp_path) == []


def test_qa_rows_are_json_objects_with_known_keys():
    known = {"question", "expect", "source_contains", "page", "history", "set", "kind", "absent"}
    for path in [DATA / "documents.jsonl", DATA / "lookalike" / "questions.jsonl"]:
        for line in path.read_text(encoding="utf-8").splitlines():
            assert set(json.loads(line)) <= known, line


def test_cmrc_set_is_rebuilt_identically_and_its_gold_is_in_its_documents(tmp_path, shared_data):
    from bench.data.make_cmrc import build
    from bench.verify_qa import problems

    source = shared_data / "retrieval" / "cmrc2018_trial.json"
    if not source.exists():
        pytest.skip(f"{source} not found")
    rows = build(tmp_path, source=source)
    assert len(list(tmp_path.glob("*.txt"))) == 200
    assert sum(r["expect"] is None for r in rows) == 20 and len(rows) == 100
    assert rows == read_qa(DATA / "cmrc.jsonl")
    assert problems(rows, tmp_path) == []

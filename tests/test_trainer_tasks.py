"""Grounded task builder on knowledge bases ingested from real PDF/DOCX files made in the test."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.test_kb_loaders import make_pdf

ROOT = Path(__file__).resolve().parents[1]

ZH = [
    "第一章 防控。密切接触者应当集中隔离医学观察14天。隔离期间每日测量体温2次。疫苗接种后留观30分钟。"
    "方舱医院是指将体育场馆等改造而成的临时医院。",
    "第二章 资金。中央财政安排补助资金3000万元。重点地区检测覆盖率达到95%。2020年1月20日起纳入乙类传染病管理。"
    "核酸检测是确诊的主要依据。",
    "第三章 人员。每个社区配备专职人员5名。发热门诊实行24小时值班制度。流行病学调查应在24小时内完成报告。",
]
EN = ["The trustee must file the final report within 30 days after the meeting of creditors. "
      "A chapter 13 plan is a repayment plan that lasts three to five years. "
      "The filing fee of the case is $313 for each debtor in the district.",
      "The standing trustee receives a percentage fee of 10% on all plan payments. "
      "Each trustee shall hold at least 12 meetings per month in the region. "
      "The audit covers 250 cases selected at random from the docket each year."]


def make_docx(path: Path) -> Path:
    """A Word file with English paragraphs and a table (row header + column header -> cell)."""
    import docx

    d = docx.Document()
    for p in EN:
        d.add_paragraph(p)
    t = d.add_table(rows=4, cols=3)
    for r, row in enumerate([["Region", "Cases", "Trustees"], ["North", "1,250", "4"], ["South", "980", "3"],
                             ["West", "2,400", "6"]]):
        for c, val in enumerate(row):
            t.cell(r, c).text = val
    d.save(path)
    return path


@pytest.fixture(scope="module")
def kb_home(tmp_path_factory, tiny_embedder_dir) -> Path:
    """A data dir with knowledge base 手册: one Chinese PDF + one English DOCX with a table,
    ingested once for the module (small chunks, so questions have distractors)."""
    import settings as settings_mod
    from kb.service import KnowledgeBaseService

    home = tmp_path_factory.mktemp("tasks-home")
    docs = tmp_path_factory.mktemp("docs")
    make_pdf(docs / "防控方案.pdf", ZH)
    make_docx(docs / "trustee.docx")
    s = settings_mod.load(home)
    s.update({"embedding_model": str(tiny_embedder_dir), "chunk_size": 150, "chunk_overlap": 0})
    results = KnowledgeBaseService(s).ingest(docs, "手册")
    assert all(r.status == "added" for r in results), results
    return home


@pytest.fixture
def kb_svc(kb_home, monkeypatch):
    import settings as settings_mod
    from kb.service import KnowledgeBaseService

    for k in ("TQTS_EMBEDDING_MODEL", "TQTS_CHUNK_SIZE", "TQTS_CHUNK_OVERLAP", "TQTS_HOME"):
        monkeypatch.delenv(k, raising=False)
    return KnowledgeBaseService(settings_mod.load(kb_home))


def test_chunks_lists_every_stored_chunk(kb_svc):
    docs = list(kb_svc.chunks("手册"))
    assert [d.name for d, _ in docs] == ["trustee.docx", "防控方案.pdf"]
    assert all(len(chunks) == d.chunks and chunks[0].rank == 1 for d, chunks in docs)
    assert any("14天" in h.text for _, chunks in docs for h in chunks)


def test_build_tasks_from_real_documents(kb_svc):
    from trainer.tasks import build_tasks, contains_answer

    tasks, summary = build_tasks(kb_svc, "手册", max_tasks=100, refusal_share=0.3, seed=1)
    kinds = summary["by_kind"]
    assert {"number", "percent", "date", "amount", "definition", "table"} <= set(kinds), kinds
    assert summary["tasks"] == len(tasks) >= 15 and summary["gold_present"] == 1.0
    assert len({t["question"] for t in tasks}) == len(tasks)            # deduplicated
    by_q = {t["question"]: t for t in tasks}
    t = by_q["密切接触者应当集中隔离医学观察多少天？"]
    assert t["answers"] == ["14天"] and t["kind"] == "number" and t["lang"] == "zh"
    table = [t for t in tasks if t["kind"] == "table"]
    assert any(t["question"] == "In the table, what is the Cases for North?" and t["answers"] == ["1,250"]
               for t in table), [t["question"] for t in table]
    for t in tasks:
        assert 1 <= t["n_passages"] == len(t["passages"]) <= 5
        if t["gold"]:
            assert contains_answer(t["passages"][t["gold"] - 1]["text"], t["answers"])
            assert t["gold"] in t["support"]
        else:                                                            # refusal: no passage holds it
            assert t["support"] == [] and not any(contains_answer(p["text"], t["answers"]) for p in t["passages"])
    assert summary["refusal"] == sum(t["gold"] == 0 for t in tasks) > 0
    # split by document: no document in both splits, both splits used
    splits = {(t["doc"], t["split"]) for t in tasks}
    assert len({d for d, _ in splits}) == len(splits) and {s for _, s in splits} == {"train", "heldout"}


def test_gold_passages_are_shuffled_among_distractors(kb_svc):
    from trainer.tasks import build_tasks

    tasks, _ = build_tasks(kb_svc, "手册", max_tasks=100, refusal_share=0.0, seed=3)
    answerable = [t for t in tasks if t["n_passages"] >= 3]
    assert answerable and len({t["gold"] for t in answerable}) >= 2     # gold is not always first


def test_user_pairs_file(kb_svc, tmp_path):
    from trainer.tasks import build_tasks

    qa = tmp_path / "qa.csv"
    qa.write_text("question,answer\n隔离期间每天测几次体温？,2次\nWho is on the moon?,cheese\n,empty\n",
                  encoding="utf-8")
    tasks, summary = build_tasks(kb_svc, "手册", qa_file=qa, refusal_share=0.0)
    assert [(t["kind"], t["answers"]) for t in tasks] == [("user", ["2次"])]
    assert summary["skipped"] == 1 and "2次" in tasks[0]["passages"][tasks[0]["gold"] - 1]["text"]


def test_model_proposed_questions_are_kept_only_when_verifiable(kb_svc):
    """(c): a model proposes one question per chunk; kept when the answer is a verbatim span of
    the chunk and not in the question. The stand-in model answers from the chunk it is shown."""
    import doctest

    from trainer import tasks_model
    from trainer.tasks import build_tasks, contains_answer

    assert doctest.testmod(tasks_model).failed == 0
    asked = []

    def generate(messages):
        text = messages[-1]["content"]
        asked.append(text)
        if "24小时值班" in text:                                        # a good, verifiable pair
            return "问题：发热门诊实行几小时值班制度？\n答案：24小时"
        if "3000万元" in text:                                         # the answer is in the question
            return "问题：补助资金3000万元是多少？\n答案：3000万元"
        if "$313" in text:                                             # not a span of the chunk
            return "Question: What is the filing fee?\nAnswer: three hundred dollars"
        return "I cannot."

    tasks, summary = build_tasks(kb_svc, "手册", max_tasks=100, refusal_share=0.0, seed=1, propose=20,
                                 generate=generate)
    assert asked and all("资料：" in a or "Passage:" in a for a in asked)
    model = [t for t in tasks if t["kind"] == "model"]
    assert [(t["question"], t["answers"]) for t in model] == [("发热门诊实行几小时值班制度？", ["24小时"])]
    assert contains_answer(model[0]["passages"][model[0]["gold"] - 1]["text"], ["24小时"])
    assert summary["by_kind"]["model"] == 1 and summary["gold_present"] == 1.0


def test_cli_writes_tasks_and_reports_bad_input(kb_svc, kb_home, tmp_path, capsys):
    from trainer.cli import main

    out = tmp_path / "tasks.jsonl"
    home = ["--home", str(kb_home)]
    assert main(["tasks", "--kb", "手册", "--out", str(out), "--max", "12", *home]) == 0
    text = capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 12 and "12 tasks from 2 documents" in text and "by kind:" in text
    assert text.count("  answer: ") == 5                                  # five examples
    assert main(["tasks", "--kb", "nope", "--out", str(tmp_path / "x.jsonl"), *home]) == 2
    assert "no knowledge base named 'nope'" in capsys.readouterr().err
    kb_svc.create_kb("空")
    assert main(["tasks", "--kb", "空", "--out", str(tmp_path / "x.jsonl"), *home]) == 2
    err = capsys.readouterr().err
    assert "has no documents" in err and "Traceback" not in err and not (tmp_path / "x.jsonl").exists()


@pytest.mark.slow
def test_shared_documents_yield_300_tasks_with_gold_present(home, shared_data, tiny_embedder_dir, monkeypatch):
    """Done-when check: >= 300 tasks from ../shared/data/documents, >= 95 % of a sample with the
    gold answer present. About 2 minutes on 2 busy cores (parsing the 872- and 400-page files);
    the tiny embedder keeps embedding cheap, OCR is off (the scanned files give no rule questions)."""
    import settings as settings_mod
    from kb.service import KnowledgeBaseService
    from trainer.tasks import build_tasks, gold_present

    monkeypatch.setenv("TQTS_EMBEDDING_MODEL", str(tiny_embedder_dir))
    monkeypatch.setenv("TQTS_OCR_ENGINE", "none")
    svc = KnowledgeBaseService(settings_mod.load())
    svc.ingest(shared_data / "documents", "shared")
    tasks, summary = build_tasks(svc, "shared", max_tasks=400)
    assert summary["tasks"] >= 300, summary
    sample = tasks[::3]
    assert sum(map(gold_present, sample)) / len(sample) >= 0.95, summary
    assert summary["documents"] >= 8 and summary["heldout"] > 0 and summary["refusal"] >= 0.1 * len(tasks)


def test_help_lists_tasks():
    import subprocess

    out = subprocess.run([sys.executable, "-m", "trainer", "tasks", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "--from-file" in out.stdout


def test_cli_asks_a_real_model_for_questions(kb_home, tmp_path, tiny_qwen_dir, capsys):
    """``--propose-with`` loads the model and asks it; a random tiny model's replies are refused
    by the checks, so the tasks are the rule-made ones and the command still succeeds."""
    from trainer.cli import main

    out = tmp_path / "tasks.jsonl"
    assert main(["tasks", "--kb", "手册", "--out", str(out), "--max", "12", "--home", str(kb_home),
                 "--propose-with", str(tiny_qwen_dir), "--propose", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["tasks"] == 12 and summary["gold_present"] == 1.0

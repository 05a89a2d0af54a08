"""`python main.py ask` end to end on the real KnowledgeBaseService (tiny embedder, a real PDF
made here with pymupdf) and the tiny Qwen model; voice flags with stand-in speech modules."""
from __future__ import annotations

import json
import sys
import types

import pytest

import main


@pytest.fixture
def kb_home(settings, tiny_qwen_dir, tmp_path):
    """A data dir with the tiny model active and a 2-page Chinese PDF ingested into KB 宪法."""
    import pymupdf

    from kb.service import KnowledgeBaseService

    pdf = tmp_path / "宪法节选.pdf"
    doc = pymupdf.open()
    for text in ("第一条 中华人民共和国是人民民主专政的社会主义国家。",
                 "第三条 中华人民共和国的国家机构实行民主集中制的原则。"):
        doc.new_page().insert_text((72, 72), text, fontname="china-s", fontsize=12)
    doc.save(pdf)
    settings.update({"model": str(tiny_qwen_dir), "relevance_floor": -1.0, "max_new_tokens": 8,
                     "device": "cpu", "extractive_fallback": False,  # the random tiny model's text stays
                     "temperature": 0.3})  # greedy decoding of the random tiny model can be empty
    results = KnowledgeBaseService(settings).ingest([pdf], kb="宪法")
    assert results[0].ok, results[0].message
    return settings


def test_ask_json_with_real_kb_service(kb_home, capsys):
    assert main.main(["ask", "--kb", "宪法", "--json", "国家机构实行什么原则？"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"answer", "reasoning", "sources", "refused", "model", "timings"}
    assert not out["refused"] and out["sources"]
    assert {s["page"] for s in out["sources"]} <= {1, 2} and all(s["source"].endswith("宪法节选.pdf")
                                                             for s in out["sources"])
    assert [s["n"] for s in out["sources"]] == list(range(1, len(out["sources"]) + 1))
    assert set(out["timings"]) == {"retrieve_ms", "ttft_ms", "tokens", "tok_per_s"}
    assert 1 <= out["timings"]["tokens"] <= 8


def test_ask_streams_text_and_sources(kb_home, capsys):
    assert main.main(["ask", "--kb", "宪法", "--no-think", "国家机构实行什么原则？"]) == 0
    out = capsys.readouterr().out
    assert "来源 / sources:" in out and "宪法节选.pdf, p. " in out


def test_ask_refuses_without_loading_the_model(kb_home, capsys):
    kb_home.update({"relevance_floor": 1.01, "model": "/nonexistent/model"})
    assert main.main(["ask", "--kb", "宪法", "--json", "今天天气怎么样？"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["refused"] and out["sources"] == [] and "宪法" in out["answer"]


def test_ask_missing_kb_and_empty_question(kb_home, capsys):
    assert main.main(["ask", "--kb", "没有这个库", "问题？"]) == 1
    assert "没有这个库" in capsys.readouterr().err
    assert main.main(["ask"]) == 2


def test_voice_in_and_speak_to_with_stand_in_modules(kb_home, tmp_path, capsys, monkeypatch):
    saved = {}

    class Speaker:
        def __init__(self, settings):
            pass

        def save(self, text, path):
            saved[path] = text
            return path

    monkeypatch.setitem(sys.modules, "models.voice.speech",
                        types.SimpleNamespace(transcribe_file=lambda path, s: "国家机构实行什么原则？"))
    monkeypatch.setitem(sys.modules, "models.voice.tts", types.SimpleNamespace(Speaker=Speaker))
    wav = str(tmp_path / "q.wav")
    out_wav = str(tmp_path / "a.wav")
    assert main.main(["ask", "--kb", "宪法", "--json", "--voice-in", wav, "--speak-to", out_wav]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["question"] == "国家机构实行什么原则？" and saved == {out_wav: out["answer"]}


def test_voice_unavailable_gives_one_message(kb_home, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "models.voice.speech", None)
    assert main.main(["ask", "--voice-in", "q.wav"]) == 1
    assert "voice input is unavailable" in capsys.readouterr().err

"""Real weights: the Qwen GGUF imported through transformers, MiniLM embeddings, the shared
constitution PDF. Deselected by default; run with ``pytest -m real tests/test_answer_real.py``
(several minutes on 2 cores: GGUF conversion ~1.5 min, then CPU generation)."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.real

QUESTION = "宪法规定中华人民共和国的国家机构实行什么原则？"
PAGE = 4  # 第三条 "中华人民共和国的国家机构实行民主集中制的原则" is on page 4 of the PDF


def test_imported_gguf_answers_with_a_page_citation(home, qwen_gguf, minilm_dir, shared_data, monkeypatch):
    import settings as settings_mod
    from kb.service import KnowledgeBaseService
    from models.answer import AnswerService
    from models.registry import ModelRegistry

    pdf = shared_data / "documents" / "zh_prc_constitution_2018.pdf"
    if not pdf.exists():
        pytest.skip(f"{pdf} not found")
    monkeypatch.setenv("TQTS_EMBEDDING_MODEL", str(minilm_dir))
    s = settings_mod.load()
    s.update({"max_new_tokens": 160, "temperature": 0.0})
    reg = ModelRegistry(s)
    entry = reg.import_path(qwen_gguf)
    assert s.model == entry.name and (s.models_dir / entry.name / "model.safetensors").is_file()
    assert "<|im_start|>" in reg.load_backend().tokenizer.chat_template  # Qwen template survived
    kb = KnowledgeBaseService(s)
    assert kb.ingest([pdf], kb="宪法")[0].ok
    r = AnswerService(s, kb, registry=reg).answer(QUESTION, kb="宪法", think=False)
    assert not r.refused and not r.error, r
    assert "民主集中制" in r.answer
    cited_pages = {src.page for src in r.sources if src.n in r.cited}
    assert PAGE in cited_pages, (r.answer, [(x.n, x.page) for x in r.sources])

"""The answer service reports its stages before the first token (``on_stage``): retrieved
(with the sources, before the model loads) -> loading (first time only) -> reading -> tokens;
and several conversations of one knowledge base keep separate histories. Tiny Qwen, real
registry."""
from __future__ import annotations

import pytest

from models.answer import AnswerService, history_file
from tests.test_answer_service import FakeKB, hits


def test_stages_in_order_with_the_tiny_model(settings, tiny_qwen_dir):
    from models.registry import ModelRegistry

    settings.set("max_new_tokens", 6, persist=False)
    reg = ModelRegistry(settings)
    reg.import_path(tiny_qwen_dir, name="tiny")
    reg.use("tiny")
    svc = AnswerService(settings, FakeKB(hits()), registry=reg)
    order = []
    for ev in svc.ask("国家机构实行什么原则？", on_stage=lambda name, data=None: order.append((name, data))):
        order.append((ev.kind, ev.text if ev.kind == "error" else None))
    kinds = [k for k, _ in order]
    assert kinds[:4] == ["retrieved", "loading", "sources", "reading"], order
    assert len(order[0][1]) == 3 and order[3][1] == 3            # 3 sources found, 3 read
    assert kinds[-1] == "done" and "error" not in kinds            # (a random tiny model may say nothing)
    again = []
    list(svc.ask("国家机构实行什么原则？", on_stage=lambda name, data=None: again.append(name)))
    assert again == ["retrieved", "reading"]                       # loaded once


def test_conversations_keep_separate_histories(settings, tmp_path):
    from tests.test_answer_service import ScriptedBackend

    svc = AnswerService(settings, FakeKB(hits()), backend=ScriptedBackend(["<answer>一 [1]</answer>"] * 3))
    list(svc.ask("问题一", kb="宪法"))
    list(svc.ask("问题二", kb="宪法", chat_id="c1a2b3c4"))
    assert [r["question"] for r in svc.history("宪法")] == ["问题一"]
    assert [r["question"] for r in svc.history("宪法", chat_id="c1a2b3c4")] == ["问题二"]
    assert "cited_inferred" in svc.history("宪法")[0]
    out = svc.export_markdown("宪法", tmp_path / "c.md", chat_id="c1a2b3c4")
    assert "## 问题二" in out.read_text(encoding="utf-8") and "问题一" not in out.read_text(encoding="utf-8")
    svc.clear_history("宪法", chat_id="c1a2b3c4")
    assert svc.history("宪法", chat_id="c1a2b3c4") == [] and len(svc.history("宪法")) == 1
    with pytest.raises(ValueError, match="conversation id"):
        history_file(settings.history_dir, "宪法", "../x")

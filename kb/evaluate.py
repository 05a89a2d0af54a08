"""Retrieval evaluation on SQuAD-style data (e.g. ../shared/data/retrieval/cmrc2018_trial.json).

Each ``context`` is ingested as its own document (``<paragraph id>.txt``); a question's gold
document is its own paragraph. hit@k = share of questions whose gold document is among the
top-k hits; MRR = mean of 1/rank of the first gold hit (0 when absent from the top-k).
Used by bench/retrieval.py::

    from kb.evaluate import evaluate_file
    evaluate_file(settings, "cmrc2018_trial.json", k=5)   # {"bm25": {...}, "vector": ..., "hybrid": ...}
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from kb.retrieval import MODES


def load_squad(path: str | Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Read a SQuAD v1.1-style file.

    Returns:
        (passages [(paragraph id, context)], questions [(question, paragraph id)]).
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    passages, questions = [], []
    for article in data["data"]:
        for para in article["paragraphs"]:
            pid = str(para.get("id") or f"p{len(passages)}")
            passages.append((pid, para["context"]))
            questions.extend((qa["question"], pid) for qa in para.get("qas", []))
    return passages, questions


def ingest_passages(service, passages: list[tuple[str, str]], kb: str, folder: Path) -> int:
    """Write each passage to ``folder/<id>.txt`` and ingest the folder. Returns files stored."""
    folder.mkdir(parents=True, exist_ok=True)
    for pid, text in passages:
        (folder / f"{pid}.txt").write_text(text, encoding="utf-8")
    return sum(r.ok for r in service.ingest([folder], kb))


def hit_at_k(service, questions: list[tuple[str, str]], kb: str, k: int = 5,
             modes: tuple[str, ...] = MODES) -> dict[str, dict]:
    """hit@k and MRR per search mode (gold = hit source file stem == paragraph id).

    Returns:
        ``{mode: {"hit@k": float in [0, 1], "mrr": float, "n": questions, "k": k}}``.
    """
    out = {}
    for mode in modes:
        hits_total, rr = 0, 0.0
        for question, pid in questions:
            ranks = [h.rank for h in service.search(question, kb, k, mode=mode) if Path(h.source).stem == pid]
            hits_total += bool(ranks)
            rr += 1.0 / ranks[0] if ranks else 0.0
        n = max(len(questions), 1)
        out[mode] = {"hit@k": hits_total / n, "mrr": rr / n, "n": len(questions), "k": k}
    return out


def evaluate_file(settings, path: str | Path, k: int = 5, kb: str = "eval-retrieval",
                  modes: tuple[str, ...] = MODES, limit: int | None = None, service=None) -> dict[str, dict]:
    """Ingest a SQuAD-style file's passages into ``kb`` and score every mode (see module doc).

    Args:
        settings: settings (its store_dir receives the eval KB; use a scratch TQTS_HOME).
        limit: score only the first ``limit`` questions.
        service: an existing KnowledgeBaseService (default: one built from settings).
    """
    from kb.service import KnowledgeBaseService

    service = service or KnowledgeBaseService(settings)
    passages, questions = load_squad(path)
    folder = Path(settings.home) / "eval-passages" / Path(path).stem
    ingest_passages(service, passages, kb, folder if settings.home else Path(tempfile.mkdtemp()))
    return hit_at_k(service, questions[:limit] if limit else questions, kb, k, modes)

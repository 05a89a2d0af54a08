"""The refusal gate alone (no answering model): refusal recall and false refusals.

    python bench/gate.py [--data bench/data/gate.jsonl] [--embedder minilm|e5|PATH] [--kb-dir DIR] [--json]

Rows ``{"question", "answerable": bool}`` over five shared documents (the PRC constitution,
the WeKnora intro, the BGE-M3 paper, the Zylon values docx, the COVID-19 treatment plan v10),
ingested into one knowledge base. Each question is searched (hybrid, k=5) and judged by
:meth:`kb.service.KnowledgeBaseService.relevance`. Reports the share of unanswerables refused,
the share of answerables refused, and the questions the gate gets wrong with its numbers.
The answer benchmark (bench/answers.py) measures the whole pipeline, model refusals included.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DATA, OFFLINE, add_json_flag, emit, in_home, load_settings, log, resolve_embedder, table  # noqa: E402, I001

DEFAULT = Path(__file__).resolve().parent / "data" / "gate.jsonl"
FILES = ("zh_prc_constitution_2018.pdf", "zh_weknora_intro.pdf", "en_bge_m3_paper.pdf",
         "en_zylon_mission_values.docx", "zh_covid19_diagnosis_treatment_plan_v10.pdf")


def measure(rows: list[dict], home: Path, embedder: str | None) -> dict:
    """Ingest the documents into ``home``, judge every question; return the result dict."""
    from kb.service import KnowledgeBaseService

    svc = KnowledgeBaseService(load_settings(home, embedding_model=resolve_embedder(embedder, home)))
    log(f"ingesting {len(FILES)} documents ...")
    for r in svc.ingest([str(DATA / "documents" / f) for f in FILES], kb="gate"):
        if not r.ok:
            log(f"{r.path}: {r.message}")
    wrong, refused = [], {True: 0, False: 0}
    for row in rows:
        rel = svc.relevance(row["question"], svc.search(row["question"], kb="gate", k=5), kb="gate")
        refused[row["answerable"]] += not rel.relevant
        if rel.relevant != row["answerable"]:
            wrong.append({"question": row["question"], **rel.to_json()})
    n_ans = sum(r["answerable"] for r in rows)
    return {"embedder": svc.embedder_name, "answerable": n_ans, "unanswerable": len(rows) - n_ans,
            "unanswerables_refused": refused[False] / max(len(rows) - n_ans, 1),
            "answerables_refused": refused[True] / max(n_ans, 1), "wrong": wrong}


def render(r: dict) -> str:
    out = table(["embedder", "unanswerables refused", "answerables refused"],
                [(Path(r["embedder"]).name, r["unanswerables_refused"], r["answerables_refused"])])
    for w in r["wrong"]:
        sim = f" cos {w['similarity']:.3f}/{w['vector_floor']:.3f}" if w["similarity"] is not None else ""
        out += f"\n  wrong: coverage {w['coverage']:.2f}{sim}  {w['question']}"
    return out + f"\n{r['answerable']} answerable + {r['unanswerable']} unanswerable questions"


def main(argv: list[str] | None = None) -> int:
    p = add_json_flag(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("--data", type=Path, default=DEFAULT)
    p.add_argument("--embedder", help="minilm | e5 | folder or hub id (default: settings embedding_model)")
    p.add_argument("--kb-dir", type=Path, help="data dir to keep between runs (default: a temp dir)")
    args = p.parse_args(argv)
    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    embedder = str(OFFLINE / "multilingual-e5-small") if args.embedder == "e5" else args.embedder
    r = in_home(args.kb_dir, lambda home: measure(rows, home, embedder))
    emit(r, render(r), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Answer quality: ask a QA set through the real answering service and score what users judge.

    python bench/answers.py KB_FOLDER_OR_NAME QA.jsonl [--limit N | --sample N] [--json]
        [--home DIR] [--include GLOB ...] [--only-qa-files] [--embedding-model PATH] [--model NAME_OR_FOLDER]
        [--backend transformers|llamacpp|ollama] [--top-k K] [--think | --no-think]
        [--temperature T] [--max-new-tokens N] [--set KEY=VALUE ...] [--out FILE.json]

One process: settings, the knowledge base service and the answering service are built once.
``KB_FOLDER_OR_NAME`` is a folder (ingested first into a knowledge base named after the folder
and the embedder, in ``--home`` or a throwaway data dir; unchanged files are skipped by hash on
the next run with the same ``--home``) or the name of a knowledge base in ``--home``.

QA rows (JSON Lines)::

    {"question": "...", "expect": "gold" | ["gold", "alt"] | null,
     "source_contains": "file name part", "page": 4,          # page optional (None for DOCX)
     "history": ["earlier question", ...],                     # optional: a follow-up
     "set": "documents", "kind": "number"}                     # optional tags (reported per kind)

``expect: null`` marks an unanswerable question: the right outcome is a refusal. A row with
``history`` is a conversation: the earlier questions are asked first (their answers kept as the
conversation), then the row's question is scored. Every row starts with an empty conversation.

Reported (shares of the answerable rows unless said otherwise; definitions in
bench/answer_scoring.py): correct, cited_right, correct_and_cited, false_refusal, hit@k (the
gold in the top-k of a plain search for the question), refusal_recall (of the unanswerable
rows), follow-up correct, median time to first token and tokens/s. Settings not given as flags
come from ``TQTS_*`` variables and the data dir's settings.yaml, as in the app.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import answer_scoring as scoring  # noqa: E402
from bench.common import emit, load_settings, log, table, temp_home  # noqa: E402


def sample_rows(rows: list[dict], n: int | None) -> list[dict]:
    """``n`` rows spread evenly over the file (every kind keeps its share), in file order.

    >>> [r["i"] for r in sample_rows([{"i": i} for i in range(10)], 4)]
    [0, 2, 5, 7]
    """
    if not n or n >= len(rows):
        return rows
    return [rows[int(i * len(rows) / n)] for i in range(n)]


def read_qa(path: Path, limit: int | None = None) -> list[dict]:
    """Rows of a QA JSONL file (blank lines and ``#`` lines skipped).

    Raises:
        SystemExit: a line that is not a JSON object with a "question" (its line number said).
    """
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise SystemExit(f"error: {path}:{n} is not JSON ({e}); one object per line") from None
        if not isinstance(row, dict) or not str(row.get("question", "")).strip():
            raise SystemExit(f"error: {path}:{n} has no \"question\"; see bench/answers.py --help")
        rows.append(row)
    return rows[:limit] if limit else rows


def parse_sets(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs -> overrides typed like settings.DEFAULTS (via settings._coerce)."""
    import settings as settings_mod

    out = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        if key not in settings_mod.DEFAULTS:
            raise SystemExit(f"error: --set {pair!r}: unknown setting; known: {', '.join(sorted(settings_mod.DEFAULTS))}")
        out[key] = settings_mod._coerce(raw, settings_mod.DEFAULTS[key], key)
    return out


def prepare_kb(kb_service, target: str, includes: list[str]) -> str:
    """The knowledge base to ask: ingest folder ``target`` (files matching ``includes``, all when
    empty) into a KB named after the folder and the embedder, or use ``target`` as a KB name."""
    from kb.service import expand_paths

    folder = Path(target).expanduser()
    if not folder.is_dir():
        return target
    name = f"{folder.name}-{Path(kb_service.embedder_name).name}"
    files = [f for f in expand_paths([folder])
             if not includes or any(fnmatch.fnmatch(f.name, g) for g in includes)]
    if not files:
        raise SystemExit(f"error: no supported files in {folder} match {includes}")
    t0 = time.perf_counter()
    results = kb_service.ingest(files, kb=name)
    for r in results:
        if not r.ok:
            log(f"  ! {r.source}: {r.message}")
    log(f"knowledge base {name!r}: {len(files)} files ready in {time.perf_counter() - t0:.0f} s "
        f"({sum(r.status in ('added', 'updated') for r in results)} ingested)")
    return name


def _src(s) -> dict:
    return {"source": s.source, "page": s.page, "page_end": getattr(s, "page_end", None), "text": s.text}


def ask_row(answers, kb_service, kb: str, row: dict, think: bool) -> dict:
    """Ask one row (its ``history`` first), score it; the result row for the report."""
    answers.clear_history(kb)
    for q in row.get("history") or []:
        answers.answer(q, kb=kb, think=think)
    t0 = time.perf_counter()
    r = answers.answer(row["question"], kb=kb, think=think)
    seconds = time.perf_counter() - t0
    hits = kb_service.search(row["question"], kb=kb, k=answers.settings.top_k)
    cited = [_src(s) for s in r.sources if s.n in r.cited]
    scores = scoring.score_row(row, r.answer, r.refused, cited, [_src(h) for h in hits])
    return {"question": row["question"], "expect": row.get("expect"), "kind": row.get("kind", ""),
            "followup": bool(row.get("history")), "answer": r.answer, "gate_refused": r.refused,
            "error": r.error, "cited": [{"n": s.n, "source": Path(s.source).name, "page": s.page}
                                        for s in r.sources if s.n in r.cited],
            "cited_inferred": getattr(r, "cited_inferred", False),
            "model_answer": getattr(r, "model_answer", ""),  # set when the extractive fallback replaced it
            "sources": [{"n": s.n, "source": Path(s.source).name, "page": s.page} for s in r.sources], **scores,
            "ttft_ms": r.timings.get("ttft_ms"), "tok_per_s": r.timings.get("tok_per_s"),
            "tokens": r.timings.get("tokens"),
            "seconds": round(seconds, 1)}


def per_kind(rows: list[dict]) -> dict:
    """correct_and_cited (answerable kinds) or refusal share (unanswerable) per ``kind`` tag."""
    out: dict[str, dict] = {}
    for kind in sorted({r["kind"] for r in rows if r["kind"]}):
        sub = [r for r in rows if r["kind"] == kind]
        ans = [r for r in sub if r["answerable"]]
        out[kind] = {"n": len(sub),
                     "correct_and_cited": round(sum(r["correct_and_cited"] for r in ans) / len(ans), 3) if ans else None,
                     "refused": round(sum(r["refused"] for r in sub) / len(sub), 3)}
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("kb", metavar="KB_FOLDER_OR_NAME")
    p.add_argument("qa", type=Path, metavar="QA.jsonl")
    p.add_argument("--limit", type=int, help="first N rows only")
    p.add_argument("--sample", type=int, help="N rows spread evenly over the file (a quicker, stratified run)")
    p.add_argument("--json", action="store_true", help="print one JSON object (rows included)")
    p.add_argument("--out", type=Path, help="also write the JSON result to this file")
    p.add_argument("--home", help="data dir kept between runs (default: a throwaway one)")
    p.add_argument("--include", action="append", default=[], metavar="GLOB",
                   help="ingest only files whose name matches (repeatable; default: all)")
    p.add_argument("--only-qa-files", action="store_true",
                   help="ingest only the files the QA set names in source_contains")
    p.add_argument("--embedding-model")
    p.add_argument("--model", help="answering model: registry name or HF folder")
    p.add_argument("--backend", choices=["transformers", "llamacpp", "ollama"])
    p.add_argument("--top-k", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--max-new-tokens", type=int)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--think", dest="think", action="store_true", default=None)
    g.add_argument("--no-think", dest="think", action="store_false")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other setting")
    p.add_argument("--seed", type=int, default=0, help="torch seed (sampling at temperature > 0)")
    return p


def run(args, home: Path) -> dict:
    from kb.service import KnowledgeBaseService
    from models.answer import AnswerService

    overrides = {"embedding_model": args.embedding_model, "model": args.model, "backend": args.backend,
                 "top_k": args.top_k, "temperature": args.temperature, "max_new_tokens": args.max_new_tokens,
                 "think": args.think, **parse_sets(args.set)}
    settings = load_settings(home, **overrides)
    rows = sample_rows(read_qa(args.qa, args.limit), args.sample)
    kb_service = KnowledgeBaseService(settings)
    answers = AnswerService(settings, kb_service)
    includes = list(args.include)
    if args.only_qa_files:
        includes += sorted({f"*{r['source_contains']}*" for r in read_qa(args.qa) if r.get("source_contains")})
    kb = prepare_kb(kb_service, args.kb, includes)
    t0 = time.perf_counter()
    answers.backend()
    log(f"model {answers.backend_name} loaded in {time.perf_counter() - t0:.0f} s")
    try:
        import torch

        torch.manual_seed(args.seed)
    except ImportError:  # pragma: no cover - ollama-only installs
        pass
    out_rows = []
    for i, row in enumerate(rows, 1):
        res = ask_row(answers, kb_service, kb, row, bool(settings.think))
        out_rows.append(res)
        mark = ("R" if res["refused"] else "-") if not res["answerable"] else \
               ("✓" if res["correct_and_cited"] else ("c" if res["correct"] else "✗"))
        log(f"[{i}/{len(rows)}] {mark} {res['seconds']:.0f}s {row['question'][:40]} -> {res['answer'][:60]!r}")
        if args.out:  # partial results survive a run stopped early
            save(args.out, {"partial": True, "rows_done": i, "summary": scoring.summarize(out_rows), "rows": out_rows})
    answers.clear_history(kb)
    keys = ("embedding_model", "model", "backend", "top_k", "temperature", "think", "max_new_tokens",
            "relevance_floor", "context_tokens")
    return {"benchmark": "answers", "qa": str(args.qa), "kb": kb, "rows_asked": len(rows),
            "settings": {k: getattr(settings, k) for k in keys},
            "summary": scoring.summarize(out_rows), "per_kind": per_kind(out_rows),
            "median_seconds": statistics.median(r["seconds"] for r in out_rows) if out_rows else None,
            "rows": out_rows}


def save(path: Path, result: dict) -> None:
    """Write ``result`` (plus the machine) as JSON to ``path`` (folders created)."""
    from bench.common import machine

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**result, "machine": machine()}, ensure_ascii=False, indent=1), encoding="utf-8")


def report(result: dict) -> str:
    s = result["summary"]
    pct = lambda v: "-" if v is None else f"{100 * v:.0f} %"  # noqa: E731
    lines = [f"{result['qa']}: {s['answerable']} answerable, {s['unanswerable']} unanswerable, "
             f"{s['followups']} follow-ups; kb {result['kb']}; {result['settings']}", "",
             table(["metric", "value"], [
                 ["correct", pct(s["correct"])], ["cited right", pct(s["cited_right"])],
                 ["correct and cited", pct(s["correct_and_cited"])],
                 ["unanswerables refused", pct(s["refusal_recall"])],
                 ["answerables refused", pct(s["false_refusal"])], ["retrieval hit@k", pct(s["hit_at_k"])],
                 ["follow-ups correct", pct(s["followup_correct"])],
                 ["median time to first token (ms)", s["median_ttft_ms"]],
                 ["median tokens/s", s["median_tok_per_s"]]])]
    if result["per_kind"]:
        lines += ["", table(["kind", "n", "correct and cited", "refused"],
                            [[k, v["n"], pct(v["correct_and_cited"]), pct(v["refused"])]
                             for k, v in result["per_kind"].items()])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.home:
        result = run(args, Path(args.home).expanduser())
    else:
        with temp_home("tqts-answers-") as home:
            result = run(args, home)
    if args.out:
        save(args.out, result)
    emit(result, report(result), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

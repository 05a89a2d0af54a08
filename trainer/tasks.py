"""Grounded-QA training tasks from a knowledge base (``python -m trainer tasks``).

A task is a question, its acceptable answers, and the passages the prompt will show: the gold
passage (the chunk holding the answer) among distractors from the knowledge base's own hybrid
search for the question, shuffled, 3-5 in all; or, for about :data:`REFUSAL_SHARE` of tasks, the
same without the gold passage and without any passage containing the answer (the right reply is
"not in the sources"). After RAG-RL (Huang et al. 2025, arXiv 2503.12759: distractor passages)
and Sim et al. 2025 (arXiv 2506.15522: answerable and unanswerable grounded tasks).

Questions come from (a) a user file of question/answer pairs (CSV or JSONL with columns
``question`` and ``answer``; the gold passage is the best hit containing the answer) or (b)
rules (:mod:`trainer.tasks_rules`), plus optionally (c) questions proposed by a model
(:mod:`trainer.tasks_model`, ``--propose-with MODEL``), kept only when verifiable.

One JSON object per line (the *tasks file*):

``{"id", "kind", "lang", "question", "answers": [str], "passages": [{"source", "page", "section",
"text", "chunk_id"}], "gold": n (1-based; 0 = refusal task), "support": [n...] (passages containing an
answer), "n_passages", "doc", "split": "train" | "heldout", "evidence"}``

Tasks are deduplicated by question, balanced over documents (round robin; no rule kind above
:data:`KIND_CAP` of ``max_tasks``) and split into train
and held-out BY DOCUMENT (no document feeds both).
"""
from __future__ import annotations

import csv
import hashlib
import json
import random
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from trainer.grounded import answer_score, normalize_text
from trainer.tasks_rules import Candidate, chunk_candidates

REFUSAL_SHARE = 0.2
HELDOUT_SHARE = 0.2
PASSAGES = (3, 5)          # passages shown per task, inclusive range
SEARCH_K = 12              # hits fetched per question to pick distractors from
KIND_CAP = 0.5             # most tasks of one rule kind, as a share of max_tasks (else one kind crowds out the rest)


def contains_answer(text: str, answers: list[str]) -> bool:
    """True when a passage states one of the answers (normalised containment; see
    :func:`trainer.grounded.normalize_text`).

    >>> contains_answer("每届任期五年，任期 5 年。", ["5年"]), contains_answer("任期五年", ["5年"])
    (True, False)
    """
    body = normalize_text(text)
    return any(normalize_text(a) and normalize_text(a) in body for a in answers)


def read_qa_file(path: str | Path) -> list[tuple[str, str]]:
    """(question, answer) pairs from a CSV (header ``question,answer``; 问题/答案 also accepted)
    or JSONL file (keys ``question``/``answer``). Rows missing either are skipped.

    Raises:
        ValueError: unsupported suffix, no usable row, or a line that does not parse.
    """
    path = Path(path)
    keys = (("question", "问题", "q"), ("answer", "答案", "a"))
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.DictReader(fh))
    elif path.suffix.lower() in (".jsonl", ".json"):
        from trainer.data import read_rows

        rows = read_rows(path)
    else:
        raise ValueError(f"{path}: give a .csv (columns question,answer) or .jsonl file")

    def pick(row: dict, names) -> str:
        return next((str(row[k]).strip() for k in names if row.get(k) not in (None, "")), "")

    pairs = [(pick(r, keys[0]), pick(r, keys[1])) for r in rows if isinstance(r, dict)]
    pairs = [(q, a) for q, a in pairs if q and a]
    if not pairs:
        raise ValueError(f"{path}: no row with both a question and an answer (columns question, answer)")
    return pairs


def _rule_pool(svc, kb: str, on_progress) -> dict[str, list[tuple[Candidate, object]]]:
    """Document source -> [(candidate, gold chunk)] from the rules, deduplicated by question."""
    pool: dict[str, list] = {}
    seen: set[str] = set()
    for doc, chunks in svc.chunks(kb):
        on_progress(f"reading {doc.name}")
        items = pool.setdefault(doc.source, [])
        for hit in chunks:
            for c in chunk_candidates(hit.text):
                key = normalize_text(c.question)
                if key not in seen and contains_answer(hit.text, c.answers):
                    seen.add(key)
                    items.append((c, hit))
    return pool


def _add_model_candidates(svc, kb: str, pool: dict, n: int, generate, on_progress) -> int:
    """Add up to ``n`` model-proposed candidates (:mod:`trainer.tasks_model`) to ``pool``, one
    chunk per document in turn; returns how many proposals were kept."""
    from models.prompts import detect_language
    from trainer.tasks_model import model_candidates

    seen = {normalize_text(c.question) for items in pool.values() for c, _ in items}
    per_doc = [(doc, list(chunks)) for doc, chunks in svc.chunks(kb)]
    picked = [(doc, hit) for group in zip_longest_all([[(d, h) for h in chunks] for d, chunks in per_doc])
              for doc, hit in group][:n]
    kept = 0
    for i, (doc, hit) in enumerate(picked, 1):
        on_progress(f"model question {i}/{len(picked)}")
        [cand] = model_candidates([(hit.text, detect_language(hit.text))], generate)
        if cand is not None and normalize_text(cand.question) not in seen and contains_answer(hit.text, cand.answers):
            seen.add(normalize_text(cand.question))
            pool.setdefault(doc.source, []).append((cand, hit))
            kept += 1
    return kept


def _user_pool(svc, kb: str, pairs: list[tuple[str, str]]) -> tuple[dict, int]:
    """Document source -> [(candidate, gold chunk)] from user pairs: the gold chunk is the best
    search hit containing the answer. Returns (pool, pairs whose answer no hit contains)."""
    from models.prompts import detect_language

    pool: dict[str, list] = {}
    missing = 0
    seen: set[str] = set()
    for q, a in pairs:
        if normalize_text(q) in seen:
            continue
        seen.add(normalize_text(q))
        gold = next((h for h in svc.search(q, kb, k=SEARCH_K) if contains_answer(h.text, [a])), None)
        if gold is None:
            missing += 1
            continue
        pool.setdefault(gold.source, []).append((Candidate("user", q, [a], "", detect_language(q)), gold))
    return pool, missing


def _round_robin(pool: dict[str, list], rng: random.Random):
    """Yield (source, item) one document at a time in turn; within a document kinds alternate."""
    queues = {}
    for src, items in pool.items():
        rng.shuffle(items)
        by_kind: dict[str, list] = {}
        for it in items:
            by_kind.setdefault(it[0].kind, []).append(it)
        mixed = [it for group in zip_longest_all(list(by_kind.values())) for it in group]
        queues[src] = mixed
    order = sorted(queues)
    rng.shuffle(order)
    while any(queues.values()):
        for src in order:
            if queues[src]:
                yield src, queues[src].pop(0)


def zip_longest_all(groups: list[list]) -> list[list]:
    """Interleave lists: [[a1, b1], [a2, b2], [a3]] (one from each in turn)."""
    out, i = [], 0
    while any(i < len(g) for g in groups):
        out.append([g[i] for g in groups if i < len(g)])
        i += 1
    return out


def _passage(hit) -> dict:
    return {"source": hit.source, "page": hit.page, "section": hit.section, "text": hit.text, "chunk_id": hit.chunk_id}


def make_task(svc, kb: str, cand: Candidate, gold, rng: random.Random, refusal: bool) -> dict | None:
    """One task for a candidate and its gold chunk (see module docstring), or None when there
    are too few distractors for a refusal task."""
    hits = [h for h in svc.search(cand.question, kb, k=SEARCH_K) if h.chunk_id != gold.chunk_id]
    n = rng.randint(*PASSAGES)
    if refusal:
        pool = [h for h in hits if not contains_answer(h.text, cand.answers)]
        if len(pool) < PASSAGES[0]:
            return None
        shown = pool[:n]
    else:
        shown = hits[:n - 1] + [gold]
    rng.shuffle(shown)
    passages = [_passage(h) for h in shown]
    gold_n = 0 if refusal else next(i for i, h in enumerate(shown, 1) if h.chunk_id == gold.chunk_id)
    support = [i for i, p in enumerate(passages, 1) if contains_answer(p["text"], cand.answers)]
    tid = hashlib.sha1(f"{gold.source}\n{cand.question}".encode()).hexdigest()[:12]
    return {"id": tid, "kind": cand.kind, "lang": cand.lang, "question": cand.question, "answers": cand.answers,
            "passages": passages, "gold": gold_n, "support": support, "n_passages": len(passages),
            "doc": Path(gold.source).name, "split": "train", "evidence": cand.evidence}


def split_by_document(tasks: list[dict], share: float = HELDOUT_SHARE, seed: int = 0) -> None:
    """Mark tasks ``heldout`` for whole documents (hash order, seeded) until about ``share`` of
    the tasks are held out (the smallest document when each is bigger); at least one document
    stays in train. Changes ``tasks`` in place."""
    counts = Counter(t["doc"] for t in tasks)
    if len(counts) < 2 or share <= 0:
        return
    order = sorted(counts, key=lambda d: hashlib.sha1(f"{seed}:{d}".encode()).hexdigest())
    held, n = set(), 0
    for doc in order[:-1]:
        if n >= share * len(tasks):
            break
        if n + counts[doc] <= max(share * len(tasks) * 1.5, 1):
            held.add(doc)
            n += counts[doc]
    if not held:  # every document is bigger than the share: hold out the smallest one
        held.add(min(order, key=lambda d: counts[d]))
    for t in tasks:
        t["split"] = "heldout" if t["doc"] in held else "train"


def build_tasks(svc, kb: str, *, max_tasks: int = 500, qa_file: str | Path | None = None,
                refusal_share: float = REFUSAL_SHARE, heldout_share: float = HELDOUT_SHARE, seed: int = 0,
                on_progress: Callable[[int, int, str], None] | None = None, propose: int = 0,
                generate: Callable[[list[dict]], str] | None = None) -> tuple[list[dict], dict]:
    """Build grounded tasks from knowledge base ``kb`` of a KnowledgeBaseService.

    Args:
        svc: :class:`kb.service.KnowledgeBaseService` (chunks are read and searched through it).
        kb: knowledge base display name.
        max_tasks: most tasks to build (balanced over documents).
        qa_file: CSV/JSONL of question/answer pairs; None = rule-made questions.
        refusal_share: share of tasks whose gold passage is removed (answer: a refusal).
        heldout_share: share of tasks (whole documents) marked ``split: heldout``.
        on_progress: ``(done, total, message)``; ``total`` 0 while chunks are read.
        propose / generate: ask ``generate`` (messages -> reply, e.g.
            :func:`trainer.tasks_model.hf_generator`) for a question on up to ``propose`` chunks;
            kept as kind ``model`` when the answer is a verbatim span not in the question.

    Returns:
        (tasks, summary); summary: ``{"tasks", "by_kind", "refusal", "train", "heldout",
        "documents", "candidates", "gold_present", "skipped"}``.

    Raises:
        KeyError: no such knowledge base. ValueError: it has no documents, or no question
        could be made (the message says what to do).
    """
    report = on_progress or (lambda done, total, msg: None)
    docs = svc.documents(kb)
    if not docs or not sum(d.chunks for d in docs):
        raise ValueError(f"knowledge base {kb!r} has no documents: add some with "
                         f"`python main.py ingest PATH --kb {kb}` first")
    rng = random.Random(seed)
    missing = 0
    if qa_file:
        pool, missing = _user_pool(svc, kb, read_qa_file(qa_file))
    else:
        pool = _rule_pool(svc, kb, lambda msg: report(0, 0, msg))
    if propose and generate is not None:
        _add_model_candidates(svc, kb, pool, propose, generate, lambda msg: report(0, 0, msg))
    n_cand = sum(len(v) for v in pool.values())
    if not n_cand:
        what = (f"none of the answers in {qa_file} is found in the knowledge base" if qa_file else
                "no sentence with a number, date, amount or definition and no table row was found")
        raise ValueError(f"knowledge base {kb!r}: {what}; no task made")
    tasks: list[dict] = []
    total = min(max_tasks, n_cand)
    kinds: Counter = Counter()
    cap = max(1, int(KIND_CAP * max_tasks)) if not qa_file else max_tasks
    for _src, (cand, gold) in _round_robin(pool, rng):
        if len(tasks) >= max_tasks:
            break
        if kinds[cand.kind] >= cap:
            continue
        refusal = rng.random() < refusal_share
        task = make_task(svc, kb, cand, gold, rng, refusal) or (make_task(svc, kb, cand, gold, rng, False)
                                                                if refusal else None)
        if task:
            tasks.append(task)
            kinds[cand.kind] += 1
            report(len(tasks), total, cand.question[:40])
    split_by_document(tasks, heldout_share, seed)
    return tasks, summarize(tasks, n_cand, missing)


def gold_present(task: dict) -> bool:
    """The check behind "gold answers verifiably present": an answerable task's gold passage
    states an answer (:func:`trainer.grounded.answer_score` of the passage is 1.0); a refusal
    task shows no passage containing one."""
    if task["gold"] == 0:
        return not any(contains_answer(p["text"], task["answers"]) for p in task["passages"])
    text = task["passages"][task["gold"] - 1]["text"]
    return any(answer_score(text, a) == 1.0 for a in task["answers"])


def summarize(tasks: list[dict], candidates: int = 0, missing: int = 0) -> dict:
    """Counts per kind and split, refusal tasks, documents, share with the gold answer present."""
    return {"tasks": len(tasks), "by_kind": dict(Counter(t["kind"] for t in tasks).most_common()),
            "refusal": sum(t["gold"] == 0 for t in tasks),
            "train": sum(t["split"] == "train" for t in tasks), "heldout": sum(t["split"] == "heldout" for t in tasks),
            "documents": len({t["doc"] for t in tasks}), "candidates": candidates,
            "gold_present": round(sum(map(gold_present, tasks)) / max(len(tasks), 1), 4), "skipped": missing}


def format_summary(summary: dict, tasks: list[dict], examples: int = 5, seed: int = 0) -> str:
    """Printable summary plus ``examples`` tasks (question, answer, gold passage, passages)."""
    s = summary
    lines = [f"{s['tasks']} tasks from {s['documents']} documents ({s['candidates']} candidate questions): "
             f"{s['train']} train, {s['heldout']} held-out; {s['refusal']} refusal tasks (gold passage removed)",
             "by kind: " + ", ".join(f"{k} {v}" for k, v in s["by_kind"].items()),
             f"gold answer present in its gold passage (or absent from all, for refusals): {s['gold_present']:.1%}"]
    if s.get("skipped"):
        lines.append(f"{s['skipped']} question/answer pairs skipped: no passage of the knowledge base contains the answer")
    for t in random.Random(seed).sample(tasks, min(examples, len(tasks))):
        gold = f"[{t['gold']}] of {t['n_passages']}" if t["gold"] else f"none of {t['n_passages']} (refusal)"
        lines += ["", f"[{t['kind']}] {t['question']}", f"  answer: {' | '.join(t['answers'])}   gold passage: {gold}"
                  f"   doc: {t['doc']} ({t['split']})"]
        if t["gold"]:
            lines.append("  gold: " + " ".join(t["passages"][t["gold"] - 1]["text"].split())[:160])
    return "\n".join(lines)


def write_tasks(tasks: list[dict], path: str | Path) -> Path:
    """Write tasks as UTF-8 JSONL (temp file + rename); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in tasks), encoding="utf-8")
    tmp.replace(path)
    return path


def cmd_tasks(args) -> int:
    """``python -m trainer tasks``: build, write, print the summary; 2 with one line on bad input."""
    from tqdm import tqdm

    import settings as settings_mod
    from kb.service import KnowledgeBaseService

    if args.max < 1 or not 0 <= args.refusal_share < 1:
        print("error: --max must be >= 1 and --refusal-share in [0, 1)", file=sys.stderr)
        return 2
    settings = settings_mod.load(args.home) if args.home else settings_mod.load()
    as_json = getattr(args, "progress_json", False)
    bar = tqdm(total=0, unit="task", file=sys.stderr, dynamic_ncols=True, disable=as_json)

    def progress(done, total, message):
        if as_json:  # one line per update, read by trainer.jobs_tasks.TasksJob (the Retrain dialog)
            print(json.dumps({"progress": [done, total], "message": message[:80]}, ensure_ascii=False), flush=True)
            return
        bar.total, bar.n = total, done
        bar.set_description_str(message[:40], refresh=False)
        bar.refresh()

    try:
        generate = None
        if getattr(args, "propose_with", None):
            from trainer.tasks_model import hf_generator

            generate = hf_generator(args.propose_with)
        tasks, summary = build_tasks(KnowledgeBaseService(settings), args.kb, max_tasks=args.max,
                                     qa_file=args.from_file, refusal_share=args.refusal_share, seed=args.seed,
                                     on_progress=progress, propose=getattr(args, "propose", 0), generate=generate)
    except KeyError as e:
        bar.close()
        print(f"error: {str(e).strip(chr(34) + chr(39))}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:
        bar.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    bar.close()
    path = write_tasks(tasks, args.out)
    print(format_summary(summary, tasks, seed=args.seed))
    print(f"\nwrote {path}")
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    return 0

"""Build the CMRC 2018 answer set: documents from the articles and a QA JSONL.

    python bench/data/make_cmrc.py OUT_FOLDER [--articles 200] [--answerable 80]
                                   [--unanswerable 20] [--qa bench/data/cmrc.jsonl]

From ``../shared/data/retrieval/cmrc2018_trial.json`` (SQuAD format, 256 articles, one
paragraph each): ``--articles`` articles, picked with a fixed seed, are written to OUT_FOLDER as
one UTF-8 text file each (``<article id>.txt``: the title line, then the context) for the
knowledge base; ``--answerable`` of their questions are asked with gold = the SQuAD answer
texts; ``--unanswerable`` questions of the articles left out are asked with ``expect: null``.
Same seed, same files and rows, so the committed cmrc.jsonl matches a fresh OUT_FOLDER.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT.parent / "shared" / "data" / "retrieval" / "cmrc2018_trial.json"
SEED = 17


def build(out: Path, n_articles: int = 200, n_answerable: int = 80, n_unanswerable: int = 20,
          source: Path = SOURCE) -> list[dict]:
    """Write the documents into ``out``; return the QA rows (answerable first).

    Raises:
        FileNotFoundError: ``source`` is missing.
    """
    arts = json.loads(source.read_text(encoding="utf-8"))["data"]
    rng = random.Random(SEED)
    order = list(range(len(arts)))
    rng.shuffle(order)
    kept, left = order[:n_articles], order[n_articles:]
    out.mkdir(parents=True, exist_ok=True)
    for i in kept:
        a = arts[i]
        text = a.get("title", "") + "\n" + "\n".join(p["context"] for p in a["paragraphs"])
        (out / f"{a['id']}.txt").write_text(text, encoding="utf-8")

    def questions(idx: list[int]) -> list[tuple[dict, dict]]:
        return [(arts[i], q) for i in idx for p in arts[i]["paragraphs"] for q in p["qas"]
                if q["question"].strip() and q["answers"]]

    ans = rng.sample(questions(sorted(kept)), n_answerable)
    una = rng.sample(questions(sorted(left)), n_unanswerable)
    rows = [{"question": q["question"], "expect": sorted({x["text"] for x in q["answers"]}),
             "source_contains": f"{a['id']}.txt", "page": None, "set": "cmrc", "kind": "cmrc"} for a, q in ans]
    rows += [{"question": q["question"], "expect": None, "set": "cmrc", "kind": "unanswerable"} for _, q in una]
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--articles", type=int, default=200)
    p.add_argument("--answerable", type=int, default=80)
    p.add_argument("--unanswerable", type=int, default=20)
    p.add_argument("--qa", type=Path, default=ROOT / "bench" / "data" / "cmrc.jsonl")
    a = p.parse_args(argv)
    rows = build(a.out, a.articles, a.answerable, a.unanswerable)
    a.qa.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{a.articles} documents in {a.out}; {len(rows)} questions in {a.qa}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

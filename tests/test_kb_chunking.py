"""Chunking is pure: blocks in, chunks out (sizes in characters)."""
from __future__ import annotations

import pytest

from kb.chunking import chunk_blocks, split_sentences
from kb.types import Block


def test_split_sentences_chinese_and_english():
    assert split_sentences("第一句。第二句！真的吗？是的；好。Pi is 3.14 here. Next one!") == [
        "第一句。", "第二句！", "真的吗？", "是的；", "好。", "Pi is 3.14 here.", "Next one!"]
    assert split_sentences("他说：“走吧。”然后走了……") == ["他说：“走吧。”", "然后走了……"]


def test_size_overlap_and_boundaries():
    sents = [f"第{i}句话讲的是一件事情。" for i in range(60)]          # 11-12 chars each
    chunks = chunk_blocks([Block("".join(sents), page=1)], size=100, overlap=30)
    assert len(chunks) > 5
    assert all(len(c.text) <= 100 for c in chunks)
    assert all(c.text.endswith("。") for c in chunks)                # never mid-sentence
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert split_sentences(a.text)[-1] in b.text[:30]          # <= 30 chars of whole sentences carried
    assert [c.index for c in chunks] == list(range(len(chunks)))
    joined = "".join(c.text for c in chunks)
    assert all(s in joined for s in sents)


def test_pages_and_sections_in_metadata():
    blocks = [Block("甲" * 40 + "。", 1, "第一章"), Block("乙" * 40 + "。", 2, "第一章"),
              Block("丙" * 40 + "。", 3, "第二章")]
    chunks = chunk_blocks(blocks, size=100, overlap=0)
    assert (chunks[0].page_start, chunks[0].page_end, chunks[0].section) == (1, 2, "第一章")
    assert (chunks[1].page_start, chunks[1].section) == (3, "第二章")


def test_table_rows_never_split_and_header_repeated():
    rows = ["| 名称 | 数量 |", "|---|---|"] + [f"| 物品{i:02d} | {i} |" for i in range(40)]
    chunks = chunk_blocks([Block("\n".join(rows), 1, kind="table")], size=120, overlap=20)
    assert len(chunks) > 3
    for c in chunks:
        lines = c.text.splitlines()
        assert lines[:2] == rows[:2]
        assert all(line in rows for line in lines)                   # whole rows only
    body = [line for c in chunks for line in c.text.splitlines()[2:]]
    assert body == rows[2:]                                           # each row once, in order


def test_long_sentence_without_punctuation_is_cut():
    chunks = chunk_blocks([Block("字" * 1234)], size=500, overlap=50)
    assert all(len(c.text) <= 500 for c in chunks) and sum(len(c.text) for c in chunks) >= 1234
    assert chunks[0].page_start is None


def test_bad_sizes():
    with pytest.raises(ValueError, match="chunk_overlap"):
        chunk_blocks([Block("x")], size=100, overlap=100)

"""Rules (no model) that turn knowledge-base text into verifiable questions, Chinese and English.

Each rule reads one chunk and returns :class:`Candidate` questions whose answer is a verbatim
span of the chunk:

- numbers, percentages, dates and amounts in a sentence: the span is replaced by a question
  word ("多少" / "百分之多少" / "何时"; "how many" / "what percentage" / "how much" / "when"),
  an echo question: "隔离医学观察14天。" -> "隔离医学观察多少天？" (answer "14天");
- definitions "X是Y" / "X是指Y" / "X指Y" / "X is a Y" / "X means Y" -> "X是什么？" / "What is X?";
- table rows (Markdown rows, as kb.loaders stores tables): row header + column header -> cell.

Sentences are split with :func:`kb.chunking.split_sentences`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from kb.chunking import split_sentences

_HAN = re.compile(r"[\u3400-\u9fff]")
_DIGIT_GROUP = re.compile(r"\d[\d,.]*")

#: (kind, pattern) tried in order; group "n" is the part replaced in Chinese ("多少" + unit kept).
_ZH_SPANS = [
    ("date", re.compile(r"(?<![\d.])\d{4}年\d{1,2}月(?:\d{1,2}日)?")),
    ("percent", re.compile(r"(?<![\d.])\d+(?:\.\d+)?\s?[%％]")),
    ("amount", re.compile(r"(?<![\d.,])(?P<n>\d(?:[\d,]*\d)?(?:\.\d+)?)\s?(?P<u>万元|亿元|元|美元)")),
    ("number", re.compile(r"(?<!\d\s)(?<![\d.,第])(?P<n>\d(?:[\d,]*\d)?(?:\.\d+)?)\s?(?P<u>小时|分钟|秒钟|公里|厘米|毫米|天|个|人|年|"
                          r"月|周|次|岁|例|家|项|名|台|件|种|倍|米|层|秒)(?![条章节款类])")),
]
_EN_SPANS = [
    ("date", re.compile(r"\b(?:January|February|March|April|May|June|July|August|September|October|November|"
                        r"December) \d{1,2}, \d{4}\b")),
    ("percent", re.compile(r"(?<![\d.])\d+(?:\.\d+)? ?(?:%|percent\b)")),
    ("amount", re.compile(r"(?<![\w.])\$\d[\d,]*(?:\.\d+)?(?: (?:million|billion))?\b")),
    ("date", re.compile(r"(?<=\b[Ii]n )(?:19|20)\d{2}\b(?![\d,.-]\d)")),
    ("number", re.compile(r"(?<![\w.$,/-])(?P<n>\d(?:[\d,]*\d)?(?:\.\d+)?) (?P<u>(?!(?:and|or|the|of|to|for|in|on|at|by|"
                          r"with|from|percent|through|and)\b)[a-z]{3,})\b(?![.-]\d)")),
]
_ZH_WORD = {"date": "何时", "percent": "百分之多少", "amount": "多少", "number": "多少"}
_EN_WORD = {"date": "when", "percent": "what percentage", "amount": "how much", "number": "how many"}
_ZH_PRONOUN = tuple("这那它其此他她我你但如若因所并而也还就都只则即该每各本") + (
    "以下", "如下", "下列", "上述", "目前", "现在", "同时", "因此", "可以", "不", "一个", "一种", "有的", "有些", "或", "和", "及")
_ZH_NOT_DEF = ("为了", "因为", "由于", "在", "从", "对", "否", "不", "很", "非常", "有", "没有", "可以", "需要", "要", "将",
               "把", "被", "如何", "怎么", "一个", "指")
_EN_PRONOUN = {"it", "this", "that", "there", "he", "she", "they", "we", "what", "which", "these", "those",
               "here", "one", "each", "all", "who", "you", "i"}
_ZH_DEF = re.compile(r"^(?:第[一二三四五六七八九十百零\d]+条\s*)?(?P<x>[\u4e00-\u9fffA-Za-z0-9（）()《》“”]{2,16}?)"
                     r"(?P<v>是指|指的是|是|指(?![标导出定南挥令示向数明]))(?P<y>[^。；;！？?!]{4,60})[。；;]?$")
_EN_DEF = re.compile(r"^(?P<x>(?:[Tt]he |[Aa]n? )?[A-Za-z][\w\-]*(?: [\w\-]+){0,4}) (?P<v>is|are|means|refers to) "
                     r"(?P<y>(?:a|an|the) [^.;:!?]{8,150})\.?$")


@dataclass
class Candidate:
    """A question made from one chunk: its kind, text, acceptable answers and evidence sentence."""

    kind: str
    question: str
    answers: list[str]
    evidence: str = ""
    lang: str = "zh"
    extra: dict = field(default_factory=dict)


_LIST_MARK = re.compile(r"^\s*(?:(?:\d{1,3}|[ⅰ-ⅿⅠ-Ⅻ]+|[a-z])[.．、)）]\s*|[(（]\d{1,3}[)）]\s*|[一二三四五六七八九十]+、\s*"
                        r"|【[^】]{1,6}】\s*|\d{2,4}(?=[\u4e00-\u9fff])(?![年月日]))+")
_CAPS_HEAD = re.compile(r"^(?:[A-Z0-9][A-Z0-9&,.'’()/-]*\s+){2,}(?=[A-Z][a-z])")


def _clean(sentence: str) -> str:
    """One line; list markers (``9.``, ``ⅱ.``, ``【强制】``, a page number glued to the text) and
    an ALL-CAPS heading run at the start dropped."""
    s = " ".join(sentence.split())
    return _CAPS_HEAD.sub("", _LIST_MARK.sub("", s))


def _balanced(q: str) -> bool:
    return all(q.count(a) == q.count(b) for a, b in ("()", "（）", "“”", "[]", "《》"))


def _zh_number(sentence: str) -> Candidate | None:
    """A number/percent/date/amount echo question from a Chinese sentence, or None."""
    s = _clean(sentence).rstrip("。；;，,")
    if not (12 <= len(s) <= 120) or "|" in s or len(_DIGIT_GROUP.findall(s)) > 3:
        return None
    for kind, pat in _ZH_SPANS:
        found = list(pat.finditer(s))
        if len(found) != 1:
            continue
        m = found[0]
        if kind in ("amount", "number"):
            q = s[:m.start()] + _ZH_WORD[kind] + m.group("u") + s[m.end():]
        else:
            q = s[:m.start()] + _ZH_WORD[kind] + s[m.end():].lstrip("，, ")
        if len(_HAN.findall(q)) < 10 or not _balanced(q):
            return None
        return Candidate(kind, q + "？", [m.group(0).replace(" ", "")], sentence.strip(), "zh")
    return None


def _en_number(sentence: str) -> Candidate | None:
    """A number/percent/date/amount echo question from an English sentence, or None."""
    s = _clean(sentence).rstrip(".;,:")
    words = s.split()
    if not (8 <= len(words) <= 45) or "|" in s or len(_DIGIT_GROUP.findall(s)) > 3 or _HAN.search(s):
        return None
    for kind, pat in _EN_SPANS:
        found = list(pat.finditer(s))
        if len(found) != 1:
            continue
        m = found[0]
        middle = f"{_EN_WORD[kind]} {m.group('u')}" if kind == "number" else _EN_WORD[kind]
        if kind == "date" and m.group(0).isdigit():
            middle = "which year"
        elif kind == "number" and re.fullmatch(r"(?:19|20)\d{2}", m.group("n")):   # a year, not a count
            middle = f"which year {m.group('u')}"
        q = s[:m.start()] + middle + s[m.end():]
        q = q[0].upper() + q[1:]
        if len(re.findall(r"[A-Za-z]{2,}", q)) < 7 or not _balanced(q):
            return None
        answer = m.group("n") if kind == "number" else m.group(0)   # "30 calendar days" -> 30
        return Candidate(kind, q + "?", [answer], sentence.strip(), "en")
    return None


def _zh_definition(sentence: str) -> Candidate | None:
    m = _ZH_DEF.match(_clean(sentence))
    if not m or m.group("x").startswith(_ZH_PRONOUN) or m.group("x")[-1] in "的都也就还只不要会别其而即总正便或于但可凡若像算":
        return None
    verb = "指什么" if "指" in m.group("v") else "是什么"
    y = m.group("y").strip("，, ")
    if y.startswith(_ZH_NOT_DEF):   # "X是为了…", "X是在…": not a definition
        return None
    return Candidate("definition", f"{m.group('x')}{verb}？", [y], sentence.strip(), "zh")


def _en_definition(sentence: str) -> Candidate | None:
    m = _EN_DEF.match(_clean(sentence))
    if not m or m.group("x").split()[0].lower() in _EN_PRONOUN or any(c.isdigit() for c in m.group("x")):
        return None
    x, v = m.group("x"), m.group("v")
    x = x[0].lower() + x[1:] if x.split()[0] in ("The", "A", "An") else x
    q = {"is": f"What is {x}?", "are": f"What are {x}?", "means": f"What does {x} mean?",
         "refers to": f"What does {x} refer to?"}[v]
    return Candidate("definition", q, [m.group("y").strip()], sentence.strip(), "en")


def sentence_candidates(text: str) -> list[Candidate]:
    """Number and definition questions from the prose of a chunk (table rows skipped); at most
    one question per sentence.

    >>> [(c.kind, c.question, c.answers) for c in sentence_candidates("密切接触者应当集中隔离医学观察14天。")]
    [('number', '密切接触者应当集中隔离医学观察多少天？', ['14天'])]
    >>> [(c.question, c.answers) for c in sentence_candidates("The trustee must file the report within 30 days after the meeting.")]
    [('The trustee must file the report within how many days after the meeting?', ['30'])]
    """
    prose = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("|"))
    out = []
    for sent in split_sentences(prose):
        zh = bool(_HAN.search(sent))
        c = (_zh_number(sent) or _zh_definition(sent)) if zh else (_en_number(sent) or _en_definition(sent))
        if c is not None:
            out.append(c)
    return out


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _good_cell(cell: str) -> bool:
    """Short, and not a run of several numbers (a flattened row of figures)."""
    return bool(cell) and len(cell) <= 30 and len(re.findall(r"\d+", cell)) <= 2 and ". . ." not in cell


def table_candidates(text: str) -> list[Candidate]:
    """Row header + column header -> cell questions from the Markdown tables in a chunk: per
    body row one question, on the first numeric cell (else the first short cell); rows whose
    header repeats in the table are skipped (ambiguous).

    >>> t = "| 地区 | 病例 | 死亡 |\\n|---|---|---|\\n| 湖北 | 120 | 3 |\\n| 广东 | 45 | 0 |"
    >>> [(c.question, c.answers) for c in table_candidates(t)][0]
    ('表格中“湖北”一行的“病例”是多少？', ['120'])
    """
    lines = [line for line in text.splitlines() if line.lstrip().startswith("|")]
    if len(lines) < 3 or not re.match(r"^\|?\s*:?-{2,}", lines[1].strip()):
        return []
    header = _cells(lines[0])
    if any(re.search(r"\d{2}", h) for h in header):   # a data row (a continued table): no real header
        return []
    body = [_cells(line) for line in lines[2:]]
    key = 1 if len(header) > 2 and all(re.fullmatch(r"[\d\s.]*", r[0]) for r in body if r) else 0
    heads = [r[key] for r in body if len(r) > key]
    out = []
    for row in body:
        if len(row) != len(header) or not _good_cell(row[key]) or heads.count(row[key]) > 1 \
                or not re.search(r"[A-Za-z\u4e00-\u9fff]", row[key]):
            continue
        cols = [j for j in range(key + 1, len(row)) if _good_cell(row[j]) and _good_cell(header[j])
                and re.search(r"[A-Za-z\u4e00-\u9fff]{2}", header[j]) and row[j] not in ("-", "—", row[key])
                and row[j] != header[j]]
        numeric = [j for j in cols if re.fullmatch(r"[\d,.%\s$￥¥-]+", row[j]) and re.search(r"\d", row[j])]
        if not (numeric or cols):
            continue
        j = (numeric or cols)[0]
        zh = bool(_HAN.search(row[key] + header[j]))
        word = "是多少" if j in numeric else "是什么"
        q = (f"表格中“{row[key]}”一行的“{header[j]}”{word}？" if zh
             else f"In the table, what is the {header[j]} for {row[key]}?")
        out.append(Candidate("table", q, [row[j]], "| " + " | ".join(row) + " |", "zh" if zh else "en"))
    return out


def chunk_candidates(text: str) -> list[Candidate]:
    """All rule-made questions of one chunk (sentences first, then table rows)."""
    return sentence_candidates(text) + table_candidates(text)

"""Numbers in model output, read the way a reader of Chinese or English would read them.

:func:`find_numbers` returns every number of a text as an exact :class:`fractions.Fraction`, in
order of appearance. It reads:

- Arabic numerals with thousands separators (``1,200``, ``1 200``), fullwidth digits (NFKC),
  unicode minus signs, decimals and fractions (``3/4``);
- a multiplier after an Arabic number: ``万`` (10^4), ``亿`` (10^8), ``千``, ``百`` and
  ``thousand`` / ``million`` / ``billion`` (``5万`` = 50000, ``1.5 million`` = 1500000);
- Chinese numerals (``五``, ``七十二``, ``一百零五``, ``两千``, ``三万五千``, ``三点五``, ``负五``),
  after the usual grouping: units 十/百/千 inside a section, sections joined by 万 and 亿;
- clock times ``h:mm`` as hours (``3:30`` = 7/2): a time is not the number after its colon.

Pure functions, no state.
"""
from __future__ import annotations

import re
import unicodedata
from fractions import Fraction

DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
          "八": 8, "九": 9}
SMALL_UNITS = {"十": 10, "百": 100, "千": 1000}
MULTIPLIERS = {"百": 100, "千": 1000, "万": 10**4, "亿": 10**8, "thousand": 10**3, "million": 10**6,
               "billion": 10**9}

_ZH = "零〇一二两三四五六七八九十百千万亿"
_TOKEN_RE = re.compile(
    r"(?P<time>(?<![\d.:])\d{1,2}:[0-5]\d(?![\d:]))"
    r"|(?P<arabic>-?\d+(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?)(?P<mult>(?:\s*(?:[百千万亿]|thousand\b|million\b"
    r"|billion\b))*)"
    rf"|(?P<zh>负?[{_ZH}]+(?:点[{_ZH[:12]}]+)?)",
    re.IGNORECASE)


def normalize(text: str) -> str:
    """NFKC (fullwidth digits -> ASCII), unify minus signs, drop thousands commas and spaces."""
    text = unicodedata.normalize("NFKC", text).replace("\u2212", "-").replace("\u2013", "-")
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    return re.sub(r"(?<=\d) (?=\d{3}(?!\d))", "", text)


def _section(text: str) -> int:
    """A section below 10^4: ``七十二`` -> 72, ``一百零五`` -> 105, ``十二`` -> 12."""
    total, digit = 0, None
    for ch in text:
        if ch in DIGITS:
            digit = DIGITS[ch]
        elif ch in SMALL_UNITS:
            total += (1 if digit is None else digit) * SMALL_UNITS[ch]
            digit = None
    return total + (digit or 0)


def chinese_integer(text: str) -> int | None:
    """Value of a Chinese integer numeral, or None when it holds no digit or unit.

    >>> [chinese_integer(t) for t in ("五", "七十二", "一百零五", "两千", "三万五千", "一亿零三百万", "十")]
    [5, 72, 105, 2000, 35000, 103000000, 10]
    >>> chinese_integer("万") is None
    True
    """
    if not any(ch in DIGITS or ch in SMALL_UNITS for ch in text):
        return None
    if all(ch in DIGITS for ch in text) and len(text) > 1:   # digit by digit: 二〇二四
        return int("".join(str(DIGITS[ch]) for ch in text))
    value = 0
    high, _, low = text.rpartition("亿")
    if high:
        value += (chinese_integer(high) or 1) * 10**8
    high, _, low = low.rpartition("万")
    if high:
        value += (_section(high) or 1) * 10**4
    return value + _section(low)


def _chinese(token: str) -> Fraction | None:
    sign = -1 if token.startswith("负") else 1
    whole, _, frac = token.lstrip("负").partition("点")
    value = chinese_integer(whole) if whole else 0
    if value is None:
        return None
    out = Fraction(value)
    if frac:
        out += Fraction(int("".join(str(DIGITS[c]) for c in frac if c in DIGITS) or "0"), 10 ** len(frac))
    return sign * out


def _arabic(token: str, mult: str) -> Fraction | None:
    num, _, den = token.replace(" ", "").partition("/")
    try:
        value = Fraction(num) / (Fraction(den) if den else 1)
    except (ValueError, ZeroDivisionError):
        return None
    for word in re.findall(r"[百千万亿]|[a-z]+", mult.lower()):
        value *= MULTIPLIERS[word]
    return value


def find_numbers(text: str) -> list[Fraction]:
    """Every number in ``text``, in order (see the module docstring for what is read).

    >>> find_numbers("5万 and 1.2亿; 1.5 million, 七十二, 3:30, 共 1,200 元, 2000001")
    [Fraction(50000, 1), Fraction(120000000, 1), Fraction(1500000, 1), Fraction(72, 1), Fraction(7, 2), \
Fraction(1200, 1), Fraction(2000001, 1)]
    >>> find_numbers("一共") , find_numbers("no digits")
    ([Fraction(1, 1)], [])
    """
    out = []
    for m in _TOKEN_RE.finditer(normalize(text or "")):
        if m.group("time"):
            h, mm = m.group("time").split(":")
            value = Fraction(int(h)) + Fraction(int(mm), 60)
        elif m.group("arabic"):
            value = _arabic(m.group("arabic"), m.group("mult") or "")
        else:
            value = _chinese(m.group("zh"))
        if value is not None:
            out.append(value)
    return out

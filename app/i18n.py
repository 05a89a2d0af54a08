"""UI strings (assets/strings_<lang>.json) and a font that renders Chinese.

``tr = Strings("zh")``; ``tr("chat.ask")``; ``tr("kb.docs_count", n=3)`` formats with
``str.format``. A key missing in the chosen language falls back to English, then to the key
itself, so a new key never crashes the UI. Other areas add keys with their prefix
(``retrain.``, ``voice.``).
"""
from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)
ASSETS = Path(__file__).resolve().parents[1] / "assets"
LANGUAGES = ("zh", "en")

#: Families tried in order for CJK text; the first one Tk knows wins.
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN",
                "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Microsoft YaHei", "PingFang SC",
                "Hiragino Sans GB", "SimHei", "Droid Sans Fallback")


@lru_cache(maxsize=4)
def _load(lang: str) -> dict[str, str]:
    path = ASSETS / f"strings_{lang}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        log.warning("cannot read %s (%s); using built-in keys", path, e)
        return {}


def fill(text: str, kw: dict) -> str:
    """``text.format(**kw)``; the text unchanged when it has no such fields or no ``kw``
    (a translation that drops a field must not crash the window)."""
    if kw:
        try:
            return text.format(**kw)
        except (KeyError, IndexError, ValueError):
            return text
    return text


class Strings:
    """Look up UI strings for one language.

    Args:
        lang: "zh" or "en" (anything else falls back to "en").
    """

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGUAGES else "en"
        self._table = _load(self.lang)
        self._fallback = _load("en")

    def __call__(self, key: str, **kw) -> str:
        return fill(self._table.get(key) or self._fallback.get(key) or key, kw)

    def message(self, msg, area: str = "reason") -> str:
        """A line from kb/ or models/ in this language: a ``kb.types.Message`` by ``<area>.<key>``
        in this language's table, formatted with its args (args that are Messages themselves
        rendered the same way); a plain string, or a key this language lacks, as its English text.

        >>> from kb.types import Message
        >>> Strings("zh").message(Message("empty", "the file is empty (0 bytes); nothing to add"))
        '文件是空的（0 字节），没有可添加的内容'
        """
        key = getattr(msg, "key", None)
        text = self._table.get(f"{area}.{key}") if key else None
        if text is None:
            return str(msg)
        args = {k: self.message(v, area) if getattr(v, "key", None) else v for k, v in msg.args.items()}
        try:
            return text.format(**args)
        except (KeyError, IndexError, ValueError):
            return str(msg)



def cjk_family(root) -> str | None:
    """The first installed CJK-capable font family, or None (Tk then uses fontconfig fallback)."""
    import tkinter.font as tkfont

    installed = set(tkfont.families(root))
    return next((f for f in CJK_FAMILIES if f in installed), None)


def setup_fonts(root, size: int = 11) -> str | None:
    """Point Tk's named fonts at a CJK family so Chinese renders; return the family used."""
    import tkinter.font as tkfont

    family = cjk_family(root)
    if family is None:
        log.warning("no CJK font found; install fonts-noto-cjk for Chinese text")
        return None
    for name in ("TkDefaultFont", "TkTextFont", "TkMenuFont", "TkHeadingFont", "TkCaptionFont",
                 "TkTooltipFont", "TkIconFont", "TkSmallCaptionFont"):
        try:
            tkfont.nametofont(name, root).configure(family=family)
        except Exception:  # noqa: BLE001 - a platform without that named font
            pass
    tkfont.nametofont("TkDefaultFont", root).configure(size=size)
    tkfont.nametofont("TkTextFont", root).configure(size=size)
    return family

"""Make the README's screenshots: the main window, an answer being written (sources found, stage
line), a cited answer and the Retrain dialog, in the light and the dark theme, at 1366x768
(docs/screenshots/*.png).

The app runs on the same fakes the GUI tests use (tests/fakes.py: an in-memory knowledge base,
a scripted answer with a checked citation) and the Retrain dialog follows tests/fake_trainer.py,
so nothing is downloaded or trained. Without a DISPLAY an Xvfb is started here.

    python docs/make_screenshots.py [--out docs/screenshots] [--lang zh|en]

Prints the path of each PNG it wrote.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SIZE = (1366, 768)

DOC = {"zh": ("中华人民共和国宪法（节选）.pdf",
              ["第一章 总纲\n第一条 中华人民共和国是工人阶级领导的、以工农联盟为基础的人民民主专政的社会主义国家。",
               "第三条 国家机构\n中华人民共和国的国家机构实行民主集中制的原则。",
               "第二章 公民的基本权利和义务\n第三十三条 中华人民共和国公民在法律面前一律平等。"],
              "国家机构实行什么原则？", "中华人民共和国的国家机构实行民主集中制的原则 [1]。",
              "国家机构实行民主集中制的原则"),
       "en": ("Constitution excerpt.pdf",
              ["Chapter One General Principles\nArticle 1 The state is a socialist state.",
               "Article 3 State organs\nThe state organs apply the principle of democratic centralism.",
               "Chapter Two Rights and Duties\nArticle 33 All citizens are equal before the law."],
              "What principle do the state organs apply?",
              "The state organs apply the principle of democratic centralism [1].",
              "The state organs apply the principle of democratic centralism")}


def start_display() -> subprocess.Popen | None:
    """An Xvfb at 1366x768 when there is no DISPLAY (None when one is already set)."""
    if os.environ.get("DISPLAY"):
        return None
    xvfb = shutil.which("Xvfb")
    if not xvfb:
        sys.exit("no DISPLAY and no Xvfb: apt-get install xvfb")
    num = 200 + os.getpid() % 500
    proc = subprocess.Popen([xvfb, f":{num}", "-screen", "0", f"{SIZE[0]}x{SIZE[1]}x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["DISPLAY"] = f":{num}"
    for _ in range(100):
        if Path(f"/tmp/.X11-unix/X{num}").exists():
            break
        time.sleep(0.1)
    return proc


def pump(root, until, timeout: float = 120.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        root.update()
        if until():
            return True
        time.sleep(0.01)
    return False


def grab(window, path: Path) -> Path:
    from PIL import ImageGrab

    window.update()
    x, y = window.winfo_rootx(), window.winfo_rooty()
    box = (x, y, x + window.winfo_width(), y + window.winfo_height())
    ImageGrab.grab(bbox=box, xdisplay=os.environ["DISPLAY"]).save(path)
    print(path)
    return path


class Registry:
    """The registry calls the main window and the Retrain dialog make, in memory."""

    def __init__(self):
        from types import SimpleNamespace

        self.entry = SimpleNamespace(name="Qwen2.5-0.5B-Instruct", kind="base", path="", adapter="", base="",
                                     metrics={})

    def available(self):
        return True

    def embedder_available(self):
        return True

    def list(self):
        return [self.entry]

    def active(self):
        return self.entry

    def use(self, name, adapter=None):
        return self.entry

    def load_backend(self, name=None):
        return type("B", (), {"device": "cpu", "name": "fake"})()


def overlap_search(kb, query: str, kb_name=None, k=None) -> list:
    """The fake knowledge base's pages ranked by the characters (zh) or words (en) they share
    with ``query`` (the fake's own search needs exact space-separated words)."""
    from kb.types import Hit

    terms = set(query.lower().split()) if " " in query else set(query)
    scored = []
    for src, (_info, pages) in kb._kb(kb_name).items():
        for p, text in enumerate(pages, 1):
            hay = set(text.lower().split()) if " " in query else set(text)
            scored.append((len(terms & hay) / max(len(terms), 1), src, p, text))
    scored.sort(key=lambda r: -r[0])
    return [Hit(i, score, src, p, text) for i, (score, src, p, text) in enumerate(scored[: k or 3], 1) if score > 0]


def scene(theme: str, lang: str, out: Path, home: Path) -> list[Path]:
    """The three screenshots of one theme."""
    import settings as settings_mod
    from app.main import App
    from app.services import Services
    from models.citations import Citation
    from tests.fakes import FakeAnswers, FakeKB
    from tests.test_app_ui import make_pdf

    os.environ["TQTS_HOME"] = str(home / theme)
    settings = settings_mod.load()
    settings.set("ui_language", lang, persist=False)
    settings.set("theme", theme, persist=False)
    name, pages, question, answer, quote = DOC[lang]
    pdf = make_pdf(home / name, pages)
    kb = FakeKB(settings)
    kb.ingest([str(pdf)])
    kb.search = lambda query, kb_name=None, k=None: overlap_search(kb, query, kb_name, k)
    answers = FakeAnswers(kb, delay=0.0, answer=answer)
    app = App(settings, Services(settings, kb, answers, Registry()))
    app.root.geometry(f"{SIZE[0]}x{SIZE[1] - 40}+0+0")
    shots = []
    try:
        assert pump(app.root, lambda: app.model_ok is not None and not app.dispatcher.jobs)
        app.chats_pane.new()
        assert pump(app.root, lambda: len(app.chat.welcome.buttons) >= 2 and not app.dispatcher.jobs)
        shots.append(grab(app.root, out / f"main-{theme}.png"))

        answers.delay = 0.3                      # mid-answer: the sources found, the stage line, the busy bar
        app.chat.ask(question)
        assert pump(app.root, lambda: len(app.chat.transcript.answers.get(app.chat.turn, "")) >= 6)
        shots.append(grab(app.root, out / f"answering-{theme}.png"))
        app.chat.stop()
        assert pump(app.root, lambda: not app.chat.busy)
        app.select_chat(app.chats_pane.new())   # a clean chat for the finished answer
        assert pump(app.root, lambda: not app.dispatcher.jobs)
        answers.delay = 0.0

        answers.citations = [Citation(n=1, verified=True, source=str(pdf), page=2, quote=quote)]
        app.chat.ask(question)
        assert pump(app.root, lambda: not app.chat.busy)
        app.chat.transcript.text.see("end")
        shots.append(grab(app.root, out / f"answer-{theme}.png"))

        shots += retrain(app, out / f"retrain-{theme}.png")
    finally:
        app.close(timeout=30)
    return shots


def retrain(app, path: Path) -> list[Path]:
    """The Retrain dialog following tests/fake_trainer.py for a few steps."""
    try:
        from app.retrain import open_retrain_dialog
    except Exception as e:  # noqa: BLE001 - the retrain area may be absent in this checkout
        print(f"no Retrain screenshot: {e}", file=sys.stderr)
        return []
    os.environ.setdefault("FAKE_STEP_SECONDS", "0.05")
    dlg = open_retrain_dialog(app.root, app.services,
                              launcher=[sys.executable, str(ROOT / "tests" / "fake_trainer.py")])
    dlg.geometry(f"{SIZE[0] - 60}x{SIZE[1] - 100}+20+20")
    if not pump(app.root, lambda: str(dlg.start_button["state"]) == "normal"):
        print("no Retrain screenshot: the dialog did not get ready", file=sys.stderr)
        return []
    dlg.steps_var.set("12")
    dlg.start_button.invoke()
    pump(app.root, lambda: len(getattr(dlg, "rows", [])) >= 12 and not getattr(dlg, "_busy", False), timeout=180)
    shot = grab(dlg, path)
    dlg.destroy()
    return [shot]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    p.add_argument("--lang", default="zh", choices=["zh", "en"])
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    display = start_display()
    try:
        with tempfile.TemporaryDirectory(prefix="tqts-shots-") as tmp:
            for theme in ("light", "dark"):
                scene(theme, args.lang, out, Path(tmp))
    finally:
        if display is not None:
            display.terminate()
            display.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())

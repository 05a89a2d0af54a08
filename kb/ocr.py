"""Offline OCR for pages and images without a text layer.

Two engines, both offline:

- ``rapidocr``: rapidocr-onnxruntime (PaddleOCR PP-OCRv4 models shipped in the wheel; Chinese +
  English in one model). Install: ``pip install rapidocr-onnxruntime``.
- ``tesseract``: the Debian ``tesseract`` binary run via subprocess with an argument list.
  Install: ``apt-get install tesseract-ocr tesseract-ocr-chi-sim``.

``settings.ocr_engine`` = ``auto`` picks rapidocr, falling back to tesseract (measurement in
README section ``kb``); ``none`` disables OCR.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

INSTALL_HINT = ("install an OCR engine: `pip install rapidocr-onnxruntime` or "
                "`apt-get install tesseract-ocr tesseract-ocr-chi-sim`")


class OCRUnavailable(RuntimeError):
    """No OCR engine can run; the message names the install step."""


class RapidOCREngine:
    """rapidocr-onnxruntime; the model is loaded once per process (thread-safe)."""

    name = "rapidocr"
    _engine = None
    _lock = threading.Lock()

    @staticmethod
    def available() -> bool:
        try:
            import rapidocr_onnxruntime  # noqa: F401
        except ImportError:
            return False
        return True

    def image_to_text(self, png: bytes) -> str:
        """OCR one image.

        Args:
            png: encoded image bytes (PNG/JPEG).

        Returns:
            The recognised lines, top to bottom, joined by newlines ("" if none).
        """
        with self._lock:
            if RapidOCREngine._engine is None:
                from rapidocr_onnxruntime import RapidOCR

                RapidOCREngine._engine = RapidOCR()
            result, _ = RapidOCREngine._engine(png)
        if not result:
            return ""
        # each item: [box (4 points), text, confidence]; sort by top edge then left edge
        items = sorted(result, key=lambda r: (round(r[0][0][1] / 10), r[0][0][0]))
        return "\n".join(str(r[1]) for r in items)


class TesseractEngine:
    """The tesseract command-line program (``tesseract IMAGE stdout -l LANGS``)."""

    name = "tesseract"

    def __init__(self, languages: str = "chi_sim+eng"):
        self.languages = languages

    @staticmethod
    def available() -> bool:
        return shutil.which("tesseract") is not None

    def image_to_text(self, png: bytes) -> str:
        """OCR one image with tesseract (see :meth:`RapidOCREngine.image_to_text`).

        Raises:
            OCRUnavailable: tesseract failed (e.g. a language pack is missing).
        """
        with tempfile.NamedTemporaryFile(suffix=".png") as f:
            f.write(png)
            f.flush()
            proc = subprocess.run(["tesseract", f.name, "stdout", "-l", self.languages],
                                  capture_output=True, timeout=300)
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise OCRUnavailable(f"tesseract failed ({err[-1] if err else proc.returncode}); "
                                 "apt-get install tesseract-ocr tesseract-ocr-chi-sim")
        text = proc.stdout.decode("utf-8", "replace")
        return "\n".join(line for line in text.splitlines() if line.strip())


def get_engine(name: str = "auto", languages: str = "chi_sim+eng"):
    """Return an OCR engine object with ``.name`` and ``.image_to_text(png) -> str``.

    Args:
        name: ``auto`` (rapidocr, else tesseract) | ``rapidocr`` | ``tesseract`` | ``none``.
        languages: tesseract language string (e.g. ``chi_sim+eng``).

    Raises:
        OCRUnavailable: the engine asked for (or any, for ``auto``) is not installed, or
            OCR is switched off; the message says what to install or which setting to change.
    """
    name = (name or "auto").lower()
    if name == "none":
        raise OCRUnavailable("OCR is off (ocr_engine: none); set ocr_engine to auto to read scans")
    if name in ("auto", "rapidocr") and RapidOCREngine.available():
        return RapidOCREngine()
    if name in ("auto", "tesseract") and TesseractEngine.available():
        return TesseractEngine(languages)
    if name not in ("auto", "rapidocr", "tesseract"):
        raise OCRUnavailable(f"unknown ocr_engine {name!r}; use auto, rapidocr, tesseract or none")
    raise OCRUnavailable(f"no OCR engine ({name}) is installed: {INSTALL_HINT}")


def render_page_png(page, dpi: int = 200) -> bytes:
    """Render a PyMuPDF page to PNG bytes at ``dpi`` dots per inch."""
    return page.get_pixmap(dpi=dpi).tobytes("png")


def measure(paths: list[Path], engines: list[str]) -> list[dict]:
    """Time each engine on every page of ``paths`` (for README numbers; not used at run time).

    Returns:
        One dict per (engine, file, page): engine, file, page, seconds, text.
    """
    import time

    import pymupdf

    rows = []
    for eng_name in engines:
        eng = get_engine(eng_name)
        for p in paths:
            with pymupdf.open(p) as doc:
                for i, page in enumerate(doc, 1):
                    png = render_page_png(page)
                    t0 = time.perf_counter()
                    text = eng.image_to_text(png)
                    rows.append({"engine": eng.name, "file": p.name, "page": i,
                                 "seconds": time.perf_counter() - t0, "text": text})
    return rows

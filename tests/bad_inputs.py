"""Hostile and broken files built in code, for the bad-input tests and bench/bad_inputs.py."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

from tests.test_kb_loaders import make_docx, make_pdf

OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504


def image_bytes(text: str = "HELLO SCAN 12345", fmt: str = "png") -> bytes:
    """A picture of ``text`` (no text layer), encoded as PNG or JPEG."""
    import pymupdf

    src = pymupdf.open()
    page = src.new_page(width=300, height=80)
    page.insert_text((20, 50), text, fontsize=24)
    return page.get_pixmap(dpi=150).tobytes("jpg" if fmt == "jpeg" else "png")


def docx_bomb(path: Path, unpacked_mb: int) -> Path:
    """A real .docx whose word/document.xml declares ``unpacked_mb`` MB (spaces inside the body:
    deflate packs 1 GB of them into about 1 MB)."""
    src = zipfile.ZipFile(io.BytesIO(_small_docx()))
    xml = src.read("word/document.xml")
    at = xml.index(b"<w:body>") + len(b"<w:body>")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            if info.filename != "word/document.xml":
                z.writestr(info, src.read(info.filename))
        with z.open("word/document.xml", "w", force_zip64=True) as f:
            f.write(xml[:at])
            block = b" " * (1 << 20)
            for _ in range(unpacked_mb):
                f.write(block)
            f.write(xml[at:])
    return path


def _small_docx() -> bytes:
    import docx

    buf = io.BytesIO()
    d = docx.Document()
    d.add_paragraph("A small document.")
    d.save(buf)
    return buf.getvalue()


def slow_docx(path: Path, paragraphs: int = 200_000) -> Path:
    """A valid .docx of ``paragraphs`` short paragraphs (a heading every 500): seconds to parse."""
    src = zipfile.ZipFile(io.BytesIO(_small_docx()))
    xml = src.read("word/document.xml").decode()
    head, tail = xml.split("<w:body>")[0] + "<w:body>", "<w:sectPr" + xml.split("<w:sectPr")[1]
    h = '<w:pPr><w:pStyle w:val="Heading1"/></w:pPr>'
    body = "".join(f'<w:p>{h if k % 500 == 0 else ""}<w:r><w:t>Paragraph {k} of a long document.</w:t></w:r></w:p>'
                   for k in range(paragraphs))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            z.writestr(info, (head + body + tail) if info.filename == "word/document.xml" else src.read(info.filename))
    return path


def corpus(folder: Path, outside: Path, bomb_mb: int = 24) -> dict[str, str]:
    """Good and bad files in ``folder`` (a link points into ``outside``) -> name: expected
    status ("added", "skipped") or the words the failure line must contain."""
    folder.mkdir(parents=True)
    outside.mkdir(parents=True, exist_ok=True)
    make_pdf(folder / "good.pdf")
    make_docx(folder / "good.docx")
    (folder / "good.txt").write_text("Good text file. 好的文本文件。", encoding="utf-8")
    docx_bomb(folder / "bomb.docx", bomb_mb)
    good = (folder / "good.pdf").read_bytes()
    (folder / "cut.pdf").write_bytes(good[: len(good) // 2])
    (folder / "picture.pdf").write_bytes(image_bytes("HELLO SCAN 12345", "png"))
    (folder / "photo.pdf").write_bytes(image_bytes("HELLO SCAN 67890", "jpeg"))
    (folder / "old.doc").write_bytes(OLE2)
    (folder / "renamed.docx").write_bytes(OLE2)
    good_docx = (folder / "good.docx").read_bytes()
    (folder / "corrupt.docx").write_bytes(good_docx[: len(good_docx) // 2])
    (folder / "secret.txt").write_text("unreadable", encoding="utf-8")
    (outside / "id_rsa.txt").write_text("-----BEGIN PRIVATE KEY----- not for the knowledge base", encoding="utf-8")
    (folder / "key.txt").symlink_to(outside / "id_rsa.txt")
    return {"good.pdf": "added", "good.docx": "added", "good.txt": "added",
            "bomb.docx": "zip bomb", "cut.pdf": "damaged", "picture.pdf": "ocr", "photo.pdf": "ocr", "old.doc": "save it as .docx",
            "renamed.docx": "old-style Office file (OLE2)", "corrupt.docx": "package is damaged",
            "secret.txt": "permission denied", "key.txt": "outside the folder"}

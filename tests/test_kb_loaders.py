"""Builders for the kb tests: real PDFs (PyMuPDF) and DOCX (python-docx) written in the test."""
from __future__ import annotations

from pathlib import Path

ZH_PAGES = [
    "第一章 总纲。中华人民共和国是工人阶级领导的社会主义国家。社会主义制度是中华人民共和国的根本制度。",
    "第二章 公民。公民在法律面前一律平等。国家尊重和保障人权。",
    "Chapter three. The quick brown fox jumps over the lazy dog. Retrieval cites pages.",
]


def make_pdf(path: Path, pages: list[str] = ZH_PAGES, toc: list | None = None, table: list[list[str]] | None = None) -> Path:
    """A text PDF, one string per page (CJK via the built-in china-s font); optional bookmarks
    ``[[level, title, page], ...]`` and a ruled table drawn on the last page."""
    import pymupdf

    doc = pymupdf.open()
    for text in pages:
        page = doc.new_page(width=595, height=842)
        page.insert_textbox(pymupdf.Rect(50, 50, 545, 300), text, fontname="china-s", fontsize=11)
    if table:
        _draw_table(doc[-1], table, top=400)
    if toc:
        doc.set_toc(toc)
    doc.save(path)
    doc.close()
    return path


def _draw_table(page, rows: list[list[str]], top: float) -> None:
    import pymupdf

    w, h, left = 120, 24, 60
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            rect = pymupdf.Rect(left + c * w, top + r * h, left + (c + 1) * w, top + (r + 1) * h)
            page.draw_rect(rect, color=(0, 0, 0), width=0.8)
            page.insert_text((rect.x0 + 4, rect.y0 + 16), cell, fontname="china-s", fontsize=10)


def make_image_pdf(path: Path, text: str = "HELLO SCAN 12345") -> Path:
    """A PDF whose only page is a picture of ``text`` (no text layer)."""
    import pymupdf

    src = pymupdf.open()
    page = src.new_page(width=300, height=80)
    page.insert_text((20, 50), text, fontsize=24)
    png = page.get_pixmap(dpi=150).tobytes("png")
    doc = pymupdf.open()
    doc.new_page(width=300, height=80).insert_image(pymupdf.Rect(0, 0, 300, 80), stream=png)
    doc.save(path)
    return path


def make_docx(path: Path) -> Path:
    """A docx with headings, Chinese paragraphs, and a table with horizontal + vertical merges."""
    import docx

    d = docx.Document()
    d.add_heading("第一章 总则", level=1)
    d.add_paragraph("本制度适用于全体员工。员工应当遵守劳动纪律。")
    d.add_heading("第一节 考勤", level=2)
    d.add_paragraph("上班时间为九点。迟到三次记旷工一天。")
    t = d.add_table(rows=3, cols=3)
    for r, row in enumerate([["项目", "说明", "备注"], ["年假", "五天", "带薪"], ["病假", "三天", ""]]):
        for c, val in enumerate(row):
            t.cell(r, c).text = val
    t.cell(0, 1).merge(t.cell(0, 2))       # horizontal merge in the header
    t.cell(1, 2).merge(t.cell(2, 2))       # vertical merge down the last column
    d.add_heading("第二章 附则", level=1)
    d.add_paragraph("本制度自发布之日起施行。")
    d.save(path)
    return path


# -- tests ------------------------------------------------------------------------------------
import pytest  # noqa: E402

from kb import loaders  # noqa: E402
from kb.loaders import LoaderError  # noqa: E402


def test_pdf_pages_sections_and_cjk(tmp_path):
    p = make_pdf(tmp_path / "宪法 摘要.pdf", toc=[[1, "第一章", 1], [2, "第一节", 2], [1, "Chapter 3", 3]])
    doc = loaders.load(p, ocr_engine="none")
    assert doc.pages == 3
    by_page = {b.page: b for b in doc.blocks}
    assert "根本制度" in by_page[1].text and by_page[1].section == "第一章"
    assert by_page[2].section == "第一章 > 第一节"
    assert by_page[3].section == "Chapter 3" and "quick brown fox" in by_page[3].text


def test_pdf_table_is_markdown_and_not_duplicated(tmp_path):
    rows = [["名称", "数量"], ["苹果", "3"], ["香蕉", "5"]]
    doc = loaders.load(make_pdf(tmp_path / "t.pdf", pages=["表格如下。"], table=rows), ocr_engine="none")
    tables = [b for b in doc.blocks if b.kind == "table"]
    assert len(tables) == 1
    assert "| 苹果 | 3 |" in tables[0].text and tables[0].text.startswith("| 名称 | 数量 |")
    prose = " ".join(b.text for b in doc.blocks if b.kind == "text")
    assert "香蕉" not in prose and "表格如下" in prose


def test_docx_order_headings_and_merged_cells(tmp_path):
    doc = loaders.load(make_docx(tmp_path / "制度.docx"))
    texts = [b.text for b in doc.blocks]
    assert texts.index("本制度适用于全体员工。员工应当遵守劳动纪律。") < texts.index("本制度自发布之日起施行。")
    table = next(b for b in doc.blocks if b.kind == "table")
    assert table.section == "第一章 总则 > 第一节 考勤" and table.page is None
    header = table.text.splitlines()[0]
    assert header.count("说明") == 1                      # horizontal merge written once
    assert "| 病假 | 三天 | 带薪 |" in table.text         # vertical merge kept on each row
    assert next(b for b in doc.blocks if "施行" in b.text).section == "第二章 附则"


@pytest.mark.parametrize("enc,text", [
    ("utf-8", "第一段。中文内容。"), ("utf-8-sig", "第一段。中文内容。"),
    ("gb18030", "第一段。中文内容。"), ("big5", "第一段。中文內容。"),
])
def test_text_encodings(tmp_path, enc, text):
    f = tmp_path / f"a-{enc}.md"
    f.write_bytes(f"{text}\n\n# 標題\n\n第二段在標題下。".encode(enc))
    doc = loaders.load(f)
    assert doc.blocks[0].text == text
    assert doc.blocks[-1].section == "標題" and doc.blocks[-1].page is None


@pytest.mark.parametrize("name,data,needle", [
    ("empty.pdf", b"", "empty"),
    ("broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog", "corrupt or truncated"),
    ("old.doc", b"\xd0\xcf\x11\xe0 legacy", "save it as .docx"),
    ("photo.xyz", b"abc", "unsupported file type .xyz"),
    ("bad.docx", b"not a zip", "named .docx but is not one inside"),
    ("blank.txt", b"  \n\n ", "no text"),
])
def test_bad_files_get_one_clear_line(tmp_path, name, data, needle):
    f = tmp_path / name
    f.write_bytes(data)
    with pytest.raises(LoaderError) as e:
        loaders.load(f, ocr_engine="none")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_truncated_and_encrypted_pdf(tmp_path):
    import pymupdf

    good = make_pdf(tmp_path / "good.pdf").read_bytes()
    (tmp_path / "cut.pdf").write_bytes(good[: len(good) // 3])
    with pytest.raises(LoaderError, match="damaged|corrupt or truncated"):
        loaders.load(tmp_path / "cut.pdf", ocr_engine="none")
    doc = pymupdf.open(tmp_path / "good.pdf")
    doc.save(tmp_path / "locked.pdf", encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="o", user_pw="u")
    with pytest.raises(LoaderError, match="password-protected"):
        loaders.load(tmp_path / "locked.pdf", ocr_engine="none")


def test_image_only_pdf_without_ocr_names_the_install_step(tmp_path, monkeypatch):
    from kb import ocr

    monkeypatch.setattr(ocr.RapidOCREngine, "available", staticmethod(lambda: False))
    monkeypatch.setattr(ocr.TesseractEngine, "available", staticmethod(lambda: False))
    with pytest.raises(LoaderError) as e:
        loaders.load(make_image_pdf(tmp_path / "scan.pdf"), ocr_engine="auto")
    assert "pip install rapidocr-onnxruntime" in str(e.value) and "tesseract-ocr-chi-sim" in str(e.value)


def test_image_only_pdf_is_ocrd(tmp_path):
    from kb import ocr

    try:
        engine = ocr.get_engine("auto")
    except ocr.OCRUnavailable as e:
        pytest.skip(str(e))
    doc = loaders.load(make_image_pdf(tmp_path / "scan.pdf", "HELLO 12345"), ocr_engine=engine.name)
    assert doc.ocr_pages == 1
    assert "12345" in doc.blocks[0].text.replace(" ", "")


def test_real_documents(shared_data):
    docs = shared_data / "documents"
    merged = docs / "zh_weknora_vertical_merge_table.docx"
    if not merged.exists():
        pytest.skip(f"{merged} absent")
    tables = [b.text for b in loaders.load(merged).blocks if b.kind == "table"]
    assert len(tables) == 2 and all(t.count("BRCA") for t in tables[:1])
    assert sum("检测方法：提取外周血" in row for row in tables[0].splitlines()) == 4
    nics = docs / "en_nics_background_checks_2015-11_table.pdf"
    if nics.exists():
        assert any(b.kind == "table" for b in loaders.load(nics, ocr_engine="none").blocks)

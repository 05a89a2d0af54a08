"""Look-alike documents for the answer benchmark: yearly statistical bulletins of fictional
cities and annual reports of fictional companies, all with one structure and different numbers.

    python bench/data/lookalike/make_docs.py OUT_FOLDER

Only the title (page 1) names whose report it is; the other page does not, so a chunk of it
alone cannot tell the cities apart (the case contextual chunk headers are for). Cities with an
even index are written as PDF (PyMuPDF, built-in CJK font), the others as DOCX (python-docx);
companies as one of each. The numbers are fixed below so questions.jsonl can name them.
"""
from __future__ import annotations

import sys
from pathlib import Path

#: file stem, city, GDP (亿元), growth (%), grain (万吨), population (万人), income (元), students
CITIES = [
    ("qingzhou_2023", "青州市", "4,218.6", "5.2", "182.4", "536.1", "41,276", "9.8"),
    ("yunzhou_2023", "云州市", "3,907.3", "4.8", "205.7", "498.6", "38,905", "8.1"),
    ("linjiang_2023", "临江市", "5,126.9", "6.1", "97.3", "612.4", "47,832", "12.6"),
    ("baishi_2023", "白石市", "2,845.2", "3.9", "143.8", "377.5", "33,418", "6.4"),
    ("nanyu_2023", "南屿市", "6,031.4", "5.7", "64.2", "701.9", "52,164", "14.3"),
    ("beiyuan_2023", "北原市", "1,976.8", "4.4", "266.1", "289.3", "29,751", "4.9"),
    ("dongpo_2023", "东坡市", "3,352.7", "5.0", "158.9", "445.2", "36,590", "7.7"),
    ("xishan_2023", "西山市", "4,764.1", "5.9", "121.6", "563.8", "44,027", "10.2"),
]
#: file stem, company, revenue (USD million), net income, employees, stores
COMPANIES = [
    ("northwind_2023", "Northwind Traders", "1,284.5", "96.2", "4,310", "128"),
    ("bluefin_2023", "Bluefin Logistics", "2,037.9", "143.7", "6,925", "211"),
]


def city_pages(city: tuple) -> list[str]:
    _, name, gdp, growth, grain, pop, income, students = city
    return [
        f"{name}2023年国民经济和社会发展统计公报\n\n一、综合\n"
        f"初步核算，全年地区生产总值{gdp}亿元，按不变价格计算，比上年增长{growth}%。"
        f"全年粮食总产量{grain}万吨。",
        "二、人口、收入和教育\n"
        f"年末常住人口{pop}万人。全体居民人均可支配收入{income}元。"
        f"全年普通高等学校在校学生{students}万人。",
    ]


def company_pages(co: tuple) -> list[str]:
    _, name, revenue, net, staff, stores = co
    return [
        f"{name} Annual Report 2023\n\n1. Financial highlights\n"
        f"Revenue for the year was USD {revenue} million. Net income was USD {net} million.",
        "2. People and operations\n"
        f"At year end the company employed {staff} people and operated {stores} stores.",
    ]


def write_pdf(path: Path, pages: list[str]) -> None:
    import pymupdf

    doc = pymupdf.open()
    for text in pages:
        page = doc.new_page()
        page.insert_textbox(pymupdf.Rect(56, 56, 540, 780), text, fontname="china-s", fontsize=12)
    doc.save(path)
    doc.close()


def write_docx(path: Path, pages: list[str]) -> None:
    import docx

    d = docx.Document()
    for text in pages:
        head, _, body = text.partition("\n")
        d.add_heading(head.strip(), level=1)
        for line in body.strip().splitlines():
            if line.strip():
                d.add_paragraph(line.strip())
    d.save(str(path))


def write_documents(out: Path) -> list[Path]:
    """Write the 10 documents into ``out`` (created); returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    items = [(c[0], city_pages(c)) for c in CITIES] + [(c[0], company_pages(c)) for c in COMPANIES]
    for i, (stem, pages) in enumerate(items):
        path = out / f"{stem}.{'pdf' if i % 2 == 0 else 'docx'}"
        (write_pdf if path.suffix == ".pdf" else write_docx)(path, pages)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write_documents(Path(sys.argv[1] if len(sys.argv) > 1 else "lookalike-docs")):
        print(p)

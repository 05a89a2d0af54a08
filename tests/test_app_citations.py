"""Citations in the app: the supporting sentence under the answer, the page view lighting it up
("第N条　" sentences included: U+3000 on the page), and the model's own refusal as a refusal."""
from __future__ import annotations

import pytest

from models.citations import Citation

CONSTITUTION = "zh_prc_constitution_2018.pdf"
ARTICLE_3 = "第三条\u3000中华人民共和国的国家机构实行民主集中制的原则。"


def test_article_sentence_with_ideographic_space_is_found_on_the_page(shared_data):
    import pymupdf

    from app.page_viewer import find_passage, passage_snippets

    with pymupdf.open(shared_data / "documents" / CONSTITUTION) as doc:
        page = doc[3]
        assert "第三条\u3000中华人民共和国" in page.get_text()
        assert not any(page.search_for(s) for s in passage_snippets(ARTICLE_3))  # the old way: nothing
        rects = find_passage(page, ARTICLE_3)
        assert len(rects) >= 1
        found = " ".join(page.get_textbox(r) for r in rects)
        assert "民主集中制" in found and "第三条" in found


@pytest.mark.gui
def test_supporting_sentence_is_shown_and_highlighted_on_its_page(make_app, shared_data):
    from tests.fakes import click_text_index, pump

    pdf = str(shared_data / "documents" / CONSTITUTION)
    app = make_app()
    assert pump(app.root, lambda: app.model_ok is not None and not app.dispatcher.jobs)
    app.services.kb.ingest([pdf])
    app.services.answers.citations = [Citation(1, True, source=pdf, page=4, quote=ARTICLE_3,
                                               claim="国家机构实行民主集中制的原则。")]
    app.chat.ask("民主集中制")
    tx = app.chat.transcript
    assert pump(app.root, lambda: not app.chat.busy)
    text = tx.text.get("1.0", "end")
    assert app.chat.tr("chat.support") in text and "“第三条\u3000中华人民共和国的国家机构" in text
    quote_line = tx.text.search("“第三条", "1.0", "end")
    cite = tx.text.tag_prevrange("cite", quote_line)          # the [1] in front of the quote
    click_text_index(tx.text, str(cite[0]))
    assert pump(app.root, lambda: app.viewer is not None and app.viewer.page == 4, timeout=60)
    assert app.viewer.source == pdf and app.viewer.passage == ARTICLE_3
    assert app.viewer.hits >= 1


@pytest.mark.gui
def test_model_refusal_is_shown_as_a_refusal(make_app, shared_data):
    from tests.fakes import pump

    app = make_app()
    assert pump(app.root, lambda: app.model_ok is not None and not app.dispatcher.jobs)
    app.services.kb.ingest([str(shared_data / "documents" / CONSTITUTION)])
    answers = app.services.answers
    answers.script, answers.refused = "资料中没有提到这个问题。", True
    t = app.chat.ask("国家")
    tx = app.chat.transcript
    assert pump(app.root, lambda: not app.chat.busy)
    ranges = tx.text.tag_ranges(f"ans_{t}")
    assert "refusal" in tx.text.tag_names(ranges[0])
    assert "资料中没有" in tx.text.get(ranges[0], ranges[-1])
    assert app.chat.tr("chat.sources") not in tx.text.get(ranges[-1], "end")

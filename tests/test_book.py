"""The HTML book builds offline from the executed smoke notebooks."""

import re

import pytest

from irbook.bookbuild import build_book


@pytest.fixture(scope="module")
def html(tmp_path_factory, smoke_runs):
    build_dir = tmp_path_factory.mktemp("book") / "_build"
    index = build_book("smoke", run=False, build_dir=build_dir, runs_root=smoke_runs)
    return index.parent


def test_index_and_every_page_are_written(html):
    assert (html / "index.html").exists()
    for page in ("book/preface", "book/ch01_introduction", "book/datasets", "book/how_to_run",
                 "notebooks/ch02_deep_image_retrieval", "notebooks/ch05_incremental_fgir",
                 "notebooks/ch06_correlation_distillation", "notebooks/ch07_lifelong_dkd"):
        assert (html / f"{page}.html").exists(), page


def test_chapter_has_figures_math_and_glued_numbers(html):
    page = (html / "notebooks" / "ch02_deep_image_retrieval.html").read_text()
    assert len(re.findall(r"<img [^>]*src=\"[^\"]*\.png\"", page)) >= 2
    assert "_static/mathjax/tex-chtml.js" in page
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists()
    assert "executed with the" in page and "smoke" in page
    assert re.search(r"def</span>.{0,40}\"nf\">gem</span>", page)  # included library code


def test_no_page_loads_scripts_or_styles_from_the_network(html):
    for page in html.rglob("*.html"):
        text = page.read_text()
        remote = re.findall(r"<(?:script|link)[^>]+(?:src|href)=\"(https?://[^\"]+)\"", text)
        assert not remote, f"{page.name} loads {remote}"


def test_the_scoreboard_and_the_conclusions_are_pages_of_the_book(html):
    board = (html / "book" / "scoreboard.html").read_text()
    assert "The count" in board and "Where the numbers came from" in board
    for claim in ("ch02.whitening_helps", "ch05.", "ch07."):
        assert claim in board, claim
    assert "(no runs yet)" not in board
    assert (html / "book" / "ch09_conclusions.html").exists()


def test_citations_resolve_to_the_bibliography(html):
    bibliography = (html / "book" / "bibliography.html").read_text()
    assert "Exploring Deep Learning for Intelligent Image Retrieval" in bibliography
    assert "NetVLAD" in bibliography
    page = (html / "notebooks" / "ch02_deep_image_retrieval.html").read_text()
    assert "bibliography.html#id" in page  # a {cite} role became a link to the entry
    assert "{cite}" not in page


def test_code_cells_wrap_instead_of_scrolling_sideways(html):
    page = (html / "notebooks" / "ch05_incremental_fgir.html").read_text()
    assert "_static/irbook.css" in page
    assert "white-space: pre-wrap" in (html / "_static" / "irbook.css").read_text()


def test_every_page_works_offline_in_headless_chromium(html, browser):
    from irbook.htmlcheck import chapter_pages, check_book

    pages = chapter_pages(html)
    assert len([p for p in pages if p.startswith("notebooks/")]) == 7
    checks = check_book(html, [*pages, "index.html"], query="retrieval")
    assert [c for c in checks if not c.ok] == []
    by_page = {c.page: c for c in checks}
    assert by_page["notebooks/ch02_deep_image_retrieval.html"].images >= 2
    assert by_page["notebooks/ch05_incremental_fgir.html"].math > 0  # MathJax typeset it

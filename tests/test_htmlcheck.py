"""The headless-browser check of the built book, on hand-made pages (one broken on purpose)."""

import pytest
from sphinx.builders.html._assets import _JavaScript

from irbook import htmlcheck
from irbook.sphinxext import unique_scripts


def test_repeated_inline_scripts_are_dropped_in_first_order():
    body = {"body": "const A = 1;"}
    scripts = [_JavaScript("a.js"), _JavaScript(None, **body), _JavaScript("b.js"),
               _JavaScript("", **body), _JavaScript("a.js"), _JavaScript("a.js", priority=200)]
    unique = unique_scripts(scripts)
    assert [(s.filename, s.priority) for s in unique] == [
        ("a.js", 500), (None, 500), ("b.js", 500), ("a.js", 200)]


def test_a_missing_browser_names_how_to_get_it(monkeypatch):
    monkeypatch.setattr(htmlcheck, "BROWSER_PATHS", ("/nonexistent/chromium",))
    monkeypatch.setattr(htmlcheck.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="Chromium .*apt-get install chromium"):
        htmlcheck.find_browser()


PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d4944415478da63f8cfc0f01f0005000201a2d3b1f90000000049454e44ae426082")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    (root / "dot.png").write_bytes(PNG_1x1)
    (root / "good.html").write_text('<html><body><img src="dot.png"></body></html>')
    (root / "bad.html").write_text(
        '<html><body><img src="missing.png"><script>const x = 1; const x = 2;</script>'
        '<span class="math">\\(x\\)</span></body></html>')
    (root / "search.html").write_text("<html><body><ul class='search'></ul></body></html>")
    return root


def test_the_browser_passes_a_good_page_and_names_what_breaks_a_bad_one(site, browser):
    good, bad, search = htmlcheck.check_book(site, ["good.html", "bad.html"], query="x",
                                                timeout=2)
    assert good.ok and good.images == 1
    assert not bad.ok
    problems = " | ".join(bad.problems)
    assert "console error" in problems and "already been declared" in problems
    assert "image did not load" in problems and "missing.png" in problems
    assert "were not typeset by MathJax" in problems
    assert not search.ok and "found nothing" in search.problems[-1]

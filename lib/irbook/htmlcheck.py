"""Open the built book in headless Chromium and check that it works offline.

Every page is loaded from disk (``file://``, no server, no network): a page passes when the
browser logged no console error, every ``<img>`` decoded (``naturalWidth > 0``), and, where the
page holds math, MathJax typeset it. The search page is checked to answer a query from its local
index. Chromium is driven through Selenium and ChromeDriver (Debian: ``apt-get install chromium
chromium-driver``).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

BROWSER_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVER_PATHS = ("/usr/bin/chromedriver",)
HOW_TO_GET = "install them with `apt-get install chromium chromium-driver` (Debian/Ubuntu)"

# What the page says about itself once loaded: images that failed, math left untypeset.
PAGE_STATE_JS = """
const images = Array.from(document.images);
return {
  images: images.length,
  broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
  math_sources: document.querySelectorAll('div.math, span.math').length,
  math_typeset: document.querySelectorAll('mjx-container').length,
  title: document.title,
};
"""


@dataclass
class PageCheck:
    """What the browser saw on one page; ``problems`` is empty when the page works."""

    page: str
    images: int = 0
    math: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def find_browser() -> tuple[str, str]:
    """Paths of Chromium and ChromeDriver; a clear error naming how to get them if absent."""
    browser = next((p for p in BROWSER_PATHS if Path(p).exists()), shutil.which("chromium"))
    driver = next((p for p in DRIVER_PATHS if Path(p).exists()), shutil.which("chromedriver"))
    if not browser or not driver:
        missing = " and ".join(n for n, p in (("Chromium", browser), ("ChromeDriver", driver))
                               if not p)
        raise FileNotFoundError(f"{missing} not found (looked in {', '.join(BROWSER_PATHS)} "
                                f"and on PATH); {HOW_TO_GET}")
    return browser, driver


def open_browser():
    """A headless Chromium session that records the console (Selenium WebDriver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1024", "--allow-file-access-from-files"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def _console_errors(session) -> list[str]:
    return [entry["message"] for entry in session.get_log("browser")
            if entry.get("level") == "SEVERE"]


def _wait_for_math(session, timeout: float) -> dict:
    """The page state, polled until MathJax has typeset the page's math or ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        state = session.execute_script(PAGE_STATE_JS)
        if not state["math_sources"] or state["math_typeset"] or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def check_page(session, html_root: Path, page: str, timeout: float = 15.0) -> PageCheck:
    """Load ``html_root/page`` from disk and report console errors, broken images and
    untypeset math."""
    path = (Path(html_root) / page).resolve()
    if not path.exists():
        return PageCheck(page, problems=[f"{path} does not exist"])
    session.get_log("browser")  # drop what an earlier page logged
    session.get(path.as_uri())
    state = _wait_for_math(session, timeout)
    check = PageCheck(page, images=state["images"], math=state["math_typeset"])
    check.problems += [f"console error: {m}" for m in _console_errors(session)]
    check.problems += [f"image did not load: {src}" for src in state["broken"]]
    if state["math_sources"] and not state["math_typeset"]:
        check.problems.append(f"{state['math_sources']} math blocks were not typeset by MathJax")
    return check


def check_search(session, html_root: Path, query: str, timeout: float = 15.0) -> PageCheck:
    """Open the search page with ``query`` and require at least one result from the local
    index."""
    path = (Path(html_root) / "search.html").resolve()
    session.get_log("browser")
    session.get(f"{path.as_uri()}?q={query}")
    deadline = time.monotonic() + timeout
    hits = 0
    while time.monotonic() < deadline and not hits:
        time.sleep(0.2)
        hits = session.execute_script(
            "return document.querySelectorAll('#search-results li, ul.search li').length;")
    check = PageCheck(f"search.html?q={query}")
    check.problems += [f"console error: {m}" for m in _console_errors(session)]
    if not hits:
        check.problems.append(f"the search for {query!r} found nothing within {timeout:.0f} s")
    return check


def check_book(html_root: Path, pages: Iterable[str], query: str = "retrieval",
               timeout: float = 15.0) -> list[PageCheck]:
    """Check every page of ``pages`` (paths relative to ``html_root``) and the search page,
    waiting up to ``timeout`` seconds for MathJax and the search results."""
    session = open_browser()
    try:
        checks = [check_page(session, html_root, page, timeout) for page in pages]
        checks.append(check_search(session, html_root, query, timeout))
    finally:
        session.quit()
    return checks


def chapter_pages(html_root: Path) -> list[str]:
    """The rendered chapter notebooks and ``book/`` pages under ``html_root``."""
    root = Path(html_root)
    return sorted(str(p.relative_to(root)) for folder in ("notebooks", "book")
                  for p in (root / folder).glob("*.html"))

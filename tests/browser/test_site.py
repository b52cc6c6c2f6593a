"""The classroom kit in a real browser with no network: the static site and the slide decks, as a teacher opens them.

Built from the notebooks into a temporary folder (tools/classroom.py, as `make html` / `make slides`), opened
from file:// in headless Chromium with every non-file request refused and recorded. Each page must load without
a console error, show every stored figure (decoded, non-zero size), and have its math typeset by the local
MathJax. Screenshots go to build/screenshots/site_*.png and slides_*.png, to be looked at.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
TIMEOUT_MS = 60_000  # files only, no kernel: a page that needs longer is broken

sys.path.insert(0, str(ROOT / "tools"))

import classroom  # noqa: E402

LESSONS = classroom.lesson_paths()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    site = tmp_path_factory.mktemp("html")
    slides = tmp_path_factory.mktemp("slides")
    return classroom.build_html(site), classroom.build_slides(slides)


def _mathjax_blank(message) -> bool:
    """Two font probes of MathJax 2 that fail by design, harmless (the STIX fonts it typesets with load):
    `@font-face {font-family: MathJax_Blank; src: url('about:blank')}`, which Chromium reports as a CORS failure
    from file://, and a TeX font (e.g. MathJax_Script for \\mathcal) the local copy does not ship, tried first."""
    url = message.location.get("url", "")
    return "about:blank" in message.text or url == "about:blank" or "/mathjax/fonts/HTML-CSS/TeX/" in url


class OfflinePage:
    """A page that may read files only: every other request is aborted and recorded, console errors kept."""

    def __init__(self, browser):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.refused: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type == "error" and not _mathjax_blank(m) and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def _route(self, route) -> None:
        url = route.request.url
        if url.startswith(("file://", "data:", "blob:", "about:")):
            route.continue_()
        else:
            self.refused.append(url)
            route.abort()

    def open(self, path: Path) -> None:
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_load_state("load")

    def broken_images(self) -> list[str]:
        return self.page.evaluate("""() => [...document.images]
            .filter(img => !img.complete || img.naturalWidth === 0).map(img => img.src.slice(0, 60))""")

    def typeset(self) -> dict:
        """Wait for MathJax 2 to finish its queue; count typeset formulas and any left as raw TeX errors."""
        self.page.wait_for_function("() => window.MathJax && MathJax.Hub && MathJax.Hub.queue "
                                    "&& MathJax.Hub.queue.pending === 0 && !MathJax.Hub.queue.running")
        self.page.evaluate("() => new Promise(done => MathJax.Hub.Queue(done))")
        return self.page.evaluate("""() => ({
            formulas: document.querySelectorAll('.MathJax, .MathJax_Display, .MathJax_SVG, mjx-container').length,
            errors: document.querySelectorAll('.MathJax_Error, merror').length})""")

    def screenshot(self, name: str, full_page: bool = False) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)

    def assert_clean(self) -> None:
        assert not self.refused, f"requests left the site: {self.refused[:5]}"
        assert not self.errors, "browser console errors:\n" + "\n".join(self.errors[:10])


def _math_in(notebook: Path) -> bool:
    import nbformat

    return any(c.cell_type == "markdown" and "$" in c.source for c in nbformat.read(notebook, 4).cells)


def test_site_index_links_every_lesson_offline(browser, built):
    pages, _ = built
    page = OfflinePage(browser)
    try:
        page.open(pages[0])
        links = page.page.evaluate("() => [...document.querySelectorAll('a')].map(a => a.getAttribute('href'))")
        assert [p.with_suffix(".html").name for p in LESSONS] == [link for link in links if link.endswith(".html")]
        page.screenshot("site_index", full_page=True)
        page.assert_clean()
    finally:
        page.context.close()


@pytest.mark.parametrize("notebook", LESSONS, ids=lambda p: p.stem[:2])
def test_site_lesson_shows_its_figures_and_typeset_math_offline(browser, built, notebook):
    pages, _ = built
    page = OfflinePage(browser)
    try:
        page.open(next(p for p in pages if p.stem == notebook.stem))
        assert page.page.locator("h1").first.inner_text().startswith(notebook.stem[:2])
        assert not page.broken_images(), f"figures that do not show: {page.broken_images()}"
        if _math_in(notebook):
            math = page.typeset()
            assert math["formulas"] > 0 and math["errors"] == 0, math
        page.screenshot(f"site_{notebook.stem[:2]}_top")
        page.assert_clean()
    finally:
        page.context.close()


def test_slide_deck_opens_offline_with_reveal(browser, built):
    _, decks = built
    page = OfflinePage(browser)
    try:
        for deck in (decks[0], decks[-1]):
            page.open(deck)
            page.page.wait_for_function("() => window.Reveal && Reveal.isReady && Reveal.isReady()")
            assert page.page.evaluate("() => Reveal.getTotalSlides()") > 5
            page.page.evaluate("() => Reveal.configure({transition: 'none', backgroundTransition: 'none'})")
            page.screenshot(f"slides_{deck.name[:2]}_first")  # (no slide animation: not caught half-way)
            page.page.keyboard.press("ArrowRight")
            page.page.wait_for_function("() => Reveal.getIndices().h === 1")
            page.screenshot(f"slides_{deck.name[:2]}_second")
        page.assert_clean()
    finally:
        page.context.close()

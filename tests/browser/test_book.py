"""The executed book in a real browser: Debian's Chromium through Playwright, on the site `bash book/build.sh` wrote.

Opens the landing page and one notebook in each language and checks what a reader sees: the outputs and plot
images, Chinese text drawn with a Simplified Chinese font that has every glyph (the fonts Chromium really used,
read through the DevTools protocol, and their character maps), the language switch, the source and Colab links,
and that no page fetches anything from another host. Full-page screenshots go to test-artifacts/book/.

The browser is Debian's chromium (`apt-get install -y chromium fonts-noto-cjk`), or the one $CHROMIUM names (as for
tests/browser/test_jupyterlab.py).
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import threading
import unicodedata
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from book import build  # noqa: E402
from tools import suite  # noqa: E402
from tools.release import STUBS  # noqa: E402

pytestmark = [pytest.mark.notebooks, pytest.mark.exclusive]

BUILD = ROOT / "book" / "_build"
SCREENSHOTS = ROOT / "test-artifacts" / "book"
# A notebook with prose, printed outputs, two plots and a widget (explore()).
NOTEBOOK = "09_precision_and_freezing"
ASSIGNMENT = "assignments/A2_prompt_builder"
LANGS = ("en", "zh")
HTML_LANG = {"en": "en", "zh": "zh-CN"}
# The Simplified Chinese fonts book/_static/book.css asks for; Chromium must draw every Han character with one.
CHINESE_FONTS = {"Noto Sans CJK SC", "Noto Sans Mono CJK SC", "Source Han Sans SC", "PingFang SC", "Hiragino Sans GB",
                 "Microsoft YaHei"}


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def site():
    """Build the book (a few seconds when nothing changed since the last build) and serve it on a local port."""
    subprocess.run(["bash", str(ROOT / "book" / "build.sh")], cwd=ROOT, env={**os.environ, "PYTHON": sys.executable},
                   check=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(BUILD / "html")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not executable:
        pytest.fail("no Chromium: install Debian's (apt-get install -y chromium fonts-noto-cjk) or set CHROMIUM")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser, site):
    """``open_page(path, locale="en-US")`` -> a page at ``site/path``. On teardown, no page may have loaded anything
    from another host (a link the test clicks, a navigation, is not a load)."""
    contexts, foreign = [], []

    def open_page(path: str, locale: str = "en-US"):
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale=locale)
        contexts.append(context)
        page = context.new_page()
        page.on("request", lambda request: None if request.url.startswith(site) or request.is_navigation_request()
                else foreign.append(request.url))
        response = page.goto(f"{site}/{path}", wait_until="networkidle")
        assert response.ok, f"{path}: HTTP {response.status}"
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not foreign, f"pages fetched from other hosts (readers offline or behind a firewall would miss them): {foreign}"


def screenshot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def executed_notebook(lang: str, docname: str):
    """The notebook as the book rendered it: executed, widgets shown by their outputs (book/execute.py)."""
    import nbformat

    return nbformat.read(BUILD / "src" / lang / f"{docname}.ipynb", as_version=4)


@pytest.mark.parametrize("lang", LANGS)
def test_landing_page(open_page, lang):
    page = open_page(f"{lang}/index.html")
    screenshot(page, f"{lang}-index")
    assert page.locator("html").get_attribute("lang") == HTML_LANG[lang]
    topics = [path.stem for path in build.topic_notebooks(suite.NOTEBOOKS, lang)]
    table = page.locator("article table").first
    assert [table.locator(f'a[href="{name}.html"]').count() for name in topics] == [1] * len(topics), \
        "the arc table must link every topic notebook once"
    colab = table.locator('a[href^="https://colab.research.google.com/"]')
    assert [colab.nth(i).get_attribute("href") for i in range(colab.count())] == \
        [suite.colab_url(lang, name) for name in topics]
    students = sorted(path.stem for path in (BUILD / "student" / "notebooks" / lang / "assignments").glob("A*.ipynb"))
    assert students, "no student versions were released into the book"
    for name in students:
        assert page.locator(f'article a[href="assignments/{name}.html"]').count() == 1, f"no link to assignment {name}"
    for reference in build.REFERENCE_PAGES:
        assert page.locator(f'article a[href="{reference}.html"]').count() == 1, f"no link to the {reference} page"
    check_glyphs(page, lang)


@pytest.mark.parametrize("locale, landing", [("en-US", "en/index.html"), ("zh-CN", "zh/index.html")])
def test_site_root_opens_the_reader_s_language(open_page, site, locale, landing):
    page = open_page("index.html", locale=locale)
    page.wait_for_url(f"{site}/{landing}")


@pytest.mark.parametrize("lang", LANGS)
def test_notebook_page_shows_outputs_and_plots(open_page, lang):
    page = open_page(f"{lang}/{NOTEBOOK}.html")
    screenshot(page, f"{lang}-{NOTEBOOK}")
    executed = executed_notebook(lang, NOTEBOOK)
    with_outputs = [cell for cell in executed.cells if cell.cell_type == "code" and cell.outputs]
    plots = [output for cell in with_outputs for output in cell.outputs if "image/png" in output.get("data", {})]
    assert len(plots) >= 2, f"{NOTEBOOK} was expected to draw plots"
    outputs = page.locator(".cell_output")
    assert outputs.count() == len(with_outputs), "every cell's output must be on the page"
    shown = outputs.evaluate_all("outputs => outputs.map(o => o.innerText.trim().length > 0 || o.querySelector('img') !== null)")
    assert all(shown), f"outputs that show nothing (a widget without its outputs?): {[i for i, s in enumerate(shown) if not s]}"
    images = page.locator(".cell_output img")
    assert images.count() == len(plots)
    for i in range(images.count()):
        image = images.nth(i)
        image.scroll_into_view_if_needed()
        assert image.evaluate("img => img.complete && img.naturalWidth > 100"), f"plot {i} did not load"
    assert page.locator(".traceback").count() == 0, "a topic notebook shows an error"
    # The widget is shown by its outputs (book/execute.py): no widget view or state is left for a CDN script to draw.
    assert "widgets" not in executed.metadata
    assert page.locator('script[type^="application/vnd.jupyter.widget"]').count() == 0
    check_glyphs(page, lang)


@pytest.mark.parametrize("lang", LANGS)
def test_student_version_shows_its_expected_errors(open_page, lang):
    page = open_page(f"{lang}/{ASSIGNMENT}.html")
    screenshot(page, f"{lang}-{ASSIGNMENT.replace('/', '-')}")
    tracebacks = page.locator(".traceback")
    assert tracebacks.count() >= 1
    assert f"NotImplementedError: {STUBS[lang].not_implemented}" in tracebacks.first.inner_text()
    assert page.get_by_text(build.STUDENT_NOTE_TITLE[lang]).count() == 1, "the note that the errors are expected is missing"


@pytest.mark.parametrize("docname", ["index", NOTEBOOK, ASSIGNMENT])
@pytest.mark.parametrize("lang", LANGS)
def test_language_switch_opens_the_twin(open_page, site, lang, docname):
    other = "zh" if lang == "en" else "en"
    page = open_page(f"{lang}/{docname}.html")
    title = page.locator("article h1").first.inner_text()
    page.locator(".book-links a.book-twin").click()
    page.wait_for_url(f"{site}/{other}/{docname}.html")
    assert page.locator("html").get_attribute("lang") == HTML_LANG[other]
    if docname != "index":
        assert page.locator("article h1").first.inner_text().split(" ")[0] == title.split(" ")[0], \
            "the twin must be the same notebook"
    page.locator(".book-links a.book-twin").click()
    page.wait_for_url(f"{site}/{lang}/{docname}.html")


@pytest.mark.parametrize("docname", [NOTEBOOK, ASSIGNMENT])
@pytest.mark.parametrize("lang", LANGS)
def test_colab_and_source_links(open_page, lang, docname):
    page = open_page(f"{lang}/{docname}.html")
    colab = page.locator(".book-links a.book-colab")
    source = page.locator(".book-links a.book-source")
    if docname.startswith("assignments/"):
        # Student versions live on their own branch (the masters hold the solutions); the workflow pushes there
        # exactly what the build released into book/_build/student/.
        repository_path = f"notebooks/{lang}/{docname}.ipynb"
        assert (BUILD / "student" / repository_path).exists()
        expected_colab = build.colab_url(repository_path, build.STUDENT_BRANCH)
        expected_source = build.github_url(repository_path, build.STUDENT_BRANCH)
    else:
        assert (suite.NOTEBOOKS / lang / f"{docname}.ipynb").exists()
        expected_colab = suite.colab_url(lang, docname)
        expected_source = build.github_url(f"notebooks/{lang}/{docname}.ipynb")
    assert colab.get_attribute("href") == expected_colab
    assert source.get_attribute("href") == expected_source
    # Colab itself is out of reach here: answer for it, and check that clicking the link really goes there.
    page.route("https://colab.research.google.com/**", lambda route: route.fulfill(body="colab", content_type="text/html"))
    colab.click()
    page.wait_for_url(expected_colab)


def check_glyphs(page, lang: str) -> None:
    """Every character Chromium drew is in the character map of a font it drew that text with (no missing-glyph
    boxes); on Chinese pages every Han character is drawn with one of the Simplified Chinese fonts of book.css."""
    drawn = drawn_text(page)
    assert drawn, "no text was drawn"
    missing, wrong_font = {}, set()
    for text, fonts in drawn:
        covered = set().union(*(character_map(font["postScriptName"]) for font in fonts))
        for character in set(text) - covered:
            if unicodedata.category(character) not in ("Zs", "Cc", "Cf"):
                missing.setdefault(character, sorted(font["familyName"] for font in fonts))
        if any(unicodedata.name(character, "").startswith("CJK UNIFIED IDEOGRAPH") for character in text):
            families = {font["familyName"] for font in fonts}
            if not families & CHINESE_FONTS:
                wrong_font.add(f"{text[:30]!r} drawn with {sorted(families)}")
    assert not missing, f"characters drawn without a glyph (boxes): {missing}"
    assert not wrong_font, f"Chinese text not drawn with a Simplified Chinese font: {sorted(wrong_font)[:5]}"
    if lang == "zh":
        assert any(family in CHINESE_FONTS for _, fonts in drawn for family in (f["familyName"] for f in fonts))


def drawn_text(page) -> list[tuple[str, list[dict]]]:
    """(text, fonts) for each element with non-ASCII text of its own: the platform fonts Chromium drew it with."""
    session = page.context.new_cdp_session(page)
    session.send("DOM.enable")
    session.send("CSS.enable")
    found = []

    def walk(node):
        own = "".join(child["nodeValue"] for child in node.get("children", []) if child["nodeType"] == 3)
        if node["nodeType"] == 1 and not own.isascii():
            fonts = session.send("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]})["fonts"]
            if fonts:  # an element that is not displayed draws nothing
                found.append((own, fonts))
        for child in node.get("children", []):
            walk(child)

    walk(session.send("DOM.getDocument", {"depth": -1})["root"])
    session.detach()
    return found


@functools.cache
def character_map(postscript_name: str) -> frozenset[str]:
    """The characters a system font has glyphs for (fontconfig finds the file, fontTools reads its cmap)."""
    from fontTools.ttLib import TTFont

    located = subprocess.run(["fc-match", "-f", "%{file}\n%{index}\n%{postscriptname}", f":postscriptname={postscript_name}"],
                             capture_output=True, text=True, check=True).stdout.split("\n")
    assert located[2] == postscript_name, f"fontconfig does not know the font {postscript_name} Chromium drew with"
    font = TTFont(located[0], fontNumber=int(located[1]), lazy=True)
    return frozenset(chr(code) for code in font.getBestCmap())

"""Sphinx configuration of the book, one language per run: ``book/build.py`` sets BOOK_LANG and BOOK_OUT."""
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from book.build import MANIFEST, SPHINX_LANGUAGE, config  # noqa: E402

if os.environ.get("BOOK_LANG") not in SPHINX_LANGUAGE:
    raise RuntimeError("build the book with `bash book/build.sh` (it sets BOOK_LANG to en or zh for each Sphinx run)")
book_lang = os.environ["BOOK_LANG"]
BUILD = Path(os.environ["BOOK_OUT"])

project = {"en": "vla-backbone notebooks", "zh": "vla-backbone notebooks（中文）"}[book_lang]
language = SPHINX_LANGUAGE[book_lang]
html_title = project
copyright = "the vla-backbone authors, MIT licence"
extensions = ["myst_nb", "book.bilingual"]
book_pages = json.loads((BUILD / "src" / book_lang / MANIFEST).read_text(encoding="utf-8"))
book_twin_srcdir = str(BUILD / "src" / ("zh" if book_lang == "en" else "en"))

# The notebooks arrive executed (book/execute.py runs them through jupyter-cache, in parallel, both languages at once,
# and makes their widgets static); Sphinx only renders them.
nb_execution_mode = "off"
nb_merge_streams = True
# No widget state reaches a page (book/execute.py shows each widget's outputs instead), so no page needs require.js
# or the widget manager, which MyST-NB would otherwise fetch from a CDN.
nb_ipywidgets_js = {}

html_theme = "sphinx_book_theme"
html_theme_options = {
    "repository_url": f"https://github.com/{config()['repository']}",
    "repository_branch": config()["branch"],
    "use_repository_button": True,
    "use_download_button": True,
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
}
html_static_path = ["_static"]
templates_path = ["_templates"]
html_css_files = ["book.css"]
html_last_updated_fmt = None
html_show_sourcelink = False

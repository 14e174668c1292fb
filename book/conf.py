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

# Execution: each notebook runs once and is cached by the hash of its code cells, so a prose edit re-renders a page
# from the cache in a second. A cell error is logged as a warning with the cell and its traceback, and -W (build.py)
# turns it into a failed build once every notebook has been tried, so one build lists every broken notebook. The
# assignments' student versions allow errors file by file (see book/build.py), and the book's extension checks
# that each of their errors is an expected one.
nb_execution_mode = "cache"
nb_execution_cache_path = str(BUILD / "cache" / book_lang)
nb_execution_raise_on_error = False
nb_execution_show_tb = True
nb_execution_timeout = 300
# Notebooks write only to temporary folders of their own; running them elsewhere keeps the staged sources clean.
nb_execution_in_temp = True
nb_merge_streams = True
# The widgets take their plain path in the book (VLA_BACKBONE_WIDGETS=0, set by build.sh): a static page has no
# kernel to drive them, and no widget state means no require.js or widget manager fetched from a CDN.
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

"""Sphinx extension of the book: twins in both languages, and the links on every page.

- Before reading, every page must have its twin in the other language's sources; otherwise the build fails.
- Every page gets a bar with its twin, its source and (notebooks) Colab, and <link rel="alternate" hreflang>.
"""
from __future__ import annotations

from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

from book.site import HTML_LANG

LABELS = {
    "en": {"twin": "中文", "source": "Source", "colab": "Open in Colab", "bar": "This page elsewhere"},
    "zh": {"twin": "English", "source": "源文件", "colab": "在 Colab 中打开", "bar": "本页的其他版本"},
}


def _docnames(srcdir: Path, suffixes) -> set[str]:
    return {path.relative_to(srcdir).with_suffix("").as_posix()
            for path in srcdir.rglob("*") if path.suffix in suffixes and not path.name.startswith("_")}


def check_twins(app: Sphinx, env, docnames) -> None:
    twin_srcdir = Path(app.config.book_twin_srcdir)
    here = set(env.found_docs)
    there = _docnames(twin_srcdir, set(app.config.source_suffix))
    other = twin_lang(app)
    missing = [f"{other}/{docname} (twin of {app.config.book_lang}/{docname})" for docname in sorted(here - there)]
    missing += [f"{app.config.book_lang}/{docname} (twin of {other}/{docname})" for docname in sorted(there - here)]
    if missing:
        raise ExtensionError("every page needs its twin in the other language; missing: " + ", ".join(missing))


def twin_lang(app: Sphinx) -> str:
    return "zh" if app.config.book_lang == "en" else "en"


def page_links(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    lang, other = app.config.book_lang, twin_lang(app)
    root = "../" * (pagename.count("/") + 1)
    page = app.config.book_pages.get(pagename, {})
    context["book_links"] = {
        "label": LABELS[lang]["bar"],
        "twin": {"href": f"{root}{other}/{pagename}.html", "text": LABELS[lang]["twin"], "lang": HTML_LANG[other]},
        "source": page.get("source") and {"href": page["source"], "text": LABELS[lang]["source"]},
        "colab": page.get("colab") and {"href": page["colab"], "text": LABELS[lang]["colab"]},
    }


def setup(app: Sphinx) -> dict:
    app.add_config_value("book_lang", "en", "env")
    app.add_config_value("book_pages", {}, "html")
    app.add_config_value("book_twin_srcdir", "", "env")
    app.connect("env-before-read-docs", check_twins)
    app.connect("html-page-context", page_links)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

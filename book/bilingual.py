"""Sphinx extension of the book: twins in both languages, the links on every page, and the student versions' errors.

- Before reading, every page must have its twin in the other language's sources; otherwise the build fails.
- Every page gets a bar with its twin, its source and (notebooks) Colab, and <link rel="alternate" hreflang>.
- No plot may lose glyphs (matplotlib's "missing from font" warning in an output).
- A student version may only fail where a task is unfinished: NotImplementedError("not implemented yet"), and the
  NameErrors that follow from it (a class or function that was never defined). Anything else fails the build.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

from book.site import HTML_LANG
from tools.release import STUBS

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


def check_outputs(app: Sphinx, doctree) -> None:
    """Fail on a plot that lost glyphs, and on a student version's error that is not an unfinished task."""
    docname = app.env.docname
    if Path(app.env.doc2path(docname)).suffix != ".ipynb":
        return
    from jupyter_cache import get_cache

    notebook = nbformat.read(app.env.doc2path(docname), as_version=4)
    try:
        _, executed = get_cache(app.config.nb_execution_cache_path).merge_match_into_notebook(notebook)
    except KeyError:
        return  # it failed to execute, so it was not cached: MyST-NB has reported it, and -W fails the build
    for index, cell in enumerate(executed.cells):
        for output in cell.get("outputs", []):
            # matplotlib warns once per character it has no glyph for; the plot would show a box instead.
            if output["output_type"] == "stream" and "missing from font" in output["text"]:
                raise ExtensionError(f"{docname}, cell {index}: a plot is missing glyphs: {output['text'].strip()}")
    if app.config.book_pages.get(docname, {}).get("student"):
        check_student_errors(docname, executed)


def check_student_errors(docname: str, executed) -> None:
    # The stub's message is in the notebook's language.
    not_implemented = {stubs.not_implemented for stubs in STUBS.values()}
    unfinished = False
    for index, cell in enumerate(executed.cells):
        for output in cell.get("outputs", []):
            if output["output_type"] != "error":
                continue
            if output["ename"] == "NotImplementedError" and output["evalue"] in not_implemented:
                unfinished = True
            elif not (output["ename"] == "NameError" and unfinished):
                raise ExtensionError(
                    f"{docname}, cell {index}: {output['ename']}: {output['evalue']}. A student version may only fail "
                    f"with NotImplementedError({' / '.join(sorted(not_implemented))}) and the NameErrors that follow from it; run the "
                    "master notebook to find the bug.")
    if not unfinished:
        raise ExtensionError(f"{docname}: the student version ran without a NotImplementedError; does the master mark "
                             "its solutions with ### BEGIN SOLUTION / ### END SOLUTION?")


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
    app.connect("doctree-read", check_outputs)
    app.connect("html-page-context", page_links)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""Build the book: stage both languages' pages, execute and render them with Sphinx + MyST-NB, check the site.

    bash book/build.sh                      # the one command; it sets the environment and calls this module
    python -m book.build --notebooks DIR --out DIR --only-notebooks   # a small book from another folder (tests)

Everything goes under ``--out`` (default ``book/_build/``):

    stage/en/, stage/zh/  the notebooks to execute: topic notebooks and the assignments' student versions
    cache/                jupyter-cache (book/execute.py): a notebook whose code cells did not change is not executed
                          again; dropped when the package's files or any installed distribution changed, since
                          jupyter-cache knows only the notebooks' code
    src/en/, src/zh/      each language's Sphinx sources: the executed notebooks, the glossary, the upstream
                          differences and a landing page (written only when changed: Sphinx re-reads only those)
    student/              the student versions laid out as the Colab links expect them
                          (``notebooks/{en,zh}/assignments/``; the publishing workflow pushes this to its own branch)
    html/                 the site: ``index.html`` (choose a language), ``en/``, ``zh/``

The build fails on a cell error, a plot without its glyphs, an unexpected error in a student version, a Sphinx
warning (broken cross-reference included), a page without its twin in the other language, a broken link or anchor
in the written HTML, or a resource loaded from another host.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import nbformat

from book.execute import BuildError, execute
from tools import suite
from tools.release import STUBS

ROOT = suite.ROOT
BOOK = ROOT / "book"
DEFAULT_OUT = BOOK / "_build"
LANGS = suite.LANGS
# Sphinx's language codes; "zh_CN" makes Sphinx write <html lang="zh-CN"> and use its Chinese UI strings.
SPHINX_LANGUAGE = {"en": "en", "zh": "zh_CN"}
# The branch the publishing workflow fills with the student versions: the assignment pages' Colab and source links
# open them there, because the masters on the main branch hold the solutions.
STUDENT_BRANCH = "student-notebooks"
# Reference pages: docname -> source file per language, relative to the repository root.
REFERENCE_PAGES = {
    "glossary": {"en": "notebooks/GLOSSARY.md", "zh": "notebooks/GLOSSARY.md"},
    "upstream-differences": {"en": "docs/upstream-differences.md", "zh": "docs/upstream-differences.zh.md"},
}
MARKDOWN_LINK = re.compile(r"(\[[^\]]*\])\(([^)\s]+)\)")
MANIFEST = "_book.json"
STUDENT_NOTE_TITLE = {"en": "Student version.", "zh": "学生版。"}
STUDENT_NOTE = {
    "en": (
        f"> **{STUDENT_NOTE_TITLE['en']}** This page is the assignment as students receive it, run from top to bottom. Each "
        f"cell marked `{STUBS['en'].code_comment}` raises `NotImplementedError` until it is filled in, and the checks "
        "that use its code fail with it (often as a `NameError`): those errors are expected. Open the notebook in "
        "Colab, or download it, to work on it; the README's section for instructors explains how it is graded."
    ),
    "zh": (
        f"> **{STUDENT_NOTE_TITLE['zh']}** 本页就是学生拿到的作业，从头到尾运行了一遍。标有 `{STUBS['zh'].code_comment}` "
        "的单元格在补全之前会抛出 `NotImplementedError`，用到这些代码的检查单元格也会随之报错（常见的是 `NameError`）："
        "这些错误都在预期之中。要动手完成作业，请在 Colab 中打开或下载这个 notebook；评分方式见 README 中面向教师的部分。"
    ),
}


def config() -> dict:
    """``repository`` and ``branch`` from pyproject.toml's [tool.vla_backbone]."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["vla_backbone"]


def github_url(path: str, branch: str | None = None) -> str:
    settings = config()
    return f"https://github.com/{settings['repository']}/blob/{branch or settings['branch']}/{path}"


def colab_url(path: str, branch: str | None = None) -> str:
    settings = config()
    return f"https://colab.research.google.com/github/{settings['repository']}/blob/{branch or settings['branch']}/{path}"


def topic_notebooks(notebooks: Path, lang: str) -> list[Path]:
    return sorted((notebooks / lang).glob("[0-9][0-9]_*.ipynb"))


def environment() -> dict:
    """What the outputs depend on besides the notebooks' code: Python, the package's files, the installed packages."""
    package = hashlib.sha256()
    for path in sorted((ROOT / "vla_backbone").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            package.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    distributions = sorted(f"{dist.metadata['Name']}=={dist.version}" for dist in importlib.metadata.distributions())
    return {"python": platform.python_version(), "vla_backbone": package.hexdigest(), "distributions": distributions}


def drop_stale_cache(out: Path) -> None:
    """Empty the execution cache when the environment it was made in is not this one."""
    record = out / "cache" / "environment.json"
    current = environment()
    if record.exists() and json.loads(record.read_text()) == current:
        return
    if record.exists():
        print("the package or the installed packages changed since the last build: every notebook runs again")
    shutil.rmtree(out / "cache", ignore_errors=True)
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps(current, indent=1) + "\n")


def student_versions(out: Path) -> Path:
    """Release the student versions into ``out/student/notebooks/{lang}/assignments/`` and return ``out/student``."""
    from tools.release import release

    target = out / "student"
    shutil.rmtree(target, ignore_errors=True)
    with tempfile.TemporaryDirectory() as released:
        release(Path(released))
        for lang in LANGS:
            shutil.copytree(Path(released) / lang, target / "notebooks" / lang / "assignments")
    (target / "README.md").write_text(
        f"# Student versions of the assignments\n\nWritten by `bash book/build.sh` from the master notebooks on "
        f"{config()['branch']} and published here by .github/workflows/book.yml. Do not edit: every publication "
        "replaces this branch.\n", encoding="utf-8")
    return target


def student_page(path: Path, lang: str) -> str:
    """A student version as a book page: a note that its errors are expected, and its execution told to allow them.

    Allowing errors for the whole file (instead of tagging cells ``raises-exception``) is needed because one
    unfinished task makes every later check that uses it fail too; book/execute.py then checks every error.
    """
    nb = json.loads(path.read_text(encoding="utf-8"))
    note = {"cell_type": "markdown", "id": "book-student-note", "metadata": {}, "source": STUDENT_NOTE[lang]}
    nb["cells"].insert(1, note)
    nb["metadata"]["execution"] = {"allow_errors": True}
    return json.dumps(nb, ensure_ascii=False, indent=1) + "\n"


def reference_page(docname: str, lang: str, book_paths: dict[str, str]) -> str:
    """A reference page as the book shows it: the line that only links to its other language goes (the book's bar
    does that), and a link to another file of the repository leads to its page in the book, or else to GitHub.

    ``book_paths``: repository path -> the file name of its page in this language's book.
    """
    source = ROOT / REFERENCE_PAGES[docname][lang]
    twin = REFERENCE_PAGES[docname]["zh" if lang == "en" else "en"]

    def repository_path(link: str) -> str | None:
        if urlsplit(link).scheme or link.startswith("#"):
            return None
        return (source.parent / link.partition("#")[0]).resolve().relative_to(ROOT).as_posix()

    def relink(match: re.Match) -> str:
        label, link = match.groups()
        path = repository_path(link)
        if path is None:
            return match.group(0)
        fragment = link.partition("#")[2]
        return f"{label}({book_paths.get(path) or github_url(path) + (f'#{fragment}' if fragment else '')})"

    lines = []
    for line in source.read_text(encoding="utf-8").splitlines():
        only_link = MARKDOWN_LINK.fullmatch(line.strip())
        if only_link and twin != REFERENCE_PAGES[docname][lang] and repository_path(only_link.group(2)) == twin:
            continue
        lines.append(MARKDOWN_LINK.sub(relink, line))
    return "\n".join(lines) + "\n"


def table_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def landing_page(lang: str, topics: list[Path], students: list[Path], reference: list[str]) -> str:
    """The landing page: book/pages/index.{lang}.md with its tables and tables of contents filled in."""
    colab_text = {"en": "open", "zh": "打开"}[lang]
    header = {"en": ["#", "notebook", "what it teaches", "Colab"], "zh": ["#", "notebook", "内容", "Colab"]}[lang]
    rows = [table_row(header), table_row(["---"] * 4)]
    for path in topics:
        name = path.stem
        teaches = suite.TEACHES.get(name, ("", ""))[LANGS.index(lang)]
        link = f"[{suite.title(suite.read(path))}]({name}.ipynb)"
        rows.append(table_row([name[:2], link, teaches, f"[{colab_text}]({colab_url(f'notebooks/{lang}/{name}.ipynb')})"]))
    assignment_rows = [table_row({"en": ["#", "assignment"], "zh": ["#", "作业"]}[lang]), table_row(["---"] * 2)]
    for path in students:
        assignment_rows.append(table_row([path.stem[:2], f"[{suite.title(suite.read(path))}](assignments/{path.stem}.ipynb)"]))
    captions = {"en": ("Notebooks", "Assignments", "Reference"), "zh": ("Notebook", "作业", "参考")}[lang]
    toctrees = []
    for caption, docnames in zip(captions, ([p.stem for p in topics], [f"assignments/{p.stem}" for p in students], reference),
                                 strict=True):
        if docnames:
            toctrees.append("```{toctree}\n:hidden:\n:caption: " + caption + "\n\n" + "\n".join(docnames) + "\n```")
    text = (BOOK / "pages" / f"index.{lang}.md").read_text(encoding="utf-8")
    # A section between <!-- book:NAME:begin --> and <!-- book:NAME:end --> is dropped when it has nothing to show.
    for section, present in (("assignments", bool(students)), ("reference", bool(reference))):
        begin, end = f"<!-- book:{section}:begin -->", f"<!-- book:{section}:end -->"
        before, rest = _split(text, begin, lang)
        inside, after = _split(rest, end, lang)
        text = before + (inside if present else "") + after
    for marker, content in (("<!-- book:notebooks -->", "\n".join(rows)),
                            ("<!-- book:assignments -->", "\n".join(assignment_rows)),
                            ("<!-- book:toctree -->", "\n\n".join(toctrees)),
                            ("{{repository_url}}", f"https://github.com/{config()['repository']}")):
        text = text.replace(marker, content)
    return text


def _split(text: str, marker: str, lang: str) -> tuple[str, str]:
    if marker not in text:
        raise SystemExit(f"book/pages/index.{lang}.md: the marker {marker} is missing; put it back around its section")
    before, after = text.split(marker, 1)
    return before, after


def write_tree(base: Path, files: dict[str, str]) -> None:
    """Make ``base`` hold exactly ``files`` (relative path -> text); unchanged files keep their time stamps."""
    for relative, text in files.items():
        path = base / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    for path in sorted(base.rglob("*"), reverse=True):
        relative = path.relative_to(base).as_posix()
        if path.is_file() and relative not in files:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def stage(notebooks: Path, out: Path, only_notebooks: bool) -> dict[str, dict[str, str]]:
    """The pages of each language: ``{lang: {relative path: text}}``, notebooks not yet executed, with a manifest of
    each page's source and Colab links.

    A page is staged for a language only where that language has a source; the book's Sphinx extension fails the
    build when a page lacks its twin, so a missing translation cannot go unnoticed.
    """
    students_root = None if only_notebooks else student_versions(out)
    pages = {}
    for lang in LANGS:
        files, manifest = {}, {}
        topics = topic_notebooks(notebooks, lang)
        for path in topics:
            files[path.name] = path.read_text(encoding="utf-8")
            repository_path = f"notebooks/{lang}/{path.name}"
            manifest[path.stem] = {"source": github_url(repository_path), "colab": colab_url(repository_path)}
        students = []
        if students_root is not None:
            students = sorted((students_root / "notebooks" / lang / "assignments").glob("A[0-9]_*.ipynb"))
            for path in students:
                files[f"assignments/{path.name}"] = student_page(path, lang)
                repository_path = f"notebooks/{lang}/assignments/{path.name}"
                manifest[f"assignments/{path.stem}"] = {"source": github_url(repository_path, STUDENT_BRANCH),
                                                        "colab": colab_url(repository_path, STUDENT_BRANCH)}
        reference = []
        book_paths = {f"notebooks/{lang}/{path.name}": path.name for path in topics}
        book_paths.update({sources[lang]: f"{docname}.md" for docname, sources in REFERENCE_PAGES.items()})
        for docname, sources in ({} if only_notebooks else REFERENCE_PAGES).items():
            if not any((ROOT / source).exists() for source in sources.values()):
                raise SystemExit(f"reference page {docname!r}: none of {sorted(set(sources.values()))} exists")
            if (ROOT / sources[lang]).exists():
                files[f"{docname}.md"] = reference_page(docname, lang, book_paths)
                manifest[docname] = {"source": github_url(sources[lang])}
                reference.append(docname)
        files["index.md"] = landing_page(lang, topics, students, reference)
        manifest["index"] = {"source": github_url(f"book/pages/index.{lang}.md")}
        files[MANIFEST] = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
        pages[lang] = files
    return pages


def execute_pages(pages: dict[str, dict[str, str]], out: Path) -> dict[str, dict[str, str]]:
    """``pages`` with every notebook replaced by its executed, static version (book/execute.py)."""
    staged = {f"{lang}/{relative}": text for lang, files in pages.items() for relative, text in files.items()
              if relative.endswith(".ipynb")}
    write_tree(out / "stage", staged)
    executed = execute(out / "cache" / "notebooks",
                       {out / "stage" / name: STUBS[name.split("/")[0]].not_implemented
                        if name.split("/")[1] == "assignments" else None for name in staged})
    return {lang: {relative: nbformat.writes(executed[out / "stage" / lang / relative]) + "\n"
                   if relative.endswith(".ipynb") else text for relative, text in files.items()}
            for lang, files in pages.items()}


def _stream(process: subprocess.Popen, prefix: str) -> None:
    for line in process.stdout:
        if line.strip():
            print(f"[{prefix}] {line}", end="", flush=True)


def render(out: Path) -> None:
    """Run Sphinx for both languages at once; fail if either fails."""
    processes = {}
    for lang in LANGS:
        command = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(BOOK),
                   # -W: every warning is an error (a broken cross-reference included, with -n); --keep-going: list them all.
                   "-W", "--keep-going", "-n",
                   "-d", str(out / "doctrees" / lang), str(out / "src" / lang), str(out / "html" / lang)]
        env = {**os.environ, "BOOK_LANG": lang, "BOOK_OUT": str(out)}
        processes[lang] = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    streams = [threading.Thread(target=_stream, args=(process, lang)) for lang, process in processes.items()]
    for thread in streams:
        thread.start()
    for thread in streams:
        thread.join()
    failed = [lang for lang, process in processes.items() if process.wait() != 0]
    if failed:
        raise SystemExit(f"Sphinx failed for {', '.join(failed)} (messages above, prefixed with the language)")


def write_root(html: Path) -> None:
    """The site's entry page: a choice of language (browsers that prefer Chinese go straight to zh/)."""
    (html / "index.html").write_text(
        (BOOK / "pages" / "root.html").read_text(encoding="utf-8"), encoding="utf-8")
    # GitHub Pages published from a branch runs Jekyll, which drops folders starting with "_" (_static, _images).
    (html / ".nojekyll").write_text("")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="build folder (default: book/_build/)")
    parser.add_argument("--notebooks", type=Path, default=suite.NOTEBOOKS,
                        help="folder with en/ and zh/ notebooks (default: notebooks/)")
    parser.add_argument("--only-notebooks", action="store_true",
                        help="topic notebooks and the landing page only: no assignments, no reference pages")
    args = parser.parse_args(argv)
    from book.site import check_site

    out = args.out.resolve()
    start = time.perf_counter()
    drop_stale_cache(out)
    pages = stage(args.notebooks.resolve(), out, args.only_notebooks)
    try:
        pages = execute_pages(pages, out)
    except BuildError as exc:
        print(exc, file=sys.stderr)
        print("the notebooks above failed or show what the book must not publish", file=sys.stderr)
        return 1
    for lang, files in pages.items():
        write_tree(out / "src" / lang, files)
    executed = time.perf_counter()
    render(out)
    rendered = time.perf_counter()
    write_root(out / "html")
    problems = check_site(out / "html", LANGS)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print(f"the site has {len(problems)} problem(s), listed above", file=sys.stderr)
        return 1
    print(f"book built in {time.perf_counter() - start:.0f} s (staging and execution {executed - start:.0f} s, "
          f"Sphinx {rendered - executed:.0f} s): {out / 'html' / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

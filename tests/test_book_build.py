"""The book's build fails where it must: a cell error, a broken internal link, a missing twin, an unexpected error in
a student version, a broken link or a foreign resource in the written site; and a prose edit re-uses the execution
cache. The builds here are small books made of tiny notebooks in a temporary folder (`--only-notebooks`); like the
book itself they run two Sphinx processes, so they run in the exclusive part of tests/run_all.sh."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from book.bilingual import check_student_errors
from book.site import check_site
from tools.suite import KERNEL

ROOT = Path(__file__).resolve().parent.parent


def write_notebook(path: Path, title: str, code: str = "print(6 * 7)", prose: str = "Some prose.") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nb = new_notebook(cells=[new_markdown_cell(f"# {title}"), new_markdown_cell(prose), new_code_cell(code)],
                      metadata=dict(KERNEL))
    nbformat.write(nb, path)


def build_book(notebooks: Path, out: Path) -> subprocess.CompletedProcess:
    """Build a small book; its output without colour codes."""
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(ROOT / "book" / "build.sh"), "--notebooks", str(notebooks), "--out", str(out),
                             "--only-notebooks"], cwd=ROOT, env=env, capture_output=True, text=True)
    result.stdout = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    return result


def executions(out: Path, lang: str) -> list[tuple[int, str]]:
    """(record id, time) of each notebook the book's execution cache holds."""
    from jupyter_cache import get_cache

    return [(record.pk, record.created.isoformat()) for record in get_cache(str(out / "cache" / lang)).list_cache_records()]


@pytest.fixture
def twins(tmp_path):
    """A suite of one notebook in both languages."""
    notebooks = tmp_path / "notebooks"
    write_notebook(notebooks / "en" / "00_first.ipynb", "00 · First")
    write_notebook(notebooks / "zh" / "00_first.ipynb", "00 · 第一个")
    return notebooks


@pytest.mark.notebooks
@pytest.mark.exclusive
def test_book_builds_and_a_prose_edit_reuses_the_cache(twins, tmp_path):
    first = build_book(twins, tmp_path / "out")
    assert first.returncode == 0, first.stdout + first.stderr
    executed = executions(tmp_path / "out", "en")
    assert len(executed) == 1
    html = (tmp_path / "out" / "html" / "en" / "00_first.html").read_text(encoding="utf-8")
    assert "42" in html and "Some prose." in html
    write_notebook(twins / "en" / "00_first.ipynb", "00 · First", prose="Better prose.")
    second = build_book(twins, tmp_path / "out")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Using cached notebook" in second.stdout
    assert executions(tmp_path / "out", "en") == executed, "a prose edit must not execute the notebook again"
    assert "Better prose." in (tmp_path / "out" / "html" / "en" / "00_first.html").read_text(encoding="utf-8")


@pytest.mark.notebooks
@pytest.mark.exclusive
def test_a_cell_error_fails_the_build(twins, tmp_path):
    write_notebook(twins / "zh" / "00_first.ipynb", "00 · 第一个", code="raise ValueError('a deliberate bug')")
    result = build_book(twins, tmp_path / "out")
    assert result.returncode != 0
    assert "ValueError: a deliberate bug" in result.stdout
    assert "Sphinx failed for zh" in result.stderr and "Sphinx failed for en" not in result.stderr


@pytest.mark.notebooks
@pytest.mark.exclusive
def test_a_broken_internal_link_fails_the_build(twins, tmp_path):
    write_notebook(twins / "en" / "00_first.ipynb", "00 · First", prose="Next: [notebook 01](01_missing.ipynb).")
    result = build_book(twins, tmp_path / "out")
    assert result.returncode != 0
    assert "01_missing" in result.stdout and "Sphinx failed for en" in result.stderr


@pytest.mark.notebooks
@pytest.mark.exclusive
def test_a_missing_twin_fails_the_build(twins, tmp_path):
    write_notebook(twins / "en" / "01_second.ipynb", "01 · Second")
    result = build_book(twins, tmp_path / "out")
    assert result.returncode != 0
    assert "missing: zh/01_second (twin of en/01_second)" in result.stdout


def error(ename: str, evalue: str):
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def student_notebook(*errors):
    cells = []
    for output in errors:
        cell = new_code_cell("...")
        cell.outputs = [output]
        cells.append(cell)
    return new_notebook(cells=[new_code_cell("setup()"), *cells])


def test_student_version_may_fail_only_where_a_task_is_unfinished():
    check_student_errors("A", student_notebook(error("NotImplementedError", "not implemented yet"),
                                               error("NameError", "name 'builder' is not defined")))
    with pytest.raises(Exception, match="cell 2: TypeError"):
        check_student_errors("A", student_notebook(error("NotImplementedError", "not implemented yet"),
                                                   error("TypeError", "bad operand")))
    with pytest.raises(Exception, match="cell 1: NameError"):
        check_student_errors("A", student_notebook(error("NameError", "name 'x' is not defined")))
    with pytest.raises(Exception, match="without a NotImplementedError"):
        check_student_errors("A", student_notebook())


def test_site_check_finds_broken_links_anchors_languages_and_foreign_resources(tmp_path):
    html = tmp_path / "html"
    (html / "en").mkdir(parents=True)
    (html / "zh").mkdir()
    (html / "en" / "a.html").write_text(
        '<html lang="en"><head><script src="https://cdn.example.org/x.js"></script></head><body id="top">'
        '<a href="b.html">b</a><a href="a.html#top">top</a><a href="a.html#nowhere">x</a><a href="../zh/a.html">zh</a>'
        '<a href="https://colab.research.google.com/x">colab</a></body></html>', encoding="utf-8")
    (html / "zh" / "a.html").write_text('<html lang="en"><body><a href="../en/a.html">en</a></body></html>',
                                        encoding="utf-8")
    problems = check_site(html, ("en", "zh"))
    assert len(problems) == 4, problems
    assert any("cdn.example.org" in problem and "another host" in problem for problem in problems)
    assert any("'b.html'" in problem and "does not exist" in problem for problem in problems)
    assert any("#nowhere" in problem for problem in problems)
    assert any(problem.startswith("zh/a.html: <html lang='en'>") for problem in problems)


def test_the_workflow_publishes_the_student_versions_where_the_book_links_to_them():
    from book.build import STUDENT_BRANCH

    workflow = (ROOT / ".github" / "workflows" / "book.yml").read_text(encoding="utf-8")
    assert f"HEAD:refs/heads/{STUDENT_BRANCH}" in workflow
    assert "path: book/_build/html" in workflow and "actions/deploy-pages" in workflow

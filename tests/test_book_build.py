"""The book's build fails where it must: a cell error, a broken internal link, a missing twin, an unexpected error in
a student version, a plot without its glyphs, a broken link or a foreign resource in the written site; a prose edit
re-uses the execution cache; a widget is shown by its outputs. The builds here are small books made of tiny notebooks in a temporary folder (`--only-notebooks`); like the
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

from book.execute import BuildError, check_outputs, static_outputs
from book.site import check_site
from tools.release import STUBS
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
    result.stdout, result.stderr = (re.sub(r"\x1b\[[0-9;]*m", "", text) for text in (result.stdout, result.stderr))
    return result


def executions(out: Path) -> list[tuple[int, str]]:
    """(record id, time) of each executed notebook the book's execution cache holds."""
    from jupyter_cache import get_cache

    return [(record.pk, record.created.isoformat()) for record in get_cache(str(out / "cache" / "notebooks")).list_cache_records()]


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
    executed = executions(tmp_path / "out")
    # The two twins have the same code here, so one execution serves both.
    assert len(executed) == 1
    html = (tmp_path / "out" / "html" / "en" / "00_first.html").read_text(encoding="utf-8")
    assert "42" in html and "Some prose." in html
    write_notebook(twins / "en" / "00_first.ipynb", "00 · First", prose="Better prose.")
    second = build_book(twins, tmp_path / "out")
    assert second.returncode == 0, second.stdout + second.stderr
    assert executions(tmp_path / "out") == executed, "a prose edit must not execute the notebook again"
    assert "Better prose." in (tmp_path / "out" / "html" / "en" / "00_first.html").read_text(encoding="utf-8")


@pytest.mark.notebooks
@pytest.mark.exclusive
def test_a_cell_error_fails_the_build(twins, tmp_path):
    write_notebook(twins / "zh" / "00_first.ipynb", "00 · 第一个", code="raise ValueError('a deliberate bug')")
    result = build_book(twins, tmp_path / "out")
    assert result.returncode != 0
    assert "stage/zh/00_first.ipynb: a cell failed" in result.stderr
    assert "stage/en/00_first.ipynb: a cell failed" not in result.stderr
    assert "ValueError: a deliberate bug" in result.stderr


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


@pytest.mark.notebooks
@pytest.mark.exclusive
def test_a_widget_is_shown_by_its_outputs(twins, tmp_path):
    code = ("import ipywidgets\nfrom IPython.display import display\n"
            "display(ipywidgets.interactive(lambda family: print('family is', family), family=['llama2', 'qwen25']))")
    write_notebook(twins / "en" / "00_first.ipynb", "00 · First", code=code)
    result = build_book(twins, tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    html = (tmp_path / "out" / "html" / "en" / "00_first.html").read_text(encoding="utf-8")
    assert "family is llama2" in html and "widget-view" not in html and "widget-state" not in html


def error(ename: str, evalue: str):
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def notebook_with(*outputs):
    cells = []
    for output in outputs:
        cell = new_code_cell("...")
        cell.outputs = [output]
        cells.append(cell)
    return new_notebook(cells=[new_code_cell("setup()"), *cells])


def test_student_version_may_fail_only_where_a_task_is_unfinished():
    stub = STUBS["zh"].not_implemented
    check_outputs(notebook_with(error("NotImplementedError", stub), error("NameError", "name 'builder' is not defined")),
                  stub)
    with pytest.raises(BuildError, match="cell 2: TypeError"):
        check_outputs(notebook_with(error("NotImplementedError", stub), error("TypeError", "bad operand")), stub)
    with pytest.raises(BuildError, match="cell 1: NameError"):
        check_outputs(notebook_with(error("NameError", "name 'x' is not defined")), stub)
    with pytest.raises(BuildError, match="cell 1: NotImplementedError"):
        check_outputs(notebook_with(error("NotImplementedError", "some other message")), stub)
    with pytest.raises(BuildError, match="without a NotImplementedError"):
        check_outputs(notebook_with(), stub)
    with pytest.raises(BuildError, match="cell 1: NotImplementedError"):
        check_outputs(notebook_with(error("NotImplementedError", stub)), None)


def test_a_plot_without_its_glyphs_fails():
    warning = new_output("stream", name="stderr", text="UserWarning: Glyph 25105 (\\N{CJK UNIFIED IDEOGRAPH-6211}) "
                                                       "missing from font(s) DejaVu Sans.")
    with pytest.raises(BuildError, match="cell 1: a plot is missing glyphs"):
        check_outputs(notebook_with(warning), None)


def test_a_widget_without_saved_state_fails():
    view = new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "abc"},
                                            "text/plain": "interactive(...)"})
    with pytest.raises(BuildError, match="cell 1 shows a widget whose state was not saved"):
        static_outputs(notebook_with(view))


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

"""The notebook suite as a whole: pairs, twins, clean files, translations, glossary, READMEs, helpers, scripts."""
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tools import suite
from vla_backbone.notebook import expect_error, explore, use_language

ROOT = Path(__file__).resolve().parent.parent
NAMES = suite.names()
TOPICS = [name for name in NAMES if not name.startswith("assignments/")]


def test_suite_is_consistent():
    """Pairs complete and in sync by content, code cells identical across languages, clean, translations stamped."""
    assert NAMES, "no notebooks found"
    assert suite.check() == []


def test_every_topic_has_both_languages():
    for name in NAMES:
        for lang in suite.LANGS:
            assert (suite.NOTEBOOKS / lang / f"{name}.ipynb").exists(), f"{lang}/{name}.ipynb missing"


def test_numbering_is_contiguous():
    numbers = [int(name[:2]) for name in TOPICS]
    assert numbers == list(range(len(numbers)))


def glossary():
    rows = []
    for line in (suite.NOTEBOOKS / "GLOSSARY.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("English", "---"):
            rows.append(cells)
    return rows


def test_glossary_is_followed_in_chinese_prose():
    avoided = {form.strip(): preferred for _, preferred, avoid in glossary() for form in avoid.split(",") if form.strip()}
    assert avoided, "the glossary lists no forms to avoid"
    offenders = []
    for name in NAMES:
        nb = suite.read(suite.NOTEBOOKS / "zh" / f"{name}.ipynb")
        prose = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")
        offenders += [f"zh/{name}: '{form}' (use '{preferred}')" for form, preferred in avoided.items() if form in prose]
    assert offenders == []


def test_chinese_notebooks_are_written_in_chinese():
    for name in NAMES:
        nb = suite.read(suite.NOTEBOOKS / "zh" / f"{name}.ipynb")
        prose = "".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")
        han = len(re.findall(r"[\u4e00-\u9fff]", prose))
        assert han > 0.15 * len(re.sub(r"\s", "", prose)), f"zh/{name}: the prose is mostly untranslated"


@pytest.mark.parametrize("readme, lang", [("README.md", "en"), ("README.zh.md", "zh")])
def test_readmes_list_every_notebook_with_colab_links(readme, lang):
    text = (ROOT / readme).read_text(encoding="utf-8")
    assert text == suite.readme_text(lang), f"{readme} is stale: run `python -m tools.suite readme`"
    for name in TOPICS:
        assert f"notebooks/{lang}/{name}.ipynb" in text and suite.colab_url(lang, name) in text
    assert "bash tests/run_all.sh" in text
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash tests/run_all.sh" in ci


def test_setup_cell_installs_the_configured_repository():
    assert f"git+https://github.com/{suite.repository()}" in suite.setup_cell()


def test_expect_error_catches_prints_and_insists(capsys):
    with expect_error(ValueError, match="bad") as caught:
        raise ValueError("bad input")
    assert isinstance(caught[0], ValueError) and "Expected ValueError: bad input" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="raised nothing"):
        with expect_error(ValueError):
            pass
    with pytest.raises(KeyError):
        with expect_error(ValueError):
            raise KeyError("a different error is not swallowed")


def test_explore_without_a_widget_front_end_calls_the_function():
    assert explore(lambda a, b: a * b, a=[3, 4], b=5) == 15


def test_chinese_plot_labels_render_without_missing_glyphs(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    use_language("zh")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            figure, axes = plt.subplots()
            axes.set_title("梯度检查点：显存与序列长度")
            axes.plot([-1, 0, 1])
            figure.savefig(tmp_path / "zh.png")
            plt.close(figure)
        assert not [w for w in caught if "missing from" in str(w.message) or "Glyph" in str(w.message)]
    finally:
        matplotlib.rcParams.update(matplotlib.rcParamsDefault)


@pytest.mark.notebooks
@pytest.mark.parametrize("name", TOPICS)
def test_notebook_runs_as_a_plain_script(name, tmp_path):
    """Each en .py runs with plain `python`; the zh .py has the same code (test_suite_is_consistent), and its
    Chinese plotting path runs under nbmake."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    script = suite.NOTEBOOKS / "en" / f"{name}.py"
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("readme", ["README.md", "README.zh.md"])
def test_readme_library_example_runs(readme):
    text = (ROOT / readme).read_text(encoding="utf-8")
    example = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace = {}
    exec(compile(example, readme, "exec"), namespace)
    assert namespace["output"].logits.shape[0] == 1


def test_explore_plain_path_can_be_forced(monkeypatch):
    monkeypatch.setenv("VLA_BACKBONE_WIDGETS", "0")
    assert explore(lambda a: a + 1, a=[1, 2]) == 2

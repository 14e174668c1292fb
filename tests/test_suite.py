"""The notebook suite as a whole: pairs, twins, clean files, translations, glossary, READMEs, helpers, scripts."""
import ast
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import nbformat
import pytest

from tools import suite
from vla_backbone import notebook
from vla_backbone.notebook import expect_error, explore, explorer, transformers_log, use_language

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


def test_glossary_lists_forms_to_avoid():
    rows = suite.glossary_rows()
    assert len(rows) > 40 and sum(len(forms) for _, _, forms in rows) > 15
    assert ("wrap plan (the FSDP units a policy gives)", "包装计划", ["包装方案", "FSDP 计划"]) in rows


def test_check_finds_line_breaks_inside_chinese_paragraphs_and_join_removes_them():
    text = ("第一行没有结束，\n第二行接着写 `code`\n还有一行。\n\n- 列表项，\n  续行\n- 另一项\n\n```python\n# 代码块\nx = 1\n```\n"
            "English only\nwraps freely.\n| 表格 | 行 |\n| 第二 | 行 |\n")
    assert suite.broken_chinese_lines(text) == ["第二行接着写 `code`", "还有一行。", "续行"]
    joined = suite.join_chinese_lines(text)
    assert "第一行没有结束，第二行接着写 `code` 还有一行。" in joined and "- 列表项，续行" in joined
    assert "English only\nwraps freely." in joined and "# 代码块\nx = 1" in joined
    assert suite.broken_chinese_lines(joined) == []


def test_check_finds_zh_cells_out_of_step_with_en():
    def notebook_of(*kinds):
        return nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_code_cell("x") if kind == "code" else nbformat.v4.new_markdown_cell(kind) for kind in kinds])

    en = notebook_of("# 标题", "code", "## A", "code")
    assert suite.cell_order_problem("n", en, notebook_of("# 标题", "code", "## 甲", "code")) is None
    assert "cell 2 is code where en has markdown" in suite.cell_order_problem("n", en, notebook_of("# 标题", "code", "code", "## 甲"))
    assert "headings" in suite.cell_order_problem("n", en, notebook_of("# 标题", "code", "正文", "code"))
    assert "3 cells where en has 4" in suite.cell_order_problem("n", en, notebook_of("# 标题", "code", "## 甲"))


def test_check_flags_glossary_forms_and_spaces_between_chinese_characters():
    problems = suite.chinese_prose_problems("x", "这是包装方案。", {"包装方案": "包装计划"})
    assert problems == ["x: '包装方案' (the glossary says '包装计划')"]
    assert suite.chinese_prose_problems("x", "最终归一化层 和 LM head", {})
    assert suite.chinese_prose_problems("x", "最终归一化层和 LM head 的 `norm` 与 64 维", {}) == []


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


@pytest.fixture
def chinese():
    """The helpers in Chinese for one test, then back to English."""
    use_language("zh")
    yield
    use_language("en")
    import matplotlib

    matplotlib.rcParams.update(matplotlib.rcParamsDefault)


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


def test_expect_error_speaks_the_notebook_language(capsys, chinese):
    with expect_error(ValueError):
        raise ValueError("bad input")
    assert capsys.readouterr().out == "预期中的 ValueError：bad input\n"


def test_use_language_rejects_other_languages():
    with pytest.raises(ValueError, match="LANG must be 'en' or 'zh'"):
        use_language("fr")


def test_explore_without_a_kernel_calls_the_function_once_with_the_first_options(capsys):
    assert explore(lambda a, b: print(a * b) or a * b, a=[3, 4], b=5) == 15
    assert capsys.readouterr().out == "15\n"


def _dropdowns(widget):
    import ipywidgets

    return [child for child in widget.children if isinstance(child, ipywidgets.Dropdown)]


def test_explorer_runs_the_function_for_every_option_of_every_control():
    calls = []

    def area(width, height, unit):
        calls.append((width, height, unit))
        return f"{width * height} {unit}"

    widget = explorer(area, width=[2, 3, 5], height=[7, 11], unit="cm")
    assert widget.result == "14 cm" and calls == [(2, 7, "cm")]
    width, height = _dropdowns(widget)
    for value in (3, 5, 2):
        width.value = value
        assert widget.result == f"{value * 7} cm"
    for value in (11, 7):
        height.value = value
        assert widget.result == f"{2 * value} cm"
    assert calls[1:] == [(3, 7, "cm"), (5, 7, "cm"), (2, 7, "cm"), (2, 11, "cm"), (2, 7, "cm")]


def test_explorer_labels_whole_and_in_the_notebook_language(chinese):
    widget = explorer(lambda trainable_head, variant, text: None, trainable_head=[False, True],
                      variant=["as written", "no PAD token"], text=["", "abc"])
    head, variant, text = _dropdowns(widget)
    assert [head.description, variant.description, text.description] == ["LM head 可训练", "变体", "文本"]
    assert head.style.description_width == "initial"
    assert [label for label, _ in variant.options] == ["按本 notebook 的写法", "没有 PAD token"]
    assert [value for _, value in variant.options] == ["as written", "no PAD token"]
    assert text.options[0] == ("（空字符串）", "")


def test_explorer_raises_if_the_first_option_fails():
    def fails_on_one(n):
        if n == 1:
            raise ValueError("one is not allowed")
        return n

    with pytest.raises(ValueError, match="one is not allowed"):
        explorer(fails_on_one, n=[1, 2])
    widget = explorer(fails_on_one, n=[2, 1])
    assert widget.result == 2


def _explore_calls():
    """(notebook, keywords, assigned) for every explore(...) call in the topic notebooks' code."""
    found = []
    for name in TOPICS:
        for source in suite.code_sources(suite.read(suite.NOTEBOOKS / "en" / f"{name}.ipynb")):
            for statement in ast.parse(source).body:
                call = statement.value if isinstance(statement, (ast.Expr, ast.Assign)) else None
                if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "explore":
                    found.append((name, [keyword.arg for keyword in call.keywords], isinstance(statement, ast.Assign)))
    return found


def test_every_explore_result_is_assigned_and_every_control_has_a_chinese_label():
    """A bare `explore(...)` leaves its first result as Out[] beside a widget that may show something else later."""
    calls = _explore_calls()
    assert {name for name, _, _ in calls} >= {"07_input_require_grads", "08_gradient_checkpointing", "12_your_own_backbone"}
    assert [name for name, _, assigned in calls if not assigned] == []
    assert [(name, keyword) for name, keywords, _ in calls for keyword in keywords
            if keyword not in notebook.CONTROL_LABELS] == []
    code = "\n".join(source for name in TOPICS for source in suite.code_sources(suite.read(suite.NOTEBOOKS / "en" / f"{name}.ipynb")))
    assert [option for option in notebook.OPTION_LABELS_ZH if f'"{option}"' not in code] == []


def test_transformers_log_collects_instead_of_printing():
    """Inside the block only the collector sees transformers' records; afterwards its own handlers are back."""
    library_logger, logger = logging.getLogger("transformers"), logging.getLogger("transformers.test_suite")
    printed = []
    stand_in = logging.Handler()  # stands in for the handler through which transformers prints
    stand_in.emit = lambda record: printed.append(record.getMessage())
    library_logger.addHandler(stand_in)
    try:
        with transformers_log() as logged:
            logger.warning("collected, not printed")
        logger.warning("printed again")
    finally:
        library_logger.removeHandler(stand_in)
    assert logged == ["collected, not printed"] and printed == ["printed again"]


def test_transformers_log_collects_a_once_per_process_message_on_every_run():
    import transformers  # noqa: F401  (attaches warning_once to logging.Logger)

    logger = logging.getLogger("transformers.test_suite")
    runs = []
    for _ in range(2):
        with transformers_log() as logged:
            logger.warning_once("said once per process")
        runs.append(logged)
    assert runs == [["said once per process"]] * 2


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

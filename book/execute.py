"""Execute the book's notebooks through jupyter-cache, and make their outputs fit a static page.

jupyter-cache keys each executed notebook by its code cells: a notebook whose code did not change is not run again,
so a prose edit costs no execution. Every notebook that needs a run runs in parallel (one process per core),
both languages together. After the run, each notebook's outputs are made static and checked:

- a widget (ipywidgets) becomes the outputs it was showing: a static page has no kernel to drive it, and its
  saved state would need the widget manager's JavaScript from a CDN;
- a plot that lost glyphs (matplotlib's "missing from font" warning) fails the build;
- a student version may only fail where a task is unfinished: ``NotImplementedError`` with the stub's message (in
  the notebook's language, tools.release.STUBS), and the ``NameError`` s that follow from it (a class or function
  that was never defined).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import nbformat
from jupyter_cache import get_cache
from jupyter_cache.executors import load_executor


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
CELL_TIMEOUT_S = 300


class BuildError(Exception):
    """Something the book must not publish; the message says where and what to do."""


def execute(cache_dir: Path, notebooks: dict[Path, str | None]) -> dict[Path, nbformat.NotebookNode]:
    """Run what the cache lacks of ``notebooks`` and return each one executed and made static. ``notebooks``: path ->
    the stub's NotImplementedError message for a student version, None for a topic notebook. Raises BuildError
    listing every notebook that failed or shows what it must not."""
    cache = get_cache(str(cache_dir))
    wanted = {str(path) for path in notebooks}
    for record in cache.list_project_records():
        if record.uri not in wanted:
            cache.remove_nb_from_project(record.pk)
    for path in notebooks:
        cache.add_nb_to_project(str(path))
    if cache.list_unexecuted():
        logger = logging.getLogger("book.execute")
        logger.setLevel(logging.INFO)
        if not logger.handlers:
            logger.addHandler(logging.StreamHandler(sys.stdout))
        # A student version allows errors through its own metadata (execution.allow_errors), set when it was staged.
        load_executor("temp-parallel", cache=cache, logger=logger).run_and_cache(timeout=CELL_TIMEOUT_S)
    problems, executed = [], {}
    for path, not_implemented in notebooks.items():
        try:
            _, notebook = cache.merge_match_into_notebook(nbformat.read(path, as_version=4))
        except KeyError:
            problems.append(f"{path}: a cell failed\n{cache.get_project_record(str(path)).traceback}")
            continue
        try:
            executed[path] = static_outputs(notebook)
            check_outputs(notebook, not_implemented)
        except BuildError as exc:
            problems.append(f"{path}: {exc}")
    if problems:
        raise BuildError("\n\n".join(problems))
    return executed


def static_outputs(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``notebook`` with every widget replaced by the outputs it shows, and no widget state left."""
    state = notebook.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.outputs:
            if WIDGET_VIEW in output.get("data", {}):
                outputs += _shown(output["data"][WIDGET_VIEW]["model_id"], state, index)
            else:
                outputs.append(output)
        cell.outputs = outputs
    return notebook


def _shown(model_id: str, state: dict, cell_index: int) -> list:
    """The outputs a widget shows: an Output widget's own, a container's children's in order, a control's none."""
    if model_id not in state:
        raise BuildError(f"cell {cell_index} shows a widget whose state was not saved, so a static page cannot show "
                         "what it contains")
    model = state[model_id]
    if model["model_name"] == "OutputModel":
        return [nbformat.from_dict(output) for output in model["state"].get("outputs", [])]
    shown = []
    for child in model["state"].get("children", []):
        shown += _shown(child.removeprefix("IPY_MODEL_"), state, cell_index)
    return shown


def check_outputs(notebook: nbformat.NotebookNode, not_implemented: str | None) -> None:
    """Raise BuildError for a plot that lost glyphs, or for an error output, unless the notebook is a student version
    (``not_implemented``: its stub's message) and the error is an unfinished task or a NameError after one; and for a
    student version without an unfinished task (its solutions were not cleared)."""
    student = not_implemented is not None
    unfinished = False
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            # matplotlib warns once per character it has no glyph for; the plot shows a box instead.
            if output["output_type"] == "stream" and "missing from font" in output["text"]:
                raise BuildError(f"cell {index}: a plot is missing glyphs: {output['text'].strip()}")
            if output["output_type"] != "error":
                continue
            if student and output["ename"] == "NotImplementedError" and output["evalue"] == not_implemented:
                unfinished = True
            elif not (student and unfinished and output["ename"] == "NameError"):
                raise BuildError(f"cell {index}: {output['ename']}: {output['evalue']}. A student version may only fail "
                                 f"with NotImplementedError({not_implemented!r}) and the NameErrors that follow from it; "
                                 "run the master notebook to find the bug." if student else
                                 f"cell {index}: {output['ename']}: {output['evalue']}")
    if student and not unfinished:
        raise BuildError("the student version ran without a NotImplementedError; does the master mark its solutions "
                         "with ### BEGIN SOLUTION / ### END SOLUTION?")

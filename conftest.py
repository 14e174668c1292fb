"""Session-wide test settings: offline, a private replica cache, and the per-notebook time budget."""
import os
import tempfile
import time

import pytest

# Set before anything imports huggingface_hub or starts a notebook kernel (kernels inherit the environment).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("VLA_BACKBONE_HOME", tempfile.mkdtemp(prefix="vla_backbone_home_"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

NOTEBOOK_BUDGET_S = 20.0


def _is_notebook(item) -> bool:
    return type(item).__name__ == "NotebookItem"


def pytest_collection_modifyitems(items):
    for item in items:
        if _is_notebook(item):
            item.add_marker(pytest.mark.notebooks)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    start = time.perf_counter()
    outcome = yield
    elapsed = time.perf_counter() - start
    if _is_notebook(item) and outcome.excinfo is None and elapsed > NOTEBOOK_BUDGET_S:
        outcome.force_exception(
            AssertionError(f"{item.name} took {elapsed:.1f} s, over the {NOTEBOOK_BUDGET_S:.0f} s budget per notebook")
        )

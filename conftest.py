"""Session-wide test settings: offline, a private replica cache, and the per-notebook time budget."""
import os
import tempfile

import pytest

# Set before anything imports huggingface_hub or starts a notebook kernel (kernels inherit the environment).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("VLA_BACKBONE_HOME", tempfile.mkdtemp(prefix="vla_backbone_home_"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Notebooks run headless here: widgets take their plain path (a headless kernel can block on widget messages).
os.environ["VLA_BACKBONE_WIDGETS"] = "0"

NOTEBOOK_BUDGET_S = 20.0
# Notebooks that launch a multi-process job of their own (torchrun with 2 ranks) need both cores to keep within the
# budget, so tests/run_all.sh runs them after the parallel run, one at a time.
EXCLUSIVE_NOTEBOOKS = {"10_fsdp.ipynb"}


def _is_notebook(item) -> bool:
    return type(item).__name__ == "NotebookItem"


def pytest_collection_modifyitems(items):
    for item in items:
        if _is_notebook(item):
            item.add_marker(pytest.mark.notebooks)
            if item.path.name in EXCLUSIVE_NOTEBOOKS:
                item.add_marker(pytest.mark.exclusive)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _is_notebook(item) and report.when == "call" and report.passed and call.duration > NOTEBOOK_BUDGET_S:
        report.outcome = "failed"
        report.longrepr = (
            f"{item.name} ran correctly but took {call.duration:.1f} s, over the {NOTEBOOK_BUDGET_S:.0f} s budget "
            "per notebook (kernel start included). Make it cheaper, or check that the machine was not busy."
        )

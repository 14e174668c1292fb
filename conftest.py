"""Session-wide test settings: offline, a private replica cache, and which notebooks run on their own."""
import os
import shutil
import tempfile

import pytest

# Set before anything imports huggingface_hub or starts a notebook kernel (kernels inherit the environment).
os.environ["HF_HUB_OFFLINE"] = "1"
# The replica cache is private to this session and removed at its end (each session's replicas take about 80 MB).
# Only the process that made it removes it: pytest-xdist workers inherit the variable and leave it alone.
OWN_HOME = None
if "VLA_BACKBONE_HOME" not in os.environ:
    OWN_HOME = os.environ["VLA_BACKBONE_HOME"] = tempfile.mkdtemp(prefix="vla_backbone_home_")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Headless kernels (nbmake, the book) take explore()'s plain path: after widget messages nbclient can wait forever on an
# idle kernel (jupyter/nbclient#312; seen here in a headless run on 2026-11-29). The widget path itself is tested
# where a front end exists: tests/browser/test_jupyterlab.py (its JupyterLab runs without this setting) and the
# in-process tests of explorer() in tests/test_suite.py.
os.environ["VLA_BACKBONE_WIDGETS"] = "0"

# Notebooks that launch a multi-process job of their own (torchrun with 2 ranks) need both cores, so
# tests/run_all.sh runs them after the parallel run, one at a time. Time budgets are not asserted here: a busy
# machine must not fail a correct notebook. `python -m tools.bench` measures them into docs/benchmarks.md, and
# run_all.sh's `--nbmake-timeout` only catches a cell that hangs.
EXCLUSIVE_NOTEBOOKS = {"10_fsdp.ipynb"}


def _is_notebook(item) -> bool:
    return type(item).__name__ == "NotebookItem"


def pytest_collection_modifyitems(items):
    for item in items:
        if _is_notebook(item):
            item.add_marker(pytest.mark.notebooks)
            if item.path.name in EXCLUSIVE_NOTEBOOKS:
                item.add_marker(pytest.mark.exclusive)


def pytest_unconfigure(config):
    if OWN_HOME is not None:
        shutil.rmtree(OWN_HOME, ignore_errors=True)

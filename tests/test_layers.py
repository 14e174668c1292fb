"""Three layers, kept apart: the library learners import (`vla_backbone`, with its notebook helpers), and the
maintainer tools (`tools/`: suite, release, benchmark) that need the notebook machinery."""
import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What a learner's notebook imports: the package and every module the notebooks and assignments use.
RUNTIME = ["vla_backbone", "vla_backbone.notebook", "vla_backbone.measure", "vla_backbone.contract", "vla_backbone.fsdp",
           "vla_backbone.registry", "vla_backbone.prompting", "vla_backbone.actions"]
# Notebook and test machinery: maintainers and CI need it, a learner's kernel does not.
TOOLING = ("jupytext", "nbformat", "nbclient", "nbconvert", "nbgrader", "pytest", "_pytest")


def test_the_runtime_imports_no_notebook_or_test_machinery():
    # A fresh interpreter, started outside the repository: each runtime module in turn, and what it pulled in.
    code = (
        "import importlib, json, sys\n"
        "found = {}\n"
        f"for module in {RUNTIME!r}:\n"
        "    importlib.import_module(module)\n"
        f"    found[module] = sorted(m for m in sys.modules if m.split('.')[0] in {TOOLING!r})\n"
        "print(json.dumps(found))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT / "notebooks")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert list(found) == RUNTIME
    assert all(pulled == [] for pulled in found.values()), f"the runtime pulls in notebook or test machinery: {found}"


def test_the_package_holds_no_maintainer_tool():
    for path in sorted((ROOT / "vla_backbone").rglob("*.py")):
        imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                    if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                     if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
        assert not imported & {"tools", *TOOLING}, f"{path.relative_to(ROOT)} imports {sorted(imported & {'tools', *TOOLING})}"
    assert {path.stem for path in (ROOT / "tools").glob("*.py")} >= {"suite", "release", "bench"}
    assert not {path.stem for path in (ROOT / "vla_backbone").glob("*.py")} & {"suite", "release", "bench"}

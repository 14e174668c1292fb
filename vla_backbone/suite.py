"""Keep the notebook suite consistent: .ipynb/.py pairs, en/zh twins, clean notebooks, translation stamps.

    python -m vla_backbone.suite sync [NAME ...]   # pair notebooks, copy code cells en -> zh, strip outputs
    python -m vla_backbone.suite check             # list every problem (tests run the same check)
    python -m vla_backbone.suite translate NAME    # start notebooks/zh/NAME from the en notebook (prose to translate)
    python -m vla_backbone.suite stamp NAME ...    # after revisiting a zh translation, record the en prose it follows

Code cells are written once, in en; `sync` copies them into the zh twin (the LANG line aside). In each pair the
file edited last wins, so edit either the .ipynb in JupyterLab or the .py in an editor, then run `sync`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
LANGS = ("en", "zh")
STAMPS = NOTEBOOKS / "zh" / "translations.json"
LANG_LINE = re.compile(r"^\s*LANG\s*=")
KERNEL = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}
PAIR_FILTERS = {"notebook_metadata_filter": "-all", "cell_metadata_filter": "-all"}


def repository() -> str:
    """``owner/name`` of the configured GitHub repository (pyproject.toml, [tool.vla_backbone])."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["vla_backbone"]["repository"]


def setup_cell() -> str:
    """The first code cell of every notebook, word for word."""
    return (
        "# Set-up, the same in every notebook: on Colab install the package; everywhere print versions and seed.\n"
        "import subprocess, sys\n"
        "if \"google.colab\" in sys.modules:\n"
        f"    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", \"git+https://github.com/{repository()}\"], check=True)\n"
        "from vla_backbone.notebook import setup\n"
        "setup()"
    )


def language_cell(lang: str) -> str:
    """The second code cell: the notebook's one declared language line."""
    return f'LANG = "{lang}"  # the language of this notebook\'s prose and plot labels\nfrom vla_backbone.notebook import use_language\nuse_language(LANG)'


def names() -> list[str]:
    """Notebook names found in either language: ``NN_slug`` and ``assignments/AN_slug``."""
    found = set()
    for lang in LANGS:
        base = NOTEBOOKS / lang
        for pattern in ("[0-9][0-9]_*", "assignments/A[0-9]_*"):
            found |= {str(p.relative_to(base).with_suffix("")) for p in base.glob(pattern + ".ipynb")}
            found |= {str(p.relative_to(base).with_suffix("")) for p in base.glob(pattern + ".py")}
    return sorted(found)


def _jupytext():
    import jupytext

    return jupytext


def clean(nb):
    """Drop outputs, execution counts and metadata; keep only the kernel. Cell ids are numbered, not random."""
    import nbformat

    cells = []
    for cell in nb.cells:
        source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        if cell.cell_type == "code":
            cells.append(nbformat.v4.new_code_cell(source))
        elif cell.cell_type == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(source))
        else:
            cells.append(nbformat.v4.new_raw_cell(source))
    for index, cell in enumerate(cells):
        cell["id"] = f"cell-{index:03d}"
    return nbformat.v4.new_notebook(cells=cells, metadata=json.loads(json.dumps(KERNEL)))


def ipynb_text(nb) -> str:
    import nbformat

    return nbformat.writes(clean(nb), version=4) + "\n"


def py_text(nb) -> str:
    nb = clean(nb)
    nb.metadata["jupytext"] = dict(PAIR_FILTERS)
    return _jupytext().writes(nb, fmt="py:percent")


def read(path: Path):
    """A notebook from its .ipynb or its .py pair."""
    fmt = "ipynb" if path.suffix == ".ipynb" else "py:percent"
    return _jupytext().reads(path.read_text(encoding="utf-8"), fmt=fmt)


def code_sources(nb, drop_lang: bool = True) -> list[str]:
    sources = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        lines = cell.source.splitlines()
        if drop_lang:
            lines = [line for line in lines if not LANG_LINE.match(line)]
        sources.append("\n".join(lines).strip())
    return sources


def markdown_fingerprint(nb) -> str:
    prose = "\n\x00\n".join(cell.source.strip() for cell in nb.cells if cell.cell_type == "markdown")
    return hashlib.sha256(prose.encode()).hexdigest()[:16]


def load_stamps() -> dict:
    return json.loads(STAMPS.read_text()) if STAMPS.exists() else {}


def save_stamps(stamps: dict) -> None:
    STAMPS.write_text(json.dumps(dict(sorted(stamps.items())), indent=1, ensure_ascii=False) + "\n")


def _newest(name: str, lang: str):
    ipynb, py = NOTEBOOKS / lang / f"{name}.ipynb", NOTEBOOKS / lang / f"{name}.py"
    existing = [p for p in (ipynb, py) if p.exists()]
    if not existing:
        return None
    return read(max(existing, key=lambda p: p.stat().st_mtime_ns))


def _write(name: str, lang: str, nb) -> None:
    base = NOTEBOOKS / lang / name
    base.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((base.with_suffix(".ipynb"), ipynb_text(nb)), (base.with_suffix(".py"), py_text(nb))):
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")


def copy_code(en_nb, zh_nb, name: str):
    """zh_nb with every code cell replaced by en's, keeping zh's language line."""
    en_code = [c for c in en_nb.cells if c.cell_type == "code"]
    zh_code = [c for c in zh_nb.cells if c.cell_type == "code"]
    if len(en_code) != len(zh_code):
        raise SystemExit(
            f"{name}: en has {len(en_code)} code cells, zh has {len(zh_code)}. Put a placeholder code cell where en "
            "has one (sync fills it), or delete the extra one in zh, then run sync again."
        )
    for en_cell, zh_cell in zip(en_code, zh_code):
        lang_lines = [line for line in zh_cell.source.splitlines() if LANG_LINE.match(line)]
        lines = en_cell.source.splitlines()
        zh_cell.source = "\n".join(lang_lines.pop(0) if LANG_LINE.match(line) and lang_lines else line for line in lines)
    return zh_nb


def sync(selected: list[str] | None = None) -> None:
    chosen = selected or names()
    for name in chosen:
        en_nb, zh_nb = _newest(name, "en"), _newest(name, "zh")
        if en_nb is None:
            raise SystemExit(f"{name}: there is a zh notebook but no en one; en is where code is written.")
        _write(name, "en", en_nb)
        if zh_nb is not None:
            _write(name, "zh", copy_code(en_nb, zh_nb, name))
    print(f"synced {len(chosen)} notebooks")


def translate(name: str) -> None:
    en_nb = read(NOTEBOOKS / "en" / f"{name}.py")
    for cell in en_nb.cells:
        if cell.cell_type == "code":
            cell.source = "\n".join('LANG = "zh"' + line.split("\"en\"", 1)[1] if LANG_LINE.match(line) else line
                                    for line in cell.source.splitlines())
    _write(name, "zh", en_nb)
    print(f"notebooks/zh/{name}.py created from en: translate its Markdown cells, then run `stamp {name}`")


def stamp(selected: list[str]) -> None:
    stamps = load_stamps()
    for name in selected:
        stamps[name] = markdown_fingerprint(read(NOTEBOOKS / "en" / f"{name}.ipynb"))
    save_stamps(stamps)
    print(f"stamped {', '.join(selected)}")


def check() -> list[str]:
    """Every way the suite is out of step, one line each (empty when all is well)."""
    problems = []
    stamps = load_stamps()
    for name in names():
        twins = {}
        for lang in LANGS:
            ipynb, py = NOTEBOOKS / lang / f"{name}.ipynb", NOTEBOOKS / lang / f"{name}.py"
            if not ipynb.exists() or not py.exists():
                problems.append(f"{lang}/{name}: needs both .ipynb and .py (run sync)")
                continue
            nb = read(ipynb)
            twins[lang] = nb
            raw = json.loads(ipynb.read_text(encoding="utf-8"))
            if any(c.get("outputs") or c.get("execution_count") for c in raw["cells"] if c["cell_type"] == "code"):
                problems.append(f"{lang}/{name}.ipynb: has outputs or execution counts (run sync)")
            if ipynb.read_text(encoding="utf-8") != ipynb_text(nb):
                problems.append(f"{lang}/{name}.ipynb: not clean (metadata, ids or formatting; run sync)")
            if py.read_text(encoding="utf-8") != py_text(nb):
                problems.append(f"{lang}/{name}: .py and .ipynb differ in content (run sync)")
            code = code_sources(nb, drop_lang=False)
            if not code or code[0] != setup_cell():
                problems.append(f"{lang}/{name}: the first code cell is not the shared set-up cell")
            if len(code) < 2 or code[1] != language_cell(lang):
                problems.append(f"{lang}/{name}: the second code cell must be the language cell for '{lang}'")
        if len(twins) == 2:
            if code_sources(twins["en"]) != code_sources(twins["zh"]):
                problems.append(f"{name}: code cells differ between en and zh (run sync)")
            if stamps.get(name) != markdown_fingerprint(twins["en"]):
                problems.append(f"zh/{name}: the en prose changed since the zh translation was stamped; revisit it, then `stamp {name}`")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("sync").add_argument("names", nargs="*", help="only these notebooks (default: all)")
    commands.add_parser("check")
    commands.add_parser("translate").add_argument("name")
    commands.add_parser("stamp").add_argument("names", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "sync":
        sync(args.names)
    elif args.command == "translate":
        translate(args.name)
    elif args.command == "stamp":
        stamp(args.names)
    else:
        problems = check()
        print("\n".join(problems) or "suite is consistent")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

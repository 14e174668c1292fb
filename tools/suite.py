"""Keep the notebook suite consistent: .ipynb/.py pairs, en/zh twins, clean notebooks, translation stamps.

    python -m tools.suite sync [NAME ...]   # pair notebooks, copy code cells en -> zh, strip outputs
    python -m tools.suite check             # list every problem (tests run the same check)
    python -m tools.suite translate NAME    # start notebooks/zh/NAME from the en notebook (prose to translate)
    python -m tools.suite stamp NAME ...    # after revisiting a zh translation, record the en prose it follows
    python -m tools.suite readme            # regenerate the notebook tables in README.md and README.zh.md
    python -m tools.suite join [NAME ...]   # put each Chinese Markdown paragraph on one line (what check asks)

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
# Cells keep one kind of metadata: nbgrader's, which marks the assignments' solution, test and graded cells.
PAIR_FILTERS = {"notebook_metadata_filter": "-all", "cell_metadata_filter": "nbgrader"}


def repository() -> str:
    """``owner/name`` of the configured GitHub repository (pyproject.toml, [tool.vla_backbone])."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["vla_backbone"]["repository"]


def setup_cell() -> str:
    """The first code cell of every notebook, word for word."""
    return (
        "# Set-up, the same in every notebook: on Colab install the package; everywhere print versions and seed.\n"
        "import subprocess, sys\n"
        "if \"google.colab\" in sys.modules:\n"
        f"    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", \"vla-backbone[notebooks] @ git+https://github.com/{repository()}\"], check=True)\n"
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


# What each notebook teaches, for the README tables (titles come from the notebooks themselves).
TEACHES = {
    "00_overview": ("the registry, tiny replicas, a first forward pass, switching to real weights",
                    "注册表、微型副本、第一次前向传播、切换到真实权重"),
    "01_abstract_class": ("`LLMBackbone`: ABC + `nn.Module`, abstract members, `embed_dim`, `pad_token_id`",
                          "`LLMBackbone`：ABC + `nn.Module`、抽象成员、`embed_dim`、`pad_token_id`"),
    "02_loading": ("training vs inference mode, dtype, greedy generation, `use_cache`, `hf_token`, tokenizer settings",
                   "训练模式与推理模式、dtype、贪心解码、`use_cache`、`hf_token`、分词器设置"),
    "03_bos_assertion": ("both halves of the BOS check, on every family", "BOS 检查的两个条件，逐个家族验证"),
    "04_special_cases": ("phi-2 BOS = EOS, Qwen without BOS, PAD tokens, the multiple-of-64 resize",
                         "phi-2 的 BOS = EOS、没有 BOS 的 Qwen、PAD token、按 64 的倍数 resize"),
    "05_prompt_builders": ("every prompt template, the OpenVLA action prompt, tokens and labels",
                           "所有提示词模板、OpenVLA 动作提示词、token 与标签"),
    "06_embed_and_forward": ("`embed_input_ids` and `forward`: every argument, labels and -100, the KV cache",
                             "`embed_input_ids` 与 `forward`：每个参数、标签与 -100、KV 缓存"),
    "07_input_require_grads": ("`enable_input_require_grads`: the failure, the hook, the fixes",
                               "`enable_input_require_grads`：复现失败、查看钩子、三种修复"),
    "08_gradient_checkpointing": ("gradient checkpointing: memory and time, measured", "梯度检查点：实测显存与时间"),
    "09_precision_and_freezing": ("`half_precision_dtype`, `last_layer_finetune_modules`, freeze stages",
                                  "`half_precision_dtype`、`last_layer_finetune_modules`、冻结阶段"),
    "10_fsdp": ("the wrapping policy, a wrap plan, a real 2-process FSDP run", "包装策略、包装计划、真实的双进程 FSDP 训练"),
    "11_inside_a_vla": ("patches spliced after BOS, masks, labels, action tokens", "在 BOS 之后拼接 patch、掩码、标签、动作 token"),
    "12_your_own_backbone": ("a new family end to end", "从头到尾接入一个新的模型家族"),
}
README_BEGIN, README_END = "<!-- notebooks:begin -->", "<!-- notebooks:end -->"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


def colab_url(lang: str, name: str) -> str:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["vla_backbone"]
    return f"https://colab.research.google.com/github/{config['repository']}/blob/{config['branch']}/notebooks/{lang}/{name}.ipynb"


def title(nb) -> str:
    """The notebook's first heading without its number, e.g. "Overview and set-up check"."""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            return cell.source.splitlines()[0][2:].split("·", 1)[-1].strip()
    return ""


def readme_table(lang: str) -> str:
    header = {"en": "| # | notebook | what it teaches | Colab |\n|---|---|---|---|",
              "zh": "| # | notebook | 内容 | Colab |\n|---|---|---|---|"}[lang]
    rows = [header]
    for name in names():
        if name.startswith("assignments/") or not (NOTEBOOKS / lang / f"{name}.ipynb").exists():
            continue
        teaches = TEACHES.get(name, ("", ""))[LANGS.index(lang)]
        link = f"[{title(read(NOTEBOOKS / lang / f'{name}.ipynb'))}](notebooks/{lang}/{name}.ipynb)"
        badge = f"[![Open In Colab]({COLAB_BADGE})]({colab_url(lang, name)})"
        rows.append(f"| {name[:2]} | {link} | {teaches} | {badge} |")
    return "\n".join(rows)


def readme_text(lang: str) -> str:
    """The README with its notebook table regenerated."""
    path = ROOT / ("README.md" if lang == "en" else "README.zh.md")
    text = path.read_text(encoding="utf-8")
    before, rest = text.split(README_BEGIN, 1)
    _, after = rest.split(README_END, 1)
    return f"{before}{README_BEGIN}\n{readme_table(lang)}\n{README_END}{after}"


def readme() -> None:
    for lang in LANGS:
        path = ROOT / ("README.md" if lang == "en" else "README.zh.md")
        path.write_text(readme_text(lang), encoding="utf-8")
    print("README.md and README.zh.md tables regenerated")


def _jupytext():
    import jupytext

    return jupytext


def clean(nb):
    """Drop outputs, execution counts and metadata; keep only the kernel and nbgrader's cell metadata. Cell ids are
    numbered, not random."""
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
        if "nbgrader" in cell.get("metadata", {}):
            cells[-1].metadata["nbgrader"] = json.loads(json.dumps(cell.metadata["nbgrader"], sort_keys=True))
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
    for en_cell, zh_cell in zip(en_code, zh_code, strict=True):
        lang_lines = [line for line in zh_cell.source.splitlines() if LANG_LINE.match(line)]
        lines = en_cell.source.splitlines()
        zh_cell.source = "\n".join(lang_lines.pop(0) if LANG_LINE.match(line) and lang_lines else line for line in lines)
    return zh_nb


def copy_grading(en_nb, zh_nb, name: str):
    """zh_nb with each cell's nbgrader metadata (points, ids, solution and test marks) taken from en's, cell by cell."""
    if not any("nbgrader" in cell.metadata for cell in en_nb.cells + zh_nb.cells):
        return zh_nb
    if [c.cell_type for c in en_nb.cells] != [c.cell_type for c in zh_nb.cells]:
        raise SystemExit(f"{name}: en and zh have their cells in another order, so their nbgrader metadata cannot be "
                         "matched cell by cell. Give zh the cells of en, in the same order, then run sync again.")
    for en_cell, zh_cell in zip(en_nb.cells, zh_nb.cells, strict=True):
        zh_cell.metadata.pop("nbgrader", None)
        if "nbgrader" in en_cell.metadata:
            zh_cell.metadata["nbgrader"] = json.loads(json.dumps(en_cell.metadata["nbgrader"]))
    return zh_nb


def sync(selected: list[str] | None = None) -> None:
    chosen = selected or names()
    for name in chosen:
        en_nb, zh_nb = _newest(name, "en"), _newest(name, "zh")
        if en_nb is None:
            raise SystemExit(f"{name}: there is a zh notebook but no en one; en is where code is written.")
        _write(name, "en", en_nb)
        if zh_nb is not None:
            _write(name, "zh", copy_grading(en_nb, copy_code(en_nb, zh_nb, name), name))
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


def grading(nb) -> list:
    """Each cell's nbgrader metadata (``None`` where it has none)."""
    return [cell.metadata.get("nbgrader") for cell in nb.cells]


def grading_problems(name: str, twins: dict) -> list[str]:
    """Assignments carry nbgrader metadata that matches their delimiters, the same in both languages; topics none."""
    # tools.release builds on this module, so it is imported here, when a check runs, not at the top.
    from tools import release

    problems = []
    for lang, nb in twins.items():
        if not name.startswith("assignments/"):
            if any(grading(nb)):
                problems.append(f"{lang}/{name}: nbgrader metadata belongs in assignments only (clear it in JupyterLab's "
                                "property inspector)")
            continue
        problems += [f"{lang}/{name}: {problem}" for problem in release.grading_problems(nb)]
    if len(twins) == 2 and grading(twins["en"]) != grading(twins["zh"]):
        problems.append(f"{name}: nbgrader metadata differs between en and zh (edit it in en, then run sync)")
    return problems


GLOSSARY = NOTEBOOKS / "GLOSSARY.md"
HAN = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
# A line that starts a Markdown block of its own (list item, heading, table row, fence, quote, HTML), so the line
# break before it is not a break inside a paragraph.
BLOCK_START = re.compile(r"^\s*(?:[-*+] |\d+[.)] |#{1,6} |\||```|~~~|>|<)")


def glossary_rows() -> list[tuple[str, str, list[str]]]:
    """(English, Chinese, forms to avoid) for each row of notebooks/GLOSSARY.md."""
    rows = []
    for line in GLOSSARY.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 3 and cells[0] not in ("English", "---"):
            rows.append((cells[0], cells[1], [form.strip() for form in cells[2].split(",") if form.strip()]))
    return rows


def chinese_documents() -> list[Path]:
    """Chinese prose outside the notebooks: the zh README, the glossary, and every docs page with Chinese in it."""
    docs = sorted((ROOT / "docs").glob("**/*.md"))
    return [ROOT / "README.zh.md", GLOSSARY, *(p for p in docs if HAN.search(p.read_text(encoding="utf-8")))]


def _chinese_paragraph_breaks(lines: list[str]) -> list[int]:
    """Indices i where lines[i] and lines[i + 1] belong to one Markdown paragraph with Chinese in it.

    Code fences, block starts (list items, headings, tables, ...) and explicit hard breaks (two trailing spaces or
    a backslash) are left alone.
    """
    found, in_fence = [], False
    for index, (line, following) in enumerate(zip(lines, lines[1:] + [""])):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
            continue
        if in_fence or not line.strip() or not following.strip() or line.lstrip().startswith(("|", "#")):
            continue
        if BLOCK_START.match(following) or line.endswith(("  ", "\\")):
            continue
        if HAN.search(line) or HAN.search(following):
            found.append(index)
    return found


def broken_chinese_lines(text: str) -> list[str]:
    """The start of each line that continues a Chinese Markdown paragraph (a browser renders the break as a space)."""
    lines = text.splitlines()
    return [lines[index + 1].strip()[:30] for index in _chinese_paragraph_breaks(lines)]


def join_chinese_lines(text: str) -> str:
    """``text`` with every Chinese Markdown paragraph on one line: no space between two Chinese characters or next
    to Chinese punctuation, one space between Chinese and Latin text (the suite's spacing)."""
    lines = text.splitlines()
    for index in reversed(_chinese_paragraph_breaks(lines)):
        left, right = lines[index].rstrip(), lines[index + 1].strip()
        tight = re.fullmatch(r"[\u4e00-\u9fff]", left[-1]) and re.fullmatch(r"[\u4e00-\u9fff]", right[0])
        punctuation = re.compile(r"[\u3000-\u303f\uff00-\uffef“”‘’—…]")
        glue = "" if tight or punctuation.match(left[-1]) or punctuation.match(right[0]) else " "
        lines[index:index + 2] = [left + glue + right]
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def join(selected: list[str] | None = None) -> None:
    """Put every Chinese paragraph on one line: in the zh notebooks' Markdown (both files of each pair), the zh
    README, the glossary and the docs."""
    chosen = selected or names()
    for name in chosen:
        nb = _newest(name, "zh")
        if nb is None:
            continue
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = join_chinese_lines(cell.source)
        _write(name, "zh", nb)
    if not selected:
        for path in chinese_documents():
            path.write_text(join_chinese_lines(path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"joined the Chinese paragraphs of {len(chosen)} notebooks" + ("" if selected else " and the zh documents"))


def cell_order_problem(name: str, en_nb, zh_nb) -> str | None:
    """Where the zh notebook's cells stop matching en's, one for one (Markdown beside the same code, same headings)."""
    en_cells, zh_cells = en_nb.cells, zh_nb.cells
    for index, (en_cell, zh_cell) in enumerate(zip(en_cells, zh_cells)):
        if en_cell.cell_type != zh_cell.cell_type:
            return (f"zh/{name}: cell {index} is {zh_cell.cell_type} where en has {en_cell.cell_type}; from there the "
                    "zh text sits beside the wrong code (move the Markdown cells to where en has them)")
        headings = [re.findall(r"^(#{1,6}) ", cell.source, re.M) for cell in (en_cell, zh_cell)]
        if en_cell.cell_type == "markdown" and headings[0] != headings[1]:
            return f"zh/{name}: Markdown cell {index} has headings {headings[1]} where en has {headings[0]}"
    if len(en_cells) != len(zh_cells):
        return f"zh/{name}: {len(zh_cells)} cells where en has {len(en_cells)}"
    return None


def spaces_between_chinese(text: str) -> list[str]:
    """A space between two Chinese characters (or next to Chinese punctuation), outside code: always a slip."""
    found, in_fence = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        elif not in_fence:
            found += [match.group() for match in re.finditer(rf"{HAN.pattern}{{1,3}} +{HAN.pattern}{{1,3}}", line)]
    return found


def chinese_prose_problems(label: str, text: str, avoided: dict[str, str]) -> list[str]:
    problems = [f"{label}: line break inside a Chinese paragraph before \"{start}\" (a zh paragraph is one line)"
                for start in broken_chinese_lines(text)]
    problems += [f"{label}: a space inside Chinese text: \"{found}\"" for found in spaces_between_chinese(text)]
    problems += [f"{label}: '{form}' (the glossary says '{preferred}')" for form, preferred in avoided.items() if form in text]
    return problems


def check() -> list[str]:
    """Every way the suite is out of step, one line each (empty when all is well)."""
    problems = []
    stamps = load_stamps()
    avoided = {form: preferred for _, preferred, forms in glossary_rows() for form in forms}
    for path in chinese_documents():
        # The glossary itself lists the forms to avoid.
        terms = {} if path == GLOSSARY else avoided
        problems += chinese_prose_problems(str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"), terms)
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
        problems += grading_problems(name, twins)
        if len(twins) == 2:
            if code_sources(twins["en"]) != code_sources(twins["zh"]):
                problems.append(f"{name}: code cells differ between en and zh (run sync)")
            order = cell_order_problem(name, twins["en"], twins["zh"])
            if order:
                problems.append(order)
            prose = "\n\n".join(cell.source for cell in twins["zh"].cells if cell.cell_type == "markdown")
            problems += chinese_prose_problems(f"zh/{name}", prose, avoided)
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
    commands.add_parser("readme")
    commands.add_parser("join").add_argument("names", nargs="*", help="only these notebooks (default: all, and the zh documents)")
    args = parser.parse_args(argv)
    if args.command == "sync":
        sync(args.names)
    elif args.command == "translate":
        translate(args.name)
    elif args.command == "stamp":
        stamp(args.names)
    elif args.command == "readme":
        readme()
    elif args.command == "join":
        join(args.names)
    else:
        problems = check()
        print("\n".join(problems) or "suite is consistent")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

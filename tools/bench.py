"""Measure what the README and the issues promise, and write the figures to docs/benchmarks.md.

    python -m tools.bench                     # everything (about fifteen minutes on 2 CPU cores)
    python -m tools.bench --skip-notebooks    # package figures only

Targets: tiny build < 0.5 s per family, warm `get_llm_backbone_and_tokenizer` < 0.5 s, `import vla_backbone` < 0.2 s
over a bare `import transformers`, backbone forward < 5 % over the raw model, each notebook < 20 s under nbmake,
the whole suite (both languages) < 3 minutes, the book < 6 minutes from nothing and < 1 minute after a prose edit.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from tools.suite import NOTEBOOKS, ROOT, names

OUTPUT = ROOT / "docs" / "benchmarks.md"


def _median_subprocess_seconds(code: str, runs: int = 7) -> float:
    timer = f"import time; _t = time.perf_counter(); {code}; print(time.perf_counter() - _t)"
    return statistics.median(
        float(subprocess.run([sys.executable, "-c", timer], capture_output=True, text=True, check=True).stdout)
        for _ in range(runs)
    )


def import_times() -> list[tuple[str, float]]:
    bare = _median_subprocess_seconds("import transformers")
    package = _median_subprocess_seconds("import transformers, vla_backbone")
    api = _median_subprocess_seconds("import transformers; from vla_backbone import get_llm_backbone_and_tokenizer, LLMBackbone")
    baseline = _median_subprocess_seconds("import transformers, torch")
    return [
        ("`import transformers`", bare),
        ("`import transformers, vla_backbone` (extra over the line above)", package - bare),
        ("`import transformers, torch`", baseline),
        ("`from vla_backbone import get_llm_backbone_and_tokenizer, LLMBackbone` (extra over torch + transformers)", api - baseline),
    ]


def tiny_builds() -> list[tuple[str, float, float]]:
    """(family, cold build seconds, warm get_llm_backbone_and_tokenizer seconds), imports already warm."""
    from vla_backbone import get_llm_backbone_and_tokenizer, tiny
    from vla_backbone.families import FAMILIES

    previous = os.environ.get("VLA_BACKBONE_HOME")
    rows = []
    try:
        with tempfile.TemporaryDirectory() as warmup, tempfile.TemporaryDirectory() as fresh:
            os.environ["VLA_BACKBONE_HOME"] = warmup
            for family in FAMILIES:  # import every model class and tokenizer path once
                get_llm_backbone_and_tokenizer(next(iter(family.models)))
            os.environ["VLA_BACKBONE_HOME"] = fresh
            for family in FAMILIES:
                start = time.perf_counter()
                tiny.tiny_checkpoint(family.family)
                build = time.perf_counter() - start
                backbone_id = next(iter(family.models))
                loads = []
                for _ in range(5):
                    start = time.perf_counter()
                    get_llm_backbone_and_tokenizer(backbone_id)
                    loads.append(time.perf_counter() - start)
                rows.append((family.family, build, statistics.median(loads)))
    finally:
        if previous is None:
            os.environ.pop("VLA_BACKBONE_HOME", None)
        else:
            os.environ["VLA_BACKBONE_HOME"] = previous
    return rows


def forward_overhead(repeats: int = 30) -> tuple[float, float]:
    """Median seconds of backbone(...) and of the raw HF model, interleaved so drift hits both alike."""
    from vla_backbone import get_llm_backbone_and_tokenizer

    backbone, _ = get_llm_backbone_and_tokenizer("llama2-7b-pure")
    backbone.eval()
    ids = torch.randint(0, 1000, (4, 128))
    mask = torch.ones_like(ids)
    wrapped, raw = [], []
    with torch.no_grad():
        for _ in range(5):
            backbone(input_ids=ids, attention_mask=mask)
        for _ in range(repeats):
            start = time.perf_counter()
            backbone(input_ids=ids, attention_mask=mask)
            wrapped.append(time.perf_counter() - start)
            start = time.perf_counter()
            backbone.llm(input_ids=ids, attention_mask=mask)
            raw.append(time.perf_counter() - start)
    return statistics.median(wrapped), statistics.median(raw)


def notebook_times() -> tuple[list[tuple[str, float, float]], float]:
    """Per-notebook nbmake seconds (en, zh), run one at a time, and the wall time of the whole suite."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    rows = []
    for name in names():
        if name.startswith("assignments/"):
            continue
        seconds = []
        for lang in ("en", "zh"):
            start = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbmake", str(NOTEBOOKS / lang / f"{name}.ipynb")],
                cwd=ROOT, env=env, capture_output=True,
            )
            # A failing notebook is recorded as such, not timed as if it passed.
            seconds.append(time.perf_counter() - start if result.returncode == 0 else float("nan"))
        rows.append((name, *seconds))
    topics = [str(NOTEBOOKS / lang / f"{n}.ipynb") for n, *_ in rows for lang in ("en", "zh")]
    # As tests/run_all.sh runs them: two at a time, then the notebooks that need both cores, one at a time.
    start = time.perf_counter()
    returncodes = [
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options, "--nbmake", *topics],
                       cwd=ROOT, env=env, capture_output=True).returncode
        for options in (["-n", "2", "-m", "not exclusive"], ["-m", "exclusive"])
    ]
    return rows, time.perf_counter() - start if not any(returncodes) else float("nan")


def book_times() -> tuple[float, float, float]:
    """Seconds of `bash book/build.sh` from nothing, again with nothing changed, and after a prose edit in one notebook
    (a copy of the notebooks, so the edit touches nothing of the repository)."""
    import nbformat

    with tempfile.TemporaryDirectory() as tmp:
        notebooks = Path(tmp) / "notebooks"
        shutil.copytree(NOTEBOOKS, notebooks)
        command = ["bash", str(ROOT / "book" / "build.sh"), "--notebooks", str(notebooks), "--out", str(Path(tmp) / "build")]

        def timed() -> float:
            start = time.perf_counter()
            result = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHON": sys.executable}, capture_output=True)
            return time.perf_counter() - start if result.returncode == 0 else float("nan")

        cold, unchanged = timed(), timed()
        edited = notebooks / "en" / "03_bos_assertion.ipynb"
        nb = nbformat.read(edited, as_version=4)
        next(cell for cell in nb.cells if cell.cell_type == "markdown").source += " (edited)"
        nbformat.write(nb, edited)
        return cold, unchanged, timed()


def _seconds(value: float) -> str:
    return "FAILED" if value != value else f"{value:.1f} s"


def render(imports, builds, forward, notebooks, book) -> str:
    import transformers

    lines = [
        "# Benchmarks",
        "",
        f"Measured {date.today().isoformat()} by `python -m tools.bench` on {platform.machine()}, "
        f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}. Re-run the command to refresh this file; keep the figures from growing.",
        "",
        "## Package",
        "",
        "| what | measured | target |",
        "|---|---|---|",
    ]
    for family, build, _ in builds:
        lines.append(f"| tiny replica build, {family} | {build * 1000:.0f} ms | < 500 ms |")
    for family, _, load in builds:
        lines.append(f"| warm `get_llm_backbone_and_tokenizer`, {family} | {load * 1000:.0f} ms | < 500 ms |")
    for label, seconds in imports:
        target = "< 200 ms" if "extra" in label else "(baseline)"
        lines.append(f"| {label} | {seconds * 1000:.0f} ms | {target} |")
    wrapped, raw = forward
    lines.append(
        f"| backbone forward over the raw model (tiny llama2, batch 4 × 128) | {wrapped * 1000:.2f} ms vs "
        f"{raw * 1000:.2f} ms ({(wrapped / raw - 1) * 100:+.1f} %) | < 5 % |"
    )
    if notebooks is not None:
        rows, suite_wall = notebooks
        lines += [
            "",
            "## Notebooks (nbmake, one at a time, kernel start included)",
            "",
            "| notebook | en | zh | target |",
            "|---|---|---|---|",
        ]
        for name, en, zh in rows:
            lines.append(f"| {name} | {_seconds(en)} | {_seconds(zh)} | < 20 s each |")
        total = sum(en + zh for _, en, zh in rows)
        lines += [
            f"| **sum, one at a time** | | **{total:.0f} s** | |",
            f"| **whole suite, both languages, as `tests/run_all.sh` runs it** | | **{_seconds(suite_wall)}** | < 180 s |",
        ]
    if book is not None:
        cold, unchanged, prose = book
        lines += [
            "",
            "## Book (`bash book/build.sh`: both languages, every topic notebook and student version executed)",
            "",
            "| what | measured | target |",
            "|---|---|---|",
            f"| build from nothing (every notebook executed, then rendered) | {_seconds(cold)} | < 360 s |",
            f"| rebuild, nothing changed | {_seconds(unchanged)} | < 60 s |",
            f"| rebuild after a prose edit in one notebook (outputs from the execution cache) | {_seconds(prose)} | < 60 s |",
        ]
    return "\n".join(lines) + "\n"


def kept_notebook_sections() -> str:
    """The notebook and book sections of the current file, for a package-only run to keep rather than drop."""
    previous = OUTPUT.read_text() if OUTPUT.exists() else ""
    start = previous.find("\n## Notebooks")
    if start < 0:
        return ""
    return "\nThe sections below are kept from an earlier full run (`--skip-notebooks` measured the package only).\n" + (
        previous[start:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-notebooks", action="store_true", help="measure the package only (no notebooks, no book)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    text = render(import_times(), tiny_builds(), forward_overhead(), None if args.skip_notebooks else notebook_times(),
                  None if args.skip_notebooks else book_times())
    if args.skip_notebooks:
        text += kept_notebook_sections()
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

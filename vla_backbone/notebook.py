"""Small helpers the notebooks share: the set-up cell, expected errors, Chinese plot fonts, widgets."""
from __future__ import annotations

import contextlib
import os
import platform
import random
import sys
from typing import Callable, Iterator, Optional

SEED = 0


def in_colab() -> bool:
    return "google.colab" in sys.modules


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return "cpu"


def setup(seed: int = SEED) -> dict:
    """Seed every RNG, use one CPU thread, quiet the progress bars, and print what this notebook runs on.
    Returns the facts printed."""
    import torch
    import transformers

    from vla_backbone.registry import resolve_source

    random.seed(seed)
    torch.manual_seed(seed)
    # The tiny replicas are too small to gain from intra-op threads; on a shared 2-core machine the thread
    # hand-offs cost more than the maths (20 training steps: 0.6 s on one thread, up to 10 s on two).
    torch.set_num_threads(1)
    # Loading a tiny replica takes milliseconds; a progress bar for it is only noise in the output.
    transformers.utils.logging.disable_progress_bar()
    facts = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": device_name(),
        "threads": torch.get_num_threads(),
        "source": resolve_source(),
        "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE", "0"),
    }
    print("  ".join(f"{key}={value}" for key, value in facts.items()))
    return facts


@contextlib.contextmanager
def expect_error(error_type: type[BaseException] | tuple[type[BaseException], ...], match: Optional[str] = None) -> Iterator[list]:
    """Run a block that must fail with ``error_type``; print the error instead of stopping "Run All".

    Fails loudly (AssertionError) if the block raises nothing, or something else. The caught exception is put in
    the yielded list so a later cell can inspect it.
    """
    caught: list[BaseException] = []
    try:
        yield caught
    except error_type as exc:
        if match is not None and match not in str(exc):
            raise AssertionError(f"expected {match!r} in the message, got: {exc}") from exc
        caught.append(exc)
        print(f"Expected {type(exc).__name__}: {exc}")
        return
    names = error_type.__name__ if isinstance(error_type, type) else " or ".join(t.__name__ for t in error_type)
    raise AssertionError(f"expected {names}, but the block raised nothing")


def cjk_font_path() -> str:
    """The Noto Sans CJK SC font shipped by the ``mplfonts`` package (a dependency in requirements.txt)."""
    import importlib.resources

    return str(importlib.resources.files("mplfonts") / "fonts" / "NotoSansCJKsc-Regular.otf")


def use_language(lang: str) -> None:
    """Configure plots for ``lang`` ("en" or "zh"); Chinese labels need a font with CJK glyphs."""
    if lang not in ("en", "zh"):
        raise ValueError(f"LANG must be 'en' or 'zh', got {lang!r}")
    if lang != "zh":
        return
    import matplotlib
    from matplotlib import font_manager

    font_manager.fontManager.addfont(cjk_font_path())
    family = font_manager.FontProperties(fname=cjk_font_path()).get_name()
    matplotlib.rcParams["font.sans-serif"] = [family, *matplotlib.rcParams["font.sans-serif"]]
    matplotlib.rcParams["font.family"] = "sans-serif"
    # CJK fonts lack the Unicode minus sign; an ASCII hyphen keeps negative tick labels readable.
    matplotlib.rcParams["axes.unicode_minus"] = False


def explore(function: Callable, **choices) -> object:
    """Show ``function`` behind ipywidgets controls inside a Jupyter kernel; call it plainly everywhere else.

    ``choices``: keyword -> list of options (a dropdown) or a single value (fixed). Either way the function runs
    once with the first option of each control, so the plain output is what the widget starts with. Returns that
    first result. ``VLA_BACKBONE_WIDGETS=0`` forces the plain path; the test suite sets it, because a headless
    runner can block on a widget's messages until its cell times out (jupyter/nbclient#312).
    """
    first = {name: options[0] if isinstance(options, (list, tuple)) else options for name, options in choices.items()}
    if os.environ.get("VLA_BACKBONE_WIDGETS") == "0":
        return function(**first)
    try:
        from IPython import get_ipython
    except ImportError:
        return function(**first)
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return function(**first)
    import ipywidgets
    from IPython.display import display

    controls = {
        name: options if isinstance(options, (list, tuple)) else ipywidgets.fixed(options)
        for name, options in choices.items()
    }
    widget = ipywidgets.interactive(function, **controls)
    display(widget)
    return widget.result

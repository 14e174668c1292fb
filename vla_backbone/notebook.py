"""Small helpers the notebooks share: the set-up cell, the notebook's language, expected errors, transformers' log,
Chinese plot fonts and widgets."""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
import random
import sys
from typing import Callable, Iterator, Optional

SEED = 0
LANGUAGES = ("en", "zh")
# Set by use_language(LANG) in every notebook's second cell; the helpers below print in this language.
_language = "en"


def in_colab() -> bool:
    return "google.colab" in sys.modules


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return "cpu"


def setup(seed: int = SEED) -> None:
    """Seed every RNG, use one CPU thread, quiet the progress bars, and print what this notebook runs on."""
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


def use_language(lang: str) -> None:
    """Set the notebook's language: ``expect_error`` and ``explore`` label their output in it, and Chinese plot
    labels get a font with CJK glyphs."""
    global _language
    if lang not in LANGUAGES:
        raise ValueError(f"LANG must be 'en' or 'zh', got {lang!r}")
    _language = lang
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


def cjk_font_path() -> str:
    """The Noto Sans CJK SC font shipped by the ``mplfonts`` package (a dependency in requirements.txt)."""
    import importlib.resources

    return str(importlib.resources.files("mplfonts") / "fonts" / "NotoSansCJKsc-Regular.otf")


EXPECTED_ERROR = {"en": "Expected {name}: {message}", "zh": "预期中的 {name}：{message}"}


@contextlib.contextmanager
def expect_error(error_type: type[BaseException] | tuple[type[BaseException], ...], match: Optional[str] = None) -> Iterator[list]:
    """Run a block that must fail with ``error_type``; print the error instead of stopping "Run All".

    Fails loudly (AssertionError) if the block raises nothing, or something else. The caught exception is put in
    the yielded list so a later cell can inspect it. The printed line is in the notebook's language.
    """
    caught: list[BaseException] = []
    try:
        yield caught
    except error_type as exc:
        if match is not None and match not in str(exc):
            raise AssertionError(f"expected {match!r} in the message, got: {exc}") from exc
        caught.append(exc)
        print(EXPECTED_ERROR[_language].format(name=type(exc).__name__, message=exc))
        return
    names = error_type.__name__ if isinstance(error_type, type) else " or ".join(t.__name__ for t in error_type)
    raise AssertionError(f"expected {names}, but the block raised nothing")


class _Collect(logging.Handler):
    def __init__(self, messages: list[str]):
        super().__init__()
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def transformers_log() -> Iterator[list[str]]:
    """Collect what transformers logs inside the block, instead of letting it print to stderr; yields the messages.

    For a message a notebook shows on purpose: print what was collected beside the explanation. Only the block is
    affected (no global filter). transformers says some messages once per process (``Logger.warning_once``); the
    block first makes it forget what it said, so that every run of a cell collects the same messages.
    """
    messages: list[str] = []
    logger = logging.getLogger("transformers")
    # transformers attaches `warning_once` (an lru_cache) to logging.Logger; before it is imported there is none.
    forget = getattr(getattr(logging.Logger, "warning_once", None), "cache_clear", None)
    if forget:
        forget()
    # transformers prints through a handler on its library logger (which does not propagate): set it aside.
    printing = list(logger.handlers)
    collect = _Collect(messages)
    for handler in printing:
        logger.removeHandler(handler)
    logger.addHandler(collect)
    try:
        yield messages
    finally:
        logger.removeHandler(collect)
        for handler in printing:
            logger.addHandler(handler)


# What a learner reads beside each drop-down, by keyword of the explored function: (English, Chinese).
# A keyword missing here is shown as itself, with spaces for underscores.
CONTROL_LABELS = {
    "action": ("action", "动作"),
    "backbone_id": ("backbone id", "骨干网络 id"),
    "batch": ("batch size", "批大小"),
    "builder": ("prompt builder", "提示词构造器"),
    "checkpointing": ("checkpointing", "梯度检查点"),
    "family": ("family", "模型家族"),
    "hook": ("input-grad hook", "输入梯度钩子"),
    "inference_mode": ("inference mode", "推理模式"),
    "instruction": ("instruction", "指令"),
    "length": ("sequence length", "序列长度"),
    "message": ("message", "消息"),
    "module_name": ("module", "模块"),
    "multiple": ("multiple of", "倍数"),
    "num_tokens": ("tokens", "token 数"),
    "recurse": ("recurse", "recurse（递归）"),
    "stage": ("training stage", "训练阶段"),
    "text": ("text", "文本"),
    "trainable_head": ("trainable LM head", "LM head 可训练"),
    "variant": ("variant", "变体"),
}
# Options that are phrases rather than values from the code: their Chinese label (the value stays as written).
OPTION_LABELS_ZH = {
    "reach forward, gripper open": "向前伸，夹爪张开",
    "lift, gripper closed": "抬起，夹爪闭合",
    "out of range (clipped)": "超出范围（会被截断）",
    "as written": "按本 notebook 的写法",
    "not in SPECIAL_CASES": "不在 SPECIAL_CASES 里",
    "no last_layer_finetune_modules": "没有 last_layer_finetune_modules",
    "no PAD token": "没有 PAD token",
    "attention as decoder layer": "把注意力模块当作解码器层",
    "template without BOS": "模板不写 BOS",
    "option A (add_bos_token)": "方案 A（add_bos_token）",
}
EMPTY_STRING = {"en": "(empty string)", "zh": "（空字符串）"}


def control_label(keyword: str) -> str:
    english, chinese = CONTROL_LABELS.get(keyword, (keyword.replace("_", " "),) * 2)
    return chinese if _language == "zh" else english


def option_label(value: object) -> str:
    if value == "" and isinstance(value, str):
        return EMPTY_STRING[_language]
    if _language == "zh" and isinstance(value, str):
        return OPTION_LABELS_ZH.get(value, value)
    return str(value)


def explorer(function: Callable, **choices):
    """``function`` behind ipywidgets drop-downs, labelled in the notebook's language, not yet displayed.

    ``choices``: keyword -> list of options (a drop-down) or a single value (fixed). The widget calls ``function``
    with the first option of each control right away, and again whenever a control changes; ``.result`` holds the
    latest return value. If that first call fails, the error is raised here, as it would be without a widget.
    """
    import ipywidgets

    first_call_errors: list[Exception] = []
    building = True

    @functools.wraps(function)
    def call(**kwargs):
        try:
            return function(**kwargs)
        except Exception as exc:
            # ipywidgets shows a callback's error in the widget and carries on; the first call's must stop the cell.
            if building:
                first_call_errors.append(exc)
            raise

    controls = {}
    for keyword, options in choices.items():
        if isinstance(options, (list, tuple)):
            controls[keyword] = ipywidgets.Dropdown(
                options=[(option_label(option), option) for option in options],
                value=options[0],
                description=control_label(keyword),
                # The default label width cuts longer labels off; "initial" fits the label to its text.
                style={"description_width": "initial"},
                layout=ipywidgets.Layout(width="max-content"),
            )
        else:
            controls[keyword] = ipywidgets.fixed(options)
    widget = ipywidgets.interactive(call, **controls)
    building = False
    if first_call_errors:
        raise first_call_errors[0]
    return widget


def in_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel (where widgets can be shown)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def explore(function: Callable, **choices) -> object:
    """Show ``function`` behind drop-downs inside a Jupyter kernel (see ``explorer``); call it plainly elsewhere.

    Either way the function runs once with the first option of each control, so the plain output is what the widget
    starts with, and that first result is returned: assign it (``first = explore(...)``), otherwise Jupyter shows
    it as the cell's ``Out[]`` beside a widget that may later show something else. ``VLA_BACKBONE_WIDGETS=0``
    forces the plain path for a static rendering (book/build.sh sets it): a page without a kernel cannot drive a
    widget.
    """
    if os.environ.get("VLA_BACKBONE_WIDGETS") == "0" or not in_kernel():
        return function(**{name: options[0] if isinstance(options, (list, tuple)) else options
                           for name, options in choices.items()})
    from IPython.display import display

    widget = explorer(function, **choices)
    display(widget)
    return widget.result

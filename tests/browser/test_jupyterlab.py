"""The learner's path, in a real browser: JupyterLab 4 in Chromium, "Run All", then every option of every widget.

For each topic notebook in both languages, on a copy (the committed notebooks stay clean): open it in JupyterLab,
run all cells, then check the outputs a learner sees: no error, nothing on stderr, no stale ``Out[]`` beside a
widget. Then select every option of every drop-down and check that the widget's output changes, without a
traceback, and that the control labels are whole and in the notebook's language. A few screenshots (one of them a
Chinese plot) are saved in ``test-artifacts/browser/`` (or ``$VLA_BACKBONE_ARTIFACTS``).

Needs Debian's Chromium (``/usr/bin/chromium``, or ``$CHROMIUM``) and Playwright for Python; Playwright's own
browser download is never used. Without Chromium the tests skip, unless ``VLA_BACKBONE_REQUIRE_BROWSER=1`` (CI)
makes that a failure.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tools import suite

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("VLA_BACKBONE_ARTIFACTS", ROOT / "test-artifacts" / "browser"))
TOPICS = [name for name in suite.names() if not name.startswith("assignments/")]
NOTEBOOKS = [f"{lang}/{name}" for lang in suite.LANGS for name in TOPICS]
# Where a screenshot is worth keeping: "plot" is the notebook's first image output, "widget" its first widget.
SCREENSHOTS = {"en/07_input_require_grads": "widget", "zh/07_input_require_grads": "widget",
               "zh/08_gradient_checkpointing": "plot", "en/12_your_own_backbone": "widget",
               "zh/12_your_own_backbone": "widget"}
RUN_ALL_TIMEOUT_S = 300
OPTION_TIMEOUT_S = 60
HAN = re.compile(r"[\u4e00-\u9fff]")

# JupyterLab settings for a deterministic page: every cell attached to the DOM, no news or update checks.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 over a copy of the topic notebooks; yields its base URL and token."""
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium fonts-noto-cjk, or set CHROMIUM)"
        if os.environ.get("VLA_BACKBONE_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    base = tmp_path_factory.mktemp("jupyterlab")
    tree = base / "notebooks"
    for lang in suite.LANGS:
        (tree / lang).mkdir(parents=True)
        for name in TOPICS:
            shutil.copy(suite.NOTEBOOKS / lang / f"{name}.ipynb", tree / lang)
    for relative, settings in LAB_SETTINGS.items():
        path = base / "settings" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))
    port, token = _free_port(), secrets.token_hex(16)
    # A learner's JupyterLab: widgets on (conftest.py sends headless kernels down the plain path).
    learner_env = {name: value for name, value in os.environ.items() if name != "VLA_BACKBONE_WIDGETS"}
    env = {**learner_env, "JUPYTER_CONFIG_DIR": str(base / "config"), "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tree}",
               "--allow-root", "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={base / 'settings'}",
               f"--LabApp.workspaces_dir={base / 'workspaces'}"]
    log = open(base / "jupyterlab.log", "w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{(base / 'jupyterlab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield {"url": url, "token": token, "log": base / "jupyterlab.log"}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def page(lab):
    """One Chromium page with JupyterLab loaded; notebooks are opened in it one after another."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{lab['url']}/lab?token={lab['token']}&reset")
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started", timeout=120_000)
        page.evaluate("() => window.jupyterapp.restored")
        page.evaluate("() => { window.vla = {idle: 0}; }")
        yield page
        browser.close()


OPEN = """async (path) => {
    const app = window.jupyterapp;
    const panel = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
    await panel.context.ready;
    await panel.sessionContext.ready;
    panel.sessionContext.statusChanged.connect((_, status) => { if (status === 'idle') window.vla.idle += 1; });
    app.shell.activateById(panel.id);
    return panel.id;
}"""
PANEL = "(id) => Array.from(window.jupyterapp.shell.widgets('main')).find(widget => widget.id === id)"
RUN_ALL = f"""async (id) => {{
    const panel = ({PANEL})(id);
    window.jupyterapp.shell.activateById(id);
    await window.jupyterapp.commands.execute('notebook:run-all-cells');
    return true;
}}"""
STATE = f"""(id) => {{
    const panel = ({PANEL})(id);
    const cells = [];
    for (let index = 0; index < panel.content.model.cells.length; index++) {{
        const cell = panel.content.model.cells.get(index);
        if (cell.type !== 'code') continue;
        cells.push({{index, count: cell.executionCount, source: cell.sharedModel.getSource(),
                     outputs: cell.outputs.toJSON()}});
    }}
    return {{kernel: panel.sessionContext.session?.kernel?.status, cells}};
}}"""
CLOSE = f"""async (id) => {{
    const panel = ({PANEL})(id);
    if (!panel) return;
    await panel.sessionContext.shutdown();
    panel.dispose();
}}"""
WIDGET_TEXT = "(element) => element.querySelector('.widget-output').innerText"


def _wait_for_run_all(page, panel_id: str) -> dict:
    """Run All, then wait until every code cell has run and the kernel is idle; returns the notebook's state."""
    page.evaluate(RUN_ALL, panel_id)
    deadline = time.monotonic() + RUN_ALL_TIMEOUT_S
    while True:
        state = page.evaluate(STATE, panel_id)
        errors = [output for cell in state["cells"] for output in cell["outputs"] if output["output_type"] == "error"]
        done = all(cell["count"] is not None for cell in state["cells"])
        if (done or errors) and state["kernel"] == "idle":
            return state
        assert time.monotonic() < deadline, f"Run All did not finish in {RUN_ALL_TIMEOUT_S} s"
        time.sleep(0.5)


def _settled_text(page, widget, before_idle: int) -> str:
    """The widget's output once the kernel has handled the change (went idle again) and the page stopped changing."""
    page.wait_for_function("(count) => window.vla.idle > count", arg=before_idle, timeout=OPTION_TIMEOUT_S * 1000)
    text = widget.evaluate(WIDGET_TEXT)
    while True:
        page.wait_for_timeout(200)
        again = widget.evaluate(WIDGET_TEXT)
        if again == text:
            return text
        text = again


def _output_text(output: dict) -> str:
    text = output.get("text") or output.get("data", {}).get("text/plain") or output.get("evalue", "")
    return "".join(text) if isinstance(text, list) else str(text)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_run_all_then_every_widget_option(page, notebook):
    lang = notebook.split("/")[0]
    panel_id = page.evaluate(OPEN, f"{notebook}.ipynb")
    try:
        state = _wait_for_run_all(page, panel_id)
        problems = []
        for cell in state["cells"]:
            shows_widget = any("application/vnd.jupyter.widget-view+json" in output.get("data", {})
                               for output in cell["outputs"])
            for output in cell["outputs"]:
                kind = output["output_type"]
                if kind == "error":
                    problems.append(f"cell {cell['index']}: {output['ename']}: {output['evalue'][:300]}")
                elif kind == "stream" and output["name"] == "stderr":
                    problems.append(f"cell {cell['index']}: stderr: {_output_text(output)[:300]}")
                elif kind == "execute_result" and (shows_widget or cell["index"] == 0):
                    problems.append(f"cell {cell['index']}: a stale Out[] beside the output: {_output_text(output)[:100]}")
        assert problems == [], f"{notebook} after Run All:\n" + "\n".join(problems)

        panel = page.locator(f"[id='{panel_id}']")
        widgets = panel.locator(".widget-interact")
        explore_cells = [cell for cell in state["cells"] if re.search(r"^\w+ = explore\(", cell["source"], re.M)]
        assert widgets.count() == len(explore_cells), (
            f"{notebook}: {len(explore_cells)} cells call explore(), {widgets.count()} widgets are shown")
        for number in range(widgets.count()):
            widget = widgets.nth(number)
            widget.scroll_into_view_if_needed()
            labels = widget.locator(".widget-label").all()
            for label in labels:
                text, whole = label.evaluate("(element) => [element.innerText, element.scrollWidth <= element.clientWidth]")
                assert whole, f"{notebook}: the control label {text!r} is cut off"
                if lang == "zh":
                    assert HAN.search(text), f"{notebook}: the control label {text!r} is not in Chinese"
            text = widget.evaluate(WIDGET_TEXT)
            assert text.strip(), f"{notebook}: widget {number} shows nothing after Run All"
            for select in widget.locator("select").all():
                count = select.locator("option").count()
                # Every other option once, then back to the first one (which Run All showed).
                for index in [*range(1, count), 0] if count > 1 else []:
                    option = select.locator("option").nth(index).inner_text()
                    before = page.evaluate("() => window.vla.idle")
                    select.select_option(index=index)
                    changed = _settled_text(page, widget, before)
                    tracebacks = widget.locator(".widget-output [data-mime-type='application/vnd.jupyter.stderr']")
                    assert tracebacks.count() == 0, (
                        f"{notebook}: option {option!r} raised:\n{tracebacks.first.inner_text()[-2000:]}")
                    assert changed.strip() and changed != text, f"{notebook}: option {option!r} did not change the output"
                    text = changed
        kind = SCREENSHOTS.get(notebook)
        if kind:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            target = panel.locator(".jp-OutputArea-output img").first if kind == "plot" else widgets.first
            target.scroll_into_view_if_needed()
            target.screenshot(path=str(ARTIFACTS / f"{notebook.replace('/', '_')}_{kind}.png"))
    finally:
        page.evaluate(CLOSE, panel_id)

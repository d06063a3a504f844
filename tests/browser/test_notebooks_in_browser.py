"""Every notebook in a real browser, as a learner runs it: JupyterLab (`make lab`), Run > Run All Cells, then what a
person sees: no error output, every cell run, every plotly figure drawn with its data, every widget rendered; the
rollout panel's "set image" changes the pods it lists; the GPU dashboard updates, and stops when told.

A screenshot of each notebook goes to build/browser/ (the first figure or widget in view, else the top).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from labkit.course import notebook_order
from labkit.i18n import CHINESE, catalogue
from labkit.lessons import records

# The notebooks the lessons' records name (labkit.course.Lesson), in course order; with LABKIT_NOTEBOOK_ORDER=shuffled
# (as `make test` runs this pass, on a lab of its own) in an order drawn from LABKIT_SHUFFLE_SEED (else a new seed,
# printed in the test ids): no notebook may rely on another having run before it. LABKIT_BROWSER_EDITION=zh-CN runs
# the Chinese edition (notebooks/zh-CN/), as `make test` does: the strict pass runs the English one.
EDITION = os.environ.get("LABKIT_BROWSER_EDITION", "")
# The widgets' labels in the edition's language (its notebooks set LABKIT_LANG=zh_CN, so labkit labels in Chinese)
LABELS = catalogue(CHINESE) if EDITION == "zh-CN" else {}
NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS, SEED = notebook_order([NOTEBOOK_DIR / EDITION / f"{r.notebook}.ipynb" for r in records()])
IDS = [n.stem if SEED is None else f"{n.stem}@seed{SEED}" for n in NOTEBOOKS]
RUN_ALL_S = 900            # the slowest notebook runs in about 150 s alone; a loaded machine is slower
INTERACTION_S = 120
POLL_S = 1.0
RECLICK_S = 15             # how long a click gets to show in the panel's log before the next one
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# Read from the page: JupyterLab's own model of the open notebook (the cells, their outputs and prompts) and what
# the page draws for each output. `jupyterapp` is there because the server runs with --expose-app-in-browser.
STATE_JS = """
const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
if (!panel || !panel.content || !panel.sessionContext) return null;
const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
const cells = panel.content.widgets.map((cell, index) => {
  if (cell.model.type !== 'code') return null;
  const outputs = cell.model.outputs.toJSON().map(o => ({
    type: o.output_type, mimes: Object.keys(o.data || {}), ename: o.ename, evalue: o.evalue,
    traceback: (o.traceback || []).join('\\n')}));
  // plotly's JupyterLab renderer shows the figure's static PNG until the pointer enters it, then draws the graph
  const plots = [...cell.node.querySelectorAll('.jp-RenderedPlotly')].map(p => {
    const r = p.getBoundingClientRect();
    const img = p.querySelector('img.plot-img');
    const graph = p.querySelector('.plot-container') ? p : null;
    // calcdata: the points plotly computed per trace (the figure JSON may carry its arrays base64-encoded)
    const points = graph ? (graph.calcdata || []).reduce((n, trace) => n + (trace ? trace.length : 0), 0) : 0;
    return {image: img && img.naturalWidth ? img.naturalWidth : 0, graph: !!graph, points,
            // what plotly.js draws per trace: g.trace (scatter, bar, indicator, pie), g.table, g.hm (heatmap)
            drawn: graph ? graph.querySelectorAll('.main-svg g.trace, .main-svg g.table, .main-svg g.hm').length : 0,
            width: r.width, height: r.height};
  });
  // a widget's view sits right under its output area; views nested in it (an Output widget's figure) do not
  const widgets = [...cell.node.querySelectorAll('.jp-OutputArea-output')].filter(o =>
      o.querySelector(':scope > .jupyter-widgets') || o.textContent.includes('Error displaying widget')).map(o => ({
    views: o.querySelectorAll('.jupyter-widgets').length, text: o.textContent.slice(0, 300)}));
  return {index, count: cell.model.executionCount, prompt: cell.promptNode ? cell.promptNode.textContent : '',
          source: cell.model.sharedModel.getSource().slice(0, 120), outputs, plots, widgets};
}).filter(c => c !== null);
return {path: panel.context.path, ready: panel.context.isReady, kernel: kernel ? kernel.status : null, cells};
"""


class NotebookPage:
    """One notebook open in JupyterLab in the browser."""

    def __init__(self, driver: object, jupyter: object, notebook: Path, screenshots: Path) -> None:
        self.driver, self.jupyter, self.notebook, self.screenshots = driver, jupyter, notebook, screenshots

    def open(self) -> None:
        # a workspace of its own per notebook: only this notebook opens, whatever an earlier one left open
        path = self.notebook.relative_to(NOTEBOOK_DIR).as_posix()   # JupyterLab serves notebooks/
        self.driver.get(f"{self.jupyter.url}/lab/workspaces/{self.notebook.stem}/tree/{path}"
                        f"?token={self.jupyter.token}")
        self.wait(lambda s: s and s["path"] == path and s["ready"] and s["kernel"] == "idle",
                  timeout=180, what="the notebook open with its kernel idle")
        self.driver.execute_script("window.jupyterapp.shell.collapseLeft()")   # the notebook, full width

    def state(self) -> dict | None:
        return self.driver.execute_script(STATE_JS)

    def wait(self, ok: Callable[[dict | None], bool], *, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if ok(state):
                return state
            if time.monotonic() > deadline:
                self.screenshot("TIMEOUT")
                pytest.fail(f"{self.notebook.name}: no {what} within {timeout:.0f} s; kernel "
                            f"{state and state['kernel']}; cells still running: {_running(state)}", pytrace=False)
            time.sleep(POLL_S)  # the page has no event to wait on from here: poll its model

    def click_menu(self, menu: str, item: str) -> None:
        """What a person does: open a menu in the menu bar and click one of its items."""
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.XPATH, f"//li[contains(@class,'lm-MenuBar-item')]"
                                           f"[.//div[contains(@class,'lm-MenuBar-itemLabel')][text()='{menu}']]").click()
        self.driver.find_element(By.XPATH, f"//li[contains(@class,'lm-Menu-item')]"
                                           f"[.//div[contains(@class,'lm-Menu-itemLabel')][text()='{item}']]").click()

    def run_all(self) -> dict:
        # The stored outputs go first, so that everything checked afterwards comes from this run
        self.click_menu("Edit", "Clear Outputs of All Cells")
        self.wait(lambda s: all(c["count"] is None and not c["outputs"] for c in s["cells"]), timeout=30,
                  what="cleared outputs")
        self.click_menu("Run", "Run All Cells")
        # Run All queues every cell at once ([*]); it is over when none is pending and the kernel is idle
        return self.wait(lambda s: s["kernel"] == "idle" and not _running(s) and s["cells"][0]["count"] is not None,
                         timeout=RUN_ALL_S, what="end of Run All")

    def screenshot(self, suffix: str = "") -> Path:
        path = self.screenshots / f"{self.notebook.stem}{'-' + suffix if suffix else ''}.png"
        self.driver.save_screenshot(str(path))
        return path

    def draw_figures(self) -> dict:
        """Point at every figure still showing its static picture (as a reader does), so plotly draws the graph."""
        from selenium.webdriver.common.action_chains import ActionChains

        for figure in self.driver.execute_script(
                "return [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-RenderedPlotly')]"
                ".filter(p => !p.querySelector('.plot-container'))"):
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", figure)
            ActionChains(self.driver).move_to_element(figure).perform()
        return self.wait(lambda s: all(p["graph"] and p["drawn"] for c in s["cells"] for p in c["plots"]),
                         timeout=60, what="graph drawn under the pointer for every figure")

    def show_first_picture(self) -> None:
        """Scroll the first figure, widget or table into view (what the screenshot shows)."""
        self.driver.execute_script("""
            const el = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .js-plotly-plot')
              || document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jupyter-widgets')
              || document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output table');
            if (el) el.closest('.jp-Cell').scrollIntoView({block: 'start'});""")

    def shutdown(self) -> None:
        """Shut the notebook's kernel down (File > Shut Down Kernel would ask first), so the next starts clean."""
        for session in self.jupyter.api("GET", "/api/sessions"):
            if session["path"].endswith(self.notebook.name):
                self.jupyter.api("DELETE", f"/api/sessions/{session['id']}")


def _running(state: dict | None) -> list[int]:
    return [c["index"] for c in (state or {}).get("cells", []) if "*" in c["prompt"]]


def _problems(state: dict) -> list[str]:
    """Everything on the page a learner should not see, one line (or traceback) each."""
    problems = []
    for cell in state["cells"]:
        where = f"cell {cell['index']} ({cell['source'].splitlines()[0] if cell['source'] else 'empty'!r})"
        for out in cell["outputs"]:
            if out["type"] == "error":
                problems.append(f"{where} raised {out['ename']}: {out['evalue']}\n{ANSI.sub('', out['traceback'])}")
        if cell["count"] is None and cell["source"].strip():
            problems.append(f"{where} never ran")
        figures = sum("application/vnd.plotly.v1+json" in out["mimes"] for out in cell["outputs"])
        if len(cell["plots"]) < figures:
            problems.append(f"{where}: {figures} plotly figure(s) in its outputs, {len(cell['plots'])} drawn")
        for plot in cell["plots"]:
            if not plot["graph"] and not plot["image"]:
                problems.append(f"{where}: a figure shows neither its picture nor its graph")
            if plot["graph"] and (not plot["points"] or not plot["drawn"] or plot["height"] < 100):
                problems.append(f"{where}: a figure drawn as {plot['drawn']} traces of {plot['points']} points in "
                                f"{plot['width']:.0f}x{plot['height']:.0f} px")
        views = sum("application/vnd.jupyter.widget-view+json" in out["mimes"] for out in cell["outputs"])
        if len(cell["widgets"]) < views:
            problems.append(f"{where}: {views} widget(s) in its outputs, {len(cell['widgets'])} on the page")
        for widget in cell["widgets"]:
            if not widget["views"] or "Error displaying widget" in widget["text"]:
                problems.append(f"{where}: a widget not rendered: {widget['text']!r}")
    return problems


def _cell_node(driver: object, cell_index: int) -> object:
    return driver.execute_script("return window.jupyterapp.shell.currentWidget.content.widgets[arguments[0]].node",
                                 cell_index)


def _find(driver: object, cell_index: int, css: str, text: str | None = None) -> object:
    """An element inside one cell, by CSS selector (and visible text)."""
    from selenium.webdriver.common.by import By

    for element in _cell_node(driver, cell_index).find_elements(By.CSS_SELECTOR, css):
        if text is None or element.text.strip() == text:
            return element
    pytest.fail(f"no {css!r}{' saying ' + repr(text) if text else ''} in cell {cell_index}", pytrace=False)


def _cell_of(state: dict, starts: str) -> int:
    return next(c["index"] for c in state["cells"] if c["source"].startswith(starts))


def _until(check: Callable[[], object], *, what: str, timeout: float = INTERACTION_S) -> object:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:.0f} s", pytrace=False)
        time.sleep(POLL_S)  # the widget's state lives in the kernel; the page shows it when it arrives
    return value


def label(text: str) -> str:
    """A widget's label as this edition's notebooks show it."""
    return LABELS.get(text, text)


def set_image_changes_the_pods(page: NotebookPage, state: dict) -> None:
    """Notebook 01's rollout panel: type an image, press "set image", press "refresh" until the pods list shows it."""
    cell = _cell_of(state, "panel = lk.widgets.RolloutPanel")
    image = "nginx:1.27.3"
    field = _find(page.driver, cell, "input[placeholder='nginx:1.27']")
    page.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", field)
    field.clear()
    field.send_keys(image)

    def clicked_once_the_kernel_has_the_image() -> bool:
        # The field's keystrokes reach the kernel as throttled state updates, the click at once: on a busy machine
        # the click can beat the last keystrokes (the log then names part of the image, or asks for one), as it
        # could for a learner who clicks fast. Click again until the kubectl line names the whole image.
        _find(page.driver, cell, "button", label("set image")).click()
        settle = time.monotonic() + RECLICK_S
        while time.monotonic() < settle:
            if any(f"set image deployment/web *={image}" in e.text for e in _cells_html(page, cell)):
                return True
            time.sleep(POLL_S)
        return False

    _until(clicked_once_the_kernel_has_the_image, what="the kubectl line in the panel's log")

    def pods_on_new_image() -> bool:
        _find(page.driver, cell, "button", label("refresh")).click()
        tables = [e.text for e in _cells_html(page, cell) if e.text.lstrip().startswith("pod")]   # pods by revision
        return any(image in t for t in tables)

    _until(pods_on_new_image, what=f"pod listed with {image} in the panel")
    page.screenshot("rollout-panel")


def _cells_html(page: NotebookPage, cell: int) -> list:
    """The HTML widgets' contents in one cell (the panel's log and tables, the dashboard's status line)."""
    from selenium.webdriver.common.by import By

    return _cell_node(page.driver, cell).find_elements(By.CSS_SELECTOR, ".widget-html-content")


def dashboard_updates_and_stops(page: NotebookPage, state: dict) -> None:
    """Notebook 12's GPU dashboard: run its cell again (Shift+Enter), watch it redraw, press Stop, see it stay."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    cell = _cell_of(state, "dash = g12.gpu_dashboard")
    editor = _find(page.driver, cell, ".jp-InputArea-editor")
    page.driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", editor)
    editor.click()
    ActionChains(page.driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()

    def status() -> str:
        return " ".join(e.text for e in _cells_html(page, cell))

    def update_number() -> int:
        found = re.search(r"update (\d+)", status())
        return int(found.group(1)) if found else 0

    first = _until(update_number, what="first dashboard update")
    _until(lambda: update_number() >= first + 2, what="two more dashboard updates")
    drawn = page.state()["cells"]
    plots = next(c["plots"] for c in drawn if c["index"] == cell)
    assert plots and all(p["drawn"] and p["points"] for p in plots), f"dashboard figure not drawn: {plots}"
    page.driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", editor)   # Shift+Enter moved on
    page.screenshot("gpu-dashboard")
    _find(page.driver, cell, "button", label("Stop")).click()
    stopped = _until(lambda: re.search(r"stopped after (\d+) updates", status()), what="'stopped after N updates'")
    assert not _find(page.driver, cell, "button", label("Stop")).is_enabled(), "the Stop button stays pressable"
    # Stopped means no redraw for several intervals: an absence, which only watching for a while can show.
    time.sleep(3 * 2)
    assert re.search(r"stopped after (\d+) updates", status()).group(0) == stopped.group(0), status()


INTERACTIONS: dict[str, Callable[[NotebookPage, dict], None]] = {
    "01_deployment_rollouts": set_image_changes_the_pods,
    "12_gpu_monitoring": dashboard_updates_and_stops,
}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_a_learner_runs_the_notebook_in_the_browser(jupyter, browser, screenshots, notebook: Path) -> None:
    page = NotebookPage(browser, jupyter, notebook, screenshots)
    page.open()
    try:
        state = page.run_all()
        problems = _problems(state)   # what Run All left: static pictures of the figures, widgets, outputs
        if not problems:
            problems = _problems(page.draw_figures())
        page.show_first_picture()
        page.screenshot()
        assert not problems, f"{notebook.name} in the browser:\n" + "\n\n".join(problems)
        if interact := INTERACTIONS.get(notebook.stem):
            interact(page, state)
    except BaseException:
        page.screenshot("FAILED")
        raise
    finally:
        page.shutdown()


def test_the_checks_name_what_a_learner_would_see() -> None:
    """The page checks above, on a page state with one of each fault: each is reported, a clean cell is not."""
    def cell(index: int, **kw: object) -> dict:
        return {"index": index, "count": index, "prompt": f"[{index}]:", "source": f"cell_{index}()", "outputs": [],
                "plots": [], "widgets": [], **kw}

    figure = {"type": "display_data", "mimes": ["application/vnd.plotly.v1+json", "image/png"]}
    widget = {"type": "display_data", "mimes": ["application/vnd.jupyter.widget-view+json", "text/plain"]}
    state = {"cells": [
        cell(1),
        cell(2, outputs=[{"type": "error", "mimes": [], "ename": "WaitTimeout", "evalue": "no pod",
                          "traceback": "\x1b[31mWaitTimeout\x1b[0m: no pod"}]),
        cell(3, count=None, prompt="[ ]:"),
        cell(4, outputs=[figure]),
        cell(5, outputs=[figure], plots=[{"image": 0, "graph": True, "points": 12, "drawn": 0, "width": 900,
                                          "height": 360}]),
        cell(6, outputs=[widget], widgets=[{"views": 0, "text": "Error displaying widget: model not found"}]),
        cell(7, outputs=[figure, widget], plots=[{"image": 900, "graph": True, "points": 3, "drawn": 1,
                                                  "width": 900, "height": 360}],
             widgets=[{"views": 4, "text": "Stop"}]),
    ]}
    problems = _problems(state)
    assert [p.split(" ", 2)[1] for p in problems] == ["2", "3", "4", "5", "6"], problems
    assert "raised WaitTimeout: no pod" in problems[0] and "\x1b" not in problems[0]
    assert "never ran" in problems[1] and "0 drawn" in problems[2] and "0 traces of 12 points" in problems[3]
    assert "Error displaying widget" in problems[4]

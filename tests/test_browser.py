"""JupyterLab end to end: open 01_priors.ipynb in headless Chromium, Run All, move the anchor
explorer's slider with the keyboard and check that the kernel redrew for the new location.

Uses Debian's chromium (``make chromium`` installs it) through the ``playwright`` package; no
browser is downloaded. Skipped when either is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "01_priors.ipynb"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# The status line the explorer writes after each redraw, e.g. "location (19, 20): 4 boxes".
LOCATION = re.compile(r"location \((\d+), (\d+)\): (\d+) boxes")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"jupyter lab not answering on {url}")


@contextlib.contextmanager
def jupyter_lab(tmp_path: Path):
    """A JupyterLab server on a free port, token off, rooted at a copy of the notebook, with its
    settings, workspaces and runtime files under ``tmp_path`` (nothing from ~/.jupyter leaks in).
    Yields the base URL."""
    work = tmp_path / "lab"
    work.mkdir(parents=True)
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)  # the committed notebook is never modified
    settings = tmp_path / "settings"
    settings.mkdir()
    # Silence the "get notified about Jupyter news" toast, which can cover the notebook.
    (settings / "overrides.json").write_text(json.dumps({
        "@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"}
    }))  # fmt: skip
    port = free_port()
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "MPLBACKEND": "Agg",
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}  # fmt: skip
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
           f"--port={port}", "--IdentityProvider.token=", "--ServerApp.password=",
           f"--ServerApp.root_dir={work}"]  # fmt: skip
    log = open(tmp_path / "lab.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    try:
        wait_for_server(f"http://127.0.0.1:{port}/api/status", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def status_text(page) -> str:
    """Text of the explorer's status line (the HTML widget under the picture). textContent, not
    innerText: JupyterLab skips rendering off-screen cells, and innerText of an unrendered
    element is "" (seen once in a loaded clean-checkout run)."""
    status = page.locator(".jp-OutputArea-output .widget-html").filter(has_text="location (").first
    return status.text_content() or ""


PROMPTS = "[...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(e => e.textContent.trim())"
NOTEBOOK_STATE = f"""() => ({{
    prompts: {PROMPTS},
    kernel: document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status ?? null,
    dialog: document.querySelector('.jp-Dialog')?.textContent ?? null,
    errors: [...document.querySelectorAll(
        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")]
            .map(e => e.textContent).filter(t => t.includes('Error')).map(t => t.slice(-800)),
}})"""


class RunAllStalled(AssertionError):
    """Run All ran no cell at all: the kernel never answered (seen on loaded CI machines)."""


def run_all_cells(page, log: Path, stall: float = 120, timeout: float = 300) -> None:
    """Clear every output, Run All from the Run menu and wait until every code cell has an
    execution count again (the committed notebook already shows counts, hence the clearing).

    Fails at once, with what the page shows, when a dialog opens or a cell raises (Run All then
    stops and the later prompts stay empty). Raises ``RunAllStalled`` when no cell has finished
    after ``stall`` seconds, and fails when not all have after ``timeout``; both report the
    prompts, the kernel status and the server log."""
    page.click(".lm-MenuBar-itemLabel:text-is('Edit')", timeout=30_000)
    page.click(".lm-Menu-itemLabel:text-is('Clear Outputs of All Cells')", timeout=30_000)
    page.wait_for_function(f"() => !({PROMPTS}).some(x => /\\d/.test(x))", timeout=30_000)
    page.click(".lm-MenuBar-itemLabel:text-is('Run')", timeout=30_000)
    # Exact label: a substring match could also take "Restart Kernel and Run All Cells…".
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')", timeout=30_000)
    start = time.monotonic()
    while True:
        state = page.evaluate(NOTEBOOK_STATE)
        done = [re.fullmatch(r"\[\d+\]:?", x) is not None for x in state["prompts"]]
        if done and all(done):
            return
        waited = time.monotonic() - start
        failed = bool(state["dialog"] or state["errors"])
        stalled = not failed and not any(done) and waited > stall
        if failed or stalled or waited > timeout:
            server_log = log.read_text()[-3000:] if log.exists() else ""
            report = (f"Run All did not finish in {waited:.0f} s: {json.dumps(state, indent=1)}\n"
                      f"jupyter lab log (tail):\n{server_log}")  # fmt: skip
            if stalled:
                raise RunAllStalled(report)
            pytest.fail(report)
        time.sleep(1)


def test_anchor_explorer_slider_in_jupyterlab(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed (make chromium)")
    pytest.importorskip("playwright.sync_api")
    # One retry, on a fresh server and browser, only when Run All ran no cell at all: a kernel
    # that never answers is the lab's failure, not the explorer's, and the report is kept.
    try:
        explore(tmp_path / "try1")
    except RunAllStalled as stalled:
        warnings.warn(f"retrying on a fresh JupyterLab after: {stalled}", stacklevel=1)
        explore(tmp_path / "try2")


def explore(tmp_path: Path) -> None:
    """Open the notebook, Run All, move the column slider one step and check the redraw."""
    from playwright.sync_api import sync_playwright

    with jupyter_lab(tmp_path) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/{NOTEBOOK.name}", wait_until="domcontentloaded")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            # Kernel ready before Run All, so no cell is queued against a starting kernel.
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                                   timeout=120_000)  # fmt: skip
            page.click(".jp-Notebook")
            page.keyboard.press("Escape")
            try:
                run_all_cells(page, tmp_path / "lab.log")
            except BaseException:
                page.screenshot(path=str(tmp_path / "run_all_failed.png"))
                raise
            assert page.locator(".jp-OutputArea-output .jp-OutputArea-executeResult, "
                                ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                                ).filter(has_text="Traceback").count() == 0  # fmt: skip

            sliders = page.locator(".jp-OutputArea-output .widget-slider")
            sliders.first.wait_for(timeout=60_000)
            column = sliders.filter(has_text="column j").first
            column.scroll_into_view_if_needed()
            before = LOCATION.search(status_text(page))
            assert before is not None, status_text(page)
            i0, j0 = int(before[1]), int(before[2])
            img_before = page.locator(".jp-OutputArea-output img.widget-image").first.get_attribute("src")

            handle = column.locator(".noUi-handle, [role=slider]").first
            handle.focus()
            page.keyboard.press("ArrowRight")
            # The kernel recomputes the boxes and rewrites the status line: wait for the new column.
            page.wait_for_function(
                """([i, j]) => [...document.querySelectorAll('.jp-OutputArea-output .widget-html')]
                    .some(e => e.textContent.includes(`location (${i}, ${j}):`))""",
                arg=[i0, j0 + 1],
                timeout=60_000,
            )
            after = LOCATION.search(status_text(page))
            assert (int(after[1]), int(after[2])) == (i0, j0 + 1)
            assert column.locator(".widget-readout").first.inner_text().strip() == str(j0 + 1)
            page.wait_for_function(
                "(old) => document.querySelector('.jp-OutputArea-output img.widget-image').src !== old",
                arg=img_before,
                timeout=60_000,
            )
            page.screenshot(path=str(tmp_path / "anchor_explorer.png"))
        finally:
            browser.close()
    assert (tmp_path / "anchor_explorer.png").stat().st_size > 10_000

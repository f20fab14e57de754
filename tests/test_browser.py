"""JupyterLab end to end: open 01_priors.ipynb in headless Chromium, Run All, move the anchor
explorer's slider with the keyboard and check that the kernel redrew for the new location.

Uses Debian's chromium (``make chromium`` installs it) through the ``playwright`` package; no
browser is downloaded. Skipped when either is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
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


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a free port, token off, rooted at a copy of the notebook."""
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed (make chromium)")
    pytest.importorskip("playwright.sync_api")
    work = tmp_path / "lab"
    work.mkdir()
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)  # the committed notebook is never modified
    settings = tmp_path / "settings"
    settings.mkdir()
    # Silence the "get notified about Jupyter news" toast, which can cover the notebook.
    (settings / "overrides.json").write_text(json.dumps({
        "@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"}
    }))  # fmt: skip
    port = free_port()
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings), "MPLBACKEND": "Agg",
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}  # fmt: skip
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
           f"--port={port}", "--IdentityProvider.token=", "--ServerApp.password=",
           f"--ServerApp.root_dir={work}"]  # fmt: skip
    log = open(tmp_path / "lab.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    try:
        wait_for_server(f"http://127.0.0.1:{port}/api/status", proc)
        yield f"http://127.0.0.1:{port}", work
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


def test_anchor_explorer_slider_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    base, _ = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/{NOTEBOOK.name}", wait_until="domcontentloaded")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            # Kernel ready before Run All, so no cell is queued against a starting kernel.
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                                   timeout=60_000)  # fmt: skip
            page.click(".jp-Notebook")
            page.keyboard.press("Escape")
            page.click("text=Run", timeout=10_000)
            page.click("text=Run All Cells", timeout=10_000)
            # Every cell ran: every prompt shows a number, none is pending ("[*]").
            page.wait_for_function(
                """() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
                           .map(e => e.textContent.trim());
                           return p.length > 0 && p.every(x => /\\[\\d+\\]/.test(x)); }""",
                timeout=240_000,  # generous: under `pytest -n 2` the other worker trains models
            )
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

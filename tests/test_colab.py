"""Colab, simulated: a fresh environment holding what Colab preinstalls, ipywidgets 7.7 as Colab
has it, a stub ``google.colab`` module, the notebook's own install cell pointed at this checkout
(``git+file://``), and the notebook run to the end from a folder outside the checkout (as
``/content``).

torch, torchvision, numpy, matplotlib, ipykernel... come from the project's locked environment
through a ``.pth`` line (Colab preinstalls them too); ipywidgets 7.7.5 is installed into the fresh
environment, whose own site-packages come first. ssdlib itself is *not* visible until the install
cell has run. Needs the package registry once for ipywidgets 7.7 and the build backend.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import nbformat
import pytest
from notebook_runner import rerun_on_cell_timeout

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "06_demo.ipynb"

pytestmark = pytest.mark.slow
CELL_TIMEOUT = 240  # seconds; the slowest cell takes a few


def _run(cmd, **kw):
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)
    assert done.returncode == 0, f"{cmd}: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    if not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout (the install cell installs git+file://)")
    tmp = tmp_path_factory.mktemp("colab")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([str(python), "-c", purelib]).stdout.strip())
    # What Colab preinstalls: the locked environment's packages, after the venv's own.
    (site / "colab_preinstalled.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    colab_pkg = site / "google" / "colab"
    colab_pkg.mkdir(parents=True)
    (colab_pkg / "__init__.py").write_text('"""Stub: its presence is what the notebooks test."""\n')
    # Colab's Python has imported google.colab before any cell runs; so does this one.
    (site / "zz_colab_loaded.pth").write_text("import google.colab\n")
    _run([sys.executable, "-m", "pip", "install", "-q", "--target", str(site), "--no-deps",
          "ipywidgets==7.7.5", "widgetsnbextension==3.6.10", "jupyterlab_widgets==1.1.11",
          "ipython_genutils==0.2.0"])  # ipywidgets 7's own dependency, preinstalled on Colab
    check = _run([str(python), "-c", "import ipywidgets, torch; print(ipywidgets.__version__)\n"
                  "import importlib.util; print(importlib.util.find_spec('ssdlib'))"], cwd=tmp)  # fmt: skip
    assert check.stdout.split() == ["7.7.5", "None"], check.stdout
    return python, tmp


def test_anchor_explorer_and_slider_work_with_ipywidgets_7(colab):
    python, tmp = colab
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        import ipywidgets
        assert ipywidgets.__version__.startswith("7.7"), ipywidgets.__version__
        from ssdlib.config import load_config
        from ssdlib.viz.anchor_explorer import AnchorExplorer
        explorer = AnchorExplorer(load_config("ssd300_voc").priors)
        explorer.map_index.value = 2
        explorer.row.value = 3
        assert explorer.state["map"] == 2 and explorer.state["location"][0] == 3, explorer.state
        assert explorer.picture.value[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
        import torch
        objects = [torch.tensor([[0.1, 0.1, 0.4, 0.5], [0.5, 0.5, 0.51, 0.51]])]  # the 3 px one: uncovered
        overlay = AnchorExplorer(load_config("ssd300_voc").priors, objects=objects)
        assert overlay.state["objects"]["uncovered"].tolist() == [1], overlay.state["objects"]
        assert overlay.objects_picture.value[:8] == explorer.picture.value[:8]  # a PNG too
        overlay.min_size.value = 20
        assert overlay.grid([{{"map_index": 4}}, {{"show": "objects"}}]).axes[1].get_title().startswith(
            "2 objects, 1 below IoU 0.5")
        slider = ipywidgets.FloatSlider(0.5, min=0.02, max=0.95, step=0.01)
        seen = []
        ipywidgets.interactive(lambda threshold: seen.append(threshold), threshold=slider)
        slider.value = 0.3
        assert seen[-1] == 0.3, seen
        print("ok")
    """)
    assert _run([str(python), "-c", script], cwd=tmp).stdout.strip().endswith("ok")


def test_notebook_installs_and_runs_from_outside_the_checkout(colab):
    python, tmp = colab
    content = tmp / "content"  # Colab's working directory
    content.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # The notebook runs in ~30 s; a cell that times out (exit code 3) is run once more in a fresh
    # kernel (rerun_on_cell_timeout); an error in a cell fails at once.
    runner = textwrap.dedent(f"""
        import sys
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellTimeoutError
        nb = nbformat.read({str(NOTEBOOK)!r}, as_version=4)
        try:
            NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                           resources={{"metadata": {{"path": {str(content)!r}}}}}).execute()
        except CellTimeoutError as e:
            print(e, file=sys.stderr)
            sys.exit(3)
        nbformat.write(nb, "executed.ipynb")
    """).replace("CELL_TIMEOUT", str(CELL_TIMEOUT))
    env = {**os.environ, "SSDLIB_SOURCE": f"git+file://{ROOT}", "MPLBACKEND": "Agg",
           "PYTHONPATH": "", "SSDLIB_DATA": "", "SSDLIB_OUTPUTS": ""}
    env = {k: v for k, v in env.items() if v != ""}
    done = rerun_on_cell_timeout(
        lambda: subprocess.run([str(python), "-c", runner], capture_output=True, text=True,
                               cwd=content, env=env, timeout=3 * CELL_TIMEOUT),
        lambda d: d.returncode == 3, NOTEBOOK.name, CELL_TIMEOUT)  # fmt: skip
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    done = nbformat.read(content / "executed.ipynb", as_version=4)
    first = "".join(o.get("text", "") for o in done.cells[next(
        i for i, c in enumerate(nb.cells) if c.cell_type == "code")].outputs)
    assert f"installed ssdlib from git+file://{ROOT}" in first, first
    errors = [o for c in done.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors[0]
    # The data and outputs rule points at the working directory, as at Colab's /content.
    setup = "".join(o.get("text", "") for c in done.cells if c.cell_type == "code" for o in c.outputs)
    assert f"data: {content / 'data'}, outputs: {content / 'outputs'}" in setup, setup[:2000]
    installed = _run([str(python), "-c", "import ssdlib; print(ssdlib.__file__)"], cwd=content).stdout
    assert str(ROOT) not in installed, "ssdlib must come from the install cell, not the checkout"


def test_a_missing_source_prints_one_line(colab):
    python, tmp = colab
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    env = {**os.environ, "SSDLIB_SOURCE": f"git+file://{tmp}/no-such-repo"}
    done = subprocess.run([str(python), "-c", cell.source], capture_output=True, text=True, env=env,
                          cwd=tmp, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith(f"could not install ssdlib from git+file://{tmp}/no-such-repo: "), lines
    assert "Traceback" not in done.stdout + done.stderr

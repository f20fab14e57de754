"""The course notebooks keep their shape: they all exist, open with what the learner will learn
and how long it takes, have the Colab cell, end with a summary and exercises whose solutions are
hidden in ``<details>``, and are committed executed top to bottom without errors.

Fast (reads the files only); nbval runs the notebooks themselves.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
COURSE = (
    "00_data_setup.ipynb",
    "01_priors.ipynb",
    "02_vgg_backbone.ipynb",
    "03_matching_and_loss.ipynb",
    "04_gpu_training.ipynb",
    "05_evaluation.ipynb",
    "06_demo.ipynb",
    "07_your_own_data.ipynb",
)


def _read(name: str) -> nbformat.NotebookNode:
    path = NOTEBOOKS / name
    assert path.is_file(), f"{path} is missing"
    return nbformat.read(path, as_version=4)


def test_the_course_is_complete():
    found = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert found == sorted(COURSE), f"notebooks/ holds {found}"


@pytest.mark.parametrize("name", COURSE)
def test_opens_with_goals_and_duration(name):
    first = _read(name).cells[0]
    assert first.cell_type == "markdown"
    assert first.source.lstrip().startswith("# "), "first cell: a title"
    assert "what you will learn" in first.source.lower()
    assert re.search(r"\d+\s*minutes?", first.source), "first cell: how long it takes"


@pytest.mark.parametrize("name", COURSE)
def test_has_the_colab_cell(name):
    code = [c for c in _read(name).cells if c.cell_type == "code"]
    assert code and "google.colab" in code[0].source, "the first code cell installs ssdlib on Colab"


@pytest.mark.parametrize("name", COURSE)
def test_ends_with_summary_and_hidden_solutions(name):
    last = _read(name).cells[-1]
    assert last.cell_type == "markdown"
    text = last.source
    assert "## Summary" in text and "## Exercises" in text
    assert text.index("## Summary") < text.index("## Exercises")
    exercises = text[text.index("## Exercises") :]
    assert "<details>" in exercises and exercises.count("<details>") == exercises.count("</details>")


@pytest.mark.parametrize("name", COURSE)
def test_committed_executed_top_to_bottom(name):
    code = [c for c in _read(name).cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert None not in counts, f"cells not executed: {[i for i, n in enumerate(counts) if n is None]}"
    assert counts == list(range(1, len(code) + 1)), "executed in order, in one kernel"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"error outputs: {[e.get('ename') for e in errors]}"


@pytest.mark.parametrize("name", ["05_evaluation.ipynb", "06_demo.ipynb"])
def test_05_and_06_use_the_shipped_model_and_train_nothing(name):
    # They show a detector that works: the shipped make-demo model, loaded offline. Training
    # belongs to notebook 04.
    code = "\n".join(c.source for c in _read(name).cells if c.cell_type == "code")
    assert 'load_shipped("shapes")' in code
    tree = ast.parse("\n".join(x for x in code.splitlines() if not x.lstrip().startswith(("%", "!"))))
    calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert "train" not in calls, f"{name} calls train()"


@pytest.mark.parametrize("name", COURSE)
def test_notebook_and_its_jupytext_source_agree(name):
    # notebooks/NN_name.py (jupytext percent format) is the reviewed source; `make notebooks`
    # syncs and executes. The two must hold the same cells, sources and nbval tags.
    import jupytext

    script = NOTEBOOKS / name.replace(".ipynb", ".py")
    assert script.is_file(), f"{script} is missing (jupytext --set-formats ipynb,py:percent)"
    paired = jupytext.read(script)
    committed = _read(name)
    assert committed.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"

    def cells(nb):
        return [(c.cell_type, c.source, sorted(c.metadata.get("tags", []))) for c in nb.cells]

    ours, theirs = cells(paired), cells(committed)
    assert len(ours) == len(theirs), f"{script.name} has {len(ours)} cells, {name} {len(theirs)}"
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a == b, f"cell {i} differs between {script.name} and {name}: run `make notebooks`"


@pytest.mark.parametrize("name", COURSE)
def test_nbval_markers_are_tags_not_code(name):
    for i, cell in enumerate(_read(name).cells):
        assert "NBVAL_" not in cell.source, f"cell {i}: use the nbval-* cell tags"


def _repository() -> str:
    import tomllib

    project = tomllib.loads((NOTEBOOKS.parent / "pyproject.toml").read_text())["project"]
    return project["urls"]["Repository"]


@pytest.mark.parametrize("name", COURSE)
def test_colab_link_install_source_and_gpu_runtime_come_from_pyproject(name):
    nb = _read(name)
    repo = _repository()
    owner_name = repo.split("github.com/", 1)[1]
    link = f"https://colab.research.google.com/github/{owner_name}/blob/main/notebooks/{name}"
    assert link in nb.cells[0].source, f"{name}: the Open-in-Colab link must be {link}"
    install = next(c for c in nb.cells if c.cell_type == "code").source
    assert f'SSDLIB_SOURCE = "git+{repo}"' in install
    assert "[notebooks]" not in install, "Colab gets the core package: its own jupyter/ipywidgets stay"
    assert "check=True" not in install, "a failed install prints one line, never a traceback"
    assert nb.metadata.get("accelerator") == "GPU" and "gpuType" in nb.metadata.get("colab", {})

"""The torch/torchvision floor: equal to pyproject's bounds, and ``import ssdlib`` refuses older."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from ssdlib.versions import MIN_VERSIONS, check_versions, installed_versions, release, too_old

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("text", "expected"), [
    ("2.8.0", (2, 8, 0)),
    ("2.8.0+cu128", (2, 8, 0)),
    ("0.23.0+cpu", (0, 23, 0)),
    ("2.9.0a0+git1234abc", (2, 9, 0)),
    ("2.10", (2, 10)),
])  # fmt: skip
def test_release_reads_the_leading_numbers(text, expected):
    assert release(text) == expected


def test_release_refuses_what_is_not_a_version():
    with pytest.raises(ValueError, match="not a version"):
        release("unknown")


def test_too_old_names_each_package_below_its_floor_and_only_those():
    floor = {"torch": (2, 8), "torchvision": (0, 23)}
    assert too_old({"torch": "2.8.0", "torchvision": "0.23.0"}, floor) == []
    assert too_old({"torch": "2.10.1", "torchvision": "0.25.0+cu126"}, floor) == []  # 10 > 8, not "1" < "8"
    assert too_old({"torch": "2.7.1+cu126", "torchvision": "0.23.0"}, floor) == [
        "torch 2.7.1+cu126 (needs >= 2.8)"]  # fmt: skip
    assert too_old({"torch": "2.2.0", "torchvision": "0.17.0"}, floor) == [
        "torch 2.2.0 (needs >= 2.8)", "torchvision 0.17.0 (needs >= 0.23)"]  # fmt: skip
    assert too_old({"torchvision": "0.17.0"}, floor) == ["torchvision 0.17.0 (needs >= 0.23)"]


def test_check_versions_raises_an_import_error_naming_installed_and_needed():
    with pytest.raises(ImportError) as info:
        check_versions({"torch": "2.2.0", "torchvision": "0.23.0"})
    low = ".".join(map(str, MIN_VERSIONS["torch"]))
    assert str(info.value).startswith(f"ssdlib needs newer packages: torch 2.2.0 (needs >= {low});")
    assert "pip install -U 'torch>=" in str(info.value)


def test_the_installed_torch_and_torchvision_pass():
    found = installed_versions()
    assert set(found) == {"torch", "torchvision"}
    check_versions(found)


def test_floor_equals_pyproject_bounds():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    bounds = {}
    for req in map(Requirement, deps):
        if req.name in MIN_VERSIONS:
            (spec,) = req.specifier
            assert spec.operator == ">="
            bounds[req.name] = release(spec.version)
    assert bounds == MIN_VERSIONS


def test_import_ssdlib_with_an_old_torch_installed_fails_with_one_clear_line(tmp_path):
    # A fake torch 2.2.0 distribution first on sys.path: importlib.metadata finds it first.
    dist = tmp_path / "torch-2.2.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.2.0\n")
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); sys.path.insert(0, {str(ROOT)!r}); "
            "import ssdlib")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith(
        "ImportError: ssdlib needs newer packages: torch 2.2.0 (needs >= 2.")
    assert "torch" not in subprocess.run(  # the check itself imports no torch
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); import ssdlib; "
         "print(' '.join(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))"],
        capture_output=True, text=True, timeout=60, check=True).stdout

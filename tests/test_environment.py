"""The three descriptions of the environment must agree: pyproject.toml (compatible ranges),
requirements/lock.txt (exact pins used by the Makefile) and environment.yml (conda)."""

import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements/lock.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements/lock.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def conda_env():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = {}
    for item in pip:
        if item.startswith("-e"):
            continue
        req = Requirement(item)
        (spec,) = req.specifier
        assert spec.operator == "==", f"environment.yml: {item} is not an exact pin"
        pins[canonicalize_name(req.name)] = spec.version
    return python, pins


def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_environment_yml_pins_equal_lock():
    python, pins = conda_env()
    assert python == ["python=3.11"]
    lock = lock_pins()
    for name, version in pins.items():
        assert lock.get(name) == version, f"environment.yml pins {name}=={version}, lock has {lock.get(name)}"


def test_every_dependency_is_pinned_and_inside_its_range():
    _, pins = conda_env()
    lock = lock_pins()
    proj = project()
    reqs = [Requirement(r) for r in proj["dependencies"]]
    reqs += [Requirement(r) for group in proj["optional-dependencies"].values() for r in group]
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not in environment.yml"
        assert name in lock, f"{req.name} is in pyproject.toml but not in requirements/lock.txt"
        assert req.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {req}"


def test_python_version():
    assert project()["requires-python"] == ">=3.11"
    assert "python3.11" in (ROOT / "Makefile").read_text()


def test_torch_pins_are_the_ones_on_this_disk():
    import torch
    import torchvision

    lock = lock_pins()
    installed = (torch.__version__.split("+")[0], torchvision.__version__.split("+")[0])
    assert (lock["torch"], lock["torchvision"]) == installed

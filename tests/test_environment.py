"""environment.yml (conda) must describe the same environment as pyproject.toml."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.conftest import REPO

CONDA_NAMES = {"pytorch": "torch"}  # conda package name -> PyPI name


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*(.*)$", req)
    assert m, req
    name = re.sub(r"\[.*\]", "", m.group(1)).lower().replace("_", "-")
    return CONDA_NAMES.get(name, name), m.group(2).replace(" ", "")


def test_environment_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = dict(_split(r) for r in project["dependencies"])
    for extra in ("book", "test"):
        wanted.update(_split(r) for r in project["optional-dependencies"][extra])

    env = yaml.safe_load((REPO / "environment.yml").read_text())
    have: dict[str, str] = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            have.update(_split(r) for r in dep["pip"] if not r.startswith("-e"))
        else:
            have.update([_split(dep)])
    python = have.pop("python")
    have.pop("pip")
    assert python == ">=" + project["requires-python"].lstrip(">=")
    assert have == wanted, {k: (have.get(k), wanted.get(k)) for k in set(have) | set(wanted) if have.get(k) != wanted.get(k)}
    assert "-e ." in env["dependencies"][-1]["pip"], "environment.yml should install the package itself"

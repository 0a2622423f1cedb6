"""The chapters as files: listed in the table of contents, stored clean, same first cell."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import REPO

FIRST_CELL = (REPO / "scripts" / "first_cell.py").read_text().rstrip("\n")
NOTEBOOKS = sorted((REPO / "book").glob("*.ipynb"))
TOC = yaml.safe_load((REPO / "_toc.yml").read_text())
TOC_FILES = [TOC["root"]] + [c["file"] for p in TOC["parts"] for c in p["chapters"]]


def test_every_toc_entry_exists():
    for f in TOC_FILES:
        assert (REPO / f"{f}.ipynb").exists() or (REPO / f"{f}.md").exists(), f


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_and_starts_with_the_shared_cell(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code), "stored with outputs"
    assert "".join(code[0]["source"]).rstrip("\n") == FIRST_CELL, "first cell differs from scripts/first_cell.py"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert f"book/{path.stem}" in TOC_FILES, f"{path.name} is not in _toc.yml"
    if path.stem[:2].isdigit():  # a chapter (not a how-to page) checks what it derives
        assert any("assert " in "".join(c["source"]) for c in code), "no numerical check in the chapter"

"""The published rows the side-by-side chapter quotes: well formed, and cited in the bibliography."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fewshot_tutorial.lake import LAKE_PUBLISHED
from fewshot_tutorial.published import OMNIGLOT_PUBLISHED, SETTINGS, published_row


def test_rows_cite_the_bibliography_and_hold_percentages():
    keys = set(re.findall(r"@\w+\{([^,]+),", (Path(__file__).parents[1] / "references.bib").read_text()))
    assert len({r.method for r in OMNIGLOT_PUBLISHED}) == len(OMNIGLOT_PUBLISHED)
    for row in OMNIGLOT_PUBLISHED:
        assert row.cite in keys, row
        assert len(row.accuracy) == len(SETTINGS) and row.table.startswith("Table ")
        quoted = [a for a in row.accuracy if a is not None]
        assert quoted and all(50 < a <= 100 for a in quoted), row   # percentages, not fractions
        assert row.at(5, 1) == row.accuracy[0] and row.at(20, 5) == row.accuracy[3] and row.at(10, 1) is None
    assert all(0 < e < 0.2 for e in LAKE_PUBLISHED.values())  # fractions: error rates


def test_unknown_row_names_the_rows():
    assert published_row("ProtoNet").at(20, 1) == 96.0
    with pytest.raises(KeyError, match="rows: .*ProtoNet"):
        published_row("protonet")

"""The package code the chapters show with ``show(...)`` fits the page of the HTML book.

Each chapter displays package functions with ``fewshot_tutorial.notebook.show_source``
(imported as ``show``), which prints ``source_lines(obj)``. Lines longer than
``MAX_CHARS`` run off the page, so this test reads every ``book/*.ipynb``, resolves the
objects passed to ``show(...)`` through the notebook's own import lines, and checks
every shown line.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import torch

from fewshot_tutorial.notebook import source_lines

BOOK = Path(__file__).resolve().parents[1] / "book"
MAX_CHARS = 88  # what the HTML book shows without a horizontal scroll bar

# Shown objects whose lines still run over MAX_CHARS, as "<notebook stem>::<expression>".
# The MAML chapter's inner loop is being reworked separately; delete an entry here once
# its lines fit (the xfail is strict, so a fixed entry fails until it is removed).
NOT_YET: set[str] = set()

LATER = "inner_loop.py is being reworked separately; its lines are wrapped there"

_MAGIC = re.compile(r"^(\s*)[%!].*$", re.MULTILINE)  # IPython magics / shell lines are not Python


UNPARSED: list[str] = []  # cells the scan could not read (they may hide show calls)


def _cells(notebook: Path) -> list[ast.Module]:
    """The code cells of ``notebook``, parsed (magics replaced by ``pass``).

    A cell that does not parse is left out and recorded in ``UNPARSED``, so that one bad
    cell fails ``test_every_code_cell_parses`` instead of the collection of this file.
    """
    cells = json.loads(notebook.read_text())["cells"]
    trees = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        try:
            trees.append(ast.parse(_MAGIC.sub(r"\1pass", "".join(cell["source"]))))
        except SyntaxError as err:
            where = f"book/{notebook.name}, cell {i}, line {err.lineno}: {err.msg}"
            if where not in UNPARSED:
                UNPARSED.append(where)
    return trees


def _imports(trees: list[ast.Module]) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in the notebook, in order, wherever it sits (``try:`` too)."""
    return [
        node
        for tree in trees
        for node in sorted(
            (n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))),
            key=lambda n: n.lineno,
        )
    ]


def _show_names(imports: list[ast.Import | ast.ImportFrom]) -> set[str]:
    """The names a notebook calls ``show_source`` by (``show`` in the chapters)."""
    return {
        a.asname or a.name
        for n in imports
        if isinstance(n, ast.ImportFrom) and n.module == "fewshot_tutorial.notebook"
        for a in n.names
        if a.name == "show_source"
    }


def _package_names(imports: list[ast.Import | ast.ImportFrom]) -> set[str]:
    """The names the notebook binds from ``fewshot_tutorial`` (these must resolve)."""
    names = set()
    for n in imports:
        if isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "fewshot_tutorial":
            names |= {a.asname or a.name for a in n.names}
        elif isinstance(n, ast.Import):
            names |= {
                a.asname or a.name.split(".")[0]
                for a in n.names
                if a.name.split(".")[0] == "fewshot_tutorial"
            }
    return names


def shown_expressions() -> list[tuple[str, str]]:
    """``(notebook stem, expression)`` for every argument of every ``show(...)`` call."""
    found = []
    for notebook in sorted(BOOK.glob("*.ipynb")):
        trees = _cells(notebook)
        names = _show_names(_imports(trees))
        for tree in trees:
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id in names):
                    found += [(notebook.stem, ast.unparse(arg)) for arg in node.args]
    return found


def _namespace(stem: str) -> tuple[dict, set[str]]:
    """Run the notebook's import lines; return the namespace and its package names."""
    imports = _imports(_cells(BOOK / f"{stem}.ipynb"))
    ns: dict = {}
    for node in imports:
        try:
            exec(compile(ast.Module([node], type_ignores=[]), stem, "exec"), ns)
        except ImportError:  # e.g. an optional plotting dependency; resolved names decide
            pass
    return ns, _package_names(imports)


SHOWN = shown_expressions()


def test_the_book_shows_package_code():
    stems = {stem for stem, _ in SHOWN}
    assert SHOWN, "found no show(...) calls in book/*.ipynb: has the helper been renamed?"
    for chapter in ("01_few_shot_problem", "02_siamese", "03_matching", "04_protonet", "05_maml"):
        assert chapter in stems, f"book/{chapter}.ipynb shows no package code with show(...)"


def test_every_code_cell_parses():
    """Under this Python (``requires-python`` is 3.10): else show calls could go unseen."""
    assert not UNPARSED, "code cells that do not parse:\n" + "\n".join(UNPARSED)


def test_not_yet_names_only_shown_objects():
    stale = NOT_YET - {f"{stem}::{expr}" for stem, expr in SHOWN}
    assert not stale, f"NOT_YET names objects no chapter shows any more: {sorted(stale)}"


@pytest.mark.parametrize(
    "stem, expr",
    [
        pytest.param(
            stem, expr, id=f"{stem}::{expr}",
            marks=[pytest.mark.xfail(raises=AssertionError, strict=True, reason=LATER)]
            if f"{stem}::{expr}" in NOT_YET else [],
        )
        for stem, expr in SHOWN
    ],
)
def test_shown_code_fits_the_page(stem: str, expr: str):
    ns, package_names = _namespace(stem)
    try:
        obj = eval(expr, ns)
    except (NameError, AttributeError) as err:
        root = expr.split(".")[0].split("(")[0]
        if root in package_names:
            raise AssertionError(f"book/{stem}.ipynb shows {expr}, which does not resolve: {err}")
        pytest.skip(f"{expr} is not imported from fewshot_tutorial")
    long = [
        f"  {len(line)} chars: {line}"
        for line in source_lines(obj).splitlines()
        if len(line) > MAX_CHARS
    ]
    assert not long, (
        f"book/{stem}.ipynb shows {expr} with lines over {MAX_CHARS} characters "
        f"(wrap them in the package):\n" + "\n".join(long)
    )


def test_load_or_train_stores_a_method_the_cli_can_load(tmp_path, monkeypatch):
    """A chapter's trained Method is a save_model checkpoint: load_model rebuilds it."""
    from fewshot_tutorial import ProtoNet, load_model
    from fewshot_tutorial.notebook import load_or_train
    from fewshot_tutorial.training import History

    monkeypatch.setenv("FEWSHOT_RESULTS", str(tmp_path))
    monkeypatch.delenv("FEWSHOT_RECOMPUTE", raising=False)
    calls = []

    def fake_fit(model):
        calls.append(1)
        with torch.no_grad():
            next(model.parameters()).add_(1.0)   # "training" changes the weights
        return History(losses=[1.0, 0.5], seconds=0.1, provenance={"device": "cpu"})

    torch.manual_seed(0)
    model, hist = load_or_train("toy", {"steps": 2}, ProtoNet(hidden=8), fake_fit)
    assert calls == [1] and hist["losses"] == [1.0, 0.5]
    (path,) = tmp_path.glob("toy-*.pt")
    loaded, config = load_model(path)
    assert isinstance(loaded, ProtoNet) and config.hidden == 8
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    again, hist2 = load_or_train("toy", {"steps": 2}, ProtoNet(hidden=8), fake_fit)
    assert calls == [1] and hist2 == hist           # loaded, not trained again
    plain, _ = load_or_train("plain", {"a": 1}, torch.nn.Linear(2, 2), fake_fit)
    assert calls == [1, 1] and len(list(tmp_path.glob("plain-*.pt"))) == 1


def test_stored_results_whose_names_hold_a_dot_do_not_collide(tmp_path, monkeypatch):
    """``lam-0.5`` and ``lam-0.1`` are two results, not one file ``lam-0.json``."""
    from fewshot_tutorial.notebook import load_or_compute

    monkeypatch.setenv("FEWSHOT_RESULTS", str(tmp_path))
    monkeypatch.delenv("FEWSHOT_RECOMPUTE", raising=False)
    assert load_or_compute("lam-0.5", {"a": 1}, lambda: {"v": 5}) == {"v": 5}
    assert load_or_compute("lam-0.1", {"a": 1}, lambda: {"v": 1}) == {"v": 1}
    assert load_or_compute("lam-0.5", {"a": 1}, lambda: {"v": -1}) == {"v": 5}  # stored, not recomputed
    assert len(list(tmp_path.glob("lam-*.json"))) == 2


def test_stored_model_finds_what_another_chapter_trained(tmp_path, monkeypatch):
    """stored_model rebuilds a load_or_train model by its name, keeps the profile it was
    trained under, takes the newest, and says which chapter to run when nothing is stored."""
    import os

    from fewshot_tutorial import MatchingNetwork, ProtoNet
    from fewshot_tutorial import notebook as nb
    from fewshot_tutorial.training import History

    monkeypatch.setenv("FEWSHOT_RESULTS", str(tmp_path))
    monkeypatch.delenv("FEWSHOT_RECOMPUTE", raising=False)

    def fake_fit(model):
        return History(losses=[1.0], seconds=0.1, provenance={"device": "cpu"})

    with pytest.raises(FileNotFoundError, match="trained by chapter 4"):
        nb.stored_model("proto", made_by="chapter 4", profile="quick")
    monkeypatch.setattr(nb, "_PROFILE", "quick")
    torch.manual_seed(0)
    quick, _ = nb.load_or_train("proto", {"steps": 1}, ProtoNet(hidden=8), fake_fit)
    nb.load_or_train("proto-wide", {"steps": 1}, ProtoNet(hidden=16), fake_fit)   # a longer name, not a match
    monkeypatch.setattr(nb, "_PROFILE", "standard")
    nb.load_or_train("proto", {"steps": 9}, MatchingNetwork(hidden=8), fake_fit)
    (old,) = [p for p in tmp_path.glob("proto-*.pt") if "wide" not in p.name and p.stat().st_size
              and nb.load_checkpoint(p)[1]["history"]["profile"] == "quick"]
    os.utime(old, (1, 1))   # the quick one is the older file
    method, history, path = nb.stored_model("proto", made_by="chapter 4", profile="quick")
    assert isinstance(method, ProtoNet) and method.config.hidden == 8 and history["profile"] == "quick"
    for a, b in zip(quick.state_dict().values(), method.state_dict().values()):
        assert torch.equal(a, b)
    newest, history, _ = nb.stored_model("proto", made_by="chapter 4", profile=None)
    assert isinstance(newest, MatchingNetwork) and history["profile"] == "standard"
    with pytest.raises(FileNotFoundError, match="paper profile"):
        nb.stored_model("proto", made_by="chapter 4", profile="paper")


def test_stored_model_runs_the_missing_chapter(tmp_path, monkeypatch):
    """run_missing=True executes the chapter notebook that trains the model, then loads it."""
    pytest.importorskip("nbclient")
    import nbformat

    from fewshot_tutorial import ProtoNet
    from fewshot_tutorial import notebook as nb

    monkeypatch.setenv("FEWSHOT_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("FEWSHOT_RECOMPUTE", raising=False)
    monkeypatch.setattr(nb, "_PROFILE", "quick")
    chapter = tmp_path / "99_toy.ipynb"
    code = """
import torch
from fewshot_tutorial import ProtoNet
from fewshot_tutorial import notebook as nb
from fewshot_tutorial.training import History
nb._PROFILE = "quick"
torch.manual_seed(5)
nb.load_or_train("toy-chapter", {"steps": 1}, ProtoNet(hidden=8),
                 lambda m: History(losses=[1.0], seconds=0.1, provenance={"device": "cpu"}))
"""
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), chapter)
    with pytest.raises(FileNotFoundError, match="trained by .*99_toy"):
        nb.stored_model("toy-chapter", made_by=str(chapter))
    method, history, path = nb.stored_model("toy-chapter", made_by=str(chapter), run_missing=True)
    torch.manual_seed(5)
    expected = ProtoNet(hidden=8)
    assert isinstance(method, ProtoNet) and history["profile"] == "quick" and path.parent == tmp_path / "results"
    for a, b in zip(expected.state_dict().values(), method.state_dict().values()):
        assert torch.equal(a, b)


def test_benchmark_result_reads_the_saved_figures(monkeypatch):
    """A chapter reads a benchmark's saved JSON; a missing one is None, not an error."""
    import json
    import urllib.request
    from pathlib import Path

    from fewshot_tutorial.benchmarking import benchmark_result

    saved = json.loads((Path(__file__).parents[1] / "benchmarks" / "results" / "sampler.json").read_text())
    assert benchmark_result("sampler") == saved

    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert benchmark_result("no-such-benchmark") is None

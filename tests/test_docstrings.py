"""Every docstring of the package is valid reStructuredText after napoleon.

The API page renders them with autodoc + napoleon under ``-W``, so one bad indent
fails the whole book build after ten minutes of notebook execution; this finds it
in a second.
"""

from __future__ import annotations

import importlib
import inspect
import io
import pkgutil

import pytest

import fewshot_tutorial

docutils_core = pytest.importorskip("docutils.core")
napoleon = pytest.importorskip("sphinx.ext.napoleon")

from docutils import nodes  # noqa: E402
from docutils.parsers.rst import Directive, directives, roles  # noqa: E402

SPHINX_ROLES = ["class", "func", "meth", "data", "attr", "mod", "obj", "exc", "math",
                "cite", "ref", "doc", "py:class", "py:func"]
SPHINX_DIRECTIVES = ["attribute", "method", "function", "rubric", "seealso",
                     "versionadded", "currentmodule"]


class _Accept(Directive):
    """Sphinx-only directives napoleon emits: accepted, not checked."""

    has_content = True
    optional_arguments = 10
    final_argument_whitespace = True
    option_spec = {"type": directives.unchanged, "value": directives.unchanged,
                   "noindex": directives.flag}

    def run(self):
        return []


def _docstrings():
    for info in pkgutil.walk_packages(fewshot_tutorial.__path__, "fewshot_tutorial."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        owned = [obj for _, obj in inspect.getmembers(module)
                 if getattr(obj, "__module__", None) == module.__name__]
        for obj in [module, *owned]:
            members = [obj]
            if inspect.isclass(obj):
                members += [v for v in vars(obj).values() if callable(v)]
            for member in members:
                doc = inspect.getdoc(member)
                if doc:
                    name = getattr(member, "__qualname__", getattr(member, "__name__", "?"))
                    yield f"{info.name}:{name}", doc


def rst_problems(doc: str) -> str:
    """Warnings docutils prints for ``doc`` once napoleon has rewritten it ('' if none)."""
    for role in SPHINX_ROLES:
        roles.register_generic_role(role, nodes.literal)
    for name in SPHINX_DIRECTIVES:
        directives.register_directive(name, _Accept)
    text = str(napoleon.GoogleDocstring(doc, napoleon.Config(napoleon_google_docstring=True)))
    stream = io.StringIO()
    docutils_core.publish_string(text, writer_name="null", settings_overrides={
        "warning_stream": stream, "report_level": 2})
    return stream.getvalue()


def test_the_checker_catches_a_bad_indent():
    bad = "Commands:\n    data   one\n    train  two\n           continued\n"
    assert "Unexpected indentation" in rst_problems(bad)
    assert rst_problems("Commands::\n\n    data   one\n           continued\n") == ""


def test_every_docstring_is_valid_rst():
    docs = list(_docstrings())
    assert len(docs) > 100, "the walk over the package found too few docstrings"
    problems = {name: p for name, doc in docs if (p := rst_problems(doc))}
    assert not problems, "\n".join(f"{n}: {p}" for n, p in problems.items())


def _undocumented_overrides():
    """Methods a package class defines without a docstring while a class outside the package
    documents the same name with a ``:ref:`` label: autodoc would show that docstring, and
    the ``-W`` build fails on labels this book does not define (``torch.autograd.Function``'s
    ``forward`` has two)."""
    for info in pkgutil.walk_packages(fewshot_tutorial.__path__, "fewshot_tutorial."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for name, value in vars(cls).items():
                func = getattr(value, "__func__", value)
                if name.startswith("_") or not callable(func) or func.__doc__:
                    continue
                for base in cls.__mro__[1:]:
                    doc = getattr(getattr(base, name, None), "__doc__", None)
                    if doc and ":ref:`" in doc and not base.__module__.startswith("fewshot_tutorial"):
                        yield f"{cls.__module__}.{cls.__qualname__}.{name} (from {base.__module__})"
                        break


def test_no_public_method_inherits_a_docstring_with_labels_the_book_lacks():
    found = list(_undocumented_overrides())
    assert not found, "give these their own docstring:\n" + "\n".join(found)

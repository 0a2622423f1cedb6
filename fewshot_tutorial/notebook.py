"""What every chapter's first cell calls: one set-up for Colab, local CPU and GPU.

``setup()`` seeds everything, picks the device and the profile, finds (or on Colab
downloads) Omniglot, and says what it chose. ``load_or_compute`` / ``load_or_train``
keep long results as small artefacts with their provenance, so a chapter re-run (or
the book build after CI's nbval run) does not train twice.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import os
import re
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoints import load_checkpoint, save_checkpoint, save_model
from .data.omniglot import SOURCES, default_root, find_source
from .device import Profile, cpu_threads, get_device, get_profile, seed_everything
from .methods import Method


@dataclass(frozen=True)
class Setup:
    """What ``setup()`` chose."""

    device: torch.device
    profile: Profile
    data_root: Path
    seed: int

    def __iter__(self):  # allows ``device, profile, root, seed = setup()``
        return iter((self.device, self.profile, self.data_root, self.seed))


def in_colab() -> bool:
    return "google.colab" in sys.modules


def setup(seed: int = 0, profile: str | None = None, device: str | None = None,
          download: bool | None = None, quiet: bool = False) -> Setup:
    """Seed, device, profile and data for a chapter.

    Args:
        seed: seeds Python, NumPy and PyTorch.
        profile: ``quick`` / ``standard`` / ``paper`` (default: ``FEWSHOT_PROFILE``,
            else ``standard`` on a GPU and ``quick`` on a CPU).
        device: force a device (default: CUDA, then MPS, then CPU).
        download: fetch Omniglot with torchvision when it is missing (default: on Colab,
            or when ``FEWSHOT_DOWNLOAD=1``).
    """
    seed_everything(seed)
    dev = get_device(device)
    if dev.type == "cpu":  # only the cores other processes leave free (see cpu_threads)
        torch.set_num_threads(cpu_threads())
    prof = get_profile(profile, dev)
    global _PROFILE
    _PROFILE = prof.name
    root = default_root()
    if download is None:
        download = in_colab() or os.environ.get("FEWSHOT_DOWNLOAD") == "1"
    missing = [s for s in SOURCES if find_source(root, s) is None]
    if missing and download:
        from .data.omniglot import _download

        _download(root)
    elif missing:
        raise FileNotFoundError(
            f"Omniglot not found under {root}. Set FEWSHOT_DATA to a folder with "
            "images_background.zip and images_evaluation.zip, or run setup(download=True)."
        )
    try:  # figures that read well in the HTML book
        import matplotlib.pyplot as plt

        plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "axes.spines.top": False,
                             "axes.spines.right": False})
    except ImportError:  # pragma: no cover
        pass
    if not quiet:
        print(f"device={dev.type}, threads={torch.get_num_threads()}, profile={prof.name}, seed={seed}, data={root}")
    return Setup(dev, prof, root, seed)


_PROFILE: str | None = None  # what setup() chose; load_or_train records it with each model


def results_dir() -> Path:
    """Where artefacts are kept: ``FEWSHOT_RESULTS`` or ``<user cache>/results``."""
    env = os.environ.get("FEWSHOT_RESULTS")
    if env:
        return Path(env).expanduser()
    from .data.omniglot import _user_cache

    return _user_cache() / "results"


def _key(name: str, config: dict[str, Any], suffix: str) -> Path:
    """``<results>/<name>-<hash of config><suffix>`` (a dot in ``name``, as in ``lam-0.5``, stays in the name)."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return results_dir() / f"{name}-{digest}{suffix}"


def load_or_compute(name: str, config: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Return the JSON result stored for ``(name, config)``, computing and saving it if absent.

    Set ``FEWSHOT_RECOMPUTE=1`` to ignore stored results.
    """
    path = _key(name, config, ".json")
    if path.is_file() and os.environ.get("FEWSHOT_RECOMPUTE") != "1":
        return json.loads(path.read_text())["result"]
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"config": config, "result": result}, indent=1, default=str))
    os.replace(tmp, path)
    return result


def load_or_train(name: str, config: dict[str, Any], model: nn.Module,
                  fit: Callable[[nn.Module], Any], device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load weights stored for ``(name, config)`` into ``model``, or train it with ``fit``.

    ``fit(model)`` trains in place and returns a :class:`~fewshot_tutorial.training.History`
    (or anything with ``losses``, ``seconds`` and ``provenance``). Returns the model (on
    ``device``) and a dict with ``losses``, ``seconds`` and ``provenance``.

    A :class:`~fewshot_tutorial.methods.Method` is stored as :func:`~fewshot_tutorial.save_model`
    stores it (its name and config), so every model a chapter trains can also be loaded
    with ``load_model`` or given to the command line (``evaluate --checkpoint``).
    """
    path = _key(name, config, ".pt")
    if path.is_file() and os.environ.get("FEWSHOT_RECOMPUTE") != "1":
        state, saved = load_checkpoint(path, map_location=device)
        model.load_state_dict(state)
        return model.to(device), saved["history"]
    hist = fit(model)
    record = {"losses": list(hist.losses), "seconds": hist.seconds, "provenance": hist.provenance,
              "metrics": getattr(hist, "metrics", {}), "profile": _PROFILE}
    if isinstance(model, Method):
        save_model(path, model, key=config, history=record)
    else:
        save_checkpoint(path, model, {"config": config, "history": record})
    return model.to(device), record


CHAPTERS_URL = "https://raw.githubusercontent.com/fewshot-tutorial/fewshot-tutorial/main/book"


def _find_chapter(chapter: str) -> Path:
    """The notebook ``chapter`` (``"04_protonet"`` or a path): beside the running one, under
    ``book/``, or downloaded from the repository into the results folder (Colab)."""
    for path in (Path(chapter), Path(f"{chapter}.ipynb"), Path("book") / f"{chapter}.ipynb",
                 Path(__file__).resolve().parents[1] / "book" / f"{chapter}.ipynb"):
        if path.suffix == ".ipynb" and path.is_file():
            return path.resolve()
    import urllib.request

    target = results_dir() / "chapters" / f"{Path(chapter).stem}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    urllib.request.urlretrieve(f"{CHAPTERS_URL}/{target.name}", target)
    return target


def run_chapter(chapter: str, timeout: int = 3600) -> Path:
    """Execute a chapter's notebook in a fresh kernel, so that what it trains is stored.

    The kernel inherits this process's environment (``FEWSHOT_RESULTS``, ``FEWSHOT_DATA``)
    and the profile ``setup()`` chose, so its ``load_or_train`` stores where
    :func:`stored_model` looks. Returns the notebook's path.
    """
    import nbformat
    from nbclient import NotebookClient

    path = _find_chapter(chapter)
    if _PROFILE is not None:
        os.environ.setdefault("FEWSHOT_PROFILE", _PROFILE)
    print(f"running {path.name} to train what it stores (minutes on a CPU)...", flush=True)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return path


def stored_model(
    name: str,
    made_by: str,
    profile: str | None = None,
    device: torch.device | str = "cpu",
    run_missing: bool = False,
) -> tuple[Method, dict[str, Any], Path]:
    """The model another chapter stored with ``load_or_train(name, ...)``: ``(method, history, path)``.

    A later chapter compares what earlier chapters trained without repeating their
    configurations: the checkpoint names its method and config
    (:func:`~fewshot_tutorial.load_model`). Among several stored versions, the ones trained
    under ``profile`` (default: what ``setup()`` chose) are kept and the newest is taken.

    Args:
        name: the name the chapter gave ``load_or_train``, e.g. ``"protonet-background"``.
        made_by: the chapter that trains it, e.g. ``"04_protonet"`` (a notebook name or path).
        run_missing: when nothing is stored, run that chapter (:func:`run_chapter`) first.

    Raises:
        FileNotFoundError: nothing stored under ``name`` for this profile (and
            ``run_missing`` is off, or the chapter did not store it); says which chapter to run.
    """
    from .checkpoints import load_model

    profile = profile or _PROFILE
    pattern = re.compile(re.escape(name) + r"-[0-9a-f]{12}\.pt")

    def find() -> list[tuple[float, Path, dict[str, Any]]]:
        found = []
        for path in results_dir().glob("*.pt") if results_dir().is_dir() else ():
            if pattern.fullmatch(path.name):
                _, saved = load_checkpoint(path)
                stored_profile = (saved.get("history") or {}).get("profile")
                if profile is None or stored_profile in (None, profile):
                    found.append((path.stat().st_mtime, path, saved))
        return found

    found = find()
    if not found and run_missing:
        run_chapter(made_by)
        found = find()
    if not found:
        raise FileNotFoundError(
            f"no model {name!r} ({profile or 'any'} profile) in {results_dir()}: it is trained by {made_by}; "
            "run that chapter first with the same FEWSHOT_RESULTS (the book build runs every chapter in order)")
    _, path, saved = max(found, key=lambda f: f[0])
    method, _ = load_model(path, map_location=device)
    return method.to(device), saved.get("history") or {}, path


def source_lines(obj: Any) -> str:
    """The code of a package function or class as the book shows it: read from the package
    (so it cannot drift), without docstrings and without the ``if ...: raise`` input checks."""
    src = textwrap.dedent(inspect.getsource(obj))
    lines, drop, checks = src.splitlines(), set(), 0
    for node in ast.walk(ast.parse(src)):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.FunctionDef, ast.ClassDef)) and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            drop.update(range(body[0].lineno - 1, body[0].end_lineno))  # the docstring
        if isinstance(node, ast.If) and not node.orelse and all(isinstance(s, ast.Raise) for s in node.body):
            drop.update(range(node.lineno - 1, node.end_lineno))  # an input check
            checks += 1
    where = inspect.getsourcefile(inspect.unwrap(obj)).split("site-packages/")[-1]
    where = where[where.rfind("fewshot_tutorial/"):]
    note = f"  ({checks} input check{'s' * (checks != 1)} not shown)" if checks else ""
    return "\n".join([f"# {where}{note}"] + [line for i, line in enumerate(lines) if i not in drop])


def show_source(*objects: Any) -> None:
    """Display package code with docstrings and input checks left out (the book never pastes code)."""
    from IPython.display import Code, display

    display(Code("\n\n".join(source_lines(o) for o in objects), language="python"))

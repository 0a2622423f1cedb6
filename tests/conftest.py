"""Shared fixtures: where the real data is, and small synthetic Omniglot layouts."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

# like setup() in the chapters: only the cores other processes leave free (issue 14)
import torch  # noqa: E402

from fewshot_tutorial.device import cpu_threads  # noqa: E402

torch.set_num_threads(cpu_threads())


def _data_root() -> Path | None:
    env = os.environ.get("FEWSHOT_DATA")
    for p in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if (p / "omniglot28" / "images_background.zip").is_file() or (p / "images_background.zip").is_file():
            return p
    return None


DATA_ROOT = _data_root()
needs_data = pytest.mark.skipif(DATA_ROOT is None, reason="real Omniglot not found: set FEWSHOT_DATA")


@pytest.fixture(scope="session")
def data_root() -> Path:
    if DATA_ROOT is None:
        pytest.skip("real Omniglot not found: set FEWSHOT_DATA to the folder holding omniglot28/")
    return DATA_ROOT


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Decoded-image caches and results go to a per-session temp folder, not ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "decoded-cache"
    monkeypatch.setenv("FEWSHOT_CACHE", str(cache))
    monkeypatch.setenv("FEWSHOT_RESULTS", str(tmp_path_factory.getbasetemp() / "results"))
    if DATA_ROOT is not None:
        monkeypatch.setenv("FEWSHOT_DATA", str(DATA_ROOT))


@pytest.fixture(scope="session")
def background(data_root):
    from fewshot_tutorial import load_omniglot

    return load_omniglot(data_root, split="background")


@pytest.fixture(scope="session")
def evaluation(data_root):
    from fewshot_tutorial import load_omniglot

    return load_omniglot(data_root, split="evaluation")


def png_bytes(array: np.ndarray) -> bytes:
    """uint8 [H, W] (255 = white paper) -> PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def make_tiny_omniglot(folder: Path, name: str = "images_background", n_alphabets: int = 2,
                       n_chars: int = 3, n_drawings: int = 20, size: int = 12, as_zip: bool = True) -> Path:
    """A synthetic Omniglot in the official layout; character c of alphabet a has a
    single ink pixel at row a, column c (so rotations and polarity can be checked)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for a in range(n_alphabets):
        for c in range(n_chars):
            for d in range(n_drawings):
                img = np.full((size, size), 255, np.uint8)
                img[a, c] = 0  # a black stroke pixel
                files[f"{name}/Alphabet_{a}/character{c + 1:02d}/{a}{c}_{d + 1:02d}.png"] = png_bytes(img)
    if as_zip:
        path = folder / f"{name}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for k, v in files.items():
                zf.writestr(k, v)
        return path
    for k, v in files.items():
        p = folder / k
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(v)
    return folder / name

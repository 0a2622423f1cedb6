"""Saving and loading trained models safely (no pickle: ``weights_only=True``)."""

from __future__ import annotations

import json
import os
import pickle
import struct
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn


def save_checkpoint(path: str | os.PathLike, model: nn.Module, config: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights plus a JSON-able ``config`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = {"state_dict": state, "config": json.dumps(config or {})}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`: ``(state_dict, config)``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a checkpoint of this package.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one first (python -m fewshot_tutorial train ...)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
        return payload["state_dict"], json.loads(payload["config"])
    except (RuntimeError, KeyError, TypeError, ValueError, EOFError, struct.error, pickle.UnpicklingError) as e:
        raise ValueError(f"{path} is not a fewshot_tutorial checkpoint ({e})") from e

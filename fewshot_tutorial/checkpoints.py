"""Saving and loading trained models safely: no pickle (``weights_only=True``), a checksum
of the weights, and the method and config a model was built from.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from .methods import Config, Method


def weights_digest(state: dict[str, torch.Tensor], config: str = "") -> str:
    """SHA-256 of the config (its JSON text) and the weights (names, shapes, dtypes, bytes)."""
    h = hashlib.sha256(config.encode())
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def check_writable(path: str | os.PathLike) -> Path:
    """``path`` as a ``Path`` if a file can be written there, else a ``ValueError`` saying why.

    Called *before* training, so a long run is never lost to a bad output path.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--out {path} is a directory; give a file name such as {path / 'model.pt'}")
    parent = path.parent
    for p in (parent, *parent.parents):
        if p.exists():
            if not p.is_dir():
                raise ValueError(f"cannot write {path}: {p} is a file, not a folder")
            if not os.access(p, os.W_OK):
                raise ValueError(f"cannot write {path}: no permission to write in {p}")
            break
    return path


def save_checkpoint(path: str | os.PathLike, model: nn.Module, config: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights, their checksum and a JSON-able ``config`` to ``path`` atomically."""
    path = check_writable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    text = json.dumps(config or {})
    payload = {"state_dict": state, "config": text, "sha256": weights_digest(state, text)}
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
        ValueError: the file is not a checkpoint of this package, holds Python objects,
            or its weights do not match their checksum (a damaged file).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give the checkpoint file inside it (a .pt file)")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one first (python -m fewshot_tutorial train ...)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path} holds Python objects, not only weights; it is refused because loading it "
                         "could run arbitrary code. Use a checkpoint written by this package") from e
    except (RuntimeError, EOFError, struct.error, zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{path} is not a fewshot_tutorial checkpoint or is damaged ({e})") from e
    if not isinstance(payload, dict) or "state_dict" not in payload or "config" not in payload:
        raise ValueError(f"{path} is not a fewshot_tutorial checkpoint (no weights and config in it)")
    state = payload["state_dict"]
    digest = payload.get("sha256")
    if digest is not None and weights_digest(state, str(payload["config"])) != digest:
        raise ValueError(f"{path} is damaged or was edited: its weights and config do not match their "
                         "checksum; train or copy it again")
    try:
        config = json.loads(payload["config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path} has an unreadable config ({e})") from e
    if not isinstance(config, dict):
        raise ValueError(f"{path} has a config that is not a dict ({type(config).__name__})")
    return state, config


def save_model(path: str | os.PathLike, method: "Method", **extra: Any) -> Path:
    """Save a trained method with the name and config it was built from (and ``extra``, JSON-able)."""
    return save_checkpoint(path, method, {"method": method.name, "config": method.config.as_dict(), **extra})


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple["Method", "Config"]:
    """Rebuild the method a checkpoint from :func:`save_model` holds: ``(method, config)``.

    The checkpoint names its method and config, so it can never be rebuilt as another
    method or at another image size.

    Raises:
        ValueError: not such a checkpoint, an unknown method, or weights that do not fit the config.
    """
    from .methods import METHODS

    state, saved = load_checkpoint(path, map_location)
    name = saved.get("method")
    if name not in METHODS:
        raise ValueError(f"{path} names method {name!r}, not one of {', '.join(METHODS)}; "
                         "was it saved with save_model?")
    if not isinstance(saved.get("config"), dict):
        raise ValueError(f"{path} has no config for its {name} model; was it saved with save_model?")
    cls = METHODS[name]
    try:
        method = cls(cls.Config.from_dict(saved["config"]))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: its config does not describe a {name} model ({e})") from e
    try:
        method.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[1:2] or [str(e)]
        raise ValueError(f"{path}: the weights do not match the {name} config ({first[0].strip()})") from e
    return method.to(map_location), method.config

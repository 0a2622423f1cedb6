"""The decoded-image cache: one ``.npz`` file per source and image size.

Decoding ~32k PNGs takes a while, so the decoded images are kept in :func:`cache_dir`
as ``.npz`` files (safe to load: no pickle). Each file stores the fingerprint of its
source (:func:`~fewshot_tutorial.data.sources.fingerprint`) and is rebuilt when that
changes. A file is written to a temporary name and renamed into place, so it is never
half-written; temporary files left by a killed writer are removed by the next writer.
The cache only saves time: when it cannot be written, loading warns once and goes on
without it.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np

VERSION = 2  # 2: zips are fingerprinted by their members' CRCs
TMP_SUFFIX = ".tmp.npz"
STALE_SECONDS = 3600  # a writer needs seconds; an older temporary file is an orphan
_WRITER = re.compile(r"~(\d+)@(.+)~")  # ``<stem>~<pid>@<host>~<random>.tmp.npz``
_warned_dirs: set[Path] = set()


def user_cache_root() -> Path:
    """``$XDG_CACHE_HOME/fewshot_tutorial`` or ``~/.cache/fewshot_tutorial``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fewshot_tutorial"


def cache_dir() -> Path:
    """Folder for decoded-image caches (``FEWSHOT_CACHE`` or the per-user cache)."""
    env = os.environ.get("FEWSHOT_CACHE")
    return Path(env).expanduser() if env else user_cache_root() / "decoded"


def cache_path(source: Path, name: str, image_size: int) -> Path:
    """The cache file of ``source`` decoded at ``image_size``."""
    key = hashlib.sha256(f"{source.resolve()}|{image_size}".encode()).hexdigest()[:16]
    return cache_dir() / f"{name}-{image_size}-{key}.npz"


def read_cache(path: Path, fingerprint: str) -> tuple[np.ndarray, list[str]] | None:
    """``(images, names)`` from ``path`` if it was built from this fingerprint, else ``None``."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["signature"]) != fingerprint or int(f["version"]) != VERSION:
                return None
            return f["images"].copy(), [str(s) for s in f["names"]]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        warnings.warn(f"the image cache {path} is unreadable ({e}); decoding again and replacing it",
                      stacklevel=3)
        return None


def write_cache(path: Path, images: np.ndarray, names: list[str], fingerprint: str) -> None:
    """Write the cache file atomically; warn once per folder (and go on) if it cannot be written."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path.parent)
        prefix = f"{path.stem}~{os.getpid()}@{socket.gethostname()}~"
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=TMP_SUFFIX)
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, images=images, names=np.array(names), signature=np.array(fingerprint),
                     version=np.array(VERSION))
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        _warn_unwritable(path.parent, e)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _warn_unwritable(folder: Path, error: OSError) -> None:
    if folder in _warned_dirs:
        return
    _warned_dirs.add(folder)
    warnings.warn(
        f"cannot write the decoded-image cache in {folder} ({error}); going on without it, so "
        "the next load decodes the images again. Set FEWSHOT_CACHE to a writable folder.",
        stacklevel=4,
    )


def _writer_is_dead(tmp: Path) -> bool:
    """Whether ``tmp`` was written by a process of this machine that no longer runs."""
    m = _WRITER.search(tmp.name)
    if m is None or m.group(2) != socket.gethostname() or os.name == "nt":
        return False  # on Windows, os.kill(pid, 0) would signal the process
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it runs, as another user
    return False


def remove_stale_temps(folder: Path) -> None:
    """Remove temporary cache files of dead writers (or older than an hour) in ``folder``."""
    now = time.time()
    for tmp in folder.glob(f"*{TMP_SUFFIX}"):
        try:
            if _writer_is_dead(tmp) or now - tmp.stat().st_mtime > STALE_SECONDS:
                tmp.unlink()
        except FileNotFoundError:
            continue  # another writer finished or removed it meanwhile
        except OSError as e:
            warnings.warn(f"cannot remove the stale temporary file {tmp} ({e}); remove it by hand",
                          stacklevel=4)

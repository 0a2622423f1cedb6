"""Loading Omniglot (Lake et al. 2015) from the official layout, at any resolution.

The loader accepts what people actually have on disk:

* the official zips ``images_background.zip`` / ``images_evaluation.zip``,
* the same folders extracted (``images_background/<Alphabet>/characterNN/*.png``),
* torchvision's download folder (``<root>/omniglot-py/...``),

at 105x105 as downloaded or already resized (e.g. 28x28). Decoding ~32k PNGs takes
a while, so the decoded images are cached as a ``.npz`` file (safe to load, no pickle)
that is rebuilt whenever the source changes.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .dataset import FewShotDataset

SOURCES = ("images_background", "images_evaluation")
SPLITS = (
    "background",
    "evaluation",
    "vinyals/train",
    "vinyals/val",
    "vinyals/trainval",
    "vinyals/test",
)
ROTATIONS = (0, 90, 180, 270)
_SPLIT_DIR = Path(__file__).parent / "splits"
_CACHE_VERSION = 1


def default_root() -> Path:
    """Where Omniglot is looked for when no ``root`` is given.

    The ``FEWSHOT_DATA`` environment variable if set, else a per-user cache folder
    (``$XDG_CACHE_HOME/fewshot_tutorial/data`` or ``~/.cache/fewshot_tutorial/data``).
    """
    env = os.environ.get("FEWSHOT_DATA")
    if env:
        return Path(env).expanduser()
    return _user_cache() / "data"


def _user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fewshot_tutorial"


def cache_dir() -> Path:
    """Folder for decoded-image caches (``FEWSHOT_CACHE`` or the per-user cache)."""
    env = os.environ.get("FEWSHOT_CACHE")
    return Path(env).expanduser() if env else _user_cache() / "decoded"


def _candidate_dirs(root: Path) -> list[Path]:
    """Folders under ``root`` where the official files may sit (most specific first)."""
    return [root, root / "omniglot-py", root / "omniglot28", root / "omniglot105", root / "omniglot"]


def find_source(root: Path, name: str) -> Path | None:
    """Return the zip or folder holding ``name`` (e.g. ``images_background``) under ``root``.

    An extracted folder wins over a zip (it is what torchvision leaves behind).
    """
    for d in _candidate_dirs(root):
        folder, archive = d / name, d / f"{name}.zip"
        if folder.is_dir() and any(folder.iterdir()):
            return folder
        if archive.is_file():
            return archive
    return None


def _signature(source: Path) -> str:
    """A string that changes whenever the files behind ``source`` change."""
    if source.is_file():
        st = source.stat()
        parts: Iterable[str] = [f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}"]
    else:
        parts = [str(source.resolve())]
        parts = list(parts) + sorted(
            f"{p.relative_to(source)}|{p.stat().st_size}|{p.stat().st_mtime_ns}"
            for p in source.rglob("*.png")
        )
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\n")
    return h.hexdigest()


def _decode(data: bytes, image_size: int) -> np.ndarray:
    """PNG bytes -> ``[image_size, image_size]`` uint8 ink map (255 = ink, 0 = paper)."""
    img = Image.open(io.BytesIO(data)).convert("L")
    if img.size != (image_size, image_size):
        # Antialiased resize (Lanczos), the preprocessing of most few-shot papers.
        img = img.resize((image_size, image_size), Image.Resampling.LANCZOS)
    return 255 - np.asarray(img, dtype=np.uint8)


def _iter_pngs(source: Path, name: str) -> Iterable[tuple[str, str, bytes]]:
    """Yield ``(class_name, file_name, png_bytes)`` for each drawing in ``source``."""
    if source.is_file():
        try:
            zf = zipfile.ZipFile(source)
        except zipfile.BadZipFile as e:
            raise ValueError(
                f"{source} is not a readable zip ({e}). Delete it and download it again "
                "(download=True) or point FEWSHOT_DATA at a good copy."
            ) from e
        with zf:
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                parts = info.filename.split("/")
                if info.is_dir() or not info.filename.endswith(".png"):
                    continue
                if len(parts) != 4 or parts[0] != name:
                    raise ValueError(
                        f"{source} does not have the official Omniglot layout: found "
                        f"{info.filename!r}, expected '{name}/<Alphabet>/characterNN/<drawing>.png'."
                    )
                try:
                    data = zf.read(info)
                except (zipfile.BadZipFile, OSError) as e:
                    raise ValueError(f"{source} is corrupt ({info.filename}: {e}).") from e
                yield f"{parts[1]}/{parts[2]}", parts[3], data
    else:
        for png in sorted(source.glob("*/*/*.png")):
            yield f"{png.parent.parent.name}/{png.parent.name}", png.name, png.read_bytes()


def _decode_source(source: Path, name: str, image_size: int) -> tuple[np.ndarray, list[str]]:
    by_class: dict[str, list[np.ndarray]] = {}
    for cls, _, data in _iter_pngs(source, name):
        try:
            by_class.setdefault(cls, []).append(_decode(data, image_size))
        except OSError as e:
            raise ValueError(f"{source}: {cls} holds an unreadable image ({e}).") from e
    if not by_class:
        raise ValueError(f"{source} holds no '<Alphabet>/characterNN/*.png' images.")
    counts = {len(v) for v in by_class.values()}
    if len(counts) != 1:
        raise ValueError(
            f"{source}: characters have different numbers of drawings {sorted(counts)}; "
            "the official set has 20 each. Re-extract or re-download it."
        )
    names = sorted(by_class)
    return np.stack([np.stack(by_class[c]) for c in names]), names


def load_source(source: Path, name: str, image_size: int, use_cache: bool = True) -> tuple[torch.Tensor, list[str]]:
    """Decode one official source (zip or folder) to uint8 ``[n_classes, 20, H, W]``.

    The result is cached in :func:`cache_dir`; the cache is written atomically (never
    half-written) and rebuilt when the source's signature changes.
    """
    sig = _signature(source)
    key = hashlib.sha256(f"{source.resolve()}|{image_size}".encode()).hexdigest()[:16]
    path = cache_dir() / f"{name}-{image_size}-{key}.npz"
    if use_cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                if str(f["signature"]) == sig and int(f["version"]) == _CACHE_VERSION:
                    return torch.from_numpy(f["images"].copy()), [str(s) for s in f["names"]]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # unreadable cache: rebuild it below
    images, names = _decode_source(source, name, image_size)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
        os.close(fd)
        try:
            np.savez(tmp, images=images, names=np.array(names), signature=np.array(sig),
                     version=np.array(_CACHE_VERSION))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return torch.from_numpy(images), names


def _download(root: Path) -> None:
    """Fetch the official zips with torchvision's downloader into ``root/omniglot-py``."""
    from torchvision.datasets import Omniglot

    for background in (True, False):
        Omniglot(str(root), background=background, download=True)


def _not_found(root: Path, name: str) -> FileNotFoundError:
    looked = ", ".join(str(d / f"{name}[.zip]") for d in _candidate_dirs(root))
    return FileNotFoundError(
        f"Omniglot's {name!r} was not found. Looked in: {looked}. Either set FEWSHOT_DATA "
        "(or pass root=...) to a folder holding images_background.zip and "
        "images_evaluation.zip (zips or extracted folders), or pass download=True "
        "(CLI: --download) to fetch them with torchvision."
    )


def split_names(split: str) -> list[str]:
    """Class names of a Vinyals split (``Alphabet/characterNN/rotDDD``), as shipped."""
    if not split.startswith("vinyals/") or split not in SPLITS:
        raise ValueError(f"unknown Vinyals split {split!r}; choose one of {SPLITS[2:]}")
    text = (_SPLIT_DIR / f"{split}.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def rotate(images: torch.Tensor, degrees: int) -> torch.Tensor:
    """Rotate ``[..., H, W]`` images counter-clockwise by a multiple of 90 degrees."""
    if degrees % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {degrees}")
    return torch.rot90(images, k=(degrees // 90) % 4, dims=(-2, -1))


def load_omniglot(
    root: str | os.PathLike | None = None,
    split: str = "background",
    image_size: int = 28,
    download: bool = False,
) -> FewShotDataset:
    """Load an Omniglot split as a :class:`FewShotDataset`.

    Args:
        root: folder with the official zips or extracted folders (or torchvision's
            ``omniglot-py`` folder). Default: :func:`default_root`.
        split: ``"background"`` (964 characters), ``"evaluation"`` (659), or a Vinyals
            split ``"vinyals/train"`` (4112 classes), ``"vinyals/val"`` (688),
            ``"vinyals/trainval"`` (4800), ``"vinyals/test"`` (1692), in which each
            character under each rotation (0/90/180/270 degrees, counter-clockwise) is
            its own class.
        image_size: side of the square images; sources of another size are resized
            with antialiasing (Lanczos).
        download: fetch the official zips with torchvision when they are missing.

    Returns:
        A dataset with ``images: [n_classes, 20, 1, image_size, image_size]`` (float32,
        ink = 1, paper = 0) and ``class_names``.

    Raises:
        ValueError: unknown split, bad size, or a corrupt / foreign source.
        FileNotFoundError: no data at ``root`` and ``download`` is False.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if not isinstance(image_size, int) or image_size < 4:
        raise ValueError(f"image_size must be an int >= 4, got {image_size!r}")
    root = Path(root).expanduser() if root is not None else default_root()
    needed = {"background": ["images_background"], "evaluation": ["images_evaluation"]}.get(split, list(SOURCES))

    sources = {}
    for name in needed:
        src = find_source(root, name)
        if src is None and download:
            _download(root)
            src = find_source(root, name)
        if src is None:
            raise _not_found(root, name)
        sources[name] = src

    decoded = {name: load_source(src, name, image_size) for name, src in sources.items()}
    if not split.startswith("vinyals/"):
        images, names = decoded[needed[0]]
        return FewShotDataset(_to_float(images), names, name=f"omniglot/{split}")

    index = {}
    for images, names in decoded.values():
        for i, n in enumerate(names):
            index[n] = (images, i)
    classes = split_names(split)
    out = []
    for cls in classes:
        char, rot = cls.rsplit("/", 1)
        if char not in index or not rot.startswith("rot"):
            raise ValueError(f"split {split!r} names {cls!r}, which is not in the data at {root}")
        images, i = index[char]
        out.append(rotate(images[i], int(rot[3:])))
    return FewShotDataset(_to_float(torch.stack(out)), classes, name=f"omniglot/{split}")


def _to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[C, N, H, W]`` -> float32 ``[C, N, 1, H, W]`` in [0, 1]."""
    return images.unsqueeze(2).float().div_(255.0)

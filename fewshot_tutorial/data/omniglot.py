"""Loading Omniglot (Lake et al. 2015) from the official layout, at any resolution.

The loader accepts what people actually have on disk:

* the official zips ``images_background.zip`` / ``images_evaluation.zip``,
* the same folders extracted (``images_background/<Alphabet>/characterNN/*.png``),
* torchvision's download folder (``<root>/omniglot-py/...``),

at 105x105 as downloaded or already resized (e.g. 28x28). Decoding ~32k PNGs takes
a while, so the decoded images are cached as a ``.npz`` file (safe to load, no pickle)
that is rebuilt whenever the source changes (:mod:`fewshot_tutorial.data.cache`).
Reading a source without trusting it is :mod:`fewshot_tutorial.data.sources`.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .cache import cache_dir, cache_path, read_cache, write_cache  # noqa: F401 (cache_dir: public here before)
from .cache import user_cache_root as _user_cache
from .dataset import FewShotDataset
from .episodes import as_int
from .folder import IMAGE_ERRORS, describe
from .sources import REDOWNLOAD, count_drawings, fingerprint, iter_pngs

SOURCES = ("images_background", "images_evaluation")
SPLITS = (
    "background",
    "evaluation",
    "vinyals/train",
    "vinyals/val",
    "vinyals/trainval",
    "vinyals/test",
)
# characters in each official source (Lake et al. 2015; the "small" sets of their repository)
KNOWN_CLASSES = {
    "images_background": 964,
    "images_evaluation": 659,
    "images_background_small1": 136,
    "images_background_small2": 156,
}
ROTATIONS = (0, 90, 180, 270)
_SPLIT_DIR = Path(__file__).parent / "splits"


class IncompleteDataWarning(UserWarning):
    """An Omniglot source does not hold the official number of characters or drawings."""


def default_root() -> Path:
    """Where Omniglot is looked for when no ``root`` is given.

    The ``FEWSHOT_DATA`` environment variable if set, else a per-user cache folder
    (``$XDG_CACHE_HOME/fewshot_tutorial/data`` or ``~/.cache/fewshot_tutorial/data``).
    """
    env = os.environ.get("FEWSHOT_DATA")
    if env:
        return Path(env).expanduser()
    return _user_cache() / "data"


def _candidate_dirs(root: Path) -> list[Path]:
    """Folders under ``root`` where the official files may sit (most specific first)."""
    return [root, root / "omniglot-py", root / "omniglot28", root / "omniglot105", root / "omniglot"]


def find_source(root: Path, name: str) -> Path | None:
    """Return the zip or folder holding ``name`` (e.g. ``images_background``) under ``root``.

    ``root`` may also be that zip, or that extracted folder, itself. An extracted folder
    wins over a zip beside it (it is what torchvision leaves behind) unless it holds
    fewer drawings than the zip, as a half-finished extraction does: then the zip is
    used, with a warning.
    """
    if root.is_file():
        return root if root.name == f"{name}.zip" else None
    for d in _candidate_dirs(root):
        folder, archive = d / name, d / f"{name}.zip"
        has_folder = folder.is_dir() and any(folder.iterdir())
        if has_folder and archive.is_file():
            return _more_complete(folder, archive, name)
        if has_folder:
            return folder
        if archive.is_file():
            return archive
    return root if root.name == name and root.is_dir() else None


def _more_complete(folder: Path, archive: Path, name: str) -> Path:
    """The folder, unless the zip beside it holds more drawings (a partial extraction)."""
    try:
        n_zip = count_drawings(archive, name)
    except ValueError as e:
        warnings.warn(f"using the folder {folder}: the zip beside it is unusable ({e})",
                      IncompleteDataWarning, stacklevel=3)
        return folder
    n_folder = count_drawings(folder, name)
    if n_zip <= n_folder:
        return folder
    warnings.warn(
        f"{folder} holds {n_folder} drawings but {archive.name} beside it holds {n_zip}: using "
        "the zip. Delete the folder (or finish extracting it) to silence this.",
        IncompleteDataWarning, stacklevel=3,
    )
    return archive


def _decode(data: bytes, image_size: int) -> np.ndarray:
    """PNG bytes -> ``[image_size, image_size]`` uint8 ink map (255 = ink, 0 = paper)."""
    with Image.open(io.BytesIO(data)) as im:
        img = im.convert("L")
    if img.size != (image_size, image_size):
        # Antialiased resize (Lanczos), the preprocessing of most few-shot papers.
        img = img.resize((image_size, image_size), Image.Resampling.LANCZOS)
    return 255 - np.asarray(img, dtype=np.uint8)


def _decode_source(source: Path, name: str, image_size: int) -> tuple[np.ndarray, list[str]]:
    fix = f"the zip is damaged; {REDOWNLOAD}" if source.is_file() else "remove or replace that file"
    by_class: dict[str, list[np.ndarray]] = {}
    for cls, where, data in iter_pngs(source, name):
        try:
            by_class.setdefault(cls, []).append(_decode(data, image_size))
        except IMAGE_ERRORS as e:
            raise ValueError(f"cannot decode {where} ({describe(e)}); {fix}.") from e
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

    The result is cached in :func:`cache_dir` (see :mod:`fewshot_tutorial.data.cache`):
    written atomically, rebuilt when the source's content changes, skipped with a
    warning when the folder cannot be written. Warns (:class:`IncompleteDataWarning`)
    when an official source does not hold its official number of characters.
    """
    fp = fingerprint(source)
    path = cache_path(source, name, image_size)
    decoded = read_cache(path, fp) if use_cache else None
    if decoded is None:
        decoded = _decode_source(source, name, image_size)
        if use_cache:
            write_cache(path, *decoded, fp)
    images, names = decoded
    known = KNOWN_CLASSES.get(name)
    if known is not None and len(names) != known:
        warnings.warn(
            f"{source} holds {len(names)} characters, but the official {name} has {known}; "
            "results are not comparable with published ones. If it is a partial extraction "
            "or download, delete it and extract or download it again.",
            IncompleteDataWarning, stacklevel=2,
        )
    return torch.from_numpy(images), names


def _download(root: Path) -> None:
    """Fetch the official zips with torchvision's downloader into ``root/omniglot-py``."""
    from torchvision.datasets import Omniglot

    for background in (True, False):
        Omniglot(str(root), background=background, download=True)


def _is_one_source(root: Path) -> bool:
    """Whether ``root`` is a zip or extracted folder of one split, not a folder of them."""
    return root.is_file() or root.name in SOURCES


def _not_found(root: Path, name: str) -> FileNotFoundError:
    if _is_one_source(root):
        what = "a file" if root.is_file() else f"the {root.name} folder"
        return FileNotFoundError(
            f"root={root} is {what}, not {name}; pass the folder that contains "
            "images_background.zip and images_evaluation.zip (zips or extracted folders), "
            f"e.g. root={root.parent}."
        )
    looked = ", ".join(str(d / f"{name}[.zip]") for d in _candidate_dirs(root))
    return FileNotFoundError(
        f"Omniglot's {name!r} was not found. Looked in: {looked}. Either set FEWSHOT_DATA "
        "(or pass root=...) to a folder holding images_background.zip and "
        "images_evaluation.zip (zips or extracted folders), or pass download=True "
        "(CLI: --download) to fetch them with torchvision."
    )


def _find_sources(root: Path, names: list[str], download: bool) -> dict[str, Path]:
    """The zip or folder of each of ``names``, downloading them if asked and missing."""
    sources = {}
    for name in names:
        src = find_source(root, name)
        if src is None and download and not _is_one_source(root):
            _download(root)
            src = find_source(root, name)
        if src is None:
            raise _not_found(root, name)
        sources[name] = src
    return sources


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
            ``omniglot-py`` folder), or the split's zip or folder itself (e.g.
            ``.../images_background.zip`` for ``split="background"``). Default:
            :func:`default_root`.
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

    Warns:
        IncompleteDataWarning: a source does not hold the official number of characters,
            or a partly extracted folder was passed over for the complete zip beside it.
        UserWarning: the decoded-image cache cannot be written (loading goes on without it).

    Raises:
        ValueError: unknown split, ``image_size < 4``, or a corrupt / foreign / unsafe
            source (the message names the file).
        TypeError: ``image_size`` is not an int.
        FileNotFoundError: no data at ``root`` and ``download`` is False, or ``root`` is
            a file or folder other than the split's own (the message says what to pass).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    image_size = as_int("image_size", image_size, minimum=4)
    root = Path(root).expanduser() if root is not None else default_root()
    needed = {"background": ["images_background"], "evaluation": ["images_evaluation"]}.get(split, list(SOURCES))

    sources = _find_sources(root, needed, download)
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

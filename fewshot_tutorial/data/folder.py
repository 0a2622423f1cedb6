"""Any ``<root>/<class>/<images>`` folder as a few-shot dataset (for homework data)."""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .dataset import FewShotDataset
from .episodes import as_int

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# what decoding a damaged, foreign or hostile image file can raise in Pillow
IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error,
                Image.DecompressionBombError)
BRIGHT = 0.5  # mean pixel value above which images look like dark strokes on white paper


def describe(error: BaseException) -> str:
    """``"zlib.error: ..."``: an error's qualified type (builtins unqualified) and message."""
    t = type(error)
    name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
    return f"{name}: {error}"


def load_image(path: str | os.PathLike, image_size: int = 28, invert: bool = False,
               grayscale: bool = True) -> torch.Tensor:
    """One image, preprocessed exactly as :func:`load_image_folder` does.

    Use it to classify your own drawings with a model trained on Omniglot, whose
    convention is ink = 1 on paper = 0: pass ``invert=True`` for dark strokes on white.

    Args:
        path: an image file Pillow can read.
        image_size: resized (Lanczos, antialiased) to ``image_size x image_size``.
        invert: ``1 - x``, e.g. to make dark strokes on white paper into ink = 1.
        grayscale: one channel (``True``) or three (RGB).

    Returns:
        ``[C, image_size, image_size]`` float32 in [0, 1] (``C`` = 1, or 3 for RGB).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is a folder or cannot be decoded as an image; ``image_size < 1``.
        TypeError: ``image_size`` is not an int.
    """
    image_size = as_int("image_size", image_size)
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; check the path to the image")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an image; move or remove it")
    try:
        with Image.open(path) as im:
            im = im.convert("L" if grayscale else "RGB")
            im = im.resize((image_size, image_size), Image.Resampling.LANCZOS)
            x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)
    except IMAGE_ERRORS as e:
        raise ValueError(f"cannot read {path} ({describe(e)}); remove or replace it") from e
    x = x.unsqueeze(0) if grayscale else x.permute(2, 0, 1)
    return 1.0 - x if invert else x


def load_image_folder(
    root: str | os.PathLike,
    image_size: int = 28,
    grayscale: bool = True,
    invert: bool = False,
    n_per_class: int | None = None,
) -> FewShotDataset:
    """Load ``root/<class>/<image>`` files as a :class:`FewShotDataset`.

    Every class must end up with the same number of images: by default the smallest
    class's count (extra images of larger classes are dropped, in file-name order),
    or ``n_per_class`` if given. Each image goes through :func:`load_image`.

    Args:
        root: folder with one sub-folder per class.
        image_size: images are resized (antialiased) to ``image_size x image_size``.
        grayscale: one channel (``True``) or three (RGB).
        invert: ``1 - x``, e.g. to make dark strokes on white paper into ink = 1.
        n_per_class: images kept per class.

    Returns:
        ``images: [n_classes, n_per_class, C, image_size, image_size]`` in [0, 1].

    Warns:
        UserWarning: grayscale images that look inverted (mean pixel value above 0.5,
            i.e. a bright background), since Omniglot models expect ink = 1 on
            paper = 0; pass ``invert=True`` for dark strokes on white paper.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no class folders, a class with too few images, or an unreadable image
            (the message names the file).
        TypeError: ``image_size`` or ``n_per_class`` is not an int.
    """
    image_size = as_int("image_size", image_size)
    n_per_class = None if n_per_class is None else as_int("n_per_class", n_per_class)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; expected {root}/<class>/<images>")
    classes = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            classes[d.name] = files
    if not classes:
        raise ValueError(f"{root} has no class sub-folders with images ({', '.join(IMAGE_SUFFIXES)})")
    smallest = min(len(v) for v in classes.values())
    k = smallest if n_per_class is None else n_per_class
    if k < 1 or k > smallest:
        short = [c for c, v in classes.items() if len(v) < max(k, 1)]
        raise ValueError(
            f"n_per_class={k} but class(es) {short[:5]} have only {smallest} images; "
            "lower n_per_class or add images"
        )
    x = torch.stack([torch.stack([load_image(f, image_size, invert, grayscale) for f in files[:k]])
                     for files in classes.values()])
    if grayscale and x.mean().item() > BRIGHT:
        warnings.warn(
            f"the images in {root} look inverted (mean pixel value {x.mean().item():.2f} > {BRIGHT}: "
            "a bright background); Omniglot models expect ink = 1 on paper = 0. If these are "
            f"dark strokes on white paper, pass invert={not invert}.",
            stacklevel=2,
        )
    return FewShotDataset(x.contiguous(), list(classes), name=root.name)

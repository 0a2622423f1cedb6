"""Any ``<root>/<class>/<images>`` folder as a few-shot dataset (for homework data)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .dataset import FewShotDataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


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
    or ``n_per_class`` if given.

    Args:
        root: folder with one sub-folder per class.
        image_size: images are resized (antialiased) to ``image_size x image_size``.
        grayscale: one channel (``True``) or three (RGB).
        invert: ``1 - x``, e.g. to make dark strokes on white paper into ink = 1.
        n_per_class: images kept per class.

    Returns:
        ``images: [n_classes, n_per_class, C, image_size, image_size]`` in [0, 1].

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no class folders, a class with too few images, or an unreadable image.
    """
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
    mode = "L" if grayscale else "RGB"
    out = []
    for name, files in classes.items():
        imgs = []
        for f in files[:k]:
            try:
                with Image.open(f) as im:
                    im = im.convert(mode).resize((image_size, image_size), Image.Resampling.LANCZOS)
                    imgs.append(np.asarray(im, dtype=np.float32) / 255.0)
            except OSError as e:
                raise ValueError(f"cannot read {f}: {e}; remove or replace it") from e
        out.append(np.stack(imgs))
    x = torch.from_numpy(np.stack(out))  # [C, N, H, W] or [C, N, H, W, 3]
    x = x.unsqueeze(2) if grayscale else x.permute(0, 1, 4, 2, 3)
    if invert:
        x = 1.0 - x
    return FewShotDataset(x.contiguous(), list(classes), name=root.name)

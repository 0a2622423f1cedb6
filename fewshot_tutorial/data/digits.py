"""Handwritten digits as a few-shot dataset: a cross-domain test for models trained on Omniglot.

Scikit-learn ships the UCI "Optical Recognition of Handwritten Digits" test set
(``sklearn.datasets.load_digits``: 1,797 digits 0-9 written by 13 people, each an 8 x 8
grid of ink counts 0-16), so the test needs no download. It is *not* EMNIST, which Chen
et al. (2019) use for Omniglot -> EMNIST: EMNIST has 47 or 62 classes of 28 x 28 scans
(NIST), these 10 classes are coarse 8 x 8 blocks of counts; a model sees both as
strokes on blank paper after :func:`load_digits`'s preprocessing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .dataset import FewShotDataset


def digits_to_images(counts: torch.Tensor, image_size: int = 28, digit_size: int = 20) -> torch.Tensor:
    """Ink counts to Omniglot-like images: ``[n, 8, 8]`` in 0..16 -> ``[n, 1, image_size, image_size]`` in 0..1.

    Ink is 1 and paper 0, as in the Omniglot images; each digit is resized (bilinear,
    antialiased) to ``digit_size`` pixels and centred on a blank ``image_size`` canvas,
    the MNIST layout (a 20-pixel digit in a 28-pixel square).
    """
    if counts.dim() != 3:
        raise ValueError(f"counts must be [n, H, W], got shape {tuple(counts.shape)}")
    if not 0 < digit_size <= image_size:
        raise ValueError(f"digit_size must be in 1..image_size={image_size}, got {digit_size}")
    x = (counts.float() / 16.0).clamp(0, 1)[:, None]
    x = F.interpolate(x, size=(digit_size, digit_size), mode="bilinear", antialias=True, align_corners=False)
    before = (image_size - digit_size) // 2
    after = image_size - digit_size - before
    return F.pad(x.clamp(0, 1), (before, after, before, after))


def load_digits(image_size: int = 28, n_per_class: int | None = None) -> FewShotDataset:
    """Scikit-learn's 1,797 handwritten digits as a 10-class :class:`FewShotDataset`.

    Every class keeps its first ``n_per_class`` digits (default: 174, the smallest
    class's count), so the dataset is a regular ``[10, n_per_class, 1, H, W]`` tensor.

    Raises:
        ImportError: scikit-learn is not installed (``pip install scikit-learn``).
        ValueError: ``n_per_class`` is larger than the smallest class.
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the digits dataset comes with scikit-learn: pip install scikit-learn "
                          "(or pip install 'fewshot-tutorial[book]')") from e
    bunch = sklearn_digits()
    counts, target = torch.as_tensor(bunch.images), torch.as_tensor(bunch.target)
    smallest = int(torch.bincount(target).min())
    n = smallest if n_per_class is None else n_per_class
    if not 1 <= n <= smallest:
        raise ValueError(f"n_per_class must be in 1..{smallest} (the smallest class has {smallest} digits), got {n}")
    images = torch.stack([digits_to_images(counts[target == k][:n], image_size) for k in range(10)])
    return FewShotDataset(images, [f"digit {k}" for k in range(10)], name="digits (scikit-learn)")

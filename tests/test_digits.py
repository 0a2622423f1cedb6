"""Scikit-learn's digits as a few-shot dataset (the cross-domain test)."""

from __future__ import annotations

import pytest
import torch

from fewshot_tutorial import EpisodeSampler
from fewshot_tutorial.data import load_digits
from fewshot_tutorial.data.digits import digits_to_images


def test_digits_are_a_regular_ten_class_dataset_with_ink_one_on_blank_paper():
    d = load_digits()
    assert d.images.shape == (10, 174, 1, 28, 28) and d.n_classes == 10
    assert d.images.min() == 0 and 0.9 < d.images.max() <= 1
    assert d.images[..., :4, :].abs().sum() == 0 and d.images[..., -4:].abs().sum() == 0  # the 4-pixel margin
    assert d.images.mean() < 0.5  # mostly paper, as Omniglot (ink 1, paper 0)
    episode = next(iter(EpisodeSampler(d, 5, 1, 15, seed=0)))
    assert episode.support_x.shape == (5, 1, 28, 28)


def test_each_class_holds_its_own_digits_in_order():
    from sklearn.datasets import load_digits as raw
    bunch = raw()
    counts = torch.as_tensor(bunch.images)
    target = torch.as_tensor(bunch.target)
    d = load_digits(n_per_class=3)
    for k in (0, 7):
        torch.testing.assert_close(d.images[k], digits_to_images(counts[target == k][:3]))


def test_the_resize_keeps_the_ink_where_it_was():
    counts = torch.zeros(1, 8, 8)
    counts[0, :, :4] = 16  # ink on the left half
    x = digits_to_images(counts)[0, 0]
    assert x[:, :14].sum() > 10 * x[:, 14:].sum()
    with pytest.raises(ValueError, match="digit_size"):
        digits_to_images(counts, image_size=28, digit_size=30)


def test_too_many_per_class_is_refused():
    with pytest.raises(ValueError, match="smallest class has 174"):
        load_digits(n_per_class=175)

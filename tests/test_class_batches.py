"""The class-batch sampler: labels are the dataset's classes, images distinct, seeded."""

from __future__ import annotations

import pytest
import torch

from fewshot_tutorial import FewShotDataset
from fewshot_tutorial.data import ClassBatchSampler


def _data(n_classes: int = 7, n_per_class: int = 4) -> FewShotDataset:
    # image (c, i) is filled with the value 10 c + i: an image says where it came from
    values = torch.arange(n_classes)[:, None] * 10 + torch.arange(n_per_class)[None, :]
    images = values[:, :, None, None, None].float().expand(n_classes, n_per_class, 1, 16, 16).contiguous()
    return FewShotDataset(images, [f"c{i}" for i in range(n_classes)])


def test_batches_are_labelled_with_the_dataset_classes_and_distinct():
    data = _data()
    for x, y in ClassBatchSampler(data, batch_size=20, seed=3, n_batches=10):
        assert x.shape == (20, 1, 16, 16) and y.shape == (20,) and y.dtype == torch.long
        assert 0 <= int(y.min()) and int(y.max()) < data.n_classes
        value = x[:, 0, 0, 0].long()
        assert torch.equal(value // 10, y)  # each image carries its own class label
        assert len(set(value.tolist())) == 20  # no image twice in a batch


def test_every_class_is_drawn_and_seeds_reproduce():
    data = _data()
    seen = torch.cat([y for _, y in ClassBatchSampler(data, batch_size=8, seed=0, n_batches=30)])
    assert set(seen.tolist()) == set(range(data.n_classes))
    a = [y for _, y in ClassBatchSampler(data, 8, seed=5, n_batches=3)]
    b = [y for _, y in ClassBatchSampler(data, 8, seed=5, n_batches=3)]
    c = [y for _, y in ClassBatchSampler(data, 8, seed=6, n_batches=3)]
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and not all(torch.equal(u, v) for u, v in zip(a, c))
    assert len(ClassBatchSampler(data, 8, n_batches=3)) == 3


def test_bad_batch_sizes_are_refused():
    with pytest.raises(ValueError, match="only 28 images"):
        ClassBatchSampler(_data(), batch_size=29)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        ClassBatchSampler(_data(), batch_size=0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        ClassBatchSampler(_data(), batch_size=2.0)

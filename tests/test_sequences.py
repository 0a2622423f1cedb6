"""Sequence episodes (Santoro et al. 2016): label one step late, labels reshuffled, seeded, counted."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from fewshot_tutorial.data import FewShotDataset
from fewshot_tutorial.data.sequences import (
    SequenceEpisode,
    SequenceSampler,
    instance_numbers,
    previous_labels,
)


def identity_data(n_classes: int = 8, n_per_class: int = 20) -> FewShotDataset:
    """Image ``[c, j]`` is filled with ``c * 1000 + j``: every image says which class and drawing it is."""
    ids = torch.arange(n_classes)[:, None] * 1000 + torch.arange(n_per_class)[None, :]
    images = ids[:, :, None, None, None].float().expand(-1, -1, 1, 2, 2).contiguous()
    return FewShotDataset(images, [f"c{i}" for i in range(n_classes)])


def identities(episode: SequenceEpisode) -> tuple[list[int], list[int]]:
    ids = episode.x[:, 0, 0, 0].long()
    return (ids // 1000).tolist(), (ids % 1000).tolist()


def test_the_label_input_is_the_previous_true_label():
    ep = SequenceSampler(identity_data(), 5, 50, seed=0).sample()
    assert ep.x.shape == (50, 1, 2, 2) and ep.y.shape == (50,) and ep.prev_label.shape == (50, 5)
    assert torch.equal(ep.prev_label[0], torch.zeros(5))
    for t in range(1, 50):
        expected = torch.zeros(5)
        expected[ep.y[t - 1]] = 1.0
        assert torch.equal(ep.prev_label[t], expected), t


def test_classes_labels_and_drawings_of_one_episode():
    data = identity_data()
    for ep in SequenceSampler(data, 5, 50, seed=3, n_episodes=20):
        classes, drawings = identities(ep)
        label_of = {}
        for c, y in zip(classes, ep.y.tolist()):
            assert label_of.setdefault(c, y) == y  # one label per class
        assert len(label_of) == 5 and sorted(label_of.values()) == [0, 1, 2, 3, 4]  # a bijection
        assert Counter(classes) == {c: 10 for c in label_of}  # 50 images, 10 of each class
        assert len(set(zip(classes, drawings))) == 50  # no drawing shown twice


def test_uneven_lengths_spread_the_extra_images_over_random_classes():
    counts = [sorted(Counter(ep.y.tolist()).values()) for ep in
              SequenceSampler(identity_data(), 5, 12, seed=0, n_episodes=30)]
    assert all(c == [2, 2, 2, 3, 3] for c in counts)


def test_labels_are_reshuffled_in_every_episode():
    """With exactly N classes every episode uses them all; each class must get every label about as often."""
    counts = Counter()
    for ep in SequenceSampler(identity_data(n_classes=5), 5, 10, seed=0, n_episodes=250):
        classes, _ = identities(ep)
        counts.update(set(zip(classes, ep.y.tolist())))
    assert len(counts) == 25  # every (class, label) pair occurs
    assert all(25 <= n <= 75 for n in counts.values()), counts  # 50 expected each


def test_images_are_shuffled_in_the_sequence():
    ep = SequenceSampler(identity_data(), 5, 50, seed=0).sample()
    changes = int((ep.y[1:] != ep.y[:-1]).sum())
    assert changes > 25  # grouped by class it would be 4


def test_instance_counts_the_appearances_so_far():
    for ep in SequenceSampler(identity_data(), 5, 50, seed=1, n_episodes=5):
        seen = Counter()
        for t, y in enumerate(ep.y.tolist()):
            seen[y] += 1
            assert ep.instance[t] == seen[y]
        assert int(ep.instance.max()) == 10 and int((ep.instance == 1).sum()) == 5


def test_helpers_on_a_hand_made_sequence():
    y = torch.tensor([2, 0, 2, 2, 1])
    assert instance_numbers(y, 3).tolist() == [1, 1, 2, 3, 1]
    assert previous_labels(y, 3).tolist() == [[0, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1], [0, 0, 1]]


def test_seeded_and_independent_of_how_many_follow():
    data = identity_data()
    a = list(SequenceSampler(data, 5, 50, seed=7, n_episodes=2))
    b = list(SequenceSampler(data, 5, 50, seed=7, n_episodes=6))[:2]
    c = list(SequenceSampler(data, 5, 50, seed=8, n_episodes=2))
    for e, f in zip(a, b):
        assert all(torch.equal(getattr(e, k), getattr(f, k)) for k in ("x", "y", "prev_label", "instance"))
    assert not torch.equal(a[0].x, c[0].x)
    assert not torch.equal(a[0].x, a[1].x)


def test_collate_stacks_episodes_and_to_moves_them():
    eps = list(SequenceSampler(identity_data(), 5, 15, seed=0, n_episodes=3))
    batch = SequenceEpisode.collate(eps)
    assert batch.x.shape == (3, 15, 1, 2, 2) and batch.y.shape == (3, 15) and batch.prev_label.shape == (3, 15, 5)
    assert batch.instance.shape == (3, 15) and batch.n_classes == 5 and batch.length == 15
    assert torch.equal(batch.y[1], eps[1].y) and torch.equal(batch.x[2], eps[2].x)
    meta = batch.to("meta")
    assert meta.x.device.type == "meta" and meta.instance.device.type == "meta"
    with pytest.raises(ValueError, match="different"):
        SequenceEpisode.collate([eps[0], SequenceSampler(identity_data(), 5, 10, seed=0).sample()])
    with pytest.raises(ValueError, match="single episodes"):
        SequenceEpisode.collate([batch])
    with pytest.raises(ValueError, match="at least one"):
        SequenceEpisode.collate([])


def test_sampling_follows_the_dataset_device():
    data = identity_data()
    ep = SequenceSampler(FewShotDataset(data.images.to("meta"), data.class_names), 5, 20, seed=0).sample()
    assert {t.device.type for t in (ep.x, ep.y, ep.prev_label, ep.instance)} == {"meta"}


def test_a_sequence_episode_checks_its_shapes():
    x, y = torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="prev_label"):
        SequenceEpisode(x, y, torch.zeros(3, 2), torch.ones(4, dtype=torch.long))
    with pytest.raises(TypeError, match="instance"):
        SequenceEpisode(x, y, torch.zeros(4, 2), [1, 1, 1, 1])


@pytest.mark.parametrize("kwargs, error, message", [
    ({"n_classes": 9}, ValueError, "n_classes=9"),
    ({"n_classes": 0}, ValueError, "n_classes"),
    ({"n_classes": True}, TypeError, "n_classes"),
    ({"length": 4}, ValueError, "length=4"),
    ({"length": 105}, ValueError, "length=105"),
    ({"length": 2.5}, TypeError, "length"),
    ({"seed": "0"}, TypeError, "seed"),
    ({"n_episodes": 0}, ValueError, "n_episodes"),
])
def test_bad_arguments_name_the_argument(kwargs, error, message):
    args = {"n_classes": 5, "length": 50, **kwargs}
    with pytest.raises(error, match=message):
        SequenceSampler(identity_data(), **args)

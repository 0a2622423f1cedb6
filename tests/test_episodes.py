"""Episode sampler invariants under a seeded generator."""

from __future__ import annotations

import pytest
import torch

from fewshot_tutorial import Episode, EpisodeSampler, FewShotDataset


def numbered_dataset(n_classes=12, n_per_class=20) -> FewShotDataset:
    """Image (c, i) is a constant image of value c * 1000 + i: its content names it."""
    v = torch.arange(n_classes * n_per_class, dtype=torch.float32).reshape(n_classes, n_per_class)
    v = (v // n_per_class) * 1000 + v % n_per_class
    return FewShotDataset(v[:, :, None, None, None].expand(-1, -1, 1, 2, 2).clone(),
                          [f"c{i}" for i in range(n_classes)])


@pytest.mark.parametrize("n_way,n_shot,n_query", [(5, 1, 15), (3, 5, 2), (12, 10, 10)])
def test_shapes_labels_and_disjointness(n_way, n_shot, n_query):
    s = EpisodeSampler(numbered_dataset(), n_way, n_shot, n_query, seed=1)
    for _ in range(20):
        e = s.sample()
        assert e.support_x.shape == (n_way * n_shot, 1, 2, 2)
        assert e.query_x.shape == (n_way * n_query, 1, 2, 2)
        assert e.support_y.tolist() == [c for c in range(n_way) for _ in range(n_shot)]
        assert e.query_y.tolist() == [c for c in range(n_way) for _ in range(n_query)]
        ids_s = e.support_x[:, 0, 0, 0].tolist()
        ids_q = e.query_x[:, 0, 0, 0].tolist()
        assert not set(ids_s) & set(ids_q)  # no image in both sets
        assert len(set(ids_s + ids_q)) == len(ids_s + ids_q)  # no image twice
        # one original class per label, the same in support and query
        cls_s = {y: {int(i // 1000) for i, yy in zip(ids_s, e.support_y.tolist()) if yy == y} for y in range(n_way)}
        cls_q = {y: {int(i // 1000) for i, yy in zip(ids_q, e.query_y.tolist()) if yy == y} for y in range(n_way)}
        assert all(len(cls_s[y]) == 1 and cls_s[y] == cls_q[y] for y in range(n_way))
        assert len({next(iter(cls_s[y])) for y in range(n_way)}) == n_way
        assert (e.n_way, e.n_shot, e.n_query) == (n_way, n_shot, n_query)


def test_same_seed_same_episodes_other_seed_others():
    d = numbered_dataset()
    a = [e.query_x for e in EpisodeSampler(d, 5, 1, 3, seed=7, n_episodes=5)]
    b = [e.query_x for e in EpisodeSampler(d, 5, 1, 3, seed=7, n_episodes=5)]
    c = [e.query_x for e in EpisodeSampler(d, 5, 1, 3, seed=8, n_episodes=5)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_the_first_episodes_do_not_depend_on_how_many_follow():
    """Chapter 5 reuses the first n episodes of a longer evaluation as the n-episode one."""
    d = numbered_dataset()
    short = list(EpisodeSampler(d, 5, 1, 3, seed=0, n_episodes=4))
    long = list(EpisodeSampler(d, 5, 1, 3, seed=0, n_episodes=9))[:4]
    for a, b in zip(short, long):
        assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_x, b.query_x)
        assert torch.equal(a.support_y, b.support_y) and torch.equal(a.query_y, b.query_y)


def test_all_classes_get_used():
    s = EpisodeSampler(numbered_dataset(), 5, 1, 1, seed=0)
    seen = set()
    for _ in range(50):
        seen |= {int(v // 1000) for v in s.sample().support_x[:, 0, 0, 0].tolist()}
    assert seen == set(range(12))


def test_iteration_length():
    s = EpisodeSampler(numbered_dataset(), 2, 1, 1, seed=0, n_episodes=4)
    assert len(s) == 4 and len(list(s)) == 4
    with pytest.raises(TypeError):
        len(EpisodeSampler(numbered_dataset(), 2, 1, 1))


@pytest.mark.parametrize("args,match", [
    ((13, 1, 1), "n_way=13 but the dataset has only 12 classes"),
    ((5, 10, 11), "n_shot \\+ n_query = 10 \\+ 11 = 21 but each class has only 20"),
    ((0, 1, 1), "n_way must be a positive integer, got 0"),
    ((5, -1, 1), "n_shot must be a positive integer"),
    ((5, 1, 0), "n_query must be a positive integer"),
])
def test_impossible_requests(args, match):
    with pytest.raises(ValueError, match=match):
        EpisodeSampler(numbered_dataset(), *args)


def test_episode_to_device_and_channels_last():
    e = EpisodeSampler(numbered_dataset(), 3, 2, 2, seed=0).sample()
    m = e.to("meta")
    assert m.support_x.device.type == "meta" and m.n_way == 3
    cl = e.to("cpu", channels_last=True)
    assert cl.query_x.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="must match"):
        Episode(e.support_x, e.support_y[:-1], e.query_x, e.query_y)

"""Bad arguments to EpisodeSampler and Episode (issue 14), and unlabelled queries (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import vmap

from fewshot_tutorial import Episode, EpisodeSampler, FewShotDataset


def dataset(n_classes=6, n_per_class=5) -> FewShotDataset:
    return FewShotDataset(torch.rand(n_classes, n_per_class, 1, 2, 2), [f"c{i}" for i in range(n_classes)])


def episode(n_way=3, n_shot=2, n_query=2, **kw) -> Episode:
    x = torch.zeros(n_way * n_shot, 1, 2, 2), torch.zeros(n_way * n_query, 1, 2, 2)
    sy, qy = (torch.arange(n_way).repeat_interleave(k) for k in (n_shot, n_query))
    return Episode(x[0], kw.get("support_y", sy), x[1], kw.get("query_y", qy), n_way=kw.get("n_way", n_way))


# ----------------------------------------------------------------------- the sampler
@pytest.mark.parametrize("arg", ["n_way", "n_shot", "n_query"])
def test_bool_counts_are_refused(arg):
    kw = {"n_way": 3, "n_shot": 1, "n_query": 1, arg: True}
    with pytest.raises(TypeError, match=f"{arg} must be an int, got the bool True"):
        EpisodeSampler(dataset(), **kw)


@pytest.mark.parametrize("bad", [2.0, "3", None])
def test_non_integer_counts_are_refused(bad):
    with pytest.raises(TypeError, match="n_shot must be an int"):
        EpisodeSampler(dataset(), 3, bad, 1)


def test_numpy_integers_are_accepted_as_ints():
    d = dataset()
    s = EpisodeSampler(d, np.int64(3), np.int32(2), np.int64(1), seed=np.int64(4), n_episodes=np.int64(2))
    assert all(type(v) is int for v in (s.n_way, s.n_shot, s.n_query, s.seed, s.n_episodes))
    e = s.sample()
    assert (e.n_way, e.n_shot, e.n_query) == (3, 2, 1) and len(list(s)) == 2
    ref = EpisodeSampler(d, 3, 2, 1, seed=4).sample()
    assert torch.equal(e.query_x, ref.query_x)  # same seed, same episode


@pytest.mark.parametrize("seed", ["1", 1.5, True])
def test_seed_must_be_an_int(seed):
    with pytest.raises(TypeError, match="seed must be an int"):
        EpisodeSampler(dataset(), 3, 1, 1, seed=seed)


@pytest.mark.parametrize("n", [0, -1])
def test_n_episodes_must_be_positive(n):
    match = f"n_episodes must be a positive integer \\(or None for an endless sampler\\), got {n}"
    with pytest.raises(ValueError, match=match):
        EpisodeSampler(dataset(), 3, 1, 1, n_episodes=n)
    with pytest.raises(TypeError, match="n_episodes must be an int"):
        EpisodeSampler(dataset(), 3, 1, 1, n_episodes="5")


# ------------------------------------------------------------------------ the episode
@pytest.mark.parametrize("where,labels,match", [
    ("support_y", torch.tensor([0, 0, 1, 1, 2, 3]), "support_y holds label\\(s\\) \\[3\\] outside 0..2"),
    ("support_y", torch.tensor([0, 0, 1, 1, 2, -1]), "support_y holds label\\(s\\) \\[-1\\] outside 0..2"),
    ("query_y", torch.tensor([0, 0, 1, 5, 2, 2]), "query_y holds label\\(s\\) \\[5\\] outside 0..2"),
    ("support_y", torch.tensor([0, 0, 0, 0, 2, 2]), "class\\(es\\) \\[1\\] of n_way=3 have no support image"),
])
def test_labels_outside_the_classes_are_refused(where, labels, match):
    with pytest.raises(ValueError, match=match):
        episode(**{where: labels})


def test_empty_support_and_non_tensors_are_refused():
    with pytest.raises(ValueError, match="support set is empty"):
        Episode(torch.zeros(0, 1, 2, 2), torch.zeros(0, dtype=torch.long), torch.zeros(1, 1, 2, 2), None, n_way=2)
    with pytest.raises(TypeError, match="support_y must be a torch.Tensor, got list"):
        Episode(torch.zeros(2, 1, 2, 2), [0, 1], torch.zeros(1, 1, 2, 2))
    with pytest.raises(TypeError, match="n_way must be an int"):
        Episode(torch.zeros(2, 1, 2, 2), torch.arange(2), torch.zeros(1, 1, 2, 2), n_way=2.0)
    with pytest.raises(TypeError, match="support_y must hold integer class indices"):
        episode(n_way=2, n_shot=1, support_y=torch.tensor([False, True]))


def test_labels_are_not_read_where_that_would_stall_or_fail():
    """Float labels are regression targets; inside vmap labels cannot be read (MAML's
    vectorised tasks pass n_way=1 with class labels); on the meta device there are none."""
    Episode(torch.zeros(3, 1), torch.tensor([0.5, 7.0, -2.0]), torch.zeros(2, 1), torch.zeros(2), n_way=1)
    ys = torch.arange(3).repeat(4, 2)  # 4 tasks, labels 0..2
    out = vmap(lambda y: Episode(torch.zeros(6, 1), y, torch.zeros(6, 1), y, n_way=1).support_y)(ys)
    assert torch.equal(out, ys)
    m = episode().to("meta")
    assert m.n_way == 3 and m.n_query == 2


def test_unlabelled_queries():
    e = episode(query_y=None)
    assert e.query_y is None and e.n_query == 6  # no labels: the number of query images
    one = Episode(e.support_x, e.support_y, torch.zeros(1, 1, 2, 2), None)
    assert one.n_way == 3 and one.n_query == 1
    assert one.to("cpu").query_y is None


def test_n_query_is_per_class_when_balanced_else_the_total():
    assert episode(n_query=4).n_query == 4
    single = Episode(torch.zeros(3, 1, 2, 2), torch.arange(3), torch.zeros(1, 1, 2, 2), torch.tensor([2]))
    assert single.n_query == 1  # not 1 // 3 == 0
    unbalanced = episode(n_query=2, query_y=torch.tensor([0, 0, 0, 1, 2, 2]))
    assert unbalanced.n_query == 6


def test_docstring_states_class_major_order():
    assert "arange(n_way).repeat_interleave(n_shot)" in Episode.__doc__
    e = EpisodeSampler(dataset(), 3, 2, 1, seed=0).sample()
    assert torch.equal(e.support_y, torch.arange(3).repeat_interleave(2))

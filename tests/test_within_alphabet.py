"""Within-alphabet, across-drawer episodes (Lake et al.'s protocol for any split)."""

from __future__ import annotations

import pytest
import torch

from fewshot_tutorial import FewShotDataset, evaluate, pixel_nearest_neighbour
from fewshot_tutorial.data.within_alphabet import WithinAlphabetSampler, alphabet_of


def toy(n_alphabets: int = 3, chars: tuple[int, ...] = (4, 6, 2), drawers: int = 5) -> FewShotDataset:
    """Image (a, c, d) is a constant image of value 1000 a + 10 c + d: indices readable from pixels."""
    names, images = [], []
    for a in range(n_alphabets):
        for c in range(chars[a]):
            names.append(f"A{a}/character{c:02d}")
            images.append(torch.stack([torch.full((1, 16, 16), 1000.0 * a + 10 * c + d) for d in range(drawers)]))
    return FewShotDataset(torch.stack(images), names, name="toy")


def decode(x: torch.Tensor) -> list[tuple[int, int, int]]:
    v = x[:, 0, 0, 0].long().tolist()
    return [(u // 1000, (u % 1000) // 10, u % 10) for u in v]


def test_one_alphabet_per_episode_support_and_queries_by_different_drawers():
    d = toy()
    for episode in WithinAlphabetSampler(d, n_way=4, n_shot=1, n_query=2, seed=0, n_episodes=50):
        support, query = decode(episode.support_x), decode(episode.query_x)
        alphabets = {a for a, _, _ in support + query}
        assert len(alphabets) == 1 and alphabets <= {0, 1}  # alphabet 2 has only 2 characters
        assert len({d for _, _, d in support}) == 1  # one support drawer for every class
        query_drawers = {d for _, _, d in query}
        assert len(query_drawers) == 2 and not query_drawers & {d for _, _, d in support}
        for label, (_, c, _) in zip(episode.support_y.tolist(), support):  # a label is one character
            assert all(qc == c for ql, (_, qc, _) in zip(episode.query_y.tolist(), query) if ql == label)
        assert sorted(set(episode.support_y.tolist())) == list(range(4))


def test_seeded_and_every_eligible_alphabet_is_drawn():
    d = toy()
    a = [decode(e.support_x) for e in WithinAlphabetSampler(d, n_way=2, seed=3, n_episodes=40)]
    b = [decode(e.support_x) for e in WithinAlphabetSampler(d, n_way=2, seed=3, n_episodes=40)]
    assert a == b
    assert {s[0][0] for s in a} == {0, 1, 2}


def test_bad_requests_say_what_to_do():
    with pytest.raises(ValueError, match="largest alphabet of 'toy' has 6 characters"):
        WithinAlphabetSampler(toy(), n_way=7)
    with pytest.raises(ValueError, match="only 5 drawings"):
        WithinAlphabetSampler(toy(), n_way=2, n_shot=3, n_query=3)
    with pytest.raises(ValueError, match="not 'Alphabet/character'"):
        alphabet_of("plain")
    assert alphabet_of("Greek/character05/rot090") == "Greek/rot090"


def test_within_alphabet_episodes_are_harder_for_pixels(evaluation):
    """The point of the protocol: lookalike characters make 20-way trials harder."""
    mixed = evaluate(pixel_nearest_neighbour, evaluation, 20, 1, 1, n_episodes=200, seed=0, progress=False)
    within = evaluate(pixel_nearest_neighbour, evaluation, 20, 1, 1, n_episodes=200, seed=0, progress=False,
                      within_alphabet=True)
    assert within.n == 200 and within.accuracy < mixed.accuracy

"""LRUA addressing (Santoro et al. 2016, sec. 3): each formula against a naive loop, gradients, the masks."""

from __future__ import annotations

import math

import pytest
import torch

from fewshot_tutorial import memory as lrua

B, R, N, W = 2, 3, 6, 4


def naive_cosine(u: list[float], v: list[float], eps: float = 1e-6) -> float:
    dot = sum(a * b for a, b in zip(u, v))
    return dot / (math.sqrt(sum(a * a for a in u) + eps) * math.sqrt(sum(b * b for b in v) + eps))


@pytest.fixture
def tensors():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(B, R, W, generator=g, dtype=torch.float64),
            torch.randn(B, N, W, generator=g, dtype=torch.float64))


def test_cosine_similarity_and_read_weights_against_a_loop(tensors):
    keys, memory = tensors
    sim, weights = lrua.cosine_similarity(keys, memory), lrua.read_weights(keys, memory)
    for b in range(B):
        for r in range(R):
            k = [naive_cosine(keys[b, r].tolist(), memory[b, i].tolist()) for i in range(N)]
            z = sum(math.exp(v) for v in k)
            for i in range(N):
                assert sim[b, r, i].item() == pytest.approx(k[i], rel=1e-9)
                assert weights[b, r, i].item() == pytest.approx(math.exp(k[i]) / z, rel=1e-9)


def test_cosine_is_scale_invariant_and_one_for_the_same_direction(tensors):
    keys, memory = tensors
    memory = memory.clone()
    memory[:, 0] = 3.0 * keys[:, 0]
    sim = lrua.cosine_similarity(keys, memory)
    torch.testing.assert_close(sim[:, 0, 0], torch.ones(B, dtype=torch.float64), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(sim, lrua.cosine_similarity(2 * keys, 5 * memory), rtol=1e-6, atol=1e-6)


def test_read_against_a_loop(tensors):
    keys, memory = tensors
    w = lrua.read_weights(keys, memory)
    r = lrua.read(w, memory)
    for b in range(B):
        for h in range(R):
            expected = sum(w[b, h, i] * memory[b, i] for i in range(N))
            torch.testing.assert_close(r[b, h], expected)


def test_gradcheck_of_the_read_in_float64(tensors):
    keys, memory = (t.clone().requires_grad_() for t in tensors)
    with torch.no_grad():
        memory[:, -1] = 0.0  # an erased row
    assert torch.autograd.gradcheck(lambda k, m: lrua.read(lrua.read_weights(k, m), m), (keys, memory))


def test_gradients_are_finite_at_zero_memory_rows_and_zero_keys():
    keys = torch.zeros(1, 2, W, requires_grad=True)
    memory = torch.zeros(1, N, W, requires_grad=True)
    out = lrua.read(lrua.read_weights(keys, memory), memory)
    (out.sum() + lrua.cosine_similarity(keys, memory).sum()).backward()
    assert torch.isfinite(keys.grad).all() and torch.isfinite(memory.grad).all()
    # without the epsilon the same expression is 0/0
    naive = (keys @ memory.transpose(1, 2)) / (keys.norm(dim=-1)[..., None] * memory.norm(dim=-1)[:, None])
    assert torch.isnan(naive).all()


def test_usage_update_against_the_formula_and_its_decay():
    g = torch.Generator().manual_seed(1)
    prev, rw, ww = torch.rand(B, N, generator=g), torch.rand(B, R, N, generator=g), torch.rand(B, R, N, generator=g)
    u = lrua.update_usage(prev, rw, ww, gamma=0.9)
    for b in range(B):
        for i in range(N):
            expected = 0.9 * prev[b, i] + sum(rw[b, h, i] + ww[b, h, i] for h in range(R))
            assert u[b, i].item() == pytest.approx(expected.item(), rel=1e-6)
    usage, zero = prev, torch.zeros(B, R, N)
    for t in range(1, 6):  # no reads, no writes: usage decays geometrically
        usage = lrua.update_usage(usage, zero, zero, gamma=0.95)
        torch.testing.assert_close(usage, prev * 0.95**t)


def test_least_used_weights_pick_the_n_smallest_usages():
    g = torch.Generator().manual_seed(2)
    usage = torch.rand(5, N, generator=g)
    for m in (1, 2, 4):
        lu = lrua.least_used_weights(usage, m)
        per_head = lrua.least_used_per_head(usage, m)
        for b in range(5):
            smallest = sorted(range(N), key=lambda i: usage[b, i].item())[:m]
            assert [i for i in range(N) if lu[b, i] == 1] == sorted(smallest)
            assert set(lu[b].tolist()) <= {0.0, 1.0}
            for h in range(m):  # head h: the h-th least used row
                assert per_head[b, h].tolist() == [1.0 if i == smallest[h] else 0.0 for i in range(N)]
        torch.testing.assert_close(per_head.sum(1), lu)


def test_ties_go_to_the_lower_index_and_bad_head_counts_raise():
    assert lrua.least_used_weights(torch.zeros(1, N), 2).tolist() == [[1, 1, 0, 0, 0, 0]]
    with pytest.raises(ValueError, match="n_reads=7"):
        lrua.least_used_weights(torch.zeros(1, N), 7)
    with pytest.raises(ValueError, match="n_reads=0"):
        lrua.least_used_per_head(torch.zeros(1, N), 0)


def test_write_weights_interpolate_previous_reads_and_least_used():
    g = torch.Generator().manual_seed(3)
    alpha, prev_r = torch.randn(B, R, generator=g), torch.rand(B, R, N, generator=g).softmax(-1)
    lu = lrua.least_used_per_head(torch.rand(B, N, generator=g), R)
    ww = lrua.write_weights(alpha, prev_r, lu)
    for b in range(B):
        for h in range(R):
            s = 1 / (1 + math.exp(-alpha[b, h].item()))
            torch.testing.assert_close(ww[b, h], s * prev_r[b, h] + (1 - s) * lu[b, h])
    shared = lrua.least_used_weights(torch.rand(B, N, generator=g), 1)  # [B, N]: the same for every head
    torch.testing.assert_close(lrua.write_weights(alpha, prev_r, shared),
                               lrua.write_weights(alpha, prev_r, shared[:, None].expand(B, R, N)))
    torch.testing.assert_close(lrua.write_weights(torch.full((B, R), 50.0), prev_r, lu), prev_r)
    torch.testing.assert_close(lrua.write_weights(torch.full((B, R), -50.0), prev_r, lu), lu)


def test_zero_least_used_erases_exactly_the_least_used_row(tensors):
    _, memory = tensors
    usage = torch.tensor([[0.5, 0.1, 0.9, 0.3, 0.2, 0.7], [0.0, 0.4, 0.4, 0.4, 0.4, 0.4]], dtype=torch.float64)
    out = lrua.zero_least_used(memory, usage)
    for b, erased in ((0, 1), (1, 0)):
        for i in range(N):
            expected = torch.zeros(W, dtype=torch.float64) if i == erased else memory[b, i]
            assert torch.equal(out[b, i], expected)


def test_write_adds_the_weighted_vectors_to_every_row(tensors):
    keys, memory = tensors
    ww = torch.rand(B, R, N, dtype=torch.float64)
    out = lrua.write(memory, ww, keys)
    for b in range(B):
        for i in range(N):
            torch.testing.assert_close(out[b, i], memory[b, i] + sum(ww[b, h, i] * keys[b, h] for h in range(R)))

"""Heads on frozen embeddings: the cosine head, SGD fine-tuning against torch.optim.SGD, logistic regression."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fewshot_tutorial.heads import (
    CosineClassifier,
    cosine_logits,
    cosine_softmax_bound,
    finetune_head,
    head_logits,
    logistic_regression,
    logistic_regression_gradient,
    minibatch_indices,
)


def _support(n_way: int = 4, n_shot: int = 3, d: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = 2 * torch.randn(n_way, d, generator=g)
    y = torch.arange(n_way).repeat_interleave(n_shot)
    return centres[y] + torch.randn(len(y), d, generator=g), y


def test_cosine_logits_match_a_loop_and_gradcheck():
    """{eq}`eq-cosine-head`: s * w_k.z / (||w_k|| ||z||)."""
    g = torch.Generator().manual_seed(1)
    z, w = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    got = cosine_logits(z, w, 7.0)
    for i in range(5):
        for k in range(4):
            assert got[i, k].item() == pytest.approx(7.0 * (z[i] @ w[k]).item() / (z[i].norm() * w[k].norm()).item())
    z.requires_grad_(), w.requires_grad_()
    assert torch.autograd.gradcheck(lambda z, w: cosine_logits(z, w, 3.0), (z, w))
    head = CosineClassifier(3, 4, scale=10.0)
    assert head(z.float()).abs().max() <= 10.0 + 1e-5 and head.scale.requires_grad
    assert not CosineClassifier(3, 4, learn_scale=False).scale.requires_grad


def test_the_cosine_softmax_bound_holds_and_is_reached():
    """{eq}`eq-cosine-bound`: p_k <= e^s / (e^s + (N - 1) e^-s), with equality for antipodal weights."""
    g = torch.Generator().manual_seed(2)
    s, n = 3.0, 50
    bound = cosine_softmax_bound(s, n)
    z, w = torch.randn(200, 8, generator=g, dtype=torch.float64), torch.randn(n, 8, generator=g, dtype=torch.float64)
    assert cosine_logits(z, w, s).softmax(-1).max() < bound
    w_reached = torch.cat([z[:1], -z[:1].expand(n - 1, -1)])  # w_0 along z, every other weight opposite
    assert cosine_logits(z[:1], w_reached, s).softmax(-1)[0, 0].item() == pytest.approx(bound, rel=1e-12)
    assert cosine_softmax_bound(1.0, 964) == pytest.approx(0.00762, abs=1e-5)
    with pytest.raises(ValueError):
        cosine_softmax_bound(0.0, 5)


def test_minibatches_are_epochs_of_permutations():
    idx = minibatch_indices(10, 4, 7, torch.Generator().manual_seed(0))
    assert [len(i) for i in idx] == [4, 4, 2, 4, 4, 2, 4]
    assert sorted(torch.cat(idx[:3]).tolist()) == list(range(10))


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_finetune_head_equals_torch_sgd(kind):
    """The hand-written momentum step is torch.optim.SGD's (same init, same batches)."""
    z, y = _support()
    scale = 5.0 if kind == "cosine" else None
    w, b = finetune_head(z, y, 4, kind, scale, steps=12, lr=0.05, momentum=0.9, weight_decay=1e-3, batch_size=4, seed=3)
    g = torch.Generator().manual_seed(3)
    w0 = ((torch.rand(4, 6, generator=g) * 2 - 1) / 6**0.5).requires_grad_()
    params = [w0] if kind == "cosine" else [w0, torch.zeros(4, requires_grad=True)]
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-3)
    for idx in minibatch_indices(len(z), 4, 12, g):
        opt.zero_grad()
        F.cross_entropy(head_logits(z[idx], w0, params[1] if kind == "linear" else None, scale), y[idx]).backward()
        opt.step()
    torch.testing.assert_close(w, w0.detach())
    if kind == "linear":
        torch.testing.assert_close(b, params[1].detach())
    else:
        assert b is None


def test_finetune_head_fits_the_support_set_deterministically_and_without_grad_mode():
    z, y = _support()
    with torch.no_grad():  # as in evaluate: the head still trains
        w, b = finetune_head(z, y, 4)
    assert (head_logits(z, w, b).argmax(-1) == y).all()
    w2, b2 = finetune_head(z, y, 4)
    assert torch.equal(w, w2) and torch.equal(b, b2)
    with pytest.raises(ValueError, match="needs its scale"):
        finetune_head(z, y, 4, "cosine")
    with pytest.raises(ValueError, match="kind must be one of"):
        finetune_head(z, y, 4, "mlp")


@pytest.mark.parametrize("n_way,n_shot", [(5, 1), (5, 5), (20, 5)])
def test_logistic_regression_reaches_the_optimum(n_way, n_shot):
    """At the solution the gradient of mean CE + ||W||^2 / (2 C S) vanishes (convex: the global minimum)."""
    z, y = _support(n_way, n_shot, d=16, seed=n_way + n_shot)
    z = z.double()
    w, b = logistic_regression(z, y, n_way, c=1.0, steps=300)
    x = F.normalize(z, dim=-1)
    w, b = w.clone().requires_grad_(), b.clone().requires_grad_()
    loss = F.cross_entropy(F.linear(x, w, b), y) + w.pow(2).sum() / (2 * 1.0 * len(x))
    gw, gb = torch.autograd.grad(loss, (w, b))
    assert max(gw.abs().max().item(), gb.abs().max().item()) < 1e-6
    assert (F.linear(x, w, b).argmax(-1) == y).all()
    with pytest.raises(ValueError, match="c must be > 0"):
        logistic_regression(z, y, n_way, c=0.0)


def test_exercise_scale_for_ninety_percent():
    """Chapter 7, exercise 3: s = ln(9 (C - 1)) / 2 gives a bound of exactly 0.9."""
    import math

    for c, rounded in ((964, 4.534), (5, 1.792)):
        s = math.log(9 * (c - 1)) / 2
        assert cosine_softmax_bound(s, c) == pytest.approx(0.9, abs=1e-12)
        assert round(s, 3) == rounded and cosine_softmax_bound(rounded, c) == pytest.approx(0.9, abs=1e-4)


def test_logistic_regression_gradient_matches_autograd():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(7, 5, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2, 2])
    w = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    loss = F.cross_entropy(F.linear(x, w, b), y) + 0.3 / 2 * w.pow(2).sum()
    expected = torch.autograd.grad(loss, (w, b))
    got = logistic_regression_gradient(x, F.one_hot(y, 3).double(), w.detach(), b.detach(), 0.3)
    for e, o in zip(expected, got):
        torch.testing.assert_close(o, e, rtol=1e-12, atol=1e-12)

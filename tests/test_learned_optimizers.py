"""Andrychowicz et al.'s learned optimiser: the preprocessing, the quadratics, training, the win over SGD."""

from __future__ import annotations

import math

import pytest
import torch

from fewshot_tutorial.learned_optimizers import (
    BASELINES,
    LSTMOptimizer,
    loss_curve,
    preprocess_gradient,
    quadratic_loss,
    quadratic_problems,
    train_l2l,
    tuned_baseline,
    unroll,
)


def preprocess_one(x: float, p: float = 10.0) -> tuple[float, float]:
    """{eq}`eq-grad-preprocess` for one number, as written in appendix A."""
    if abs(x) >= math.exp(-p):
        return math.log(abs(x)) / p, math.copysign(1.0, x)
    return -1.0, math.exp(p) * x


def test_preprocessing_matches_the_formula_element_by_element():
    x = torch.cat([torch.randn(50, dtype=torch.float64) * 10.0 ** torch.randint(-8, 8, (50,)),
                   torch.tensor([0.0, 1e-30, -1e-30, math.exp(-10), -math.exp(-10), 1e30, -1e30, 1.0, -1.0],
                                dtype=torch.float64)])
    ours = preprocess_gradient(x)
    assert ours.shape == (len(x), 2)
    ref = torch.tensor([preprocess_one(float(v)) for v in x], dtype=torch.float64)
    torch.testing.assert_close(ours, ref)
    assert torch.equal(preprocess_gradient(torch.zeros(3, 4)), torch.stack([-torch.ones(3, 4), torch.zeros(3, 4)], -1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_preprocessing_and_its_gradient_are_finite_at_the_extremes(dtype):
    x = torch.tensor([0.0, 1e-30, -1e-38, 1e-45, 1e30, -1e30, 3.0], dtype=dtype, requires_grad=True)
    out = preprocess_gradient(x)
    (g,) = torch.autograd.grad(out.sum(), [x])
    assert torch.isfinite(out).all() and torch.isfinite(g).all()
    torch.testing.assert_close(out[4], torch.tensor([math.log(1e30) / 10, 1.0], dtype=dtype))


def test_quadratic_loss_is_the_squared_residual():
    w, y, theta = quadratic_problems(3, generator=torch.Generator().manual_seed(0))
    assert w.shape == (3, 10, 10) and y.shape == (3, 10) and theta.shape == (3, 10)
    ref = torch.stack([(w[n] @ theta[n] - y[n]).pow(2).sum() for n in range(3)])
    torch.testing.assert_close(quadratic_loss(theta, w, y), ref)


def test_the_lstm_is_coordinate_wise():
    """Shared over coordinates: a coordinate's update depends on its own gradient history only."""
    torch.manual_seed(0)
    net = LSTMOptimizer()
    g = torch.randn(7)
    full, _ = net(g, net.init_state(7, g))
    one, _ = net(g[3:4], net.init_state(1, g))
    torch.testing.assert_close(full[3:4], one)


def meta_loss_on(net, problems, n_steps=20):
    with torch.no_grad():
        w, y, theta = problems
        total, _, _ = unroll(net, w, y, theta, net.init_state(theta.numel(), theta), n_steps)
    return total.item()


def test_short_training_lowers_the_meta_loss():
    torch.manual_seed(0)
    net = LSTMOptimizer()
    fixed = quadratic_problems(64, generator=torch.Generator().manual_seed(99))
    before = meta_loss_on(net, fixed)
    history = train_l2l(net, n_steps=40, unroll_steps=20, n_epochs=8, n_problems=64, seed=0)
    assert len(history.losses) == 8 and all(math.isfinite(h) for h in history.losses)
    assert history.seconds > 0
    assert meta_loss_on(net, fixed) < 0.5 * before


def test_the_trained_optimiser_beats_tuned_sgd_at_step_100():
    """About 12 s on 2 CPU cores: 30 epochs of 128 quadratics; SGD's rate tuned on other problems."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    tune, held_out = quadratic_problems(64, generator=g), quadratic_problems(128, generator=g)
    lr, _ = tuned_baseline("sgd", *tune)
    sgd = loss_curve(BASELINES["sgd"](lr), *held_out)
    net = LSTMOptimizer()
    train_l2l(net, n_epochs=30, seed=0)
    learned = loss_curve(net, *held_out)
    assert learned.shape == sgd.shape == (101,)
    assert learned[-1] < 0.6 * sgd[-1]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="multiple"):
        train_l2l(LSTMOptimizer(), n_steps=30, unroll_steps=20, n_epochs=1)
    with pytest.raises(ValueError, match="unknown baseline"):
        tuned_baseline("rmsprop", *quadratic_problems(2))

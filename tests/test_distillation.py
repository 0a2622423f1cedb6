"""Knowledge distillation: the loss against explicit sums, gradcheck, the T^2 factor and the high-T limit."""

from __future__ import annotations

import math

import pytest
import torch

from fewshot_tutorial.distillation import kd_loss, soft_target_kl

TEMPERATURES = (1.0, 2.0, 5.0, 10.0, 20.0)


def _logits(b: int = 6, n: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zero-mean student and teacher logits ``[b, n]`` (float64) and labels ``[b]``."""
    g = torch.Generator().manual_seed(seed)
    z_s, z_t = torch.randn(2, b, n, generator=g, dtype=torch.float64)
    return z_s - z_s.mean(-1, keepdim=True), z_t - z_t.mean(-1, keepdim=True), torch.randint(n, (b,), generator=g)


def _naive_kd(z_s, z_t, y, T, soft_weight) -> float:
    """{eq}`eq-kd-loss` with explicit sums over classes and examples."""
    b, n = z_s.shape
    kl = ce = 0.0
    for i in range(b):
        zs = [float(v) for v in z_s[i]]
        zt = [float(v) for v in z_t[i]]
        den_s = sum(math.exp(v / T) for v in zs)
        den_t = sum(math.exp(v / T) for v in zt)
        for k in range(n):
            p_t, p_s = math.exp(zt[k] / T) / den_t, math.exp(zs[k] / T) / den_s
            kl += p_t * math.log(p_t / p_s)
        ce -= zs[int(y[i])] - math.log(sum(math.exp(v) for v in zs))
    return soft_weight * T**2 * kl / b + (1 - soft_weight) * ce / b


@pytest.mark.parametrize("T,soft_weight", [(1.0, 0.5), (4.0, 0.9), (10.0, 1.0), (2.0, 0.0)])
def test_kd_loss_matches_explicit_sums(T, soft_weight):
    z_s, z_t, y = _logits(seed=int(T))
    got = kd_loss(z_s, z_t, y, T, soft_weight).item()
    assert got == pytest.approx(_naive_kd(z_s, z_t, y, T, soft_weight), rel=1e-10, abs=1e-12)


def test_kd_loss_gradcheck_float64():
    z_s, z_t, y = _logits(b=3, n=4)
    z_s.requires_grad_(), z_t.requires_grad_()
    assert torch.autograd.gradcheck(lambda s, t: kd_loss(s, t, y, 3.0, 0.7), (z_s, z_t))


def test_kl_gradient_is_the_difference_of_the_softmaxes():
    """d KL / d z_s = (softmax(z_s / T) - softmax(z_t / T)) / (B T)."""
    z_s, z_t, _ = _logits()
    z_s.requires_grad_()
    T = 3.0
    (grad,) = torch.autograd.grad(soft_target_kl(z_s, z_t, T), z_s)
    hand = ((z_s / T).softmax(-1) - (z_t / T).softmax(-1)).detach() / (len(z_s) * T)
    torch.testing.assert_close(grad, hand)


def _soft_grad_norm(T: float, with_t2: bool) -> float:
    z_s, z_t, _ = _logits(seed=1)
    z_s.requires_grad_()
    loss = soft_target_kl(z_s, z_t, T) * (T**2 if with_t2 else 1.0)
    return torch.autograd.grad(loss, z_s)[0].norm().item()


def test_t_squared_keeps_the_soft_gradient_of_order_one():
    """{eq}`eq-kd-t2`: with T^2 the gradient norm barely moves over T in 1..20; without, it falls as 1/T^2."""
    with_t2 = [_soft_grad_norm(T, True) for T in TEMPERATURES]
    without = [_soft_grad_norm(T, False) for T in TEMPERATURES]
    assert max(with_t2) / min(with_t2) < 3, with_t2
    assert without[-1] / without[0] < 1 / 100
    for T, g in zip(TEMPERATURES[2:], without[2:]):  # beyond small T: exactly the 1/T^2 law
        assert g * T**2 == pytest.approx(without[-1] * TEMPERATURES[-1] ** 2, rel=0.05)


def test_high_temperature_limit_is_logit_matching():
    """{eq}`eq-kd-high-t`: for zero-mean logits, d KL / d z_s -> (z_s - z_t) / (B N T^2)."""
    z_s, z_t, _ = _logits(b=8, n=5, seed=2)
    b, n = z_s.shape
    errors = []
    for T in (20.0, 50.0, 100.0):
        s = z_s.clone().requires_grad_()
        (grad,) = torch.autograd.grad(soft_target_kl(s, z_t, T), s)
        limit = (z_s - z_t) / (b * n * T**2)
        errors.append(((grad - limit).norm() / limit.norm()).item())
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 1e-2, errors


def test_kd_loss_bad_input():
    z_s, z_t, y = _logits()
    with pytest.raises(ValueError, match="temperature T must be > 0"):
        kd_loss(z_s, z_t, y, 0.0)
    with pytest.raises(ValueError, match="soft_weight must be in"):
        kd_loss(z_s, z_t, y, 2.0, 1.5)
    with pytest.raises(ValueError, match="one output per teacher class"):
        kd_loss(z_s, z_t[:, :3], y)


def test_exercise_high_temperature_kl_is_half_the_squared_logit_distance():
    """Chapter 7, exercise 2: T^2 KL(q^T || p^T) -> ||z - v||^2 / (2C) for zero-mean logits."""
    g = torch.Generator().manual_seed(0)
    c = 10
    z, v = torch.randn(1, c, generator=g, dtype=torch.float64), torch.randn(1, c, generator=g, dtype=torch.float64)
    z, v = z - z.mean(), v - v.mean()
    limit = ((z - v) ** 2).sum() / (2 * c)
    errors = [abs(t**2 * soft_target_kl(z, v, t) - limit) / limit for t in (10.0, 100.0, 1000.0)]
    assert errors[2] < 2e-3 and errors[2] < errors[1] < errors[0]  # shrinks like 1 / T

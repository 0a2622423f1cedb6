"""Loss weighting: Kendall et al.'s uncertainty weights reach sigma_i^2 = L_i; fixed weights."""

from __future__ import annotations

import pytest
import torch

from fewshot_tutorial.multitask import UncertaintyWeighting, fixed_weighting


def test_uncertainty_weighting_matches_its_two_forms():
    """{eq}`eq-uncertainty-weighting`: exp(-s) L / 2 + s / 2 = L / (2 sigma^2) + log sigma."""
    w = UncertaintyWeighting(3)
    with torch.no_grad():
        w.log_var.copy_(torch.tensor([-1.0, 0.5, 2.0]))
    losses = torch.tensor([0.3, 1.7, 4.0])
    sigma2 = w.log_var.detach().exp()
    want = (losses / (2 * sigma2) + sigma2.sqrt().log()).sum()
    torch.testing.assert_close(w(losses), want)
    torch.testing.assert_close(w(list(losses)), want)
    torch.testing.assert_close(w.weights, 1 / (2 * sigma2))


def test_the_optimum_is_sigma_squared_equal_to_the_loss():
    """Minimising over s_i with the L_i fixed gives exp(s_i) = L_i (and the gradient there is 0)."""
    losses = torch.tensor([0.05, 0.8, 3.0, 20.0], dtype=torch.float64)
    w = UncertaintyWeighting(4).double()
    opt = torch.optim.LBFGS(w.parameters(), lr=1, max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-15)

    def closure():
        opt.zero_grad()
        loss = w(losses)
        loss.backward()
        return loss

    opt.step(closure)
    torch.testing.assert_close(w.log_var.detach().exp(), losses, rtol=1e-6, atol=0)
    at_optimum = UncertaintyWeighting(4).double()
    with torch.no_grad():
        at_optimum.log_var.copy_(losses.log())
    at_optimum(losses).backward()
    assert at_optimum.log_var.grad.abs().max() < 1e-12


def test_fixed_weighting_and_bad_input():
    a, b = torch.tensor(2.0), torch.tensor(6.0)
    assert fixed_weighting(a, b, 0.25).item() == pytest.approx(0.25 * 2 + 0.75 * 6)
    with pytest.raises(ValueError, match="lam must be in"):
        fixed_weighting(a, b, 1.5)
    with pytest.raises(ValueError, match="expected 2 losses"):
        UncertaintyWeighting(2)(torch.ones(3))
    with pytest.raises(ValueError, match="n_tasks"):
        UncertaintyWeighting(0)

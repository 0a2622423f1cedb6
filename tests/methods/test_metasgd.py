"""Meta-SGD: the learned-rate step and the closed-form meta-gradient of alpha, checked."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from fewshot_tutorial import EpisodeSampler
from fewshot_tutorial.evaluation import make_predict
from fewshot_tutorial.inner_loop import adapt, flatten, meta_loss, params_of, unflatten
from fewshot_tutorial.methods import MAML, MetaSGD
from fewshot_tutorial.methods.metasgd import alpha_key, alpha_meta_gradient, meta_sgd, one_step_alpha_gradient
from fewshot_tutorial.training import fit
from tests.conftest import needs_data
from tests.methods.test_maml import random_tasks

F64 = torch.float64


def tiny_problem(seed: int = 0):
    """A 3-4-2 tanh MLP in float64, random per-weight rates, a support and a query set."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(F64)
    alphas = {k: (0.1 + 0.4 * torch.rand(p.shape, generator=g, dtype=F64)).requires_grad_()
              for k, p in model.named_parameters()}
    support = torch.randn(6, 3, generator=g, dtype=F64), torch.randint(0, 2, (6,), generator=g)
    query = torch.randn(8, 3, generator=g, dtype=F64), torch.randint(0, 2, (8,), generator=g)
    return model, alphas, support, query


def query_loss_after_one_step(model, params, alphas, support, query):
    adapted = adapt(model, params, *support, update=meta_sgd(alphas), n_steps=1)
    return F.cross_entropy(functional_call(model, adapted, (query[0],)), query[1])


def test_the_step_is_theta_minus_alpha_times_the_gradient():
    model, alphas, (xs, ys), _ = tiny_problem(1)
    params = params_of(model)
    g = torch.func.grad(lambda p: F.cross_entropy(functional_call(model, p, (xs,)), ys))(params)
    adapted = adapt(model, params, xs, ys, update=meta_sgd(alphas), n_steps=1)
    for k, p in params.items():
        torch.testing.assert_close(adapted[k], p - alphas[k] * g[k])


def test_alpha_gradient_autograd_closed_form_and_finite_differences_agree():
    """{eq}`eq-metasgd-grad-alpha`: autograd = -grad L_S(theta) * grad L_Q(theta') = central differences."""
    model, alphas, support, query = tiny_problem()
    params = params_of(model)
    loss = query_loss_after_one_step(model, params, alphas, support, query)
    autograd = flatten(dict(zip(alphas, torch.autograd.grad(loss, list(alphas.values())))))
    closed = flatten(one_step_alpha_gradient(model, params, alphas, support, query))
    torch.testing.assert_close(autograd, closed, atol=1e-12, rtol=1e-10)

    a0 = flatten(alphas).detach()
    eps = 1e-6

    def f(a):
        return query_loss_after_one_step(model, params, unflatten(a, alphas), support, query)

    with torch.no_grad():
        fd = torch.stack([(f(a0 + eps * e) - f(a0 - eps * e)) / (2 * eps) for e in torch.eye(a0.numel(), dtype=F64)])
    torch.testing.assert_close(closed, fd, atol=1e-8, rtol=1e-6)


def test_alpha_meta_gradient_is_elementwise():
    gs, gq = {"w": torch.tensor([1.0, -2.0])}, {"w": torch.tensor([3.0, 0.5])}
    assert torch.equal(alpha_meta_gradient(gs, gq)["w"], torch.tensor([-3.0, 1.0]))


def test_at_initialisation_it_is_maml_and_alpha_gets_a_gradient():
    torch.manual_seed(0)
    method = MetaSGD(train_way=3, hidden=8, inner_lr=0.3)
    assert set(method.alpha) == {alpha_key(k) for k, _ in method.net.named_parameters()}
    assert all("." not in k for k in method.alpha)
    tasks = random_tasks(2)
    ours, _ = method.loss(tasks)
    maml, _ = meta_loss(method.net, params_of(method.net), tasks, inner_lr=0.3, n_steps=1)
    torch.testing.assert_close(ours, maml)
    ours.backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in method.alpha.values())


def test_predict_uses_the_learned_rates_and_changes_nothing():
    torch.manual_seed(0)
    method = MetaSGD(train_way=3, hidden=8, inner_lr=0.3, test_steps=1)
    maml = MAML(train_way=3, hidden=8, inner_lr=0.3, test_steps=1)
    maml.load_state_dict(method.state_dict(), strict=False)
    episode = random_tasks(1)[0]
    torch.testing.assert_close(make_predict(method, "cpu")(episode), make_predict(maml, "cpu")(episode))
    with torch.no_grad():
        for a in method.alpha.values():
            a.mul_(2.0)
    before = flatten(method.alphas()).clone()
    logits = make_predict(method, "cpu")(episode)
    assert not torch.allclose(logits, make_predict(maml, "cpu")(episode))
    assert torch.equal(flatten(method.alphas()), before) and all(a.grad is None for a in method.alpha.values())


def test_a_per_step_rate_list_is_refused():
    with pytest.raises(TypeError, match="inner_lr"):
        MetaSGD(inner_lr=[0.1, 0.2], inner_steps=2)


@needs_data
def test_short_training_lowers_the_query_loss(background):
    torch.manual_seed(0)
    method = MetaSGD(train_way=5, hidden=16, meta_batch=2, train_query=3, inner_lr=0.4, lr=3e-3)
    held_out = list(EpisodeSampler(background, 5, 1, 5, seed=123, n_episodes=6))

    def query_loss_now() -> float:
        loss, _ = meta_loss(method.net, params_of(method.net), held_out, **method.inner_rule(test=True))
        return loss.item()

    before = query_loss_now()
    fit(method, background, n_steps=30, seed=0, progress=False)
    assert query_loss_now() < before - 0.1


def test_exercise_two_step_alpha_gradient():
    """Exercise ex-update-rules-2: with two steps the alpha-gradient has a Hessian term,
    grad_alpha L_Q(theta_2) = -g_1 * g_Q - g_0 * (I - H_1 diag(alpha)) g_Q."""
    model, alphas, support, query = tiny_problem(3)
    params = {k: p.detach() for k, p in params_of(model).items()}
    adapted = adapt(model, params, *support, update=meta_sgd(alphas), n_steps=2)
    loss = F.cross_entropy(functional_call(model, adapted, (query[0],)), query[1])
    autograd = flatten(dict(zip(alphas, torch.autograd.grad(loss, list(alphas.values())))))

    def flat_loss(x, y):
        return lambda v: F.cross_entropy(functional_call(model, unflatten(v, params), (x,)), y)

    support_loss, query_loss = flat_loss(*support), flat_loss(*query)
    a, t0 = flatten({k: v.detach() for k, v in alphas.items()}), flatten(params)
    g0 = torch.func.grad(support_loss)(t0)
    t1 = t0 - a * g0
    g1, h1 = torch.func.grad(support_loss)(t1), torch.func.hessian(support_loss)(t1)
    g_q = torch.func.grad(query_loss)(t1 - a * g1)
    by_formula = -g1 * g_q - g0 * (g_q - h1 @ (a * g_q))
    torch.testing.assert_close(autograd, by_formula, atol=1e-12, rtol=1e-10)
    first_order_only = -g1 * g_q - g0 * g_q   # without the Hessian term: measurably different
    assert (autograd - first_order_only).abs().max() > 1e-4

"""Meta-LSTM: the cell update is SGD when f = 1 and i = alpha; the gates start near SGD; it trains."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fewshot_tutorial import EpisodeSampler
from fewshot_tutorial.evaluation import make_predict
from fewshot_tutorial.inner_loop import adapt, flatten, meta_loss, params_of, sgd, unflatten
from fewshot_tutorial.methods import MetaLSTM
from fewshot_tutorial.methods.metalstm import MetaLSTMUpdate, lstm_cell, lstm_cell_update
from fewshot_tutorial.training import fit
from tests.conftest import needs_data
from tests.methods.test_maml import random_tasks, tiny_problem

F64 = torch.float64


class FixedGates:
    """A stateful rule with constant gates: {eq}`eq-metalstm-cell` with ``f`` and ``i`` given."""

    def __init__(self, f: float, i: float) -> None:
        self.f, self.i, self.losses = f, i, []

    def init_state(self, params):
        return None

    def step(self, params, grads, loss, step, state):
        self.losses.append(loss)
        c = lstm_cell_update(flatten(params), flatten(grads), torch.tensor(self.f, dtype=F64),
                             torch.tensor(self.i, dtype=F64))
        return unflatten(c, params), state


@pytest.mark.parametrize("first_order", [False, True])
def test_forget_one_input_alpha_is_exactly_sgd(first_order):
    model, xs, ys, _, _ = tiny_problem()
    params = params_of(model)
    rule = FixedGates(1.0, 0.3)
    ours = adapt(model, params, xs, ys, update=rule, n_steps=3, first_order=first_order)
    ref = adapt(model, params, xs, ys, update=sgd(0.3, 3), n_steps=3, first_order=first_order)
    assert len(rule.losses) == 3 and all(loss.shape == () for loss in rule.losses)
    for k in params:
        assert torch.equal(ours[k], ref[k])


def test_saturated_gates_of_the_meta_learner_give_sgd():
    """W_I = W_F = 0, b_F = 100 (f = 1 in float64), b_I = logit(alpha): the learned rule is SGD(alpha)."""
    model, xs, ys, _, _ = tiny_problem(1)
    params = params_of(model)
    rule = MetaLSTMUpdate(inner_lr=0.3).to(F64)
    with torch.no_grad():
        for gate, bias in ((rule.input_gate, math.log(0.3 / 0.7)), (rule.forget_gate, 100.0)):
            gate.weight.zero_()
            gate.bias.fill_(bias)
    ours = adapt(model, params, xs, ys, update=rule, n_steps=3)
    ref = adapt(model, params, xs, ys, inner_lr=0.3, n_steps=3)
    for k in params:
        torch.testing.assert_close(ours[k], ref[k], atol=1e-12, rtol=1e-12)


def test_the_initial_gates_are_close_to_sgd_at_the_initial_rate():
    torch.manual_seed(0)
    model, xs, ys, _, _ = tiny_problem(2)
    params = params_of(model)
    rule = MetaLSTMUpdate(inner_lr=0.1, forget_bias=5.0).to(F64)
    ours = flatten(adapt(model, params, xs, ys, update=rule, n_steps=1))
    ref = flatten(adapt(model, params, xs, ys, inner_lr=0.1, n_steps=1))
    theta = flatten(params)
    assert (ours - ref).norm() < 0.05 * theta.norm()  # f = sigmoid(5) = 0.993, i within 1% of 0.1


def test_the_meta_gradient_reaches_the_lstm_and_the_initialisation():
    torch.manual_seed(0)
    method = MetaLSTM(train_way=3, hidden=8, inner_steps=2)
    loss, _ = method.loss(random_tasks(2))
    loss.backward()
    for name, p in method.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert method.update_rule.input_gate.weight.grad.abs().sum() > 0
    assert method.net.head.weight.grad.abs().sum() > 0


def test_first_order_drops_terms():
    """With first_order=False the gradient and loss fed to the LSTM depend on c: another meta-gradient."""
    torch.manual_seed(0)
    grads = []
    for first_order in (True, False):
        torch.manual_seed(0)
        method = MetaLSTM(train_way=3, hidden=8, inner_steps=2, first_order=first_order).to(F64)
        tasks = [t.__class__(t.support_x.to(F64), t.support_y, t.query_x.to(F64), t.query_y, t.n_way)
                 for t in random_tasks(2)]
        loss, _ = method.loss(tasks)
        grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(method.parameters()))]))
    assert (grads[0] - grads[1]).norm() > 1e-6 * grads[1].norm()


def test_predict_builds_no_graph_and_changes_nothing():
    torch.manual_seed(0)
    method = MetaLSTM(train_way=3, hidden=8, test_steps=2)
    before = {k: v.clone() for k, v in method.state_dict().items()}
    logits = make_predict(method, "cpu")(random_tasks(1)[0])
    assert logits.shape == (6, 3) and not logits.requires_grad and torch.isfinite(logits).all()
    assert all(torch.equal(v, before[k]) for k, v in method.state_dict().items())
    assert all(p.grad is None for p in method.parameters())


def test_the_written_out_lstm_cell_is_torchs():
    torch.manual_seed(0)
    cell = nn.LSTMCell(4, 20)
    x, h, c = torch.randn(7, 4), torch.randn(7, 20), torch.randn(7, 20)
    for ours, ref in zip(lstm_cell(cell, x, h, c), cell(x, (h, c))):
        torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("name", ["metasgd", "metalstm"])
def test_vmap_over_tasks_equals_the_loop(name):
    from fewshot_tutorial.methods import METHODS

    out = []
    for vectorize in ("loop", "vmap"):
        torch.manual_seed(0)
        method = METHODS[name](train_way=3, hidden=8, inner_steps=2, vectorize=vectorize).to(F64)
        tasks = [t.__class__(t.support_x.to(F64), t.support_y, t.query_x.to(F64), t.query_y, t.n_way)
                 for t in random_tasks()]
        loss, _ = method.loss(tasks)
        out.append((loss, torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(method.parameters()))])))
    torch.testing.assert_close(out[0][0], out[1][0])
    torch.testing.assert_close(out[0][1], out[1][1])


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="input gate"):
        MetaLSTM(inner_lr=1.5)


@needs_data
def test_short_training_lowers_the_query_loss(background):
    torch.manual_seed(0)
    method = MetaLSTM(train_way=5, hidden=16, meta_batch=2, train_query=3, inner_lr=0.1, inner_steps=3,
                      test_steps=3, lr=3e-3)
    held_out = list(EpisodeSampler(background, 5, 1, 5, seed=123, n_episodes=6))

    def query_loss_now() -> float:
        loss, _ = meta_loss(method.net, params_of(method.net), held_out, first_order=True,
                            **method.inner_rule(test=True))
        return loss.item()

    before = query_loss_now()
    history = fit(method, background, n_steps=30, seed=0, progress=False)
    assert all(math.isfinite(v) for v in history.losses)
    assert query_loss_now() < before - 0.1


def test_exercise_forget_gate_is_weight_decay():
    """Exercise ex-update-rules-1: f = 1 - lambda alpha, i = alpha is SGD on L + lambda/2 ||theta||^2."""
    import torch.nn.functional as F
    from torch.func import functional_call

    model, xs, ys, _, _ = tiny_problem(2)
    params = {k: p.detach() for k, p in params_of(model).items()}
    lam, alpha = 0.5, 0.3
    ours = adapt(model, params, xs, ys, update=FixedGates(1 - lam * alpha, alpha), n_steps=3)

    def loss_with_decay(p, x, y):
        l2 = sum((v ** 2).sum() for v in p.values())
        return F.cross_entropy(functional_call(model, p, (x,)), y) + lam / 2 * l2

    ref = dict(params)
    for _ in range(3):
        g = torch.func.grad(loss_with_decay)(ref, xs, ys)
        ref = {k: v - alpha * g[k] for k, v in ref.items()}
    for k in params:
        torch.testing.assert_close(ours[k], ref[k], atol=1e-12, rtol=0)
    without_decay = adapt(model, params, xs, ys, update=sgd(alpha, 3), n_steps=3)
    assert max((ours[k] - without_decay[k]).abs().max() for k in params) > 1e-3

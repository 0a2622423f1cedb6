"""MAML, first-order MAML and Reptile: every derivation of the chapter, checked."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, hessian

from fewshot_tutorial import Episode, EpisodeSampler
from fewshot_tutorial import backbones
from fewshot_tutorial.backbones import MAMLNet
from fewshot_tutorial.evaluation import make_predict
from fewshot_tutorial.inner_loop import (
    adapt,
    flatten,
    meta_loss,
    params_of,
    reptile_loss,
    reptile_surrogate,
    unflatten,
)
from fewshot_tutorial.methods import MAML, Reptile
from fewshot_tutorial.training import fit, train
from tests.conftest import needs_data

F64 = torch.float64


def tiny_problem(seed: int = 0):
    """A 3-4-2 tanh MLP in float64 with a support and a query set."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(F64)
    xs, ys = torch.randn(6, 3, generator=g, dtype=F64), torch.randint(0, 2, (6,), generator=g)
    xq, yq = torch.randn(8, 3, generator=g, dtype=F64), torch.randint(0, 2, (8,), generator=g)
    return model, xs, ys, xq, yq


def meta_gradient(model, params, xs, ys, xq, yq, alpha, k, first_order=False):
    adapted = adapt(model, params, xs, ys, inner_lr=alpha, n_steps=k, first_order=first_order)
    lq = F.cross_entropy(functional_call(model, adapted, (xq,)), yq)
    return flatten(dict(zip(params, torch.autograd.grad(lq, list(params.values())))))


@pytest.mark.parametrize("k", [1, 3])
def test_meta_gradient_matches_central_finite_differences(k):
    model, xs, ys, xq, yq = tiny_problem()
    params = params_of(model)
    theta = flatten(params).detach()

    def f(t):
        adapted = adapt(model, unflatten(t, params), xs, ys, inner_lr=0.3, n_steps=k)
        return F.cross_entropy(functional_call(model, adapted, (xq,)), yq)

    eps = 1e-6
    fd = torch.stack([(f(theta + eps * e) - f(theta - eps * e)) / (2 * eps)
                      for e in torch.eye(theta.numel(), dtype=F64)])
    g = meta_gradient(model, params, xs, ys, xq, yq, 0.3, k)
    torch.testing.assert_close(g, fd, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("k", [1, 3])
def test_meta_gradient_matches_explicit_hessian_product(k):
    """grad = (I - a H_0)(I - a H_1)...(I - a H_{k-1}) grad L_Q(theta_k)."""
    model, xs, ys, xq, yq = tiny_problem(1)
    params = params_of(model)
    alpha = 0.3

    def ls(v):
        return F.cross_entropy(functional_call(model, unflatten(v, params), (xs,)), ys)

    def lq(v):
        return F.cross_entropy(functional_call(model, unflatten(v, params), (xq,)), yq)

    thetas = [flatten(params).detach()]
    for _ in range(k):
        thetas.append(thetas[-1] - alpha * torch.func.grad(ls)(thetas[-1]))
    v = torch.func.grad(lq)(thetas[-1])
    for j in reversed(range(k)):
        v = v - alpha * hessian(ls)(thetas[j]) @ v
    torch.testing.assert_close(meta_gradient(model, params, xs, ys, xq, yq, alpha, k), v, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("k", [1, 3])
def test_first_order_is_the_gradient_at_the_adapted_parameters_and_differs(k):
    model, xs, ys, xq, yq = tiny_problem(2)
    params = params_of(model)
    fo = meta_gradient(model, params, xs, ys, xq, yq, 0.3, k, first_order=True)
    so = meta_gradient(model, params, xs, ys, xq, yq, 0.3, k)
    adapted = {n: p.detach() for n, p in adapt(model, params, xs, ys, inner_lr=0.3, n_steps=k).items()}
    at_adapted = torch.func.grad(lambda p: F.cross_entropy(functional_call(model, p, (xq,)), yq))(adapted)
    torch.testing.assert_close(fo, flatten(at_adapted), atol=1e-12, rtol=1e-10)
    assert (fo - so).norm() > 1e-3 * so.norm()


def test_per_step_inner_rates_equal_manual_steps():
    model, xs, ys, _, _ = tiny_problem(3)
    params = params_of(model)
    ours = adapt(model, params, xs, ys, inner_lr=[0.1, 0.5], n_steps=2)
    p = dict(params)
    for a in (0.1, 0.5):
        g = torch.func.grad(lambda q: F.cross_entropy(functional_call(model, q, (xs,)), ys))(p)
        p = {n: p[n] - a * g[n] for n in p}
    for n in p:
        torch.testing.assert_close(ours[n], p[n])


def test_adapt_leaves_the_model_untouched_and_zero_steps_is_identity():
    model, xs, ys, _, _ = tiny_problem(4)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    adapted = adapt(model, params_of(model), xs, ys, inner_lr=0.5, n_steps=3)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) and p.grad is None
        assert not torch.equal(adapted[n], before[n])
    same = adapt(model, params_of(model), xs, ys, inner_lr=0.5, n_steps=0)
    assert all(same[n] is p for n, p in model.named_parameters())


@pytest.mark.parametrize("bad", [dict(inner_lr=[0.1], n_steps=2), dict(inner_lr=-0.1, n_steps=1),
                                 dict(inner_lr=0.1, n_steps=-1), dict(inner_lr=0.1, n_steps=0.5)])
def test_bad_inner_loop_arguments_raise(bad):
    model, xs, ys, _, _ = tiny_problem()
    with pytest.raises(ValueError):
        adapt(model, params_of(model), xs, ys, **bad)


def random_tasks(n_tasks=3, n_way=3, n_shot=2, n_query=2, size=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_tasks):
        out.append(Episode(torch.rand(n_way * n_shot, 1, size, size, generator=g),
                           torch.arange(n_way).repeat_interleave(n_shot),
                           torch.rand(n_way * n_query, 1, size, size, generator=g),
                           torch.arange(n_way).repeat_interleave(n_query), n_way=n_way))
    return out


@pytest.mark.parametrize("first_order", [False, True])
def test_vmap_over_tasks_equals_the_loop(first_order):
    torch.manual_seed(0)
    model = MAMLNet(3, hidden=8).to(F64)
    tasks = [Episode(t.support_x.to(F64), t.support_y, t.query_x.to(F64), t.query_y, 3) for t in random_tasks()]
    params = params_of(model)
    grads = {}
    for vec in ("loop", "vmap"):
        loss, _ = meta_loss(model, params, tasks, inner_lr=0.4, n_steps=2, first_order=first_order, vectorize=vec)
        grads[vec] = (loss, flatten(dict(zip(params, torch.autograd.grad(loss, list(params.values()))))))
    torch.testing.assert_close(grads["vmap"][0], grads["loop"][0])
    torch.testing.assert_close(grads["vmap"][1], grads["loop"][1])


def test_fused_and_composite_batch_norm_agree_to_second_order():
    """The loop uses the fused batch norm, vmap the composite one: same values, same meta-gradient."""
    torch.manual_seed(0)
    model = MAMLNet(3, hidden=8).to(F64)
    composite = backbones.composite_batch_norm(model)
    assert composite.head.weight is model.head.weight          # shares the tensors
    assert not model.backbone.encoder[0][1].composite and composite.backbone.encoder[0][1].composite
    x = torch.randn(6, 8, 5, 5, dtype=F64)
    ref = nn.BatchNorm2d(8, track_running_stats=False).to(F64)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
    for form in (False, True):
        bn = backbones.TaskBatchNorm2d(8).to(F64)
        bn.load_state_dict(ref.state_dict())
        bn.composite = form
        torch.testing.assert_close(bn(x), ref(x))
    tasks = [Episode(t.support_x.to(F64), t.support_y, t.query_x.to(F64), t.query_y, 3) for t in random_tasks()]
    params = params_of(model)
    grads = []
    for arch in (model, composite):
        loss, _ = meta_loss(arch, params, tasks, inner_lr=0.4, n_steps=2, vectorize="loop")
        grads.append(flatten(dict(zip(params, torch.autograd.grad(loss, list(params.values()))))))
    torch.testing.assert_close(grads[0], grads[1])


def test_meta_loss_rejects_bad_batches():
    model = MAMLNet(3, hidden=8)
    with pytest.raises(ValueError):
        meta_loss(model, params_of(model), [], inner_lr=0.4, n_steps=1)
    tasks = random_tasks(2) + random_tasks(1, n_shot=1)
    with pytest.raises(ValueError, match="one shape"):
        meta_loss(model, params_of(model), tasks, inner_lr=0.4, n_steps=1, vectorize="vmap")
    with pytest.raises(ValueError, match="vectorize"):
        MAML(vectorize="sometimes")
    with pytest.raises(ValueError, match="inner_lr"):
        MAML(inner_lr=float("nan"))
    with pytest.raises(ValueError, match="per-step"):
        MAML(inner_lr=[0.1, 0.2], inner_steps=1)


class Scalar(nn.Module):
    """theta as a model: forward returns the parameter for every input row."""

    def __init__(self, theta: float) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([theta], dtype=F64))

    def forward(self, x):
        return self.theta.expand(len(x))


def test_reptile_on_a_quadratic_has_the_known_update():
    """Task i: L_i = 0.5 a (theta - c_i)^2. k SGD steps: phi_i - c_i = (1 - alpha a)^k (theta - c_i),
    so one SGD meta-step of size eps moves theta by eps * (1 - (1 - alpha a)^k) (mean c - theta)."""
    a, alpha, k, eps, theta0 = 2.0, 0.1, 5, 0.5, 3.0
    cs = [1.0, -2.0, 0.5]
    model = Scalar(theta0)

    def loss_fn(pred, y):
        return 0.5 * a * (pred - y).pow(2).mean()

    tasks = [Episode(torch.zeros(1, 1, dtype=F64), torch.full((1,), c, dtype=F64),
                     torch.zeros(1, 1, dtype=F64), torch.full((1,), c, dtype=F64), n_way=1) for c in cs]
    shrink = (1 - alpha * a) ** k
    expected = theta0 + eps * (1 - shrink) * (sum(cs) / len(cs) - theta0)
    opt = torch.optim.SGD(model.parameters(), lr=eps)
    hist = train(model, lambda b: reptile_loss(model, params_of(model), b, inner_lr=alpha, n_steps=k,
                                               loss_fn=loss_fn),
                 [tasks], n_steps=1, optimizer=opt, precision="float32", channels_last=False, progress=False)
    assert hist.steps == 1
    assert model.theta.item() == pytest.approx(expected, rel=1e-12)


def test_reptile_surrogate_gradient_is_theta_minus_mean_phi():
    theta = {"w": torch.randn(4, 3, dtype=F64, requires_grad=True)}
    phis = [{"w": torch.randn(4, 3, dtype=F64, requires_grad=True)} for _ in range(3)]
    (g,) = torch.autograd.grad(reptile_surrogate(theta, phis), [theta["w"]])
    torch.testing.assert_close(g, theta["w"] - torch.stack([p["w"] for p in phis]).mean(0))


def test_predict_does_not_change_the_model():
    model = MAML(train_way=3, hidden=8, test_steps=3)
    before = flatten(params_of(model)).detach().clone()
    logits = make_predict(model, "cpu")(random_tasks(1)[0])
    assert logits.shape == (6, 3) and not logits.requires_grad
    assert torch.equal(flatten(params_of(model)), before)
    with pytest.raises(ValueError, match="3-way head"):
        model.predict(random_tasks(1, n_way=4)[0])


def test_bf16_meta_gradient_stays_close_to_float32():
    """The engine's mixed precision on this CPU: the meta-gradient direction survives bf16."""
    torch.manual_seed(0)
    model = MAMLNet(3, hidden=16)
    tasks = random_tasks(2)
    params = params_of(model)
    grads = []
    for dtype in (None, torch.bfloat16):
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss, _ = meta_loss(model, params, tasks, inner_lr=0.4, n_steps=1)
        grads.append(flatten(dict(zip(params, torch.autograd.grad(loss, list(params.values()))))))
    assert F.cosine_similarity(grads[0], grads[1].float(), dim=0) > 0.95


@needs_data
@pytest.mark.parametrize("algorithm", ["maml", "reptile"])
def test_short_training_lowers_the_query_loss(background, algorithm):
    torch.manual_seed(0)
    reptile = algorithm == "reptile"
    method = (Reptile if reptile else MAML)(train_way=5, hidden=16, meta_batch=2, train_query=3,
                                            inner_lr=0.1 if reptile else 0.4, inner_steps=3 if reptile else 1,
                                            test_steps=5 if reptile else 1, lr=1.0 if reptile else 3e-3)
    model, cfg = method.net, method.config
    held_out = list(EpisodeSampler(background, 5, 1, 5, seed=123, n_episodes=6))

    def query_loss_now() -> float:
        loss, _ = meta_loss(model, params_of(model), held_out, inner_lr=cfg.test_lr, n_steps=cfg.test_steps,
                            first_order=True)
        return loss.item()

    before = query_loss_now()
    fit(method, background, n_steps=30, seed=0, progress=False)
    assert query_loss_now() < before - 0.1


@needs_data
def test_cli_train_and_evaluate_round_trip(tmp_path, capsys):
    from fewshot_tutorial.cli import main

    out = tmp_path / "maml.pt"
    assert main(["train", "maml", "--steps", "2", "--meta-batch", "2", "--train-way", "3", "--train-query", "2",
                 "--inner-lr", "0.3", "0.2", "--inner-steps", "2", "--test-inner-lr", "0.3", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert out.is_file()
    assert main(["evaluate", "--checkpoint", str(out), "--way", "3", "--shot", "1", "--episodes", "3",
                 "--device", "cpu", "--json"]) == 0
    assert '"method": "maml"' in capsys.readouterr().out
    assert main(["train", "reptile", "--steps", "1", "--meta-batch", "2", "--train-way", "3",
                 "--train-query", "2", "--out", str(tmp_path / "r.pt"), "--device", "cpu"]) == 0
    assert main(["train", "maml", "--first-order", "--steps", "1", "--meta-batch", "2", "--train-way", "3",
                 "--train-query", "2", "--out", str(tmp_path / "f.pt"), "--device", "cpu", "--eval-episodes", "2",
                 "--eval-way", "3"]) == 0
    assert main(["evaluate", "--checkpoint", str(out), "--way", "10", "--episodes", "1"]) == 2
    assert "3-way head" in capsys.readouterr().err


class Vector(nn.Module):
    """A model that is just a vector theta: forward returns theta for every input row."""

    def __init__(self, theta: torch.Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(theta.clone())

    def forward(self, x):
        return self.theta.expand(len(x), -1)


@pytest.mark.parametrize("alpha", [0.3, 1.0])
def test_exercise_quadratic_closed_form(alpha):
    """Exercise ex-maml-1: theta_k = a + (1-alpha)^k (theta - a); meta-gradient (1-alpha)^k (theta_k - b)."""
    g = torch.Generator().manual_seed(0)
    theta, a, b = (torch.randn(4, dtype=F64, generator=g) for _ in range(3))
    model, k = Vector(theta), 3
    half_sq = lambda pred, y: 0.5 * (pred - y).pow(2).sum(-1).mean()
    params = params_of(model)
    adapted = adapt(model, params, torch.zeros(1, 1), a[None], inner_lr=alpha, n_steps=k, loss_fn=half_sq)
    theta_k = a + (1 - alpha) ** k * (theta - a)
    torch.testing.assert_close(adapted["theta"], theta_k)
    (grad,) = torch.autograd.grad(half_sq(adapted["theta"][None], b[None]), [params["theta"]])
    torch.testing.assert_close(grad, (1 - alpha) ** k * (theta_k - b))


def test_exercise_fomaml_gradient():
    """Exercise ex-maml-2: the solution's code equals adapt(first_order=True) + autograd."""

    def fomaml_gradient(model, params, episode, inner_lr, n_steps):
        adapted = adapt(model, params, episode.support_x, episode.support_y, inner_lr=inner_lr, n_steps=n_steps)
        leaf = {k: v.detach().requires_grad_() for k, v in adapted.items()}
        logits = functional_call(model, leaf, (episode.query_x,))
        loss = F.cross_entropy(logits, episode.query_y)
        return dict(zip(leaf, torch.autograd.grad(loss, list(leaf.values()))))

    torch.manual_seed(0)
    model = MAMLNet(3, hidden=8).to(F64)
    t = random_tasks(1)[0]
    episode = Episode(t.support_x.to(F64), t.support_y, t.query_x.to(F64), t.query_y, 3)
    params = params_of(model)
    ours = fomaml_gradient(model, params, episode, 0.4, 2)
    loss, _ = meta_loss(model, params, [episode], inner_lr=0.4, n_steps=2, first_order=True)
    ref = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    torch.testing.assert_close(flatten(ours), flatten(ref))


def test_inner_mini_batches_are_successive_and_match_a_naive_loop():
    model, xs, ys, _, _ = tiny_problem(3)
    params = params_of(model)
    x, y = torch.cat([xs, xs.flip(0)]), torch.cat([ys, ys.flip(0)])
    got = adapt(model, params, x, y, inner_lr=0.2, n_steps=3, inner_batch=4)
    p = {k: v.detach() for k, v in params.items()}
    rows = list(range(len(x))) * 3
    for j in range(3):
        idx = rows[4 * j: 4 * j + 4]
        g = torch.func.grad(lambda q: F.cross_entropy(functional_call(model, q, (x[idx],)), y[idx]))(p)
        p = {k: p[k] - 0.2 * g[k] for k in p}
    for k in p:
        torch.testing.assert_close(got[k].detach(), p[k])


def _two_batch_terms(alpha):
    """Exact updates and gradients on two mini-batches A, B of one task, and their Taylor terms."""
    model, xa, ya, xb, yb = tiny_problem(4)
    xb, yb = xb[:6], yb[:6]  # two mini-batches of the same size
    params = params_of(model)
    theta = flatten(params).detach()

    def loss(x, y):
        return lambda v: F.cross_entropy(functional_call(model, unflatten(v, params), (x,)), y)

    la, lb = loss(xa, ya), loss(xb, yb)
    ga, gb = torch.func.grad(la)(theta), torch.func.grad(lb)(theta)
    ha, hb = hessian(la)(theta), hessian(lb)(theta)

    def exact(first, second):
        (l1, x1, y1), (l2, x2, y2) = first, second
        phi = adapt(model, unflatten(theta, params), torch.cat([x1, x2]), torch.cat([y1, y2]), inner_lr=alpha,
                    n_steps=2, inner_batch=len(x1))
        reptile = (theta - flatten(phi)) / alpha
        fomaml = torch.func.grad(l2)(theta - alpha * torch.func.grad(l1)(theta))
        maml = torch.func.grad(lambda v: l2(v - alpha * torch.func.grad(l1)(v)))(theta)
        return {"MAML": maml, "FOMAML": fomaml, "Reptile": reptile}

    ab, ba = exact((la, xa, ya), (lb, xb, yb)), exact((lb, xb, yb), (la, xa, ya))
    avg = {k: (ab[k] + ba[k]) / 2 for k in ab}  # expectation over the order of the mini-batches
    avg_grad, avg_grad_inner = (ga + gb) / 2, (hb @ ga + ha @ gb) / 2
    table = {"MAML": avg_grad - 2 * alpha * avg_grad_inner, "FOMAML": avg_grad - alpha * avg_grad_inner,
             "Reptile": 2 * avg_grad - alpha * avg_grad_inner}
    inner = torch.func.grad(lambda v: torch.func.grad(la)(v) @ torch.func.grad(lb)(v))(theta)
    return avg, table, avg_grad_inner, inner


def test_nichol_table_of_expected_gradients_holds_to_second_order():
    """Nichol et al. (2018), section 5: E[g] = a AvgGrad - b alpha AvgGradInner + O(alpha^2)."""
    residual = {}
    for alpha in (0.04, 0.02, 0.01):
        avg, table, avg_grad_inner, inner = _two_batch_terms(alpha)
        torch.testing.assert_close(avg_grad_inner, inner / 2)  # AvgGradInner = 1/2 grad(g_A . g_B)
        residual[alpha] = {k: (avg[k] - table[k]).norm().item() for k in avg}
    for k in ("MAML", "FOMAML", "Reptile"):
        for big, small in ((0.04, 0.02), (0.02, 0.01)):
            ratio = residual[big][k] / residual[small][k]
            assert 3.0 < ratio < 5.0, (k, ratio)  # halving alpha quarters an O(alpha^2) residual


def test_reptile_update_matches_its_second_order_taylor_expansion_to_alpha_cubed():
    """theta - phi = alpha (g_1 + g_2) - alpha^2 H_2 g_1 + O(alpha^3) for two successive mini-batches."""
    model, x1, y1, x2, y2 = tiny_problem(5)
    x2, y2 = x2[:6], y2[:6]
    params = params_of(model)
    theta = flatten(params).detach()

    def loss(x, y):
        return lambda v: F.cross_entropy(functional_call(model, unflatten(v, params), (x,)), y)

    g1, g2, h2 = torch.func.grad(loss(x1, y1))(theta), torch.func.grad(loss(x2, y2))(theta), hessian(loss(x2, y2))(theta)
    residual = []
    for alpha in (0.04, 0.02, 0.01):
        phi = flatten(adapt(model, unflatten(theta, params), torch.cat([x1, x2]), torch.cat([y1, y2]),
                            inner_lr=alpha, n_steps=2, inner_batch=6))
        residual.append((theta - phi - (alpha * (g1 + g2) - alpha**2 * h2 @ g1)).norm().item())
    for big, small in zip(residual, residual[1:]):
        assert 6.0 < big / small < 10.0  # halving alpha divides an O(alpha^3) residual by 8
    # on one full batch (the first edition's inner loop) the inner-product term cannot arise: g_1 = g_2
    phi_full = flatten(adapt(model, unflatten(theta, params), x1, y1, inner_lr=0.01, n_steps=2))
    h1 = hessian(loss(x1, y1))(theta)
    torch.testing.assert_close(theta - phi_full, 0.01 * 2 * g1 - 0.01**2 * h1 @ g1, atol=1e-6, rtol=1e-3)


def test_non_transductive_predict_classifies_each_query_with_the_support_only():
    torch.manual_seed(0)
    model = MAML(train_way=3, hidden=8, test_steps=1, transductive=False)
    task = random_tasks(1)[0]
    logits = make_predict(model, "cpu")(task)
    # one query's logits do not depend on the other queries
    alone = make_predict(model, "cpu")(Episode(task.support_x, task.support_y, task.query_x[:1], task.query_y[:1],
                                               n_way=3))
    torch.testing.assert_close(logits[:1], alone)
    same_weights = MAML(train_way=3, hidden=8, test_steps=1, transductive=True)
    same_weights.load_state_dict(model.state_dict())
    transductive = make_predict(same_weights, "cpu")
    one = Episode(task.support_x, task.support_y, task.query_x[:1], task.query_y[:1], n_way=3)
    assert not torch.allclose(transductive(task)[:1], transductive(one))  # transductive: the others matter


@pytest.mark.parametrize("first_order", [False, True])
def test_one_backward_per_task_gives_the_meta_gradient_of_the_batched_loss(first_order):
    torch.manual_seed(0)
    method = MAML(train_way=3, hidden=8, first_order=first_order, inner_steps=2, per_task_backward=True)
    tasks = random_tasks(3)
    loss, _ = method.loss(tasks)
    batched = torch.autograd.grad(loss, list(method.parameters()))
    method.zero_grad()
    per_task_loss, metrics = method.backward(tasks)
    torch.testing.assert_close(per_task_loss, loss.detach())
    for g, p in zip(batched, method.parameters()):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)
    assert 0.0 <= metrics["accuracy"] <= 1.0

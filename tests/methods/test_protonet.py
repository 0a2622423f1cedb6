"""Prototypical networks: one test per derivation of the chapter, plus engine, CLI and data runs."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from fewshot_tutorial import Episode, evaluate, fit
from fewshot_tutorial.evaluation import make_predict
from fewshot_tutorial.methods.protonet import (
    ProtoNet,
    cosine_distance,
    linear_layer,
    protonet_logits,
    prototypes,
    squared_euclidean,
)


def _episode(n_way=3, n_shot=2, n_query=4, size=28, device="cpu", seed=0) -> Episode:
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(n_way * n_shot, 1, size, size, generator=g)
    qx = torch.rand(n_way * n_query, 1, size, size, generator=g)
    return Episode(sx.to(device), torch.arange(n_way).repeat_interleave(n_shot).to(device),
                   qx.to(device), torch.arange(n_way).repeat_interleave(n_query).to(device), n_way=n_way)


# --------------------------------------------------------------------------- prototypes
def test_prototypes_are_class_means_for_shuffled_labels():
    torch.manual_seed(0)
    n_way, n_shot, d = 5, 4, 7
    z = torch.randn(n_way * n_shot, d, dtype=torch.float64)
    y = torch.arange(n_way).repeat_interleave(n_shot)
    perm = torch.randperm(len(y))
    got = prototypes(z[perm], y[perm], n_way)
    naive = torch.stack([torch.stack([z[i] for i in range(len(y)) if y[i] == k]).mean(0) for k in range(n_way)])
    assert torch.allclose(got, naive)
    # unequal class sizes are still plain means
    y2 = torch.tensor([2, 0, 2, 1, 2, 0])
    z2 = torch.randn(6, 3)
    want = torch.stack([z2[y2 == k].mean(0) for k in range(3)])
    assert torch.allclose(prototypes(z2, y2, 3), want)


def test_prototypes_missing_class_and_bad_labels_raise():
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] have no support item"):
        prototypes(z, torch.tensor([0, 0, 2, 2]), 3)
    with pytest.raises(ValueError, match="must lie in 0..2"):
        prototypes(z, torch.tensor([0, 1, 2, 3]), 3)
    with pytest.raises(ValueError, match="z must be"):
        prototypes(z, torch.tensor([0, 1, 2]), 3)
    with pytest.raises(ValueError, match="integer class labels"):
        prototypes(z, torch.tensor([0.0, 1.0, 2.0, 2.0]), 3)


def test_prototypes_upcast_bfloat16():
    z = torch.randn(6, 4).bfloat16()
    p = prototypes(z, torch.tensor([0, 1, 2, 0, 1, 2]), 3)
    assert p.dtype == torch.float32


def test_mean_minimises_summed_squared_distance():
    torch.manual_seed(1)
    z = torch.randn(9, 5, dtype=torch.float64)
    c = z.mean(0).requires_grad_()
    (z - c).pow(2).sum().backward()
    assert torch.allclose(c.grad, torch.zeros(5, dtype=torch.float64), atol=1e-12)
    # and it is a minimum: any other point costs exactly n * ||c - mean||^2 more
    other = z.mean(0) + torch.randn(5, dtype=torch.float64)
    gap = (z - other).pow(2).sum() - (z - z.mean(0)).pow(2).sum()
    assert torch.allclose(gap, len(z) * (other - z.mean(0)).pow(2).sum())


def test_mean_minimises_any_bregman_divergence_but_not_cosine():
    torch.manual_seed(2)
    z = torch.rand(8, 4, dtype=torch.float64) + 0.1  # positive: generalised KL is defined

    def gkl(x, c):  # Bregman divergence of phi(x) = sum x log x
        return (x * (x / c).log() - x + c).sum(-1)

    c = z.mean(0).requires_grad_()
    gkl(z, c).sum().backward()
    assert torch.allclose(c.grad, torch.zeros(4, dtype=torch.float64), atol=1e-12)
    # cosine: the mean is not the minimiser; the mean direction of the unit vectors is
    x = torch.randn(8, 4, dtype=torch.float64) * torch.linspace(0.1, 5, 8, dtype=torch.float64)[:, None]
    cost = lambda c: cosine_distance(x, c[None]).sum()  # noqa: E731
    best = F.normalize(x, dim=-1).mean(0)
    assert cost(best) < cost(x.mean(0)) - 1e-6
    c = best.clone().requires_grad_()
    cost(c).backward()
    assert c.grad.abs().max() < 1e-10


# --------------------------------------------------------------------------- distances
def test_distances_match_naive_loops():
    torch.manual_seed(3)
    q, c = torch.randn(6, 5), torch.randn(4, 5)
    d = squared_euclidean(q, c)
    cos = cosine_distance(q, c)
    for i in range(6):
        for k in range(4):
            assert torch.isclose(d[i, k], sum((q[i, j] - c[k, j]) ** 2 for j in range(5)), atol=1e-5)
            dot = sum(q[i, j] * c[k, j] for j in range(5))
            assert torch.isclose(cos[i, k], 1 - dot / (q[i].norm() * c[k].norm()), atol=1e-5)
    assert torch.equal(protonet_logits(q, c), -d)
    assert torch.equal(protonet_logits(q, c, "cosine"), -cos)
    with pytest.raises(ValueError, match="distance must be one of"):
        protonet_logits(q, c, "manhattan")
    with pytest.raises(ValueError, match="D=5 vs 3"):
        squared_euclidean(q, c[:, :3])


def test_distances_gradcheck_float64():
    torch.manual_seed(4)
    q = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    c = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(squared_euclidean, (q, c))
    assert torch.autograd.gradcheck(cosine_distance, (q, c))
    z = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1, 0, 2, 0, 1, 2])
    assert torch.autograd.gradcheck(lambda z: prototypes(z, y, 3), (z,))


def test_distances_stay_float32_under_autocast():
    q, c = torch.randn(6, 8).bfloat16(), torch.randn(3, 8).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert squared_euclidean(q, c).dtype == torch.float32
        assert cosine_distance(q, c).dtype == torch.float32


# --------------------------------------------------------------------------- linear form
def test_linear_layer_equals_distance_logits_up_to_query_constant():
    torch.manual_seed(5)
    z, c = torch.randn(7, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    w, b = linear_layer(c)
    assert w.shape == (4, 6) and b.shape == (4,)
    lin = F.linear(z, w, b)
    dist = protonet_logits(z, c)
    assert torch.allclose(lin - dist, z.pow(2).sum(-1, keepdim=True).expand(7, 4))
    assert torch.allclose(lin.softmax(-1), dist.softmax(-1))
    with pytest.raises(ValueError, match="protos must be"):
        linear_layer(c[0])


def test_hand_gradient_of_loss_wrt_query_embedding():
    """dL/dz_q = (2 / Q) (sum_k p_k c_k - c_{y_q}) for the mean cross-entropy."""
    torch.manual_seed(6)
    z = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    c = torch.randn(4, 3, dtype=torch.float64)
    y = torch.tensor([0, 3, 1, 1, 2])
    F.cross_entropy(protonet_logits(z, c), y).backward()
    p = protonet_logits(z.detach(), c).softmax(-1)
    hand = 2.0 / len(y) * (p @ c - c[y])
    assert torch.allclose(z.grad, hand)


# --------------------------------------------------------------------------- model, engine
def test_model_predict_shapes_and_loss():
    torch.manual_seed(7)
    model = ProtoNet(hidden=8)
    ep = _episode(n_way=4, n_shot=2, n_query=3)
    loss, m = model.loss(ep)
    assert loss.dim() == 0 and 0 <= m["accuracy"] <= 1
    logits = make_predict(model, "cpu")(ep)
    assert logits.shape == (12, 4) and logits.dtype == torch.float32
    with pytest.raises(ValueError, match="distance must be one of"):
        ProtoNet(distance="l1")


def test_short_training_lowers_loss_on_real_data(background, evaluation):
    torch.manual_seed(0)
    model = ProtoNet(train_way=10, train_shot=1, train_query=3, lr=3e-3)
    hist = fit(model, background, n_steps=40, progress=False)
    first, last = sum(hist.losses[:10]) / 10, sum(hist.losses[-10:]) / 10
    assert last < 0.8 * first, (first, last)
    # trained with 10-way episodes, tested 5-way: a higher train way than test way
    res = evaluate(model, evaluation, 5, 1, n_episodes=20, seed=0)
    assert res.accuracy > 0.4


def test_fit_rejects_train_way_larger_than_split():
    from fewshot_tutorial import FewShotDataset

    data = FewShotDataset(torch.rand(4, 6, 1, 28, 28), [f"c{i}" for i in range(4)])
    with pytest.raises(ValueError, match="only 4 classes"):
        fit(ProtoNet(hidden=4, train_way=5), data, n_steps=1)


def test_lr_decay_every_halves_the_rate():
    model = ProtoNet(hidden=4, lr_decay_every=2)
    opt = model.optimizer(1e-3)
    sched = model.scheduler(opt)
    for _ in range(4):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 / 4)
    assert ProtoNet(hidden=4).scheduler(opt) is None


# --------------------------------------------------------------------------- exercises
def test_exercise_one_shot_protonet_is_nearest_neighbour():
    """Solution of ex-protonet-2: with one shot the prototypes are the support embeddings."""
    torch.manual_seed(8)
    s, q = torch.randn(5, 16), torch.randn(30, 16)
    y = torch.tensor([3, 1, 4, 0, 2])  # one example a class, any order
    pred = protonet_logits(q, prototypes(s, y, 5)).argmax(-1)
    nn_pred = y[torch.cdist(q, s).argmin(-1)]
    assert torch.equal(pred, nn_pred)


def test_exercise_nearest_neighbour_predict_on_episode():
    """Solution of ex-protonet-3: a K-shot nearest-neighbour predict in embedding space."""
    torch.manual_seed(9)
    model = ProtoNet(hidden=8).eval()
    ep = _episode(n_way=3, n_shot=3, n_query=2)

    @torch.no_grad()
    def nn_predict(episode):
        support_z, query_z = model.embed(episode.support_x), model.embed(episode.query_x)
        d = squared_euclidean(query_z, support_z)  # [Q, n_way * n_shot]
        best = torch.full((len(query_z), episode.n_way), float("inf")).scatter_reduce(
            1, episode.support_y.expand_as(d), d, reduce="amin")
        return -best

    logits = nn_predict(ep)
    assert logits.shape == (6, 3)
    with torch.no_grad():
        support_z, query_z = model.embed(ep.support_x), model.embed(ep.query_x)
    for i in range(6):
        dists = [(query_z[i] - support_z[j]).pow(2).sum() for j in range(9)]
        assert int(logits[i].argmax()) == int(ep.support_y[int(torch.stack(dists).argmin())])


@pytest.mark.parametrize("n_way", [5, 20])
def test_cosine_largest_probability_any_and_non_negative_embeddings(n_way):
    """e^2/(e^2+N-1) needs prototypes pointing away; non-negative embeddings top out at e/(e+N-1)."""
    import math

    u, v = torch.eye(2, dtype=torch.float64)[:, None]

    def best(query, protos):
        return protonet_logits(query, protos, "cosine").softmax(-1)[:, 0]

    signed = best(u, torch.cat([u, -u.expand(n_way - 1, 2)])).item()
    plain = best(u, torch.cat([u, v.expand(n_way - 1, 2)])).item()
    assert math.isclose(signed, math.e ** 2 / (math.e ** 2 + n_way - 1), rel_tol=1e-9)
    assert math.isclose(plain, math.e / (math.e + n_way - 1), rel_tol=1e-9)
    g = torch.Generator().manual_seed(n_way)
    protos = torch.rand(n_way, 8, generator=g, dtype=torch.float64) ** 4
    queries = torch.cat([protos[:1] + 0.01 * torch.rand(500, 8, generator=g, dtype=torch.float64),
                         torch.rand(500, 8, generator=g, dtype=torch.float64) ** 4])
    assert best(queries, protos).max().item() <= plain + 1e-12

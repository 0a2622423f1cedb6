"""Tests of fewshot_tutorial.matching: one per derivation of the matching-networks chapter."""

from __future__ import annotations

import json
import math

import pytest
import torch

from fewshot_tutorial.data import Episode, EpisodeSampler, FewShotDataset
from fewshot_tutorial.evaluation import embed_dataset, make_embedding_predict, make_predict
from fewshot_tutorial.methods import matching as M
from fewshot_tutorial.training import fit
from tests.conftest import needs_data




def embeddings(q: int = 7, s: int = 6, d: int = 5, dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(q, d, generator=g, dtype=dtype), torch.randn(s, d, generator=g, dtype=dtype)


def tiny_episode(n_way: int = 3, n_shot: int = 2, n_query: int = 2, size: int = 28, seed: int = 0) -> Episode:
    g = torch.Generator().manual_seed(seed)
    return Episode(torch.rand(n_way * n_shot, 1, size, size, generator=g),
                   torch.arange(n_way).repeat_interleave(n_shot),
                   torch.rand(n_way * n_query, 1, size, size, generator=g),
                   torch.arange(n_way).repeat_interleave(n_query), n_way=n_way)


# ------------------------------------------------------------------ eq-matching-attention
@pytest.mark.parametrize("kind", M.SIMILARITIES)
@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_attention_matches_naive_double_loop_and_rows_sum_to_one(kind: str, temperature: float) -> None:
    q, s = embeddings()
    a = M.attention(q, s, kind, temperature)
    naive = torch.empty(len(q), len(s), dtype=q.dtype)
    for i in range(len(q)):
        sims = []
        for j in range(len(s)):
            if kind == "cosine":
                sims.append(float(q[i] @ s[j] / (q[i].norm() * s[j].norm())))
            else:
                sims.append(-float(((q[i] - s[j]) ** 2).sum()))
        e = [math.exp(v / temperature) for v in sims]
        for j in range(len(s)):
            naive[i, j] = e[j] / sum(e)
    assert torch.allclose(a, naive, atol=1e-12)
    assert torch.allclose(a.sum(-1), torch.ones(len(q), dtype=q.dtype))
    assert (a >= 0).all()


@pytest.mark.parametrize("kind", M.SIMILARITIES)
def test_gradcheck_attention_and_log_probabilities(kind: str) -> None:
    q, s = embeddings(4, 6, 3)
    q.requires_grad_(True)
    s.requires_grad_(True)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    assert torch.autograd.gradcheck(lambda a, b: M.attention(a, b, kind, 0.7), (q, s))
    assert torch.autograd.gradcheck(
        lambda a, b: M.class_log_probabilities(M.similarity(a, b, kind), y, 3, 0.7), (q, s))


def test_cosine_with_zero_vectors_is_finite() -> None:
    q, s = embeddings(3, 4, 5)
    q[0] = 0.0
    s[2] = 0.0
    q.requires_grad_(True)
    s.requires_grad_(True)
    sim = M.cosine_similarity(q, s)
    assert torch.isfinite(sim).all()
    assert torch.all(sim[0] == 0) and torch.all(sim[:, 2] == 0)
    a = M.attention(q, s)
    assert torch.allclose(a[0], torch.full((4,), 0.25, dtype=q.dtype))  # zero query: uniform
    logp = M.class_log_probabilities(sim, torch.tensor([0, 0, 1, 1]), 2)
    logp.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(s.grad).all()


# --------------------------------------------------------- eq-matching-prediction / log-prob
def test_log_probabilities_equal_log_of_attention_weighted_labels() -> None:
    q, s = embeddings(5, 6, 4)
    y = torch.tensor([2, 0, 1, 0, 2, 1])
    for kind in M.SIMILARITIES:
        p = M.label_probabilities(M.attention(q, s, kind, 0.5), y, 3)
        naive = torch.zeros(5, 3, dtype=q.dtype)
        a = M.attention(q, s, kind, 0.5)
        for i in range(5):
            for j in range(6):
                naive[i, y[j]] += a[i, j]
        assert torch.allclose(p, naive)
        assert torch.allclose(p.sum(-1), torch.ones(5, dtype=q.dtype))
        logp = M.class_log_probabilities(M.similarity(q, s, kind), y, 3, 0.5)
        assert torch.allclose(logp, p.log())


def test_log_probabilities_stay_finite_where_the_naive_log_underflows() -> None:
    q, s = embeddings(3, 4, 4)
    y = torch.tensor([0, 0, 1, 1])
    sim = M.similarity(q, s, "euclidean") * 1e3  # probabilities round to exactly 0 ...
    naive = M.label_probabilities(torch.softmax(sim, -1), y, 2).log()
    stable = M.class_log_probabilities(sim, y, 2)
    assert torch.isinf(naive).any()  # ... so log(P) is -inf
    assert torch.isfinite(stable).all()


def test_loss_is_nll_of_log_probabilities_not_a_second_softmax() -> None:
    logp = torch.log(torch.tensor([[1.0 - 4e-6, 1e-6, 1e-6, 1e-6, 1e-6]]))
    y = torch.tensor([0])
    assert M.matching_loss(logp, y) < 1e-5  # a confident right answer costs ~0
    # a softmax over probabilities cannot go below -log(e / (e + 4)): the mistake the chapter warns about
    wrong = torch.nn.functional.cross_entropy(logp.exp(), y)
    assert torch.isclose(wrong, -torch.log(torch.tensor(math.e / (math.e + 4))), atol=1e-4)


def test_hand_gradient_of_loss_wrt_similarities_matches_autograd() -> None:
    """Exercise ex-matching-1: d(-log P(y|x))/ds_i = (a_i - a_i [y_i = y] / P(y|x)) / T."""
    q, s = embeddings(4, 6, 3)
    y_s = torch.tensor([0, 0, 1, 1, 2, 2])
    y_q = torch.tensor([0, 1, 2, 1])
    temperature = 0.5
    sim = M.similarity(q, s).detach().requires_grad_(True)
    loss = M.matching_loss(M.class_log_probabilities(sim, y_s, 3, temperature), y_q)
    loss.backward()
    a = torch.softmax(sim.detach() / temperature, -1)
    same = (y_s[None, :] == y_q[:, None]).to(a.dtype)
    p_true = (a * same).sum(-1, keepdim=True)
    hand = (a - a * same / p_true) / temperature / len(y_q)
    assert torch.allclose(sim.grad, hand)


# ---------------------------------------------------------------- temperature limits
def test_sharp_softmax_limit_is_one_nearest_neighbour() -> None:
    for seed in range(5):
        q, s = embeddings(20, 10, 8, seed=seed)
        y = torch.arange(5).repeat_interleave(2)
        for kind in M.SIMILARITIES:
            a = M.attention(q, s, kind, temperature=1e-4)
            nn_index = M.similarity(q, s, kind).argmax(-1)
            assert torch.allclose(a, torch.nn.functional.one_hot(nn_index, 10).to(a.dtype), atol=1e-6)
            logp = M.class_log_probabilities(M.similarity(q, s, kind), y, 5, 1e-4)
            assert torch.equal(logp.argmax(-1), M.nearest_neighbour_labels(q, s, y, kind))


def test_flat_softmax_limit_is_the_label_frequency() -> None:
    """Exercise ex-matching-3: as T -> infinity, P(y = c | x) -> fraction of support items of class c."""
    q, s = embeddings(4, 6, 3)
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    p = M.class_log_probabilities(M.similarity(q, s), y, 3, temperature=1e6).exp()
    freq = torch.bincount(y, minlength=3).to(p.dtype) / len(y)
    assert torch.allclose(p, freq.expand_as(p), atol=1e-5)


def test_one_shot_matching_equals_cosine_to_class_means_but_five_shot_does_not() -> None:
    """Exercise ex-matching-2: the solution's claim, checked."""
    def class_mean_log_probs(q, s, y, n_way):  # the exercise's solution
        means = torch.stack([s[y == c].mean(0) for c in range(n_way)])
        return torch.log_softmax(M.cosine_similarity(q, means), -1)

    q, s = embeddings(6, 4, 5)
    y = torch.arange(4)
    assert torch.allclose(M.class_log_probabilities(M.cosine_similarity(q, s), y, 4), class_mean_log_probs(q, s, y, 4))
    q, s = embeddings(6, 20, 5)
    y = torch.arange(4).repeat_interleave(5)
    assert not torch.allclose(M.class_log_probabilities(M.cosine_similarity(q, s), y, 4),
                              class_mean_log_probs(q, s, y, 4))


# ------------------------------------------------------------------------------ FCE
def test_fce_shapes() -> None:
    torch.manual_seed(0)
    g, f = M.SupportContext(8), M.QueryAttentionLSTM(8, steps=3)
    s, q = torch.randn(6, 8), torch.randn(10, 8)
    assert g(s).shape == (6, 8)
    assert f(q, g(s)).shape == (10, 8)
    model = M.MatchingNetwork(fce=True)
    assert model(tiny_episode()).shape == (6, 3)


def test_fce_permutation_behaviour() -> None:
    torch.manual_seed(0)
    dim = 8
    g, f = M.SupportContext(dim).double(), M.QueryAttentionLSTM(dim, steps=4).double()
    s, q = torch.randn(6, dim, dtype=torch.float64), torch.randn(5, dim, dtype=torch.float64)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    qperm = torch.tensor([4, 2, 0, 3, 1])
    gs = g(s)
    # f reads the support through softmax attention: a set operation, blind to order
    assert torch.allclose(f(q, gs[perm]), f(q, gs))
    # queries do not see each other: permuting them permutes f's output
    assert torch.allclose(f(q[qperm], gs), f(q, gs)[qperm])
    # g reads the support with an LSTM: order matters, so g is NOT permutation-equivariant
    assert not torch.allclose(g(s[perm]), gs[perm], atol=1e-4)
    # ... but an item's context embedding depends only on the support sequence, never on the queries
    assert torch.equal(g(s), gs)


def test_plain_matching_is_invariant_to_support_order_fce_is_not() -> None:
    torch.manual_seed(0)
    ep = tiny_episode(n_way=3, n_shot=2)
    perm = torch.tensor([5, 2, 0, 4, 1, 3])
    shuffled = Episode(ep.support_x[perm], ep.support_y[perm], ep.query_x, ep.query_y, n_way=3)
    for fce, invariant in [(False, True), (True, False)]:
        model = M.MatchingNetwork(fce=fce).eval()
        with torch.no_grad():
            same = torch.allclose(model.predict(ep), model.predict(shuffled), atol=1e-5)
        assert same == invariant


# ----------------------------------------------------------------- errors
def test_bad_inputs_raise_value_errors_that_say_what_to_do() -> None:
    q, s = embeddings(3, 4, 5)
    with pytest.raises(ValueError, match="temperature"):
        M.attention(q, s, temperature=0.0)
    with pytest.raises(ValueError, match="same network"):
        M.attention(q, s[:, :3])
    with pytest.raises(ValueError, match="similarity"):
        M.attention(q, s, kind="dot")
    with pytest.raises(ValueError, match="every class"):
        M.class_log_probabilities(M.similarity(q, s), torch.tensor([0, 0, 2, 2]), 3)
    with pytest.raises(ValueError, match="flatten"):
        M.cosine_similarity(q[None], s)


# ----------------------------------------------------------- training step and predict
def test_predict_shapes_and_embedding_path_agree() -> None:
    torch.manual_seed(0)
    data = FewShotDataset(torch.rand(6, 5, 1, 28, 28), [f"c{i}" for i in range(6)])
    for fce in (False, True):
        model = M.MatchingNetwork(fce=fce)
        fit(model, EpisodeSampler(data, 3, 1, 2, seed=0), n_steps=2, device="cpu", precision="float32",
            progress=False)  # non-trivial batch-norm statistics
        predict = make_predict(model, "cpu", precision="float32")
        fast = make_embedding_predict(model)
        embedded = embed_dataset(model, data, precision="float32", batch_size=7)
        for a, b in zip(EpisodeSampler(data, 4, 2, 3, seed=1, n_episodes=3),
                        EpisodeSampler(embedded, 4, 2, 3, seed=1, n_episodes=3)):
            out = predict(a)
            assert out.shape == (12, 4)
            assert torch.allclose(out.exp().sum(-1), torch.ones(12), atol=1e-5)
            assert torch.allclose(out, fast(b), atol=1e-4)


@needs_data
def test_short_training_run_lowers_the_loss_on_omniglot() -> None:
    from fewshot_tutorial import load_omniglot

    torch.manual_seed(0)
    data = load_omniglot(split="background")
    model = M.MatchingNetwork(temperature=0.1, train_way=5, train_shot=1, train_query=5)
    hist = fit(model, data, n_steps=40, seed=0, progress=False)
    first, last = sum(hist.losses[:10]) / 10, sum(hist.losses[-10:]) / 10
    assert last < 0.8 * first, (first, last)


# ------------------------------------------------------------------------------ CLI
@needs_data
def test_cli_train_then_evaluate_checkpoint(tmp_path, capsys) -> None:
    from fewshot_tutorial.cli import main

    out = tmp_path / "matching.pt"
    assert main(["train", "matching", "--steps", "2", "--train-way", "3", "--train-query", "2", "--fce",
                 "--temperature", "0.5", "--out", str(out)]) == 0
    assert out.is_file()
    assert main(["evaluate", "--checkpoint", str(out), "--way", "3", "--shot", "1", "--query", "2",
                 "--episodes", "3", "--json"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    res = json.loads(line)
    assert res["method"] == "matching" and res["n"] == 3 and 0.0 <= res["accuracy"] <= 1.0


# ------------------------------------------------------------------- figures and widget
def test_figures_and_widget_build() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fewshot_tutorial.plotting.matching import plot_attention_grid, plot_temperature_sweep
    from fewshot_tutorial.widgets.matching import temperature_explorer

    ep = tiny_episode(n_way=3, n_shot=2, n_query=2)
    attn = torch.softmax(torch.randn(6, 6), -1)
    fig = plot_attention_grid(ep, {"before": attn, "after": attn}, query_indices=[0, 2])
    assert len(fig.axes) == 1 + 2 * 3
    sim = M.cosine_similarity(torch.randn(6, 4), torch.randn(6, 4))
    fig2 = plot_temperature_sweep(sim[0], ep.support_y, n_way=3, temperatures=(1.0, 0.1), true_label=0)
    assert len(fig2.axes) == 2
    widget = temperature_explorer(sim, ep.support_y, ep.query_y, n_way=3)
    assert {c.description for c in widget.children[:2]} == {"query", "log10 T"}
    plt.close("all")


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_fce_query_embedding_depends_on_the_support_for_every_step_count(steps) -> None:
    """Issue 13: with the read after the LSTM step, one step ignored the support set."""
    torch.manual_seed(0)
    f = M.QueryAttentionLSTM(8, steps=steps).double()
    q = torch.randn(4, 8, dtype=torch.float64)
    s1, s2 = torch.randn(6, 8, dtype=torch.float64), torch.randn(6, 8, dtype=torch.float64)
    assert not torch.allclose(f(q, s1), f(q, s2))
    # and the read uses the current state: a naive loop over the equations gives the same
    h, c = q, torch.zeros_like(q)
    for _ in range(steps):
        r = torch.stack([sum(torch.softmax(h[i] @ s1.T, 0)[j] * s1[j] for j in range(6)) for i in range(4)])
        h_hat, c = f.cell(torch.cat([q, r], -1), (h, c))
        h = h_hat + q
    torch.testing.assert_close(f(q, s1), h)


# ------------------------------------------------------------------ cosine loss floors
@pytest.mark.parametrize("n_way,temperature", [(5, 1.0), (20, 1.0), (5, M.DEFAULT_TEMPERATURE)])
def test_cosine_loss_floor_depends_on_whether_embeddings_can_point_apart(n_way: int, temperature: float) -> None:
    """The chapter's floors: log(1 + (N-1) e^{-1/T}) for non-negative embeddings, e^{-2/T} for signed ones."""
    u, v = torch.eye(2, dtype=torch.float64)[:, None]
    y = torch.arange(n_way)

    def loss(query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        log_p = M.class_log_probabilities(M.cosine_similarity(query, support), y, n_way, temperature)
        return M.matching_loss(log_p, torch.zeros(len(query), dtype=torch.long))

    plain = loss(u, torch.cat([u, v.expand(n_way - 1, 2)])).item()
    signed = loss(u, torch.cat([u, -u.expand(n_way - 1, 2)])).item()
    assert math.isclose(plain, math.log1p((n_way - 1) * math.exp(-1 / temperature)), rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(signed, math.log1p((n_way - 1) * math.exp(-2 / temperature)), rel_tol=1e-9, abs_tol=1e-12)
    g = torch.Generator().manual_seed(n_way)
    support = torch.rand(n_way, 8, generator=g, dtype=torch.float64) ** 4
    queries = torch.cat([support[:1] + 0.01 * torch.rand(500, 8, generator=g, dtype=torch.float64),
                         torch.rand(500, 8, generator=g, dtype=torch.float64) ** 4])
    per_query = -M.class_log_probabilities(M.cosine_similarity(queries, support), y, n_way, temperature)[:, 0]
    assert per_query.min().item() >= plain - 1e-12


def test_plain_embeddings_are_non_negative() -> None:
    """Conv4 ends in ReLU and max-pool: the premise of the non-negative floor."""
    torch.manual_seed(0)
    model = M.MatchingNetwork().eval()
    with torch.no_grad():
        z = model.embed(torch.randn(16, 1, 28, 28))
    assert (z >= 0).all() and (z > 0).any()

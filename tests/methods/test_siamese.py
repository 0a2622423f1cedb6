"""Tests of fewshot_tutorial.siamese: one per derivation of the chapter (book/02_siamese)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from fewshot_tutorial.data import EpisodeSampler, FewShotDataset
from fewshot_tutorial.data.pairs import PairSampler
from fewshot_tutorial.evaluation import make_predict as _make_predict
from fewshot_tutorial.methods.siamese import (
    Siamese,
    class_mean_scores,
    contrastive_grad_z1,
    contrastive_loss,
    contrastive_loss_hadsell,
    euclidean_distance,
    koch_loss,
    safe_norm,
    weighted_l1_logit,
)
from fewshot_tutorial.training import fit


def make_predict(model):
    """The engine's predict in float32 on the CPU (exact comparisons with naive loops)."""
    return _make_predict(model, "cpu", precision="float32")
from tests.conftest import needs_data

NOTEBOOK = Path(__file__).resolve().parents[2] / "book" / "02_siamese.ipynb"


def tagged_dataset(n_classes: int = 6, n_per_class: int = 5) -> FewShotDataset:
    """Images whose every pixel is ``100 * class + drawing``, so a pair reveals its indices."""
    c = torch.arange(n_classes).view(-1, 1, 1, 1, 1)
    i = torch.arange(n_per_class).view(1, -1, 1, 1, 1)
    images = (100 * c + i).float().expand(n_classes, n_per_class, 1, 4, 4).clone()
    return FewShotDataset(images, [f"c{k}" for k in range(n_classes)], name="tagged")


def random_pairs(b: int = 8, d: int = 5, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(b, d, generator=g, dtype=dtype)
    z2 = z1 + 0.4 * torch.randn(b, d, generator=g, dtype=dtype)  # some inside, some beyond the margin
    same = (torch.arange(b) % 2 == 0).to(dtype)
    return z1, z2, same


# ------------------------------------------------------------------ loss and its gradient
def test_contrastive_loss_value_by_hand():
    z1 = torch.zeros(3, 2)
    z2 = torch.tensor([[3.0, 4.0], [0.3, 0.4], [3.0, 4.0]])  # d = 5, 0.5, 5
    same = torch.tensor([1.0, 0.0, 0.0])
    # same at d=5: 25; different at d=0.5 < m=1: (1-0.5)^2 = 0.25; different at d=5 > m: 0
    expected = torch.tensor([25.0, 0.25, 0.0])
    assert torch.allclose(contrastive_loss(z1, z2, same, 1.0, reduction="none"), expected)
    assert torch.isclose(contrastive_loss(z1, z2, same, 1.0), expected.mean())
    assert torch.isclose(contrastive_loss(z1, z2, same.bool(), 1.0), expected.mean())  # bool labels work


def test_distance_matches_naive_loop():
    z1, z2, _ = random_pairs()
    naive = torch.stack([torch.sqrt(sum((a - b) ** 2 for a, b in zip(u, v))) for u, v in zip(z1, z2)])
    assert torch.allclose(euclidean_distance(z1, z2), naive)


def test_gradcheck_contrastive_loss_float64():
    z1, z2, same = random_pairs()
    d = euclidean_distance(z1, z2)
    margin = 1.0
    assert (d - margin).abs().min() > 1e-3  # away from the kink at d = m
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: contrastive_loss(a, b, same, margin), (z1, z2))
    assert torch.autograd.gradcheck(lambda a, b: contrastive_loss_hadsell(a, b, 1 - same, margin), (z1, z2))


def test_gradcheck_koch_similarity_float64():
    z1, z2, same = random_pairs()
    w = torch.randn(z1.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    z1.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, w, b: koch_loss(weighted_l1_logit(a, z2, w, b), same), (z1, w, b))


def test_hand_gradient_equals_autograd():
    z1, z2, same = random_pairs(b=16)
    d = euclidean_distance(z1, z2)
    assert ((same == 0) & (d < 1)).any() and ((same == 0) & (d > 1)).any()  # all three branches occur
    z1.requires_grad_(True)
    (auto,) = torch.autograd.grad(contrastive_loss(z1, z2, same, 1.0), z1)
    assert torch.allclose(contrastive_grad_z1(z1.detach(), z2, same, 1.0), auto)
    # the branches: a different pair beyond the margin gets no gradient
    beyond = (same == 0) & (d > 1)
    assert (auto[beyond] == 0).all()


def test_finite_value_and_gradient_at_zero_distance():
    z1 = torch.randn(4, 3, requires_grad=True)
    z2 = z1.detach().clone().requires_grad_(True)
    same = torch.tensor([1.0, 0.0, 1.0, 0.0])
    loss = contrastive_loss(z1, z2, same, margin=2.0, reduction="none")
    assert torch.allclose(loss, torch.tensor([0.0, 4.0, 0.0, 4.0]))  # different pairs cost m^2
    g1, g2 = torch.autograd.grad(loss.sum(), (z1, z2))
    assert torch.isfinite(g1).all() and torch.isfinite(g2).all()
    assert torch.allclose(contrastive_grad_z1(z1.detach(), z2.detach(), same, 2.0), torch.zeros(4, 3))
    # the trap the safe norm avoids: sqrt's derivative at 0
    x = torch.zeros(3, requires_grad=True)
    (naive,) = torch.autograd.grad(x.pow(2).sum().sqrt(), x)
    (safe,) = torch.autograd.grad(safe_norm(x), x)
    assert torch.isnan(naive).all() and torch.equal(safe, torch.zeros(3))


def test_label_conventions_are_the_same_loss():
    z1, z2, same = random_pairs(b=10)
    different = 1 - same
    assert torch.allclose(contrastive_loss_hadsell(z1, z2, different), contrastive_loss(z1, z2, same))
    # and using one convention's labels in the other's formula is a different (wrong) loss
    assert not torch.allclose(contrastive_loss_hadsell(z1, z2, same), contrastive_loss(z1, z2, same))


def test_bad_inputs_raise_value_errors():
    z = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="margin"):
        contrastive_loss(z, z, torch.ones(3), margin=0.0)
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        contrastive_loss(z, torch.zeros(3, 4), torch.ones(3))
    with pytest.raises(ValueError, match="same must be"):
        contrastive_loss(z, z, torch.ones(2))
    with pytest.raises(ValueError, match="reduction"):
        contrastive_loss(z, z, torch.ones(3), reduction="sum")
    with pytest.raises(ValueError, match="weight"):
        weighted_l1_logit(z, z, torch.ones(3))
    with pytest.raises(ValueError, match="even"):
        PairSampler(tagged_dataset(), batch_size=5)
    with pytest.raises(ValueError, match="head"):
        Siamese(head="cosine")
    with pytest.raises(ValueError, match="no field"):
        Siamese.Config.from_dict({"head": "koch", "distance": "cosine"})
    with pytest.raises(ValueError, match="only 0 and 1"):
        contrastive_loss(z, z, torch.tensor([1.0, -1.0, 2.0]))


# ------------------------------------------------------------------------ pair sampler
def test_pair_sampler_balanced_and_correct():
    data = tagged_dataset()
    x1, x2, same = PairSampler(data, batch_size=40, seed=3).sample()
    assert x1.shape == x2.shape == (40, 1, 4, 4) and same.shape == (40,)
    assert same.sum() == 20  # exactly balanced
    c1, i1 = x1[:, 0, 0, 0].long().div(100, rounding_mode="floor"), x1[:, 0, 0, 0].long() % 100
    c2, i2 = x2[:, 0, 0, 0].long().div(100, rounding_mode="floor"), x2[:, 0, 0, 0].long() % 100
    is_same = same.bool()
    assert torch.equal(c1 == c2, is_same)  # labels say what the images are
    assert (i1[is_same] != i2[is_same]).all()  # a same pair uses two different drawings


def test_pair_sampler_is_deterministic():
    data = tagged_dataset()
    a = list(PairSampler(data, 8, seed=7, n_batches=3))
    b = list(PairSampler(data, 8, seed=7, n_batches=3))
    c = PairSampler(data, 8, seed=8).sample()
    assert len(a) == 3
    assert all(torch.equal(u, v) for ba, bb in zip(a, b) for u, v in zip(ba, bb))
    assert not torch.equal(a[0][0], c[0])


# --------------------------------------------------------------------------- predict
def test_class_mean_scores_match_naive_loop():
    g = torch.Generator().manual_seed(0)
    n_way, n_shot, q = 4, 3, 5
    scores = torch.randn(q, n_way * n_shot, generator=g)
    support_y = torch.randperm(n_way * n_shot, generator=g) % n_way  # any order of labels
    naive = torch.tensor([[scores[i, support_y == c].mean().item() for c in range(n_way)] for i in range(q)])
    assert torch.allclose(class_mean_scores(scores, support_y, n_way), naive, atol=1e-6)


@pytest.mark.parametrize("head", ["contrastive", "koch"])
def test_predict_shape_labels_and_nearest_neighbour(head):
    torch.manual_seed(0)
    data = FewShotDataset(torch.rand(8, 6, 1, 28, 28), [str(i) for i in range(8)])
    model = Siamese(head=head)
    for n_shot in (1, 3):
        ep = EpisodeSampler(data, n_way=5, n_shot=n_shot, n_query=2, seed=1).sample()
        logits = make_predict(model)(ep)
        assert logits.shape == (10, 5) and torch.isfinite(logits).all()
        pred = logits.argmax(1)
        assert pred.min() >= 0 and pred.max() < 5
        if head == "contrastive" and n_shot == 1:  # K = 1: the class of the nearest support embedding
            with torch.no_grad():
                zs, zq = model.embed(ep.support_x), model.embed(ep.query_x)
            nearest = [min(range(len(zs)), key=lambda j: torch.dist(zq[i], zs[j]).item()) for i in range(len(zq))]
            assert torch.equal(pred, ep.support_y[torch.tensor(nearest)])


def test_koch_head_loads_checkpoints_that_call_its_weights_alpha(tmp_path):
    """Koch's weights were ``Siamese.alpha`` (alpha is MAML's inner rate in the book)."""
    from fewshot_tutorial.checkpoints import load_model, save_model, weights_digest

    torch.manual_seed(0)
    saved = Siamese(head="koch")
    assert "weight" in saved.state_dict() and "alpha" not in saved.state_dict()
    old = {("alpha" if k == "weight" else k): v for k, v in saved.state_dict().items()}
    fresh = Siamese(head="koch")
    fresh.load_state_dict(old)  # strict: no missing or unexpected key
    assert torch.equal(fresh.weight, saved.weight)
    nested = torch.nn.Sequential(Siamese(head="koch"))  # the key carries a prefix there
    nested.load_state_dict({f"0.{k}": v for k, v in old.items()})
    assert torch.equal(nested[0].weight, saved.weight)
    with pytest.raises(RuntimeError, match="weight"):  # a key that is still missing is an error
        Siamese(head="koch").load_state_dict({k: v for k, v in old.items() if k != "alpha"})

    path = save_model(tmp_path / "koch.pt", saved)  # an old checkpoint file, checksum and all
    payload = torch.load(path, weights_only=True)
    payload["state_dict"] = old
    payload["sha256"] = weights_digest(old, payload["config"])
    torch.save(payload, path)
    loaded, _ = load_model(path)
    assert torch.equal(loaded.weight, saved.weight) and torch.equal(loaded.bias, saved.bias)


# ------------------------------------------------------------------------ real data
@needs_data
def test_short_training_lowers_the_loss_on_omniglot(background):
    data = background
    torch.manual_seed(0)
    model = Siamese(head="contrastive")
    probe = PairSampler(data, 64, seed=123).sample()  # a fixed batch, not used for training

    def probe_loss() -> float:
        with torch.no_grad():
            return model.loss(probe).item()

    before = probe_loss()
    hist = fit(model, PairSampler(data, 32, seed=0), n_steps=40, lr=1e-3, progress=False, precision="float32")
    after = probe_loss()
    assert hist.steps == 40 and after < 0.7 * before


@needs_data
def test_cli_train_and_evaluate_round_trip(tmp_path, capsys):
    from fewshot_tutorial.checkpoints import load_checkpoint
    from fewshot_tutorial.cli import main

    out = tmp_path / "siamese.pt"
    rc = main(["train", "siamese", "--steps", "2", "--batch-size", "8", "--head", "koch", "--device", "cpu",
               "--profile", "quick", "--out", str(out)])
    assert rc == 0 and out.is_file()
    _, saved = load_checkpoint(out)
    config = saved["config"]
    assert saved["method"] == "siamese" and config["head"] == "koch" and config["steps"] == 2
    json.dumps(config)  # JSON-able
    rc = main(["evaluate", "--checkpoint", str(out), "--episodes", "3", "--device", "cpu", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["method"] == "siamese" and 0.0 <= res["accuracy"] <= 1.0 and res["n"] == 3


# ---------------------------------------------------------------- exercise solutions
def solution_code(label: str) -> str:
    """The python code block of the solution to exercise ``label`` in the chapter."""
    nb = json.loads(NOTEBOOK.read_text())
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        found = re.search(rf"```{{solution}}\s+{label}\b", src)
        if cell["cell_type"] == "markdown" and found:
            blocks = re.findall(r"```python\n(.*?)```", src[found.end():], re.S)
            assert blocks, f"the solution of {label} has no python block"
            return blocks[0]
    raise AssertionError(f"no solution for {label} in {NOTEBOOK}")


def test_exercise_koch_weight_gradient_solution():
    ns: dict = {}
    exec(solution_code("ex-siamese-2"), ns)
    z1, z2, same = random_pairs()
    w = torch.randn(z1.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.tensor(0.1, dtype=torch.float64)
    (auto,) = torch.autograd.grad(koch_loss(weighted_l1_logit(z1, z2, w, b), same), w)
    assert torch.allclose(ns["koch_grad_w"](z1, z2, same, w.detach(), b), auto)


def test_exercise_nearest_shot_solution():
    ns: dict = {}
    exec(solution_code("ex-siamese-3"), ns)
    torch.manual_seed(0)
    data = FewShotDataset(torch.rand(8, 6, 1, 28, 28), [str(i) for i in range(8)])
    model = Siamese(head="contrastive")
    predict_max = ns["make_predict_nearest"](model)
    ep1 = EpisodeSampler(data, 4, 1, 2, seed=0).sample()
    assert torch.allclose(predict_max(ep1), make_predict(model)(ep1), atol=1e-5)  # K = 1: same rule
    ep3 = EpisodeSampler(data, 4, 3, 2, seed=0).sample()
    with torch.no_grad():
        d = torch.cdist(model.embed(ep3.query_x), model.embed(ep3.support_x))
    naive = torch.stack([-d[:, ep3.support_y == c].min(1).values for c in range(4)], 1)
    assert torch.allclose(predict_max(ep3), naive, atol=1e-5)


def test_embedding_path_gives_the_same_logits_as_the_image_path():
    from fewshot_tutorial import evaluate
    from fewshot_tutorial.evaluation import embed_dataset, make_embedding_predict

    torch.manual_seed(0)
    data = FewShotDataset(torch.rand(7, 6, 1, 28, 28), [str(i) for i in range(7)])
    for head in ("contrastive", "koch"):
        model = Siamese(head=head)
        emb = embed_dataset(model, data, batch_size=10, precision="float32")
        assert emb.images.shape == (7, 6, 64, 1, 1)
        ep_x = EpisodeSampler(data, 4, 2, 3, seed=5).sample()
        ep_z = EpisodeSampler(emb, 4, 2, 3, seed=5).sample()
        assert torch.allclose(make_predict(model)(ep_x), make_embedding_predict(model)(ep_z), atol=1e-4)
        a = evaluate(make_predict(model), data, 4, 2, 3, n_episodes=5, seed=0)
        b = evaluate(make_embedding_predict(model), emb, 4, 2, 3, n_episodes=5, seed=0)
        assert a.accuracy == b.accuracy

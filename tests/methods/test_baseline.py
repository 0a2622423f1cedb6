"""Baseline and Baseline++: pre-training on class batches, test-time heads that leave the model unchanged."""

from __future__ import annotations

import math

import pytest
import torch

from fewshot_tutorial import (
    Baseline,
    BaselinePP,
    Episode,
    FewShotDataset,
    evaluate,
    fit,
    load_model,
    save_model,
)
from fewshot_tutorial.evaluation import make_predict
from fewshot_tutorial.methods.baseline import HEAD_KINDS


def _episode(n_way: int = 3, n_shot: int = 2, n_query: int = 4, size: int = 16, seed: int = 0) -> Episode:
    g = torch.Generator().manual_seed(seed)
    return Episode(torch.rand(n_way * n_shot, 1, size, size, generator=g),
                   torch.arange(n_way).repeat_interleave(n_shot), torch.rand(n_way * n_query, 1, size, size, generator=g),
                   torch.arange(n_way).repeat_interleave(n_query), n_way=n_way)


def _data(n_classes: int = 5) -> FewShotDataset:
    return FewShotDataset(torch.rand(n_classes, 4, 1, 16, 16, generator=torch.Generator().manual_seed(0)),
                          [f"c{i}" for i in range(n_classes)])


def _state(method: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in method.state_dict().items()}


@pytest.mark.parametrize("cls", [Baseline, BaselinePP])
@pytest.mark.parametrize("head_kind", HEAD_KINDS)
def test_test_time_heads_leave_the_stored_model_unchanged(cls, head_kind):
    torch.manual_seed(0)
    method = cls(hidden=8, image_size=16, n_classes=5, batch_size=8, head_kind=head_kind, finetune_steps=20)
    fit(method, _data(), n_steps=2, progress=False, precision="float32")  # non-trivial batch norm statistics
    method.zero_grad(set_to_none=True)
    before = _state(method)
    logits = make_predict(method, "cpu", precision="float32")(_episode())
    again = make_predict(method, "cpu", precision="float32")(_episode())
    assert logits.shape == (12, 3) and torch.isfinite(logits).all()
    torch.testing.assert_close(logits, again)  # deterministic: a seeded head, the same each time
    after = method.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in method.parameters())  # no gradient reached the stored model


def test_baseline_pp_has_a_cosine_classifier_with_a_learned_scale():
    method = BaselinePP(hidden=8, image_size=16, n_classes=5, batch_size=8)
    assert method.classifier.scale.item() == 10.0 and method.classifier.scale.requires_grad
    assert any(p is method.classifier.scale for g in method.param_groups() for p in g["params"])
    fit(method, _data(), n_steps=3, progress=False, lr=0.1)
    assert method.classifier.scale.item() != 10.0
    fixed = BaselinePP(hidden=8, image_size=16, n_classes=5, learn_scale=False)
    assert not any(p is fixed.classifier.scale for g in fixed.param_groups() for p in g["params"])
    assert isinstance(Baseline(hidden=8, n_classes=5).classifier, torch.nn.Linear)


def test_n_classes_comes_from_the_dataset_and_survives_a_checkpoint(tmp_path):
    data = _data(7)
    with pytest.raises(ValueError, match="build it with n_classes=7"):
        fit(Baseline(hidden=8, image_size=16, n_classes=5), data, n_steps=1, progress=False)
    method = BaselinePP.for_dataset(data, hidden=8, image_size=16, batch_size=8)
    fit(method, data, n_steps=1, progress=False)
    back, config = load_model(save_model(tmp_path / "b.pt", method))
    assert type(back) is BaselinePP and config.n_classes == 7 and back.classifier.weight.shape == (7, 8)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="head_kind must be one of"):
        Baseline(head_kind="svm")
    with pytest.raises(ValueError, match="finetune_momentum must be in"):
        Baseline(finetune_momentum=1.0)
    with pytest.raises(ValueError, match="n_classes must be > 0"):
        Baseline(n_classes=0)
    with pytest.raises(ValueError, match="scale must be > 0"):
        BaselinePP(scale=0.0)


def test_short_pretraining_lowers_the_loss_and_transfers(background, evaluation):
    """30 class-batch steps on background classes; 5-way 1-shot on unseen alphabets well above chance.

    Every 10th background class (97 classes, every alphabet): with all 964, 30 batches of
    64 show each class about twice and the loss barely moves in the test's budget.
    """
    torch.manual_seed(0)
    train = background.subset(list(range(0, background.n_classes, 10)))
    method = Baseline.for_dataset(train, lr=3e-3)
    hist = fit(method, train, n_steps=30, progress=False)
    first, last = sum(hist.losses[:5]) / 5, sum(hist.losses[-5:]) / 5
    assert last < first - 0.5 and last < math.log(train.n_classes), (first, last)
    test = evaluation.subset(list(range(0, evaluation.n_classes, 5)))  # every 5th class: faster to embed
    for head_kind in ("finetune", "nearest_mean"):
        method.config.head_kind = head_kind
        res = evaluate(method, test, 5, 1, n_query=5, n_episodes=20, seed=0)
        assert res.accuracy > 0.4, (head_kind, res)  # chance: 0.2

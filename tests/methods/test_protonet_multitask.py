"""The multi-task ProtoNet: its loss is the weighted sum of ProtoNet's and a classifier's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fewshot_tutorial import FewShotDataset, ProtoNet, ProtoNetMultiTask, fit

SMALL = {"hidden": 8, "image_size": 16, "train_way": 3, "train_shot": 1, "train_query": 2, "batch_size": 8,
         "n_classes": 6}


def tiny_data() -> FewShotDataset:
    g = torch.Generator().manual_seed(0)
    return FewShotDataset(torch.rand(6, 5, 1, 16, 16, generator=g), [f"c{i}" for i in range(6)])


def one_batch(model):
    return next(iter(model.batches(tiny_data(), seed=0)))


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_fixed_weighting_is_lam_protonet_plus_one_minus_lam_cross_entropy(lam):
    torch.manual_seed(0)
    model = ProtoNetMultiTask(weighting="fixed", lam=lam, **SMALL)
    episode, (x, y) = one_batch(model)
    proto = ProtoNet(**{k: v for k, v in SMALL.items() if k not in ("batch_size", "n_classes")})
    proto.backbone.load_state_dict(model.backbone.state_dict())
    episodic = F.cross_entropy(proto.predict(episode), episode.query_y)
    classification = F.cross_entropy(model.classifier(model.backbone(x)), y)
    total, stats = model.loss((episode, (x, y)))
    torch.testing.assert_close(total, lam * episodic + (1 - lam) * classification)
    assert stats["weight_episodic"] == lam and stats["weight_class"] == pytest.approx(1 - lam)


def test_uncertainty_weights_start_at_one_half_and_are_trained_with_the_network():
    torch.manual_seed(0)
    model = ProtoNetMultiTask(weighting="uncertainty", lr=0.05, **SMALL)
    episode, (x, y) = one_batch(model)
    total, stats = model.loss((episode, (x, y)))
    assert total.item() == pytest.approx((stats["loss_episodic"] + stats["loss_class"]) / 2, rel=1e-5)
    before = model.weighting.log_var.detach().clone()
    history = fit(model, tiny_data(), n_steps=5, device="cpu", progress=False)
    assert not torch.equal(before, model.weighting.log_var.detach())  # the optimiser updates s_i
    assert len(history.metrics["weight_class"]) == 5


def test_predict_is_protonet_with_the_shared_backbone():
    torch.manual_seed(0)
    model = ProtoNetMultiTask(**SMALL).eval()
    episode, _ = one_batch(model)
    proto = ProtoNet(**{k: v for k, v in SMALL.items() if k not in ("batch_size", "n_classes")}).eval()
    proto.backbone.load_state_dict(model.backbone.state_dict())
    torch.testing.assert_close(model.predict(episode), proto.predict(episode))


def test_the_classifier_must_have_one_output_per_training_class():
    with pytest.raises(ValueError, match="n_classes=6"):
        ProtoNetMultiTask(**{**SMALL, "n_classes": 9}).batches(tiny_data(), seed=0)
    with pytest.raises(ValueError, match="lam must be in"):
        ProtoNetMultiTask(lam=1.5)


def test_lam_one_is_protonet_alone_and_leaves_the_class_batch_out():
    torch.manual_seed(0)
    model = ProtoNetMultiTask(weighting="fixed", lam=1.0, **SMALL)
    episode, (x, y) = one_batch(model)
    stats_before = model.backbone.state_dict()
    before = {k: v.clone() for k, v in stats_before.items() if "running" in k}
    total, _ = model.loss((episode, (x, y)))
    total.backward()
    assert model.classifier.weight.grad is None  # the classifier was not used
    proto = ProtoNet(**{k: v for k, v in SMALL.items() if k not in ("batch_size", "n_classes")})
    torch.manual_seed(0)
    proto.backbone.load_state_dict(model.backbone.state_dict())
    # one forward pass each: the running statistics moved by the episode alone
    model2 = ProtoNetMultiTask(weighting="fixed", lam=1.0, **SMALL)
    model2.backbone.load_state_dict({**model.backbone.state_dict(), **before})
    proto.backbone.load_state_dict({**model.backbone.state_dict(), **before})
    model2.loss((episode, (x, y)))
    F.cross_entropy(proto.predict(episode), episode.query_y)
    for k in before:
        torch.testing.assert_close(model2.backbone.state_dict()[k], proto.backbone.state_dict()[k])


def test_the_learned_log_variances_have_their_own_rate():
    model = ProtoNetMultiTask(weighting="uncertainty", weight_lr=0.2, **SMALL)
    groups = model.optimizer(1e-3).param_groups
    assert len(groups) == 2 and groups[1]["lr"] == 0.2 and groups[0]["lr"] == 1e-3
    assert groups[1]["params"][0] is model.weighting.log_var
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == len([p for p in model.parameters() if p.requires_grad])
    assert len(ProtoNetMultiTask(weighting="fixed", **SMALL).optimizer(1e-3).param_groups) == 1

"""Bad input to the API gets a specific error naming the argument (issues 13 and 14)."""

from __future__ import annotations

import pytest
import torch

from fewshot_tutorial import EvalResult, ProtoNet, confidence_interval
from fewshot_tutorial.aggregation import class_mean_scores
from fewshot_tutorial.attention import attention, label_probabilities
from fewshot_tutorial.inner_loop import adapt, params_of
from fewshot_tutorial.losses import contrastive_loss
from fewshot_tutorial.methods.protonet import prototypes
from fewshot_tutorial.methods import Siamese


def test_a_support_set_with_a_missing_class_is_refused_not_nan():
    scores = torch.randn(4, 4)
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] have no support item"):
        class_mean_scores(scores, torch.tensor([0, 0, 1, 1]), 3)  # was NaN Siamese logits


def test_label_probabilities_refuse_labels_outside_the_episode():
    attn = torch.softmax(torch.randn(2, 5), -1)
    with pytest.raises(ValueError, match="must lie in 0..4"):
        label_probabilities(attn, torch.tensor([0, 1, 2, 3, 7]), 5)  # rows summed to 0.8


@pytest.mark.parametrize("same", [-1.0, 2.0, 0.5])
def test_contrastive_loss_refuses_labels_other_than_0_and_1(same):
    z = torch.randn(3, 4)
    with pytest.raises(ValueError, match="only 0 and 1"):
        contrastive_loss(z, z + 1, torch.tensor([1.0, 0.0, same]))


def test_half_precision_inputs_do_not_overflow():
    z1 = torch.full((2, 64), 300.0, dtype=torch.float16)  # ||z1 - z2||^2 = 64 * 600^2 overflows float16
    z2 = -z1
    loss = contrastive_loss(z1, z2, torch.tensor([1.0, 1.0]))
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    a = attention(z1.bfloat16(), z2.bfloat16(), "euclidean", temperature=1.0)
    assert torch.isfinite(a).all() and a.dtype == torch.float32


def test_float_labels_and_empty_supports_are_refused():
    with pytest.raises(ValueError, match="integer class labels"):
        prototypes(torch.randn(3, 2), torch.tensor([0.0, 1.0, 2.0]), 3)
    with pytest.raises(ValueError, match="empty"):
        prototypes(torch.randn(0, 2), torch.zeros(0, dtype=torch.long), 3)


@pytest.mark.parametrize("inner_lr", [float("nan"), float("inf"), 0.0, -0.1])
def test_adapt_refuses_a_bad_inner_rate(inner_lr):
    net = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="inner_lr must be positive and finite"):
        adapt(net, params_of(net), torch.randn(4, 2), torch.tensor([0, 1, 0, 1]), inner_lr=inner_lr, n_steps=1)


def test_configs_check_their_fields():
    with pytest.raises(TypeError, match="train_way must be an int"):
        ProtoNet(train_way=True)
    with pytest.raises(TypeError, match="lr must be a finite number"):
        ProtoNet(lr=float("nan"))
    with pytest.raises(ValueError, match="image_size must be >= 16"):
        ProtoNet(image_size=8)
    with pytest.raises(ValueError, match="margin must be positive"):
        Siamese(margin=0.0)
    with pytest.raises(TypeError, match="ProtoNet needs a ProtoNetConfig"):
        ProtoNet(Siamese.Config())


def test_one_episode_has_no_interval_and_says_so():
    r = confidence_interval([0.6])
    assert isinstance(r, EvalResult) and "no interval" in str(r) and "nan" not in str(r)
    with pytest.raises(ValueError, match="no accuracies"):
        confidence_interval([])

"""Meta-SGD (Li et al. 2017): MAML that also learns a rate for every weight.

The inner step is ``theta' = theta - alpha ⊙ grad L_S(theta)``, {eq}`eq-metasgd-step`,
where ``alpha`` has one entry per entry of ``theta`` (a direction *and* a size of the
step) and is meta-learned with ``theta`` by the outer optimiser. The update is a plain
:data:`~fewshot_tutorial.inner_loop.UpdateRule` (:func:`meta_sgd`), so the inner loop
is MAML's own :func:`~fewshot_tutorial.inner_loop.adapt`. For one inner step the
meta-gradient of ``alpha`` has a closed form, {eq}`eq-metasgd-grad-alpha`
(:func:`alpha_meta_gradient`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn
from torch.func import functional_call, grad

from ..inner_loop import LossFn, Params, UpdateRule
from ..losses import cross_entropy
from .maml import MAML, MAMLConfig


def meta_sgd(alphas: Mapping[str, torch.Tensor]) -> UpdateRule:
    """The update rule ``theta' = theta - alpha ⊙ g``, one learned rate per weight.

    Implements {eq}`eq-metasgd-step` (the same ``alpha`` at every step).

    Args:
        alphas: ``{name: alpha}``, each ``alpha`` shaped like the parameter ``name``.

    Returns:
        an update rule ``(params, grads, step) -> params`` for
        :func:`~fewshot_tutorial.inner_loop.adapt`.
    """
    return lambda params, grads, step: {
        k: p - alphas[k] * grads[k] for k, p in params.items()
    }


def alpha_meta_gradient(
    support_grads: Mapping[str, torch.Tensor], query_grads: Mapping[str, torch.Tensor]
) -> Params:
    """``d L_Q(theta') / d alpha = -grad L_S(theta) ⊙ grad L_Q(theta')`` (one step).

    Implements {eq}`eq-metasgd-grad-alpha`: ``theta'`` depends on ``alpha`` only through
    ``-alpha ⊙ g_S``, so the chain rule is element-wise.

    Args:
        support_grads: ``grad L_S(theta)``, ``{name: [*shape]}``.
        query_grads: ``grad L_Q(theta')`` at the adapted parameters, same keys, shapes.
    """
    return {k: -g * query_grads[k] for k, g in support_grads.items()}


def one_step_alpha_gradient(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    alphas: Mapping[str, torch.Tensor],
    support: tuple[torch.Tensor, torch.Tensor],
    query: tuple[torch.Tensor, torch.Tensor],
    loss_fn: LossFn = cross_entropy,
) -> Params:
    """{eq}`eq-metasgd-grad-alpha` from the model: two gradients, then their product.

    Args:
        support, query: ``(x [S, ...], y [S])`` and ``(x [Q, ...], y [Q])``.
    """

    def loss_at(
        p: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        return loss_fn(functional_call(model, dict(p), (x,)), y)

    g_s = grad(loss_at)(dict(params), *support)
    adapted = meta_sgd(alphas)(params, g_s, 0)
    return alpha_meta_gradient(g_s, grad(loss_at)(adapted, *query))


def alpha_key(name: str) -> str:
    """A parameter name as an ``nn.ParameterDict`` key (no dots): ``.`` -> ``__``."""
    return name.replace(".", "__")


@dataclasses.dataclass
class MetaSGDConfig(MAMLConfig):
    """Meta-SGD: ``inner_lr`` is the initial value of every entry of ``alpha``.

    Li et al. adapt with one step in training and at test time; ``test_steps`` (default
    1 here) repeats the learned step, with the same ``alpha``, that many times.
    ``test_inner_lr`` is not used (the learned ``alpha`` is).
    """

    inner_lr: float = 0.4
    test_steps: int = 1

    help: ClassVar[dict[str, str]] = {
        **MAMLConfig.help,
        "inner_lr": "initial value of every learned rate alpha",
    }


class MetaSGD(MAML):
    """Conv4 + a linear head, one learned inner rate a weight, meta-trained as MAML."""

    name = "metasgd"
    Config = MetaSGDConfig

    def __init__(self, config: MetaSGDConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.alpha = nn.ParameterDict(
            {
                alpha_key(k): nn.Parameter(torch.full_like(p, self.config.inner_lr))
                for k, p in self.net.named_parameters()
            }
        )

    def alphas(self) -> dict[str, torch.Tensor]:
        """``{parameter name: alpha}``, keyed like ``self.net``'s parameters."""
        return {k: self.alpha[alpha_key(k)] for k, _ in self.net.named_parameters()}

    def inner_rule(self, test: bool = False) -> dict[str, Any]:
        """:func:`meta_sgd` with the learned rates (detached at test time)."""
        c = self.config
        alphas = (
            {k: a.detach() for k, a in self.alphas().items()} if test else self.alphas()
        )
        return {
            "update": meta_sgd(alphas),
            "n_steps": c.test_steps if test else c.inner_steps,
        }

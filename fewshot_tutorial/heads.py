"""Classifiers over embeddings: the cosine head of Baseline++, and heads fitted on a support set.

A pre-trained embedding ("transfer learning") classifies a new task with a classifier
fitted on that task's support set, on frozen embeddings:

* :func:`finetune_head`: a new linear or cosine head trained by SGD with momentum on
  mini-batches of the support set (Chen et al. 2019);
* :func:`logistic_regression`: multinomial logistic regression on L2-normalised
  embeddings, solved to convergence (Tian et al. 2020);
* the nearest class mean is :func:`~fewshot_tutorial.aggregation.class_means` plus a distance.

Each runs with gradients on (``torch.enable_grad``) even when called under ``no_grad``,
touches no parameter of the model, and draws its randomness from its own seeded
generator, so the same support set always gives the same head.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .aggregation import check_labels
from .device import no_autocast, upcast
from .distances import cosine_similarity

HEAD_KINDS = ("linear", "cosine")


def cosine_logits(
    z: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor | float
) -> torch.Tensor:
    """``rho * cos(z, w_k)``: ``z [B, D], weight [n_classes, D] -> [B, n_classes]``.

    Implements {eq}`eq-cosine-head`. Logits are bounded by ``|rho|``, so the scale ``rho``
    sets how peaked the softmax can get (at ``rho = 1`` no class can reach even 1%
    probability among 964).
    """
    return scale * cosine_similarity(z, weight)


def cosine_softmax_bound(scale: float, n_classes: int) -> float:
    """The largest probability a cosine head ``rho * cos(z, w_k)`` can give one class of ``n_classes``.

    Every logit lies in ``[-rho, rho]``, so ``p_k <= e^rho / (e^rho + (n_classes - 1) e^-rho)``,
    {eq}`eq-cosine-bound`, reached when ``z`` points along ``w_k`` and every other
    weight vector points the opposite way. At ``rho = 1`` and 964 classes it is 0.0076:
    a cosine head needs its scale to become confident.
    """
    if not scale > 0 or n_classes < 2:
        raise ValueError(f"need scale > 0 and n_classes >= 2, got scale={scale}, n_classes={n_classes}")
    return 1.0 / (1.0 + (n_classes - 1) * math.exp(-2.0 * scale))


class CosineClassifier(nn.Module):
    """Baseline++'s head: one weight vector per class, logits ``rho * cos(z, w_k)``.

    Args:
        in_features: ``D``; n_classes: outputs.
        scale: initial ``rho`` (10 by default, our choice: large enough that a softmax over
            hundreds of classes can become confident).
        learn_scale: train ``rho`` with the weights (else it stays fixed, still stored).

    Shapes:
        ``z: [B, D] -> [B, n_classes]``
    """

    def __init__(self, in_features: int, n_classes: int, scale: float = 10.0, learn_scale: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # as nn.Linear
        self.scale = nn.Parameter(torch.tensor(float(scale)), requires_grad=learn_scale)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return cosine_logits(z, self.weight, self.scale)


def head_logits(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                scale: torch.Tensor | float | None = None) -> torch.Tensor:
    """Logits of a fitted head: ``z W^T + b`` (``scale`` None) or ``rho * cos(z, w_k)``: ``[B, D] -> [B, n_way]``."""
    if scale is None:
        return F.linear(upcast(z), weight, bias)
    return cosine_logits(z, weight, scale)


def minibatch_indices(n: int, batch_size: int, steps: int, generator: torch.Generator) -> list[torch.Tensor]:
    """``steps`` index batches: successive random permutations of ``0..n-1`` cut into
    chunks of ``batch_size`` (an epoch's last chunk may be smaller)."""
    out: list[torch.Tensor] = []
    while len(out) < steps:
        out.extend(torch.randperm(n, generator=generator).split(batch_size))
    return out[:steps]


def finetune_head(
    support_z: torch.Tensor, support_y: torch.Tensor, n_way: int, kind: str = "linear",
    scale: float | None = None, steps: int = 100, lr: float = 0.01, momentum: float = 0.9,
    weight_decay: float = 1e-3, batch_size: int = 4, seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A new head fitted on frozen support embeddings by SGD with momentum (Chen et al. 2019).

    Each step is ``torch.optim.SGD``'s: ``v <- mu v + (g + lambda w)``, ``w <- w - lr v``,
    on the cross-entropy of a mini-batch of ``batch_size`` support embeddings. The
    defaults (100 steps, rate 0.01, momentum 0.9, weight decay 1e-3, batches of 4) follow
    Chen et al.'s Baseline, whose code runs 100 epochs over the support set (not 100
    steps) and adds a dampening of 0.9.

    Args:
        support_z: ``[S, D]`` embeddings (detached: the backbone is frozen).
        support_y: ``[S]`` labels ``0..n_way-1``.
        kind: ``"linear"`` (weights and bias) or ``"cosine"`` (weights only, logits
            ``scale * cos``; ``scale`` required).
        seed: seeds the initial weights and the batch order.

    Returns:
        ``(weight [n_way, D], bias [n_way] or None)``, detached.
    """
    if kind not in HEAD_KINDS:
        raise ValueError(f"kind must be one of {HEAD_KINDS}, got {kind!r}")
    if kind == "cosine" and scale is None:
        raise ValueError("a cosine head needs its scale rho; pass scale=")
    check_labels(support_y, n_way)
    z, dev = upcast(support_z.detach()), support_z.device
    g = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(z.shape[1])  # nn.Linear's initial range
    weight = ((torch.rand(n_way, z.shape[1], generator=g) * 2 - 1) * bound).to(dev, z.dtype).requires_grad_()
    params = [weight] if kind == "cosine" else [weight, torch.zeros(n_way, device=dev, dtype=z.dtype,
                                                                      requires_grad=True)]
    bias = params[1] if kind == "linear" else None
    velocity = [torch.zeros_like(p) for p in params]
    with torch.enable_grad(), no_autocast(z):
        for idx in minibatch_indices(len(z), batch_size, steps, g):
            idx = idx.to(dev)
            loss = F.cross_entropy(head_logits(z[idx], weight, bias, scale), support_y[idx])
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, grad, v in zip(params, grads, velocity):
                    v.mul_(momentum).add_(grad + weight_decay * p)
                    p.sub_(lr * v)
    return weight.detach(), None if bias is None else bias.detach()


def logistic_regression(support_z: torch.Tensor, support_y: torch.Tensor, n_way: int, c: float = 1.0,
                        steps: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on L2-normalised embeddings (Tian et al. 2020).

    Minimises ``mean_i CE(W x_i + b, y_i) + ||W||^2 / (2 C S)``, scikit-learn's
    objective ``C sum_i CE_i + ||W||^2 / 2`` divided by ``C S`` (intercept not
    penalised), with ``x_i = z_i / ||z_i||``. Unit-norm inputs bound the curvature:
    the softmax's Hessian is at most 1/2 and ``||[x_i, 1]||^2 = 2``, so ``L = 1 + lambda``
    and Nesterov's accelerated gradient with step ``1 / L`` and momentum
    ``(1 - sqrt(lambda / L)) / (1 + sqrt(lambda / L))`` converges fast and
    deterministically from ``W = 0, b = 0`` (no line search, any device).

    Args:
        support_z: ``[S, D]``; support_y: ``[S]`` labels ``0..n_way-1``.
        c: inverse regularisation strength (scikit-learn's ``C``).
        steps: gradient steps.

    Returns:
        ``(weight [n_way, D], bias [n_way])`` for *normalised* inputs, detached.
    """
    if not c > 0:
        raise ValueError(f"c must be > 0, got {c}")
    check_labels(support_y, n_way)
    x = F.normalize(upcast(support_z.detach()), dim=-1)
    lam = 1.0 / (c * len(x))
    step, q = 1.0 / (1.0 + lam), lam / (1.0 + lam)
    beta = (1 - math.sqrt(q)) / (1 + math.sqrt(q))
    w, b = (torch.zeros(n_way, x.shape[1], device=x.device, dtype=x.dtype),
            torch.zeros(n_way, device=x.device, dtype=x.dtype))
    w0, b0 = w, b
    onehot = F.one_hot(support_y, n_way).to(x.dtype)
    with torch.no_grad(), no_autocast(x):
        for _ in range(steps):
            lw, lb = w + beta * (w - w0), b + beta * (b - b0)  # Nesterov's look-ahead point
            gw, gb = logistic_regression_gradient(x, onehot, lw, lb, lam)
            (w0, b0), (w, b) = (w, b), (lw - step * gw, lb - step * gb)
    return w, b


def logistic_regression_gradient(x: torch.Tensor, onehot: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                                 lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of ``mean_i CE(W x_i + b, y_i) + lam ||W||^2 / 2`` in closed form.

    With ``P = softmax(X W^T + b)`` and ``Y`` the one-hot labels, it is
    ``((P - Y)^T X / S + lam W, sum_i (P - Y)_i / S)``; ``x [S, D], onehot [S, n_way],
    w [n_way, D], b [n_way] -> ([n_way, D], [n_way])``. (No autograd: a few small
    matrix products per step, which makes the 300 steps of :func:`logistic_regression`
    several times cheaper on a CPU.)
    """
    residual = ((x @ w.T + b).softmax(-1) - onehot) / len(x)  # [S, n_way]
    return residual.T @ x + lam * w, residual.sum(0)

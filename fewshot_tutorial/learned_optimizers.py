"""Learning to learn by gradient descent by gradient descent (Andrychowicz et al. 2016).

An LSTM reads the gradient of one coordinate and writes that coordinate's update,
``theta_{t+1} = theta_t + g_t``, {eq}`eq-l2l-update`. It is *coordinate-wise*: one
small LSTM (two layers of 20 units) shared by every coordinate, which are its batch
dimension, so it applies to any number of parameters. Its input is the gradient
preprocessed into a magnitude and a sign, {eq}`eq-grad-preprocess`, because raw
gradients span many orders of magnitude.

It is trained on a family of problems, here the random quadratics
``f(theta) = ||W theta - y||^2`` of the paper, by unrolling it for 100 steps and
minimising the sum of the losses along the way, with truncated back-propagation
through time (20 steps at a time). The gradients the LSTM reads are constants (the
paper drops the second derivatives). Baselines are ``torch.optim`` optimisers on the
same problems, each with its learning rate tuned on a small grid.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Union

import torch
from torch import nn
import torch.nn.functional as F

from .training import History, provenance

LSTMState = list[tuple[torch.Tensor, torch.Tensor]]
#: ``params -> torch.optim.Optimizer``, e.g. ``lambda p: torch.optim.Adam(p, lr=0.1)``
OptimizerFactory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]


def preprocess_gradient(x: torch.Tensor, p: float = 10.0) -> torch.Tensor:
    """``x -> (log|x| / p, sign x)`` if ``|x| >= e^{-p}``, else ``(-1, e^p x)``.

    Implements {eq}`eq-grad-preprocess` (Andrychowicz et al. 2016, appendix A). The log
    sees ``|x|`` clamped to ``e^{-p}`` so neither branch of ``torch.where`` makes a NaN
    or an infinite gradient (at 0, at 1e30, at tiny values).

    Args:
        x: any shape ``[...]``.
        p: the cut-off exponent (10 in the paper).

    Returns:
        ``[..., 2]``: a magnitude in about ``[-1, 1]`` and a sign (or a scaled value).
    """
    big = x.abs() >= math.exp(-p)
    magnitude = torch.where(
        big, torch.log(x.abs().clamp_min(math.exp(-p))) / p, -torch.ones_like(x)
    )
    sign = torch.where(big, torch.sign(x), math.exp(p) * x)
    return torch.stack([magnitude, sign], dim=-1)


def quadratic_problems(
    n_problems: int,
    dim: int = 10,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random quadratics ``f(theta) = ||W theta - y||^2`` and a starting point for each.

    ``W`` and ``y`` are standard normal; the start ``theta_0`` is normal with standard
    deviation 0.01 (near the origin).

    Returns:
        ``(W [n_problems, dim, dim], y [n_problems, dim], theta_0 [n_problems, dim])``.
    """
    if n_problems < 1 or dim < 1:
        raise ValueError(
            f"need n_problems >= 1 and dim >= 1, got {n_problems} and {dim}"
        )
    w = torch.randn(n_problems, dim, dim, generator=generator, dtype=dtype)
    y = torch.randn(n_problems, dim, generator=generator, dtype=dtype)
    theta = 0.01 * torch.randn(n_problems, dim, generator=generator, dtype=dtype)
    return w.to(device), y.to(device), theta.to(device)


def quadratic_loss(
    theta: torch.Tensor, w: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """``f(theta) = ||W theta - y||^2`` of each problem, ``[n]``.

    Args:
        theta: ``[n, d]``; w: ``[n, d, d]``; y: ``[n, d]``.
    """
    return (torch.einsum("nij,nj->ni", w, theta) - y).pow(2).sum(-1)


def mlp_problems(
    n_problems: int,
    n_inputs: int = 10,
    hidden: int = 20,
    n_points: int = 256,
    label_noise: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """Small classifiers to train: a problem the LSTM optimiser never saw.

    Each problem is a one-hidden-layer MLP (``hidden`` sigmoid units, as in Andrychowicz
    et al.'s MNIST network) fitting ``n_points`` standard normal inputs labelled by a
    random linear teacher, a fraction ``label_noise`` of the labels flipped, with the
    logistic loss (a training loss: the MLP can fit some flipped labels too). The MLP's
    weights of each problem are one row of ``theta``.

    Returns:
        ``(loss_fn, theta_0)``: ``loss_fn(theta [n, d]) -> [n]`` and the start
        ``[n, d]`` (normal, standard deviation 0.1), ``d = hidden * (n_inputs + 2) + 1``.
    """
    x = torch.randn(n_problems, n_points, n_inputs, generator=generator)
    teacher = torch.randn(n_problems, n_inputs, generator=generator)
    flip = torch.rand(n_problems, n_points, generator=generator) < label_noise
    y = ((torch.einsum("npi,ni->np", x, teacher) > 0) ^ flip).float()
    sizes = (hidden * n_inputs, hidden, hidden, 1)
    theta = 0.1 * torch.randn(n_problems, sum(sizes), generator=generator)

    def loss_fn(theta: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2 = theta.split(sizes, dim=-1)
        h = torch.sigmoid(torch.einsum("nji,npi->npj", w1.view(-1, hidden, n_inputs), x)
                          + b1[:, None])
        logits = torch.einsum("npj,nj->np", h, w2) + b2
        return F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(-1)

    return loss_fn, theta


class LSTMOptimizer(nn.Module):
    """A coordinate-wise LSTM optimiser: gradient ``[N]`` in, update ``[N]`` out.

    Two stacked ``nn.LSTMCell`` of ``hidden`` units read the preprocessed gradient
    (2 numbers a coordinate) and a linear layer writes the update, times
    ``output_scale`` (0.1 in the paper's code). The ``N`` coordinates are the batch.
    """

    def __init__(
        self,
        hidden: int = 20,
        layers: int = 2,
        output_scale: float = 0.1,
        p: float = 10.0,
    ) -> None:
        super().__init__()
        self.cells = nn.ModuleList(
            [nn.LSTMCell(2 if i == 0 else hidden, hidden) for i in range(layers)]
        )
        self.out = nn.Linear(hidden, 1)
        self.output_scale, self.p = output_scale, p

    def init_state(self, n: int, like: torch.Tensor) -> LSTMState:
        """Zero ``(h, c)`` ``[n, hidden]`` a layer, on ``like``'s device and dtype."""
        return [
            (like.new_zeros(n, c.hidden_size), like.new_zeros(n, c.hidden_size))
            for c in self.cells
        ]

    def forward(
        self, grad: torch.Tensor, state: LSTMState
    ) -> tuple[torch.Tensor, LSTMState]:
        """The update ``g_t [N]`` ({eq}`eq-l2l-update`) for ``grad [N]``; new state."""
        h = preprocess_gradient(grad, self.p)
        new_state = []
        for cell, hc in zip(self.cells, state):
            hc = cell(h, hc)
            new_state.append(hc)
            h = hc[0]
        return self.output_scale * self.out(h).squeeze(-1), new_state


def detach_state(state: LSTMState) -> LSTMState:
    """The LSTM state cut from the graph: where truncated back-propagation stops."""
    return [(h.detach(), c.detach()) for h, c in state]


def unroll(
    net: LSTMOptimizer,
    w: torch.Tensor,
    y: torch.Tensor,
    theta: torch.Tensor,
    state: LSTMState,
    n_steps: int,
) -> tuple[torch.Tensor, torch.Tensor, LSTMState]:
    """``n_steps`` steps ``theta_{t+1} = theta_t + g_t``, {eq}`eq-l2l-update`.

    The gradient fed to the LSTM is a constant (no second derivatives, as in the paper);
    ``theta`` stays connected to the LSTM's weights through the updates.

    Args:
        w, y: the problems, ``[n, d, d]`` and ``[n, d]``; theta: the start ``[n, d]``.
        state: the LSTM's, from :meth:`LSTMOptimizer.init_state` (``n * d`` coordinates).

    Returns:
        ``(sum over the steps of the mean f(theta_{t+1}) [], theta [n, d], state)``.
    """
    total = theta.new_zeros(())
    for _ in range(n_steps):
        theta, state = learned_step(net, lambda t: quadratic_loss(t, w, y), theta, state)
        total = total + quadratic_loss(theta, w, y).mean()
    return total, theta, state


def learned_step(
    net: LSTMOptimizer,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    theta: torch.Tensor,
    state: LSTMState,
) -> tuple[torch.Tensor, LSTMState]:
    """One step ``theta + u_t`` of {eq}`eq-l2l-update` on problems ``loss_fn(theta [n, d]) -> [n]``.

    The gradient the LSTM reads is taken at a detached ``theta`` (a constant: no second
    derivatives); the update keeps ``theta`` connected to the LSTM's weights.
    """
    with torch.enable_grad():
        at = theta.detach().requires_grad_()
        (g,) = torch.autograd.grad(loss_fn(at).sum(), [at])
    update, state = net(g.reshape(-1), state)
    return theta + update.reshape(theta.shape), state


def train_l2l(
    net: LSTMOptimizer,
    n_steps: int = 100,
    unroll_steps: int = 20,
    n_epochs: int = 100,
    n_problems: int = 128,
    lr: float = 1e-2,
    dim: int = 10,
    seed: int = 0,
) -> History:
    """Meta-train ``net`` on fresh random quadratics with truncated BPTT and Adam.

    Every epoch draws ``n_problems`` quadratics and optimises them for ``n_steps``
    steps; every ``unroll_steps`` steps the meta-loss (the sum of the losses over the
    unroll) is back-propagated, Adam updates the LSTM, and ``theta`` and the LSTM state
    are detached (truncation).

    Returns:
        a :class:`~fewshot_tutorial.training.History` whose ``losses`` are the meta-loss
        of every epoch (summed over its truncations), with the time it took.
    """
    if n_steps % unroll_steps:
        raise ValueError(
            f"n_steps={n_steps} is not a multiple of unroll_steps={unroll_steps}"
        )
    g = torch.Generator().manual_seed(seed)
    device = next(net.parameters()).device
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    history, start = History(), time.perf_counter()
    for _ in range(n_epochs):
        w, y, theta = quadratic_problems(n_problems, dim, g, device)
        state, epoch_loss = net.init_state(theta.numel(), theta), 0.0
        for _ in range(n_steps // unroll_steps):
            meta_loss, theta, state = unroll(net, w, y, theta, state, unroll_steps)
            opt.zero_grad()
            meta_loss.backward()
            opt.step()
            theta, state = theta.detach(), detach_state(state)
            epoch_loss += meta_loss.item()
        history.losses.append(epoch_loss)
    history.seconds = time.perf_counter() - start
    history.provenance = provenance(device, None, epochs=n_epochs, problems=n_problems)
    return history


Optimizer = Union[LSTMOptimizer, OptimizerFactory]


def loss_curve(
    optimizer: Optimizer,
    w: torch.Tensor,
    y: torch.Tensor,
    theta: torch.Tensor,
    n_steps: int = 100,
) -> torch.Tensor:
    """:func:`optimise` on the quadratics ``(W, y)``: mean loss ``[n_steps + 1]``."""
    return optimise(optimizer, lambda t: quadratic_loss(t, w, y), theta, n_steps)


def optimise(
    optimizer: Optimizer,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    theta: torch.Tensor,
    n_steps: int = 100,
) -> torch.Tensor:
    """Run ``optimizer`` ``n_steps`` steps on any problems: mean loss ``[n_steps + 1]``.

    Args:
        optimizer: a trained :class:`LSTMOptimizer`, or a factory ``params -> optimiser``
            (a ``torch.optim`` optimiser minimises the *sum* of the problems' losses,
            whose gradient for each problem's ``theta`` is that problem's own gradient).
        loss_fn: ``theta [n, d] -> [n]``, the loss of each of ``n`` problems.
        theta: the starting points ``[n, d]``.
    """
    losses = [loss_fn(theta).mean().item()]
    if isinstance(optimizer, LSTMOptimizer):
        state = optimizer.init_state(theta.numel(), theta)
        with torch.no_grad():
            for _ in range(n_steps):
                theta, state = learned_step(optimizer, loss_fn, theta, state)
                losses.append(loss_fn(theta).mean().item())
        return torch.tensor(losses)
    theta = theta.clone().requires_grad_()
    opt = optimizer([theta])
    for _ in range(n_steps):
        opt.zero_grad()
        loss_fn(theta).sum().backward()
        opt.step()
        with torch.no_grad():
            losses.append(loss_fn(theta).mean().item())
    return torch.tensor(losses)


#: hand-designed baselines, ``lr -> factory`` (the paper compares SGD, RMSprop, Adam, NAG)
BASELINES: dict[str, Callable[[float], OptimizerFactory]] = {
    "sgd": lambda lr: lambda p: torch.optim.SGD(p, lr=lr),
    "momentum": lambda lr: lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9),
    "adam": lambda lr: lambda p: torch.optim.Adam(p, lr=lr),
}
DEFAULT_LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)


def tuned_baseline(
    name: str,
    w: torch.Tensor,
    y: torch.Tensor,
    theta: torch.Tensor,
    n_steps: int = 100,
    lrs: Sequence[float] = DEFAULT_LRS,
) -> tuple[float, torch.Tensor]:
    """:func:`tune` on the quadratics ``(W, y)``."""
    return tune(name, lambda t: quadratic_loss(t, w, y), theta, n_steps, lrs)


def tune(
    name: str,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    theta: torch.Tensor,
    n_steps: int = 100,
    lrs: Sequence[float] = DEFAULT_LRS,
) -> tuple[float, torch.Tensor]:
    """The rate of ``lrs`` giving baseline ``name`` the lowest final loss; its curve.

    Args:
        loss_fn, theta: as in :func:`optimise`.

    Returns:
        ``(lr, mean loss [n_steps + 1])``.

    Tune on problems other than the ones you report on (the rate is a hyper-parameter).
    A rate that diverges (a NaN or infinite loss) is skipped.
    """
    if name not in BASELINES:
        raise ValueError(
            f"unknown baseline {name!r}; choose one of {sorted(BASELINES)}"
        )
    best: tuple[float, torch.Tensor] | None = None
    for lr in lrs:
        curve = optimise(BASELINES[name](lr), loss_fn, theta, n_steps)
        if torch.isfinite(curve).all() and (best is None or curve[-1] < best[1][-1]):
            best = (lr, curve)
    if best is None:
        raise ValueError(
            f"{name} diverged at every rate of {list(lrs)}; try smaller rates"
        )
    return best

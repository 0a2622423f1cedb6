"""Second-order MAML in a fraction of the memory: recompute, don't store.

Back-propagating a query loss through ``K`` inner steps normally keeps, until the
backward pass, every step's graph (the support activations and the graph of the
gradient itself) and the query set's activations. Two exact rewrites keep almost none:

* :class:`SGDStep`: an inner step ``theta' = theta - alpha grad L_S(theta)``
  ({eq}`eq-maml-inner-step`) that saves only ``theta``. Its backward pass is the
  vector-Jacobian product ``v - alpha H_S(theta) v`` ({eq}`eq-maml-step-vjp`), computed by
  rebuilding the step's graph from ``theta`` at that moment, so one step's graph is alive
  at a time instead of ``K``.
* :class:`ConvBlock`: conv 3x3 -> batch norm (batch statistics) -> ReLU -> 2x2 max-pool,
  saving its input and output, the batch statistics, and on the pooled grid which
  element of each window won and its normalised value. Its backward pass recomputes the
  convolution chunk by chunk, so the full-resolution feature maps of the query set never
  exist all at once. Recomputing costs a convolution; the first block's (one input
  channel) is cheap, so :func:`lean_logits` uses it there, where the maps are largest.

Both give the meta-gradient of the stored graph, to float rounding
(``tests/test_recompute.py``), with one exception: where two elements of a pooling
window are within rounding of each other, the two computations of the block may pick
different winners, and the gradient entry moves with the winner (exact ties, which blank
paper makes many of, are resolved alike). ``benchmarks/bench_maml_memory.py`` measures
the memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.func import functional_call

from .backbones import TaskBatchNorm2d
from .data import Episode
from .inner_loop import LossFn, Params, inner_lrs
from .losses import cross_entropy

CHUNK = 25  # images per recomputed chunk of ConvBlock: see benchmarks/bench_maml_memory.py


def _grads(loss: Tensor, leaves: Sequence[Tensor], create_graph: bool = False) -> list[Tensor]:
    """``d loss / d leaves``, zeros for a leaf the loss does not use."""
    gs = torch.autograd.grad(loss, leaves, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(leaves, gs)]


class SGDStep(torch.autograd.Function):
    """``theta' = theta - alpha grad L_S(theta)`` whose backward rebuilds the step's graph.

    ``forward(support_loss, alpha, *theta) -> theta'`` (one tensor per parameter), where
    ``support_loss(list of tensors) -> scalar`` and ``alpha`` is a float (it gets no
    gradient). Saves ``theta`` only. The backward maps ``v = dL/dtheta'`` to
    ``v - alpha H_S(theta) v`` ({eq}`eq-maml-step-vjp`): the exact second-order term, as a
    Hessian-vector product of a graph built and freed on the spot. The result can be
    differentiated once (no third derivatives).
    """

    @staticmethod
    def forward(ctx, support_loss: Callable[[list[Tensor]], Tensor], alpha: float,
                *theta: Tensor) -> tuple[Tensor, ...]:
        """``theta'``, one tensor per parameter; saves ``theta``."""
        with torch.enable_grad():
            leaves = [p.detach().requires_grad_() for p in theta]
            g = _grads(support_loss(leaves), leaves)
        ctx.support_loss, ctx.alpha = support_loss, alpha
        ctx.save_for_backward(*theta)
        return tuple(p - alpha * gi for p, gi in zip(theta, g))

    @staticmethod
    @once_differentiable
    def backward(ctx, *v: Tensor) -> tuple[Tensor | None, ...]:
        """``v - alpha H_S(theta) v`` for every parameter ({eq}`eq-maml-step-vjp`)."""
        with torch.enable_grad():
            leaves = [p.detach().requires_grad_() for p in ctx.saved_tensors]
            g = _grads(ctx.support_loss(leaves), leaves, create_graph=True)
            used = [i for i, gi in enumerate(g) if gi.requires_grad]  # a leaf L_S uses
            hv = [None] * len(v)
            if used:
                gs, vs = [g[i] for i in used], [v[i] for i in used]
                hv = torch.autograd.grad(gs, leaves, vs, allow_unused=True)
        vjp = [vi if h is None else vi - ctx.alpha * h for vi, h in zip(v, hv)]
        return (None, None, *vjp)  # eq-maml-step-vjp (none for support_loss, alpha)


def adapt_recomputed(model: nn.Module, params: Mapping[str, Tensor], x: Tensor, y: Tensor, *,
                     n_steps: int, inner_lr: float | Sequence[float], loss_fn: LossFn = cross_entropy,
                     forward: Callable[[Params, Tensor], Tensor] | None = None) -> Params:
    """:func:`~fewshot_tutorial.inner_loop.adapt` (plain SGD, second order) through :class:`SGDStep`.

    Same ``theta'`` and the same gradient back to ``params``; the backward pass holds one
    inner step's graph at a time. ``x: [n_way * n_shot, ...]``, ``y: [n_way * n_shot]``.
    ``forward(params, x) -> predictions``: the model at ``params`` (default:
    ``functional_call(model, params, (x,))``).
    """
    names = list(params)
    forward = forward or (lambda p, inputs: functional_call(model, p, (inputs,)))

    def support_loss(theta: list[Tensor]) -> Tensor:
        return loss_fn(forward(dict(zip(names, theta)), x), y)

    theta = tuple(params.values())
    for alpha in inner_lrs(inner_lr, n_steps):
        theta = SGDStep.apply(support_loss, alpha, *theta)
    return dict(zip(names, theta))


def _windows(t: Tensor) -> list[Tensor]:
    """The four elements of every 2x2 pooling window, as strided views ``[B, C, H // 2, W // 2]``,
    in max-pooling's scan order: top left, top right, bottom left, bottom right."""
    h, w = t.shape[2] // 2 * 2, t.shape[3] // 2 * 2
    return [t[:, :, i:h:2, j:w:2] for i in (0, 1) for j in (0, 1)]


def max_pool_2x2(y: Tensor) -> tuple[Tensor, Tensor]:
    """2x2 max-pooling (stride 2), and which element of each window is its maximum.

    Returns ``(pooled [B, C, H // 2, W // 2], which)``: ``which`` (uint8, same shape) is the
    index in :func:`_windows`' order of the first maximum in scan order, the element that
    ``F.max_pool2d`` sends the gradient to, ties included (blank paper makes many). Columns
    first, then rows, each keeping the first on a tie. Element-wise maxima over strided
    views: on the 2-core CPU this book is tested on, faster than ``F.max_pool2d``.
    """
    h, w = y.shape[2] // 2 * 2, y.shape[3] // 2 * 2
    left, right = y[:, :, :h, 0:w:2], y[:, :, :h, 1:w:2]
    right_wins = right > left
    rows = torch.maximum(left, right)
    bottom_wins = rows[:, :, 1::2] > rows[:, :, 0::2]
    pooled = torch.maximum(rows[:, :, 0::2], rows[:, :, 1::2])
    col = torch.where(bottom_wins, right_wins[:, :, 1::2], right_wins[:, :, 0::2])
    return pooled, bottom_wins.to(torch.uint8) * 2 + col.to(torch.uint8)


def _at(t: Tensor, which: Tensor) -> Tensor:
    """``t``'s element at ``which`` in every 2x2 window: ``[B, C, H, W] -> [B, C, H // 2, W // 2]``."""
    v = _windows(t)
    return torch.where(which == 0, v[0], torch.where(which == 1, v[1], torch.where(which == 2, v[2], v[3])))


def _conv(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    return F.conv2d(x, w, b, padding=1)


def _batch_statistics(x: Tensor, w: Tensor, b: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """Per-channel mean and (biased) variance of ``conv(x)`` over ``[B, H, W]``, a chunk at a
    time: each chunk's mean and sum of squared deviations, pooled exactly (Chan et al.)."""
    counts, means, m2s = [], [], []
    for xc in x.split(chunk):
        z = _conv(xc, w, b)
        n = z.shape[0] * z.shape[2] * z.shape[3]
        counts.append(n)
        means.append(z.sum((0, 2, 3)) / n)
        m2s.append((z - means[-1].view(1, -1, 1, 1)).square().sum((0, 2, 3)))  # vector_norm: less precise
    total = sum(counts)
    mean = sum(n * m for n, m in zip(counts, means)) / total
    m2 = sum(m2 + n * (m - mean).square() for n, m, m2 in zip(counts, means, m2s))
    return mean, m2 / total


class ConvBlock(torch.autograd.Function):
    """Conv 3x3 (padding 1) -> batch norm with batch statistics -> ReLU -> 2x2 max-pool.

    ``forward(x, w, b, gamma, shift, eps, chunk) -> [B, C, H // 2, W // 2]`` (``shift``: batch
    norm's bias), equal to
    :func:`~fewshot_tutorial.backbones.conv_block` with a batch norm that uses the batch's
    statistics (:class:`~fewshot_tutorial.backbones.TaskBatchNorm2d`), with the same
    gradients (up to a swapped winner between two elements within rounding of each other,
    see the module's note). It works ``chunk`` images at a time and keeps, besides its
    input, output and the batch statistics, only what lives on the pooled grid: which
    element of each window won (one byte) and its normalised value. The backward pass
    recomputes the convolution a chunk at a time, so at most ``chunk`` images'
    full-resolution maps are ever alive. Batch norm's two sums over the batch
    ({eq}`eq-bn-backward`) are taken on the pooled grid, where the gradient is: at most one
    element per window receives it. ReLU is applied to the pooled map: it is
    non-decreasing, so where the window's maximum is positive it keeps the same winner,
    and where it is not, both orders give a zero gradient.
    """

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor, gamma: Tensor, shift: Tensor,
                eps: float, chunk: int) -> Tensor:
        """The block's output ``[B, C, H // 2, W // 2]``, a chunk at a time."""
        mean, var = _batch_statistics(x, w, b, chunk)
        invstd = torch.rsqrt(var + eps)
        out, which, x_hat = [], [], []
        for xc in x.split(chunk):
            z = _conv(xc, w, b)
            pooled, k = max_pool_2x2(F.batch_norm(z, mean, var, gamma, shift, False, 0.0, eps))
            out.append(pooled.relu_())
            which.append(k)
            x_hat.append((_at(z, k) - mean.view(1, -1, 1, 1)) * invstd.view(1, -1, 1, 1))
        out = torch.cat(out)
        ctx.chunk = chunk
        ctx.save_for_backward(x, w, b, gamma, mean, invstd, out, torch.cat(which), torch.cat(x_hat))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        """Gradients for ``x`` (if needed), ``w``, ``b``, ``gamma`` and ``shift``."""
        x, w, b, gamma, mean, invstd, out, which, x_hat = ctx.saved_tensors
        col = (1, -1, 1, 1)
        g = grad_out * (out > 0)  # the gradient at each window's maximum, after ReLU
        sum_gy, sum_gy_xhat = g.sum((0, 2, 3)), (g * x_hat).sum((0, 2, 3))
        n = x.shape[0] * x.shape[2] * x.shape[3]
        a = (gamma * invstd).view(col)
        slope, shift = -a * invstd.view(col) * (sum_gy_xhat / n).view(col), -a * (sum_gy / n).view(col)
        gx, gw, gb = [], torch.zeros_like(w), torch.zeros_like(b)
        for xc, gc, kc in zip(x.split(ctx.chunk), g.split(ctx.chunk), which.split(ctx.chunk)):
            gz = _conv(xc, w, b).sub_(mean.view(col)).mul_(slope).add_(shift)
            for k, view in enumerate(_windows(gz)):  # + a * the pooled gradient, unpooled
                view.addcmul_(gc * (kc == k), a)
            gxc, gwc, gbc = torch.ops.aten.convolution_backward(
                gz, xc, w, [w.shape[0]], [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                [ctx.needs_input_grad[0], True, True])
            gw += gwc
            gb += gbc
            gx.append(gxc)
        return (torch.cat(gx) if ctx.needs_input_grad[0] else None, gw, gb, sum_gy_xhat, sum_gy, None, None)


def lean_logits(net: nn.Module, params: Mapping[str, Tensor], x: Tensor, *, chunk: int = CHUNK,
                lean_blocks: int = 1) -> Tensor:
    """A :class:`~fewshot_tutorial.backbones.MAMLNet`'s logits at ``params``, the first
    ``lean_blocks`` blocks through :class:`ConvBlock`, the others written out.

    ``x: [B, C, H, W] -> [B, n_way]``; the same values and gradients as
    ``functional_call(net, params, (x,))``, without its cost of swapping the module's
    parameters on every call (measured: about a third of a 5-image forward pass).
    """
    check_conv4_blocks(net)
    h = x
    for i, block in enumerate(net.backbone.encoder):
        w, b, gamma, shift = (params[f"backbone.encoder.{i}.{k}"] for k in ("0.weight", "0.bias", "1.weight", "1.bias"))
        if i < lean_blocks:
            h = ConvBlock.apply(h, w, b, gamma, shift, block[1].eps, chunk)
        else:
            h = F.batch_norm(F.conv2d(h, w, b, padding=1), None, None, gamma, shift, True, 0.0, block[1].eps)
            h = F.max_pool2d(F.relu(h), 2)
    return F.linear(h.flatten(1), params["head.weight"], params["head.bias"])


def check_conv4_blocks(net: nn.Module) -> None:
    """Raise unless ``net`` is a :class:`~fewshot_tutorial.backbones.MAMLNet`: blocks of a 3x3
    convolution (padding 1), batch norm with batch statistics, ReLU and 2x2 max-pooling."""
    blocks = getattr(getattr(net, "backbone", None), "encoder", None)
    def conv4_block(blk: nn.Module) -> bool:
        if not (isinstance(blk, nn.Sequential) and len(blk) == 4):
            return False
        conv, norm, relu, pool = blk
        return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3)
                and conv.padding == (1, 1) and conv.stride == (1, 1) and conv.dilation == (1, 1)
                and conv.groups == 1 and conv.bias is not None and conv.padding_mode == "zeros"
                and isinstance(norm, TaskBatchNorm2d) and not norm.composite and isinstance(relu, nn.ReLU)
                and isinstance(pool, nn.MaxPool2d) and pool.kernel_size in (2, (2, 2))
                and pool.stride in (2, (2, 2)) and pool.padding in (0, (0, 0)) and pool.dilation in (1, (1, 1))
                and not pool.ceil_mode and not pool.return_indices)

    ok = blocks is not None and hasattr(net, "head") and all(conv4_block(blk) for blk in blocks)
    if not ok:
        raise TypeError(f"recompute works on MAMLNet's Conv4 blocks (conv 3x3, batch norm with batch "
                        f"statistics, ReLU, 2x2 max-pool), not on {type(net).__name__}; "
                        "use recompute=False for this network")


def lean_query_loss(net: nn.Module, params: Mapping[str, Tensor], episode: Episode, *, n_steps: int,
                    inner_lr: float | Sequence[float], chunk: int = CHUNK) -> tuple[Tensor, Tensor]:
    """:func:`~fewshot_tutorial.inner_loop.query_loss` (second order, plain SGD, cross-entropy)
    recomputed: :func:`adapt_recomputed`, then :func:`lean_logits` on the query set.

    Returns:
        ``(loss [], predictions [n_way * n_query, n_way])``, the same values and gradient
        with respect to ``params`` as ``query_loss``.
    """
    adapted = adapt_recomputed(net, params, episode.support_x, episode.support_y, n_steps=n_steps,
                               inner_lr=inner_lr, forward=lambda p, x: lean_logits(net, p, x, lean_blocks=0))
    pred = lean_logits(net, adapted, episode.query_x, chunk=chunk)
    return cross_entropy(pred, episode.query_y), pred

"""The recomputed paths of second-order MAML equal the stored graph: values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from fewshot_tutorial import MAML
from fewshot_tutorial.data import Episode
from fewshot_tutorial.inner_loop import adapt, params_of
from fewshot_tutorial.losses import cross_entropy
from fewshot_tutorial.methods.metasgd import MetaSGD
from fewshot_tutorial.recompute import ConvBlock, SGDStep, adapt_recomputed, lean_logits, max_pool_2x2


def stored_block(x, w, b, gamma, beta):
    """Conv4's block as the stored graph computes it: conv, batch norm (batch statistics), ReLU, pool."""
    z = F.conv2d(x, w, b, padding=1)
    return F.max_pool2d(F.relu(F.batch_norm(z, None, None, gamma, beta, True, 0.0, 1e-5)), 2)


def block_inputs(c_in: int, side: int, ties: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    if ties:  # blank paper and strokes: many equal conv outputs inside a pooling window
        x = (torch.rand(7, c_in, side, side, generator=g) > 0.7).double()
    else:
        x = torch.randn(7, c_in, side, side, generator=g, dtype=torch.float64)
    w = torch.randn(5, c_in, 3, 3, generator=g, dtype=torch.float64)
    b, beta = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    gamma = torch.randn(5, generator=g, dtype=torch.float64)  # negative scales too
    return [t.requires_grad_() for t in (x, w, b, gamma, beta)]


@pytest.mark.parametrize("c_in,side,ties,chunk", [(1, 12, False, 3), (1, 12, True, 2), (3, 7, False, 4),
                                                  (2, 9, True, 7), (1, 8, True, 100)])
def test_conv_block_equals_the_stored_block_values_and_gradients(c_in, side, ties, chunk):
    """Odd sides (the pool drops the last row), chunks that do not divide the batch, exact ties."""
    inputs = block_inputs(c_in, side, ties)
    ref = stored_block(*inputs)
    out = ConvBlock.apply(*inputs, 1e-5, chunk)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    grad_out = torch.randn_like(ref)
    want = torch.autograd.grad((ref * grad_out).sum(), inputs)
    got = torch.autograd.grad((out * grad_out).sum(), inputs)
    for name, a, b in zip(("x", "w", "b", "gamma", "beta"), got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"gradient of {name}")


def test_conv_block_passes_gradcheck():
    x, w, b, gamma, beta = block_inputs(2, 6, False, seed=1)
    assert torch.autograd.gradcheck(lambda *t: ConvBlock.apply(*t, 1e-5, 2), (x, w, b, gamma, beta))


@pytest.mark.parametrize("side", [8, 9])
def test_max_pool_2x2_picks_the_element_max_pool2d_picks_ties_included(side):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (4, 3, side, side), generator=g).float()  # three values: ties everywhere
    pooled, which = max_pool_2x2(y)
    ref, flat = F.max_pool2d(y, 2, return_indices=True)
    torch.testing.assert_close(pooled, ref)
    rows = torch.arange(side // 2).view(1, 1, -1, 1) * 2 + (which // 2).long()
    cols = torch.arange(side // 2).view(1, 1, 1, -1) * 2 + (which % 2).long()
    assert torch.equal(rows * side + cols, flat)


def tiny_net_and_tasks(n_tasks: int = 2, dtype=torch.float64, side: int = 16):
    torch.manual_seed(0)
    method = MAML(train_way=3, hidden=8, image_size=side).to(dtype)
    g = torch.Generator().manual_seed(1)
    tasks = [Episode((torch.rand(3, 1, side, side, generator=g) > 0.6).to(dtype), torch.arange(3),
                     (torch.rand(9, 1, side, side, generator=g) > 0.6).to(dtype), torch.arange(3).repeat_interleave(3),
                     n_way=3) for _ in range(n_tasks)]
    return method, tasks


def test_sgd_step_backward_is_v_minus_alpha_hessian_v():
    """eq-maml-step-vjp on a quadratic, where H is known: L(theta) = 0.5 theta^T A theta."""
    g = torch.Generator().manual_seed(0)
    m = torch.randn(4, 4, generator=g, dtype=torch.float64)
    a = m @ m.T
    theta = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    (new,) = SGDStep.apply(lambda t: 0.5 * t[0] @ a @ t[0], 0.1, theta)
    torch.testing.assert_close(new, theta - 0.1 * a @ theta)
    v = torch.randn(4, generator=g, dtype=torch.float64)
    (vjp,) = torch.autograd.grad(new, theta, v)
    torch.testing.assert_close(vjp, v - 0.1 * a @ v)


def test_adapt_recomputed_equals_adapt_values_and_meta_gradient():
    method, (task, _) = tiny_net_and_tasks()
    params = params_of(method.net)
    kw = dict(n_steps=3, inner_lr=[0.3, 0.2, 0.1])
    stored = adapt(method.net, params, task.support_x, task.support_y, **kw)
    recomputed = adapt_recomputed(method.net, params, task.support_x, task.support_y, **kw)
    for k in stored:
        torch.testing.assert_close(recomputed[k], stored[k])

    def meta_gradient(adapted):
        loss = cross_entropy(functional_call(method.net, adapted, (task.query_x,)), task.query_y)
        return torch.autograd.grad(loss, list(params.values()))

    for a, b in zip(meta_gradient(recomputed), meta_gradient(stored)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("side", [16, 18])  # 18: 9 x 9 maps after the first block, odd
def test_lean_logits_equal_the_network_values_and_gradients(side):
    method, (task, _) = tiny_net_and_tasks(side=side)
    params = params_of(method.net)
    for lean_blocks in (1, 4):
        lean = lean_logits(method.net, params, task.query_x, chunk=4, lean_blocks=lean_blocks)
        ref = functional_call(method.net, params, (task.query_x,))
        torch.testing.assert_close(lean, ref)
        a = torch.autograd.grad(cross_entropy(lean, task.query_y), list(params.values()))
        b = torch.autograd.grad(cross_entropy(ref, task.query_y), list(params.values()))
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


def test_maml_recompute_gives_the_meta_gradient_of_the_batched_loss():
    method, tasks = tiny_net_and_tasks(3)
    method.config.inner_steps, method.config.inner_lr, method.config.recompute = 2, 0.3, True
    assert method.recomputes()
    loss, _ = method.loss(tasks)
    batched = torch.autograd.grad(loss, list(method.parameters()))
    method.zero_grad()
    recomputed_loss, metrics = method.backward(tasks)
    torch.testing.assert_close(recomputed_loss, loss.detach())
    for g, p in zip(batched, method.parameters()):
        torch.testing.assert_close(p.grad, g, rtol=1e-9, atol=1e-12)
    assert 0.0 <= metrics["accuracy"] <= 1.0


def test_recompute_is_taken_only_where_it_is_exact():
    """First order has no Hessian terms to recompute; a learned update rule (Meta-SGD) stores its graph."""
    assert MAML(recompute=True).recomputes()
    assert not MAML(recompute=True, first_order=True).recomputes()
    assert not MAML(recompute=True, vectorize="vmap").recomputes()
    assert not MAML().recomputes()
    assert not MetaSGD(recompute=True).recomputes()


def test_recompute_on_the_meta_device():
    """Every tensor follows its inputs' device: no CPU tensor is made on the way."""
    method, tasks = tiny_net_and_tasks(2, dtype=torch.float32)
    method.config.recompute = True
    meta = torch.device("meta")
    method = method.to(meta)
    tasks = [Episode(t.support_x.to(meta), t.support_y.to(meta), t.query_x.to(meta), t.query_y.to(meta), n_way=3)
             for t in tasks]
    loss, _ = method.backward(tasks)
    assert loss.device.type == "meta"
    assert all(p.grad is not None and p.grad.device.type == "meta" for p in method.parameters())



def test_a_network_that_is_not_mamlnet_is_refused_with_what_to_do():
    from fewshot_tutorial.backbones import composite_batch_norm
    from fewshot_tutorial.recompute import check_conv4_blocks

    method, (task, _) = tiny_net_and_tasks()
    check_conv4_blocks(method.net)  # MAMLNet passes
    with pytest.raises(TypeError, match="use recompute=False"):
        check_conv4_blocks(torch.nn.Linear(3, 3))
    with pytest.raises(TypeError, match="use recompute=False"):  # the vmap-safe batch norm is another block
        check_conv4_blocks(composite_batch_norm(method.net))


def test_recompute_steps_aside_under_autocast():
    """The graphs rebuilt in the backward pass would run outside autocast, in another precision."""
    method = MAML(recompute=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not method.recomputes("cpu")
    assert method.recomputes("cpu")


def test_a_parameter_the_support_loss_does_not_use_gets_the_outer_gradient_unchanged():
    """Its row of the step's Jacobian is the identity: v passes through (no Hessian term)."""
    a = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    unused = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    new_a, new_unused = SGDStep.apply(lambda t: (t[0] ** 3).sum(), 0.1, a, unused)
    torch.testing.assert_close(new_unused, unused)
    ga, gu = torch.autograd.grad((new_a.sum() + 5 * new_unused).sum(), (a, unused))
    torch.testing.assert_close(gu, torch.tensor([5.0], dtype=torch.float64))
    torch.testing.assert_close(ga, 1 - 0.1 * 6 * a.detach())  # v - alpha H v, H = diag(6 a)


def test_a_pool_that_rounds_up_is_not_a_conv4_block():
    from fewshot_tutorial.recompute import check_conv4_blocks

    method, _ = tiny_net_and_tasks()
    method.net.backbone.encoder[1][3] = torch.nn.MaxPool2d(2, ceil_mode=True)
    with pytest.raises(TypeError, match="use recompute=False"):
        check_conv4_blocks(method.net)

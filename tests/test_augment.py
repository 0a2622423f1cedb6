"""Random affine distortions: the maps, what they do to images, and fit(augment=...)."""

from __future__ import annotations

import math

import pytest
import torch

from fewshot_tutorial import ProtoNet, fit
from fewshot_tutorial.augment import RandomAffine, affine_matrices, augment_batch, tta_predict
from fewshot_tutorial.data import Episode, FewShotDataset, SequenceEpisode
from fewshot_tutorial.evaluation import make_predict


def blob(n: int = 4, size: int = 28) -> torch.Tensor:
    """A centred disc of ink (1) on paper (0), far from the border."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (((yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2) < (size / 5) ** 2).float()
    return disc.expand(n, 1, size, size).clone()


def test_matrices_equal_a_naive_composition():
    g = torch.Generator().manual_seed(0)
    angle, shear, scale, shift = (torch.rand(5, generator=g), torch.rand(5, 2, generator=g),
                                  1 + torch.rand(5, 2, generator=g), torch.rand(5, 2, generator=g))
    theta = affine_matrices(angle, shear, scale, shift)
    for i in range(5):
        c, s = math.cos(angle[i]), math.sin(angle[i])
        rot = torch.tensor([[c, -s], [s, c]])
        sh = torch.tensor([[1.0, shear[i, 0]], [shear[i, 1], 1.0]])
        linear = rot @ sh @ torch.diag(scale[i])
        assert torch.allclose(theta[i, :, :2], linear, atol=1e-6)
        assert torch.allclose(theta[i, :, 2], shift[i])


def test_no_distortion_is_the_identity():
    x = torch.rand(3, 1, 16, 16)
    assert torch.allclose(RandomAffine(0, 0, 0, 0)(x), x, atol=1e-6)


def test_translation_moves_ink_by_the_expected_pixels():
    """affine_grid samples the input at theta @ (output position): a shift of t (the image
    spans 2 units) moves the content by -t * side / 2 pixels."""
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 4, 4] = 1.0
    theta = affine_matrices(torch.zeros(1), torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([[0.5, 0.0]]))
    grid = torch.nn.functional.affine_grid(theta, [1, 1, 8, 8], align_corners=False)
    out = torch.nn.functional.grid_sample(x, grid, align_corners=False)
    assert out[0, 0, 4, 2] == pytest.approx(1.0) and out.sum() == pytest.approx(1.0)


def test_ink_scales_by_the_inverse_determinant():
    """Output position u samples the input at A u + b, so the ink's area becomes area / det A."""
    x = blob()
    aug, twin = RandomAffine(seed=3), RandomAffine(seed=3)
    out, theta = aug(x), twin.draw(len(x))
    ratio = out.sum((1, 2, 3)) / x.sum((1, 2, 3))
    assert torch.allclose(ratio, 1 / torch.linalg.det(theta[:, :, :2]), rtol=0.08)


def test_seeded_shapes_kept_and_every_call_new():
    x = blob(6)
    a, b = RandomAffine(seed=1), RandomAffine(seed=1)
    first, again = a(x), b(x)
    assert torch.equal(first, again) and first.shape == x.shape and first.dtype == x.dtype
    assert not torch.equal(a(x), first)                      # the next draw differs
    assert not torch.equal(RandomAffine(seed=2)(x), first)   # another seed differs
    assert first.min() >= 0 and first.max() <= 1             # bilinear: no overshoot
    cl = x.contiguous(memory_format=torch.channels_last)
    assert RandomAffine()(cl).is_contiguous(memory_format=torch.channels_last)
    assert RandomAffine()(x.bfloat16()).dtype == torch.bfloat16


def test_batches_it_applies_to():
    aug = RandomAffine(seed=0)
    ep = Episode(blob(2), torch.tensor([0, 1]), blob(4), torch.tensor([0, 0, 1, 1]), n_way=2)
    out = augment_batch(ep, aug)
    assert not torch.equal(out.support_x, ep.support_x) and not torch.equal(out.query_x, ep.query_x)
    assert torch.equal(out.query_y, ep.query_y) and out.n_way == 2
    x1, x2, same = augment_batch((blob(3), blob(3), torch.tensor([1.0, 0.0, 1.0])), aug)
    assert not torch.equal(x1, blob(3)) and not torch.equal(x1, x2) and torch.equal(same, torch.tensor([1.0, 0, 1]))
    seq = SequenceEpisode(blob(6).reshape(2, 3, 1, 28, 28), torch.zeros(2, 3, dtype=torch.long),
                          torch.zeros(2, 3, 2), torch.ones(2, 3, dtype=torch.long))
    out_seq = augment_batch(seq, aug)
    assert out_seq.x.shape == seq.x.shape and not torch.equal(out_seq.x, seq.x) and out_seq.y is seq.y
    tasks = augment_batch([ep, ep], aug)
    assert isinstance(tasks, list) and not torch.equal(tasks[0].support_x, tasks[1].support_x)
    with pytest.raises(TypeError, match="episodes and batches of images"):
        augment_batch({"x": blob(1)}, aug)


def test_runs_on_the_meta_device():
    """No tensor is made on the CPU by mistake: the maps go to the images' device."""
    out = RandomAffine()(torch.empty(2, 1, 16, 16, device="meta"))
    assert out.device.type == "meta" and out.shape == (2, 1, 16, 16)


@pytest.mark.parametrize("kwargs", [dict(degrees=-1), dict(shear=float("nan")), dict(scale=1.0),
                                    dict(translate="0.1")])
def test_bad_ranges_are_refused(kwargs):
    with pytest.raises(ValueError, match="RandomAffine"):
        RandomAffine(**kwargs)


def test_fit_distorts_every_training_batch():
    torch.manual_seed(0)
    data = FewShotDataset(torch.rand(6, 4, 1, 16, 16), [f"a/c{i}" for i in range(6)], "toy")
    seen = []
    model = ProtoNet(ProtoNet.Config(image_size=16, hidden=8, train_way=3, train_shot=1, train_query=1))
    original = model.backward
    model.backward = lambda batch: (seen.append(batch), original(batch))[1]
    hist = fit(model, data, n_steps=2, augment=RandomAffine(seed=0), progress=False, precision="float32")
    assert len(seen) == 2 and "RandomAffine" in hist.provenance["augment"]
    plain = next(iter(model.batches(data, 0)))   # the same seeded episode, undistorted
    assert torch.equal(seen[0].support_y, plain.support_y)
    assert not torch.allclose(seen[0].support_x, plain.support_x)


def _toy_episode() -> tuple[ProtoNet, Episode]:
    torch.manual_seed(0)
    model = ProtoNet(ProtoNet.Config(image_size=16, hidden=8))
    x = torch.rand(3 * 3, 1, 16, 16)
    y = torch.arange(3).repeat_interleave(3)
    return model, Episode(x[::3], y[::3], x, y, 3)


def test_tta_averages_the_embeddings_of_distorted_copies():
    """The logits are the head applied to the mean of the plain and the distorted embeddings."""
    model, ep = _toy_episode()
    model.train()  # tta_predict must put it in eval mode (batch norm's running statistics)
    got0 = tta_predict(model, 0, precision="float32")(ep)
    assert not model.training and not got0.requires_grad  # eval mode, no graph, outside no_grad too
    plain = make_predict(model, "cpu", precision="float32")(ep)
    assert torch.allclose(got0, plain, atol=1e-6)
    # copies that are not distorted change nothing
    assert torch.allclose(tta_predict(model, 3, augment=RandomAffine(0, 0, 0, 0), precision="float32")(ep),
                          plain, atol=1e-5)
    # by hand, with the same seeded draws in the same order (support, then query)
    with torch.no_grad():
        aug = RandomAffine(seed=7)
        s_views = [model.embed(ep.support_x)] + [model.embed(aug(ep.support_x)) for _ in range(2)]
        q_views = [model.embed(ep.query_x)] + [model.embed(aug(ep.query_x)) for _ in range(2)]
        by_hand = model.head(sum(s_views) / 3, ep.support_y, sum(q_views) / 3, 3)
    got = tta_predict(model, 2, augment=RandomAffine(seed=7), precision="float32")(ep)
    assert torch.allclose(got, by_hand, atol=1e-5)
    assert not torch.allclose(got, plain, rtol=1e-2, atol=0)  # the copies count


def test_tta_runs_as_make_predict_does():
    """Under the method's autocast (bfloat16 here) the plain path agrees with make_predict's,
    and every tensor goes to the device asked for (the meta device catches CPU strays)."""
    model, ep = _toy_episode()
    a = tta_predict(model, 0, device="cpu", precision="bfloat16")(ep)
    b = make_predict(model, "cpu", precision="bfloat16")(ep)
    assert a.dtype == torch.float32 and torch.allclose(a, b, rtol=0.05, atol=1e-4)
    out = tta_predict(model, 2, device="meta", precision="float32")(ep)
    assert out.device.type == "meta" and out.shape == (9, 3)


def test_tta_refuses_what_it_cannot_average():
    model, _ = _toy_episode()
    with pytest.raises(ValueError, match="n_copies"):
        tta_predict(model, -1)
    with pytest.raises(TypeError, match="embed and head"):
        tta_predict(torch.nn.Linear(2, 2), 1)

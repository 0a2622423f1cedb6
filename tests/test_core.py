"""Backbone, evaluation (the CI formula), baseline, device choices, engine, checkpoints."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from fewshot_tutorial import (
    Conv4,
    EpisodeSampler,
    confidence_interval,
    evaluate,
    get_profile,
    load_checkpoint,
    pixel_nearest_neighbour,
    save_checkpoint,
    train,
)
from fewshot_tutorial.device import autocast_dtype
from tests.conftest import needs_data
from tests.test_episodes import numbered_dataset


def test_conv4_shapes_and_batchnorm_switch():
    x = torch.randn(7, 1, 28, 28)
    assert Conv4()(x).shape == (7, 64)
    assert Conv4().out_features(28) == 64 and Conv4().out_features(84) == 64 * 25
    no_stats = Conv4(track_running_stats=False)
    assert not any("running" in k for k, _ in no_stats.named_buffers())
    no_stats.eval()  # without running statistics, eval mode still uses batch statistics
    y = no_stats(x)
    assert torch.allclose(y, no_stats.train()(x))


def test_confidence_interval_formula():
    accs = [0.2, 0.6, 0.4, 0.8, 1.0, 0.6]
    r = confidence_interval(accs)
    assert r.n == 6
    assert math.isclose(r.accuracy, statistics.mean(accs))
    assert math.isclose(r.ci95, 1.96 * statistics.stdev(accs) / math.sqrt(6))
    with pytest.raises(ValueError):
        confidence_interval([])


def test_evaluate_same_seed_same_episodes_and_oracle():
    d = numbered_dataset()
    seen = []

    def oracle(e):
        seen.append(e.query_x.sum().item())
        return torch.nn.functional.one_hot(e.query_y, e.n_way).float()

    r = evaluate(oracle, d, 5, 1, 3, n_episodes=10, seed=3)
    first = list(seen)
    seen.clear()
    evaluate(oracle, d, 5, 1, 3, n_episodes=10, seed=3)
    assert seen == first and r.accuracy == 1.0 and r.ci95 == 0.0 and r.n == 10


def test_evaluate_rejects_wrong_logit_shape():
    with pytest.raises(ValueError, match="expected \\(15, 5\\)"):
        evaluate(lambda e: torch.zeros(15, 4), numbered_dataset(), 5, 1, 3, n_episodes=1)


def test_pixel_nn_matches_naive_loop():
    torch.manual_seed(0)
    e = EpisodeSampler(numbered_dataset(), 4, 3, 2, seed=0).sample()
    e = type(e)(torch.rand_like(e.support_x), e.support_y, torch.rand_like(e.query_x), e.query_y)
    logits = pixel_nearest_neighbour(e)
    for qi in range(len(e.query_y)):
        for c in range(4):
            d = min(((e.query_x[qi] - e.support_x[si]) ** 2).sum().item()
                    for si in range(len(e.support_y)) if e.support_y[si] == c)
            assert math.isclose(-logits[qi, c].item(), d, rel_tol=1e-4, abs_tol=1e-5)


@needs_data
def test_pixel_baseline_beats_chance(evaluation):
    r = evaluate(pixel_nearest_neighbour, evaluation, 5, 1, 5, n_episodes=100, seed=0, progress=False)
    assert r.accuracy > 0.2 + 3 * r.ci95


def test_precision_choice(monkeypatch):
    assert autocast_dtype("cpu", "float32") is None
    assert autocast_dtype("cpu", "bfloat16") is torch.bfloat16
    assert autocast_dtype("meta") is None
    monkeypatch.setenv("FEWSHOT_PRECISION", "float32")
    assert autocast_dtype("cpu") is None
    with pytest.raises(ValueError, match="precision must be"):
        autocast_dtype("cpu", "fp8")


def test_profiles(monkeypatch):
    monkeypatch.delenv("FEWSHOT_PROFILE", raising=False)
    assert get_profile(device="cpu").name == "quick"
    assert get_profile(device="cuda").name == "standard"
    monkeypatch.setenv("FEWSHOT_PROFILE", "paper")
    p = get_profile(device="cpu")
    assert p.pick(quick=1, standard=2, paper=3) == 3 and p.pick(1, 2) == 2
    with pytest.raises(ValueError, match="FEWSHOT_PROFILE"):
        get_profile("huge")


def _toy_loss(model):
    def loss_fn(e):
        z = model(e.query_x)
        return torch.nn.functional.cross_entropy(z[:, : e.n_way], e.query_y)
    return loss_fn


def test_engine_lowers_a_loss_and_records_provenance():
    torch.manual_seed(0)
    d = numbered_dataset()
    d.images.copy_(torch.rand_like(d.images))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    fixed = EpisodeSampler(d, 3, 1, 5, seed=0).sample()
    h = train(model, _toy_loss(model), [fixed] * 200, n_steps=150, lr=0.05, progress=False,
              precision="float32")
    assert h.steps == 150 and h.losses[-1] < h.losses[0]
    assert h.provenance["precision"] == "float32" and "torch" in h.provenance
    with pytest.raises(ValueError, match="budget"):
        train(model, _toy_loss(model), [fixed], progress=False)


def test_budget_fraction_and_cosine_schedule_over_steps_and_seconds():
    from fewshot_tutorial.training import LR_SCHEDULES, budget_fraction

    assert budget_fraction(25, 0.0, 100, None) == 0.25
    assert budget_fraction(25, 30.0, 100, 60.0) == 0.5          # seconds used up faster than steps
    assert budget_fraction(500, 0.0, 100, None) == 1.0          # clipped
    assert LR_SCHEDULES["cosine"](0.0) == 1.0 and abs(LR_SCHEDULES["cosine"](1.0)) < 1e-12
    assert LR_SCHEDULES["cosine"](0.5) == pytest.approx(0.5)
    # the rate each step really used, read back from the optimiser
    d = numbered_dataset()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    fixed = EpisodeSampler(d, 3, 1, 5, seed=0).sample()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    seen = []
    train(model, _toy_loss(model), [fixed] * 10, n_steps=10, optimizer=opt, lr_schedule="cosine",
          progress=False, precision="float32", callback=lambda step, loss: seen.append(opt.param_groups[0]["lr"]))
    expected = [0.2 * 0.5 * (1 + math.cos(math.pi * s / 10)) for s in range(10)]
    assert seen == pytest.approx(expected)
    # a time budget: the schedule follows the clock (100 steps allowed, 0.2 s budget)
    seen.clear()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    slow = (fixed for _ in range(10**6) if not __import__("time").sleep(0.01))
    h = train(model, _toy_loss(model), slow, max_seconds=0.2, optimizer=opt, lr_schedule="linear",
              progress=False, precision="float32", callback=lambda step, loss: seen.append(opt.param_groups[0]["lr"]))
    assert 3 <= h.steps < 100 and seen[0] > 0.15 and seen[-1] < 0.1 and seen == sorted(seen, reverse=True)
    with pytest.raises(ValueError, match="lr_schedule"):
        train(model, _toy_loss(model), [fixed], n_steps=1, lr_schedule="exponential", progress=False)


def test_engine_step_on_meta_device():
    """Everything on the meta device: a tensor created on the CPU by mistake would raise."""
    model = Conv4().to("meta")
    e = EpisodeSampler(numbered_dataset(n_per_class=20), 3, 1, 2, seed=0).sample()
    e = type(e)(torch.empty(3, 1, 28, 28), e.support_y, torch.empty(6, 1, 28, 28), e.query_y, n_way=3)
    h = train(model, _toy_loss(model), [e], n_steps=1, device="meta", progress=False)
    assert h.steps == 1


def test_checkpoint_round_trip_and_bad_file(tmp_path):
    m = Conv4(hidden=8)
    p = save_checkpoint(tmp_path / "m.pt", m, {"method": "x", "hidden": 8})
    state, cfg = load_checkpoint(p)
    assert cfg == {"method": "x", "hidden": 8}
    m2 = Conv4(hidden=8)
    m2.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a fewshot_tutorial checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="train one first"):
        load_checkpoint(tmp_path / "none.pt")


def test_source_lines_shows_the_code_without_docstrings_and_input_checks():
    from fewshot_tutorial.methods.protonet import linear_layer
    from fewshot_tutorial.notebook import source_lines

    shown = source_lines(linear_layer)
    assert shown.startswith("# fewshot_tutorial/methods/protonet.py  (1 input check not shown)")
    assert "return 2.0 * protos, -protos.pow(2).sum(-1)" in shown
    assert '"""' not in shown and "raise" not in shown


def test_angular_spread_matches_a_loop():
    from fewshot_tutorial.metrics import angular_spread

    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 5, 3, generator=g, dtype=torch.float64)
    within, between = angular_spread(z)
    unit = [[v / v.norm() for v in cls] for cls in z]
    means = [sum(cls) / len(cls) for cls in unit]
    means = [m / m.norm() for m in means]
    w = sum(1 - float(v @ means[c]) for c, cls in enumerate(unit) for v in cls) / 20
    b = sum(1 - float(means[i] @ means[j]) for i in range(4) for j in range(4) if i != j) / 12
    assert within == pytest.approx(w) and between == pytest.approx(b)
    tight = z[:, :1].expand(-1, 5, -1) * torch.rand(1, 5, 1, generator=g, dtype=torch.float64)  # scaled copies
    assert angular_spread(tight)[0] == pytest.approx(0, abs=1e-12)  # lengths do not count, only angles
    with pytest.raises(ValueError):
        angular_spread(z[:1])

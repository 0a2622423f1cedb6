"""MANN and its LSTM baseline: configs, training on sequences, predict on episodes, the meta device."""

from __future__ import annotations

import json

import pytest
import torch

from fewshot_tutorial import FewShotDataset, evaluate, fit, load_model, save_model
from fewshot_tutorial.cli import main
from fewshot_tutorial.data import Episode
from fewshot_tutorial.data.sequences import SequenceEpisode, SequenceSampler
from fewshot_tutorial.evaluation import make_predict
from fewshot_tutorial.methods import METHODS
from fewshot_tutorial.methods.mann import (
    MANN,
    LSTMLearner,
    accuracy_by_instance,
    support_order,
)
from tests.conftest import make_tiny_omniglot

TINY = {"hidden": 8, "image_size": 16, "n_classes": 3, "seq_length": 9, "batch_size": 4, "controller_size": 16}
MEMORY = {"memory_slots": 8, "memory_size": 6, "n_reads": 2}
CLASSES = [LSTMLearner, MANN]


def tiny(cls, **extra):
    return cls(**{**TINY, **(MEMORY if cls is MANN else {}), **extra})


def tiny_data(n_classes: int = 6, n_per_class: int = 5, device: str | torch.device = "cpu") -> FewShotDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n_classes, n_per_class, 1, 16, 16, generator=g).to(device)
    return FewShotDataset(images, [f"c{i}" for i in range(n_classes)])


def an_episode(n_way: int = 3, n_shot: int = 2, n_query: int = 2) -> Episode:
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(n_way)
    return Episode(torch.rand(n_way * n_shot, 1, 16, 16, generator=g), labels.repeat_interleave(n_shot),
                   torch.rand(n_way * n_query, 1, 16, 16, generator=g), labels.repeat_interleave(n_query), n_way)


@pytest.mark.parametrize("kwargs, message", [
    ({"n_classes": 1}, "n_classes must be >= 2"),
    ({"seq_length": 2}, "seq_length=2"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"encoder": "resnet"}, "encoder must be one of"),
    ({"query_label": "none"}, "query_label must be one of"),
    ({"memory_slots": 1}, "memory_slots=1"),
    ({"gamma": 1.5}, "gamma"),
    ({"n_reads": 0}, "n_reads must be >= 1"),
])
def test_bad_configs_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MANN(**{**TINY, **MEMORY, **kwargs})


def test_defaults_are_the_papers_memory():
    c = MANN().config
    assert (c.memory_slots, c.memory_size, c.n_reads, c.gamma, c.n_classes, c.seq_length) == (128, 40, 4, 0.95, 5, 50)


@pytest.mark.parametrize("cls", CLASSES)
def test_batches_are_collated_sequence_episodes(cls):
    batch = next(iter(tiny(cls).batches(tiny_data(), seed=0)))
    assert isinstance(batch, SequenceEpisode)
    assert batch.x.shape == (4, 9, 1, 16, 16) and batch.prev_label.shape == (4, 9, 3)


@pytest.mark.parametrize("cls", CLASSES)
def test_memory_state_starts_at_zero_on_the_inputs_device_and_dtype(cls):
    like = torch.empty(0, dtype=torch.float64, device="meta")
    state = tiny(cls).initial_state(3, like)
    assert all(s.device.type == "meta" and s.dtype == torch.float64 and s.shape[0] == 3 for s in state)
    assert all(torch.equal(s, torch.zeros_like(s)) for s in tiny(cls).initial_state(2, torch.empty(0)))


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("encoder", ["conv4", "pixels"])
def test_training_lowers_the_loss_on_a_fixed_batch(cls, encoder):
    torch.manual_seed(0)
    model = tiny(cls, encoder=encoder)
    batch = SequenceEpisode.collate(list(SequenceSampler(tiny_data(), 3, 9, seed=0, n_episodes=4)))
    history = fit(model, [batch] * 40, n_steps=40, lr=1e-2, progress=False, precision="float32")
    first, last = history.losses[0], sum(history.losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)


@pytest.mark.parametrize("cls", CLASSES)
def test_predict_gives_finite_logits_for_every_query(cls):
    model = tiny(cls, n_classes=5, seq_length=10).eval()
    with torch.no_grad():
        logits = model.predict(an_episode(n_way=3))  # fewer classes than the model's outputs
    assert logits.shape == (6, 3) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="at most 5 classes"):
        model.predict(an_episode(n_way=6, n_shot=1, n_query=1))


@pytest.mark.parametrize("cls", CLASSES)
def test_queries_do_not_see_each_other(cls):
    torch.manual_seed(0)
    model = tiny(cls).eval()
    ep = an_episode()
    with torch.no_grad():
        all_queries = model.predict(ep)
        for i in range(len(ep.query_x)):
            alone = model.predict(Episode(ep.support_x, ep.support_y, ep.query_x[i : i + 1], None, ep.n_way))
            torch.testing.assert_close(alone[0], all_queries[i])


@pytest.mark.parametrize("cls", CLASSES)
def test_predict_reads_the_support_labels(cls):
    torch.manual_seed(0)
    model = tiny(cls).eval()
    ep = an_episode()
    relabelled = Episode(ep.support_x, (ep.support_y + 1) % 3, ep.query_x, None, 3)
    with torch.no_grad():
        assert not torch.allclose(model.predict(ep), model.predict(relabelled))


@pytest.mark.parametrize("cls", CLASSES)
def test_query_label_input_last_support_or_zero(cls):
    torch.manual_seed(0)
    last, zero = tiny(cls).eval(), tiny(cls, query_label="zero").eval()
    zero.load_state_dict(last.state_dict())
    ep = an_episode()
    order = support_order(ep.support_y)
    sx, sy = ep.support_x[order], ep.support_y[order]
    prev = torch.cat([torch.zeros(1, 3), torch.eye(3)[sy[:-1]]])
    with torch.no_grad():
        _, state = last.run(sx[None], prev[None])
        q = ep.query_x[:1, None]
        with_label, _ = last.run(q, torch.eye(3)[sy[-1:]][None], state)
        without, _ = last.run(q, torch.zeros(1, 1, 3), state)
        torch.testing.assert_close(last.predict(ep)[:1], with_label[:, 0])
        torch.testing.assert_close(zero.predict(ep)[:1], without[:, 0])
        assert not torch.allclose(with_label, without)


def test_support_order_shows_every_class_once_before_any_twice():
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    assert y[support_order(y)].tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2]
    assert support_order(torch.tensor([2, 1, 1, 0])).tolist() == [0, 1, 3, 2]


@pytest.mark.parametrize("cls", CLASSES)
def test_fit_then_evaluate_through_the_engine(cls):
    torch.manual_seed(0)
    model = tiny(cls, n_classes=6, seq_length=12)
    history = fit(model, tiny_data(), n_steps=2, progress=False)
    assert history.steps == 2 and all(torch.isfinite(torch.tensor(history.losses)))
    result = evaluate(model, tiny_data(), n_way=3, n_shot=1, n_query=2, n_episodes=3, seed=0)
    assert result.n == 3 and 0.0 <= result.accuracy <= 1.0


@pytest.mark.parametrize("cls", CLASSES)
def test_training_step_and_predict_on_the_meta_device(cls):
    """Catches tensors created on the CPU by mistake: every op must follow its inputs' device."""
    meta = torch.device("meta")
    model = tiny(cls, n_classes=6, seq_length=12).to(meta)
    fit(model, tiny_data(device=meta), n_steps=2, device=meta, progress=False)
    episode = Episode(torch.empty(3, 1, 16, 16, device=meta), torch.arange(3, device=meta),
                      torch.empty(6, 1, 16, 16, device=meta), torch.arange(3, device=meta).repeat_interleave(2),
                      n_way=3)
    logits = make_predict(model, meta)(episode)
    assert logits.device.type == "meta" and tuple(logits.shape) == (6, 3)


@torch.no_grad()
@pytest.mark.parametrize("read_to_controller", [True, False])
@pytest.mark.parametrize("add_vector", [False, True])
def test_one_mann_step_against_a_loop_in_the_papers_order(read_to_controller, add_vector):
    """Write (to the previous read rows or the least used, after erasing the least used), then read, then usage."""
    torch.manual_seed(0)
    model = tiny(MANN, read_to_controller=read_to_controller, add_vector=add_vector).double()
    c = model.config
    n, w, r_heads = c.memory_slots, c.memory_size, c.n_reads
    g = torch.Generator().manual_seed(5)
    h, cell = torch.randn(2, 1, c.controller_size, generator=g, dtype=torch.float64)
    memory = torch.randn(1, n, w, generator=g, dtype=torch.float64)
    usage = torch.rand(1, n, generator=g, dtype=torch.float64)
    read_w = torch.rand(1, r_heads, n, generator=g, dtype=torch.float64).softmax(-1)
    prev_reads = torch.randn(1, r_heads * w, generator=g, dtype=torch.float64)
    z, label = torch.randn(1, model.feature_size, dtype=torch.float64), torch.eye(3, dtype=torch.float64)[[1]]
    logits, (h2, _, memory2, usage2, read_w2, reads2) = model.step(
        z, label, (h, cell, memory, usage, read_w, prev_reads))

    inputs = [z, label, prev_reads] if read_to_controller else [z, label]
    torch.testing.assert_close(h2, model.controller(torch.cat(inputs, -1), (h, cell))[0])
    keys = torch.tanh(model.key(h2)).view(r_heads, w)
    values = torch.tanh(model.add(h2)).view(r_heads, w) if add_vector else keys
    gate = torch.sigmoid(model.alpha(h2))[0]
    least_used = sorted(range(n), key=lambda i: (usage[0, i].item(), i))
    write_w = [[gate[k] * read_w[0, k, i] + (1 - gate[k]) * (i == least_used[k]) for i in range(n)]
               for k in range(r_heads)]
    rows = [memory[0, i] * (i != least_used[0]) + sum(write_w[k][i] * values[k] for k in range(r_heads))
            for i in range(n)]
    cos = [[float(keys[k] @ rows[i]) / ((keys[k].pow(2).sum() + 1e-6).sqrt() * (rows[i].pow(2).sum() + 1e-6).sqrt())
            for i in range(n)] for k in range(r_heads)]
    new_read_w = [torch.tensor(cos[k], dtype=torch.float64).softmax(0) for k in range(r_heads)]
    reads = [sum(new_read_w[k][i] * rows[i] for i in range(n)) for k in range(r_heads)]
    new_usage = [c.gamma * usage[0, i] + sum(new_read_w[k][i] + write_w[k][i] for k in range(r_heads))
                 for i in range(n)]
    torch.testing.assert_close(memory2[0], torch.stack(rows))
    torch.testing.assert_close(read_w2[0], torch.stack(new_read_w))
    torch.testing.assert_close(usage2[0], torch.stack(new_usage))
    torch.testing.assert_close(reads2[0], torch.cat(reads))
    torch.testing.assert_close(logits, model.out(torch.cat([h2[0], *reads])[None]))


class PreviousLabel(LSTMLearner):
    """Guesses that step t repeats the label of step t - 1: right exactly when y[t] == y[t - 1]."""

    def run(self, x, prev_label, state=None):
        return prev_label.float(), ()


def test_accuracy_by_instance_against_a_loop():
    data = tiny_data(n_classes=6, n_per_class=5)
    model = PreviousLabel(**{**TINY, "n_classes": 3, "seq_length": 12, "batch_size": 3})
    result = accuracy_by_instance(model, data, n_episodes=7, seed=4, max_instance=10)
    assert sorted(result) == [1, 2, 3, 4]  # 12 steps over 3 classes: 4 instances each
    per_instance = {i: [] for i in range(1, 5)}
    for ep in SequenceSampler(data, 3, 12, seed=4, n_episodes=7):
        for i, accs in per_instance.items():
            steps = [t for t in range(12) if ep.instance[t] == i]
            accs.append(sum(t > 0 and ep.y[t] == ep.y[t - 1] for t in steps) / len(steps))
    for i, accs in per_instance.items():
        assert result[i].n == 7
        assert result[i].accuracy == pytest.approx(sum(accs) / 7)
    assert result[1].accuracy == 0.0  # a first appearance never repeats the previous label


@pytest.mark.parametrize("cls", CLASSES)
def test_checkpoint_round_trip_once_registered(cls, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, cls.name, cls)
    torch.manual_seed(0)
    model = tiny(cls)
    back, config = load_model(save_model(tmp_path / "m.pt", model))
    assert type(back) is cls and config == model.config
    for (k, v), (k2, v2) in zip(model.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


@pytest.mark.parametrize("cls", CLASSES)
def test_cli_trains_and_evaluates_once_registered(cls, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(METHODS, cls.name, cls)
    root = tmp_path / "data"
    make_tiny_omniglot(root, name="images_background", n_chars=4, size=16)
    make_tiny_omniglot(root, name="images_evaluation", n_chars=3, size=16)
    out = tmp_path / "m.pt"
    flags = ["--hidden", "8", "--image-size", "16", "--seq-length", "10", "--batch-size", "2",
             "--controller-size", "8"] + (["--memory-slots", "8", "--memory-size", "4"] if cls is MANN else [])
    with pytest.warns(Warning, match="incomplete|missing|Omniglot|alphabet|character"):  # the tiny data set
        trained = main(["train", cls.name, "--root", str(root), "--steps", "2", "--out", str(out), *flags])
    assert trained == 0 and out.is_file()
    with pytest.warns(Warning, match="incomplete|missing|Omniglot|alphabet|character"):
        evaluated = main(["evaluate", "--root", str(root), "--checkpoint", str(out), "--way", "3", "--query", "2",
                          "--episodes", "2", "--json"])
    assert evaluated == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["method"] == cls.name and result["n"] == 2

"""Every method through the same path: fit, evaluate, the meta device, checkpoints and the CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from fewshot_tutorial import FewShotDataset, evaluate, fit, load_model, save_model
from fewshot_tutorial.cli import main
from fewshot_tutorial.data import Episode
from fewshot_tutorial.evaluation import embed_dataset, make_embedding_predict, make_predict
from fewshot_tutorial.methods import METHODS, Method
from tests.conftest import make_tiny_omniglot

SMALL = {"hidden": 8, "image_size": 16, "train_way": 3, "train_shot": 1, "train_query": 2, "meta_batch": 2,
         "batch_size": 8, "inner_steps": 1, "test_steps": 1, "n_classes": 6, "seq_length": 12}
PRETRAINED = ("baseline", "baseline++", "distill", "protonet-multitask")  # class batches over all training classes




def small(name: str, **extra) -> Method:
    cls = METHODS[name]
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    method = cls(**{k: v for k, v in {**SMALL, **extra}.items() if k in fields})
    if name == "distill":  # a student trains against a teacher; its checkpoint holds the student alone
        method.set_teacher(small("baseline", **extra))
    return method


def tiny_data(n_classes: int = 6, device: str | torch.device = "cpu") -> FewShotDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n_classes, 5, 1, 16, 16, generator=g).to(device)
    return FewShotDataset(images, [f"c{i}" for i in range(n_classes)])


def test_every_method_is_registered_under_its_name():
    assert set(METHODS) == {"siamese", "matching", "protonet", "maml", "fomaml", "reptile",
                            "metasgd", "metalstm", "baseline", "baseline++", "distill", "protonet-multitask", "lstm", "mann"}
    for name, cls in METHODS.items():
        assert cls.name == name and issubclass(cls.Config, METHODS[name].Config)
        json.dumps(cls().config.as_dict())  # JSON-able: what a checkpoint stores


@pytest.mark.parametrize("name", list(METHODS))
def test_fit_then_evaluate(name):
    torch.manual_seed(0)
    method = small(name)
    history = fit(method, tiny_data(), n_steps=2, device="cpu", progress=False)
    assert history.steps == 2 and all(torch.isfinite(torch.tensor(history.losses)))
    assert history.provenance["method"] == name
    result = evaluate(method, tiny_data(), n_way=3, n_shot=1, n_query=2, n_episodes=3, seed=0)
    assert result.n == 3 and 0.0 <= result.accuracy <= 1.0 and len(result.per_episode) == 3


@pytest.mark.parametrize("name", list(METHODS))
def test_training_step_and_predict_on_the_meta_device(name):
    """Catches tensors created on the CPU by mistake: every op must follow its inputs' device."""
    meta = torch.device("meta")
    method = small(name).to(meta)
    fit(method, tiny_data(device=meta), n_steps=2, device=meta, progress=False)
    episode = Episode(torch.empty(3, 1, 16, 16, device=meta), torch.arange(3, device=meta),
                      torch.empty(6, 1, 16, 16, device=meta), torch.arange(3, device=meta).repeat_interleave(2),
                      n_way=3)
    logits = make_predict(method, meta)(episode)
    assert logits.device.type == "meta" and tuple(logits.shape) == (6, 3)


@pytest.mark.parametrize("name", [n for n, c in METHODS.items() if c().has_embedding])
def test_the_embedding_cache_gives_the_logits_of_the_images(name):
    torch.manual_seed(0)
    method = small(name)
    fit(method, tiny_data(), n_steps=2, progress=False, precision="float32")  # non-trivial batch norm
    data = tiny_data()
    embedded = embed_dataset(method, data, precision="float32")
    on_images = make_predict(method, "cpu", precision="float32")
    from fewshot_tutorial import EpisodeSampler

    for a, b in zip(EpisodeSampler(data, 3, 2, 2, seed=1, n_episodes=3), EpisodeSampler(embedded, 3, 2, 2, seed=1,
                                                                                       n_episodes=3)):
        torch.testing.assert_close(on_images(a), make_embedding_predict(method)(b), rtol=1e-4, atol=1e-4)
    a = evaluate(method, data, 3, 1, 2, n_episodes=5, precision="float32", cache=False)
    b = evaluate(method, data, 3, 1, 2, n_episodes=5, precision="float32", cache=True)
    assert a.per_episode == b.per_episode


@pytest.mark.parametrize("name", list(METHODS))
def test_checkpoint_round_trip_rebuilds_the_same_method(name, tmp_path):
    torch.manual_seed(0)
    method = small(name)
    path = save_model(tmp_path / f"{name}.pt", method)
    back, config = load_model(path)
    assert type(back) is type(method) and config == method.config
    for (k, v), (k2, v2) in zip(method.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_a_damaged_checkpoint_is_refused(tmp_path):
    path = save_model(tmp_path / "p.pt", small("protonet"))
    state = torch.load(path, weights_only=True)
    key = next(k for k in state["state_dict"] if k.endswith("weight"))
    state["state_dict"][key] = state["state_dict"][key] + 1e-3  # flipped bits: weights without their checksum
    torch.save(state, path)
    with pytest.raises(ValueError, match="checksum"):
        load_model(path)


def test_an_edited_checkpoint_header_is_refused(tmp_path):
    """protonet weights relabelled as a matching network: the checksum covers the config too."""
    path = save_model(tmp_path / "p.pt", small("protonet"))
    state = torch.load(path, weights_only=True)
    saved = json.loads(state["config"])
    saved["method"] = "matching"
    saved["config"] = {k: v for k, v in saved["config"].items() if k not in ("distance", "lr_decay_every")}
    state["config"] = json.dumps(saved)
    torch.save(state, path)
    with pytest.raises(ValueError, match="checksum"):
        load_model(path)


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    method = small("protonet")
    path = save_model(tmp_path / "p.pt", method)
    state = torch.load(path, weights_only=True)
    saved = json.loads(state["config"])
    saved["config"]["hidden"] = 16  # a config that promises wider layers than the weights have
    state["config"] = json.dumps(saved)
    state.pop("sha256")  # as an older or hand-made checkpoint would be
    torch.save(state, path)
    with pytest.raises(ValueError, match="do not match"):
        load_model(path)
    saved["config"]["distance"] = "manhattan"
    state["config"] = json.dumps(saved)
    torch.save(state, path)
    with pytest.raises(ValueError, match="does not describe a protonet"):
        load_model(path)
    state["config"] = json.dumps({"config": saved["config"]})  # no "method"
    torch.save(state, path)
    with pytest.raises(ValueError, match="names method None"):
        load_model(path)
    state["config"] = json.dumps([1, 2])  # not a dict
    torch.save(state, path)
    with pytest.raises(ValueError, match="not a dict"):
        load_model(path)


def test_evaluate_refuses_an_image_size_the_checkpoint_was_not_trained_at(tmp_path, capsys):
    root = tmp_path / "data"
    make_tiny_omniglot(root, name="images_evaluation", n_chars=4, size=16)
    path = save_model(tmp_path / "p.pt", small("protonet"))
    assert main(["evaluate", "--root", str(root), "--checkpoint", str(path), "--image-size", "28",
                 "--way", "3", "--episodes", "1"]) == 2  # refused before any data is read
    assert "trained on 16x16 images" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(METHODS))
def test_cli_trains_and_evaluates_every_method(name, tmp_path, capsys):
    root = tmp_path / "data"
    make_tiny_omniglot(root, name="images_background", n_chars=4, size=16)
    make_tiny_omniglot(root, name="images_evaluation", n_chars=3, size=16)
    out = tmp_path / f"{name}.pt"
    flags = ["--hidden", "8", "--image-size", "16"]
    if name in PRETRAINED:
        flags += ["--batch-size", "8", "--n-classes", "8"]
        if name == "distill":
            flags += ["--teacher-checkpoint", str(save_model(tmp_path / "teacher.pt", small("baseline", n_classes=8)))]
    if (name not in PRETRAINED or name == "protonet-multitask") and name not in ("lstm", "mann"):  # episodes
        flags += ["--train-way", "3", "--train-query", "2"] if name != "siamese" else ["--batch-size", "8"]
    flags += ["--meta-batch", "2", "--test-steps", "1"] if name in ("maml", "fomaml", "reptile", "metasgd",
                                                                          "metalstm") else []
    with pytest.warns(Warning):
        assert main(["train", name, "--root", str(root), "--steps", "2", "--out", str(out), "--augment", *flags]) == 0
        assert main(["evaluate", "--root", str(root), "--checkpoint", str(out), "--way", "3", "--query", "2",
                     "--episodes", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["method"] == name and result["n"] == 2


def test_cli_mistakes_end_in_one_line_errors(tmp_path, capsys):
    root = tmp_path / "data"
    make_tiny_omniglot(root, name="images_background", n_chars=4, size=16)
    cases = [
        (["train", "protonet", "--root", str(root), "--out", str(tmp_path), "--steps", "1"], "is a directory"),
        (["train", "protonet", "--root", str(root), "--steps", "0"], "steps must be >= 1"),
        (["evaluate", "--device", "bogus"], "unknown device"),
        (["evaluate", "--checkpoint", str(tmp_path)], "is a folder"),
        (["evaluate", "--checkpoint", str(tmp_path / "none.pt")], "no checkpoint"),
    ]
    if not torch.cuda.is_available():
        cases.append((["evaluate", "--device", "cuda"], "no CUDA GPU"))
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1, err


def test_a_pickle_is_refused_with_a_clear_message(tmp_path, capsys):
    import pickle

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "config": "{}", "x": Episode}, path)  # a class: needs unpickling code
    assert main(["evaluate", "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Python objects" in err and "weights_only" not in err
    assert pickle  # the file is a pickle of a class reference


def test_evaluate_refuses_non_finite_logits():
    data = tiny_data()
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="NaN or infinite"):
            evaluate(lambda e: torch.full((6, 3), bad), data, 3, 1, 2, n_episodes=1)


def test_cli_evaluates_a_checkpoint_on_your_own_folder(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    folder = tmp_path / "mine"
    g = np.random.default_rng(0)
    for c in range(4):
        (folder / f"class_{c}").mkdir(parents=True)
        for i in range(5):
            ink = g.random((16, 16)) < 0.2
            Image.fromarray(np.where(ink, 0, 255).astype(np.uint8)).save(folder / f"class_{c}" / f"{i}.png")
    path = save_model(tmp_path / "p.pt", small("protonet"))
    assert main(["evaluate", "--checkpoint", str(path), "--folder", str(folder), "--way", "3", "--shot", "1",
                 "--query", "2", "--episodes", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["data"] == str(folder) and result["n"] == 4

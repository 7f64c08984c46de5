"""The seeded training loop (checkpoints, exact resume) and cached classification pre-training."""

import errno
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import irbook.train.pretrain as pretrain_module
from irbook.models import SmallCNN
from irbook.train import atomic_save, fit, pretrain_classifier, seed_everything
from irbook.train.loop import CheckpointWriteError


def _separable_points(n=64):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=generator)
    return TensorDataset(x, (x[:, 0] + x[:, 1] > 0).long())


def _classification_loss(model, batch):
    inputs, labels = batch
    return nn.functional.cross_entropy(model(inputs), labels)


def _noisy_loss(model, batch):
    """Uses dropout and all three global generators, so resume must restore every RNG state."""
    inputs, labels = batch
    noise = 0.01 * (np.random.rand() + random.random())
    return nn.functional.cross_entropy(model(inputs + noise), labels)


def _mlp(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))


def _train(model, epochs, checkpoint, **kwargs):
    loader = DataLoader(_separable_points(), batch_size=8, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    return fit(model, loader, _noisy_loss, optimizer, epochs=epochs, checkpoint=checkpoint,
               seed=7, progress=False, scheduler=scheduler, **kwargs)


def test_loss_decreases_on_a_separable_problem():
    model = nn.Linear(2, 2)
    dataset = _separable_points()
    initial = _classification_loss(model, dataset.tensors).item()
    loader = DataLoader(dataset, batch_size=16, shuffle=True)
    history = fit(model, loader, _classification_loss, torch.optim.SGD(model.parameters(), lr=0.5),
                  epochs=5, progress=False)
    assert [record["epoch"] for record in history] == [1, 2, 3, 4, 5]
    assert history[-1]["loss"] < history[0]["loss"]
    assert _classification_loss(model, dataset.tensors).item() < 0.5 * initial
    assert all(record["seconds"] >= 0 for record in history)


def test_resumed_run_equals_an_uninterrupted_one_bit_for_bit(tmp_path):
    straight = _mlp(seed=1)
    straight_history = _train(straight, 2, tmp_path / "straight.pt")

    interrupted = _mlp(seed=1)
    _train(interrupted, 1, tmp_path / "resumed.pt")
    resumed = _mlp(seed=99)  # a new process would build the model from scratch
    resumed_history = _train(resumed, 2, tmp_path / "resumed.pt")

    def without_time(history):
        return [{k: v for k, v in record.items() if k != "seconds"} for record in history]

    assert without_time(resumed_history) == without_time(straight_history)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name


def test_finished_checkpoint_is_not_trained_again(tmp_path):
    model = _mlp(seed=1)
    _train(model, 1, tmp_path / "run.pt")
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    history = _train(model, 1, tmp_path / "run.pt")
    assert len(history) == 1
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_on_epoch_end_adds_metrics_to_the_record():
    history = _train(_mlp(seed=1), 2, None, on_epoch_end=lambda epoch, model: {"val": 10 * epoch})
    assert [record["val"] for record in history] == [10, 20]


def test_non_finite_loss_stops_training():
    model = nn.Linear(2, 2)
    loader = DataLoader(_separable_points(), batch_size=16)
    with pytest.raises(FloatingPointError, match="epoch 1, batch 1"):
        fit(model, loader, lambda m, b: m(b[0]).sum() * float("nan"),
            torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, progress=False)


def test_atomic_save_leaves_only_the_target_file(tmp_path):
    path = atomic_save({"a": torch.arange(3)}, tmp_path / "sub" / "state.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.pt"]
    assert torch.equal(torch.load(path)["a"], torch.arange(3))
    with pytest.raises(Exception):  # noqa: B017 - pickling a lambda fails inside torch.save
        atomic_save({"f": lambda: 0}, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.pt"]
    assert torch.equal(torch.load(path)["a"], torch.arange(3))


def test_checkpoint_loads_with_weights_only_and_holds_plain_records(tmp_path):
    def numpy_metrics(epoch, model):
        return {"score": np.float64(0.25), "count": np.int64(3), "curve": np.array([1.5, 2.0])}

    history = _train(_mlp(seed=1), 1, tmp_path / "run.pt", on_epoch_end=numpy_metrics)
    state = torch.load(tmp_path / "run.pt", weights_only=True)
    assert state["epoch"] == 1 and len(state["history"]) == 1
    record = state["history"][0]
    assert (record["score"], record["count"], record["curve"]) == (0.25, 3, [1.5, 2.0])
    assert type(record["score"]) is float and type(record["count"]) is int
    assert history[0]["curve"] == [1.5, 2.0] and type(history[0]["score"]) is float
    assert set(state["rng"]) >= {"python", "numpy", "torch"}


def test_unreadable_checkpoint_is_moved_aside_and_training_restarts(tmp_path):
    fresh = _mlp(seed=1)
    _train(fresh, 2, tmp_path / "fresh.pt")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04 half a zip")  # an interrupted copy, say
    restarted = _mlp(seed=1)
    with pytest.warns(UserWarning, match="could not be read.*broken.pt.unreadable"):
        history = _train(restarted, 2, broken)
    assert [record["epoch"] for record in history] == [1, 2]
    assert (tmp_path / "broken.pt.unreadable").read_bytes() == b"PK\x03\x04 half a zip"
    assert torch.load(broken, weights_only=True)["epoch"] == 2
    for (name, a), (_, b) in zip(fresh.state_dict().items(), restarted.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos 64 vs 0"),
    RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"),
    RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed "
                 "writing file version: errno 28"),
], ids=["ENOSPC", "inline_container", "file-write-failed", "errno-28"])
def test_full_disk_while_saving_names_the_path_and_keeps_the_old_file(tmp_path, monkeypatch,
                                                                      failure):
    path = atomic_save({"a": torch.arange(3)}, tmp_path / "state.pt")

    def full_disk(obj, file):
        file.write(b"partial")
        raise failure

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointWriteError) as error:
        atomic_save({"a": torch.arange(4)}, path)
    assert str(error.value) == (
        f"no space left on the device while writing {path}; free some space (or point "
        "IRBOOK_CACHE elsewhere) and rerun: finished stages are kept")
    assert isinstance(error.value, OSError) and error.value.errno == errno.ENOSPC
    assert error.value.__cause__ is failure
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.arange(3))


def test_other_save_errors_are_not_reported_as_a_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", lambda obj, file: (_ for _ in ()).throw(
        RuntimeError("CUDA error: an illegal memory access")))
    with pytest.raises(RuntimeError, match="illegal memory access") as error:
        atomic_save({}, tmp_path / "state.pt")
    assert not isinstance(error.value, CheckpointWriteError)
    assert not any(tmp_path.iterdir())  # the temporary file is removed


def test_seed_everything_fixes_all_generators():
    seed_everything(3)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(3)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def _tiny_images(n=16, classes=2):
    generator = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, 16, 16, generator=generator),
                         torch.arange(n) % classes)


@pytest.fixture
def counted_fit(monkeypatch):
    calls = []

    def counting_fit(*args, **kwargs):
        calls.append(kwargs["epochs"])
        return fit(*args, **kwargs)

    monkeypatch.setattr(pretrain_module, "fit", counting_fit)
    return calls


def _pretrain(cache_path, **overrides):
    torch.manual_seed(0)
    settings = {"epochs": 1, "lr": 1e-2, "batch_size": 8, "seed": 0}
    settings.update(overrides)
    return pretrain_classifier(SmallCNN(width=4, depth=2), _tiny_images(), 2,
                               cache_path=cache_path, progress=False, **settings)


def test_pretraining_is_cached_and_reused(tmp_path, counted_fit):
    cache = tmp_path / "smallcnn.pt"
    trained = _pretrain(cache)
    untrained = SmallCNN(width=4, depth=2)
    assert not all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(),
                                                     untrained.state_dict().values(),
                                                     strict=True))
    reused = _pretrain(cache)
    assert counted_fit == [1]
    assert not reused.training
    for (name, a), (_, b) in zip(trained.state_dict().items(), reused.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smallcnn.pt"]  # no partial left


@pytest.mark.parametrize("change", [{"epochs": 2}, {"lr": 5e-3}, {"seed": 1},
                                    {"extra_config": {"dataset": "other"}}])
def test_pretraining_config_change_retrains(tmp_path, counted_fit, change):
    cache = tmp_path / "smallcnn.pt"
    _pretrain(cache)
    _pretrain(cache, **change)
    assert len(counted_fit) == 2
    _pretrain(cache, **change)  # the cache now holds the new config
    assert len(counted_fit) == 2


def _one_epoch_loss(precision):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    data = [(torch.randn(8, 16, generator=torch.Generator().manual_seed(i)),
             torch.arange(8) % 4) for i in range(4)]
    seen = []

    def loss_fn(module, batch):
        x, y = batch
        logits = module(x)
        seen.append(logits.dtype)
        return torch.nn.functional.cross_entropy(logits, y)

    history = fit(model, data, loss_fn, torch.optim.SGD(model.parameters(), lr=0.1), epochs=1,
                  progress=False, precision=precision)
    return history[0]["loss"], seen


def test_bf16_autocast_computes_the_products_in_bfloat16_and_changes_the_loss_a_little():
    fp32, dtypes32 = _one_epoch_loss("fp32")
    bf16, dtypes16 = _one_epoch_loss("bf16")
    assert set(dtypes32) == {torch.float32} and set(dtypes16) == {torch.bfloat16}
    assert bf16 != fp32 and abs(bf16 - fp32) < 0.02 * fp32  # bf16 keeps ~3 significant digits


def test_an_unknown_precision_is_refused_before_training():
    model = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16; got 'fp16'"):
        fit(model, [torch.ones(1, 2)], lambda m, b: m(b).sum(),
            torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, progress=False,
            precision="fp16")

"""The incremental protocol runner on a tiny random-image split (CPU, seconds)."""

import os

import numpy as np
import pytest
import torch

from irbook.data.finegrained import ClassSplit, LabelledSet
from irbook.incremental import METHODS, IncrementalConfig, make_method, run_incremental
from irbook.incremental import runner as runner_module
from irbook.incremental.methods import FirstStage
from irbook.models import SmallCNN

TASKS = [np.array([0, 1, 2, 3]), np.array([4, 5])]


@pytest.fixture(autouse=True)
def tiny_backbone(monkeypatch):
    """A 2-block, 4-channel SmallCNN instead of the default one, on one thread (tensors this
    small gain nothing from more, and lose much on a busy machine): the tests stay fast."""
    monkeypatch.setattr(runner_module, "make_backbone",
                        lambda name, pretrained: SmallCNN(width=4, depth=2))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _split(n_classes=6, n_train=4, n_test=3, size=16):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(n_classes, size, size, 3))

    def images(n):
        noise = rng.integers(-30, 30, size=(n_classes, n, size, size, 3))
        stacked = np.clip(base[:, None] + noise, 0, 255).astype(np.uint8)
        return stacked.reshape(-1, size, size, 3), np.repeat(np.arange(n_classes), n)

    train, test = images(n_train), images(n_test)
    return ClassSplit("tiny", [f"c{i}" for i in range(n_classes)], LabelledSet(*train),
                      LabelledSet(*test), "thesis")


def _config(tmp_path, **overrides):
    settings = dict(image_size=16, embedding_dim=8, epochs_first=2, epochs_incremental=3,
                    lr=1e-3, backbone_lr_scale=1.0, classes_per_batch=2, samples_per_class=2,
                    device="cpu", backbone="smallcnn", pretrained=False, progress=False,
                    checkpoint_dir=str(tmp_path))
    settings.update(overrides)
    return IncrementalConfig(**settings)


def test_two_tasks_fill_the_lower_triangle_of_every_metric(tmp_path):
    result = run_incremental(_split(), TASKS, "finetune", _config(tmp_path))
    for metric in ("R@1", "R@2", "R@4", "mAP"):
        matrix = result.matrix(metric)
        assert matrix.shape == (2, 2)
        assert np.isnan(matrix[0, 1]) and np.isfinite(matrix[np.tril_indices(2)]).all()
        assert ((0 <= matrix[np.tril_indices(2)]) & (matrix[np.tril_indices(2)] <= 100)).all()
    assert set(result.before.task) == {1} and len(result.before) == 4
    assert set(result.old_new.subset) == {"old", "new"}
    # with one later task, "new" is that task's evaluation
    new = result.old_new[result.old_new.subset == "new"].set_index("metric").value
    assert new["R@1"] == result.matrix("R@1")[1, 1]
    table = result.old_new_average()
    assert list(table.columns) == ["old", "new", "average", "harmonic"]
    assert table.loc["mAP", "average"] == pytest.approx(
        (table.loc["mAP", "old"] + table.loc["mAP", "new"]) / 2)
    assert result.forgetting("R@1") == pytest.approx(
        result.matrix("R@1")[0, 0] - result.matrix("R@1")[1, 0])
    assert len(result.train_seconds) == 2 and min(result.train_seconds) > 0
    assert [len(h) for h in result.histories] == [2, 3]
    assert {"loss", "triplet"} <= set(result.histories[1][0])
    assert result.model.num_classes == 6


def test_the_first_stage_is_trained_once_and_shared_by_later_methods(tmp_path):
    split, config = _split(), _config(tmp_path)
    first = run_incremental(split, TASKS, "finetune", config)
    (cache,) = (tmp_path / "first_stage").glob("*.pt")
    stamp = os.stat(cache).st_mtime_ns
    second = run_incremental(split, TASKS, make_method("lwf"), config)
    assert not first.first_stage_cached and second.first_stage_cached
    assert os.stat(cache).st_mtime_ns == stamp
    assert second.train_seconds[0] == first.train_seconds[0]
    task0 = [r[r.after_task == 0].value.tolist() for r in (first.accuracy, second.accuracy)]
    assert task0[0] == task0[1]
    assert not list((tmp_path / "first_stage").glob("*.partial.pt"))


def _interrupt_after(monkeypatch, method_class, calls):
    original, count = method_class.loss, {"n": 0}

    def failing(self, model, batch, ctx):
        if ctx.task == 1:
            count["n"] += 1
            if count["n"] == calls:
                raise KeyboardInterrupt
        return original(self, model, batch, ctx)

    monkeypatch.setattr(method_class, "loss", failing)


@pytest.mark.parametrize("name", ["finetune", "alasso"])
def test_resuming_an_interrupted_stage_gives_the_uninterrupted_result(tmp_path, monkeypatch,
                                                                      name):
    split = _split()
    straight_method = make_method(name)
    straight = run_incremental(split, TASKS, straight_method, _config(tmp_path / "a"))
    with monkeypatch.context() as patch:
        _interrupt_after(patch, type(straight_method), calls=3)  # 1 batch per epoch: epoch 3
        with pytest.raises(KeyboardInterrupt):
            run_incremental(split, TASKS, name, _config(tmp_path / "b"))
    (partial,) = (tmp_path / "b").glob(f"{name}/*/task1.partial.pt")
    assert torch.load(partial, weights_only=True)["epoch"] == 2  # plain data, method state too
    resumed_method = make_method(name)
    resumed = run_incremental(split, TASKS, resumed_method, _config(tmp_path / "b"))
    for key, value in straight.model_state.items():
        assert np.array_equal(value.numpy(), resumed.model_state[key].numpy()), key
    assert straight.accuracy.equals(resumed.accuracy)
    if name == "alasso":  # the path integral of the interrupted epochs was restored too
        for key, value in straight_method.alasso.importance.items():
            assert np.array_equal(value.numpy(), resumed_method.alasso.importance[key].numpy())
    again = run_incremental(split, TASKS, name, _config(tmp_path / "b"))  # all from disk
    assert again.accuracy.equals(resumed.accuracy)


def test_an_interrupted_first_stage_resumes_exactly(tmp_path, monkeypatch):
    split, tasks = _split(), [np.array([0, 1, 2, 3])]
    straight = run_incremental(split, tasks, "finetune", _config(tmp_path / "a"))
    original, count = FirstStage.loss, {"n": 0}

    def failing(self, model, batch, ctx):
        count["n"] += 1
        if count["n"] == 3:  # two batches per epoch: the first batch of epoch 2
            raise KeyboardInterrupt
        return original(self, model, batch, ctx)

    with monkeypatch.context() as patch:
        patch.setattr(FirstStage, "loss", failing)
        with pytest.raises(KeyboardInterrupt):
            run_incremental(split, tasks, "finetune", _config(tmp_path / "b"))
    assert list((tmp_path / "b" / "first_stage").glob("*.partial.pt"))
    resumed = run_incremental(split, tasks, "finetune", _config(tmp_path / "b"))
    assert not resumed.first_stage_cached
    for key, value in straight.model_state.items():
        assert np.array_equal(value.numpy(), resumed.model_state[key].numpy()), key
    assert resumed.old_new.subset.tolist() == ["old"] * 4  # one task: no "new" subset
    with pytest.raises(ValueError, match="at least one task after task 0"):
        resumed.old_new_average()


def test_corr_fe_runs_three_tasks_and_uses_measured_bounds(tmp_path):
    tasks = [np.array([0, 1]), np.array([2, 3]), np.array([4, 5])]
    method = make_method("corr_fe")
    result = run_incremental(_split(), tasks, method, _config(tmp_path, epochs_incremental=1),
                             eval_ks=(1,))
    assert result.matrix("mAP").shape == (3, 3)
    assert len(method.bounds) == 1 and np.isfinite(method.bounds[0]).all()
    assert np.isfinite(result.forgetting_curve("mAP")[1:]).all()


def test_bad_runs_are_rejected_before_training(tmp_path):
    split = _split()
    with pytest.raises(ValueError, match="first_stage_ce_weight > 0"):
        run_incremental(split, TASKS, "lwf", _config(tmp_path, first_stage_ce_weight=0.0))
    with pytest.raises(ValueError, match="disjoint"):
        run_incremental(split, [np.array([0, 1]), np.array([1, 2])], "finetune",
                        _config(tmp_path))
    with pytest.raises(ValueError, match="method must be one of"):
        run_incremental(split, TASKS, "icarl", _config(tmp_path))
    used = make_method("finetune")
    run_incremental(split, [np.array([0, 1])], used, _config(tmp_path, epochs_first=0))
    with pytest.raises(ValueError, match="already run"):
        run_incremental(split, TASKS, used, _config(tmp_path))
    with pytest.raises(ValueError, match="samples_per_class must be >= 2"):
        _config(tmp_path, samples_per_class=1)
    with pytest.raises(ValueError, match="backbone must be one of"):
        _config(tmp_path, backbone="vit")


def test_top1_accuracy_over_seen_classes_is_recorded_after_every_task(tmp_path):
    tasks = [np.array([0, 1]), np.array([2, 3]), np.array([4, 5])]
    result = run_incremental(_split(), tasks, "finetune", _config(tmp_path), eval_top1=True)
    top1 = result.matrix("top-1")
    assert np.isfinite(top1[np.tril_indices(3)]).all() and np.isnan(top1[0, 1])
    # the classifier cannot predict a task before it has learned it
    assert "top-1" not in set(result.before.metric) and "R@1" in set(result.before.metric)
    assert list(result.seen.after_task) == [0, 1, 2]
    # every task has the same number of test images: "seen" is the mean of the row
    for step in range(3):
        expected = np.mean(top1[step, : step + 1])
        assert result.seen.value[step] == pytest.approx(expected)


def test_seen_top1_is_the_share_of_argmax_hits_on_a_hand_made_model(tmp_path):
    """A classifier that always predicts output 0 is right exactly on class 0's images."""
    split, config = _split(), _config(tmp_path, epochs_incremental=1)
    method = make_method("finetune")
    result = run_incremental(split, TASKS, method, config, eval_top1=True)
    model = result.model
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[0] = 1.0
    run = runner_module._Run(split=split, tasks=TASKS, config=config,
                             device=torch.device("cpu"),
                             factory=runner_module.default_dataset_factory, ks=(1,),
                             index_of=np.arange(6), accuracy={}, before={}, top1=True)
    rows = {(r["kind"], r["task"], r["metric"]): r["value"] for r in run.evaluate(model, 1)}
    assert rows[("seen", -1, "top-1")] == pytest.approx(100 / 6)
    assert rows[("after", 0, "top-1")] == pytest.approx(100 / 4)
    assert rows[("after", 1, "top-1")] == 0.0


def test_tracking_the_old_classes_records_a_curve_without_changing_training(tmp_path):
    split = _split()
    plain = run_incremental(split, TASKS, "finetune", _config(tmp_path / "a"))
    tracked = run_incremental(split, TASKS, "finetune", _config(tmp_path / "b"),
                              track_every=2)
    for key, value in plain.model_state.items():
        torch.testing.assert_close(tracked.model_state[key], value)
    curve = tracked.training_curve("mAP")
    # epochs 2 and 3 (every 2nd and the last), after the starting point at epoch 0
    assert list(curve.epoch) == [0, 2, 3] and set(curve.task) == {1}
    assert curve.value.iloc[0] == pytest.approx(tracked.matrix("mAP")[0, 0])
    assert curve.value.iloc[-1] == pytest.approx(tracked.matrix("mAP")[1, 0])
    with pytest.raises(ValueError, match="track_every > 0"):
        plain.training_curve("mAP")
    with pytest.raises(ValueError, match="track_every"):
        run_incremental(split, TASKS, "finetune", _config(tmp_path / "c"), track_every=-1)


def test_chapter_tables_of_tracked_top1_runs(tmp_path):
    from irbook.incremental import experiments as ex

    split, config = _split(), _config(tmp_path)
    results = ex.run_methods(split, TASKS, {"ft": ("finetune", {}), "l2": ("l2", {})}, config,
                             eval_top1=True, track_every=1)
    seen = ex.seen_accuracy(results)
    assert list(seen.columns) == ["method", "after_task", "classes_seen", "value"]
    assert seen.classes_seen.tolist() == [4, 6, 4, 6]
    during = ex.training_curves(results, "R@1")
    assert during.groupby("method").epoch.apply(list).tolist() == [[0, 1, 2, 3]] * 2
    curves, areas = ex.pr_curves(results, split, config)
    assert set(curves.classes) == {"old", "new"} and len(curves) == 2 * 2 * 21
    assert areas[("ft", "old")].shape == (12,) and areas[("ft", "new")].shape == (6,)
    assert curves.precision.between(0, 100).all()
    # interpolated precision never rises with recall
    for _, curve in curves.groupby(["method", "classes"]):
        assert (np.diff(curve.sort_values("recall").precision.to_numpy()) <= 1e-9).all()
    plain = ex.run_methods(split, TASKS, {"ft": ("finetune", {})}, config)
    with pytest.raises(ValueError, match="eval_top1"):
        ex.seen_accuracy(plain)


# --------------------------------------------------------------------------- per-query values

THREE_TASKS = [np.array([0, 1]), np.array([2, 3]), np.array([4, 5])]


def test_per_query_values_average_to_every_recorded_value(tmp_path):
    split = _split()
    result = run_incremental(split, THREE_TASKS, "finetune", _config(tmp_path), eval_top1=True)
    for metric in ("R@1", "R@2", "mAP", "top-1"):
        matrix = result.matrix(metric)
        for i, j in zip(*np.tril_indices(3), strict=True):
            values = result.query_values(metric, after_task=int(i), task=int(j))
            assert values.shape == (6,)  # 2 classes x 3 test images, in test-set order
            assert np.mean(values) == pytest.approx(matrix[i, j])
    before = result.before_vector("R@1")
    for task in (1, 2):
        values = result.query_values("R@1", task=task, before=True)
        assert set(np.unique(values)) <= {0.0, 100.0}
        assert np.mean(values) == pytest.approx(before[task])
    old_new = result.old_new.set_index(["subset", "metric"]).value
    for subset, size in (("old", 6), ("new", 12)):
        values = result.query_values("mAP", subset=subset)
        assert values.shape == (size,) and np.mean(values) == pytest.approx(old_new[subset, "mAP"])
    np.testing.assert_array_equal(result.query_values("R@1", subset="old"),
                                  result.query_values("R@1", after_task=2, task=0))


def test_per_query_values_are_checked_and_query_sets_pair_methods(tmp_path):
    split, config = _split(), _config(tmp_path)
    first = run_incremental(split, THREE_TASKS, "finetune", config)
    other = run_incremental(split, THREE_TASKS, "l2", config)
    for task in range(3):
        assert first.query_set(task=task) == other.query_set(task=task)
    assert len({first.query_set(task=t) for t in range(3)} | {first.query_set(subset="new")}) == 4
    assert first.query_set(subset="old") == first.query_set(task=0)
    assert first.query_set(task=0).startswith("tiny/thesis/")
    changed = ClassSplit("tiny", split.class_names, split.train,
                         LabelledSet(split.test.items[::-1].copy(), split.test.labels), "thesis")
    assert run_incremental(changed, THREE_TASKS[:1], "finetune", config).query_set(task=0) != \
        first.query_set(task=0)
    with pytest.raises(ValueError, match="after_task and task"):
        first.query_values("R@1", task=1)
    with pytest.raises(ValueError, match="either subset"):
        first.query_values("R@1", task=1, subset="old")
    with pytest.raises(ValueError, match="subset must be 'old' or 'new'"):
        first.query_values("R@1", subset="all")
    with pytest.raises(ValueError, match="no per-query values"):
        first.query_values("R@1", after_task=0, task=1)
    with pytest.raises(ValueError, match="metric must be one of"):
        first.query_values("top-1", after_task=1, task=1)
    with pytest.raises(ValueError, match="exactly one of task and subset"):
        first.query_set()


def test_accuracy_change_is_the_reading_of_corr_fe(tmp_path):
    method = make_method("corr_fe")
    result = run_incremental(_split(), THREE_TASKS, method, _config(tmp_path, epochs_incremental=1),
                             eval_ks=(1,))
    assert method.bounds == [pytest.approx(result.accuracy_change(1, "mAP"))]
    acc, before = result.matrix("mAP"), result.before_vector("mAP")
    assert result.accuracy_change(2) == pytest.approx(
        ((np.mean(acc[2, :2]) - np.mean(acc[1, :2])) / np.mean(acc[1, :2]),
         (acc[2, 2] - before[2]) / before[2]))
    # a rerun reads every stage from disk and gives the bounds back with the method state
    cached_method = make_method("corr_fe")
    run_incremental(_split(), THREE_TASKS, cached_method, _config(tmp_path, epochs_incremental=1),
                    eval_ks=(1,))
    assert cached_method.bounds == method.bounds


def test_every_method_writes_plain_checkpoints_that_give_back_the_same_values(tmp_path):
    split, config = _split(), _config(tmp_path, epochs_incremental=1)
    for name in sorted(METHODS):
        fresh = run_incremental(split, THREE_TASKS, name, config, eval_ks=(1,))
        stages = sorted((tmp_path / name).glob("*/task*.pt"))
        assert [p.name for p in stages] == ["task1.pt", "task2.pt"], name
        for path in stages:
            state = torch.load(path, map_location="cpu", weights_only=True)
            assert {"model", "method_state", "rows", "seconds", "history"} <= set(state)
        cached = run_incremental(split, THREE_TASKS, name, config, eval_ks=(1,))
        assert cached.accuracy.equals(fresh.accuracy), name
        np.testing.assert_array_equal(cached.query_values("mAP", subset="new"),
                                      fresh.query_values("mAP", subset="new"))
    (first,) = (tmp_path / "first_stage").glob("*.pt")
    assert "alasso" in torch.load(first, weights_only=True)["method_state"]


def test_a_corrupted_stage_file_is_moved_aside_and_the_stage_retrained(tmp_path):
    split, config = _split(), _config(tmp_path)
    straight = run_incremental(split, TASKS, "ewc", config)
    (stage,) = (tmp_path / "ewc").glob("*/task1.pt")
    (first,) = (tmp_path / "first_stage").glob("*.pt")
    for path in (stage, first):
        path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="could not be read") as caught:
        again = run_incremental(split, TASKS, "ewc", config)
    assert len(caught) == 2 and not again.first_stage_cached
    assert stage.with_name("task1.pt.unreadable").is_file() and stage.is_file()
    assert first.with_name(first.name + ".unreadable").is_file() and first.is_file()
    for key, value in straight.model_state.items():
        assert np.array_equal(value.numpy(), again.model_state[key].numpy()), key
    assert again.accuracy.equals(straight.accuracy)


def _with_train(split, items, labels):
    return ClassSplit(split.name, split.class_names, LabelledSet(items, labels), split.test,
                      split.split)


def test_the_first_stage_cache_follows_the_images_and_labels(tmp_path):
    split, config, tasks = _split(), _config(tmp_path), [np.array([0, 1, 2, 3])]
    assert not run_incremental(split, tasks, "finetune", config).first_stage_cached
    assert run_incremental(_split(), tasks, "finetune", config).first_stage_cached  # same data
    images = split.train.items.copy()
    images[0, 0, 0] = 255 - images[0, 0, 0]
    labels = split.train.labels.copy()
    labels[[0, 4]] = labels[[4, 0]]  # two training images of classes 0 and 1 swap labels
    for changed in (_with_train(split, images, split.train.labels),
                    _with_train(split, split.train.items, labels)):
        assert not run_incremental(changed, tasks, "finetune", config).first_stage_cached
    assert len(list((tmp_path / "first_stage").glob("*.pt"))) == 3
    assert run_incremental(split, tasks, "finetune", config).first_stage_cached


def test_kd_mmd_without_distillation_runs_on_a_first_stage_without_cross_entropy(tmp_path):
    config = _config(tmp_path, first_stage_ce_weight=0.0, epochs_incremental=1)
    with pytest.raises(ValueError, match="first_stage_ce_weight > 0"):
        run_incremental(_split(), TASKS, "kd_mmd", config)
    result = run_incremental(_split(), TASKS, make_method("kd_mmd", alpha=0.0, ce_weight=0.0),
                             config)
    assert {"triplet", "mmd"} == set(result.histories[1][0]) - {"epoch", "loss", "seconds"}


def test_the_first_stage_learns_with_the_configured_metric_loss(tmp_path, monkeypatch):
    seen = []
    original = FirstStage.loss

    def spy(self, model, batch, ctx):
        seen.append(self.metric_loss)
        return original(self, model, batch, ctx)

    monkeypatch.setattr(FirstStage, "loss", spy)
    triplet = run_incremental(_split(), TASKS[:1], "finetune", _config(tmp_path))
    pair = run_incremental(_split(), TASKS[:1], "finetune",
                           _config(tmp_path, first_stage_metric_loss="pair"))
    assert set(seen) == {"triplet", "pair"}
    assert not np.allclose(triplet.query_values("mAP", after_task=0, task=0),
                           pair.query_values("mAP", after_task=0, task=0))
    with pytest.raises(ValueError, match="first_stage_metric_loss must be one of triplet, pair"):
        _config(tmp_path, first_stage_metric_loss="contrastive")


def test_the_first_stage_is_evaluated_once_for_every_method_that_shares_it(tmp_path, monkeypatch):
    calls = []
    original = runner_module._Run.evaluate

    def counting(self, model, stage):
        calls.append(stage)
        return original(self, model, stage)

    monkeypatch.setattr(runner_module._Run, "evaluate", counting)
    split = _split()
    first = run_incremental(split, TASKS, "finetune", _config(tmp_path, first_stage_ce_weight=0.5))
    second = run_incremental(split, TASKS, "lwf", _config(tmp_path, first_stage_ce_weight=0.5))
    assert calls == [0, 1, 1]  # stage 0 once, stage 1 once per method
    np.testing.assert_array_equal(first.query_values("R@1", after_task=0, task=0),
                                  second.query_values("R@1", after_task=0, task=0))

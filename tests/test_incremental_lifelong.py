"""The lifelong (dataset-incremental) protocol of chapter 7 on tiny random-image datasets."""

import math
import warnings
from dataclasses import dataclass, replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from irbook import losses
from irbook.data.finegrained import LabelledSet
from irbook.incremental import lifelong as lifelong_module
from irbook.incremental import runner as runner_module
from irbook.incremental.evaluation import default_dataset_factory, embed, per_query_metrics
from irbook.incremental.lifelong import (
    LifelongConfig,
    LifelongResult,
    noise_sensitivity,
    run_lifelong,
)
from irbook.incremental.lifelong_methods import (
    METHODS,
    TABLE_ROWS,
    LifelongMethod,
    add_probe,
    distillation_term,
    fit_probe,
    lifelong_loss,
    method_label,
    mixed_batches,
    on_the_fly_teacher,
    training_set,
)
from irbook.models import EmbeddingNet, SmallCNN


@pytest.fixture(autouse=True)
def tiny_backbone(monkeypatch):
    """A 2-block, 4-channel SmallCNN on one thread, so that the runs take a fraction of a
    second."""
    monkeypatch.setattr(runner_module, "make_backbone",
                        lambda name, pretrained: SmallCNN(width=4, depth=2))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass(frozen=True, eq=False)
class Task:
    """A LifelongTask-like dataset (name, class_names and three LabelledSets)."""

    name: str
    class_names: list
    seen_train: LabelledSet
    seen_test: LabelledSet
    unseen: LabelledSet


def _task(name, seed, n_seen=3, n_unseen=2, n_train=4, n_test=3, size=16):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(n_seen + n_unseen, size, size, 3))

    def images(classes, n):
        noise = rng.integers(-30, 30, size=(len(classes), n, size, size, 3))
        stacked = np.clip(base[classes][:, None] + noise, 0, 255).astype(np.uint8)
        return LabelledSet(stacked.reshape(-1, size, size, 3), np.repeat(classes, n))

    seen, unseen = np.arange(n_seen), np.arange(n_seen, n_seen + n_unseen)
    return Task(name, [f"{name}{i}" for i in range(n_seen + n_unseen)], images(seen, n_train),
                images(seen, n_test), images(unseen, n_test))


TASKS = [_task("a", 0), _task("b", 1)]


def _config(tmp_path=None, **overrides):
    settings = dict(image_size=16, embedding_dim=8, epochs_first=2, epochs_incremental=2,
                    lr=1e-3, backbone_lr_scale=1.0, classes_per_batch=2, samples_per_class=2,
                    generated_images=4, generated_classes=2, inversion="tiny-inversion",
                    eval_ks=(1, 2), device="cpu", backbone="smallcnn", pretrained=False,
                    progress=False, checkpoint_dir=None if tmp_path is None else str(tmp_path))
    settings.update(overrides)
    return LifelongConfig(**settings)


class FakeGenerator:
    """Deterministic stand-in for generate_representatives that records its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, teacher, n_images, n_classes, config):
        self.calls.append((teacher, n_images, n_classes, config))
        assert not teacher.training
        rng = np.random.default_rng(len(self.calls))
        images = rng.integers(0, 255, size=(n_images, 16, 16, 3), dtype=np.uint8)
        return SimpleNamespace(images=images,
                               labels=np.repeat(np.arange(n_classes), n_images // n_classes),
                               history=[{"iteration": 1, "total": np.float32(0.5)}],
                               snapshots=[(1, images[:2])])


# --------------------------------------------------------------------------- methods


def test_registry_covers_every_table_row_and_maps_the_ablation_to_the_main_rows():
    for rows in TABLE_ROWS.values():
        assert set(rows) <= set(METHODS)
    assert METHODS["case1"] == METHODS["kd_kl"] and METHODS["case2"] == METHODS["kdbn_kl"]
    assert METHODS["ours"] == METHODS["dkd_kl"]
    columns = {"ft": "L_s", "case1": "L_s + L_kd1", "case2": "L_s + L_kd1 + L_g",
               "case3": "L_s + L_kd2 + L_te2", "case4": "L_kd1 + L_g + L_kd2 + L_te2",
               "case5": "L_s + L_kd1 + L_kd2 + L_te2",
               "ours": "L_s + L_kd1 + L_g + L_kd2 + L_te2"}
    for name, terms in columns.items():
        assert " + ".join(METHODS[name].terms) == terms
    assert METHODS["dkd_l1"].dual_distill == "l1" and METHODS["case3"].distill is None
    assert method_label("kdbn_kl", "7.3") == "KD + KL-divergence †"
    assert method_label("dkd_mmd", "7.3") == "DKD + L_mmd loss ‡"
    assert method_label("ft", "7.3") == "SFT" and method_label("ft") == "FT"
    assert method_label("kd_kl", "7.6") == "Case 1: L_s + L_kd1"
    assert method_label("dkd_l2") == "DKD + BN statistics: L2 loss"
    with pytest.raises(ValueError, match="table must be"):
        method_label("ft", "7.9")


@pytest.mark.parametrize("kwargs, message", [
    (dict(distill="l3"), "distill must be None or one of"),
    (dict(dual=True, dual_distill="cos"), "dual_distill must be one of"),
    (dict(joint=True, distill="kl"), "joint is the reference"),
    (dict(student_triplet=False), "nothing trains the student"),
    (dict(bn_images=1), "bn_images must be True or False"),
])
def test_method_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LifelongMethod(**kwargs)


@pytest.mark.parametrize("overrides, message", [
    (dict(lambda_kd1=float("nan")), "lambda_kd1 must be a finite number >= 0"),
    (dict(lambda_s=-1.0), "lambda_s must be"),
    (dict(kd_temperature=0.0), "kd_temperature must be"),
    (dict(margin=-0.1), "margin must be >= 0"),
    (dict(triplet_distance="l1"), "triplet_distance must be one of"),
    (dict(generated_images=3), "generated_images must be >= 2 x generated_classes"),
    (dict(eval_ks=(0,)), "eval_ks must be"),
    (dict(backbone="alexnet"), "backbone must be one of"),
])
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        _config(**overrides)


def test_config_defaults_are_the_thesis_values():
    config = LifelongConfig(device="cpu")
    assert (config.embedding_dim, config.margin, config.lr,
            config.classes_per_batch * config.samples_per_class) == (512, 0.5, 1e-5, 32)
    assert config.lr * config.backbone_lr_scale == pytest.approx(1e-6)
    assert (config.lambda_s, config.lambda_te2, config.lambda_kd1, config.lambda_kd2) == (
        1, 1, 80, 20)
    assert config.train_bn and config.epochs_first == 1500
    assert config.incremental().lr == config.lr


# --------------------------------------------------------------------------- losses


def test_kl_term_is_the_gram_kl_written_out():
    torch.manual_seed(0)
    student, teacher = F.normalize(torch.randn(5, 4), dim=1), F.normalize(torch.randn(5, 4), dim=1)
    temperature, total = 4.0, 0.0
    for i in range(5):
        p_s = torch.softmax(torch.stack([student[i] @ student[j] for j in range(5)]) / 4.0, 0)
        p_t = torch.softmax(torch.stack([teacher[i] @ teacher[j] for j in range(5)]) / 4.0, 0)
        total += sum(float(p_s[j] * math.log(p_s[j] / p_t[j])) for j in range(5))
    expected = total * temperature**2 / 5
    assert distillation_term("kl", student, teacher, temperature).item() == pytest.approx(
        expected, rel=1e-5)
    l1 = sum(float((student[i] - teacher[i]).abs().sum()) for i in range(5)) / 5
    assert distillation_term("l1", student, teacher).item() == pytest.approx(l1, rel=1e-5)
    l2 = sum(float((student[i] - teacher[i]).pow(2).sum().sqrt()) for i in range(5)) / 5
    assert distillation_term("l2", student, teacher).item() == pytest.approx(l2, rel=1e-5)
    assert distillation_term("mmd", student, teacher).item() == pytest.approx(
        losses.gaussian_mmd(teacher, student, squared=False).item())
    with pytest.raises(ValueError, match="kind must be one of"):
        distillation_term("cos", student, teacher)


def _nets(seed=0):
    torch.manual_seed(seed)
    nets = [EmbeddingNet(SmallCNN(width=4, depth=2), dim=8) for _ in range(3)]
    teacher = nets[1].eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return nets[0], teacher, nets[2]


def _batch():
    torch.manual_seed(1)
    return torch.randn(8, 3, 16, 16), torch.tensor([0, 0, 1, 1, 3, 3, 4, 4])  # 3, 4: generated


def _grads(module, loss):
    module.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for p in module.parameters()]


def test_the_full_objective_is_the_weighted_sum_of_its_terms():
    student, teacher, otf = _nets()
    images, labels = _batch()
    config, real = _config(), labels < 3
    total, parts = lifelong_loss(student, images, labels, METHODS["dkd_kl"], config, 3, teacher,
                                 otf)
    embeddings, frozen, assistant = student(images), teacher(images), otf(images[real])
    ls = losses.triplet_hard_loss(embeddings, labels, 0.5, distance="squared_l2")
    kd1 = losses.correlation_distillation(embeddings, frozen, 4.0)
    te2 = losses.triplet_hard_loss(assistant, labels[real], 0.5, distance="squared_l2")
    kd2 = losses.correlation_distillation(embeddings[real], assistant, 4.0)
    for name, value in {"L_s": ls, "L_kd1": kd1, "L_te2": te2, "L_kd2": kd2}.items():
        assert parts[name] == pytest.approx(value.item(), rel=1e-5), name
    assert total.item() == pytest.approx((ls + 80 * kd1 + 20 * kd2 + te2).item(), rel=1e-5)
    assert min(parts.values()) > 0


@pytest.mark.parametrize("flag, method", [
    ("student_triplet", LifelongMethod(distill="kl", student_triplet=False)),
    ("distill", LifelongMethod()),
    ("dual", LifelongMethod(distill="kl")),
])
def test_each_term_changes_the_student_gradient(flag, method):
    student, teacher, otf = _nets()
    images, labels = _batch()
    full = LifelongMethod(distill="kl", dual=True)
    args = (_config(), 3, teacher, otf)
    with_term = _grads(student, lifelong_loss(student, images, labels, full, *args)[0])
    without = _grads(student, lifelong_loss(student, images, labels, method, *args)[0])
    assert any(not torch.allclose(a, b) for a, b in zip(with_term, without, strict=True))


def test_kd2_never_reaches_the_on_the_fly_teacher():
    student, teacher, otf = _nets()
    images, labels = _batch()
    method = METHODS["dkd_kl"]
    with_kd2 = _grads(otf, lifelong_loss(student, images, labels, method, _config(), 3, teacher,
                                         otf)[0])
    no_kd2 = _grads(otf, lifelong_loss(student, images, labels, method,
                                       _config(lambda_kd2=0.0), 3, teacher, otf)[0])
    real = labels < 3
    alone = _grads(otf, losses.triplet_hard_loss(otf(images[real]), labels[real], 0.5,
                                                 distance="squared_l2"))
    for a, b, c in zip(with_kd2, no_kd2, alone, strict=True):
        assert torch.equal(a, b) and torch.allclose(a, c, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in with_kd2)
    # ... while the student's gradient does depend on L_kd2
    s_with = _grads(student, lifelong_loss(student, images, labels, method, _config(), 3,
                                           teacher, otf)[0])
    s_without = _grads(student, lifelong_loss(student, images, labels, method,
                                              _config(lambda_kd2=0.0), 3, teacher, otf)[0])
    assert any(not torch.allclose(a, b) for a, b in zip(s_with, s_without, strict=True))


# --------------------------------------------------------------------------- data


class _Raw(Dataset):
    """Untransformed (uint8 image, label) items, to compare the mixed set with its inputs."""

    def __init__(self, labelled, size, train):
        self.labelled = labelled

    def __len__(self):
        return len(self.labelled)

    def __getitem__(self, i):
        return self.labelled.items[i], int(self.labelled.labels[i])


def test_the_mixed_set_appends_the_generated_images_with_offset_labels():
    fake = FakeGenerator()(_nets()[1], 4, 2, None)
    dataset, real, generated = training_set(TASKS, 1, False, fake, 16, _Raw)
    n_real = len(TASKS[1].seen_train)
    assert len(dataset) == n_real + 4 and np.array_equal(real, TASKS[1].seen_train.labels)
    assert np.array_equal(generated, fake.labels + 3)
    for i in range(4):
        image, label = dataset[n_real + i]
        assert np.array_equal(image, fake.images[i]) and label == fake.labels[i] + 3
    joint, joint_labels, none = training_set(TASKS, 1, True, None, 16, _Raw)
    assert none is None and len(joint) == 2 * n_real
    assert np.array_equal(joint_labels, np.concatenate([TASKS[0].seen_train.labels,
                                                        TASKS[1].seen_train.labels + 3]))
    assert joint[n_real][1] == 3
    batches = list(mixed_batches(_config(), real, generated, seed=0))
    assert len(batches) == 2  # ceil(3 classes / P = 2)
    for batch in batches:
        assert all(i < n_real for i in batch[:4]) and all(i >= n_real for i in batch[4:])
        assert len(batch) == 8 and len({int(dataset[i][1]) for i in batch[4:]}) == 2


# --------------------------------------------------------------------------- the run


def test_on_the_fly_teacher_starts_from_the_pretrained_backbone_not_the_teacher(tmp_path):
    config = _config(tmp_path)
    initial = runner_module.build_model(config.incremental())
    otf = on_the_fly_teacher(config, 1)
    for key, value in initial.backbone.state_dict().items():
        assert torch.equal(value, otf.backbone.state_dict()[key]), key
    assert not torch.equal(initial.embedding.weight, otf.embedding.weight)
    assert torch.equal(otf.embedding.weight, on_the_fly_teacher(config, 1).embedding.weight)
    assert not torch.equal(otf.embedding.weight, on_the_fly_teacher(config, 2).embedding.weight)
    trained = run_lifelong(TASKS[:1], "ft", config).model
    assert not torch.equal(trained.backbone.features[0].weight, otf.backbone.features[0].weight)


def test_the_student_starts_as_a_copy_of_the_frozen_teacher(tmp_path):
    first = run_lifelong(TASKS[:1], "ft", _config(tmp_path))
    result = run_lifelong(TASKS, "case5", _config(tmp_path, epochs_incremental=0))
    for key, value in first.model_state.items():
        assert torch.equal(value, result.model_state[key]), key
    table = result.accuracy.set_index(["after_task", "dataset", "subset", "metric"]).value
    assert table.loc[0].equals(table.loc[1])


def _two_task_run(tmp_path, method="dkd_kl", generator=None, **overrides):
    generator = generator or FakeGenerator()
    return run_lifelong(TASKS, method, _config(tmp_path, **overrides), generator=generator)


def test_a_dkd_run_evaluates_every_dataset_after_every_task(tmp_path):
    generator = FakeGenerator()
    result = _two_task_run(tmp_path, generator=generator)
    assert result.name == "dkd_kl" and result.cached == [False, False]
    assert len(result.accuracy) == 2 * 2 * 2 * 3  # after x dataset x subset x (R@1, R@2, mAP)
    assert set(result.accuracy.metric) == {"R@1", "R@2", "mAP"}
    assert set(result.teacher_accuracy.after_task) == {1}
    assert set(result.teacher_accuracy.dataset) == {"b"}
    assert len(generator.calls) == 1 and generator.calls[0][1:3] == (4, 2)
    assert result.generated[1].images.shape == (4, 16, 16, 3)
    assert result.generated[1].snapshots[0][0] == 1
    assert {"L_s", "L_kd1", "L_kd2", "L_te2", "loss"} <= set(result.histories[1][0])
    assert set(result.histories[0][0]) >= {"L_s"} and "L_kd1" not in result.histories[0][0]
    assert len(result.train_seconds) == 2 and min(result.train_seconds) > 0
    # the other methods that share the teacher after task 0 reuse its generated images
    again = _two_task_run(tmp_path, "kdbn_l2", generator=generator)
    assert len(generator.calls) == 1 and again.cached == [True, False]
    assert np.array_equal(again.generated[1].images, result.generated[1].images)
    assert len(result.h_table(model="teacher")) == 1
    without_images = _two_task_run(tmp_path, "kd_l2", generator=generator)
    assert any(not torch.equal(v, without_images.model_state[k])
               for k, v in again.model_state.items())
    with pytest.raises(ValueError, match="only dual methods"):
        again.h_table(model="teacher")


def test_evaluation_equals_a_direct_per_query_metrics_call(tmp_path):
    result = _two_task_run(tmp_path, "kd_l1")
    for subset, labelled in (("seen", TASKS[0].seen_test), ("unseen", TASKS[0].unseen)):
        embeddings, labels = embed(result.model, default_dataset_factory(labelled, 16, False))
        direct = per_query_metrics(embeddings, labels, (1, 2))
        values = result.query_values(1, "a", subset, "R@1")
        assert np.array_equal(values, direct["R@1"])
        row = result.accuracy.query(
            f"after_task == 1 and dataset == 'a' and subset == '{subset}' and metric == 'R@1'")
        assert row.value.item() == pytest.approx(direct["R@1"].mean())
    table = result.h_table(after_task=-1)
    assert list(table.columns) == ["after_task", "dataset", "s", "u", "H"]
    for _, r in table.iterrows():
        expected = 0.0 if r.s + r.u == 0 else 2 * r.s * r.u / (r.s + r.u)
        assert r.H == pytest.approx(expected)
    with pytest.raises(ValueError, match="subset must be one of"):
        result.query_values(1, "a", "all", "R@1")
    with pytest.raises(ValueError, match="dataset must be one of"):
        result.query_values(1, "c", "seen", "R@1")


def _result_with(values):
    rows = [{"after_task": a, "dataset": "a", "subset": s, "metric": "R@1", "value": v}
            for a, (seen, unseen) in enumerate(values)
            for s, v in (("seen", seen), ("unseen", unseen))]
    empty = pd.DataFrame(columns=["after_task", "dataset", "subset", "metric", "value"])
    return LifelongResult("ft", METHODS["ft"], ["a", "b", "c"][: len(values)],
                          pd.DataFrame(rows), empty, {}, {}, [], [], [], [], None, {})


def test_h_is_the_harmonic_mean_and_zero_without_recall():
    table = _result_with([(60.0, 40.0), (0.0, 0.0), (50.0, 0.0)]).h_table()
    assert table.H.tolist() == pytest.approx([48.0, 0.0, 0.0])


def test_forgetting_is_the_drop_from_right_after_the_own_task():
    drop = _result_with([(60.0, 40.0), (50.0, 42.0), (30.0, 20.0)]).forgetting("a")
    seen = drop[drop.subset == "seen"]
    assert seen.after_task.tolist() == [0, 1, 2] and seen["drop"].tolist() == [0, 10, 30]
    assert drop[drop.subset == "unseen"]["drop"].tolist() == [0, -2, 20]


def test_a_rerun_loads_the_finished_tasks_instead_of_training(tmp_path, monkeypatch):
    first = _two_task_run(tmp_path)
    monkeypatch.setattr(lifelong_module, "fit", lambda *a, **k: pytest.fail("trained again"))
    second = _two_task_run(tmp_path)
    assert second.cached == [True, True]
    assert first.accuracy.equals(second.accuracy)
    assert first.teacher_accuracy.equals(second.teacher_accuracy)
    assert first.train_seconds == second.train_seconds
    for key, value in first.model_state.items():
        assert torch.equal(value, second.model_state[key])


def test_a_corrupted_task_checkpoint_is_moved_aside_and_retrained(tmp_path):
    first = _two_task_run(tmp_path, "kd_mmd")
    (path,) = (tmp_path / "lifelong" / "tasks").glob("task1-*.pt")
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="could not be read"):
        second = _two_task_run(tmp_path, "kd_mmd")
    assert second.cached == [True, False]
    assert path.with_name(path.name + ".unreadable").exists() and path.exists()
    assert first.accuracy.equals(second.accuracy)


def test_an_interrupted_task_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    straight = _two_task_run(tmp_path / "a", "dkd_l2")
    original, count = lifelong_module.lifelong_loss, {"n": 0}

    def failing(student, images, labels, method, *args):
        if method.dual:
            count["n"] += 1
            if count["n"] == 3:  # 2 batches per epoch: inside epoch 2
                raise KeyboardInterrupt
        return original(student, images, labels, method, *args)

    with monkeypatch.context() as patch:
        patch.setattr(lifelong_module, "lifelong_loss", failing)
        with pytest.raises(KeyboardInterrupt):
            _two_task_run(tmp_path / "b", "dkd_l2")
    (partial,) = (tmp_path / "b" / "lifelong" / "tasks").glob("task1-*.partial.pt")
    assert torch.load(partial, weights_only=True)["epoch"] == 1
    resumed = _two_task_run(tmp_path / "b", "dkd_l2")
    for key, value in straight.model_state.items():
        assert torch.equal(value, resumed.model_state[key]), key
    assert straight.accuracy.equals(resumed.accuracy)
    assert straight.teacher_accuracy.equals(resumed.teacher_accuracy)


def test_same_seed_same_numbers_without_a_checkpoint_dir():
    runs = [run_lifelong(TASKS, "joint", _config()) for _ in range(2)]
    assert runs[0].accuracy.equals(runs[1].accuracy)
    other = run_lifelong(TASKS, "joint", _config(seed=1))
    assert not other.accuracy.value.equals(runs[0].accuracy.value)


def test_run_validation():
    with pytest.raises(ValueError, match="method must be one of"):
        run_lifelong(TASKS, "ewc", _config())
    with pytest.raises(ValueError, match="task names must be distinct"):
        run_lifelong([TASKS[0], TASKS[0]], "ft", _config())
    bad = Task("c", [], LabelledSet(TASKS[0].seen_train.items, TASKS[0].seen_train.labels + 1),
               TASKS[0].seen_test, TASKS[0].unseen)
    with pytest.raises(ValueError, match="labels must be 0..n_seen-1"):
        run_lifelong([bad], "ft", _config())
    custom = LifelongMethod(distill="l1", bn_images=True, dual=True, dual_distill="kl")
    assert run_lifelong(TASKS[:1], custom, _config()).name == "custom"
    assert run_lifelong(TASKS[:1], LifelongMethod(distill="kl"), _config()).name == "kd_kl"


# --------------------------------------------------------------------------- Fig. 7.8


def test_noise_sensitivity_measures_retrieval_and_classification_under_noise():
    torch.manual_seed(0)
    model = EmbeddingNet(SmallCNN(width=4, depth=2), dim=8, num_classes=3)
    labelled = TASKS[0].seen_test
    table = noise_sensitivity(model, labelled, [0.0, 0.5], image_size=16, seed=3)
    assert list(table.columns) == ["sigma", "metric", "value", "degradation"]
    clean = table[table.sigma == 0].set_index("metric")
    embeddings, labels = embed(model, default_dataset_factory(labelled, 16, False))
    assert clean.loc["R@1", "value"] == pytest.approx(
        per_query_metrics(embeddings, labels, (1,))["R@1"].mean())
    with torch.no_grad():
        images = torch.stack([default_dataset_factory(labelled, 16, False)[i][0]
                              for i in range(len(labelled))])
        logits = model.eval().forward_with_logits(images)[1]
    top1 = 100 * (logits.argmax(1).numpy() == labels).mean()
    assert clean.loc["top-1", "value"] == pytest.approx(top1)
    assert (clean.degradation == 0).all()
    again = noise_sensitivity(model, labelled, [0.0, 0.5], image_size=16, seed=3)
    assert table.equals(again)
    with pytest.raises(ValueError, match="noise_sigmas must be"):
        noise_sensitivity(model, labelled, [-0.1], image_size=16)
    with pytest.raises(ValueError, match="classifier head"):
        noise_sensitivity(torch.nn.Identity(), labelled, [0.1], image_size=16)


def test_noise_is_fixed_per_image_and_scaled_by_sigma():
    base = default_dataset_factory(TASKS[0].seen_test, 16, False)
    small, large = lifelong_module._Noisy(base, 0.1, 7), lifelong_module._Noisy(base, 0.3, 7)
    clean = base[2][0]
    assert torch.allclose((large[2][0] - clean), 3 * (small[2][0] - clean), atol=1e-5)
    assert not torch.allclose(small[2][0] - clean, small[3][0] - base[3][0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(small[2][0], lifelong_module._Noisy(base, 0.1, 7)[2][0])


# --------------------------------------------------------------------------- pair loss and LwF


def test_the_pair_loss_replaces_the_triplet_loss_of_both_networks():
    student, teacher, otf = _nets()
    images, labels = _batch()
    config, real = _config(metric_loss="pair", margin=0.1), labels < 3
    _, parts = lifelong_loss(student, images, labels, METHODS["dkd_kl"], config, 3, teacher, otf)
    assert parts["L_s"] == pytest.approx(
        losses.reference_pair_loss(student(images), labels, 0.1).item(), rel=1e-5)
    assert parts["L_te2"] == pytest.approx(
        losses.reference_pair_loss(otf(images[real]), labels[real], 0.1).item(), rel=1e-5)
    with pytest.raises(ValueError, match="metric_loss must be one of"):
        _config(metric_loss="contrastive")


def test_fit_probe_separates_separable_features_deterministically():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    features = np.eye(3)[labels] * 4 + rng.normal(0, 0.3, size=(30, 3))
    weight, bias = fit_probe(features, labels, 3)
    predicted = (torch.as_tensor(features, dtype=torch.float32) @ weight.T + bias).argmax(1)
    assert torch.equal(predicted, torch.as_tensor(labels))
    again = fit_probe(features, labels, 3)
    assert torch.equal(weight, again[0]) and torch.equal(bias, again[1])
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        fit_probe(features, labels, 2)


def test_the_lwf_term_is_the_soft_cross_entropy_of_the_old_logits():
    student, teacher, _ = _nets()
    for net in (student, teacher):
        net.grow_classes(3, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        teacher.classifier.weight.mul_(3.0)
    images, labels = _batch()
    _, parts = lifelong_loss(student, images, labels, METHODS["lwf"], _config(), 3, teacher)
    with torch.no_grad():
        _, s_logits = student.forward_with_logits(images)
        _, t_logits = teacher.forward_with_logits(images)
    expected = 0.0
    for i in range(len(images)):
        p = torch.softmax(t_logits[i] / 2.0, 0)
        log_q = torch.log_softmax(s_logits[i] / 2.0, 0)
        expected -= float(sum(p[k] * log_q[k] for k in range(3))) / len(images)
    assert parts["L_lwf"] == pytest.approx(expected, rel=1e-5)
    assert METHODS["lwf"].terms == ("L_s", "L_lwf") and method_label("lwf") == "LwF"
    with pytest.raises(ValueError, match="needs a teacher with a classifier"):
        lifelong_loss(student, images, labels, METHODS["lwf"], _config(), 3, _nets()[1])
    with pytest.raises(ValueError, match="takes no lwf"):
        LifelongMethod(joint=True, lwf=True)


def test_an_lwf_run_gains_the_first_tasks_classifier_and_feeds_noise_sensitivity(tmp_path):
    result = _two_task_run(tmp_path, "lwf")
    n_first = len(TASKS[0].class_names) - TASKS[0].unseen.classes.size
    assert result.model.num_classes == n_first
    assert "L_lwf" in result.histories[1][0]
    # the probe is fitted on the model after task 0: it classifies task 0's training images
    first = run_lifelong(TASKS[:1], "ft", _config(tmp_path)).model
    add_probe(first, TASKS[0].seen_train, 16, "cpu")
    assert first.num_classes == n_first
    again = _two_task_run(tmp_path, "lwf")
    assert again.cached == [True, True]
    for key, value in result.model_state.items():
        assert torch.equal(value, again.model_state[key]), key
    table = noise_sensitivity(result.model, TASKS[0].seen_test, [0.5], image_size=16,
                              classifier=range(n_first))
    assert set(table.metric) == {"R@1", "top-1"}
    assert METHODS["lwf"].key()["lwf"] is True and "lwf" not in METHODS["ft"].key()


def test_jobs_leave_their_results_in_the_cache_for_the_next_run(tmp_path, monkeypatch):
    from irbook.incremental.lifelong import LifelongJob, run_lifelong_jobs

    config = _config(tmp_path, progress=True)
    seconds = run_lifelong_jobs([LifelongJob(tuple(TASKS), "ft", config),
                                 LifelongJob(tuple(TASKS), "kd_l2", config)])
    assert len(seconds) == 2 and all(len(s) == 2 for s in seconds)
    monkeypatch.setattr(lifelong_module, "fit", lambda *a, **k: pytest.fail("trained again"))
    for method in ("ft", "kd_l2"):
        assert run_lifelong(TASKS, method, config).cached == [True, True]
    with pytest.raises(ValueError, match="needs a checkpoint_dir"):
        run_lifelong_jobs([LifelongJob(tuple(TASKS), "ft", _config(None))])


def test_job_digests_name_the_networks_a_job_trains():
    from irbook.incremental.lifelong import LifelongJob, job_task_digests

    config = _config("/tmp/unused-checkpoints")
    three = (*TASKS, _task("c", 2))
    ours, dkd = (job_task_digests(LifelongJob(three, m, config)) for m in ("ours", "dkd_kl"))
    assert len(ours) == 2 and ours == dkd  # an alias trains the very same files
    two = job_task_digests(LifelongJob(tuple(TASKS), "dkd_kl", config))
    assert two == dkd[:1]  # the three-task run reuses its two-task prefix
    others = {m: job_task_digests(LifelongJob(tuple(TASKS), m, config))[0]
              for m in ("ft", "kd_kl", "kd_l2", "dkd_l2")}
    assert len({*others.values(), two[0]}) == 5
    reseeded = replace(config, seed=config.seed + 1)
    assert job_task_digests(LifelongJob(tuple(TASKS), "dkd_kl", reseeded)) != two

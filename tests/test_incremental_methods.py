"""Every incremental method's loss on a tiny batch; the registry; method-specific hooks."""

import copy

import numpy as np
import pytest
import torch

from irbook import losses
from irbook.incremental import METHODS, TaskContext, make_method
from irbook.models import EmbeddingNet, SmallCNN

TASKS = [np.array([0, 1]), np.array([2, 3]), np.array([4, 5])]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors run faster on one thread, especially on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _frozen(model):
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _labels(first):
    return torch.tensor([first] * 4 + [first + 1] * 4)


def _setup(task=2):
    """A model after ``task - 1`` stages, its frozen copies, and a batch of task ``task``."""
    torch.manual_seed(0)
    model = EmbeddingNet(SmallCNN(width=4, depth=2), dim=8, num_classes=2)
    alasso = losses.ALASSO()
    alasso.begin_task(model)
    alasso.consolidate(model)
    teachers = [_frozen(model)]
    for _ in range(1, task):
        model.grow_classes(2)
        teachers.append(_frozen(model))
    model.grow_classes(2)
    images = torch.rand(8, 3, 16, 16)
    accuracy = {"mAP": np.full((3, 3), np.nan)}
    accuracy["mAP"][0, 0], accuracy["mAP"][1, :2] = 54.20, (52.44, 52.27)
    before = {"mAP": np.array([np.nan, 29.82, 40.0])}
    ctx = TaskContext(task=task, tasks=TASKS, margin=0.1, device=torch.device("cpu"),
                      model=model, teacher=teachers[-1], teachers=teachers, accuracy=accuracy,
                      before=before, make_loader=lambda j: [(images, _labels(2 * j))],
                      first_stage_state={"alasso": alasso})
    return model, ctx, (images, _labels(2 * task))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_gives_a_finite_scalar_loss_with_gradients(name):
    model, ctx, batch = _setup()
    method = make_method(name)
    if name == "joint":
        batch = (batch[0], torch.tensor([0, 0, 1, 1, 4, 4, 5, 5]))
    model.train()
    method.before_task(ctx)
    total, parts = method.loss(model, batch, ctx)
    assert total.dim() == 0 and torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert method.metric_loss in parts and all(np.isfinite(v) for v in parts.values())
    method.end_epoch(ctx)
    method.after_task(ctx)


EXPECTED_PARTS = {
    "finetune": {"triplet"}, "joint": {"triplet"}, "lwf": {"triplet", "ce", "lwf"},
    "ewc": {"triplet", "ce", "ewc"}, "alasso": {"triplet", "ce", "alasso"},
    "l2": {"triplet", "l2"}, "l1": {"triplet", "l1"}, "nce_ewc": {"triplet", "nce", "ewc"},
    "kd_mmd": {"triplet", "ce", "lwf", "mmd"}, "corr": {"pair", "corr"},
    "corr_fe": {"pair", "corr"}, "two_model": {"pair", "corr"},
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_loss_parts_and_zero_regulariser_when_the_student_equals_its_teachers(name):
    model, ctx, batch = _setup(task=1)
    ctx.teachers = [ctx.teacher]
    method = make_method(name)
    if name == "joint":
        batch = (batch[0], torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    model.eval()  # the same BatchNorm statistics as the frozen teacher
    method.before_task(ctx)
    total, parts = method.loss(model, batch, ctx)
    assert set(parts) == EXPECTED_PARTS[name]
    for key in ("l1", "l2", "mmd", "corr", "ewc", "alasso"):
        if key in parts:
            assert parts[key] == pytest.approx(0.0, abs=1e-5), key
    plasticity = sum(parts[k] * w for k, w in (("triplet", 1), ("pair", 1), ("ce", 1),
                                               ("nce", 10)) if k in parts)
    stability = {"lwf": 1, "l1": 0.1, "l2": 0.1, "mmd": 1, "corr": 10, "ewc": 1, "alasso": 1}
    expected = plasticity + sum(parts[k] * w for k, w in stability.items() if k in parts)
    assert total.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_corr_fe_reads_the_thesis_bounds_from_the_recorded_map_and_weights_eq_6_11():
    model, ctx, batch = _setup(task=2)
    method = make_method("corr_fe")
    method.before_task(ctx)
    # chapter 6, CUB stage 1: old 54.20 -> 52.44, new 29.82 -> 52.27
    assert method.bounds == [pytest.approx((-0.0325, 0.7528), abs=1e-4)]
    assert method.teacher_weights(ctx) == [1.0, 1.0]
    torch.manual_seed(3)
    features = method.teacher_features(batch[0], ctx)
    assert len(features) == 2
    ratio = features[1] / features[0]
    assert ((ratio >= 1 - 0.0325 - 1e-5) & (ratio <= 1.7528 + 1e-5)).all()


def test_two_model_distils_from_every_old_model_newest_first():
    model, ctx, batch = _setup(task=2)
    ctx.teachers[0] = _frozen(EmbeddingNet(SmallCNN(width=4, depth=2), dim=8, num_classes=2))
    method = make_method("two_model")
    features = method.teacher_features(batch[0], ctx)
    assert len(features) == 2
    torch.testing.assert_close(features[0], ctx.teachers[1](batch[0]))
    torch.testing.assert_close(features[1], ctx.teachers[0](batch[0]))


def test_ewc_consolidates_each_finished_task_once():
    model, ctx, batch = _setup(task=2)
    method = make_method("ewc", lambda_=5.0)
    method.before_task(ctx)
    assert method.ewc.tasks == 2 and method.ewc.lambda_ == 5.0
    method.before_task(ctx)
    assert method.ewc.tasks == 2
    assert set(method.state_dict()) == {"ewc"}


def test_alasso_starts_from_the_first_stage_tracker_without_changing_it():
    model, ctx, batch = _setup(task=1)
    method = make_method("alasso", lambda_=0.5)
    method.before_task(ctx)
    assert method.alasso is not ctx.first_stage_state["alasso"]
    assert method.alasso.lambda_ == 0.5 and ctx.first_stage_state["alasso"].lambda_ == 0.2


def test_make_method_validates_names_and_hyper_parameters():
    with pytest.raises(ValueError, match="method must be one of finetune, joint, lwf"):
        make_method("icarl")
    with pytest.raises(ValueError, match="no hyper-parameter alpha; allowed: metric_weight"):
        make_method("lwf", alpha=1.0)
    method = make_method("kd_mmd", beta=0.1)
    assert method.hparams["beta"] == 0.1 and method.hparams["alpha"] == 1.0
    assert "kd_mmd" in repr(method)


def test_metric_loss_replaces_the_plasticity_loss_of_any_method():
    model, ctx, batch = _setup(task=1)
    method = make_method("finetune", metric_loss="pair")
    total, parts = method.loss(model, batch, ctx)
    embeddings, _ = model.forward_with_logits(batch[0])
    expected = losses.reference_pair_loss(embeddings, batch[1], margin=ctx.margin)
    assert set(parts) == {"pair"} and total.item() == pytest.approx(expected.item())
    assert method.hparams["metric_loss"] == "pair" and "metric_loss='pair'" in repr(method)
    with pytest.raises(ValueError, match="metric_loss must be one of triplet, pair"):
        make_method("finetune", metric_loss="arcface")

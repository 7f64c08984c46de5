"""Every incremental method's loss on a tiny batch; the registry; method-specific hooks; the
weights of the stability terms; plain-data method states."""

import copy
import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from irbook import losses
from irbook.incremental import METHODS, TaskContext, make_method, stage_accuracy_change
from irbook.incremental.methods import Correlation
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


@torch.no_grad()
def _perturb(model, seed, scale=0.05):
    """Add seeded noise to every parameter in place (a model that has trained a little)."""
    generator = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.add_(scale * torch.randn(p.shape, generator=generator))
    return model


def _labels(first):
    return torch.tensor([first] * 4 + [first + 1] * 4)


def _tracked_alasso(model):
    """ALASSO after one fake optimiser step, so its importance is > 0 everywhere."""
    alasso = losses.ALASSO()
    alasso.begin_task(model)
    with torch.no_grad():
        for p in model.parameters():
            p.grad = torch.randn_like(p)
            p.sub_(0.01 * p.grad)
    alasso.accumulate(model)
    alasso.consolidate(model)
    model.zero_grad(set_to_none=True)
    return alasso


def _setup(task=2):
    """A model after ``task - 1`` stages, frozen teachers that differ from it (perturbed
    copies), and a batch of task ``task``."""
    torch.manual_seed(0)
    model = EmbeddingNet(SmallCNN(width=4, depth=2), dim=8, num_classes=2)
    alasso = _tracked_alasso(model)
    teachers = [_frozen(_perturb(copy.deepcopy(model), seed=100, scale=0.3))]
    for stage in range(1, task):
        model.grow_classes(2)
        teachers.append(_frozen(_perturb(copy.deepcopy(model), seed=100 + stage, scale=0.3)))
    model.grow_classes(2)
    # one random colour per image plus noise: embeddings far apart, so Gram matrices differ
    images = 2 * torch.randn(8, 3, 1, 1) + 0.3 * torch.randn(8, 3, 16, 16)
    accuracy = {"mAP": np.full((3, 3), np.nan)}
    accuracy["mAP"][0, 0], accuracy["mAP"][1, :2] = 54.20, (52.44, 52.27)
    before = {"mAP": np.array([np.nan, 29.82, 40.0])}
    ctx = TaskContext(task=task, tasks=TASKS, margin=0.1, device=torch.device("cpu"),
                      model=model, teacher=teachers[-1], teachers=teachers, accuracy=accuracy,
                      before=before, make_loader=lambda j: [(images, _labels(2 * j))],
                      first_stage_state={"alasso": alasso.state_dict()})
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
    "corr_fe": {"pair", "corr"}, "two_model": {"pair", "corr"}, "corr_boost": {"pair", "corr"},
}
REGULARISERS = {"lwf": 1, "l1": 0.1, "l2": 0.1, "mmd": 1, "corr": 10, "ewc": 1, "alasso": 1}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_the_total_is_the_plasticity_plus_the_weighted_non_zero_regularisers(name):
    model, ctx, batch = _setup(task=1)
    ctx.teachers = [ctx.teacher]
    method = make_method(name)
    if name == "joint":
        batch = (batch[0], torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    model.eval()  # BatchNorm as in the frozen teacher: the gap is the weights only
    method.before_task(ctx)
    _perturb(model, seed=7)  # the student moved away from the consolidated weights
    total, parts = method.loss(model, batch, ctx)
    assert set(parts) == EXPECTED_PARTS[name]
    for key in REGULARISERS:
        if key in parts:
            assert parts[key] > 1e-6, key
    plasticity = sum(parts[k] * w for k, w in (("triplet", 1), ("pair", 1), ("ce", 1),
                                               ("nce", 10)) if k in parts)
    expected = plasticity + sum(parts[k] * w for k, w in REGULARISERS.items() if k in parts)
    assert total.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def _stability(method, model, batch, ctx):
    """``loss - plasticity`` of one batch, the plasticity computed separately."""
    total, _ = method.loss(model, batch, ctx)
    embeddings, logits = model.forward_with_logits(batch[0])
    plasticity, _ = method.plasticity(embeddings, logits, batch[1], ctx)
    return (total - plasticity).item()


def _outputs(model, ctx, images):
    with torch.no_grad():
        student = model.forward_with_logits(images)
        teacher = ctx.teacher.forward_with_logits(images)
    return student, teacher


def _term(kind, model, ctx, images):
    """The unweighted regulariser ``kind``, computed from the losses module directly."""
    (emb, logits), (t_emb, t_logits) = _outputs(model, ctx, images)
    if kind == "lwf":
        return losses.lwf_distillation(logits, t_logits, 2.0).item()
    if kind == "mmd":
        return losses.gaussian_mmd(t_emb, emb, sigmas="median", squared=False).item()
    if kind == "l2":
        return losses.feature_distillation(emb, t_emb, p=2).item()
    return losses.correlation_distillation(emb, t_emb, 4.0).item()  # corr


@pytest.mark.parametrize("name, weight, kind", [
    ("lwf", "distill_weight", "lwf"), ("l2", "weight", "l2"), ("corr", "corr_weight", "corr"),
    ("corr_fe", "corr_weight", "corr"), ("corr_boost", "corr_weight", "corr")])
def test_the_stability_weight_multiplies_its_term(name, weight, kind):
    model, ctx, batch = _setup(task=1)
    model.eval()
    term = _term(kind, model, ctx, batch[0])
    assert term > 1e-4  # the teacher differs from the student
    for value in (1.0, 2.0, 0.5):
        method = make_method(name, **{weight: value})
        method.before_task(ctx)
        assert _stability(method, model, batch, ctx) == pytest.approx(value * term, rel=1e-4)


def test_kd_mmd_is_plasticity_plus_alpha_distillation_plus_beta_mmd():
    model, ctx, batch = _setup(task=1)
    model.eval()
    dist, mmd = _term("lwf", model, ctx, batch[0]), _term("mmd", model, ctx, batch[0])
    assert dist > 1e-6 and mmd > 1e-4
    for alpha, beta in ((1.0, 0.0), (2.0, 0.0), (0.0, 1.0), (0.0, 2.0), (0.5, 3.0)):
        method = make_method("kd_mmd", alpha=alpha, beta=beta)
        stability = _stability(method, model, batch, ctx)
        assert stability == pytest.approx(alpha * dist + beta * mmd, rel=1e-4, abs=1e-8)
        parts = method.loss(model, batch, ctx)[1]
        assert ("lwf" in parts) == (alpha > 0) and ("mmd" in parts) == (beta > 0)


def test_kd_mmd_needs_a_trained_classifier_only_with_alpha():
    assert make_method("kd_mmd").needs_trained_classifier
    assert not make_method("kd_mmd", alpha=0.0).needs_trained_classifier
    assert make_method("lwf").needs_trained_classifier
    assert not make_method("l2").needs_trained_classifier


def _ewc_by_hand(method, model):
    """``λ/2 Σ F (θ - θ̃)²`` over the consolidated rows of every parameter."""
    params, total = dict(model.named_parameters()), 0.0
    for name, fisher in method.ewc.fisher.items():
        current = params[name].detach()[: fisher.shape[0]]
        total += float((fisher * (current - method.ewc.params_old[name]).pow(2)).sum())
    return method.lambda_ / 2 * total


def test_ewc_lambda_scales_the_penalty_on_the_moved_weights():
    model, ctx, batch = _setup(task=1)
    model.eval()
    methods = [make_method("ewc", lambda_=value) for value in (1000.0, 2000.0)]
    for method in methods:
        method.before_task(ctx)  # the same Fisher and θ̃: the start of the stage
    assert _stability(methods[0], model, batch, ctx) == 0.0
    _perturb(model, seed=3)
    first, second = (_stability(m, model, batch, ctx) for m in methods)
    assert first > 1e-4
    assert first == pytest.approx(_ewc_by_hand(methods[0], model), rel=1e-4)
    assert second == pytest.approx(2 * first, rel=1e-5)


def test_corr_fe_with_bounds_scales_with_its_weight_under_the_same_draws():
    model, ctx, batch = _setup(task=2)
    model.eval()
    values = []
    for weight in (1.0, 3.0):
        method = make_method("corr_fe", corr_weight=weight)
        method.before_task(ctx)
        torch.manual_seed(11)  # the estimates draw from torch's global generator
        values.append(_stability(method, model, batch, ctx))
    assert values[0] > 1e-4 and values[1] == pytest.approx(3 * values[0], rel=1e-4)


def test_corr_fe_reads_the_thesis_bounds_from_the_recorded_map_and_weights_eq_6_11():
    model, ctx, batch = _setup(task=2)
    method = make_method("corr_fe")
    method.before_task(ctx)
    # chapter 6, CUB stage 1: old 54.20 -> 52.44, new 29.82 -> 52.27
    assert method.bounds == [pytest.approx((-0.0325, 0.7528), abs=1e-4)]
    assert method.bounds == [stage_accuracy_change(ctx.accuracy["mAP"], ctx.before["mAP"], 1)]
    assert method.teacher_weights(ctx) == [1.0, 1.0]
    torch.manual_seed(3)
    features = method.teacher_features(batch[0], ctx)
    assert len(features) == 2
    ratio = features[1] / features[0]
    assert ((ratio >= 1 - 0.0325 - 1e-5) & (ratio <= 1.7528 + 1e-5)).all()


def test_stage_accuracy_change_follows_eq_6_6():
    nan = np.nan
    accuracy = np.array([[50, nan, nan], [40, 60, nan], [30, 40, 45]])
    before = np.array([nan, 20.0, 30.0])
    assert stage_accuracy_change(accuracy, before, 1) == pytest.approx((-0.2, 2.0))
    # stage 2: old = mean over tasks 0-1, (40 + 60) / 2 -> (30 + 40) / 2; new 30 -> 45
    assert stage_accuracy_change(accuracy, before, 2) == pytest.approx((-0.3, 0.5))
    for stage in (0, 3):
        with pytest.raises(ValueError, match="stage must be from 1 to 2"):
            stage_accuracy_change(accuracy, before, stage)


class FixedTeacher(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.features = features

    def forward_with_logits(self, images):
        return self.features, None


def test_boosted_correlation_weighs_the_kept_model_like_eq_6_11_in_total():
    boosted = make_method("corr_boost", corr_weight=1.0)
    assert [boosted.teacher_weights(SimpleNamespace(task=t))[0] for t in (1, 2, 3)] == \
        pytest.approx([1.0, 2.0, 1.6])
    torch.manual_seed(0)
    student = nn.functional.normalize(torch.randn(6, 4), dim=1)
    teacher = nn.functional.normalize(torch.randn(6, 4), dim=1)
    ctx = TaskContext(task=2, tasks=[np.arange(2)] * 3, margin=0.1, device=torch.device("cpu"),
                      teacher=FixedTeacher(teacher))
    plain = Correlation(corr_weight=1.0).stability(None, None, student, None, ctx)[0]
    assert plain > 1e-4
    assert boosted.stability(None, None, student, None, ctx)[0] == pytest.approx(2 * plain)


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
    saved = copy.deepcopy(ctx.first_stage_state)
    method = make_method("alasso", lambda_=0.5)
    method.before_task(ctx)
    method.stability(model, batch[0], None, None, ctx)  # accumulates into the method's tracker
    assert method.alasso.lambda_ == 0.5 and ctx.first_stage_state["alasso"]["hyper"][0] == 0.2
    for key, value in saved["alasso"]["importance"].items():
        torch.testing.assert_close(method.alasso.importance[key], value)
        torch.testing.assert_close(ctx.first_stage_state["alasso"]["importance"][key], value)


def _through_disk(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_states_are_plain_data_that_restore_the_same_loss(name):
    model, ctx, batch = _setup(task=2)
    method = make_method(name)
    if name == "joint":
        batch = (batch[0], torch.tensor([0, 0, 1, 1, 4, 4, 5, 5]))
    model.eval()
    method.before_task(ctx)
    method.end_epoch(ctx)  # the state as fit()'s per-epoch checkpoint saves it
    _perturb(model, seed=5)
    restored = make_method(name)
    restored.load_state_dict(_through_disk(method.state_dict()))
    assert _through_disk(restored.state_dict()).keys() == method.state_dict().keys()
    if name in ("ewc", "nce_ewc", "alasso", "corr_fe"):
        assert method.state_dict(), name  # these carry state from task to task
    torch.manual_seed(1)
    expected = method.loss(model, batch, ctx)[0].item()
    torch.manual_seed(1)
    assert restored.loss(model, batch, ctx)[0].item() == pytest.approx(expected, rel=1e-6)


def test_make_method_validates_names_and_hyper_parameters():
    with pytest.raises(ValueError, match="method must be one of finetune, joint, lwf"):
        make_method("icarl")
    with pytest.raises(ValueError, match="no hyper-parameter alpha; allowed: metric_weight"):
        make_method("lwf", alpha=1.0)
    method = make_method("kd_mmd", beta=0.1)
    assert method.hparams["beta"] == 0.1 and method.hparams["alpha"] == 1.0
    assert "kd_mmd" in repr(method)
    boosted = make_method("corr_boost", metric_loss="triplet", corr_weight=2.0)
    assert boosted.hparams == {"metric_weight": 1.0, "ce_weight": 0.0, "corr_weight": 2.0,
                               "temperature": 4.0, "metric_loss": "triplet"}


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

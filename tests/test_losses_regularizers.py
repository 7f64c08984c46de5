"""EWC and ALASSO regularisers against closed-form gradients and hand-computed penalties."""

import io

import numpy as np
import pytest
import torch
from torch import nn

from irbook.losses import ALASSO, EWC


def regression_model() -> nn.Linear:
    model = nn.Linear(3, 1).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -1.0, 2.0]]))
        model.bias.fill_(0.25)
    return model


def regression_loss(model, batch):
    x, y = batch
    return (model(x).squeeze(1) - y).pow(2).mean()


def regression_batches(seed: int, sizes=(4, 2)):
    rng = np.random.default_rng(seed)
    return [(torch.from_numpy(rng.normal(size=(n, 3))), torch.from_numpy(rng.normal(size=n)))
            for n in sizes]


def closed_form_fisher(model: nn.Linear, batches):
    w = model.weight.detach().numpy()[0]
    b = model.bias.item()
    fw, fb, total = np.zeros(3), 0.0, 0
    for x, y in batches:
        x, y = x.numpy(), y.numpy()
        r = x @ w + b - y
        gw, gb = 2 / len(y) * x.T @ r, 2 / len(y) * r.sum()
        fw += len(y) * gw**2
        fb += len(y) * gb**2
        total += len(y)
    return fw / total, fb / total


class Injected(nn.Module):
    """A 'classifier' whose loss gradient is whatever the batch says: loss = sum(W * G)."""

    def __init__(self, rows: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(rows, 2, dtype=torch.float64))


def injected_loss(model, batch):
    return (model.weight * batch["g"][: model.weight.shape[0]]).sum()


def injected_batch(g, size: int):
    return {"samples": torch.zeros(size), "g": torch.tensor(g, dtype=torch.float64)}


# ---- EWC ----------------------------------------------------------------------------------

def test_fisher_is_the_size_weighted_mean_of_squared_batch_gradients():
    model, batches = regression_model(), regression_batches(0)
    fisher = EWC().estimate_fisher(model, batches, regression_loss, "cpu")
    fw, fb = closed_form_fisher(model, batches)
    np.testing.assert_allclose(fisher["weight"].numpy()[0], fw, rtol=1e-12)
    assert fisher["bias"].item() == pytest.approx(fb, rel=1e-12)


def test_fisher_respects_max_batches():
    model, batches = regression_model(), regression_batches(1, sizes=(3, 5, 2))
    fisher = EWC().estimate_fisher(model, batches, regression_loss, None, max_batches=1)
    fw, _ = closed_form_fisher(model, batches[:1])
    np.testing.assert_allclose(fisher["weight"].numpy()[0], fw, rtol=1e-12)


def test_fisher_leaves_mode_grads_and_batchnorm_statistics_alone():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)).double()
    model.train()
    before = model[1].running_mean.clone()
    EWC().estimate_fisher(model, regression_batches(2), regression_loss, "cpu")
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(model[1].running_mean, before)


def test_penalty_is_half_lambda_fisher_weighted_squared_change():
    model, batches = regression_model(), regression_batches(3)
    ewc = EWC(lambda_=8000.0)
    assert ewc.penalty(model).item() == 0.0  # nothing consolidated yet
    ewc.estimate_fisher(model, batches, regression_loss, "cpu")
    ewc.consolidate(model)
    assert ewc.penalty(model).item() == 0.0
    fw, fb = closed_form_fisher(model, batches)
    with torch.no_grad():
        model.weight += torch.tensor([[0.1, -0.2, 0.3]], dtype=torch.float64)
        model.bias -= 0.5
    expected = 8000 / 2 * ((fw * np.array([0.01, 0.04, 0.09])).sum() + fb * 0.25)
    penalty = ewc.penalty(model)
    assert penalty.item() == pytest.approx(expected, rel=1e-10)
    penalty.backward()  # d/dθ = λ F (θ - θ̃)
    np.testing.assert_allclose(model.weight.grad.numpy()[0],
                               8000 * fw * np.array([0.1, -0.2, 0.3]), rtol=1e-10)


def test_fishers_merge_as_a_running_mean():
    model = Injected(2)
    ewc = EWC(lambda_=2.0)
    tasks = [[[1.0, 2.0], [0.0, 1.0]], [[3.0, 0.0], [1.0, 1.0]], [[2.0, 2.0], [2.0, 0.0]]]
    for g in tasks:
        ewc.estimate_fisher(model, [injected_batch(g, 4)], injected_loss, "cpu")
        ewc.consolidate(model)
    expected = sum(np.array(g) ** 2 for g in tasks) / 3
    np.testing.assert_allclose(ewc.fisher["weight"].numpy(), expected, rtol=1e-12)
    assert ewc.tasks == 3


def test_grown_classifier_is_penalised_on_its_old_rows_only():
    ewc = EWC(lambda_=2.0)
    small = Injected(2)
    ewc.estimate_fisher(small, [injected_batch([[1.0, 2.0], [3.0, 0.5]], 2)], injected_loss,
                        "cpu")
    ewc.consolidate(small)
    grown = Injected(3)
    with torch.no_grad():
        grown.weight[2] = torch.tensor([5.0, 5.0])  # a new class: free
    assert ewc.penalty(grown).item() == 0.0
    with torch.no_grad():
        grown.weight[0, 1] = 0.5
    assert ewc.penalty(grown).item() == pytest.approx(2.0 / 2 * 4.0 * 0.25)
    # Task 2 on the grown model: the old Fisher is zero-padded, then averaged.
    g2 = [[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]]
    ewc.estimate_fisher(grown, [injected_batch(g2, 2)], injected_loss, "cpu")
    ewc.consolidate(grown)
    expected = (np.array(g2) ** 2 + np.array([[1.0, 4.0], [9.0, 0.25], [0.0, 0.0]])) / 2
    np.testing.assert_allclose(ewc.fisher["weight"].numpy(), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="does not extend"):
        ewc.penalty(Injected(1))


def test_ewc_usage_errors():
    with pytest.raises(RuntimeError, match="estimate_fisher"):
        EWC().consolidate(regression_model())
    with pytest.raises(ValueError, match="no batches"):
        EWC().estimate_fisher(regression_model(), [], regression_loss, "cpu")
    with pytest.raises(ValueError, match="lambda_ must be >= 0"):
        EWC(lambda_=-1.0)


# ---- ALASSO -------------------------------------------------------------------------------

class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2, dtype=torch.float64))


def take_step(model: Pair, grad, delta):
    model.w.grad = torch.tensor(grad, dtype=torch.float64)
    with torch.no_grad():
        model.w += torch.tensor(delta, dtype=torch.float64)


def trained_pair(reg: ALASSO) -> Pair:
    """Element 0 climbs 0 -> 1 with gradient -1 twice; element 1 falls 0 -> -0.4."""
    model = Pair()
    reg.begin_task(model)
    take_step(model, [-1.0, 2.0], [0.5, -0.2])
    reg.accumulate(model)
    take_step(model, [-1.0, 1.0], [0.5, -0.2])
    reg.accumulate(model)
    reg.consolidate(model)
    return model


def test_alasso_importance_from_the_path_integral():
    reg = ALASSO(lambda_=0.5, a=1.8, eps=1e-6, xi=0.1)
    trained_pair(reg)
    # element 0: w = -(-1*0.5 + -1*0.5) = 1, delta = 1 -> 1 / 1.1
    # element 1: w = -(2*-0.2 + 1*-0.2) = 0.6, delta = -0.4 -> 0.6 / 0.26
    np.testing.assert_allclose(reg.importance["w"].numpy(), [1 / 1.1, 0.6 / 0.26], rtol=1e-12)
    np.testing.assert_array_equal(reg.direction["w"].numpy(), [1.0, -1.0])
    np.testing.assert_allclose(reg.center["w"].numpy(), [1.0, -0.4], rtol=1e-12)


@pytest.mark.parametrize("offset", [-0.3, 0.3])
def test_alasso_penalty_is_asymmetric(offset):
    reg = ALASSO(lambda_=0.5, a=1.8, eps=1e-6, xi=0.1)
    model = trained_pair(reg)
    assert reg.penalty(model).item() == 0.0
    with torch.no_grad():
        model.w += offset
    omega0, omega1 = 1 / 1.1, 0.6 / 0.26
    over0, over1 = 1.8 * omega0 + 1e-6, 1.8 * omega1 + 1e-6
    # element 0 came from below: going down is the observed side; element 1 came from above.
    weights = (omega0, over1) if offset < 0 else (over0, omega1)
    expected = 0.5 * sum(weights) * offset**2
    penalty = reg.penalty(model)
    assert penalty.item() == pytest.approx(expected, rel=1e-10)
    model.w.grad = None
    penalty.backward()
    np.testing.assert_allclose(model.w.grad.numpy(), [2 * 0.5 * c * offset for c in weights],
                               rtol=1e-10)


def test_alasso_importance_never_decreases():
    reg = ALASSO(xi=0.1)
    model = trained_pair(reg)
    first = reg.importance["w"].clone()
    reg.begin_task(model)
    take_step(model, [1.0, 0.1], [0.1, 0.1])  # element 0 moves up against its gradient: w < 0
    reg.accumulate(model)
    reg.consolidate(model)
    # element 0: fresh = -0.1 / 0.11 < old -> keeps old; element 1: fresh = -0.01/0.11 < old
    np.testing.assert_allclose(reg.importance["w"].numpy(), first.numpy(), rtol=1e-12)
    reg.begin_task(model)
    take_step(model, [-30.0, 0.0], [0.1, 0.0])  # a large loss decrease on element 0
    reg.accumulate(model)
    reg.consolidate(model)
    assert reg.importance["w"][0].item() == pytest.approx(3.0 / 0.11, rel=1e-12)


def test_alasso_path_integral_tracks_the_loss_decrease():
    """SI property: with small steps, sum of -g·Δθ is close to the drop of the loss."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1).double()
    x, y = torch.randn(32, 4, dtype=torch.float64), torch.randn(32, dtype=torch.float64)
    reg = ALASSO()
    reg.begin_task(model)
    start = regression_loss(model, (x, y)).item()
    for _ in range(50):  # plain gradient descent, lr = 0.01
        model.zero_grad()
        regression_loss(model, (x, y)).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.01 * p.grad
        reg.accumulate(model)
    drop = start - regression_loss(model, (x, y)).item()
    path = sum(value.sum().item() for value in reg._path.values())
    assert path == pytest.approx(drop, rel=0.05)
    reg.consolidate(model)
    assert all((value >= 0).all() for value in reg.importance.values())


def test_alasso_grown_parameter_and_usage_errors():
    reg = ALASSO()
    with pytest.raises(RuntimeError, match="begin_task"):
        reg.accumulate(Pair())
    with pytest.raises(RuntimeError, match="begin_task"):
        reg.consolidate(Pair())
    assert reg.penalty(Pair()).item() == 0.0
    small = Injected(2)
    reg.begin_task(small)
    small.weight.grad = torch.ones(2, 2, dtype=torch.float64)
    with torch.no_grad():
        small.weight -= 0.5
    reg.accumulate(small)
    reg.consolidate(small)
    grown = Injected(3)
    with torch.no_grad():
        grown.weight[:2] = small.weight
        grown.weight[2] = 7.0
    assert reg.penalty(grown).item() == 0.0
    reg.begin_task(grown)  # the next task starts on the grown classifier
    reg.consolidate(grown)
    assert reg.importance["weight"].shape == (3, 2)
    assert reg.importance["weight"][2].abs().sum() == 0  # no path on the new row, no history
    with pytest.raises(ValueError, match="need lambda_ >= 0"):
        ALASSO(xi=0.0)


def _through_disk(state):
    """``state`` saved and read back as checkpoints are: tensors and plain data only."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_state_dicts_round_trip():
    model, batches = regression_model(), regression_batches(4)
    ewc = EWC(lambda_=3.0)
    ewc.estimate_fisher(model, batches, regression_loss, "cpu")
    ewc.consolidate(model)
    with torch.no_grad():
        model.bias += 1.0
    restored = EWC()
    restored.load_state_dict(_through_disk(ewc.state_dict()))
    assert restored.penalty(model).item() == ewc.penalty(model).item() > 0
    reg = ALASSO(lambda_=0.3)
    pair = trained_pair(reg)
    reg.begin_task(pair)  # resume in the middle of a task
    take_step(pair, [1.0, 1.0], [0.2, 0.2])
    reg.accumulate(pair)
    again = ALASSO()
    again.load_state_dict(_through_disk(reg.state_dict()))
    assert again.lambda_ == 0.3
    assert again.penalty(pair).item() == reg.penalty(pair).item() > 0
    again.consolidate(pair)
    reg.consolidate(pair)
    np.testing.assert_array_equal(again.importance["w"].numpy(), reg.importance["w"].numpy())

"""Parameter regularisers of the continual-learning baselines: EWC and ALASSO.

Both keep, per named trainable parameter, the consolidated value θ̃ and an importance, and add
a penalty ``penalty(model)`` to the task loss while a later task trains. A parameter that grew
along dimension 0 since consolidation (a classifier extended with new classes) is penalised on
its first rows only; its new rows are free. Parameters added after consolidation are free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from irbook.train.loop import move_to_device

__all__ = ["ALASSO", "EWC"]


def _trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _zero_like_model(params: dict[str, nn.Parameter]) -> Tensor:
    """A scalar 0 on the device and in the dtype of the model's first trainable parameter."""
    first = next(iter(params.values()), None)
    return torch.zeros(()) if first is None else first.new_zeros(())


def _leading(current: Tensor, stored: Tensor, name: str) -> Tensor:
    """The part of ``current`` that corresponds to ``stored`` (all of it, or its first rows)."""
    if current.shape == stored.shape:
        return current
    if (current.dim() == stored.dim() >= 1 and current.shape[1:] == stored.shape[1:]
            and current.shape[0] >= stored.shape[0]):
        return current[: stored.shape[0]]
    raise ValueError(f"parameter {name!r} has shape {tuple(current.shape)}, which does not extend "
                     f"its consolidated shape {tuple(stored.shape)} along dimension 0")


def _grow(stored: Tensor, shape: torch.Size, name: str) -> Tensor:
    """``stored`` zero-padded along dimension 0 to ``shape`` (importance 0 for new rows)."""
    if stored.shape == shape:
        return stored
    grown = stored.new_zeros(shape)
    _leading(grown, stored, name).copy_(stored)
    return grown


def _batch_size(batch: Any) -> int:
    """Length of the first tensor found in a (nested) tuple, list or dict batch; 1 if none."""
    if isinstance(batch, Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    items = list(batch.values()) if isinstance(batch, dict) else batch
    if isinstance(items, tuple | list):
        for item in items:
            if isinstance(item, Tensor | tuple | list | dict):
                return _batch_size(item)
    return 1


class EWC:
    """Elastic Weight Consolidation (Kirkpatrick et al. 2017) as the chapter 5/6 baseline.

    Use: train task 1; ``estimate_fisher(...)``; ``consolidate(model)``; then train task 2 on
    ``task_loss + ewc.penalty(model)``; repeat. ``penalty = λ/2 · Σ F (θ - θ̃)²`` with the merged
    diagonal Fisher F and the weights θ̃ of the last consolidation; λ = 8000 was tuned for
    retrieval in the thesis.

    Merging (as in the HAT code the thesis used): after the k-th consolidation F is the running
    mean of the k per-task Fishers, ``F ← (F_new + (k-1) F) / k``.
    """

    def __init__(self, lambda_: float = 8000.0):
        if lambda_ < 0:
            raise ValueError(f"lambda_ must be >= 0; got {lambda_}")
        self.lambda_ = float(lambda_)
        self.fisher: dict[str, Tensor] = {}
        self.params_old: dict[str, Tensor] = {}
        self.tasks = 0
        self._pending: dict[str, Tensor] | None = None

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: λ, the merged Fisher, θ̃ and the task count (plain data
        and tensors only, readable with ``torch.load(weights_only=True)``)."""
        return {"lambda_": self.lambda_, "fisher": dict(self.fisher),
                "params_old": dict(self.params_old), "tasks": self.tasks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.lambda_ = float(state["lambda_"])
        self.fisher, self.params_old = dict(state["fisher"]), dict(state["params_old"])
        self.tasks, self._pending = int(state["tasks"]), None

    def estimate_fisher(self, model: nn.Module, loader: Iterable,
                        loss_fn: Callable[[nn.Module, Any], Tensor],
                        device: torch.device | str | None = None,
                        max_batches: int | None = None) -> dict[str, Tensor]:
        """Diagonal empirical Fisher of the current task: mean squared gradient per parameter.

        For each batch (moved to ``device`` unless it is None), ``loss_fn(model, batch)`` is
        differentiated and its squared gradient is weighted by the batch size; the sum is
        divided by the number of samples (HAT's ``fisher_matrix_diag``). This squares
        mini-batch gradients, not per-sample ones. The model runs in eval mode (no dropout,
        BatchNorm statistics untouched) and its mode and ``.grad`` fields are left as found.
        The result is kept for the next :meth:`consolidate` and returned.
        """
        if max_batches is not None and max_batches < 1:
            raise ValueError(f"max_batches must be >= 1 or None; got {max_batches}")
        params = _trainable(model)
        fisher = {name: torch.zeros_like(p)
                  for name, p in params.items()}
        was_training = model.training
        model.eval()
        seen = 0
        try:
            for index, batch in enumerate(loader):
                if max_batches is not None and index >= max_batches:
                    break
                if device is not None:
                    batch = move_to_device(batch, torch.device(device))
                size = _batch_size(batch)
                loss = loss_fn(model, batch)
                grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
                for (name, _), grad in zip(params.items(), grads, strict=True):
                    if grad is not None:
                        fisher[name] += size * grad.detach().pow(2)
                seen += size
        finally:
            model.train(was_training)
        if seen == 0:
            raise ValueError("loader yielded no batches; cannot estimate the Fisher information")
        self._pending = {name: value / seen for name, value in fisher.items()}
        return self._pending

    def consolidate(self, model: nn.Module) -> None:
        """Store θ̃ = the current weights and merge the pending Fisher into the running mean."""
        if self._pending is None:
            raise RuntimeError("call estimate_fisher(...) on the finished task before "
                               "consolidate(model)")
        merged = {}
        for name, new in self._pending.items():
            if name in self.fisher and self.tasks > 0:
                old = _grow(self.fisher[name], new.shape, name)
                merged[name] = (new + self.tasks * old) / (self.tasks + 1)
            else:
                merged[name] = new
        self.fisher = merged
        self.params_old = {name: p.detach().clone() for name, p in _trainable(model).items()
                           if name in merged}
        self.tasks += 1
        self._pending = None

    def penalty(self, model: nn.Module) -> Tensor:
        """``λ/2 · Σ F (θ - θ̃)²``; a zero tensor before the first consolidation."""
        params = _trainable(model)
        total = _zero_like_model(params)
        for name, fisher in self.fisher.items():
            if name not in params:
                raise ValueError(f"consolidated parameter {name!r} is missing from the model")
            current = _leading(params[name], fisher, name)
            total = total + (fisher * (current - self.params_old[name]).pow(2)).sum()
        return self.lambda_ / 2.0 * total


class ALASSO:
    """Asymmetric Loss Approximation with Single-Side Overestimation (Park et al., ICCV 2019).

    Penalty, per parameter element around the consolidated value θ̃ with importance Ω >= 0 and
    direction s = +1 if the element ended its last task at or above where it started, else -1::

        λ · Σ c (θ - θ̃)²,   c = Ω            on the side the element came from, s (θ - θ̃) < 0
                            c = a Ω + ε      on the unexplored side, s (θ - θ̃) >= 0

    (a = 1.8, ε = 1e-6 as in the ALASSO code; the thesis tuned λ = 0.2). There is no 1/2.

    Importance (SI-like path integral, ALASSO code with ``omega_smoothing = 1``): during a task,
    ``w += -g · Δθ`` after every optimiser step; at the end, with ``Δ = θ_end - θ_start``,
    ``Ω ← max(w / (Δ² + ξ), Ω_previous)``, so importance never decreases (ξ = 0.1).

    Choice (simplest faithful form): ``g`` is the ``.grad`` left by the step, i.e. the
    gradient of the total loss including this penalty. The ALASSO code integrates the task
    loss's gradient and subtracts the previous penalty's value at the end (a' = 1, c' = 1);
    integrating the penalty's own gradient subtracts λ times the asymmetric penalty's value
    instead, up to the step discretisation.

    Use: ``begin_task(model)``; per batch ``loss = task + penalty(model)``, backward,
    ``optimizer.step()``, ``accumulate(model)`` (before ``zero_grad``); ``consolidate(model)``.
    """

    def __init__(self, lambda_: float = 0.2, a: float = 1.8, eps: float = 1e-6,
                 xi: float = 0.1):
        if lambda_ < 0 or a < 0 or eps < 0 or xi <= 0:
            raise ValueError(f"need lambda_ >= 0, a >= 0, eps >= 0 and xi > 0; got "
                             f"lambda_={lambda_}, a={a}, eps={eps}, xi={xi}")
        self.lambda_, self.a, self.eps, self.xi = float(lambda_), float(a), float(eps), float(xi)
        self.importance: dict[str, Tensor] = {}
        self.direction: dict[str, Tensor] = {}
        self.center: dict[str, Tensor] = {}
        self._start: dict[str, Tensor] | None = None
        self._previous: dict[str, Tensor] = {}
        self._path: dict[str, Tensor] = {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, including a task in progress (tensors, floats, None,
        lists and dicts only: ``torch.load(weights_only=True)`` reads it)."""
        return {"hyper": [self.lambda_, self.a, self.eps, self.xi],
                "importance": dict(self.importance), "direction": dict(self.direction),
                "center": dict(self.center),
                "start": None if self._start is None else dict(self._start),
                "previous": dict(self._previous), "path": dict(self._path)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.lambda_, self.a, self.eps, self.xi = (float(v) for v in state["hyper"])
        self.importance, self.direction = dict(state["importance"]), dict(state["direction"])
        self.center = dict(state["center"])
        self._start = None if state["start"] is None else dict(state["start"])
        self._previous, self._path = dict(state["previous"]), dict(state["path"])

    def begin_task(self, model: nn.Module) -> None:
        """Record the weights at the start of a task and reset the path integral."""
        params = _trainable(model)
        self._start = {name: p.detach().clone() for name, p in params.items()}
        self._previous = {name: p.detach().clone() for name, p in params.items()}
        self._path = {name: torch.zeros_like(p) for name, p in params.items()}

    def accumulate(self, model: nn.Module) -> None:
        """Add ``-g · Δθ`` of the optimiser step just taken (call after ``optimizer.step()``)."""
        if self._start is None:
            raise RuntimeError("call begin_task(model) before accumulate(model)")
        for name, p in _trainable(model).items():
            if name not in self._path:
                raise ValueError(f"parameter {name!r} appeared after begin_task(model)")
            now = p.detach()
            if p.grad is not None:
                self._path[name] += -p.grad.detach() * (now - self._previous[name])
            self._previous[name] = now.clone()

    def consolidate(self, model: nn.Module) -> None:
        """End the task: update Ω and the direction, and move θ̃ to the current weights."""
        if self._start is None:
            raise RuntimeError("call begin_task(model) and train before consolidate(model)")
        for name, p in _trainable(model).items():
            if name not in self._start:
                raise ValueError(f"parameter {name!r} appeared after begin_task(model)")
            end = p.detach()
            delta = end - self._start[name]
            fresh = self._path[name] / (delta.pow(2) + self.xi)
            previous = self.importance.get(name)
            previous = (torch.zeros_like(fresh) if previous is None
                        else _grow(previous, fresh.shape, name))
            self.importance[name] = torch.maximum(fresh, previous)
            self.direction[name] = torch.where(delta < 0, -1.0, 1.0).to(end.dtype)
            self.center[name] = end.clone()
        self._start = None
        self._previous, self._path = {}, {}

    def penalty(self, model: nn.Module) -> Tensor:
        """The asymmetric quadratic penalty; a zero tensor before the first consolidation."""
        params = _trainable(model)
        total = _zero_like_model(params)
        for name, center in self.center.items():
            if name not in params:
                raise ValueError(f"consolidated parameter {name!r} is missing from the model")
            offset = _leading(params[name], center, name) - center
            importance = self.importance[name]
            overestimated = self.direction[name] * offset >= 0
            weight = torch.where(overestimated, self.a * importance + self.eps, importance)
            total = total + (weight * offset.pow(2)).sum()
        return self.lambda_ * total

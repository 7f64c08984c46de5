"""Feature estimation for unsaved models (thesis Eqs. 6.6-6.9 and 6.11).

Instead of keeping the models f_0 .. f_{t-2}, chapter 6 keeps how each stage changed accuracy
and turns it into a random element-wise rescaling of the penultimate model's features.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "accuracy_change_bounds",
    "estimate_features",
    "estimate_prior_features",
    "estimation_weights",
]

RandomSource = int | np.random.Generator | torch.Generator


def accuracy_change_bounds(acc_before_old: float, acc_after_old: float, acc_before_new: float,
                           acc_after_new: float) -> tuple[float, float]:
    """Relative accuracy changes of one incremental stage, ``(alpha_drop, alpha_gain)`` (Eq. 6.6).

    ``alpha_drop = (Acc_o^a - Acc_o^b) / Acc_o^b`` on the old classes and
    ``alpha_gain = (Acc_n^a - Acc_n^b) / Acc_n^b`` on the stage's new classes, "b"/"a" meaning
    before/after training the stage. Any accuracy scale works (fractions or percent) as long as
    the four numbers share it; the thesis uses mAP. Example (chapter 6, CUB stage 1): old
    54.20 -> 52.44 and new 29.82 -> 52.27 give (-0.0325, 0.7528).
    """
    if acc_before_old <= 0 or acc_before_new <= 0:
        raise ValueError("acc_before_old and acc_before_new must be > 0 (they divide); got "
                         f"{acc_before_old} and {acc_before_new}")
    alpha_drop = (acc_after_old - acc_before_old) / acc_before_old
    alpha_gain = (acc_after_new - acc_before_new) / acc_before_new
    return float(alpha_drop), float(alpha_gain)


def _uniform(shape: torch.Size, low: float, high: float, generator: RandomSource,
             like: Tensor) -> Tensor:
    """``low + (high - low) * U[0, 1)`` of ``shape`` on ``like``'s device and dtype."""
    if isinstance(generator, np.random.Generator):
        unit = torch.from_numpy(generator.random(tuple(shape)))
    elif isinstance(generator, torch.Generator):
        unit = torch.rand(shape, generator=generator, dtype=torch.float64,
                          device=generator.device)
    elif isinstance(generator, int) and not isinstance(generator, bool):
        unit = torch.rand(shape, generator=torch.Generator().manual_seed(generator),
                          dtype=torch.float64)
    else:
        raise TypeError("generator must be an int seed, a numpy.random.Generator or a "
                        f"torch.Generator; got {type(generator).__name__}")
    unit = unit.to(device=like.device, dtype=like.dtype)
    return low + (high - low) * unit


def estimate_features(features: Tensor, alpha_drop: float, alpha_gain: float,
                      generator: RandomSource, scale: float = 1.0) -> Tensor:
    """Virtual features of the previous model: ``f + scale · f ⊙ r`` (Eqs. 6.7 and 6.8).

    ``r`` has the shape of ``features`` and is drawn element-wise from U(alpha_drop,
    alpha_gain) (the reference draws e.g. U(-0.0443, 0.2230)); ``scale`` is the k of Eq. 6.8,
    1 in the thesis. The result is not re-normalised, as in the reference; feed it to
    :func:`~irbook.losses.distillation.correlation_distillation` with ``normalize=False``.

    Choice: the draw is ``alpha_drop + (alpha_gain - alpha_drop) · u`` with u ~ U[0, 1), so
    the bounds may come in either order (a stage can raise old-class accuracy too).
    ``generator`` is an int seed, a ``numpy.random.Generator`` or a ``torch.Generator``.
    """
    r = _uniform(features.shape, alpha_drop, alpha_gain, generator, features)
    return features + scale * features * r


def estimate_prior_features(features: Tensor, bounds: Sequence[tuple[float, float]],
                            generator: RandomSource, scale: float = 1.0) -> list[Tensor]:
    """Recursive estimates of all unsaved models' features (Eq. 6.9).

    ``features`` are the actual features F_{t-1} of the penultimate model on the current
    batch; ``bounds[i]`` is ``(alpha_drop, alpha_gain)`` of the stage that produced model
    f_{t-1-i} from f_{t-2-i}, newest first. Returns ``[F̂_{t-2}, F̂_{t-3}, ..., F̂_{t-1-len}]``,
    each estimated from the previous estimate with a fresh draw, so the last one is
    ``prod_i (1 + scale · r_i) ⊙ F_{t-1}``. With an int seed the stages use consecutive draws
    of one generator.
    """
    if isinstance(generator, int) and not isinstance(generator, bool):
        generator = torch.Generator().manual_seed(generator)
    estimates: list[Tensor] = []
    current = features
    for alpha_drop, alpha_gain in bounds:
        current = estimate_features(current, alpha_drop, alpha_gain, generator, scale)
        estimates.append(current)
    return estimates


def estimation_weights(t: int) -> list[float]:
    """Importance factors of Eq. 6.11 for task ``t`` >= 1, one per prior model, newest first.

    Entry k weighs the distillation from model f_{t-1-k}: 1 for k = 0 (the saved model
    f_{t-1}), and ``0.1^(k-1) / (t-k)`` for k = 1 .. t-1 (estimated models), i.e.
    ``[1, 1/(t-1), 0.1/(t-2), ..., 0.1^(t-2)/1]``. Examples: t=1 -> [1]; t=2 -> [1, 1];
    t=3 -> [1, 0.5, 0.1]; t=4 -> [1, 1/3, 0.05, 0.01].

    Reading of Eq. 6.11: its last term carries the coefficient ``0.1^(t-2)/1``, which is the
    k = t-1 term of the pattern, so it weighs the first model f_0 (the equation labels it
    "1 -> t"). Table 6.3 case (c) confirms this at t = 2: the estimated f_0 gets 1/(t-1) = 1.
    """
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ValueError(f"t must be an integer >= 1 (the incremental task index); got {t!r}")
    return [1.0] + [0.1 ** (k - 1) / (t - k) for k in range(1, t)]

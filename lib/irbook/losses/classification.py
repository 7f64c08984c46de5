"""Cross-entropy on the outputs of the new classes only (thesis Eq. 5.1)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["new_class_cross_entropy"]


def new_class_cross_entropy(logits: Tensor, labels: Tensor, first_new: int) -> Tensor:
    """Mean cross-entropy with the softmax restricted to columns ``first_new`` to the end.

    Thesis Eq. 5.1: during an incremental stage only images of the new classes are seen, so the
    softmax normalises over the new-class outputs ``o'_{n+1} .. o'_{n+m}`` alone; the old-class
    outputs get no gradient from this term. ``logits`` is (B, n + m), ``labels`` (B,) holds
    global class indices in ``[first_new, n + m)`` and ``first_new`` is n. With
    ``first_new = 0`` this is the ordinary cross-entropy used to train the first model.

    Choice: the softmax is computed exactly (``log_softmax``); the reference code adds a
    ``1e-5`` smoothing to the probabilities before the log, which changes values by < 1e-4.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, C); got shape {tuple(logits.shape)}")
    num_classes = logits.shape[1]
    if not 0 <= first_new < num_classes:
        raise ValueError(f"first_new must be in [0, {num_classes}) for {num_classes} logit "
                         f"columns; got {first_new}")
    if logits.shape[0] == 0:
        raise ValueError("logits must hold at least one row; got an empty batch")
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"labels must be (B,) with B = {logits.shape[0]}; got shape "
                         f"{tuple(labels.shape)}")
    if (labels.min() < first_new or labels.max() >= num_classes):
        raise ValueError(f"labels must be global indices of new classes, in [{first_new}, "
                         f"{num_classes}); got values in [{int(labels.min())}, "
                         f"{int(labels.max())}]")
    return F.cross_entropy(logits[:, first_new:], labels - first_new)

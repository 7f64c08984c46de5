"""Networks of the chapter-4 image-text matcher (Figures 4.1, 4.3 and 4.8).

- :class:`ImageProjection` / :class:`TextProjection`: the non-shared fully-connected
  sub-networks of CMPM that map a backbone feature and a Bi-LSTM feature into the shared
  ``embed_dim``-d space (512 in the thesis).
- :class:`TextEncoder`: Bi-LSTM (:mod:`irbook.models.text`) followed by :class:`TextProjection`.
- :class:`ModalityDiscriminator`: a few FC layers -> 2 logits (image = 0, text = 1), the unified
  discriminator of Figure 4.3 (its softmax gives both L_c and the entropy of L_s).
- :func:`grad_reverse` / :class:`GradientReversal`: identity forward, ``-λ·grad`` backward
  (Ganin & Lempitsky), used by the separate paradigm of Figure 4.8.
- :class:`SeparateAdversary`: an uncertainty predictor (its output entropy is maximised by the
  encoders) and a modality classifier placed behind the gradient-reversal layer.
- :class:`NormSoftmaxClassifier`: the CMPC classifier, weights ``W`` (embed_dim, n_classes) whose
  columns are L2-normalised at every forward, no bias (Eq. 4.10).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .text import BiLSTMEncoder

__all__ = ["GradientReversal", "ImageProjection", "ModalityDiscriminator",
           "NormSoftmaxClassifier", "SeparateAdversary", "TextEncoder", "TextProjection",
           "grad_reverse", "mlp"]


def _check_dim(name: str, value: int) -> int:
    if int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer; got {value}")
    return int(value)


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    """FC layers ``in_dim -> hidden... -> out_dim`` with ReLU between them (none at the end)."""
    dims = [_check_dim("in_dim", in_dim), *(_check_dim("hidden", h) for h in hidden),
            _check_dim("out_dim", out_dim)]
    layers: list[nn.Module] = []
    for index, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if index < len(dims) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ImageProjection(nn.Module):
    """Backbone feature ``(B, in_dim)`` -> shared space ``(B, embed_dim)``: one linear layer
    (``hidden`` adds FC + ReLU layers before it). Output not normalised."""

    def __init__(self, in_dim: int, embed_dim: int = 512, hidden: Sequence[int] = ()) -> None:
        super().__init__()
        self.net = mlp(in_dim, hidden, embed_dim)
        self.in_dim, self.out_dim = int(in_dim), int(embed_dim)

    def forward(self, features: Tensor) -> Tensor:
        if features.dim() != 2 or features.shape[1] != self.in_dim:
            raise ValueError(f"image features must be (B, {self.in_dim}); got shape "
                             f"{tuple(features.shape)}")
        return self.net(features)


class TextProjection(nn.Module):
    """Bi-LSTM feature ``(B, 2·hidden)`` -> shared space ``(B, embed_dim)``: one linear layer."""

    def __init__(self, in_dim: int, embed_dim: int = 512) -> None:
        super().__init__()
        self.net = nn.Linear(_check_dim("in_dim", in_dim), _check_dim("embed_dim", embed_dim))

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)


class TextEncoder(nn.Module):
    """E_2 of Figure 4.1: :class:`BiLSTMEncoder` then :class:`TextProjection`."""

    def __init__(self, vocab_size: int, word_dim: int = 300, hidden: int = 512,
                 embed_dim: int = 512, dropout: float = 0.3) -> None:
        super().__init__()
        self.lstm = BiLSTMEncoder(vocab_size, word_dim, hidden, dropout)
        self.projection = TextProjection(self.lstm.out_dim, embed_dim)

    def forward(self, tokens: Tensor, lengths: Tensor, word_noise: Tensor | None = None
                ) -> Tensor:
        """Shared-space text features; ``word_noise`` (B, L, word_dim) is added to the word
        embeddings when given (stability test, Table 4.7)."""
        embedded = self.lstm.embed(tokens)
        if word_noise is not None:
            embedded = embedded + word_noise
        return self.projection(self.lstm.encode(embedded, lengths))


class ModalityDiscriminator(nn.Module):
    """FC layers -> 2 modality logits (index 0 = image, 1 = text); Figure 4.3."""

    def __init__(self, embed_dim: int = 512, hidden: Sequence[int] = (512, 256)) -> None:
        super().__init__()
        self.net = mlp(embed_dim, hidden, 2)

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, lambd: float) -> Tensor:  # type: ignore[override]
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return -ctx.lambd * grad, None


def grad_reverse(x: Tensor, lambd: float = 1.0) -> Tensor:
    """Identity in the forward pass; multiplies the incoming gradient by ``-lambd``."""
    return _ReverseGrad.apply(x, float(lambd))


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse` (gradient-reversal layer, Section 4.5.4)."""

    def __init__(self, lambd: float = 1.0) -> None:
        super().__init__()
        self.lambd = float(lambd)

    def forward(self, x: Tensor) -> Tensor:
        return grad_reverse(x, self.lambd)


class SeparateAdversary(nn.Module):
    """Figure 4.8: an uncertainty predictor and a modality classifier behind a GRL.

    ``forward(z)`` returns ``(uncertainty_logits, classifier_logits)``. The classifier sees
    ``grad_reverse(z)``, so minimising its cross-entropy (L_c) trains the classifier while the
    encoders receive the reversed gradient, i.e. they maximise L_c. The encoders minimise the
    negative entropy (L_s) of the uncertainty predictor's output.
    """

    def __init__(self, embed_dim: int = 512, hidden: Sequence[int] = (512, 256),
                 lambd: float = 1.0) -> None:
        super().__init__()
        self.uncertainty = ModalityDiscriminator(embed_dim, hidden)
        self.classifier = ModalityDiscriminator(embed_dim, hidden)
        self.reverse = GradientReversal(lambd)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        return self.uncertainty(features), self.classifier(self.reverse(features))


class NormSoftmaxClassifier(nn.Module):
    """CMPC norm-softmax classifier: ``logits = x · W̄`` with unit-norm columns of ``W``, no bias."""

    def __init__(self, embed_dim: int, n_classes: int) -> None:
        super().__init__()
        weight = torch.empty(_check_dim("embed_dim", embed_dim),
                             _check_dim("n_classes", n_classes))
        nn.init.xavier_uniform_(weight)
        self.weight = nn.Parameter(weight)

    def normalized_weight(self) -> Tensor:
        """``W̄`` (embed_dim, n_classes): every column scaled to unit L2 norm."""
        return F.normalize(self.weight, dim=0)

    def forward(self, features: Tensor) -> Tensor:
        # x·(w / |w|) = (x·w) / |w|: dividing the logits is cheaper than normalising W
        return (features @ self.weight) / self.weight.norm(dim=0).clamp_min(1e-12)

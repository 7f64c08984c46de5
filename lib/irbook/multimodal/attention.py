"""Training and scoring the word-to-region matcher of Chapter 8
(:class:`~irbook.models.attention.CrossAttentionMatcher`).

The loss is Chapter 4's VSE++ max-violation hinge (:func:`~irbook.losses.crossmodal.
max_violation_loss`) on the batch's attention similarities, so the matcher differs from the
global-embedding baseline of Chapter 4 only in how an image and a caption are compared: every
word against the regions it attends to, instead of one pooled vector against another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..losses.crossmodal import VSEPP_MARGIN, max_violation_loss
from ..models.attention import CrossAttentionMatcher
from ..train.loop import seed_everything
from .training import TrainingConfig, as_long, fit_batches

__all__ = ["AttentionConfig", "attention_similarity", "train_attention"]

SCORE_CHUNK = 64
"""Captions scored against all images at once (memory ∝ images × chunk × words × dim)."""


@dataclass(frozen=True)
class AttentionConfig(TrainingConfig):
    """Model and loss of the matcher (SCAN's λ₁ = 9, VSE++'s margin 0.2)."""

    embed_dim: int = 512
    word_dim: int = 300
    text_hidden: int = 512
    dropout: float = 0.3
    smooth: float = 9.0
    hops: int = 1
    margin: float = VSEPP_MARGIN


def _check_regions(regions: object) -> Tensor:
    tensor = torch.as_tensor(np.asarray(regions, dtype=np.float32))
    if tensor.dim() != 3:
        raise ValueError(f"regions must be (n_images, R, D); got shape {tuple(tensor.shape)}")
    return tensor


def train_attention(config: AttentionConfig, regions, tokens, lengths, caption_image,
                    vocab_size: int, progress: bool = False) -> CrossAttentionMatcher:
    """Train a matcher on the region features ``(n_images, R, D)`` of the training images and
    their captions (one pair per caption); the model's ``history`` holds the epoch means."""
    regions_t = _check_regions(regions)
    tokens_t, lengths_t = as_long(tokens, "tokens"), as_long(lengths, "lengths")
    images_t = as_long(caption_image, "caption_image")
    seed_everything(config.seed)
    model = CrossAttentionMatcher(regions_t.shape[2], int(vocab_size), config.word_dim,
                                  config.text_hidden, config.embed_dim, config.dropout,
                                  config.smooth, config.hops).to(config.device)

    def batch_terms(index: Tensor) -> dict[str, Tensor]:
        images = images_t[index]
        v = model.regions(regions_t[images].to(config.device))
        w, mask = model.words(tokens_t[index].to(config.device), lengths_t[index])
        sim = model.similarity(v, w, mask)
        return {"triplet": max_violation_loss(sim, config.margin, images.to(config.device))}

    model.history = fit_batches(model, batch_terms, len(tokens_t), config,
                                 f"attention ({config.hops} hop)", progress)
    return model


@torch.no_grad()
def attention_similarity(model: CrossAttentionMatcher, regions, tokens, lengths
                         ) -> np.ndarray:
    """Similarities ``(n_images, n_captions)`` of test images and captions."""
    model.eval()
    device = next(model.parameters()).device
    v = model.regions(_check_regions(regions).to(device))
    tokens_t, lengths_t = as_long(tokens, "tokens"), as_long(lengths, "lengths")
    columns = []
    for start in range(0, len(tokens_t), SCORE_CHUNK):
        chunk = slice(start, start + SCORE_CHUNK)
        w, mask = model.words(tokens_t[chunk].to(device), lengths_t[chunk])
        columns.append(model.similarity(v, w, mask).cpu())
    return torch.cat(columns, dim=1).numpy()

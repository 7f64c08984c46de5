"""Seeded training loop with atomic checkpoints and resume; classification pre-training."""

from irbook.train.loop import atomic_save, fit, seed_everything
from irbook.train.pretrain import pretrain_classifier, pretrain_config

__all__ = ["atomic_save", "fit", "pretrain_classifier", "pretrain_config", "seed_everything"]

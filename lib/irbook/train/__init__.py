"""Seeded training loop with atomic checkpoints and resume; classification pre-training and
the shared stand-in for ImageNet pre-training."""

from irbook.train.loop import atomic_save, fit, load_checkpoint, seed_everything
from irbook.train.pretrain import pretrain_classifier, pretrain_config
from irbook.train.standin import standin_backbone, standin_weights, standin_weights_path

__all__ = ["atomic_save", "fit", "load_checkpoint", "pretrain_classifier", "pretrain_config",
           "seed_everything", "standin_backbone", "standin_weights", "standin_weights_path"]

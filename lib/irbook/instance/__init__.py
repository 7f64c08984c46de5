"""Instance retrieval protocols of chapter 2: supervised fine-tuning on SfM tuples (cirtorch),
heads trained on frozen features (projections, NetVLAD, deep hashing) and cached experiments."""

from irbook.instance.experiments import (
    cached_finetune,
    finetune_key,
    split_conv_maps,
    split_descriptors,
    split_learned_whitening,
)
from irbook.instance.finetuning import (
    FINETUNE_POOLINGS,
    LOSSES,
    EpochTuples,
    FinetuneConfig,
    FinetuneResult,
    TupleImages,
    TupleModel,
    build_model,
    embed_tuples,
    finetune,
    make_optimizer,
    training_image,
    tuple_distances,
    tuple_loss,
)
from irbook.instance.heads import (
    HashResult,
    HashTrainingConfig,
    HeadConfig,
    HeadResult,
    train_hash_head,
    train_head_on_tuples,
)

__all__ = ["HashResult", "HashTrainingConfig", "HeadConfig", "HeadResult", "cached_finetune",
           "finetune_key", "split_conv_maps", "split_descriptors", "split_learned_whitening",
           "train_hash_head",
           "train_head_on_tuples",
           "FINETUNE_POOLINGS", "LOSSES", "EpochTuples", "FinetuneConfig", "FinetuneResult",
           "TupleImages", "TupleModel", "build_model", "embed_tuples", "finetune",
           "make_optimizer", "training_image", "tuple_distances", "tuple_loss"]

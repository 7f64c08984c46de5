"""Instance retrieval protocols of chapter 2: supervised fine-tuning on SfM tuples (cirtorch)."""

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

__all__ = ["FINETUNE_POOLINGS", "LOSSES", "EpochTuples", "FinetuneConfig", "FinetuneResult",
           "TupleImages", "TupleModel", "build_model", "embed_tuples", "finetune",
           "make_optimizer", "training_image", "tuple_distances", "tuple_loss"]

"""Training, decoding and scoring the Chapter 8 captioner
(:class:`~irbook.models.captioner.CaptionDecoder`), and the retrieval captions of a
global-embedding matcher it is compared with.

Training is teacher forcing with the cross-entropy of every next word (padding ignored), one
caption per training pair; decoding is greedy. A caption is scored with BLEU-4 and CIDEr-D
against all references of its image (:func:`~irbook.metrics.captioning.caption_scores`).
The retrieval baseline captions a test image with the training caption nearest to it in a
trained image–text embedding (nearest-neighbour captioning, Devlin et al. 2015).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.text import Vocabulary, encode_captions
from ..models.captioner import CaptionDecoder
from ..train.loop import seed_everything
from .training import TrainingConfig, as_long, fit_batches

__all__ = ["END_TOKEN", "START_TOKEN", "CaptionerConfig", "caption_vocabulary",
           "decode_captions", "encode_for_captioning", "retrieval_captions", "train_captioner"]

START_TOKEN, END_TOKEN = "<start>", "<end>"
DECODE_BATCH = 256


@dataclass(frozen=True)
class CaptionerConfig(TrainingConfig):
    """Model of the captioner and the longest caption it writes."""

    word_dim: int = 256
    hidden: int = 512
    max_len: int = 24


def caption_vocabulary(captions: Sequence[Sequence[str]]) -> Vocabulary:
    """The words of the training captions with the start and end tokens (indices 2 and 3)."""
    words = Vocabulary.from_captions(captions).words[2:]
    return Vocabulary((START_TOKEN, END_TOKEN, *words))


def encode_for_captioning(vocab: Vocabulary, captions: Sequence[Sequence[str]], max_len: int
                          ) -> Tensor:
    """``(M, max_len + 2)`` indices of ``<start> words <end>`` (words cut at ``max_len``)."""
    wrapped = [(START_TOKEN, *caption[:max_len], END_TOKEN) for caption in captions]
    tokens, _ = encode_captions(vocab, wrapped, max_len + 2)
    return tokens


def _regions(regions: object) -> Tensor:
    tensor = torch.as_tensor(np.asarray(regions, dtype=np.float32))
    if tensor.dim() == 2:
        tensor = tensor[:, None]  # a global feature is one region
    if tensor.dim() != 3:
        raise ValueError(f"regions must be (n_images, R, D) or (n_images, D); got shape "
                         f"{tuple(tensor.shape)}")
    return tensor


def train_captioner(config: CaptionerConfig, regions, captions: Sequence[Sequence[str]],
                    caption_image, vocab: Vocabulary, progress: bool = False
                    ) -> CaptionDecoder:
    """Train on region features ``(n_images, R, D)`` (or global features ``(n_images, D)``)
    and the tokenised training captions."""
    regions_t = _regions(regions)
    tokens = encode_for_captioning(vocab, captions, config.max_len)
    images_t = as_long(caption_image, "caption_image")
    seed_everything(config.seed)
    model = CaptionDecoder(regions_t.shape[2], len(vocab), config.word_dim,
                           config.hidden).to(config.device)

    def batch_terms(index: Tensor) -> dict[str, Tensor]:
        batch = tokens[index]
        batch = batch[:, :int((batch != 0).sum(1).max())].to(config.device)  # trim padding
        logits = model(regions_t[images_t[index]].to(config.device), batch[:, :-1])
        return {"cross_entropy": F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(),
                                                 ignore_index=0)}

    model.history = fit_batches(model, batch_terms, len(tokens), config, "captioner",
                                 progress)
    return model


def decode_captions(model: CaptionDecoder, regions, vocab: Vocabulary, max_len: int
                    ) -> list[list[str]]:
    """Greedy captions (word lists) of every image."""
    model.eval()
    device = next(model.parameters()).device
    start, end = vocab.index[START_TOKEN], vocab.index[END_TOKEN]
    out: list[list[str]] = []
    for chunk in _regions(regions).split(DECODE_BATCH):
        for indices in model.greedy(chunk.to(device), start, end, max_len):
            out.append(vocab.decode(indices))
    return out


def retrieval_captions(image_embeddings: np.ndarray, caption_embeddings: np.ndarray,
                       captions: Sequence[Sequence[str]]) -> list[list[str]]:
    """For every image, the caption (of ``captions``, the training set) whose embedding has
    the highest cosine similarity with the image's."""
    image = F.normalize(torch.as_tensor(np.asarray(image_embeddings, dtype=np.float32)), dim=1)
    text = F.normalize(torch.as_tensor(np.asarray(caption_embeddings, dtype=np.float32)), dim=1)
    if image.shape[1] != text.shape[1] or len(text) != len(captions):
        raise ValueError(f"embeddings must share their dimension and captions match the caption "
                         f"embeddings; got {tuple(image.shape)}, {tuple(text.shape)}, "
                         f"{len(captions)} captions")
    nearest = (image @ text.T).argmax(dim=1).tolist()
    return [list(captions[j]) for j in nearest]

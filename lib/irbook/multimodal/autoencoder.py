"""Training and scoring the multimodal autoencoder of Figure 8.2
(:class:`~irbook.models.autoencoder.MultimodalAutoencoder`).

Loss of a batch of image–caption pairs (``x`` pixels in [0, 1], ``y`` the caption, ``b`` its
bag of words, ``E``/``D`` encoders and decoders, ``n(·)`` L2 normalisation):

- coordinated: ``‖D_i(E_i x) − x‖² + BCE(D_t(E_t y), b) + λ ‖n(E_i x) − n(E_t y)‖²``
- cross: ``‖D_i(E_t y) − x‖² + BCE(D_t(E_i x), b) + λ ‖n(E_i x) − n(E_t y)‖²``
- joint: the mean over the inputs (x, y), (x, 0) and (0, y) of the reconstruction of both
  modalities from the shared code ``J``; no distance term (the code is shared).

The pixel term is the mean squared error per value, the text term the mean binary
cross-entropy per vocabulary word. The distance is taken between normalised codes (the
retrieval compares codes by cosine; unnormalised codes could shrink towards zero instead).
Only matched pairs enter the loss: the autoencoder never sees a negative, which is the
difference from the verification-based (triplet) baseline of Chapter 4 that Section 8.3.3
discusses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.autoencoder import WIRINGS, MultimodalAutoencoder, check_image_size
from ..models.text import PAD_INDEX
from ..train.loop import seed_everything
from .training import TrainingConfig, as_long, fit_batches

__all__ = ["AutoencoderConfig", "autoencoder_similarity", "autoencoder_terms", "bag_of_words",
           "caption_sampler", "pixels_of", "train_autoencoder"]

ENCODE_BATCH = 256


@dataclass(frozen=True)
class AutoencoderConfig(TrainingConfig):
    """Model and loss of the autoencoder; ``align`` is λ of the distance term."""

    wiring: str = "coordinated"
    image_size: int = 32
    code_dim: int = 256
    word_dim: int = 300
    text_hidden: int = 512
    dropout: float = 0.3
    align: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.wiring not in WIRINGS:
            raise ValueError(f"AutoencoderConfig.wiring must be one of {WIRINGS}; "
                             f"got {self.wiring!r}")
        if not (isinstance(self.align, int | float) and np.isfinite(self.align)
                and self.align >= 0):
            raise ValueError(f"AutoencoderConfig.align must be a finite number >= 0; "
                             f"got {self.align!r}")
        check_image_size(self.image_size)


def pixels_of(images: np.ndarray, size: int) -> Tensor:
    """uint8 images (N, H, W, 3) → float (N, 3, size, size) in [0, 1] (area resize)."""
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, 3); got {array.dtype} {array.shape}")
    batch = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).float() / 255
    if batch.shape[-1] != size or batch.shape[-2] != size:
        batch = F.interpolate(batch, size=(size, size), mode="area")
    return batch


def bag_of_words(tokens: Tensor, vocab_size: int) -> Tensor:
    """Multi-hot ``(B, vocab_size)``: 1 for every word of the caption (padding excluded)."""
    bags = torch.zeros(len(tokens), int(vocab_size), device=tokens.device)
    bags.scatter_(1, tokens, 1.0)
    bags[:, PAD_INDEX] = 0.0
    return bags


def _distance(a: Tensor, b: Tensor) -> Tensor:
    return (F.normalize(a, dim=1) - F.normalize(b, dim=1)).pow(2).sum(1).mean()


def autoencoder_terms(model: MultimodalAutoencoder, pixels: Tensor, tokens: Tensor,
                      lengths: Tensor, align: float) -> dict[str, Tensor]:
    """The loss terms of one batch (module docstring)."""
    bags = bag_of_words(tokens, model.text_decoder[-1].out_features)
    h_image, h_text = model.image_encoder(pixels), model.text_code(tokens, lengths)
    if model.wiring == "joint":
        codes = [model.joint(h_image, h_text), model.joint(h_image, None),
                 model.joint(None, h_text)]
        image_rec = torch.stack([F.mse_loss(model.image_decoder(j), pixels) for j in codes])
        text_rec = torch.stack([F.binary_cross_entropy_with_logits(model.text_decoder(j), bags)
                                for j in codes])
        return {"image": image_rec.mean(), "text": text_rec.mean()}
    to_image, to_text = (h_image, h_text) if model.wiring == "coordinated" else (h_text, h_image)
    return {"image": F.mse_loss(model.image_decoder(to_image), pixels),
            "text": F.binary_cross_entropy_with_logits(model.text_decoder(to_text), bags),
            "distance": align * _distance(h_image, h_text)}


def caption_sampler(caption_image: Tensor, n_images: int, seed: int
                    ) -> Callable[[Tensor], Tensor]:
    """A function from image indices to one of each image's captions, drawn at random with a
    generator seeded by ``seed`` (every image needs a caption)."""
    counts = torch.bincount(caption_image, minlength=n_images)
    if int(counts.min()) < 1:
        raise ValueError(f"image {int(counts.argmin())} has no caption")
    order = torch.argsort(caption_image, stable=True)
    first = torch.cumsum(counts, 0) - counts
    generator = torch.Generator().manual_seed(seed)

    def sample(images: Tensor) -> Tensor:
        offset = (torch.rand(len(images), generator=generator) * counts[images]).long()
        return order[first[images] + offset]

    return sample


def train_autoencoder(config: AutoencoderConfig, images: np.ndarray, tokens, lengths,
                      caption_image, vocab_size: int, progress: bool = False
                      ) -> MultimodalAutoencoder:
    """Train one wiring on uint8 training images and their captions. An epoch visits every
    image once, paired with one of its captions drawn at random (so an epoch costs one
    encoding and reconstruction per image, not per caption)."""
    pixels = pixels_of(images, config.image_size)
    tokens_t, lengths_t = as_long(tokens, "tokens"), as_long(lengths, "lengths")
    sample = caption_sampler(as_long(caption_image, "caption_image"), len(pixels), config.seed)
    seed_everything(config.seed)
    model = MultimodalAutoencoder(config.wiring, config.image_size, int(vocab_size),
                                  config.word_dim, config.text_hidden, config.code_dim,
                                  config.dropout).to(config.device)

    def batch_terms(index: Tensor) -> dict[str, Tensor]:
        captions, device = sample(index), config.device
        return autoencoder_terms(model, pixels[index].to(device), tokens_t[captions].to(device),
                                 lengths_t[captions], config.align)

    model.history = fit_batches(model, batch_terms, len(pixels), config,
                                f"autoencoder ({config.wiring})", progress)
    return model


@torch.no_grad()
def autoencoder_similarity(model: MultimodalAutoencoder, images: np.ndarray, tokens, lengths
                           ) -> np.ndarray:
    """Cosine similarities ``(n_images, n_captions)`` of the single-modality codes."""
    model.eval()
    device = next(model.parameters()).device
    pixels = pixels_of(images, model.image_encoder.image_size)
    tokens_t, lengths_t = as_long(tokens, "tokens"), as_long(lengths, "lengths")
    image = torch.cat([model.embed_image(chunk.to(device)).cpu()
                       for chunk in pixels.split(ENCODE_BATCH)])
    text = torch.cat([model.embed_text(t.to(device), n).cpu() for t, n in
                      zip(tokens_t.split(ENCODE_BATCH), lengths_t.split(ENCODE_BATCH),
                          strict=True)])
    return (F.normalize(image, dim=1) @ F.normalize(text, dim=1).T).numpy()

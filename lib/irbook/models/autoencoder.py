"""The convolutional multimodal autoencoder of Figure 8.2, in its three wirings.

An image branch (a small CNN encoder and a transposed-convolution decoder of the pixels) and a
text branch (the Bi-LSTM of Chapter 4 as encoder, a bag-of-words decoder) meet in a hidden
code of ``code_dim`` values:

- ``coordinated`` (Fig. 8.2a): each branch encodes and reconstructs its own modality; the two
  codes of a pair are tied by their Euclidean distance.
- ``joint`` (Fig. 8.2b): a shared MLP maps both hidden representations to one joint code from
  which both modalities are reconstructed. To embed one modality alone (retrieval has one
  query), the other input is set to zero, and training also reconstructs both modalities
  from each one alone (the bimodal autoencoder of Ngiam et al. 2011).
- ``cross`` (Fig. 8.2c): the image code reconstructs the text and the text code the image,
  with the same distance constraint between the codes.

Choices where Figure 8.2 is silent: the text decoder predicts which vocabulary words occur in
the caption (multi-label, not the word sequence), the image decoder the pixels at
``image_size`` (a multiple of 8) in [0, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .matching import mlp
from .text import BiLSTMEncoder, check_tokens

__all__ = ["WIRINGS", "ConvImageDecoder", "ConvImageEncoder", "MultimodalAutoencoder",
           "check_image_size"]

WIRINGS = ("coordinated", "joint", "cross")
_CHANNELS = (32, 64, 128)


def check_image_size(image_size: int) -> int:
    if int(image_size) != image_size or image_size < 8 or image_size % 8:
        raise ValueError(f"image_size must be a multiple of 8 (>= 8); got {image_size!r}")
    return int(image_size)


class ConvImageEncoder(nn.Module):
    """Images ``(B, 3, S, S)`` in [0, 1] → code ``(B, code_dim)``: three stride-2 4×4
    convolutions (32, 64, 128 channels, ReLU) and a linear layer."""

    def __init__(self, image_size: int, code_dim: int) -> None:
        super().__init__()
        size = check_image_size(image_size)
        layers: list[nn.Module] = []
        for c_in, c_out in zip((3, *_CHANNELS[:-1]), _CHANNELS, strict=True):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
        self.conv = nn.Sequential(*layers)
        self.linear = nn.Linear(_CHANNELS[-1] * (size // 8) ** 2, int(code_dim))
        self.image_size = size

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1:] != (3, self.image_size, self.image_size):
            raise ValueError(f"images must be (B, 3, {self.image_size}, {self.image_size}); "
                             f"got {tuple(images.shape)}")
        return self.linear(self.conv(images).flatten(1))


class ConvImageDecoder(nn.Module):
    """Code ``(B, code_dim)`` → images ``(B, 3, S, S)`` in [0, 1]: the mirror of
    :class:`ConvImageEncoder` (transposed convolutions, a sigmoid at the end)."""

    def __init__(self, image_size: int, code_dim: int) -> None:
        super().__init__()
        self.side = check_image_size(image_size) // 8
        self.linear = nn.Linear(int(code_dim), _CHANNELS[-1] * self.side ** 2)
        layers: list[nn.Module] = []
        outs = (*reversed(_CHANNELS[:-1]), 3)
        for c_in, c_out in zip(reversed(_CHANNELS), outs, strict=True):
            layers += [nn.ReLU(inplace=True),
                       nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)]
        self.deconv = nn.Sequential(*layers, nn.Sigmoid())

    def forward(self, code: Tensor) -> Tensor:
        maps = self.linear(code).view(len(code), _CHANNELS[-1], self.side, self.side)
        return self.deconv(maps)


class MultimodalAutoencoder(nn.Module):
    """Both branches and, for ``wiring="joint"``, the shared MLP (Figure 8.2)."""

    def __init__(self, wiring: str, image_size: int, vocab_size: int, word_dim: int = 300,
                 text_hidden: int = 512, code_dim: int = 512, dropout: float = 0.3) -> None:
        super().__init__()
        if wiring not in WIRINGS:
            raise ValueError(f"wiring must be one of {WIRINGS}; got {wiring!r}")
        self.wiring = wiring
        self.image_encoder = ConvImageEncoder(image_size, code_dim)
        self.image_decoder = ConvImageDecoder(image_size, code_dim)
        self.lstm = BiLSTMEncoder(vocab_size, word_dim, text_hidden, dropout)
        self.text_projection = nn.Linear(self.lstm.out_dim, int(code_dim))
        self.text_decoder = mlp(int(code_dim), (int(code_dim),), int(vocab_size))
        self.shared = (mlp(2 * int(code_dim), (int(code_dim),), int(code_dim))
                       if wiring == "joint" else None)

    def text_code(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        check_tokens(tokens, lengths)
        return self.text_projection(self.lstm(tokens, lengths))

    def joint(self, image_code: Tensor | None, text_code: Tensor | None) -> Tensor:
        """The shared MLP of Fig. 8.2b on both hidden codes; a missing one is zeros."""
        present = image_code if image_code is not None else text_code
        zeros = torch.zeros_like(present)
        both = torch.cat([image_code if image_code is not None else zeros,
                          text_code if text_code is not None else zeros], dim=1)
        return self.shared(both)

    def embed_image(self, images: Tensor) -> Tensor:
        """The retrieval code of images alone."""
        code = self.image_encoder(images)
        return self.joint(code, None) if self.wiring == "joint" else code

    def embed_text(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """The retrieval code of captions alone."""
        code = self.text_code(tokens, lengths)
        return self.joint(None, code) if self.wiring == "joint" else code

"""Bi-LSTM caption encoder of chapter 4 (Section 4.5.1; the CMPM text branch).

Tokens ``(B, L)`` int64 padded with 0, lengths ``(B,)`` >= 1 -> word embeddings ``(B, L, word_dim)``
-> one bidirectional LSTM layer with ``hidden`` units per direction -> max over the valid time
steps -> ``(B, 2·hidden)`` (the thesis: 2 × 512 = 1,024-d).

Implementation by masking instead of packed sequences (on a CPU several times faster for small
LSTMs, equal for large ones): the forward direction runs over the padded batch (padding comes
after the valid steps, so it cannot reach them); the backward direction runs a second
one-directional LSTM over each caption reversed within its own length; steps past the length
are set to -inf before the max. The result equals a packed ``nn.LSTM(bidirectional=True)``
with the same weights.

Choice where the thesis is silent: the dropout (0.3) is applied to the word embeddings before the
LSTM (a one-layer ``nn.LSTM`` has no internal dropout). :meth:`BiLSTMEncoder.embed` and
:meth:`BiLSTMEncoder.encode` are separate so that the stability test (Table 4.7) can perturb the
word embeddings.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["PAD_INDEX", "BiLSTMEncoder", "check_tokens"]

PAD_INDEX = 0


def check_tokens(tokens: Tensor, lengths: Tensor) -> None:
    """Raise ``ValueError`` unless ``tokens`` is (B, L) integer and ``lengths`` (B,) in [1, L]."""
    if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"tokens must be a (B, L) integer tensor; got shape "
                         f"{tuple(tokens.shape)} dtype {tokens.dtype}")
    if lengths.shape != tokens.shape[:1]:
        raise ValueError(f"lengths must be (B,) with B = {tokens.shape[0]}; got shape "
                         f"{tuple(lengths.shape)}")
    if len(lengths) and (int(lengths.min()) < 1 or int(lengths.max()) > tokens.shape[1]):
        raise ValueError(f"lengths must lie in [1, {tokens.shape[1]}]; got "
                         f"[{int(lengths.min())}, {int(lengths.max())}]")


class BiLSTMEncoder(nn.Module):
    """Word embedding + Bi-LSTM + max over time; output ``(B, 2·hidden)`` (:attr:`out_dim`)."""

    def __init__(self, vocab_size: int, word_dim: int = 300, hidden: int = 512,
                 dropout: float = 0.3) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("word_dim", word_dim),
                            ("hidden", hidden)):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive integer; got {value}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1); got {dropout}")
        self.embedding = nn.Embedding(vocab_size, word_dim, padding_idx=PAD_INDEX)
        self.dropout = nn.Dropout(dropout)
        self.forward_lstm = nn.LSTM(word_dim, hidden, batch_first=True)
        self.backward_lstm = nn.LSTM(word_dim, hidden, batch_first=True)
        self.out_dim = 2 * hidden

    def embed(self, tokens: Tensor) -> Tensor:
        """Word embeddings ``(B, L, word_dim)`` of the token indices."""
        return self.embedding(tokens)

    def states(self, embedded: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Per-word Bi-LSTM states ``(B, L', 2·hidden)`` of ``embedded`` (B, L, word_dim), with
        ``L'`` = the longest length, and the mask ``(B, L')`` of the valid steps; the state of a
        word joins the forward pass up to it and the backward pass from the caption's end."""
        lengths = lengths.to(embedded.device, torch.int64)
        embedded = self.dropout(embedded[:, :int(lengths.max())])
        steps = torch.arange(embedded.shape[1], device=embedded.device)[None, :]
        valid = steps < lengths[:, None]
        reverse = torch.where(valid, lengths[:, None] - 1 - steps, steps)
        reversed_input = embedded.gather(1, reverse[:, :, None].expand_as(embedded))
        forward_out, _ = self.forward_lstm(embedded)
        backward_out, _ = self.backward_lstm(reversed_input)
        backward_out = backward_out.gather(1, reverse[:, :, None].expand_as(backward_out))
        return torch.cat([forward_out, backward_out], dim=2), valid

    def encode(self, embedded: Tensor, lengths: Tensor) -> Tensor:
        """Bi-LSTM over ``embedded`` (B, L, word_dim), max over the first ``lengths`` steps."""
        both, valid = self.states(embedded, lengths)
        return both.masked_fill(~valid[:, :, None], float("-inf")).max(dim=1).values

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        check_tokens(tokens, lengths)
        return self.encode(self.embed(tokens), lengths)

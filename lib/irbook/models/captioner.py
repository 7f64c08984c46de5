"""A small image captioner for Chapter 8 (Section 8.2.1a; the attention captioners of Table 8.2).

A GRU language model conditioned on image regions by soft visual attention (Show, Attend and
Tell, Xu et al. 2015; the visual attention of Figure 8.3a): at every step the hidden state
scores each region additively, ``e_r = wᵀ tanh(W_v v_r + W_h h)``, and the softmax-weighted
regions join the word embedding as the GRU's input. The initial state is ``tanh`` of a linear
map of the mean region. Given one region — the global feature — the attention weight is 1 and
the model reduces to a captioner fed the global feature at every step, the comparison of
Chapter 8's demonstration.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["CaptionDecoder"]


class CaptionDecoder(nn.Module):
    """Regions ``(B, R, feature_dim)`` + caption prefixes → next-word logits."""

    def __init__(self, feature_dim: int, vocab_size: int, word_dim: int = 256,
                 hidden: int = 512) -> None:
        super().__init__()
        for name, value in (("feature_dim", feature_dim), ("vocab_size", vocab_size),
                            ("word_dim", word_dim), ("hidden", hidden)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        self.embedding = nn.Embedding(int(vocab_size), int(word_dim), padding_idx=0)
        self.region_key = nn.Linear(int(feature_dim), int(hidden))
        self.state_key = nn.Linear(int(hidden), int(hidden), bias=False)
        self.score = nn.Linear(int(hidden), 1, bias=False)
        self.init_state = nn.Linear(int(feature_dim), int(hidden))
        self.cell = nn.GRUCell(int(word_dim) + int(feature_dim), int(hidden))
        self.output = nn.Linear(int(hidden), int(vocab_size))

    def start(self, regions: Tensor) -> tuple[Tensor, Tensor]:
        """The first hidden state and the region keys of a batch."""
        if regions.dim() != 3:
            raise ValueError(f"regions must be (B, R, D); got shape {tuple(regions.shape)}")
        return torch.tanh(self.init_state(regions.mean(dim=1))), self.region_key(regions)

    def attend(self, regions: Tensor, keys: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Context ``(B, D)`` and attention weights ``(B, R)`` for the hidden ``state``."""
        scores = self.score(torch.tanh(keys + self.state_key(state)[:, None])).squeeze(-1)
        weights = scores.softmax(dim=1)
        return (weights[:, :, None] * regions).sum(dim=1), weights

    def step(self, regions: Tensor, keys: Tensor, state: Tensor, words: Tensor
             ) -> tuple[Tensor, Tensor]:
        """Logits of the next word after ``words`` (B,) and the new state."""
        context, _ = self.attend(regions, keys, state)
        state = self.cell(torch.cat([self.embedding(words), context], dim=1), state)
        return self.output(state), state

    def forward(self, regions: Tensor, inputs: Tensor) -> Tensor:
        """Teacher forcing: logits ``(B, L, vocab)`` for every prefix of ``inputs`` (B, L)."""
        state, keys = self.start(regions)
        logits = []
        for t in range(inputs.shape[1]):
            out, state = self.step(regions, keys, state, inputs[:, t])
            logits.append(out)
        return torch.stack(logits, dim=1)

    @torch.no_grad()
    def greedy(self, regions: Tensor, start_index: int, end_index: int, max_len: int
               ) -> list[list[int]]:
        """Word indices of the most likely next word at every step, until ``end_index`` or
        ``max_len`` words (the end token is not returned)."""
        state, keys = self.start(regions)
        words = torch.full((len(regions),), int(start_index), dtype=torch.int64,
                           device=regions.device)
        out: list[list[int]] = [[] for _ in range(len(regions))]
        done = torch.zeros(len(regions), dtype=torch.bool, device=regions.device)
        for _ in range(int(max_len)):
            logits, state = self.step(regions, keys, state, words)
            words = logits.argmax(dim=1)
            done_now = done | (words == end_index)
            for row in (~done_now).nonzero().flatten().tolist():
                out[row].append(int(words[row]))
            done = done_now
            if bool(done.all()):
                break
        return out

"""Caption text: a tokenizer, a word vocabulary and padded index tensors for a text encoder.

The vocabulary follows the usual VSE++ / CMPM preprocessing: lower-case word tokens, words
seen fewer than ``min_count`` times in the training captions map to ``<unk>``, index 0 is
padding. Word order is deterministic (count descending, then alphabetical), so the same
captions always give the same indices.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PAD, UNK = 0, 1
PAD_TOKEN, UNK_TOKEN = "<pad>", "<unk>"
_WORD = re.compile(r"[^\W_]+")  # runs of Unicode letters and digits


def tokenize(text: str) -> list[str]:
    """Lower-case words made of letters and digits; punctuation and spaces separate them
    ("A red-ish disc." -> ["a", "red", "ish", "disc"])."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    return _WORD.findall(text.lower())


class Vocabulary:
    """Word -> index map with ``<pad>`` = 0 and ``<unk>`` = 1; other words from index 2 on."""

    def __init__(self, words: Sequence[str]) -> None:
        words = [str(w) for w in words]
        if len(set(words)) != len(words):
            raise ValueError("words must be distinct")
        if PAD_TOKEN in words or UNK_TOKEN in words:
            raise ValueError(f"words must not contain the reserved tokens {PAD_TOKEN!r}, "
                             f"{UNK_TOKEN!r}")
        self.words: tuple[str, ...] = (PAD_TOKEN, UNK_TOKEN, *words)
        self.index: dict[str, int] = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def from_captions(cls, captions: Iterable[Sequence[str]], min_count: int = 1) -> Vocabulary:
        """Every token seen at least ``min_count`` times, ordered by count (descending) and
        then alphabetically."""
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
        counts = Counter(token for caption in captions for token in caption)
        counts.pop(PAD_TOKEN, None)
        counts.pop(UNK_TOKEN, None)
        kept = sorted((w for w, c in counts.items() if c >= min_count),
                      key=lambda w: (-counts[w], w))
        return cls(kept)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Indices of ``tokens``; unknown words give :data:`UNK`."""
        return [self.index.get(t, UNK) for t in tokens]

    def decode(self, indices: Iterable[int]) -> list[str]:
        """Words of ``indices``, padding dropped."""
        return [self.words[int(i)] for i in indices if int(i) != PAD]


def encode_captions(vocab: Vocabulary, captions: Sequence[Sequence[str]], max_len: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(M, max_len)`` int64 word indices padded with :data:`PAD` (captions longer than
    ``max_len`` are cut) and ``(M,)`` int64 lengths. An empty caption becomes one ``<unk>``
    token, so every length is at least 1 (packed RNN sequences need that)."""
    import torch  # here, so that tokenizing and the data loaders do not import torch

    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive integer, got {max_len!r}")
    tokens = torch.full((len(captions), max_len), PAD, dtype=torch.int64)
    lengths = torch.ones(len(captions), dtype=torch.int64)
    for row, caption in enumerate(captions):
        ids = vocab.encode(caption)[:max_len] or [UNK]
        tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        lengths[row] = len(ids)
    return tokens, lengths

"""Word-to-region cross-attention of Chapter 8 (Section 8.3.2c, Figure 8.3, Table 8.1).

Functional core :func:`word_region_similarity` and a thin module :class:`CrossAttentionMatcher`.
Every word of a caption attends over the regions of an image (textual attention in the terms of
Figure 8.3b: the weights come from the words and select regions); the caption–image similarity
is the mean over the caption's words of the cosine between a word and the regions it attended to
(the text-to-image form of SCAN, Lee et al. 2018, with average pooling). With ``hops > 1`` the
attention is stacked (Table 8.1's multiple-hop category): each hop adds what the word attended
to to its query before attending again.

Choices where the thesis and SCAN differ or are silent: the attention logits are the plain
cosines scaled by ``smooth`` (SCAN's λ₁ = 9) without SCAN's extra ReLU and per-word
normalisation; the regions are the cells of a grid over the backbone's feature map (SCAN uses
Faster R-CNN object proposals, which the book's CPU stand-in does not have).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .text import BiLSTMEncoder, check_tokens

__all__ = ["CrossAttentionMatcher", "word_region_similarity"]

_EPS = 1e-12


def _check_inputs(regions: Tensor, words: Tensor, word_mask: Tensor, hops: int) -> None:
    if regions.dim() != 3 or words.dim() != 3 or regions.shape[-1] != words.shape[-1]:
        raise ValueError(f"regions (I, R, D) and words (T, L, D) must share D; got shapes "
                         f"{tuple(regions.shape)} and {tuple(words.shape)}")
    if word_mask.shape != words.shape[:2] or word_mask.dtype != torch.bool:
        raise ValueError(f"word_mask must be a bool (T, L) = {tuple(words.shape[:2])} tensor; "
                         f"got {word_mask.dtype} {tuple(word_mask.shape)}")
    if not bool(word_mask.any(dim=1).all()):
        raise ValueError("word_mask must keep at least one word of every caption")
    if int(hops) != hops or hops < 1:
        raise ValueError(f"hops must be a positive integer; got {hops!r}")


def word_region_similarity(regions: Tensor, words: Tensor, word_mask: Tensor,
                           smooth: float = 9.0, hops: int = 1) -> Tensor:
    """Similarity ``S`` (I, T) of every image ``i`` (regions ``(I, R, D)``) and caption ``t``
    (words ``(T, L, D)``, valid where ``word_mask``).

    For word ``l`` of caption ``t``: ``a_lr = softmax_r(smooth · cos(q_l, v_r))``, the attended
    vector ``c_l = Σ_r a_lr v_r`` and ``S_it = mean_l cos(w_l, c_l)``; ``q_l = w_l`` at the
    first hop and ``q_l + c_l`` at the next (stacked attention).

    Every vector met is a combination of the word and the regions, so only dot products with
    the regions are formed: ``c·v_r = (a G)_r`` with the Gram matrix ``G = V Vᵀ``,
    ``|c|² = a G aᵀ`` and ``q·c = Σ_r a_r (q·v_r)``. The cost is (I, T·L, R) instead of
    (I, T·L, D)."""
    _check_inputs(regions, words, word_mask, hops)
    n_images, (n_captions, n_words, _) = len(regions), words.shape
    flat = words.reshape(n_captions * n_words, -1)
    word_dots = (flat @ regions.reshape(-1, regions.shape[-1]).T)      # (T·L, I·R)
    word_dots = word_dots.view(len(flat), n_images, -1).transpose(0, 1)  # (I, T·L, R)
    gram = regions @ regions.transpose(1, 2)                            # (I, R, R)
    region_norm = gram.diagonal(dim1=1, dim2=2).clamp_min(_EPS).sqrt()[:, None]  # (I, 1, R)
    word_sq = flat.pow(2).sum(-1)[None].expand(n_images, -1)            # (I, T·L)
    query_dots, query_sq = word_dots, word_sq
    for _ in range(int(hops)):
        cosine = query_dots / (query_sq.clamp_min(_EPS).sqrt()[..., None] * region_norm)
        weights = (smooth * cosine).softmax(dim=-1)                     # a, (I, T·L, R)
        context_dots = weights @ gram                                   # c·v_r
        context_sq = (context_dots * weights).sum(-1)                   # |c|²
        query_sq = query_sq + 2 * (weights * query_dots).sum(-1) + context_sq
        query_dots = query_dots + context_dots
    word_context = (weights * word_dots).sum(-1)                        # w·c
    cos = word_context / (word_sq.clamp_min(_EPS) * context_sq.clamp_min(_EPS)).sqrt()
    cos = cos.view(n_images, n_captions, n_words)
    mask = word_mask[None].to(cos.dtype)
    return (cos * mask).sum(-1) / mask.sum(-1)


class CrossAttentionMatcher(nn.Module):
    """Region features ``(B, R, region_dim)`` and caption tokens → the shared ``embed_dim``
    space (one linear layer each side; words = Bi-LSTM states), compared by
    :func:`word_region_similarity`."""

    def __init__(self, region_dim: int, vocab_size: int, word_dim: int = 300,
                 text_hidden: int = 512, embed_dim: int = 512, dropout: float = 0.3,
                 smooth: float = 9.0, hops: int = 1) -> None:
        super().__init__()
        if not smooth > 0:
            raise ValueError(f"smooth must be > 0; got {smooth!r}")
        self.region_projection = nn.Linear(int(region_dim), int(embed_dim))
        self.lstm = BiLSTMEncoder(vocab_size, word_dim, text_hidden, dropout)
        self.word_projection = nn.Linear(self.lstm.out_dim, int(embed_dim))
        self.smooth, self.hops = float(smooth), int(hops)

    def regions(self, region_features: Tensor) -> Tensor:
        """Projected regions ``(B, R, embed_dim)``."""
        if region_features.dim() != 3:
            raise ValueError(f"region features must be (B, R, D); got shape "
                             f"{tuple(region_features.shape)}")
        return self.region_projection(region_features)

    def words(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Projected word states ``(B, L', embed_dim)`` and their mask ``(B, L')``."""
        check_tokens(tokens, lengths)
        states, mask = self.lstm.states(self.lstm.embed(tokens), lengths)
        return self.word_projection(states), mask

    def similarity(self, regions: Tensor, words: Tensor, word_mask: Tensor) -> Tensor:
        """``S`` (I, T) of projected regions and words."""
        return word_region_similarity(regions, words, word_mask, self.smooth, self.hops)

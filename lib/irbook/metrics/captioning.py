"""Caption metrics of Table 8.2 through the maintained COCO caption-evaluation code
(``pycocoevalcap``): BLEU-1…4 (Papineni et al. 2002) and CIDEr-D (Vedantam et al. 2015, the
"CIDEr" of the COCO server and of Table 8.2).

Captions are given as token lists; they are joined by single spaces, which is what the PTB
tokenizer of the COCO toolkit would produce for the book's lower-case, punctuation-free tokens
(the tokenizer itself needs Java and is not used). CIDEr's document frequencies come from the
references of the scored images, so the score of an image depends on the set it is scored in,
as on the COCO server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["caption_scores"]


def _as_corpus(references: Sequence[Sequence[Sequence[str]]],
               candidates: Sequence[Sequence[str]]) -> tuple[dict, dict]:
    if len(references) != len(candidates) or not candidates:
        raise ValueError(f"references and candidates must be two non-empty lists of equal "
                         f"length; got {len(references)} and {len(candidates)}")
    gts, res = {}, {}
    for index, (refs, candidate) in enumerate(zip(references, candidates, strict=True)):
        if not refs:
            raise ValueError(f"image {index} has no reference caption")
        gts[index] = [" ".join(ref) for ref in refs]
        res[index] = [" ".join(candidate)]
    return gts, res


def caption_scores(references: Sequence[Sequence[Sequence[str]]],
                   candidates: Sequence[Sequence[str]]) -> Mapping[str, object]:
    """BLEU-1…4 of the corpus and CIDEr-D of the candidates (one token list per image) against
    their references (token lists per image).

    Returns ``{"BLEU-n": corpus score, "CIDEr": mean score, "per_image": {"BLEU-4": array,
    "CIDEr": array}}``; the corpus BLEU is the one Table 8.2 reports, the per-image values are
    what a bootstrap over images resamples. Scores are fractions (×100 for Table 8.2's scale)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    gts, res = _as_corpus(references, candidates)
    bleu, bleu_per_image = Bleu(4).compute_score(gts, res, verbose=0)
    cider, cider_per_image = Cider().compute_score(gts, res)
    out: dict[str, object] = {f"BLEU-{n + 1}": float(bleu[n]) for n in range(4)}
    out["CIDEr"] = float(cider)
    out["per_image"] = {"BLEU-4": np.asarray(bleu_per_image[3], dtype=float),
                        "CIDEr": np.asarray(cider_per_image, dtype=float)}
    return out

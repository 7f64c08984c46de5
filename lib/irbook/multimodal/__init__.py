"""Chapter 8's demonstrations of the survey's ideas on the image–caption data of Chapter 4:
the multimodal autoencoder of Figure 8.2 (:mod:`.autoencoder`), word-to-region cross-attention
(:mod:`.attention`) and an attention captioner scored with BLEU and CIDEr (:mod:`.captioning`).
They share one training loop over captions (:mod:`.training`)."""

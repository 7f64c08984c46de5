"""Chapter 8's models: word-to-region attention, the multimodal autoencoder, the captioner and
its metrics, each against an independent computation or a hand-computed value."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from irbook.losses.crossmodal import max_violation_loss, vsepp_loss
from irbook.metrics.captioning import caption_scores
from irbook.models.attention import CrossAttentionMatcher, word_region_similarity
from irbook.models.autoencoder import MultimodalAutoencoder
from irbook.models.captioner import CaptionDecoder
from irbook.models.text import BiLSTMEncoder
from irbook.multimodal.attention import AttentionConfig, attention_similarity, train_attention
from irbook.multimodal.autoencoder import (
    AutoencoderConfig,
    autoencoder_similarity,
    autoencoder_terms,
    bag_of_words,
    caption_sampler,
    pixels_of,
    train_autoencoder,
)
from irbook.multimodal.captioning import (
    CaptionerConfig,
    caption_vocabulary,
    decode_captions,
    encode_for_captioning,
    retrieval_captions,
    train_captioner,
)
from irbook.multimodal.training import TrainingConfig, item_batches


def _loop_similarity(v, w, mask, smooth, hops):
    """S[i, t] word by word, region by region, as the formula reads."""
    out = torch.zeros(len(v), len(w), dtype=v.dtype)
    for i in range(len(v)):
        for t in range(len(w)):
            cosines = []
            for length in range(w.shape[1]):
                if not mask[t, length]:
                    continue
                query = w[t, length]
                for _ in range(hops):
                    a = (smooth * F.cosine_similarity(query[None], v[i], dim=1)).softmax(0)
                    context = (a[:, None] * v[i]).sum(0)
                    query = query + context
                cosines.append(F.cosine_similarity(w[t, length], context, dim=0))
            out[i, t] = torch.stack(cosines).mean()
    return out


@pytest.mark.parametrize("hops", [1, 2, 3])
def test_word_region_similarity_equals_the_formula_word_by_word(hops):
    gen = torch.Generator().manual_seed(hops)
    v = torch.randn(3, 5, 7, generator=gen, dtype=torch.float64)
    w = torch.randn(4, 6, 7, generator=gen, dtype=torch.float64)
    mask = torch.rand(4, 6, generator=gen) > 0.4
    mask[:, 0] = True
    expected = _loop_similarity(v, w, mask, 9.0, hops)
    torch.testing.assert_close(word_region_similarity(v, w, mask, 9.0, hops), expected)


def test_one_region_reduces_attention_to_the_mean_word_cosine_with_it():
    v = torch.randn(2, 1, 4, dtype=torch.float64)
    w = torch.randn(3, 2, 4, dtype=torch.float64)
    mask = torch.ones(3, 2, dtype=torch.bool)
    expected = F.cosine_similarity(w[None], v[:, None], dim=-1).mean(-1)
    torch.testing.assert_close(word_region_similarity(v, w, mask), expected)


def test_word_region_similarity_refuses_a_caption_without_words():
    with pytest.raises(ValueError, match="at least one word"):
        word_region_similarity(torch.randn(2, 3, 4), torch.randn(2, 2, 4),
                               torch.tensor([[True, False], [False, False]]))


def test_max_violation_loss_by_hand_and_vsepp_is_it_on_cosines():
    sim = torch.tensor([[0.9, 0.5, 0.2], [0.1, 0.6, 0.55], [0.3, 0.0, 0.4]])
    # image rows: hardest caption negatives 0.5, 0.1 (max of 0.1/0.55 → 0.55), 0.3
    # row 0: max(0, .2 + .5 - .9) = 0; row 1: .2 + .55 - .6 = .15; row 2: .2 + .3 - .4 = .1
    # caption columns: col 0: .2 + .3 - .9 < 0; col 1: .2 + .5 - .6 = .1; col 2: .2 + .55 - .4
    expected = 0.0 + 0.15 + 0.1 + 0.0 + 0.1 + 0.35
    assert float(max_violation_loss(sim, 0.2)) == pytest.approx(expected)
    image, text = torch.randn(4, 5), torch.randn(4, 5)
    cos = F.normalize(image, dim=1) @ F.normalize(text, dim=1).T
    assert float(vsepp_loss(image, text)) == pytest.approx(float(max_violation_loss(cos)))


def test_lstm_states_are_the_forward_prefix_and_the_backward_suffix():
    torch.manual_seed(0)
    encoder = BiLSTMEncoder(10, 4, 3, dropout=0.0).eval()
    tokens = torch.tensor([[2, 3, 4, 0], [5, 6, 7, 8]])
    lengths = torch.tensor([3, 4])
    states, mask = encoder.states(encoder.embed(tokens), lengths)
    embedded = encoder.embed(tokens[:1, :3])
    forward, _ = encoder.forward_lstm(embedded)
    backward, _ = encoder.backward_lstm(embedded.flip(1))
    torch.testing.assert_close(states[0, :3, :3], forward[0])
    torch.testing.assert_close(states[0, :3, 3:], backward[0].flip(0))
    assert mask.tolist() == [[True, True, True, False], [True] * 4]
    pooled = states.masked_fill(~mask[:, :, None], -math.inf).max(1).values
    torch.testing.assert_close(encoder(tokens, lengths), pooled)


def test_matcher_training_lowers_the_loss_and_scores_every_pair():
    gen = np.random.default_rng(0)
    regions = gen.normal(size=(12, 4, 6)).astype(np.float32)
    tokens = torch.as_tensor(gen.integers(2, 9, size=(24, 5)))
    lengths = torch.full((24,), 5)
    caption_image = np.repeat(np.arange(12), 2)
    config = AttentionConfig(epochs=6, batch_size=8, lr=1e-2, embed_dim=8, word_dim=4,
                             text_hidden=4, dropout=0.0)
    model = train_attention(config, regions, tokens, lengths, caption_image, 10)
    losses = [h["triplet"] for h in model.history]
    assert losses[-1] < losses[0]
    assert attention_similarity(model, regions, tokens, lengths).shape == (12, 24)


def test_bag_of_words_and_the_caption_sampler():
    bags = bag_of_words(torch.tensor([[3, 2, 3, 0]]), 5)
    assert bags.tolist() == [[0.0, 0.0, 1.0, 1.0, 0.0]]
    caption_image = torch.tensor([1, 0, 1, 2, 0, 1])
    sample = caption_sampler(caption_image, 3, seed=0)
    drawn = torch.stack([sample(torch.tensor([0, 1, 2])) for _ in range(30)])
    assert (caption_image[drawn] == torch.tensor([0, 1, 2])).all()
    assert set(drawn[:, 1].tolist()) == {0, 2, 5}
    with pytest.raises(ValueError, match="image 3 has no caption"):
        caption_sampler(caption_image, 4, seed=0)


def test_autoencoder_terms_follow_the_wiring_and_the_weight_moves_the_loss():
    torch.manual_seed(0)
    pixels = torch.rand(4, 3, 16, 16)
    tokens, lengths = torch.randint(2, 9, (4, 5)), torch.full((4,), 5)
    joint = MultimodalAutoencoder("joint", 16, 10, 4, 4, 8, 0.0)
    assert set(autoencoder_terms(joint, pixels, tokens, lengths, 1.0)) == {"image", "text"}
    coordinated = MultimodalAutoencoder("coordinated", 16, 10, 4, 4, 8, 0.0)
    one = autoencoder_terms(coordinated, pixels, tokens, lengths, 1.0)
    three = autoencoder_terms(coordinated, pixels, tokens, lengths, 3.0)
    assert float(three["distance"]) == pytest.approx(3 * float(one["distance"]))
    h_i, h_t = coordinated.image_encoder(pixels), coordinated.text_code(tokens, lengths)
    expected = (F.normalize(h_i, dim=1) - F.normalize(h_t, dim=1)).pow(2).sum(1).mean()
    assert float(one["distance"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(one["image"]) == pytest.approx(
        float(F.mse_loss(coordinated.image_decoder(h_i), pixels)), rel=1e-5)


def test_autoencoder_learns_and_embeds_each_modality_alone():
    gen = np.random.default_rng(1)
    images = gen.integers(0, 256, size=(10, 16, 16, 3), dtype=np.uint8)
    tokens = torch.as_tensor(gen.integers(2, 9, size=(20, 4)))
    lengths = torch.full((20,), 4)
    caption_image = np.repeat(np.arange(10), 2)
    for wiring in ("joint", "cross"):
        config = AutoencoderConfig(wiring=wiring, image_size=16, code_dim=8, word_dim=4,
                                   text_hidden=4, epochs=8, batch_size=5, lr=5e-3)
        model = train_autoencoder(config, images, tokens, lengths, caption_image, 10)
        assert model.history[-1]["total"] < model.history[0]["total"]
        sim = autoencoder_similarity(model, images, tokens, lengths)
        assert sim.shape == (10, 20) and np.all(np.abs(sim) <= 1 + 1e-5)


def test_pixels_of_scales_to_unit_range_and_refuses_floats():
    images = np.full((2, 8, 8, 3), 255, dtype=np.uint8)
    assert torch.equal(pixels_of(images, 8), torch.ones(2, 3, 8, 8))
    assert pixels_of(images, 16).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="uint8"):
        pixels_of(images.astype(float), 8)
    with pytest.raises(ValueError, match="multiple of 8"):
        AutoencoderConfig(image_size=12)


def test_captioner_learns_two_distinct_captions_and_stops_at_the_end_token():
    captions = [("a", "red", "disc"), ("a", "blue", "square")] * 8
    caption_image = np.arange(16) % 2
    features = np.eye(2, 6, dtype=np.float32)[:, None, :].repeat(3, axis=1)  # (2, 3, 6)
    vocab = caption_vocabulary(captions)
    assert vocab.words[2:4] == ("<start>", "<end>")
    tokens = encode_for_captioning(vocab, captions[:1], max_len=2)
    assert vocab.decode(tokens[0]) == ["<start>", "a", "red", "<end>"]
    config = CaptionerConfig(epochs=60, batch_size=8, lr=2e-2, word_dim=8, hidden=16)
    model = train_captioner(config, features, captions, caption_image, vocab)
    assert decode_captions(model, features, vocab, max_len=10) == [["a", "red", "disc"],
                                                                   ["a", "blue", "square"]]


def test_greedy_decoding_stops_at_max_len_without_an_end():
    model = CaptionDecoder(4, 6, 3, 5)
    with torch.no_grad():
        model.output.bias.fill_(0)
        model.output.bias[5] = 100.0  # always word 5, never the end token 3
    assert model.greedy(torch.zeros(2, 1, 4), 2, 3, max_len=4) == [[5] * 4, [5] * 4]


def test_caption_scores_against_hand_computed_bleu_and_a_perfect_cider():
    refs = [[("a", "b", "c", "e")], [("x", "y", "z", "w")], [("p", "q", "r", "s")]]
    scores = caption_scores(refs, [("a", "b", "c", "d"), ("x", "y", "z", "w"),
                                   ("p", "q", "r", "s")])
    # BLEU-1 of the corpus: 11 of 12 candidate words appear in the references, same length
    assert scores["BLEU-1"] == pytest.approx(11 / 12, abs=1e-6)
    assert scores["per_image"]["BLEU-4"][1] == pytest.approx(1.0, abs=1e-6)
    cider = scores["per_image"]["CIDEr"]
    assert cider[1] == pytest.approx(cider[2]) and cider[0] < cider[1]
    with pytest.raises(ValueError, match="equal length"):
        caption_scores(refs, [("a",)])


def test_retrieval_captions_take_the_nearest_training_caption():
    captions = [("one",), ("two",), ("three",)]
    text = np.array([[1, 0], [0, 1], [-1, 0]], dtype=np.float32)
    image = np.array([[0.1, 2.0], [-3.0, 0.5]], dtype=np.float32)
    assert retrieval_captions(image, text, captions) == [["two"], ["three"]]


def test_training_config_and_batches():
    with pytest.raises(ValueError, match="TrainingConfig.lr"):
        TrainingConfig(lr=float("nan"))
    with pytest.raises(ValueError, match="TrainingConfig.batch_size"):
        TrainingConfig(batch_size=1)
    batches = item_batches(9, 4, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [4, 4] and len(set(torch.cat(batches).tolist())) == 8


def test_matcher_module_refuses_flat_region_features():
    model = CrossAttentionMatcher(6, 10, 4, 4, 8)
    with pytest.raises(ValueError, match=r"\(B, R, D\)"):
        model.regions(torch.randn(2, 6))

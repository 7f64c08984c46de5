"""Chapter-3 networks: shapes, SSAH's multi-scale fusion, the sparse bag-of-words product."""

import numpy as np
import pytest
import torch

from irbook.models.hashing import (
    MULTISCALE_LEVELS,
    BagOfWordsLinear,
    DomainPredictor,
    Dropout,
    ImageHashNet,
    LabelHashNet,
    LabelPredictor,
    MultiScaleFusion,
    MultiScaleLinear,
    TextHashNet,
    bow_matmul,
    sign_codes,
)


def sparse_bow(n, v, density, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, v, generator=g) < density).float() * 2.0


def test_image_branch_shapes_and_tanh_codes():
    net = ImageHashNet(in_dim=10, n_bits=6, common_dim=8, dropout=0.0)
    out = net(torch.randn(4, 10))
    assert out.features.shape == (4, 8) and out.logits.shape == (4, 6)
    assert torch.allclose(out.codes, torch.tanh(out.logits))
    assert out.features.min() < 0  # F is signed (no ReLU)


def test_text_branch_shapes_with_and_without_fusion():
    for multiscale in (True, False):
        net = TextHashNet(vocab_size=120, n_bits=5, common_dim=7, hidden=9, multiscale=multiscale)
        out = net(sparse_bow(3, 120, 0.1))
        assert out.features.shape == (3, 7) and out.codes.shape == (3, 5)
        assert out.codes.abs().max() < 1


def test_multiscale_fusion_pools_ssah_windows():
    assert MULTISCALE_LEVELS == (10, 6, 3, 2, 1)  # windows 50, 30, 15, 10, 5
    fusion = MultiScaleFusion(vocab_size=60)
    assert fusion.windows == (50, 30, 15, 10, 5)
    assert fusion.out_dim == 60 + 1 + 2 + 4 + 6 + 12
    x = torch.arange(120, dtype=torch.float32).reshape(2, 60)
    out = fusion(x)  # weight 1, bias 0 at start: relu(mean) of each window
    assert torch.equal(out[:, :60], x)
    assert out[0, 60].item() == pytest.approx(np.mean(np.arange(50)))
    assert out[1, 61:63].tolist() == pytest.approx([np.mean(np.arange(60, 90)),
                                                    np.mean(np.arange(90, 120))])
    assert out[0, -12:].tolist() == pytest.approx([np.mean(np.arange(5 * i, 5 * i + 5))
                                                   for i in range(12)])


def test_a_window_longer_than_the_vocabulary_pools_everything():
    fusion = MultiScaleFusion(vocab_size=12)
    assert fusion.windows == (12, 12, 12, 10, 5)
    assert fusion.out_dim == 12 + 1 + 1 + 1 + 1 + 2


def test_multiscale_linear_equals_a_linear_layer_on_the_fusion():
    layer = MultiScaleLinear(vocab_size=60, out_dim=4)
    with torch.no_grad():
        layer.fusion.weight.copy_(torch.tensor([0.5, -1.0, 2.0, 1.5, 0.7]))
        layer.fusion.bias.copy_(torch.tensor([0.1, 0.3, -0.2, 0.0, 0.05]))
    for x in (sparse_bow(5, 60, 0.02), torch.rand(5, 60)):  # sparse and dense paths
        expected = layer.fusion(x) @ layer.weight + layer.words.bias
        assert torch.allclose(layer(x), expected, atol=1e-5)


def test_resize_concatenate_linear_is_the_same_function_as_the_folded_layer():
    """SSAH resizes every pooled scale back to V (nearest), stacks 6 channels and applies a
    linear layer on 6V inputs; folding each channel's weights over the resize gives the
    pooled-scale weights of MultiScaleLinear."""
    v, hidden = 60, 3
    layer = MultiScaleLinear(vocab_size=v, out_dim=hidden)
    x = torch.rand(4, v)
    channels = [x] + [torch.nn.functional.interpolate(p[:, None], size=v, mode="nearest")[:, 0]
                      for p in torch.split(layer.fusion(x)[:, v:],
                                           [v // w for w in layer.fusion.windows], dim=1)]
    big = torch.randn(6 * v, hidden)  # the 6V -> hidden weight of SSAH's layer
    ssah = torch.cat(channels, dim=1) @ big
    folded = [big[:v]]
    for c, w in enumerate(layer.fusion.windows, start=1):
        n = v // w
        source = (torch.arange(v) * n) // v  # nearest: output i reads input floor(i n / V)
        block = big[c * v:(c + 1) * v]
        folded.append(torch.zeros(n, hidden).index_add_(0, source, block))
    with torch.no_grad():
        layer.words.weight.copy_(folded[0])
        layer.words.bias.zero_()
        layer.scales.copy_(torch.cat(folded[1:]))
    assert torch.allclose(layer(x), ssah, atol=1e-4)


def test_sparse_product_equals_dense_in_value_and_gradient():
    x = sparse_bow(6, 200, 0.02, seed=1)
    w1 = torch.randn(200, 5, requires_grad=True)
    w2 = w1.detach().clone().requires_grad_(True)
    out_sparse, out_dense = bow_matmul(x, w1), x @ w2
    assert torch.allclose(out_sparse, out_dense, atol=1e-5)
    g = torch.randn(6, 5)
    out_sparse.backward(g)
    out_dense.backward(g)
    assert torch.allclose(w1.grad, w2.grad, atol=1e-5)
    assert torch.equal(bow_matmul(torch.zeros(3, 200), w1), torch.zeros(3, 5))


def test_bag_of_words_linear_has_linear_init_bounds():
    layer = BagOfWordsLinear(400, 50)
    assert layer.weight.shape == (400, 50)
    assert layer.weight.abs().max() <= 1 / np.sqrt(400)


def test_predictors_output_probabilities():
    labels = LabelPredictor(in_dim=8, n_labels=3, dropout=0.0)
    p = labels.probabilities(torch.randn(5, 8))
    assert p.shape == (5, 3) and ((p > 0) & (p < 1)).all()
    domain = DomainPredictor(in_dim=4)
    q = domain.probabilities(torch.randn(5, 4))
    assert q.shape == (5, 2) and torch.allclose(q.sum(1), torch.ones(5))
    assert DomainPredictor(in_dim=4, n_domains=1)(torch.randn(2, 4)).shape == (2, 1)


def test_label_network_shapes():
    out, label_logits = LabelHashNet(n_labels=4, n_bits=6, common_dim=8, hidden=16)(
        torch.eye(4))
    assert out.features.shape == (4, 8) and out.codes.shape == (4, 6)
    assert label_logits.shape == (4, 4)


def test_sign_codes_maps_zero_to_plus_one():
    codes = sign_codes(torch.tensor([[0.0, -0.3, 2.0], [-0.0, 1e-9, -5.0]]))
    assert codes.dtype == np.int8
    assert codes.tolist() == [[1, -1, 1], [1, 1, -1]]
    assert sign_codes(np.array([[-1.5]])).tolist() == [[-1]]


def test_dropout_keeps_the_expectation_and_is_off_in_eval():
    torch.manual_seed(0)
    layer = Dropout(0.5)
    x = torch.ones(200, 200)
    y = layer(x)
    assert (y == 0).float().mean().item() == pytest.approx(0.5, abs=0.02)
    assert y.mean().item() == pytest.approx(1.0, abs=0.03)
    assert set(torch.unique(y).tolist()) == {0.0, 2.0}
    layer.eval()
    assert torch.equal(layer(x), x)
    with pytest.raises(ValueError, match="dropout"):
        Dropout(1.0)


def test_bad_sizes_name_the_argument():
    with pytest.raises(ValueError, match="n_bits"):
        ImageHashNet(10, 0)
    with pytest.raises(ValueError, match="vocab_size"):
        TextHashNet(0, 8)
    with pytest.raises(ValueError, match="dropout"):
        LabelPredictor(4, 2, dropout=-0.1)

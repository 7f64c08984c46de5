"""Chapter-4 networks: Bi-LSTM text encoder, projections, discriminators, GRL, norm-softmax."""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from irbook.models.matching import (
    GradientReversal,
    ImageProjection,
    ModalityDiscriminator,
    NormSoftmaxClassifier,
    SeparateAdversary,
    TextEncoder,
    TextProjection,
    grad_reverse,
)
from irbook.models.text import BiLSTMEncoder


def test_bilstm_shape_and_padding_invariance():
    torch.manual_seed(0)
    encoder = BiLSTMEncoder(vocab_size=20, word_dim=6, hidden=5, dropout=0.0).eval()
    tokens = torch.tensor([[3, 4, 5, 0, 0], [7, 8, 0, 0, 0]])
    lengths = torch.tensor([3, 2])
    out = encoder(tokens, lengths)
    assert out.shape == (2, 10) and encoder.out_dim == 10
    # padding tokens, whatever their index, and extra padded columns do not change the output
    noisy = tokens.clone()
    noisy[0, 3:] = 9
    noisy[1, 2:] = 11
    wider = torch.cat([tokens, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    assert torch.allclose(encoder(noisy, lengths), out, atol=1e-6)
    assert torch.allclose(encoder(wider, lengths), out, atol=1e-6)
    # each row alone gives the same vector as in the batch
    alone = encoder(tokens[1:, :2], lengths[1:])
    assert torch.allclose(alone, out[1:], atol=1e-6)


def packed_reference(encoder: BiLSTMEncoder, tokens, lengths) -> torch.Tensor:
    """A packed nn.LSTM(bidirectional=True) with the encoder's weights, max over valid steps."""
    lstm = torch.nn.LSTM(encoder.forward_lstm.input_size, encoder.forward_lstm.hidden_size,
                         batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name, value in encoder.forward_lstm.named_parameters():
            getattr(lstm, name).copy_(value)
            getattr(lstm, name + "_reverse").copy_(getattr(encoder.backward_lstm, name))
    packed = pack_padded_sequence(encoder.embed(tokens), lengths, batch_first=True,
                                  enforce_sorted=False)
    padded, _ = pad_packed_sequence(lstm(packed)[0], batch_first=True,
                                    padding_value=float("-inf"))
    return padded.max(dim=1).values


def test_bilstm_equals_packed_bidirectional_lstm():
    torch.manual_seed(1)
    encoder = BiLSTMEncoder(vocab_size=10, word_dim=3, hidden=4, dropout=0.0).eval()
    tokens = torch.tensor([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8], [9, 0, 0, 0, 0]])
    lengths = torch.tensor([3, 5, 1])
    with torch.no_grad():
        assert torch.allclose(encoder(tokens, lengths), packed_reference(encoder, tokens, lengths),
                              atol=1e-6)
    # one step: max over a single output = [forward h_1, backward h_1] on that word
    single = encoder(tokens[2:, :1], lengths[2:])
    h_forward = encoder.forward_lstm(encoder.embed(tokens[2:, :1]))[0][:, 0]
    h_backward = encoder.backward_lstm(encoder.embed(tokens[2:, :1]))[0][:, 0]
    assert torch.allclose(single, torch.cat([h_forward, h_backward], dim=1), atol=1e-6)


def test_bilstm_gradient_reaches_only_valid_words():
    torch.manual_seed(5)
    encoder = BiLSTMEncoder(vocab_size=10, word_dim=3, hidden=4, dropout=0.0)
    embedded = encoder.embed(torch.tensor([[1, 2, 3, 4]])).detach().requires_grad_()
    encoder.encode(embedded, torch.tensor([2])).sum().backward()
    assert embedded.grad[0, :2].abs().sum() > 0
    assert embedded.grad[0, 2:].abs().sum() == 0


def test_bilstm_rejects_bad_lengths():
    encoder = BiLSTMEncoder(vocab_size=10, word_dim=3, hidden=4)
    with pytest.raises(ValueError, match="lengths"):
        encoder(torch.tensor([[1, 2]]), torch.tensor([3]))
    with pytest.raises(ValueError, match="dropout"):
        BiLSTMEncoder(10, dropout=1.0)


def test_text_encoder_word_noise_changes_output():
    torch.manual_seed(2)
    encoder = TextEncoder(vocab_size=10, word_dim=3, hidden=4, embed_dim=7, dropout=0.0).eval()
    tokens, lengths = torch.tensor([[1, 2, 3]]), torch.tensor([3])
    clean = encoder(tokens, lengths)
    assert clean.shape == (1, 7)
    assert torch.allclose(encoder(tokens, lengths, word_noise=torch.zeros(1, 3, 3)), clean)
    assert not torch.allclose(encoder(tokens, lengths, word_noise=torch.ones(1, 3, 3)), clean)


def test_projections_and_discriminator_shapes():
    assert ImageProjection(8, 5)(torch.zeros(3, 8)).shape == (3, 5)
    assert ImageProjection(8, 5, hidden=(6,))(torch.zeros(3, 8)).shape == (3, 5)
    assert TextProjection(10, 5)(torch.zeros(3, 10)).shape == (3, 5)
    assert ModalityDiscriminator(5, (4, 3))(torch.zeros(3, 5)).shape == (3, 2)
    with pytest.raises(ValueError, match="image features"):
        ImageProjection(8, 5)(torch.zeros(3, 7))


@pytest.mark.parametrize("lambd", [1.0, 0.5])
def test_gradient_reversal(lambd):
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = grad_reverse(x, lambd)
    assert torch.equal(y, x)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.allclose(x.grad, -lambd * torch.tensor([1.0, 2.0, 3.0]))
    x2 = x.detach().clone().requires_grad_()
    GradientReversal(lambd)(x2).sum().backward()
    assert torch.allclose(x2.grad, torch.full((3,), -lambd))


def test_separate_adversary_reverses_only_the_classifier_gradient():
    torch.manual_seed(3)
    adversary = SeparateAdversary(embed_dim=4, hidden=(3,))
    z = torch.randn(5, 4, requires_grad=True)
    _, class_logits = adversary(z)
    class_logits.sum().backward()
    reversed_grad = z.grad.clone()
    z.grad = None
    adversary.classifier(z).sum().backward()
    assert torch.allclose(reversed_grad, -z.grad)
    # the classifier's own parameters get the ordinary gradient (it minimises its loss)
    assert all(p.grad is not None for p in adversary.classifier.parameters())
    z.grad = None
    uncertainty_logits, _ = adversary(z)
    assert torch.allclose(uncertainty_logits, adversary.uncertainty(z))


def test_norm_softmax_classifier_unit_columns_no_bias():
    torch.manual_seed(4)
    classifier = NormSoftmaxClassifier(embed_dim=3, n_classes=4)
    with torch.no_grad():
        classifier.weight.mul_(torch.tensor([2.0, 5.0, 0.3, 1.0]))
    w_bar = classifier.normalized_weight()
    assert torch.allclose(w_bar.norm(dim=0), torch.ones(4))
    x = torch.randn(2, 3)
    manual = torch.stack([torch.stack([x[i] @ (classifier.weight[:, c]
                                               / classifier.weight[:, c].norm())
                                       for c in range(4)]) for i in range(2)])
    assert torch.allclose(classifier(x), manual, atol=1e-6)
    assert torch.allclose(classifier(torch.zeros(1, 3)), torch.zeros(1, 4))
    assert [name for name, _ in classifier.named_parameters()] == ["weight"]

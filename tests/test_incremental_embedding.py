"""EmbeddingNet (chapters 5-6 embedding with a growing classifier) and GrowingLinear."""

import pytest
import torch
from torch import nn

from irbook.models import EmbeddingNet, GrowingLinear, SmallCNN


def _net(**kwargs):
    torch.manual_seed(0)
    return EmbeddingNet(SmallCNN(width=4, depth=2), dim=6, **kwargs)


def test_max_pooling_embedding_is_the_normalised_linear_map_of_the_channel_maxima():
    net = _net(pooling="max").eval()
    images = torch.rand(3, 3, 16, 16)
    maps = net.backbone(images)
    raw = maps.amax(dim=(2, 3)) @ net.embedding.weight.T + net.embedding.bias
    expected = raw / (raw.norm(dim=1, keepdim=True) + 1e-6)
    out = net(images)
    assert out.shape == (3, 6)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3), atol=1e-5, rtol=0)


def test_avg_pooling_is_the_spatial_mean_and_normalize_false_keeps_the_linear_output():
    net = _net(pooling="avg", normalize=False).eval()
    images = torch.rand(2, 3, 16, 16)
    maps = net.backbone(images)
    expected = maps.mean(dim=(2, 3)) @ net.embedding.weight.T + net.embedding.bias
    torch.testing.assert_close(net(images), expected)


def test_logits_come_from_the_unnormalised_embedding_and_are_empty_without_classes():
    net = _net(num_classes=4).eval()
    images = torch.rand(2, 3, 16, 16)
    embeddings, logits = net.forward_with_logits(images)
    raw = net.embedding(net.pooling(net.backbone(images)))
    torch.testing.assert_close(logits, raw @ net.classifier.weight.T + net.classifier.bias)
    torch.testing.assert_close(embeddings, net(images))
    assert _net().eval().forward_with_logits(images)[1].shape == (2, 0)


def test_growing_keeps_the_old_logits_and_is_reproducible_with_a_generator():
    net = _net(num_classes=3).eval()
    images = torch.rand(2, 3, 16, 16)
    before = net.forward_with_logits(images)[1]
    net.grow_classes(2, generator=torch.Generator().manual_seed(5))
    after = net.forward_with_logits(images)[1]
    assert net.num_classes == 5 and after.shape == (2, 5)
    torch.testing.assert_close(after[:, :3], before)
    again = GrowingLinear(6, 0)
    again.grow(2, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(again.weight, net.classifier.weight[3:])
    assert net.classifier.weight.abs().max() <= 1 / 6**0.5
    assert isinstance(net.classifier.weight, nn.Parameter)


def test_a_grown_checkpoint_loads_into_a_fresh_network_without_classes():
    grown = _net(num_classes=2)
    grown.grow_classes(3)
    fresh = _net()
    fresh.load_state_dict(grown.state_dict())
    assert fresh.num_classes == 5
    torch.testing.assert_close(fresh.classifier.bias, grown.classifier.bias)


def test_train_bn_false_freezes_the_running_statistics():
    images = torch.rand(4, 3, 16, 16)
    for train_bn, should_change in ((True, True), (False, False)):
        net = _net(train_bn=train_bn).train()
        bn = next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d))
        before = bn.running_mean.clone()
        net(images)
        assert (not torch.equal(before, bn.running_mean)) is should_change
        assert net.training


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="pooling must be one of max, avg, gem"):
        _net(pooling="sum")
    with pytest.raises(ValueError, match="dim"):
        EmbeddingNet(SmallCNN(width=4, depth=1), dim=0)
    with pytest.raises(ValueError, match="n_new"):
        GrowingLinear(3, 1).grow(-1)

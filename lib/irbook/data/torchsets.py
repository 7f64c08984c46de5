"""Torch Datasets over a :class:`~irbook.data.finegrained.LabelledSet` (chapters 5-6).

Transforms follow the thesis author's code (REFERENCE_PROTOCOLS, "Thesis author's code"):
training takes a random resized crop with scale 0.16-1 and a horizontal flip; testing resizes
and centre-crops. The author resizes to 256 and crops 224; here both sizes are parameters
(``resize_size`` defaults to ``image_size``). Random draws use torch's global generator only
(seed it with :func:`irbook.train.loop.seed_everything`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from irbook.constants import IMAGENET_MEAN, IMAGENET_STD
from irbook.data.finegrained import LabelledSet
from irbook.data.images import load_image

CROP_SCALE = (0.16, 1.0)


def finegrained_transform(
    image_size: int,
    train: bool,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    resize_size: int | None = None,
) -> transforms.Compose:
    """Train: RandomResizedCrop(image_size, scale 0.16-1) + horizontal flip. Test: resize the
    shorter side to ``resize_size`` (default ``image_size``) + centre crop ``image_size``.
    Both end with ToTensor and normalisation by ``mean``/``std``."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    resize_size = image_size if resize_size is None else resize_size
    if not isinstance(resize_size, int) or resize_size < image_size:
        raise ValueError(f"resize_size must be an integer >= image_size ({image_size}), "
                         f"got {resize_size!r}")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std must have 3 values, got {mean} and {std}")
    if train:
        steps = [transforms.RandomResizedCrop(image_size, scale=CROP_SCALE),
                 transforms.RandomHorizontalFlip()]
    else:
        steps = [transforms.Resize(resize_size), transforms.CenterCrop(image_size)]
    return transforms.Compose([*steps, transforms.ToTensor(),
                               transforms.Normalize(list(mean), list(std))])


class LabelledImageDataset(Dataset):
    """``(image tensor (3, image_size, image_size), label)`` for each item of a
    :class:`LabelledSet`; items are image paths or rows of a uint8 (N, H, W, 3) array."""

    def __init__(
        self,
        labelled_set: LabelledSet,
        image_size: int,
        train: bool,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        resize_size: int | None = None,
    ) -> None:
        if not isinstance(labelled_set, LabelledSet):
            raise TypeError(f"labelled_set must be a LabelledSet, got {type(labelled_set)}")
        self.labelled_set = labelled_set
        self.labels = labelled_set.labels
        self.train = train
        self.transform = finegrained_transform(image_size, train, mean, std, resize_size)
        self._test_key = (image_size, resize_size, tuple(mean), tuple(std))

    def __len__(self) -> int:
        return len(self.labelled_set)

    def image(self, index: int) -> Image.Image:
        """The untransformed RGB image of item ``index``."""
        item = self.labelled_set.items[index]
        if isinstance(self.labelled_set.items, list):
            return load_image(item)
        return Image.fromarray(item, "RGB")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.labelled_set.items[index]
        if self.train or not isinstance(self.labelled_set.items, list):
            return self.transform(self.image(index)), int(self.labels[index])
        key = (str(item), *self._test_key)
        tensor = _TEST_TENSORS.get(key)
        if tensor is None:
            tensor = self.transform(self.image(index))
            _TEST_TENSORS.put(key, tensor)
        return tensor, int(self.labels[index])


class _TensorCache:
    """Test-time tensors of image files, kept up to ``max_bytes`` (oldest dropped first): the
    test transform is deterministic, and every evaluation of the incremental protocol embeds the
    same test images again, so they are transformed once."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.bytes = max_bytes, 0
        self.items: dict[tuple, torch.Tensor] = {}

    def get(self, key: tuple) -> torch.Tensor | None:
        return self.items.get(key)

    def put(self, key: tuple, tensor: torch.Tensor) -> None:
        size = tensor.element_size() * tensor.nelement()
        while self.items and self.bytes + size > self.max_bytes:
            oldest = next(iter(self.items))
            self.bytes -= self.items[oldest].element_size() * self.items.pop(oldest).nelement()
        if size <= self.max_bytes:
            self.items[key] = tensor
            self.bytes += size


_TEST_TENSORS = _TensorCache(max_bytes=512 * 2**20)

"""Image reading and torch Datasets for retrieval and for classification pre-training."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from stat import S_ISREG

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.datasets import ImageFolder
from torchvision.transforms import functional as TF

from irbook.constants import IMAGENET_MEAN, IMAGENET_STD
from irbook.data.errors import DatasetCorruptError, DatasetNotFoundError, require

Box = tuple[float, float, float, float]


SMALL_IMAGE_PIXELS = 160 * 160
"""Images up to this size (the synthetic CPU datasets) are kept decoded in memory, so that
training epochs do not decode the same JPEG again; larger ones are always read from disk."""


def load_image(path: str | PathLike[str]) -> Image.Image:
    """Open an image file as an RGB PIL image (missing → DatasetNotFoundError, unreadable →
    DatasetCorruptError). The caller owns the returned image."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError:
        info = None
    if info is None or not S_ISREG(info.st_mode):
        raise DatasetNotFoundError(path, "image", "check the dataset folder is complete")
    mtime_ns = info.st_mtime_ns
    cached = _SMALL_IMAGES.get(str(path))
    if cached is not None and cached[0] == mtime_ns:
        return cached[1].copy()
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetCorruptError(path, f"not a readable image ({exc})") from exc
    if rgb.width * rgb.height <= SMALL_IMAGE_PIXELS:
        if len(_SMALL_IMAGES) >= SMALL_IMAGE_CACHE_SIZE:
            _SMALL_IMAGES.pop(next(iter(_SMALL_IMAGES)))  # forget the oldest entry
        _SMALL_IMAGES[str(path)] = (mtime_ns, rgb.copy())
    return rgb


def check_images(paths: Sequence[str | PathLike[str]], dataset: str,
                 sample: int | None = None) -> int:
    """Open and fully decode each image (``Image.load``), or ``sample`` of them evenly spaced
    from the first to the last, and return how many were checked. The first missing file raises
    DatasetNotFoundError, the first that does not decode DatasetCorruptError; both name the file
    and how to fix it. JPEGs are decoded in draft mode (reduced scale), which still reads every
    byte, so a truncated file is still found, faster than by a full decode."""
    chosen = [Path(p) for p in paths]
    if sample is not None:
        if sample < 1:
            raise ValueError(f"sample must be a positive integer or None, got {sample}")
        if sample < len(chosen):  # positions floor(k (n - 1) / (sample - 1)): first and last
            last = len(chosen) - 1
            chosen = [chosen[k * last // max(sample - 1, 1)] for k in range(sample)]
    fix = (f"re-download and re-extract {dataset}; for synthetic data delete the dataset's "
           "folder so that the book writes it again")
    for path in chosen:
        if not path.is_file():
            raise DatasetNotFoundError(path, dataset, fix)
        try:
            with Image.open(path) as img:
                img.draft(None, (1, 1))  # JPEG only: decode at 1/8 scale; others ignore it
                img.load()
        except Exception as exc:  # noqa: BLE001 - whatever PIL raises, the file is damaged
            raise DatasetCorruptError(
                path, f"this {dataset} image does not decode ({type(exc).__name__}: {exc}); "
                f"{fix}") from exc
    return len(chosen)


SMALL_IMAGE_CACHE_SIZE = 16384
_SMALL_IMAGES: dict[str, tuple[int, Image.Image]] = {}


def crop_to_box(img: Image.Image, box: Box) -> Image.Image:
    """Crop to ``box`` = (x1, y1, x2, y2) in pixels, rounded and clipped to the image (queries
    of the revisited protocol are cropped to their box)."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1 = max(x1, 0), max(y1, 0)
    x2, y2 = min(x2, img.width), min(y2, img.height)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"box {box} does not overlap the {img.width}x{img.height} image")
    return img.crop((x1, y1, x2, y2))


def resize_max_side(img: Image.Image, max_size: int) -> Image.Image:
    """Resize so that the longer side equals ``max_size`` (aspect ratio kept)."""
    if max_size <= 0:
        raise ValueError(f"max_size must be a positive integer, got {max_size}")
    scale = max_size / max(img.width, img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    if size == img.size:
        return img
    return img.resize(size, Image.Resampling.BICUBIC)


class ImageListDataset(Dataset):
    """Images from a list of paths as normalised float tensors (3, H, W).

    With ``boxes`` the i-th image is first cropped to ``boxes[i]`` (``None`` = no crop); with
    ``max_size`` it is then resized so that its longer side equals ``max_size``.
    """

    def __init__(
        self,
        paths: Sequence[str | PathLike[str]],
        boxes: Sequence[Box | None] | None = None,
        max_size: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        if boxes is not None and len(boxes) != len(self.paths):
            raise ValueError(f"boxes has {len(boxes)} entries for {len(self.paths)} paths")
        if max_size is not None and max_size <= 0:
            raise ValueError(f"max_size must be a positive integer or None, got {max_size}")
        self.boxes = list(boxes) if boxes is not None else [None] * len(self.paths)
        self.max_size = max_size
        self.mean = list(mean)
        self.std = list(std)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        img = load_image(self.paths[index])
        box = self.boxes[index]
        if box is not None:
            img = crop_to_box(img, box)
        if self.max_size is not None:
            img = resize_max_side(img, self.max_size)
        return TF.normalize(TF.to_tensor(img), self.mean, self.std)


def classification_transform(
    image_size: int,
    train: bool,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> transforms.Compose:
    """Train: random resized crop (scale 0.35-1), flip, mild colour jitter. Eval: resize +
    centre crop. Both end with ToTensor + normalisation."""
    if train:
        steps = [
            transforms.RandomResizedCrop(image_size, scale=(0.35, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(0.2, 0.2, 0.2),
        ]
    else:
        steps = [transforms.Resize(image_size), transforms.CenterCrop(image_size)]
    return transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(mean, std)])


class ImageFolderDataset(ImageFolder):
    """``<root>/<class_name>/<image>`` (torchvision ImageFolder) returning ``(tensor, label)``.

    ``train=True`` applies random augmentation drawn from torch's global generator (seed it, and
    the DataLoader workers, for reproducible runs).
    """

    def __init__(self, root: str | PathLike[str], image_size: int, train: bool = False) -> None:
        if image_size <= 0:
            raise ValueError(f"image_size must be a positive integer, got {image_size}")
        root = require(
            root, "image folder", "write the synthetic set with irbook.data.synth."
            "ensure_classification, or point root at <split>/<class_name>/<image> folders",
        )
        super().__init__(str(root), transform=classification_transform(image_size, train),
                         loader=load_image)  # small images decoded once, then from memory
        self.train = train

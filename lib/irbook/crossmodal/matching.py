"""Image-text matching of chapter 4 (ITMeetsAL, Algorithm 1) and its baselines VSE++ and
CMPM + CMPC, trained on cached image features of a frozen backbone.

One training pair per caption: caption j is paired with ``image_features[caption_image[j]]`` and
the instance label ``labels[caption_image[j]]``; an epoch visits every caption once in a seeded
random order, in batches of ``batch_size`` captions (a last batch of one caption is dropped).
All methods share the encoders: image projection (one linear layer) and Bi-LSTM + projection.

Algorithm 1 as implemented ("itmeetsal"): every batch is one generator step, Adam on the
encoders and the norm-softmax classifier with the selected terms of
``L_ce + L_di + L_tr + L_kl + L_s`` while the discriminator stays fixed; after every
``generator_steps`` generator steps, one discriminator step minimises L_c on the (detached)
features of that last batch, the encoders fixed. Algorithm 1 does not say whether its inner
generator steps see new batches; here they do (the usual n-critic schedule), so an epoch costs
one pass over the captions. Component ``"adv"`` switches on L_s and the discriminator (Table
4.4's ``L_s + L_c``). ``discriminator="separate"`` is Figure 4.8: the encoders minimise the
negative entropy of an uncertainty predictor (trained on L_c in the discriminator step, like the
unified discriminator: the thesis does not say what trains it) and, through a gradient-reversal
layer, maximise the L_c of a modality classifier that itself minimises L_c in every generator
step. Baselines: "vsepp" = max-violation triplet (margin 0.2, summed; captions of the same
image in a batch are not negatives); "cmpm_cmpc" = CMPM + CMPC; they ignore ``components``.

End-to-end fine-tuning (Section 4.5.1 fine-tunes the backbone with lr 2e-5): with
``backbone_lr > 0`` the image argument holds uint8 images and ``train_matching`` gets the
backbone; every batch's images pass through a copy of it (:class:`~.features.PooledBackbone`:
resized to ``image_size``, pooled over an ``image_grid`` grid, BatchNorm in eval mode) before
the image projection, and the copy learns with its own Adam parameter group (lr =
``backbone_lr``, the heads at ``lr``). With ``backbone_lr = 0`` (the default) nothing of this
runs: cached features in, the frozen-feature results unchanged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..distributed import all_mean, call, data_parallel, is_main, share
from ..losses.crossmodal import (
    VSEPP_MARGIN,
    bidirectional_triplet_loss,
    cmpc_logits,
    cmpc_loss,
    cmpm_loss,
    imbalance_kl_loss,
    modality_cross_entropy,
    negative_entropy_loss,
    vsepp_loss,
)
from ..metrics.crossmodal import (
    i2t_ranks,
    label_average_precision,
    median_rank,
    ranking_pr,
    recall_at,
    rsum,
    t2i_ranks,
)
from ..models.matching import (
    ImageProjection,
    ModalityDiscriminator,
    NormSoftmaxClassifier,
    SeparateAdversary,
    TextEncoder,
)
from ..progress import progress_bar
from ..train.loop import seed_everything
from .features import IMAGE_BATCH, PooledBackbone, check_images, to_input_tensor

__all__ = ["COMPONENTS", "DISCRIMINATORS", "METHODS", "MatchingConfig", "MatchingModel",
           "MatchingResult", "evaluate_matching", "score_similarity", "train_matching"]

METHODS = ("itmeetsal", "vsepp", "cmpm_cmpc")
COMPONENTS = ("ce", "tr", "di", "kl", "adv")
DISCRIMINATORS = ("unified", "separate")
KS = (1, 5, 10)
INFERENCE_BATCH = 1024


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _positive_int(name: str, value: object, minimum: int = 1) -> None:
    _require(isinstance(value, int | np.integer) and not isinstance(value, bool)
             and value >= minimum, f"MatchingConfig.{name} must be an integer >= {minimum}; "
             f"got {value!r}")


def _positive_float(name: str, value: object) -> None:
    _require(isinstance(value, int | float) and not isinstance(value, bool)
             and math.isfinite(value) and value > 0,
             f"MatchingConfig.{name} must be a finite number > 0; got {value!r}")


@dataclass(frozen=True)
class MatchingConfig:
    """Hyper-parameters of :func:`train_matching` (thesis values: Section 4.5.1)."""

    method: str = "itmeetsal"
    components: tuple[str, ...] = ("ce", "tr", "di", "kl", "adv")  # Table 4.4 rows
    discriminator: str = "unified"        # "unified" (Fig 4.3) | "separate" (Fig 4.8, GRL)
    tau: float = 4.0
    margin: float = 0.5
    generator_steps: int = 5
    embed_dim: int = 512
    word_dim: int = 300
    text_hidden: int = 512                # Bi-LSTM 2 x 512 = 1,024-d
    dropout: float = 0.3
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-4
    seed: int = 0
    device: str = "cpu"
    backbone_lr: float = 0.0              # > 0: fine-tune the image backbone (thesis: 2e-5)
    image_size: int | None = None         # fine-tuning: side (px) of the backbone's input
    image_grid: int = 1                   # fine-tuning: pooling grid (1 = global average)

    def __post_init__(self) -> None:
        _require(self.method in METHODS,
                 f"MatchingConfig.method must be one of {METHODS}; got {self.method!r}")
        _require(self.discriminator in DISCRIMINATORS, f"MatchingConfig.discriminator must be "
                 f"one of {DISCRIMINATORS}; got {self.discriminator!r}")
        components = (self.components,) if isinstance(self.components, str) else self.components
        components = tuple(components)
        bad = [c for c in components if c not in COMPONENTS]
        _require(not bad, f"MatchingConfig.components must be a subset of {COMPONENTS}; got "
                 f"{bad} in {components}")
        _require(len(set(components)) == len(components),
                 f"MatchingConfig.components lists a component twice: {components}")
        _require(bool(components) or self.method != "itmeetsal",
                 f"MatchingConfig.components must not be empty for method 'itmeetsal'; "
                 f"choose from {COMPONENTS}")
        object.__setattr__(self, "components", components)
        for name in ("tau", "margin", "lr"):
            _positive_float(name, getattr(self, name))
        for name in ("generator_steps", "embed_dim", "word_dim", "text_hidden", "epochs"):
            _positive_int(name, getattr(self, name))
        _positive_int("batch_size", self.batch_size, minimum=2)
        _positive_int("seed", self.seed, minimum=0)
        _require(isinstance(self.dropout, int | float) and 0.0 <= self.dropout < 1.0,
                 f"MatchingConfig.dropout must lie in [0, 1); got {self.dropout!r}")
        _require(self.device == "cpu" or self.device.startswith("cuda"),
                 f"MatchingConfig.device must be 'cpu', 'cuda' or 'cuda:N'; got {self.device!r}")
        self._check_finetuning()

    def _check_finetuning(self) -> None:
        _require(isinstance(self.backbone_lr, int | float) and not isinstance(self.backbone_lr,
                                                                             bool)
                 and math.isfinite(self.backbone_lr) and self.backbone_lr >= 0,
                 f"MatchingConfig.backbone_lr must be a finite number >= 0 (0 = frozen "
                 f"backbone); got {self.backbone_lr!r}")
        if self.image_size is not None:
            _positive_int("image_size", self.image_size)
        _positive_int("image_grid", self.image_grid)

    @property
    def finetune(self) -> bool:
        """Whether the image backbone is trained (``backbone_lr > 0``)."""
        return self.backbone_lr > 0

    @property
    def terms(self) -> tuple[str, ...]:
        """Loss terms the encoders minimise (``"s"`` = L_s, ``"c_rev"`` = reversed L_c)."""
        if self.method == "vsepp":
            return ("vsepp",)
        if self.method == "cmpm_cmpc":
            return ("cmpm", "cmpc")
        names = [c for c in COMPONENTS if c in self.components and c != "adv"]
        if "adv" in self.components:
            names += ["s", "c_rev"] if self.discriminator == "separate" else ["s"]
        return tuple(names)

    @property
    def adversarial(self) -> bool:
        return self.method == "itmeetsal" and "adv" in self.components

    @property
    def needs_classifier(self) -> bool:
        return self.method == "cmpm_cmpc" or (self.method == "itmeetsal"
                                             and bool({"ce", "di"} & set(self.components)))


class MatchingNetwork(nn.Module):
    """Encoders, label classifier and adversary of one configuration; ``backbone`` (fine-tuning
    only) turns normalised images into the image projection's input."""

    def __init__(self, config: MatchingConfig, image_dim: int, vocab_size: int,
                 n_classes: int, backbone: PooledBackbone | None = None) -> None:
        super().__init__()
        self.image = ImageProjection(image_dim, config.embed_dim)
        self.text = TextEncoder(vocab_size, config.word_dim, config.text_hidden,
                                config.embed_dim, config.dropout)
        self.classifier = (NormSoftmaxClassifier(config.embed_dim, n_classes)
                           if config.needs_classifier else None)
        self.adversary: nn.Module | None = None
        if config.adversarial:
            self.adversary = (SeparateAdversary(config.embed_dim)
                              if config.discriminator == "separate"
                              else ModalityDiscriminator(config.embed_dim))
        self.backbone = backbone

    def encode_image(self, inputs: Tensor) -> Tensor:
        """Shared-space image features of the projection's input: cached backbone features,
        or normalised images when the backbone is fine-tuned."""
        return self.image(inputs if self.backbone is None else self.backbone(inputs))

    def discriminator(self) -> nn.Module | None:
        """The module updated in the discriminator step (None without ``"adv"``)."""
        if isinstance(self.adversary, SeparateAdversary):
            return self.adversary.uncertainty
        return self.adversary

    def generator_parameters(self) -> list[nn.Parameter]:
        """Everything but the discriminator and the backbone (its own parameter group): encoders,
        classifier, GRL modality classifier."""
        skip = {id(p) for module in (self.discriminator(), self.backbone) if module is not None
                for p in module.parameters()}
        return [p for p in self.parameters() if id(p) not in skip]


def generator_losses(config: MatchingConfig, net: MatchingNetwork, z_image: Tensor,
                     z_text: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """The terms of :attr:`MatchingConfig.terms` on one batch of shared-space features."""
    terms: dict[str, Tensor] = {}
    if config.method == "vsepp":
        terms["vsepp"] = vsepp_loss(z_image, z_text, VSEPP_MARGIN, labels=labels)
        return terms
    if config.method == "cmpm_cmpc":
        terms["cmpm"] = cmpm_loss(z_image, z_text, labels)
        terms["cmpc"] = cmpc_loss(z_image, z_text, labels, net.classifier.weight)
        return terms
    wanted = set(config.components)
    if wanted & {"ce", "di"}:
        logits_i2t, logits_t2i = cmpc_logits(z_image, z_text, net.classifier.weight)
        if "ce" in wanted:
            terms["ce"] = (F.cross_entropy(logits_i2t, labels)
                           + F.cross_entropy(logits_t2i, labels))
        if "di" in wanted:
            terms["di"] = imbalance_kl_loss(logits_i2t, logits_t2i, config.tau)
    if "tr" in wanted:
        terms["tr"] = bidirectional_triplet_loss(z_image, z_text, labels, config.margin)
    if "kl" in wanted:
        terms["kl"] = cmpm_loss(z_image, z_text, labels)
    if "adv" in wanted:
        if isinstance(net.adversary, SeparateAdversary):
            (u_image, c_image), (u_text, c_text) = net.adversary(z_image), net.adversary(z_text)
            terms["s"] = negative_entropy_loss(u_image, u_text)
            terms["c_rev"] = modality_cross_entropy(c_image, c_text)
        else:
            terms["s"] = negative_entropy_loss(net.adversary(z_image), net.adversary(z_text))
    return terms


@dataclass
class _TrainingData:
    features: Tensor | None  # (n_images, D) float32; None when fine-tuning
    tokens: Tensor          # (n_captions, L) int64
    lengths: Tensor         # (n_captions,) int64
    caption_image: Tensor   # (n_captions,) int64
    labels: Tensor          # (n_images,) int64, remapped to 0..n_classes-1
    n_classes: int
    images: np.ndarray | None = None  # (n_images, H, W, 3) uint8 when fine-tuning


def _as_long(values: object, name: str) -> Tensor:
    tensor = torch.as_tensor(np.asarray(values) if not torch.is_tensor(values) else values)
    _require(not tensor.is_floating_point(), f"{name} must hold integers; got {tensor.dtype}")
    return tensor.to(torch.int64).cpu()


def _prepare(image_features, tokens, lengths, caption_image, labels, finetune: bool = False
             ) -> _TrainingData:
    features, images = None, None
    if finetune:
        images = check_images(image_features, "image_features",
                              " when MatchingConfig.backbone_lr > 0 (fine-tuning)")
        n_images = len(images)
    else:
        features = torch.as_tensor(np.asarray(image_features, dtype=np.float32))
        _require(features.dim() == 2, f"image_features must be (n_images, D); got shape "
                 f"{tuple(features.shape)}")
        n_images = len(features)
    tokens_t, lengths_t = _as_long(tokens, "tokens"), _as_long(lengths, "lengths")
    caption_t, labels_np = _as_long(caption_image, "caption_image"), np.asarray(labels)
    _require(tokens_t.dim() == 2 and lengths_t.shape == tokens_t.shape[:1]
             and caption_t.shape == lengths_t.shape,
             f"tokens (M, L), lengths (M,) and caption_image (M,) must agree; got "
             f"{tuple(tokens_t.shape)}, {tuple(lengths_t.shape)}, {tuple(caption_t.shape)}")
    _require(labels_np.shape == (n_images,), f"labels must be (n_images,) = "
             f"({n_images},); got shape {labels_np.shape}")
    _require(len(caption_t) > 0 and int(caption_t.min()) >= 0
             and int(caption_t.max()) < n_images,
             f"caption_image must hold image indices in [0, {n_images})")
    _require(int(lengths_t.min()) >= 1 and int(lengths_t.max()) <= tokens_t.shape[1],
             f"lengths must lie in [1, {tokens_t.shape[1]}]")
    classes, remapped = np.unique(labels_np, return_inverse=True)
    return _TrainingData(features, tokens_t, lengths_t, caption_t,
                         torch.as_tensor(remapped.reshape(-1), dtype=torch.int64), len(classes),
                         images)


def _set_requires_grad(module: nn.Module | None, flag: bool) -> None:
    if module is not None:
        for parameter in module.parameters():
            parameter.requires_grad_(flag)


class _Trainer:
    """Optimisers and the per-batch updates of Algorithm 1."""

    def __init__(self, config: MatchingConfig, net: MatchingNetwork) -> None:
        self.config, self.net = config, net
        groups: list = net.generator_parameters()
        if net.backbone is not None:  # the fine-tuned backbone learns at its own rate
            groups = [{"params": groups}, {"params": list(net.backbone.parameters()),
                                           "lr": config.backbone_lr}]
        # fused Adam: the same update as the loop implementation, in one kernel per tensor list
        self.generator_opt = torch.optim.Adam(groups, lr=config.lr, fused=True)
        discriminator = net.discriminator()
        self.discriminator_opt = (torch.optim.Adam(discriminator.parameters(), lr=config.lr,
                                                   fused=True)
                                  if discriminator is not None else None)
        self.steps = 0
        # under torchrun both losses run through DDP, which averages their gradients
        self.parallel = data_parallel(net, call, config.device)

    def _generator_terms(self, batch: tuple[Tensor, ...]) -> tuple[dict[str, Tensor], Tensor,
                                                                    Tensor]:
        features, tokens, lengths, labels = batch
        z_image, z_text = self.net.encode_image(features), self.net.text(tokens, lengths)
        return generator_losses(self.config, self.net, z_image, z_text, labels), z_image, z_text

    def _discriminator_loss(self, z_image: Tensor, z_text: Tensor) -> Tensor:
        discriminator = self.net.discriminator()
        return modality_cross_entropy(discriminator(z_image), discriminator(z_text))

    def generator_step(self, batch: tuple[Tensor, ...]) -> tuple[dict[str, float], Tensor,
                                                                  Tensor]:
        discriminator = self.net.discriminator()
        _set_requires_grad(discriminator, False)  # θ_D fixed: no gradient, no update
        try:
            terms, z_image, z_text = self.parallel(self._generator_terms, batch)
            total = torch.stack(list(terms.values())).sum()
            self.generator_opt.zero_grad(set_to_none=True)
            total.backward()
        finally:
            _set_requires_grad(discriminator, True)
        self.generator_opt.step()
        self.steps += 1
        values = {name: float(value.detach()) for name, value in terms.items()}
        values["total"] = float(total.detach())
        return values, z_image.detach(), z_text.detach()

    def discriminator_step(self, z_image: Tensor, z_text: Tensor) -> float | None:
        """L_c on fixed features after every ``generator_steps`` generator steps (else None)."""
        if self.discriminator_opt is None or self.steps % self.config.generator_steps:
            return None
        loss = self.parallel(self._discriminator_loss, z_image, z_text)
        self.discriminator_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.discriminator_opt.step()
        return float(loss.detach())


def _epoch(trainer: _Trainer, data: _TrainingData, generator: torch.Generator,
           device: torch.device) -> dict[str, float]:
    """One pass over the captions; returns the mean of every logged quantity."""
    size = trainer.config.batch_size
    order = torch.randperm(len(data.caption_image), generator=generator)
    sums: dict[str, list[float]] = {}
    trainer.net.train()
    for start in range(0, len(order), size):
        index = order[start:start + size]
        if len(index) < 2:
            continue
        index = share(index, minimum=2)  # under torchrun: this process's captions (>= 2 each)
        images = data.caption_image[index]
        inputs = (data.features[images] if data.images is None
                  else trainer.net.backbone.inputs(data.images[images.numpy()]))
        batch = tuple(t.to(device) for t in (inputs, data.tokens[index], data.lengths[index],
                                             data.labels[images]))
        values, z_image, z_text = trainer.generator_step(batch)
        discriminator_loss = trainer.discriminator_step(z_image, z_text)
        if discriminator_loss is not None:
            values["c"] = discriminator_loss
        for name, value in values.items():
            sums.setdefault(name, []).append(value)
    return {name: all_mean(float(np.mean(v))) for name, v in sums.items()}


def _pooled_backbone(config: MatchingConfig, backbone: nn.Module | None, device: torch.device
                     ) -> PooledBackbone | None:
    """The trainable copy of ``backbone`` when fine-tuning (None with a frozen backbone)."""
    if not config.finetune:
        _require(backbone is None, "train_matching: backbone is used only with "
                 "MatchingConfig.backbone_lr > 0 (fine-tuning); with a frozen backbone pass its "
                 "features (irbook.crossmodal.features.image_features) as image_features")
        return None
    _require(backbone is not None, f"train_matching: MatchingConfig.backbone_lr = "
             f"{config.backbone_lr:g} > 0 fine-tunes the image backbone: pass backbone= "
             f"(an nn.Module) and uint8 images as image_features")
    return PooledBackbone(backbone, config.image_size, config.image_grid).to(device)


def train_matching(config: MatchingConfig, image_features: np.ndarray, tokens, lengths,
                   caption_image, labels, vocab_size: int, progress: bool = True, *,
                   backbone: nn.Module | None = None) -> MatchingModel:
    """Train ``config.method`` on the training pairs; see the module docstring.

    ``image_features`` (n_images, D) float — or, when ``config.backbone_lr > 0``, the uint8
    images (n_images, H, W, 3) and ``backbone`` the network to fine-tune (a copy of it is
    trained and kept in the returned model; ``backbone`` itself is left unchanged);
    ``tokens`` (n_captions, L) int padded with 0, ``lengths`` (n_captions,), ``caption_image``
    (n_captions,) image index per caption, ``labels`` (n_images,) instance labels (any
    integers; remapped to classes 0..C-1).
    """
    _require(isinstance(vocab_size, int | np.integer) and vocab_size >= 2,
             f"vocab_size must be an integer >= 2; got {vocab_size!r}")
    device = torch.device(config.device)
    pooled = _pooled_backbone(config, backbone, device)
    data = _prepare(image_features, tokens, lengths, caption_image, labels, config.finetune)
    _require(int(data.tokens.max()) < vocab_size,
             f"tokens hold index {int(data.tokens.max())} >= vocab_size = {vocab_size}")
    image_dim = data.features.shape[1] if pooled is None else pooled.out_dim(data.images)
    seed_everything(config.seed)
    net = MatchingNetwork(config, image_dim, int(vocab_size), data.n_classes, pooled)
    net.to(device)
    trainer = _Trainer(config, net)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, float]] = []
    bar = progress_bar(range(config.epochs), enabled=progress and is_main(),
                       desc=f"matching {config.method}",
                       unit="epoch")
    for epoch in bar:
        started = time.perf_counter()
        stats = _epoch(trainer, data, generator, device)
        history.append({"epoch": epoch + 1, **stats,
                        "seconds": time.perf_counter() - started})
        bar.set_postfix(loss=f"{stats['total']:.3f}")
    net.eval()
    return MatchingModel(config, net, history)


def _gaussian(shape: Sequence[int], mean: float, sigma: float, generator: torch.Generator
              ) -> Tensor:
    return mean + sigma * torch.randn(tuple(shape), generator=generator)


class MatchingModel:
    """A trained matcher: ``.config``, ``.history`` (per-epoch means of the loss terms, ``"c"``
    the discriminator's L_c, ``"seconds"``), ``.network``; embeddings are L2-normalised."""

    def __init__(self, config: MatchingConfig, network: MatchingNetwork,
                 history: list[dict[str, float]]) -> None:
        self.config, self.network, self.history = config, network, history

    @property
    def image_encoder(self) -> nn.Module:
        return self.network.image

    @property
    def text_encoder(self) -> nn.Module:
        return self.network.text

    @property
    def finetuned(self) -> bool:
        """Whether the image backbone was trained with the heads (inputs are then images)."""
        return self.network.backbone is not None

    @torch.no_grad()
    def image_embeddings(self, image_features: np.ndarray, *, noise_sigma: float = 0.0,
                         noise_seed: int = 0) -> np.ndarray:
        """(n, embed_dim) L2-normalised image embeddings of cached features (n, D), or of uint8
        images (n, H, W, 3) through the fine-tuned backbone when :attr:`finetuned`.
        ``noise_sigma > 0`` adds Gaussian noise N(mean of all input values, σ²) to every input
        value first (Table 4.7; the input is the normalised image when fine-tuned)."""
        self.network.eval()
        if self.finetuned:
            features = self._backbone_features(image_features, noise_sigma, noise_seed)
        else:
            features = torch.as_tensor(np.asarray(image_features, dtype=np.float32))
            if noise_sigma > 0:
                noise = _gaussian(features.shape, float(features.mean()), noise_sigma,
                                  torch.Generator().manual_seed(noise_seed))
                features = features + noise
        device = next(self.network.parameters()).device
        out = [F.normalize(self.network.image(chunk.to(device)), dim=1).cpu()
               for chunk in features.split(INFERENCE_BATCH)]
        return torch.cat(out).numpy()

    def _backbone_features(self, images: np.ndarray, noise_sigma: float, noise_seed: int
                           ) -> Tensor:
        """Pooled features of the fine-tuned backbone (eval mode, no gradient); with noise, the
        mean is that of all normalised input values of ``images`` (a first pass)."""
        backbone = self.network.backbone
        images = check_images(images, "image_features", " for a model whose backbone was "
                              "fine-tuned (backbone_lr > 0)")
        if noise_sigma <= 0:
            return backbone.features_of(images)
        chunks = [images[s:s + IMAGE_BATCH] for s in range(0, len(images), IMAGE_BATCH)]
        sums = [(float(x.double().sum()), x.numel())
                for x in (to_input_tensor(chunk, backbone.size) for chunk in chunks)]
        mean = sum(total for total, _ in sums) / sum(count for _, count in sums)
        generator = torch.Generator().manual_seed(noise_seed)
        out = []
        for chunk in chunks:
            x = to_input_tensor(chunk, backbone.size)
            x = x + _gaussian(x.shape, mean, noise_sigma, generator)
            out.append(backbone(x.to(backbone.device)))
        return torch.cat(out)

    @torch.no_grad()
    def text_embeddings(self, tokens, lengths, *, noise_sigma: float = 0.0,
                        noise_seed: int = 0) -> np.ndarray:
        """(n, embed_dim) L2-normalised caption embeddings. ``noise_sigma > 0`` adds Gaussian
        noise N(μ, σ²) to the word embeddings, μ = the mean of the word-embedding values over
        all valid (non-padding) positions of ``tokens`` (Table 4.7)."""
        tokens_t, lengths_t = _as_long(tokens, "tokens"), _as_long(lengths, "lengths")
        self.network.eval()
        device = next(self.network.parameters()).device
        encoder = self.network.text
        mean = 0.0
        if noise_sigma > 0:
            valid = torch.arange(tokens_t.shape[1])[None, :] < lengths_t[:, None]
            mean = float(encoder.lstm.embed(tokens_t[valid].to(device)).mean())
        generator = torch.Generator().manual_seed(noise_seed)
        out = []
        for tok, length in zip(tokens_t.split(INFERENCE_BATCH), lengths_t.split(INFERENCE_BATCH),
                               strict=True):
            noise = None
            if noise_sigma > 0:
                shape = (*tok.shape, encoder.lstm.embedding.embedding_dim)
                noise = _gaussian(shape, mean, noise_sigma, generator).to(device)
            z = encoder(tok.to(device), length.to(device), word_noise=noise)
            out.append(F.normalize(z, dim=1).cpu())
        return torch.cat(out).numpy()


@dataclass
class MatchingResult:
    """Retrieval scores of :func:`evaluate_matching` (percent); COCO folds: means over folds,
    per-query arrays concatenated over folds."""

    recall: dict[str, dict[int, float]]
    medr: dict[str, float]
    rsum: float
    hits: dict[str, dict[int, np.ndarray]]
    ap: dict[str, np.ndarray]
    map: dict[str, float]
    pr: dict[str, pd.DataFrame]
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)


def _fold_scores(sim: np.ndarray, caption_image: np.ndarray, labels: np.ndarray) -> dict:
    """Ranks, label AP and PR of both directions on one set of images and their captions."""
    caption_labels = labels[caption_image]
    return {
        "ranks": {"i2t": i2t_ranks(sim, caption_image), "t2i": t2i_ranks(sim, caption_image)},
        "ap": {"i2t": label_average_precision(sim, labels, caption_labels),
               "t2i": label_average_precision(sim.T, caption_labels, labels)},
        "pr": {"i2t": ranking_pr(sim, labels, caption_labels),
               "t2i": ranking_pr(sim.T, caption_labels, labels)},
    }


def _fold_views(folds: Sequence[np.ndarray] | None, caption_image: np.ndarray, n_images: int
                ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(image indices, caption indices, fold-local caption_image) per fold."""
    if folds is None:
        return [(np.arange(n_images), np.arange(len(caption_image)), caption_image)]
    views = []
    for number, fold in enumerate(folds):
        fold = np.asarray(fold, dtype=np.int64).reshape(-1)
        _require(fold.size > 0 and len(np.unique(fold)) == fold.size and fold.min() >= 0
                 and fold.max() < n_images, f"folds[{number}] must hold distinct image "
                 f"indices in [0, {n_images})")
        local = np.full(n_images, -1, dtype=np.int64)
        local[fold] = np.arange(fold.size)
        captions = np.flatnonzero(local[caption_image] >= 0)
        views.append((fold, captions, local[caption_image[captions]]))
    return views


def evaluate_matching(model: MatchingModel, image_features: np.ndarray, tokens, lengths,
                      caption_image, labels, folds: Sequence[np.ndarray] | None = None,
                      noise_sigma: float = 0.0, noise_seed: int = 0) -> MatchingResult:
    """VSE++ protocol on a test split: every image a query over all captions (i2t) and every
    caption over all images (t2i), cosine similarity; ``folds`` (lists of image indices, e.g.
    COCO 1K) are scored one by one and averaged. ``labels`` (n_images,) are the instance labels
    of the label AP / PR curves.

    ``image_features`` are cached features, or uint8 images when the model's backbone was
    fine-tuned (:attr:`MatchingModel.finetuned`).

    Stability test (Table 4.7): ``noise_sigma > 0`` adds Gaussian noise with standard deviation
    σ to the image-branch input (the cached backbone features; the normalised images when the
    backbone was fine-tuned) and to the word embeddings; its mean is the mean of that input.
    The thesis takes the means from each training epoch's inputs; the book takes them from the
    evaluated inputs themselves (:meth:`MatchingModel.image_embeddings`,
    :meth:`MatchingModel.text_embeddings`); ``noise_seed`` fixes the draws."""
    _require(math.isfinite(noise_sigma) and noise_sigma >= 0,
             f"noise_sigma must be a finite number >= 0; got {noise_sigma}")
    caption_image = np.asarray(caption_image, dtype=np.int64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    image = model.image_embeddings(image_features, noise_sigma=noise_sigma,
                                   noise_seed=noise_seed)
    text = model.text_embeddings(tokens, lengths, noise_sigma=noise_sigma,
                                 noise_seed=noise_seed + 1)
    _require(len(labels) == len(image) and len(caption_image) == len(text),
             f"labels must be (n_images,) = ({len(image)},) and caption_image (n_captions,) = "
             f"({len(text)},); got {labels.shape} and {caption_image.shape}")
    scores = [_fold_scores(image[images] @ text[captions].T, local, labels[images])
              for images, captions, local in _fold_views(folds, caption_image, len(image))]
    return _combine(scores, {"image": image, "text": text})


def score_similarity(sim: np.ndarray, caption_image, labels,
                     folds: Sequence[np.ndarray] | None = None,
                     embeddings: dict[str, np.ndarray] | None = None) -> MatchingResult:
    """The VSE++ protocol on a similarity matrix ``sim`` (n_images, n_captions) of any matcher:
    R@K, median rank, rsum, per-query hits and label AP in both directions; ``folds`` (lists of
    image indices, e.g. COCO 1K) are scored one by one and averaged."""
    sim = np.asarray(sim, dtype=np.float32)
    caption_image = np.asarray(caption_image, dtype=np.int64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    _require(sim.shape == (len(labels), len(caption_image)),
             f"sim must be (n_images, n_captions) = ({len(labels)}, {len(caption_image)}); got "
             f"{sim.shape}")
    scores = [_fold_scores(sim[np.ix_(images, captions)], local, labels[images])
              for images, captions, local in _fold_views(folds, caption_image, len(labels))]
    return _combine(scores, embeddings or {})


def _combine(scores: list[dict], embeddings: dict[str, np.ndarray]) -> MatchingResult:
    directions = ("i2t", "t2i")
    recall = {d: {k: float(np.mean([recall_at(s["ranks"][d], KS)[k] for s in scores]))
                  for k in KS} for d in directions}
    medr = {d: float(np.mean([median_rank(s["ranks"][d]) for s in scores])) for d in directions}
    ranks = {d: np.concatenate([s["ranks"][d] for s in scores]) for d in directions}
    hits = {d: {k: 100.0 * (ranks[d] < k) for k in KS} for d in directions}
    ap = {d: 100.0 * np.concatenate([s["ap"][d] for s in scores]) for d in directions}
    mean_ap = {d: float(np.nanmean(ap[d])) for d in directions}
    pr = {}
    for d in directions:
        curves = [s["pr"][d] for s in scores]
        pr[d] = pd.DataFrame({"recall": curves[0]["recall"],
                              "precision": np.mean([c["precision"] for c in curves], axis=0)})
    return MatchingResult(recall, medr, rsum(recall["i2t"], recall["t2i"]), hits, ap, mean_ap,
                          pr, embeddings)

"""Training and evaluation of the cross-modal hashing methods of chapter 3.

Methods (:data:`METHODS`):

- ``"ours"``: Eq. (3.7), ``α L_d + β L_pairs + γ L_l + η L_m + ε L_q``; ``"baseline1"`` =
  ``L_pairs + L_q``, ``"baseline2"`` = + ``L_l``, ``"baseline3"`` = + ``L_m`` (Table 3.3), with
  the weights of :class:`HashingConfig`.
- ``"dcmh"``: DCMH's objective (γ = η = 1, the DCMH paper's values; the config's weights do
  not apply), the text branch without the multi-scale fusion, codes from the unbounded hash
  layer, ``B = sign(F + G)`` refreshed after every epoch.
- ``"ssah"``: SSAH sized down: a label network, the image and text networks pulled towards the
  label network's stored features and codes (J1-J4), and two discriminators (one per
  modality) that tell label-network features from modality features; all weights 1 (the
  authors' code).

Optimisation (DCMH's alternating strategy): per batch, an image step (the text network fixed;
its outputs on all training items read from a buffer), then a text step (the image network
fixed), then, for ``"ours"``, a step of the two domain predictors (cross-entropy on the
modality, on the real-valued features and on the relaxed codes of the batch), for ``"ssah"``
first a label-network step and last a discriminator step. The label predictor is updated in
the image and in the text step. In ``L_q`` (Eq. 3.1) each modality's target is the sign of its
own relaxed codes (``B^v = sign(H^v)``, ``B^t = sign(H^t)``); the domain predictors keep their
dropout while they score the encoders' outputs. Each step's loss pairs the batch
(n rows) with all N training items, as DCMH does, and is divided by ``n × N`` (DCMH's
scaling; the equations' sums are kept, so a per-item term such as ``L_d`` weighs ``1 / N`` of
a per-pair term). The buffers start from a forward pass of the untrained networks (DCMH draws
them at random). Adam, a constant learning rate, a seeded batch order.

End-to-end fine-tuning (the thesis fine-tunes CNN-F): with ``backbone_lr > 0`` the image
argument holds uint8 images and ``train_hashing`` gets the backbone; a copy of it
(:class:`~.features.PooledBackbone`: resized to ``image_size``, pooled over an ``image_grid``
grid, BatchNorm in eval mode) turns each image step's batch into the image network's input and
learns in that step, in its own Adam parameter group (lr = ``backbone_lr``) of the ``"main"``
optimiser; the buffers start from its features of all training images. With ``backbone_lr =
0`` (the default) nothing of this runs: cached features in, the frozen-feature results
unchanged.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ..distributed import all_mean, call, data_parallel, gather, share, world
from ..losses import hashing as L
from ..metrics.hashing import hamming_average_precision, hash_lookup_pr
from ..models.hashing import (
    TEXT_HIDDEN,
    DomainPredictor,
    ImageHashNet,
    LabelHashNet,
    LabelPredictor,
    TextHashNet,
    sign_codes,
)
from ..progress import progress_bar
from .features import PooledBackbone, check_images

__all__ = ["METHODS", "METHOD_TERMS", "HashingConfig", "HashingModel", "HashingResult",
           "build_networks", "evaluate_hashing", "train_hashing"]

METHODS = ("dcmh", "ssah", "baseline1", "baseline2", "baseline3", "ours")
METHOD_TERMS = {
    "baseline1": ("pairs", "quantization"),
    "baseline2": ("pairs", "quantization", "label"),
    "baseline3": ("pairs", "quantization", "label", "multilevel"),
    "ours": ("pairs", "quantization", "label", "multilevel", "domain"),
}
"""Terms of Eq. (3.7) each method of Table 3.3 uses."""
DCMH_GAMMA = DCMH_ETA = 1.0
ENCODE_BATCH = 2048
SIDES = (("image", "text"), ("text", "image"))


@dataclass(frozen=True)
class HashingConfig:
    """One training run. ``alpha``..``epsilon`` weight Eq. (3.7) (ours and the baselines);
    ``text_hidden`` is the width of the text branch's first layer (2000 in the thesis; an
    addition to the chapter's contract, for smaller CPU budgets)."""

    method: str = "ours"
    n_bits: int = 32
    common_dim: int = 512
    alpha: float = 100.0
    beta: float = 1.0
    gamma: float = 1.0
    eta: float = 0.1
    epsilon: float = 1.0
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-4
    dropout: float = 0.5
    seed: int = 0
    device: str = "cpu"
    text_hidden: int = TEXT_HIDDEN
    backbone_lr: float = 0.0  # > 0: fine-tune the image backbone end to end
    image_size: int | None = None  # fine-tuning: side (px) of the backbone's input
    image_grid: int = 1  # fine-tuning: pooling grid of the backbone's map (1 = global average)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        for name in ("n_bits", "common_dim", "epochs", "batch_size", "text_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.weights()  # validates alpha..epsilon
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not (isinstance(self.dropout, int | float) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a torch device name such as 'cpu' or 'cuda', "
                             f"got {self.device!r}")
        self._check_finetuning()

    def _check_finetuning(self) -> None:
        lr = self.backbone_lr
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) \
                or lr < 0:
            raise ValueError(f"backbone_lr must be a finite number >= 0 (0 = frozen backbone), "
                             f"got {lr!r}")
        for name in ("image_size", "image_grid"):
            value = getattr(self, name)
            if value is None and name == "image_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @property
    def finetune(self) -> bool:
        """Whether the image backbone is trained (``backbone_lr > 0``)."""
        return self.backbone_lr > 0

    def weights(self) -> L.HashingLossWeights:
        return L.HashingLossWeights(self.alpha, self.beta, self.gamma, self.eta, self.epsilon)


class HashingModel:
    """Trained networks of one method; ``history`` holds one dict of mean loss terms per
    epoch (each term divided by ``n × N`` as in training, averaged over the batches and the
    image / text steps)."""

    def __init__(self, config: HashingConfig, nets: nn.ModuleDict, history: list[dict]):
        self.config, self.nets, self.history = config, nets, history

    @property
    def finetuned(self) -> bool:
        """Whether the image backbone was trained (``nets["backbone"]``; inputs are images)."""
        return "backbone" in self.nets

    def _codes(self, side: str, inputs: Any) -> np.ndarray:
        net = self.nets[side]
        was_training = net.training
        net.eval()
        if side == "image" and self.finetuned:
            x = self.nets["backbone"].features_of(check_images(
                inputs, "image inputs", " for a model whose backbone was fine-tuned"))
        else:
            x = _tensor(inputs, self.config.device, f"{side} inputs")
        with torch.no_grad():
            logits = [net(x[s : s + ENCODE_BATCH]).logits for s in range(0, len(x), ENCODE_BATCH)]
        net.train(was_training)
        return sign_codes(torch.cat(logits) if logits else x.new_zeros(0, self.config.n_bits))

    def image_codes(self, image_features: Any) -> np.ndarray:
        """``(N, n_bits)`` int8 codes in {-1, +1} of image features, or of uint8 images
        (N, H, W, 3) through the fine-tuned backbone when :attr:`finetuned`."""
        return self._codes("image", image_features)

    def text_codes(self, tags: Any) -> np.ndarray:
        """``(N, n_bits)`` int8 codes in {-1, +1} of tag bag-of-words vectors."""
        return self._codes("text", tags)


@dataclass
class HashingResult:
    """Per-query AP, mAP and hash-lookup PR of both directions, and the codes."""

    ap: dict[str, np.ndarray]
    map: dict[str, float]
    pr: dict[str, pd.DataFrame]
    codes: dict[str, np.ndarray]


# --- data and networks -----------------------------------------------------------------------

def _tensor(array: Any, device: str, name: str) -> Tensor:
    if isinstance(array, Tensor):
        tensor = array.detach()
    else:
        tensor = torch.from_numpy(np.ascontiguousarray(np.asarray(array, dtype=np.float32)))
    if tensor.dim() != 2:
        raise ValueError(f"{name} must be a 2-D (n, dim) array, got shape {tuple(tensor.shape)}")
    return tensor.to(device=device, dtype=torch.float32)


@dataclass
class _Data:
    inputs: dict[str, Tensor]  # "image" (N, D) (absent when fine-tuning), "text" (N, V)
    labels: Tensor  # (N, c)
    images: np.ndarray | None = None  # (N, H, W, 3) uint8 when fine-tuning

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])


def _data(config: HashingConfig, image_features: Any, tags: Any, labels: Any) -> _Data:
    if config.finetune:
        x = check_images(image_features, "image_features",
                         " when backbone_lr > 0 (fine-tuning)")
    else:
        x = _tensor(image_features, config.device, "image_features")
    y = _tensor(tags, config.device, "tags")
    lab = _tensor(labels, config.device, "labels")
    if not len(x) == len(y) == len(lab) or len(x) == 0:
        raise ValueError(f"image_features, tags and labels must have the same positive number "
                         f"of rows, got {len(x)}, {len(y)} and {len(lab)}")
    if config.finetune:
        return _Data({"text": y}, lab, images=x)
    return _Data({"image": x, "text": y}, lab)


def _inputs(nets: nn.ModuleDict, data: _Data, side: str, ind: Tensor) -> Tensor:
    """Rows ``ind`` of a branch's input: stored rows, or the fine-tuned backbone's pooled
    features (with gradient) of those training images."""
    if side == "image" and data.images is not None:
        backbone = nets["backbone"]
        return backbone(backbone.inputs(data.images[ind.cpu().numpy()]))
    return data.inputs[side][ind]


def build_networks(config: HashingConfig, in_dim: int, vocab_size: int,
                   n_labels: int) -> nn.ModuleDict:
    """The networks ``config.method`` trains (``"image"`` and ``"text"`` always)."""
    k, n, d = config.n_bits, config.common_dim, config.dropout
    nets: dict[str, nn.Module] = {
        "image": ImageHashNet(in_dim, k, n, d),
        "text": TextHashNet(vocab_size, k, n, d, hidden=config.text_hidden,
                            multiscale=config.method != "dcmh")}
    terms = METHOD_TERMS.get(config.method, ())
    if "label" in terms:
        nets["label"] = LabelPredictor(n, n_labels, d)
    if "domain" in terms:
        nets["domain_real"] = DomainPredictor(n, d)
        nets["domain_binary"] = DomainPredictor(k, d)
    if config.method == "ssah":
        nets["label_net"] = LabelHashNet(n_labels, k, n)
        for side in ("image", "text"):
            nets[f"{side}_labels"] = nn.Linear(n, n_labels)
            nets[f"disc_{side}"] = DomainPredictor(n, d, n_domains=1)
    return nn.ModuleDict(nets).to(config.device)


ADVERSARIES = ("domain_real", "domain_binary", "disc_image", "disc_text")


def _adam(params: list, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel (5x faster on CPU for the 4 M text weights), else foreach."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # pragma: no cover - older torch / devices
        return torch.optim.Adam(params, lr=lr, foreach=True)


def _optimizers(config: HashingConfig, nets: nn.ModuleDict) -> dict[str, torch.optim.Adam]:
    """``"main"``: encoders and label networks (and a fine-tuned backbone, in a parameter group
    of its own at ``backbone_lr``); ``"adversary"``: domain predictors or discriminators
    (stepped on their own)."""
    main: list = [p for name, net in nets.items() if name not in (*ADVERSARIES, "backbone")
                  for p in net.parameters()]
    if "backbone" in nets:
        main = [{"params": main}, {"params": list(nets["backbone"].parameters()),
                                   "lr": config.backbone_lr}]
    out = {"main": _adam(main, config.lr)}
    rivals = [p for name, net in nets.items() if name in ADVERSARIES for p in net.parameters()]
    if rivals:
        out["adversary"] = _adam(rivals, config.lr)
    return out


def _step(optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


class _Updates:
    """The optimisers (:func:`_optimizers`) and where a loss is computed: under torchrun through
    DDP over all the networks (:func:`irbook.distributed.data_parallel`), so every update
    averages the processes' gradients; in one process directly."""

    def __init__(self, config: HashingConfig, nets: nn.ModuleDict) -> None:
        self.optimizers = _optimizers(config, nets)
        self.run = data_parallel(nets, call, config.device)

    def step(self, name: str, compute: Callable[..., Any], *inputs: Any) -> Any:
        """``compute(*inputs)`` returns the loss (or a tuple starting with it); one update of
        optimiser ``name`` on that loss; returns what ``compute`` returned."""
        result = self.run(compute, *inputs)
        _step(self.optimizers[name], result[0] if isinstance(result, tuple) else result)
        return result


# --- buffers ---------------------------------------------------------------------------------

def _forward_all(net: nn.Module, x: Tensor) -> list[Tensor]:
    with torch.no_grad():
        parts = [net(x[s : s + ENCODE_BATCH]) for s in range(0, len(x), ENCODE_BATCH)]
    return [torch.cat([p[i] for p in parts]) for i in range(3)]


def _init_buffers(config: HashingConfig, nets: nn.ModuleDict, data: _Data) -> dict[str, Tensor]:
    """Every branch's outputs on all training items, from the untrained networks (eval mode)."""
    nets.eval()
    buffers = {}
    for side in ("image", "text"):
        inputs = (nets["backbone"].features_of(data.images)
                  if side == "image" and data.images is not None else data.inputs[side])
        features, logits, codes = _forward_all(nets[side], inputs)
        buffers[f"{side}_F"], buffers[f"{side}_H"] = features, codes
        buffers[f"{side}_logits"] = logits
    if config.method == "dcmh":
        buffers["B"] = L.dcmh_codes(buffers["image_logits"], buffers["text_logits"])
    if config.method == "ssah":
        with torch.no_grad():
            out, _ = nets["label_net"](data.labels)
        buffers["label_F"], buffers["label_H"] = out.features, out.codes
    nets.train()
    return buffers


def _store_rows(buffers: dict[str, Tensor], ind: Tensor, rows: dict[str, Tensor]) -> None:
    """``buffers[name][ind] = rows[name]``; under torchrun the rows of every process's share of
    the batch, so the buffers stay equal on all processes."""
    if not world().distributed:
        for name, value in rows.items():
            buffers[name][ind] = value.detach()
        return
    shared = (ind.cpu(), {name: value.detach().cpu() for name, value in rows.items()})
    for index, values in gather(shared):
        for name, value in values.items():
            buffers[name][index.to(buffers[name].device)] = value.to(buffers[name].device)


def _store(buffers: dict[str, Tensor], side: str, ind: Tensor, out: Any) -> None:
    rows = {f"{side}_F": out.features, f"{side}_H": out.codes}
    if f"{side}_logits" in buffers:
        rows[f"{side}_logits"] = out.logits
    _store_rows(buffers, ind, rows)


# --- steps of one batch ----------------------------------------------------------------------

StepFn = Callable[[HashingConfig, nn.ModuleDict, _Updates, dict, _Data, Tensor],
                  dict[str, float]]


def _ours_terms(nets: nn.ModuleDict, out: Any, buffers: dict, other: str, s: Tensor,
                w: Tensor | None, labels: Tensor, terms: tuple[str, ...]) -> dict[str, Tensor]:
    """The Eq. (3.7) terms of one modality's batch against the other's stored outputs (each
    ``Δ`` computed once, shared by Eqs. 3.3 and 3.5)."""
    delta_r = L.half_inner_products(out.features, buffers[f"{other}_F"])
    delta_b = L.half_inner_products(out.codes, buffers[f"{other}_H"])
    out_terms = {"pairs": L.pairwise_likelihood_from_delta(delta_r, s)
                 + L.pairwise_likelihood_from_delta(delta_b, s),
                 "quantization": L.quantization_loss(out.codes)}
    if "label" in terms:
        out_terms["label"] = L.label_prediction_loss(nets["label"](out.features), labels)
    if "multilevel" in terms:
        out_terms["multilevel"] = (L.multilevel_from_delta(delta_r, w)
                                   + L.multilevel_from_delta(delta_b, w))
    if "domain" in terms:
        out_terms["domain"] = L.domain_uncertainty_loss(
            nets["domain_real"].probabilities(out.features),
            nets["domain_binary"].probabilities(out.codes))
    return out_terms


def _domain_step(nets: nn.ModuleDict, updates: _Updates, buffers: dict, ind: Tensor) -> float:
    """Both domain predictors learn the modality (0 image, 1 text) of the batch's outputs."""
    n = len(ind)
    target = torch.cat([torch.zeros(n), torch.ones(n)]).long().to(ind.device)

    def domain_loss() -> Tensor:
        return sum(L.domain_classification_loss(
            nets[name](torch.cat([buffers[f"image_{part}"][ind], buffers[f"text_{part}"][ind]])),
            target) for name, part in (("domain_real", "F"), ("domain_binary", "H")))

    return float(updates.step("adversary", domain_loss).detach()) / 2


def _ours_step(config: HashingConfig, nets: nn.ModuleDict, updates: _Updates, buffers: dict,
               data: _Data, ind: Tensor) -> dict[str, float]:
    terms, weights = METHOD_TERMS[config.method], config.weights()
    labels = data.labels[ind]
    s = L.similarity_matrix(labels, data.labels)
    w = L.multilevel_similarity(labels, data.labels) if "multilevel" in terms else None
    scale = 1.0 / (len(ind) * data.n)
    log: dict[str, float] = defaultdict(float)

    def side_loss(side: str, other: str) -> tuple[Tensor, Any, dict[str, Tensor]]:
        out = nets[side](_inputs(nets, data, side, ind))
        step_terms = _ours_terms(nets, out, buffers, other, s, w, labels, terms)
        return L.total_hashing_loss(step_terms, weights) * scale, out, step_terms

    for side, other in SIDES:
        loss, out, step_terms = updates.step("main", side_loss, side, other)
        _store(buffers, side, ind, out)
        for key, value in step_terms.items():
            log[key] += float(value.detach()) * scale / 2
        log["total"] += float(loss.detach()) / 2
    if "domain" in terms:
        log["domain_ce"] = _domain_step(nets, updates, buffers, ind)
    return log


def _dcmh_step(config: HashingConfig, nets: nn.ModuleDict, updates: _Updates, buffers: dict,
               data: _Data, ind: Tensor) -> dict[str, float]:
    s = L.similarity_matrix(data.labels[ind], data.labels)
    scale = 1.0 / (len(ind) * data.n)
    log: dict[str, float] = defaultdict(float)

    def side_loss(side: str, other: str) -> tuple[Tensor, Any, dict[str, Tensor]]:
        out = nets[side](_inputs(nets, data, side, ind))
        stored = buffers[f"{side}_logits"]
        rest = stored.sum(dim=0) - stored[ind].sum(dim=0)
        step_terms = L.dcmh_loss(out.logits, buffers[f"{other}_logits"], s, buffers["B"][ind],
                                 rest, DCMH_GAMMA, DCMH_ETA)
        return step_terms["total"] * scale, out, step_terms

    for side, other in SIDES:
        _, out, step_terms = updates.step("main", side_loss, side, other)
        _store(buffers, side, ind, out)
        for key, value in step_terms.items():
            log[key] += float(value.detach()) * scale / 2
    return log


def _ssah_label_step(nets: nn.ModuleDict, updates: _Updates, buffers: dict, data: _Data,
                     ind: Tensor, s: Tensor, scale: float) -> float:
    labels = data.labels[ind]

    def label_loss() -> tuple[Tensor, Any]:
        out, label_logits = nets["label_net"](labels)
        terms = L.ssah_terms(out.features, out.codes, torch.sigmoid(label_logits), labels,
                             buffers["label_F"], buffers["label_H"], s)
        return sum(terms.values()) * scale, out

    loss, out = updates.step("main", label_loss)
    _store_rows(buffers, ind, {"label_F": out.features, "label_H": out.codes})
    return float(loss.detach())


def _ssah_side_loss(nets: nn.ModuleDict, buffers: dict, data: _Data, ind: Tensor, s: Tensor,
                    scale: float, side: str) -> tuple[Tensor, Any, dict[str, Tensor]]:
    """One modality's SSAH loss against the label network's stored outputs."""
    labels = data.labels[ind]
    out = nets[side](_inputs(nets, data, side, ind))
    probabilities = torch.sigmoid(nets[f"{side}_labels"](torch.relu(out.features)))
    terms = L.ssah_terms(out.features, out.codes, probabilities, labels,
                         buffers["label_F"], buffers["label_H"], s)
    terms["adversarial"] = L.generator_adversarial_loss(
        nets[f"disc_{side}"](out.features).squeeze(1))
    return sum(terms.values()) * scale, out, terms


def _ssah_step(config: HashingConfig, nets: nn.ModuleDict, updates: _Updates, buffers: dict,
               data: _Data, ind: Tensor) -> dict[str, float]:
    s = L.similarity_matrix(data.labels[ind], data.labels)
    scale = 1.0 / (len(ind) * data.n)
    log: dict[str, float] = defaultdict(float)
    log["label_net"] = _ssah_label_step(nets, updates, buffers, data, ind, s, scale)
    for side, _ in SIDES:
        loss, out, terms = updates.step("main", _ssah_side_loss, nets, buffers, data, ind, s,
                                        scale, side)
        _store(buffers, side, ind, out)
        for key, value in terms.items():
            log[key] += float(value.detach()) * scale / 2
        log["total"] += float(loss.detach()) / 2

    def discriminator_loss() -> Tensor:
        return sum(L.discriminator_loss(
            nets[f"disc_{side}"](buffers["label_F"][ind]).squeeze(1),
            nets[f"disc_{side}"](buffers[f"{side}_F"][ind]).squeeze(1))
            for side in ("image", "text")) / (4 * len(ind))

    log["discriminator"] = float(updates.step("adversary", discriminator_loss).detach())
    return log


def _step_function(method: str) -> StepFn:
    return {"dcmh": _dcmh_step, "ssah": _ssah_step}.get(method, _ours_step)


# --- training and evaluation -----------------------------------------------------------------

def _batches(rng: np.random.Generator, n: int, batch_size: int, device: str) -> Iterator[Tensor]:
    order = torch.from_numpy(rng.permutation(n)).to(device)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def _epoch(config: HashingConfig, nets: nn.ModuleDict, updates: _Updates, buffers: dict,
           data: _Data, rng: np.random.Generator) -> dict[str, float]:
    step, sums, count = _step_function(config.method), defaultdict(float), 0
    start = time.perf_counter()
    for ind in _batches(rng, data.n, config.batch_size, config.device):
        ind = share(ind, minimum=2)  # under torchrun: this process's pairs of the batch
        for key, value in step(config, nets, updates, buffers, data, ind).items():
            sums[key] += value
        count += 1
    if config.method == "dcmh":
        buffers["B"] = L.dcmh_codes(buffers["image_logits"], buffers["text_logits"])
    return {**{k: all_mean(v / count) for k, v in sums.items()},
            "seconds": time.perf_counter() - start}


def _cuda_indices(device: str) -> list[int]:
    """The CUDA device whose generator :func:`torch.random.fork_rng` must save (none on CPU)."""
    if not device.startswith("cuda"):
        return []
    index = torch.device(device).index
    return [torch.cuda.current_device() if index is None else index]


def _pooled_backbone(config: HashingConfig, backbone: nn.Module | None
                     ) -> PooledBackbone | None:
    """The trainable copy of ``backbone`` when fine-tuning (None with a frozen backbone)."""
    if not config.finetune:
        if backbone is not None:
            raise ValueError("train_hashing: backbone is used only with backbone_lr > 0 "
                             "(fine-tuning); with a frozen backbone pass its features "
                             "(irbook.crossmodal.features.image_features) as image_features")
        return None
    if backbone is None:
        raise ValueError(f"train_hashing: backbone_lr = {config.backbone_lr:g} > 0 fine-tunes "
                         f"the image backbone: pass backbone= (an nn.Module) and uint8 images "
                         f"as image_features")
    return PooledBackbone(backbone, config.image_size, config.image_grid).to(config.device)


def train_hashing(config: HashingConfig, image_features: Any, tags: Any, labels: Any,
                  progress: bool = True, *, backbone: nn.Module | None = None) -> HashingModel:
    """Train ``config.method`` on the training pairs (rows of the three arrays: image
    features (N, D) — or, when ``config.backbone_lr > 0``, uint8 images (N, H, W, 3) and
    ``backbone`` the network to fine-tune (a copy is trained and kept as ``nets["backbone"]``;
    ``backbone`` itself is left unchanged) —, tag bag-of-words (N, V), multi-hot labels
    (N, c)). Seeded: the torch generator (initialisation, dropout; forked, so the caller's
    state is left alone) and the batch order both derive from ``config.seed``."""
    if not isinstance(config, HashingConfig):
        raise ValueError(f"config must be a HashingConfig, got {type(config).__name__}")
    pooled = _pooled_backbone(config, backbone)
    data = _data(config, image_features, tags, labels)
    in_dim = data.inputs["image"].shape[1] if pooled is None else pooled.out_dim(data.images)
    with torch.random.fork_rng(devices=_cuda_indices(config.device)):
        torch.manual_seed(int(config.seed))
        nets = build_networks(config, in_dim, data.inputs["text"].shape[1],
                              data.labels.shape[1])
        if pooled is not None:
            nets["backbone"] = pooled
        updates = _Updates(config, nets)
        buffers = _init_buffers(config, nets, data)
        rng, history = np.random.default_rng(int(config.seed)), []
        bar = progress_bar(range(config.epochs), enabled=progress and world().rank == 0,
                           desc=f"{config.method}",
                           leave=False)
        for epoch in bar:
            record = _epoch(config, nets, updates, buffers, data, rng)
            history.append({"epoch": epoch + 1, **record})
            bar.set_postfix(loss=f"{record.get('total', float('nan')):.4f}")
    nets.eval()
    return HashingModel(config, nets, history)


def evaluate_hashing(model: HashingModel, data: Any, image_features: Any) -> HashingResult:
    """Both directions with ``data.query`` as queries and ``data.retrieval`` as the database;
    ``image_features`` has one row per pair of ``data`` (all ``N``): features, or the uint8
    images (e.g. ``data.images``) when the model's backbone was fine-tuned."""
    if model.finetuned:
        features = check_images(image_features, "image_features",
                                " for a model whose backbone was fine-tuned")
    else:
        features = np.asarray(image_features, dtype=np.float32)
    if len(features) != len(data.tags):
        raise ValueError(f"image_features must have one row per pair ({len(data.tags)}), got "
                         f"{len(features)}")
    q, r = np.asarray(data.query), np.asarray(data.retrieval)
    codes = {"image_query": model.image_codes(features[q]),
             "image_db": model.image_codes(features[r]),
             "text_query": model.text_codes(data.tags[q]),
             "text_db": model.text_codes(data.tags[r])}
    ql, rl = data.labels[q], data.labels[r]
    pairs = {"i2t": ("image_query", "text_db"), "t2i": ("text_query", "image_db")}
    ap = {d: hamming_average_precision(codes[a], codes[b], ql, rl) for d, (a, b) in pairs.items()}
    pr = {d: hash_lookup_pr(codes[a], codes[b], ql, rl) for d, (a, b) in pairs.items()}
    return HashingResult(ap=ap, map={d: float(v.mean()) for d, v in ap.items()}, pr=pr,
                         codes=codes)


"""Model size and cost of an image-text matcher (Table 4.6).

- FLOPs of one forward pass of both encoders on the given inputs, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and convolutions, 2 per
  multiply-add; element-wise operations are not counted);
- parameters of both models in millions;
- inference time per image-text pair in milliseconds: ``torch.utils.benchmark.Timer`` times the
  two forward passes on the batch ``repeats`` times; each time divided by the batch size gives
  one sample of the mean ± standard deviation.

``image_model`` and ``text_model`` are ``nn.Module`` s, e.g. a backbone followed by
``MatchingModel.image_encoder`` and ``MatchingModel.text_encoder``. ``text_input`` is a tensor or
a tuple of the text model's positional arguments, e.g. ``(tokens, lengths)`` for
:class:`irbook.models.matching.TextEncoder`; numpy arrays are turned into tensors with their
dtype kept. The image and text batches must hold the same number of pairs.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

# torch.utils.benchmark imports cpp_extension, which logs a CUDA_HOME warning on machines
# without a CUDA runtime; it says nothing about CPU timing and would clutter every page.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
from torch.utils.benchmark import Timer  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

__all__ = ["complexity", "count_flops", "count_parameters"]


def _as_tensor(value: Any) -> Any:
    return torch.as_tensor(value) if isinstance(value, np.ndarray) else value


def _as_args(inputs: Tensor | np.ndarray | tuple | list) -> tuple:
    """The model's positional arguments; numpy arrays become tensors (dtype kept)."""
    args = tuple(inputs) if isinstance(inputs, tuple | list) else (inputs,)
    return tuple(_as_tensor(a) for a in args)


def count_flops(model: nn.Module, *args: Any) -> int:
    """FLOPs of ``model(*args)`` (no gradient) as counted by ``FlopCounterMode``."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*args)
    return int(counter.get_total_flops())


def count_parameters(*models: nn.Module) -> int:
    """Number of parameters of the models (a parameter shared between them counted once)."""
    seen: dict[int, int] = {}
    for model in models:
        for parameter in model.parameters():
            seen[id(parameter)] = parameter.numel()
    return sum(seen.values())


def complexity(image_model: nn.Module, text_model: nn.Module, image_input: Tensor,
               text_input: Tensor | tuple, repeats: int = 5, number: int = 3
               ) -> dict[str, float]:
    """``flops`` (both forwards on the batch), ``flops_per_pair``, ``params_million``,
    ``ms_mean`` and ``ms_std`` per image-text pair (models put in eval mode)."""
    if int(repeats) < 2 or int(number) < 1:
        raise ValueError(f"repeats must be >= 2 and number >= 1; got {repeats}, {number}")
    for name, model in (("image_model", image_model), ("text_model", text_model)):
        if not isinstance(model, nn.Module):
            raise ValueError(f"{name} must be a torch.nn.Module (e.g. MatchingModel."
                             f"{name.split('_')[0]}_encoder); got {type(model).__name__}")
    text_args = _as_args(text_input)
    image_input = _as_tensor(image_input)
    batch = len(image_input)
    if batch < 1 or len(text_args[0]) != batch:
        raise ValueError(f"image_input and text_input must hold the same number (>= 1) of "
                         f"pairs; got {batch} and {len(text_args[0])}")
    image_model.eval()
    text_model.eval()
    flops = count_flops(image_model, image_input) + count_flops(text_model, *text_args)

    def forward() -> None:
        with torch.no_grad():
            image_model(image_input)
            text_model(*text_args)

    timer = Timer(stmt="forward()", globals={"forward": forward})
    seconds = np.array([timer.timeit(number).mean for _ in range(int(repeats))])
    ms = 1000.0 * seconds / batch
    result = {"flops": float(flops), "flops_per_pair": flops / batch,
              "params_million": count_parameters(image_model, text_model) / 1e6,
              "ms_mean": float(ms.mean()), "ms_std": float(ms.std(ddof=1))}
    if not all(math.isfinite(v) for v in result.values()):
        raise RuntimeError(f"complexity measurement is not finite: {result}")
    return result

"""The executable chapters: the registry, and the one call that sets a chapter notebook up.

Each chapter is one module here (``ch02.py``, ``ch05.py``, ...) that defines ``CHAPTER`` (its
notebook and parameters), its experiment steps, its thesis-table helpers and its claim checks.
Adding a chapter means one module, one notebook in ``notebooks/`` whose parameters cell holds
exactly the declared names, one golden notebook and one ``_toc.yml`` line (tests check each).

A notebook's first code cell after the parameters is ``run = chNN.setup(globals())``: it
validates the parameters (a misspelt one is refused), picks the device, seeds every generator,
sets the plot theme and opens the run's :class:`~irbook.report.Report`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..params import Param, ParameterError, ParamSpec
from ..paths import REPO_ROOT


@dataclass(frozen=True)
class Chapter:
    """One thesis chapter as an executable notebook."""

    key: str
    title: str
    notebook: str
    spec: ParamSpec
    preflight: Callable[[dict[str, Any]], None] | None = None
    thesis_tables: tuple[str, ...] = ()

    def check_inputs(self, params: Mapping[str, Any]) -> None:
        """Everything that can fail before a kernel starts: the device, then the chapter's
        preflight (datasets, pretrained weights, images that do not decode)."""
        from ..device import resolve_device

        resolve_device(params["device"])
        if self.preflight is not None:
            self.preflight(dict(params))

    @property
    def notebook_path(self) -> Path:
        return REPO_ROOT / self.notebook

    @property
    def golden_path(self) -> Path:
        """The nbval golden copy of the notebook's smoke run (``make golden``)."""
        return REPO_ROOT / "tests" / "golden" / Path(self.notebook).name

    def resolve(self, profile: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Validated parameters of a run (profile values updated by ``overrides``)."""
        return self.spec.resolve(profile, overrides)


COMMON_PARAMS = (
    Param("seed", int, "seed of every random generator (data, training, sampling)", low=0,
          high=2**31 - 1),
    Param("seeds", int, "repeat the experiments with seeds seed, seed+1, ..., seed+seeds-1; "
          "claims then compare means over the seeds", low=1, high=20),
    Param("device", str, "compute device; auto picks a GPU when torch sees one",
          choices=("auto", "cpu", "cuda")),
    Param("data_root", str, "folder holding the datasets; empty: data/synthetic or data/datasets",
          nullable=True),
    Param("synthetic", bool, "write and use synthetic data in the official layouts"),
)
"""Parameters every chapter has; profiles give them values."""

COMMON_DEFAULTS = {
    "smoke": dict(seed=0, seeds=1, device="cpu", data_root=None, synthetic=True),
    "demo": dict(seed=0, seeds=1, device="cpu", data_root=None, synthetic=True),
    "full": dict(seed=0, seeds=1, device="auto", data_root=None, synthetic=False),
}

TRAINING_PARAMS = (
    Param("num_workers", int, "DataLoader processes that decode and crop the training and "
          "test images (0: in the training process)", low=0, high=64),
    Param("precision", str, "arithmetic of the training step: fp32, or bf16 autocast (on a "
          "GPU about twice the images/s; the thesis trained in fp32)", choices=("fp32", "bf16")),
)
"""Parameters of the chapters that train networks on images (5-7): loading and precision."""

TRAINING_DEFAULTS = {
    "smoke": dict(num_workers=0, precision="fp32"),
    "demo": dict(num_workers=0, precision="fp32"),
    "full": dict(num_workers=8, precision="fp32"),
}


def with_training_defaults(profiles: Mapping[str, dict]) -> dict[str, dict]:
    """``profiles`` with the :data:`TRAINING_DEFAULTS` of each profile added."""
    return {name: {**values, **TRAINING_DEFAULTS[name]} for name, values in profiles.items()}


_NOTEBOOK_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}
_PLAIN = (bool, int, float, str, type(None), list, tuple, dict)


def unknown_notebook_names(spec: ParamSpec, namespace: Mapping[str, Any]) -> list[str]:
    """Plain values in a notebook's globals that are not parameters: misspelt names that
    papermill (``-p alpah 2``) or an edited parameters cell put there."""
    return sorted(name for name, value in namespace.items()
                  if not name.startswith("_") and name not in _NOTEBOOK_NAMES
                  and name not in spec.names and isinstance(value, _PLAIN))


def resolve_in_notebook(key: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the parameters cell of a notebook: call with ``globals()``.

    Names left as ``None`` take the profile's value, so ``papermill -p profile smoke`` alone
    selects the whole smoke profile. A name that is not a parameter is refused.
    """
    chapter = get_chapter(key)
    unknown = unknown_notebook_names(chapter.spec, namespace)
    if unknown:
        raise ParameterError(f"unknown parameter(s) {', '.join(unknown)}; known: "
                             f"{', '.join(chapter.spec.names)}")
    given = {name: namespace.get(name) for name in chapter.spec.names}
    return chapter.resolve(given.pop("profile") or "demo", given)


@dataclass
class Session:
    """A chapter run inside its notebook: validated parameters, device and report."""

    chapter: Chapter
    params: dict[str, Any]
    device: str
    report: Any
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        """The seeds of the repeated experiments: ``seed .. seed + seeds - 1``."""
        return [self.params["seed"] + i for i in range(self.params["seeds"])]

    @property
    def profile(self) -> str:
        return self.params["profile"]

    def parameters(self):
        """The run's configuration as a table (``irbook params`` explains every entry)."""
        import pandas as pd

        return pd.DataFrame({"value": self.params}).rename_axis("parameter")


def start(key: str, namespace: Mapping[str, Any]) -> Session:
    """Set a chapter notebook up: parameters, device, seeds, theme, report."""
    import pandas as pd

    from .. import distributed, viz
    from ..device import describe_device, resolve_device
    from ..report import Report
    from ..train import seed_everything

    params = resolve_in_notebook(key, namespace)
    device = resolve_device(params["device"])
    distributed.setup(device)  # under torchrun: join the processes (one process: nothing)
    device = str(distributed.local_device(device))
    seed_everything(params["seed"])
    viz.set_theme()
    pd.set_option("display.max_colwidth", 200)
    report = Report(key, params, device=describe_device(device))
    report.metric("profile", params["profile"])
    return Session(get_chapter(key), params, device, report)


def _registry() -> dict[str, Chapter]:
    from . import ch02, ch03, ch04, ch05, ch06, ch07, ch08

    return {module.CHAPTER.key: module.CHAPTER
            for module in (ch02, ch03, ch04, ch05, ch06, ch07, ch08)}


CHAPTERS: dict[str, Chapter] = _registry()


def get_chapter(key: str) -> Chapter:
    """The chapter called ``key`` (e.g. ``ch02``); a clear error lists the known ones."""
    try:
        return CHAPTERS[key]
    except KeyError:
        raise ValueError(
            f"unknown chapter {key!r}; available: {', '.join(CHAPTERS)}"
        ) from None

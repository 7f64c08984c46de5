"""Chapter 6 on top of :mod:`irbook.incremental.experiments`: the method line-ups, the
multi-task schedule, the Table 6.3 ablation, Gram matrices (Fig. 6.6b), galleries of old-class
queries (Fig. 6.12), line plots (Figs. 6.7-6.10) and the checks of the chapter's claims.

Method labels follow the thesis tables ("fine-tuning", "EWC", ..., "ours", "reference"), so a
run's table and a thesis table share their row names.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from PIL import Image

from .. import losses
from ..data.finegrained import ClassSplit, LabelledSet
from ..data.images import load_image
from ..progress import progress_bar
from ..viz import BOOK_WIDTH_IN, GalleryRow
from .evaluation import default_dataset_factory, embed
from .experiments import MethodSpec, one_step_tasks
from .methods import METHODS, Correlation, Method, instantiate
from .runner import IncrementalConfig, IncrementalResult, run_incremental

INITIAL, REFERENCE = "initial model", "reference"
OURS, OURS_NO_EST = "ours", "ours w/o EST."

ONE_TASK_METHODS = {"fine-tuning": "finetune", "EWC": "ewc", "ALASSO": "alasso",
                    "NCE_EWC": "nce_ewc", "L2 loss": "l2", "MMD loss": "kd_mmd",
                    OURS: "corr_fe", REFERENCE: "joint"}
"""Rows of Tables 6.1-6.2 (thesis label -> method of :data:`METHODS`)."""

MULTI_TASK_METHODS = {"fine-tuning": "finetune", "EWC": "ewc", "L2 loss": "l2",
                      "MMD loss": "kd_mmd", OURS_NO_EST: "corr", OURS: "corr_fe"}
"""Curves of Figs. 6.7-6.8 and 6.10 (ALASSO, NCE_EWC and joint training left out)."""

LONG_RUN_METHODS = {"L2 loss": "l2", "MMD loss": "kd_mmd", OURS: "corr_fe"}
"""Fig. 6.10: the activation regularisers over the long (10-task) sequence."""

PARAMETER_REGULARISERS = ("EWC", "ALASSO", "NCE_EWC")
FEATURE_REGULARISERS = ("L2 loss", "MMD loss", OURS)

ABLATION_CASES = {
    "(a) previous model only": "corr",
    "(b) previous model, larger weight": "corr_boost",
    "(c) with feature estimation": "corr_fe",
    "(d) every old model kept": "two_model",
}
"""Table 6.3 (case -> method); (a) and (c) are the multi-task runs ``corr`` and ``corr_fe``."""


# --------------------------------------------------------------------------- methods


class BoostedCorrelation(Correlation):
    """Table 6.3 case (b): correlation distillation from the kept model only, its weight raised
    to the total weight that Eq. 6.11 spreads over the estimated models.

    At t = 2 the factor is ``1 + 1/(t-1) = 2`` (the thesis' ``λ2 (L + L/(t-1))``); for other t
    it is ``sum(estimation_weights(t))`` (1 at t = 1), so (b) and (c) always weigh the same in
    total and differ only in what the extra weight is put on.
    """

    name = "corr_boost"

    def teacher_weights(self, ctx):
        return [float(sum(losses.estimation_weights(ctx.task)))]


CHAPTER6_METHODS: dict[str, type[Method]] = {BoostedCorrelation.name: BoostedCorrelation}


def build_method(name: str, metric_loss: str | None = None, **hparams: Any) -> Method:
    """A fresh method ``name`` (a key of :data:`METHODS` or ``corr_boost``) with ``hparams``;
    ``metric_loss`` (``triplet`` or ``pair``) replaces its plasticity loss, None keeps its own."""
    registry = {**METHODS, **CHAPTER6_METHODS}
    if name not in registry:
        raise ValueError(f"method must be one of {', '.join(registry)}; got {name!r}")
    return instantiate(registry[name], name, {**hparams, "metric_loss": metric_loss})


def method_specs(methods: Mapping[str, str], corr_weight: float) -> dict[str, MethodSpec]:
    """``label -> (method, hyper-parameters)``: the methods' defaults (the thesis' tuned
    weights), with ``corr_weight`` (λ2 of Eq. 6.3) for the methods that have it."""
    specs = {}
    registry = {**METHODS, **CHAPTER6_METHODS}
    for label, name in methods.items():
        if name not in registry:
            raise ValueError(f"method must be one of {', '.join(registry)}; got {name!r}")
        takes = "corr_weight" in inspect.signature(registry[name].__init__).parameters
        specs[label] = (name, {"corr_weight": float(corr_weight)} if takes else {})
    return specs


def run_specs(split: ClassSplit, tasks: list[np.ndarray], specs: Mapping[str, MethodSpec],
              config: IncrementalConfig, metric_loss: str | None = None,
              desc: str = "methods", **options: Any) -> dict[str, IncrementalResult]:
    """:func:`irbook.incremental.experiments.run_methods` for chapter-6 methods, every one
    trained with ``metric_loss`` (None: each method's own); ``options`` go to
    :func:`run_incremental` (e.g. ``track_every``)."""
    results = {}
    for label, (name, hparams) in progress_bar(specs.items(), enabled=config.progress,
                                               desc=desc, total=len(specs)):
        method = build_method(name, metric_loss, **hparams)
        results[label] = run_incremental(split, tasks, method, config, **options)
    return results


def initial_model(split: ClassSplit, tasks: list[np.ndarray],
                  config: IncrementalConfig) -> IncrementalResult:
    """The model after task 0 alone (read from the first-stage cache when it is there)."""
    return run_incremental(split, tasks[:1], build_method("finetune"), config)


# --------------------------------------------------------------------------- schedules


def multi_task_schedule(split: Any, n_tasks: int, old_fraction: float = 0.5
                        ) -> list[np.ndarray]:
    """Task 0 = the old classes of :func:`one_step_tasks`, then the new classes in ``n_tasks``
    consecutive groups of equal size where possible (the thesis: 4 groups of 25 CUB or 15 Dogs
    classes, and 10 groups of 10 CUB classes)."""
    old, *rest = one_step_tasks(split, old_fraction)
    n_new = split.n_classes - len(old)
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or not 1 <= n_tasks <= n_new:
        raise ValueError(f"n_tasks must be an integer from 1 to {n_new} (the new classes of "
                         f"this dataset); got {n_tasks!r}")
    new = np.arange(len(old), split.n_classes, dtype=np.int64)
    return [old, *np.array_split(new, n_tasks)]


def class_range(classes: Sequence[int]) -> str:
    """1-based range of a task's classes, as the thesis writes them ("101-125")."""
    classes = np.asarray(classes)
    return f"{int(classes.min()) + 1}-{int(classes.max()) + 1}"


# --------------------------------------------------------------------------- tables


def final_task_table(results: Mapping[str, IncrementalResult],
                     metric: str = "R@1") -> pd.DataFrame:
    """Every task's accuracy under the final model, per method (Fig. 6.8)."""
    rows = [dict(method=label, task=j, classes=class_range(result.tasks[j]), value=float(v))
            for label, result in results.items()
            for j, v in enumerate(result.matrix(metric)[-1])]
    return pd.DataFrame(rows)


def forgetting_ratio(curve: pd.DataFrame) -> pd.DataFrame:
    """Fig. 6.10b: the share (%) of the original classes' starting accuracy lost after each
    task, ``100 (a_0 - a_t) / a_0``, from :func:`first_task_curve` rows (the thesis does not
    define its "forgetting ratio"; this is the book's reading)."""
    start = curve[curve.after_task == 0].set_index("method").value
    ratio = 100 * (curve.method.map(start) - curve.value) / curve.method.map(start)
    return curve.assign(value=ratio)


def newest_task_curve(results: Mapping[str, IncrementalResult],
                      metric: str = "R@1") -> pd.DataFrame:
    """Accuracy on each new group right after it was learned, per method (Fig. 6.9)."""
    rows = [dict(method=label, after_task=t, value=float(result.matrix(metric)[t, t]))
            for label, result in results.items() for t in range(1, len(result.tasks))]
    return pd.DataFrame(rows)


def ablation_table(cases: Mapping[str, IncrementalResult], step: int = 2,
                   metrics: Sequence[str] = ("R@1", "mAP")) -> pd.DataFrame:
    """Table 6.3: after task ``step``, accuracy on task 0 ("old") and on task ``step``
    ("new"), per case, long form (case, classes, metric, value)."""
    rows = []
    for case, result in cases.items():
        if len(result.tasks) <= step:
            raise ValueError(f"case {case!r} has {len(result.tasks)} tasks; step {step} needs "
                             f"at least {step + 1}")
        for metric in metrics:
            matrix = result.matrix(metric)
            rows.append(dict(case=case, classes="old", metric=metric,
                             value=float(matrix[step, 0])))
            rows.append(dict(case=case, classes="new", metric=metric,
                             value=float(matrix[step, step])))
    return pd.DataFrame(rows)


def accuracy_change(result: IncrementalResult, stage: int = 1,
                    metric: str = "mAP") -> tuple[float, float]:
    """``(α_drop, α_gain)`` of Eq. 6.6 for ``stage``, as :class:`CorrelationFE` reads them:
    old = mean accuracy on tasks 0..stage-1, new = task ``stage`` before/after training it."""
    if not 1 <= stage < len(result.tasks):
        raise ValueError(f"stage must be from 1 to {len(result.tasks) - 1}; got {stage}")
    acc = result.matrix(metric)
    before = result.before[(result.before.metric == metric) & (result.before.task == stage)]
    return losses.accuracy_change_bounds(
        acc_before_old=float(np.mean(acc[stage - 1, :stage])),
        acc_after_old=float(np.mean(acc[stage, :stage])),
        acc_before_new=float(before.value.iloc[0]), acc_after_new=float(acc[stage, stage]))


# --------------------------------------------------------------------------- Gram matrices


def gram_batch(labels: np.ndarray, classes: Sequence[int], per_class: int) -> np.ndarray:
    """Indices of the first ``per_class`` items of each class in ``classes``, grouped by class
    in the given order (the fixed batch of Fig. 6.6b)."""
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1; got {per_class}")
    labels = np.asarray(labels)
    picked = []
    for c in classes:
        found = np.flatnonzero(labels == c)[:per_class]
        if len(found) < per_class:
            raise ValueError(f"class {c} has {len(found)} items; per_class={per_class} asked")
        picked.append(found)
    return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)


def embed_items(model: torch.nn.Module, labelled: LabelledSet, indices: Sequence[int],
                image_size: int, device: str | torch.device = "cpu") -> np.ndarray:
    """Test-time embeddings (N, D) of ``labelled``'s items at ``indices``, in that order."""
    indices = np.asarray(indices, dtype=np.int64)
    items = (labelled.items[indices] if isinstance(labelled.items, np.ndarray)
             else [labelled.items[i] for i in indices])
    subset = LabelledSet(items, labelled.labels[indices])
    return embed(model, default_dataset_factory(subset, image_size, False), device)[0]


def gram_of(embeddings: np.ndarray) -> np.ndarray:
    """Linear Gram matrix of the L2-normalised embeddings (Eq. 6.4): cosine similarities."""
    features = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    return losses.gram_matrix(features, normalize=True).numpy()


def gram_gap(gram: np.ndarray, reference: np.ndarray) -> float:
    """Mean absolute difference between two Gram matrices of the same batch."""
    gram, reference = np.asarray(gram), np.asarray(reference)
    if gram.shape != reference.shape:
        raise ValueError(f"Gram matrices differ in shape: {gram.shape} and {reference.shape}")
    return float(np.abs(gram - reference).mean())


def block_contrast(gram: np.ndarray, labels: Sequence[int]) -> float:
    """Mean similarity of same-class pairs minus that of different-class pairs (diagonal
    excluded): how visible the class blocks of Fig. 6.6b are."""
    gram, labels = np.asarray(gram), np.asarray(labels)
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(labels), dtype=bool)
    if not (same & off).any() or not (~same).any():
        raise ValueError("labels must hold at least two classes with two items each")
    return float(gram[same & off].mean() - gram[~same].mean())


def plot_grams(grams: Mapping[str, np.ndarray], per_class: int | None = None,
               title: str | None = None) -> Figure:
    """The Gram matrices side by side on one colour scale, from the smallest to the largest
    entry of all of them (Fig. 6.6b); thin lines separate the classes when ``per_class`` is
    given."""
    if not grams:
        raise ValueError("grams must hold at least one matrix")
    low = min(float(np.min(g)) for g in grams.values())
    high = max(float(np.max(g)) for g in grams.values())
    fig = Figure(figsize=(BOOK_WIDTH_IN, BOOK_WIDTH_IN / len(grams) + 0.8),
                 layout="constrained")
    axes = fig.subplots(1, len(grams), squeeze=False)[0]
    image = None
    for ax, (label, gram) in zip(axes, grams.items(), strict=True):
        image = ax.imshow(gram, vmin=low, vmax=high, cmap="viridis", interpolation="nearest")
        ax.set_title(label, fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        if per_class:
            for edge in np.arange(per_class, len(gram), per_class) - 0.5:
                ax.axhline(edge, color="white", linewidth=0.4)
                ax.axvline(edge, color="white", linewidth=0.4)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="cosine similarity")
    if title:
        fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------- plots


# --------------------------------------------------------------------------- galleries


def ranked_results(embeddings: np.ndarray, labels: np.ndarray, query: int,
                   k: int = 10) -> tuple[np.ndarray, list[str]]:
    """Top ``k`` items for item ``query`` by inner product (query excluded) and their labels:
    ``positive`` for the query's class, else ``negative``."""
    embeddings, labels = np.asarray(embeddings), np.asarray(labels)
    scores = embeddings @ embeddings[query]
    scores[query] = -np.inf
    order = np.argsort(-scores, kind="stable")[: min(k, len(labels) - 1)]
    return order, ["positive" if labels[i] == labels[query] else "negative" for i in order]


def _image(labelled: LabelledSet, index: int) -> Image.Image:
    if isinstance(labelled.items, np.ndarray):
        return Image.fromarray(labelled.items[index])
    return load_image(labelled.items[index])


def gallery_rows(embeddings: np.ndarray, labelled: LabelledSet, queries: Sequence[int],
                 k: int = 10) -> list[GalleryRow]:
    """Rows for :func:`irbook.viz.plot_galleries`: each query of ``labelled`` (whose
    embeddings, in item order, are ``embeddings``) and its ``k`` nearest items."""
    rows = []
    for q in queries:
        order, marks = ranked_results(embeddings, labelled.labels, int(q), k)
        rows.append(GalleryRow(_image(labelled, int(q)), None,
                               [_image(labelled, int(i)) for i in order], marks))
    return rows


def precision_at(embeddings: np.ndarray, labels: np.ndarray, queries: Sequence[int],
                 k: int = 10) -> float:
    """Share of same-class items among the top ``k`` of ``queries``, in percent."""
    hits = [ranked_results(embeddings, labels, int(q), k)[1] for q in queries]
    return float(100 * np.mean([mark == "positive" for row in hits for mark in row]))


# --------------------------------------------------------------------------- claims

Check = tuple[bool, str] | None


def _incremental(table: pd.DataFrame) -> pd.DataFrame:
    return table[~table.method.isin([INITIAL, REFERENCE])]


def _r1(table: pd.DataFrame, classes: str) -> pd.DataFrame:
    """dataset x method table of Recall@1 on ``classes``."""
    part = table[(table.metric == "R@1") & (table.classes == classes)]
    return part.pivot_table(index="dataset", columns="method", values="value", sort=False)


def _needs(table: pd.DataFrame, labels: Sequence[str]) -> bool:
    return not table.empty and set(labels) <= set(table.method)


def check_finetune_extremes(table: pd.DataFrame) -> Check:
    """Fine-tuning: best new-class and worst old-class Recall@1 of the incremental methods
    (Tables 6.1-6.2). ``table``: :func:`old_new_table` rows with a ``dataset`` column."""
    if not _needs(table, ["fine-tuning", OURS]):
        return None
    old, new = _r1(_incremental(table), "old"), _r1(_incremental(table), "new")
    parts, holds = [], True
    for dataset in old.index:
        best_new, worst_old = new.loc[dataset].idxmax(), old.loc[dataset].idxmin()
        holds &= best_new == "fine-tuning" and worst_old == "fine-tuning"
        parts.append(f"{dataset}: best on new {best_new} ({new.loc[dataset].max():.1f}), "
                     f"worst on old {worst_old} ({old.loc[dataset].min():.1f})")
    return bool(holds), "; ".join(parts)


def check_ours_keeps_old_best(table: pd.DataFrame) -> Check:
    """Ours has the highest old-class Recall@1 of the incremental methods (Tables 6.1-6.2)."""
    return _ours_best(table, "old")


def check_features_beat_parameters(table: pd.DataFrame) -> Check:
    """Feature regularisers (L2, MMD, ours) keep a higher mean old-class Recall@1 than the
    parameter regularisers (EWC, ALASSO, NCE_EWC) (Tables 6.1-6.2)."""
    if not _needs(table, FEATURE_REGULARISERS + PARAMETER_REGULARISERS):
        return None
    old = _r1(table, "old")
    parts, holds = [], True
    for dataset, row in old.iterrows():
        feature = row[list(FEATURE_REGULARISERS)].mean()
        parameter = row[list(PARAMETER_REGULARISERS)].mean()
        holds &= feature > parameter
        parts.append(f"{dataset}: features {feature:.1f}, parameters {parameter:.1f}")
    return bool(holds), "; ".join(parts) + " (mean old-class R@1)"


def check_ours_best_average(table: pd.DataFrame) -> Check:
    """Ours has the best average of old and new Recall@1 of the incremental methods."""
    return _ours_best(table, "average")


def _ours_best(table: pd.DataFrame, classes: str) -> Check:
    """Whether ours beats every other incremental method on ``classes`` R@1, per dataset."""
    if not _needs(table, [OURS]):
        return None
    return _ours_highest(_r1(_incremental(table), classes))


def _ours_highest(scores: pd.DataFrame) -> Check:
    """Whether ours is above the best other method in every row (dataset x method scores)."""
    parts, holds = [], True
    for dataset, row in scores.iterrows():
        rival = row.drop(OURS).idxmax()
        holds &= row[OURS] > row[rival]
        parts.append(f"{dataset}: ours {row[OURS]:.1f}, best other {rival} {row[rival]:.1f}")
    return bool(holds), "; ".join(parts)


def check_gram_closer(gaps: Mapping[str, float], rivals: Sequence[str] = ("EWC", "L2 loss")
                      ) -> Check:
    """Ours' Gram matrix on old-class images is closer to the reference than the rivals'
    (Fig. 6.6b). ``gaps``: label -> :func:`gram_gap` to the reference."""
    if OURS not in gaps or not set(rivals) <= set(gaps):
        return None
    holds = all(gaps[OURS] < gaps[r] for r in rivals)
    detail = ", ".join(f"{label} {gaps[label]:.3f}" for label in (OURS, *rivals))
    return holds, detail + " (mean |G - G_reference|)"


def check_least_forgetting(forgetting: pd.DataFrame) -> Check:
    """Ours forgets least after the last task, less than without estimation (Fig. 6.7).
    ``forgetting``: :func:`forgetting_table` rows with a ``dataset`` column."""
    if forgetting.empty or not {OURS, OURS_NO_EST} <= set(forgetting.method):
        return None
    last = forgetting[forgetting.after_task == forgetting.after_task.max()]
    final = last.pivot_table(index="dataset", columns="method", values="forgetting", sort=False)
    parts, holds = [], True
    for dataset, row in final.iterrows():
        rival = row.drop(OURS).idxmin()
        holds &= row[OURS] < row[rival]
        parts.append(f"{dataset}: ours {row[OURS]:.1f}, w/o EST. {row[OURS_NO_EST]:.1f}, "
                     f"least other {rival} {row[rival]:.1f}")
    return bool(holds), "; ".join(parts) + " (forgetting, points)"


def check_keeps_original_best(curve: pd.DataFrame) -> Check:
    """After the last task ours has the highest Recall@1 on the original classes of the
    incremental methods (Figs. 6.8, 6.10; the reference is left out). ``curve``:
    :func:`first_task_curve` rows with a ``dataset`` column."""
    if curve.empty or OURS not in set(curve.method):
        return None
    curve = curve[curve.method != REFERENCE]
    last = curve[curve.after_task == curve.after_task.max()]
    return _ours_highest(last.pivot_table(index="dataset", columns="method", values="value",
                                          sort=False))


def check_estimation_not_weight(ablation: pd.DataFrame) -> Check:
    """Table 6.3: with estimation (c) the new classes score higher than with the larger weight
    (b), and the old classes are closer to keeping every model (d) than without it (a)."""
    r1 = ablation[ablation.metric == "R@1"]
    if r1.empty or r1.case.nunique() < 4:
        return None
    value = {(row.case[:3], row.classes): row.value for row in r1.itertuples()}
    new_ok = value["(c)", "new"] > value["(b)", "new"]
    gap_c = abs(value["(c)", "old"] - value["(d)", "old"])
    gap_a = abs(value["(a)", "old"] - value["(d)", "old"])
    detail = (f"new R@1 (c) {value['(c)', 'new']:.1f} vs (b) {value['(b)', 'new']:.1f}; "
              f"old R@1 distance to (d): (c) {gap_c:.1f}, (a) {gap_a:.1f}")
    return bool(new_ok and gap_c < gap_a), detail


def check_accuracy_change(bounds: tuple[float, float]) -> Check:
    """A stage lowers old-class and raises new-class accuracy: α_drop < 0 < α_gain (Eq. 6.6)."""
    drop, gain = bounds
    return bool(drop < 0 < gain), f"(α_drop, α_gain) = ({drop:.4f}, {gain:.4f})"

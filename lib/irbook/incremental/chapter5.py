"""Chapter 5's experiment plan and claim checks (incremental fine-grained retrieval).

The method labels are those of the thesis tables, so the run's rows line up with
``data/thesis_tables/table_5_*.csv``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..incremental import experiments as ex
from ..incremental.experiments import MethodSpec, value
from .runner import IncrementalConfig


def one_step_specs(alpha: float = 1.0, beta: float = 1.0) -> dict[str, MethodSpec]:
    """Tables 5.2-5.3: every baseline keeps L_ce + L_triplet and adds its own regulariser."""
    return {
        "fine-tuning": ("finetune", {"ce_weight": 1.0}),
        "LwF": ("lwf", {}),
        "EWC": ("ewc", {}),
        "ALASSO": ("alasso", {}),
        "L2 loss": ("l2", {"ce_weight": 1.0}),
        "ours": ("kd_mmd", {"alpha": alpha, "beta": beta}),
        "reference": ("joint", {"ce_weight": 1.0}),
    }


def ablation_specs(beta: float = 1.0) -> dict[str, MethodSpec]:
    """Table 5.7: the loss terms added one at a time to L_ce + L_triplet."""
    return {
        "L_ce + L_triplet": ("finetune", {"ce_weight": 1.0}),
        "+ L_dist": ("kd_mmd", {"alpha": 1.0, "beta": 0.0}),
        "+ L_mmd": ("kd_mmd", {"alpha": 0.0, "beta": beta}),
        "+ L_dist + L_mmd": ("kd_mmd", {"alpha": 1.0, "beta": beta}),
    }


def weight_grid_specs(alphas=(0.1, 1.0), betas=(0.1, 1.0, 10.0)) -> dict[str, MethodSpec]:
    """Table 5.8: the α/β grid of Eq. 5.6."""
    return {f"α={a:g}, β={b:g}": ("kd_mmd", {"alpha": a, "beta": b})
            for a in alphas for b in betas}


def sequential_specs(alpha: float = 1.0, beta: float = 1.0) -> dict[str, MethodSpec]:
    """Tables 5.9-5.10: the methods compared when groups of classes arrive one by one."""
    specs = one_step_specs(alpha, beta)
    return {k: specs[k] for k in ("fine-tuning", "LwF", "EWC", "L2 loss", "ours")}


def classification_specs(alpha: float = 1.0, beta: float = 1.0) -> dict[str, MethodSpec]:
    """Table 5.6 (CIFAR-100): the thesis' four methods."""
    specs = one_step_specs(alpha, beta)
    return {k: specs[k] for k in ("L2 loss", "EWC", "LwF", "ours")}


def classification_config(params: Mapping[str, Any]) -> IncrementalConfig:
    """Training settings of the CIFAR-100 run: the chapter's, at CIFAR's own 32 x 32 pixels for
    the small CPU network (torchvision backbones keep the chapter's crop size)."""
    size = 32 if params["backbone"] == "smallcnn" else params["image_size"]
    return ex.make_config(params, "ch05", image_size=size)


def preflight(params: Mapping[str, Any]) -> None:
    """The fine-grained checks, and CIFAR-100 when every experiment runs on real data."""
    from ..data.errors import require
    from ..data.finegrained import FOLDERS, HOW_TO_GET
    from ..paths import data_root

    ex.preflight(params)
    if params["experiments"] == "all" and not params["synthetic"]:
        root = data_root(False, params["data_root"])
        require(root / FOLDERS["cifar100"], "cifar100", HOW_TO_GET["cifar100"])


def new_class_counts(n_new_total: int, fractions=(0.25, 1.0)) -> list[int]:
    """How many new classes each run of Tables 5.4-5.5 adds (at least one)."""
    return sorted({max(1, round(n_new_total * f)) for f in fractions})


# --- claims ---------------------------------------------------------------------------------

Outcome = tuple[bool, str]


def check_finetuning_forgets(table: pd.DataFrame, margin: float = 1.0) -> Outcome:
    """Claim: fine-tuning's old-class Recall@1 falls below the initial model's."""
    start = value(table, "initial model", "old")
    after = value(table, "fine-tuning", "old")
    return after < start - margin, f"initial {start:.1f} → fine-tuning {after:.1f} (R@1, old)"


def check_ours_keeps_old(table: pd.DataFrame,
                         rivals=("fine-tuning", "LwF", "EWC", "ALASSO", "L2 loss")) -> Outcome:
    """Claim: distillation + MMD keeps more old-class Recall@1 than every baseline."""
    ours = value(table, "ours", "old")
    rivals = [r for r in rivals if (table.method == r).any()]
    beaten = [r for r in rivals if ours > value(table, r, "old")]
    detail = f"ours {ours:.1f}; " + ", ".join(f"{r} {value(table, r, 'old'):.1f}"
                                               for r in rivals)
    return len(beaten) == len(rivals), detail


def check_new_close(table: pd.DataFrame, tolerance: float = 5.0) -> Outcome:
    """Claim: ours stays within a few points of fine-tuning on the new classes."""
    ours, tuned = value(table, "ours", "new"), value(table, "fine-tuning", "new")
    return ours >= tuned - tolerance, (f"new-class R@1: ours {ours:.1f}, fine-tuning "
                                       f"{tuned:.1f} (tolerance {tolerance:g} points)")


def check_learning_new_helps(table: pd.DataFrame) -> Outcome:
    """Claim: the unchanged initial model is worse on the new classes than trained ones."""
    start = value(table, "initial model", "new")
    trained = {m: value(table, m, "new") for m in ("fine-tuning", "ours")}
    detail = f"initial {start:.1f}; " + ", ".join(f"{m} {v:.1f}" for m, v in trained.items())
    return all(v > start for v in trained.values()), detail


def check_mmd_matters(ablation: pd.DataFrame) -> Outcome:
    """Claim (Table 5.7): + L_mmd keeps more old-class R@1 than + L_dist."""
    mmd, dist = value(ablation, "+ L_mmd", "old"), value(ablation, "+ L_dist", "old")
    return mmd > dist, f"old-class R@1: + L_mmd {mmd:.1f}, + L_dist {dist:.1f}"


def check_beta_tradeoff(grid: pd.DataFrame) -> Outcome:
    """Claim (Table 5.8): a larger β raises old and lowers new-class R@1 (at fixed α)."""
    parsed = grid.assign(alpha=grid.method.str.extract(r"α=([\d.]+)")[0].astype(float),
                         beta=grid.method.str.extract(r"β=([\d.]+)")[0].astype(float))
    r1 = parsed[parsed.metric == "R@1"]
    holds, parts = True, []
    for alpha, rows in r1.groupby("alpha"):
        low, high = rows.beta.min(), rows.beta.max()
        pick = rows.set_index(["beta", "classes"]).value
        holds &= pick[(high, "old")] > pick[(low, "old")] and pick[(high, "new")] < pick[
            (low, "new")]
        parts.append(f"α={alpha:g}: old {pick[(low, 'old')]:.1f}→{pick[(high, 'old')]:.1f}, "
                     f"new {pick[(low, 'new')]:.1f}→{pick[(high, 'new')]:.1f} "
                     f"(β {low:g}→{high:g})")
    return bool(holds), "; ".join(parts)


def check_more_classes_more_forgetting(counts: pd.DataFrame,
                                       method: str = "fine-tuning") -> Outcome:
    """Claim (Tables 5.4-5.5): adding more classes at once costs more old-class R@1, on every
    ``dataset`` of ``counts``."""
    holds, parts = True, []
    for dataset, rows in counts[counts.method == method].groupby("dataset", sort=False):
        rows = rows.sort_values("new_classes")
        first, last = rows.iloc[0], rows.iloc[-1]
        holds &= bool(last.old_r1 < first.old_r1)
        parts.append(f"{dataset}, {method}: old R@1 {first.old_r1:.1f} with "
                     f"{first.new_classes} new classes, {last.old_r1:.1f} with "
                     f"{last.new_classes}")
    return holds, "; ".join(parts)


def check_sequential_best(curve: pd.DataFrame) -> Outcome:
    """Claim (Tables 5.9-5.10): ours ends with the best R@1 on the original classes, on every
    ``dataset`` of ``curve``."""
    holds, parts = True, []
    for dataset, rows in curve.groupby("dataset", sort=False):
        last = rows[rows.after_task == rows.after_task.max()].set_index("method").value
        holds &= bool(last.idxmax() == "ours")
        parts.append(f"{dataset}: " + ", ".join(f"{m} {v:.1f}" for m, v in last.items()))
    return holds, "; ".join(parts)


def check_classification_best(seen: pd.DataFrame,
                              rivals=("L2 loss", "EWC", "LwF")) -> Outcome:
    """Claim (Table 5.6): after the last task ours has the best top-1 accuracy over all seen
    classes."""
    last = seen[seen.after_task == seen.after_task.max()].set_index("method").value
    rivals = [r for r in rivals if r in last.index]
    return bool(all(last["ours"] > last[r] for r in rivals)), ", ".join(
        f"{m} {v:.1f}" for m, v in last.items())


def pr_area(curves: pd.DataFrame) -> pd.Series:
    """Area under each interpolated precision-recall curve (percent x fraction of recall), by
    (method, classes): the trapezoid rule over the recall levels."""
    def area(rows: pd.DataFrame) -> float:
        rows = rows.sort_values("recall")
        return float(np.trapezoid(rows.precision, rows.recall / 100))

    return curves.groupby(["method", "classes"], sort=False)[["recall", "precision"]].apply(area)


def check_pr_above(curves: pd.DataFrame, rival: str = "fine-tuning") -> Outcome:
    """Claim (Figs. 5.3a-b): on the old classes the PR curve of ours encloses more area than
    fine-tuning's."""
    areas = pr_area(curves)
    ours, other = areas[("ours", "old")], areas[(rival, "old")]
    return bool(ours > other), f"area under the old-class PR curve: ours {ours:.1f}, " \
        f"{rival} {other:.1f}"


def mean_drop_per_step(curve: pd.DataFrame) -> pd.Series:
    """Average loss of original-class R@1 per step, per method (Tables 5.9-5.10 prose)."""
    return curve.sort_values("after_task").groupby("method", sort=False).value.apply(
        lambda v: float(np.mean(-np.diff(v.to_numpy()))))


# --- Figure 5.5: where the old classes' embeddings go ---------------------------------------

def old_class_embeddings(models: dict, split, classes, image_size: int, device: str):
    """Embeddings of the test images of ``classes`` under each model: label → (emb, labels)."""
    from ..data.torchsets import LabelledImageDataset
    from .evaluation import embed

    dataset = LabelledImageDataset(split.test.subset(classes), image_size, train=False)
    return {label: embed(model, dataset, device) for label, model in models.items()}


def joint_tsne(embeddings: dict, seed: int = 0) -> pd.DataFrame:
    """One t-SNE map of all models' embeddings together, so that their positions compare."""
    from sklearn.manifold import TSNE

    stacked = np.concatenate([emb for emb, _ in embeddings.values()])
    perplexity = max(2.0, min(30.0, (len(stacked) - 1) / 3))
    points = TSNE(n_components=2, perplexity=perplexity, init="pca",
                  random_state=seed).fit_transform(stacked)
    frames, start = [], 0
    for label, (emb, labels) in embeddings.items():
        part = points[start:start + len(emb)]
        frames.append(pd.DataFrame({"model": label, "x": part[:, 0], "y": part[:, 1],
                                    "class": labels.astype(str)}))
        start += len(emb)
    return pd.concat(frames, ignore_index=True)


def feature_drift(embeddings: dict, teacher: str) -> pd.Series:
    """MMD (Eq. 5.5) between the teacher's embeddings and each other model's, same images."""
    import torch

    from ..losses import gaussian_mmd

    reference = torch.from_numpy(embeddings[teacher][0])
    return pd.Series({label: float(gaussian_mmd(reference, torch.from_numpy(emb),
                                                squared=False))
                      for label, (emb, _) in embeddings.items() if label != teacher})


def check_mmd_keeps_features(drift: pd.Series, with_mmd: str, without: str) -> Outcome:
    """Claim (Fig. 5.5): with the MMD term the old-class features drift less."""
    return bool(drift[with_mmd] < drift[without]), (
        f"MMD to the initial model on old-class test images: {with_mmd} {drift[with_mmd]:.3f}, "
        f"{without} {drift[without]:.3f}")

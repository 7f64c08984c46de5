"""Chapter 8: new ideas and trends in deep multimodal content understanding (a survey).

The survey's tables and the progress of Figs. 8.4–8.5 are data (``data/thesis_tables``); three
of its ideas run on the image–caption data of Chapter 4, each beside Chapter 4's
global-embedding baseline (VSE++ on the frozen global image feature, :mod:`irbook.crossmodal.
matching`) trained on the same features and captions:

- the multimodal autoencoder of Fig. 8.2 in its three wirings (:mod:`irbook.multimodal.
  autoencoder`), scored as a retrieval model;
- word-to-region cross-attention, single- and multiple-hop (Fig. 8.3, Table 8.1;
  :mod:`irbook.multimodal.attention`);
- an image captioner with and without visual attention, and the baseline's nearest training
  caption, scored with BLEU-4 and CIDEr-D as in Table 8.2 (:mod:`irbook.multimodal.captioning`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .. import protocol
from ..claims import Comparison, Evidence, evaluate_claim
from ..crossmodal import experiments as xm
from ..params import Param, ParamSpec
from . import COMMON_DEFAULTS, COMMON_PARAMS, Chapter, Session, start

DATASETS = {"flickr30k": "Flickr30K", "coco": "MS-COCO", "flickr8k": "Flickr8K"}
DIRECTIONS = {"i2t": "image-to-text", "t2i": "text-to-image"}
KS = (1, 5, 10)
GLOBAL = "global embedding (VSE++)"
SINGLE_HOP = "attention, 1 hop"
WIRING_LABELS = {"coordinated": "autoencoder, coordinated (8.2a)",
                 "joint": "autoencoder, joint (8.2b)", "cross": "autoencoder, cross (8.2c)"}
CAPTIONERS = {"global": "captioner, global feature", "attention": "captioner, visual attention",
              "retrieval": "nearest training caption (VSE++)"}
CAPTION_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr")
_IMAGE_PARAMS = tuple(p for p in xm.IMAGE_PARAMS if p.name != "backbone_lr")


def preflight(params: dict) -> None:
    xm.preflight_weights(params)
    if not params["synthetic"]:
        xm.open_captioned(params, params["dataset"])


_SHARED = dict(pretrained=True, dataset="flickr30k", dropout=0.3, margin=0.2, smooth=9.0,
               hops=2, max_len=24, ae_image_size=32, ae_align=1.0, experiments="all")
_PROFILES = {
    "smoke": dict(COMMON_DEFAULTS["smoke"], **_SHARED, backbone="smallcnn", pretrain_epochs=2,
                  image_size=32, region_grid=2, embed_dim=64, word_dim=32, text_hidden=32,
                  epochs=1, ae_epochs=1, caption_epochs=1, caption_hidden=64, batch_size=32,
                  lr=2e-3),
    "demo": dict(COMMON_DEFAULTS["demo"], **_SHARED, backbone="smallcnn", pretrain_epochs=12,
                 image_size=64, region_grid=4, embed_dim=128, word_dim=64, text_hidden=64,
                 epochs=6, ae_epochs=6, caption_epochs=4, caption_hidden=128, batch_size=32,
                 lr=2e-3),
    "full": dict(COMMON_DEFAULTS["full"], **_SHARED, backbone="resnet50", pretrain_epochs=1,
                 image_size=224, region_grid=7, embed_dim=1024, word_dim=300, text_hidden=512,
                 epochs=30, ae_epochs=30, caption_epochs=20, caption_hidden=512, batch_size=128,
                 lr=2e-4),
}

CHAPTER = Chapter(
    key="ch08",
    title="New ideas and trends in multimodal content understanding",
    notebook="notebooks/ch08_multimodal_trends.ipynb",
    preflight=preflight,
    thesis_tables=("8.2", "8.3", "8.4"),
    spec=ParamSpec(
        params=(
            *COMMON_PARAMS, *_IMAGE_PARAMS,
            Param("dataset", str, "the captioned set of the demonstrations",
                  choices=tuple(DATASETS)),
            Param("region_grid", int, "regions per side: the backbone's map averaged over a "
                  "grid × grid partition (the attention models' regions)", low=1, high=32),
            Param("embed_dim", int, "dimension of the shared space (and the autoencoder code)",
                  low=8, high=4096),
            Param("word_dim", int, "word-embedding size of the text encoders and the captioner",
                  low=4, high=2048),
            Param("text_hidden", int, "Bi-LSTM units per direction", low=4, high=4096),
            Param("max_len", int, "words kept per caption (and written by the captioner)",
                  low=2, high=200),
            Param("dropout", float, "dropout of the word embeddings", low=0.0, high=0.95),
            Param("margin", float, "margin of the max-violation triplet loss (VSE++: 0.2)",
                  low=0.0, high=2.0),
            Param("smooth", float, "inverse temperature of the word-to-region softmax (SCAN: 9)",
                  low=0.1, high=100.0),
            Param("hops", int, "hops of the stacked attention matcher compared with one hop "
                  "(Table 8.1)", low=2, high=5),
            Param("epochs", int, "training epochs of the matchers", low=1, high=1000),
            Param("ae_epochs", int, "training epochs of each autoencoder (one caption per image "
                  "per epoch)", low=1, high=1000),
            Param("ae_image_size", int, "side (px) of the images the autoencoder reconstructs",
                  choices=(16, 32, 64, 128)),
            Param("ae_align", float, "weight λ of the code-distance term (Fig. 8.2a, c)",
                  low=0.0, high=100.0),
            Param("caption_epochs", int, "training epochs of each captioner", low=1, high=1000),
            Param("caption_hidden", int, "GRU units of the captioner", low=8, high=4096),
            Param("batch_size", int, "pairs per batch", low=2, high=4096),
            Param("lr", float, "Adam learning rate of every model", low=1e-8, high=1.0),
            Param("experiments", str, "all demonstrations, or without the multiple-hop matcher "
                  "and the coordinated and cross autoencoders", choices=("all", "main")),
        ),
        profiles=_PROFILES,
    ),
)


def setup(namespace: Mapping[str, Any]) -> Session:
    """The first code cell of chapter 8: ``run = ch08.setup(globals())``. Opens the dataset,
    builds its vocabulary, computes the frozen global and region features of every image once."""
    run = start(CHAPTER.key, namespace)
    p = run.params
    backbone = xm.image_backbone(p, run.device)
    data = xm.prepare_captioned({**p, "backbone_lr": 0.0}, p["dataset"], run.device, backbone,
                                region_grid=p["region_grid"])
    run.state.update(data=data, models={}, captions={},
                     evidence={s: Evidence(s) for s in run.seeds})
    run.report.extra["deviations"] = protocol.deviations(protocol_table(p))
    return run


def data_summary(run: Session) -> pd.DataFrame:
    d = run.state["data"]
    rows = {split: dict(images=d[split]["part"].n_images, captions=d[split]["part"].n_captions,
                        regions=d[split]["regions"].shape[1],
                        feature_dim=d[split]["features"].shape[1]) for split in ("train", "test")}
    table = pd.DataFrame(rows).T.rename_axis(DATASETS[run.params["dataset"]])
    table["vocabulary"] = len(d["vocab"])
    return table


# --- matching: global embedding, attention, autoencoders -------------------------------------

def matcher_labels(run: Session) -> list[str]:
    """The retrieval models of the run, baseline first."""
    labels = [GLOBAL, SINGLE_HOP]
    if run.params["experiments"] == "all":
        labels.append(stacked_label(run))
        labels += list(WIRING_LABELS.values())
    else:
        labels.append(WIRING_LABELS["joint"])
    return labels


def stacked_label(run: Session) -> str:
    return f"attention, {run.params['hops']} hops"


def _training(run: Session, seed: int, epochs: int) -> dict[str, Any]:
    p = run.params
    return dict(epochs=epochs, batch_size=p["batch_size"], lr=p["lr"], seed=seed,
                device=run.device)


def _text(run: Session) -> dict[str, Any]:
    p = run.params
    return dict(word_dim=p["word_dim"], text_hidden=p["text_hidden"], dropout=p["dropout"])


def _train_global(run: Session, seed: int):
    """Chapter 4's VSE++ on the global features (the baseline of every comparison)."""
    from ..crossmodal.matching import MatchingConfig, train_matching

    train, p = run.state["data"]["train"], run.params
    config = MatchingConfig(method="vsepp", embed_dim=p["embed_dim"], margin=p["margin"],
                            **_text(run), **_training(run, seed, p["epochs"]))
    return train_matching(config, train["features"], train["tokens"], train["lengths"],
                          train["part"].caption_image, train["part"].labels,
                          len(run.state["data"]["vocab"]), progress=False)


def _train_attention(run: Session, seed: int, hops: int):
    from ..multimodal.attention import AttentionConfig, train_attention

    train, p = run.state["data"]["train"], run.params
    config = AttentionConfig(embed_dim=p["embed_dim"], smooth=p["smooth"], hops=hops,
                             margin=p["margin"], **_text(run),
                             **_training(run, seed, p["epochs"]))
    return train_attention(config, train["regions"], train["tokens"], train["lengths"],
                           train["part"].caption_image, len(run.state["data"]["vocab"]))


def _train_autoencoder(run: Session, seed: int, wiring: str):
    from ..multimodal.autoencoder import AutoencoderConfig, train_autoencoder

    train, p = run.state["data"]["train"], run.params
    config = AutoencoderConfig(wiring=wiring, image_size=p["ae_image_size"],
                               code_dim=p["embed_dim"], align=p["ae_align"], **_text(run),
                               **_training(run, seed, p["ae_epochs"]))
    return train_autoencoder(config, train["images"], train["tokens"], train["lengths"],
                             train["part"].caption_image, len(run.state["data"]["vocab"]))


def _similarity(run: Session, label: str, model) -> np.ndarray:
    """Test similarities (n_images, n_captions) of a trained retrieval model."""
    from ..multimodal.attention import attention_similarity
    from ..multimodal.autoencoder import autoencoder_similarity

    test = run.state["data"]["test"]
    if label == GLOBAL:
        return (model.image_embeddings(test["features"])
                @ model.text_embeddings(test["tokens"], test["lengths"]).T)
    if label.startswith("attention"):
        return attention_similarity(model, test["regions"], test["tokens"], test["lengths"])
    return autoencoder_similarity(model, test["images"], test["tokens"], test["lengths"])


def trained_matcher(run: Session, seed: int, label: str):
    """Train (memoised) one retrieval model of :func:`matcher_labels`."""
    key = (seed, label)
    if key not in run.state["models"]:
        wirings = {v: k for k, v in WIRING_LABELS.items()}
        if label == GLOBAL:
            model = _train_global(run, seed)
        elif label.startswith("attention"):
            model = _train_attention(run, seed, 1 if label == SINGLE_HOP else run.params["hops"])
        else:
            model = _train_autoencoder(run, seed, wirings[label])
        run.state["models"][key] = model
    return run.state["models"][key]


def retrieval_result(run: Session, seed: int, label: str):
    """VSE++-protocol scores of one model on the test split (memoised); per-query R@K hits go
    to the seed's evidence as ``retrieval/<label>/<direction>/R@K``."""
    from ..crossmodal.matching import score_similarity

    key = (seed, label, "result")
    if key not in run.state["models"]:
        test = run.state["data"]["test"]
        sim = _similarity(run, label, trained_matcher(run, seed, label))
        result = score_similarity(sim, test["part"].caption_image, test["part"].labels)
        for direction in DIRECTIONS:
            for k, hits in result.hits[direction].items():
                run.state["evidence"][seed].add(f"retrieval/{label}/{direction}/R@{k}", hits,
                                                f"retrieval/{direction}")
        run.state["models"][key] = result
    return run.state["models"][key]


def retrieval_table(run: Session) -> pd.DataFrame:
    """R@1/5/10 (%) per direction and rsum of every retrieval model, mean over the seeds, with
    the training seconds of the first seed."""
    from ..progress import progress_bar

    rows = []
    for label in progress_bar(matcher_labels(run), desc="retrieval models", leave=False):
        results = [retrieval_result(run, s, label) for s in run.seeds]
        row = {"model": label}
        for d, name in DIRECTIONS.items():
            for k in KS:
                row[(name, f"R@{k}")] = float(np.mean([r.recall[d][k] for r in results]))
        row[("", "rsum")] = float(np.mean([r.rsum for r in results]))
        history = trained_matcher(run, run.seeds[0], label).history
        row[("", "train s")] = float(sum(h["seconds"] for h in history))
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    for label, key in ((GLOBAL, "rsum_global"), (SINGLE_HOP, "rsum_attention"),
                       (WIRING_LABELS["joint"], "rsum_joint_ae")):
        run.report.metric(key, round(float(table.loc[label, ("", "rsum")]), 1))
    return table.round(1)


def training_curves(run: Session) -> pd.DataFrame:
    """Per-epoch total loss of every retrieval model of the first seed (long form)."""
    frames = [pd.DataFrame(trained_matcher(run, run.seeds[0], label).history)
              .assign(model=label) for label in matcher_labels(run)]
    table = pd.concat(frames, ignore_index=True)
    return table[["model", "epoch", "total"]].rename(columns={"total": "loss"})


def attention_maps(run: Session, n: int = 3) -> dict[str, Any]:
    """Word-to-region attention of the single-hop matcher on ``n`` test pairs: images, the
    words of their first caption and the weights (words × regions) of each."""
    import torch

    model = trained_matcher(run, run.seeds[0], SINGLE_HOP)
    test = run.state["data"]["test"]
    part, vocab = test["part"], run.state["data"]["vocab"]
    captions = [int(np.flatnonzero(part.caption_image == i)[0]) for i in range(n)]
    out = {"images": test["images"][:n], "words": [], "weights": []}
    with torch.no_grad():
        for i, j in enumerate(captions):
            v = model.regions(torch.as_tensor(test["regions"][i:i + 1]))
            w, _ = model.words(test["tokens"][j:j + 1], test["lengths"][j:j + 1])
            cos = torch.nn.functional.normalize(w[0], dim=-1) @ torch.nn.functional.normalize(
                v[0], dim=-1).T
            out["weights"].append((model.smooth * cos).softmax(dim=-1).numpy())
            out["words"].append(vocab.decode(test["tokens"][j, :int(test["lengths"][j])]))
    return out


# --- captioning ------------------------------------------------------------------------------

def references(run: Session) -> list[list[tuple[str, ...]]]:
    """The reference captions of every test image."""
    part = run.state["data"]["test"]["part"]
    return [[part.captions[j] for j in np.flatnonzero(part.caption_image == i)]
            for i in range(part.n_images)]


def _captions_of(run: Session, seed: int, kind: str) -> list[list[str]]:
    """Test captions of one captioner (``global``, ``attention``) or of the retrieval
    baseline."""
    from ..multimodal.captioning import (
        CaptionerConfig,
        caption_vocabulary,
        decode_captions,
        retrieval_captions,
        train_captioner,
    )

    data, p = run.state["data"], run.params
    train, test = data["train"], data["test"]
    if kind == "retrieval":
        model = trained_matcher(run, seed, GLOBAL)
        return retrieval_captions(model.image_embeddings(test["features"]),
                                  model.text_embeddings(train["tokens"], train["lengths"]),
                                  train["part"].captions)
    vocab = run.state.setdefault("caption_vocab", caption_vocabulary(train["part"].captions))
    inputs = "regions" if kind == "attention" else "features"
    config = CaptionerConfig(word_dim=p["word_dim"], hidden=p["caption_hidden"],
                             max_len=p["max_len"], **_training(run, seed, p["caption_epochs"]))
    model = train_captioner(config, train[inputs], train["part"].captions,
                            train["part"].caption_image, vocab)
    run.state["models"][(seed, CAPTIONERS[kind])] = model
    return decode_captions(model, test[inputs], vocab, p["max_len"])


def captioning_result(run: Session, seed: int, kind: str) -> dict[str, Any]:
    """BLEU-1…4 and CIDEr-D (memoised); per-image BLEU-4 and CIDEr go to the evidence as
    ``captioning/<kind>/<metric>`` (×100, Table 8.2's scale)."""
    from ..metrics.captioning import caption_scores

    key = (seed, kind)
    if key not in run.state["captions"]:
        captions = _captions_of(run, seed, kind)
        scores = caption_scores(references(run), captions)
        for metric, values in scores["per_image"].items():
            run.state["evidence"][seed].add(f"captioning/{kind}/{metric}", 100 * values,
                                            "captioning/images")
        run.state["captions"][key] = {"captions": captions, "scores": scores}
    return run.state["captions"][key]


def captioning_table(run: Session) -> pd.DataFrame:
    """Table 8.2's metrics (×100) of the three captioners, mean over the seeds."""
    rows = {}
    for kind, label in CAPTIONERS.items():
        results = [captioning_result(run, s, kind)["scores"] for s in run.seeds]
        rows[label] = {m: 100 * float(np.mean([r[m] for r in results]))
                       for m in CAPTION_METRICS}
    table = pd.DataFrame(rows).T.rename_axis("model")
    for kind, label in CAPTIONERS.items():
        run.report.metric(f"cider_{kind}", round(float(table.loc[label, "CIDEr"]), 1))
        run.report.metric(f"bleu4_{kind}", round(float(table.loc[label, "BLEU-4"]), 1))
    return table.round(1)


def caption_examples(run: Session, n: int = 4) -> tuple[np.ndarray, list[str]]:
    """``n`` test images and, per image, a reference and the three models' captions."""
    refs = references(run)
    texts = []
    for i in range(n):
        lines = [f"reference: {' '.join(refs[i][0])}"]
        for kind in CAPTIONERS:
            words = captioning_result(run, run.seeds[0], kind)["captions"][i]
            lines.append(f"{kind}: {' '.join(words)}")
        texts.append("\n".join(lines))
    return run.state["data"]["test"]["images"][:n], texts


# --- the survey's numbers and the book's own ---------------------------------------------------

BOOK_POINTS = {
    "8.4": (("ch04", "f30k_ours_i2t_r1", "Flickr30K", "image-to-text"),
            ("ch04", "f30k_ours_t2i_r1", "Flickr30K", "text-to-image"),
            ("ch04", "coco_ours_i2t_r1", "MS-COCO 1K", "image-to-text")),
    "8.5": (("ch03", "ours_32_i2t", "MIRFlickr-25K", "image-to-text"),
            ("ch03", "ours_32_t2i", "MIRFlickr-25K", "text-to-image")),
}
"""Figure → (chapter, metric of its results.json, dataset, direction) of the book's points."""


def book_points(run: Session, figure: str) -> pd.DataFrame:
    """The book's own Chapter 3/4 results for a progress figure, from the latest run of each
    chapter (this run's profile preferred): ``dataset``, ``direction``, ``value``, ``label``."""
    from ..scoreboard import collect_runs

    records = {}
    for record in collect_runs():
        if record.chapter in {"ch03", "ch04"} and (record.chapter not in records
                                                   or record.profile == run.profile):
            records[record.chapter] = record
    rows = []
    for chapter, key, dataset, direction in BOOK_POINTS[figure]:
        record = records.get(chapter)
        value = record.results.get("metrics", {}).get(key) if record else None
        if isinstance(value, int | float):
            rows.append(dict(dataset=dataset, direction=direction, value=float(value),
                             label=f"book {chapter} ({record.profile}, synthetic)"
                             if record.results.get("params", {}).get("synthetic", True)
                             else f"book {chapter} ({record.profile})"))
    return pd.DataFrame(rows, columns=["dataset", "direction", "value", "label"])


def progress(figure: str) -> pd.DataFrame:
    """The numbers behind Fig. 8.4 (R@1, %) or Fig. 8.5 (mAP at 32 bits), with a ``panel``
    column (dataset · direction)."""
    from ..thesis_tables import load_figure_data

    data = load_figure_data(figure)
    if figure == "8.5":
        data = data[data.bits == 32]
    return data.assign(panel=data.dataset + " · " + data.direction)


def survey_table(table: str, value: str, mine: Mapping[str, float] | None = None
                 ) -> pd.DataFrame:
    """One column of a survey table (``method``, ``value``) with the run's rows appended."""
    from ..thesis_tables import load_thesis_table

    data = load_thesis_table(table)[["method", value]]
    if mine:
        data = pd.concat([data, pd.DataFrame({"method": list(mine), value: list(mine.values())})],
                         ignore_index=True)
    return data


# --- protocol --------------------------------------------------------------------------------

def protocol_values(p: Mapping[str, Any]) -> dict[str, str]:
    """This run's value of every item of ``data/thesis_protocols/ch08.csv``."""
    kind = "synthetic scenes, official layout" if p["synthetic"] else "real images"
    g = p["region_grid"]
    return {
        "data": f"{DATASETS[p['dataset']]} (Karpathy split; {kind}) for all three "
                "demonstrations",
        "image regions": f"the frozen backbone's map averaged over a {g} × {g} grid "
                         f"({g * g} regions); {p['backbone']}",
        "baseline": "Chapter 4's VSE++ (max-violation triplet, margin "
                    f"{p['margin']:g}) on the global average-pooled feature",
        "attention matcher": f"Bi-LSTM word states attending over the regions (SCAN t2i, "
                             f"softmax scale {p['smooth']:g}); 1 and {p['hops']} hops; "
                             "the baseline's loss",
        "autoencoder": f"3 stride-2 convolutions on {p['ae_image_size']} px pixels + Bi-LSTM; "
                       "pixel MSE + bag-of-words BCE; coordinated, joint (with zeroed "
                       f"modality) and cross wirings; code {p['embed_dim']}-d, λ "
                       f"{p['ae_align']:g}",
        "captioner": f"GRU ({p['caption_hidden']} units) with additive visual attention over "
                     "the regions, or fed the global feature; greedy decoding; beside it the "
                     "baseline's nearest training caption",
        "retrieval metrics": "R@1/5/10 and rsum, VSE++ protocol (an image's best-ranked "
                             "caption counts)",
        "captioning metrics": "BLEU-1…4 and CIDEr-D (pycocoevalcap) against the 5 test "
                              "references per image",
        "training": f"Adam lr {p['lr']:g}, batch {p['batch_size']}; matchers {p['epochs']} "
                    f"epochs, autoencoders {p['ae_epochs']}, captioners "
                    f"{p['caption_epochs']}",
        "seeds": protocol.describe_seeds(p),
    }


def deviation_reasons(p: Mapping[str, Any]) -> dict[str, str]:
    return {
        "data": "no dataset can be downloaded here; synthetic scenes with five captions each "
                "in Karpathy's layout" if p["synthetic"] else "one captioned set keeps the "
                "three demonstrations on the same data",
        "image regions": "no object detector is available offline; grid cells of the same "
                         "frozen map the baseline pools",
        "baseline": "the survey compares published systems; here one baseline shares data, "
                    "features and text encoder with every demonstration",
        "attention matcher": "one representative of the survey's attention family, chosen "
                             "to differ from the baseline only in how pairs are compared",
        "autoencoder": "the survey names no decoder; a bag of words keeps the text side small",
        "captioner": "a small GRU fits the CPU budget; no beam search, no reinforcement "
                     "learning (SCST, Up-Down of Table 8.2 use both)",
        "captioning metrics": "METEOR and SPICE need Java; ROUGE-L is omitted as in the "
                              "claims; no c40 references exist",
        "training": "the survey reports the papers' numbers; the profile fixes the schedule",
        "seeds": "the book measures the uncertainty of every claim",
        "retrieval metrics": "rsum added: the sum of the six recalls, one number per model",
    }


def protocol_table(p: Mapping[str, Any]) -> pd.DataFrame:
    return protocol.protocol_table(CHAPTER.key, protocol_values(p), deviation_reasons(p))


# --- claims ----------------------------------------------------------------------------------

def _mean_recall(plus: str, minus: str) -> Comparison:
    """Mean of the six recalls (rsum / 6) of ``plus`` minus that of ``minus``."""
    names = [f"{d}/R@{k}" for d in DIRECTIONS for k in KS]
    return Comparison(f"{plus} − {minus}, mean of R@1/5/10 in both directions (rsum / 6)",
                      tuple(f"retrieval/{plus}/{n}" for n in names),
                      tuple(f"retrieval/{minus}/{n}" for n in names))


def _caption_gain(plus: str, minus: str, metric: str) -> Comparison:
    return Comparison(f"{CAPTIONERS[plus]} − {CAPTIONERS[minus]}, {metric} (×100, per image)",
                      (f"captioning/{plus}/{metric}",), (f"captioning/{minus}/{metric}",))


def claim_specs(run: Session) -> list[tuple[str, str, str, list[Comparison]]]:
    specs = [
        ("ch08.attention_beats_global", "Comparing every word with the image regions it attends "
         "to matches images and captions better than one global embedding per modality",
         "Sections 8.2.2a, 8.3.2c", [_mean_recall(SINGLE_HOP, GLOBAL)]),
        ("ch08.verification_beats_reconstruction", "A common space trained on matched and "
         "unmatched pairs (triplet) preserves cross-modal similarity better than the joint "
         "autoencoder's reconstruction of matched pairs", "Section 8.3.3",
         [_mean_recall(GLOBAL, WIRING_LABELS["joint"])]),
        ("ch08.attention_captions_better", "Visual attention over regions gives better "
         "captions than conditioning on the global feature (CIDEr and BLEU-4)",
         "Section 8.3.2c, Table 8.2",
         [_caption_gain("attention", "global", m) for m in ("CIDEr", "BLEU-4")]),
    ]
    if run.params["experiments"] == "all":
        specs.append(("ch08.multi_hop_more_accurate", "Stacked (multiple-hop) attention "
                      "matches more accurately than a single hop", "Table 8.1",
                      [_mean_recall(stacked_label(run), SINGLE_HOP)]))
    return specs


def check_claims(run: Session) -> pd.DataFrame:
    """Evaluate every claim on the run's evidence (all seeds), record them, save the report."""
    evidence = [run.state["evidence"][s] for s in run.seeds]
    for claim_id, statement, source, comparisons in claim_specs(run):
        run.report.add_claim(evaluate_claim(claim_id, statement, source, comparisons, evidence))
    if run.params["experiments"] != "all":
        run.report.skip_claim("ch08.multi_hop_more_accurate", "not run with these parameters")
    run.report.save()
    return run.report.claims_frame()

"""Cross-modal loaders on hand-made fixtures in the official layouts (DCMH .mat files, Karpathy
JSON, CUHK-PEDES reid_raw.json), and the caption text utilities."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from irbook.data.crossmodal import (
    LAYOUTS,
    MIRFLICKR_LABELS,
    NUSWIDE_LABELS,
    coco_1k_folds,
    load_image_array,
    load_karpathy,
    load_mirflickr,
    load_nuswide,
    load_pedes,
    split_pairs,
)
from irbook.data.errors import DatasetCorruptError, DatasetNotFoundError
from irbook.data.text import PAD, UNK, Vocabulary, encode_captions, tokenize

N, H, W = 5, 4, 6  # H != W so that a swapped height/width is caught


def _fixture_arrays(n_labels: int, vocab: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images = np.zeros((N, H, W, 3), np.uint8)
    images[3, 1, 4, 2] = 200  # image 3, row 1, column 4, blue
    images[0, 3, 0, 0] = 17
    labels = np.zeros((N, n_labels))
    labels[[0, 1, 2, 3, 4], [0, 5, 5, n_labels - 1, 2]] = 1
    labels[4, 3] = 1
    tags = np.zeros((N, vocab))
    tags[2, [7, vocab - 1]] = 1
    return images, labels, tags


def _write_flickr(root: Path, name: str = "images", matlab_nhwc: bool = False,
                  label_rows: int = N) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FLICKR-25K.mat as h5py sees the DCMH file: every MATLAB axis reversed."""
    images, labels, tags = _fixture_arrays(24, 1386)
    folder = root / "MIRFLICKR-25K"
    folder.mkdir(parents=True)
    with h5py.File(folder / "FLICKR-25K.mat", "w") as f:
        # MATLAB H x W x 3 x N -> h5py (N, 3, W, H); MATLAB N x H x W x 3 -> h5py (3, W, H, N)
        f[name] = images.transpose(3, 2, 1, 0) if matlab_nhwc else images.transpose(0, 3, 2, 1)
        f["LAll"] = labels[:label_rows].T  # MATLAB N x 24 -> h5py (24, N)
        f["YAll"] = tags.T
    return images, labels, tags


@pytest.mark.parametrize(("name", "matlab_nhwc"), [("images", False), ("IAll", False),
                                                   ("images", True)])
def test_mirflickr_axis_order_labels_tags_and_split(tmp_path, name, matlab_nhwc):
    images, labels, tags = _write_flickr(tmp_path, name, matlab_nhwc)
    data = load_mirflickr(tmp_path, n_query=2, n_train=2, seed=3)
    assert data.images.shape == (N, H, W, 3) and data.images.dtype == np.uint8
    assert data.images[3, 1, 4, 2] == 200 and data.images[0, 3, 0, 0] == 17
    assert int(data.images.astype(int).sum()) == 217
    np.testing.assert_array_equal(data.labels, labels)
    np.testing.assert_array_equal(data.tags, tags)
    assert data.tags.dtype == np.float32 and data.labels.dtype == np.float32
    assert (data.n_pairs, data.n_labels, data.vocab_size) == (N, 24, 1386)
    assert data.label_names == MIRFLICKR_LABELS and data.label_names[-1] == "water"
    assert data.root == tmp_path / "MIRFLICKR-25K" and data.name == "mirflickr"
    assert sorted([*data.query, *data.retrieval]) == list(range(N))
    assert len(data.query) == 2 and data.train.tolist() == data.retrieval[:2].tolist()


def test_mirflickr_missing_and_damaged_files_name_the_path(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="FLICKR-25K.mat") as err:
        load_mirflickr(tmp_path)
    assert "DCMH" in str(err.value)
    _write_flickr(tmp_path, label_rows=N - 1)  # 4 label rows for 5 images
    path = tmp_path / "MIRFLICKR-25K" / "FLICKR-25K.mat"
    with pytest.raises(DatasetCorruptError, match="images") as err:
        load_mirflickr(tmp_path, n_query=1, n_train=1)
    assert err.value.path == path and str(path) in str(err.value)
    path.write_bytes(b"not a mat file at all")
    with pytest.raises(DatasetCorruptError, match="not a readable MATLAB file"):
        load_mirflickr(tmp_path, n_query=1, n_train=1)


def test_mirflickr_rejects_non_binary_labels_and_missing_variables(tmp_path):
    images, labels, tags = _write_flickr(tmp_path)
    path = tmp_path / "MIRFLICKR-25K" / "FLICKR-25K.mat"
    with h5py.File(path, "r+") as f:
        f["LAll"][0, 0] = 2
    with pytest.raises(DatasetCorruptError, match="only 0 and 1"):
        load_mirflickr(tmp_path, n_query=1, n_train=1)
    with h5py.File(path, "r+") as f:
        del f["YAll"]
    with h5py.File(path, "r+") as f:
        f["LAll"][0, 0] = 1
    with pytest.raises(DatasetCorruptError, match="no variable YAll"):
        load_mirflickr(tmp_path, n_query=1, n_train=1)


def _write_nus(root: Path, tag_rows: int = N) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images, labels, tags = _fixture_arrays(21, 1000)
    folder = root / "NUS-WIDE"
    folder.mkdir(parents=True)
    with h5py.File(folder / "nus-wide-tc21-iall.mat", "w") as f:
        f["IAll"] = images.transpose(0, 3, 2, 1)
    scipy.io.savemat(folder / "nus-wide-tc21-lall.mat", {"LAll": labels})  # v5: N x 21
    scipy.io.savemat(folder / "nus-wide-tc21-yall.mat", {"YAll": tags[:tag_rows]})
    return images, labels, tags


def test_nuswide_three_files_v73_images_v5_labels_and_tags(tmp_path):
    images, labels, tags = _write_nus(tmp_path)
    data = load_nuswide(tmp_path, n_query=1, n_train=3, seed=0)
    assert data.images.shape == (N, H, W, 3) and data.images[3, 1, 4, 2] == 200
    np.testing.assert_array_equal(data.labels, labels)
    np.testing.assert_array_equal(data.tags, tags)
    assert data.label_names == NUSWIDE_LABELS and len(data.label_names) == 21
    assert len(data.train) == 3 and len(data.retrieval) == 4


def test_nuswide_missing_and_inconsistent_files(tmp_path):
    _write_nus(tmp_path, tag_rows=N - 2)
    folder = tmp_path / "NUS-WIDE"
    with pytest.raises(DatasetCorruptError) as err:
        load_nuswide(tmp_path, n_query=1, n_train=1)
    assert err.value.path == folder / "nus-wide-tc21-yall.mat" and "YAll" in str(err.value)
    (folder / "nus-wide-tc21-lall.mat").unlink()
    with pytest.raises(DatasetNotFoundError, match="nus-wide-tc21-lall.mat"):
        load_nuswide(tmp_path)


def test_split_pairs_sizes_disjoint_and_seeded():
    query, retrieval, train = split_pairs(20, 4, 6, seed=1)
    assert query.dtype == np.int64 and len(query) == 4 and len(retrieval) == 16
    assert set(query.tolist()).isdisjoint(retrieval.tolist())
    assert sorted([*query, *retrieval]) == list(range(20))
    assert train.tolist() == retrieval[:6].tolist()
    again = split_pairs(20, 4, 6, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(again, (query, retrieval, train),
                                                    strict=True))
    assert not np.array_equal(split_pairs(20, 4, 6, seed=2)[0], query)
    with pytest.raises(ValueError, match="n_train"):
        split_pairs(20, 4, 17, seed=0)
    with pytest.raises(ValueError, match="n_query"):
        split_pairs(20, 20, 1, seed=0)


# --------------------------------------------------------------------------- Karpathy


def _png(path: Path, size: tuple[int, int] = (4, 3), pixel: tuple[int, int] | None = None
         ) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3), 10, np.uint8)
    if pixel is not None:
        arr[pixel[1], pixel[0]] = (250, 0, 5)
    Image.fromarray(arr).save(path)


def _karpathy_entry(i: int, split: str, sentences: list[dict], **extra) -> dict:
    for j, s in enumerate(sentences):
        s.update(imgid=i, sentid=10 * i + j)
    return {"filename": f"{100 + i}.jpg", "imgid": i, "split": split, "sentences": sentences,
            "sentids": [s["sentid"] for s in sentences], **extra}


def _write_f30k(root: Path, splits=("train", "restval", "val", "test")) -> Path:
    folder = root / "Flickr30K"
    entries = []
    for i, split in enumerate(splits):
        sents = [{"tokens": ["Two", "dogs"], "raw": "Two dogs."},
                 {"tokens": [], "raw": f"A Dog, running #{i}!"}]  # no tokens: from raw
        entries.append(_karpathy_entry(i, split, sents))
        _png(folder / "flickr30k-images" / f"{100 + i}.jpg")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset_flickr30k.json").write_text(json.dumps({"images": entries,
                                                               "dataset": "flickr30k"}))
    return folder


def test_karpathy_splits_tokens_labels_and_subset(tmp_path):
    folder = _write_f30k(tmp_path)
    data = load_karpathy(tmp_path, "flickr30k")
    assert data.splits.tolist() == ["train", "train", "val", "test"]  # restval -> train
    assert data.image_paths[2] == folder / "flickr30k-images" / "102.jpg"
    assert data.labels.tolist() == [0, 1, 2, 3] and data.labels.dtype == np.int64
    assert data.n_images == 4 and data.n_captions == 8
    assert data.captions[0] == ("two", "dogs")
    assert data.captions[7] == ("a", "dog", "running", "3")
    assert data.caption_image.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    test = data.subset("test")
    assert test.n_images == 1 and test.labels.tolist() == [3]
    assert test.caption_image.tolist() == [0, 0] and test.captions[1][-1] == "3"
    train = data.subset("train")
    assert train.caption_image.tolist() == [0, 0, 1, 1]
    assert train.caption_labels.tolist() == [0, 0, 1, 1]
    assert data.caption_labels.tolist() == data.caption_image.tolist()
    with pytest.raises(ValueError, match="split"):
        data.subset("restval")


def test_karpathy_coco_filepath_and_flickr8k_folder(tmp_path):
    folder = tmp_path / "COCO"
    entries = [_karpathy_entry(0, "train", [{"tokens": ["a"], "raw": "A"}],
                               filepath="train2014", cocoid=9),
               _karpathy_entry(1, "restval", [{"tokens": ["b"], "raw": "B"}],
                               filepath="val2014", cocoid=4)]
    for e in entries:
        _png(folder / e["filepath"] / e["filename"])
    (folder / "dataset_coco.json").write_text(json.dumps({"images": entries}))
    data = load_karpathy(tmp_path, "coco")
    assert data.image_paths == (folder / "train2014" / "100.jpg", folder / "val2014" / "101.jpg")
    assert data.splits.tolist() == ["train", "train"]
    f8k = tmp_path / "Flickr8K"
    _png(f8k / "Flicker8k_Dataset" / "100.jpg")
    (f8k / "dataset_flickr8k.json").write_text(json.dumps(
        {"images": [_karpathy_entry(0, "val", [{"tokens": ["x"], "raw": "x"}])]}))
    assert load_karpathy(tmp_path, "flickr8k").image_paths[0].parent.name == "Flicker8k_Dataset"
    assert "Flicker8k_Dataset" in LAYOUTS["flickr8k"]


def test_karpathy_missing_and_damaged(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="dataset_flickr30k.json"):
        load_karpathy(tmp_path, "flickr30k")
    with pytest.raises(ValueError, match="name"):
        load_karpathy(tmp_path, "flickr9k")
    folder = _write_f30k(tmp_path, splits=("train", "dev"))
    path = folder / "dataset_flickr30k.json"
    with pytest.raises(DatasetCorruptError, match="dev") as err:
        load_karpathy(tmp_path, "flickr30k")
    assert err.value.path == path
    (folder / "flickr30k-images" / "101.jpg").unlink()
    path.write_text(path.read_text().replace('"dev"', '"test"'))
    with pytest.raises(DatasetCorruptError, match="101.jpg") as err:
        load_karpathy(tmp_path, "flickr30k")
    assert str(path) in str(err.value)
    path.write_text("{not json")
    with pytest.raises(DatasetCorruptError, match="JSON"):
        load_karpathy(tmp_path, "flickr30k")
    path.write_text(json.dumps({"images": [{"filename": "100.jpg", "split": "train"}]}))
    with pytest.raises(DatasetCorruptError, match="sentences"):
        load_karpathy(tmp_path, "flickr30k")


def test_coco_1k_folds_are_consecutive_blocks():
    folds = coco_1k_folds(23, 5)
    assert [f.tolist() for f in folds[:2]] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(folds) == 5 and folds[-1].tolist() == [16, 17, 18, 19]  # remainder left out
    assert np.concatenate(coco_1k_folds(5000)).tolist() == list(range(5000))
    with pytest.raises(ValueError, match="n_test"):
        coco_1k_folds(3, 5)


# --------------------------------------------------------------------------- CUHK-PEDES


def _write_pedes(root: Path, entries: list[dict]) -> Path:
    folder = root / "CUHK-PEDES"
    for e in entries:
        _png(folder / "imgs" / e["file_path"])
    (folder / "reid_raw.json").write_text(json.dumps(entries))
    return folder


def test_pedes_identity_remap_tokens_and_subset(tmp_path):
    entries = [
        {"split": "train", "file_path": "CUHK01/a.png", "id": 7,
         "captions": ["A man in a Red shirt.", "He wears black pants"]},
        {"split": "test", "file_path": "test_query/p3_s1.jpg", "id": 3,
         "captions": ["The woman carries a bag."]},
        {"split": "train", "file_path": "CUHK01/b.png", "id": 7, "captions": ["x y"],
         "processed_tokens": [["Given", "tokens"]]},
        {"split": "val", "file_path": "c.jpg", "id": 12, "captions": ["z"]},
    ]
    folder = _write_pedes(tmp_path, entries)
    data = load_pedes(tmp_path)
    assert data.labels.tolist() == [1, 0, 1, 2]  # ids 3, 7, 12 -> 0, 1, 2
    assert data.image_paths[1] == folder / "imgs" / "test_query" / "p3_s1.jpg"
    assert data.splits.tolist() == ["train", "test", "train", "val"]
    assert data.captions[0] == ("a", "man", "in", "a", "red", "shirt")
    assert data.captions[3] == ("given", "tokens")
    assert data.caption_image.tolist() == [0, 0, 1, 2, 3]
    train = data.subset("train")
    assert train.labels.tolist() == [1, 1] and train.caption_image.tolist() == [0, 0, 1]
    assert train.caption_labels.tolist() == [1, 1, 1]


def test_pedes_missing_and_damaged(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="reid_raw.json"):
        load_pedes(tmp_path)
    folder = _write_pedes(tmp_path, [{"split": "train", "file_path": "a.png", "id": 1,
                                      "captions": ["a"]}])
    path = folder / "reid_raw.json"
    path.write_text(json.dumps([{"split": "train", "file_path": "a.png", "captions": ["a"]}]))
    with pytest.raises(DatasetCorruptError, match="id") as err:
        load_pedes(tmp_path)
    assert err.value.path == path
    path.write_text(json.dumps([{"split": "train", "file_path": "gone.png", "id": 1,
                                 "captions": ["a"]}]))
    with pytest.raises(DatasetCorruptError, match="gone.png"):
        load_pedes(tmp_path)


def test_load_image_array_reads_resizes_and_reports(tmp_path):
    _png(tmp_path / "a.png", size=(5, 5), pixel=(3, 1))
    _png(tmp_path / "b.png", size=(8, 4))
    arr = load_image_array([tmp_path / "a.png", tmp_path / "b.png"], 5)
    assert arr.shape == (2, 5, 5, 3) and arr.dtype == np.uint8
    assert arr[0, 1, 3].tolist() == [250, 0, 5] and arr[0, 3, 1].tolist() == [10, 10, 10]
    assert (arr[1] == 10).all()
    with pytest.raises(DatasetNotFoundError, match="nope.png"):
        load_image_array([tmp_path / "nope.png"], 5)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(DatasetCorruptError, match="bad.jpg"):
        load_image_array([tmp_path / "bad.jpg"], 5)


# --------------------------------------------------------------------------- text


def test_tokenize_lower_case_words_of_letters_and_digits():
    assert tokenize("A Red-ish disc, at 3pm!") == ["a", "red", "ish", "disc", "at", "3pm"]
    assert tokenize("  ") == [] and tokenize("Café au_lait") == ["café", "au", "lait"]


def test_vocabulary_order_reserved_indices_and_min_count():
    caps = [["b", "a", "c"], ["a", "b", "d"], ["a", "e"]]  # a:3, b:2, c/d/e:1
    vocab = Vocabulary.from_captions(caps)
    assert vocab.words == ("<pad>", "<unk>", "a", "b", "c", "d", "e") and len(vocab) == 7
    assert vocab.encode(["a", "e", "zzz"]) == [2, 6, UNK] and (PAD, UNK) == (0, 1)
    assert Vocabulary.from_captions(caps, min_count=2).words == ("<pad>", "<unk>", "a", "b")
    assert vocab.decode([2, 3, 0, 0]) == ["a", "b"] and "c" in vocab
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.from_captions(caps, min_count=0)


def test_encode_captions_pads_cuts_and_keeps_lengths_positive():
    vocab = Vocabulary(["x", "y"])  # x = 2, y = 3
    tokens, lengths = encode_captions(vocab, [["x", "y", "q"], [], ["y", "x", "x", "y", "y"]],
                                      max_len=4)
    assert tokens.dtype == torch.int64 and lengths.dtype == torch.int64
    assert tokens.tolist() == [[2, 3, 1, 0], [1, 0, 0, 0], [3, 2, 2, 3]]
    assert lengths.tolist() == [3, 1, 4]
    with pytest.raises(ValueError, match="max_len"):
        encode_captions(vocab, [["x"]], max_len=0)

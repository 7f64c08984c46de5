"""Loaders of instance-retrieval benchmarks on hand-made fixtures in the official layouts."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from irbook.data.errors import DatasetCorruptError, DatasetNotFoundError, require
from irbook.data.instance import (
    INSTANCE_BENCHMARKS,
    load_holidays,
    load_instance_benchmark,
    load_oxford_original,
    load_revisited,
    load_ukbench,
)


def _jpg(path: Path, colour=(120, 60, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), colour).save(path, "JPEG")


def _pickle(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


REVISITED_CFG = {
    "imlist": ["img_b", "img_a", "img_c", "img_d"],
    "qimlist": ["query_1", "query_2"],
    "gnd": [
        {"bbx": np.array([1.5, 2.0, 7.0, 5.5]), "easy": np.array([0, 2]), "hard": np.array([1]),
         "junk": np.array([], dtype=np.int64)},
        {"bbx": [0.0, 0.0, 4.0, 3.0], "easy": [], "hard": [3], "junk": [0, 1]},
    ],
}


def _revisited_fixture(root: Path, name: str = "roxford5k", cfg: dict = REVISITED_CFG) -> Path:
    folder = root / name
    for im in cfg["imlist"] + cfg["qimlist"]:
        _jpg(folder / "jpg" / f"{im}.jpg")
    _pickle(folder / f"gnd_{name}.pkl", cfg)
    return folder


# ----------------------------------------------------------------------------- errors


def test_require_returns_path_or_names_path_dataset_and_source(tmp_path):
    assert require(tmp_path, "x", "y") == tmp_path
    missing = tmp_path / "nope"
    with pytest.raises(DatasetNotFoundError) as err:
        require(missing, "roxford5k", "see http://cmp.felk.cvut.cz/revisitop/")
    assert isinstance(err.value, FileNotFoundError)
    message = str(err.value)
    assert str(missing) in message and "roxford5k" in message and "revisitop" in message
    assert err.value.path == missing


# ----------------------------------------------------------------------------- revisited


def test_revisited_reads_imlist_order_boxes_and_easy_hard_junk(tmp_path):
    folder = _revisited_fixture(tmp_path)
    bench = load_revisited(tmp_path, "roxford5k")
    assert bench.protocol == "revisited" and bench.name == "roxford5k"
    assert [p.name for p in bench.db_paths] == ["img_b.jpg", "img_a.jpg", "img_c.jpg", "img_d.jpg"]
    assert bench.query_paths == [folder / "jpg" / "query_1.jpg", folder / "jpg" / "query_2.jpg"]
    assert bench.query_boxes == [(1.5, 2.0, 7.0, 5.5), (0.0, 0.0, 4.0, 3.0)]
    assert bench.gnd[0]["easy"].tolist() == [0, 2] and bench.gnd[0]["hard"].tolist() == [1]
    assert bench.gnd[0]["junk"].size == 0
    assert bench.gnd[1]["easy"].size == 0 and bench.gnd[1]["junk"].tolist() == [0, 1]
    assert bench.gnd[1]["hard"].dtype == np.int64
    assert bench.query_db_index is None and bench.db_groups is None
    assert (bench.n_db, bench.n_queries) == (4, 2)


def test_revisited_missing_dataset_names_the_path(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="revisitop") as err:
        load_revisited(tmp_path, "rparis6k")
    assert str(tmp_path / "rparis6k") in str(err.value)
    (tmp_path / "rparis6k").mkdir()
    with pytest.raises(DatasetNotFoundError) as err:
        load_revisited(tmp_path, "rparis6k")
    assert "gnd_rparis6k.pkl" in str(err.value)


def test_revisited_rejects_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="roxford5k"):
        load_revisited(tmp_path, "oxford5k")


def test_revisited_garbage_pickle_is_corrupt(tmp_path):
    folder = _revisited_fixture(tmp_path)
    (folder / "gnd_roxford5k.pkl").write_bytes(b"this is not a pickle")
    with pytest.raises(DatasetCorruptError) as err:
        load_revisited(tmp_path, "roxford5k")
    assert str(folder / "gnd_roxford5k.pkl") in str(err.value)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.pop("gnd"), "missing keys"),
        (lambda c: c["gnd"][1].pop("hard"), "lacks keys"),
        (lambda c: c["gnd"].pop(), "gnd entries"),
        (lambda c: c["gnd"][0].update(easy=[0, 9]), "outside"),
        (lambda c: c["gnd"][0].update(bbx=[5, 5, 1, 1]), "x2>x1"),
    ],
)
def test_revisited_wrong_structure_is_corrupt(tmp_path, mutate, message):
    cfg = pickle.loads(pickle.dumps(REVISITED_CFG))
    mutate(cfg)
    _revisited_fixture(tmp_path, cfg=cfg)
    with pytest.raises(DatasetCorruptError, match=message):
        load_revisited(tmp_path, "roxford5k")


def test_revisited_listed_image_missing_is_corrupt(tmp_path):
    folder = _revisited_fixture(tmp_path)
    (folder / "jpg" / "img_c.jpg").unlink()
    with pytest.raises(DatasetCorruptError, match="img_c"):
        load_revisited(tmp_path, "roxford5k")


# ----------------------------------------------------------------------------- oxford original


def _gt(folder: Path, stem: str, query_line: str, good, ok, junk) -> None:
    gt = folder / "gt_files"
    gt.mkdir(parents=True, exist_ok=True)
    (gt / f"{stem}_query.txt").write_text(query_line + "\n")
    for kind, names in (("good", good), ("ok", ok), ("junk", junk)):
        (gt / f"{stem}_{kind}.txt").write_text("".join(f"{n}\n" for n in names))


def _oxford_fixture(root: Path) -> Path:
    folder = root / "oxford5k"
    names = ["all_souls_000013", "all_souls_000026", "balliol_000001", "oxford_000999"]
    for n in names:
        _jpg(folder / "jpg" / f"{n}.jpg")
    _gt(folder, "all_souls_1", "oxc1_all_souls_000013 136.5 34.1 648.5 955.7",
        ["all_souls_000013"], ["all_souls_000026"], ["oxford_000999"])
    _gt(folder, "all_souls_10", "oxc1_all_souls_000026 1 2 3 4",
        ["all_souls_000026", "all_souls_000013"], [], [])
    _gt(folder, "all_souls_2", "oxc1_all_souls_000026 0 0 5.0 6.0", [], ["all_souls_000013"],
        ["balliol_000001"])
    return folder


def test_oxford_gt_files_strip_oxc1_merge_good_ok_and_sort_queries(tmp_path):
    folder = _oxford_fixture(tmp_path)
    bench = load_oxford_original(tmp_path, "oxford5k")
    assert bench.protocol == "oxford"
    # database: every image, sorted by name
    assert [p.stem for p in bench.db_paths] == [
        "all_souls_000013", "all_souls_000026", "balliol_000001", "oxford_000999"]
    # queries in (landmark, number) order: 1, 2, 10
    assert [p.stem for p in bench.query_paths] == [
        "all_souls_000013", "all_souls_000026", "all_souls_000026"]
    assert bench.query_paths[0] == folder / "jpg" / "all_souls_000013.jpg"
    assert bench.query_boxes[0] == (136.5, 34.1, 648.5, 955.7)
    assert bench.query_boxes[1] == (0.0, 0.0, 5.0, 6.0)
    assert bench.gnd[0]["ok"].tolist() == [0, 1] and bench.gnd[0]["junk"].tolist() == [3]
    assert bench.gnd[1]["ok"].tolist() == [0] and bench.gnd[1]["junk"].tolist() == [2]
    assert bench.gnd[2]["ok"].tolist() == [0, 1] and bench.gnd[2]["junk"].size == 0
    assert set(bench.gnd[0]) == {"ok", "junk"}


def test_paris_gt_files_find_images_in_landmark_subfolders(tmp_path):
    folder = tmp_path / "paris6k"
    _jpg(folder / "jpg" / "defense" / "paris_defense_000041.jpg")
    _jpg(folder / "jpg" / "defense" / "paris_defense_000002.jpg")
    _jpg(folder / "jpg" / "eiffel" / "paris_eiffel_000000.jpg")
    _gt(folder, "defense_1", "paris_defense_000041 10.0 20.0 30.0 40.0",
        ["paris_defense_000002"], [], ["paris_eiffel_000000"])
    bench = load_instance_benchmark(tmp_path, "paris6k")
    assert [p.stem for p in bench.db_paths] == [
        "paris_defense_000002", "paris_defense_000041", "paris_eiffel_000000"]
    assert bench.query_paths == [folder / "jpg" / "defense" / "paris_defense_000041.jpg"]
    assert bench.gnd[0]["ok"].tolist() == [0] and bench.gnd[0]["junk"].tolist() == [2]


def test_oxford_prefers_the_gnd_pickle(tmp_path):
    folder = _oxford_fixture(tmp_path)
    _pickle(folder / "gnd_oxford5k.pkl", {
        "imlist": ["oxford_000999", "balliol_000001"], "qimlist": ["balliol_000001"],
        "gnd": [{"bbx": [1, 1, 3, 3], "ok": [1], "junk": [0]}]})
    bench = load_oxford_original(tmp_path, "oxford5k")
    assert [p.stem for p in bench.db_paths] == ["oxford_000999", "balliol_000001"]
    assert bench.gnd[0]["ok"].tolist() == [1] and bench.query_boxes == [(1.0, 1.0, 3.0, 3.0)]


def test_oxford_without_ground_truth_names_both_paths(tmp_path):
    (tmp_path / "oxford5k" / "jpg").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as err:
        load_oxford_original(tmp_path, "oxford5k")
    assert "gnd_oxford5k.pkl" in str(err.value) and "gt_files" in str(err.value)


def test_oxford_gt_listing_a_missing_image_is_corrupt(tmp_path):
    folder = _oxford_fixture(tmp_path)
    (folder / "jpg" / "balliol_000001.jpg").unlink()
    with pytest.raises(DatasetCorruptError, match="balliol_000001") as err:
        load_oxford_original(tmp_path, "oxford5k")
    assert "all_souls_2_junk.txt" in str(err.value)


def test_oxford_missing_list_file_is_corrupt(tmp_path):
    folder = _oxford_fixture(tmp_path)
    (folder / "gt_files" / "all_souls_2_ok.txt").unlink()
    with pytest.raises(DatasetCorruptError, match="all_souls_2_ok.txt"):
        load_oxford_original(tmp_path, "oxford5k")


# ----------------------------------------------------------------------------- holidays


def test_holidays_groups_queries_and_self_as_junk(tmp_path):
    jpg = tmp_path / "holidays" / "jpg"
    for n in ["100000", "100001", "100002", "100100", "100101", "149900", "149901"]:
        _jpg(jpg / f"{n}.jpg")
    (jpg / "readme.txt").write_text("not an image")
    bench = load_holidays(tmp_path)
    assert bench.protocol == "holidays" and bench.n_db == 7 and bench.n_queries == 3
    assert bench.db_groups.tolist() == [1000, 1000, 1000, 1001, 1001, 1499, 1499]
    assert bench.query_db_index.tolist() == [0, 3, 5]
    assert [p.name for p in bench.query_paths] == ["100000.jpg", "100100.jpg", "149900.jpg"]
    assert bench.query_boxes == [None, None, None]
    assert bench.gnd[0]["ok"].tolist() == [1, 2] and bench.gnd[0]["junk"].tolist() == [0]
    assert bench.gnd[1]["ok"].tolist() == [4] and bench.gnd[1]["junk"].tolist() == [3]
    assert bench.gnd[2]["ok"].tolist() == [6] and bench.gnd[2]["junk"].tolist() == [5]


def test_holidays_group_without_query_is_corrupt(tmp_path):
    jpg = tmp_path / "holidays" / "jpg"
    for n in ["100000", "100001", "100101"]:
        _jpg(jpg / f"{n}.jpg")
    with pytest.raises(DatasetCorruptError, match="1001"):
        load_holidays(tmp_path)


def test_holidays_missing_names_the_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_holidays(tmp_path)
    assert str(tmp_path / "holidays" / "jpg") in str(err.value)


# ----------------------------------------------------------------------------- ukbench


def test_ukbench_groups_of_four_with_self_included(tmp_path):
    full = tmp_path / "ukbench" / "full"
    for i in range(8):
        _jpg(full / f"ukbench{i:05d}.jpg")
    bench = load_ukbench(tmp_path)
    assert bench.protocol == "ukbench" and bench.n_db == 8 and bench.n_queries == 8
    assert bench.db_groups.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert bench.query_db_index.tolist() == list(range(8))
    assert bench.query_paths[5].name == "ukbench00005.jpg"
    assert bench.gnd[5]["ok"].tolist() == [4, 5, 6, 7] and set(bench.gnd[5]) == {"ok"}
    assert bench.gnd[0]["ok"].tolist() == [0, 1, 2, 3]


def test_ukbench_incomplete_group_is_corrupt(tmp_path):
    full = tmp_path / "ukbench" / "full"
    for i in range(7):
        _jpg(full / f"ukbench{i:05d}.jpg")
    with pytest.raises(DatasetCorruptError, match="exactly 4"):
        load_ukbench(tmp_path)


# ----------------------------------------------------------------------------- dispatch


def test_dispatch_by_name_and_unknown_name_lists_allowed(tmp_path):
    _revisited_fixture(tmp_path, "rparis6k")
    assert load_instance_benchmark(tmp_path, "rparis6k").name == "rparis6k"
    with pytest.raises(ValueError) as err:
        load_instance_benchmark(tmp_path, "sfm120k")
    assert all(name in str(err.value) for name in INSTANCE_BENCHMARKS)

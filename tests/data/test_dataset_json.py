"""dataset.json: MSD class names, and localdisc's flip pairs and channels, read back as written."""

import json

import pytest

from localdisc.data.dataset_json import DatasetInfo, dataset_json_text, read_dataset_json
from localdisc.errors import DataError


def test_round_trip(tmp_path):
    info = DatasetInfo(["background", "Left Lung", "Right Lung"], [(1, 2)], 1)
    (tmp_path / "dataset.json").write_text(dataset_json_text(info))
    assert read_dataset_json(tmp_path / "dataset.json") == info
    assert read_dataset_json(tmp_path / "absent.json") is None


@pytest.mark.parametrize("record, problem", [
    ({"labels": {"0": "bg", "2": "b"}}, r"label values \[0, 2\] are not 0..1"),
    ({"labels": {"0": "bg", "1": "a"}, "flip_pairs": [[1, 2]]}, r"'flip_pairs' \[\[1, 2\]\] names a class beyond the labels 0..1"),
    ({"flip_pairs": [[0, 1]]}, "pairs of foreground classes"),
    ({"flip_pairs": [1, 2]}, "pairs of foreground classes"),
    ({"channels": 2}, "'channels' must be 1 or 3"),
    ({"labels": ["bg", "a"]}, "'labels' is not an object"),
    ({"labels": {"0": "bg", "1": None}}, "label names must be non-empty text"),
    ({"labels": {"0": "bg", "x": "a"}}, "label values must be whole numbers"),
    ({"flip_pairs": [[1, 2], [2, 3]]}, "each class may appear in one pair, once"),
    ({"flip_pairs": [[True, 2]]}, "pairs of foreground classes"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path, record, problem):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(record))
    for strict in (True, False):  # a file that says something localdisc reads is read, also beside a manifest
        with pytest.raises(DataError, match=f"dataset.json: unreadable dataset.json \\(.*{problem}"):
            read_dataset_json(path, strict=strict)


@pytest.mark.parametrize("text", ['["not", "an", "object"]', '{"name": "another tool"}', "not json", "[" * 100000])
def test_another_tools_file_beside_a_manifest_is_ignored(tmp_path, text):
    path = tmp_path / "dataset.json"
    path.write_text(text)
    assert read_dataset_json(path, strict=False) is None
    if text.startswith("[["):  # nesting deep enough to exhaust the parser is one line too
        with pytest.raises(DataError, match="unreadable dataset.json"):
            read_dataset_json(path)


def test_a_bom_and_nnunet_v2_labels_are_read(tmp_path):
    path = tmp_path / "dataset.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"labels": {"background": 0, "Posterior": 2, "Anterior": 1}}).encode())
    assert read_dataset_json(path).class_names == ["background", "Anterior", "Posterior"]

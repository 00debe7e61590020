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
    (["not", "an", "object"], "not a JSON object"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path, record, problem):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(record))
    with pytest.raises(DataError, match=f"dataset.json: unreadable dataset.json \\(.*{problem}"):
        read_dataset_json(path)
    assert read_dataset_json(path, strict=False) is None  # beside a manifest: another tool's file, ignored

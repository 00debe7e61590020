"""One result writer: NAME.json + NAME.md with provenance, and no path of this machine in either."""

from __future__ import annotations

import importlib.metadata
import json
import tempfile
from pathlib import Path

import numpy as np

from localdisc.runtime.provenance import machine_roots, provenance, repo_root, scrub_paths, write_result


def test_known_folders_become_placeholders():
    repo = repo_root()
    text = f"cxr:{repo.parent / 'shared'}/data/CXR --work {repo}/benchmarks/_work --out {tempfile.gettempdir()}/run7 {Path.home()}/x"
    assert scrub_paths(text) == "cxr:{shared}/data/CXR --work {repo}/benchmarks/_work --out {tmp}/run7 ~/x"


def test_other_absolute_paths_keep_only_their_last_two_names(tmp_path):
    top = "/" + Path(repo_root()).parts[1]  # a top-level folder that exists on this machine
    roots = []  # no named folders: only the generic rule applies
    assert scrub_paths(f"run {top}/bench/cxr_cpu/pretrain/ld-s0 done", roots) == "run {abs}/pretrain/ld-s0 done"
    kept = "benchmarks/results/x.md, https://example.org/a/b, /usr/lib/python3, 2/3 of s/step, /no_such_top_folder/x"
    assert scrub_paths(kept, roots) == kept


def test_the_most_specific_folder_wins_and_a_longer_name_is_not_cut():
    roots = machine_roots({"{work}": "/data/w/runs"})
    assert scrub_paths("/data/w/runs/ld and /data/w/runs2", roots).startswith("{work}/ld and ")
    assert "{work}2" not in scrub_paths("/data/w/runs2", roots)
    assert scrub_paths("/no_such_top/data/w/runs/ld", roots) == "/no_such_top/data/w/runs/ld"  # a folder only where a path starts


def test_write_result_writes_both_files_with_provenance_and_no_machine_path(tmp_path):
    repo = repo_root()
    data = f"cxr:{repo.parent / 'shared'}/data/CXR"
    payload = {"data": data, "run": tmp_path / "ld", "n": np.int64(3), "dice": np.float32(0.5), "per_image": np.arange(2), f"{tmp_path}/key": 1}
    prov = provenance("cpu", ["benchmarks/x.py", "--data", data, "--work", str(tmp_path / "w")])
    js, md = write_result(tmp_path / "out", "res", payload, ["# Title", f"- data {data}; run {tmp_path}/ld", "", "| a | b |"], prov=prov, wall_s=61.0)
    assert (js.name, md.name) == ("res.json", "res.md") and js.parent == tmp_path / "out"
    record = json.loads(js.read_text())
    assert {"command", "commit", "machine", "date"} <= set(record) and record["wall_s"] == 61.0
    assert record["n"] == 3 and record["dice"] == 0.5 and record["per_image"] == [0, 1]
    text = js.read_text() + md.read_text()
    for machine_path in (str(repo.parent), str(tmp_path), tempfile.gettempdir() + "/"):
        assert machine_path not in text
    assert record["data"] == "cxr:{shared}/data/CXR" and "--data cxr:{shared}/data/CXR --work {tmp}/" in record["command"]
    lines = md.read_text().splitlines()
    assert lines[0] == "# Title" and lines[1] == "" and lines[2].startswith("- Command: `python benchmarks/x.py")
    assert "- Wall time: 1.0 min" in lines and lines[-1] == "| a | b |"
    # the numeric libraries are named with their versions: another monai or numpy can change a few-label result
    packages = record["machine"]["packages"]
    assert packages["numpy"] == np.__version__ and packages["monai"] == importlib.metadata.version("monai")
    assert f"- Packages: numpy {np.__version__}, scipy " in md.read_text()
    assert not list((tmp_path / "out").glob(".*.tmp"))  # atomic: no temporary left behind


def test_write_result_takes_provenance_now_without_a_heading(tmp_path):
    js, md = write_result(tmp_path, "plain", {"x": 1}, ["no heading"], argv=["benchmarks/y.py"])
    assert json.loads(js.read_text())["command"] == "python benchmarks/y.py"
    assert md.read_text().splitlines()[0].startswith("- Command:") and md.read_text().splitlines()[-1] == "no heading"

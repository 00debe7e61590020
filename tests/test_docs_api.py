"""The examples of docs/api.md run, in order, as one script in a fresh folder."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_api_examples_run(tmp_path, monkeypatch, tmp_path_factory):
    monkeypatch.setenv("LOCALDISC_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 4
    namespace: dict = {}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"docs/api.md block {i + 1}", "exec"), namespace)
        except Exception as e:  # name the block that broke
            pytest.fail(f"docs/api.md block {i + 1} failed: {type(e).__name__}: {e}")
    assert (tmp_path / "runs" / "masks" / "predictions.csv").is_file()
    assert (tmp_path / "runs" / "model.safetensors").is_file()
    assert namespace["mask"].shape == (40, 48)

"""benchmarks/*.py are thin scripts: argument parsing plus calls into the package.

Each parses --help, stays short, imports at the top (a heavy optional dependency may be deferred,
marked ``# deferred``), never edits sys.path, and writes its results through
localdisc.runtime.provenance.write_result (one writer: provenance, atomic files, no machine paths)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
NOT_YET: set[str] = set()
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if p.name not in NOT_YET)
MAX_LINES = 125


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_a_script_is_thin(script):
    text = script.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{script.name}: {len(text.splitlines())} lines; move logic into the package"
    assert "sys.path" not in text
    assert "write_result(" in text and ".write_text(" not in text, f"{script.name}: write results with localdisc.runtime.provenance.write_result"
    lines = text.splitlines()
    for fn in ast.walk(ast.parse(text)):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    assert "# deferred" in lines[node.end_lineno - 1], f"{script.name}:{node.lineno}: import inside a function"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_a_script_explains_its_options(script, capsys, benchmark_script):
    module = benchmark_script(script.stem)
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0 and "usage:" in capsys.readouterr().out

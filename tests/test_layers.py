"""The package's layers hold: a module imports only from its own layer or lower ones
(docs/architecture.md). Every import counts, at the top of a file or inside a function.
KNOWN lists the upward imports that exist today (issue: a house with real layers); the test
fails on any new one, and on an entry of KNOWN that has been fixed (so the list only shrinks)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "localdisc"
LAYER = {"errors": 0, "config": 0, "utils": 0, "runtime": 1, "data": 2, "nets": 2, "losses": 3, "methods": 4, "train": 5,
         "tasks": 6, "report": 6, "export": 7, "api": 8, "cli": 8}
KNOWN = {
    "methods/__init__.py -> train", "methods/base.py -> train", "methods/cluster_contrast/pseudo_classes.py -> train",
    "methods/ld/method.py -> report", "methods/ld/method.py -> train", "train/finetune_model.py -> tasks", "train/probe.py -> tasks",
}


def _targets(node: ast.AST, package: list[str]) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = package[: len(package) - (node.level - 1)]
            if node.module:
                return [".".join(base + [node.module])]
            return [".".join(base + [a.name]) for a in node.names]
        return [node.module] if node.module and node.module.startswith("localdisc") else []
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("localdisc")]
    return []


def upward_imports() -> set[str]:
    found = set()
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        here = rel.parts[0].removesuffix(".py")
        if here not in LAYER:
            continue
        package = ["localdisc", *rel.with_suffix("").parts[:-1]]
        for node in ast.walk(ast.parse(path.read_text())):
            for target in _targets(node, package):
                parts = target.split(".")
                there = parts[1] if len(parts) > 1 else ""
                if there in LAYER and LAYER[there] > LAYER[here]:
                    found.add(f"{rel.as_posix()} -> {there}")
    return found


def test_no_new_upward_imports():
    found = upward_imports()
    assert not found - KNOWN, f"imports that climb a layer: {sorted(found - KNOWN)}"
    assert not KNOWN - found, f"fixed, remove from KNOWN: {sorted(KNOWN - found)}"

"""The package's layers hold (docs/architecture.md):
- a module imports only from its own layer or lower ones;
- no import circle between modules (so every module imports on its own);
- imports sit at the top of files, except a heavy optional dependency deferred into the function
  that needs it, marked with a ``# deferred`` comment that says so.
Each check is also run on a small planted tree, so a broken checker cannot pass silently."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "localdisc"
LAYER = {"errors": 0, "config": 0, "utils": 0, "runtime": 1, "evaluation": 1, "pictures": 1, "data": 2, "nets": 2, "losses": 3,
         "methods": 4, "train": 5, "tasks": 6, "report": 6, "export": 7, "api": 8, "cli": 8}
# third-party modules whose import cost (seconds, hundreds of MB) only some commands pay
HEAVY = ("matplotlib", "sklearn", "scipy", "monai", "nibabel", "skimage", "pydicom", "onnx", "onnxscript", "onnxruntime",
         "torch.utils.tensorboard", "threadpoolctl")
# the package's own lazy entry point: `import localdisc` and `localdisc --help` stay fast without torch
LAZY = {"__init__.py": "from . import api"}


def _modules(root: Path) -> dict[str, Path]:
    return {".".join(["localdisc", *p.relative_to(root).with_suffix("").parts]).removesuffix(".__init__"): p for p in root.rglob("*.py")}


def _targets(node: ast.AST, package: list[str], modules: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = ".".join(package[: len(package) - (node.level - 1)] + ([node.module] if node.module else []))
        elif node.module and node.module.startswith("localdisc"):
            base = node.module
        else:
            return []
        subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]  # from . import folders
        return subs or [base]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("localdisc")]
    return []


def import_graph(root: Path = ROOT, top_only: bool = False) -> dict[str, set[str]]:
    """module -> the localdisc modules it imports (all imports, or module-level ones only)."""
    modules = _modules(root)
    graph = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        tree = ast.parse(path.read_text())
        nodes = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))] if top_only else ast.walk(tree)
        graph[name] = {t for n in nodes for t in _targets(n, package, modules) if t != name}
    return graph


def upward_imports(root: Path = ROOT) -> set[str]:
    found = set()
    for module, targets in import_graph(root).items():
        here = module.split(".")[1] if "." in module else ""
        for target in targets:
            there = target.split(".")[1] if "." in target else ""
            if here in LAYER and there in LAYER and LAYER[there] > LAYER[here]:
                found.add(f"{module} -> {target}")
    return found


def import_cycles(root: Path = ROOT) -> list[list[str]]:
    """Strongly connected groups of modules (Tarjan) larger than one: import circles.
    A package's ``__init__`` importing its own submodules is not a circle."""
    graph = import_graph(root, top_only=True)
    graph = {m: {t for t in ts if t in graph and not m.startswith(t + ".")} for m, ts in graph.items()}
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def imports_inside_functions(root: Path = ROOT) -> list[str]:
    """Imports inside functions that are not a marked, deferred heavy dependency."""
    bad = []
    for name, path in _modules(root).items():
        text = path.read_text()
        lines = text.splitlines()
        for fn in ast.walk(ast.parse(text)):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    mod = node.module if isinstance(node, ast.ImportFrom) and not node.level else node.names[0].name if isinstance(node, ast.Import) else ""
                    heavy = any(mod == h or mod.startswith(h + ".") for h in HEAVY)
                    lazy = LAZY.get(path.relative_to(root).as_posix()) == ast.unparse(node)
                    if not ((heavy or lazy) and "# deferred" in lines[node.end_lineno - 1]):
                        bad.append(f"{path.relative_to(root)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return sorted(set(bad))


def test_no_upward_imports():
    assert not upward_imports(), f"imports that climb a layer: {sorted(upward_imports())}"


def test_no_import_cycles():
    assert not import_cycles(), f"import circles: {import_cycles()}"


def test_imports_at_the_top():
    bad = imports_inside_functions()
    assert not bad, "imports inside functions (move them to the top, or mark a heavy optional one '# deferred'):\n" + "\n".join(bad)


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "localdisc"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_checks_catch_planted_bugs(tmp_path):
    root = _plant(tmp_path, {
        "__init__.py": "", "runtime/__init__.py": "", "methods/__init__.py": "",
        "runtime/a.py": "from ..methods import b\n",  # climbs: runtime < methods
        "methods/b.py": "from ..runtime import c\nfrom . import d\n",
        "runtime/c.py": "def f():\n    import json\n    import scipy  # deferred: heavy\n    import sklearn\n",
        "methods/d.py": "from .b import x\n",  # circle b <-> d
    })
    assert upward_imports(root) == {"localdisc.runtime.a -> localdisc.methods.b"}
    assert import_cycles(root) == [["localdisc.methods.b", "localdisc.methods.d"]]
    assert [b.split(": ", 1)[1] for b in imports_inside_functions(root)] == ["import json", "import sklearn"]

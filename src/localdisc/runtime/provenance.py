"""Where a result came from: the exact command, the git commit, the machine, the time.

Every benchmark writes this beside its numbers so that a result can be reproduced and
compared only with results from the same kind of machine: :func:`write_result` writes
NAME.json (payload + provenance) and NAME.md (Markdown + provenance lines), with this
machine's absolute paths replaced by placeholders (:func:`scrub_paths`), since the files are
committed and a path such as ``/home/alice/data`` names a machine, not a result.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .outputs import atomic_write_bytes


def git_commit(path: str | Path | None = None) -> str:
    """Commit of the checkout holding ``path`` (default: this package), '+dirty' if modified."""
    where = Path(path or Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha or "unknown") + ("+dirty" if dirty else "")


# Libraries whose arithmetic reaches the numbers (resizing, normalization, metrics): with few labels,
# a float rounded differently early in fine-tuning can end in another model, so a result names them.
NUMERIC_PACKAGES = ("numpy", "scipy", "monai", "nibabel", "pillow", "scikit-image", "scikit-learn")


def package_versions(names: tuple[str, ...] = NUMERIC_PACKAGES) -> dict[str, str]:
    """{package: installed version or "absent"} for ``names``."""
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def machine(device: str = "cpu") -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "packages": package_versions(),
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def provenance(device: str = "cpu", argv: list[str] | None = None) -> dict[str, Any]:
    """{command, commit, machine, date} for the running process."""
    argv = sys.argv if argv is None else argv
    prog = Path(argv[0]).name if argv else "python"
    head = ["localdisc"] if prog == "localdisc" else ["python", *argv[:1]]  # quote each word, not "python X" as one
    command = " ".join(shlex.quote(a) for a in head + list(argv[1:])) if argv else ""
    return {"command": command, "commit": git_commit(), "machine": machine(device), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def provenance_markdown(prov: dict[str, Any], wall_seconds: float | None = None, invocations: int = 1) -> list[str]:
    m = prov["machine"]
    lines = [
        f"Command: `{prov['command']}`",
        f"Commit: `{prov['commit']}`; date: {prov['date']}",
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs ({m['torch_threads']} torch threads), Python {m['python']}, torch {m['torch']}, device {m['device']}" + (f" ({m['gpu']})" if m.get("gpu") else ""),
    ]
    if m.get("packages"):  # results written before the packages were recorded lack them
        lines.append("Packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()))
    if wall_seconds is not None:
        lines.append(f"Wall time: {wall_seconds / 60:.1f} min" + (f", summed over the {invocations} invocations that computed the cells" if invocations > 1 else ""))
    return lines


# top-level folders of the operating system: paths under them name software, not a machine's data
SYSTEM_DIRS = {"bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "nix", "opt", "proc", "run", "sbin", "snap", "srv", "sys", "usr", "var",
               "Applications", "Library", "System"}
# an absolute path inside text: "/" then a name, not preceded by a name, "/", "}" or "~" (so relative
# paths, URLs and already-placed placeholders such as "{repo}/x" are left alone)
_ABSOLUTE = re.compile(r"(?<![\w.~}/-])/[\w.+-]+(?:/[\w.+-]+)*/?")


def repo_root() -> Path:
    """The checkout holding this package (git's top level), else the working directory."""
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        top = ""
    return Path(top) if top else Path.cwd()


def machine_roots(extra: dict[str, str | Path] | None = None) -> list[tuple[str, str]]:
    """(absolute folder, placeholder) pairs, longest folder first so the most specific wins:
    ``extra`` (placeholder -> folder, e.g. {"{work}": args.work}), then the checkout
    (``{repo}``), the data folder beside it (``{shared}``, the ``../shared`` of docs), the
    temporary folder (``{tmp}``) and the home folder (``~``); each also as its real path.
    Placeholders are braced words: literal in Markdown (no HTML tag, no math) and in a shell."""
    repo = repo_root()
    named = {**(extra or {}), "{repo}": repo, "{shared}": repo.parent / "shared", "{tmp}": tempfile.gettempdir(), "~": Path.home()}
    pairs = {}
    for placeholder, folder in named.items():
        if not folder:
            continue
        folder = Path(folder).expanduser()
        folder = folder if folder.is_absolute() else Path.cwd() / folder
        for variant in (str(folder), os.path.realpath(folder)):
            if len(Path(variant).parts) > 1:  # never "/" itself
                pairs.setdefault(variant.rstrip("/"), placeholder)
    return sorted(pairs.items(), key=lambda kv: -len(kv[0]))


def scrub_paths(text: str, roots: list[tuple[str, str]] | None = None) -> str:
    """``text`` with this machine's absolute paths replaced: a path under one of ``roots``
    (default :func:`machine_roots`) by its placeholder (``/work/shared/data/CXR`` ->
    ``{shared}/data/CXR``); any other absolute path under an existing top-level folder that is
    not the system's by ``{abs}/`` and its last two names (``/mnt/runs/cxr/ld-s0`` ->
    ``{abs}/cxr/ld-s0``). Relative paths, URLs and system paths (``/usr/...``) are kept."""
    roots = machine_roots() if roots is None else roots
    for folder, placeholder in roots:
        text = re.sub(r"(?<![\w.~}/-])" + re.escape(folder) + r"(?![\w.+-])", lambda _: placeholder, text)

    def other(m: re.Match) -> str:
        parts = m.group(0).strip("/").split("/")
        if parts[0] in SYSTEM_DIRS or not os.path.isdir("/" + parts[0]):
            return m.group(0)
        return "{abs}/" + "/".join(parts[-2:])

    return _ABSOLUTE.sub(other, text)


def _plain(value: Any) -> Any:
    """JSON-ready: paths as strings, numpy scalars and arrays as Python numbers and lists."""
    if isinstance(value, dict):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def scrub_value(value: Any, roots: list[tuple[str, str]] | None = None) -> Any:
    """:func:`scrub_paths` applied to every string (and dict key) of a JSON-ready value."""
    roots = machine_roots() if roots is None else roots
    if isinstance(value, dict):
        return {scrub_paths(k, roots): scrub_value(v, roots) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_value(v, roots) for v in value]
    return scrub_paths(value, roots) if isinstance(value, str) else value


def write_result(folder: str | Path, name: str, payload: dict[str, Any], markdown_lines: list[str], *, prov: dict[str, Any] | None = None,
                 device: str = "cpu", argv: list[str] | None = None, wall_s: float | None = None,
                 roots: dict[str, str | Path] | None = None) -> tuple[Path, Path]:
    """Write ``folder/NAME.json`` and ``folder/NAME.md`` atomically; returns their paths.

    JSON: {command, commit, machine, date, wall_s, **payload}. Markdown: ``markdown_lines``
    with the provenance lines as bullets after the first line when it is a ``#`` heading
    (else first), so the lines that follow may continue the list. ``prov``: taken earlier
    (:func:`provenance`, e.g. before the run wrote tracked files that would mark the checkout
    dirty), else taken now from ``device`` and ``argv``. Both files have this machine's paths
    replaced (:func:`scrub_paths`; ``roots`` adds placeholders such as {"{work}": args.work})."""
    prov = provenance(device, argv) if prov is None else prov
    pairs = machine_roots(roots)
    record = scrub_value(_plain({**prov, **({"wall_s": round(wall_s, 1)} if wall_s is not None else {}), **payload}), pairs)
    head, body = (markdown_lines[:1], markdown_lines[1:]) if markdown_lines and markdown_lines[0].startswith("# ") else ([], list(markdown_lines))
    lines = [*head, *([""] if head else []), *(f"- {line}" for line in provenance_markdown(prov, wall_s)), *body]
    folder = Path(folder)
    json_path, md_path = folder / f"{name}.json", folder / f"{name}.md"
    atomic_write_bytes(json_path, (json.dumps(record, indent=2) + "\n").encode())
    atomic_write_bytes(md_path, (scrub_paths("\n".join(lines), pairs) + "\n").encode())
    return json_path, md_path

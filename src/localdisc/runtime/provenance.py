"""Where a result came from: the exact command, the git commit, the machine, the time.

Every benchmark writes this beside its numbers so that a result can be reproduced and
compared only with results from the same kind of machine.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def git_commit(path: str | Path | None = None) -> str:
    """Commit of the checkout holding ``path`` (default: this package), '+dirty' if modified."""
    where = Path(path or Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha or "unknown") + ("+dirty" if dirty else "")


def machine(device: str = "cpu") -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
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
    if wall_seconds is not None:
        lines.append(f"Wall time: {wall_seconds / 60:.1f} min" + (f", summed over the {invocations} invocations that computed the cells" if invocations > 1 else ""))
    return lines

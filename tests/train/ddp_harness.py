"""Run a test file's ``_worker(argv)`` in N processes the way torchrun would (CPU, gloo).

Workers are plain subprocesses with the torchrun env vars (RANK, LOCAL_RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT); each loads the test file by path (tests/ is not a package) and
calls its ``_worker(sys.argv[1:])``. Test files get :func:`launch` through the ``ddp_launch``
fixture (tests/train/conftest.py), which works under any pytest import mode.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

# registered in sys.modules before exec: @dataclass resolves annotations through it
_BOOT = (
    "import importlib.util, sys; path, name = sys.argv[1], sys.argv[2]; "
    "s = importlib.util.spec_from_file_location(name, path); m = importlib.util.module_from_spec(s); "
    "sys.modules[name] = m; s.loader.exec_module(m); m._worker(sys.argv[3:]); "
    # the worker has left the process group; skip interpreter finalization, where gloo's
    # threads can still abort a finished rank ("terminate called without an active exception")
    "import os; sys.stdout.flush(); sys.stderr.flush(); os._exit(0)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(worker_file: str | Path, nproc: int, args: list[str], timeout: float = 120) -> list[str]:
    """Start ``nproc`` ranks of ``worker_file``'s ``_worker(args)``; fail the test if any rank fails.

    Returns each rank's combined stdout/stderr. Ranks run with one OpenMP thread.
    """
    worker_file = Path(worker_file).resolve()
    port = free_port()
    procs = []
    for r in range(nproc):
        env = {**os.environ, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-c", _BOOT, str(worker_file), f"ddp_worker_{worker_file.stem}", *args]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:  # a rank that hangs (e.g. its peer died in a collective) must not outlive the test
            if p.poll() is None:
                p.kill()
    for r, (p, o) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"rank {r} failed:\n{o[-3000:]}"
    return outs

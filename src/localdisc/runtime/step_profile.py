"""Seconds, peak memory and a per-phase profile of one training step.

A *step* is any zero-argument callable that runs one forward and backward pass; the caller
builds it (this module knows no method). The phases are the ``torch.profiler.record_function``
ranges the step opens whose names start with a prefix (e.g. ``ld/views``, ``ld/network``).

- :func:`time_step`: seconds per step after warm-up (CUDA synchronized).
- :func:`profile_step`: one step under ``torch.profiler`` (CPU activity, memory). A forward
  phase gets the time of its ranges; a backward node gets the phase of the forward op that
  created it (autograd sequence numbers), so every phase has a forward and a backward time.
- :func:`peak_rss_mb`: this process's peak resident memory (``ru_maxrss``).
- :func:`keep_freed_memory`: glibc malloc keeps freed blocks (no page faults per big tensor).
- :func:`run_json_child`, :func:`interleave`: each measurement in a fresh process (peak RSS is
  per process), round-robin over the modes so that slow drifts of a shared machine hit every
  mode alike.
- :func:`markdown_table`.
"""

from __future__ import annotations

import bisect
import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

_BACKWARD = "autograd::engine::evaluate_function: "
_MB = 2.0**20


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of returning it to the system.

    By default every allocation above 32 MB (one full-resolution feature map of a few images)
    is a fresh ``mmap``: the kernel zero-fills each of its pages on first touch, which costs
    more than the elementwise op that writes the tensor (measured: 10x for a 64 MB multiply on
    one core) and, in a training step, a third of the time. Raising the mmap and trim
    thresholds lets freed blocks be reused; the process keeps its peak memory. Process-wide;
    returns False where it does not apply (not glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameter numbers
    return bool(libc.mallopt(m_mmap_threshold, 2**30)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def _sync(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_step(step: Callable[[], Any], steps: int, warmup: int = 1, device: torch.device | str | None = None,
              before: Callable[[int], None] | None = None) -> tuple[list[float], list[Any]]:
    """Run ``step`` ``warmup`` times untimed, then ``steps`` times timed.

    ``before(i)`` (not timed) runs before call i (e.g. to seed the RNG the same way in every
    mode). Returns (seconds of each timed call, the return value of every call)."""
    seconds, returned = [], []
    for i in range(warmup + steps):
        if before is not None:
            before(i)
        _sync(device)
        t0 = time.perf_counter()
        returned.append(step())
        _sync(device)
        if i >= warmup:
            seconds.append(time.perf_counter() - t0)
    return seconds, returned


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _phase_of(event, prefix: str) -> str | None:
    """Innermost enclosing range named ``prefix...`` of a profiler event (itself included)."""
    while event is not None:
        if event.name.startswith(prefix):
            return event.name
        event = event.cpu_parent
    return None


def _inside_backward(event) -> bool:
    event = event.cpu_parent
    while event is not None:
        if event.name.startswith(_BACKWARD):
            return True
        event = event.cpu_parent
    return False


def profile_step(step: Callable[[], Any], prefix: str, warmup: int = 1, before: Callable[[int], None] | None = None,
                 memory: bool = True) -> dict[str, Any]:
    """Profile one call of ``step`` (after ``warmup`` untimed calls) on the CPU.

    Returns {"step_s": wall seconds of the profiled call (profiler overhead included),
    "phases": [{"phase", "forward_s", "backward_s", "retained_mb", "peak_mb"}] in order of first
    appearance, "backward_other_s": backward work created outside every phase (gradient
    accumulation into the weights), "unattributed_s": step_s minus all of the above,
    "peak_mb": highest net allocation during the step above its start}.

    forward_s: time inside the phase's ranges, minus nested phases. backward_s: time of the
    autograd nodes whose forward op ran inside the phase. retained_mb: net memory the phase
    left allocated (its outputs plus what autograd saved for backward). peak_mb: highest net
    allocation above the phase's start while it ran. Memory comes from the profiler's
    per-op allocation records (CPU tensors), an op's net change placed at its start."""
    for i in range(warmup):
        if before is not None:
            before(i)
        step()
    if before is not None:
        before(warmup)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=memory) as prof:
        t0 = time.perf_counter()
        step()
        step_s = time.perf_counter() - t0
    events = list(prof.events())

    # memory timeline: net self allocation of every op at its start, cumulated in time order
    deltas = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in events if e.self_cpu_memory_usage)
    times, level, curve = [], 0, []
    for t, d in deltas:
        level += d
        times.append(t)
        curve.append(level)

    def level_at(t: float) -> int:  # net allocation just before time t
        i = bisect.bisect_left(times, t)
        return curve[i - 1] if i else 0

    def peak_in(start: float, end: float) -> int:
        lo, hi = bisect.bisect_left(times, start), bisect.bisect_right(times, end)
        return max(curve[lo:hi], default=level_at(start)) - level_at(start)

    phases: dict[str, dict[str, float]] = {}
    # an op records the sequence number the next autograd node will get, whether or not it
    # creates one; the node's creator is the LAST op that recorded it (later ops see the next
    # number), so later records overwrite earlier ones
    seq_phase: dict[tuple[int, int], str | None] = {}
    for e in sorted(events, key=lambda e: e.time_range.start):
        name = e.name
        if name.startswith(prefix) and not _inside_backward(e):
            p = phases.setdefault(name, {"forward_s": 0.0, "backward_s": 0.0, "retained_mb": 0.0, "peak_mb": 0.0})
            nested = sum(c.time_range.elapsed_us() for c in e.cpu_children if c.name.startswith(prefix))
            p["forward_s"] += (e.time_range.elapsed_us() - nested) / 1e6
            p["retained_mb"] += e.cpu_memory_usage / _MB
            p["peak_mb"] = max(p["peak_mb"], peak_in(e.time_range.start, e.time_range.end) / _MB)
        elif e.sequence_nr >= 0 and not name.startswith(_BACKWARD) and not _inside_backward(e):
            seq_phase[(e.thread, e.sequence_nr)] = _phase_of(e.cpu_parent, prefix)
    other = 0.0
    for e in events:
        if not e.name.startswith(_BACKWARD) or _inside_backward(e):
            continue
        phase = seq_phase.get((e.fwd_thread, e.sequence_nr))
        if phase is None:
            other += e.time_range.elapsed_us() / 1e6
        else:
            phases[phase]["backward_s"] += e.time_range.elapsed_us() / 1e6
    rows = [{"phase": k[len(prefix):], **{n: round(x, 4) for n, x in v.items()}} for k, v in phases.items()]
    attributed = sum(r["forward_s"] + r["backward_s"] for r in rows) + other
    return {"step_s": round(step_s, 4), "phases": rows, "backward_other_s": round(other, 4),
            "unattributed_s": round(step_s - attributed, 4), "peak_mb": round(max(curve, default=0) / _MB, 1)}


def run_json_child(cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Run ``cmd`` in a fresh process; its last stdout line is a JSON object. On failure:
    {"error": the last line of stderr (or the exit status)}."""
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = proc.stderr.strip().splitlines()
        return {"error": tail[-1] if tail else f"exit {proc.returncode}"}
    return json.loads(lines[-1])


def interleave(jobs: dict[str, Callable[[], dict[str, Any]]], repeats: int, log: Callable[[str], None] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Call every job once per round, ``repeats`` rounds, round-robin (job order rotated each
    round so that no job always runs first). Returns name -> the results of its rounds."""
    names = list(jobs)
    out: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names):] + names[: r % len(names)]:
            out[n].append(jobs[n]())
            if log is not None:
                log(f"round {r + 1}/{repeats} {n}: {json.dumps(out[n][-1].get('seconds', out[n][-1].get('error')))}")
    return out


def median_seconds(results: Iterable[dict[str, Any]]) -> float | None:
    """Median over every timed step of every round (rounds that failed are skipped)."""
    seconds = [s for r in results if "error" not in r for s in r["seconds"]]
    return statistics.median(seconds) if seconds else None


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """Markdown table lines; floats with 3 significant decimals, None as an empty cell."""

    def cell(x: Any) -> str:
        if x is None:
            return ""
        return f"{x:.3f}" if isinstance(x, float) else str(x)

    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]


def profile_markdown(result: dict[str, Any], title: str) -> list[str]:
    """Markdown lines for one :func:`profile_step` result (or {"error": ...})."""
    if "error" in result:
        return [f"## {title}: error: {result['error']}", ""]
    step = result["step_s"]
    rows = [[x["phase"], x["forward_s"], x["backward_s"], x["forward_s"] + x["backward_s"], f"{(x['forward_s'] + x['backward_s']) / step:.1%}",
             round(x["retained_mb"]), round(x["peak_mb"])] for x in result["phases"]]
    rows.append(["weight-gradient accumulation", None, result["backward_other_s"], result["backward_other_s"], f"{result['backward_other_s'] / step:.1%}", None, None])
    return [f"## {title}: {step:.2f} s under the profiler; peak {result['peak_mb']:.0f} MB above the step's start", "",
            *markdown_table(["phase", "forward s", "backward s", "total s", "share", "retained MB", "peak MB"], rows),
            "", f"Unattributed (Python, the profiler): {result['unattributed_s']:.3f} s.", ""]


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


__all__ = ["interleave", "keep_freed_memory", "log", "markdown_table", "median_seconds", "peak_rss_mb", "profile_markdown", "profile_step", "run_json_child", "time_step"]

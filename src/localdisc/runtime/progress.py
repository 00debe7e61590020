"""What a training loop tells its user, on the terminal and in ``RUN/train.log``.

On a terminal: a progress bar named after the stage (``ld stage 1/2``) with loss and images/s.
Elsewhere (nohup, SLURM, CI logs), where a bar would print nothing useful: one line per logged
step, at most every ``min_interval`` seconds plus the first and the last, e.g.::

    [ld stage 1/2] step 120/400 (30%) | loss 4.3121 l_pd 4.3121 | lr 1.0e-03 | 2.31 img/s | ETA 3m02s

Every line, and every event (``say``), also goes to ``RUN/train.log`` with a time stamp,
whatever the terminal. Only the main process (rank 0) writes anything.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import torch
from tqdm.auto import tqdm


def describe_threads(device: torch.device, world: int) -> str:
    """``cpu, 2 threads`` or ``cuda:0 (NVIDIA H100), 4 processes``: where the run computes."""
    where = str(device)
    if device.type == "cuda":
        where += f" ({torch.cuda.get_device_name(device)})"
    else:
        where += f", {torch.get_num_threads()} thread{'s' * (torch.get_num_threads() > 1)}"
    return where + (f", {world} processes" if world > 1 else "")


def count_parameters(module: torch.nn.Module) -> str:
    n = sum(p.numel() for p in module.parameters())
    return f"{n / 1e6:.2f} M parameters" if n >= 1e5 else f"{n} parameters"


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class TrainingLog:
    """Progress and events of one run. ``step(done, images, **values)`` after every optimizer
    step; ``values`` (loss terms, lr) are shown when given, i.e. on logged steps."""

    def __init__(self, run_dir: Path | None, stage: str, total: int, start: int = 0, min_interval: float = 30.0, tty: bool | None = None):
        self.path = Path(run_dir) / "train.log" if run_dir is not None else None
        self.stage, self.total, self.start = stage, total, start
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.min_interval = min_interval
        self._t0 = time.time()
        self._images = 0
        self._last_print = -1e18
        self._bar = None
        if self.path is not None and self.tty:
            self._bar = tqdm(total=total, initial=start, desc=stage, dynamic_ncols=True, file=sys.stderr)

    @property
    def active(self) -> bool:
        return self.path is not None

    def _write(self, line: str) -> None:
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        with self.path.open("a") as f:  # type: ignore[union-attr]
            f.write(f"{stamp} {line}\n")

    def say(self, message: str) -> None:
        """An event: printed (above the bar on a terminal) and written to train.log."""
        if not self.active:
            return
        if self._bar is not None:
            self._bar.write(message, file=sys.stdout)
        else:
            print(message, flush=True)
        self._write(message)

    def images_per_s(self) -> float:
        return self._images / max(time.time() - self._t0, 1e-9)

    def step(self, done: int, images: int, **values: float) -> None:
        if not self.active:
            return
        self._images += images
        rate = self.images_per_s()
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
            if values:
                shown = {k: f"{v:.4g}" for k, v in values.items() if k != "lr"}
                self._bar.set_postfix({**shown, "img/s": f"{rate:.2f}"}, refresh=False)
        if not values:  # between logged steps: still a heartbeat, the first step at once, then at most every min_interval
            now = time.time()
            if self._bar is None and (self._last_print < -1e17 or now - self._last_print >= self.min_interval):
                print(self.format(done, rate, {}), flush=True)
                self._last_print = now
            return
        line = self.format(done, rate, values)
        self._write(line)
        now = time.time()
        first, last = self._last_print < -1e17, done >= self.total
        if self._bar is None and (first or last or now - self._last_print >= self.min_interval):
            print(line, flush=True)
            self._last_print = now

    def format(self, done: int, rate: float, values: dict[str, float]) -> str:
        elapsed = time.time() - self._t0
        left = (self.total - done) * elapsed / max(done - self.start, 1)
        terms = " ".join(f"{k} {v:.4f}" for k, v in values.items() if k != "lr" and isinstance(v, float)) or "(losses at the next logged step)"
        lr = f" | lr {values['lr']:.1e}" if "lr" in values else ""
        return f"[{self.stage}] step {done}/{self.total} ({100 * done / max(self.total, 1):.0f}%) | {terms}{lr} | {rate:.2f} img/s | ETA {_duration(left)}"

    def close(self, message: str = "") -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if message:
            self.say(message)


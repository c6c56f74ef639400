"""The training loop every trained detector shares (images, time series, log sequences).

Plain torch, no framework. The method owns its network, optimiser and batches and gives
`train` one callable that takes a step and returns the loss; `train` owns everything around
it: seeding, threads, budgets, validation, early stopping, the best state, progress and
interruption.

    from normalcy.core.training import seeded, train

    with seeded(seed):                      # network initialisation is reproducible too
        net = torch.nn.Sequential(...)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step(i):                            # one optimisation step; returns the loss
        x = batches[i % len(batches)]
        loss = net(x).pow(2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
        return loss.item()

    result = train(net, step, max_steps=2000, validate=lambda: auroc_on_held_out(net),
                   validate_every=50, patience=5, max_seconds=600, seed=seed, threads=2)
    # net now holds the best validated state; result.state is a copy of it

Guarantees:

- Deterministic on a CPU: `train` runs under `seeded(seed)` (torch's global generator is
  forked, seeded, and restored afterwards) and `thread_limit(threads)`. Same seed, same
  thread count, same machine: same weights. Build the network under `seeded` too.
- Checkpoints: every `validate_every` steps (and at the end) `validate()` is called with the
  module in eval mode and the state dict is copied when the figure (higher = better)
  improves; without `validate`, each checkpoint is kept. At the end the module holds the kept
  state.
- Stops at `max_steps`, at the first step boundary past `max_seconds` (then validates once
  more), after `patience` validations without improvement, or when the loss is not finite.
- Ctrl-C (KeyboardInterrupt) during training: with a kept checkpoint, training stops there,
  the module holds that state and `train` returns (`stopped == "interrupted"`); before the
  first checkpoint the KeyboardInterrupt propagates. Any other exception propagates. The
  caller so gets either the best complete state or nothing, never a half-updated one.
- Progress on stderr (`normalcy.core.progress`'s setting): a bar with loss, validation
  figure and ETA on a terminal, a plain line every LOG_EVERY seconds otherwise.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from normalcy.core import progress as _progress
from normalcy.core.errors import DataError
from normalcy.core.threads import thread_limit


@dataclass
class TrainResult:
    """What `train` did. `state` is a copy of the kept state dict (the module holds it too);
    `best` its validation figure (None without `validate`); `stopped` one of "steps",
    "time", "patience", "diverged", "interrupted"; `history` (step, mean loss since the last
    checkpoint, validation figure) per checkpoint."""

    state: dict[str, torch.Tensor]
    best_step: int
    best: float | None
    steps: int
    seconds: float
    stopped: str
    history: list[tuple[int, float, float | None]] = field(default_factory=list)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """torch's CPU generator seeded for the block and restored after it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def train(module: torch.nn.Module, step: Callable[[int], float], *, max_steps: int,
          validate: Callable[[], float] | None = None, validate_every: int = 100,
          patience: int | None = None, max_seconds: float | None = None, seed: int = 0,
          threads: int | None = None, desc: str = "training") -> TrainResult:
    """Run `step(i)` for i = 0, 1, ... and keep the best validated state of `module`; see the
    module docstring for the rules. `patience` counts validations, `max_seconds` wall time
    from this call."""
    if not (isinstance(max_steps, int) and max_steps >= 1):
        raise DataError(f"max_steps must be a positive integer, got {max_steps!r}")
    if not (isinstance(validate_every, int) and validate_every >= 1):
        raise DataError(f"validate_every must be a positive integer, got {validate_every!r}")
    if patience is not None and not (isinstance(patience, int) and patience >= 1):
        raise DataError(f"patience must be a positive integer or None, got {patience!r}")
    if max_seconds is not None and not max_seconds > 0:
        raise DataError(f"max_seconds must be > 0 or None, got {max_seconds!r}")
    run = _Run(module, validate, max_steps, max_seconds, desc)
    with seeded(seed), thread_limit(threads):
        try:
            run.loop(step, validate_every, patience)
        except KeyboardInterrupt:
            if run.kept is None:
                run.report.close("interrupted before the first checkpoint: nothing kept")
                raise
            run.stopped = "interrupted"
        finally:
            module.eval()
    if run.kept is None:  # diverged before the first checkpoint
        raise DataError(f"{desc} diverged at step {run.steps}: the loss is not finite; lower the learning rate")
    module.load_state_dict(run.kept)
    best = "" if run.best is None else f", best validation {run.best:.4f}"
    run.report.close(f"stopped ({run.stopped}) after {run.steps} steps; kept step {run.best_step}{best}")
    return TrainResult(run.kept, run.best_step, run.best, run.steps, time.monotonic() - run.start,
                       run.stopped, run.history)


class _Run:
    """The state of one `train` call."""

    def __init__(self, module, validate, max_steps, max_seconds, desc):
        self.module, self.validate, self.max_steps, self.max_seconds = module, validate, max_steps, max_seconds
        self.start = time.monotonic()
        self.kept: dict[str, torch.Tensor] | None = None
        self.best: float | None = None
        self.best_step = self.steps = 0
        self.stopped = "steps"
        self.history: list[tuple[int, float, float | None]] = []
        self.report = _Report(desc, max_steps, max_seconds, self.start)

    def loop(self, step, validate_every, patience):
        losses: list[float] = []
        stale = 0
        while self.steps < self.max_steps:
            self.module.train()
            loss = float(step(self.steps))
            self.steps += 1
            if not math.isfinite(loss):
                self.stopped = "diverged"
                return
            losses.append(loss)
            over_time = self.max_seconds is not None and time.monotonic() - self.start >= self.max_seconds
            if self.steps % validate_every == 0 or self.steps == self.max_steps or over_time:
                improved = self._checkpoint(sum(losses) / len(losses))
                losses = []
                stale = 0 if improved else stale + 1
                if over_time:
                    self.stopped = "time"
                    return
                if patience is not None and stale >= patience:
                    self.stopped = "patience"
                    return
            self.report.update(self.steps, loss, self.best, self.best_step)

    def _checkpoint(self, loss: float) -> bool:
        value = None
        if self.validate is not None:
            self.module.eval()
            with torch.no_grad():
                value = float(self.validate())
        self.history.append((self.steps, loss, value))
        improved = self.kept is None or _better(value, self.best)
        if improved:
            # Copies, not views: later steps update the parameters in place.
            self.kept = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
            self.best, self.best_step = value, self.steps
        self.report.checkpoint(self.steps, loss, value, self.best, self.best_step)
        return improved


def _better(value: float | None, best: float | None) -> bool:
    """Whether a checkpoint's figure beats the kept one's (every checkpoint does without
    validation; a NaN figure never does, and anything finite beats a NaN)."""
    if value is None:
        return True
    if not math.isfinite(value):
        return False
    return best is None or not math.isfinite(best) or value > best


class _Report:
    """The progress display: a tqdm bar on a terminal, log lines otherwise, or nothing."""

    def __init__(self, desc: str, total: int, max_seconds: float | None, start: float):
        self.desc, self.total, self.max_seconds, self.start = desc, total, max_seconds, start
        enabled = _progress._enabled
        self.mode = "off" if enabled is False else "bar" if enabled or sys.stderr.isatty() else "log"
        self.bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step", leave=False, file=sys.stderr, dynamic_ncols=True)
        self.last_log = start
        self.done = 0

    def _eta(self, done: int) -> float | None:
        elapsed = time.monotonic() - self.start
        left = elapsed / done * (self.total - done) if done else None
        if self.max_seconds is not None:
            budget = max(self.max_seconds - elapsed, 0.0)
            left = budget if left is None else min(left, budget)
        return left

    def _text(self, done: int, loss: float, value: float | None, best: float | None, best_step: int) -> str:
        parts = [f"loss {loss:.4g}"]
        if value is not None:
            parts.append(f"validation {value:.4f}")
        if best is not None:
            parts.append(f"best {best:.4f} at step {best_step}")
        eta = self._eta(done)
        if eta is not None:
            parts.append(f"about {eta:.0f} s left")
        return ", ".join(parts)

    def update(self, done: int, loss: float, best: float | None, best_step: int) -> None:
        if self.mode == "bar":
            self.bar.update(done - self.done)
            self.bar.set_postfix_str(self._text(done, loss, None, best, best_step), refresh=False)
        elif self.mode == "log" and time.monotonic() - self.last_log >= _progress.LOG_EVERY:
            self._log(done, self._text(done, loss, None, best, best_step))
        self.done = done

    def checkpoint(self, done: int, loss: float, value, best, best_step) -> None:
        if self.mode == "bar":
            self.bar.update(done - self.done)
            self.bar.set_postfix_str(self._text(done, loss, value, best, best_step))
        elif self.mode == "log" and time.monotonic() - self.last_log >= _progress.LOG_EVERY:
            self._log(done, self._text(done, loss, value, best, best_step))
        self.done = done

    def _log(self, done: int, text: str) -> None:
        self.last_log = time.monotonic()
        print(f"{self.desc}: step {done}/{self.total}, {self.last_log - self.start:.0f} s, {text}",
              file=sys.stderr, flush=True)

    def close(self, summary: str) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.mode != "off":
            print(f"{self.desc}: {summary} ({time.monotonic() - self.start:.0f} s)", file=sys.stderr, flush=True)

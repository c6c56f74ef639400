"""What the trained window models (TadGAN, HypAD, OracleAD, THEMIS-style) share: windows ending
at each reading, scaling, when to train, the training engine, exact scoring, the model file.

The window: a detector scores reading t from the `span` readings that end at it (the window;
for a forecaster the window and the reading it forecasts). Nothing later is used, so the score
is causal and a reading is scored the moment it arrives. Raw scores are a pure function of that
window and the fitted state, per variable (so `explain` names the variables).

Scaling: each variable is scaled by statistics of the readings the network is trained on (the
detector's `scaling`: to [-1, 1] by their range, as TadGAN does, or to zero mean and unit
variance), and clipped at CLIP scaled units, so that any accepted reading (up to 1e30) gives
finite scores. A variable that never moved is scaled by 1.

When the networks are trained: at the end of `fit`, on the remembered readings (the last
`history`); in a stream learned from scratch (`score_causal`, which `normalcy ts fit` and the
benchmark use), first when `min_train` readings have been learned, then, with ``retrain=True``,
each time the number of readings learned has doubled, until a training has seen a full memory.
The same trainings happen at the same readings whether readings come in batch or one at a time,
so streaming scores equal batch scores. The first training builds networks from `seed`; a
retraining goes on from the networks it replaces, for as many windows as readings came since
(so a stream's trainings together cost about one training on its final memory). Trainings run on
the shared engine (`normalcy.core.training`): the last `validation_fraction` of the readings are
held out (windows ending in them), the figure early stopping watches is the method's loss on
them, and the best state is kept. Budgets: `epochs` passes over the training windows, at most
`max_steps` steps, and optionally `max_seconds` of wall time per training (a time budget makes
the networks depend on the machine's speed, so two runs may then differ).

Exact scoring: networks train in float32; scores come from float64 copies of them, so a window's
score does not depend on how many windows are evaluated together beyond float64 rounding, which
keeps streaming and batch scores (and a reloaded model's) within `SAVE_LOAD_RTOL`.

Units: after a training, the method measures the held-out windows and keeps the statistics of
its measures there; raw scores are measures in those units, comparable across variables and
series.
"""

from __future__ import annotations

import copy
import math
import time
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.threads import check_threads, thread_limit
from normalcy.timeseries.base import MAX_MEMORY, TimeSeriesDetector, check_int, state_int

CLIP = 1e6  # scaled units: readings beyond are taken as this far out
MIN_TRAIN_WINDOWS = 8  # windows that end before the held-out tail, at least
MIN_HELD_OUT = 2  # held-out windows, at least
MAX_VALIDATION = 512  # held-out windows the validation figure is computed on (evenly spaced)
CHUNK = 1024  # windows scored at once
FLOOR = 1e-9  # smallest spread a unit may have


def _torch():
    try:
        import torch
    except ImportError as exc:  # an optional dependency
        raise DataError("the trained time-series detectors need torch: pip install 'normalcy[timeseries]'") from exc
    return torch


@dataclass
class Windows:
    """The training data of one training: `train` and `validation` windows (float32 tensors,
    n x span x d, scaled), and `sample(batch)`, a batch of training windows drawn with torch's
    global generator (which the engine seeds)."""

    train: Any
    validation: Any

    def sample(self, batch: int):
        torch = _torch()
        return self.train[torch.randint(0, len(self.train), (min(batch, len(self.train)),))]


class WindowNetDetector(TimeSeriesDetector):
    """Base of the trained window detectors (see the module docs). A method sets `scaling` and,
    for a forecaster, `extra` (readings after the window in a span), and implements:

    - `_build(d)`: its untrained networks (one torch module, e.g. a ModuleDict) for d variables;
    - `_fit_net(net, windows, engine)`: train them, calling `engine(net, step, validate)` (the
      shared engine with this detector's budgets); returns its TrainResult;
    - `_reference(windows)`: after training, the arrays scoring needs beyond the networks
      (units from the held-out windows, reference embeddings ...), by name;
    - `_window_scores(windows)`: raw scores (n x d) of float64 windows (n x span x d, scaled),
      from `self._net64` and `self._stats`;
    - `_stat_shapes(d)`: the shapes of `_reference`'s arrays, to check a model file.
    """

    scaling: ClassVar[str] = "standard"  # or "range": to [-1, 1] by the training readings' range
    extra: ClassVar[int] = 0

    @property
    def span(self) -> int:
        return self.window + self.extra

    @property
    def training_(self) -> dict | None:
        """What the last training did: steps, kept step, validation figure, why it stopped,
        seconds, readings it learned from; None before any."""
        self._check_fitted("columns_")
        return self._training

    # --- training ------------------------------------------------------------------------------
    def _fit_encoded(self, series):
        need = self._min_readings()
        if min(len(series), self.history) < need:
            raise DataError(f"{self.name} needs at least {need} readings to train (windows of {self.span} "
                            f"readings and a held-out tail of {self.validation_fraction:g}), got {len(series)}")
        self._reset()
        self._scheduled = False  # fit trains once, at its end
        try:
            self._run(series, wanted=False)
        finally:
            self._scheduled = True
        self._train(self._recent(), self._count)

    def _due(self, count: int) -> bool:
        """Whether learning the reading that makes `count` readings learned starts a training."""
        if not self._scheduled:
            return False
        if self._trained_at == 0:
            return count >= self.min_train
        return self.retrain and self._trained_at < self.history and count >= 2 * self._trained_at

    def _learned(self):
        super()._learned()
        if self._due(self._count):
            self._train(self._recent(), self._count)

    def _train(self, readings: np.ndarray, count: int) -> None:
        """Train fresh networks on `readings` (the memory after `count` readings were learned)
        and set the fitted state; the networks are replaced, never changed in place, so a
        snapshot taken before still holds the old ones."""
        torch = _torch()
        from normalcy.core.training import seeded

        start = time.monotonic()
        scale_from = np.asarray(readings, dtype=np.float64)
        center, scale = self._scale_stats(scale_from)
        scaled = np.clip((scale_from - center) / scale, -CLIP, CLIP)
        n = len(scaled)
        n_train = n - self._tail(n) - self.span + 1
        with thread_limit(self.threads):
            series = torch.from_numpy(scaled.astype(np.float32))
            all_windows = series.unfold(0, self.span, 1).permute(0, 2, 1)  # windows x span x d (a view)
            held = n_train + evenly(len(all_windows) - n_train, MAX_VALIDATION)
            windows = Windows(all_windows[:n_train], all_windows[torch.from_numpy(held)].contiguous())
            if self._net is None:
                with seeded(self.seed):
                    net = self._build(scale_from.shape[1])
                passes_over = n_train
            else:  # a retraining goes on from the networks it replaces, over as many windows as readings came
                net = copy.deepcopy(self._net)
                passes_over = min(n_train, count - self._trained_at)
            result = self._fit_net(net, windows, self._engine(passes_over))
            net.eval()
            previous = (self._center, self._scale, self._net, self._net64, self._stats)
            self._center, self._scale, self._net = center, scale, net
            self._net64 = copy.deepcopy(net).double().eval()
            try:
                self._stats = {k: np.asarray(v, dtype=np.float64) for k, v in self._reference(windows).items()}
            except BaseException:
                self._center, self._scale, self._net, self._net64, self._stats = previous
                raise
        self._trained_at = count
        best = result.best if result.best is not None and math.isfinite(result.best) else None
        self._training = {"steps": result.steps, "best_step": result.best_step, "validation": best,
                          "stopped": result.stopped, "seconds": round(time.monotonic() - start, 3),
                          "readings": n, "at_reading": count}

    def _tail(self, n: int) -> int:
        """Readings held out at the end of n for the validation figure."""
        return max(MIN_HELD_OUT, math.ceil(self.validation_fraction * n))

    def _min_readings(self) -> int:
        """The fewest readings a training needs: windows ending before the held-out tail, at
        least MIN_TRAIN_WINDOWS of them."""
        n = self.span + MIN_TRAIN_WINDOWS - 1
        while n - self._tail(n) - self.span + 1 < MIN_TRAIN_WINDOWS:
            n += 1
        return n

    def _engine(self, n_windows: int) -> Callable:
        """`engine(net, step, validate)`: the shared training engine with this detector's budgets:
        `epochs` passes over `n_windows` windows (at most `max_steps` steps), about ten
        validations, `patience`, the time budget, seed and threads."""
        from normalcy.core.training import train

        steps = max(1, min(self.max_steps, math.ceil(self.epochs * n_windows / self.batch_size)))
        every = max(1, steps // 10)

        def engine(net, step, validate):
            return train(net, step, max_steps=steps, validate=validate, validate_every=every,
                         patience=self.patience, max_seconds=self.max_seconds, seed=self.seed,
                         threads=self.threads, desc=f"{self.name}: training")

        return engine

    def _scale_stats(self, readings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.scaling == "range":
            low, high = readings.min(axis=0), readings.max(axis=0)
            center, scale = (low + high) / 2, (high - low) / 2
        else:
            center, scale = readings.mean(axis=0), readings.std(axis=0)
        return center, np.where(scale > 0, scale, 1.0)

    # --- scoring -------------------------------------------------------------------------------
    def _variable_scores(self, past, x):
        if self._net is None or len(past) < self.span - 1:
            return np.zeros(len(x))
        window = np.vstack([past[len(past) - (self.span - 1) :], x])[None]
        with thread_limit(self.threads):
            return self._window_scores(self._scaled(window))[0]

    def _batch_variable_scores(self, values, wanted=True):
        """All of `values` at once (see `TimeSeriesDetector._batch_variable_scores`), splitting
        them where a training falls due."""
        n, d = values.shape
        held = min(self._count, self.history)
        readings = np.vstack([self._recent(), values])
        out = np.zeros((n, d))
        i = 0
        while i < n:
            stop, due = self._next_training(i, n)
            if wanted and self._net is not None:
                self._score_range(readings, held, i, stop, out)
            if due:
                end = held + stop
                self._train(readings[max(0, end - self.history) : end], self._count + stop)
            i = stop
        return out

    def _next_training(self, i: int, n: int) -> tuple[int, bool]:
        """The end (exclusive) of the run of values[i:] scored with the current networks, and
        whether learning its last reading starts a training (as `_due` says a stream would)."""
        if not self._scheduled:
            return n, False
        if self._trained_at == 0:
            first = self.min_train
        elif self.retrain and self._trained_at < self.history:
            first = 2 * self._trained_at
        else:
            return n, False
        k = max(first - self._count - 1, i)  # learning values[k] makes self._count + k + 1 readings learned
        return (k + 1, True) if k < n else (n, False)

    def _score_range(self, readings, held, i, stop, out):
        """Raw scores of values[i:stop] into out: each from the window ending at it, where the
        readings remembered before it (as a stream would) hold the window and the warm-up."""
        index = np.arange(i, stop)
        before = np.minimum(self._count + index, self.history)
        measured = index[(before >= self.span - 1) & (before >= self.warmup)]
        if not len(measured):
            return
        ends = held + measured
        windows = np.lib.stride_tricks.sliding_window_view(readings, self.span, axis=0)  # starts x d x span
        with thread_limit(self.threads):
            for j in range(0, len(ends), CHUNK):
                part = ends[j : j + CHUNK]
                block = windows[part - self.span + 1].transpose(0, 2, 1)
                out[measured[j : j + CHUNK]] = self._window_scores(self._scaled(block))

    def _scaled(self, windows: np.ndarray) -> np.ndarray:
        return np.clip((windows - self._center) / self._scale, -CLIP, CLIP)

    def _tensor(self, windows: np.ndarray):
        return _torch().from_numpy(np.ascontiguousarray(windows, dtype=np.float64))

    def _raw_ready(self):
        return max(self.warmup, self.span - 1, self.min_train)

    # --- state ---------------------------------------------------------------------------------
    def _reset(self):
        super()._reset()
        self._net = self._net64 = None
        self._center = self._scale = None
        self._stats: dict[str, np.ndarray] = {}
        self._trained_at = 0
        self._training = None
        self._scheduled = True

    def _own_state(self):
        arrays, meta = super()._own_state()
        meta = {**meta, "trained_at": self._trained_at, "training": self._training}
        if self._net is None:
            return arrays, meta
        arrays = {**arrays, "center": self._center, "scale": self._scale,
                  **{f"net.{k}": v.detach().numpy() for k, v in self._net.state_dict().items()},
                  **{f"stats.{k}": v for k, v in self._stats.items()}}
        return arrays, meta

    def _set_own_state(self, arrays, meta):
        super()._set_own_state(arrays, meta)
        torch = _torch()
        from normalcy.core.training import seeded

        self._trained_at = state_int(meta, "trained_at", 0, self._count)
        training = meta.get("training")
        if not (training is None or isinstance(training, dict)):
            raise ModelFileError("model state 'training' must be a record of the last training or null")
        self._training = training
        self._scheduled = True
        self._net = self._net64 = None
        self._center = self._scale = None
        self._stats = {}
        if self._trained_at == 0:
            return
        d = len(self.columns_)
        expect_arrays(arrays, {"center": (d,), "scale": (d,)})
        if (arrays["scale"] <= 0).any():
            raise ModelFileError("model array 'scale' must be positive")
        with seeded(self.seed):
            net = self._build(d)
        expected = net.state_dict()
        unknown = sorted(k for k in arrays if k.startswith("net.") and k[4:] not in expected)
        if unknown:
            raise ModelFileError(f"{self.name} model has unknown network arrays: {', '.join(unknown[:5])}")
        expect_arrays(arrays, {f"net.{k}": tuple(v.shape) for k, v in expected.items()})
        try:
            net.load_state_dict({k: torch.from_numpy(np.array(arrays[f"net.{k}"], dtype=v.numpy().dtype))
                                 for k, v in expected.items()}, strict=True)
        except RuntimeError as exc:
            raise ModelFileError(f"{self.name} network weights do not fit: {exc}") from exc
        shapes = {f"stats.{k}": shape for k, shape in self._stat_shapes(d).items()}
        unknown = sorted(k for k in arrays if k.startswith("stats.") and k not in shapes)
        if unknown:
            raise ModelFileError(f"{self.name} model has unknown arrays: {', '.join(unknown[:5])}")
        expect_arrays(arrays, shapes)
        self._center, self._scale = (arrays[k].astype(np.float64) for k in ("center", "scale"))
        self._net = net.eval()
        self._net64 = copy.deepcopy(net).double().eval()
        self._stats = {k[6:]: arrays[k].astype(np.float64) for k in shapes}
        self._loaded()

    def _loaded(self) -> None:
        """Rebuild what is derived from `_stats` after loading (search trees, say)."""

    # --- hooks ---------------------------------------------------------------------------------
    @abstractmethod
    def _build(self, d: int):
        """The untrained networks for d variables (built under the detector's seed)."""

    @abstractmethod
    def _fit_net(self, net, windows: Windows, engine: Callable):
        """Train `net` on `windows` with `engine(net, step, validate)`; return its TrainResult."""

    @abstractmethod
    def _reference(self, windows: Windows) -> dict[str, np.ndarray]:
        """After training (`_net64` set): the arrays scoring needs, by name."""

    @abstractmethod
    def _window_scores(self, windows: np.ndarray) -> np.ndarray:
        """Raw scores (n x d) of scaled float64 windows (n x span x d)."""

    @abstractmethod
    def _stat_shapes(self, d: int) -> dict[str, tuple]:
        """Shapes of `_reference`'s arrays (None: any size)."""

    # --- checks --------------------------------------------------------------------------------
    def _check_params(self):
        super()._check_params()
        check_int(self, "window", 2, 100_000)
        for name in ("max_steps", "batch_size", "min_train"):
            check_int(self, name, 1, MAX_MEMORY)
        if self.history < self.span:
            raise DataError(f"history ({self.history}) must hold a window of {self.span} readings")
        if self.min_train > self.history:
            raise DataError(f"min_train ({self.min_train}) must not exceed history ({self.history})")
        if self.min_train < self._min_readings():
            raise DataError(f"min_train ({self.min_train}) must be at least {self._min_readings()}: a training "
                            f"needs windows of {self.span} readings and a held-out tail")
        for name in ("retrain",):
            if not isinstance(getattr(self, name), bool):
                raise DataError(f"{name} must be true or false, got {getattr(self, name)!r}")
        _check_number(self, "epochs", 0, 1e6, low_open=True)
        _check_number(self, "learning_rate", 0, 1, low_open=True)
        _check_number(self, "validation_fraction", 0, 0.5, low_open=True)
        if self.max_seconds is not None:
            _check_number(self, "max_seconds", 0, 1e9, low_open=True)
        if self.patience is not None:
            check_int(self, "patience", 1, MAX_MEMORY)
        check_threads(self.threads)
        if not (isinstance(self.seed, int) and not isinstance(self.seed, bool) and 0 <= self.seed < 2**63):
            raise DataError(f"seed must be a non-negative integer, got {self.seed!r}")


def _check_number(detector, name: str, low: float, high: float, low_open: bool = False) -> None:
    """DataError unless the parameter `name` is a number in [low, high] ((low, high] if low_open)."""
    value = getattr(detector, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > high or value < low or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise DataError(f"{name} must be a number in {bracket}{low:g}, {high:g}], got {value!r}")


def units(values: np.ndarray, reference: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The mean and standard deviation of `reference` along `axis`, the spread floored so that
    a measure that never varied on held-out data still has a unit."""
    mean = reference.mean(axis=axis)
    std = reference.std(axis=axis)
    return mean, np.maximum(std, FLOOR * (np.abs(mean) + 1.0))


def gradient_penalty(critic, real, fake):
    """WGAN-GP's penalty (Gulrajani et al. 2017): the critic's gradient norm at random points
    between real and fake samples, pulled towards 1."""
    torch = _torch()
    alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1))
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def evenly(n: int, most: int) -> np.ndarray:
    """At most `most` indices spread evenly over range(n)."""
    if n <= most:
        return np.arange(n)
    return np.linspace(0, n - 1, most).round().astype(int)


__all__ = ["CLIP", "WindowNetDetector", "Windows", "evenly", "gradient_penalty", "units"]

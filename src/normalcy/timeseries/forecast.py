"""Forecasting residual with gradient-boosted trees (LightGBM), explained with TreeSHAP.

Each variable is forecast one step ahead from the last `lags` readings of every variable and,
when the series has timestamps, the hour of day and day of week of the reading being
forecast. A reading's raw score per variable is how far it lands from its forecast, in
robust units: the residual's distance from the median of the last `scale_window`
residuals, divided by their MAD. This is the approach used on spacecraft telemetry (forecast,
then explain the residual): `explain_forecast` gives, for each reading, the forecast, the
residual and each feature's TreeSHAP contribution to the forecast, which names the lags,
variables and calendar features the forecast rested on; `explain` says the same in words, as
the evidence of its `Explanation`.

Trees cannot extrapolate, so the target is the reading minus its baseline (the median of the
lag readings) and the lag features are taken relative to that baseline too: a series at a
level it has never been at is still forecast from its own recent shape. The median rather than
the last reading keeps one spike from dragging the next forecast with it.

Causal: the trees are fitted on the remembered readings (the last `history`) only, first once
there are enough of them, then each time the memory has doubled, then every `refit_every`
readings; the same fits happen at the same readings whether the series comes in batch or one
reading at a time, so streaming scores equal batch scores. Without timestamps there are no
calendar features; the lags alone carry the rhythm the series has.

The trees are saved in LightGBM's text model format (data, parsed on load, never executed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.results import Explanation
from normalcy.timeseries.base import MAX_MEMORY, TimeSeriesDetector, _seconds, check_int, state_int
from normalcy.timeseries.robust import RobustUnits

MIN_ROWS = 10  # training rows (readings beyond the lags) before the first fit
DAY, WEEK = 86400.0, 604800.0
MONDAY = 4 * DAY  # 1970-01-01 was a Thursday; weeks are counted from Monday


def _lightgbm():
    try:
        import lightgbm
    except ImportError as exc:  # an optional dependency
        raise DataError("the gbt-forecast detector needs LightGBM: pip install 'normalcy[timeseries]'") from exc
    return lightgbm


@dataclass(frozen=True)
class ForecastExplanation:
    """Per reading (n) and variable (d): the forecast, the residual, the raw score, and each
    feature's TreeSHAP contribution to the forecast (n x d x features; with `expected`, the
    trees' mean output, and the baseline they add to, the contributions sum to the forecast).
    Readings scored before the first fit have zero contributions and a NaN forecast."""

    scores: np.ndarray
    per_variable: np.ndarray
    forecast: np.ndarray
    residual: np.ndarray
    contributions: np.ndarray
    expected: np.ndarray
    baseline: np.ndarray
    features: list[list[str]]  # the feature names in force at each reading (they change with the calendar)
    columns: list[str]

    def top(self, i: int, k: int = 5, variable: str | None = None) -> list[tuple[str, float]]:
        """The k features that moved reading i's forecast most, for `variable` (default: the
        variable with the highest raw score), largest absolute contribution first."""
        j = int(np.argmax(self.per_variable[i])) if variable is None else self.columns.index(variable)
        names = self.features[i]
        row = self.contributions[i, j, : len(names)]
        order = np.argsort(-np.abs(row), kind="stable")[:k]
        return [(names[o], float(row[o])) for o in order]


class GBTForecast(RobustUnits, TimeSeriesDetector):
    """Residual of a one-step LightGBM forecast of each variable (from the lags of every
    variable and the calendar), in robust units of recent residuals.

    Parameters (defaults in brackets):
    - lags [8]: past readings of every variable the forecast uses.
    - refit_every [500]: readings between refits of the trees, once the memory has filled.
    - n_estimators [50], num_leaves [15], learning_rate [0.1]: LightGBM's boosting rounds,
      leaves per tree and shrinkage.
    - scale_window [200]: recent residuals whose median and MAD give the robust units.
    - history [2000]: readings remembered; the trees are fitted on them.
    - likelihood [True], averaging [1], likelihood_window [2000]: NAB's anomaly likelihood.
    - warmup [20]: readings learned before scores are computed.
    """

    name = "gbt-forecast"
    two_sided = True

    def __init__(self, history: int = 2000, likelihood: bool = True, averaging: int = 1,
                 likelihood_window: int = 2000, warmup: int = 20, lags: int = 8, refit_every: int = 500,
                 n_estimators: int = 50, num_leaves: int = 15, learning_rate: float = 0.1,
                 scale_window: int = 200):
        super().__init__(history, likelihood, averaging, likelihood_window, warmup)
        self.lags = lags
        self.refit_every = refit_every
        self.n_estimators = n_estimators
        self.num_leaves = num_leaves
        self.learning_rate = learning_rate
        self.scale_window = scale_window

    # --- attributions ----------------------------------------------------------------------------
    def explain_forecast(self, X) -> ForecastExplanation:
        """Causal scores of X (as `explain`) with the forecast behind each and its TreeSHAP
        attributions; the detector's state is left unchanged."""
        series = self._encode(X)
        n, d = series.values.shape
        width = d * (self.lags + 1) + 2
        out = {k: np.zeros((n, d)) for k in ("per_variable", "forecast", "residual", "expected", "baseline")}
        scores, contributions, features = np.zeros(n), np.zeros((n, d, width)), []
        saved = self._snapshot()
        try:
            for i, (x, t) in enumerate(zip(series.values, _seconds(series))):
                self._used = None
                scores[i], out["per_variable"][i] = self._step(x, learn=True, t=t)
                if self._used is None:  # not yet fitted
                    out["forecast"][i] = out["residual"][i] = np.nan
                    features.append([])
                    continue
                row, base, forecast, boosters, names = self._used
                contrib = np.stack([b.predict(row[None], pred_contrib=True, num_threads=1)[0] for b in boosters])
                contributions[i, :, : len(names)] = contrib[:, :-1]
                out["expected"][i], out["baseline"][i] = contrib[:, -1], base
                # the forecast the score used; TreeSHAP's contributions add up to it
                out["forecast"][i], out["residual"][i] = forecast, series.values[i] - forecast
                features.append(names)
        finally:
            self._restore(saved)
        return ForecastExplanation(scores, out["per_variable"], out["forecast"], out["residual"], contributions,
                                   out["expected"], out["baseline"], features, list(self.columns_))

    def _explain_encoded(self, series):
        """Per-variable raw scores, and as evidence the flagged variable's forecast and the
        features it rested on most."""
        ex = self.explain_forecast(series)
        evidence = []
        for i in range(len(ex.scores)):
            if not ex.features[i]:
                evidence.append([])
                continue
            j = int(np.argmax(ex.per_variable[i]))
            rested = ", ".join(f"{name} ({value:+.3g})" for name, value in ex.top(i, k=3))
            evidence.append([f"{ex.columns[j]}: reading {series.values[i, j]:.6g}, forecast {ex.forecast[i, j]:.6g}; "
                             f"the forecast rested most on {rested}"])
        return Explanation(ex.scores, tuple(self.columns_), ex.per_variable, evidence)

    # --- the step --------------------------------------------------------------------------------
    def _variable_scores(self, past, x):
        if not self._boosters or len(past) < self.lags:
            return np.zeros(len(x))
        window = past[-self.lags :].T  # d x lags, oldest first
        base = np.median(window, axis=1)
        row = self._row(window, base, self._now)
        forecast = base + np.array([b.predict(row[None], num_threads=1)[0] for b in self._boosters])
        self._used = (row, base, forecast, self._boosters, self._names)
        return self._in_units(x - forecast)

    def _row(self, window: np.ndarray, base: np.ndarray, t: float) -> np.ndarray:
        """Features of one forecast: lags (newest first) relative to the baseline, the
        baseline, and the calendar when the model was fitted with one."""
        lagged = (window[:, ::-1] - base[:, None]).reshape(-1)
        calendar = _calendar(np.array([t]))[0] if self._calendar else np.empty(0)
        return np.concatenate([lagged, base, calendar])

    def _learned(self):
        super()._learned()
        self._times[(self._count - 1) % self.history] = self._now
        k = min(self._count, self.history)
        due = (not self._boosters and k >= max(self.warmup, self.lags + MIN_ROWS)) or (
            self._boosters and self._count - self._fitted_at >= min(self.refit_every, self._fitted_at))
        if due:
            self._fit_trees()

    def _fit_trees(self):
        lgb = _lightgbm()
        readings = self._recent()
        k = len(readings)
        times = np.roll(self._times, -(self._count % self.history))[self.history - k :]
        windows = sliding_window_view(readings, self.lags + 1, axis=0)  # rows x d x (lags + 1)
        lag_part, target = windows[..., :-1], windows[..., -1]
        base = np.median(lag_part, axis=2)
        lagged = (lag_part[..., ::-1] - base[..., None]).reshape(len(windows), -1)
        self._calendar = bool(np.isfinite(times).all())
        columns = [lagged, base] + ([_calendar(times[self.lags :])] if self._calendar else [])
        features = np.hstack(columns)
        rows = len(features)
        params = {"objective": "regression", "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
                  "min_data_in_leaf": max(2, min(20, rows // 10)), "max_bin": 63, "num_threads": 1,
                  "deterministic": True, "force_col_wise": True, "seed": 0, "verbose": -1}
        self._names = self._feature_names()
        self._boosters = [
            lgb.train(params, lgb.Dataset(features, target[:, j] - base[:, j], params={"verbose": -1}), num_boost_round=self.n_estimators)
            for j in range(target.shape[1])
        ]
        self._fitted_at = self._count

    def _feature_names(self) -> list[str]:
        names = [f"{c}[t-{lag}]" for c in self.columns_ for lag in range(1, self.lags + 1)]
        names += [f"{c} level" for c in self.columns_]
        return names + (["hour of day", "day of week"] if self._calendar else [])

    # --- state -----------------------------------------------------------------------------------
    def _reset(self):
        super()._reset()
        self._times = np.full(self.history, np.nan)
        self._boosters, self._names, self._calendar, self._fitted_at = [], [], False, 0
        self._used = None

    def _own_state(self):
        arrays, meta = super()._own_state()
        arrays = {**arrays, "times": np.nan_to_num(self._times, nan=-1.0),
                  "has_time": np.isfinite(self._times).astype(np.uint8)}
        for j, booster in enumerate(self._boosters):
            arrays[f"trees_{j}"] = np.frombuffer(booster.model_to_string().encode("utf-8"), dtype=np.uint8)
        return arrays, {**meta, "n_trees": len(self._boosters), "names": self._names,
                        "calendar": self._calendar, "fitted_at": self._fitted_at}

    def _set_own_state(self, arrays, meta):
        super()._set_own_state(arrays, meta)
        d = len(self.columns_)
        expect_arrays(arrays, {"times": (self.history,), "has_time": (self.history,)})
        n_trees = state_int(meta, "n_trees", 0)
        self._fitted_at = state_int(meta, "fitted_at", 0, self._count)
        names, calendar = meta.get("names"), meta.get("calendar")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not isinstance(calendar, bool):
            raise ModelFileError("model state 'names' must be a list of feature names and 'calendar' true or false")
        self._names, self._calendar = list(names), calendar
        if n_trees not in (0, d):
            raise ModelFileError(f"model holds {n_trees} forecasters for {d} variable(s)")
        if n_trees and names != self._feature_names():
            raise ModelFileError(f"model state 'names' does not list the {d * (self.lags + 1)} lag and level features "
                                 "(and the calendar) of its forecasters")
        lgb = _lightgbm()
        self._boosters = []
        for j in range(n_trees):
            expect_arrays(arrays, {f"trees_{j}": (None,)})
            try:
                text = arrays[f"trees_{j}"].astype(np.uint8).tobytes().decode("utf-8")
                booster = lgb.Booster(model_str=text)
            except (UnicodeDecodeError, lgb.basic.LightGBMError) as exc:
                raise ModelFileError(f"model array 'trees_{j}' is not a LightGBM text model: {exc}") from exc
            if booster.num_feature() != len(names):
                raise ModelFileError(f"model array 'trees_{j}' forecasts from {booster.num_feature()} features, "
                                     f"not the {len(names)} the model names")
            self._boosters.append(booster)
        self._times = np.where(arrays["has_time"].astype(bool), arrays["times"].astype(np.float64), np.nan)
        self._used = None

    def _measure_from(self):
        return max(self.warmup, self.lags + MIN_ROWS)

    def _check_params(self):
        super()._check_params()
        for name in ("lags", "refit_every", "n_estimators"):
            check_int(self, name, 1, MAX_MEMORY)
        check_int(self, "num_leaves", 2, 131072)  # LightGBM's own limit
        if self.history < self.lags + MIN_ROWS:
            raise DataError(f"history ({self.history}) must be at least lags + {MIN_ROWS} = {self.lags + MIN_ROWS}")
        if not (isinstance(self.learning_rate, (int, float)) and not isinstance(self.learning_rate, bool)
                and 0 < self.learning_rate <= 1):
            raise DataError(f"learning_rate must be in (0, 1], got {self.learning_rate!r}")


def _calendar(seconds: np.ndarray) -> np.ndarray:
    """Hour of day (fractional) and day of week (0 = Monday) in UTC; NaN stays NaN, which
    LightGBM treats as missing."""
    hour = np.mod(seconds, DAY) / 3600.0
    weekday = np.floor(np.mod(seconds - MONDAY, WEEK) / DAY)
    return np.column_stack([hour, weekday])


__all__ = ["ForecastExplanation", "GBTForecast"]

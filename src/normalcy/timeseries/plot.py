"""A picture of a scored series: each variable, the anomaly score against the threshold, the
flagged spans and, when known, the labelled windows.

The figure is drawn with matplotlib's Agg canvas on a `Figure` object (no pyplot), so it
never touches the caller's backend or global state. Long series are decimated to the min and
max of each pixel-wide bucket, so a one-reading spike still reaches its full height.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass

import numpy as np

from normalcy.core.errors import DataError
from normalcy.timeseries import metrics
from normalcy.timeseries.data import TimeSeries

MAX_PANELS = 6
WIDTH_PX = 1400
DPI = 100
# Heights in pixels: the title lines, each variable's panel, the score panel with the time axis.
HEADER_PX, PANEL_PX, SCORE_PX = 90, 150, 230
FLAG_COLOUR, WINDOW_COLOUR, SCORE_COLOUR, SERIES_COLOUR = "#d62728", "#2ca02c", "#9467bd", "#1f77b4"


@dataclass(frozen=True)
class ScoredSeries:
    """A series with its causal scores (n), per-variable raw scores (n x d), the alert
    threshold and, when known, the labelled windows as inclusive (start, end) reading indices."""

    series: TimeSeries
    scores: np.ndarray
    per_variable: np.ndarray
    threshold: float
    windows: list[tuple[int, int]] | None = None

    def __post_init__(self):
        n, d = self.series.values.shape
        if self.scores.shape != (n,) or self.per_variable.shape != (n, d):
            raise DataError(f"scores {self.scores.shape} and per-variable scores {self.per_variable.shape} "
                            f"do not match a series of {n} readings x {d} variables")
        for a, b in self.windows or []:
            if not 0 <= a <= b < n:
                raise DataError(f"labelled window ({a}, {b}) is outside the series of {n} readings")

    def spans(self) -> list["Span"]:
        return flagged_spans(self.scores, self.per_variable, self.threshold, self.series.columns)


@dataclass(frozen=True)
class Span:
    """Consecutive flagged readings start..end (inclusive), the reading with the highest
    score, and the variables that had the top per-variable score at the span's readings, the
    most frequent first."""

    start: int
    end: int
    peak: int
    peak_score: float
    drivers: list[str]


def flagged_spans(scores, per_variable, threshold: float, columns: list[str]) -> list[Span]:
    """Runs of readings scoring at or above `threshold`, each with its peak and drivers."""
    scores = np.asarray(scores, dtype=np.float64)
    per_variable = np.asarray(per_variable, dtype=np.float64).reshape(len(scores), -1)
    spans = []
    for a, stop in metrics.ranges((scores >= threshold).astype(np.int8)):
        peak = a + int(np.argmax(scores[a:stop]))
        # Counter keeps first-seen order among equal counts, so ties go to the earliest driver.
        counts = Counter(per_variable[a:stop].argmax(axis=1).tolist())
        drivers = [columns[j] for j, _ in counts.most_common()]
        spans.append(Span(a, stop - 1, peak, float(scores[peak]), drivers))
    return spans


def decimate(values, buckets: int) -> np.ndarray:
    """Indices of the readings to draw: the first, the last, and the min and max of each of
    `buckets` equal runs of readings, in order. Everything when there are few readings."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n <= 2 * buckets:
        return np.arange(n)
    size = -(-n // buckets)
    blocks = np.full(-(-n // size) * size, np.nan)
    blocks[:n] = values
    blocks = blocks.reshape(-1, size)
    offsets = np.arange(len(blocks)) * size
    return np.unique(np.r_[0, offsets + np.nanargmin(blocks, axis=1), offsets + np.nanargmax(blocks, axis=1), n - 1])


def chosen_variables(per_variable: np.ndarray, max_panels: int) -> list[int]:
    """The variables to draw, in their own order: all of them, or the `max_panels` with the
    highest peak per-variable score."""
    d = per_variable.shape[1]
    if d <= max_panels:
        return list(range(d))
    return sorted(np.argsort(-per_variable.max(axis=0), kind="stable")[:max_panels].tolist())


def figure_height(n_panels: int) -> int:
    return HEADER_PX + PANEL_PX * n_panels + SCORE_PX


def plot_png(scored: ScoredSeries, title: str, max_panels: int = MAX_PANELS, width: int = WIDTH_PX) -> bytes:
    """The figure as PNG bytes, `width` x figure_height(panels) pixels."""
    from matplotlib import dates as mdates
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure

    series, scores = scored.series, scored.scores
    n = len(series)
    shown = chosen_variables(scored.per_variable, max_panels)
    left_out = [c for j, c in enumerate(series.columns) if j not in shown]
    spans = scored.spans()
    if series.timestamps is not None:
        x = mdates.date2num(series.timestamps)
        step = float(np.median(np.diff(x))) if n > 1 else 1.0 / 24
    else:
        x, step = np.arange(n, dtype=np.float64), 1.0
    # A span covers its readings up to the next one, and at least 3 pixels, so a single
    # flagged reading in a long series is still visible.
    right = np.r_[x[1:], x[-1] + step]
    min_width = 3 * (right[-1] - x[0]) / width

    fig = Figure(figsize=(width / DPI, figure_height(len(shown)) / DPI), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(shown) + 1, 1, sharex=True,
                        gridspec_kw={"height_ratios": [PANEL_PX] * len(shown) + [SCORE_PX - 60]})

    def shade(ax, ranges, colour, alpha, label=None):
        if ranges:
            ends = [max(right[b], x[a] + min_width) for a, b in ranges]
            boxes = [[(x[a], 0), (x[a], 1), (e, 1), (e, 0)] for (a, _), e in zip(ranges, ends)]
            ax.add_collection(PolyCollection(boxes, transform=ax.get_xaxis_transform(), facecolor=colour,
                                             edgecolor=colour, linewidth=0.5, alpha=alpha, label=label))

    flagged = [(s.start, s.end) for s in spans]
    for ax, j in zip(axes, shown):
        shade(ax, scored.windows, WINDOW_COLOUR, 0.18)
        # Spans this variable drove stand out on its panel; the others stay faint.
        drove = [series.columns[j] in s.drivers for s in spans]
        shade(ax, [f for f, d in zip(flagged, drove) if d], FLAG_COLOUR, 0.3)
        shade(ax, [f for f, d in zip(flagged, drove) if not d], FLAG_COLOUR, 0.08)
        keep = decimate(series.values[:, j], width)
        ax.plot(x[keep], series.values[keep, j], color=SERIES_COLOUR, linewidth=0.8)
        # Mark where this variable drove a span: its most unusual reading in that span.
        marks = [s.start + int(np.argmax(scored.per_variable[s.start : s.end + 1, j]))
                 for s, d in zip(spans, drove) if d]
        if marks:
            ax.plot(x[marks], series.values[marks, j], "o", color=FLAG_COLOUR, markersize=3.5)
        name = series.columns[j]
        ax.set_ylabel(name if len(name) <= 18 else name[:17] + "…", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.margins(y=0.08)

    ax = axes[-1]
    shade(ax, scored.windows, WINDOW_COLOUR, 0.18, "labelled window")
    shade(ax, flagged, FLAG_COLOUR, 0.25, "flagged span")
    keep = decimate(scores, width)
    ax.plot(x[keep], scores[keep], color=SCORE_COLOUR, linewidth=0.8, label="anomaly score")
    # fpr thresholds over scores that are mostly 0 land on the smallest float above 0.
    level = "just above 0" if 0 < scored.threshold < 1e-12 else f"{scored.threshold:.3g}"
    ax.axhline(scored.threshold, color="black", linestyle="--", linewidth=0.9, label=f"threshold {level}")
    if spans:
        ax.plot([], [], "o", color=FLAG_COLOUR, markersize=3.5, label="driving variable's peak in a span")
    ax.set_ylabel("score", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.legend(loc="upper left", fontsize=8, ncols=5, framealpha=0.9)
    ax.set_xlim(x[0], right[-1])
    if series.timestamps is not None:
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    else:
        ax.set_xlabel("reading", fontsize=9)

    n_flagged = int((scores >= scored.threshold).sum())
    subtitle = f"{n:,} readings, {n_flagged:,} flagged in {len(spans):,} span(s)"
    if scored.windows is not None:
        subtitle += f"; {len(scored.windows)} labelled window(s)"
    if left_out:
        names = ", ".join(left_out[:8]) + (f" and {len(left_out) - 8} more" if len(left_out) > 8 else "")
        subtitle += f"\nshowing the {len(shown)} of {len(series.columns)} variables with the highest peak scores; left out: {names}"
    fig.suptitle(f"{title}\n{subtitle}", fontsize=10, x=0.01, ha="left")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()

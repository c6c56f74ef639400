"""A self-contained HTML page of a scored series: the facts of the run, the metrics when
labels are known, the figure (PNG inlined as base64) and a table of the flagged spans with
their times, peak scores and the variables that drove them."""

from __future__ import annotations

import base64
import html

import numpy as np
import pandas as pd

from normalcy.timeseries.plot import MAX_PANELS, ScoredSeries, Span, chosen_variables

MAX_ROWS = 500

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:12px 0;font-size:14px}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}
img{max-width:100%;border:1px solid #ddd}.labelled{background:#e6f4e6}
"""


def report_html(scored: ScoredSeries, title: str, png: bytes, facts: dict,
                metrics: dict | None = None, max_panels: int = MAX_PANELS) -> str:
    """The page as text; `png` is the figure from `plot_png`, `facts` what was run on what."""
    series, spans = scored.series, scored.spans()
    shown = chosen_variables(scored.per_variable, max_panels)
    left_out = [c for j, c in enumerate(series.columns) if j not in shown]
    facts = {**facts, "readings": len(series), "variables": ", ".join(series.columns),
             "threshold": scored.threshold, "flagged readings": int((scored.scores >= scored.threshold).sum()),
             "flagged spans": len(spans)}
    parts = [f"<h1>{html.escape(title)}</h1>", _table(facts)]
    if metrics:
        parts += ["<h2>Metrics against the labels</h2>", _table(metrics)]
    parts.append(f'<img alt="series, score and flagged spans" src="data:image/png;base64,{base64.b64encode(png).decode()}">')
    if left_out:
        parts.append(f"<p>The figure shows the {len(shown)} variables with the highest peak scores; "
                     f"left out: {html.escape(', '.join(left_out))}.</p>")
    if scored.windows is not None:
        parts.append(f"<h2>Labelled windows</h2>{_windows(scored)}")
    parts.append(f"<h2>Flagged spans</h2>{_spans(scored, spans)}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>")


def reading_time(series, i: int) -> str:
    """A reading's timestamp, or its position when the series has no time."""
    return str(pd.Timestamp(series.timestamps[i])) if series.timestamps is not None else f"reading {i}"


def _spans(scored: ScoredSeries, spans: list[Span]) -> str:
    if not spans:
        return "<p>No reading reached the threshold.</p>"
    labelled = np.zeros(len(scored.series), dtype=bool)
    for a, b in scored.windows or []:
        labelled[a : b + 1] = True
    # The strongest spans first, so a long table still leads with what matters.
    ranked = sorted(spans, key=lambda s: (-s.peak_score, s.start))
    head = ["#", "start", "end", "readings", "peak score", "peak at", "driven by"]
    if scored.windows is not None:
        head.append("in a labelled window")
    rows = []
    for rank, s in enumerate(ranked[:MAX_ROWS], 1):
        inside = bool(labelled[s.start : s.end + 1].any())
        cells = [str(rank), reading_time(scored.series, s.start), reading_time(scored.series, s.end),
                 str(s.end - s.start + 1), f"{s.peak_score:.4g}", reading_time(scored.series, s.peak),
                 ", ".join(s.drivers)]
        if scored.windows is not None:
            cells.append("yes" if inside else "no")
        rows.append(f"<tr{' class=labelled' if scored.windows is not None and inside else ''}>"
                    + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    note = (f"<p>The {MAX_ROWS} spans with the highest peaks of {len(spans)}.</p>" if len(spans) > MAX_ROWS else "")
    return (f"{note}<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{''.join(rows)}</table>"
            "<p>Driven by: the variables with the highest own score at the span's readings, most often first.</p>")


def _windows(scored: ScoredSeries) -> str:
    if not scored.windows:
        return "<p>None in this series.</p>"
    flagged = scored.scores >= scored.threshold
    rows = []
    for a, b in scored.windows:
        hits = np.flatnonzero(flagged[a : b + 1])
        found = f"first flagged at {reading_time(scored.series, a + int(hits[0]))}" if hits.size else "missed"
        cells = [reading_time(scored.series, a), reading_time(scored.series, b), str(b - a + 1), found]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("start", "end", "readings", "detection"))
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _table(values: dict) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in values.items())
    return f"<table>{rows}</table>"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "n/a"
    return html.escape(str(value))

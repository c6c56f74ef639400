"""Log models on Spark: raw lines in, one score per session, window or line out, as
`LogModel.decision_function` gives them in one process.

1. Every line gets its line number (reading order: the input's partitions in order, rows in
   order within each; the numbers come from each partition's row count, so nothing is funnelled
   through one task).
2. Each Arrow batch of lines goes through the model's own header format and template parser
   (matching only), giving each line its event id and, by the model's grouping: the session
   ids its content names (`group_by`), its time (windows) or nothing (every line its own group).
3. Windows only: a line without a readable time takes the time of the line before it (across
   partitions too), lines before the first time take that first time, and the first line's
   time anchors the windows, as in `normalcy.logs.sessions.by_time`.
4. Lines are spread to their groups, each group's events are gathered in line order, and
   batches of groups are scored by the model's sequence detector. A semantic detector also
   gets what `LogModel.sequences` gives it: each line's log level, and each line no template
   matched under an id of its own with its masked text.

Output: one row per group: `group` (the session id, the window's start as "2005-12-04
04:47:44", or the line number), `lines` (lines in it), `first_line`, `score`, `label`.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from normalcy.core.results import Prediction
from normalcy.core.threads import thread_limit

_LINE, _ID, _T, _EVENT, _GROUPS, _TEXT, _LEVEL = "__line", "__id", "__t", "__event", "__groups", "__text", "__level"
_ROW_BITS = 33  # monotonically_increasing_id: partition index above bit 33, row within it below


def score_logs(df, detector, where: str, shipped: bool, digest: str, column: str, threads: int):
    """The per-group scores of the lines in `column` (see the module docstring); lazy."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    spark = df.sparkSession
    lines = _numbered(df.select(F.col(column).alias("line")))
    unit = detector.unit
    parsed_schema = (f"{_LINE} long, {_ID} long, {_T} double, {_EVENT} long, {_GROUPS} array<string>, "
                     f"{_TEXT} string, {_LEVEL} string")
    parsed = lines.mapInPandas(partial(_parse_batches, where, shipped, digest, unit), parsed_schema)
    if unit == "windows":
        parsed = _filled_times(spark, parsed, Window)
        first = parsed.agg(F.min(_T)).first()[0]  # windows start at the earliest time, as by_time's
        step = float(detector.window if detector.step is None else detector.step)
        spread = parsed.mapInPandas(partial(_window_rows, first, float(detector.window), step),
                                    f"__group string, {_LINE} long, {_EVENT} long, {_TEXT} string, {_LEVEL} string")
    else:
        spread = parsed.select(F.explode(_GROUPS).alias("__group"), _LINE, _EVENT, _TEXT, _LEVEL)
    gathered = spread.groupBy("__group").agg(
        F.sort_array(F.collect_list(F.struct(_LINE, _EVENT, _TEXT, _LEVEL))).alias("events"))
    schema = "group string, lines long, first_line long, score double, label tinyint"
    return gathered.mapInPandas(partial(_score_groups, where, shipped, digest, threads), schema)


def _numbered(lines):
    """`lines` with its line number (1-based, reading order) in __line."""
    from pyspark.sql import functions as F

    with_id = lines.withColumn(_ID, F.monotonically_increasing_id())
    part = F.shiftright(F.col(_ID), _ROW_BITS)
    counts = sorted(tuple(r) for r in with_id.groupBy(part.alias("p")).count().collect())
    offsets, total = {}, 0
    for p, n in counts:
        offsets[p] = total
        total += n
    mapping = F.create_map(*[x for p, o in offsets.items() for x in (F.lit(p), F.lit(o))]) if offsets else F.lit(None)
    row = F.col(_ID).bitwiseAND((1 << _ROW_BITS) - 1)
    return with_id.withColumn(_LINE, mapping[part] + row + 1)


def _parse_batches(where, shipped, digest, unit, batches):
    from normalcy.logs.parser import UNSEEN
    from normalcy.logs.patterns import Pattern
    from normalcy.spark.score import worker_model

    model = worker_model(where, shipped, digest, threads=0)
    texts = getattr(model.detector_, "needs_templates", False)
    pattern = Pattern(model.group_by, "--group-by") if unit == "sessions" else None
    for frame in batches:
        if not len(frame):
            continue
        numbers = frame[_LINE].to_numpy()
        records = model.records(frame["line"].tolist())
        events = model.parser_.transform(records.contents)
        if unit == "sessions":
            groups = [list(dict.fromkeys(pattern.findall(c, f"line {n}"))) for c, n in zip(records.contents, numbers)]
        elif unit == "lines":
            groups = [[str(n)] for n in numbers]
        else:
            groups = [[] for _ in numbers]
        times = np.array([np.nan if t is None else t for t in records.times], dtype=np.float64)
        unseen = [model.parser_.mask(c) if texts and e == UNSEEN else "" for c, e in zip(records.contents, events)]
        yield pd.DataFrame({_LINE: numbers, _ID: frame[_ID].to_numpy(), _T: times, _EVENT: events, _GROUPS: groups,
                            _TEXT: unseen, _LEVEL: [level or "" for level in records.levels]})


def _filled_times(spark, parsed, Window):
    """Each line's time, or the last time before it in reading order; lines before any time take
    the first time (`normalcy.logs.sessions._filled_times`, across partitions)."""
    from pyspark.sql import functions as F

    from normalcy.core.errors import DataError

    part = F.shiftright(F.col(_ID), _ROW_BITS)
    parsed = parsed.withColumn("__p", part).withColumn(_T, F.when(F.isnan(_T), None).otherwise(F.col(_T)))
    ends = {r["__p"]: (r["first"], r["last"]) for r in parsed.where(F.col(_T).isNotNull()).groupBy("__p").agg(
        F.min_by(_T, _LINE).alias("first"), F.max_by(_T, _LINE).alias("last")).collect()}
    if not ends:
        raise DataError("time windows need line times, but no line had one: choose a --format whose header holds a "
                        "time (e.g. hdfs, bgl, syslog, apache-error) or group by identifier with --group-by")
    ordered = sorted(ends)
    first_time = ends[ordered[0]][0]
    carry, before = {}, first_time  # the last time of the partitions before each one
    for p in range(max(ordered) + 1):
        carry[p] = before
        if p in ends:
            before = ends[p][1]
    mapping = F.create_map(*[x for p, t in carry.items() for x in (F.lit(p), F.lit(t))])
    running = F.last(_T, ignorenulls=True).over(
        Window.partitionBy("__p").orderBy(_LINE).rowsBetween(Window.unboundedPreceding, 0))
    return parsed.withColumn(_T, F.coalesce(running, mapping[F.col("__p")]))


def _window_rows(first, window, step, batches):
    """Each line once per window it falls in (`normalcy.logs.sessions.by_time`'s rule), the
    window named by its start."""
    from normalcy.logs.formats import time_name

    overlap = int(np.ceil(window / step))
    for frame in batches:
        offset = frame[_T].to_numpy() - first
        last_k = np.floor(offset / step).astype(np.int64)
        ks, rows = [], []
        for d in range(overlap):
            k = last_k - d
            inside = (k >= 0) & (offset < k * step + window)
            ks.append(k[inside])
            rows.append(np.flatnonzero(inside))
        ks, rows = np.concatenate(ks), np.concatenate(rows)
        names = {k: time_name(first + k * step) for k in np.unique(ks)}
        yield pd.DataFrame({"__group": [names[k] for k in ks], _LINE: frame[_LINE].to_numpy()[rows],
                            _EVENT: frame[_EVENT].to_numpy()[rows], _TEXT: frame[_TEXT].to_numpy()[rows],
                            _LEVEL: frame[_LEVEL].to_numpy()[rows]})


def _score_groups(where, shipped, digest, threads, batches):
    from normalcy.spark.score import worker_model

    model = worker_model(where, shipped, digest, threads)
    for frame in batches:
        if not len(frame):
            continue
        seqs = [np.array([e[_EVENT] for e in events], dtype=np.int64) for events in frame["events"]]
        if getattr(model.detector_, "needs_templates", False):
            seqs = _with_texts(model, seqs, frame["events"])
        with thread_limit(threads or None):
            scores = model.detector_.decision_function(seqs)
        prediction = Prediction.from_scores(scores, model.threshold_)
        yield pd.DataFrame({"group": frame["__group"], "lines": [len(s) for s in seqs],
                            "first_line": [int(events[0][_LINE]) for events in frame["events"]],
                            "score": prediction.scores, "label": prediction.labels})


def _with_texts(model, seqs, gathered):
    """The groups as `Events`, as `LogModel.sequences` gives them: each distinct unseen masked
    text under an id of its own (negative; ids need only be consistent within one call), and
    each line's level."""
    from normalcy.logs.parser import UNSEEN
    from normalcy.logs.semantic import with_templates

    templates = model.parser_.templates()
    unseen: dict[str, int] = {}
    for seq, events in zip(seqs, gathered):
        for p in np.flatnonzero(seq == UNSEEN):
            seq[p] = unseen.setdefault(events[p][_TEXT], -1 - len(unseen))
    templates.update({k: text for text, k in unseen.items()})
    return with_templates(seqs, templates, [[e[_LEVEL] for e in events] for events in gathered])

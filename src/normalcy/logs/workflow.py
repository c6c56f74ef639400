"""The log jobs behind the CLI: one result row per group with its evidence, written as JSON
lines or CSV (whole or not at all), and evaluation against known labels."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np

from normalcy.core import metrics
from normalcy.core.benchmark import write_atomic
from normalcy.core.errors import DataError
from normalcy.logs.formats import LogRecords
from normalcy.logs.model import Analysis, LogModel
from normalcy.logs.patterns import Pattern
from normalcy.logs.sessions import Groups

OUTPUT_FIELDS = ("group", "score", "label", "n_lines", "first_line", "evidence_lines", "evidence_templates",
                 "reasons")


def result_rows(model: LogModel, analysis: Analysis, max_lines: int = 10) -> list[dict]:
    """Per group: key, score, label, size, where it starts, and the lines and templates to blame
    (at most `max_lines` lines)."""
    rec = analysis.records
    rows = []
    for g, key in enumerate(analysis.groups.keys):
        idx = analysis.groups.lines[g]
        ev = analysis.blame[g]
        blamed = [int(idx[p]) for p in ev.positions[:max_lines]]
        rows.append({
            "group": key,
            "score": float(analysis.scores[g]),
            "label": None if analysis.labels is None else int(analysis.labels[g]),
            "n_lines": int(len(idx)),
            "first_line": f"{rec.source[idx[0]]}:{rec.line_no[idx[0]]}",
            "evidence_lines": [f"{rec.source[i]}:{rec.line_no[i]}" for i in blamed],
            "evidence_templates": model.templates(rec, analysis.event_ids, idx, ev, max_lines),
            "reasons": ev.reasons,
        })
    return rows


def write_rows(rows: list[dict], out: str | Path) -> None:
    """JSON lines (``.jsonl``, ``.json``, or ``-`` for stdout) or CSV (``.csv``; lists joined by
    `` | ``), chosen by the extension; a file appears whole or not at all."""
    name = str(out)
    kind = output_kind(name)
    if kind == "jsonl":
        text = "".join(json.dumps(r) + "\n" for r in rows)
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=OUTPUT_FIELDS, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: " | ".join(v) if isinstance(v, list) else v for k, v in r.items()})
        text = buf.getvalue()
    if name == "-":
        sys.stdout.write(text)
    else:
        write_atomic(Path(out), text)


def output_kind(name: str) -> str:
    if name == "-" or name.endswith((".jsonl", ".json")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    raise DataError(f"output {name}: expected a .jsonl, .json or .csv file, or - for stdout")


def group_labels(analysis: Analysis, alert_regex: str | None = None, labels_file: str | Path | None = None) -> np.ndarray:
    """Known labels per analysed group (`labels_of`)."""
    return labels_of(analysis.records, analysis.groups, alert_regex, labels_file)


def labels_of(records: LogRecords, groups: Groups, alert_regex: str | None = None,
              labels_file: str | Path | None = None) -> np.ndarray:
    """Known labels per group: from a regex marking alert lines (a group holding one is
    anomalous; matched against the raw line), or from a CSV of ``group,label`` rows (0/1 or
    Normal/Anomaly, as in loghub's anomaly_label.csv)."""
    if (alert_regex is None) == (labels_file is None):
        raise DataError("labelled groups need exactly one of --alert-regex or --labels")
    if alert_regex is not None:
        regex, rec = Pattern(alert_regex, "--alert-regex"), records
        alert = np.array([regex.search(line, lambda: f"{rec.source[i]}:{rec.line_no[i]}") is not None
                          for i, line in enumerate(rec.raw)])
        return np.array([int(alert[idx].any()) for idx in groups.lines])
    known = read_label_file(labels_file)
    missing = [k for k in groups.keys if k not in known]
    if missing:
        raise DataError(f"{labels_file} has no label for {len(missing)} group(s), e.g. {missing[0]!r}")
    return np.array([known[k] for k in groups.keys])


def read_label_file(path: str | Path) -> dict[str, int]:
    values = {"0": 0, "1": 1, "normal": 0, "anomaly": 1}
    known = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for n, row in enumerate(csv.reader(fh), 1):
                if len(row) < 2:
                    raise DataError(f"{path}:{n}: expected group,label")
                label = values.get(row[1].strip().lower())
                if label is None:
                    if n == 1:
                        continue  # a header
                    raise DataError(f"{path}:{n}: label {row[1]!r} is not 0/1 or Normal/Anomaly")
                known[row[0].strip()] = label
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a UTF-8 CSV file of group,label rows") from None
    return known


def evaluate(model: LogModel, analysis: Analysis, labels: np.ndarray) -> dict:
    """Precision, recall, F1 and the confusion counts at the model's threshold, plus AUROC,
    AUPRC and best F1 where both classes occur."""
    if analysis.labels is None:
        raise DataError("the model has no threshold; refit it with --threshold")
    result = {"detector": model.detector, "n_groups": int(len(labels)), "n_anomalies": int(labels.sum()),
              "threshold": model.threshold_}
    if 0 < labels.sum() < len(labels):
        f1, f1_threshold = metrics.f1_max(labels, analysis.scores)
        result.update(auroc=metrics.auroc(labels, analysis.scores), auprc=metrics.auprc(labels, analysis.scores),
                      f1_max=f1, f1_max_threshold=f1_threshold)
    result.update(metrics.binary_scores(labels, analysis.scores, model.threshold_))
    return result

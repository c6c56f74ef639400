"""The API jobs behind the CLI: check access logs against a model and write one row per request
(or per flagged request) with the invariants it breaks, as JSON lines or CSV, whole or not at
all."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from normalcy.api.access import WHERE, read_requests
from normalcy.api.mines import Mines
from normalcy.core.benchmark import write_atomic
from normalcy.logs.workflow import output_kind

FIELDS = ("where", "time", "user", "method", "path", "query", "status", "score", "label", "violations")


def check_rows(model: Mines, source, flagged_only: bool = True) -> tuple[list[dict], int]:
    """Rows of the requests in `source` (files or lines) in input order, and how many requests
    were checked."""
    frame, _ = read_requests(source, model.log_format)
    explanation = model.explain(frame)
    rows = []
    for i, request in enumerate(frame.itertuples(index=False)):
        score = float(explanation.scores[i])
        if flagged_only and score < model.threshold_:
            continue
        rows.append({"where": getattr(request, WHERE), "time": float(request.time), "user": request.user,
                     "method": request.method, "path": request.path, "query": request.query,
                     "status": None if request.status != request.status else int(request.status),
                     "score": score, "label": int(score >= model.threshold_), "violations": explanation.evidence[i]})
    return rows, len(frame)


def write_rows(rows: list[dict], out: str | Path) -> None:
    """JSON lines (.jsonl, .json, or - for stdout) or CSV (.csv; violations joined by " | ")."""
    name = str(out)
    if output_kind(name) == "jsonl":
        text = "".join(json.dumps(r) + "\n" for r in rows)
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "violations": " | ".join(r["violations"])})
        text = buffer.getvalue()
    if name == "-":
        sys.stdout.write(text)
    else:
        write_atomic(Path(out), text)

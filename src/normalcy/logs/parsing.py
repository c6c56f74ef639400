"""How well the parser groups lines: grouping accuracy against loghub's ground truth.

Grouping accuracy (Zhu et al., "Tools and Benchmarks for Automated Log Parsing", ICSE-SEIP
2019; `evaluator.get_accuracy` in logpai/logparser): a line is parsed correctly when the lines
the parser gave its event are exactly the lines the ground truth gives its event (the parsed
group is one whole true group, no more, no less); the accuracy is the share of lines parsed
correctly. Template texts do not matter, only the grouping.

The loghub 2k samples (`<System>/<System>_2k.log_structured.csv`) hold each line's content
(the message after the header, `Content`) and its true event (`EventId`); the parser reads the
contents, as logparser's benchmark does after splitting the headers.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from pathlib import Path

import numpy as np

from normalcy.core.errors import DataError
from normalcy.logs.parser import LogParser


def grouping_accuracy(truth, parsed) -> float:
    """Share of lines whose parsed event groups exactly the lines of their true event."""
    truth, parsed = np.asarray(truth), np.asarray(parsed)
    if truth.shape != parsed.shape or truth.ndim != 1 or not len(truth):
        raise DataError(f"grouping accuracy needs one true and one parsed event per line, got {truth.shape} and "
                        f"{parsed.shape}")
    true_sizes = Counter(truth.tolist())
    correct = 0
    for event in np.unique(parsed):
        members = truth[parsed == event]
        if (members == members[0]).all() and true_sizes[members[0]] == len(members):
            correct += len(members)
    return correct / len(truth)


def read_structured(path: Path) -> tuple[list[str], list[str]]:
    """(contents, true event ids) of a loghub `_structured.csv`."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if not rows or not {"Content", "EventId"} <= set(rows[0]):
        raise DataError(f"{path}: expected a loghub structured CSV with Content and EventId columns")
    return [r["Content"] for r in rows], [r["EventId"] for r in rows]


def loghub_systems(folder: Path) -> list[Path]:
    """The structured CSVs of the loghub systems under `folder`, by system name."""
    found = sorted(folder.glob("*/*_2k.log_structured.csv"))
    if not found:
        raise DataError(f"no loghub systems under {folder} (expected <System>/<System>_2k.log_structured.csv)")
    return found


def accuracy_records(folder: Path, **parser_args) -> list[dict]:
    """Grouping accuracy, templates found and true, and mining speed per loghub system."""
    records = []
    for path in loghub_systems(folder):
        contents, truth = read_structured(path)
        start = time.perf_counter()
        parser = LogParser(**parser_args)
        ids = parser.fit(contents)
        seconds = time.perf_counter() - start
        records.append({"detector": "parser", "dataset": f"loghub/{path.parent.name}",
                        "grouping_accuracy": grouping_accuracy(truth, ids), "n_templates": parser.n_templates,
                        "n_true_templates": len(set(truth)), "n_lines": len(contents),
                        "lines_per_second": len(contents) / seconds})
    return records

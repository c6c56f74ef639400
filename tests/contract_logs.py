"""Sample data for the detector contract (tests/test_contract.py) on the log detectors, which
score event-id sequences (one per session): a normal session opens (1), writes and acks k
times (2, 5), may retry once (6) and closes (3); anomalies skip the close, repeat writes
without acks or bring an event never seen. The sessions are `Events`, which carry each
event's template text for the semantic detectors (the others read the ids alone); the
unseen events 7 and 9 have texts too, one close to a known template and one far from all.
Hostile inputs: no sessions, an empty session, ids that are NaN, infinite, fractional or past
the 64-bit range, negative ids, text, one session and things that are no list of sessions at
all; they are plain lists, so the semantic detectors also meet ids without a text."""

from __future__ import annotations

import numpy as np

from normalcy.core.checks import Case
from normalcy.logs.semantic import with_templates

# The semantic detectors embed with the lexical "hashing" embedder here, which needs no model;
# tests/test_logs_semantic.py covers all-MiniLM-L6-v2.
PARAMS = {"deeplog": {"window": 3, "top_k": 2, "hidden": 8, "layers": 1, "embedding": 4, "epochs": 2,
                      "batch_size": 64},
          "semantic-seq": {"embedder": "hashing", "window": 3, "hidden": 8, "epochs": 2, "batch_size": 64,
                           "n_models": 2},
          "semantic-bag": {"embedder": "hashing"}}
TEMPLATES = {1: "open file <PATH> for writing", 2: "write block <NUM> of <NUM> bytes", 3: "close file <PATH>",
             5: "ack block <NUM> written", 6: "retry write of block <NUM> after timeout",
             7: "closing file <PATH>", 9: "kernel panic: fatal machine check exception"}


def session(rng: np.random.Generator) -> list[int]:
    seq = [1]
    for _ in range(int(rng.integers(0, 4))):
        seq += [2, 5]
    if rng.random() < 0.3:
        seq.insert(int(rng.integers(1, len(seq) + 1)), 6)
    return seq + [3]


def case() -> Case:
    rng = np.random.default_rng(5)
    fit = [session(rng) for _ in range(60)]
    anomalies = [[1, 2, 5, 2, 5], [1, 2, 2, 2, 3], [2, 2, 2, 2], [1, 9, 3], [1, 2, 5, 7, 7, 3], [1, 5, 5, 5, 3]]
    test = [session(rng) for _ in range(20)] + anomalies
    labels = np.r_[np.zeros(20), np.ones(len(anomalies))].astype(int)
    hostile = [
        ("no sessions", []),
        ("an empty session", [[1, 3], []]),
        ("a NaN id", [[1, np.nan, 3]]),
        ("an infinite id", [[1, np.inf]]),
        ("an id of 1e308", [[1.0, 1e308]]),
        ("a fractional id", [[1, 2.5, 3]]),
        ("negative and huge ids", [[-5, -1, 3], [2 ** 62, 1]]),
        ("ids as whole floats", [[1.0, 2.0, 5.0, 3.0]]),
        ("text ids", [["open", "close"]]),
        ("one session", [[1, 2, 5, 3]]),
        ("a string", "1 2 3"),
        ("a number", 42),
        ("a ragged nesting", [[[1, 2], [3]]]),
        ("a long session", [[1] + [2, 5] * 500 + [3]]),
    ]
    return Case(with_templates(fit, TEMPLATES), with_templates(test, TEMPLATES), labels, hostile)

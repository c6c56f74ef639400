"""A whole log model: header format, template parser, grouping and one detector, saved as one
model folder. This is what `normalcy logs fit` writes and `score` reads.

Grouping is by identifier (`group_by`, a regex), by time windows (`window` and `step`, in
seconds), or else every line is its own group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from normalcy.core.detector import Detector
from normalcy.core.errors import DataError, ModelFileError
from normalcy.logs import DETECTORS
from normalcy.logs.base import Evidence, SequenceDetector
from normalcy.logs.formats import LogRecords, get_format, records_from_lines
from normalcy.logs.parser import LogParser
from normalcy.logs.sessions import Groups, by_identifier, by_time


@dataclass
class Analysis:
    records: LogRecords
    event_ids: np.ndarray
    groups: Groups
    sequences: list[np.ndarray]
    scores: np.ndarray
    labels: np.ndarray | None
    evidence: list[Evidence]


class LogModel(Detector):
    def __init__(self, detector: str = "invariants", log_format: str = "raw", group_by: str | None = None,
                 window: float | None = None, step: float | None = None, detector_params: dict | None = None,
                 sim_th: float = 0.4, depth: int = 4, max_children: int = 100):
        self.detector = detector
        self.log_format = log_format
        self.group_by = group_by
        self.window = window
        self.step = step
        self.detector_params = detector_params
        self.sim_th = sim_th
        self.depth = depth
        self.max_children = max_children

    # --- fitting -------------------------------------------------------------------------
    def fit(self, X, y=None) -> "LogModel":
        records = self.records(X)
        self.parser_ = LogParser(self.sim_th, self.depth, self.max_children)
        event_ids = self.parser_.fit(records.contents)
        groups = self.group(records)
        self.detector_ = self._new_detector().fit(groups.sequences(event_ids))
        self.threshold_ = self.detector_.threshold_
        return self

    def fit_holdout(self, X, holdout: float, strategy, seed: int = 0) -> "LogModel":
        """Mine templates from all lines, fit the detector on the groups less a random
        `holdout` fraction, and set the threshold from the held-out groups' scores by
        `strategy` (a false-alarm rate needs no labels: held-out groups are taken as normal)."""
        records = self.records(X)
        self.parser_ = LogParser(self.sim_th, self.depth, self.max_children)
        seqs = self.group(records).sequences(self.parser_.fit(records.contents))
        n_held = int(round(holdout * len(seqs)))
        if not 0 < n_held < len(seqs):
            raise DataError(f"a threshold from held-out groups needs groups to fit and to hold out: {len(seqs)} "
                            f"groups, holdout {holdout} holds out {n_held}; change --holdout or use --threshold own")
        order = np.random.default_rng(seed).permutation(len(seqs))
        self.detector_ = self._new_detector().fit([seqs[i] for i in np.sort(order[n_held:])])
        self.detector_.calibrate([seqs[i] for i in np.sort(order[:n_held])], strategy)
        self.threshold_ = self.detector_.threshold_
        return self

    # --- scoring -------------------------------------------------------------------------
    def score(self, X) -> np.ndarray:
        return self.analyse(X, explain=False).scores

    def analyse(self, X, explain: bool = True) -> Analysis:
        """Parse (matching only), group, score, label and explain."""
        self._check_fitted("detector_")
        records = self.records(X)
        event_ids = self.parser_.transform(records.contents)
        groups = self.group(records)
        seqs = groups.sequences(event_ids)
        scores = self.detector_.score(seqs)
        labels = None if self.threshold_ is None else (scores >= self.threshold_).astype(np.int8)
        evidence = self.detector_.explain(seqs) if explain else []
        return Analysis(records, event_ids, groups, seqs, scores, labels, evidence)

    def records(self, X) -> LogRecords:
        if isinstance(X, LogRecords):
            return X
        if isinstance(X, str):
            raise DataError("LogModel takes parsed records (normalcy.logs.formats.read_logs) or a list of lines, "
                            "not one string")
        records = records_from_lines(X, get_format(self.log_format))
        if not len(records):
            raise DataError("no log lines given")
        return records

    def group(self, records: LogRecords) -> Groups:
        if self.group_by:
            return by_identifier(records.contents, self.group_by)
        if self.window:
            return by_time(records.times, float(self.window), None if self.step is None else float(self.step))
        return Groups([str(n) for n in records.line_no], [np.array([i]) for i in range(len(records))], 0)

    def _new_detector(self) -> SequenceDetector:
        if self.detector not in DETECTORS:
            raise DataError(f"unknown log detector {self.detector!r}; expected one of {', '.join(DETECTORS)}")
        try:
            return DETECTORS[self.detector](**(self.detector_params or {}))
        except TypeError as exc:
            raise DataError(f"detector {self.detector}: {exc}") from None

    # --- model file ----------------------------------------------------------------------
    def _get_state(self):
        self._check_fitted("detector_")
        parser_arrays, parser_meta = self.parser_.get_state()
        det_arrays, det_meta = self.detector_._get_state()
        arrays = {**parser_arrays, **{f"detector.{k}": v for k, v in det_arrays.items()}}
        return arrays, {"parser": parser_meta, "detector": det_meta}

    def _set_state(self, arrays, meta):
        if not isinstance(meta.get("parser"), dict) or not isinstance(meta.get("detector"), dict):
            raise ModelFileError("model state: the log parser's or detector's state is missing")
        try:
            detector = self._new_detector()
        except DataError as exc:
            raise ModelFileError(f"model state: {exc}") from None
        detector._set_state({k[len("detector."):]: v for k, v in arrays.items() if k.startswith("detector.")},
                            meta["detector"])
        self.parser_ = LogParser.from_state(arrays, meta["parser"])
        self.detector_ = detector

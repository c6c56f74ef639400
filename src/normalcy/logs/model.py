"""A whole log model: header format, template parser, grouping and one sequence detector,
saved as one model folder. This is what `normalcy logs fit` writes and `score` reads.

Grouping is by identifier (`group_by`, a regex: sessions), by time windows (`window` and
`step`, in seconds), or else every line is its own group. An *event* is one line's template
(its event id); a group's event sequence is what the detector scores. With `parser="masked"`
there is no template mining: each distinct masked line is an event.

The semantic detectors (`needs_templates`) get each group as `normalcy.logs.semantic.Events`:
the ids with the text of every template, and every line that no known template matched under
an id of its own (negative: one per distinct masked text) with its masked text, so that its
meaning can be judged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from normalcy.core.detector import Detector
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.holdout import fit_with_holdout
from normalcy.core.registry import check_params, detector_class
from normalcy.core.results import Explanation
from normalcy.core.threshold import ThresholdStrategy
from normalcy.logs.base import Blame, SequenceDetector, check_number
from normalcy.logs.formats import LogRecords, get_format, records_from_lines
from normalcy.logs.history import FOLDS as HISTORY_FOLDS, fit_with_history, shared_lines
from normalcy.logs.parser import DEPTH, PARSERS, SIM_TH, UNSEEN, LogParser, MaskedLines, parser_from_state
from normalcy.logs.patterns import Pattern
from normalcy.logs.semantic import with_templates
from normalcy.logs.sessions import MAX_OVERLAP, MIN_WINDOW, Groups, by_identifier, by_time


@dataclass
class Analysis:
    records: LogRecords
    event_ids: np.ndarray
    groups: Groups
    sequences: list[np.ndarray]
    scores: np.ndarray
    labels: np.ndarray | None
    blame: list[Blame]
    explanation: Explanation | None


class LogModel(Detector):
    """Raw log lines in, one score per session, window or line out.

    Parameters:
        detector: the sequence detector's registry name (`normalcy logs models`) ("invariants").
        log_format: header format: a preset name (normalcy.logs.formats.FORMATS) or a regex with
            (?P<content>...) ("raw").
        group_by: regex whose matches name sessions, e.g. r"blk_-?\\d+" (None).
        window: time windows of this many seconds instead of sessions (None).
        step: seconds between window starts; None: the window (fixed windows) (None).
        detector_params: the sequence detector's parameters (None: its defaults).
        sim_th: Drain's similarity threshold for joining a line to a template, in (0, 1] (0.7).
        depth: depth of Drain's prefix tree, >= 3 (5).
        max_children: children per node of Drain's prefix tree, >= 2 (100).
        parser: "drain" (templates mined by Drain) or "masked" (no mining: each distinct masked
            line is an event) ("drain").
    """

    modality = "logs"
    explains = True

    def __init__(self, detector: str = "invariants", log_format: str = "raw", group_by: str | None = None,
                 window: float | None = None, step: float | None = None, detector_params: dict | None = None,
                 sim_th: float = SIM_TH, depth: int = DEPTH, max_children: int = 100, parser: str = "drain"):
        self.detector = detector
        self.log_format = log_format
        self.group_by = group_by
        self.window = window
        self.step = step
        self.detector_params = detector_params
        self.sim_th = sim_th
        self.depth = depth
        self.max_children = max_children
        self.parser = parser

    @property
    def unit(self) -> str:
        """What a group is: "sessions", "windows" or "lines"."""
        return "sessions" if self.group_by else "windows" if self.window is not None else "lines"

    # --- fitting -------------------------------------------------------------------------
    def fit(self, X, y=None) -> "LogModel":
        """Mine templates, group the lines and fit the detector on every group; the threshold is
        the detector's own label-free rule."""
        seqs = self._prepare(X)[2]
        self.detector_ = self._new_detector().fit(seqs)
        self.n_groups_ = len(seqs)
        self._take_threshold()
        return self

    def fit_holdout(self, X, holdout: float, strategy: ThresholdStrategy, seed: int = 0) -> "LogModel":
        """Mine templates from all lines, fit the detector on the groups less a random
        `holdout` fraction, and set the threshold from the held-out groups' scores by
        `strategy` (`normalcy.core.holdout.fit_with_holdout`; a fixed threshold fits all)."""
        seqs = self._prepare(X)[2]
        self.detector_ = fit_with_holdout(self._new_detector(), seqs, strategy, holdout, seed, unit=self.unit,
                                          name="the log")
        self.n_groups_ = len(seqs) - self.detector_.calibration_.n_items
        self._take_threshold()
        return self

    def fit_history(self, X, label_groups: Callable[[LogRecords, Groups], np.ndarray], folds: int = HISTORY_FOLDS,
                    seed: int = 0) -> "LogModel":
        """Fit on labelled history (a semantic detector): mine templates from every line, label
        the groups with `label_groups(records, groups)` (1 = anomalous), and fit the detector on
        the normal ones with level weights and threshold learned from cross-fitted scores of all
        (`normalcy.logs.history.fit_with_history`; groups that share lines, as sliding windows
        do, are kept out of each other's fits). The learned weights replace any `level_weights`
        in `detector_params`."""
        records, groups, seqs = self._prepare(X)
        y = np.asarray(label_groups(records, groups))
        self.detector_ = fit_with_history(self._new_detector(), seqs, y, shared_lines(groups.lines), folds, seed)
        # The learned weights are the detector's parameter from now on, so the model file keeps them.
        self.detector_params = {**(self.detector_params or {}), "level_weights": self.detector_.level_weights}
        self.n_groups_ = int((y == 0).sum())
        self._take_threshold()
        return self

    def _prepare(self, X):
        """Check the parameters, mine templates from every line and group them: the records, the
        groups and their event sequences to fit on, checked against the detector's minimum."""
        self._check_params()
        records = self.records(X)
        parser = (LogParser(self.sim_th, self.depth, self.max_children) if self.parser == "drain"
                  else MaskedLines())
        self.parser_ = parser
        groups = self.group(records)
        seqs = self.sequences(records, parser.fit(records.contents), groups)
        needed = detector_class("logs", self.detector).min_groups
        if len(seqs) < needed:
            how = {"sessions": "lines with more session ids", "windows": "a longer log or a shorter --window",
                   "lines": "more lines"}[self.unit]
            raise DataError(f"the log gives {len(seqs)} {self.unit[:-1] if len(seqs) == 1 else self.unit} from "
                            f"{len(records)} lines; {self.detector} needs at least {needed} to learn from: give {how}")
        self.n_lines_ = len(records)
        return records, groups, seqs

    def _take_threshold(self) -> None:
        # The model's threshold is its detector's, with the same record of how it was set.
        self.calibration_ = self.detector_.calibration_
        self.threshold_ = None if self.calibration_ is None else self.calibration_.threshold

    # --- scoring -------------------------------------------------------------------------
    def decision_function(self, X) -> np.ndarray:
        """One score per group (session, window or line) of the lines X."""
        return self.analyse(X, explain=False).scores

    def explain(self, X) -> Explanation:
        """Per group: parts are the events ("E<id>", "unseen"), contributions as the detector
        splits its score, evidence its reasons and the templates of the events to blame."""
        return self.analyse(X).explanation

    def analyse(self, X, explain: bool = True) -> Analysis:
        """Parse (matching only), group, score, label and (with `explain`) explain."""
        self._check_fitted("detector_")
        records = self.records(X)
        event_ids = self.parser_.transform(records.contents)
        groups = self.group(records)
        seqs = self.sequences(records, event_ids, groups)
        blame, explanation = [], None
        if explain:
            explanation, blame = self.detector_.explain_blame(seqs)
            evidence = [reasons + self.templates(records, event_ids, lines, b)
                        for reasons, lines, b in zip(explanation.evidence, groups.lines, blame)]
            explanation = Explanation(explanation.scores, explanation.parts, explanation.contributions, evidence)
            scores = explanation.scores
        else:
            scores = self.detector_.decision_function(seqs)
        labels = None if self.threshold_ is None else (scores >= self.threshold_).astype(np.int8)
        return Analysis(records, event_ids, groups, seqs, scores, labels, blame, explanation)

    def sequences(self, records: LogRecords, event_ids: np.ndarray, groups: Groups) -> list[np.ndarray]:
        """The groups' event sequences as the detector reads them: id arrays, or for a semantic
        detector `Events` in which each distinct unseen masked line has an id (and text) of its
        own, with each line's log level where the format has one."""
        if not getattr(detector_class("logs", self.detector), "needs_templates", False):
            return groups.sequences(event_ids)
        templates = self.parser_.templates()
        ids = event_ids.copy()
        unseen: dict[str, int] = {}
        for i in np.flatnonzero(event_ids == UNSEEN):
            ids[i] = unseen.setdefault(self.parser_.mask(records.contents[i]), -1 - len(unseen))
        templates.update({k: text for text, k in unseen.items()})
        levels = np.array(records.levels, dtype=object) if any(records.levels) else None
        return with_templates(groups.sequences(ids), templates, None if levels is None else groups.sequences(levels))

    def templates(self, records: LogRecords, event_ids: np.ndarray, lines: np.ndarray, blame: Blame,
                  max_lines: int = 10) -> list[str]:
        """The templates of one group's events to blame, "E<id>: <template>"; a line no
        template matched has no text of its own, so it shows as "unseen: <masked line>" (for
        at most `max_lines` of the blamed lines)."""
        found = [f"E{e}: {self.parser_.template(e)}" for e in blame.events if e > UNSEEN]
        found += [f"unseen: {self.parser_.mask(records.contents[i])}"
                  for i in lines[blame.positions[:max_lines]] if event_ids[i] == UNSEEN]
        return list(dict.fromkeys(found))

    def records(self, X) -> LogRecords:
        if isinstance(X, LogRecords):
            return X
        if isinstance(X, (str, bytes)) or not hasattr(X, "__iter__"):
            raise DataError(f"LogModel takes parsed records (normalcy.logs.formats.read_logs) or a list of lines, "
                            f"not {type(X).__name__}")
        records = records_from_lines(X, get_format(self.log_format))
        if not len(records):
            raise DataError("no log lines given")
        return records

    def group(self, records: LogRecords) -> Groups:
        if self.group_by:
            return by_identifier(records.contents, Pattern(self.group_by, "--group-by"),
                                 lambda i: f"{records.source[i]}:{records.line_no[i]}")
        if self.window is not None:
            if all(t is None for t in records.times) and records.stats.first_bad_time:
                raise DataError(f"time windows need line times, but no line's time could be read: the first, "
                                f"{records.stats.first_bad_time}, is not a time the {self.log_format!r} format "
                                "reads (a custom format's time group may be epoch seconds, ISO 8601 or any "
                                "preset's layout, see docs/logs.md)")
            return by_time(records.times, float(self.window), None if self.step is None else float(self.step))
        # Each line alone, named by its number (and its file, when lines come from several).
        keys = ([str(n) for n in records.line_no] if len(records.stats.sources) == 1
                else [f"{s}:{n}" for s, n in zip(records.source, records.line_no)])
        return Groups(keys, [np.array([i]) for i in range(len(records))], 0)

    def _new_detector(self) -> SequenceDetector:
        cls = detector_class("logs", self.detector)
        params = dict(self.detector_params or {})
        check_params(cls, params)
        return cls(**params)

    def _check_params(self) -> None:
        """Every parameter, including the regexes, which may come from an untrusted model file."""
        if not isinstance(self.detector, str):
            raise DataError(f"detector must be a log detector's name, got {self.detector!r}")
        if self.detector_params is not None and not isinstance(self.detector_params, dict):
            raise DataError(f"detector_params must be a dict of the detector's parameters, got "
                            f"{type(self.detector_params).__name__}")
        self._new_detector()._check_params()
        get_format(self.log_format)
        if self.group_by is not None:
            Pattern(self.group_by, "--group-by")
        if self.group_by and self.window is not None:
            raise DataError("give either group_by (--group-by) or window (--window), not both")
        if self.step is not None and self.window is None:
            raise DataError("step (--step) needs window (--window)")
        if self.window is not None:
            check_number("LogModel", "window (seconds)", self.window, MIN_WINDOW, 1e12)
            step = self.window if self.step is None else self.step
            check_number("LogModel", "step (seconds)", step, self.window / MAX_OVERLAP, self.window)
        check_number("LogModel", "sim_th", self.sim_th, 0.0, 1.0, low_open=True)
        check_number("LogModel", "depth", self.depth, 3, 100, integer=True)
        check_number("LogModel", "max_children", self.max_children, 2, 1_000_000, integer=True)
        if not (isinstance(self.parser, str) and self.parser in PARSERS):
            raise DataError(f"parser must be one of {', '.join(PARSERS)}, got {self.parser!r}")

    # --- model file ----------------------------------------------------------------------
    def _get_state(self):
        self._check_fitted("detector_")
        parser_arrays, parser_meta = self.parser_.get_state()
        det_arrays, det_meta = self.detector_._get_state()
        arrays = {**parser_arrays, **{f"detector.{k}": v for k, v in det_arrays.items()}}
        training = {"lines": self.n_lines_, "groups": self.n_groups_}
        return arrays, {"parser": parser_meta, "detector": det_meta, "training": training}

    def _set_state(self, arrays, meta):
        if not isinstance(meta.get("parser"), dict) or not isinstance(meta.get("detector"), dict):
            raise ModelFileError("model state: the log parser's or detector's state is missing")
        training = meta.get("training")
        if not (isinstance(training, dict) and all(isinstance(training.get(k), int) and training[k] >= 0
                                                   for k in ("lines", "groups"))):
            raise ModelFileError("model state: the training line and group counts are missing")
        detector = self._new_detector()
        detector._set_state({k[len("detector."):]: v for k, v in arrays.items() if k.startswith("detector.")},
                            meta["detector"])
        if meta["parser"].get("kind", "drain") != self.parser:
            raise ModelFileError(f"model state: the parser's state is of kind {meta['parser'].get('kind')!r}, the "
                                 f"model's parameters say {self.parser!r}")
        self.parser_ = parser_from_state(arrays, meta["parser"])
        self.detector_ = detector
        self.n_lines_, self.n_groups_ = training["lines"], training["groups"]

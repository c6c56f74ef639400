"""MINES-style API invariants as a detector: a request's score is the number of invariants it
breaks, and one broken invariant is an anomaly (threshold 1, no labels needed); `explain`
names each broken invariant in plain words (`normalcy.api.invariants`)."""

from __future__ import annotations

import numpy as np

from normalcy.api.access import FORMATS, custom_parser, read_requests
from normalcy.api.base import ApiDetector
from normalcy.api.invariants import KINDS, Prepared, Settings, check, check_rules, learn
from normalcy.api.paths import Matcher
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.results import Explanation
from normalcy.logs.base import check_number


class Mines(ApiDetector):
    """MINES (Zhang et al. 2025): invariants of each endpoint's parameters and of the calls around
    it, inferred from normal traffic and kept only where they hold on held-out normal traffic;
    a request's score is the number it breaks.

    Parameters:
        log_format: "auto", "combined", "jsonl", "openstack" or a regex with named groups
            (docs/api.md) ("auto").
        min_support: observations a rule needs, >= 2 (5).
        max_values: most distinct values of a value-set rule (and users of a callers rule) (8).
        max_literals: distinct names at one path position before it becomes {value} (20).
        range_slack: a range rule's bounds widened by this share of their span, >= 0 (0.5).
        rate_window: seconds of the per-user rate rule (10).
        rate_slack: a rate limit is the busiest window seen times 1 + this, >= 0 (0.5).
        session_gap: seconds of silence that end a user's session (1800).
        validation: share of the training traffic (its end) that rules must hold on, in
            [0, 0.9] (0.2).
    """

    name = "mines"

    def __init__(self, log_format: str = "auto", min_support: int = 5, max_values: int = 8, max_literals: int = 20,
                 range_slack: float = 0.5, rate_window: float = 10.0, rate_slack: float = 0.5,
                 session_gap: float = 1800.0, validation: float = 0.2):
        self.log_format = log_format
        self.min_support = min_support
        self.max_values = max_values
        self.max_literals = max_literals
        self.range_slack = range_slack
        self.rate_window = rate_window
        self.rate_slack = rate_slack
        self.session_gap = session_gap
        self.validation = validation

    # --- public contract -----------------------------------------------------------------
    def fit(self, X, y=None) -> "Mines":
        self._check_params()
        frame, stats = read_requests(X, self.log_format)
        self.templates_, self.rules_, self.summary_ = learn(frame, self._settings(), float(self.validation))
        self.set_threshold(1.0, "one broken invariant")
        return self

    def decision_function(self, X) -> np.ndarray:
        """The number of invariants each request breaks, in the order given."""
        return self.explain(X).scores

    def explain(self, X) -> Explanation:
        """Per request: `parts` are the kinds of invariant (normalcy.api.invariants.KINDS),
        `contributions` how many of each it breaks, `evidence` each broken one in plain words."""
        batch, broken = self.check(X)
        n = len(batch)
        contributions = np.zeros((n, len(KINDS)))
        evidence: list[list[str]] = [[] for _ in range(n)]
        for position, row in zip(batch.order, broken):
            for r, message in row:
                contributions[position, KINDS.index(self.rules_[r]["kind"])] += 1
                evidence[position].append(f"{self.rules_[r]['kind']}: {message}")
        return Explanation(contributions.sum(axis=1), KINDS, contributions, evidence)

    def check(self, X) -> tuple[Prepared, list[list[tuple[int, str]]]]:
        """The requests of X in time order and, per request, the broken rules (index into
        `rules_`, plain words)."""
        self._check_fitted("rules_")
        frame, _ = read_requests(X, self.log_format)
        batch = Prepared(frame, Matcher(self.templates_))
        return batch, check(batch, self.rules_, self._settings())

    def _settings(self) -> Settings:
        return Settings(int(self.min_support), int(self.max_values), int(self.max_literals), float(self.range_slack),
                        float(self.rate_window), float(self.rate_slack), float(self.session_gap))

    def _check_params(self) -> None:
        if not isinstance(self.log_format, str):
            raise DataError(f"Mines log_format must be one of {', '.join(FORMATS)} or a regex, got {self.log_format!r}")
        if self.log_format not in FORMATS:
            custom_parser(self.log_format)  # a regex from a user or a model file: checked and bounded
        check_number("Mines", "min_support", self.min_support, 2, 1e9, integer=True)
        check_number("Mines", "max_values", self.max_values, 1, 1000, integer=True)
        check_number("Mines", "max_literals", self.max_literals, 1, 1e6, integer=True)
        check_number("Mines", "range_slack", self.range_slack, 0.0, 1e6)
        check_number("Mines", "rate_window (seconds)", self.rate_window, 0.0, 1e9, low_open=True)
        check_number("Mines", "rate_slack", self.rate_slack, 0.0, 1e6)
        check_number("Mines", "session_gap (seconds)", self.session_gap, 0.0, 1e12, low_open=True)
        check_number("Mines", "validation", self.validation, 0.0, 0.9)

    # --- model file ----------------------------------------------------------------------
    def _get_state(self):
        self._check_fitted("rules_")
        return {}, {"rules": self.rules_, "summary": self.summary_}

    def _set_state(self, arrays, meta):
        rules = check_rules(meta.get("rules"))
        summary = meta.get("summary")
        if not isinstance(summary, dict) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                    for v in summary.values()):
            raise ModelFileError("model state: the API model's summary is missing or malformed")
        self.rules_, self.templates_, self.summary_ = rules, list(rules[0]["templates"]), summary

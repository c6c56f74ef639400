"""Unseen-template alerts: a group's score is the number of its events whose template never
occurred in training (including lines the parser matched to no template at all); one is an
anomaly (threshold 1)."""

from __future__ import annotations

import numpy as np

from normalcy.logs.base import Evidence, SequenceDetector


class UnseenTemplates(SequenceDetector):
    def __init__(self):
        pass

    def _fit_sequences(self, seqs):
        self.threshold_ = 1.0

    def _score_sequences(self, seqs):
        return np.array([len(self._unseen_positions(s)) for s in seqs], dtype=np.float64)

    def _explain_sequences(self, seqs, max_events):
        out = []
        for seq in seqs:
            positions = self._unseen_positions(seq)
            events = list(dict.fromkeys(int(e) for e in seq[positions]))
            out.append(Evidence(events, positions, [f"{len(positions)} event(s) with a template not seen in training"]
                                if positions else []))
        return out

    def _own_state(self):
        return {}, {}

    def _set_own_state(self, arrays, meta):
        pass

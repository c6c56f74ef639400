"""Unseen-template alerts: a group's score is the number of its events whose template never
occurred in training (including lines the parser matched to no template at all); one is an
anomaly (threshold 1)."""

from __future__ import annotations

import numpy as np

from normalcy.logs.base import Blame, SequenceDetector


class UnseenTemplates(SequenceDetector):
    """A group's score is how many of its events have a template never seen in training; one is
    an anomaly.

    Parameters: none.
    """

    name = "unseen"

    def __init__(self):
        pass

    def _fit_encoded(self, seqs):
        self.set_threshold(1.0, "one unseen event")

    def _score_encoded(self, seqs):
        return np.array([len(self._unseen_positions(s)) for s in seqs], dtype=np.float64)

    def _explain_encoded(self, seqs, max_events):
        scores = self._score_encoded(seqs)
        contributions = np.zeros((len(seqs), len(self.vocab_) + 1))
        contributions[:, -1] = scores  # all on the "unseen" part
        out = []
        for seq in seqs:
            positions = self._unseen_positions(seq)
            events = list(dict.fromkeys(int(e) for e in seq[positions]))
            out.append(Blame(events, positions, [f"{len(positions)} event(s) with a template not seen in training"]
                             if positions else []))
        return contributions, out

    def _own_state(self):
        return {}, {}

    def _set_own_state(self, arrays, meta):
        pass

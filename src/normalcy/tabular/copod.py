"""COPOD (Li, Zhao, Botta, Ionescu & Hu, "COPOD: Copula-Based Outlier Detection", ICDM 2020).

The columns' joint distribution is modelled by the empirical copula, whose margins are the
columns' empirical CDFs; a row's left, right and skewness-corrected tail probabilities are
the copula's, and their negative logs are combined over columns:

- ``variant="pyod"`` (default): PyOD's COPOD, per column the larger of the skewness-corrected
  term and the mean of the left and right terms, summed over columns. Unlike ECOD's, a column
  value in neither tail still adds (the mean of both tails), so COPOD ranks rows differently.
- ``variant="paper"``: the paper's Algorithm 1, max(p_l, p_r, p_s), the largest of the sums of
  left, right and skewness-corrected terms. This is the same formula as the ECOD paper's
  Algorithm 1 (by the same authors), so ``COPOD(variant="paper")`` and
  ``ECOD(variant="paper")`` score alike.

ECDFs, skewness, inductive scoring and the model file are shared with ECOD (`ecod.py`).
"""

from __future__ import annotations

import numpy as np

from normalcy.tabular.ecod import EmpiricalTails


class COPOD(EmpiricalTails):
    """COPOD: per column -log tail probabilities of the empirical copula.

    Parameters
    ----------
    variant : {"pyod", "paper"}, default "pyod"
        "pyod": per column the larger of the skewness-chosen term and the mean of the left
        and right terms, summed (PyOD's COPOD). "paper": Algorithm 1, the largest of the three
        sums (then it scores as ECOD's paper form does).
    """

    name = "copod"

    def _combine(self, left, right, skewed):
        if self.variant == "paper":
            return self._best_sum([left, right, skewed])
        return np.maximum(skewed, (left + right) / 2)

"""COPOD (Li et al., "COPOD: Copula-Based Outlier Detection", ICDM 2020), Algorithm 1.

The paper models the columns' joint distribution with the empirical copula, whose margins
are the columns' empirical CDFs; its tail probabilities p_l, p_r and the skewness-corrected
p_s, and the score max(p_l, p_r, p_s), are then exactly the three sums ECOD (by the same
authors, two years later) uses. So COPOD shares ECOD's computation and the same inductive
ECDF; it keeps its own name because users look for it. PyOD's COPOD differs: per column it
takes the larger of the skewness-corrected tail and the mean of both tails before summing.
"""

from __future__ import annotations

from normalcy.tabular.ecod import ECOD


class COPOD(ECOD):
    pass

"""Isolation forest (Liu, Ting & Zhou, ICDM 2008): anomalies are isolated by fewer random
splits. scikit-learn grows the trees; the model file keeps only their node arrays, and
scoring walks those arrays here, so a saved forest is plain numbers, never a pickle.

Score = 2 ** (-mean path length / c(max_samples)), the paper's s(x, n): about 0.5 for
ordinary rows, towards 1 for anomalies (scikit-learn's `score_samples` negated).
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.ensemble import IsolationForest as SkIsolationForest

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.tabular.base import TabularDetector

ROWS_PER_BLOCK = 4096  # rows walked through every tree at once: bounds an n x trees index array


class IsolationForest(TabularDetector):
    """Isolation forest: rows that random splits isolate quickly are anomalous.

    Parameters
    ----------
    n_estimators : int, default 100
        Number of trees.
    max_samples : int, float or "auto", default "auto"
        Rows drawn for each tree: a count, a fraction of the training rows, or "auto"
        (min(256, rows)), as in scikit-learn.
    max_features : float, default 1.0
        Fraction of the columns each tree may split on.
    seed : int, default 0
        Seed of the trees' random draws.
    """

    name = "iforest"

    def __init__(self, n_estimators: int = 100, max_samples: int | float | str = "auto",
                 max_features: float = 1.0, seed: int = 0):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.seed = seed

    def _check_params(self):
        def integer(v):
            return isinstance(v, numbers.Integral) and not isinstance(v, bool)

        def fraction(v):
            return isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 < v <= 1

        if not (integer(self.n_estimators) and self.n_estimators >= 1):
            raise DataError(f"IsolationForest: n_estimators must be a positive integer, got {self.n_estimators!r}")
        if not (self.max_samples == "auto" or (integer(self.max_samples) and self.max_samples >= 1)
                or (not integer(self.max_samples) and fraction(self.max_samples))):
            raise DataError(f"IsolationForest: max_samples must be \"auto\", a positive integer or a fraction in "
                            f"(0, 1], got {self.max_samples!r}")
        if not fraction(self.max_features):
            raise DataError(f"IsolationForest: max_features must be a fraction in (0, 1], got {self.max_features!r}")
        if not (integer(self.seed) and 0 <= self.seed < 2**32):
            raise DataError(f"IsolationForest: seed must be an integer in [0, 2**32), got {self.seed!r}")

    def _fit_encoded(self, Z):
        try:
            forest = SkIsolationForest(n_estimators=self.n_estimators, max_samples=self.max_samples,
                                       max_features=self.max_features, random_state=self.seed).fit(Z)
        except ValueError as exc:
            raise DataError(f"IsolationForest: {exc}") from exc
        left, right, feature, threshold, size, starts = [], [], [], [], [], [0]
        for tree, features in zip(forest.estimators_, forest.estimators_features_):
            t = tree.tree_
            leaf = t.children_left == -1
            # Children as indices into the concatenated arrays; a leaf points at itself.
            own = np.arange(t.node_count) + starts[-1]
            left.append(np.where(leaf, own, t.children_left + starts[-1]))
            right.append(np.where(leaf, own, t.children_right + starts[-1]))
            # Trees may see a subset of columns: store the column of the whole table.
            feature.append(np.where(leaf, -1, np.asarray(features)[np.maximum(t.feature, 0)]))
            threshold.append(np.where(leaf, 0.0, t.threshold))
            size.append(t.n_node_samples)
            starts.append(starts[-1] + t.node_count)
        self.left_, self.right_ = np.concatenate(left), np.concatenate(right)
        self.feature_, self.threshold_split_ = np.concatenate(feature), np.concatenate(threshold)
        self.node_size_ = np.concatenate(size).astype(np.float64)
        self.roots_ = np.asarray(starts[:-1], dtype=np.int64)
        self.max_samples_ = int(forest.max_samples_)

    def _score_encoded(self, Z):
        self._check_fitted("roots_")
        # scikit-learn splits on float32 values compared with float64 thresholds: do the same.
        Z = Z.astype(np.float32).astype(np.float64)
        scores = np.empty(len(Z))
        for start in range(0, len(Z), ROWS_PER_BLOCK):
            scores[start:start + ROWS_PER_BLOCK] = self._path_scores(Z[start:start + ROWS_PER_BLOCK])
        return scores

    def _path_scores(self, Z: np.ndarray) -> np.ndarray:
        rows = np.arange(len(Z))[:, None]
        node = np.broadcast_to(self.roots_, (len(Z), len(self.roots_))).copy()
        depth = np.zeros(node.shape)
        inner = self.feature_[node] >= 0
        while inner.any():
            feature = np.maximum(self.feature_[node], 0)
            go_left = Z[rows, feature] <= self.threshold_split_[node]
            node = np.where(inner, np.where(go_left, self.left_[node], self.right_[node]), node)
            depth += inner
            inner = self.feature_[node] >= 0
        # A leaf holding m training rows stands for a subtree of expected depth c(m).
        path = depth + average_path_length(self.node_size_[node])
        return 2.0 ** (-path.mean(axis=1) / max(average_path_length(np.array([self.max_samples_]))[0], 1e-12))

    def _own_state(self):
        self._check_fitted("roots_")
        arrays = {"forest.left": self.left_, "forest.right": self.right_, "forest.feature": self.feature_,
                  "forest.threshold": self.threshold_split_, "forest.node_size": self.node_size_,
                  "forest.roots": self.roots_}
        return arrays, {"max_samples": self.max_samples_}

    def _set_own_state(self, arrays, meta, n_features):
        expect_arrays(arrays, {k: (None,) for k in ("forest.left", "forest.right", "forest.feature",
                                                     "forest.threshold", "forest.node_size", "forest.roots")})
        n_nodes = len(arrays["forest.left"])
        left, right = arrays["forest.left"].astype(np.int64), arrays["forest.right"].astype(np.int64)
        feature, roots = arrays["forest.feature"].astype(np.int64), arrays["forest.roots"].astype(np.int64)
        max_samples = meta.get("max_samples")
        if (any(len(arrays[k]) != n_nodes for k in ("forest.right", "forest.feature", "forest.threshold",
                                                    "forest.node_size"))
                or not isinstance(max_samples, int) or max_samples < 1
                or left.min(initial=0) < 0 or right.min(initial=0) < 0
                or max(left.max(initial=0), right.max(initial=0), roots.max(initial=0)) >= n_nodes
                or feature.max(initial=-1) >= n_features or feature.min(initial=-1) < -1
                # scikit-learn numbers children after their parent; this also rules out a loop.
                or np.any((feature >= 0) & ((left <= np.arange(n_nodes)) | (right <= np.arange(n_nodes))))):
            raise ModelFileError("model state: the isolation forest's node arrays are inconsistent")
        self.left_, self.right_, self.feature_, self.roots_ = left, right, feature, roots
        self.threshold_split_ = arrays["forest.threshold"].astype(np.float64)
        self.node_size_ = arrays["forest.node_size"].astype(np.float64)
        self.max_samples_ = max_samples


def average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): the mean depth of an unsuccessful search in a binary search tree of n keys."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out

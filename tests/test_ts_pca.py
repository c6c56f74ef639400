"""Windowed PCA: reconstruction errors match scikit-learn's PCA as an oracle, and a changed
shape in one of three variables is flagged and named."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.decomposition import PCA

from normalcy.core.errors import DataError
from normalcy.timeseries import WindowPCA


def test_errors_match_sklearn_pca_fitted_on_the_remembered_windows():
    rng = np.random.default_rng(0)
    t = np.arange(700)
    x = np.c_[np.sin(2 * np.pi * t / 24) + 0.1 * rng.normal(size=700), rng.normal(size=700).cumsum()]
    det = WindowPCA(history=300, window=12, refit_every=100).fit(x)
    assert det._fitted_at == 660  # fits at 40, 80, 160 (doubling), then every 100: 260, ..., 660
    windows = sliding_window_view(x[660 - 300 : 660], 12, axis=0)
    probe = sliding_window_view(x[:200] + 0.3 * rng.normal(size=(200, 2)), 12, axis=0)
    ours = det.errors(probe)
    for j in range(2):
        train = windows[:, j] - windows[:, j].mean(axis=1, keepdims=True)
        keep = int((det._components[j] != 0).any(axis=1).sum())
        pca = PCA(n_components=keep, svd_solver="full").fit(train)
        assert np.cumsum(pca.explained_variance_ratio_)[-1] >= 0.9 or keep == 6
        test = probe[:, j] - probe[:, j].mean(axis=1, keepdims=True)
        expected = ((test - pca.inverse_transform(pca.transform(test))) ** 2).sum(axis=1)
        np.testing.assert_allclose(ours[:, j], expected, rtol=1e-8, atol=1e-10)


def test_a_changed_shape_in_one_of_three_variables_is_flagged_and_named():
    rng = np.random.default_rng(2)
    t = np.arange(1200)
    x = np.c_[np.sin(2 * np.pi * t / 30), np.sin(2 * np.pi * t / 20), 0.5 * np.cos(2 * np.pi * t / 45)]
    x += 0.05 * rng.normal(size=x.shape)
    x[1000:1020, 1] = np.sin(2 * np.pi * t[1000:1020] / 7)  # the second variable changes rhythm
    det = WindowPCA(history=400, likelihood=False).fit(x[:500])
    explanation = det.explain(x[500:])
    scores, per_variable = explanation.scores, explanation.contributions
    top = int(np.argmax(scores)) + 500
    assert 1000 <= top < 1020 + det.window
    assert int(np.argmax(per_variable[top - 500])) == 1
    assert scores[top - 500] > 3 * scores[: 1000 - 500].max()


def test_a_flat_variable_is_reconstructed_by_its_level_only():
    x = np.c_[np.full(200, 3.0), np.sin(np.arange(200) / 3.0)]
    det = WindowPCA(history=100).fit(x)
    assert not det._components[0].any()  # nothing to learn from a constant
    bump = sliding_window_view(np.r_[np.full(15, 3.0), 4.0], 16)[:, None, :].repeat(2, axis=1)
    assert det.errors(bump)[0, 0] == pytest.approx(1.0 - 1.0 / 16)  # a one-reading step, level removed


@pytest.mark.parametrize("bad", [{"window": 1}, {"variance": 0.0}, {"history": 20, "window": 16}])
def test_bad_parameters_are_clear_errors(bad):
    with pytest.raises(DataError):
        WindowPCA(**bad).fit(np.zeros(100))

"""Table detectors: they find planted outliers, match an independent re-derivation (scikit-learn,
brute force), survive a save and load unchanged, and say which columns are to blame."""

from __future__ import annotations

import copy
import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from safetensors.numpy import load_file, save_file
from sklearn.ensemble import IsolationForest as SkIsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors

from normalcy.core import load
from normalcy.core.errors import DataError, ModelFileError
from normalcy.tabular import COPOD, DETECTORS, ECOD, HBOS, KNN, LOF, PCA, Ensemble, IsolationForest

COLOURS = ["red", "green", "blue"]


def normal_rows(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Four correlated numeric columns and a categorical one, all alike row to row."""
    base = rng.normal(size=(n, 2))
    numbers = np.column_stack([base[:, 0], base[:, 1], base[:, 0] + 0.3 * rng.normal(size=n),
                               base[:, 1] - base[:, 0] + 0.3 * rng.normal(size=n)])
    frame = pd.DataFrame(numbers, columns=["a", "b", "c", "d"])
    frame["colour"] = rng.choice(COLOURS, size=n, p=[0.5, 0.3, 0.2])
    return frame


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(42)
    train = normal_rows(rng, 400)
    normal = normal_rows(rng, 150)
    outliers = normal_rows(rng, 20)
    # Each outlier is pushed 8 along one or two numeric columns: 5 to 8 marginal standard
    # deviations, far enough for the column-by-column detectors (ECOD, COPOD, HBOS) too.
    for i in range(len(outliers)):
        cols = rng.choice(["a", "b", "c", "d"], size=1 + i % 2, replace=False)
        outliers.loc[i, cols] += rng.choice([-8.0, 8.0], size=len(cols))
    test = pd.concat([normal, outliers], ignore_index=True)
    labels = np.r_[np.zeros(len(normal)), np.ones(len(outliers))]
    return train, test, labels


@pytest.fixture(scope="module")
def fitted(data):
    train = data[0]
    return {name: cls().fit(train) for name, cls in DETECTORS.items()}


# Column-by-column detectors cap what one column adds (ECOD/COPOD: log(n + 1) for a value
# beyond the training range; HBOS: -log(alpha)), so an outlier in one column only is less
# far above ordinary rows that sit moderately in the tails of several.
MIN_AUROC = {"ecod": 0.9, "copod": 0.9, "hbos": 0.9}


@pytest.mark.parametrize("name", list(DETECTORS))
def test_planted_outliers_rank_high(name, fitted, data):
    _, test, labels = data
    scores = fitted[name].score(test)
    assert scores.shape == (len(test),) and np.isfinite(scores).all()
    assert roc_auc_score(labels, scores) >= MIN_AUROC.get(name, 0.95)


@pytest.mark.parametrize("name", list(DETECTORS))
def test_save_and_load_give_identical_scores(name, fitted, data, tmp_path):
    detector = fitted[name]
    test = data[1].copy()
    test.loc[0, "colour"] = "ultraviolet"  # unseen categories too
    loaded = load(detector.save(tmp_path / name))
    assert type(loaded) is type(detector)
    assert np.array_equal(loaded.score(test), detector.score(test))
    if detector.explains:
        pd.testing.assert_frame_equal(loaded.explain(test), detector.explain(test))


@pytest.mark.parametrize("name", list(DETECTORS))
def test_unseen_category_and_missing_values_are_scored(name, fitted, data):
    row = data[1].iloc[:2].copy()
    row.loc[0, "colour"] = "never-seen"
    row.loc[1, "a"] = np.nan
    row.loc[1, "colour"] = None
    assert np.isfinite(fitted[name].score(row)).all()


def test_isolation_forest_matches_scikit_learn(fitted, data):
    detector = fitted["iforest"]
    train, test, _ = data
    encoded_train = detector.encoder_.transform(train)
    forest = SkIsolationForest(random_state=detector.seed).fit(encoded_train)
    np.testing.assert_allclose(detector.score(test), -forest.score_samples(detector.encoder_.transform(test)),
                               rtol=0, atol=1e-12)


def test_isolation_forest_with_column_subsets_matches_scikit_learn(data):
    train, test, _ = data
    detector = IsolationForest(n_estimators=20, max_features=0.5, max_samples=64, seed=3).fit(train)
    forest = SkIsolationForest(n_estimators=20, max_features=0.5, max_samples=64, random_state=3)
    forest.fit(detector.encoder_.transform(train))
    np.testing.assert_allclose(detector.score(test), -forest.score_samples(detector.encoder_.transform(test)),
                               rtol=0, atol=1e-12)


def test_lof_matches_scikit_learn_novelty_mode(fitted, data):
    detector = fitted["lof"]
    train, test, _ = data
    lof = LocalOutlierFactor(n_neighbors=20, novelty=True).fit(detector.encoder_.transform(train))
    np.testing.assert_allclose(detector.score(test), -lof.score_samples(detector.encoder_.transform(test)))


def test_knn_is_the_distance_to_the_kth_training_row(fitted, data):
    detector = fitted["knn"]
    train, test, _ = data
    neighbours = NearestNeighbors(n_neighbors=5).fit(detector.encoder_.transform(train))
    expected = neighbours.kneighbors(detector.encoder_.transform(test))[0][:, -1]
    np.testing.assert_allclose(detector.score(test), expected, rtol=1e-4)


# --- brute-force re-derivations on a tiny table ---------------------------------------------

TINY_TRAIN = np.array([[0.0, 5.0], [1.0, 3.0], [2.0, 3.0], [3.0, 1.0], [10.0, 0.0]])
TINY_TEST = np.array([[1.0, 3.0], [-5.0, 2.0], [20.0, 9.0], [2.5, 0.5]])


def brute_tails(train: np.ndarray, x: np.ndarray) -> tuple[list, list, list]:
    """ECOD's per-column -log tail probabilities, counting by hand, with x added to the sample."""
    n, d = train.shape
    left, right, auto = [], [], []
    for j in range(d):
        col = train[:, j]
        below = (1 + sum(v <= x[j] for v in col)) / (n + 1)
        above = (1 + sum(v >= x[j] for v in col)) / (n + 1)
        mean, std = col.mean(), col.std()
        skewness = np.mean(((col - mean) / std) ** 3)
        left.append(-np.log(below))
        right.append(-np.log(above))
        auto.append(left[-1] if skewness < 0 else right[-1])
    return left, right, auto


def brute_combined(cls, variant: str, train: np.ndarray, x: np.ndarray) -> list:
    """The per-column terms each variant sums: the papers' best of three sums, PyOD's ECOD
    per-column max(left, right, skewed), PyOD's COPOD per-column max(skewed, mean of both)."""
    left, right, auto = brute_tails(train, x)
    if variant == "paper":
        return [left, right, auto][int(np.argmax([sum(left), sum(right), sum(auto)]))]
    if cls is ECOD:
        return [max(a, b, c) for a, b, c in zip(left, right, auto)]
    return [max(c, (a + b) / 2) for a, b, c in zip(left, right, auto)]


@pytest.mark.parametrize("cls", [ECOD, COPOD])
@pytest.mark.parametrize("variant", ["pyod", "paper"])
def test_ecod_and_copod_equal_a_brute_force_derivation(cls, variant):
    detector = cls(variant=variant).fit(TINY_TRAIN)
    encoded_train = detector.encoder_.transform(read(TINY_TRAIN))
    encoded_test = detector.encoder_.transform(read(TINY_TEST))
    scores, attributions = detector.score(TINY_TEST), detector.explain(TINY_TEST).to_numpy()
    for i, x in enumerate(encoded_test):
        expected = brute_combined(cls, variant, encoded_train, x)
        assert scores[i] == pytest.approx(sum(expected), abs=1e-12)
        np.testing.assert_allclose(attributions[i], expected, atol=1e-12)


@pytest.mark.parametrize("name", ["ECOD", "COPOD"])
def test_ecod_and_copod_equal_pyod_one_row_at_a_time(name):
    """PyOD (the oracle) scores new rows by recomputing the ECDFs over the training rows plus the
    rows scored; for one row at a time that is exactly our inductive ECDF. Columns are clearly
    skewed, so that adding one row does not flip the sign of a column's skewness."""
    pyod_models = pytest.importorskip(f"pyod.models.{name.lower()}")
    rng = np.random.default_rng(3)
    train = np.column_stack([rng.exponential(size=300), -rng.exponential(size=300), rng.lognormal(size=300)])
    test = np.vstack([np.column_stack([rng.exponential(size=20), -rng.exponential(size=20), rng.lognormal(size=20)]),
                      [[9.0, -0.1, 0.5], [0.01, -7.0, 30.0], [1.0, -1.0, 1.0]]])
    ours = {"ECOD": ECOD, "COPOD": COPOD}[name]().fit(train)
    oracle = getattr(pyod_models, name)().fit(train)
    expected = [oracle.decision_function(row[None, :])[0] for row in test]
    np.testing.assert_allclose(ours.score(test), expected, rtol=1e-10)


def test_ecod_and_copod_differ_but_their_paper_forms_agree(data):
    train, test, _ = data
    assert not np.allclose(ECOD().fit(train).score(test), COPOD().fit(train).score(test))
    np.testing.assert_allclose(ECOD(variant="paper").fit(train).score(test),
                               COPOD(variant="paper").fit(train).score(test))


def test_an_unknown_variant_is_refused():
    with pytest.raises(DataError, match="variant"):
        ECOD(variant="magic").fit(TINY_TRAIN)


def test_hbos_equals_a_brute_force_derivation():
    detector = HBOS(n_bins=4, alpha=0.1).fit(TINY_TRAIN)
    train = detector.encoder_.transform(read(TINY_TRAIN))
    test = detector.encoder_.transform(read(TINY_TEST))
    expected = np.zeros(len(test))
    for j in range(train.shape[1]):
        lo, hi = train[:, j].min(), train[:, j].max()
        width = (hi - lo) / 4
        for i, x in enumerate(test[:, j]):
            density = 0.0
            for b in range(4):
                a, z = lo + b * width, lo + (b + 1) * width
                last = b == 3
                if a <= x < z or (last and a <= x <= hi):
                    in_bin = sum(a <= v < z or (last and a <= v <= hi) for v in train[:, j])
                    density = in_bin / (len(train) * width)
                    break
            expected[i] += -np.log(density + 0.1)
    np.testing.assert_allclose(detector.score(TINY_TEST), expected, atol=1e-12)


def test_pca_score_is_the_squared_distance_from_the_principal_subspace():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(200, 3)) @ np.array([[3.0, 0, 0], [0, 1.0, 0], [0, 0, 0.1]])
    detector = PCA(n_components=2).fit(train)
    z = detector.encoder_.transform(read(train))
    centred = z - z.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    probe = detector.encoder_.transform(read(TINY_TEST[:, [0, 1, 1]]))
    residual = (probe - z.mean(axis=0)) @ vt[2]
    np.testing.assert_allclose(detector.score(TINY_TEST[:, [0, 1, 1]]), residual ** 2, atol=1e-9)


def read(array: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(array, columns=[f"x{j}" for j in range(array.shape[1])])


# --- attributions ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ecod", "copod", "hbos", "pca", "knn", "ensemble"])
def test_attributions_blame_the_pushed_column(name, fitted, data):
    _, test, _ = data
    row = test.iloc[[0]].copy()
    row["c"] += 8.0
    attribution = fitted[name].explain(row)
    assert list(attribution.columns) == ["a", "b", "c", "d", "colour"]
    assert attribution.iloc[0].idxmax() == "c"


def test_ensemble_attributions_are_shares(fitted, data):
    shares = fitted["ensemble"].explain(data[1]).to_numpy()
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    assert (shares >= 0).all()


def test_detectors_without_attributions_say_so(fitted, data):
    for name in ("iforest", "lof"):
        with pytest.raises(DataError, match="attributions"):
            fitted[name].explain(data[1])


# --- bad input and bad parameters -----------------------------------------------------------


def test_scoring_a_table_without_a_fitted_column_fails_clearly(fitted, data):
    with pytest.raises(DataError, match="colour"):
        fitted["ecod"].score(data[1].drop(columns=["colour"]))


def test_numpy_input_with_too_few_columns_fails_clearly():
    detector = ECOD().fit(TINY_TRAIN)
    with pytest.raises(DataError, match="x1"):
        detector.score(TINY_TEST[:, :1])


@pytest.mark.parametrize("detector, word", [
    (KNN(n_neighbors=0), "n_neighbors"), (KNN(n_neighbors=99), "n_neighbors"),
    (LOF(n_neighbors=-1), "n_neighbors"), (HBOS(n_bins=0), "n_bins"), (HBOS(alpha=0), "alpha"),
    (PCA(n_components=2), "n_components"), (PCA(n_components=1.5), "n_components"),
    (Ensemble(members=("ecod", "magic")), "magic"),
])
def test_bad_parameters_are_refused(detector, word):
    with pytest.raises(DataError, match=word):
        detector.fit(TINY_TRAIN)


def test_pca_needs_two_columns_and_the_default_ensemble_leaves_it_out_then(tmp_path):
    with pytest.raises(DataError, match="2 columns"):
        PCA().fit(TINY_TRAIN[:, :1])
    ensemble = Ensemble().fit(TINY_TRAIN[:, :1])
    assert ensemble.names_ == ["iforest", "knn", "ecod", "hbos"]
    loaded = load(ensemble.save(tmp_path / "one"))
    assert loaded.names_ == ensemble.names_
    assert np.array_equal(loaded.score(TINY_TEST[:, :1]), ensemble.score(TINY_TEST[:, :1]))


def test_ensemble_members_can_be_chosen(data):
    train, test, labels = data
    ensemble = Ensemble(members=["lof", "copod"]).fit(train)
    assert [type(m) for m in ensemble.members_] == [LOF, COPOD]
    assert roc_auc_score(labels, ensemble.score(test)) >= 0.95


def test_ensemble_is_the_mean_of_member_scores_in_training_median_and_iqr_units(data):
    train, test, _ = data
    expected = []
    for member in (LOF(), COPOD()):  # fitted on their own, standardised here by hand
        member.fit(train)
        on_train = member.score(train)
        q1, median, q3 = np.percentile(on_train, [25, 50, 75])
        expected.append((member.score(test) - median) / (q3 - q1))
    ensemble = Ensemble(members=["lof", "copod"]).fit(train)
    np.testing.assert_allclose(ensemble.score(test), np.mean(expected, axis=0), rtol=1e-9)


def test_nearest_scores_the_distance_to_the_closest_training_row():
    rng = np.random.default_rng(3)
    train, probe = rng.normal(size=(40, 3)), rng.normal(size=(7, 3))
    detector = DETECTORS["nearest"]().fit(train)
    # The encoder scales each column by the training rows' interquartile range as a standard deviation.
    q1, q3 = np.percentile(train, [25, 75], axis=0)
    scale = (q3 - q1) / (2 * norm.ppf(0.75))
    distances = np.linalg.norm((probe[:, None, :] - train[None]) / scale, axis=2)
    np.testing.assert_allclose(detector.score(probe), distances.min(axis=1), rtol=1e-4)


# --- model files ----------------------------------------------------------------------------


def _rewrite_arrays(path, change):
    arrays = {k: v.copy() for k, v in load_file(str(path / "arrays.safetensors")).items()}
    change(arrays)
    save_file(arrays, str(path / "arrays.safetensors"))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["arrays_sha256"] = hashlib.sha256((path / "arrays.safetensors").read_bytes()).hexdigest()
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    manifest["manifest_sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_a_forest_whose_nodes_loop_is_refused(fitted, tmp_path):
    path = fitted["iforest"].save(tmp_path / "f")

    def loop(arrays):
        arrays["forest.left"][0] = 0  # the root its own child: walking it would never end

    _rewrite_arrays(path, loop)
    with pytest.raises(ModelFileError, match="isolation forest"):
        load(path)


def test_an_encoder_with_a_wrong_shape_is_refused(fitted, tmp_path):
    path = fitted["ecod"].save(tmp_path / "e")

    def shorten(arrays):
        arrays["encoder.center"] = arrays["encoder.center"][:2]

    _rewrite_arrays(path, shorten)
    with pytest.raises(ModelFileError, match="encoder.center"):
        load(path)


def test_only_concrete_table_detectors_can_be_named_in_a_model_file():
    from normalcy.core.detector import REGISTRY

    assert {f"{cls.__module__}.{cls.__qualname__}" for cls in DETECTORS.values()} <= set(REGISTRY)
    assert "normalcy.tabular.base.TabularDetector" not in REGISTRY


def test_model_file_holds_no_pickle(fitted, tmp_path):
    path = fitted["ensemble"].save(tmp_path / "m")
    assert sorted(p.name for p in path.iterdir()) == ["arrays.safetensors", "manifest.json"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["class"] == "normalcy.tabular.ensemble.Ensemble"
    assert manifest["state"]["encoder"]["columns"] == ["a", "b", "c", "d", "colour"]


def test_a_copy_scores_like_the_original(fitted, data):
    detector = copy.deepcopy(fitted["knn"])
    assert np.array_equal(detector.score(data[1]), fitted["knn"].score(data[1]))

"""Table detectors: they find planted outliers, match an independent re-derivation (scikit-learn,
brute force), survive a save and load unchanged, say which columns are to blame, refuse
training data they cannot learn from, and keep their state finite."""

from __future__ import annotations

import copy
import hashlib
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from safetensors.numpy import load_file, save_file
from sklearn.ensemble import IsolationForest as SkIsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors

from normalcy.core import load
from normalcy.core.checks import assert_same_scores
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.registry import CLASSES, detectors
from normalcy.tabular import COPOD, ECOD, HBOS, KNN, LOF, PCA, Ensemble, IsolationForest, Nearest
from normalcy.tabular.base import ConstantDataWarning

DETECTORS = detectors("tabular")

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
    scores = fitted[name].decision_function(test)
    assert scores.shape == (len(test),) and np.isfinite(scores).all()
    assert roc_auc_score(labels, scores) >= MIN_AUROC.get(name, 0.95)


@pytest.mark.parametrize("name", list(DETECTORS))
def test_save_and_load_give_the_same_scores(name, fitted, data, tmp_path):
    detector = fitted[name]
    test = data[1].copy()
    test.loc[0, "colour"] = "ultraviolet"  # unseen categories too
    loaded = load(detector.save(tmp_path / name))
    assert type(loaded) is type(detector)
    assert_same_scores(loaded.decision_function(test), detector.decision_function(test))
    if detector.explains:
        again, original = loaded.explain(test), detector.explain(test)
        assert again.parts == original.parts
        assert_same_scores(again.contributions, original.contributions, "contributions")


@pytest.mark.parametrize("name", list(DETECTORS))
def test_fitted_state_is_c_ordered_as_a_reloaded_one_is(name, data):
    """Issue 20: a Fortran-ordered array (PCA's components) made BLAS sum in another order
    after a reload, which stores C order. Fitted from a Fortran-ordered matrix too."""
    for detector in (DETECTORS[name]().fit(data[0]),
                     DETECTORS[name]().fit_matrix(np.asfortranarray(data[0][["a", "b", "c", "d"]].to_numpy()))):
        arrays = detector._get_state()[0] if hasattr(detector, "encoder_") else detector.matrix_state()[0]
        assert {k for k, a in arrays.items() if not a.flags.c_contiguous} == set()


@pytest.mark.parametrize("name", list(DETECTORS))
def test_unseen_category_and_missing_values_are_scored(name, fitted, data):
    row = data[1].iloc[:2].copy()
    row.loc[0, "colour"] = "never-seen"
    row.loc[1, "a"] = np.nan
    row.loc[1, "colour"] = None
    assert np.isfinite(fitted[name].decision_function(row)).all()


def test_isolation_forest_matches_scikit_learn(fitted, data):
    detector = fitted["iforest"]
    train, test, _ = data
    encoded_train = detector.encoder_.transform(train)
    forest = SkIsolationForest(random_state=detector.seed).fit(encoded_train)
    expected = -forest.score_samples(detector.encoder_.transform(test))
    np.testing.assert_allclose(detector.decision_function(test), expected, rtol=0, atol=1e-12)


def test_isolation_forest_with_column_subsets_matches_scikit_learn(data):
    train, test, _ = data
    detector = IsolationForest(n_estimators=20, max_features=0.5, max_samples=64, seed=3).fit(train)
    forest = SkIsolationForest(n_estimators=20, max_features=0.5, max_samples=64, random_state=3)
    forest.fit(detector.encoder_.transform(train))
    expected = -forest.score_samples(detector.encoder_.transform(test))
    np.testing.assert_allclose(detector.decision_function(test), expected, rtol=0, atol=1e-12)


def test_lof_matches_scikit_learn_novelty_mode(fitted, data):
    detector = fitted["lof"]
    train, test, _ = data
    lof = LocalOutlierFactor(n_neighbors=20, novelty=True).fit(detector.encoder_.transform(train))
    np.testing.assert_allclose(detector.decision_function(test), -lof.score_samples(detector.encoder_.transform(test)))


def test_knn_is_the_distance_to_the_kth_training_row(fitted, data):
    detector = fitted["knn"]
    train, test, _ = data
    neighbours = NearestNeighbors(n_neighbors=5).fit(detector.encoder_.transform(train))
    expected = neighbours.kneighbors(detector.encoder_.transform(test))[0][:, -1]
    np.testing.assert_allclose(detector.decision_function(test), expected, rtol=1e-4)


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
    explanation = detector.explain(TINY_TEST)
    scores, attributions = explanation.scores, explanation.contributions
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
    np.testing.assert_allclose(ours.decision_function(test), expected, rtol=1e-10)


def test_ecod_and_copod_differ_but_their_paper_forms_agree(data):
    train, test, _ = data
    assert not np.allclose(ECOD().fit(train).decision_function(test), COPOD().fit(train).decision_function(test))
    np.testing.assert_allclose(ECOD(variant="paper").fit(train).decision_function(test),
                               COPOD(variant="paper").fit(train).decision_function(test))


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
    np.testing.assert_allclose(detector.decision_function(TINY_TEST), expected, atol=1e-12)


def test_pca_score_is_the_squared_distance_from_the_principal_subspace():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(200, 3)) @ np.array([[3.0, 0, 0], [0, 1.0, 0], [0, 0, 0.1]])
    detector = PCA(n_components=2).fit(train)
    z = detector.encoder_.transform(read(train))
    centred = z - z.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    probe = detector.encoder_.transform(read(TINY_TEST[:, [0, 1, 1]]))
    residual = (probe - z.mean(axis=0)) @ vt[2]
    np.testing.assert_allclose(detector.decision_function(TINY_TEST[:, [0, 1, 1]]), residual ** 2, atol=1e-9)


def read(array: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(array, columns=[f"x{j}" for j in range(array.shape[1])])


# --- attributions ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ecod", "copod", "hbos", "pca", "knn", "ensemble"])
def test_attributions_blame_the_pushed_column(name, fitted, data):
    _, test, _ = data
    row = test.iloc[[0]].copy()
    row["c"] += 8.0
    explanation = fitted[name].explain(row)
    assert explanation.parts == ("a", "b", "c", "d", "colour")
    assert explanation.top(1) == [["c"]]
    assert_same_scores(explanation.scores, fitted[name].decision_function(row))


def test_ensemble_attributions_are_shares(fitted, data):
    shares = fitted["ensemble"].explain(data[1]).contributions
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    assert (shares >= 0).all()


def test_detectors_without_attributions_say_so_and_name_those_with(fitted, data):
    for name in ("iforest", "lof"):
        with pytest.raises(DataError, match="attributions; use one of ensemble, knn, nearest, ecod"):
            fitted[name].explain(data[1])


# --- bad input and bad parameters -----------------------------------------------------------


def test_scoring_a_table_without_a_fitted_column_fails_clearly(fitted, data):
    with pytest.raises(DataError, match="colour"):
        fitted["ecod"].decision_function(data[1].drop(columns=["colour"]))


def test_numpy_input_with_too_few_columns_fails_clearly():
    detector = ECOD().fit(TINY_TRAIN)
    with pytest.raises(DataError, match="x1"):
        detector.decision_function(TINY_TEST[:, :1])


@pytest.mark.parametrize("detector, word", [
    (KNN(n_neighbors=0), "n_neighbors"), (KNN(n_neighbors=99), "at least 99 training rows"),
    (KNN(n_neighbors=2.5), "n_neighbors"), (LOF(n_neighbors=-1), "n_neighbors"), (HBOS(n_bins=0), "n_bins"),
    (HBOS(alpha=0), "alpha"), (HBOS(alpha="big"), "alpha"), (PCA(n_components=2), "n_components"),
    (PCA(n_components=1.5), "n_components"), (Ensemble(members=("ecod", "magic")), "magic"),
    (ECOD(variant="magic"), "variant"), (IsolationForest(n_estimators=0), "n_estimators"),
    (IsolationForest(max_samples=-3), "max_samples"), (IsolationForest(seed=-1), "seed"),
])
def test_bad_parameters_are_refused(detector, word):
    with pytest.raises(DataError, match=word):
        detector.fit(TINY_TRAIN)


def test_nearest_and_knn_and_ensemble_state_how_many_training_rows_they_need():
    """Issue 12 item 9: too short training data is refused with the minimum stated."""
    with pytest.raises(DataError, match="nearest needs at least 2 training rows, got 1"):
        Nearest().fit(TINY_TRAIN[:1])
    with pytest.raises(DataError, match="knn needs at least 5 training rows, got 4"):
        KNN().fit(TINY_TRAIN[:4])
    with pytest.raises(DataError, match="ensemble needs at least 5 training rows, got 3"):
        Ensemble().fit(TINY_TRAIN[:3])
    with pytest.raises(DataError, match="iforest needs at least 2 training rows, got 1"):
        IsolationForest().fit(TINY_TRAIN[:1])
    with pytest.raises(DataError, match="needs at least 2 training texts, got 1"):
        LOF().fit_matrix(TINY_TRAIN[:1], unit="texts")


def test_a_constant_table_is_fitted_with_a_warning():
    """Issue 12 item 9: isolation forest on a constant table scored every row 0.5, silently."""
    constant = pd.DataFrame({"a": [3.0] * 20, "b": ["x"] * 20})
    with pytest.warns(ConstantDataWarning, match="all 20 training rows are the same.*fit on varied normal rows"):
        IsolationForest(n_estimators=10).fit(constant)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConstantDataWarning)
        IsolationForest(n_estimators=10).fit(constant.assign(a=np.arange(20.0) % 3))  # varied: no warning


def test_training_values_beyond_the_float_range_a_model_can_hold_are_refused(tmp_path):
    """Issue 12 item 4: fitting on values near 1e308 gave a model that saved but never loaded."""
    train = pd.DataFrame({"a": np.linspace(-1.0, 1.0, 30), "b": np.linspace(0.0, 1.0, 30)})
    train.loc[3, "b"] = 1.7e308
    for detector in (Ensemble(), KNN(), ECOD(), HBOS(), PCA(), LOF(), IsolationForest(n_estimators=10)):
        with pytest.raises(DataError, match=r"column 'b' has 1\.7e\+308 at row 3, beyond the ±1e\+100"):
            detector.fit(train)


@pytest.mark.parametrize("name", list(DETECTORS))
def test_huge_values_when_scoring_give_finite_higher_scores_and_infinity_names_its_place(name, fitted, data, tmp_path):
    """Issue 12 item 2: an inf, 1e999 or near-DBL_MAX reading must not poison scores or state."""
    test = data[1].iloc[:2].copy()
    test.loc[0, "a"], test.loc[1, "d"] = 1.7976931348623157e308, -1e308
    scores = fitted[name].decision_function(test)
    assert np.isfinite(scores).all() and (scores > fitted[name].decision_function(data[1].iloc[:2])).all()
    load(fitted[name].save(tmp_path / "m"))  # scoring left the state finite, so it still saves and loads
    (tmp_path / "t.csv").write_text("a,b,c,d,colour\n1,2,3,1e999,red\n")
    with pytest.raises(DataError, match=r"t.csv: column 'd' contains infinity at row 0 \(or a number too large"):
        fitted[name].decision_function(tmp_path / "t.csv")


def test_a_column_constant_but_for_rounding_does_not_dominate_the_scores():
    """Issue 22 item 1: a column whose training values all have one frequency (1/n as a
    category) got the standard deviation of rounding, ~1e-17, as its scale, so a new value
    scored ~1e15 (knn) whatever the other columns said."""
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"x": rng.normal(size=36), "y": rng.normal(size=36),
                          "pair": [f"p{i // 2}" for i in range(36)]})  # each value twice: all 1/18
    detector = KNN().fit(train)
    new = pd.DataFrame({"x": [0.0, 6.0], "y": [0.0, 6.0], "pair": ["new", "new"]})
    scores = detector.decision_function(new)
    assert detector.encoder_.scale_[2] == 1.0
    assert scores[0] < 2 < 6 < scores[1] < 20


def test_an_ensemble_member_scoring_training_rows_alike_to_rounding_does_not_dominate():
    """A column constant in training leaves PCA residuals of ~1e-30 on the training rows: as
    the member's spread that made any new value score ~1e26 (threshold 9e25)."""
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60), "c": rng.normal(size=60),
                          "flag": 0.0})
    ensemble = Ensemble().fit(train)
    assert ensemble.spread_[ensemble.names_.index("pca")] == 1.0
    new = pd.DataFrame({"a": [0.0, 5.0], "b": [0.0, 5.0], "c": [0.0, 5.0], "flag": [1.0, 0.0]})
    flagged, far = ensemble.decision_function(new)
    assert flagged < far < 100


def test_pca_needs_two_columns_and_the_default_ensemble_leaves_it_out_then(tmp_path):
    with pytest.raises(DataError, match="2 columns"):
        PCA().fit(TINY_TRAIN[:, :1])
    ensemble = Ensemble().fit(TINY_TRAIN[:, :1])
    assert ensemble.names_ == ["iforest", "knn", "ecod", "hbos"]
    loaded = load(ensemble.save(tmp_path / "one"))
    assert loaded.names_ == ensemble.names_
    assert_same_scores(loaded.decision_function(TINY_TEST[:, :1]), ensemble.decision_function(TINY_TEST[:, :1]))


def test_ensemble_members_can_be_chosen(data):
    train, test, labels = data
    ensemble = Ensemble(members=["lof", "copod"]).fit(train)
    assert [type(m) for m in ensemble.members_] == [LOF, COPOD]
    assert roc_auc_score(labels, ensemble.decision_function(test)) >= 0.95


def test_ensemble_is_the_mean_of_member_scores_in_training_median_and_iqr_units(data):
    train, test, _ = data
    expected = []
    for member in (LOF(), COPOD()):  # fitted on their own, standardised here by hand
        member.fit(train)
        on_train = member.decision_function(train)
        q1, median, q3 = np.percentile(on_train, [25, 50, 75])
        expected.append((member.decision_function(test) - median) / (q3 - q1))
    ensemble = Ensemble(members=["lof", "copod"]).fit(train)
    np.testing.assert_allclose(ensemble.decision_function(test), np.mean(expected, axis=0), rtol=1e-9)


def test_nearest_scores_the_distance_to_the_closest_training_row():
    rng = np.random.default_rng(3)
    train, probe = rng.normal(size=(40, 3)), rng.normal(size=(7, 3))
    detector = DETECTORS["nearest"]().fit(train)
    # The encoder scales each column by the training rows' interquartile range as a standard deviation.
    q1, q3 = np.percentile(train, [25, 75], axis=0)
    scale = (q3 - q1) / (2 * norm.ppf(0.75))
    distances = np.linalg.norm((probe[:, None, :] - train[None]) / scale, axis=2)
    np.testing.assert_allclose(detector.decision_function(probe), distances.min(axis=1), rtol=1e-4)


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
    assert {f"{cls.__module__}.{cls.__qualname__}" for cls in DETECTORS.values()} <= set(CLASSES)
    assert "normalcy.tabular.base.TabularDetector" not in CLASSES
    assert "normalcy.tabular.ecod.EmpiricalTails" not in CLASSES


def test_ensemble_members_come_from_the_registry(data, tmp_path):
    ensemble = Ensemble(members=["nearest", "copod"]).fit(data[0])
    assert [type(m) for m in ensemble.members_] == [Nearest, COPOD]
    with pytest.raises(DataError, match="'ensemble'.*expected some of knn, nearest"):
        Ensemble(members=["ensemble"]).fit(data[0])


def test_model_file_holds_no_pickle(fitted, tmp_path):
    path = fitted["ensemble"].save(tmp_path / "m")
    assert sorted(p.name for p in path.iterdir()) == ["arrays.safetensors", "manifest.json"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["class"] == "normalcy.tabular.ensemble.Ensemble"
    assert manifest["state"]["encoder"]["columns"] == ["a", "b", "c", "d", "colour"]


def test_a_copy_scores_like_the_original(fitted, data):
    detector = copy.deepcopy(fitted["knn"])
    assert np.array_equal(detector.decision_function(data[1]), fitted["knn"].decision_function(data[1]))

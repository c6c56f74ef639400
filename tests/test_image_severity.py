"""Graded labels: the severity figures against scipy and scikit-learn, the ELPV adapter on a
fake folder written here, and the ELPV benchmark through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from clirunner import run_in_process as run
from normalcy.core.errors import DataError
from normalcy.image.elpv import load_elpv, split
from normalcy.image.io import read_image
from normalcy.image.severity import severity_figures

# --- the figures -------------------------------------------------------------------------


def test_severity_figures_match_scipy_and_sklearn():
    rng = np.random.default_rng(3)
    grades = rng.choice([0.0, 1 / 3, 2 / 3, 1.0], size=80)
    scores = grades * 2 + rng.normal(0, 0.8, 80)
    fig = severity_figures(scores, grades)
    assert fig["spearman"] == pytest.approx(spearmanr(scores, grades).statistic, abs=1e-12)
    top = np.isin(grades, (0, 1))
    assert fig["auroc_top_vs_0"] == pytest.approx(roc_auc_score(grades[top] == 1, scores[top]))
    assert fig["auroc_any_vs_0"] == pytest.approx(roc_auc_score(grades > 0, scores))
    assert [(a["low"], a["high"]) for a in fig["adjacent"]] == [(0, 1 / 3), (1 / 3, 2 / 3), (2 / 3, 1)]
    for pair in fig["adjacent"]:
        keep = np.isin(grades, (pair["low"], pair["high"]))
        assert pair["auroc"] == pytest.approx(roc_auc_score(grades[keep] == pair["high"], scores[keep]))
        assert pair["n_low"] == int((grades == pair["low"]).sum())


def test_a_hand_worked_case():
    # grades 0,0,1,1,2 with scores ranked 1,3,2,4,5: Spearman 1 - 6*sum(d^2)/(n(n^2-1)) with
    # tied grades ranked 1.5,1.5,3.5,3.5,5 -> pearson of ranks; 0-vs-1: 3 of 4 pairs ordered.
    scores, grades = np.array([1.0, 3.0, 2.0, 4.0, 5.0]), np.array([0, 0, 1, 1, 2])
    fig = severity_figures(scores, grades)
    assert fig["adjacent"][0]["auroc"] == pytest.approx(0.75)
    assert fig["adjacent"][1]["auroc"] == pytest.approx(1.0)
    assert fig["auroc_top_vs_0"] == pytest.approx(1.0)
    assert fig["spearman"] == pytest.approx(np.corrcoef([1, 3, 2, 4, 5], [1.5, 1.5, 3.5, 3.5, 5])[0, 1])


def test_constant_scores_have_no_correlation_and_bad_input_is_refused():
    assert severity_figures(np.ones(4), np.array([0, 0, 1, 1]))["spearman"] is None
    with pytest.raises(DataError, match="grade 0"):
        severity_figures([1.0, 2.0], [1, 2])
    with pytest.raises(DataError, match="one length"):
        severity_figures([1.0, 2.0, 3.0], [0, 1])
    with pytest.raises(DataError, match="finite"):
        severity_figures([1.0, np.nan], [0, 1])


# --- the ELPV adapter --------------------------------------------------------------------


def _fake_elpv(root, per=(10, 2, 2, 4)):
    """labels.csv and tiny grey PNGs in ELPV's layout: `per` cells of each grade and type."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines, k = [], 0
    for kind in ("mono", "poly"):
        for grade, n in zip(("0.0", "0.3333333333333333", "0.6666666666666666", "1.0"), per):
            for _ in range(n):
                k += 1
                grey = np.clip(128 + 20 * rng.normal(size=(48, 48)) + 100 * float(grade), 0, 255).astype(np.uint8)
                Image.fromarray(grey, mode="L").save(root / "images" / f"cell{k:04d}.png")
                lines.append(f"images/cell{k:04d}.png  {grade}                 {kind}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_elpv_cells_and_the_split(tmp_path):
    root = _fake_elpv(tmp_path / "data")
    cells = load_elpv(root)
    assert len(cells.paths) == 36 and cells.types.count("mono") == 18
    assert sorted(set(np.round(cells.grades, 6))) == [0, round(1 / 3, 6), round(2 / 3, 6), 1]
    assert read_image(cells.paths[0]).shape == (48, 48, 3)  # grey cells are read as RGB
    part = split(cells, "poly", seed=1)
    poly = {p for p, t in zip(cells.paths, cells.types) if t == "poly"}
    assert len(part.train) == 7  # 70% of the 10 grade-0 poly cells
    assert set(part.train) | set(part.test) == poly and not set(part.train) & set(part.test)
    grade = dict(zip(cells.paths, cells.grades))
    assert all(grade[p] == 0 for p in part.train)
    assert list(part.test_grades) == [grade[p] for p in part.test]
    assert split(cells, "poly", seed=1).train == part.train and split(cells, "poly", seed=2).train != part.train


@pytest.mark.parametrize("mutate, message", [
    (lambda root: (root / "labels.csv").unlink(), "labels.csv is missing"),
    (lambda root: (root / "labels.csv").write_text("images/cell0001.png 0.0 triple\n"), "type 'triple'"),
    (lambda root: (root / "labels.csv").write_text("images/cell0001.png 0.5 mono\n"), "0.5 is not one of"),
    (lambda root: (root / "labels.csv").write_text("images/none.png 0.0 mono\n"), "does not exist"),
    (lambda root: (root / "labels.csv").write_text("images/cell0001.png mono\n"), "expected 'path probability type'"),
])
def test_a_wrong_elpv_folder_is_a_clear_error(tmp_path, mutate, message):
    root = _fake_elpv(tmp_path / "data")
    mutate(root)
    with pytest.raises(DataError, match=message):
        load_elpv(root)


def test_the_elpv_benchmark_reports_each_cell_type(tmp_path):
    root = _fake_elpv(tmp_path / "data")
    out = tmp_path / "bench" / "elpv.json"
    result = run("image", "benchmark", "--elpv", str(root), "--models", "gaussian", "--image-size", "32",
                 "--threads", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr
    records = json.loads(out.read_text())["records"]
    assert [r["dataset"] for r in records] == ["elpv-mono", "elpv-poly"]
    for r in records:
        assert r["n_train"] == 7 and r["n_test"] == 11
        assert 0 <= r["auroc_top_vs_0"] <= 1 and -1 <= r["spearman"] <= 1
        assert {"auroc_0_vs_1/3", "auroc_1/3_vs_2/3", "auroc_2/3_vs_1"} <= set(r)
    assert "auroc_top_vs_0" in out.with_suffix(".md").read_text()


def test_the_benchmark_needs_data_or_elpv(tmp_path):
    result = run("image", "benchmark", "--json", str(tmp_path / "b.json"))
    assert result.returncode == 2 and "--data is needed" in result.stderr

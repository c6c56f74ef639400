"""`normalcy table benchmark`: every detector on every dataset of a folder of .npz files (X:
rows x columns, y: 1 = anomaly), AUROC and AUPRC against y, fit and score seconds, under two
protocols:

- ``unsupervised`` (ADBench's): fit on all rows without labels, score the same rows;
- ``semi-supervised``: fit on a seeded random half of the normal rows, score the held-out mix
  (the other normal rows and every anomaly).

With ``pyod`` among the libraries, PyOD's implementation of each shared detector runs beside
ours in the same loop, with the same hyper-parameters (both libraries' defaults agree: kNN
k = 5 largest, LOF k = 20, HBOS 10 bins alpha 0.1, isolation forest 100 trees, seed 0; PyOD's
PCA keeps its own defaults, see docs/tabular.md) and on the same input: each PyOD detector is
wrapped in `Adapter`, so it gets the same encoded matrix and its times include the same
encoding. Every detector is fitted and scored once on a tiny table first, so one-off costs
(imports, numba compilation) are not timed. PyOD is a benchmark-only dependency (the `bench`
extra) and is imported only when asked for.

Datasets with more than `max_rows` rows are subsampled (seeded, stratified by label) so that
a run fits a small machine; each record says how many rows it used. A detector that fails or
returns non-finite scores on a dataset gets a record with its error and no metrics.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from normalcy.core import metrics
from normalcy.core.benchmark import machine_info, markdown, versions, write_atomic
from normalcy.core.errors import DataError
from normalcy.tabular import DEFAULT, DEFAULT_CLEAN

PACKAGES = ("numpy", "scipy", "scikit-learn", "faiss-cpu", "pandas", "pyod", "numba")
COLUMNS = ["protocol", "library", "detector", "dataset", "auroc", "auprc", "fit_seconds", "score_seconds",
           "n_fit_rows", "n_scored_rows", "n_columns", "anomaly_rate", "error"]
PROTOCOLS = {
    "unsupervised": "fit on all rows without labels, score the same rows (ADBench)",
    "semi-supervised": "fit on a seeded random half of the normal rows, score the other half and every anomaly",
}
# What `normalcy table fit` picks: its default when training rows may hold anomalies, and with
# --clean, when they are known to be normal.
PROTOCOL_DEFAULTS = {"unsupervised": DEFAULT, "semi-supervised": DEFAULT_CLEAN}
LIBRARIES = ("normalcy", "pyod")
NORMAL_FRACTION = 0.5  # of the normal rows, fitted on under the semi-supervised protocol


def pyod_detectors() -> dict:
    """PyOD's detector of each shared name, as a factory with our default hyper-parameters."""
    try:
        from pyod.models.copod import COPOD
        from pyod.models.ecod import ECOD
        from pyod.models.hbos import HBOS
        from pyod.models.iforest import IForest
        from pyod.models.knn import KNN
        from pyod.models.lof import LOF
        from pyod.models.pca import PCA
    except ImportError:
        raise DataError("PyOD is not installed, and the benchmark needs it for library pyod: install the bench "
                        "extra (pip install -c constraints.txt -e \".[tabular,bench]\") or pass "
                        "--libraries normalcy") from None
    return {
        "iforest": lambda: IForest(n_estimators=100, max_samples="auto", random_state=0),
        "knn": lambda: KNN(n_neighbors=5, method="largest"),
        "lof": lambda: LOF(n_neighbors=20),
        "ecod": ECOD,
        "copod": COPOD,
        "hbos": lambda: HBOS(n_bins=10, alpha=0.1),
        "pca": PCA,
    }


def datasets(root: Path) -> list[Path]:
    """root itself when it is one .npz file, else the .npz files in it."""
    if root.is_file() and root.suffix == ".npz":
        return [root]
    if not root.is_dir():
        raise DataError(f"benchmark data {root} is neither a folder nor an .npz file")
    found = sorted(root.glob("*.npz"), key=lambda p: (len(p.name.split("_")[0]), p.name))
    if not found:
        raise DataError(f"no .npz datasets in {root}")
    return found


def load_npz(path: Path, max_rows: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            X, y = np.asarray(npz["X"], dtype=np.float64), np.asarray(npz["y"]).reshape(-1)
    except KeyError as exc:
        raise DataError(f"{path} has no array {exc}; expected X and y") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if X.ndim != 2 or len(X) != len(y):
        raise DataError(f"{path}: X must be rows x columns with one y per row, got {X.shape} and {y.shape}")
    if max_rows is not None and len(X) > max_rows:
        rng = np.random.default_rng(seed)
        # Stratified: each label keeps its share of the rows.
        keep = np.concatenate([rng.choice(np.flatnonzero(y == v), size=max(1, round(max_rows * np.mean(y == v))),
                                          replace=False) for v in np.unique(y)])
        keep.sort()
        X, y = X[keep], y[keep]
    return X, y


def split(y: np.ndarray, protocol: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the rows to fit on and of the rows to score."""
    everything = np.arange(len(y))
    if protocol == "unsupervised":
        return everything, everything
    normal = np.flatnonzero(y == 0)
    fit = np.sort(np.random.default_rng(seed).choice(normal, size=int(len(normal) * NORMAL_FRACTION),
                                                     replace=False))
    return fit, np.setdiff1d(everything, fit)


def run(root: str | Path, detectors: list[str], json_path: str | Path, max_rows: int | None = 10000,
        seed: int = 0, protocols: tuple[str, ...] = tuple(PROTOCOLS),
        libraries: tuple[str, ...] = LIBRARIES) -> tuple[Path, Path, list[dict]]:
    factories = _factories(detectors, libraries)
    paths = datasets(Path(root))
    _warm_up(factories)
    records = []
    for path in paths:
        X, y = load_npz(path, max_rows, seed)
        for protocol in protocols:
            fit_rows, scored_rows = split(y, protocol, seed)
            for (library, name), make in factories.items():
                print(f"benchmark: {protocol} {library} {name} on {path.stem} ({len(X)} rows) ...",
                      file=sys.stderr, flush=True)
                record = {"protocol": protocol, "library": library, "detector": name, "dataset": path.stem,
                          "n_fit_rows": len(fit_rows), "n_scored_rows": len(scored_rows), "n_rows": len(X),
                          "n_columns": X.shape[1], "anomaly_rate": float(np.mean(y[scored_rows]))}
                record.update(_measure(make, X[fit_rows], X[scored_rows], y[scored_rows]))
                records.append(record)
    settings = {"max_rows": max_rows, "seed": seed, "protocols": "; ".join(f"{p}: {PROTOCOLS[p]}" for p in protocols),
                "libraries": ",".join(libraries)}
    doc = {"machine": machine_info(), "versions": versions(PACKAGES), "settings": settings, "records": records}
    json_path = Path(json_path)
    md_path = json_path.with_suffix(".md")
    write_atomic(json_path, json.dumps(doc, indent=2) + "\n")
    write_atomic(md_path, report(doc))
    return json_path, md_path, records


def _factories(detectors: list[str], libraries: tuple[str, ...]) -> dict:
    from normalcy.core.registry import detector_class
    from normalcy.tabular.adapter import Adapter

    unknown = [lib for lib in libraries if lib not in LIBRARIES]
    if unknown or not libraries:
        raise DataError(f"unknown librar(ies) {', '.join(unknown) or '(none)'}; expected some of {', '.join(LIBRARIES)}")
    if not detectors:
        raise DataError("no detectors to benchmark")
    factories = {}
    pyod = pyod_detectors() if "pyod" in libraries else {}
    for name in detectors:
        if "normalcy" in libraries:
            factories["normalcy", name] = detector_class("tabular", name)
        if name in pyod:
            factories["pyod", name] = lambda make=pyod[name]: Adapter(make())
    return factories


def _warm_up(factories: dict) -> None:
    rng = np.random.default_rng(0)
    tiny = rng.normal(size=(64, 3))
    for make in factories.values():
        make().fit(tiny).decision_function(tiny)


def _measure(make, fit_X: np.ndarray, scored_X: np.ndarray, scored_y: np.ndarray) -> dict:
    try:
        start = time.perf_counter()
        detector = make().fit(fit_X)
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        scores = detector.decision_function(scored_X)
        score_seconds = time.perf_counter() - start
        if not np.isfinite(scores).all():
            raise ValueError(f"{int(np.sum(~np.isfinite(scores)))} non-finite scores")
    except Exception as exc:  # one detector failing on one dataset must not end the run: record it
        return {"auroc": None, "auprc": None, "fit_seconds": None, "score_seconds": None,
                "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]}
    return {"auroc": metrics.auroc(scored_y, scores), "auprc": metrics.auprc(scored_y, scores),
            "fit_seconds": fit_seconds, "score_seconds": score_seconds, "error": None}


# --- the Markdown report ------------------------------------------------------------------

def summary(records: list[dict]) -> dict:
    """Per (protocol, library, detector): mean AUROC and AUPRC over the datasets every library's
    run of that detector scored, total fit and score seconds, and failures."""
    out = {}
    for protocol in dict.fromkeys(r["protocol"] for r in records):
        mine = [r for r in records if r["protocol"] == protocol]
        for name in dict.fromkeys(r["detector"] for r in mine):
            runs = [r for r in mine if r["detector"] == name]
            failed = {r["dataset"] for r in runs if r["auroc"] is None}
            for library in dict.fromkeys(r["library"] for r in runs):
                ok = [r for r in runs if r["library"] == library and r["dataset"] not in failed]
                out[protocol, library, name] = {
                    "auroc": _mean([r["auroc"] for r in ok]), "auprc": _mean([r["auprc"] for r in ok]),
                    "fit_seconds": sum(r["fit_seconds"] for r in ok),
                    "score_seconds": sum(r["score_seconds"] for r in ok),
                    "n_datasets": len(ok),
                    "failed": sorted({r["dataset"] for r in runs if r["library"] == library and r["auroc"] is None}),
                }
    return out


def report(doc: dict) -> str:
    records = doc["records"]
    table = summary(records)
    head = markdown({**doc, "records": []}, "Table benchmark", COLUMNS).split("\n| ")[0].rstrip()
    lines = [head, ""]
    for protocol in dict.fromkeys(r["protocol"] for r in records):
        lines += [f"## {protocol}: {PROTOCOLS.get(protocol, '')}", ""]
        names = list(dict.fromkeys(r["detector"] for r in records if r["protocol"] == protocol))
        lines += ["| detector | normalcy AUROC | pyod AUROC | AUROC ours - pyod | normalcy AUPRC | pyod AUPRC | "
                  "normalcy fit+score s | pyod fit+score s | time ours / pyod | datasets |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        shared_ours = shared_theirs = 0.0
        diffs = []
        for name in names:
            ours, theirs = table.get((protocol, "normalcy", name)), table.get((protocol, "pyod", name))
            t_ours = ours and ours["fit_seconds"] + ours["score_seconds"]
            t_theirs = theirs and theirs["fit_seconds"] + theirs["score_seconds"]
            diff = ratio = None
            if ours and theirs:
                diff = ours["auroc"] - theirs["auroc"]
                ratio = t_ours / t_theirs if t_theirs else None
                diffs.append(diff)
                shared_ours += t_ours
                shared_theirs += t_theirs
            n = (ours or theirs)["n_datasets"]
            failed = sorted(set((ours or {}).get("failed", [])) | set((theirs or {}).get("failed", [])))
            lines.append("| " + " | ".join([
                name, _f(ours and ours["auroc"]), _f(theirs and theirs["auroc"]), _f(diff, signed=True),
                _f(ours and ours["auprc"]), _f(theirs and theirs["auprc"]), _s(t_ours), _s(t_theirs), _f(ratio),
                f"{n}" + (f" (failed: {', '.join(failed)})" if failed else "")]) + " |")
        if diffs:
            lines += ["", f"- shared detectors: mean AUROC difference (ours - pyod) {np.mean(diffs):+.4f}, "
                      f"mean absolute {np.mean(np.abs(diffs)):.4f}; total seconds ours {shared_ours:.1f}, "
                      f"pyod {shared_theirs:.1f} (ratio {shared_ours / shared_theirs:.2f})"]
            best = max((v["auroc"], k[2]) for k, v in table.items() if k[0] == protocol and k[1] == "pyod")
            name = PROTOCOL_DEFAULTS[protocol]
            default = table.get((protocol, "normalcy", name))
            if default:
                lines.append(f"- our default for this protocol ({name}) mean AUROC {default['auroc']:.4f}; best "
                             f"single PyOD detector {best[1]} {best[0]:.4f}")
        lines += ["", f"AUROC per dataset ({protocol}):", ""]
        columns = [(lib, name) for name in names for lib in LIBRARIES
                   if (protocol, lib, name) in table]
        lines += ["| dataset | rows | " + " | ".join(f"{n} ({'ours' if lib == 'normalcy' else lib})"
                                                  for lib, n in columns) + " |",
                  "|---|---|" + "---|" * len(columns)]
        by_key = {(r["dataset"], r["library"], r["detector"]): r for r in records if r["protocol"] == protocol}
        for dataset in dict.fromkeys(r["dataset"] for r in records if r["protocol"] == protocol):
            some = next(r for k, r in by_key.items() if k[0] == dataset)
            cells = [_f(by_key.get((dataset, lib, n), {}).get("auroc"), digits=3) for lib, n in columns]
            lines.append(f"| {dataset} | {some['n_rows']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## All records", ""]
    lines += markdown(doc, "", COLUMNS).split("\n\n", 2)[-1].splitlines()
    return "\n".join(lines) + "\n"


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _f(value, signed: bool = False, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _s(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"

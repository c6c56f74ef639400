"""Entity-graph embeddings on Spark, and edge scores by embedding distance: who talks to whom,
and which connections are new or rare.

The graph: every entity of an event table (a user, a host, a port ...) is a node, typed by its
column ("user=ann" and "host=ann" are two nodes); every pair of entity columns of an event adds
one to the weight of the edge between its two entities. A node's id is a 64-bit hash of its
type and value (Spark's xxhash64), so no global numbering is needed.

Partitioning (vertex cut): each edge belongs to its endpoint of lower degree, and edges are
split by the bits of that endpoint's hash, recursively, until every part holds at most
`max_part_edges` edges: a part fits one executor's memory, a low-degree node keeps all its
edges in one part, and the hubs (a busy host, a common port) are the nodes shared between
parts, their *boundary*. Histogram of 65,536 hash buckets in one pass; the recursive split is
done on the driver over that histogram.

Embedding of one part (`embed_part`, a plain numpy/scipy function, run in parallel, each part
in a Spark partition of its own: `slot_keys`): the top `dim` eigenvectors of the lazy random
walk's symmetric matrix M = (I + D^-1/2 A D^-1/2) / 2, each scaled by the square root of its
`steps`-step walk proximity sum_{r=1..steps} lambda^r. M is positive semi-definite, so
x_a . x_b is the (low-rank) random-walk proximity of a and b and orthogonal rotations keep it:
this is the matrix-factorisation view of random-walk embeddings (DeepWalk factorises walk proximities,
Qiu et al. 2018), computed exactly by Lanczos (ARPACK) in O(edges x iterations) instead of
sampled walks and a skip-gram. `steps` 1 factorises the adjacency itself. Lanczos runs in single
precision: it streams the matrix and its basis through memory, so half the bytes is about half
the time, and the eigenvalues agree with double precision's to 1e-5.

Merge with the boundary: each part's embedding is in its own coordinates. Orthogonal
Procrustes rotations, one per part, found on the driver from at most `anchors` boundary nodes
per part (generalised Procrustes: align every part to the anchors' mean, a few rounds), bring
all parts into one frame; a node in several parts gets the degree-weighted mean of its
rotated vectors. The driver only ever holds parts x anchors x dim numbers.

Scores: an edge's score is 1 - cos(x_a, x_b) of its endpoints (0: the same neighbourhood; 2:
opposite); an event's score is the largest over its pairs of entities. A pair with an entity
the graph never saw is scored `UNSEEN_SCORE` (1: as unrelated as orthogonal vectors), so an
event is judged by how its known entities fit together, as APE judges it (a new entity alone is
what the frequency baseline flags).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from normalcy.core.errors import DataError

BUCKETS = 1 << 16
UNSEEN_SCORE = 1.0
# Chosen on the loghub injection benchmark by the worst stream, leaving each stream out in turn
# (docs/spark.md): 32 dimensions and 3 walk steps in 8 of 10 folds.
DEFAULT_DIM = 32
DEFAULT_STEPS = 3
DEFAULT_PART_EDGES = 2_000_000
DEFAULT_ANCHORS = 1000
SETTINGS = "graph.json"
NODES = "nodes.parquet"


# --- one part: plain numpy / scipy ---------------------------------------------------------------


def embed_part(src: np.ndarray, dst: np.ndarray, weight: np.ndarray, dim: int = DEFAULT_DIM,
               steps: int = DEFAULT_STEPS, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(node ids, n x dim embedding, weighted degree) of the graph of these edges: see the
    module docstring. Deterministic for a seed (ARPACK starts from a seeded vector)."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import LinearOperator, eigsh

    ids, inverse = np.unique(np.concatenate([src, dst]), return_inverse=True)
    n, m = len(ids), len(src)
    a, b = inverse[:m], inverse[m:]
    adjacency = sp.coo_matrix((weight, (a, b)), shape=(n, n)).tocsr()
    adjacency = (adjacency + adjacency.T).tocsr()
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    scale = 1.0 / np.sqrt(np.maximum(degree, 1e-300))
    normalised = sp.diags(scale) @ adjacency @ sp.diags(scale)
    k = min(dim, n)
    if n <= max(2 * dim + 1, 64):
        values, vectors = np.linalg.eigh(0.5 * (np.eye(n) + normalised.toarray()))
        values, vectors = values[::-1][:k], vectors[:, ::-1][:, :k]
    else:
        single = normalised.astype(np.float32)  # see the module docstring: twice as fast
        operator = LinearOperator((n, n), matvec=lambda v: 0.5 * (v + single @ v), dtype=np.float32)
        start = np.random.default_rng(seed).normal(size=n).astype(np.float32)
        values, vectors = eigsh(operator, k=k, which="LA", v0=start, tol=1e-5, maxiter=max(1000, 20 * k))
        values, vectors = values.astype(np.float64), vectors.astype(np.float64)
        order = np.argsort(-values, kind="stable")
        values, vectors = values[order], vectors[:, order]
    values = np.clip(values, 0.0, 1.0)
    proximity = sum(values ** r for r in range(1, steps + 1))
    embedding = np.zeros((n, dim))
    embedding[:, :k] = vectors * np.sqrt(proximity)
    # Eigenvectors have arbitrary signs: fix each by its largest entry, so a part embeds the same
    # way in every run (Procrustes would absorb a flip, a test comparing vectors would not).
    flip = np.sign(embedding[np.argmax(np.abs(embedding), axis=0), np.arange(dim)])
    embedding *= np.where(flip == 0, 1.0, flip)
    return ids, embedding, degree


def cosine_scores(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """1 - cos of the rows of x and y; NaN rows (an unseen entity) score UNSEEN_SCORE."""
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.einsum("ij,ij->i", x, y) / (nx * ny)
    score = 1.0 - np.clip(cos, -1.0, 1.0)
    return np.where(np.isfinite(score), score, UNSEEN_SCORE)


# --- the model on the driver ---------------------------------------------------------------------


@dataclass
class GraphEmbedding:
    """Node vectors of an entity graph and how they were made; `nodes` is a Spark DataFrame
    (node, type, value, degree, vector) or, for the in-process path, a pandas frame."""

    columns: list[str]
    dim: int
    steps: int
    nodes: object
    info: dict = field(default_factory=dict)

    def save(self, folder: str | Path) -> Path:
        """Parquet of the nodes plus a JSON file of the settings: no pickle, any size."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(self.nodes, pd.DataFrame):
            self.nodes.to_parquet(folder / NODES)
        else:
            self.nodes.write.mode("overwrite").parquet(str(folder / NODES))
        (folder / SETTINGS).write_text(json.dumps({"format": "normalcy-graph-embedding", "version": 1,
                                                   "columns": self.columns, "dim": self.dim, "steps": self.steps,
                                                   "info": self.info}, indent=2, default=str))
        return folder

    @classmethod
    def load(cls, folder: str | Path, spark=None) -> "GraphEmbedding":
        folder = Path(folder)
        try:
            settings = json.loads((folder / SETTINGS).read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{folder} is not a graph embedding folder ({SETTINGS}: {exc})") from None
        if settings.get("format") != "normalcy-graph-embedding":
            raise DataError(f"{folder / SETTINGS} is not a normalcy graph embedding")
        nodes = pd.read_parquet(folder / NODES) if spark is None else spark.read.parquet(str(folder / NODES))
        return cls(settings["columns"], settings["dim"], settings["steps"], nodes, settings.get("info", {}))


def _check_columns(frame_columns, columns: list[str]) -> list[str]:
    columns = list(columns)
    if len(columns) < 2:
        raise DataError(f"an entity graph needs at least 2 entity columns, got {columns}")
    missing = [c for c in columns if c not in frame_columns]
    if missing:
        raise DataError(f"input has no column {missing[0]!r}; columns are {', '.join(frame_columns)}")
    return columns


# --- in process (the reference, and small graphs) ---------------------------------------------------


def node_ids(kind: str, values: pd.Series) -> np.ndarray:
    """64-bit node ids of one entity column in process (pandas' fixed-key hash of type and value)."""
    text = kind + "\x1f" + values.astype(str)
    return pd.util.hash_pandas_object(text, index=False).to_numpy(dtype=np.uint64).view(np.int64)


def fit_local(frame: pd.DataFrame, columns: list[str], dim: int = DEFAULT_DIM, steps: int = DEFAULT_STEPS,
              seed: int = 0) -> GraphEmbedding:
    """The embedding of a table's entity graph in one process, as one part (node ids from
    pandas' hash: score it with `score_local`)."""
    columns = _check_columns(frame.columns, columns)
    ids = {c: node_ids(c, frame[c]) for c in columns}
    src = np.concatenate([ids[a] for a, b in combinations(columns, 2)])
    dst = np.concatenate([ids[b] for a, b in combinations(columns, 2)])
    edges = pd.DataFrame({"src": src, "dst": dst}).value_counts().reset_index(name="weight")
    nodes, vectors, degree = embed_part(edges.src.to_numpy(), edges.dst.to_numpy(),
                                        edges.weight.to_numpy(dtype=np.float64), dim, steps, seed)
    table = pd.DataFrame({"node": nodes, "degree": degree, "vector": list(vectors)})
    return GraphEmbedding(columns, dim, steps, table, {"parts": 1, "edges": len(edges), "nodes": len(nodes)})


def score_local(embedding: GraphEmbedding, frame: pd.DataFrame) -> np.ndarray:
    """Each event's score: the largest 1 - cos over its pairs of entities."""
    columns = _check_columns(frame.columns, embedding.columns)
    table = embedding.nodes
    lookup = pd.Series(np.arange(len(table)), index=table["node"].to_numpy())
    vectors = np.vstack([np.stack(table["vector"].to_numpy()), np.full((1, embedding.dim), np.nan)])
    rows = {c: lookup.reindex(node_ids(c, frame[c])).fillna(len(table)).to_numpy(dtype=np.int64) for c in columns}
    pair_scores = [cosine_scores(vectors[rows[a]], vectors[rows[b]]) for a, b in combinations(columns, 2)]
    return np.max(np.column_stack(pair_scores), axis=1)


# --- on Spark --------------------------------------------------------------------------------------


def entity_graph(df, columns: list[str]):
    """(edges, nodes) of an event DataFrame: edges (src, dst, weight) summed over events, nodes
    (node, type, value)."""
    from pyspark.sql import functions as F

    columns = _check_columns(df.columns, columns)

    def node(c):
        return F.xxhash64(F.lit(c), F.col(c).cast("string"))

    selected = None
    for a, b in combinations(columns, 2):
        part = df.where(F.col(a).isNotNull() & F.col(b).isNotNull()).select(node(a).alias("src"), node(b).alias("dst"))
        selected = part if selected is None else selected.unionByName(part)
    edges = selected.groupBy("src", "dst").agg(F.count("*").cast("double").alias("weight"))
    names = None
    for c in columns:
        part = df.where(F.col(c).isNotNull()).select(node(c).alias("node"), F.lit(c).alias("type"),
                                                     F.col(c).cast("string").alias("value"))
        names = part if names is None else names.unionByName(part)
    return edges, names.dropDuplicates(["node"])


def slot_keys(spark, n: int) -> list[int]:
    """n numbers that Spark's hash partitioning (`repartition(n, column)`: pmod(hash, n)) sends
    to partitions 0, 1, ..., n - 1, one each, found by hashing candidates with Spark itself."""
    from pyspark.sql import functions as F

    found: dict[int, int] = {}
    start = 0
    while len(found) < n:
        candidates = spark.range(start, start + 8 * n).select("id", F.pmod(F.hash("id"), F.lit(n)).alias("slot"))
        for row in candidates.collect():
            found.setdefault(row["slot"], row["id"])
        start += 8 * n
    return [found[i] for i in range(n)]


def split_buckets(counts: dict[int, int], max_part_edges: int) -> np.ndarray:
    """Part of each of the BUCKETS hash buckets: a binary trie over the bucket's bits, lowest
    first, split while a part holds more than `max_part_edges` edges (one bucket is the finest)."""
    sizes = np.zeros(BUCKETS, dtype=np.int64)
    for bucket, n in counts.items():
        sizes[bucket] = n
    part = np.zeros(BUCKETS, dtype=np.int64)
    pending, bits, parts = [(np.arange(BUCKETS), 0)], BUCKETS.bit_length() - 1, 0
    while pending:
        members, level = pending.pop()
        if sizes[members].sum() <= max_part_edges or level >= bits:
            part[members] = parts
            parts += 1
            continue
        low = ((members >> level) & 1) == 0
        pending += [(members[~low], level + 1), (members[low], level + 1)]
    return part


def fit(df, columns: list[str], dim: int = DEFAULT_DIM, steps: int = DEFAULT_STEPS,
        max_part_edges: int = DEFAULT_PART_EDGES, anchors: int = DEFAULT_ANCHORS, seed: int = 0) -> GraphEmbedding:
    """The entity graph of `df`'s `columns`, partitioned, embedded part by part in parallel and
    merged (module docstring). The node table is computed and cached; `info` says how many
    edges, nodes, parts and boundary nodes there were and how long each phase took."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    for name, value, low in (("dim", dim, 1), ("steps", steps, 1), ("max_part_edges", max_part_edges, 1),
                             ("anchors", anchors, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise DataError(f"{name} must be a whole number >= {low}, got {value!r}")
    spark = df.sparkSession
    clock, info = time.perf_counter(), {}
    edges, names = entity_graph(df, columns)
    edges = edges.cache()
    ends = edges.select(F.col("src").alias("node"), "weight").unionByName(edges.select(F.col("dst").alias("node"), "weight"))
    degrees = ends.groupBy("node").agg(F.sum("weight").alias("degree"))
    owned = (edges.join(degrees.withColumnRenamed("node", "src").withColumnRenamed("degree", "ds"), "src")
             .join(degrees.withColumnRenamed("node", "dst").withColumnRenamed("degree", "dd"), "dst")
             .withColumn("owner", F.when((F.col("ds") < F.col("dd")) | ((F.col("ds") == F.col("dd"))
                                                                        & (F.col("src") < F.col("dst"))),
                                         F.col("src")).otherwise(F.col("dst")))
             .withColumn("bucket", F.col("owner").bitwiseAND(BUCKETS - 1)))
    owned = owned.select("src", "dst", "weight", "bucket").cache()
    counts = {r["bucket"]: r["count"] for r in owned.groupBy("bucket").count().collect()}
    if not counts:
        raise DataError("the input has no events with two entities; no graph to embed")
    info.update(edges=int(sum(counts.values())), seconds_graph=time.perf_counter() - clock)
    part_of = split_buckets(counts, max_part_edges)
    used = sorted({int(part_of[b]) for b in counts})
    info["parts"] = len(used)
    # Each part in a Spark partition of its own: hashing the part ids into as many partitions
    # put two or three parts in one partition and left others empty (10^7 edges, 8 parts, on
    # local[2]: 1,089 s; 1,019 s with a partition per part).
    slot = dict(zip(used, slot_keys(spark, len(used))))
    mapping = spark.createDataFrame(pd.DataFrame({"bucket": np.arange(BUCKETS), "part": part_of,
                                                  "slot": [slot.get(int(p), -1) for p in part_of]}))
    parts = owned.join(F.broadcast(mapping), "bucket").select("slot", "part", "src", "dst", "weight")
    schema = "part long, node long, degree double, vector array<double>"

    def embed(batches):  # a closure, not a partial: Spark reads the function's type hints
        frames = [f for f in batches if len(f)]
        if not frames:
            return
        frame = pd.concat(frames, ignore_index=True)
        for part, group in frame.groupby("part", sort=True):
            ids, vectors, degree = embed_part(group.src.to_numpy(), group.dst.to_numpy(),
                                              group.weight.to_numpy(dtype=np.float64), dim, steps, seed)
            yield pd.DataFrame({"part": part, "node": ids, "degree": degree, "vector": list(vectors)})

    clock = time.perf_counter()
    embedded = parts.repartition(len(used), "slot").mapInPandas(embed, schema).cache()
    shared = embedded.groupBy("node").agg(F.count("*").alias("n_parts")).where("n_parts > 1")
    rank = F.row_number().over(Window.partitionBy("part").orderBy(F.desc("degree"), "node"))
    anchor_rows = (embedded.join(shared, "node").withColumn("rank", rank).where(F.col("rank") <= anchors)
                   .select("part", "node", "vector").toPandas())
    info.update(boundary_nodes=int(shared.count()), seconds_embed=time.perf_counter() - clock)
    clock = time.perf_counter()
    rotations = procrustes(anchor_rows, used, dim)
    rotation_table = spark.createDataFrame(pd.DataFrame({"part": list(rotations),
                                                         "rotation": [r.ravel().tolist() for r in rotations.values()]}),
                                           "part long, rotation array<double>")

    def rotate(batches):
        for frame in batches:
            out = [np.asarray(v) @ np.asarray(r).reshape(dim, dim) * w
                   for v, r, w in zip(frame.vector, frame.rotation, frame.degree)]
            yield pd.DataFrame({"node": frame.node, "degree": frame.degree, "weighted": out})

    rotated = embedded.join(F.broadcast(rotation_table), "part").mapInPandas(
        rotate, "node long, degree double, weighted array<double>")
    merged = rotated.groupBy("node").agg(
        F.sum("degree").alias("degree"),
        F.array(*[F.sum(F.col("weighted")[i]) for i in range(dim)]).alias("total"))
    vectors = merged.select("node", "degree", F.transform("total", lambda x: x / F.col("degree")).alias("vector"))
    nodes = names.join(vectors, "node").select("node", "type", "value", "degree", "vector").cache()
    info["nodes"] = nodes.count()
    info["seconds_merge"] = time.perf_counter() - clock
    edges.unpersist()
    owned.unpersist()
    embedded.unpersist()
    return GraphEmbedding(list(columns), dim, steps, nodes, info)


def procrustes(anchors: pd.DataFrame, parts: list[int], dim: int, rounds: int = 5) -> dict[int, np.ndarray]:
    """One orthogonal rotation per part bringing its anchors (boundary nodes: part, node,
    vector) onto their mean over the parts, generalised Procrustes in a few rounds. The part
    with the most anchors is the first reference; a part without anchors in common keeps its
    own frame (identity)."""
    rotations = {p: np.eye(dim) for p in parts}
    if anchors.empty:
        return rotations
    unit = np.stack(anchors.vector.to_numpy())
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    frame = pd.DataFrame({"part": anchors.part.to_numpy(), "node": anchors.node.to_numpy(), "row": np.arange(len(unit))})
    by_part = {p: g for p, g in frame.groupby("part")}
    first = max(by_part, key=lambda p: len(by_part[p]))
    reference = {n: unit[r] for n, r in zip(by_part[first].node, by_part[first].row)}
    for _ in range(rounds):
        for p, g in by_part.items():
            common = [(n, r) for n, r in zip(g.node, g.row) if n in reference]
            if not common:
                continue
            x = unit[[r for _, r in common]]
            y = np.stack([reference[n] for n, _ in common])
            u, _, vt = np.linalg.svd(x.T @ y)
            rotations[p] = u @ vt
        sums: dict[int, np.ndarray] = {}
        for p, g in by_part.items():
            aligned = unit[g.row.to_numpy()] @ rotations[p]
            for n, v in zip(g.node, aligned):
                sums[n] = sums.get(n, 0.0) + v
        reference = {n: v / max(np.linalg.norm(v), 1e-12) for n, v in sums.items()}
    return rotations


def score(df, embedding: GraphEmbedding):
    """`df` with `score` added: the largest 1 - cos over each event's pairs of entities (unseen
    entity: UNSEEN_SCORE); lazy."""
    from pyspark.sql import functions as F

    columns = _check_columns(df.columns, embedding.columns)
    if "score" in df.columns:
        raise DataError("input already has a column score; rename it before scoring")
    nodes = embedding.nodes.select("node", "vector")
    out = df
    for c in columns:
        out = out.join(nodes.withColumnRenamed("node", f"__n_{c}").withColumnRenamed("vector", f"__v_{c}"),
                       F.xxhash64(F.lit(c), F.col(c).cast("string")) == F.col(f"__n_{c}"), "left")

    def pair(a, b):
        x, y = F.col(f"__v_{a}"), F.col(f"__v_{b}")
        dot = F.aggregate(F.zip_with(x, y, lambda p, q: p * q), F.lit(0.0), lambda s, v: s + v)
        norms = F.sqrt(F.aggregate(x, F.lit(0.0), lambda s, v: s + v * v) * F.aggregate(y, F.lit(0.0), lambda s, v: s + v * v))
        cos = F.when(norms > 0, dot / norms)  # null for an unseen entity (greatest/least would skip a null)
        clipped = F.when(cos > 1.0, 1.0).when(cos < -1.0, -1.0).otherwise(cos)
        return F.coalesce(1.0 - clipped, F.lit(UNSEEN_SCORE))

    scores = [pair(a, b) for a, b in combinations(columns, 2)]
    result = out.withColumn("score", F.greatest(*scores) if len(scores) > 1 else scores[0])
    return result.drop(*[f"__n_{c}" for c in columns], *[f"__v_{c}" for c in columns])


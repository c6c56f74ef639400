"""APE: entity embeddings for heterogeneous categorical events (Chen et al., 2016, "Entity
Embedding-based Anomaly Detection for Heterogeneous Categorical Events", IJCAI).

Every entity a (per column, i.e. per entity type) has an embedding v_a; every pair of types
(i, j) a weight w_ij >= 0. An event e = (a_1, ..., a_m) has the compatibility

    S(e) = sum_{i<j} w_ij <v_{a_i}, v_{a_j}>

and its anomaly score is -S(e). The explanation names the pair whose weighted dot product is
lowest relative to that pair of types' average on the training events (see `EventDetector`). Training is noise-contrastive estimation with context-dependent
noise: for each observed event one entity type t is picked at random and its entity replaced by
k draws from t's smoothed frequency distribution q_t (counts ** noise_power, as word2vec
smooths its unigram noise), giving k noise events that keep the rest of the observed context.
The NCE logit of an event is S(e) + c - log(k q_t(a_t)), with c a learned log-normaliser; the
loss is the logistic loss of telling observed from noise events. Weights are kept non-negative
by projection after each step, so a pair of types can drop out (w = 0) but never count against
compatibility.

Unseen entities: code 0 of each type is a shared "unseen" embedding. Training entities seen at
most `min_count` times are mapped to it, so it is learned from the rare entities, and an entity
never seen in training scores exactly as a rare one would. A type with no rare entities leaves
it at zero: its pairs then add nothing to S(e), as for an entity unrelated to its context, so
the event is judged on its other pairs alone. APE judges combinations; that an entity is new is
what the frequency baseline flags.

Written with numpy and hand-derived gradients (checked against finite differences in the
tests) rather than torch: event vocabularies and embeddings are small, numpy needs no extra
dependency and keeps training bit-for-bit deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.progress import progress
from normalcy.events.base import EventDetector, type_pairs


class APE(EventDetector):
    """APE entity embeddings (Chen et al. 2016): an event is as anomalous as its entities are
    incompatible, -sum over pairs of types of w_ij <v_a_i, v_a_j>.

    Parameters:
        columns: the entity columns (default None: every column of the training table).
        dim: embedding dimension per entity (16).
        n_negatives: noise events drawn per observed event, k of NCE (5).
        epochs: passes over the training events (30).
        batch_size: observed events per Adam step (128).
        learning_rate: Adam's step size (0.02).
        l2: L2 penalty on the embeddings (1e-4).
        noise_power: exponent smoothing the entity frequencies the noise is drawn from (0.75).
        min_count: training entities seen at most this often share the "unseen" slot (1).
        allow_missing: an empty cell is the entity "<missing>" instead of an error (False).
        seed: seed of the initialisation and of the noise draws (0).
    """

    name = "ape"
    renamed_params = {"random_state": "seed"}  # normalcy 0.1.0 model files

    def __init__(self, columns: list[str] | None = None, dim: int = 16, n_negatives: int = 5,
                 epochs: int = 30, batch_size: int = 128, learning_rate: float = 0.02, l2: float = 1e-4,
                 noise_power: float = 0.75, min_count: int = 1, allow_missing: bool = False,
                 seed: int = 0):
        self.columns = columns
        self.dim = dim
        self.n_negatives = n_negatives
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.l2 = l2
        self.noise_power = noise_power
        self.min_count = min_count
        self.allow_missing = allow_missing
        self.seed = seed

    def _fit_encoded(self, codes, encoder):
        rng = np.random.default_rng(self.seed)
        sizes = [len(c) for c in encoder.counts_]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        m, k = codes.shape[1], self.n_negatives
        pairs = np.array(type_pairs(m))
        # Noise distributions per type over codes; the rare bucket (code 0) is drawn as often as
        # its training count says, an empty bucket never.
        noise = [c ** self.noise_power for c in encoder.counts_]
        noise = [q / q.sum() for q in noise]
        log_noise = np.concatenate([np.log(k * np.where(q > 0, q, 1.0)) for q in noise])
        cdfs = [np.cumsum(q) for q in noise]

        params = {
            "emb": rng.normal(scale=0.1, size=(sum(sizes), self.dim)),
            "w": np.ones(len(pairs)),
            "c": np.zeros(1),
        }
        params["emb"][offsets] = 0.0  # unseen slots start neutral; rare entities move them
        adam = _Adam(params, self.learning_rate)
        events = codes + offsets  # global embedding rows
        n = len(events)
        losses = []
        for _ in progress(range(self.epochs), desc="APE", unit="epoch"):
            order = rng.permutation(n)
            total = 0.0
            for start in range(0, n, self.batch_size):
                batch = events[order[start:start + self.batch_size]]
                b = len(batch)
                types = rng.integers(m, size=b)
                noisy = np.repeat(batch, k, axis=0)
                noise_types = np.repeat(types, k)
                u = rng.random(b * k)
                for t in range(m):
                    rows = noise_types == t
                    drawn = np.minimum(np.searchsorted(cdfs[t], u[rows], side="right"), sizes[t] - 1)
                    noisy[rows, t] = offsets[t] + drawn
                both = np.concatenate([batch, noisy])
                # log(k q_t(a_t)) of the entity in the replaced slot, observed and noise alike.
                log_q = log_noise[both[np.arange(len(both)), np.concatenate([types, noise_types])]]
                labels = np.r_[np.ones(b), np.zeros(b * k)]
                loss, grads = nce_loss(params["emb"], params["w"], params["c"][0], both, log_q, labels, pairs)
                grads["emb"] += self.l2 * params["emb"]
                adam.step(params, grads)
                np.maximum(params["w"], 0.0, out=params["w"])
                total += loss * b
            losses.append(total / n)
        self.embeddings_ = [params["emb"][o:o + s].copy() for o, s in zip(offsets, sizes)]
        self.weights_ = params["w"].copy()
        self.log_normalizer_ = float(params["c"][0])
        self.loss_ = losses

    def _explain_encoded(self, codes):
        self._check_fitted("weights_")
        vectors = [self.embeddings_[j][codes[:, j]] for j in range(codes.shape[1])]
        return np.stack([w * np.einsum("nd,nd->n", vectors[i], vectors[j])
                         for w, (i, j) in zip(self.weights_, type_pairs(codes.shape[1]))], axis=1)

    def _score_encoded(self, codes):
        return -self._explain_encoded(codes).sum(axis=1)

    def _check_params(self):
        super()._check_params()
        for name in ("dim", "n_negatives", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise DataError(f"APE {name} must be a whole number >= 1, got {value!r}")
        for name, low in (("learning_rate", 0.0), ("noise_power", 0.0), ("l2", None)):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value)
                    or (value <= low if low is not None else value < 0)):
                raise DataError(f"APE {name} must be a finite number {'> 0' if low is not None else '>= 0'}, "
                                f"got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise DataError(f"APE seed must be a whole number >= 0, got {self.seed!r}")

    # --- model file ----------------------------------------------------------------------
    def _own_state(self):
        self._check_fitted("weights_")
        arrays = {f"ape.embedding.{j}": e for j, e in enumerate(self.embeddings_)}
        arrays["ape.weights"] = self.weights_
        return arrays, {"log_normalizer": self.log_normalizer_, "loss": self.loss_}

    def _set_own_state(self, arrays, meta, encoder):
        m = len(encoder.columns_)
        shapes = {f"ape.embedding.{j}": (len(encoder.vocab_[j]) + 1, self.dim) for j in range(m)}
        shapes["ape.weights"] = (m * (m - 1) // 2,)
        expect_arrays(arrays, shapes)
        if (arrays["ape.weights"] < 0).any():
            raise ModelFileError("model state: APE pair weights must be non-negative")
        normalizer = meta.get("log_normalizer")
        if isinstance(normalizer, bool) or not isinstance(normalizer, (int, float)):
            raise ModelFileError("model state: APE log_normalizer missing or not a number")
        self.embeddings_ = [arrays[f"ape.embedding.{j}"] for j in range(m)]
        self.weights_ = arrays["ape.weights"]
        self.log_normalizer_ = float(normalizer)
        self.loss_ = list(meta.get("loss", []))


def nce_loss(emb: np.ndarray, w: np.ndarray, c: float, events: np.ndarray, log_q: np.ndarray,
             labels: np.ndarray, pairs: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    """NCE loss and its gradients for a batch of observed (label 1) and noise (label 0) events.

    emb: all embeddings (rows x d); w: one weight per type pair in `pairs` (i < j); events: n x m
    rows of emb; log_q: log(k q_t(a_t)) per event. The loss is the sum over events of the
    logistic loss of logit = S(e) + c - log_q, divided by the number of observed events.
    """
    X = emb[events]                                            # n x m x d
    dots = np.einsum("npd,npd->np", X[:, pairs[:, 0]], X[:, pairs[:, 1]])
    logit = dots @ w + c - log_q
    n_obs = max(labels.sum(), 1.0)
    # log(1 + exp(-z)) for observed events, log(1 + exp(z)) for noise: the logistic loss.
    signed = np.where(labels > 0, -logit, logit)
    loss = float(np.logaddexp(0.0, signed).sum() / n_obs)
    g = (_sigmoid(logit) - labels) / n_obs                     # d loss / d logit
    m = events.shape[1]
    W = np.zeros((m, m))
    W[pairs[:, 0], pairs[:, 1]] = w
    W = W + W.T
    # dS/dx_i = sum_j W_ij x_j
    grad_x = g[:, None, None] * np.einsum("ij,njd->nid", W, X)
    grad_emb = np.zeros_like(emb)
    np.add.at(grad_emb, events.reshape(-1), grad_x.reshape(-1, emb.shape[1]))
    return loss, {"emb": grad_emb, "w": dots.T @ g, "c": np.array([g.sum()])}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


class _Adam:
    """Adam (Kingma & Ba) over a dict of arrays, updated in place."""

    def __init__(self, params: dict[str, np.ndarray], lr: float, b1: float = 0.9, b2: float = 0.999,
                 eps: float = 1e-8):
        self.lr, self.b1, self.b2, self.eps, self.t = lr, b1, b2, eps, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        scale = self.lr * np.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        for key, grad in grads.items():
            self.m[key] *= self.b1
            self.m[key] += (1 - self.b1) * grad
            self.v[key] *= self.b2
            self.v[key] += (1 - self.b2) * grad * grad
            params[key] -= scale * self.m[key] / (np.sqrt(self.v[key]) + self.eps)

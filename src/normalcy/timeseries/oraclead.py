"""OracleAD (Cho, Han, Kang, Kim, Ryu, Jung, "Structured Temporal Causality for Interpretable
Multivariate Time Series Anomaly Detection", NeurIPS 2025, arXiv:2510.16511).

Each variable's past window is encoded by an LSTM and pooled by attention into one causal
embedding; self-attention across the variables' embeddings projects them into a shared latent
space; an LSTM decoder started from each projected embedding (all-zero inputs) reconstructs
that variable's window and predicts its next reading. The pairwise distances between the
projected embeddings, averaged over normal training windows, are the Stable Latent Structure
(SLS): how the variables normally relate. Training minimises reconstruction and prediction
error plus `lambda_dev` times the squared deviation of each window's distance matrix from the
SLS (tracked during training as a moving average). A reading's score per variable is its
prediction error plus the deviation of its row of the distance matrix from the SLS, each in
units of the held-out windows; a variable whose own reading breaks its learned dynamics moves
its embedding and so its whole row, which is why the per-variable scores rank root causes:
`explain` gives them as contributions, `root_causes` ranks them.

Departures and choices the paper's text does not fix (we had its abstract and overview, not its
code): one LSTM encoder and one decoder shared by all variables, with a learned identity vector
per variable added to its embedding so that attention can tell them apart; one multi-head
self-attention layer with a residual connection and layer norm; Euclidean distances; the
decoder's last output is added to the variable's last past reading (the prediction is a
departure from it: on the first 3,000 readings of NAB's nyc_taxi, trained for 5 epochs, plain
outputs predicted 3.3 times worse than repeating the last reading, departures 1.3 times worse;
with 20 epochs, departures predict 10 % better than it); the SLS is recomputed after training
as the mean distance matrix over the training windows; lambda_dev = 0.1, hidden = 32 and 20
epochs (the steps are cheap) are our defaults. Scores are causal (the window before each
reading and the reading itself) and in units of the held-out tail of the training data (see
`normalcy.timeseries.deep`). With one variable there is no structure: the score is the
prediction error alone.

`root_cause_benchmark` measures the root-cause ranking on synthetic multivariate series with
injected single-variable anomalies (see its docs).
"""

from __future__ import annotations

import numpy as np

from normalcy.core.errors import DataError
from normalcy.core.results import Explanation
from normalcy.timeseries.base import check_int
from normalcy.timeseries.deep import WindowNetDetector, _check_number, _torch, evenly, units

SLS_MOMENTUM = 0.9  # the moving average of the distance matrix during training
SLS_WINDOWS = 2048  # training windows whose mean distance matrix is the SLS (evenly spaced)


def _oracle_net(d: int, window: int, hidden: int, heads: int):
    torch = _torch()
    nn = torch.nn

    class OracleNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.LSTM(1, hidden, batch_first=True)
            self.pool = nn.Linear(hidden, 1)
            self.identity = nn.Parameter(torch.randn(d, hidden) * 0.1)
            self.attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
            self.norm = nn.LayerNorm(hidden)
            self.decoder = nn.LSTM(1, hidden, batch_first=True)
            self.out = nn.Linear(hidden, 1)
            self.predict = nn.Linear(hidden, 1)

        def embed(self, past):
            """Past windows (B x window x d) -> projected embeddings (B x d x hidden)."""
            b = past.shape[0]
            h, _ = self.encoder(past.transpose(1, 2).reshape(b * d, window, 1))
            weights = torch.softmax(self.pool(torch.tanh(h)), dim=1)
            causal = (weights * h).sum(dim=1).reshape(b, d, hidden) + self.identity
            mixed, _ = self.attention(causal, causal, causal, need_weights=False)
            return self.norm(causal + mixed)

        def decode(self, embedded):
            """Projected embeddings (B x d x hidden) -> each variable's window reconstructed
            (B x d x window) by the LSTM decoder from all-zero inputs."""
            b = embedded.shape[0]
            start = embedded.reshape(1, b * d, hidden)
            zeros = torch.zeros(b * d, window, 1, dtype=embedded.dtype)
            out, _ = self.decoder(zeros, (start, torch.zeros_like(start)))
            return self.out(out)[..., 0].reshape(b, d, window)

        def forward(self, windows):
            """Windows (B x (window + 1) x d): embeddings, reconstruction, and the prediction of
            the reading after the window (a departure from the variable's last past reading)."""
            past = windows[:, :window]
            embedded = self.embed(past)
            return embedded, self.decode(embedded), past[:, -1] + self.predict(embedded)[..., 0]

    return OracleNet()


def distances(embedded):
    """Pairwise Euclidean distances of the variables' embeddings (B x d x hidden -> B x d x d);
    written out (not torch.cdist) so that the gradient is finite at the zero diagonal."""
    gap = embedded[:, :, None, :] - embedded[:, None, :, :]
    return ((gap * gap).sum(dim=-1) + 1e-12).sqrt()


class OracleAD(WindowNetDetector):
    """OracleAD (Cho et al. 2025): prediction error plus deviation from the stable latent
    structure of the variables' causal embeddings, per variable, so each alert comes with a
    ranked root cause (see the module docs for the method and every departure).

    Parameters (defaults in brackets):
    - window [50]: past readings each variable's embedding encodes (the score is given at the
      reading after them, which is predicted).
    - hidden [32]: embedding and LSTM size; heads [4]: attention heads (must divide hidden).
    - lambda_dev [0.1]: weight of the structure deviation in the training loss.
    - epochs [20], max_steps [1600], batch_size [64], learning_rate [1e-3], patience [5],
      validation_fraction [0.2], max_seconds [None]: training budgets (see
      `normalcy.timeseries.deep`).
    - min_train [400], retrain [True], history [10000]: when a stream learned from scratch trains
      and the readings remembered.
    - likelihood [False], averaging [1], likelihood_window [2000], warmup [20]: see
      `TimeSeriesDetector`.
    - threads [1]: CPU threads; seed [0]: seed of the networks and batches.
    """

    name = "oraclead"
    extra = 1  # the reading after the window, which it predicts

    def __init__(self, history: int = 10000, likelihood: bool = False, averaging: int = 1,
                 likelihood_window: int = 2000, warmup: int = 20, window: int = 50, hidden: int = 32,
                 heads: int = 4, lambda_dev: float = 0.1, epochs: float = 20, max_steps: int = 1600,
                 batch_size: int = 64, learning_rate: float = 1e-3, patience: int | None = 5,
                 validation_fraction: float = 0.2, max_seconds: float | None = None, min_train: int = 400,
                 retrain: bool = True, threads: int | None = 1, seed: int = 0):
        super().__init__(history, likelihood, averaging, likelihood_window, warmup)
        self.window = window
        self.hidden = hidden
        self.heads = heads
        self.lambda_dev = lambda_dev
        self.epochs = epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.max_seconds = max_seconds
        self.min_train = min_train
        self.retrain = retrain
        self.threads = threads
        self.seed = seed

    def _build(self, d):
        return _oracle_net(d, self.window, self.hidden, self.heads)

    def _fit_net(self, net, windows, engine):
        torch = _torch()
        opt = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
        sls = None

        def errors(x):
            embedded, rebuilt, predicted = net(x)
            target = x.transpose(1, 2)
            return embedded, ((rebuilt - target[..., : self.window]) ** 2).mean() + \
                ((predicted - target[..., self.window]) ** 2).mean()

        def step(i):
            nonlocal sls
            embedded, loss = errors(windows.sample(self.batch_size))
            found = distances(embedded)
            mean = found.mean(dim=0).detach()
            sls = mean if sls is None else SLS_MOMENTUM * sls + (1 - SLS_MOMENTUM) * mean
            loss = loss + self.lambda_dev * ((found - sls) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss.item()

        def validate():
            return -float(errors(windows.validation)[1])

        return engine(net, step, validate)

    def _forward64(self, windows: np.ndarray):
        """Embeddings' distance matrices (n x d x d) and prediction errors (n x d)."""
        torch = _torch()
        with torch.no_grad():
            x = self._tensor(windows)
            embedded, _, predicted = self._net64(x)
            return distances(embedded).numpy(), np.abs(predicted.numpy() - windows[:, self.window])

    def _measures(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prediction error and SLS deviation (mean over the other variables of |D - SLS|), n x d."""
        found, error = self._forward64(windows)
        d = found.shape[1]
        deviation = np.abs(found - self._stats["sls"]).sum(axis=2) / max(d - 1, 1)
        return error, deviation

    def _reference(self, windows):
        torch = _torch()
        train = windows.train[torch.from_numpy(evenly(len(windows.train), SLS_WINDOWS))].double().numpy()
        found = np.concatenate([self._forward64(train[i : i + 512])[0] for i in range(0, len(train), 512)])
        self._stats = {"sls": found.mean(axis=0)}
        error, deviation = self._measures(windows.validation.double().numpy())
        e_mean, e_spread = units(error, error)
        v_mean, v_spread = units(deviation, deviation)
        return {"sls": self._stats["sls"], "error_mean": e_mean, "error_spread": e_spread,
                "deviation_mean": v_mean, "deviation_spread": v_spread}

    def _stat_shapes(self, d):
        return {"sls": (d, d), "error_mean": (d,), "error_spread": (d,), "deviation_mean": (d,),
                "deviation_spread": (d,)}

    def _parts(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The two terms of the score in held-out units, clipped at 0: prediction, structure."""
        error, deviation = self._measures(windows)
        s = self._stats
        prediction = np.maximum((error - s["error_mean"]) / s["error_spread"], 0.0)
        structure = np.maximum((deviation - s["deviation_mean"]) / s["deviation_spread"], 0.0)
        if error.shape[1] == 1:  # one variable: no structure to deviate from
            structure = np.zeros_like(structure)
        return prediction, structure

    def _window_scores(self, windows):
        prediction, structure = self._parts(windows)
        return prediction + structure

    def root_causes(self, X, k: int = 3) -> list[list[str]]:
        """Per reading of X (scored as `explain` scores it), the k variables most to blame,
        largest contribution first."""
        return self.explain(X).top(k)

    def _explain_encoded(self, series):
        """Per-variable scores as contributions; for each reading at or above the threshold (when
        one is set), the ranked root cause in words."""
        scores, per_variable = self._score_encoded(series)
        evidence = None
        if self.threshold_ is not None:
            evidence = []
            for score, row in zip(scores, per_variable):
                if score < self.threshold_:
                    evidence.append([])
                    continue
                order = np.argsort(-row, kind="stable")[:3]
                ranked = ", ".join(f"{self.columns_[j]} ({row[j]:.3g})" for j in order)
                evidence.append([f"root cause, most likely first: {ranked}"])
        return Explanation(scores, tuple(self.columns_), per_variable, evidence)

    def _check_params(self):
        super()._check_params()
        check_int(self, "hidden", 1, 4096)
        check_int(self, "heads", 1, 64)
        if self.hidden % self.heads:
            raise DataError(f"heads ({self.heads}) must divide hidden ({self.hidden})")
        _check_number(self, "lambda_dev", 0, 1e6)


# --- the root-cause benchmark -------------------------------------------------------------------

KINDS = ("spike", "level shift", "noise burst", "flatline")


def synthetic_series(seed: int, d: int = 6, n_train: int = 3000, n_test: int = 2000, anomalies: int = 8):
    """Synthetic multivariate series (said so wherever reported) whose variables depend on each
    other: each is a mix, with its own gains and delays, of two shared rhythms (periods 50 and
    170 readings) and a slow random walk, plus its own noise. In the test part `anomalies`
    single-variable anomalies are injected, each in one random variable, of a random kind: a
    spike (6 standard deviations, one reading), a level shift (3 sd, 30 readings), a noise burst
    (noise x 5, 30 readings) or a flatline (the value held, 40 readings), at least 150 readings
    apart. Returns train (n_train x d), test (n_test x d), and the anomalies as (start, end
    inclusive, variable, kind)."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    t = np.arange(n + 60)
    walk = np.cumsum(rng.normal(0, 0.02, n + 60))
    gains = rng.uniform(0.5, 1.5, (d, 3))
    delays = rng.integers(0, 20, d)
    x = np.empty((n, d))
    for j in range(d):
        u = t[delays[j] : delays[j] + n]
        x[:, j] = (gains[j, 0] * np.sin(2 * np.pi * u / 50) + gains[j, 1] * np.sin(2 * np.pi * u / 170 + j)
                   + gains[j, 2] * walk[delays[j] : delays[j] + n] + rng.normal(0, 0.1, n))
    train, test = x[:n_train].copy(), x[n_train:].copy()
    sd = train.std(axis=0)
    slots = rng.permutation(np.arange(100, n_test - 100, 150))[:anomalies]
    found = []
    for start in np.sort(slots):
        j, kind = int(rng.integers(d)), KINDS[int(rng.integers(len(KINDS)))]
        if kind == "spike":
            end = start
            test[start, j] += 6 * sd[j] * rng.choice([-1, 1])
        elif kind == "level shift":
            end = start + 29
            test[start : end + 1, j] += 3 * sd[j] * rng.choice([-1, 1])
        elif kind == "noise burst":
            end = start + 29
            test[start : end + 1, j] += rng.normal(0, 0.5, end + 1 - start)
        else:
            end = start + 39
            test[start : end + 1, j] = test[start, j]
        found.append((int(start), int(end), j, kind))
    return train, test, found


def root_cause_benchmark(n_series: int = 5, d: int = 6, params: dict | None = None, seed: int = 0) -> dict:
    """Root-cause accuracy of OracleAD on `n_series` synthetic series (`synthetic_series`): for
    each injected anomaly, the reading with the highest score within it is the alert, and the
    ranking of the variables by `explain`'s contributions there is the root cause; top-1 and
    top-3 say how often the injected variable is first, or among the first three. The same is
    measured for a baseline that blames the variable furthest from its training mean in
    standard deviations (at the same alert reading). `params` go to OracleAD."""
    from sklearn.metrics import roc_auc_score

    rows = []
    aurocs = []
    for k in range(n_series):
        train, test, injected = synthetic_series(seed + k, d=d)
        detector = OracleAD(**(params or {})).fit(train)
        explained = detector.explain(test)
        z = np.abs(test - train.mean(axis=0)) / train.std(axis=0)
        labels = np.zeros(len(test), dtype=int)
        for start, end, variable, kind in injected:
            labels[start : end + 1] = 1
            at = start + int(np.argmax(explained.scores[start : end + 1]))
            ranked = np.argsort(-explained.contributions[at], kind="stable")
            baseline = np.argsort(-z[at], kind="stable")
            rows.append({"series": k, "kind": kind, "variable": variable, "alert": at,
                         "rank": int(np.flatnonzero(ranked == variable)[0]) + 1,
                         "baseline_rank": int(np.flatnonzero(baseline == variable)[0]) + 1})
        aurocs.append(float(roc_auc_score(labels, explained.scores)))
    ranks = np.array([r["rank"] for r in rows])
    base = np.array([r["baseline_rank"] for r in rows])
    by_kind = {kind: {"n": int(sum(r["kind"] == kind for r in rows)),
                      "top1": float(np.mean([r["rank"] == 1 for r in rows if r["kind"] == kind] or [np.nan]))}
               for kind in KINDS}
    return {"anomalies": len(rows), "series": n_series, "variables": d, "top1": float(np.mean(ranks == 1)),
            "top3": float(np.mean(ranks <= 3)), "baseline_top1": float(np.mean(base == 1)),
            "baseline_top3": float(np.mean(base <= 3)), "chance_top1": 1 / d, "chance_top3": min(3 / d, 1.0),
            "detection_auroc": float(np.mean(aurocs)), "by_kind": by_kind, "alerts": rows}


__all__ = ["OracleAD", "distances", "root_cause_benchmark", "synthetic_series"]

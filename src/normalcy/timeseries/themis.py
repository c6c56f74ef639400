"""A THEMIS-style detector (Lorik, Sarveswaran, Sundaramahalingam, Venugopalan, "THEMIS:
Unlocking Pretrained Knowledge with Foundation Model Embeddings for Anomaly Detection in Time
Series", arXiv:2510.03911, 2025): embed windows with a pretrained encoder, then score the
embeddings with outlier detectors (the paper: Local Outlier Factor, and spectral methods on
the embeddings' self-similarity).

Here each variable's window ending at each reading is embedded by an encoder, and its score
combines (`scoring`):

- LOF: the local outlier factor (Breunig et al. 2000) of the embedding among the embeddings of
  the training windows (up to `reference` of them, evenly spaced), with `neighbors` neighbours;
- spectral: how much of the embedding lies outside the principal subspace of the training
  embeddings, i.e. of the leading eigenvectors of their (centred) self-similarity, keeping
  `variance` of it; the squared residual norm;

each in units of the held-out tail of the training data (`normalcy.timeseries.deep`);
"both" (the default) is their mean.

The encoder is pluggable. No foundation-model weights are downloaded here (THEMIS uses
Chronos's encoder); instead:

- ``encoder=None`` (default): a small convolutional encoder (`ConvEncoder`) is trained
  self-supervised on the user's own series, by masked reconstruction: a random quarter of each
  training window is blanked and a small decoder must rebuild the whole window from the
  embedding; early stopping watches the held-out windows' error (masks fixed by `seed`).
- ``encoder="path/to/encoder.safetensors"``: a user-supplied encoder of the documented
  architecture (`ConvEncoder` with this detector's `window`, `channels` and `dim`) is loaded
  and used frozen. The file is a safetensors state dict with metadata (format
  "normalcy-ts-encoder", architecture "conv", window, channels, dim); it is checked key by key
  and shape by shape, never unpickled. `export_encoder(path)` writes one from a fitted
  detector, so an encoder trained on a large fleet of series can be reused on each.

Departures: THEMIS builds the similarity matrix over the windows of the scored series itself
(transductive: a window's score depends on windows after it) and scores with the spectral
residual of that matrix's statistics; here the reference is the training windows, so each
reading is scored, causally, the moment its window ends, and "spectral" is the residual
outside the principal subspace of the training embeddings. Each variable is embedded on its
own (Chronos is univariate too) with one encoder shared by all variables.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from normalcy.core.errors import DataError, ModelFileError
from normalcy.timeseries.base import check_int
from normalcy.timeseries.deep import WindowNetDetector, _check_number, _torch, evenly, units

SCORINGS = ("both", "lof", "spectral")
FORMAT = "normalcy-ts-encoder"
ARCHITECTURE = "conv"
MAX_ENCODER_BYTES = 1 << 30
MASKED = 0.25  # share of a window blanked in the self-supervised task


def conv_encoder(window: int, channels: int, dim: int):
    """The documented encoder architecture ("conv"): a univariate window (B x window) -> an
    embedding (B x dim). Three 1-d convolutions (kernel 5, padding 2; `channels` channels;
    the second and third with stride 2), each followed by ReLU; the mean and the maximum over
    time of the last, concatenated (2 x channels); a linear layer to `dim`. Its state dict's
    keys: conv.0, conv.2, conv.4 (weight, bias) and head (weight, bias)."""
    torch = _torch()
    nn = torch.nn

    class ConvEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(nn.Conv1d(1, channels, 5, padding=2), nn.ReLU(),
                                      nn.Conv1d(channels, channels, 5, stride=2, padding=2), nn.ReLU(),
                                      nn.Conv1d(channels, channels, 5, stride=2, padding=2), nn.ReLU())
            self.head = nn.Linear(2 * channels, dim)

        def forward(self, x):
            h = self.conv(x[:, None, :])
            return self.head(torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1))

    return ConvEncoder()


class ThemisStyle(WindowNetDetector):
    """Encoder embeddings of each variable's window scored by LOF and a spectral residual
    against the training windows' embeddings (THEMIS-style; see the module docs for the method,
    the pluggable encoder and every departure).

    Parameters (defaults in brackets):
    - window [64]: readings per window.
    - encoder [None]: None trains the small encoder on the series; a path loads a safetensors
      encoder of the documented architecture (used frozen).
    - channels [32], dim [32]: the encoder's convolution channels and embedding size.
    - scoring ["both"]: "lof", "spectral" or "both" (their mean).
    - neighbors [20]: LOF's neighbours; reference [2000]: training embeddings per variable kept
      as the reference; variance [0.9]: share of the reference's variance the principal
      subspace keeps.
    - epochs [5], max_steps [500], batch_size [64], learning_rate [1e-3], patience [5],
      validation_fraction [0.2], max_seconds [None]: training budgets of the encoder (see
      `normalcy.timeseries.deep`).
    - min_train [400], retrain [True], history [10000]: when a stream learned from scratch trains
      (with a frozen encoder: rebuilds its reference) and the readings remembered.
    - likelihood [False], averaging [1], likelihood_window [2000], warmup [20]: see
      `TimeSeriesDetector`.
    - threads [1]: CPU threads; seed [0]: seed of the networks, batches and masks.
    """

    name = "themis"

    def __init__(self, history: int = 10000, likelihood: bool = False, averaging: int = 1,
                 likelihood_window: int = 2000, warmup: int = 20, window: int = 64, encoder: str | None = None,
                 channels: int = 32, dim: int = 32, scoring: str = "both", neighbors: int = 20,
                 reference: int = 2000, variance: float = 0.9, epochs: float = 5, max_steps: int = 500,
                 batch_size: int = 64, learning_rate: float = 1e-3, patience: int | None = 5,
                 validation_fraction: float = 0.2, max_seconds: float | None = None, min_train: int = 400,
                 retrain: bool = True, threads: int | None = 1, seed: int = 0):
        super().__init__(history, likelihood, averaging, likelihood_window, warmup)
        self.window = window
        self.encoder = encoder
        self.channels = channels
        self.dim = dim
        self.scoring = scoring
        self.neighbors = neighbors
        self.reference = reference
        self.variance = variance
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

    # --- the encoder -------------------------------------------------------------------------
    def _build(self, d):
        torch = _torch()
        nn = torch.nn
        decoder = nn.Sequential(nn.Linear(self.dim, 64), nn.ReLU(), nn.Linear(64, self.window))
        return nn.ModuleDict({"encoder": conv_encoder(self.window, self.channels, self.dim), "decoder": decoder})

    def _fit_net(self, net, windows, engine):
        torch = _torch()
        if self.encoder is not None:
            from normalcy.core.training import TrainResult

            if self._net is None:  # a retraining keeps the encoder it goes on from
                net["encoder"].load_state_dict(read_encoder(self.encoder, self.window, self.channels, self.dim))
            state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            return TrainResult(state, 0, None, 0, 0.0, "pretrained")
        opt = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
        blank = max(1, round(MASKED * self.window))
        held = windows.validation.transpose(1, 2).reshape(-1, self.window)
        held_masks = _masks(len(held), self.window, blank, torch.Generator().manual_seed(self.seed))

        def loss_of(x, masks):
            return ((net["decoder"](net["encoder"](x * masks)) - x) ** 2).mean()

        def step(i):
            x = windows.sample(self.batch_size).transpose(1, 2).reshape(-1, self.window)
            loss = loss_of(x, _masks(len(x), self.window, blank))
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss.item()

        return engine(net, step, lambda: -float(loss_of(held, held_masks)))

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """Embeddings (n x d x dim) of scaled float64 windows (n x window x d)."""
        torch = _torch()
        n, w, d = windows.shape
        with torch.no_grad():
            flat = self._tensor(windows.transpose(0, 2, 1).reshape(n * d, w))
            return self._net64["encoder"](flat).numpy().reshape(n, d, self.dim)

    def export_encoder(self, path) -> Path:
        """Write the fitted encoder as a safetensors file that ``encoder=path`` loads (the
        documented architecture, with its window, channels and dim in the metadata)."""
        from safetensors.torch import save_file

        self._check_fitted("columns_")
        if self._net is None:
            raise DataError("the detector has not trained an encoder yet")
        path = Path(path)
        tensors = {k: v.detach().float().contiguous() for k, v in self._net["encoder"].state_dict().items()}
        meta = {"format": FORMAT, "architecture": ARCHITECTURE, "window": str(self.window),
                "channels": str(self.channels), "dim": str(self.dim)}
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            save_file(tensors, str(tmp), metadata=meta)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise DataError(f"cannot write the encoder to {path}: {exc.strerror or exc}") from exc
        return path

    # --- the reference and the scores -------------------------------------------------------
    def _reference(self, windows):
        torch = _torch()
        chosen = windows.train[torch.from_numpy(evenly(len(windows.train), self.reference))].double().numpy()
        embedded = np.concatenate([self.embed(chosen[i : i + 1024]) for i in range(0, len(chosen), 1024)])
        embedded = embedded.transpose(1, 0, 2)  # d x n x dim
        k = min(self.neighbors, embedded.shape[1] - 1)
        mean = embedded.mean(axis=1)
        components = np.zeros((len(embedded), self.dim, self.dim))
        for j, e in enumerate(embedded):
            _, singular, vt = np.linalg.svd(e - mean[j], full_matrices=False)
            total = float((singular**2).sum())
            if total > 0:
                keep = min(int(np.searchsorted(np.cumsum(singular**2) / total, self.variance)) + 1, self.dim - 1)
                components[j, :keep] = vt[:keep]
        self._stats = {"embeddings": embedded, "mean": mean, "components": components,
                       "neighbors": np.array([float(k)])}
        self._loaded()
        lof, spectral = self._measures(windows.validation.double().numpy())
        lof_mean, lof_spread = units(lof, lof)
        sp_mean, sp_spread = units(spectral, spectral)
        return {**self._stats, "lof_mean": lof_mean, "lof_spread": lof_spread, "spectral_mean": sp_mean,
                "spectral_spread": sp_spread}

    def _loaded(self):
        """The search trees and each reference embedding's k-distance and local reachability
        density, rebuilt from the reference embeddings (deterministically)."""
        from sklearn.neighbors import KDTree

        k, n_ref = self._stats["neighbors"][0], self._stats["embeddings"].shape[1]
        if not (k == int(k) and 1 <= k < n_ref):
            raise ModelFileError(f"model array 'stats.neighbors' must be an integer in [1, {n_ref - 1}]")
        k = int(k)
        self._trees, self._kdist, self._lrd = [], [], []
        for e in self._stats["embeddings"]:
            tree = KDTree(e)
            dist, idx = tree.query(e, k=k + 1)  # each point's first neighbour is itself
            kdist = dist[:, k]
            reach = np.maximum(dist[:, 1:], kdist[idx[:, 1:]])
            self._trees.append(tree)
            self._kdist.append(kdist)
            self._lrd.append(1.0 / (reach.mean(axis=1) + 1e-10))

    def _measures(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """LOF and spectral residual (n x d) of windows' embeddings."""
        embedded = self.embed(windows)
        k = int(self._stats["neighbors"][0])
        lof = np.empty(embedded.shape[:2])
        spectral = np.empty(embedded.shape[:2])
        for j in range(embedded.shape[1]):
            e = embedded[:, j]
            dist, idx = self._trees[j].query(e, k=k)
            reach = np.maximum(dist, self._kdist[j][idx])
            lrd = 1.0 / (reach.mean(axis=1) + 1e-10)
            lof[:, j] = self._lrd[j][idx].mean(axis=1) / lrd
            centred = e - self._stats["mean"][j]
            comps = self._stats["components"][j]
            # products then sums rather than BLAS: the rounding must not depend on the batch
            coordinates = (centred[:, None, :] * comps[None]).sum(axis=2)
            residual = centred - (coordinates[:, :, None] * comps[None]).sum(axis=1)
            spectral[:, j] = (residual**2).sum(axis=1)
        return lof, spectral

    def _stat_shapes(self, d):
        return {"embeddings": (d, None, self.dim), "mean": (d, self.dim), "components": (d, self.dim, self.dim),
                "neighbors": (1,), "lof_mean": (d,), "lof_spread": (d,), "spectral_mean": (d,),
                "spectral_spread": (d,)}

    def _window_scores(self, windows):
        lof, spectral = self._measures(windows)
        s = self._stats
        lof_units = np.maximum((lof - s["lof_mean"]) / s["lof_spread"], 0.0)
        spectral_units = np.maximum((spectral - s["spectral_mean"]) / s["spectral_spread"], 0.0)
        if self.scoring == "lof":
            return lof_units
        if self.scoring == "spectral":
            return spectral_units
        return (lof_units + spectral_units) / 2

    def _check_params(self):
        super()._check_params()
        check_int(self, "channels", 1, 4096)
        check_int(self, "dim", 2, 4096)
        check_int(self, "neighbors", 1, 10_000)
        check_int(self, "reference", 2, 1_000_000)
        if self.window < 4:
            raise DataError(f"window must be at least 4 readings, got {self.window}")
        if self.scoring not in SCORINGS:
            raise DataError(f"scoring must be one of {', '.join(SCORINGS)}, got {self.scoring!r}")
        _check_number(self, "variance", 0, 1, low_open=True)
        if self.encoder is not None and not isinstance(self.encoder, (str, os.PathLike)):
            raise DataError(f"encoder must be None or the path of a safetensors encoder, got {self.encoder!r}")


def _masks(n: int, window: int, blank: int, generator=None):
    """n masks (n x window) of ones with one run of `blank` zeros at a random place each."""
    torch = _torch()
    start = torch.randint(0, window - blank + 1, (n, 1), generator=generator)
    position = torch.arange(window)[None]
    return ((position < start) | (position >= start + blank)).float()


def read_encoder(path, window: int, channels: int, dim: int) -> dict:
    """The state dict of a safetensors encoder file, checked against the documented
    architecture with this window, channels and dim; ModelFileError (naming the file) if it is
    not one. Safetensors holds tensors and string metadata only: nothing is unpickled or run."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"encoder file {path} does not exist or is not a file")
    if path.stat().st_size > MAX_ENCODER_BYTES:
        raise ModelFileError(f"encoder file {path} is larger than {MAX_ENCODER_BYTES >> 20} MiB")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"encoder file {path} is not a safetensors file: {exc}") from exc
    if meta.get("format") != FORMAT or meta.get("architecture") != ARCHITECTURE:
        raise ModelFileError(f"encoder file {path} is not a normalcy encoder (metadata format "
                             f"{meta.get('format')!r}, architecture {meta.get('architecture')!r}; expected "
                             f"{FORMAT!r}, {ARCHITECTURE!r})")
    wanted = {"window": window, "channels": channels, "dim": dim}
    found = {k: meta.get(k) for k in wanted}
    if found != {k: str(v) for k, v in wanted.items()}:
        raise DataError(f"encoder file {path} was saved with window={found['window']}, channels={found['channels']}, "
                        f"dim={found['dim']}; give the detector the same (it has window={window}, "
                        f"channels={channels}, dim={dim})")
    expected = conv_encoder(window, channels, dim).state_dict()
    if set(tensors) != set(expected):
        raise ModelFileError(f"encoder file {path} has tensors {sorted(tensors)[:6]}, expected {sorted(expected)}")
    for k, v in expected.items():
        t = tensors[k]
        if tuple(t.shape) != tuple(v.shape) or not t.is_floating_point():
            raise ModelFileError(f"encoder file {path}: tensor {k!r} has shape {tuple(t.shape)} ({t.dtype}), "
                                 f"expected {tuple(v.shape)} floating point")
        if not bool(t.isfinite().all()):
            raise ModelFileError(f"encoder file {path}: tensor {k!r} holds NaN or infinity")
    return {k: tensors[k].float() for k in expected}


__all__ = ["ThemisStyle", "conv_encoder", "read_encoder"]
